"""``tiercut plan`` and ``tiercut compare``: where every layer of a model should run.

Thin wrappers over :mod:`tiercut.pipeline`: parse the options, build the
problem (:func:`~tiercut.pipeline.problem`, or
:func:`~tiercut.pipeline.multi_user_problem` with ``--users``), plan
(:func:`~tiercut.pipeline.plan` / :func:`~tiercut.pipeline.compare`), print
a table or the JSON contract.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from tiercut.cli.checks import check_finite, check_output_path
from tiercut.cli.model_opts import DEFAULT_MODEL_OPTIONS, MODEL_HELP, ModelOptions
from tiercut.cli.options import (
    AccuracyLossMaxOpt,
    ComputeOpt,
    CutCompressionOpt,
    EnvOpt,
    JsonOpt,
    OutJsonOpt,
    PreprocessOpt,
    ProfileOpt,
    QuietOpt,
    SourceOpt,
    alias,
    cut_compression_codecs,
    emit_json,
    option_group,
    progress_for,
)
from tiercut.errors import TiercutError
from tiercut.graph.model_spec import ModelRequest
from tiercut.plan.base import DEFAULT_PLANNER
from tiercut.problem import MultiPlan, MultiUserProblem, Plan, Problem


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


def build_cli_problem(
    model: ModelRequest | str,
    env: str | None,
    *,
    objective: str | None,
    source: str | None,
    profile: Path | None,
    compute_table: Path | None,
    latency_budget: float | None = None,
    energy_budget: float | None = None,
    energy_total_budget: float | None = None,
    cost_budget: float | None = None,
    pins: list[str] | None = None,
    private_layers: int = 0,
    memory: bool = True,
    measure_on: Path | None = None,
    progress: Any = None,
    preprocess: str | None = None,
) -> Problem:
    """The problem the CLI options describe: the options checked and parsed, then :func:`tiercut.pipeline.problem`.

    ``model``: the :class:`ModelRequest` of the command's model options (a layer graph or problem JSON
    included: a problem JSON without ``env`` is planned as it is, see :func:`tiercut.pipeline.problem`).
    """
    from tiercut.pipeline import SILENT, problem
    from tiercut.pipeline.model import model_request as request_of

    request = request_of(model)
    for option, value in (
        ("--latency-budget", latency_budget),
        ("--energy-budget", energy_budget),
        ("--energy-total-budget", energy_total_budget),
        ("--cost-budget", cost_budget),
    ):
        check_finite(option, value)  # the range is the constraints' to check
    if private_layers < 0:
        raise TiercutError(f"--private-layers {private_layers} must be >= 0")
    return problem(
        request, env, objective=objective, source=source, profile=profile, compute_s=compute_table,
        measure_on=measure_on, latency_budget_s=latency_budget,
        energy_budget_j=energy_budget, energy_total_budget_j=energy_total_budget, cost_budget=cost_budget,
        pins=_parse_pins(pins), private_layers=private_layers, memory=memory, progress=progress or SILENT,
        preprocess=preprocess,
    )


def _multi_problem(
    users: Path, model: str | None, env: str | None, *, objective: str | None, aggregate: str, granularity: str,
    profile: Path | None, memory: bool, progress: Any, single_user_options: dict[str, Any], allow_code: bool = False,
) -> MultiUserProblem:
    """The multi-user problem of ``--users FILE`` (MODEL, when given, is the model of users naming none)."""
    from tiercut.pipeline import multi_user_problem
    from tiercut.pipeline.model import check_granularity

    given = [name for name, value in single_user_options.items() if value not in (None, 0, [], False)]
    if given:
        raise TiercutError(f"{given[0]} applies to a single-user problem; drop it, or drop --users")
    check_granularity(granularity)
    if aggregate not in ("mean", "max"):
        raise TiercutError(f"--aggregate {aggregate!r} is not known; use mean or max")
    return multi_user_problem(
        env or "three-tier", users, objective=objective or "latency", aggregate=aggregate, granularity=granularity,
        profile=profile, memory=memory, default_model=model, allow_code=allow_code, progress=progress,
    )


def speedup_text(baseline: Plan, plan: Plan) -> str:
    """How ``baseline``'s latency compares with ``plan``'s, said from the baseline's side.

    ``8.84x slower`` when the baseline takes 8.84 times the plan's latency,
    ``2.00x faster`` when it takes half of it, ``same`` within 0.5 %; or why
    there is no finite figure.
    """
    if not math.isfinite(baseline.latency_s):
        return "- (baseline not evaluable)"
    if not math.isfinite(plan.latency_s):
        return "- (plan not evaluable)"
    if plan.latency_s <= 0 or baseline.latency_s <= 0:
        return "- (latency 0)"
    ratio = baseline.latency_s / plan.latency_s  # > 1: the baseline takes longer than the plan
    if abs(ratio - 1.0) <= 0.005:
        return "same"
    if ratio > 1.0:
        return f"{ratio:.2f}x slower"
    return f"{1.0 / ratio:.2f}x faster"


def _console(width: int = 160) -> Any:
    from rich.console import Console

    return Console(width=None if Console().is_terminal else width)


def _print_plan(problem: Problem, plan: Plan, baselines: dict[str, Plan]) -> None:
    from rich.table import Table

    from tiercut.pipeline import placement_segments

    console = _console()
    console.print(f"[bold]{problem.name}[/bold]: {plan.algorithm} placement (objective {problem.objective.describe()})")
    where = Table()
    for column in ("layers", "from", "to", "device", "tier"):
        where.add_column(column)
    for first, last, device, count in placement_segments(problem, plan):
        where.add_row(str(count), first, last, device, problem.device(device).tier)
    console.print(where)
    console.print("predicted figures (docs/cost-model.md):")
    figures = Table()
    for column in ("plan", "latency", "source energy", "total energy", "cost", "throughput", "feasible", "optimal",
                   "latency vs plan"):
        figures.add_column(column, justify="left" if column == "plan" else "right")
    rows = {plan.algorithm: plan, **baselines}
    for label, p in rows.items():
        speedup = "-" if label == plan.algorithm else speedup_text(p, plan)
        figures.add_row(
            label, _human(p.latency_s, "s"), _human(p.energy_source_j, "J"), _human(p.energy_total_j, "J"),
            f"{p.cost:.4g}", _qps(p), "yes" if p.feasible else "NO", "yes" if p.optimal else "-", speedup,
        )
    console.print(figures)
    console.print(f"solved in {plan.solve_s * 1e3:.1f} ms; settings {dict(plan.settings)}")
    for stage in getattr(plan, "stages", ()):  # tiled stages of a spatial plan
        geometry = stage.geometry(problem)
        tiles = ", ".join(f"{t.device} {t.region.to_list()}" for t in stage.tiles)
        console.print(f"tiled stage: layers {geometry.names[0]}..{geometry.output_name}, home {stage.home}: {tiles}")
    if plan.cut_compression:
        sent = ", ".join(f"{node}: {codec}" for node, codec in plan.cut_compression.items())
        console.print(f"cut compression (JALAD): {sent}; accuracy loss {plan.accuracy_loss:.3g}")
    if plan.note:
        console.print(f"note: {plan.note}")
    for violation in plan.violations:
        console.print(f"[red]violation:[/red] {violation}")
    console.print(f"latency vs plan: each baseline's latency next to the {plan.algorithm} plan's")
    if plan.pipeline_stages and math.isfinite(plan.bottleneck_s):
        stage = max(plan.pipeline_stages, key=lambda k: plan.pipeline_stages[k])
        console.print(f"throughput: queries per second of a pipelined stream, 1 / the bottleneck stage "
                      f"(here {stage}, {_human(plan.bottleneck_s, 's')} per query; docs/cost-model.md)")


def _qps(plan: Plan) -> str:
    """The plan's pipelined throughput in queries per second ('-' when it has no stage figures)."""
    if not plan.pipeline_stages or not math.isfinite(plan.bottleneck_s):
        return "-"
    return f"{plan.throughput_qps:.4g}/s"


