"""The partition problem: :class:`Problem` and its parts, and :class:`MultiUserProblem`.

A :class:`Problem` is everything a planner needs and nothing else (docs/DESIGN.md's
``problem`` JSON contract): the layer graph, the devices with the figures the
cost model uses, the links, the ``source`` device where the input is produced
and the result is needed, ``compute_s`` (node -> device -> seconds; a device
absent from a node's entry cannot run it), the objective and the constraints.
Anyone can recompute a plan's figures from a problem alone
(:func:`tiercut.cost.evaluate`).

A :class:`MultiUserProblem` holds one single-user problem per user over the
same devices and links (the equal-share model of docs/cost-model.md).

The answers (:class:`~tiercut.problem.plan.Plan`,
:class:`~tiercut.problem.plan.MultiPlan`) live in :mod:`tiercut.problem.plan`;
building a problem from a graph and an environment in
:mod:`tiercut.problem.build`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from tiercut.env import Link
from tiercut.errors import TiercutError
from tiercut.graph.types import LayerGraph
from tiercut.problem.compression import CutCompression
from tiercut.serialization import json_contract, optional_float

if TYPE_CHECKING:
    from tiercut.cost.routing import Routing

SCHEMA_VERSION = 1

#: the figures a plan reports; also the keys of a weighted objective's weights.
METRICS = ("latency", "energy_source", "energy_total", "cost")
#: objective kinds: one metric, a weighted sum of them, or ``throughput`` (minimise the bottleneck stage of the
#: pipelined stage model, docs/cost-model.md "Throughput"; its value is ``bottleneck_s``).
OBJECTIVES = (*METRICS, "weighted", "throughput")
#: the figure the throughput objective minimises (seconds per query of the busiest pipeline stage).
BOTTLENECK = "bottleneck"
#: how a multi-user problem aggregates user latencies.
AGGREGATES = ("mean", "max")


def _finite_nonneg(value: float, what: str) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise TiercutError(f"{what} is {value!r}; it must be a finite number >= 0")
    return value


# ---------------------------------------------------------------- objective
@dataclass(frozen=True)
class Objective:
    """What a planner minimises (the survey's objectives, its Eq. 3-5).

    Attributes:
        kind: ``latency`` (T(x), seconds), ``energy_source`` (joules of the
            source device's battery), ``energy_total`` (joules over every
            device), ``cost`` (money), or ``weighted``.
        weights: for ``weighted``: metric -> weight; the objective is
            ``sum(weight * metric)`` in the metrics' own units (s, J, money),
            so choose weights that make the terms comparable; or
            ``throughput``: maximise queries per second of a stream, i.e.
            minimise the bottleneck stage (``bottleneck_s``, docs/cost-model.md
            "Throughput"); a latency bound is the latency budget.
        aggregate: multi-user problems only: ``mean`` or ``max`` of the user
            latencies (energy and cost are summed over users).
    """

    kind: str = "latency"
    weights: Mapping[str, float] = field(default_factory=dict)
    aggregate: str = "mean"

    def __post_init__(self) -> None:
        if self.kind not in OBJECTIVES:
            raise TiercutError(f"objective {self.kind!r} is not known; use one of {', '.join(OBJECTIVES)}")
        if self.aggregate not in AGGREGATES:
            raise TiercutError(f"aggregate {self.aggregate!r} is not known; use mean or max")
        for key, weight in self.weights.items():
            if key not in METRICS:
                raise TiercutError(f"objective weight {key!r} is not a metric; use {', '.join(METRICS)}")
            _finite_nonneg(weight, f"objective weight {key!r}")
        if self.kind == "weighted" and not any(w > 0 for w in self.weights.values()):
            raise TiercutError("a weighted objective needs at least one positive weight, e.g. latency=1,energy_source=0.1")
        if self.kind != "weighted" and self.weights:
            raise TiercutError(f"objective {self.kind!r} takes no weights; use kind 'weighted' to combine metrics")

    @property
    def is_throughput(self) -> bool:
        """The objective is the pipelined bottleneck (not a sum of per-node and per-transfer terms)."""
        return self.kind == "throughput"

    def metric_weights(self) -> dict[str, float]:
        """metric -> weight of this objective (one metric with weight 1 unless weighted; ``bottleneck`` for
        throughput)."""
        if self.kind == "throughput":
            return {BOTTLENECK: 1.0}
        if self.kind == "weighted":
            return {k: float(w) for k, w in self.weights.items() if w > 0}
        return {self.kind: 1.0}

    @classmethod
    def parse(cls, text: str, aggregate: str = "mean") -> Objective:
        """``latency``, ``energy_source``... or ``weighted:latency=1,energy_source=0.5``."""
        text = text.strip()
        if text.startswith("weighted"):
            _, _, body = text.partition(":")
            weights: dict[str, float] = {}
            for item in filter(None, (p.strip() for p in body.split(","))):
                key, eq, value = item.partition("=")
                if not eq:
                    raise TiercutError(f"objective weight {item!r} must look like metric=weight, e.g. latency=1")
                try:
                    weights[key.strip()] = float(value)
                except ValueError:
                    raise TiercutError(f"objective weight {item!r} is not a number") from None
            return cls("weighted", weights, aggregate)
        return cls(text, {}, aggregate)

    def describe(self) -> str:
        if self.kind == "weighted":
            return "weighted:" + ",".join(f"{k}={w:g}" for k, w in self.weights.items())
        return self.kind

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "weights": dict(self.weights), "aggregate": self.aggregate}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | str) -> Objective:
        """An objective from its JSON object, or from its text form (:meth:`parse`)."""
        if isinstance(data, str):
            return cls.parse(data)
        return cls._from_object(data)

    @classmethod
    @json_contract("objective", hint="give kind, weights and aggregate, as 'tiercut plan --json' writes them")
    def _from_object(cls, data: Mapping[str, Any]) -> Objective:
        return cls(str(data.get("kind", "latency")), dict(data.get("weights", {})), str(data.get("aggregate", "mean")))


# ---------------------------------------------------------------- constraints
@dataclass(frozen=True)
class Constraints:
    """What a placement must satisfy besides "every node runs somewhere".

    Attributes:
        memory: enforce each device's ``memory_bytes`` (sum of the
            ``param_bytes`` placed on it).
        latency_budget_s, energy_source_budget_j, energy_total_budget_j,
            cost_budget: upper bounds on those metrics (None: no bound).
        pinned: node -> device it must run on (privacy: pin the first layers
            to the source so the raw input never leaves it). Graph inputs are
            always on the source, pinned or not.
    """

    memory: bool = True
    latency_budget_s: float | None = None
    energy_source_budget_j: float | None = None
    energy_total_budget_j: float | None = None
    cost_budget: float | None = None
    pinned: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key in ("latency_budget_s", "energy_source_budget_j", "energy_total_budget_j", "cost_budget"):
            value = getattr(self, key)
            if value is not None:
                _finite_nonneg(value, key)

    def budgets(self) -> dict[str, float]:
        """metric -> upper bound, for the budgets that are set."""
        pairs = {
            "latency": self.latency_budget_s,
            "energy_source": self.energy_source_budget_j,
            "energy_total": self.energy_total_budget_j,
            "cost": self.cost_budget,
        }
        return {k: float(v) for k, v in pairs.items() if v is not None}

    @property
    def is_unconstrained(self) -> bool:
        """No budget and no pinned node (memory limits are the devices')."""
        return not self.budgets() and not self.pinned

    def to_dict(self) -> dict[str, Any]:
        return {
            "memory": self.memory,
            "latency_budget_s": self.latency_budget_s,
            "energy_source_budget_j": self.energy_source_budget_j,
            "energy_total_budget_j": self.energy_total_budget_j,
            "cost_budget": self.cost_budget,
            "pinned": dict(self.pinned),
        }

    @classmethod
    @json_contract("problem constraints", hint="pass the 'problem' object of 'tiercut plan --json'")
    def from_dict(cls, data: Mapping[str, Any]) -> Constraints:
        return cls(
            memory=bool(data.get("memory", True)),
            latency_budget_s=optional_float(data.get("latency_budget_s")),
            energy_source_budget_j=optional_float(data.get("energy_source_budget_j")),
            energy_total_budget_j=optional_float(data.get("energy_total_budget_j")),
            cost_budget=optional_float(data.get("cost_budget")),
            pinned={str(k): str(v) for k, v in dict(data.get("pinned", {})).items()},
        )


# ---------------------------------------------------------------- devices
@dataclass(frozen=True)
class ProblemDevice:
    """A device as the cost model sees it: resolved powers, price and memory.

    ``memory_bytes`` None means unlimited.
    """

    name: str
    tier: str
    power_compute_w: float = 0.0
    power_tx_w: float = 0.0
    power_rx_w: float = 0.0
    power_idle_w: float = 0.0
    price_per_s: float = 0.0
    memory_bytes: int | None = None
    #: seconds busy per message sent or received (docs/cost-model.md "Per-message costs"); JSON: absent = 0
    message_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "tier": self.tier,
            "power_compute_w": self.power_compute_w,
            "power_tx_w": self.power_tx_w,
            "power_rx_w": self.power_rx_w,
            "power_idle_w": self.power_idle_w,
            "price_per_s": self.price_per_s,
            "memory_bytes": self.memory_bytes,
        }
        if self.message_s:
            data["message_s"] = self.message_s
        return data

    @classmethod
    @json_contract("problem device", hint="pass the 'problem' object of 'tiercut plan --json'")
    def from_dict(cls, data: Mapping[str, Any]) -> ProblemDevice:
        memory = data.get("memory_bytes")
        return cls(
            name=str(data["name"]),
            tier=str(data.get("tier", "end")),
            power_compute_w=_finite_nonneg(data.get("power_compute_w", 0.0), "power_compute_w"),
            power_tx_w=_finite_nonneg(data.get("power_tx_w", 0.0), "power_tx_w"),
            power_rx_w=_finite_nonneg(data.get("power_rx_w", 0.0), "power_rx_w"),
            power_idle_w=_finite_nonneg(data.get("power_idle_w", 0.0), "power_idle_w"),
            price_per_s=_finite_nonneg(data.get("price_per_s", 0.0), "price_per_s"),
            memory_bytes=None if memory is None else int(memory),
            message_s=_finite_nonneg(data.get("message_s", 0.0), "message_s"),
        )


