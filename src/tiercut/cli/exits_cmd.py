"""``tiercut exits add`` / ``tiercut exits show``, and ``--exits`` of ``tiercut plan``, ``run`` and ``simulate``.

``exits add`` trains a model's exit branches on scikit-learn's digits and
writes the exits file (JSON) with its weights beside it (safetensors);
``plan MODEL --exits FILE`` plans the model with its exits (Edgent by
default, or DDNN) under ``--latency-slo`` / ``--accuracy-min``;
``run MODEL --exits FILE`` runs that plan on gRPC workers with held-out
digits (measured exit rates, accuracy and latency against the plan's);
``simulate SCENARIO --exits FILE`` simulates it with per-query exits drawn
from the rates, in the scenario's environment, for its one user.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from tiercut.cli.model_opts import AllowCodeOpt
from tiercut.errors import TiercutError
from tiercut.graph.model_spec import check_code_allowed

#: planners that read exits; ``ilp`` / ``brute-force`` under --exits mean Edgent with that inner planner
EXIT_PLANNERS = ("edgent", "ddnn")


def parse_duration(text: str, option: str = "--latency-slo") -> float:
    """``50ms``, ``0.05s``, ``200us`` or a bare number of seconds -> seconds (> 0, finite)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ms|s|us|µs)?\s*", text or "")
    if not match:
        raise TiercutError(f"{option} {text!r} is not a duration; write e.g. 50ms, 0.05s or 200us")
    value = float(match.group(1)) * {"ms": 1e-3, "s": 1.0, "us": 1e-6, "µs": 1e-6, None: 1.0}[match.group(2)]
    if not (value > 0 and math.isfinite(value)):
        raise TiercutError(f"{option} {text!r} must be a duration > 0")
    return value


def exits_add(
    model: Annotated[str, typer.Argument(help="package.module:factory (e.g. tiercut.exits.models:digits_cnn) or a zoo name")],
    after: Annotated[str, typer.Option("--after", help="comma-separated layers to put an exit after (see 'tiercut graph')")],
    out: Annotated[Path, typer.Option("--out", "-o", help="exits file to write (JSON; weights beside it as .safetensors)")],
    input_shape: Annotated[str, typer.Option("--input-shape", help="1,1,8,8 / 1,1,32,32 / 1,3,32,32 (digits)")] = "1,1,8,8",
    rule: Annotated[str, typer.Option(help="confidence rule: entropy (BranchyNet) or max_softmax")] = "entropy",
    epochs: Annotated[int, typer.Option(help="training epochs over the digits")] = 12,
    seed: Annotated[int, typer.Option(help="seed of the split, the branch weights and the batch order")] = 0,
    accuracy_drop: Annotated[float, typer.Option(help="an exit may answer this much less accurately than the final exit")] = 0.01,
    trunk_gradient: Annotated[float, typer.Option(
        help="fraction of each branch's loss gradient reaching the shared trunk: 1 joint (BranchyNet), 0 detached "
             "branches (the final exit then trains exactly as the network without exits)")] = 1.0,
    allow_code: AllowCodeOpt = False,
) -> None:
    """Add exit branches to MODEL, train them jointly on digits (BranchyNet), measure and tune them."""
    from tiercut.exits.build import build_exit_model, save_exit_model
    from tiercut.exits.confidence import check_rule
    from tiercut.exits.train import TrainingSettings
    from tiercut.graph import parse_shape

    check_code_allowed(model, allow_code)
    check_rule(rule)
    points = [a.strip() for a in after.split(",") if a.strip()]
    if epochs < 1:
        raise TiercutError(f"--epochs {epochs} must be >= 1")
    if not 0.0 <= accuracy_drop <= 1.0:
        raise TiercutError(f"--accuracy-drop {accuracy_drop} must be within 0..1")
    if not 0.0 <= trunk_gradient <= 1.0:
        raise TiercutError(f"--trunk-gradient {trunk_gradient} must be within 0..1 (1: joint, 0: detached branches)")
    if not out.parent.is_dir():
        raise TiercutError(f"--out {out}: folder {out.parent} does not exist; create it first")
    exit_model, net = build_exit_model(model, parse_shape(input_shape), points, rule=rule,
                                       settings=TrainingSettings(epochs=epochs, seed=seed,
                                                                 trunk_gradient=None if trunk_gradient == 1.0
                                                                 else (trunk_gradient,) * len(points)),
                                       accuracy_drop=accuracy_drop)
    written = save_exit_model(exit_model, net, out)
    _print_exits(written)
    typer.echo(f"wrote {out} and {out.parent / str(written.weights_file)}")


