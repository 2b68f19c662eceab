"""Compression that changes the model, and the files that carry a compressed model.

Front door: :func:`compress` (a torch model -> :class:`Compressed`, the new
``nn.Module`` and the :class:`Stage` that rebuilds its architecture), then
:func:`save_compressed` / :func:`load_compressed` and
:func:`measure_compression` (bytes, FLOPs through tiercut's graph
extraction, latency measured here, accuracy).

Methods (one module each): ``lowrank`` (:mod:`~tiercut.preprocess.lowrank`),
``prune`` (structured channel pruning, :mod:`~tiercut.preprocess.prune`, or
unstructured magnitude pruning, :mod:`~tiercut.preprocess.magnitude`, by the
``pruning`` setting), ``int8`` and ``fp16`` (:mod:`~tiercut.preprocess.quantize`).

A compressed model on disk is a directory with ``model.safetensors`` (the
state dict; an int8 tensor as its integer values plus scales and zero
points; a tensor with enough zeros, e.g. magnitude-pruned, as a bitmap of its
non-zeros plus their values) and ``tiercut-compressed.json``: the base model (a zoo name or a
``tiercut.*`` factory; any other factory only with ``--allow-code``), its
inputs, and the stages, each a list of data edits from a closed vocabulary
(``lowrank`` a layer at a rank, ``resize`` a layer's channels, a precision,
an int8 mode). Loading builds the base architecture, applies the edits,
converts precision (re-running the int8 flow on zeros, whose observed
ranges the stored scales then replace) and loads the weights with
``strict=True``: nothing is unpickled and nothing in the file is code.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import os
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tiercut.errors import TiercutError
from tiercut.serialization import json_contract

METHODS = ("lowrank", "prune", "int8", "fp16")
#: ``prune``'s kinds: remove whole channels (FLOPs and bytes drop) or zero single weights (stored sparse)
PRUNINGS = ("channel", "magnitude")
FORMAT = "tiercut-compressed"
FORMAT_VERSION = 1
SPEC_FILE = "tiercut-compressed.json"
WEIGHTS_FILE = "model.safetensors"
_EDIT_OPS = ("lowrank", "resize")


@dataclass(frozen=True)
class Stage:
    """One compression step as data: ``method``, its settings, and its edits (or precision / int8 mode).

    Attributes:
        method: one of :data:`METHODS`.
        settings: the method's settings (``energy``, ``rank``, ``ratio``, ``mode``).
        edits: for lowrank / prune: ``{"op": "lowrank", "module", "kind", "rank"}`` or
            ``{"op": "resize", "module", "in", "out"}``, applied in order.
    """

    method: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    edits: tuple[Mapping[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "settings": dict(self.settings), "edits": [dict(e) for e in self.edits]}

    @classmethod
    @json_contract("compressed model stage", hint="write it with 'tiercut compress'")
    def from_dict(cls, data: Mapping[str, Any], where: str = "compressed model stage") -> Stage:
        if data.get("method") not in METHODS:
            raise TiercutError(f"{where}: a stage needs a method among {', '.join(METHODS)}")
        settings = data.get("settings", {})
        edits = data.get("edits", [])
        if not isinstance(settings, Mapping) or not isinstance(edits, list):
            raise TiercutError(f"{where}: a stage's settings must be an object and its edits a list")
        for key, value in settings.items():
            if not isinstance(value, (int, float, str, type(None))) or isinstance(value, bool):
                raise TiercutError(f"{where}: setting {key!r} must be a number or a string")
        checked = []
        for edit in edits:
            if not isinstance(edit, Mapping) or edit.get("op") not in _EDIT_OPS or not isinstance(edit.get("module"), str):
                raise TiercutError(f"{where}: an edit needs op ({', '.join(_EDIT_OPS)}) and a module path")
            for key in ("rank", "in", "out"):
                value = edit.get(key)
                if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                    raise TiercutError(f"{where}: edit of {edit['module']!r}: {key} must be a whole number >= 1")
            if edit["op"] == "lowrank" and (edit.get("kind") not in ("conv_vh", "conv_1x1", "linear") or not edit.get("rank")):
                raise TiercutError(f"{where}: lowrank edit of {edit['module']!r} needs kind conv_vh|conv_1x1|linear and a rank")
            checked.append(dict(edit))
        return cls(str(data["method"]), dict(settings), tuple(checked))


@dataclass(frozen=True)
class Compressed:
    """A compressed model: the module, the stage that made it, and the base it rebuilds from."""

    model: Any
    stage: Stage


def compress(
    model: Any,
    method: str,
    example_inputs: tuple[Any, ...],
    *,
    energy: float = 0.9,
    rank: int | None = None,
    ratio: float = 0.5,
    int8_mode: str = "auto",
    pruning: str = "channel",
    calibration: Sequence[tuple[Any, ...]] | None = None,
) -> Compressed:
    """Compress ``model`` (not changed) by ``method``.

    Requires a float32 ``nn.Module`` in eval mode for lowrank / prune / int8.
    Ensures a new module that takes the same inputs and gives outputs of the
    same shapes, and a :class:`Stage` from which :func:`rebuild` makes the
    same architecture.
    """
    if method not in METHODS:
        raise TiercutError(f"compression method {method!r} is not known; use one of {', '.join(METHODS)}")
    if method in ("lowrank", "prune", "int8") and _is_reduced(model):
        raise TiercutError(f"{method} needs float32 weights; this model is already fp16 or int8 (compress it first)")
    if method == "lowrank":
        from tiercut.preprocess.lowrank import LowRankSettings, decompose

        settings = LowRankSettings(energy=energy, rank=rank)
        new, edits = decompose(model, settings)
        return Compressed(new, Stage("lowrank", {"energy": energy, "rank": rank}, tuple(edits)))
    if method == "prune" and pruning not in PRUNINGS:
        raise TiercutError(f"pruning {pruning!r} is not known; use one of {', '.join(PRUNINGS)}")
    if method == "prune" and pruning == "magnitude":
        from tiercut.preprocess.magnitude import MagnitudeSettings, prune_magnitude

        new, _ = prune_magnitude(model, MagnitudeSettings(sparsity=ratio))
        return Compressed(new, Stage("prune", {"ratio": ratio, "pruning": "magnitude"}))
    if method == "prune":
        from tiercut.preprocess.prune import PruneSettings, prune_channels

        new, edits = prune_channels(model, example_inputs, PruneSettings(ratio=ratio))
        return Compressed(new, Stage("prune", {"ratio": ratio}, tuple(edits)))
    if method == "int8":
        from tiercut.preprocess.quantize import quantize_int8, resolve_mode

        mode = resolve_mode(model, int8_mode)
        new = quantize_int8(model, mode, list(calibration or [example_inputs]))
        return Compressed(new, Stage("int8", {"mode": mode}))
    import copy

    from tiercut.preprocess.quantize import half_precision

    return Compressed(half_precision(copy.deepcopy(model)), Stage("fp16"))


def _is_reduced(model: Any) -> bool:
    import torch

    if any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in model.modules()):
        return True
    return any(p.dtype != torch.float32 for p in model.parameters())


def apply_stage(model: Any, stage: Stage, example_inputs: tuple[Any, ...], where: str = "compressed model") -> Any:
    """Rebuild a stage's architecture on ``model`` (weights are whatever the new layers start with)."""
    import torch

    from tiercut.preprocess.lowrank import factor_module, set_submodule
    from tiercut.preprocess.prune import resized

    if stage.method == "fp16":
        from tiercut.preprocess.quantize import half_precision

        return half_precision(model)
    if stage.method == "int8":
        from tiercut.preprocess.quantize import quantize_int8, resolve_mode

        zeros = tuple(torch.zeros_like(x) if isinstance(x, torch.Tensor) else x for x in example_inputs)
        return quantize_int8(model, resolve_mode(model, str(stage.settings.get("mode", "auto"))), [zeros])
    for edit in stage.edits:
        try:
            layer = model.get_submodule(edit["module"])
        except AttributeError:
            raise TiercutError(f"{where}: edit names layer {edit['module']!r}, which the base model lacks") from None
        try:
            if edit["op"] == "lowrank":
                new = factor_module(layer, edit["kind"], int(edit["rank"]))
            else:
                new = resized(layer, in_size=edit.get("in"), out_size=edit.get("out"))
        except (AttributeError, TypeError):
            kind = type(layer).__name__
            raise TiercutError(f"{where}: edit {edit['op']} does not fit layer {edit['module']!r} ({kind})") from None
        set_submodule(model, edit["module"], new)
    return model.eval()


