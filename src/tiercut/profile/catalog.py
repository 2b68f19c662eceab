"""The device catalog: devices that cannot be measured here, by their published figures.

The seed paper's installation phase (dnn-migration-in-iots, "Installation
Phase: Generate Migration Plan") profiles the client and, for the edge and
cloud servers that cannot run every subtask in advance, predicts subtask
times by regression "based on the parameters of the DNN and the server".
This module holds those server parameters: a few published numbers per
device (peak FP32 FLOP/s, memory bandwidth, power) in
``data/devices.yaml``, each with the source it comes from (a data sheet, a
derivation from one, or an explicitly marked assumption). The catalog is
validated when it is loaded: every figure positive and finite, every figure
sourced, compute power not below idle power.

:mod:`tiercut.profile.transfer` turns a host time into a device time with
these figures (roofline scaling per node).
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

CATALOG_SCHEMA_VERSION = 1
DEVICE_KINDS = ("cpu", "gpu", "npu")
NUMERIC_FIELDS = (
    "peak_flops",
    "memory_bandwidth_bps",
    "power_compute_w",
    "power_idle_w",
    "dispatch_overhead_s",
)
_ALLOWED_KEYS = {"kind", "description", "sources", *NUMERIC_FIELDS}


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
            kernel launch), added to the roofline-scaled work.
        description: one line naming the exact part.
        sources: figure name -> where it comes from (URL, data sheet,
            derivation, or ``assumption: ...``).
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

    def __post_init__(self) -> None:
        validate_spec(self)

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
        return {
            "name": self.name,
            "kind": self.kind,
            "description": self.description,
            **{f: getattr(self, f) for f in NUMERIC_FIELDS},
            "sources": dict(self.sources),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeviceSpec:
        name = str(data.get("name", ""))
        return _spec_from_entry(name, {k: v for k, v in data.items() if k != "name"}, require_sources=False)

    def with_changes(self, **changes: Any) -> DeviceSpec:
        """A copy with some figures changed (e.g. a different power mode)."""
        return replace(self, **changes)


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
        unsourced = [k for k in NUMERIC_FIELDS if k in entry and k not in sources]
        if unsourced:
            raise TiercutError(f"{where} {name!r} gives {', '.join(unsourced)} without a source; add sources.<figure>")
    numbers: dict[str, float] = {}
    for key in NUMERIC_FIELDS:
        if key not in entry:
            continue
        value = entry[key]
        if isinstance(value, str):  # YAML 1.1 reads 48.0e9 (no exponent sign) as a string
            try:
                value = float(value)
            except ValueError:
                raise TiercutError(f"{where} {name!r} has {key} = {value!r}; it must be a number") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TiercutError(f"{where} {name!r} has {key} = {value!r}; it must be a number")
        numbers[key] = float(value)
    return DeviceSpec(
        name=name,
        kind=str(entry["kind"]),
        description=str(entry.get("description", "")),
        sources=dict(sources),
        **numbers,  # type: ignore[arg-type]
    )


def parse_catalog(data: Any, where: str = "catalog") -> dict[str, DeviceSpec]:
    """Validate a catalog document (the YAML's content) into specs by name."""
    if not isinstance(data, Mapping) or not isinstance(data.get("devices"), Mapping):
        raise TiercutError(f"{where} has no 'devices' mapping; see tiercut/profile/data/devices.yaml for the format")
    version = data.get("schema_version")
    if version != CATALOG_SCHEMA_VERSION:
        raise TiercutError(f"{where} has schema_version {version!r}; this tiercut reads {CATALOG_SCHEMA_VERSION}")
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


@functools.cache
def _shipped_catalog() -> tuple[tuple[str, DeviceSpec], ...]:
    import yaml

    text = resources.files("tiercut.profile").joinpath("data/devices.yaml").read_text()
    return tuple(parse_catalog(yaml.safe_load(text), where="shipped catalog").items())


def load_catalog() -> dict[str, DeviceSpec]:
    """The shipped device catalog, validated: name -> :class:`DeviceSpec`."""
    return dict(_shipped_catalog())


def get_device_spec(name: str) -> DeviceSpec:
    """The catalog entry ``name``; a one-line error listing the known names otherwise."""
    catalog = load_catalog()
    if name not in catalog:
        raise TiercutError(f"unknown device {name!r}; the catalog knows {', '.join(sorted(catalog))}")
    return catalog[name]


__all__ = [
    "DEVICE_KINDS",
    "DeviceSpec",
    "get_device_spec",
    "load_catalog",
    "load_catalog_file",
    "parse_catalog",
    "validate_spec",
]
