"""The run step: a model split for real over gRPC workers, uploads confirmed while queries run.

:func:`run` plans the upload (or takes one), cuts the captured model into
partitions, starts local workers (or connects to given ones), runs the
queries and returns a :class:`RunOutcome` with the measured trace and,
when asked, the simulator's prediction of the same run.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tiercut.errors import TiercutError
from tiercut.pipeline.progress import SILENT, Progress
from tiercut.problem import Problem


@dataclass(frozen=True)
class RunOutcome:
    """What a run measured.

    Attributes:
        upload_plan: the upload plan run (its JSON form, as ``tiercut upload --json`` prints it).
        result: the measured trace (:class:`tiercut.runtime.client.RunResult`).
        problem: the client-server problem it was planned on (None for a given upload plan).
        prediction: the simulator's (start_s, latency_s) of the same queries, when asked and comparable.
        pipeline: with queries in flight, the pipelined model's stages of the final placement
            (:class:`tiercut.runtime.pipelining.PipelinePrediction`; None without a problem).
        cut_compression: with ``cut_compression``: the plan's decision and what the run measured
            (:class:`tiercut.pipeline.cut_compression.CutCompressionRun`), else None.
    """

    upload_plan: dict[str, Any]
    result: Any
    problem: Problem | None = None
    prediction: list[tuple[float, float]] | None = None
    pipeline: Any = None
    cut_compression: Any = None

    def pipeline_lines(self) -> list[str]:
        """Measured throughput and latency under load beside the pipelined prediction (runs with ``in_flight > 1``)."""
        from tiercut.runtime.pipelining import measure_pipeline

        if getattr(self.result, "in_flight", 1) <= 1:
            return []
        measured = measure_pipeline(self.result)
        line = (
            f"  pipelined, {measured.in_flight} in flight (peak {measured.peak_in_flight}): "
            f"{measured.throughput_qps:.2f} queries/s measured over {measured.queries} queries of stage {measured.stage}, "
            f"latency p50 {measured.latency_p50_s * 1e3:.1f} ms, p95 {measured.latency_p95_s * 1e3:.1f} ms"
        )
        lines = [line]
        if self.pipeline is not None and self.pipeline.stages:
            lines.append(
                f"  predicted: {self.pipeline.throughput_qps:.2f} queries/s (bottleneck {self.pipeline.bottleneck.name}, "
                f"{self.pipeline.bottleneck_s * 1e3:.1f} ms per query)"
            )
        return lines

    def to_dict(self) -> dict[str, Any]:
        """``{"upload_plan", "run"}``: what ``tiercut run --json`` prints (``pipeline`` too with queries in flight,
        ``cut_compression`` when the cuts were compressed)."""
        out = {"upload_plan": self.upload_plan, "run": self.result.to_dict()}
        if self.cut_compression is not None:
            out["cut_compression"] = self.cut_compression.to_dict()
        if getattr(self.result, "in_flight", 1) > 1:
            from tiercut.runtime.pipelining import measure_pipeline

            out["pipeline"] = {
                "measured": measure_pipeline(self.result).to_dict(),
                "predicted": self.pipeline.to_dict() if self.pipeline is not None else None,
            }
        return out


def read_upload_plan(path: str | Path) -> dict[str, Any]:
    """The ``upload_plan`` object of a ``tiercut upload --json`` file (or the object itself)."""
    from tiercut.datafiles import read_json_file

    data = read_json_file(path, "upload plan")
    if isinstance(data, dict) and isinstance(data.get("upload_plan"), dict):
        data = data["upload_plan"]
    if not isinstance(data, dict):
        raise TiercutError(f"upload plan {path} must hold the 'upload_plan' object of 'tiercut upload --json'")
    return data


def predicted_queries(problem: Problem, upload_plan: Mapping[str, Any], queries: int) -> list[tuple[float, float]] | None:
    """The simulator's (start, latency) of ``queries`` back-to-back queries (None for a multi-server plan)."""
    from tiercut.pipeline.simulate import simulate
    from tiercut.upload import UploadPlan

    if "servers" in upload_plan:
        return None
    result = simulate(problem, UploadPlan.from_dict(upload_plan), queries=max(1, queries))
    return [(q.start_s, q.end_s - q.start_s) for q in result.queries if math.isfinite(q.end_s)]