def _check_allocation(allocation: str | None, multi_user: bool, algorithm: str) -> None:
    """``--allocation``'s value against the other options (one-line errors)."""
    if allocation is None:
        return
    if allocation not in ("equal", "optimal"):
        raise TiercutError(f"--allocation {allocation!r} is not known; use equal or optimal")
    if not multi_user:
        raise TiercutError("--allocation shares servers and links among users; give --users FILE (or drop it)")
    if allocation == "equal" and algorithm == "jmdp":
        raise TiercutError("jmdp plans the optimal shares with the placements; use --allocation optimal or another planner")


def _print_multi_plan(problem: MultiUserProblem, plan: MultiPlan) -> None:
    from rich.table import Table

    from tiercut.pipeline import placement_segments

    console = _console()
    console.print(
        f"[bold]{problem.name}[/bold]: {plan.algorithm} placement of {len(problem.users)} users "
        f"({'optimal resource shares' if plan.shares is not None else 'equal-share model'}, objective "
        f"{problem.objective.describe()} over users, {problem.objective.aggregate})"
    )
    table = Table()
    for column in ("user", "source", "placement (layers on device, in order)", "latency", "source energy", "cost"):
        table.add_column(column, justify="right" if column in ("latency", "source energy", "cost") else "left")
    for user in problem.users:
        segments = placement_segments(user.problem, plan.placements[user.name])
        where = " -> ".join(f"{count} on {device}" for _, _, device, count in segments)
        figures = plan.users[user.name]
        table.add_row(user.name, user.problem.source, where, _human(figures.latency_s, "s"),
                      _human(figures.energy_source_j, "J"), f"{figures.cost:.4g}")
    console.print(table)
    console.print(
        f"mean latency {_human(plan.latency_mean_s, 's')}, max {_human(plan.latency_max_s, 's')}; "
        f"objective {plan.objective_value:.5g}; feasible {'yes' if plan.feasible else 'NO'}; "
        f"solved in {plan.solve_s * 1e3:.1f} ms"
    )
    if plan.note:
        console.print(f"note: {plan.note}")
    for violation in plan.violations:
        console.print(f"[red]violation:[/red] {violation}")


