"""``tiercut run``: upload a model's partitions to real workers while queries run on the partial model."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer

from tiercut.cli.checks import check_finite, check_plot_path, write_output
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
from tiercut.cli.plan_cmd import ComputeOpt, EnvOpt, ProfileOpt, SourceOpt, build_cli_problem
from tiercut.errors import TiercutError


def _read_upload_plan(path: Path) -> dict[str, Any]:
    from tiercut.datafiles import read_json_file

    data = read_json_file(path, "upload plan")
    if isinstance(data, dict) and isinstance(data.get("upload_plan"), dict):
        data = data["upload_plan"]
    if not isinstance(data, dict):
        raise TiercutError(f"upload plan {path} must hold the 'upload_plan' object of 'tiercut upload --json'")
    return data


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


def _simulated(problem: Any, plan: dict[str, Any], queries: int) -> list[tuple[float, float]] | None:
    """The simulator's (start, latency) of the same number of back-to-back queries (None for multi-server plans)."""
    from tiercut.sim import SimConfig, SimUser, simulate
    from tiercut.upload import UploadPlan, user_plan_from_upload

    if "servers" in plan:
        return None
    upload_plan = UploadPlan.from_dict(plan)
    user = SimUser("client", problem, plan=user_plan_from_upload("client", upload_plan), max_queries=max(1, queries))
    result = simulate([user], SimConfig())
    return [(q.start_s, q.end_s - q.start_s) for q in result.queries if math.isfinite(q.end_s)]