# ------------------------------------------------------------------------------------- state dict files
def _flatten_state(state: Mapping[str, Any], sparse: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    """A state dict as plain tensors (for safetensors) and a description of what they were (``sparse``: a floating
    tensor with enough zeros as bitmap + values, :mod:`tiercut.preprocess.magnitude`)."""
    import torch

    from tiercut.preprocess.magnitude import sparse_encode, worth_sparse

    tensors: dict[str, Any] = {}
    layout: dict[str, Any] = {}

    def put(key: str, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, torch.dtype):
            return {"kind": "dtype", "value": str(value).removeprefix("torch.")}
        if not isinstance(value, torch.Tensor):
            raise TiercutError(f"state entry {key!r} is a {type(value).__name__}; only tensors can be saved")
        if value.is_quantized:
            tensors[f"{key}::int"] = value.int_repr().contiguous()
            if value.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
                tensors[f"{key}::scale"] = value.q_per_channel_scales().double().contiguous()
                tensors[f"{key}::zero_point"] = value.q_per_channel_zero_points().long().contiguous()
                return {"kind": "qtensor", "scheme": "per_channel", "axis": int(value.q_per_channel_axis())}
            tensors[f"{key}::scale"] = torch.tensor([value.q_scale()], dtype=torch.float64)
            tensors[f"{key}::zero_point"] = torch.tensor([value.q_zero_point()], dtype=torch.int64)
            return {"kind": "qtensor", "scheme": "per_tensor"}
        if sparse and not value.is_sparse and worth_sparse(value):
            tensors[f"{key}::bitmap"], tensors[f"{key}::values"] = sparse_encode(value)
            return {"kind": "sparse", "shape": list(value.shape)}
        tensors[key] = value.detach().contiguous()
        return {"kind": "tensor"}

    for key, value in state.items():
        if isinstance(value, tuple):
            layout[key] = {"kind": "tuple", "items": [put(f"{key}::{i}", v) for i, v in enumerate(value)]}
        else:
            layout[key] = put(key, value)
    return tensors, layout


def _unflatten_state(tensors: Mapping[str, Any], layout: Mapping[str, Any], where: str) -> dict[str, Any]:
    import torch

    def get(key: str, info: Any) -> Any:
        if info is None:
            return None
        if not isinstance(info, Mapping):
            raise TiercutError(f"{where}: state layout of {key!r} is not an object")
        kind = info.get("kind")
        try:
            if kind == "dtype":
                value = getattr(torch, str(info.get("value")), None)
                if not isinstance(value, torch.dtype):
                    raise TiercutError(f"{where}: {key!r} names no torch dtype")
                return value
            if kind == "tensor":
                return tensors[key]
            if kind == "sparse":
                from tiercut.preprocess.magnitude import sparse_decode

                return sparse_decode(tensors[f"{key}::bitmap"], tensors[f"{key}::values"], info.get("shape"), f"{where}: {key!r}")
            if kind == "qtensor":
                ints, scale, zero = tensors[f"{key}::int"], tensors[f"{key}::scale"], tensors[f"{key}::zero_point"]
                if ints.dtype not in (torch.int8, torch.uint8, torch.int32):
                    raise TiercutError(f"{where}: int8 tensor {key!r} holds {ints.dtype}")
                if info.get("scheme") == "per_channel":
                    axis = info.get("axis")
                    if not isinstance(axis, int) or not 0 <= axis < ints.dim():
                        raise TiercutError(f"{where}: {key!r} has a bad per-channel axis")
                    return torch._make_per_channel_quantized_tensor(ints, scale, zero, axis)
                return torch._make_per_tensor_quantized_tensor(ints, float(scale[0]), int(zero[0]))
        except KeyError as exc:
            raise TiercutError(f"{where}: the weights file lacks tensor {exc}") from None
        raise TiercutError(f"{where}: state entry {key!r} has unknown kind {kind!r}")

    state: dict[str, Any] = {}
    for key, info in layout.items():
        if isinstance(info, Mapping) and info.get("kind") == "tuple":
            items = info.get("items")
            if not isinstance(items, list):
                raise TiercutError(f"{where}: tuple entry {key!r} lacks its items")
            state[key] = tuple(get(f"{key}::{i}", item) for i, item in enumerate(items))
        else:
            state[key] = get(key, info)
    return state


def _check_base(base: Any, where: str, allow_code: bool) -> str:
    from tiercut.graph.models import ZOO, data_model_spec

    if not isinstance(base, str) or not base:
        raise TiercutError(f"{where}: 'base' must name the model it was compressed from (a zoo name or a factory)")
    if base in ZOO or (base.startswith("tiercut.") and ":" in base and ".py" not in base):
        return base
    return data_model_spec(base, where=where, allow_code=allow_code)


def save_compressed(out_dir: str | Path, model: Any, base: str, inputs: Sequence[str], stages: Sequence[Stage],
                    report: Mapping[str, Any] | None = None) -> Path:
    """Write ``model`` (the result of ``stages`` applied to ``base``) as a compressed model directory.

    The directory is written next to its final place and renamed into it, so
    an error leaves no half-written model.
    """
    import shutil
    import tempfile

    from safetensors.torch import save_file

    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TiercutError(f"--out {out} exists and is not an empty directory; give a new directory")
    state = model.state_dict()
    tensors, layout = _flatten_state(state)
    versions = {str(k): {"version": int(v["version"])} for k, v in getattr(state, "_metadata", {}).items()
                if isinstance(v, Mapping) and isinstance(v.get("version"), int)}
    spec = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "base": base,
        "inputs": list(inputs),
        "stages": [s.to_dict() for s in stages],
        "state": layout,
        "versions": versions,
        "report": dict(report or {}),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # a directory like mkdir's, not mkdtemp's private one
    try:
        save_file(tensors, str(tmp / WEIGHTS_FILE))
        (tmp / SPEC_FILE).write_text(json.dumps(spec, indent=1) + "\n")
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def is_compressed_dir(spec: Any) -> bool:
    """Whether ``spec`` is a directory written by :func:`save_compressed`."""
    return isinstance(spec, (str, Path)) and (Path(spec) / SPEC_FILE).is_file()


def read_spec(path: str | Path) -> dict[str, Any]:
    """The checked JSON spec of a compressed model directory."""
    spec_path = Path(path) / SPEC_FILE
    where = f"compressed model {path}"
    try:
        data = json.loads(spec_path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise TiercutError(f"{where}: cannot read {SPEC_FILE} ({exc})") from None
    except json.JSONDecodeError as exc:
        raise TiercutError(f"{where}: {SPEC_FILE} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise TiercutError(f"{where}: {SPEC_FILE} is not a '{FORMAT}' spec; write it with 'tiercut compress'")
    if data.get("version") != FORMAT_VERSION:
        raise TiercutError(f"{where}: spec version {data.get('version')!r} is not {FORMAT_VERSION}; compress the model again")
    if not isinstance(data.get("inputs"), list) or not all(isinstance(i, str) for i in data["inputs"]):
        raise TiercutError(f"{where}: 'inputs' must be a list of input specs like 'x:float32:1x3x224x224'")
    if not isinstance(data.get("stages"), list) or not isinstance(data.get("state"), dict):
        raise TiercutError(f"{where}: the spec needs 'stages' (a list) and 'state' (an object)")
    data["stages"] = [Stage.from_dict(s, where=where) for s in data["stages"]]
    return data


def load_compressed(path: str | Path, *, allow_code: bool = False, seed: int = 0) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
    """(module, example inputs, spec) of a compressed model directory (see the module doc)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from tiercut.graph.model_spec import load_model

    where = f"compressed model {path}"
    spec = read_spec(path)
    base = _check_base(spec.get("base"), where, allow_code)
    loaded = load_model(base, spec["inputs"] or None, allow_code=allow_code, seed=seed)
    model = loaded.model.eval()
    for stage in spec["stages"]:
        model = apply_stage(model, stage, loaded.example_inputs, where)
    try:
        tensors = load_file(str(Path(path) / WEIGHTS_FILE))
    except (OSError, SafetensorError) as exc:
        raise TiercutError(f"{where}: cannot read {WEIGHTS_FILE} ({exc})") from None
    state = _unflatten_state(tensors, spec["state"], where)
    versions = spec.get("versions", {})
    if not isinstance(versions, Mapping) or not all(
        isinstance(v, Mapping) and isinstance(v.get("version"), int) and not isinstance(v.get("version"), bool)
        for v in versions.values()
    ):
        raise TiercutError(f"{where}: 'versions' must map module prefixes to {{\"version\": N}}")
    state = collections.OrderedDict(state)
    state._metadata = collections.OrderedDict((str(k), {"version": int(v["version"])}) for k, v in versions.items())  # type: ignore[attr-defined]
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TiercutError(f"{where}: the weights do not fit the architecture its spec rebuilds ({first})") from None
    return model.eval(), loaded.example_inputs, spec


def stored_weight_bytes(model: Any) -> int:
    """Bytes of ``model``'s state as :func:`save_compressed` stores it (int8 as integers, sparse tensors as
    bitmap + values): what a device receiving the file receives."""
    tensors, _ = _flatten_state(model.state_dict())
    return int(sum(t.numel() * t.element_size() for t in tensors.values()))


def model_label(spec: Mapping[str, Any]) -> str:
    """``resnet18+prune+int8``: the base model and its compression stages."""
    return "+".join([str(spec.get("base", "")).rpartition(":")[2] or "model", *(s.method for s in spec["stages"])])


# ------------------------------------------------------------------------------------- measuring
@dataclass(frozen=True)
class CompressionReport:
    """What a compressed model costs and how well it does.

    Attributes:
        method: the method (``reference`` for the uncompressed model).
        weight_bytes: bytes of the weights the layer graph counts (int8
            packed weights included).
        flops: FLOPs of one forward pass (tiercut's graph extraction).
        latency_s: median seconds of one forward pass here (``runs`` runs).
        accuracy: top-1 on the held-out digits split (None when not measured).
        agreement: top-1 agreement with the uncompressed model on the evaluation inputs.
        relative_error: ``||y - y_ref|| / ||y_ref||`` of the outputs on those inputs.
        nodes: layer graph nodes.
        stored_bytes: bytes of the state as a compressed model file stores it (sparse tensors as bitmap + values,
            :func:`stored_weight_bytes`); ``weight_bytes`` is what the dense kernels hold in memory.
        sparsity: the fraction of zeros among the Conv/Linear weights.
        nonzero_flops: FLOPs if multiply-adds with zero weights were skipped (a bound for sparse kernels;
            ``flops``, what torch's dense CPU kernels execute, is what the cost model counts).
        output_rms: root mean square of the model's outputs on the evaluation inputs (random-weight zoo models
            can output ~1e-9, below fp16's smallest normal number).
        agreement_fp32_path, relative_error_fp32_path: fp16 only: the same comparison for the weights rounded to
            fp16 and computed in float32 (the dequantised path): the error the stored weights cause, whatever the
            output scale; the fp16-compute figures above may show underflow instead.
    """

    method: str
    weight_bytes: int
    flops: int
    latency_s: float
    runs: int
    accuracy: float | None = None
    agreement: float | None = None
    relative_error: float | None = None
    nodes: int = 0
    note: str = ""
    stored_bytes: int | None = None
    sparsity: float | None = None
    nonzero_flops: int | None = None
    output_rms: float | None = None
    agreement_fp32_path: float | None = None
    relative_error_fp32_path: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _outputs(model: Any, batch: Any) -> Any:
    import torch

    with torch.no_grad():
        out = model(batch)
    return (out[0] if isinstance(out, (tuple, list)) else out).float()


def measure_compression(
    method: str,
    model: Any,
    example_inputs: tuple[Any, ...],
    *,
    reference: Any = None,
    eval_inputs: Any = None,
    eval_labels: Any = None,
    runs: int = 20,
    threads: int = 1,
) -> CompressionReport:
    """Bytes and FLOPs (through :func:`tiercut.graph.capture_model`), latency here and accuracy of ``model``.

    ``eval_inputs`` (a batch of the single input) with ``eval_labels`` gives
    top-1 accuracy; with a ``reference`` model, top-1 agreement and relative
    output error against it. Latency runs with ``threads`` torch threads
    (1 by default: steadier on a shared machine).
    """
    import torch

    from tiercut.graph import capture_model

    graph = capture_model(model, example_inputs=example_inputs).graph
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            for _ in range(3):
                model(*example_inputs)
            times = []
            for _ in range(max(1, runs)):
                start = time.perf_counter()
                model(*example_inputs)
                times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)
    accuracy = agreement = relative = rms = agreement_fp32 = relative_fp32 = None
    if eval_inputs is not None:
        out = _outputs(model, eval_inputs)
        rms = float(out.double().pow(2).mean().sqrt())
        if eval_labels is not None:
            accuracy = float((out.argmax(1) == eval_labels).float().mean())
        if reference is not None:
            ref = _outputs(reference, eval_inputs)
            agreement, relative = _agreement(out, ref)
            if method == "fp16":
                agreement_fp32, relative_fp32 = _agreement(_outputs(fp16_weights_fp32_compute(reference), eval_inputs), ref)
    from tiercut.preprocess.magnitude import nonzero_flops, sparsity_of

    return CompressionReport(
        method=method, weight_bytes=graph.total_param_bytes, flops=graph.total_flops,
        latency_s=float(statistics.median(times)), runs=len(times), accuracy=accuracy, agreement=agreement,
        relative_error=relative, nodes=len(graph), note=f"latency: median of {len(times)} runs, {threads} torch thread(s)",
        stored_bytes=stored_weight_bytes(model), sparsity=sparsity_of(model), nonzero_flops=nonzero_flops(graph, model),
        output_rms=rms, agreement_fp32_path=agreement_fp32, relative_error_fp32_path=relative_fp32,
    )


def _agreement(out: Any, ref: Any) -> tuple[float, float]:
    """Top-1 agreement and relative error ``||out - ref|| / ||ref||`` in float64: both scale-invariant (the same
    for any positive rescaling of both outputs)."""
    import torch

    out, ref = out.double(), ref.double()
    agreement = float((out.argmax(1) == ref.argmax(1)).float().mean())
    denom = float(torch.linalg.vector_norm(ref))
    return agreement, (float(torch.linalg.vector_norm(out - ref)) / denom if denom > 0 else math.inf)


def fp16_weights_fp32_compute(model: Any) -> Any:
    """A float32 copy of ``model`` whose floating parameters and buffers are rounded to fp16 and back: the
    dequantised path of fp16 weight storage."""
    import copy

    import torch

    out = copy.deepcopy(model).float().eval()
    with torch.no_grad():
        for tensor in [*out.parameters(), *out.buffers()]:
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())
    return out


__all__ = [
    "FORMAT",
    "METHODS",
    "PRUNINGS",
    "SPEC_FILE",
    "WEIGHTS_FILE",
    "Compressed",
    "CompressionReport",
    "Stage",
    "apply_stage",
    "compress",
    "is_compressed_dir",
    "load_compressed",
    "measure_compression",
    "model_label",
    "read_spec",
    "save_compressed",
    "stored_weight_bytes",
]
