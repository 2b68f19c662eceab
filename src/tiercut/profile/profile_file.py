"""A profile: measured per-node seconds of one model on one host, as JSON.

The seed paper's ``file_1`` ("record the execution time and index of the
DNN subtask"): a JSON object keyed by node name, plus what makes the numbers
interpretable -- the host (CPU model, cores, threads, torch version and its
measured roofline), the stopping rule, the whole-model timing and the
difference between the sum of the isolated node medians and the whole-model
median. Each node also carries its features (op, FLOPs, bytes), so profiles
alone are enough to fit a predictor.

Profiles of the same model on the same machine can be merged (samples are
pooled, statistics recomputed); a profile is re-used for a layer graph node
by node, wherever name and op match (:meth:`Profile.timing_for`).

JSON layout (``schema_version`` 1)::

    {"schema_version": 1, "kind": "tiercut-profile", "model": "resnet18",
     "granularity": "module", "input_shapes": [[1, 3, 224, 224]],
     "created_utc": "...", "host": {...HostInfo...}, "rule": {...StoppingRule...},
     "nodes": {"conv1": {"op": "conv2d", "features": {...}, "timing": {...}}, ...},
     "whole_model": {...timing...},
     "sum_of_nodes_s": ..., "difference_s": ..., "difference_frac": ...}
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tiercut.errors import TiercutError
from tiercut.graph.types import LayerGraph
from tiercut.profile.features import NodeFeatures
from tiercut.profile.host import HostInfo
from tiercut.profile.measure import ProfileQuality, StoppingRule, TimingStats, assess_quality
from tiercut.serialization import json_contract

PROFILE_SCHEMA_VERSION = 1
PROFILE_KIND = "tiercut-profile"


@dataclass(frozen=True)
class NodeProfile:
    """One node's measured timing and the features it was measured with."""

    name: str
    features: NodeFeatures
    timing: TimingStats

    @property
    def op(self) -> str:
        return self.features.op

    @property
    def median_s(self) -> float:
        return self.timing.median_s


