"""The wire codec: tensors as header + raw bytes, a few plain values, never pickle; damage is detected."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiercut.errors import TiercutError
from tiercut.runtime.codec import (
    DTYPES,
    PREFIX_BYTES,
    CodecError,
    decode_chunks,
    decode_frame,
    encode_chunks,
    encode_frame,
    flatten_value,
    frame_length,
    same_constant,
    unflatten_value,
    value_nbytes,
)


def _equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, torch.Size):
        return isinstance(b, torch.Size) and a == b
    if isinstance(a, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return type(a) is type(b) and a == b


def _tensor(dtype_name: str, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    dtype = getattr(torch, dtype_name)
    generator = torch.Generator().manual_seed(seed)
    if dtype == torch.bool:
        return torch.rand(shape, generator=generator) > 0.5
    if dtype.is_floating_point or dtype.is_complex:
        return torch.randn(shape, generator=generator).to(dtype)
    return torch.randint(-100 if dtype != torch.uint8 else 0, 100, shape, generator=generator).to(dtype)


shapes = st.lists(st.integers(0, 5), min_size=0, max_size=4).map(tuple)
tensors = st.builds(_tensor, st.sampled_from(sorted(DTYPES)), shapes, st.integers(0, 10**6))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**62), 2**62),
    st.floats(allow_nan=True, allow_infinity=True),
    shapes.map(torch.Size),
)
values = st.recursive(
    st.one_of(tensors, scalars), lambda inner: st.one_of(st.tuples(inner, inner), st.lists(inner, max_size=3)), max_leaves=6
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.text(min_size=1, max_size=8), values, max_size=4), st.integers(PREFIX_BYTES, 300))
def test_any_value_round_trips_through_any_chunking(named, chunk_bytes):
    chunks = encode_chunks({"query": 7, "route": ["a", "b"]}, named, chunk_bytes=chunk_bytes)
    assert all(len(c) <= chunk_bytes for c in chunks)
    assert frame_length(chunks[0] if len(chunks[0]) >= PREFIX_BYTES else b"".join(chunks)) == sum(len(c) for c in chunks)
    frame = decode_chunks(chunks)
    assert frame.meta == {"query": 7, "route": ["a", "b"]}
    assert set(frame.values) == set(named)
    for name, value in named.items():
        assert _equal(value, frame.values[name]), name


def test_tensor_views_and_non_contiguous_tensors_travel_as_their_values():
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    values = {"t": base.t(), "slice": base[1:, ::2], "scalar": torch.tensor(3.5)}
    frame = decode_frame(encode_frame({}, values))
    for name, value in values.items():
        assert torch.equal(frame.values[name], value)
        assert frame.values[name].is_contiguous()


def test_decoded_tensors_are_writable_copies():
    source = torch.zeros(3)
    frame = decode_frame(encode_frame({}, {"x": source}))
    frame.values["x"].add_(1)  # would fail or alias on a read-only buffer
    assert torch.equal(source, torch.zeros(3))


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_any_single_flipped_byte_is_detected(data):
    frame = encode_frame({"k": 1}, {"x": torch.linspace(-1, 1, 15).reshape(5, 3), "n": 4, "s": torch.Size([1, 2])})
    position = data.draw(st.integers(0, len(frame) - 1))
    damaged = bytearray(frame)
    damaged[position] ^= data.draw(st.integers(1, 255))
    with pytest.raises(CodecError):
        decode_frame(bytes(damaged))


@pytest.mark.parametrize("cut", [0, 3, PREFIX_BYTES, PREFIX_BYTES + 5, -1])
def test_truncated_frames_are_refused(cut):
    frame = encode_frame({}, {"x": torch.randn(10)})
    with pytest.raises(CodecError):
        decode_frame(frame[:cut])


def test_a_lost_chunk_is_detected():
    chunks = encode_chunks({}, {"x": torch.randn(100)}, chunk_bytes=64)
    with pytest.raises(CodecError, match=r"truncated|prefix"):
        decode_chunks(chunks[:2] + chunks[3:])


def test_frames_from_elsewhere_are_refused():
    with pytest.raises(CodecError, match="magic"):
        decode_frame(b"\x80\x04\x95" + b"\x00" * 40)  # a pickle stream is not a frame


def test_size_limit_is_enforced_before_decoding():
    frame = encode_frame({}, {"x": torch.randn(1000)})
    with pytest.raises(CodecError, match="exceeds the limit"):
        decode_frame(frame, max_bytes=len(frame) - 1)
    assert decode_frame(frame, max_bytes=len(frame)).values["x"].shape == (1000,)


@pytest.mark.parametrize(
    "value",
    [
        object(),
        {"a": 1},
        "text",
        b"bytes",
        torch.randn(2).to(torch.float8_e4m3fn) if hasattr(torch, "float8_e4m3fn") else object(),
    ],
)
def test_values_that_are_not_data_cannot_be_sent(value):
    with pytest.raises(CodecError) as info:
        encode_frame({}, {"v": value})
    assert isinstance(info.value, TiercutError) and "\n" not in str(info.value)


def test_metadata_must_be_plain_json():
    with pytest.raises(CodecError, match="not plain JSON"):
        encode_frame({"bad": object()}, {})
    with pytest.raises(CodecError, match="not plain JSON"):
        encode_frame({"bad": float("nan")}, {})


def _forged(header: dict) -> bytes:
    """A frame with a consistent prefix and CRC but a hand-written header."""
    import json
    import struct
    import zlib

    body = json.dumps(header).encode()
    payload = b"\x00" * 16
    return struct.pack("<4sIQI", b"TCF1", len(body), len(payload), zlib.crc32(body)) + body + payload


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"kind": "tensor", "dtype": "object", "shape": [1], "offset": 0, "nbytes": 8}, "dtype"),
        ({"kind": "tensor", "dtype": "float32", "shape": [2], "offset": 0, "nbytes": 12}, "says it has"),
        ({"kind": "tensor", "dtype": "float32", "shape": [4], "offset": 8, "nbytes": 16}, "outside the payload"),
        ({"kind": "tensor", "dtype": "float32", "shape": [-1], "offset": 0, "nbytes": 4}, "negative"),
        ({"kind": "pickle", "value": "cos\nsystem"}, "not known"),
        ({"kind": "int", "value": "3"}, "not an integer"),
        ({"kind": "tensor", "dtype": "float32", "shape": [4], "offset": 0, "nbytes": 16, "sum": 1}, "checksum"),
        ({"kind": "int", "value": 3}, "does not describe"),
    ],
)
def test_forged_value_descriptions_are_refused(spec, message):
    with pytest.raises(CodecError, match=message):
        decode_frame(_forged({"meta": {}, "values": {"v": spec}}))


def test_flatten_and_rebuild_keep_structure_and_constants():
    value = (torch.ones(2), None, torch.Size([1, 3]), [torch.zeros(1), 5, True])
    leaves: list = []
    structure = flatten_value(value, leaves)
    assert len(leaves) == 2
    assert _equal(unflatten_value(structure, leaves), value)
    assert same_constant(structure, (torch.randn(2), None, torch.Size([1, 3]), [torch.randn(1), 5, True]))
    assert not same_constant(structure, (torch.randn(2), None, torch.Size([1, 4]), [torch.randn(1), 5, True]))
    assert not same_constant(structure, (torch.randn(2), None, torch.Size([1, 3]), [torch.randn(1), 6, True]))
    assert value_nbytes(value) == 2 * 4 + 1 * 4


# ----------------------------------------------------------------- borrowed (zero-copy) decoding
def test_every_tensor_starts_8_aligned_in_the_frame():
    frame = encode_frame({"route": "a" * 13}, {"a": torch.randn(3), "b": torch.arange(5, dtype=torch.int16), "c": torch.randn(2)})
    header_len = int.from_bytes(frame[4:8], "little")
    assert (PREFIX_BYTES + header_len) % 8 == 0
    decoded = decode_frame(frame, borrow=True)
    assert all(t.data_ptr() % 8 == 0 for t in decoded.values.values())


def test_borrowed_tensors_view_the_message_and_equal_the_sent_values():
    sent = {"x": torch.randn(4, 64), "i": torch.arange(7, dtype=torch.int64), "n": 3}
    message = encode_frame({}, sent)
    base = memoryview(message)
    start, end = _address(base), _address(base) + len(message)
    borrowed = decode_frame(message, borrow=True)
    copied = decode_frame(message)
    for name in ("x", "i"):
        assert torch.equal(borrowed.values[name], sent[name]) and torch.equal(copied.values[name], sent[name])
        assert start <= borrowed.values[name].data_ptr() < end  # no copy
        assert not start <= copied.values[name].data_ptr() < end  # a copy of its own
    assert borrowed.values["n"] == 3


def _address(view: memoryview) -> int:
    import numpy as np

    return np.frombuffer(view, dtype=np.uint8).ctypes.data


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_borrowed_decoding_still_detects_any_flipped_byte(data):
    frame = encode_frame({"k": 1}, {"x": torch.linspace(-1, 1, 64).reshape(8, 8)})
    position = data.draw(st.integers(0, len(frame) - 1))
    damaged = bytearray(frame)
    damaged[position] ^= data.draw(st.integers(1, 255))
    with pytest.raises(CodecError):
        decode_frame(bytes(damaged), borrow=True)


@pytest.mark.parametrize("chunk_bytes", [PREFIX_BYTES, 37, 61, 1 << 20])
def test_borrowed_tensors_split_over_chunks_or_misaligned_are_copied_equal(chunk_bytes):
    x = torch.randn(40, dtype=torch.float64)
    frame = decode_chunks(encode_chunks({}, {"x": x}, chunk_bytes=chunk_bytes), borrow=True)
    assert torch.equal(frame.values["x"], x) and frame.values["x"].data_ptr() % 8 == 0