# ---------------------------------------------------------------- problem
@dataclass(frozen=True)
class Problem:
    """A single-user partition problem (docs/cost-model.md and JSON contract).

    Attributes:
        graph: the layer graph (``problem.nodes``).
        devices: the devices (``problem.devices``).
        links: links between devices (``problem.links``; symmetric unless a
            link gives its ``b -> a`` figures); devices without a direct link
            reach each other through relays (:attr:`routing`).
        source: the device where the input is produced and the result needed.
        compute_s: node -> device -> seconds, for every non-input node and
            only the devices where it can run.
        objective, constraints: what to minimise and what must hold.
        provenance: device -> how its times were obtained (measured here,
            predicted from the catalog, given explicitly...).
        name: a label (model @ environment).
        routing_links: the links whose figures choose the transfers' paths,
            when they are not ``links`` (the same device pairs; the
            multi-user equal-share model keeps each user's nominal routes
            over shared, slower links); None: ``links``.
        cut_compression: the JALAD options of compressing a tensor at a cut
            (:class:`~tiercut.problem.compression.CutCompression`); None: tensors
            travel raw.
    """

    graph: LayerGraph
    devices: tuple[ProblemDevice, ...]
    links: tuple[Link, ...]
    source: str
    compute_s: Mapping[str, Mapping[str, float]]
    objective: Objective = field(default_factory=Objective)
    constraints: Constraints = field(default_factory=Constraints)
    provenance: Mapping[str, str] = field(default_factory=dict)
    name: str = ""
    routing_links: tuple[Link, ...] | None = None
    cut_compression: CutCompression | None = None
    _device_index: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)
    _links: dict[frozenset[str], Link] = field(default_factory=dict, init=False, repr=False, compare=False)
    _derived: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        label = self.name or self.graph.model or "problem"
        self._index_devices(label)
        self._index_links(label)
        self._check_compute(label)
        self._check_pins(label)
        if self.cut_compression is not None:
            self.cut_compression.check({n.name for n in self.graph}, set(self._device_index), label)

    def _index_devices(self, label: str) -> None:
        if not self.devices:
            raise TiercutError(f"problem {label!r} has no devices; give at least the source device")
        for i, device in enumerate(self.devices):
            if device.name in self._device_index:
                raise TiercutError(f"problem {label!r} has two devices named {device.name!r}; rename one")
            self._device_index[device.name] = i
        if self.source not in self._device_index:
            raise TiercutError(
                f"problem {label!r}: source {self.source!r} is not a device; devices are {', '.join(self._device_index)}"
            )

    def _index_links(self, label: str) -> None:
        for link in self.links:
            for end in (link.a, link.b):
                if end not in self._device_index:
                    raise TiercutError(f"problem {label!r}: link {link.a}-{link.b} names unknown device {end!r}")
            if link.a == link.b:
                raise TiercutError(f"problem {label!r}: link from {link.a!r} to itself; drop it")
            for hop in link.directions():
                rate = hop.bandwidth_bytes_per_s
                if not (isinstance(rate, (int, float)) and rate > 0 and math.isfinite(rate)):
                    raise TiercutError(
                        f"problem {label!r}: link {hop.src}->{hop.dst} has bandwidth {rate!r} B/s; use a number > 0"
                    )
                _finite_nonneg(hop.latency_s, f"latency_s of link {hop.src}->{hop.dst}")
                _finite_nonneg(hop.price_per_byte, f"price_per_byte of link {hop.src}->{hop.dst}")
                _finite_nonneg(hop.message_overhead_bytes, f"message_overhead_bytes of link {hop.src}->{hop.dst}")
            if link.key in self._links:
                raise TiercutError(f"problem {label!r} has two links between {link.a!r} and {link.b!r}; keep one")
            self._links[link.key] = link
        if self.routing_links is not None and {k.key for k in self.routing_links} != set(self._links):
            raise TiercutError(f"problem {label!r}: routing_links must join the same device pairs as links")

    def _check_compute(self, label: str) -> None:
        for node_name, row in self.compute_s.items():
            if node_name not in self.graph:
                raise TiercutError(f"problem {label!r}: compute_s names unknown node {node_name!r}")
            for device, seconds in row.items():
                if device not in self._device_index:
                    raise TiercutError(f"problem {label!r}: compute_s[{node_name!r}] names unknown device {device!r}")
                _finite_nonneg(seconds, f"compute_s[{node_name!r}][{device!r}]")
        for node in self.graph:
            if not node.is_input and not self.compute_s.get(node.name):
                raise TiercutError(
                    f"problem {label!r}: node {node.name!r} can run on no device (no compute_s entry); "
                    "give it a time on at least one device"
                )

    def _check_pins(self, label: str) -> None:
        for node_name, device in self.constraints.pinned.items():
            if node_name not in self.graph:
                raise TiercutError(f"problem {label!r}: pinned node {node_name!r} is not in the graph")
            if device not in self._device_index:
                raise TiercutError(f"problem {label!r}: node {node_name!r} is pinned to unknown device {device!r}")
            if self.graph[node_name].is_input:
                if device != self.source:
                    raise TiercutError(
                        f"problem {label!r}: graph input {node_name!r} is pinned to {device!r}; inputs are on the source "
                        f"{self.source!r}"
                    )
            elif device not in self.compute_s[node_name]:
                raise TiercutError(
                    f"problem {label!r}: node {node_name!r} is pinned to {device!r}, where it cannot run; "
                    f"it runs on {', '.join(self.compute_s[node_name])}"
                )

    # ----------------------------------------------------------- access
    @property
    def device_names(self) -> list[str]:
        return [d.name for d in self.devices]

    def device_index(self, name: str) -> int:
        try:
            return self._device_index[name]
        except KeyError:
            raise TiercutError(f"problem has no device {name!r}; devices are {', '.join(self._device_index)}") from None

    def device(self, name: str) -> ProblemDevice:
        return self.devices[self.device_index(name)]

    def link(self, a: str, b: str) -> Link | None:
        """The direct link between ``a`` and ``b`` (either order), None if there is none."""
        return self._links.get(frozenset((a, b)))

    @property
    def routing(self) -> Routing:
        """The :class:`tiercut.cost.routing.Routing` of the links: which path a tensor takes between two devices
        (built once per problem)."""
        routing = self._derived.get("routing")
        if routing is None:
            from tiercut.cost.routing import build_routing

            message_s = {d.name: d.message_s for d in self.devices if d.message_s}
            routing = self._derived["routing"] = build_routing(
                self.device_names, self.links, self.routing_links, message_s=message_s or None
            )
        return routing

    def reachable(self, a: str, b: str) -> bool:
        """A tensor can travel from ``a`` to ``b`` (same device, a link, or a path of links)."""
        return bool(self.routing.reachable(a, b))

    def allowed_devices(self, node_name: str) -> list[str]:
        """Devices ``node_name`` may be placed on: the source for inputs, the pinned
        device if pinned, else every device with a compute time (device order)."""
        node = self.graph[node_name]
        if node.is_input:
            return [self.source]
        pinned = self.constraints.pinned.get(node_name)
        if pinned is not None:
            return [pinned]
        row = self.compute_s[node_name]
        return [d for d in self.device_names if d in row]

    def local_placement(self) -> dict[str, str]:
        """Every node on the source (may be invalid if some node cannot run there)."""
        return {n.name: self.source for n in self.graph}

    # ----------------------------------------------------------- derived problems
    def with_objective(self, objective: Objective) -> Problem:
        return replace(self, objective=objective)

    def with_constraints(self, constraints: Constraints) -> Problem:
        """This problem with other ``constraints``, keeping its routing (it depends on the devices and links
        only), so evaluating under other constraints does not rebuild it."""
        out = replace(self, constraints=constraints)
        out._derived["routing"] = self.routing  # built once on this problem, shared with the copy
        return out

    def with_cut_compression(self, cut_compression: CutCompression | None) -> Problem:
        return replace(self, cut_compression=cut_compression)

    @property
    def compresses_cuts(self) -> bool:
        """The problem offers at least one way to compress some tensor at a cut."""
        cc = self.cut_compression
        return cc is not None and bool(cc.codecs) and any(cc.tensors.values())

    def restricted_to(self, device_names: list[str] | tuple[str, ...], *, keep_relays: bool = True) -> Problem:
        """The same problem computing on a subset of the devices (which must contain the source).

        Nodes keep only the devices in the subset; a node left with none, or
        pinned outside the subset, is a :class:`TiercutError`. With
        ``keep_relays`` the devices on the candidate paths between kept
        devices stay too, computing nothing, so every transfer between kept
        devices costs what it costs in this problem (its routing is
        unchanged); without, only the subset and its links remain.
        """
        keep = [d for d in self.device_names if d in set(device_names)]
        if self.source not in keep:
            raise TiercutError(f"a restricted problem must keep the source {self.source!r}")
        keep_set = set(keep)
        compute = {n: {d: s for d, s in row.items() if d in keep_set} for n, row in self.compute_s.items()}
        present = set(keep_set)
        if keep_relays:
            routing = self.routing
            for a in keep:
                for b in keep:
                    for path in routing.candidates.get((a, b), ()):
                        present.update(path.devices)
        links = tuple(link for link in self.links if link.a in present and link.b in present)
        routing_links = (
            None if self.routing_links is None else tuple(k for k in self.routing_links if k.a in present and k.b in present)
        )
        return replace(
            self,
            devices=tuple(d for d in self.devices if d.name in present),
            links=links,
            routing_links=routing_links,
            compute_s=compute,
            provenance={d: p for d, p in self.provenance.items() if d in keep_set},
            cut_compression=None if self.cut_compression is None else self.cut_compression.on_devices(present),
        )

    # ----------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        graph = self.graph.to_dict()
        return {
            "schema_version": SCHEMA_VERSION,
            "name": self.name,
            "model": self.graph.model,
            "granularity": self.graph.granularity,
            "nodes": graph["nodes"],
            "params": graph["params"],
            "devices": [d.to_dict() for d in self.devices],
            "links": [link.to_dict() for link in self.links],
            "source": self.source,
            "compute_s": {n: dict(row) for n, row in self.compute_s.items()},
            "objective": self.objective.to_dict(),
            "constraints": self.constraints.to_dict(),
            "provenance": dict(self.provenance),
            **({} if self.routing_links is None else {"routing_links": [k.to_dict() for k in self.routing_links]}),
            **({} if self.cut_compression is None else {"cut_compression": self.cut_compression.to_dict()}),
        }

    @classmethod
    @json_contract("problem", version=SCHEMA_VERSION, hint="pass the 'problem' object of 'tiercut plan --json'")
    def from_dict(cls, data: Mapping[str, Any]) -> Problem:
        graph = LayerGraph.from_dict(
            {
                "schema_version": 1,
                "model": data.get("model", ""),
                "granularity": data.get("granularity", "module"),
                "nodes": data["nodes"],
                "params": data.get("params", {}),
            }
        )
        return cls(
            graph=graph,
            devices=tuple(ProblemDevice.from_dict(d) for d in data["devices"]),
            links=tuple(Link.from_dict(link) for link in data.get("links", ())),
            source=str(data["source"]),
            compute_s={str(n): {str(d): float(s) for d, s in row.items()} for n, row in data["compute_s"].items()},
            objective=Objective.from_dict(data.get("objective", {})),
            constraints=Constraints.from_dict(data.get("constraints", {})),
            provenance={str(k): str(v) for k, v in dict(data.get("provenance", {})).items()},
            name=str(data.get("name", "")),
            routing_links=None
            if data.get("routing_links") is None
            else tuple(Link.from_dict(k) for k in data["routing_links"]),
            cut_compression=None
            if data.get("cut_compression") is None
            else CutCompression.from_dict(data["cut_compression"]),
        )



