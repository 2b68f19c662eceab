"""The device catalog: devices that cannot be measured here, by their published figures.

The seed paper's installation phase (dnn-migration-in-iots, "Installation
Phase: Generate Migration Plan") profiles the client and, for the edge and
cloud servers that cannot run every subtask in advance, predicts subtask
times by regression "based on the parameters of the DNN and the server".
This module holds those server parameters in ``data/devices.yaml``:

- the vendor figures: peak FLOP/s per precision (``peak_flops`` is FP32,
  ``precisions`` adds FP16 / INT8 where the device has them), memory
  bandwidth, compute and idle power;
- how much of that a batch-1 inference actually achieves, per op class
  (``efficiency``: ``conv``, ``depthwise``, ``matmul``, ``memory``) and the
  fixed per-node cost (``dispatch_overhead_s``), for the software ``stack``
  named in the entry (PyTorch eager, Caffe, TensorRT...). A precision may
  override them (INT8 on a Jetson means TensorRT, whose fused kernels have
  another efficiency and overhead than PyTorch's).

Every figure carries its source (a data sheet, a published measurement, a
derivation from one, a fit with the figures it was fitted on, or an
explicitly marked ``assumption:``). The catalog is validated when it is
loaded: every figure positive and finite, every figure sourced, compute
power not below idle power, efficiencies in ``(0, MAX_EFFICIENCY]``.

:mod:`tiercut.profile.device_model` turns these figures into a node's
seconds; entries without ``efficiency`` (schema version 1 catalogs, devices
known only by a speed) are predicted by the roofline transfer of
:mod:`tiercut.profile.transfer` from this host's times.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from tiercut.errors import TiercutError
from tiercut.serialization import json_contract

CATALOG_SCHEMA_VERSION = 2
#: catalog schema versions this tiercut reads (1: no efficiencies, roofline transfer only)
READABLE_SCHEMA_VERSIONS = (1, 2)
DEVICE_KINDS = ("cpu", "gpu", "npu")
NUMERIC_FIELDS = (
    "peak_flops",
    "memory_bandwidth_bps",
    "power_compute_w",
    "power_idle_w",
    "dispatch_overhead_s",
)
#: numeric precisions a prediction can be made for, and their bytes per element
PRECISIONS: dict[str, int] = {"fp32": 4, "fp16": 2, "int8": 1}
#: op classes with their own achieved efficiency (see :mod:`tiercut.profile.device_model`)
OP_CLASSES = ("conv", "depthwise", "matmul", "memory")
#: efficiencies are achieved FLOP/s over peak for the *counted* FLOPs; a Winograd
#: or FFT convolution does fewer multiplications than counted, so a value above 1
#: is possible -- but not above this.
MAX_EFFICIENCY = 4.0
_ALLOWED_KEYS = {"kind", "description", "sources", "stack", "default_precision", "precisions", "efficiency", *NUMERIC_FIELDS}
_PRECISION_KEYS = {"peak_flops", "efficiency", "dispatch_overhead_s", "stack"}


def _number(value: Any, what: str) -> float:
    if isinstance(value, str):  # YAML 1.1 reads 48.0e9 (no exponent sign) as a string
        try:
            value = float(value)
        except ValueError:
            raise TiercutError(f"{what} = {value!r}; it must be a number") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TiercutError(f"{what} = {value!r}; it must be a number")
    return float(value)


def _efficiency(data: Any, what: str, *, complete: bool) -> dict[str, float]:
    if not isinstance(data, Mapping):
        raise TiercutError(f"{what} is a {type(data).__name__}; give a mapping of op class -> fraction of peak")
    unknown = sorted(set(map(str, data)) - set(OP_CLASSES))
    if unknown:
        raise TiercutError(f"{what} has unknown op class(es) {', '.join(unknown)}; use {', '.join(OP_CLASSES)}")
    missing = [c for c in OP_CLASSES if c not in data]
    if complete and missing:
        raise TiercutError(f"{what} lacks {', '.join(missing)}; give all of {', '.join(OP_CLASSES)}")
    out: dict[str, float] = {}
    for cls, value in data.items():
        number = _number(value, f"{what}.{cls}")
        if not (math.isfinite(number) and 0 < number <= MAX_EFFICIENCY):
            raise TiercutError(f"{what}.{cls} = {number!r}; an efficiency must lie in (0, {MAX_EFFICIENCY:g}]")
        out[str(cls)] = number
    return out


@dataclass(frozen=True)
class PrecisionSpec:
    """What a device achieves at one numeric precision.

    Attributes:
        peak_flops: peak FLOP/s (or OP/s for INT8) at this precision.
        efficiency: op class -> achieved fraction of ``peak_flops`` at batch 1;
            classes not given fall back to the device's.
        dispatch_overhead_s: fixed seconds per node at this precision (None:
            the device's).
        stack: the software the efficiencies describe (None: the device's).
    """

    peak_flops: float
    efficiency: Mapping[str, float] = field(default_factory=dict, hash=False)
    dispatch_overhead_s: float | None = None
    stack: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"peak_flops": self.peak_flops}
        if self.efficiency:
            data["efficiency"] = dict(self.efficiency)
        if self.dispatch_overhead_s is not None:
            data["dispatch_overhead_s"] = self.dispatch_overhead_s
        if self.stack is not None:
            data["stack"] = self.stack
        return data


@dataclass(frozen=True)
class ResolvedPrecision:
    """The figures a prediction at one precision uses (device defaults filled in)."""

    precision: str
    peak_flops: float
    memory_bandwidth_bps: float
    dispatch_overhead_s: float
    efficiency: Mapping[str, float] | None
    stack: str
    element_bytes: int


@dataclass(frozen=True)
class DeviceSpec:
    """A device described by a few published numbers.

    Attributes:
        name: catalog key (``raspberry_pi_4``, ``nvidia_t4``...).
        kind: ``"cpu"``, ``"gpu"`` or ``"npu"``.
        peak_flops: peak FP32 FLOP/s (multiply-add = 2 FLOPs).
        memory_bandwidth_bps: peak memory bandwidth, bytes per second.
        power_compute_w: power while computing (W).
        power_idle_w: power while idle (W).
        dispatch_overhead_s: fixed seconds per node (framework dispatch,
            kernel launch).
        description: one line naming the exact part.
        sources: figure name -> where it comes from (URL, data sheet,
            derivation, fit, or ``assumption: ...``). Keys: the numeric
            fields, ``efficiency.<class>`` and ``precisions.<precision>``.
        efficiency: op class -> achieved fraction of peak at batch 1 (None:
            not calibrated; times then come from the roofline transfer of
            this host's times, :mod:`tiercut.profile.transfer`).
        precisions: precision -> :class:`PrecisionSpec` for the precisions
            besides FP32 (FP32 is ``peak_flops``; an entry ``fp32`` may
            override its efficiency or overhead).
        default_precision: the precision predictions use unless told otherwise.
        stack: the software the efficiencies and overhead describe.
    """

    name: str
    kind: str
    peak_flops: float
    memory_bandwidth_bps: float
    power_compute_w: float
    power_idle_w: float
    dispatch_overhead_s: float = 10e-6
    description: str = ""
    sources: Mapping[str, str] = field(default_factory=dict, hash=False)
    efficiency: Mapping[str, float] | None = field(default=None, hash=False)
    precisions: Mapping[str, PrecisionSpec] = field(default_factory=dict, hash=False)
    default_precision: str = "fp32"
    stack: str = ""

    def __post_init__(self) -> None:
        validate_spec(self)

    # ----------------------------------------------------------- precisions
    @property
    def precision_names(self) -> tuple[str, ...]:
        """Precisions this device supports, FP32 first."""
        return ("fp32", *(p for p in PRECISIONS if p != "fp32" and p in self.precisions))

    @property
    def is_calibrated(self) -> bool:
        """Whether it has achieved efficiencies (else: roofline transfer from this host)."""
        return self.efficiency is not None

    def resolve(self, precision: str | None = None) -> ResolvedPrecision:
        """The figures a prediction at ``precision`` (default: :attr:`default_precision`) uses."""
        precision = precision or self.default_precision
        if precision not in self.precision_names:
            raise TiercutError(
                f"device {self.name!r} has no {precision} figures; it supports {', '.join(self.precision_names)}"
            )
        own = self.precisions.get(precision)
        efficiency = None
        if self.efficiency is not None:
            efficiency = {**self.efficiency, **(dict(own.efficiency) if own else {})}
        return ResolvedPrecision(
            precision=precision,
            peak_flops=own.peak_flops if own is not None else self.peak_flops,
            memory_bandwidth_bps=self.memory_bandwidth_bps,
            dispatch_overhead_s=(
                own.dispatch_overhead_s if own is not None and own.dispatch_overhead_s is not None
                else self.dispatch_overhead_s
            ),
            efficiency=efficiency,
            stack=(own.stack if own is not None and own.stack else self.stack),
            element_bytes=PRECISIONS[precision],
        )

    @classmethod
    def from_cpu_ghz(
        cls,
        name: str,
        ghz: float,
        *,
        power_compute_w: float,
        power_idle_w: float,
        reference: Any = None,
        description: str = "",
    ) -> DeviceSpec:
        """A device the seed paper describes only by aggregate CPU GHz.

        The migration seed gives clients 1.1-2.3 GHz, edge servers 4.2-18.3 GHz
        and cloud servers 40-120 GHz of "CPU processing capacity", i.e. node
        time = cycles / GHz. We keep that model exactly: the device gets this
        reference host's *measured* sustained FLOP/s and memory bandwidth per
        aggregate GHz (host clock x threads) scaled to ``ghz``, and its
        per-node dispatch overhead scaled the same way. Every node's roofline
        ratio is then the same, so the transfer reduces to the flat factor
        ``reference_ghz / ghz`` -- the seed's assumption, used only here
        because GHz is all it gives.

        Args:
            name: device name.
            ghz: aggregate CPU capacity in GHz (clock x cores in use).
            power_compute_w: power while computing (W), given by the caller.
            power_idle_w: power while idle (W), given by the caller.
            reference: the host the scaling is calibrated on (a
                :class:`~tiercut.profile.host.HostInfo`); default: the host
                the shipped predictor was fitted on.
            description: optional text.
        """
        if not (isinstance(ghz, (int, float)) and math.isfinite(ghz) and ghz > 0):
            raise TiercutError(f"device {name!r} has CPU capacity {ghz!r} GHz; give a positive number")
        if reference is None:
            from tiercut.profile.predict import load_default_predictor

            reference = load_default_predictor().host
        scale = float(ghz) / reference.aggregate_ghz
        how = (
            f"seed-paper GHz model: {ghz:g} GHz x this reference host's measured "
            f"{reference.peak_flops / 1e9 / reference.aggregate_ghz:.2f} GFLOP/s per aggregate GHz "
            f"({reference.cpu_model}, {reference.threads} threads at {reference.cpu_mhz:.0f} MHz)"
        )
        return cls(
            name=name,
            kind="cpu",
            peak_flops=reference.peak_flops * scale,
            memory_bandwidth_bps=reference.memory_bandwidth_bps * scale,
            power_compute_w=float(power_compute_w),
            power_idle_w=float(power_idle_w),
            dispatch_overhead_s=reference.dispatch_overhead_s / scale,
            description=description or f"CPU capacity {ghz:g} GHz (seed-paper model)",
            sources={
                "peak_flops": how,
                "memory_bandwidth_bps": f"seed-paper GHz model: reference host's measured copy bandwidth "
                f"x {scale:.3g} (= {ghz:g} GHz / {reference.aggregate_ghz:.3g} GHz)",
                "power_compute_w": "given by the caller",
                "power_idle_w": "given by the caller",
                "dispatch_overhead_s": f"reference host's measured dispatch overhead divided by {scale:.3g}",
            },
        )

    def to_dict(self) -> dict[str, Any]:
        """The catalog entry of this device (``name`` included)."""
        data: dict[str, Any] = {"name": self.name, "kind": self.kind, "description": self.description}
        if self.stack:
            data["stack"] = self.stack
        data.update({f: getattr(self, f) for f in NUMERIC_FIELDS})
        if self.default_precision != "fp32":
            data["default_precision"] = self.default_precision
        if self.precisions:
            data["precisions"] = {p: s.to_dict() for p, s in self.precisions.items()}
        if self.efficiency is not None:
            data["efficiency"] = dict(self.efficiency)
        data["sources"] = dict(self.sources)
        return data

    def catalog_entry(self) -> dict[str, Any]:
        """:meth:`to_dict` without the name: the value under ``devices.<name>`` of a catalog file."""
        return {k: v for k, v in self.to_dict().items() if k != "name"}

    @classmethod
    @json_contract("device spec", hint="give the figures 'tiercut devices --json' prints")
    def from_dict(cls, data: Mapping[str, Any]) -> DeviceSpec:
        name = str(data.get("name", ""))
        return _spec_from_entry(name, {k: v for k, v in data.items() if k != "name"}, require_sources=False)

    def with_changes(self, **changes: Any) -> DeviceSpec:
        """A copy with some figures changed (e.g. a different power mode)."""
        return replace(self, **changes)

    def at_clock(self, fraction: float, note: str) -> DeviceSpec:
        """A copy whose compute peaks (every precision) run at ``fraction`` of the catalog clock.

        For a published figure measured at a lower clock than the data sheet's
        (a power mode, a throttled board); memory bandwidth is unchanged.
        """
        if not (math.isfinite(fraction) and 0 < fraction <= 4):
            raise TiercutError(f"clock fraction {fraction!r} must be a positive number")
        precisions = {p: replace(s, peak_flops=s.peak_flops * fraction) for p, s in self.precisions.items()}
        sources = {**self.sources, "peak_flops": f"{self.sources.get('peak_flops', '')}; scaled to {note}"}
        return replace(self, peak_flops=self.peak_flops * fraction, precisions=precisions, sources=sources)


def validate_spec(spec: DeviceSpec) -> None:
    """Raise a one-line :class:`TiercutError` if a spec's figures are not usable."""
    if not spec.name:
        raise TiercutError("a device spec has an empty name; give every device a name")
    if spec.kind not in DEVICE_KINDS:
        raise TiercutError(f"device {spec.name!r} has kind {spec.kind!r}; use one of {', '.join(DEVICE_KINDS)}")
    for name in NUMERIC_FIELDS:
        value = getattr(spec, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise TiercutError(f"device {spec.name!r} has {name} = {value!r}; it must be a finite number")
        positive = name in ("peak_flops", "memory_bandwidth_bps")
        if (positive and value <= 0) or value < 0:
            raise TiercutError(
                f"device {spec.name!r} has {name} = {value!r}; it must be {'> 0' if positive else '>= 0'}"
            )
    if spec.power_compute_w < spec.power_idle_w:
        raise TiercutError(
            f"device {spec.name!r} draws less computing ({spec.power_compute_w} W) than idle "
            f"({spec.power_idle_w} W); fix power_compute_w or power_idle_w"
        )
    if spec.efficiency is not None:
        _efficiency(spec.efficiency, f"device {spec.name!r} efficiency", complete=True)
    for precision, own in spec.precisions.items():
        where = f"device {spec.name!r} precisions.{precision}"
        if precision not in PRECISIONS:
            raise TiercutError(f"{where}: unknown precision; use {', '.join(PRECISIONS)}")
        if not (math.isfinite(own.peak_flops) and own.peak_flops > 0):
            raise TiercutError(f"{where}.peak_flops = {own.peak_flops!r}; it must be > 0")
        if own.efficiency:
            if spec.efficiency is None:
                raise TiercutError(f"{where} gives an efficiency but the device has none; add efficiency to the device")
            _efficiency(own.efficiency, f"{where}.efficiency", complete=False)
        if own.dispatch_overhead_s is not None and not (
            math.isfinite(own.dispatch_overhead_s) and own.dispatch_overhead_s >= 0
        ):
            raise TiercutError(f"{where}.dispatch_overhead_s = {own.dispatch_overhead_s!r}; it must be >= 0")
    if spec.default_precision not in spec.precision_names:
        raise TiercutError(
            f"device {spec.name!r} has default_precision {spec.default_precision!r} but only "
            f"{', '.join(spec.precision_names)} figures; add precisions.{spec.default_precision} or change it"
        )


def _precision_from_entry(where: str, data: Any) -> PrecisionSpec:
    if not isinstance(data, Mapping):
        raise TiercutError(f"{where} is a {type(data).__name__}, not a mapping with peak_flops")
    unknown = sorted(set(map(str, data)) - _PRECISION_KEYS)
    if unknown:
        raise TiercutError(f"{where} has unknown field(s) {', '.join(unknown)}; allowed: {sorted(_PRECISION_KEYS)}")
    if "peak_flops" not in data:
        raise TiercutError(f"{where} lacks peak_flops; every precision needs its peak")
    overhead = data.get("dispatch_overhead_s")
    return PrecisionSpec(
        peak_flops=_number(data["peak_flops"], f"{where}.peak_flops"),
        efficiency=_efficiency(data["efficiency"], f"{where}.efficiency", complete=False) if "efficiency" in data else {},
        dispatch_overhead_s=None if overhead is None else _number(overhead, f"{where}.dispatch_overhead_s"),
        stack=None if data.get("stack") is None else str(data["stack"]),
    )


def required_sources(entry: Mapping[str, Any]) -> list[str]:
    """The ``sources`` keys a catalog entry must have: one per figure it gives."""
    keys = [k for k in NUMERIC_FIELDS if k in entry]
    if isinstance(entry.get("efficiency"), Mapping):
        keys += [f"efficiency.{c}" for c in entry["efficiency"]]
    if isinstance(entry.get("precisions"), Mapping):
        keys += [f"precisions.{p}" for p in entry["precisions"]]
    return keys


def _spec_from_entry(name: str, entry: Any, *, require_sources: bool, where: str = "device") -> DeviceSpec:
    if not isinstance(entry, Mapping):
        raise TiercutError(f"{where} {name!r} is a {type(entry).__name__}, not a mapping of figures")
    unknown = sorted(set(entry) - _ALLOWED_KEYS)
    if unknown:
        raise TiercutError(f"{where} {name!r} has unknown field(s) {', '.join(unknown)}; allowed: {sorted(_ALLOWED_KEYS)}")
    missing = [k for k in ("kind", "peak_flops", "memory_bandwidth_bps", "power_compute_w", "power_idle_w") if k not in entry]
    if missing:
        raise TiercutError(f"{where} {name!r} lacks {', '.join(missing)}; every device needs them")
    sources = entry.get("sources", {})
    if not isinstance(sources, Mapping) or not all(isinstance(v, str) and v.strip() for v in sources.values()):
        raise TiercutError(f"{where} {name!r} has malformed sources; give a mapping of figure -> non-empty citation")
    if require_sources:
        unsourced = [k for k in required_sources(entry) if k not in sources]
        if unsourced:
            raise TiercutError(f"{where} {name!r} gives {', '.join(unsourced)} without a source; add sources.<figure>")
    numbers = {key: _number(entry[key], f"{where} {name!r} {key}") for key in NUMERIC_FIELDS if key in entry}
    efficiency = None
    if entry.get("efficiency") is not None:
        efficiency = _efficiency(entry["efficiency"], f"{where} {name!r} efficiency", complete=True)
    precisions_raw = entry.get("precisions") or {}
    if not isinstance(precisions_raw, Mapping):
        raise TiercutError(f"{where} {name!r} precisions must map a precision ({', '.join(PRECISIONS)}) to its figures")
    precisions = {
        str(p): _precision_from_entry(f"{where} {name!r} precisions.{p}", data) for p, data in precisions_raw.items()
    }
    return DeviceSpec(
        name=name,
        kind=str(entry["kind"]),
        description=str(entry.get("description", "")),
        sources=dict(sources),
        efficiency=efficiency,
        precisions=precisions,
        default_precision=str(entry.get("default_precision", "fp32")),
        stack=str(entry.get("stack", "")),
        **numbers,  # type: ignore[arg-type]
    )


def parse_catalog(data: Any, where: str = "catalog") -> dict[str, DeviceSpec]:
    """Validate a catalog document (the YAML's content) into specs by name."""
    if not isinstance(data, Mapping) or not isinstance(data.get("devices"), Mapping):
        raise TiercutError(f"{where} has no 'devices' mapping; see tiercut/profile/data/devices.yaml for the format")
    version = data.get("schema_version")
    if version not in READABLE_SCHEMA_VERSIONS:
        raise TiercutError(
            f"{where} has schema_version {version!r}; this tiercut reads {', '.join(map(str, READABLE_SCHEMA_VERSIONS))}"
        )
    return {
        str(name): _spec_from_entry(str(name), entry, require_sources=True, where=f"{where} device")
        for name, entry in data["devices"].items()
    }


def load_catalog_file(path: str | Path) -> dict[str, DeviceSpec]:
    """Load and validate a user's catalog YAML file (same format as the shipped one)."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise TiercutError(f"cannot read device catalog {path}: {exc.strerror}; check the path") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        at = f" at line {line + 1}" if line is not None else ""
        raise TiercutError(f"device catalog {path} is not valid YAML{at}; fix the syntax") from None
    return parse_catalog(data, where=str(path))


def catalog_document(specs: Mapping[str, DeviceSpec] | list[DeviceSpec]) -> dict[str, Any]:
    """A catalog file's content (``schema_version`` + ``devices``) holding these specs."""
    items = specs.values() if isinstance(specs, Mapping) else specs
    return {"schema_version": CATALOG_SCHEMA_VERSION, "devices": {s.name: s.catalog_entry() for s in items}}


@functools.cache
def _shipped_catalog() -> tuple[tuple[str, DeviceSpec], ...]:
    import yaml

    text = resources.files("tiercut.profile").joinpath("data/devices.yaml").read_text()
    return tuple(parse_catalog(yaml.safe_load(text), where="shipped catalog").items())


def load_catalog() -> dict[str, DeviceSpec]:
    """The shipped device catalog, validated: name -> :class:`DeviceSpec`."""
    return dict(_shipped_catalog())


def get_device_spec(name: str, catalog_file: str | Path | None = None) -> DeviceSpec:
    """The entry ``name`` of the shipped catalog (or of ``catalog_file``); a one-line error listing the known names otherwise."""
    catalog = load_catalog() if catalog_file is None else load_catalog_file(catalog_file)
    if name not in catalog:
        where = "the catalog" if catalog_file is None else f"catalog {catalog_file}"
        raise TiercutError(f"unknown device {name!r}; {where} knows {', '.join(sorted(catalog))}")
    return catalog[name]


__all__ = [
    "CATALOG_SCHEMA_VERSION",
    "DEVICE_KINDS",
    "MAX_EFFICIENCY",
    "OP_CLASSES",
    "PRECISIONS",
    "DeviceSpec",
    "PrecisionSpec",
    "ResolvedPrecision",
    "catalog_document",
    "get_device_spec",
    "load_catalog",
    "load_catalog_file",
    "parse_catalog",
    "required_sources",
    "validate_spec",
]