@dataclass(frozen=True)
class Profile:
    """Measured per-node and whole-model seconds of one model on one host.

    Attributes:
        model: model label (``resnet18``...).
        granularity: ``module`` or ``block``.
        input_shapes: shapes of the example inputs it was measured on.
        host: the machine, its thread count and measured roofline.
        rule: the stopping rule the timings followed.
        nodes: node name -> :class:`NodeProfile`, in topological order.
        whole_model: timing of the whole model, same rule.
        clock: ``wall`` (perf_counter), ``cpu`` (one thread's CPU time) or
            ``cuda`` (CUDA events).
        created_utc: ISO time of the measurement.
        quality: whether the host was busy while measuring
            (:func:`~tiercut.profile.measure.assess_quality`); for a profile
            written before this was recorded, assessed from its timings.
    """

    model: str
    granularity: str
    input_shapes: tuple[tuple[int, ...], ...]
    host: HostInfo
    rule: StoppingRule
    nodes: Mapping[str, NodeProfile]
    whole_model: TimingStats
    clock: str = "wall"
    created_utc: str = ""
    quality: ProfileQuality | None = None

    def __post_init__(self) -> None:
        if self.quality is None:
            object.__setattr__(self, "quality", assess_quality(
                [n.timing for n in self.nodes.values()], self.whole_model, cpus=self.host.logical_cpus,
                threads=self.host.threads, clock=self.clock,
            ))

    @property
    def is_stable(self) -> bool:
        """The host was not busy while measuring (see :attr:`quality`)."""
        return self.quality is not None and self.quality.verdict == "stable"

    # ----------------------------------------------------------- figures
    @property
    def sum_of_nodes_s(self) -> float:
        """Sum of the isolated node medians."""
        return float(sum(n.median_s for n in self.nodes.values()))

    @property
    def difference_s(self) -> float:
        """Sum of node medians minus the whole-model median (positive: isolation costs more)."""
        return self.sum_of_nodes_s - self.whole_model.median_s

    @property
    def difference_frac(self) -> float:
        """:attr:`difference_s` relative to the whole-model median."""
        return self.difference_s / self.whole_model.median_s

    def median_s(self) -> dict[str, float]:
        """node name -> median seconds."""
        return {name: n.median_s for name, n in self.nodes.items()}

    # ----------------------------------------------------------- re-use
    def timing_for(self, graph: LayerGraph, name: str) -> TimingStats | None:
        """This profile's timing of ``graph``'s node ``name``, if it measured the same node.

        Same node = same name, same op and same FLOPs and output bytes (a
        profile of another input size or another model does not match).
        """
        entry = self.nodes.get(name)
        if entry is None or name not in graph:
            return None
        node = graph[name]
        feats = NodeFeatures.of(node, graph)
        if feats.op != entry.op or feats.flops != entry.features.flops or feats.out_bytes != entry.features.out_bytes:
            return None
        return entry.timing

    def coverage(self, graph: LayerGraph) -> float:
        """Fraction of ``graph``'s non-input nodes this profile measured."""
        names = [n.name for n in graph.nodes if not n.is_input]
        if not names:
            return 1.0
        return sum(self.timing_for(graph, n) is not None for n in names) / len(names)

    # ----------------------------------------------------------- merging
    def merge(self, other: Profile) -> Profile:
        """Pool the samples of two profiles of the same model on the same machine."""
        if (self.model, self.granularity) != (other.model, other.granularity):
            raise TiercutError(
                f"cannot merge a profile of {other.model!r} ({other.granularity}) into one of {self.model!r} "
                f"({self.granularity}); merge profiles of the same model and granularity only"
            )
        if not self.host.same_machine(other.host):
            raise TiercutError(
                f"cannot merge profiles from different machines ({self.host.name}, torch {self.host.torch_version} "
                f"vs {other.host.name}, torch {other.host.torch_version}); keep them as separate profiles"
            )
        if self.clock != other.clock:
            raise TiercutError(
                f"cannot merge a {other.clock}-clock profile into a {self.clock}-clock one; profile with one clock"
            )
        nodes: dict[str, NodeProfile] = dict(self.nodes)
        for name, entry in other.nodes.items():
            mine = nodes.get(name)
            if mine is None:
                nodes[name] = entry
            elif mine.features != entry.features:
                raise TiercutError(
                    f"cannot merge: node {name!r} has other features in the two profiles "
                    "(another input shape?); profile the same input"
                )
            else:
                nodes[name] = NodeProfile(name, mine.features, mine.timing.pooled(entry.timing))
        return Profile(
            model=self.model,
            granularity=self.granularity,
            input_shapes=self.input_shapes,
            host=self.host,
            rule=self.rule,
            nodes=nodes,
            whole_model=self.whole_model.pooled(other.whole_model),
            clock=self.clock,
            created_utc=max(self.created_utc, other.created_utc),
        )  # quality re-assessed on the pooled samples

    # ----------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": PROFILE_SCHEMA_VERSION,
            "kind": PROFILE_KIND,
            "model": self.model,
            "granularity": self.granularity,
            "input_shapes": [list(s) for s in self.input_shapes],
            "created_utc": self.created_utc,
            "clock": self.clock,
            "host": self.host.to_dict(),
            "rule": self.rule.to_dict(),
            "nodes": {
                name: {"op": n.op, "features": n.features.to_dict(), "timing": n.timing.to_dict()}
                for name, n in self.nodes.items()
            },
            "whole_model": self.whole_model.to_dict(),
            "sum_of_nodes_s": self.sum_of_nodes_s,
            "difference_s": self.difference_s,
            "difference_frac": self.difference_frac,
            "quality": self.quality.to_dict() if self.quality is not None else None,
        }

    @classmethod
    @json_contract("profile", version=PROFILE_SCHEMA_VERSION, hint="re-profile the model with 'tiercut profile'")
    def from_dict(cls, data: Any, where: str = "profile") -> Profile:
        if data.get("kind") != PROFILE_KIND:
            raise TiercutError(f"{where} is not a tiercut profile (kind {data.get('kind')!r}); run 'tiercut profile'")
        raw_nodes = data.get("nodes")
        if not isinstance(raw_nodes, Mapping) or not raw_nodes:
            raise TiercutError(f"{where} has no 'nodes' object keyed by node name; re-profile the model")
        if not isinstance(data.get("host"), Mapping) or not isinstance(data.get("whole_model"), Mapping):
            raise TiercutError(f"{where} lacks a 'host' or 'whole_model' object; re-profile the model")
        nodes: dict[str, NodeProfile] = {}
        for name, entry in raw_nodes.items():
            if not isinstance(entry, Mapping) or "features" not in entry or "timing" not in entry:
                raise TiercutError(f"{where} node {name!r} lacks 'features' or 'timing'; re-profile the model")
            feats = entry["features"]
            if not isinstance(feats, Mapping):
                raise TiercutError(f"{where} node {name!r} has malformed features; re-profile the model")
            nodes[str(name)] = NodeProfile(
                name=str(name),
                features=NodeFeatures.from_dict(feats),
                timing=TimingStats.from_dict(entry["timing"], where=f"{where} node {name!r}"),
            )
        try:
            shapes = tuple(tuple(int(d) for d in s) for s in data.get("input_shapes", ()))
        except (TypeError, ValueError):
            raise TiercutError(f"{where} has malformed input_shapes; expected lists of integers") from None
        return cls(
            model=str(data.get("model", "")),
            granularity=str(data.get("granularity", "module")),
            input_shapes=shapes,
            host=HostInfo.from_dict(data["host"]),
            rule=StoppingRule.from_dict(data.get("rule", {})),
            nodes=nodes,
            whole_model=TimingStats.from_dict(data["whole_model"], where=f"{where} whole_model"),
            clock=_clock(data.get("clock", "wall"), where),
            created_utc=str(data.get("created_utc", "")),
            quality=ProfileQuality.from_dict(data["quality"]) if isinstance(data.get("quality"), Mapping) else None,
        )

    def save(self, path: str | Path) -> Path:
        """Write the profile as JSON (atomically)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        try:
            tmp.write_text(json.dumps(self.to_dict(), indent=1))
            tmp.replace(path)
        except OSError as exc:
            raise TiercutError(f"cannot write profile {path}: {exc.strerror}; check the directory") from None
        return path


def _clock(value: Any, where: str) -> str:
    if value not in ("wall", "cpu", "cuda"):
        raise TiercutError(f"{where} has clock {value!r}; expected 'wall', 'cpu' or 'cuda'")
    return str(value)


def load_profile(path: str | Path) -> Profile:
    """Read a profile JSON file, with one-line errors for every way it can be wrong."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise TiercutError(f"cannot read profile {path}: {exc.strerror}; check the path") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TiercutError(f"profile {path} is not valid JSON (line {exc.lineno}); re-profile the model") from None
    return Profile.from_dict(data, where=f"profile {path}")


def merge_profiles(profiles: Sequence[Profile]) -> Profile:
    """Merge several profiles of one model on one machine (see :meth:`Profile.merge`)."""
    if not profiles:
        raise TiercutError("no profiles to merge; pass at least one")
    merged = profiles[0]
    for other in profiles[1:]:
        merged = merged.merge(other)
    return merged


__all__ = ["PROFILE_SCHEMA_VERSION", "NodeProfile", "Profile", "load_profile", "merge_profiles"]