def _list_planners() -> None:
    from rich.table import Table

    from tiercut.plan import PLANNERS

    table = Table(title="planners (tiercut plan MODEL --algorithm NAME)")
    for column in ("name", "what", "guarantee", "complexity", "paper", "multi-user", "settings"):
        table.add_column(column)
    for name, cls in PLANNERS.items():
        settings = ", ".join(f"{k}={v!r}" for k, v in cls().get_params().items()) or "-"
        table.add_row(name, cls.summary, cls.guarantee, cls.complexity, cls.reference,
                      "yes" if cls.multi_user else "-", settings)
    _console(200).print(table)


# ---------------------------------------------------------------- commands
ModelArg = Annotated[str | None, typer.Argument(help=MODEL_HELP)]
ObjectiveOpt = Annotated[
    str | None,
    typer.Option(
        help="latency (default; a problem JSON keeps its own) | energy_source | energy_total | cost | "
        "weighted:latency=1,energy_source=0.1 | throughput (a stream of queries: minimise the bottleneck stage)"
    ),
]
MeasureOnOpt = Annotated[
    Path | None,
    typer.Option("--measure-on", help="workers.yaml: measure the model on these running workers (and the client here)"),
]
LatencyBudgetOpt = Annotated[float | None, typer.Option("--latency-budget", help="upper bound on latency (s)")]
LatencyMaxOpt = Annotated[
    float | None,
    typer.Option("--latency-max-s", help="latency bound (s) of each query, e.g. with --objective throughput "
                 "(the same constraint as --latency-budget)"),
]
EnergyBudgetOpt = Annotated[float | None, typer.Option("--energy-budget", help="upper bound on source-device energy (J)")]
EnergyTotalBudgetOpt = Annotated[float | None, typer.Option("--energy-total-budget", help="upper bound on total energy (J)")]
CostBudgetOpt = Annotated[float | None, typer.Option("--cost-budget", help="upper bound on monetary cost")]
PinOpt = Annotated[list[str] | None, typer.Option("--pin", help="NODE=DEVICE: the node must run there (repeatable)")]
PrivateOpt = Annotated[int, typer.Option("--private-layers", help="pin the first N layers to the source (privacy)")]
MemoryOpt = Annotated[bool, typer.Option("--memory/--no-memory", help="enforce the devices' memory limits")]
UsersOpt = Annotated[
    Path | None,
    typer.Option("--users", help="users YAML/JSON (name, device, model, query_rate_hz): plan them jointly (multi-user)"),
]
AggregateOpt = Annotated[str, typer.Option("--aggregate", help="with --users: users' latencies combine by mean or max")]


