"""The tensor at a cut, quantized and entropy-coded on the wire (JALAD), and decoded safely.

JALAD (Li et al., "JALAD: Joint Accuracy- and Latency-Aware Deep Structure
Decoupling for Edge-Cloud Execution", ICPADS 2018) sends the feature map at
the cut as ``c``-bit integers after a linear min/max quantization, then
compresses them losslessly (JALAD uses Huffman coding; here zstd, the
``zstandard`` binding). This module is that codec:

- :func:`quantize` / :func:`dequantize`: ``q = round((x - min) / scale)``,
  ``scale = (max - min) / (2**bits - 1)``, one ``(min, scale)`` per tensor or
  per channel (dimension 1; per sample: dimension 0 is the batch);
- :func:`encode_tensor`: a self-describing blob (magic, a small JSON header,
  the float32 mins and scales, the zstd frame of the codes packed ``8/bits``
  per byte when ``bits`` divides 8, one per byte otherwise);
- :func:`decode_tensor`: parses the header as data (never code), checks the
  dtype against an allow-list, the shape against ``max_elements`` *before*
  allocating, and decompresses with a bounded streaming read of at most the packed
  size the shape implies plus one byte, whatever size the zstd frame declares
  (a decompression bomb stops there), then dequantizes;
- :func:`roundtrip`: what the receiver gets for a tensor (the reference a
  compressed cut's output is compared with).

A tensor with a non-finite value is refused (:class:`CutCodecError`); the
sender then sends it raw.

On the wire (the runtime's hook, :func:`compress_values` /
:func:`decompress_values`): a query's meta may carry ``cut_codec``, value name
-> ``[bits, granularity]`` (the plan's ``cut_compression``; value names are
the layer-graph node names at module granularity). A sender replaces those
floating tensors by their blob (a uint8 tensor) and lists them in the meta's
``compressed``; only to a worker whose ``Status`` advertised
:data:`WIRE_FORMAT` (the negotiated flag; a worker started with cut
compression off advertises nothing and refuses a compressed query). The
receiver decodes them within its message budget before anything runs.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from tiercut.errors import TiercutError

MAGIC = b"TCQ1"
_PREFIX = struct.Struct("<4sI")  # magic, header length
#: floating dtypes a blob may declare (the decoded tensor's dtype)
ALLOWED_DTYPES = ("float32", "float16", "bfloat16", "float64")
#: the header of a blob is small; a longer one is refused before parsing
MAX_HEADER_BYTES = 4096
#: the zstd level (3: zstd's default, fast at 8-bit codes' entropy)
DEFAULT_LEVEL = 3
#: what a worker's Status advertises when it accepts compressed values
WIRE_FORMAT = "TCQ1"
#: query meta keys: value name -> [bits, granularity] to compress; names sent compressed
META_CODECS = "cut_codec"
META_COMPRESSED = "compressed"


class CutCodecError(TiercutError):
    """A tensor that cannot be compressed, or a blob that is not a valid compressed tensor."""


@dataclass(frozen=True)
class Quantized:
    """Codes and their affine parameters: ``x ~ codes * scale + minimum`` (broadcast over the groups)."""

    codes: np.ndarray  # uint8, the tensor's shape
    minimum: np.ndarray  # float32, one per group
    scale: np.ndarray  # float32, one per group
    bits: int
    granularity: str


def _groups_view(x: np.ndarray, granularity: str) -> np.ndarray:
    """``x`` as [groups, values]: one group per sample (dimension 0) or per sample and channel (dimensions 0, 1)."""
    if x.ndim == 0:
        return x.reshape(1, 1)
    if granularity == "channel" and x.ndim >= 2:
        return x.reshape(x.shape[0] * x.shape[1], -1)
    return x.reshape(x.shape[0], -1)


def _to_numpy(tensor: Any) -> tuple[np.ndarray, str]:
    if isinstance(tensor, np.ndarray):
        return tensor, str(tensor.dtype)
    import torch

    if not isinstance(tensor, torch.Tensor):
        raise CutCodecError(f"only tensors are compressed at a cut, not {type(tensor).__name__}")
    dtype = str(tensor.dtype).removeprefix("torch.")
    return tensor.detach().to("cpu", torch.float32).numpy(), dtype


def quantize(tensor: Any, bits: int = 8, granularity: str = "tensor") -> Quantized:
    """Linear min/max quantization of a floating tensor to ``bits`` (1..8) per value."""
    if not 1 <= int(bits) <= 8:
        raise CutCodecError(f"bits={bits!r}; use 1 to 8")
    if granularity not in ("tensor", "channel"):
        raise CutCodecError(f"granularity {granularity!r}; use tensor or channel")
    x, dtype = _to_numpy(tensor)
    if dtype not in ALLOWED_DTYPES:
        raise CutCodecError(f"a {dtype} tensor is not quantized (only {', '.join(ALLOWED_DTYPES)})")
    x = np.asarray(x, dtype=np.float32)
    if x.size and not np.isfinite(x).all():
        raise CutCodecError("the tensor holds inf or nan; it is sent raw")
    groups = _groups_view(x, granularity)
    if groups.shape[1] == 0:
        lo = np.zeros(groups.shape[0], np.float32)
        hi = lo
    else:
        lo = groups.min(axis=1).astype(np.float32)
        hi = groups.max(axis=1).astype(np.float32)
    levels = (1 << int(bits)) - 1
    scale = ((hi.astype(np.float64) - lo) / levels).astype(np.float32)
    scale = np.where(scale > 0, scale, np.float32(1.0)).astype(np.float32)
    codes = np.rint((groups - lo[:, None]) / scale[:, None])
    codes = np.clip(codes, 0, levels).astype(np.uint8).reshape(x.shape)
    return Quantized(codes, lo, scale, int(bits), granularity)


def dequantize(q: Quantized, dtype: str = "float32") -> Any:
    """The float tensor (torch) the codes stand for."""
    import torch

    groups = _groups_view(q.codes, q.granularity).astype(np.float32)
    values = (groups * q.scale[:, None] + q.minimum[:, None]).reshape(q.codes.shape)
    return torch.from_numpy(np.ascontiguousarray(values)).to(getattr(torch, dtype))


def roundtrip(tensor: Any, bits: int = 8, granularity: str = "tensor") -> Any:
    """What a receiver decodes for ``tensor``: dequantize(quantize(tensor)), in the tensor's dtype."""
    _, dtype = _to_numpy(tensor)
    return dequantize(quantize(tensor, bits, granularity), dtype)