def _print_exits(exit_model: Any) -> None:
    routing = exit_model.routing()
    base = exit_model.training.get("baseline_accuracy")
    typer.echo(f"{exit_model.model}: exits under {exit_model.rule} (accuracy of the same net without exits: "
               f"{'-' if base is None else f'{base:.4f}'})")
    typer.echo(f"{'exit':8} {'after':22} {'accuracy':>9} {'threshold':>10} {'exit rate':>10} {'acc. exiting':>13}")
    for e, rate, acc in zip(exit_model.exits, routing.exit_rates, routing.accuracy_when_exiting, strict=True):
        t = exit_model.thresholds.get(e.name)
        typer.echo(f"{e.name:8} {e.after:22} {e.accuracy:9.4f} {'-' if t is None else f'{t:.4g}':>10} {rate:10.3f} "
                   f"{'-' if acc is None else f'{acc:.4f}':>13}")
    typer.echo(f"overall accuracy with early exits: {routing.accuracy:.4f}")


def exits_show(file: Annotated[Path, typer.Argument(help="an exits file ('tiercut exits add')")]) -> None:
    """Show an exits file: each exit's accuracy, threshold, exit rate."""
    from tiercut.exits.types import load_exit_model

    _print_exits(load_exit_model(file))


def exit_problem_for(model: str, exits: Path, build: Any, *, latency_slo: str | None, accuracy_min: float | None) -> Any:
    """The :class:`~tiercut.exits.cost.ExitProblem` of MODEL with the exits of ``exits``: ``build(graph_path)``
    builds the problem the other CLI options describe from the exits file's graph."""
    from tiercut.exits.cost import ExitProblem
    from tiercut.exits.types import load_exit_model

    exit_model = load_exit_model(exits)
    if model not in (exit_model.model, str(exits)):
        raise TiercutError(f"exits file {exits} was made for model {exit_model.model!r}, not {model!r}; "
                           "pass that model or re-create the exits with 'tiercut exits add'")
    slo = None if latency_slo is None else parse_duration(latency_slo)
    if accuracy_min is not None and not 0.0 <= accuracy_min <= 1.0:
        raise TiercutError(f"--accuracy-min {accuracy_min} must be within 0..1, e.g. 0.95")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "graph-with-exits.json"
        path.write_text(json.dumps(exit_model.graph.to_dict()))
        problem = build(str(path))
    return ExitProblem.from_exit_model(problem, exit_model, latency_slo_s=slo, accuracy_min=accuracy_min)


def plan_exits(ep: Any, algorithm: str, settings: dict[str, Any], as_json: bool) -> None:
    """Plan an exit problem with Edgent or DDNN; print it (or its JSON). Exit 1 when nothing meets the limits."""
    result = exit_plan_for(ep, algorithm, settings)
    if as_json:
        typer.echo(json.dumps({"problem": ep.to_dict(), "plan": result.to_dict()}, indent=1))
    else:
        print_exit_plan(ep, result)
    if not result.feasible:
        raise typer.Exit(1)


def _ms(v: float) -> str:
    return "inf" if not math.isfinite(v) else f"{v * 1e3:.4g} ms"


def print_exit_plan(ep: Any, plan: Any) -> None:
    limits = []
    if ep.latency_slo_s is not None:
        limits.append(f"latency SLO {_ms(ep.latency_slo_s)}")
    if ep.accuracy_min is not None:
        limits.append(f"accuracy >= {ep.accuracy_min:.4f}")
    typer.echo(f"{ep.problem.name}: {plan.algorithm} with exits ({', '.join(limits) or 'no limits'}; "
               f"objective {ep.problem.objective.describe()})")
    if plan.candidates:
        typer.echo("accuracy-latency curve (each configuration the planner compared):")
        keys = list(plan.candidates[0])
        typer.echo("  " + "  ".join(f"{k:>14}" for k in keys))
        for row in plan.candidates:
            cells = []
            for k in keys:
                v = row[k]
                cells.append(_ms(v) if k == "latency_s" else f"{v:.4f}" if isinstance(v, float) else str(v))
            typer.echo("  " + "  ".join(f"{c:>14}" for c in cells))
    typer.echo(f"chosen: exits {' + '.join(plan.active)}; exit rates "
               f"{', '.join(f'{a} {r:.3f}' for a, r in zip(plan.active, plan.exit_rates, strict=True))}")
    devices: dict[str, int] = {}
    for n, d in plan.placement.items():
        if not ep.problem.graph[n].is_input:
            devices[d] = devices.get(d, 0) + 1
    typer.echo(f"layers per device: {', '.join(f'{d} {c}' for d, c in devices.items())}")
    typer.echo(f"expected latency {_ms(plan.latency_s)} (worst {_ms(plan.worst_latency_s)}), accuracy {plan.accuracy:.4f}, "
               f"source energy {plan.energy_source_j * 1e3:.4g} mJ, feasible {'yes' if plan.feasible else 'NO'}, "
               f"optimal {'yes' if plan.optimal else '-'}")
    if plan.note:
        typer.echo(f"note: {plan.note}")
    for v in plan.violations:
        typer.echo(f"violation: {v}")


