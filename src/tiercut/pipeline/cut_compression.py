"""The cut-compression step (JALAD): measure how a model's cut tensors compress and offer it to the planners.

``tiercut plan MODEL --cut-compression auto|off|int8|int4`` runs
:func:`attach_cut_compression` after the problem is built: it measures the
codecs on the model here (:func:`tiercut.profile.cut_compression.measure_cut_compression`)
and puts the options in the problem (``problem.cut_compression``), where the
planners decide per cut whether to compress (the ILP and brute force jointly
with the placement, the others by a post-pass), within
``--accuracy-loss-max``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tiercut.errors import TiercutError
from tiercut.pipeline.progress import SILENT, Progress
from tiercut.problem import Problem

#: ``--cut-compression`` modes besides a codec name: off (raw tensors), auto (every measured codec)
MODES = ("auto", "off")


def codec_names(mode: str) -> list[str] | None:
    """The codecs ``mode`` offers: None for off, every default codec for auto, else the comma-separated names."""
    from tiercut.profile.cut_compression import DEFAULT_CODECS

    known = [name for name, _, _ in DEFAULT_CODECS]
    mode = mode.strip()
    if mode == "off":
        return None
    if mode == "auto":
        return known
    names = [m.strip() for m in mode.split(",") if m.strip()]
    for name in names:
        if name not in known:
            raise TiercutError(f"--cut-compression {mode!r} is not known; use auto, off or codecs among {', '.join(known)}")
    if not names:
        raise TiercutError("--cut-compression is empty; use auto, off, int8 or int4")
    return names


def check_accuracy_loss_max(value: float | None) -> float | None:
    if value is not None and not (0.0 <= value <= 1.0):
        raise TiercutError(f"--accuracy-loss-max {value!r} must be a fraction in [0, 1], e.g. 0.01 for one point")
    return value


def attach_cut_compression(
    problem: Problem,
    model: Any,
    mode: str = "auto",
    *,
    accuracy_loss_max: float | None = None,
    samples: int = 8,
    captured: Any = None,
    progress: Progress = SILENT,
) -> Problem:
    """``problem`` with the cut-compression options ``mode`` asks for, measured on ``model`` (a model request or
    spec :func:`tiercut.graph.capture_request` takes). A problem that already carries options (a problem JSON)
    keeps its measurements, restricted to ``mode``'s codecs; ``accuracy_loss_max`` replaces its budget when given
    (default for new measurements: :data:`~tiercut.profile.cut_compression.DEFAULT_ACCURACY_LOSS_MAX`). ``captured``:
    the model already captured (``tiercut run`` holds it), measured instead of capturing ``model`` again."""
    from tiercut.profile.cut_compression import DEFAULT_ACCURACY_LOSS_MAX, measure_cut_compression

    names = codec_names(mode)
    check_accuracy_loss_max(accuracy_loss_max)
    if names is None:
        return problem.with_cut_compression(None)
    if samples < 1:
        raise TiercutError(f"cut compression needs at least 1 sample, not {samples}")
    own = problem.cut_compression
    if own is not None:
        offered = [n for n in names if n in {c.name for c in own.codecs}]
        options = own.only(offered)
        return problem.with_cut_compression(options if accuracy_loss_max is None else options.with_budget(accuracy_loss_max))
    if captured is None and (model is None or _is_problem_json(model)):
        raise TiercutError(
            "this problem has no cut_compression measurements; plan the model itself (with --env) to measure them, "
            "or use --cut-compression off"
        )
    from tiercut.graph import ModelRequest, capture_request

    with progress.step(f"measuring cut compression ({', '.join(names)}) of {problem.graph.model} on {samples} samples"):
        if captured is None:
            captured = capture_request(model if isinstance(model, ModelRequest) else ModelRequest(spec=model))
        if [n.name for n in captured.graph] != [n.name for n in problem.graph]:
            raise TiercutError("cut compression measures the module graph; drop --granularity block or --cut-compression")
        measured = measure_cut_compression(captured, samples=samples, codecs=_codecs(names))
    budget = DEFAULT_ACCURACY_LOSS_MAX if accuracy_loss_max is None else accuracy_loss_max
    return problem.with_cut_compression(measured.for_problem(problem, budget))


def _codecs(names: list[str]) -> list[tuple[str, int, str]]:
    from tiercut.profile.cut_compression import DEFAULT_CODECS

    return [c for c in DEFAULT_CODECS if c[0] in names]


def _is_problem_json(model: Any) -> bool:
    from tiercut.graph import ModelRequest, is_graph_json_path

    spec = model.spec if isinstance(model, ModelRequest) else model
    return isinstance(spec, str) and is_graph_json_path(spec)


@dataclass(frozen=True)
class WireDecision:
    """The cut compression of a run's final placement (what ``tiercut run --cut-compression`` sends).

    Attributes:
        compression: node -> codec of each tensor sent compressed
            (:func:`tiercut.cost.cut_compression.choose_compression` on the placement).
        wire_codecs: the same as the runtime's value name -> ``(bits, granularity)``.
        proven: the choice is proven best for the placement.
        declared_accuracy_loss: the summed measured accuracy loss of those tensors (the plan's).
        accuracy_loss_max: the budget it was chosen under.
        raw_bytes, wire_bytes: the cost model's tensor bytes moved per query by the placement, raw and as sent.
    """

    compression: Mapping[str, str]
    wire_codecs: Mapping[str, tuple[int, str]]
    proven: bool
    declared_accuracy_loss: float
    accuracy_loss_max: float | None
    raw_bytes: float
    wire_bytes: float


def decide_wire_codecs(problem: Problem, placement: Mapping[str, str]) -> WireDecision:
    """The cut compression of ``placement`` within the problem's budget, and its predicted bytes."""
    from tiercut.cost.cut_compression import accuracy_loss, choose_compression, crossing, transfer_figures

    compression, proven = choose_compression(problem, placement)
    options = problem.cut_compression
    raw = wire = 0.0
    for node, pairs in crossing(problem, placement).items():
        for a, b in pairs:
            raw += problem.graph[node].out_bytes
            fig = transfer_figures(problem, node, a, b, compression.get(node))
            wire += fig.wire_bytes if fig is not None else problem.graph[node].out_bytes
    codecs = {}
    if compression and options is not None:
        codecs = {n: (options.codec(k).bits, options.codec(k).granularity) for n, k in compression.items()}
    return WireDecision(
        dict(compression), codecs, proven, accuracy_loss(problem, compression),
        None if options is None else options.accuracy_loss_max, raw, wire,
    )


@dataclass(frozen=True)
class CutCompressionRun:
    """What a run with compressed cuts measured against its plan.

    Attributes:
        decision: the plan's :class:`WireDecision`.
        final_stage: the upload stage the decision is for (every upload arrived).
        queries_compared: queries of that stage (no fallback) whose answer was compared.
        top1_agreement: the fraction of them whose top-1 class equals the uncompressed whole model's on the
            same input (compare ``1 - decision.declared_accuracy_loss``).
        max_relative_error: the largest ``||y - y_ref|| / ||y_ref||`` among them.
        bytes_moved_median: the median bytes the client sent and received per query of that stage, measured on
            the wire (frames, compressed values included).
    """

    decision: WireDecision
    final_stage: int
    queries_compared: int
    top1_agreement: float
    max_relative_error: float
    bytes_moved_median: float

    def to_dict(self) -> dict[str, Any]:
        d = self.decision
        return {
            "compression": dict(d.compression),
            "proven": d.proven,
            "declared_accuracy_loss": d.declared_accuracy_loss,
            "accuracy_loss_max": d.accuracy_loss_max,
            "predicted_raw_bytes_per_query": d.raw_bytes,
            "predicted_wire_bytes_per_query": d.wire_bytes,
            "final_stage": self.final_stage,
            "queries_compared": self.queries_compared,
            "top1_agreement": _finite_or_none(self.top1_agreement),
            "max_relative_error": _finite_or_none(self.max_relative_error),
            "bytes_moved_median": _finite_or_none(self.bytes_moved_median),
        }

    def summary_line(self) -> str:
        sent = ", ".join(f"{n}: {k}" for n, k in self.decision.compression.items()) or "none (raw is best here)"
        agree = "n/a" if math.isnan(self.top1_agreement) else f"{self.top1_agreement:.1%}"
        return (
            f"  cut compression: {sent}; predicted {self.decision.wire_bytes / 1e3:.1f} kB on the wire per query "
            f"(raw {self.decision.raw_bytes / 1e3:.1f} kB), measured median {self.bytes_moved_median / 1e3:.1f} kB; "
            f"top-1 agreement with the uncompressed model {agree} over {self.queries_compared} queries "
            f"(declared loss {self.decision.declared_accuracy_loss:.2%})"
        )


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _first_tensor(value: Any) -> Any:
    import torch

    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        return next((t for t in (_first_tensor(v) for v in value) if t is not None), None)
    if isinstance(value, dict):
        return next((t for t in (_first_tensor(v) for v in value.values()) if t is not None), None)
    return None


def top1_and_relative_error(output: Any, reference: Any) -> tuple[float, float]:
    """The fraction of samples whose top-1 class (argmax of the last dimension) agrees, and the relative error of
    ``output`` against ``reference`` (their first tensors), both in float32."""
    got, ref = _first_tensor(output), _first_tensor(reference)
    if got is None or ref is None or got.shape != ref.shape:
        return 0.0, math.inf
    got, ref = got.detach().float().reshape(-1, ref.shape[-1] if ref.dim() else 1), ref.detach().float()
    ref = ref.reshape(got.shape)
    agree = float((got.argmax(-1) == ref.argmax(-1)).float().mean())
    norm = float(ref.norm())
    error = float((got - ref).norm()) / norm if norm > 0 else (0.0 if float((got - ref).norm()) == 0 else math.inf)
    return agree, error


def measure_run(
    decision: WireDecision, result: Any, captured: Any, inputs_of: Callable[[int], tuple[Any, ...]], *, final_stage: int
) -> CutCompressionRun:
    """Compare a run's answers on its final stage with the uncompressed whole model, and take its bytes on the wire."""
    import torch

    queries = [q for q in result.queries if q.stage == final_stage and not q.fallback and q.index in result.outputs]
    agreements, errors = [], []
    for query in queries:
        with torch.no_grad():
            reference = captured.graph_module(*inputs_of(query.index))
        agree, error = top1_and_relative_error(result.outputs[query.index], reference)
        agreements.append(agree)
        errors.append(error)
    moved = [q.bytes_moved for q in queries]
    return CutCompressionRun(
        decision, final_stage, len(queries),
        statistics.fmean(agreements) if agreements else math.nan,
        max(errors) if errors else math.nan,
        float(statistics.median(moved)) if moved else math.nan,
    )


__all__ = [
    "MODES",
    "CutCompressionRun",
    "WireDecision",
    "attach_cut_compression",
    "check_accuracy_loss_max",
    "codec_names",
    "decide_wire_codecs",
    "measure_run",
    "top1_and_relative_error",
]