@dataclass(frozen=True)
class ProblemOptions:
    """The options ``plan`` and ``compare`` share: the environment, the compute times, the constraints, the users.

    :meth:`problem` builds the problem they and the model options describe
    (one model, or with ``--users`` several users' models planned jointly).
    """

    env: EnvOpt = None
    objective: ObjectiveOpt = None
    source: SourceOpt = None
    profile: ProfileOpt = None
    compute_table: ComputeOpt = None
    measure_on: MeasureOnOpt = None
    latency_budget: LatencyBudgetOpt = None
    energy_budget: EnergyBudgetOpt = None
    energy_total_budget: EnergyTotalBudgetOpt = None
    cost_budget: CostBudgetOpt = None
    pin: PinOpt = None
    private_layers: PrivateOpt = 0
    memory: MemoryOpt = True
    users: UsersOpt = None
    aggregate: AggregateOpt = "mean"
    latency_max_s: LatencyMaxOpt = None

    def latency_bound(self) -> float | None:
        """``--latency-budget`` or its name for throughput plans ``--latency-max-s`` (not both)."""
        if self.latency_max_s is not None and self.latency_budget is not None:
            raise TiercutError("--latency-max-s and --latency-budget are the same bound; give one of them")
        return self.latency_budget if self.latency_max_s is None else self.latency_max_s

    def single_user(self, model: ModelRequest | str, progress: Any = None, preprocess: str | None = None) -> Problem:
        """The one-model problem of ``model`` (:func:`build_cli_problem`)."""
        return build_cli_problem(
            model, self.env, objective=self.objective, source=self.source, profile=self.profile,
            compute_table=self.compute_table, latency_budget=self.latency_bound(), energy_budget=self.energy_budget,
            energy_total_budget=self.energy_total_budget, cost_budget=self.cost_budget, pins=self.pin,
            private_layers=self.private_layers, memory=self.memory, measure_on=self.measure_on, progress=progress,
            preprocess=preprocess,
        )

    def problem(
        self, model: str | None, model_options: ModelOptions, progress: Any, preprocess: str | None = None
    ) -> Problem | MultiUserProblem:
        """MODEL's problem, or with ``--users`` the users' multi-user problem (MODEL: the model of users naming none)."""
        if self.users is None:
            return self.single_user(model_options.request(model), progress, preprocess)  # type: ignore[arg-type]
        single_user_options = {
            "--source": self.source, **model_options.given(), "--compute-table": self.compute_table,
            "--measure-on": self.measure_on, "--latency-budget": self.latency_budget, "--latency-max-s": self.latency_max_s,
            "--energy-budget": self.energy_budget, "--energy-total-budget": self.energy_total_budget,
            "--cost-budget": self.cost_budget, "--pin": self.pin, "--private-layers": self.private_layers,
        }
        return _multi_problem(
            self.users, model, self.env, objective=self.objective, aggregate=self.aggregate,
            granularity=model_options.granularity, profile=self.profile, memory=self.memory, progress=progress,
            allow_code=model_options.allow_code, single_user_options=single_user_options,
        )