def _packed_bytes(numel: int, bits: int) -> int:
    return math.ceil(numel * bits / 8) if 8 % bits == 0 else numel


def _pack(codes: np.ndarray, bits: int) -> bytes:
    flat = codes.reshape(-1)
    if bits == 8 or 8 % bits:
        return flat.tobytes()
    per = 8 // bits
    padded = np.zeros(_packed_bytes(flat.size, bits) * per, np.uint8)
    padded[: flat.size] = flat
    lanes = padded.reshape(-1, per).astype(np.uint16)
    shifts = np.arange(per, dtype=np.uint16) * bits
    return (lanes << shifts).sum(axis=1).astype(np.uint8).tobytes()


def _unpack(data: bytes, numel: int, bits: int) -> np.ndarray:
    raw = np.frombuffer(data, np.uint8)
    if bits == 8 or 8 % bits:
        return raw[:numel].copy()
    per = 8 // bits
    shifts = np.arange(per, dtype=np.uint8) * bits
    lanes = (raw[:, None] >> shifts[None, :]) & np.uint8((1 << bits) - 1)
    return lanes.reshape(-1)[:numel].copy()


def _zstd() -> Any:
    try:
        import zstandard
    except ImportError:  # pragma: no cover - a declared dependency
        raise CutCodecError("cut compression needs the 'zstandard' package; pip install 'zstandard>=0.22,<1'") from None
    return zstandard


def encode_tensor(tensor: Any, bits: int = 8, granularity: str = "tensor", level: int = DEFAULT_LEVEL) -> bytes:
    """The blob of ``tensor`` quantized to ``bits`` and zstd-compressed (module docstring)."""
    _, dtype = _to_numpy(tensor)
    q = quantize(tensor, bits, granularity)
    packed = _pack(q.codes, q.bits)
    frame = _zstd().ZstdCompressor(level=level).compress(packed)
    header = json.dumps(
        {
            "dtype": dtype,
            "shape": list(q.codes.shape),
            "bits": q.bits,
            "granularity": granularity,
            "groups": len(q.minimum),
            "zstd_bytes": len(frame),
        },
        separators=(",", ":"),
    ).encode()
    return _PREFIX.pack(MAGIC, len(header)) + header + q.minimum.tobytes() + q.scale.tobytes() + frame