def run(
    model: Annotated[str, typer.Argument(help=MODEL_HELP)],
    env: EnvOpt = "three-tier",
    upload: Annotated[str, typer.Option("--upload", help="upload planner (tiercut upload --list)")] = "recursive-efficiency",
    queries: Annotated[int, typer.Option("--queries", help="queries the client issues")] = 20,
    workers: Annotated[
        str | None,
        typer.Option("--workers", help="connect to running workers name=host:port,... instead of starting local ones"),
    ] = None,
    upload_plan: Annotated[
        Path | None, typer.Option("--upload-plan", help="use this 'tiercut upload --json' output instead of planning")
    ] = None,
    server: Annotated[str | None, typer.Option(help="server to upload to (default: the offloading plan's)")] = None,
    offloading: Annotated[str, typer.Option(help="partition planner choosing the server partition P1")] = "mincut",
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
    rate: Annotated[float | None, typer.Option("--rate", help="queries per second (default: back to back)")] = None,
    token: Annotated[
        str | None, typer.Option("--token", envvar="TIERCUT_TOKEN", help="token of the --workers (also $TIERCUT_TOKEN)")
    ] = None,
    tls_cert: Annotated[Path | None, typer.Option("--tls-cert", help="client certificate for --workers with mutual TLS")] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="client private key")] = None,
    tls_ca: Annotated[Path | None, typer.Option("--tls-ca", help="CA of the workers' certificates")] = None,
    artifact_format: Annotated[
        str, typer.Option("--artifact-format", help="aten-json (exact, default) or onnx (onnxruntime, faster)")
    ] = "aten-json",
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
        typer.Option("--torch-device", help="cpu, cuda, cuda:N or auto: where the local workers run their partitions"),
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
    plot: Annotated[Path | None, typer.Option("--plot", help="write measured vs predicted delay over time (PNG/SVG)")] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="send the token to non-loopback --workers without TLS (a trusted network)")
    ] = False,
) -> None:
    """Run MODEL split for real: local (or given) workers, uploads with confirmations, queries on the partial model."""
    from tiercut.env import load_environment
    from tiercut.graph import capture_request
    from tiercut.graph.model_spec import has_torch_model
    from tiercut.runtime.artifact import ARTIFACT_FORMATS
    from tiercut.runtime.client import RunSettings
    from tiercut.runtime.migration import prepare_migration
    from tiercut.runtime.protocol import Credentials
    from tiercut.runtime.session import LocalCluster, run_migration
    from tiercut.runtime.worker import is_loopback, parse_address, parse_peers

    env = env or "three-tier"
    # every option is checked before any model work
    if artifact_format not in ARTIFACT_FORMATS:
        raise TiercutError(f"--artifact-format {artifact_format!r} is not known; use {' or '.join(ARTIFACT_FORMATS)}")
    check_finite("--bandwidth-scale", bandwidth_scale, positive=True)
    check_finite("--rate", rate, positive=True)
    check_finite("--source-slowdown", source_slowdown, minimum=1.0)
    check_finite("--max-run-s", max_run_s, positive=True)
    check_finite("--keep-uploading-s", keep_uploading_s, minimum=0.0)
    if queries < 1:
        raise TiercutError(f"--queries {queries} must be >= 1")
    from tiercut.profile.measure import resolve_torch_device

    torch_device = resolve_torch_device(torch_device)
    if torch_device != "cpu" and workers is not None:
        raise TiercutError("--torch-device applies to the local workers; start remote ones with 'tiercut serve --torch-device'")
    request = model_request(
        model, input_shape=input_shape, inputs=inputs, granularity=granularity, leaf_modules=leaf_module,
        open_modules=open_module, allow_code=allow_code, no_cache=no_cache,
    )
    if not has_torch_model(model):
        raise TiercutError(
            f"run executes the model itself; {model} holds only its graph (pass the zoo name or the factory it came from)"
        )
    if plot is not None:
        check_plot_path(plot)
    addresses = parse_peers(workers) if workers is not None else None
    credentials = Credentials(token=token, tls_cert=tls_cert, tls_key=tls_key, tls_ca=tls_ca)
    credentials.check_readable()
    if addresses is not None and credentials.token and not credentials.uses_tls and not insecure:
        remote = [a for a in addresses.values() if not is_loopback(parse_address(a)[0])]
        if remote:
            raise TiercutError(
                f"the token would travel in clear to {remote[0]}; pass --tls-cert/--tls-key/--tls-ca, "
                "or --insecure on a trusted network"
            )
    settings = RunSettings(
        queries=queries,
        rate_hz=rate,
        verify_outputs=verify,
        fresh=not resume,
        max_run_s=max_run_s,
        keep_uploading_s=keep_uploading_s,
        source_slowdown=source_slowdown,
    )
    if upload_plan is not None:
        plan = _read_upload_plan(upload_plan)
    environment = load_environment(env)
    problem = None
    if upload_plan is None:
        from tiercut.upload import get_upload_planner

        problem = build_cli_problem(
            request,
            env,
            objective="latency",
            source=source,
            profile=profile,
            compute_table=compute_table,
            latency_budget=None,
            energy_budget=None,
            energy_total_budget=None,
            cost_budget=None,
            pins=None,
            private_layers=0,
            memory=True,
        )
        planned = get_upload_planner(upload, server=server, offloading=offloading).solve(problem)
        problem = problem.restricted_to([problem.source, planned.server])
        plan = planned.to_dict()
    captured = capture_request(request)
    plan_source = source or plan.get("source") or environment.default_source()
    log = (lambda line: typer.echo(line, err=True)) if not as_json else None
    migration = prepare_migration(
        captured, plan, source=plan_source, artifact_format=artifact_format, label=model, progress=log, problem=problem
    )
    link_env = environment if emulate_links else None
    if addresses is not None:
        result = run_migration(
            migration,
            addresses,
            credentials=credentials,
            settings=settings,
            environment=link_env,
            bandwidth_scale=bandwidth_scale,
            log=log,
        )
    else:
        import torch

        env_arg = env if emulate_links else None
        extra = ["--allow-onnx"] if artifact_format == "onnx" else []
        if torch_device != "cpu":
            extra += ["--torch-device", torch_device]
        cluster = LocalCluster(
            [*migration.servers, *migration.relays], env=env_arg, bandwidth_scale=bandwidth_scale, log_dir=log_dir,
            extra_args=extra,
        )
        threads = torch.get_num_threads()
        torch.set_num_threads(cluster.threads_per_process)  # the client shares the cores with its workers
        try:
            with cluster:
                result = run_migration(
                    migration,
                    cluster.addresses,
                    credentials=cluster.credentials(),
                    settings=settings,
                    environment=link_env,
                    bandwidth_scale=bandwidth_scale,
                    log=log,
                )
        finally:
            torch.set_num_threads(threads)
    prediction = None
    if plot is not None:
        if problem is not None and emulate_links and bandwidth_scale == 1.0 and rate is None:
            prediction = _simulated(problem, plan, queries)
        _plot(result, plan, prediction, plot)
    if as_json:
        typer.echo(json.dumps({"upload_plan": plan, "run": result.to_dict()}, indent=1))
        return
    for line in result.summary_lines():
        typer.echo(line)
    if plot is not None:
        typer.echo(f"plot: {plot}")