DEFAULT_PROBLEM_OPTIONS = ProblemOptions()


@option_group("problem_options", ProblemOptions)
@option_group("model_options", ModelOptions)
def plan(
    model: ModelArg = None,
    algorithm: Annotated[str, typer.Option("--algorithm", help="planner name (see --list)")] = DEFAULT_PLANNER,
    problem_options: ProblemOptions = DEFAULT_PROBLEM_OPTIONS,
    model_options: ModelOptions = DEFAULT_MODEL_OPTIONS,
    setting: Annotated[
        list[str] | None, typer.Option("--set", help="planner setting NAME=VALUE (repeatable), e.g. --set server=cloud")
    ] = None,
    as_json: JsonOpt = False,
    out: OutJsonOpt = None,
    quiet: QuietOpt = False,
    list_planners: Annotated[bool, typer.Option("--list", help="list the planners and exit")] = False,
    spatial: Annotated[
        str, typer.Option("--spatial", help="auto: also try tiling a conv/pool stack over several devices; off: layers only")
    ] = "off",
    max_tiles: Annotated[int, typer.Option("--max-tiles", help="with --spatial auto: at most N tiles (devices) per stack")] = 6,
    exits: Annotated[Path | None, typer.Option("--exits", help="exits file ('tiercut exits add'): plan with early exits")] = None,
    latency_slo: Annotated[str | None, typer.Option("--latency-slo", help="with --exits: latency requirement, e.g. 50ms")] = None,
    accuracy_min: Annotated[float | None, typer.Option("--accuracy-min", help="with --exits: accuracy floor, e.g. 0.95")] = None,
    preprocess: PreprocessOpt = None,
    cut_compression: CutCompressionOpt = None,
    accuracy_loss_max: AccuracyLossMaxOpt = None,
    variants: Annotated[
        Path | None,
        typer.Option("--variants", help="variants file: choose the model variant and its placement under the budgets "
                     "and its accuracy_min (MCDNN; --algorithm is the exact inner planner, ilp or brute-force)"),
    ] = None,
    models: Annotated[
        str | None, typer.Option("--models", help="several models planned jointly on shared devices, e.g. a,b "
                                 "(with --rates; objective throughput or latency; joint planners joint-ilp, "
                                 "independent, joint-brute-force)")
    ] = None,
    rates: Annotated[
        str | None, typer.Option("--rates", help="with --models: each model's queries per second, e.g. 10,5")
    ] = None,
    allocation: Annotated[
        str | None,
        typer.Option("--allocation", help="with --users: equal (each of n users gets 1/n of a shared server or link) "
                     "or optimal (the optimal shares for the plan's placements; jmdp plans them jointly)"),
    ] = None,
) -> None:
    """Decide where every layer of MODEL runs in an environment, and predict latency, energy and cost.

    With --users FILE the users' models are planned jointly over shared devices (multi-user planners:
    pso, ga, sa, greedy, best-response, jmdp). With --models a,b --rates x,y several models share the devices under
    the shared-capacity model (docs/cost-model.md "Several DNNs").
    """
    from tiercut.pipeline import baselines, warm_imports
    from tiercut.pipeline import plan as plan_step
    from tiercut.plan import get_planner

    if list_planners:
        _list_planners()
        return
    opts = problem_options
    if variants is not None:  # MCDNN (issue 19): the variants file names the models
        from tiercut.cli.variants_cmd import plan_from_cli

        given = (("MODEL", model), ("--users", opts.users), ("--spatial auto", spatial == "auto"), ("--exits", exits),
                 ("--preprocess", preprocess), ("--cut-compression", cut_compression), ("--set", setting),
                 ("--accuracy-min", accuracy_min), ("--latency-slo", latency_slo), ("--models", models),
                 ("--allocation", allocation))
        plan_from_cli(variants, algorithm, opts, model_options, as_json, out, progress_for(quiet), given)
        return
    if models is not None or rates is not None:
        _plan_models(model, models, rates, algorithm, settings=[*(setting or [])], problem_options=opts,
                      model_options=model_options, as_json=as_json, out=out, quiet=quiet,
                      others={"--users": opts.users, "--spatial auto": spatial == "auto", "--exits": exits,
                              "--preprocess": preprocess, "--cut-compression": cut_compression,
                              "--allocation": allocation, "--variants": variants})
        return
    if model is None and opts.users is None:
        raise TiercutError("plan needs a MODEL (e.g. 'tiercut plan vgg16 --env three-tier'), --users FILE, or --list")
    if out is not None:
        check_output_path(out, "--out")
    settings = dict(_parse_setting(s) for s in setting or [])
    if spatial not in ("auto", "off"):
        raise TiercutError(f"--spatial {spatial!r} is not known; use auto or off")
    if max_tiles < 1:
        raise TiercutError(f"--max-tiles {max_tiles} must be >= 1")
    if spatial == "auto" and opts.users is not None:
        raise TiercutError("--spatial auto tiles one model's conv stacks; drop --users (or --spatial)")
    if spatial == "auto" and exits is not None:
        raise TiercutError("--spatial auto and --exits are separate plans for now; drop one of them")
    combined = (("--users", opts.users), ("--spatial auto", spatial == "auto"), ("--exits", exits))
    conflict = next((option for option, given in combined if given), None)
    if preprocess is not None:
        from tiercut.preprocess import parse_steps

        parse_steps(preprocess)
        for option, given in combined:
            if given:
                raise TiercutError(f"--preprocess contracts one model's graph; drop {option} (or --preprocess)")
    cut_codecs = cut_compression_codecs(cut_compression, accuracy_loss_max, conflict)
    if exits is not None:  # early exits (issue 15): the graph and the planners come from tiercut.exits
        from tiercut.cli import exits_cmd

        def build(graph_path: str) -> Problem:
            return opts.single_user(ModelRequest(spec=graph_path, granularity=model_options.granularity))

        ep = exits_cmd.exit_problem_for(model, exits, build, latency_slo=latency_slo, accuracy_min=accuracy_min)
        exits_cmd.plan_exits(ep, algorithm, settings, as_json)
        return
    if latency_slo is not None or accuracy_min is not None:
        raise TiercutError("--latency-slo and --accuracy-min choose among exits; give the exits with --exits FILE")
    get_planner(algorithm, **settings)  # a bad name or setting fails before any model work
    _check_allocation(allocation, opts.users is not None, algorithm)
    progress = progress_for(quiet)
    # the model's own graph first: cut compression is measured on it, then the graph is contracted (merge keeps the
    # optimum with compression too: tiercut.preprocess.merge bounds each transfer over its codecs)
    problem = problem_options.problem(model, model_options, progress)
    if cut_compression is not None and isinstance(problem, Problem):  # JALAD: measure the cut tensors' codecs
        from tiercut.pipeline.cut_compression import attach_cut_compression

        mode = cut_compression if cut_codecs is not None else "off"
        request = model_options.request(model)  # type: ignore[arg-type]
        problem = attach_cut_compression(problem, request, mode, accuracy_loss_max=accuracy_loss_max, progress=progress)
    if preprocess is not None and isinstance(problem, Problem):
        problem = _preprocess_with_note(problem, preprocess, algorithm, settings, progress)
    if spatial == "auto":  # the model's fused conv/pool stacks, for the spatial planner to tile
        from tiercut.graph import parse_shape
        from tiercut.spatial.tiles import attach_stacks

        shape = model_options.input_shape
        problem = attach_stacks(problem, model, parse_shape(shape) if shape else None)  # type: ignore[arg-type]
    warm_imports()
    if spatial == "auto":
        result = plan_step(problem, "spatial", progress=progress, base=algorithm, max_tiles=max_tiles,
                           base_settings=settings or None)  # fmt: skip
    else:
        result = plan_step(problem, algorithm, progress=progress, **settings)
    if allocation == "optimal" and isinstance(problem, MultiUserProblem) and result.shares is None:  # type: ignore[union-attr]
        from tiercut.plan.jmdp import with_optimal_allocation

        result = with_optimal_allocation(problem, result)  # type: ignore[arg-type]
    payload = {"problem": problem.to_dict(), "plan": result.to_dict()}
    if out is not None:
        emit_json(payload, out)
    if as_json:
        if out is None:
            emit_json(payload, None)
        return
    if isinstance(problem, MultiUserProblem):
        _print_multi_plan(problem, result)  # type: ignore[arg-type]
    else:
        _print_plan(problem, result, baselines(problem))  # type: ignore[arg-type]