def _onnx_captured(model: Any, input_shape: tuple[int, ...] | None, granularity: str, progress: Progress) -> Any:
    """An ``.onnx`` model (a spec or a :class:`~tiercut.graph.ModelRequest`) ready to be split over workers."""
    from tiercut.graph import ModelRequest
    from tiercut.runtime.onnx_program import load_onnx_captured

    if isinstance(model, ModelRequest):
        specs = model.inputs or ()
        if len(specs) > 1 or any(s.name is not None for s in specs):
            raise TiercutError(f"{model.spec} takes one --input-shape for its first input; its other inputs keep theirs")
        input_shape = specs[0].shape if specs else input_shape
        granularity, model = model.granularity, model.spec
    with progress.step(f"reading {model}"):
        return load_onnx_captured(model, input_shape, granularity=granularity)


def _checked_schedule(
    link_schedule: Any, *, adaptive: bool, fixed_plan: bool, in_flight: int, emulate_links: bool
) -> Any:
    """The run's :class:`~tiercut.runtime.adapt.LinkSchedule` (parsed from its texts), with the adaptive run's
    settings checked: the run plans its own problem, one query at a time, on emulated links for a schedule."""
    if isinstance(link_schedule, (list, tuple)):
        from tiercut.runtime.adapt import LinkSchedule

        link_schedule = LinkSchedule.parse(link_schedule) if link_schedule else None
    if not adaptive and link_schedule is None:
        return None
    if fixed_plan:
        raise TiercutError("--adapt and --link-schedule run the problem planned here; drop --upload-plan and --tiled-plan")
    if in_flight != 1:
        raise TiercutError("--adapt and --link-schedule switch plans between queries, one at a time; drop --in-flight")
    if link_schedule is not None and not emulate_links:
        raise TiercutError("--link-schedule changes the emulated links' rates; drop --no-emulate-links")
    return link_schedule