def exit_plan_for(ep: Any, algorithm: str, settings: dict[str, Any] | None = None) -> Any:
    """Plan an exit problem with Edgent (``edgent``, or ``ilp`` / ``brute-force`` as its inner planner) or DDNN."""
    from tiercut.plan import get_planner

    settings = dict(settings or {})
    if algorithm in ("ilp", "brute-force"):
        settings = {"inner": algorithm, **settings}
        algorithm = "edgent"
    if algorithm not in EXIT_PLANNERS:
        raise TiercutError(f"--exits plans with {' or '.join(EXIT_PLANNERS)}, not {algorithm!r}; use --algorithm edgent")
    return get_planner(algorithm, **settings).solve(ep)


def _feasible_or_exit(ep: Any, plan: Any) -> None:
    if not plan.feasible:
        print_exit_plan(ep, plan)
        typer.echo("nothing to run: no plan meets the limits (see the violations above)", err=True)
        raise typer.Exit(1)


def run_with_exits(
    model: str,
    exits: Path,
    env: str,
    *,
    algorithm: str,
    latency_slo: str | None,
    accuracy_min: float | None,
    source: str | None,
    profile: Path | None,
    compute_table: Path | None,
    queries: int,
    rate: float | None,
    addresses: dict[str, str] | None,
    credentials: Any,
    insecure: bool,
    emulate_links: bool,
    bandwidth_scale: float,
    max_run_s: float,
    as_json: bool,
    out: Path | None,
) -> None:
    """``tiercut run MODEL --exits FILE``: plan with exits, run on workers with held-out digits, report planned
    vs measured (exit rates, accuracy, latency)."""
    from tiercut.cli.options import emit_json
    from tiercut.cli.plan_cmd import build_cli_problem
    from tiercut.exits.build import load_net
    from tiercut.exits.deploy import run_exit_plan
    from tiercut.exits.types import load_exit_model
    from tiercut.pipeline.model import ModelRequest

    if queries < 1:
        raise TiercutError(f"--queries {queries} must be >= 1")
    if out is not None:
        from tiercut.cli.checks import check_output_path

        check_output_path(out, "--out")
    credentials.check_readable()
    if addresses is not None and credentials.token and not credentials.uses_tls and not insecure:
        from tiercut.runtime.worker import is_loopback, parse_address

        remote = [a for a in addresses.values() if not is_loopback(parse_address(a)[0])]
        if remote:
            raise TiercutError(f"the token would travel in clear to {remote[0]}; pass --tls-cert/--tls-key/--tls-ca, "
                               "or --insecure on a trusted network")

    def build(graph_path: str) -> Any:
        return build_cli_problem(ModelRequest(spec=graph_path), env, objective=None, source=source, profile=profile,
                                 compute_table=compute_table)

    ep = exit_problem_for(model, exits, build, latency_slo=latency_slo, accuracy_min=accuracy_min)
    exit_model = load_exit_model(exits)
    net = load_net(exit_model, exits)
    plan = exit_plan_for(ep, algorithm)
    _feasible_or_exit(ep, plan)
    environment = None
    if emulate_links:
        from tiercut.env import load_environment

        environment = load_environment(env)
    report, result = run_exit_plan(
        exit_model, net, ep, plan, addresses=addresses, credentials=credentials, environment=environment,
        env_spec=env if emulate_links else None, queries=queries, rate_hz=rate, bandwidth_scale=bandwidth_scale,
        max_run_s=max_run_s, log=None if as_json else (lambda line: typer.echo(line, err=True)),
    )
    data = {"plan": plan.to_dict(), "measured": report.to_dict(),
            "run": {k: v for k, v in result.to_dict().items() if k != "uploads"}}
    if out is not None:
        emit_json(data, out)
    if as_json:
        if out is None:
            emit_json(data, None)
        return
    typer.echo(f"{exit_model.model}: {plan.algorithm} plan with exits {' + '.join(plan.active)} on workers "
               f"({', '.join(sorted({d for d in plan.placement.values()}))}), held-out digits")
    for line in report.lines():
        typer.echo("  " + line)