#: ``plan --preprocess`` measures the optimality a non-exact step lost by also planning the full graph up to this size
LOSS_CHECK_MAX_NODES = 2000


def _preprocess_with_note(problem: Problem, steps: str, algorithm: str, settings: dict, progress: Any) -> Problem:
    """``problem`` contracted by ``steps``, with one stderr line: nodes before/after per step and, for a step that
    may lose optimality, the loss measured by planning the full graph with the same planner (graphs up to
    :data:`LOSS_CHECK_MAX_NODES` nodes)."""
    from tiercut.cli.options import warn
    from tiercut.plan import plan as solve
    from tiercut.preprocess import parse_steps
    from tiercut.preprocess import preprocess as preprocess_problem

    with progress.step(f"preprocessing {len(problem.graph)} nodes: {steps}"):
        result = preprocess_problem(problem, parse_steps(steps))
    reduced = result.problem or problem
    note = result.summary()
    if result.exact:
        typer.echo(f"tiercut: --preprocess: {note}; the optimum is kept", err=True)
        return reduced
    if len(problem.graph) > LOSS_CHECK_MAX_NODES:
        warn(f"--preprocess: {note}; loss not measured (over {LOSS_CHECK_MAX_NODES} nodes)")
        return reduced
    with progress.step("measuring the optimality preprocessing lost"):
        before = float(solve(problem, algorithm, **settings).objective_value)
        after = float(solve(reduced, algorithm, **settings).objective_value)
    loss = after - before
    relative = f" ({loss / before:+.2%})" if before not in (0.0, float("inf")) and math.isfinite(before) else ""
    warn(f"--preprocess: {note}; objective {before:.6g} -> {after:.6g} with {algorithm}, loss {loss:.3g}{relative}")
    return reduced


