"""Compression of the tensor at a cut (JALAD): the options a problem offers.

JALAD (Li et al., "JALAD: Joint Accuracy- and Latency-Aware Deep Structure
Decoupling for Edge-Cloud Execution", ICPADS 2018) quantizes the feature map
at the cut to ``c`` bits and entropy-codes it before sending, trading a
measured accuracy loss for a smaller transfer, and chooses the cut and ``c``
together by an integer program under an accuracy-loss budget.

A :class:`CutCompression` is that choice's data, carried in the problem so
that a plan's figures recompute from the problem JSON alone:

- :class:`CutCodec`: one way to compress (``int8``, ``int4``: bits, per-tensor
  or per-channel scale) and its encode/decode seconds per *raw* byte on each
  device (a device absent from them cannot encode / decode with it);
- per tensor (the producing node's output) and codec, a
  :class:`TensorCompression`: ``ratio`` (bytes on the wire / raw bytes) and
  ``accuracy_loss`` (1 - top-1 agreement of the model's output with the
  tensor compressed, against the uncompressed model);
- ``accuracy_loss_max``: the budget on the summed accuracy loss of the
  tensors a plan compresses (None: no budget).

The cost of a compressed transfer is :mod:`tiercut.cost.cut_compression`'s.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tiercut.errors import TiercutError
from tiercut.serialization import json_contract, optional_float

#: how a codec's scale is shared: one per tensor, or one per channel (dimension 1)
GRANULARITIES = ("tensor", "channel")


def _seconds_per_byte(table: Mapping[str, Any], what: str) -> dict[str, float]:
    out = {}
    for device, value in table.items():
        value = float(value)
        if not math.isfinite(value) or value < 0:
            raise TiercutError(f"{what}[{device!r}] is {value!r}; it must be a finite number of seconds per byte >= 0")
        out[str(device)] = value
    return out


@dataclass(frozen=True)
class CutCodec:
    """One compression of a cut tensor: ``bits``-bit linear quantization then zstd.

    Attributes:
        name: how plans name it (``int8``).
        bits: bits per value on the wire before entropy coding (1..8).
        granularity: ``tensor`` (one scale and zero point) or ``channel``
            (one per channel, dimension 1).
        encode_s_per_byte, decode_s_per_byte: device -> seconds per raw
            (uncompressed) byte to encode / decode there.
    """

    name: str
    bits: int = 8
    granularity: str = "tensor"
    encode_s_per_byte: Mapping[str, float] = field(default_factory=dict)
    decode_s_per_byte: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name:
            raise TiercutError("a cut codec needs a name, e.g. 'int8'")
        if isinstance(self.bits, bool) or not isinstance(self.bits, int) or not 1 <= self.bits <= 8:
            raise TiercutError(f"cut codec {self.name!r} has bits={self.bits!r}; use an integer from 1 to 8")
        if self.granularity not in GRANULARITIES:
            raise TiercutError(f"cut codec {self.name!r} has granularity {self.granularity!r}; use tensor or channel")
        _seconds_per_byte(self.encode_s_per_byte, f"cut codec {self.name!r} encode_s_per_byte")
        _seconds_per_byte(self.decode_s_per_byte, f"cut codec {self.name!r} decode_s_per_byte")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "bits": self.bits,
            "granularity": self.granularity,
            "encode_s_per_byte": dict(self.encode_s_per_byte),
            "decode_s_per_byte": dict(self.decode_s_per_byte),
        }

    @classmethod
    @json_contract("cut codec", hint="pass the 'problem' object of 'tiercut plan --json'")
    def from_dict(cls, data: Mapping[str, Any]) -> CutCodec:
        return cls(
            name=str(data["name"]),
            bits=int(data.get("bits", 8)),
            granularity=str(data.get("granularity", "tensor")),
            encode_s_per_byte=_seconds_per_byte(dict(data["encode_s_per_byte"]), "encode_s_per_byte"),
            decode_s_per_byte=_seconds_per_byte(dict(data["decode_s_per_byte"]), "decode_s_per_byte"),
        )


@dataclass(frozen=True)
class TensorCompression:
    """One tensor under one codec: wire bytes / raw bytes, and the accuracy it costs (a fraction, 0..1)."""

    ratio: float
    accuracy_loss: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.ratio) and self.ratio > 0):
            raise TiercutError(f"a compression ratio is {self.ratio!r}; it must be a finite number > 0 (wire/raw bytes)")
        if not (math.isfinite(self.accuracy_loss) and 0 <= self.accuracy_loss <= 1):
            raise TiercutError(f"an accuracy loss is {self.accuracy_loss!r}; it must be a fraction in [0, 1]")

    def to_dict(self) -> dict[str, float]:
        return {"ratio": self.ratio, "accuracy_loss": self.accuracy_loss}

    @classmethod
    @json_contract("tensor compression", hint="pass the 'problem' object of 'tiercut plan --json'")
    def from_dict(cls, data: Mapping[str, Any]) -> TensorCompression:
        return cls(float(data["ratio"]), float(data.get("accuracy_loss", 0.0)))


@dataclass(frozen=True)
class CutCompression:
    """The cut-compression options of a problem (module docstring).

    Attributes:
        codecs: the codecs, by name.
        tensors: node -> codec name -> its :class:`TensorCompression` (a
            tensor or codec absent here cannot be compressed that way).
        accuracy_loss_max: budget on the summed accuracy loss of the
            compressed tensors (None: none).
        basis: how the figures were obtained (measured on which inputs,
            which host).
    """

    codecs: tuple[CutCodec, ...]
    tensors: Mapping[str, Mapping[str, TensorCompression]]
    accuracy_loss_max: float | None = None
    basis: str = ""

    def __post_init__(self) -> None:
        names = [c.name for c in self.codecs]
        if len(set(names)) != len(names):
            raise TiercutError(f"cut compression names a codec twice ({', '.join(names)}); rename one")
        for node, row in self.tensors.items():
            for codec in row:
                if codec not in names:
                    raise TiercutError(f"cut compression of {node!r} names unknown codec {codec!r}; codecs are {names}")
        if self.accuracy_loss_max is not None and not (
            math.isfinite(self.accuracy_loss_max) and 0 <= self.accuracy_loss_max <= 1
        ):
            raise TiercutError(
                f"accuracy_loss_max is {self.accuracy_loss_max!r}; give a fraction in [0, 1], e.g. 0.01 for one point"
            )

    def codec(self, name: str) -> CutCodec:
        for codec in self.codecs:
            if codec.name == name:
                return codec
        raise TiercutError(f"cut codec {name!r} is not known; the problem offers {', '.join(c.name for c in self.codecs)}")

    def options(self, node: str, src: str, dst: str) -> list[str]:
        """The codecs ``node``'s tensor can travel from ``src`` to ``dst`` with (``src`` encodes, ``dst`` decodes)."""
        row = self.tensors.get(node, {})
        return [
            c.name for c in self.codecs
            if c.name in row and src in c.encode_s_per_byte and dst in c.decode_s_per_byte
        ]

    def with_budget(self, accuracy_loss_max: float | None) -> CutCompression:
        return CutCompression(self.codecs, self.tensors, accuracy_loss_max, self.basis)

    def only(self, codec_names: list[str]) -> CutCompression:
        """The same options restricted to the named codecs."""
        for name in codec_names:
            self.codec(name)
        keep = set(codec_names)
        return CutCompression(
            tuple(c for c in self.codecs if c.name in keep),
            {n: {k: v for k, v in row.items() if k in keep} for n, row in self.tensors.items()},
            self.accuracy_loss_max,
            self.basis,
        )

    def on_devices(self, device_names: set[str]) -> CutCompression:
        """The same options with the codecs' figures kept only for ``device_names``."""
        codecs = tuple(
            CutCodec(
                c.name, c.bits, c.granularity,
                {d: s for d, s in c.encode_s_per_byte.items() if d in device_names},
                {d: s for d, s in c.decode_s_per_byte.items() if d in device_names},
            )
            for c in self.codecs
        )
        return CutCompression(codecs, self.tensors, self.accuracy_loss_max, self.basis)

    def check(self, node_names: set[str], device_names: set[str], label: str) -> None:
        """Refuse nodes and devices the problem does not have."""
        for node in self.tensors:
            if node not in node_names:
                raise TiercutError(f"problem {label!r}: cut compression names unknown node {node!r}")
        for codec in self.codecs:
            for device in (*codec.encode_s_per_byte, *codec.decode_s_per_byte):
                if device not in device_names:
                    raise TiercutError(f"problem {label!r}: cut codec {codec.name!r} names unknown device {device!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "codecs": [c.to_dict() for c in self.codecs],
            "tensors": {n: {k: v.to_dict() for k, v in row.items()} for n, row in self.tensors.items()},
            "accuracy_loss_max": self.accuracy_loss_max,
            "basis": self.basis,
        }

    @classmethod
    @json_contract("cut compression", hint="pass the 'problem' object of 'tiercut plan --json'")
    def from_dict(cls, data: Mapping[str, Any]) -> CutCompression:
        return cls(
            codecs=tuple(CutCodec.from_dict(c) for c in data["codecs"]),
            tensors={
                str(n): {str(k): TensorCompression.from_dict(v) for k, v in dict(row).items()}
                for n, row in dict(data["tensors"]).items()
            },
            accuracy_loss_max=optional_float(data.get("accuracy_loss_max")),
            basis=str(data.get("basis", "")),
        )


__all__ = ["GRANULARITIES", "CutCodec", "CutCompression", "TensorCompression"]