def simulate_with_exits(scenario: Path, exits: Path, *, allow_code: bool, as_json: bool) -> None:
    """``tiercut simulate SCENARIO --exits FILE``: the scenario's environment and its one user (device,
    arrivals, ``max_queries``, ``upload.offloading`` as the exit planner: ``edgent``/``ilp``/``brute-force`` or
    ``ddnn``; any other: ``edgent``), the exits file's model; queries draw their exit from the plan's rates."""
    import numpy as np

    from tiercut.env import load_environment
    from tiercut.exits.cost import ExitProblem, evaluate_expected
    from tiercut.exits.simulate import simulate_exits
    from tiercut.exits.types import load_exit_model
    from tiercut.problem import build_problem
    from tiercut.sim.scenario import load_scenario

    exit_model = load_exit_model(exits)
    loaded = load_scenario(scenario, allow_code=allow_code)
    spec = loaded.spec
    if spec.environment is None:
        raise TiercutError(f"scenario {scenario} names no environment; --exits simulates in the scenario's environment")
    candidate = loaded.path(spec.environment)
    env = load_environment(str(candidate) if candidate.exists() else spec.environment)
    users = spec.users
    if users is not None and len(users) != 1:
        raise TiercutError(f"scenario {scenario} has {len(users)} users; --exits simulates one user's exit plan, "
                           "list exactly one")
    user = users[0] if users else None
    if user is not None and user.model is not None and user.model not in (exit_model.model, str(exits)):
        raise TiercutError(f"scenario {scenario}'s user runs model {user.model!r}, but exits file {exits} was made "
                           f"for {exit_model.model!r}; use the same model")
    device = user.device if user is not None else None
    arrivals = user.arrivals if user is not None else None
    if arrivals is not None and arrivals.kind not in ("back-to-back", "poisson"):
        raise TiercutError(f"--exits simulates back-to-back or poisson arrivals, not {arrivals.kind!r}")
    rate = arrivals.rate_hz if arrivals is not None and arrivals.kind == "poisson" else None
    n_queries = (user.max_queries if user is not None else None) or 1000
    offloading = spec.upload.offloading
    algorithm = offloading if offloading in (*EXIT_PLANNERS, "ilp", "brute-force") else "edgent"
    ep = ExitProblem.from_exit_model(build_problem(exit_model.graph, env, source=device), exit_model)
    plan = exit_plan_for(ep, algorithm)
    _feasible_or_exit(ep, plan)
    simulated = simulate_exits(ep, plan.placement, plan.active, n_queries=n_queries, rate_hz=rate, seed=spec.seed)
    ev = evaluate_expected(ep, plan.placement, plan.active)
    rates = [sum(q.exit == a for q in simulated) / len(simulated) for a in plan.active]
    lat = np.array([q.latency_s for q in simulated])
    data = {"plan": plan.to_dict(), "simulated": {
        "queries": len(simulated), "exit_rates": rates, "mean_latency_s": float(lat.mean()),
        "p95_latency_s": float(np.percentile(lat, 95)), "rate_hz": rate,
        "planned_exit_rates": list(ev.exit_rates), "expected_latency_s": ev.latency_s}}
    if as_json:
        typer.echo(json.dumps(data, indent=1))
        return
    typer.echo(f"{scenario.name} with exits of {exit_model.model}: {plan.algorithm}, exits {' + '.join(plan.active)}, "
               f"{len(simulated)} queries ({'back to back' if rate is None else f'Poisson {rate:g}/s'})")
    for a, p, m in zip(plan.active, ev.exit_rates, rates, strict=True):
        typer.echo(f"  {a:8} planned rate {p:.3f}  simulated {m:.3f}")
    typer.echo(f"  latency expected {_ms(ev.latency_s)}, simulated mean {_ms(float(lat.mean()))}, "
               f"p95 {_ms(float(np.percentile(lat, 95)))}; accuracy {ev.accuracy:.4f}")


__all__ = ["EXIT_PLANNERS", "exit_plan_for", "exit_problem_for", "exits_add", "exits_show", "parse_duration", "plan_exits",
           "run_with_exits", "simulate_with_exits"]