def run(
    model: Any,
    env: str = "three-tier",
    *,
    upload_algorithm: str = "recursive-efficiency",
    algorithm: str = "mincut",
    server: str | None = None,
    upload_plan: Mapping[str, Any] | str | Path | None = None,
    tiled_plan: str | Path | None = None,
    queries: int = 20,
    rate_hz: float | None = None,
    in_flight: int = 1,
    workers: Mapping[str, str] | None = None,
    credentials: Any = None,
    insecure: bool = False,
    artifact_format: str | None = None,
    emulate_links: bool = True,
    bandwidth_scale: float = 1.0,
    verify: bool = False,
    source_slowdown: float = 1.0,
    torch_device: str = "cpu",
    resume: bool = False,
    max_run_s: float = 3600.0,
    keep_uploading_s: float = 0.0,
    log_dir: Path | None = None,
    source: str | None = None,
    input_shape: tuple[int, ...] | None = None,
    granularity: str = "module",
    profile: str | Path | None = None,
    compute_table: str | Path | None = None,
    predict: bool = False,
    private_layers: int = 0,
    queries_after_upload: int = 0,
    cut_compression: str | None = None,
    accuracy_loss_max: float | None = None,
    progress: Progress = SILENT,
    log: Callable[[str], None] | None = None,
    adapt: Any | None = None,
    link_schedule: Any | None = None,
) -> RunOutcome:
    """Run ``model`` split over workers: uploads in the planned pieces while ``queries`` queries run.

    Args:
        upload_algorithm: the upload planner; ``algorithm``: the partition planner choosing P1.
        upload_plan: run this upload plan (a ``tiercut upload --json`` file or its ``upload_plan``) instead of planning.
        tiled_plan: run this ``tiercut plan --spatial auto --json`` file: one upload per server (tile devices
            included), its tiled stages' tiles in parallel on their workers (:mod:`tiercut.runtime.tiled`).
        workers: server name -> ``host:port`` of running workers (None: start local ones).
        credentials: a :class:`tiercut.runtime.protocol.Credentials` for ``workers``.
        insecure: allow a token to travel in clear to non-loopback workers.
        artifact_format: ``aten-json`` or ``onnx`` (default: ``onnx`` for an ``.onnx`` model, whose
            partitions run in onnxruntime on workers started with ``--allow-onnx``; else ``aten-json``).
        in_flight: queries in flight at once (pipelining, :mod:`tiercut.runtime.pipelining`); local workers then
            run one partition at a time, each device one stage of the pipeline.
        predict: also simulate the same run (single server, real link figures, back-to-back queries).
        private_layers: pin the model's first N layers to the source (privacy).
        queries_after_upload: go on past ``queries`` until this many queries started after every upload arrived.
        cut_compression: JALAD (``auto``, ``int8``, ``int4`` or ``off``): measure the codecs on the model, let the
            planner decide per cut tensor under ``accuracy_loss_max``, and send the tensors the final placement
            compresses quantized + zstd-coded on the wire; the outcome reports the bytes on the wire and the top-1
            agreement with the uncompressed model (:mod:`tiercut.pipeline.cut_compression`).
        log: called with each line the run reports (uploads confirmed, workers' state).
        adapt: an :class:`~tiercut.runtime.adapt.AdaptSettings`: estimate the links, re-plan with hysteresis,
            upload new partitions in the background and switch between queries (:mod:`tiercut.runtime.adaptive`).
        link_schedule: a :class:`~tiercut.runtime.adapt.LinkSchedule` (or its ``A-B=T:RATE,...`` texts): the
            emulated links' rates over the run (with or without ``adapt``).
    """
    from tiercut.env import load_environment
    from tiercut.graph import ModelRequest, is_onnx_path
    from tiercut.graph.model_spec import has_torch_model
    from tiercut.pipeline.model import capture
    from tiercut.pipeline.problem import problem as problem_step
    from tiercut.pipeline.upload import check_upload_algorithm, plan_uploads
    from tiercut.profile.measure import resolve_torch_device
    from tiercut.runtime.artifact import ARTIFACT_FORMATS
    from tiercut.runtime.client import RunSettings
    from tiercut.runtime.migration import prepare_migration
    from tiercut.runtime.protocol import Credentials
    from tiercut.runtime.session import LocalCluster, run_migration
    from tiercut.runtime.worker import is_loopback, parse_address

    # every setting is checked before any model work
    spec = model.spec if isinstance(model, ModelRequest) else model
    onnx_file = isinstance(spec, str) and is_onnx_path(spec)
    if isinstance(spec, str) and not has_torch_model(spec) and not onnx_file:
        raise TiercutError(
            f"run executes the model itself; {spec} holds only its graph (pass the zoo name or the factory it came from)"
        )
    if artifact_format is None:
        artifact_format = "onnx" if onnx_file else "aten-json"
    if artifact_format not in ARTIFACT_FORMATS:
        raise TiercutError(f"artifact format {artifact_format!r} is not known; use {' or '.join(ARTIFACT_FORMATS)}")
    if onnx_file and artifact_format != "onnx":
        raise TiercutError(
            f"{spec} is an ONNX model: its partitions run as onnx programs (workers need --allow-onnx); "
            f"drop --artifact-format {artifact_format}"
        )
    if queries < 1:
        raise TiercutError(f"queries {queries} must be >= 1")
    if upload_plan is not None and tiled_plan is not None:
        raise TiercutError("give an upload plan or a tiled plan, not both")
    if upload_plan is None and tiled_plan is None:
        check_upload_algorithm(upload_algorithm)
    link_schedule = _checked_schedule(
        link_schedule, adaptive=adapt is not None, fixed_plan=upload_plan is not None or tiled_plan is not None,
        in_flight=in_flight, emulate_links=emulate_links,
    )
    adaptive = adapt is not None or link_schedule is not None
    compressing = _check_cut_compression(
        cut_compression, accuracy_loss_max, upload_plan=upload_plan, tiled_plan=tiled_plan, onnx=onnx_file,
        granularity=granularity, adaptive=adaptive,
    )
    # the client's own partitions run there; so do local workers' (remote ones chose theirs: 'serve --torch-device')
    torch_device = resolve_torch_device(torch_device)
    credentials = credentials or Credentials()
    credentials.check_readable()
    if workers is not None and credentials.token and not credentials.uses_tls and not insecure:
        remote = [a for a in workers.values() if not is_loopback(parse_address(a)[0])]
        if remote:
            raise TiercutError(
                f"the token would travel in clear to {remote[0]}; pass --tls-cert/--tls-key/--tls-ca, "
                "or --insecure on a trusted network"
            )
    settings = RunSettings(
        queries=queries, rate_hz=rate_hz, verify_outputs=verify, fresh=not resume, max_run_s=max_run_s,
        keep_uploading_s=keep_uploading_s, source_slowdown=source_slowdown, client_torch_device=torch_device,
        queries_after_upload=queries_after_upload, in_flight=in_flight,
    )
    environment = load_environment(env)
    problem, tiled, captured, wire = None, (), None, None
    if tiled_plan is not None:
        from tiercut.runtime.tiled import load_tiled_plan

        problem, planned_tiles, typed = load_tiled_plan(tiled_plan, [d.name for d in environment.devices])
        plan, tiled = typed.to_dict(), planned_tiles.stages
    elif upload_plan is None:
        full = problem_step(
            model, environment, source=source, input_shape=input_shape, granularity=granularity, profile=profile,
            compute_s=compute_table, private_layers=private_layers, progress=progress,
        )
        if compressing:
            captured = capture(model, input_shape, granularity=granularity, progress=progress)
            full = _with_cut_compression(full, model, str(cut_compression), accuracy_loss_max, captured, progress)
        planned = plan_uploads(full, upload_algorithm, server=server, offloading=algorithm, progress=progress)
        problem = planned.problem
        plan = planned.plan.to_dict()
        wire, settings = _wire_settings(compressing, problem, planned.plan, settings)
    elif isinstance(upload_plan, (str, Path)):
        plan = read_upload_plan(upload_plan)
    else:
        plan = dict(upload_plan)
    if link_schedule is not None and problem is not None:
        link_schedule.check_links(problem)
    if onnx_file:
        captured = _onnx_captured(model, input_shape, granularity, progress)
    elif captured is None:
        captured = capture(model, input_shape, granularity=granularity, progress=progress)
    label = spec if isinstance(spec, str) else captured.graph.model
    plan_source = source or plan.get("source") or environment.default_source()
    note = log or progress.log
    with progress.step("cutting the model into partitions"):
        migration = prepare_migration(
            captured, plan, source=plan_source, artifact_format=artifact_format, label=label, progress=note,
            problem=problem, tiled=tiled,
        )
    link_env = environment if emulate_links else None
    running = f"running {queries} queries of {label} while its partitions upload"

    def run_on(addresses: Mapping[str, str], creds: Any) -> Any:
        if not adaptive:
            return run_migration(
                migration, addresses, credentials=creds, settings=settings, environment=link_env,
                bandwidth_scale=bandwidth_scale, log=note,
            )
        from tiercut.runtime.adapt import AdaptSettings
        from tiercut.runtime.session import run_adaptive

        return run_adaptive(
            problem, migration, plan["stages"][-1]["placement"], addresses, credentials=creds, settings=settings,
            adapt=adapt or AdaptSettings(algorithm=algorithm, upload_algorithm=upload_algorithm), replan=adapt is not None,
            schedule=link_schedule, environment=link_env, bandwidth_scale=bandwidth_scale, label=label, log=note,
        )

    if workers is not None:
        with progress.step(running):
            result = run_on(workers, credentials)
    else:
        import torch

        extra = ["--allow-onnx"] if artifact_format == "onnx" else []
        if torch_device != "cpu":
            extra += ["--torch-device", torch_device]
        devices = [*migration.servers, *migration.relays]
        if adaptive:  # a new plan may use any server of the problem
            devices = [d for d in problem.device_names if d != problem.source]
        if in_flight > 1:  # each device one pipeline stage, its queue long enough for every query in flight
            extra += ["--concurrent-partitions", "1", "--max-queued-runs", str(max(16, in_flight))]
        cluster = LocalCluster(
            devices, env=env if emulate_links else None,
            bandwidth_scale=bandwidth_scale, log_dir=log_dir, extra_args=extra,
        )
        threads = torch.get_num_threads()
        torch.set_num_threads(cluster.threads_per_process)  # the client shares the cores with its workers
        try:
            with progress.step(f"starting {len(cluster.devices)} local worker(s)"):
                cluster.start()
            try:
                with progress.step(running):
                    result = run_on(cluster.addresses, cluster.credentials())
            finally:
                cluster.stop()
        finally:
            torch.set_num_threads(threads)
    prediction = None
    if predict and problem is not None and emulate_links and bandwidth_scale == 1.0 and rate_hz is None:
        prediction = predicted_queries(problem, plan, queries)
    measured = None
    if wire is not None:
        from tiercut.pipeline.cut_compression import measure_run
        from tiercut.runtime.client import default_query_inputs

        measured = measure_run(wire, result, captured, default_query_inputs(captured), final_stage=len(plan["stages"]) - 1)
    return RunOutcome(plan, result, problem, prediction, pipeline=_pipeline_prediction(problem, plan, in_flight),
                      cut_compression=measured)