def _plan_models(
    model: str | None, models: str | None, rates: str | None, algorithm: str, *, settings: list[str],
    problem_options: ProblemOptions, model_options: ModelOptions, as_json: bool, out: Path | None, quiet: bool,
    others: dict[str, Any],
) -> None:
    """``plan --models a,b --rates x,y``: the joint plan (tiercut.cli.joint_cmd)."""
    from tiercut.cli import joint_cmd
    from tiercut.plan import DEFAULT_JOINT_PLANNER, get_joint_planner, plan_joint

    if models is None:
        raise TiercutError("--rates gives the rates of --models a,b; give --models too")
    if model is not None:
        raise TiercutError(f"give the models in --models, not also as MODEL ({model!r})")
    for option, given in others.items():
        if given:
            raise TiercutError(f"--models plans several models jointly; drop {option}")
    if problem_options.pin or problem_options.private_layers:
        raise TiercutError("--pin and --private-layers name one model's layers; drop them with --models")
    if out is not None:
        check_output_path(out, "--out")
    name = DEFAULT_JOINT_PLANNER if algorithm == DEFAULT_PLANNER else algorithm
    planner = get_joint_planner(name, **dict(_parse_setting(s) for s in settings))
    progress = progress_for(quiet)
    objective = problem_options.objective
    kind = "throughput" if objective is None else objective
    joint_cmd.joint_objective(kind, problem_options.aggregate)  # a bad objective fails before any model work

    def build_one(spec: str) -> Problem:
        opts = ProblemOptions(**{**problem_options.__dict__, "objective": kind})
        return opts.single_user(model_options.request(spec), progress)

    problem = joint_cmd.build_joint_problem(models, rates, build_one, kind, problem_options.aggregate)
    result = planner.solve(problem)
    payload = {"problem": problem.to_dict(), "plan": result.to_dict()}
    if out is not None:
        emit_json(payload, out)
    if as_json:
        if out is None:
            emit_json(payload, None)
        return
    joint_cmd.print_joint_plan(problem, result, plan_joint(problem, "independent"))


