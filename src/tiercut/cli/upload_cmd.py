"""``tiercut upload``: in which pieces and order a model's server partition goes up while queries run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from tiercut.cli.checks import check_output_path, check_plot_path, write_output
from tiercut.cli.model_opts import DEFAULT_MODEL_OPTIONS, MODEL_HELP, ModelOptions
from tiercut.cli.options import (
    ComputeOpt,
    EnvOpt,
    JsonOpt,
    OldOffloadingOpt,
    OutJsonOpt,
    ProfileOpt,
    QuietOpt,
    SourceOpt,
    UploadAlgorithmOpt,
    alias,
    emit_json,
    option_group,
    progress_for,
)
from tiercut.cli.plan_cmd import _human, _parse_setting, build_cli_problem
from tiercut.errors import TiercutError
from tiercut.upload.base import DEFAULT_OFFLOADING_PLANNER, DEFAULT_UPLOAD_PLANNER


def _mb(nbytes: float) -> str:
    return f"{nbytes / 1e6:.2f} MB"


def _span(nodes: tuple[str, ...]) -> str:
    if not nodes:
        return "-"
    return nodes[0] if len(nodes) == 1 else f"{nodes[0]} .. {nodes[-1]}"


def _list_upload_planners() -> None:
    from rich.console import Console
    from rich.table import Table

    from tiercut.upload import UPLOAD_PLANNERS

    table = Table(title="upload planners (tiercut upload MODEL --upload-algorithm NAME)")
    for column in ("name", "what", "paper", "settings"):
        table.add_column(column)
    for name, cls in UPLOAD_PLANNERS.items():
        settings = ", ".join(f"{k}={v!r}" for k, v in cls().get_params().items())
        table.add_row(name, cls.summary, cls.reference, settings)
    Console(width=None if Console().is_terminal else 200).print(table)


def _print_upload(problem: Any, plan: Any, others: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if Console().is_terminal else 160)
    table = Table(title=f"{problem.name}: {plan.algorithm} upload to {plan.server} ({len(plan.partitions)} partitions)")
    for column in ("#", "layers", "nodes", "size", "upload", "arrives", "query latency after"):
        table.add_column(column, justify="left" if column in ("layers",) else "right")
    table.add_row("0", "(nothing uploaded)", "-", "-", "-", "0 s", _human(plan.stages[0].latency_s, "s"))
    for k, part in enumerate(plan.partitions, 1):
        table.add_row(
            str(k), _span(part.nodes), str(len(part.nodes)), _mb(part.param_bytes), _human(part.upload_s, "s"),
            _human(part.arrives_s, "s"), _human(plan.stages[k].latency_s, "s"),
        )
    console.print(table)
    m = plan.metrics
    figures = Table(title=f"queries back to back from t = 0 (IONN model); n = {m.n}")
    for column in ("upload plan", "upload end", f"time for {m.n} queries", "done by upload end", "mean latency while uploading"):
        figures.add_column(column, justify="left" if column == "upload plan" else "right")
    for name, p in {plan.algorithm: plan, **others}.items():
        pm = p.metrics
        figures.add_row(
            name, _human(pm.upload_end_s, "s"), _human(pm.time_for_n_queries_s, "s"), str(pm.queries_done_by_upload_end),
            _human(pm.mean_latency_during_upload_s, "s"),
        )
    console.print(figures)
    if plan.note:
        console.print(f"note: {plan.note}")


@dataclass(frozen=True)
class UploadOptions:
    """The options ``upload`` and ``run`` share: the environment, the partition plan choosing the server
    partition P1, and the upload planner sending it in pieces."""

    env: EnvOpt = None
    upload_algorithm: UploadAlgorithmOpt = DEFAULT_UPLOAD_PLANNER
    server: Annotated[str | None, typer.Option(help="server to upload to (default: the partition plan's)")] = None
    algorithm: Annotated[
        str, typer.Option("--algorithm", help="partition planner choosing the server partition P1 (tiercut plan --list)")
    ] = DEFAULT_OFFLOADING_PLANNER
    old_offloading: OldOffloadingOpt = None
    source: SourceOpt = None
    profile: ProfileOpt = None
    compute_table: ComputeOpt = None

    def partition_planner(self) -> str:
        """``--algorithm`` (or the deprecated ``--offloading``)."""
        return alias(self.algorithm, self.old_offloading, new="--algorithm", old="--offloading",
                     default=DEFAULT_OFFLOADING_PLANNER)


DEFAULT_UPLOAD_OPTIONS = UploadOptions()


@option_group("upload_options", UploadOptions)
@option_group("model_options", ModelOptions)
def upload(
    model: Annotated[str | None, typer.Argument(help=MODEL_HELP)] = None,
    upload_options: UploadOptions = DEFAULT_UPLOAD_OPTIONS,
    n_queries: Annotated[
        int | None, typer.Option("--n-queries", help="n of 'time for n queries' (default: queries issued during a direct upload)")
    ] = None,
    objective: Annotated[str, typer.Option(help="objective of the partition plan (queries are timed by latency)")] = "latency",
    model_options: ModelOptions = DEFAULT_MODEL_OPTIONS,
    setting: Annotated[list[str] | None, typer.Option("--set", help="upload planner setting NAME=VALUE (repeatable)")] = None,
    compare: Annotated[bool, typer.Option("--compare", help="also show every other upload planner's figures")] = False,
    as_json: JsonOpt = False,
    out: OutJsonOpt = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="write the query latency vs time curve (PNG/SVG)")] = None,
    quiet: QuietOpt = False,
    list_planners: Annotated[bool, typer.Option("--list", help="list the upload planners and exit")] = False,
) -> None:
    """Plan how MODEL's server partition is uploaded in pieces while the client keeps answering queries."""
    from tiercut.pipeline import parse_algorithms, plan_uploads
    from tiercut.pipeline.upload import check_upload_algorithm
    from tiercut.upload import UPLOAD_PLANNERS

    if list_planners:
        _list_upload_planners()
        return
    opts = upload_options
    algorithm, upload_algorithm = opts.partition_planner(), opts.upload_algorithm
    if algorithm in UPLOAD_PLANNERS:  # the old meaning of upload --algorithm (the names are disjoint)
        upload_algorithm = alias(
            upload_algorithm, algorithm, new=f"--upload-algorithm {algorithm}", old=f"--algorithm {algorithm}",
            default=DEFAULT_UPLOAD_PLANNER,
        )
        algorithm = "mincut"
    parse_algorithms(algorithm)
    check_upload_algorithm(upload_algorithm)
    if model is None:
        raise TiercutError("upload needs a MODEL (e.g. 'tiercut upload alexnet --env migration-12'), or --list")
    if plot is not None:
        check_plot_path(plot)
    if out is not None:
        check_output_path(out, "--out")
    if n_queries is not None and n_queries < 1:
        raise TiercutError(f"--n-queries {n_queries} must be >= 1")
    settings = dict(_parse_setting(s) for s in setting or [])
    progress = progress_for(quiet)
    request = model_options.request(model)
    problem = build_cli_problem(
        request, opts.env, objective=objective, source=opts.source, profile=opts.profile,
        compute_table=opts.compute_table, progress=progress,
    )
    result = plan_uploads(
        problem, upload_algorithm, server=opts.server, offloading=algorithm, n_queries=n_queries, compare=compare,
        progress=progress, **settings,
    )
    if plot is not None:
        _plot_curves(result.problem, result.plans, plot)
    if out is not None:
        emit_json(result.to_dict(), out)
    if as_json:
        if out is None:
            emit_json(result.to_dict(), None)
        return
    _print_upload(result.problem, result.plan, result.others)
    if plot is not None:
        typer.echo(f"plot: {plot}")


def _plot_curves(problem: Any, plans: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tiercut.upload import curve

    fig, ax = plt.subplots(figsize=(9, 4.5))
    until = max(p.upload_end_s for p in plans.values())
    for name, p in plans.items():
        slots = curve(p.stages, until, p.metrics.n)
        ax.plot([q.start_s for q in slots], [q.latency_s for q in slots], drawstyle="steps-post", label=name)
    ax.set_xlabel("time since the upload started (s)")
    ax.set_ylabel("query latency (s)")
    ax.set_title(f"{problem.name}: query latency while uploading")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    try:
        write_output(path, "--plot", lambda temporary: fig.savefig(temporary, dpi=120, format=path.suffix.lower().lstrip(".")))
    finally:
        plt.close(fig)


__all__ = ["DEFAULT_UPLOAD_OPTIONS", "UploadOptions", "upload"]
