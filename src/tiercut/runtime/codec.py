"""Values on the wire: a small JSON header plus raw tensor bytes, never pickle.

A *frame* carries one message of the runtime (a query's values and route,
a worker's reply): a JSON header with the message's metadata and, for each
named value, a description; then the raw bytes of every tensor. Nothing in
it is code: the receiver parses JSON, checks every offset and size, and
copies bytes into freshly allocated tensors of an allowed dtype, or, when
the caller *borrows* (a worker, whose programs never write their inputs),
views them in place (see :func:`decode_chunks`).

Layout (little endian)::

    magic  b"TCF1"        4 bytes
    header_len            u32
    payload_len           u64
    crc32                 u32   zlib.crc32 of the header
    header                header_len bytes of UTF-8 JSON (padded with spaces to end 8-aligned)
    payload               payload_len bytes: tensor bytes, each at an 8-aligned offset

Integrity: the header carries, for each tensor, a 64-bit checksum of its
bytes (:func:`word_sum`: the wrapping sum of its 64-bit little-endian words,
of its trailing bytes and of its length), and the prefix the header's CRC-32.
A changed byte changes its word by a non-zero amount below 2**64, so any
single damaged byte, or any damage confined to one word, is detected, as is
a lost or added chunk (the lengths). The word sum runs at memory speed (a
CRC-32 of every byte would triple a 1 MB hop's overhead here); it is not
meant against an adversary: mutual TLS authenticates every byte on a real
network.

The header is ``{"meta": {...}, "values": {name: spec}}`` with ``spec``:

* ``{"kind": "tensor", "dtype": "float32", "shape": [1, 3], "offset": 0, "nbytes": 12}``
* ``{"kind": "int" | "float" | "bool", "value": ...}`` (floats: ``"inf"``, ``"-inf"``, ``"nan"`` as strings)
* ``{"kind": "none"}``
* ``{"kind": "size", "value": [1, 3, 224, 224]}`` (``torch.Size``)
* ``{"kind": "tuple" | "list", "items": [spec, ...]}``

These are the values that cross partitions in the zoo (see
:mod:`tiercut.graph.split`): tensors, Python ints and bools (ViT's shape
glue), ``torch.Size``, ``None`` and tuples mixing them. Anything else is a
:class:`CodecError` naming its type.

A frame can be produced directly as a list of chunks of at most
``chunk_bytes`` (gRPC messages) with one copy of the tensor bytes, and
decoded from such a list with one copy into the destination tensors, or
none: the header is padded so that the payload, and so every tensor, starts
8-aligned in the frame (and in a chunk, chunks being multiples of 8 bytes
long), and a tensor that lies within one received chunk can be a view of it.
"""

from __future__ import annotations

import json
import math
import struct
import warnings
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tiercut.errors import TiercutError

MAGIC = b"TCF1"
_PREFIX = struct.Struct("<4sIQI")
PREFIX_BYTES = _PREFIX.size
#: gRPC messages carry at most this many bytes of a frame (docs/DESIGN.md: messages over 4 MB are chunked).
DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024
_ALIGN = 8
_MAX_HEADER_BYTES = 16 * 1024 * 1024
_MAX_DEPTH = 32
_MAX_NDIM = 16

# A decoded tensor first views the received message (bytes, read-only); torch warns, once, that it cannot mark
# such a tensor read-only. Borrowed tensors are read-only by contract (decode_chunks), others are cloned.
warnings.filterwarnings("ignore", message="The given buffer is not writable", category=UserWarning)

#: dtype name on the wire -> torch dtype attribute name
DTYPES: dict[str, str] = {
    "float32": "float32",
    "float64": "float64",
    "float16": "float16",
    "bfloat16": "bfloat16",
    "int64": "int64",
    "int32": "int32",
    "int16": "int16",
    "int8": "int8",
    "uint8": "uint8",
    "bool": "bool",
    "complex64": "complex64",
}


class CodecError(TiercutError):
    """A value that cannot be encoded, or bytes that are not a valid frame."""


@dataclass(frozen=True)
class Frame:
    """A decoded frame: the header's ``meta`` mapping and the named values."""

    meta: dict[str, Any]
    values: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------- dtypes
def dtype_name(dtype: Any) -> str:
    """Wire name of a torch dtype (``torch.float32`` -> ``"float32"``)."""
    name = str(dtype).removeprefix("torch.")
    if name not in DTYPES:
        raise CodecError(f"tensors of dtype {name} cannot be sent; use one of {', '.join(DTYPES)}")
    return name


