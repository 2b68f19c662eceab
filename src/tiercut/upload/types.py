"""Typed results of partition uploading: partitions P3, stages, metrics, plans.

The JSON form of :class:`UploadPlan` is the ``upload_plan`` contract of docs/contracts.md
(``algorithm``, ``server``, ``partitions`` with ``nodes``, ``param_bytes``,
``upload_s``, ``arrives_s``; ``stages`` with ``from_s``, ``placement``,
``latency_s``; ``metrics`` with ``queries_done_by_upload_end``,
``time_for_n_queries_s``, ``n``, ``mean_latency_during_upload_s``), plus
``schema_version`` and a few fields for the reader (``source``,
``settings``, ``solve_s``, ``note``, ``metrics.upload_end_s``).

A :class:`UserUploadPlan` is one user's uploads to several servers at once
(one :class:`UploadPlan` per server, the uploads running in parallel on
their own links) with the merged stage timeline; a
:class:`MultiUploadPlan` holds every user's and the partition-offloading
plan that decided which server holds which node.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tiercut.problem import MultiPlan
from tiercut.serialization import from_json_float, json_contract, json_float, jsonable

SCHEMA_VERSION = 1
#: what every upload-plan error tells the reader to do.
_HINT = "pass the 'upload_plan' object of 'tiercut upload --json'"


@dataclass(frozen=True)
class UploadPartition:
    """One P3: a set of nodes whose parameters go up together.

    Attributes:
        nodes: node names in topological order (parameter-free nodes of the
            target included: they ride along and cost nothing).
        param_bytes: bytes of their parameters.
        upload_s: ``param_bytes / bandwidth + latency`` of the client-server link.
        arrives_s: when the partition has arrived (cumulative over the
            partitions before it; uploads go one after another).
    """

    nodes: tuple[str, ...]
    param_bytes: int
    upload_s: float
    arrives_s: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodes": list(self.nodes),
            "param_bytes": int(self.param_bytes),
            "upload_s": float(self.upload_s),
            "arrives_s": float(self.arrives_s),
        }

    @classmethod
    @json_contract("upload partition", hint=_HINT)
    def from_dict(cls, data: Mapping[str, Any]) -> UploadPartition:
        return cls(
            nodes=tuple(str(n) for n in data["nodes"]),
            param_bytes=int(data["param_bytes"]),
            upload_s=float(data["upload_s"]),
            arrives_s=float(data["arrives_s"]),
        )


@dataclass(frozen=True)
class Stage:
    """The placement queries use from ``from_s`` until the next arrival.

    Attributes:
        from_s: time the stage starts (0, then each arrival).
        placement: node -> device; a node with parameters is on a server
            only once it has arrived there; parameter-free nodes anywhere.
        latency_s: the cost model's latency of ``placement``.
        arrived: server -> partitions arrived there when the stage starts.
    """

    from_s: float
    placement: Mapping[str, str]
    latency_s: float
    arrived: Mapping[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "from_s": float(self.from_s),
            "placement": dict(self.placement),
            "latency_s": json_float(self.latency_s),
            "arrived": dict(self.arrived),
        }

    @classmethod
    @json_contract("upload stage", hint=_HINT)
    def from_dict(cls, data: Mapping[str, Any]) -> Stage:
        return cls(
            from_s=float(data["from_s"]),
            placement={str(k): str(v) for k, v in dict(data["placement"]).items()},
            latency_s=from_json_float(data["latency_s"]),
            arrived={str(k): int(v) for k, v in dict(data.get("arrived", {})).items()},
        )


# Times that agree to this relative precision are one instant: the analytic model and
# the simulator sum the same durations in different orders, so a query that ends exactly
# when the upload ends must count the same in both.
TIME_TIE_REL = 1e-9


def done_by(end_s: float, deadline_s: float) -> bool:
    """Whether an event at ``end_s`` happens no later than ``deadline_s`` (up to rounding)."""
    return end_s <= deadline_s + TIME_TIE_REL * max(1.0, abs(deadline_s))


def starts_before(start_s: float, deadline_s: float) -> bool:
    """Whether an event at ``start_s`` happens strictly before ``deadline_s`` (up to rounding)."""
    return not done_by(deadline_s, start_s)


@dataclass(frozen=True)
class UploadMetrics:
    """The IONN model's figures: queries issued back to back from t = 0.

    Attributes:
        queries_done_by_upload_end: queries completed by the time the last
            partition has arrived.
        time_for_n_queries_s: when the ``n``-th query completes.
        n: the number of queries of ``time_for_n_queries_s``.
        mean_latency_during_upload_s: mean latency of the queries started
            before the upload ends (the first query's if nothing is uploaded).
        upload_end_s: when the last partition arrives (0 if none).
    """

    queries_done_by_upload_end: int
    time_for_n_queries_s: float
    n: int
    mean_latency_during_upload_s: float
    upload_end_s: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "queries_done_by_upload_end": int(self.queries_done_by_upload_end),
            "time_for_n_queries_s": json_float(self.time_for_n_queries_s),
            "n": int(self.n),
            "mean_latency_during_upload_s": json_float(self.mean_latency_during_upload_s),
            "upload_end_s": float(self.upload_end_s),
        }

    @classmethod
    @json_contract("upload metrics", hint=_HINT)
    def from_dict(cls, data: Mapping[str, Any]) -> UploadMetrics:
        return cls(
            queries_done_by_upload_end=int(data["queries_done_by_upload_end"]),
            time_for_n_queries_s=from_json_float(data["time_for_n_queries_s"]),
            n=int(data["n"]),
            mean_latency_during_upload_s=from_json_float(data["mean_latency_during_upload_s"]),
            upload_end_s=float(data.get("upload_end_s", 0.0)),
        )


@dataclass(frozen=True)
class UploadPlan:
    """Partitions P3 of one client's target partition P1, in upload order, to one server.

    Attributes:
        algorithm: the upload planner's registry name.
        server: the server the partitions go to.
        source: the client (it holds the whole model from t = 0).
        partitions: the P3 in upload order; together exactly the target's
            server-side nodes, each once.
        stages: stage 0 (nothing uploaded) then one after each arrival.
        metrics: the IONN model's figures (:class:`UploadMetrics`).
        settings: the planner's settings.
        solve_s: wall-clock seconds the planner took.
        note: anything the planner wants a reader to know.
    """

    algorithm: str
    server: str
    source: str
    partitions: tuple[UploadPartition, ...]
    stages: tuple[Stage, ...]
    metrics: UploadMetrics
    settings: Mapping[str, Any] = field(default_factory=dict)
    solve_s: float = 0.0
    note: str = ""

    @property
    def target_nodes(self) -> tuple[str, ...]:
        """Every node of the partitions (the target's server side), in upload order."""
        return tuple(n for p in self.partitions for n in p.nodes)

    @property
    def upload_end_s(self) -> float:
        return self.partitions[-1].arrives_s if self.partitions else 0.0

    @property
    def param_bytes(self) -> int:
        return sum(p.param_bytes for p in self.partitions)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "algorithm": self.algorithm,
            "server": self.server,
            "source": self.source,
            "partitions": [p.to_dict() for p in self.partitions],
            "stages": [s.to_dict() for s in self.stages],
            "metrics": self.metrics.to_dict(),
            "settings": {k: jsonable(v) for k, v in self.settings.items()},
            "solve_s": float(self.solve_s),
            "note": self.note,
        }

    @classmethod
    @json_contract("upload plan", version=SCHEMA_VERSION, hint=_HINT)
    def from_dict(cls, data: Mapping[str, Any]) -> UploadPlan:
        return cls(
            algorithm=str(data["algorithm"]),
            server=str(data["server"]),
            source=str(data.get("source", "")),
            partitions=tuple(UploadPartition.from_dict(p) for p in data["partitions"]),
            stages=tuple(Stage.from_dict(s) for s in data["stages"]),
            metrics=UploadMetrics.from_dict(data["metrics"]),
            settings=dict(data.get("settings", {})),
            solve_s=float(data.get("solve_s", 0.0)),
            note=str(data.get("note", "")),
        )


@dataclass(frozen=True)
class UserUploadPlan:
    """One user's uploads to every server its target placement uses.

    Each (user, server) pair has its own :class:`UploadPlan`; the uploads run
    in parallel (one link per server). ``stages`` merges their arrivals: a
    stage starts at time 0 and at every arrival on any server, and uses the
    best placement of everything arrived so far anywhere.

    Attributes:
        user: the user's name.
        source: the user's device.
        algorithm: the upload planner.
        target: node -> device of the partition-offloading plan (P1 per server).
        servers: server -> its upload plan.
        stages: the merged timeline (``arrived`` says how many partitions of
            each server are in).
        metrics: the IONN model's figures over the merged timeline.
    """

    user: str
    source: str
    algorithm: str
    target: Mapping[str, str]
    servers: Mapping[str, UploadPlan]
    stages: tuple[Stage, ...]
    metrics: UploadMetrics

    def to_dict(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "source": self.source,
            "algorithm": self.algorithm,
            "target": dict(self.target),
            "servers": {s: p.to_dict() for s, p in self.servers.items()},
            "stages": [s.to_dict() for s in self.stages],
            "metrics": self.metrics.to_dict(),
        }

    @classmethod
    @json_contract("user upload plan", hint=_HINT)
    def from_dict(cls, data: Mapping[str, Any]) -> UserUploadPlan:
        return cls(
            user=str(data["user"]),
            source=str(data["source"]),
            algorithm=str(data["algorithm"]),
            target={str(k): str(v) for k, v in dict(data["target"]).items()},
            servers={str(s): UploadPlan.from_dict(p) for s, p in dict(data["servers"]).items()},
            stages=tuple(Stage.from_dict(s) for s in data["stages"]),
            metrics=UploadMetrics.from_dict(data["metrics"]),
        )


@dataclass(frozen=True)
class MultiUploadPlan:
    """Every user's uploads over shared servers, after a multi-user offloading plan.

    The migration seed's improvement: a partition-offloading plan over
    several servers (PSO or any multi-user planner) decides which server
    holds which of each user's nodes (P1 per server); then every (user,
    server) pair gets an upload order. The analytic figures use the
    equal-share model of DESIGN.md (a server or link used by ``n`` users gives
    each ``1/n``); the simulator replaces it with real queueing.

    Attributes:
        algorithm: the upload planner.
        offloading: the partition-offloading plan.
        users: user -> its :class:`UserUploadPlan`.
        settings: the upload planner's settings.
        solve_s: wall-clock seconds of the upload planning (offloading excluded).
    """

    algorithm: str
    offloading: MultiPlan
    users: Mapping[str, UserUploadPlan]
    settings: Mapping[str, Any] = field(default_factory=dict)
    solve_s: float = 0.0

    def mean_metric(self, name: str) -> float:
        """Mean over users of one :class:`UploadMetrics` field."""
        values = [float(getattr(u.metrics, name)) for u in self.users.values()]
        return sum(values) / len(values) if values else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "algorithm": self.algorithm,
            "offloading": self.offloading.to_dict(),
            "users": {u: p.to_dict() for u, p in self.users.items()},
            "settings": {k: jsonable(v) for k, v in self.settings.items()},
            "solve_s": float(self.solve_s),
        }

    @classmethod
    @json_contract("multi-user upload plan", version=SCHEMA_VERSION, hint="write it with MultiUploadPlan.to_dict of this tiercut")
    def from_dict(cls, data: Mapping[str, Any]) -> MultiUploadPlan:
        return cls(
            algorithm=str(data["algorithm"]),
            offloading=MultiPlan.from_dict(data["offloading"]),
            users={str(u): UserUploadPlan.from_dict(p) for u, p in dict(data["users"]).items()},
            settings=dict(data.get("settings", {})),
            solve_s=float(data.get("solve_s", 0.0)),
        )


__all__ = [
    "SCHEMA_VERSION",
    "MultiUploadPlan",
    "Stage",
    "UploadMetrics",
    "UploadPartition",
    "UploadPlan",
    "UserUploadPlan",
]
