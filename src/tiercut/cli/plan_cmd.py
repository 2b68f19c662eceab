"""``tiercut plan`` and ``tiercut compare``: where every layer of a model should run."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer

from tiercut.cli.checks import check_finite
from tiercut.cli.model_opts import (
    MODEL_HELP,
    AllowCodeOpt,
    GranularityOpt,
    InputOpt,
    LeafModuleOpt,
    NoCacheOpt,
    OpenModuleOpt,
    ShapeOpt,
    model_request,
)
from tiercut.errors import TiercutError
from tiercut.graph.model_spec import ModelRequest
from tiercut.problem import Constraints, Objective, Plan, Problem


# ---------------------------------------------------------------- helpers
def _human(value: float, unit: str) -> str:
    if value != value or value in (float("inf"), float("-inf")):
        return "inf"
    for scale, prefix in ((1.0, ""), (1e-3, "m"), (1e-6, "u"), (1e-9, "n")):
        if abs(value) >= scale or scale == 1e-9:
            return f"{value / scale:.4g} {prefix}{unit}".strip()
    return f"{value:.4g} {unit}"


def _parse_setting(text: str) -> tuple[str, Any]:
    key, eq, raw = text.partition("=")
    if not eq or not key.strip():
        raise TiercutError(f"planner setting {text!r} must look like name=value, e.g. server=cloud or seed=3")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


def _parse_pins(pins: list[str] | None) -> dict[str, str]:
    out = {}
    for text in pins or []:
        node, eq, device = text.partition("=")
        if not eq or not node or not device:
            raise TiercutError(f"--pin {text!r} must look like NODE=DEVICE, e.g. conv1=mobile")
        out[node.strip()] = device.strip()
    return out


def _load_compute_table(path: Path) -> dict[str, dict[str, float]]:
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


DEFAULT_ENV = "three-tier"


def _foreign_problem(
    model: ModelRequest, data: Any, *, objective: str | None, source: str | None, constraints: Constraints | None,
) -> Problem:
    """A problem JSON given as the model, planned as it is (its devices, links, times); options may override
    its objective and constraints, never its source."""
    from tiercut.problem import Problem as ProblemClass

    problem_data = data.get("problem", data)
    try:
        problem = ProblemClass.from_dict(problem_data)
    except TiercutError as exc:
        raise TiercutError(f"problem {model.spec}: {exc}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise TiercutError(
            f"problem {model.spec} lacks a field or holds a wrong type ({exc}); pass 'tiercut plan --json' output"
        ) from None
    if source is not None and source != problem.source:
        raise TiercutError(
            f"problem {model.spec} has source {problem.source!r}; drop --source or pass --env to re-plan its graph"
        )
    if objective is not None:
        problem = dataclasses.replace(problem, objective=Objective.parse(objective))
    if constraints is not None:
        problem = dataclasses.replace(problem, constraints=constraints)
    return problem


def build_cli_problem(
    model: ModelRequest,
    env: str | None,
    *,
    objective: str | None,
    source: str | None,
    profile: Path | None,
    compute_table: Path | None,
    latency_budget: float | None,
    energy_budget: float | None,
    energy_total_budget: float | None,
    cost_budget: float | None,
    pins: list[str] | None,
    private_layers: int,
    memory: bool,
    measure_on: Path | None = None,
) -> Problem:
    """The problem the CLI options describe (shared by plan and compare).

    A problem JSON as the model is planned as it is when no ``env`` is given
    (``objective`` and the constraint options, when given, replace its own);
    with ``env``, its graph is planned in that environment like a graph JSON.
    """
    from tiercut.env import load_environment
    from tiercut.graph import graph_of, is_graph_json_path, is_problem_data, read_model_json
    from tiercut.problem import build_problem, load_profile_file

    for option, value in (
        ("--latency-budget", latency_budget),
        ("--energy-budget", energy_budget),
        ("--energy-total-budget", energy_total_budget),
        ("--cost-budget", cost_budget),
    ):
        check_finite(option, value)  # the range is the constraints' to check
    if is_graph_json_path(model.spec) and env is None:
        data = read_model_json(model.spec)
        if is_problem_data(data):
            for option, given in (("--profile", profile), ("--compute-table", compute_table), ("--measure-on", measure_on)):
                if given is not None:
                    raise TiercutError(f"problem {model.spec} holds its own compute times; drop {option} or pass --env")
            given_constraints = any(v is not None for v in (latency_budget, energy_budget, energy_total_budget, cost_budget))
            constraints = None
            if given_constraints or pins or private_layers or not memory:
                constraints = Constraints(memory=memory, latency_budget_s=latency_budget, energy_source_budget_j=energy_budget,
                                          energy_total_budget_j=energy_total_budget, cost_budget=cost_budget,
                                          pinned=_parse_pins(pins))
            if private_layers:
                raise TiercutError(f"--private-layers applies to a model's layers; pin nodes of problem {model.spec} with --pin")
            return _foreign_problem(model, data, objective=objective, source=source, constraints=constraints)
    environment = load_environment(env or DEFAULT_ENV)
    graph = graph_of(model)
    src = source or environment.default_source()
    pinned = _parse_pins(pins)
    if private_layers < 0:
        raise TiercutError(f"--private-layers {private_layers} must be >= 0")
    compute_nodes = [n.name for n in graph if not n.is_input]
    if private_layers > len(compute_nodes):
        raise TiercutError(f"--private-layers {private_layers} exceeds the model's {len(compute_nodes)} layers")
    for name in compute_nodes[:private_layers]:
        pinned.setdefault(name, src)
    constraints = Constraints(
        memory=memory,
        latency_budget_s=latency_budget,
        energy_source_budget_j=energy_budget,
        energy_total_budget_j=energy_total_budget,
        cost_budget=cost_budget,
        pinned=pinned,
    )
    compute_s = _load_compute_table(compute_table) if compute_table is not None else None
    provenance = None
    local = load_profile_file(profile) if profile is not None else None
    if measure_on is not None:
        if compute_table is not None:
            raise TiercutError("--measure-on measures the compute table; drop --compute-table")
        from tiercut.runtime.profiling import WorkersFile, measure_on_workers

        compute_s, provenance = measure_on_workers(
            model.spec, graph, environment, WorkersFile.load(measure_on), source=src,
            input_shape=_single_input_shape(model), local_profile=local,
        )
    return build_problem(
        graph,
        environment,
        source=src,
        objective=Objective.parse(objective or "latency"),
        constraints=constraints,
        compute_s=compute_s,
        profile=local,
        compute_provenance=provenance,
    )


def _single_input_shape(model: ModelRequest) -> tuple[int, ...] | None:
    """The one float32 input shape workers measure at (their Profile request carries one shape)."""
    if model.inputs is None:
        return None
    if len(model.inputs) != 1 or model.inputs[0].dtype != "float32" or model.inputs[0].name is not None:
        raise TiercutError("--measure-on takes one float32 input (--input-shape); workers measure single-input models")
    return model.inputs[0].shape


def placement_segments(problem: Problem, plan: Plan) -> list[tuple[str, str, str, int]]:
    """(first node, last node, device, count) for runs of consecutive non-input nodes on one device."""
    segments: list[tuple[str, str, str, int]] = []
    for node in problem.graph:
        if node.is_input:
            continue
        device = plan.placement[node.name]
        if segments and segments[-1][2] == device:
            first, _, _, count = segments[-1]
            segments[-1] = (first, node.name, device, count + 1)
        else:
            segments.append((node.name, node.name, device, 1))
    return segments


def _print_plan(problem: Problem, plan: Plan, baselines: dict[str, Plan]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if Console().is_terminal else 160)
    console.print(f"[bold]{problem.name}[/bold]: {plan.algorithm} placement (objective {problem.objective.describe()})")
    where = Table()
    for column in ("layers", "from", "to", "device", "tier"):
        where.add_column(column)
    for first, last, device, count in placement_segments(problem, plan):
        where.add_row(str(count), first, last, device, problem.device(device).tier)
    console.print(where)
    console.print("predicted figures (DESIGN.md cost model):")
    figures = Table()
    for column in ("plan", "latency", "source energy", "total energy", "cost", "feasible", "optimal", "latency speed-up"):
        figures.add_column(column, justify="left" if column == "plan" else "right")
    rows = {plan.algorithm: plan, **baselines}
    for label, p in rows.items():
        speedup = "-" if label == plan.algorithm else speedup_text(p, plan)
        figures.add_row(
            label,
            _human(p.latency_s, "s"),
            _human(p.energy_source_j, "J"),
            _human(p.energy_total_j, "J"),
            f"{p.cost:.4g}",
            "yes" if p.feasible else "NO",
            "yes" if p.optimal else "-",
            speedup,
        )
    console.print(figures)
    console.print(f"solved in {plan.solve_s * 1e3:.1f} ms; settings {dict(plan.settings)}")
    if plan.note:
        console.print(f"note: {plan.note}")
    for violation in plan.violations:
        console.print(f"[red]violation:[/red] {violation}")
    console.print("speed-up = baseline latency / plan latency")


def speedup_text(baseline: Plan, plan: Plan) -> str:
    """``baseline latency / plan latency`` as ``1.23x``, or why there is no finite figure."""
    if not math.isfinite(baseline.latency_s):
        return "- (baseline not evaluable)"
    if not math.isfinite(plan.latency_s):
        return "- (plan not evaluable)"
    if plan.latency_s <= 0:
        return "- (plan latency 0)"
    return f"{baseline.latency_s / plan.latency_s:.2f}x"


def _baselines(problem: Problem) -> dict[str, Plan]:
    from tiercut.plan import get_planner

    out: dict[str, Plan] = {}
    local = get_planner("local")
    if local.applicable(problem):
        out["local"] = local.solve(problem)
    planner = get_planner("all-on")  # the best server the source can reach, for the objective
    if planner.applicable(problem):
        out[f"all on {planner.target(problem)}"] = planner.solve(problem)
    return out


def _list_planners() -> None:
    from rich.console import Console
    from rich.table import Table

    from tiercut.plan import PLANNERS

    table = Table(title="planners (tiercut plan MODEL --algorithm NAME)")
    for column in ("name", "what", "guarantee", "complexity", "paper", "settings"):
        table.add_column(column)
    for name, cls in PLANNERS.items():
        settings = ", ".join(f"{k}={v!r}" for k, v in cls().get_params().items()) or "-"
        table.add_row(name, cls.summary, cls.guarantee, cls.complexity, cls.reference, settings)
    Console(width=None if Console().is_terminal else 200).print(table)


# ---------------------------------------------------------------- commands
ModelArg = Annotated[str | None, typer.Argument(help=MODEL_HELP)]
EnvOpt = Annotated[
    str | None,
    typer.Option(
        "--env", help="environment preset (tiercut env list) or YAML/JSON file (default three-tier; a problem JSON has its own)"
    ),
]
ObjectiveOpt = Annotated[
    str | None,
    typer.Option(help="latency (default) | energy_source | energy_total | cost | weighted:latency=1,energy_source=0.1"),
]
SourceOpt = Annotated[str | None, typer.Option(help="source device (default: the environment's first user's device)")]
ProfileOpt = Annotated[Path | None, typer.Option("--profile", help="a per-node profile file of this host (tiercut profile)")]
ComputeOpt = Annotated[
    Path | None, typer.Option("--compute-table", help="JSON node -> device -> seconds to use instead of the profiler")
]
MeasureOnOpt = Annotated[
    Path | None,
    typer.Option("--measure-on", help="workers.yaml: measure the model on these running workers (and the client here)"),
]
LatencyBudgetOpt = Annotated[float | None, typer.Option("--latency-budget", help="upper bound on latency (s)")]
EnergyBudgetOpt = Annotated[float | None, typer.Option("--energy-budget", help="upper bound on source-device energy (J)")]
EnergyTotalBudgetOpt = Annotated[float | None, typer.Option("--energy-total-budget", help="upper bound on total energy (J)")]
CostBudgetOpt = Annotated[float | None, typer.Option("--cost-budget", help="upper bound on monetary cost")]
PinOpt = Annotated[list[str] | None, typer.Option("--pin", help="NODE=DEVICE: the node must run there (repeatable)")]
PrivateOpt = Annotated[int, typer.Option("--private-layers", help="pin the first N layers to the source (privacy)")]
MemoryOpt = Annotated[bool, typer.Option("--memory/--no-memory", help="enforce the devices' memory limits")]


def plan(
    model: ModelArg = None,
    env: EnvOpt = None,
    algorithm: Annotated[str, typer.Option(help="planner name (see --list)")] = "ilp",
    objective: ObjectiveOpt = None,
    source: SourceOpt = None,
    input_shape: ShapeOpt = None,
    inputs: InputOpt = None,
    granularity: GranularityOpt = "module",
    leaf_module: LeafModuleOpt = None,
    open_module: OpenModuleOpt = None,
    allow_code: AllowCodeOpt = False,
    no_cache: NoCacheOpt = False,
    profile: ProfileOpt = None,
    compute_table: ComputeOpt = None,
    measure_on: MeasureOnOpt = None,
    latency_budget: LatencyBudgetOpt = None,
    energy_budget: EnergyBudgetOpt = None,
    energy_total_budget: EnergyTotalBudgetOpt = None,
    cost_budget: CostBudgetOpt = None,
    pin: PinOpt = None,
    private_layers: PrivateOpt = 0,
    memory: MemoryOpt = True,
    setting: Annotated[
        list[str] | None, typer.Option("--set", help="planner setting NAME=VALUE (repeatable), e.g. --set server=cloud")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print {problem, plan} JSON (DESIGN.md contract)")] = False,
    list_planners: Annotated[bool, typer.Option("--list", help="list the planners and exit")] = False,
) -> None:
    """Decide where every layer of MODEL runs in an environment, and predict latency, energy and cost."""
    from tiercut.plan import get_planner

    if list_planners:
        _list_planners()
        return
    if model is None:
        raise TiercutError("plan needs a MODEL (e.g. 'tiercut plan vgg16 --env three-tier'), or --list")
    settings = dict(_parse_setting(s) for s in setting or [])
    planner = get_planner(algorithm, **settings)
    request = model_request(
        model, input_shape=input_shape, inputs=inputs, granularity=granularity, leaf_modules=leaf_module,
        open_modules=open_module, allow_code=allow_code, no_cache=no_cache,
    )
    problem = build_cli_problem(
        request, env, objective=objective, source=source, profile=profile, compute_table=compute_table,
        latency_budget=latency_budget, energy_budget=energy_budget,
        energy_total_budget=energy_total_budget, cost_budget=cost_budget, pins=pin, private_layers=private_layers,
        memory=memory, measure_on=measure_on,
    )
    result = planner.solve(problem)
    if as_json:
        typer.echo(json.dumps({"problem": problem.to_dict(), "plan": result.to_dict()}, indent=1))
        return
    _print_plan(problem, result, _baselines(problem))


def compare_plans(problem: Problem, names: list[str] | None = None) -> dict[str, Plan]:
    """Every applicable registered planner (or ``names``) on ``problem``, with default settings."""
    from tiercut.plan import PLANNERS, get_planner

    out: dict[str, Plan] = {}
    for name in names or list(PLANNERS):
        planner = get_planner(name)
        if planner.applicable(problem):
            out[name] = planner.solve(problem)
    return out


def compare(
    model: Annotated[str, typer.Argument(help=MODEL_HELP)],
    env: EnvOpt = None,
    objective: ObjectiveOpt = None,
    source: SourceOpt = None,
    input_shape: ShapeOpt = None,
    inputs: InputOpt = None,
    granularity: GranularityOpt = "module",
    leaf_module: LeafModuleOpt = None,
    open_module: OpenModuleOpt = None,
    allow_code: AllowCodeOpt = False,
    no_cache: NoCacheOpt = False,
    profile: ProfileOpt = None,
    compute_table: ComputeOpt = None,
    measure_on: MeasureOnOpt = None,
    latency_budget: LatencyBudgetOpt = None,
    energy_budget: EnergyBudgetOpt = None,
    energy_total_budget: EnergyTotalBudgetOpt = None,
    cost_budget: CostBudgetOpt = None,
    pin: PinOpt = None,
    private_layers: PrivateOpt = 0,
    memory: MemoryOpt = True,
    algorithms: Annotated[
        str | None, typer.Option("--algorithms", help="comma-separated planner names (default: every applicable one)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print {problem, plans} JSON")] = False,
) -> None:
    """Run every applicable planner on MODEL in an environment and compare their plans side by side."""
    from rich.console import Console
    from rich.table import Table

    from tiercut.plan import PLANNERS

    names = None
    if algorithms:
        names = [a.strip() for a in algorithms.split(",") if a.strip()]
        for name in names:
            if name not in PLANNERS:
                raise TiercutError(f"planner {name!r} is not known; use one of {', '.join(PLANNERS)}")
    request = model_request(
        model, input_shape=input_shape, inputs=inputs, granularity=granularity, leaf_modules=leaf_module,
        open_modules=open_module, allow_code=allow_code, no_cache=no_cache,
    )
    problem = build_cli_problem(
        request, env, objective=objective, source=source, profile=profile, compute_table=compute_table,
        latency_budget=latency_budget, energy_budget=energy_budget,
        energy_total_budget=energy_total_budget, cost_budget=cost_budget, pins=pin, private_layers=private_layers,
        memory=memory, measure_on=measure_on,
    )
    plans = compare_plans(problem, names)
    if as_json:
        typer.echo(json.dumps({"problem": problem.to_dict(), "plans": {k: p.to_dict() for k, p in plans.items()}}, indent=1))
        return
    feasible = [p.objective_value for p in plans.values() if p.feasible]
    best = min(feasible) if feasible else None
    console = Console(width=None if Console().is_terminal else 200)
    console.print(f"[bold]{problem.name}[/bold]: every applicable planner (objective {problem.objective.describe()})")
    table = Table()
    for column in ("planner", "objective", "vs best", "latency", "source energy", "total energy", "cost", "devices",
                   "feasible", "optimal", "solve"):
        table.add_column(column, justify="left" if column in ("planner", "devices") else "right")
    for name, p in plans.items():
        ratio = f"{p.objective_value / best:.3f}" if best and p.feasible else "-"
        table.add_row(
            name, f"{p.objective_value:.5g}", ratio, _human(p.latency_s, "s"), _human(p.energy_source_j, "J"),
            _human(p.energy_total_j, "J"), f"{p.cost:.4g}", ",".join(sorted(set(p.placement.values()))),
            "yes" if p.feasible else "NO", "yes" if p.optimal else "-", _human(p.solve_s, "s"),
        )
    console.print(table)
    skipped = [n for n in (names or list(PLANNERS)) if n not in plans]
    if skipped:
        console.print(f"not applicable here: {', '.join(skipped)}")