def compare_plans(problem: Problem, names: list[str] | None = None) -> dict[str, Plan]:
    """Every applicable registered planner (or ``names``) on ``problem``, with default settings.

    Kept for callers of the old helper: :func:`tiercut.pipeline.compare` is the step.
    """
    from tiercut.pipeline import compare as compare_step

    return compare_step(problem, names).plans  # type: ignore[return-value]


@option_group("problem_options", ProblemOptions)
@option_group("model_options", ModelOptions)
def compare(
    model: ModelArg = None,
    problem_options: ProblemOptions = DEFAULT_PROBLEM_OPTIONS,
    model_options: ModelOptions = DEFAULT_MODEL_OPTIONS,
    algorithm: Annotated[
        str | None, typer.Option("--algorithm", help="comma-separated planner names (default: every applicable one)")
    ] = None,
    old_algorithms: Annotated[str | None, typer.Option("--algorithms", hidden=True, help="deprecated: --algorithm")] = None,
    as_json: JsonOpt = False,
    out: OutJsonOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Run every applicable planner on MODEL (or on the --users of an environment) and compare their plans."""
    from rich.table import Table

    from tiercut.pipeline import compare as compare_step
    from tiercut.pipeline import parse_algorithms

    algorithm = alias(algorithm, old_algorithms, new="--algorithm", old="--algorithms", default=None)
    names = parse_algorithms(algorithm)
    if model is None and problem_options.users is None:
        raise TiercutError("compare needs a MODEL (e.g. 'tiercut compare vgg16 --env three-tier') or --users FILE")
    if out is not None:
        check_output_path(out, "--out")
    progress = progress_for(quiet)
    problem = problem_options.problem(model, model_options, progress)
    comparison = compare_step(problem, names, progress=progress)
    if out is not None:
        emit_json(comparison.to_dict(), out)
    if as_json:
        if out is None:
            emit_json(comparison.to_dict(), None)
        return
    feasible = [r.objective_value for r in comparison.records if r.feasible]
    best = min(feasible) if feasible else None
    console = _console(200)
    who = f"{len(problem.users)} users, " if isinstance(problem, MultiUserProblem) else ""
    console.print(f"[bold]{problem.name}[/bold]: every applicable planner ({who}objective {problem.objective.describe()})")
    table = Table()
    latency_column = "mean latency" if isinstance(problem, MultiUserProblem) else "latency"
    for column in ("planner", "objective", "vs best", latency_column, "source energy", "total energy", "cost", "devices",
                   "feasible", "optimal", "solve"):
        table.add_column(column, justify="left" if column in ("planner", "devices") else "right")
    for r in comparison.records:
        ratio = f"{r.objective_value / best:.3f}" if best and r.feasible else "-"
        table.add_row(
            r.planner, f"{r.objective_value:.5g}", ratio, _human(r.latency_s, "s"), _human(r.energy_source_j, "J"),
            _human(r.energy_total_j, "J"), f"{r.cost:.4g}", ",".join(r.devices),
            "yes" if r.feasible else "NO", "yes" if r.optimal else "-", _human(r.solve_s, "s"),
        )
    console.print(table)
    if comparison.skipped:
        console.print(f"not applicable here: {', '.join(comparison.skipped)}")