def torch_dtype(name: str) -> Any:
    """The torch dtype of a wire name; unknown names are a :class:`CodecError`."""
    import torch

    if not isinstance(name, str) or name not in DTYPES:
        raise CodecError(f"frame names dtype {name!r}, which is not one of {', '.join(DTYPES)}")
    return getattr(torch, DTYPES[name])


#: bytes per element of each wire dtype
_ITEM_BYTES: dict[str, int] = {
    "float32": 4,
    "float64": 8,
    "float16": 2,
    "bfloat16": 2,
    "int64": 8,
    "int32": 4,
    "int16": 2,
    "int8": 1,
    "uint8": 1,
    "bool": 1,
    "complex64": 8,
}


# --------------------------------------------------------------------- encoding
def word_sum(data: memoryview | bytes) -> int:
    """64-bit checksum of bytes: wrapping sum of the little-endian u64 words, the trailing bytes and the length."""
    import numpy as np

    view = memoryview(data).cast("B")
    words = len(view) // 8
    total = int(np.frombuffer(view, dtype="<u8", count=words).sum(dtype=np.uint64)) if words else 0
    tail = int.from_bytes(bytes(view[words * 8 :]), "little")
    return (total + tail + len(view)) & 0xFFFFFFFFFFFFFFFF


def tensor_bytes_view(tensor: Any) -> memoryview:
    """The raw bytes of a tensor (on the CPU, contiguous; copied only if it is not), as a memoryview."""
    import torch

    flat = tensor.detach()
    if flat.device.type != "cpu":
        flat = flat.cpu()
    if not flat.is_contiguous():
        flat = flat.contiguous()
    return memoryview(flat.view(-1).view(torch.uint8).numpy()).cast("B")


def _float_json(value: float) -> Any:
    if math.isfinite(value):
        return value
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


class _Encoder:
    def __init__(self) -> None:
        self.buffers: list[memoryview] = []
        self.offset = 0

    def spec(self, value: Any, depth: int = 0) -> dict[str, Any]:
        import torch

        if depth > _MAX_DEPTH:
            raise CodecError(f"value nests deeper than {_MAX_DEPTH} levels; flatten it")
        if isinstance(value, torch.Tensor):
            name = dtype_name(value.dtype)
            data = tensor_bytes_view(value)
            spec = {
                "kind": "tensor",
                "dtype": name,
                "shape": list(value.shape),
                "offset": self.offset,
                "nbytes": len(data),
                "sum": word_sum(data),
            }
            self.buffers.append(data)
            self.offset += len(data)
            pad = (-self.offset) % _ALIGN
            if pad:
                self.buffers.append(memoryview(bytes(pad)))
                self.offset += pad
            return spec
        if isinstance(value, torch.Size):
            return {"kind": "size", "value": [int(v) for v in value]}
        if value is None:
            return {"kind": "none"}
        if isinstance(value, bool):
            return {"kind": "bool", "value": value}
        if isinstance(value, int):
            return {"kind": "int", "value": int(value)}
        if isinstance(value, float):
            return {"kind": "float", "value": _float_json(value)}
        if isinstance(value, (tuple, list)) and not hasattr(value, "_fields"):
            kind = "tuple" if isinstance(value, tuple) else "list"
            return {"kind": kind, "items": [self.spec(v, depth + 1) for v in value]}
        raise CodecError(
            f"a value of type {type(value).__name__} cannot cross devices; only tensors, ints, floats, bools, "
            "None, torch.Size and tuples/lists of them are sent"
        )