def _int_list(value: Any, what: str) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        raise CutCodecError(f"compressed tensor: {what} must be a list of integers >= 0")
    return value


def _read_header(blob: bytes) -> tuple[dict[str, Any], int]:
    if len(blob) < _PREFIX.size:
        raise CutCodecError("compressed tensor: shorter than its prefix")
    magic, header_len = _PREFIX.unpack_from(blob)
    if magic != MAGIC:
        raise CutCodecError("compressed tensor: wrong magic (not a tiercut cut-codec blob)")
    if header_len > MAX_HEADER_BYTES or _PREFIX.size + header_len > len(blob):
        raise CutCodecError(f"compressed tensor: header of {header_len} bytes is out of bounds")
    try:
        header = json.loads(blob[_PREFIX.size : _PREFIX.size + header_len])
    except (ValueError, UnicodeDecodeError):
        raise CutCodecError("compressed tensor: header is not JSON") from None
    if not isinstance(header, dict):
        raise CutCodecError("compressed tensor: header is not an object")
    return header, _PREFIX.size + header_len


def decode_tensor(blob: bytes, *, max_elements: int) -> Any:
    """The tensor of a blob from :func:`encode_tensor` (a torch tensor of the declared dtype).

    Everything is checked before memory is allocated for it: the dtype is one
    of :data:`ALLOWED_DTYPES`, the shape's element count is at most
    ``max_elements`` (the caller's bound, e.g. the bytes it admits / 4), the
    groups match the shape, and zstd may produce at most the packed size the
    shape implies (then exactly that). Any violation is a
    :class:`CutCodecError`.
    """
    blob = bytes(blob)
    header, offset = _read_header(blob)
    dtype = header.get("dtype")
    if dtype not in ALLOWED_DTYPES:
        raise CutCodecError(f"compressed tensor: dtype {dtype!r} is not allowed ({', '.join(ALLOWED_DTYPES)})")
    shape = _int_list(header.get("shape"), "shape")
    bits = header.get("bits")
    if not isinstance(bits, int) or isinstance(bits, bool) or not 1 <= bits <= 8:
        raise CutCodecError(f"compressed tensor: bits {bits!r} is not 1..8")
    granularity = header.get("granularity")
    if granularity not in ("tensor", "channel"):
        raise CutCodecError(f"compressed tensor: granularity {granularity!r} is not tensor or channel")
    numel = math.prod(shape)
    if numel > max_elements:
        raise CutCodecError(f"compressed tensor declares {numel:,} elements, over the {max_elements:,} admitted")
    expected_groups = 1
    if shape:
        expected_groups = shape[0] * (shape[1] if granularity == "channel" and len(shape) >= 2 else 1)
    if header.get("groups") != expected_groups:
        raise CutCodecError(f"compressed tensor: {header.get('groups')!r} groups, the shape implies {expected_groups}")
    zstd_bytes = header.get("zstd_bytes")
    end = offset + 8 * expected_groups
    if not isinstance(zstd_bytes, int) or isinstance(zstd_bytes, bool) or end + zstd_bytes != len(blob):
        raise CutCodecError("compressed tensor: its length does not match its header")
    minimum = np.frombuffer(blob, np.float32, expected_groups, offset).copy()
    scale = np.frombuffer(blob, np.float32, expected_groups, offset + 4 * expected_groups).copy()
    if not (np.isfinite(minimum).all() and np.isfinite(scale).all()):
        raise CutCodecError("compressed tensor: a non-finite scale or minimum")
    packed_len = _packed_bytes(numel, bits)
    zstd = _zstd()
    try:
        # a bounded read: whatever size the frame declares, at most packed_len + 1 bytes are produced
        with zstd.ZstdDecompressor().stream_reader(blob[end:], read_across_frames=False) as reader:
            packed = reader.read(packed_len + 1)
    except zstd.ZstdError as exc:
        raise CutCodecError(f"compressed tensor: zstd refused it ({exc})") from None
    if len(packed) != packed_len:
        raise CutCodecError(f"compressed tensor: {len(packed)} code bytes, the shape needs {packed_len}")
    codes = _unpack(packed, numel, bits).reshape(shape)
    if codes.size and int(codes.max()) > (1 << bits) - 1:
        raise CutCodecError("compressed tensor: a code beyond its bits")
    return dequantize(Quantized(codes, minimum, scale, bits, granularity), dtype)