def _wire_settings(compressing: bool, problem: Problem, upload: Any, settings: Any) -> tuple[Any, Any]:
    """The cut codecs of the upload plan's final placement and the run settings sending them (outputs kept to
    compare with the uncompressed model); ``(None, settings)`` without compression."""
    if not compressing:
        return None, settings
    from tiercut.pipeline.cut_compression import decide_wire_codecs

    wire = decide_wire_codecs(problem, upload.stages[-1].placement)
    return wire, dataclasses.replace(settings, cut_compression=wire.wire_codecs, verify_outputs=True)


def _with_cut_compression(
    problem: Problem, model: Any, mode: str, accuracy_loss_max: float | None, captured: Any, progress: Progress
) -> Problem:
    from tiercut.pipeline.cut_compression import attach_cut_compression

    return attach_cut_compression(problem, model, mode, accuracy_loss_max=accuracy_loss_max, captured=captured,
                                  progress=progress)


def _check_cut_compression(
    mode: str | None, accuracy_loss_max: float | None, *, upload_plan: Any, tiled_plan: Any, onnx: bool, granularity: str,
    adaptive: bool = False,
) -> bool:
    """Whether the run compresses cut tensors; a combination it cannot do is a one-line error."""
    from tiercut.pipeline.cut_compression import check_accuracy_loss_max, codec_names

    check_accuracy_loss_max(accuracy_loss_max)
    if mode is None:
        if accuracy_loss_max is not None:
            raise TiercutError("--accuracy-loss-max bounds cut compression; add --cut-compression auto (or int8)")
        return False
    if codec_names(mode) is None:
        return False
    for option, given in (("--upload-plan", upload_plan), ("--tiled-plan", tiled_plan)):
        if given is not None:
            raise TiercutError(f"--cut-compression decides the cuts while planning the run; drop {option} (or --cut-compression)")
    if adaptive:
        raise TiercutError("--cut-compression decides the codecs of one plan; drop it with --adapt or --link-schedule")
    if onnx:
        raise TiercutError("--cut-compression measures and cuts a torch model; an .onnx model runs its cuts raw (drop it)")
    if granularity != "module":
        raise TiercutError("cut compression measures the module graph; drop --granularity block or --cut-compression")
    return True


def _pipeline_prediction(problem: Problem | None, plan: Mapping[str, Any], in_flight: int) -> Any:
    """The pipelined model of the plan's final placement (None for one query at a time, or without a problem)."""
    from tiercut.runtime.pipelining import pipeline_stages

    stages = plan.get("stages")
    if in_flight <= 1 or problem is None or not isinstance(stages, list) or not stages:
        return None
    placement = stages[-1].get("placement") if isinstance(stages[-1], dict) else None
    if not isinstance(placement, dict):
        return None
    known = {n.name for n in problem.graph}
    try:
        return pipeline_stages(problem, {n: d for n, d in placement.items() if n in known})
    except TiercutError:
        return None


__all__ = ["RunOutcome", "predicted_queries", "read_upload_plan", "run"]
