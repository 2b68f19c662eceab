"""The ``compute_s`` table: node -> device -> seconds, each entry measured or predicted.

docs/DESIGN.md's ``c(v, d)``. The seed paper's installation phase combines the
client's measured ``file_1`` with the servers' predicted ``file_2``; here:

- on the *host* (a device mapped to ``None``): a node's time is the
  profile's measured median where the profile measured that node (same
  name, op, FLOPs, output bytes) -- ``"measured"`` --, else the
  predictor's -- ``"predicted"``. "The host" is the machine the profile was
  measured on; without a profile, the ``host`` argument (e.g.
  :func:`~tiercut.profile.host.measure_host` of this machine) or else the
  predictor's own host (for the shipped predictor, the machine it was
  fitted on). Predictions for a host other than the predictor's are
  transferred to it by roofline (:mod:`tiercut.profile.transfer`).
- on a catalog *device* (a :class:`~tiercut.profile.catalog.DeviceSpec`),
  always ``"predicted"``: from the device's own figures -- its achieved
  per-class efficiencies and per-node overhead at the chosen precision
  (:mod:`tiercut.profile.device_model`) -- when the entry has them
  (:attr:`DeviceSpec.is_calibrated`); otherwise (a device known only by a
  speed, e.g. the seed's GHz figures) the host time transferred by roofline
  (:mod:`tiercut.profile.transfer`).

In context (default): a node timed alone is a little faster than inside the
model (warm caches). With ``in_context=True`` each host time gets its extra
in-model time, so the table's column sums match whole-model runs: for a
profile that measured every node of the graph, its own measured
whole-model minus sum-of-nodes difference, spread over the nodes by the
predictor's :class:`~tiercut.profile.predict.ContextModel` weights; for
predicted nodes, those weights themselves. ``context_s`` records what was
added per host device, so it can be taken back out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tiercut.errors import TiercutError
from tiercut.graph.types import LayerGraph
from tiercut.profile.catalog import DeviceSpec, get_device_spec
from tiercut.profile.device_model import device_seconds
from tiercut.profile.features import NodeFeatures, graph_features
from tiercut.profile.host import HostInfo
from tiercut.profile.predict import Predictor, load_default_predictor
from tiercut.profile.profile_file import Profile
from tiercut.profile.transfer import roofline_scaled_seconds
from tiercut.serialization import json_contract

TABLE_SCHEMA_VERSION = 1
PROVENANCES = ("measured", "predicted")


@dataclass(frozen=True)
class ComputeTable:
    """Seconds of every non-input node on every device, and where each figure comes from.

    Attributes:
        seconds: node -> device -> seconds.
        provenance: node -> device -> ``"measured"`` or ``"predicted"``.
        basis: device -> one line saying how its column was obtained.
        context_s: host device -> node -> in-model extra seconds included.
        model: the graph's model label.
    """

    seconds: Mapping[str, Mapping[str, float]]
    provenance: Mapping[str, Mapping[str, str]]
    basis: Mapping[str, str] = field(default_factory=dict)
    context_s: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    model: str = ""

    @property
    def devices(self) -> list[str]:
        first = next(iter(self.seconds.values()), {})
        return list(first)

    def total_s(self, device: str) -> float:
        """Sum of the column of ``device`` (everything run there, no transfers)."""
        try:
            return float(sum(row[device] for row in self.seconds.values()))
        except KeyError:
            raise TiercutError(f"compute table has no device {device!r}; it has {', '.join(self.devices)}") from None

    def count(self, provenance: str, device: str | None = None) -> int:
        """Entries of this provenance (in one device's column, or all)."""
        return sum(
            1 for row in self.provenance.values() for d, p in row.items() if p == provenance and device in (None, d)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": TABLE_SCHEMA_VERSION,
            "model": self.model,
            "seconds": {n: dict(row) for n, row in self.seconds.items()},
            "provenance": {n: dict(row) for n, row in self.provenance.items()},
            "basis": dict(self.basis),
            "context_s": {d: dict(row) for d, row in self.context_s.items()},
        }

    @classmethod
    @json_contract("compute table", version=TABLE_SCHEMA_VERSION, hint="re-create it with ComputeTable.to_dict of this tiercut")
    def from_dict(cls, data: Any) -> ComputeTable:
        seconds = {str(n): {str(d): float(s) for d, s in row.items()} for n, row in data["seconds"].items()}
        provenance = {str(n): {str(d): str(p) for d, p in row.items()} for n, row in data["provenance"].items()}
        for node, row in seconds.items():
            if provenance.get(node, {}).keys() != row.keys():
                raise TiercutError(f"compute table node {node!r} has seconds and provenance for different devices")
            for device, value in row.items():
                if not (np.isfinite(value) and value > 0):
                    raise TiercutError(f"compute table entry {node!r} on {device!r} is {value!r}; seconds must be > 0")
                if provenance[node][device] not in PROVENANCES:
                    raise TiercutError(
                        f"compute table entry {node!r} on {device!r} has provenance {provenance[node][device]!r}; "
                        f"expected one of {PROVENANCES}"
                    )
        return cls(
            seconds=seconds,
            provenance=provenance,
            basis={str(k): str(v) for k, v in dict(data.get("basis", {})).items()},
            context_s={str(d): {str(n): float(s) for n, s in row.items()} for d, row in dict(data.get("context_s", {})).items()},
            model=str(data.get("model", "")),
        )


def _resolve(devices: Mapping[str, Any]) -> dict[str, DeviceSpec | None]:
    if not devices:
        raise TiercutError("compute_table needs at least one device; map a name to None (this host) or a DeviceSpec")
    resolved: dict[str, DeviceSpec | None] = {}
    for name, spec in devices.items():
        if spec is None or isinstance(spec, DeviceSpec):
            resolved[str(name)] = spec
        elif isinstance(spec, str):
            resolved[str(name)] = get_device_spec(spec)
        else:
            raise TiercutError(
                f"device {name!r} is a {type(spec).__name__}; give None (this host), a DeviceSpec or a catalog name"
            )
    return resolved


def compute_table(
    graph: LayerGraph,
    devices: Mapping[str, DeviceSpec | str | None],
    *,
    profile: Profile | None = None,
    predictor: Predictor | None = None,
    host: HostInfo | None = None,
    in_context: bool = True,
    members_graph: LayerGraph | None = None,
    precisions: Mapping[str, str] | None = None,
) -> ComputeTable:
    """The ``compute_s`` table of ``graph`` on ``devices`` (see the module docstring).

    Args:
        graph: the layer graph.
        devices: device name -> ``None`` (the host), a :class:`DeviceSpec`, or a catalog name.
        profile: a :class:`~tiercut.profile.profile_file.Profile` of this graph on the host.
        predictor: predicts unmeasured nodes (default: the shipped predictor).
        host: the machine ``None`` stands for when there is no profile
            (default: the predictor's host).
        in_context: add each node's in-model extra time on the host.
        members_graph: for a block-granularity ``graph``, the same model at
            module granularity: unmeasured blocks are then predicted as the
            sum of their layers (:meth:`Predictor.predict_graph`).
        precisions: device name -> ``fp32`` / ``fp16`` / ``int8`` for catalog
            devices (default: each entry's ``default_precision``).
    """
    resolved = _resolve(devices)
    precisions = dict(precisions or {})
    for device in precisions:
        if device not in resolved:
            raise TiercutError(f"precision given for unknown device {device!r}; devices are {', '.join(resolved)}")
    predictor = predictor or load_default_predictor()
    feats = graph_features(graph)
    names = list(feats)
    features = [feats[n] for n in names]
    host_info = profile.host if profile is not None else (host or predictor.host)
    measured = _measured_seconds(graph, names, profile)
    host_s = _host_seconds(graph, names, features, measured, predictor, host_info, members_graph)
    context = _context_seconds(graph, features, profile, predictor, host_s, len(measured) == len(names)) if (
        in_context and names
    ) else np.zeros(len(names))
    in_model = np.maximum(host_s + context, 1e-9)

    seconds: dict[str, dict[str, float]] = {n: {} for n in names}
    provenance: dict[str, dict[str, str]] = {n: {} for n in names}
    basis: dict[str, str] = {}
    context_s: dict[str, dict[str, float]] = {}
    for device, spec in resolved.items():
        if spec is None:
            column = in_model
            for n in names:
                provenance[n][device] = "measured" if n in measured else "predicted"
            source = f"profile of {profile.model!r}" if profile is not None else "predictor"
            basis[device] = (
                f"host {host_info.name}: {len(measured)} nodes measured ({source}), "
                f"{len(names) - len(measured)} predicted; in-context extra {'added' if in_context else 'not added'}"
            )
            context_s[device] = {n: float(c) for n, c in zip(names, context, strict=True)}
        else:
            if spec.is_calibrated:
                column, basis[device] = _device_model_column(graph, names, features, spec, precisions.get(device))
            else:
                column, basis[device] = _roofline_column(device, spec, in_model, features, host_info, precisions.get(device))
            for n in names:
                provenance[n][device] = "predicted"
        for n, value in zip(names, column, strict=True):
            seconds[n][device] = float(value)
    return ComputeTable(seconds=seconds, provenance=provenance, basis=basis, context_s=context_s, model=graph.model)


def _measured_seconds(graph: LayerGraph, names: list[str], profile: Profile | None) -> dict[str, float]:
    """node -> its median seconds in the host profile, for the nodes the profile has."""
    measured: dict[str, float] = {}
    if profile is not None:
        for n in names:
            timing = profile.timing_for(graph, n)
            if timing is not None:
                measured[n] = timing.median_s
    return measured


def _host_seconds(
    graph: LayerGraph,
    names: list[str],
    features: list[NodeFeatures],
    measured: Mapping[str, float],
    predictor: Predictor,
    host_info: HostInfo,
    members_graph: LayerGraph | None,
) -> np.ndarray:
    """Each node alone on the host: measured where the profile has it, else predicted (and moved from the
    predictor's host to this one by the roofline)."""
    missing = [i for i, n in enumerate(names) if n not in measured]
    host_s = np.array([measured.get(n, 0.0) for n in names])
    if missing:
        if members_graph is not None:
            by_name = predictor.predict_graph(graph, members_graph)
            predicted = np.array([by_name[names[i]] for i in missing])
        else:
            predicted = predictor.predict_many([features[i] for i in missing])
        if not host_info.same_machine(predictor.host) and host_info.has_roofline and predictor.host.has_roofline:
            predicted = roofline_scaled_seconds(predicted, [features[i] for i in missing], predictor.host, host_info)
        host_s[missing] = predicted
    return host_s


def _context_seconds(
    graph: LayerGraph,
    features: list[NodeFeatures],
    profile: Profile | None,
    predictor: Predictor,
    host_s: np.ndarray,
    all_measured: bool,
) -> np.ndarray:
    """In-model extra seconds on the host: a full profile's whole-model gap shared out, else the context model's."""
    weights = predictor.context(graph.granularity).weights(features)
    if profile is not None and all_measured and profile.model == graph.model:
        gap = profile.whole_model.median_s - profile.sum_of_nodes_s
        share = weights if gap > 0 and weights.sum() > 0 else host_s
        return gap * share / share.sum()
    return weights


def _device_model_column(
    graph: LayerGraph, names: list[str], features: list[NodeFeatures], spec: DeviceSpec, precision: str | None
) -> tuple[np.ndarray, str]:
    """A calibrated catalog device's seconds (its achieved efficiencies, :mod:`tiercut.profile.device_model`)."""
    kernels = [max(1, len(graph[n].members)) for n in names]
    figures = spec.resolve(precision)
    column = device_seconds(features, spec, figures.precision, kernels)
    basis = (
        f"{spec.name} ({spec.description}) at {figures.precision}: achieved per-class efficiency and "
        f"{figures.dispatch_overhead_s * 1e6:.3g} us per node of {figures.stack or 'its stack'} (device model)"
    )
    return column, basis


def _roofline_column(
    device: str,
    spec: DeviceSpec,
    in_model: np.ndarray,
    features: list[NodeFeatures],
    host_info: HostInfo,
    precision: str | None,
) -> tuple[np.ndarray, str]:
    """An uncalibrated device's seconds: the host's in-model seconds scaled by the roofline (fp32 only)."""
    if precision is not None and precision != "fp32":
        raise TiercutError(
            f"device {device!r} ({spec.name}) has no achieved efficiencies, so only fp32 can be predicted for it; "
            "calibrate it ('tiercut devices calibrate') or drop its precision"
        )
    column = roofline_scaled_seconds(in_model, features, host_info, spec)
    return column, f"roofline transfer from host {host_info.name} to {spec.name} ({spec.description})"


__all__ = ["PROVENANCES", "ComputeTable", "compute_table"]