# ---------------------------------------------------------------- multi-user
@dataclass(frozen=True)
class UserProblem:
    """One user of a multi-user problem: its own single-user problem."""

    name: str
    problem: Problem
    query_rate_hz: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "query_rate_hz": self.query_rate_hz, "problem": self.problem.to_dict()}

    @classmethod
    @json_contract("multi-user problem's user", hint="write it with MultiUserProblem.to_dict of this tiercut")
    def from_dict(cls, data: Mapping[str, Any]) -> UserProblem:
        return cls(str(data["name"]), Problem.from_dict(data["problem"]), float(data.get("query_rate_hz", 1.0)))


@dataclass(frozen=True)
class MultiUserProblem:
    """Several users' DNNs over shared devices and links (docs/DESIGN.md, multi-user).

    Every user problem has the same devices and links. In the analytic
    equal-share model a device used by ``n`` users gives each ``1/n`` of its
    speed and a link used by ``n`` users gives each ``1/n`` of its bandwidth
    (:func:`tiercut.cost.evaluate_users`). Memory limits hold for the sum of
    every user's parameters on a device. Per-user constraints (budgets,
    pinned nodes) live in each user's problem; the multi-user objective
    (``latency`` aggregated by ``objective.aggregate``, or summed energy and
    cost) is :attr:`objective`.
    """

    users: tuple[UserProblem, ...]
    objective: Objective = field(default_factory=Objective)
    name: str = ""

    def __post_init__(self) -> None:
        if not self.users:
            raise TiercutError("a multi-user problem needs at least one user")
        if self.objective.is_throughput:
            raise TiercutError(
                "the equal-share multi-user model has no throughput objective; plan several models on shared devices "
                "with a JointProblem (tiercut.plan.plan_joint, 'tiercut plan --models a,b --rates x,y')"
            )
        first = self.users[0].problem
        names: set[str] = set()
        for user in self.users:
            if user.name in names:
                raise TiercutError(f"multi-user problem has two users named {user.name!r}; rename one")
            names.add(user.name)
            if user.problem.devices != first.devices:
                raise TiercutError(
                    f"user {user.name!r} has other devices than user {self.users[0].name!r}; share one environment"
                )
            if {link.key: link for link in user.problem.links} != {link.key: link for link in first.links}:
                raise TiercutError(
                    f"user {user.name!r} has other links than user {self.users[0].name!r}; share one environment"
                )

    @property
    def devices(self) -> tuple[ProblemDevice, ...]:
        return self.users[0].problem.devices

    @property
    def links(self) -> tuple[Link, ...]:
        return self.users[0].problem.links

    @property
    def device_names(self) -> list[str]:
        return self.users[0].problem.device_names

    def user(self, name: str) -> UserProblem:
        for user in self.users:
            if user.name == name:
                return user
        raise TiercutError(f"multi-user problem has no user {name!r}; users are {', '.join(u.name for u in self.users)}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "name": self.name,
            "objective": self.objective.to_dict(),
            "users": [u.to_dict() for u in self.users],
        }

    @classmethod
    @json_contract("multi-user problem", version=SCHEMA_VERSION, hint="write it with MultiUserProblem.to_dict of this tiercut")
    def from_dict(cls, data: Mapping[str, Any]) -> MultiUserProblem:
        return cls(
            users=tuple(UserProblem.from_dict(u) for u in data["users"]),
            objective=Objective.from_dict(data.get("objective", {})),
            name=str(data.get("name", "")),
        )


__all__ = [
    "AGGREGATES",
    "BOTTLENECK",
    "METRICS",
    "OBJECTIVES",
    "SCHEMA_VERSION",
    "Constraints",
    "MultiUserProblem",
    "Objective",
    "Problem",
    "ProblemDevice",
    "UserProblem",
]
