"""The problem step: a graph (or a model) in an environment, with an objective and constraints -> a Problem.

:func:`problem` builds a single-user :class:`~tiercut.problem.Problem`;
:func:`multi_user_problem` a :class:`~tiercut.problem.MultiUserProblem` of
several users (the environment's, or those of a users file read by
:func:`read_users`) sharing its devices and links.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tiercut.env import Environment, User
from tiercut.errors import TiercutError
from tiercut.pipeline.model import graph as graph_step
from tiercut.pipeline.progress import SILENT, Progress
from tiercut.problem import Constraints, MultiUserProblem, Objective, Problem


def environment(env: str | Path | Environment) -> Environment:
    """``env`` itself, or the preset or YAML/JSON file it names."""
    from tiercut.env import load_environment

    return env if isinstance(env, Environment) else load_environment(env)


def read_compute_table(path: str | Path) -> dict[str, dict[str, float]]:
    """A JSON file node -> device -> seconds (or ``{"compute_s": ...}``)."""
    from tiercut.datafiles import read_json_file

    data = read_json_file(path, "compute table")
    if isinstance(data, dict) and "compute_s" in data:
        data = data["compute_s"]
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise TiercutError(f"compute table {path} must map node -> device -> seconds")
    try:
        return {str(n): {str(d): float(s) for d, s in row.items()} for n, row in data.items()}
    except (TypeError, ValueError):
        raise TiercutError(f"compute table {path} holds a non-number; every entry must be seconds") from None


def _constraints(
    graph: Any,
    source: str,
    *,
    latency_budget_s: float | None,
    energy_budget_j: float | None,
    energy_total_budget_j: float | None,
    cost_budget: float | None,
    pins: Mapping[str, str] | None,
    private_layers: int,
    memory: bool,
) -> Constraints:
    pinned = dict(pins or {})
    if private_layers < 0:
        raise TiercutError(f"--private-layers {private_layers} must be >= 0")
    compute_nodes = [n.name for n in graph if not n.is_input]
    if private_layers > len(compute_nodes):
        raise TiercutError(f"--private-layers {private_layers} exceeds the model's {len(compute_nodes)} layers")
    for name in compute_nodes[:private_layers]:
        pinned.setdefault(name, source)
    return Constraints(
        memory=memory,
        latency_budget_s=latency_budget_s,
        energy_source_budget_j=energy_budget_j,
        energy_total_budget_j=energy_total_budget_j,
        cost_budget=cost_budget,
        pinned=pinned,
    )


DEFAULT_ENV = "three-tier"


def _problem_json(model: Any) -> Any:
    """The parsed problem JSON ``model`` names (a path or a :class:`ModelRequest` of one), else None."""
    from tiercut.graph import ModelRequest, is_graph_json_path, is_problem_data, read_model_json

    spec = model.spec if isinstance(model, ModelRequest) else model
    if not isinstance(spec, (str, Path)) or not is_graph_json_path(spec):
        return None
    data = read_model_json(spec)
    return data if is_problem_data(data) else None


def _foreign_problem(
    spec: Any,
    data: Any,
    *,
    objective: Objective | str | None,
    source: str | None,
    constraints: Constraints | None,
) -> Problem:
    """A problem JSON given as the model, planned as it is (its devices, links, times); ``objective`` and
    ``constraints``, when given, replace its own; its source stays."""
    import dataclasses

    problem_data = data.get("problem", data)
    try:
        problem_ = Problem.from_dict(problem_data)
    except TiercutError as exc:
        raise TiercutError(f"problem {spec}: {exc}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise TiercutError(
            f"problem {spec} lacks a field or holds a wrong type ({exc}); pass 'tiercut plan --json' output"
        ) from None
    if source is not None and source != problem_.source:
        raise TiercutError(
            f"problem {spec} has source {problem_.source!r}; drop --source or pass --env to re-plan its graph"
        )
    if objective is not None:
        parsed = Objective.parse(objective) if isinstance(objective, str) else objective
        problem_ = dataclasses.replace(problem_, objective=parsed)
    if constraints is not None:
        problem_ = dataclasses.replace(problem_, constraints=constraints)
    return problem_


def problem(
    model: Any,
    env: str | Path | Environment | None = None,
    *,
    objective: Objective | str | None = None,
    source: str | None = None,
    example_inputs: tuple[Any, ...] | Any | None = None,
    input_shape: tuple[int, ...] | None = None,
    granularity: str = "module",
    profile: str | Path | Any | None = None,
    compute_s: Mapping[str, Mapping[str, float]] | str | Path | None = None,
    measure_on: str | Path | None = None,
    latency_budget_s: float | None = None,
    energy_budget_j: float | None = None,
    energy_total_budget_j: float | None = None,
    cost_budget: float | None = None,
    pins: Mapping[str, str] | None = None,
    private_layers: int = 0,
    memory: bool = True,
    allow_code: bool = False,
    progress: Progress = SILENT,
) -> Problem:
    """The placement problem of ``model`` over ``env`` (docs/DESIGN.md): graph, devices, links, compute table.

    A problem JSON as ``model`` (``tiercut plan --json`` output or its
    ``problem`` object) is planned as it is when no ``env`` is given: its
    devices, links and compute times stay; ``objective`` and the constraints,
    when given, replace its own. With ``env``, its graph is planned there like
    a layer graph JSON.

    Args:
        model: anything :func:`tiercut.graph` takes (a :class:`ModelRequest` too),
            a :class:`LayerGraph`, or a problem JSON file.
        env: an :class:`Environment`, a preset name or a YAML/JSON file (default
            ``three-tier``; a problem JSON has its own).
        objective: ``latency`` (default), ``energy_source``, ``energy_total``, ``cost`` or
            ``weighted:latency=1,energy_source=0.1`` (or an :class:`Objective`).
        source: the device inputs come from (default: the first user's device).
        profile: a per-node profile of this host (a file from ``tiercut profile``, or one loaded).
        compute_s: node -> device -> seconds (or a JSON file of it) instead of the predictor.
        measure_on: a ``workers.yaml``: measure the table on those running workers.
        latency_budget_s, energy_budget_j, energy_total_budget_j, cost_budget: upper bounds.
        pins: node -> device it must run on; ``private_layers`` pins the first N layers to the source.
        memory: enforce the devices' memory limits.
        allow_code: allow a model spec that imports user code (``package.module:factory``, ``file.py:factory``).
    """
    from tiercut.problem import build_problem, load_profile_file

    data = _problem_json(model) if env is None else None
    if data is not None:
        spec = getattr(model, "spec", model)
        for option, given in (("--profile", profile), ("--compute-table", compute_s), ("--measure-on", measure_on)):
            if given is not None:
                raise TiercutError(f"problem {spec} holds its own compute times; drop {option} or pass --env")
        if private_layers:
            raise TiercutError(f"--private-layers applies to a model's layers; pin nodes of problem {spec} with --pin")
        budgets = (latency_budget_s, energy_budget_j, energy_total_budget_j, cost_budget)
        constraints = None
        if any(b is not None for b in budgets) or pins or not memory:
            constraints = Constraints(
                memory=memory, latency_budget_s=latency_budget_s, energy_source_budget_j=energy_budget_j,
                energy_total_budget_j=energy_total_budget_j, cost_budget=cost_budget, pinned=dict(pins or {}),
            )
        return _foreign_problem(spec, data, objective=objective, source=source, constraints=constraints)
    environment_ = environment(env if env is not None else DEFAULT_ENV)
    layer_graph = graph_step(
        model, example_inputs, input_shape=input_shape, granularity=granularity, allow_code=allow_code, progress=progress
    )
    src = source or environment_.default_source()
    constraints = _constraints(
        layer_graph, src, latency_budget_s=latency_budget_s, energy_budget_j=energy_budget_j,
        energy_total_budget_j=energy_total_budget_j, cost_budget=cost_budget, pins=pins,
        private_layers=private_layers, memory=memory,
    )
    table = read_compute_table(compute_s) if isinstance(compute_s, (str, Path)) else compute_s
    local = load_profile_file(profile) if isinstance(profile, (str, Path)) else profile
    provenance = None
    if measure_on is not None:
        if table is not None:
            raise TiercutError("measuring on workers makes the compute table; drop the given compute table")
        from tiercut.graph import ModelRequest

        if not isinstance(model, (str, ModelRequest)) or example_inputs is not None:
            raise TiercutError("measuring on workers needs the model's spec (a zoo name or a factory) or a ModelRequest")
        from tiercut.pipeline.model import model_request
        from tiercut.runtime.profiling import WorkersFile, measure_on_workers

        with progress.step(f"measuring {layer_graph.model} on the workers of {measure_on}"):
            table, provenance = measure_on_workers(
                model_request(model, input_shape, granularity=granularity, allow_code=allow_code), layer_graph,
                environment_, WorkersFile.load(Path(measure_on)), source=src, local_profile=local,
            )
    parsed = objective if isinstance(objective, Objective) else Objective.parse(objective or "latency")
    with progress.step(f"predicting {len(layer_graph)} layers' times on {len(environment_.devices)} devices"):
        return build_problem(
            layer_graph, environment_, source=src, objective=parsed, constraints=constraints, compute_s=table,
            profile=local, compute_provenance=provenance,
        )


def read_users(path: str | Path, *, default_model: str | None = None) -> tuple[User, ...]:
    """The users of a YAML/JSON users file: ``users: [{name, device, model, query_rate_hz, input_shape}]``.

    A list at the top level is read as the users too. ``default_model`` is the
    model of a user that names none.
    """
    from pydantic import ValidationError

    from tiercut.datafiles import MAX_JSON_BYTES, MAX_YAML_BYTES, parse_json, parse_yaml, read_text_file
    from tiercut.env.schema import UserModel, _first_error

    path = Path(path)
    json_file = path.suffix.lower() == ".json"
    text = read_text_file(path, "users file", max_bytes=MAX_JSON_BYTES if json_file else MAX_YAML_BYTES)
    data = parse_json(text, f"users file {path}") if json_file else parse_yaml(text, f"users file {path}")
    if isinstance(data, Mapping):
        data = data.get("users")
    if not isinstance(data, list) or not data:
        raise TiercutError(f"users file {path} must hold a non-empty list 'users:' of {{name, device, model}}")
    users = []
    for index, entry in enumerate(data):
        if isinstance(entry, Mapping) and "model" not in entry and default_model is not None:
            entry = {**entry, "model": default_model}
        try:
            spec = UserModel.model_validate(entry)
        except ValidationError as exc:
            raise TiercutError(f"users file {path}: users.{index}.{_first_error(exc)}; fix the file") from None
        users.append(User(spec.name, spec.device, spec.model, spec.query_rate_hz, spec.input_shape))
    return tuple(users)


def multi_user_problem(
    env: str | Path | Environment = "three-tier",
    users: Sequence[User] | str | Path | None = None,
    *,
    objective: Objective | str = "latency",
    aggregate: str = "mean",
    granularity: str = "module",
    profile: str | Path | Any | None = None,
    memory: bool = True,
    default_model: str | None = None,
    models: Mapping[str, Any] | None = None,
    allow_code: bool = False,
    progress: Progress = SILENT,
) -> MultiUserProblem:
    """Several users' models over one environment's shared devices and links (equal-share model).

    ``users``: a users file, a list of :class:`~tiercut.env.User`, or None for
    the environment's own users. A model several users share is traced once.
    ``aggregate``: how users' latencies combine in the objective (``mean`` or ``max``).
    ``models``: model name -> a model (anything :func:`tiercut.graph` takes) or a
    :class:`LayerGraph`; a user's ``model`` is looked up there first.
    ``allow_code``: allow users' models that import user code (``package.module:factory``, ``file.py:factory``).
    """
    from tiercut.problem import build_multi_user_problem, load_profile_file

    environment_ = environment(env)
    if isinstance(users, (str, Path)):
        from tiercut.graph.model_spec import check_code_allowed

        users = read_users(users, default_model=default_model)
        for user in users:  # a data file names code only with the caller's leave
            check_code_allowed(user.model, allow_code)
    if users is not None:
        from dataclasses import replace

        environment_ = replace(environment_, users=tuple(users))  # validates the users' devices
    if not environment_.users:
        raise TiercutError(f"environment {environment_.name!r} has no users; give a users file (--users FILE)")
    graphs: dict[tuple[str, tuple[int, ...] | None], Any] = {}
    for user in environment_.users:
        key = (user.model, user.input_shape)
        if key not in graphs:
            model = (models or {}).get(user.model, user.model)
            graphs[key] = graph_step(
                model, input_shape=user.input_shape, granularity=granularity, allow_code=allow_code, progress=progress
            )
    text = objective if isinstance(objective, str) else None
    obj = Objective.parse(text, aggregate) if text is not None else objective
    local = load_profile_file(profile) if isinstance(profile, (str, Path)) else profile
    constraints = {u.name: Constraints(memory=memory) for u in environment_.users}
    with progress.step(f"predicting {len(environment_.users)} users' layer times"):
        return build_multi_user_problem(
            environment_, {u.name: graphs[(u.model, u.input_shape)] for u in environment_.users},
            objective=obj, constraints=constraints, profile=local,
        )


__all__ = ["environment", "multi_user_problem", "problem", "read_compute_table", "read_users"]
