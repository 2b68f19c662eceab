"""``tiercut run``: upload a model's partitions to real workers while queries run on the partial model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from tiercut.cli.adapt_opts import DEFAULT_ADAPT_OPTIONS, AdaptOptions
from tiercut.cli.checks import check_finite, check_output_path, check_plot_path, write_output
from tiercut.cli.model_opts import DEFAULT_MODEL_OPTIONS, MODEL_HELP, ModelOptions
from tiercut.cli.options import (
    AccuracyLossMaxOpt,
    CutCompressionOpt,
    OldUploadOpt,
    OutJsonOpt,
    QuietOpt,
    alias,
    emit_json,
    option_group,
    progress_for,
)
from tiercut.cli.upload_cmd import DEFAULT_UPLOAD_OPTIONS, UploadOptions
from tiercut.errors import TiercutError
from tiercut.upload.base import DEFAULT_OFFLOADING_PLANNER, DEFAULT_UPLOAD_PLANNER


def _plot(result: Any, plan: dict[str, Any], prediction: list[tuple[float, float]] | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    starts = [q.start_s for q in result.queries]
    latencies = [q.latency_s * 1e3 for q in result.queries]
    ax.plot(starts, latencies, "o-", markersize=3, label="measured (tiercut run)")
    if prediction:
        ax.plot([p[0] for p in prediction], [p[1] * 1e3 for p in prediction], "s--", markersize=3, label="predicted (simulator)")
    for server, times in result.confirmed_s.items():
        for k, t in enumerate(times, 1):
            if t >= 0:
                ax.axvline(t, color="grey", alpha=0.3, linewidth=0.8)
                ax.text(t, ax.get_ylim()[1] * 0.95, f"{server}#{k}", rotation=90, fontsize=7, va="top")
    ax.set_xlabel("query start (s since the run began)")
    ax.set_ylabel("system delay of the query (ms)")
    ax.set_title(f"{result.model}: {plan.get('algorithm', '')} upload, measured vs predicted")
    ax.legend()
    fig.tight_layout()
    try:
        write_output(path, "--plot", lambda temporary: fig.savefig(temporary, format=path.suffix.lower().lstrip(".")))
    finally:
        plt.close(fig)


@option_group("upload_options", UploadOptions)
@option_group("model_options", ModelOptions)
@option_group("adapt_options", AdaptOptions)
def run(
    model: Annotated[str, typer.Argument(help=MODEL_HELP)],
    upload_options: UploadOptions = DEFAULT_UPLOAD_OPTIONS,
    old_upload: OldUploadOpt = None,
    queries: Annotated[int, typer.Option("--queries", help="queries the client issues")] = 20,
    workers: Annotated[
        str | None,
        typer.Option("--workers", help="connect to running workers name=host:port,... instead of starting local ones"),
    ] = None,
    upload_plan: Annotated[
        Path | None, typer.Option("--upload-plan", help="use this 'tiercut upload --json' output instead of planning")
    ] = None,
    tiled_plan: Annotated[
        Path | None,
        typer.Option("--tiled-plan", help="run this 'tiercut plan --spatial auto --json' output: tiles in parallel on workers"),
    ] = None,
    model_options: ModelOptions = DEFAULT_MODEL_OPTIONS,
    rate: Annotated[float | None, typer.Option("--rate", help="queries per second (default: back to back)")] = None,
    in_flight: Annotated[
        int,
        typer.Option("--in-flight", help="queries in flight at once across the tiers (pipelining; answers stay in order)"),
    ] = 1,
    token: Annotated[
        str | None, typer.Option("--token", envvar="TIERCUT_TOKEN", help="token of the --workers (also $TIERCUT_TOKEN)")
    ] = None,
    tls_cert: Annotated[Path | None, typer.Option("--tls-cert", help="client certificate for --workers with mutual TLS")] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="client private key")] = None,
    tls_ca: Annotated[Path | None, typer.Option("--tls-ca", help="CA of the workers' certificates")] = None,
    artifact_format: Annotated[
        str | None,
        typer.Option(
            "--artifact-format",
            help="aten-json (exact; default for torch models) or onnx (onnxruntime, faster; always for an .onnx MODEL, "
            "whose workers need --allow-onnx)",
        ),
    ] = None,
    emulate_links: Annotated[
        bool, typer.Option("--emulate-links/--no-emulate-links", help="shape traffic like the environment's links")
    ] = True,
    bandwidth_scale: Annotated[float, typer.Option("--bandwidth-scale", help="multiply emulated bandwidths")] = 1.0,
    verify: Annotated[bool, typer.Option("--verify", help="check every output against the whole model afterwards")] = False,
    source_slowdown: Annotated[
        float, typer.Option("--source-slowdown", help="emulate a client this many times slower than this host (>= 1)")
    ] = 1.0,
    torch_device: Annotated[
        str,
        typer.Option("--torch-device", help="cpu, cuda, cuda:N or auto: where the client and local workers run their partitions"),
    ] = "cpu",
    resume: Annotated[
        bool, typer.Option("--resume", help="count partitions the workers already hold instead of uploading afresh")
    ] = False,
    max_run_s: Annotated[float, typer.Option("--max-run-s", help="stop the run after this many seconds")] = 3600.0,
    keep_uploading_s: Annotated[
        float, typer.Option("--keep-uploading-s", help="after the last query, wait this long for uploads to finish")
    ] = 0.0,
    log_dir: Annotated[Path | None, typer.Option("--log-dir", help="folder for the local workers' logs")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the full trace as JSON")] = False,
    out: OutJsonOpt = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="write measured vs predicted delay over time (PNG/SVG)")] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="send the token to non-loopback --workers without TLS (a trusted network)")
    ] = False,
    quiet: QuietOpt = False,
    exits: Annotated[
        Path | None, typer.Option("--exits", help="exits file ('tiercut exits add'): run the exit plan on held-out digits")
    ] = None,
    latency_slo: Annotated[str | None, typer.Option("--latency-slo", help="with --exits: latency requirement, e.g. 50ms")] = None,
    accuracy_min: Annotated[float | None, typer.Option("--accuracy-min", help="with --exits: accuracy floor, e.g. 0.95")] = None,
    cut_compression: CutCompressionOpt = None,
    accuracy_loss_max: AccuracyLossMaxOpt = None,
    adapt_options: AdaptOptions = DEFAULT_ADAPT_OPTIONS,
) -> None:
    """Run MODEL split for real: local (or given) workers, uploads with confirmations, queries on the partial model."""
    from tiercut.pipeline import parse_algorithms
    from tiercut.pipeline import run as run_step
    from tiercut.runtime.protocol import Credentials
    from tiercut.runtime.worker import parse_peers

    opts = upload_options
    env = opts.env or "three-tier"
    upload_algorithm = alias(
        opts.upload_algorithm, old_upload, new="--upload-algorithm", old="--upload", default=DEFAULT_UPLOAD_PLANNER
    )
    algorithm = opts.partition_planner()
    parse_algorithms(algorithm)
    # every option is checked before any model work
    check_finite("--bandwidth-scale", bandwidth_scale, positive=True)
    check_finite("--rate", rate, positive=True)
    check_finite("--source-slowdown", source_slowdown, minimum=1.0)
    check_finite("--max-run-s", max_run_s, positive=True)
    check_finite("--keep-uploading-s", keep_uploading_s, minimum=0.0)
    if queries < 1:
        raise TiercutError(f"--queries {queries} must be >= 1")
    if exits is not None and cut_compression is not None:
        raise TiercutError("--exits runs the exit plan's cuts raw; drop --cut-compression (or --exits)")
    from tiercut.runtime.client import MAX_IN_FLIGHT

    if not 1 <= in_flight <= MAX_IN_FLIGHT:
        raise TiercutError(f"--in-flight {in_flight} must be within 1..{MAX_IN_FLIGHT}")
    if exits is not None and in_flight != 1:
        raise TiercutError("--in-flight pipelines plain runs; drop it with --exits (exit plans run one query at a time)")
    adapt = adapt_options.settings(algorithm, upload_algorithm)
    link_schedule = adapt_options.schedule()
    fixed = exits is not None or upload_plan is not None or tiled_plan is not None
    if (adapt is not None or link_schedule is not None) and fixed:
        raise TiercutError("--adapt and --link-schedule re-plan the run's own plan; drop --exits, --upload-plan and --tiled-plan")
    if (adapt is not None or link_schedule is not None) and in_flight != 1:
        raise TiercutError("--adapt and --link-schedule switch plans between queries, one at a time; drop --in-flight")
    if (adapt is not None or link_schedule is not None) and cut_compression is not None:
        raise TiercutError("--cut-compression decides the codecs of one plan; drop it with --adapt or --link-schedule")
    if exits is not None:  # early exits (issue 15): plan with edgent/ddnn, run on workers, measure on held-out digits
        from tiercut.cli.exits_cmd import run_with_exits
        from tiercut.graph.model_spec import check_code_allowed

        check_code_allowed(model, model_options.allow_code)
        run_with_exits(
            model, exits, env, algorithm="edgent" if algorithm == DEFAULT_OFFLOADING_PLANNER else algorithm,
            latency_slo=latency_slo, accuracy_min=accuracy_min, source=opts.source, profile=opts.profile,
            compute_table=opts.compute_table, queries=queries, rate=rate,
            addresses=parse_peers(workers) if workers is not None else None, insecure=insecure,
            credentials=Credentials(token=token, tls_cert=tls_cert, tls_key=tls_key, tls_ca=tls_ca),
            emulate_links=emulate_links, bandwidth_scale=bandwidth_scale, max_run_s=max_run_s, as_json=as_json, out=out,
        )
        return
    if latency_slo is not None or accuracy_min is not None:
        raise TiercutError("--latency-slo and --accuracy-min choose among exits; give the exits with --exits FILE")
    request = model_options.request(model)
    if plot is not None:
        check_plot_path(plot)
    if out is not None:
        check_output_path(out, "--out")
    addresses = parse_peers(workers) if workers is not None else None
    outcome = run_step(
        request, env, upload_algorithm=upload_algorithm, algorithm=algorithm, server=opts.server, upload_plan=upload_plan,
        tiled_plan=tiled_plan,
        queries=queries, rate_hz=rate, in_flight=in_flight, workers=addresses,
        credentials=Credentials(token=token, tls_cert=tls_cert, tls_key=tls_key, tls_ca=tls_ca), insecure=insecure,
        artifact_format=artifact_format, emulate_links=emulate_links, bandwidth_scale=bandwidth_scale, verify=verify,
        source_slowdown=source_slowdown, torch_device=torch_device, resume=resume, max_run_s=max_run_s,
        keep_uploading_s=keep_uploading_s, log_dir=log_dir, source=opts.source, profile=opts.profile,
        compute_table=opts.compute_table, predict=plot is not None, cut_compression=cut_compression,
        accuracy_loss_max=accuracy_loss_max, progress=progress_for(quiet),
        log=(lambda line: typer.echo(line, err=True)) if not as_json else None, adapt=adapt, link_schedule=link_schedule,
    )
    if plot is not None:
        _plot(outcome.result, outcome.upload_plan, outcome.prediction, plot)
    if out is not None:
        emit_json(outcome.to_dict(), out)
    if as_json:
        if out is None:
            emit_json(outcome.to_dict(), None)
        return
    for line in [*outcome.result.summary_lines(), *outcome.pipeline_lines()]:
        typer.echo(line)
    if outcome.cut_compression is not None:
        typer.echo(outcome.cut_compression.summary_line())
    if plot is not None:
        typer.echo(f"plot: {plot}")