def wire_codecs(meta: Any) -> dict[str, tuple[int, str]]:
    """The ``cut_codec`` map of a query's meta, checked (an absent one: empty)."""
    raw = meta.get(META_CODECS) if isinstance(meta, dict) else None
    if raw is None:
        return {}
    if not isinstance(raw, dict) or len(raw) > 4096:
        raise CutCodecError("the query's cut_codec is not a map of at most 4096 value names")
    out = {}
    for name, spec in raw.items():
        if not (isinstance(name, str) and isinstance(spec, list) and len(spec) == 2 and isinstance(spec[0], int)
                and not isinstance(spec[0], bool) and 1 <= spec[0] <= 8 and spec[1] in ("tensor", "channel")):
            raise CutCodecError(f"the query's cut_codec entry {str(name)[:80]!r} is not [bits 1..8, tensor|channel]")
        out[name] = (spec[0], spec[1])
    return out


def compress_values(
    values: dict[str, Any], codecs: dict[str, tuple[int, str]], already: Any = ()
) -> tuple[dict[str, Any], list[str]]:
    """``values`` with the floating tensors ``codecs`` names (and ``already`` does not) replaced by their blob as a
    uint8 tensor, and the names compressed (a tensor the codec refuses, e.g. with inf, stays raw)."""
    import torch

    out = dict(values)
    names = []
    for name, (bits, granularity) in codecs.items():
        value = out.get(name)
        if name in already or not (isinstance(value, torch.Tensor) and value.is_floating_point()):
            continue
        try:
            blob = encode_tensor(value, bits, granularity)
        except CutCodecError:
            continue
        out[name] = torch.frombuffer(bytearray(blob), dtype=torch.uint8)
        names.append(name)
    return out, names


def decompress_values(values: dict[str, Any], names: Any, *, max_bytes: int) -> dict[str, Any]:
    """``values`` with the compressed ``names`` decoded, their decoded bytes together at most ``max_bytes``."""
    import torch

    if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        raise CutCodecError("the query's compressed list is not a list of distinct value names")
    out = dict(values)
    budget = int(max_bytes)
    for name in names:
        blob = out.get(name)
        if not (isinstance(blob, torch.Tensor) and blob.dtype == torch.uint8 and blob.dim() == 1):
            raise CutCodecError(f"compressed value {name[:80]!r} is not a byte string")
        tensor = decode_tensor(blob.numpy().tobytes(), max_elements=max(budget, 0) // 2)
        budget -= tensor.numel() * tensor.element_size()
        if budget < 0:
            raise CutCodecError(f"the compressed values decode to more than {max_bytes:,} bytes")
        out[name] = tensor
    return out


def compressed_reference(graph_module: Any, inputs: tuple[Any, ...], names: Any, codecs: dict[str, tuple[int, str]]) -> Any:
    """The model's output when the values ``names`` (those that cross devices) are received as their codec's
    :func:`roundtrip`: what a run with those cuts compressed must answer."""
    import torch
    import torch.fx

    chosen = {n: codecs[n] for n in names if n in codecs}

    class Compressed(torch.fx.Interpreter):
        def run_node(self, node: Any) -> Any:
            out = super().run_node(node)
            spec = chosen.get(node.name)
            if spec is not None and isinstance(out, torch.Tensor) and out.is_floating_point():
                try:
                    return roundtrip(out, *spec)
                except CutCodecError:
                    return out
            return out

    with torch.no_grad():
        return Compressed(graph_module).run(*inputs)


__all__ = [
    "ALLOWED_DTYPES",
    "MAGIC",
    "META_CODECS",
    "META_COMPRESSED",
    "WIRE_FORMAT",
    "CutCodecError",
    "Quantized",
    "compress_values",
    "compressed_reference",
    "decode_tensor",
    "decompress_values",
    "dequantize",
    "encode_tensor",
    "plan_wire_codecs",
    "quantize",
    "roundtrip",
    "wire_codecs",
]


def plan_wire_codecs(plan: Any, problem: Any) -> dict[str, tuple[int, str]]:
    """A plan's ``cut_compression`` (node -> codec name) as the runtime's value name -> ``(bits, granularity)``."""
    options = problem.cut_compression
    if not plan.cut_compression:
        return {}
    if options is None:
        raise CutCodecError("the plan compresses cut tensors but its problem has no cut_compression options")
    return {node: (options.codec(k).bits, options.codec(k).granularity) for node, k in plan.cut_compression.items()}
