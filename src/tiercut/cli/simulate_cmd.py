"""``tiercut simulate``: run a scenario of users, uploads and queries through the discrete-event simulator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tiercut.cli.checks import check_plot_path, write_output
from tiercut.cli.options import QuietOpt, progress_for


def _fmt(value: float | None, unit: str = "s") -> str:
    if value is None or value != value:
        return "-"
    if unit == "s" and abs(value) < 1:
        return f"{value * 1e3:.1f} ms"
    return f"{value:.4g} {unit}"


def simulate(
    scenario: Annotated[Path, typer.Argument(help="scenario YAML file (see tiercut.sim.scenario)")],
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    plot: Annotated[Path | None, typer.Option("--plot", help="write each query's delay vs time (PNG/SVG)")] = None,
    queries: Annotated[bool, typer.Option("--queries", help="with --json: include every query's trace")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="show a progress bar on stderr")] = True,
    quiet: QuietOpt = False,
    allow_code: Annotated[
        bool,
        typer.Option("--allow-code", help="let the scenario's model: name package.module:factory (imports and runs that code)"),
    ] = False,
    exits: Annotated[
        Path | None, typer.Option("--exits", help="exits file: simulate the exit plan of the scenario's one user")
    ] = None,
    strategies: Annotated[
        str | None,
        typer.Option("--strategies", help="with a mobility: section, the hand-over strategies to compare, comma-separated "
                     "(static, reactive, proactive, oracle; default: the scenario's)"),
    ] = None,
) -> None:
    """Simulate SCENARIO: users joining, uploading partitions and issuing queries over shared servers and links.

    A controller: section runs PANDA's online control once per V, then the static optimum and the offline oracle.
    """
    from rich.console import Console

    from tiercut.pipeline import simulate_scenario

    if exits is not None:  # early exits (issue 15): per-query exits drawn from the plan's rates
        from tiercut.cli.exits_cmd import simulate_with_exits
        from tiercut.errors import TiercutError

        if plot is not None or queries:
            raise TiercutError("--plot and --queries show a scenario's simulation; with --exits drop them (--json "
                               "prints the exit plan's simulated rates and latencies)")
        if strategies is not None:
            raise TiercutError("--strategies compares hand-over strategies of a mobility scenario; --exits simulates "
                               "one user's exit plan: drop one of them")

        simulate_with_exits(scenario, exits, allow_code=allow_code, as_json=as_json)
        return

    if plot is not None:
        check_plot_path(plot)
    chosen = None if strategies is None else [s.strip() for s in strategies.split(",") if s.strip()]
    run = simulate_scenario(scenario, allow_code=allow_code, progress=progress_for(quiet or not progress), strategies=chosen)
    result = run.result
    if plot is not None:
        from tiercut.sim.plot import plot_delays

        title = f"{run.name}: query delay while partitions upload"
        if run.mobility is not None:
            title = f"{run.name}: query delay, strategy {run.mobility.results[0].strategy}"
        write_output(plot, "--plot", lambda temporary: plot_delays(result, temporary, title=title))
    if as_json:
        typer.echo(json.dumps(run.to_dict(include_queries=queries), indent=1))
        return
    from rich.table import Table

    console = Console(width=None if Console().is_terminal else 160)
    table = Table(title=f"{run.name}: {len(result.queries)} queries in {result.end_s:.4g} simulated s")
    for column in ("user", "queries", "in flight", "mean delay", "p95 delay", "max delay", "partitions", "upload end",
                   "client energy"):
        table.add_column(column, justify="left" if column == "user" else "right")
    for s in result.summaries():
        table.add_row(
            s.user, str(s.queries), str(s.in_flight), _fmt(s.mean_latency_s), _fmt(s.p95_latency_s), _fmt(s.max_latency_s),
            f"{s.partitions_arrived}/{s.partitions_planned}", _fmt(s.upload_end_s), _fmt(s.energy_source_j, "J"),
        )
    console.print(table)
    if run.mobility is not None:
        console.print(_strategies_table(run))
    if run.online is not None:
        console.print(_online_table(run.online))
    console.print(
        f"{result.events:,} events in {result.wall_s:.2f} s wall ({result.events_per_s:,.0f} events/s)"
        + (f"; plot: {plot}" if plot is not None else "")
    )


def _online_table(online: object) -> object:
    """PANDA's simulated runs per V and the baselines (:class:`tiercut.sim.online.OnlineComparison`)."""
    from rich.table import Table

    c = online.control  # type: ignore[attr-defined]
    budget = c.energy_budget_j
    budget_text = _fmt(budget, "J") if not isinstance(budget, dict) else "per user"
    table = Table(title=f"PANDA online control, simulated: {online.n_slots} slots of {c.slot_s:g} s, energy budget "  # type: ignore[attr-defined]
                        f"{budget_text}/query (users table above: the first run)")  # fmt: skip
    for column in ("policy", "V", "queries", "mean delay", "mean energy", "max queue", "queue bound", "within budget"):
        table.add_column(column, justify="left" if column == "policy" else "right")
    for r in online.runs:  # type: ignore[attr-defined]
        users = r.users.values()
        bound = max((u.queue_bound_j for u in users), default=float("nan"))
        ok = all(u.mean_energy_j <= u.energy_budget_j * (1 + 1e-9) for u in users if u.queries)
        table.add_row(r.policy, "-" if r.V != r.V else f"{r.V:g}", str(sum(u.queries for u in users)),
                      _fmt(r.mean_latency_s), _fmt(r.mean_energy_j, "J"), _fmt(r.max_queue_j, "J"),
                      _fmt(bound, "J") if r.policy == "lyapunov" else "-", "yes" if ok else "no")  # fmt: skip
    return table


def _bytes(value: int) -> str:
    return f"{value / 1e6:.3g} MB"


def _strategies_table(run: object) -> object:
    """The per-strategy figures of a mobility scenario (:class:`tiercut.sim.mobile.StrategyFigures`)."""
    from rich.table import Table

    comparison = run.mobility  # type: ignore[attr-defined]
    first = comparison.results[0]
    table = Table(title=f"hand-over strategies: {first.figures().handovers} hand-overs; 'near' = queries started within "
                        f"{first.window_s:g} s after one (users table above: {first.strategy})")  # fmt: skip
    for column in ("strategy", "queries", "mean delay", "near: mean", "near: p95", "near: max", "uploaded", "wasted",
                   "peak memory (max site)", "memory ok"):  # fmt: skip
        table.add_column(column, justify="left" if column == "strategy" else "right")
    for f in comparison.figures():
        peak_site = max(f.peak_memory_bytes, key=lambda s: f.peak_memory_bytes[s])
        cap = f.memory_bytes[peak_site]
        table.add_row(
            f.strategy, str(f.queries), _fmt(f.mean_latency_s), _fmt(f.handover_mean_latency_s),
            _fmt(f.handover_p95_latency_s), _fmt(f.handover_max_latency_s), _bytes(f.uploaded_bytes),
            _bytes(f.wasted_bytes),
            f"{_bytes(f.peak_memory_bytes[peak_site])} on {peak_site}" + ("" if cap is None else f" of {_bytes(cap)}"),
            "no" if f.memory_exceeded else "yes",
        )
    return table


__all__ = ["simulate"]
