"""What a simulation returns: every query's trace, every partition's arrival, summaries.

Queries are :class:`tiercut.trace.QueryRecord` s, the type the runtime's measured traces use too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tiercut.errors import TiercutError
from tiercut.serialization import finite_or_null
from tiercut.trace import QueryRecord
from tiercut.upload.types import UploadMetrics, done_by, starts_before


@dataclass(frozen=True, slots=True)
class ArrivalRecord:
    """One partition that arrived on a server."""

    user: str
    server: str
    index: int
    nodes: tuple[str, ...]
    param_bytes: int
    start_s: float
    arrives_s: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "server": self.server,
            "index": self.index,
            "nodes": list(self.nodes),
            "param_bytes": self.param_bytes,
            "start_s": self.start_s,
            "arrives_s": self.arrives_s,
        }


@dataclass(frozen=True)
class UserSummary:
    """One user's figures over the run."""

    user: str
    queries: int
    in_flight: int
    mean_latency_s: float
    p95_latency_s: float
    max_latency_s: float
    upload_end_s: float | None
    partitions_arrived: int
    partitions_planned: int
    energy_source_j: float
    bytes_moved: int

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class ResourceSummary:
    """A device's or link's use over the run."""

    name: str
    kind: str
    discipline: str
    busy_s: float
    served: float
    completed: int

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[pos]


@dataclass
class SimResult:
    """Every completed query, every arrival, and the run's figures.

    Attributes:
        queries: completed queries in completion order.
        arrivals: arrived partitions in arrival order.
        users: user -> (join_s, number of planned partitions).
        in_flight: user -> queries issued but not complete at the end.
        resources: devices and links with their use.
        end_s: simulated time at the end.
        events: events scheduled on the event loop (timers, timeouts, event successes, process starts).
        wall_s: wall-clock seconds of the run.
    """

    queries: list[QueryRecord]
    arrivals: list[ArrivalRecord]
    users: Mapping[str, tuple[float, int]]
    in_flight: Mapping[str, int]
    resources: list[ResourceSummary]
    end_s: float
    events: int
    wall_s: float

    @property
    def events_per_s(self) -> float:
        return self.events / self.wall_s if self.wall_s > 0 else math.inf

    def user_queries(self, user: str) -> list[QueryRecord]:
        """The user's completed queries in issue order."""
        if user not in self.users:
            raise TiercutError(f"the simulation has no user {user!r}; users are {', '.join(self.users)}")
        return sorted((q for q in self.queries if q.user == user), key=lambda q: q.index)

    def user_arrivals(self, user: str) -> list[ArrivalRecord]:
        return [a for a in self.arrivals if a.user == user]

    def upload_end_s(self, user: str) -> float | None:
        """When the user's last partition arrived (None if not all arrived)."""
        join, planned = self.users[user]
        arrived = self.user_arrivals(user)
        if len(arrived) < planned:
            return None
        return max((a.arrives_s for a in arrived), default=join)

    def upload_metrics(self, user: str, n: int) -> UploadMetrics:
        """The IONN-model metrics measured on the trace (times from the user's join).

        Needs the user's queries to be back to back and at least ``n`` of them complete.
        """
        join, _ = self.users[user]
        end = self.upload_end_s(user)
        if end is None:
            raise TiercutError(f"user {user!r}'s upload did not finish in the simulated time; simulate longer")
        queries = self.user_queries(user)
        if len(queries) < n:
            raise TiercutError(f"user {user!r} completed {len(queries)} queries, fewer than n={n}; simulate longer")
        done = sum(1 for q in queries if done_by(q.end_s, end))
        during = [q.latency_s for q in queries if starts_before(q.start_s, end)] or [queries[0].latency_s]
        return UploadMetrics(
            queries_done_by_upload_end=done,
            time_for_n_queries_s=queries[n - 1].end_s - join,
            n=n,
            mean_latency_during_upload_s=sum(during) / len(during),
            upload_end_s=end - join,
        )

    def summaries(self) -> list[UserSummary]:
        """One :class:`UserSummary` per user (queries grouped in one pass)."""
        by_user: dict[str, list[QueryRecord]] = {u: [] for u in self.users}
        for q in self.queries:
            by_user[q.user].append(q)
        arrivals: dict[str, list[ArrivalRecord]] = {u: [] for u in self.users}
        for a in self.arrivals:
            arrivals[a.user].append(a)
        out = []
        for user, (join, planned) in self.users.items():
            mine = by_user[user]
            lat = [q.latency_s for q in mine]
            arrived = arrivals[user]
            out.append(
                UserSummary(
                    user=user,
                    queries=len(mine),
                    in_flight=self.in_flight.get(user, 0),
                    mean_latency_s=sum(lat) / len(lat) if lat else math.nan,
                    p95_latency_s=_percentile(lat, 0.95),
                    max_latency_s=max(lat) if lat else math.nan,
                    upload_end_s=None if len(arrived) < planned else max((a.arrives_s for a in arrived), default=join),
                    partitions_arrived=len(arrived),
                    partitions_planned=planned,
                    energy_source_j=sum(q.energy_source_j for q in mine),
                    bytes_moved=sum(q.bytes_moved for q in mine),
                )
            )
        return out

    def to_dict(self, include_queries: bool = False) -> dict[str, Any]:
        latencies = [q.latency_s for q in self.queries]
        data: dict[str, Any] = {
            "end_s": self.end_s,
            "events": self.events,
            "wall_s": self.wall_s,
            "events_per_s": self.events_per_s,
            "queries": len(self.queries),
            "mean_latency_s": sum(latencies) / len(latencies) if latencies else None,
            "p95_latency_s": _percentile(latencies, 0.95) if latencies else None,
            "users": [s.to_dict() for s in self.summaries()],
            "arrivals": [a.to_dict() for a in self.arrivals],
            "resources": [r.to_dict() for r in self.resources],
        }
        if include_queries:
            data["query_trace"] = [q.to_dict() for q in self.queries]
        return finite_or_null(data)


__all__ = ["ArrivalRecord", "QueryRecord", "ResourceSummary", "SimResult", "UserSummary"]