def encode_chunks(
    meta: Mapping[str, Any],
    values: Mapping[str, Any] | None = None,
    *,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> list[bytes]:
    """Encode a frame as a list of ``bytes`` chunks of at most ``chunk_bytes`` each."""
    if chunk_bytes < PREFIX_BYTES:
        raise CodecError(f"chunk size {chunk_bytes} is smaller than the {PREFIX_BYTES}-byte frame prefix")
    encoder = _Encoder()
    specs = {}
    for name, value in (values or {}).items():
        if not isinstance(name, str):
            raise CodecError(f"value names must be strings, got {type(name).__name__}")
        specs[name] = encoder.spec(value)
    try:
        header = json.dumps({"meta": dict(meta), "values": specs}, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise CodecError(f"frame metadata is not plain JSON data: {exc}") from None
    header += b" " * (-(PREFIX_BYTES + len(header)) % _ALIGN)  # the payload starts 8-aligned: tensors can be views
    crc = zlib.crc32(header)
    parts: list[memoryview] = [memoryview(_PREFIX.pack(MAGIC, len(header), encoder.offset, crc)), memoryview(header)]
    parts.extend(encoder.buffers)
    return _rechunk(parts, chunk_bytes)


def _rechunk(parts: Sequence[memoryview], chunk_bytes: int) -> list[bytes]:
    chunks: list[bytes] = []
    pending: list[memoryview] = []
    pending_bytes = 0
    for part in parts:
        start = 0
        while start < len(part):
            take = min(len(part) - start, chunk_bytes - pending_bytes)
            pending.append(part[start : start + take])
            pending_bytes += take
            start += take
            if pending_bytes == chunk_bytes:
                chunks.append(b"".join(pending))
                pending, pending_bytes = [], 0
    if pending or not chunks:
        chunks.append(b"".join(pending))
    return chunks


def encode_frame(meta: Mapping[str, Any], values: Mapping[str, Any] | None = None) -> bytes:
    """Encode a frame as one ``bytes`` object."""
    return encode_chunks(meta, values, chunk_bytes=1 << 62)[0]


# --------------------------------------------------------------------- decoding
class _Chunks:
    """Random access to a byte range spread over a list of buffers."""

    def __init__(self, chunks: Sequence[bytes | bytearray | memoryview]) -> None:
        self.views = [memoryview(c).cast("B") for c in chunks]
        self.starts: list[int] = []
        total = 0
        for view in self.views:
            self.starts.append(total)
            total += len(view)
        self.total = total

    def pieces(self, start: int, length: int) -> list[memoryview]:
        """Views covering ``[start, start + length)`` in order."""
        import bisect

        out: list[memoryview] = []
        if length <= 0:
            return out
        i = max(0, bisect.bisect_right(self.starts, start) - 1)
        position = start
        end = start + length
        while position < end and i < len(self.views):
            view = self.views[i]
            local = position - self.starts[i]
            take = min(len(view) - local, end - position)
            if take > 0:
                out.append(view[local : local + take])
                position += take
            i += 1
        return out

    def read(self, start: int, length: int) -> bytes:
        return b"".join(self.pieces(start, length))


def _shape(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or len(value) > _MAX_NDIM:
        raise CodecError(f"frame has a tensor shape {value!r:.60}; shapes are lists of at most {_MAX_NDIM} sizes")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        raise CodecError(f"frame has a tensor shape {value!r:.60} with a non-integer or negative size")
    return tuple(value)


def _float_value(value: Any) -> float:
    if isinstance(value, str) and value in ("inf", "-inf", "nan"):
        return float(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise CodecError(f"frame has a float value {value!r:.40}; expected a number or 'inf', '-inf', 'nan'")


class _Decoder:
    def __init__(self, chunks: _Chunks, payload_start: int, payload_len: int, *, borrow: bool = False) -> None:
        self.chunks = chunks
        self.payload_start = payload_start
        self.payload_len = payload_len
        self.borrow = borrow
        self.covered = 0

    def tensor(self, dtype: Any, shape: tuple[int, ...], start: int, nbytes: int, checksum: Any) -> Any:
        """The tensor whose bytes are ``[start, start + nbytes)``, after checking their word sum.

        Bytes within one chunk, aligned for the dtype, are viewed (then
        cloned unless the caller borrows); others are copied piece by piece.
        """
        import torch

        pieces = self.chunks.pieces(start, nbytes) if nbytes else []
        if len(pieces) == 1:
            if word_sum(pieces[0]) != checksum:
                raise CodecError("frame tensor checksum does not match; the message was corrupted in transit")
            view = torch.frombuffer(pieces[0], dtype=dtype).view(shape)  # shares the message's bytes
            if self.borrow and view.data_ptr() % view.element_size() == 0:
                return view
            return view.clone()
        tensor = torch.empty(shape, dtype=dtype)
        if nbytes:
            target = tensor.view(-1).view(torch.uint8).numpy()
            position = 0
            for piece in pieces:
                target[position : position + len(piece)] = piece
                position += len(piece)
        if word_sum(memoryview(target) if nbytes else b"") != checksum:
            raise CodecError("frame tensor checksum does not match; the message was corrupted in transit")
        return tensor

    def value(self, spec: Any, depth: int = 0) -> Any:
        import torch

        if depth > _MAX_DEPTH or not isinstance(spec, dict):
            raise CodecError("frame value description is not a mapping or nests too deep")
        kind = spec.get("kind")
        if kind == "tensor":
            dtype_name_ = spec.get("dtype")
            dtype = torch_dtype(dtype_name_)
            shape = _shape(spec.get("shape"))
            offset, nbytes = spec.get("offset"), spec.get("nbytes")
            if not (isinstance(offset, int) and isinstance(nbytes, int)) or offset < 0 or nbytes < 0:
                raise CodecError("frame tensor has a non-integer or negative offset/nbytes")
            numel = math.prod(shape)
            if numel * _ITEM_BYTES[dtype_name_] != nbytes:
                raise CodecError(f"frame tensor of shape {list(shape)} and dtype {dtype_name_} says it has {nbytes} bytes")
            if offset + nbytes > self.payload_len:
                raise CodecError("frame tensor lies outside the payload; the frame is truncated or corrupt")
            tensor = self.tensor(dtype, shape, self.payload_start + offset, nbytes, spec.get("sum"))
            pad = (-nbytes) % _ALIGN
            if pad and offset + nbytes + pad <= self.payload_len:
                if any(self.chunks.read(self.payload_start + offset + nbytes, pad)):
                    raise CodecError("frame padding is not zero; the message was corrupted in transit")
                self.covered += pad
            self.covered += nbytes
            return tensor
        if kind == "int":
            value = spec.get("value")
            if not isinstance(value, int) or isinstance(value, bool):
                raise CodecError(f"frame int value {value!r:.40} is not an integer")
            return value
        if kind == "bool":
            value = spec.get("value")
            if not isinstance(value, bool):
                raise CodecError(f"frame bool value {value!r:.40} is not true/false")
            return value
        if kind == "float":
            return _float_value(spec.get("value"))
        if kind == "none":
            return None
        if kind == "size":
            return torch.Size(_shape(spec.get("value")))
        if kind in ("tuple", "list"):
            items = spec.get("items")
            if not isinstance(items, list):
                raise CodecError(f"frame {kind} has no item list")
            built = [self.value(item, depth + 1) for item in items]
            return tuple(built) if kind == "tuple" else built
        raise CodecError(f"frame value kind {kind!r:.40} is not known")


def frame_length(first_chunk: bytes | memoryview) -> int:
    """Total bytes of the frame that starts with ``first_chunk`` (needs the 20-byte prefix)."""
    if len(first_chunk) < PREFIX_BYTES:
        raise CodecError(f"frame is shorter than its {PREFIX_BYTES}-byte prefix")
    magic, header_len, payload_len, _ = _PREFIX.unpack_from(first_chunk, 0)
    if magic != MAGIC:
        raise CodecError("bytes are not a tiercut frame (bad magic); the message is corrupt or not from tiercut")
    return PREFIX_BYTES + header_len + payload_len


def decode_chunks(
    chunks: Sequence[bytes | bytearray | memoryview], *, max_bytes: int | None = None, borrow: bool = False
) -> Frame:
    """Decode a frame from its chunks, checking sizes, offsets, the header's CRC-32 and every tensor's word sum.

    Tensors are fresh, writable copies unless ``borrow``: then a tensor
    lying within one chunk is a view of that chunk's bytes (no copy; it
    keeps the chunk alive), which the caller must not write into. A
    worker borrows: its programs never write their inputs (the allow-list
    admits in-place operators on values a program created only).
    """
    data = _Chunks(chunks)
    if data.total < PREFIX_BYTES:
        raise CodecError(f"frame is {data.total} bytes, shorter than its {PREFIX_BYTES}-byte prefix")
    magic, header_len, payload_len, crc = _PREFIX.unpack(data.read(0, PREFIX_BYTES))
    if magic != MAGIC:
        raise CodecError("bytes are not a tiercut frame (bad magic); the message is corrupt or not from tiercut")
    expected = PREFIX_BYTES + header_len + payload_len
    if max_bytes is not None and expected > max_bytes:
        raise CodecError(f"frame of {expected} bytes exceeds the limit of {max_bytes} bytes")
    if header_len > _MAX_HEADER_BYTES:
        raise CodecError(f"frame header of {header_len} bytes exceeds {_MAX_HEADER_BYTES}")
    if data.total != expected:
        raise CodecError(f"frame has {data.total} bytes but its prefix says {expected}; it is truncated or corrupt")
    header_bytes = data.read(PREFIX_BYTES, header_len)
    if zlib.crc32(header_bytes) != crc:
        raise CodecError("frame header checksum (CRC-32) does not match; the message was corrupted in transit")
    try:
        header = json.loads(header_bytes)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CodecError("frame header is not valid JSON; the message is corrupt") from None
    if not isinstance(header, dict) or not isinstance(header.get("meta"), dict) or not isinstance(header.get("values"), dict):
        raise CodecError("frame header lacks its meta and values mappings")
    decoder = _Decoder(data, PREFIX_BYTES + header_len, payload_len, borrow=borrow)
    values = {str(name): decoder.value(spec) for name, spec in header["values"].items()}
    if decoder.covered != payload_len:
        raise CodecError("frame payload holds bytes its header does not describe; the message is corrupt")
    return Frame(meta=header["meta"], values=values)


def decode_frame(data: bytes | bytearray | memoryview, *, max_bytes: int | None = None, borrow: bool = False) -> Frame:
    """Decode a frame held in one buffer (``borrow``: see :func:`decode_chunks`)."""
    return decode_chunks([data], max_bytes=max_bytes, borrow=borrow)


# --------------------------------------------------------------------- value structure
def value_nbytes(value: Any) -> int:
    """Bytes of the tensors in a value (what the cost model counts as ``out(u)``)."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (tuple, list)):
        return sum(value_nbytes(v) for v in value)
    return 0


def flatten_value(value: Any, leaves: list[Any]) -> dict[str, Any]:
    """Structure of ``value`` with its tensors replaced by indices into ``leaves`` (appended).

    The structure uses the frame's value kinds, with ``{"kind": "leaf", "index": i}``
    for the i-th tensor; :func:`unflatten_value` inverts it.
    """
    import torch

    if isinstance(value, torch.Tensor):
        leaves.append(value)
        return {"kind": "leaf", "index": len(leaves) - 1}
    if isinstance(value, (tuple, list)) and not isinstance(value, torch.Size) and not hasattr(value, "_fields"):
        kind = "tuple" if isinstance(value, tuple) else "list"
        return {"kind": kind, "items": [flatten_value(v, leaves) for v in value]}
    return _Encoder().spec(value)


def unflatten_value(structure: Mapping[str, Any], leaves: Sequence[Any]) -> Any:
    """Rebuild a value from :func:`flatten_value`'s structure and its tensor leaves."""
    kind = structure.get("kind")
    if kind == "leaf":
        index = structure.get("index")
        if not isinstance(index, int) or not 0 <= index < len(leaves):
            raise CodecError(f"value structure refers to tensor {index!r}, which does not exist")
        return leaves[index]
    if kind in ("tuple", "list"):
        items = structure.get("items")
        if not isinstance(items, list):
            raise CodecError(f"value structure {kind} has no item list")
        built = [unflatten_value(item, leaves) for item in items]
        return tuple(built) if kind == "tuple" else built
    if kind == "tensor":
        raise CodecError("value structure holds a tensor description; tensors must be leaves")
    return _Decoder(_Chunks([]), 0, 0).value(dict(structure))


def same_constant(structure: Mapping[str, Any], value: Any) -> bool:
    """Whether ``value`` has ``structure`` (tensor leaves anywhere a leaf is; equal constants elsewhere)."""
    import torch

    kind = structure.get("kind")
    if kind == "leaf":
        return isinstance(value, torch.Tensor)
    if kind in ("tuple", "list"):
        items = structure.get("items", [])
        expected_type = tuple if kind == "tuple" else list
        return (
            isinstance(value, expected_type)
            and not isinstance(value, torch.Size)
            and len(value) == len(items)
            and all(same_constant(s, v) for s, v in zip(items, value))
        )
    try:
        expected = unflatten_value(structure, [])
    except CodecError:
        return False
    if isinstance(expected, float) and isinstance(value, float) and math.isnan(expected):
        return math.isnan(value)
    return type(expected) is type(value) and expected == value


__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "DTYPES",
    "PREFIX_BYTES",
    "CodecError",
    "Frame",
    "decode_chunks",
    "decode_frame",
    "dtype_name",
    "encode_chunks",
    "encode_frame",
    "flatten_value",
    "frame_length",
    "same_constant",
    "tensor_bytes_view",
    "torch_dtype",
    "unflatten_value",
    "value_nbytes",
    "word_sum",
]
