"""The partition problem and its answer: :class:`Problem` and :class:`Plan`.

A :class:`Problem` is everything a planner needs and nothing else (DESIGN.md's
``problem`` JSON contract): the layer graph, the devices with the figures the
cost model uses, the links, the ``source`` device where the input is produced
and the result is needed, ``compute_s`` (node -> device -> seconds; a device
absent from a node's entry cannot run it), the objective and the constraints.
Anyone can recompute a plan's figures from a problem alone
(:func:`tiercut.cost.evaluate`).

A :class:`MultiUserProblem` holds one single-user problem per user over the
same devices and links (the equal-share model of DESIGN.md); a
:class:`MultiPlan` answers it.

:func:`build_problem` turns a graph and an :class:`~tiercut.env.Environment`
into a problem; it is the one place that talks to :mod:`tiercut.profile` (the
device catalog and the per-node compute tables).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from tiercut.env import Environment, Link
from tiercut.errors import TiercutError
from tiercut.graph.types import LayerGraph

SCHEMA_VERSION = 1

#: the figures a plan reports; also the keys of a weighted objective's weights.
METRICS = ("latency", "energy_source", "energy_total", "cost")
#: objective kinds: one metric, or a weighted sum of them.
OBJECTIVES = (*METRICS, "weighted")
#: how a multi-user problem aggregates user latencies.
AGGREGATES = ("mean", "max")

#: unit of each metric, for tables and messages.
METRIC_UNITS = {"latency": "s", "energy_source": "J", "energy_total": "J", "cost": ""}


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
            so choose weights that make the terms comparable.
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

    def metric_weights(self) -> dict[str, float]:
        """metric -> weight of this objective (one metric with weight 1 unless weighted)."""
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
        if isinstance(data, str):
            return cls.parse(data)
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
    def from_dict(cls, data: Mapping[str, Any]) -> Constraints:
        def opt(key: str) -> float | None:
            value = data.get(key)
            return None if value is None else float(value)

        return cls(
            memory=bool(data.get("memory", True)),
            latency_budget_s=opt("latency_budget_s"),
            energy_source_budget_j=opt("energy_source_budget_j"),
            energy_total_budget_j=opt("energy_total_budget_j"),
            cost_budget=opt("cost_budget"),
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tier": self.tier,
            "power_compute_w": self.power_compute_w,
            "power_tx_w": self.power_tx_w,
            "power_rx_w": self.power_rx_w,
            "power_idle_w": self.power_idle_w,
            "price_per_s": self.price_per_s,
            "memory_bytes": self.memory_bytes,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProblemDevice:
        try:
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
            )
        except KeyError as exc:
            raise TiercutError(f"problem device {dict(data)!r:.80} lacks the field {exc}; add it") from None


# ---------------------------------------------------------------- problem
@dataclass(frozen=True)
class Problem:
    """A single-user partition problem (DESIGN.md's cost model and JSON contract).

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
    _device_index: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)
    _links: dict[frozenset[str], Link] = field(default_factory=dict, init=False, repr=False, compare=False)
    _derived: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        label = self.name or self.graph.model or "problem"
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
            if link.key in self._links:
                raise TiercutError(f"problem {label!r} has two links between {link.a!r} and {link.b!r}; keep one")
            self._links[link.key] = link
        if self.routing_links is not None and {k.key for k in self.routing_links} != set(self._links):
            raise TiercutError(f"problem {label!r}: routing_links must join the same device pairs as links")
        for node_name, row in self.compute_s.items():
            if node_name not in self.graph:
                raise TiercutError(f"problem {label!r}: compute_s names unknown node {node_name!r}")
            for device, seconds in row.items():
                if device not in self._device_index:
                    raise TiercutError(f"problem {label!r}: compute_s[{node_name!r}] names unknown device {device!r}")
                _finite_nonneg(seconds, f"compute_s[{node_name!r}][{device!r}]")
        for node in self.graph:
            if node.is_input:
                continue
            if not self.compute_s.get(node.name):
                raise TiercutError(
                    f"problem {label!r}: node {node.name!r} can run on no device (no compute_s entry); "
                    "give it a time on at least one device"
                )
        for node_name, device in self.constraints.pinned.items():
            if node_name not in self.graph:
                raise TiercutError(f"problem {label!r}: pinned node {node_name!r} is not in the graph")
            if device not in self._device_index:
                raise TiercutError(f"problem {label!r}: node {node_name!r} is pinned to unknown device {device!r}")
            node = self.graph[node_name]
            if node.is_input:
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
    def routing(self) -> Any:
        """The :class:`tiercut.cost.routing.Routing` of the links: which path a tensor takes between two devices
        (built once per problem)."""
        routing = self._derived.get("routing")
        if routing is None:
            from tiercut.cost.routing import build_routing

            routing = self._derived["routing"] = build_routing(self.device_names, self.links, self.routing_links)
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
        return replace(self, constraints=constraints)

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
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Problem:
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise TiercutError(
                f"problem has schema_version {version!r}, this tiercut reads {SCHEMA_VERSION}; re-create the problem"
            )
        for key in ("nodes", "devices", "source", "compute_s"):
            if key not in data:
                raise TiercutError(f"problem JSON has no {key!r}; pass the 'problem' object of 'tiercut plan --json'")
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
        )


# ---------------------------------------------------------------- plan
def _json_float(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _from_json_float(value: Any) -> float:
    return math.inf if value is None else float(value)


@dataclass(frozen=True)
class Plan:
    """A placement and its figures, as computed by the cost model.

    Attributes:
        algorithm: the planner's registry name.
        placement: node -> device, graph inputs included (on the source).
        latency_s, energy_source_j, energy_total_j, cost: the cost model's
            figures of the placement (inf when it is not evaluable, e.g. a
            transfer over a missing link; written as null in JSON).
        objective_value: the problem objective's value of the placement.
        solve_s: wall-clock seconds the planner took.
        feasible: the placement is evaluable and breaks no constraint.
        optimal: the planner proved the placement optimal for the problem.
        gap: relative optimality gap where the planner reports one (ILP).
        bound: a proven lower bound of the objective where the planner has
            one (ILP; after a time-out the optimum lies between it and
            ``objective_value``).
        settings: the planner's constructor keywords (``get_params()``).
        violations: one line per broken constraint (empty when feasible).
        memory_bytes: device -> parameter bytes placed on it.
        note: anything the planner wants a reader to know (e.g. "constraints
            ignored by this algorithm; use ilp").
    """

    algorithm: str
    placement: Mapping[str, str]
    latency_s: float
    energy_source_j: float
    energy_total_j: float
    cost: float
    objective_value: float
    solve_s: float
    feasible: bool
    optimal: bool
    gap: float | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    violations: tuple[str, ...] = ()
    memory_bytes: Mapping[str, int] = field(default_factory=dict)
    note: str = ""
    bound: float | None = None

    def metric(self, name: str) -> float:
        """A figure by metric name (``latency``, ``energy_source``, ``energy_total``, ``cost``)."""
        return {
            "latency": self.latency_s,
            "energy_source": self.energy_source_j,
            "energy_total": self.energy_total_j,
            "cost": self.cost,
        }[name]

    def devices_used(self) -> list[str]:
        return list(dict.fromkeys(self.placement.values()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "algorithm": self.algorithm,
            "placement": dict(self.placement),
            "latency_s": _json_float(self.latency_s),
            "energy_source_j": _json_float(self.energy_source_j),
            "energy_total_j": _json_float(self.energy_total_j),
            "cost": _json_float(self.cost),
            "objective_value": _json_float(self.objective_value),
            "solve_s": self.solve_s,
            "feasible": self.feasible,
            "optimal": self.optimal,
            "gap": None if self.gap is None else _json_float(self.gap),
            "bound": None if self.bound is None else _json_float(self.bound),
            "settings": {k: _jsonable(v) for k, v in self.settings.items()},
            "violations": list(self.violations),
            "memory_bytes": dict(self.memory_bytes),
            "note": self.note,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Plan:
        version = data.get("schema_version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise TiercutError(f"plan has schema_version {version!r}, this tiercut reads {SCHEMA_VERSION}")
        try:
            return cls(
                algorithm=str(data["algorithm"]),
                placement={str(k): str(v) for k, v in data["placement"].items()},
                latency_s=_from_json_float(data["latency_s"]),
                energy_source_j=_from_json_float(data["energy_source_j"]),
                energy_total_j=_from_json_float(data["energy_total_j"]),
                cost=_from_json_float(data["cost"]),
                objective_value=_from_json_float(data.get("objective_value")),
                solve_s=float(data.get("solve_s", 0.0)),
                feasible=bool(data["feasible"]),
                optimal=bool(data["optimal"]),
                gap=None if data.get("gap") is None else float(data["gap"]),
                settings=dict(data.get("settings", {})),
                violations=tuple(str(v) for v in data.get("violations", ())),
                memory_bytes={str(k): int(v) for k, v in dict(data.get("memory_bytes", {})).items()},
                note=str(data.get("note", "")),
                bound=None if data.get("bound") is None else float(data["bound"]),
            )
        except KeyError as exc:
            raise TiercutError(f"plan JSON lacks the field {exc}; pass the 'plan' object of 'tiercut plan --json'") from None


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return repr(value)


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
    def from_dict(cls, data: Mapping[str, Any]) -> UserProblem:
        return cls(str(data["name"]), Problem.from_dict(data["problem"]), float(data.get("query_rate_hz", 1.0)))


@dataclass(frozen=True)
class MultiUserProblem:
    """Several users' DNNs over shared devices and links (DESIGN.md, multi-user).

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
    def from_dict(cls, data: Mapping[str, Any]) -> MultiUserProblem:
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise TiercutError(f"multi-user problem has schema_version {version!r}, this tiercut reads {SCHEMA_VERSION}")
        return cls(
            users=tuple(UserProblem.from_dict(u) for u in data["users"]),
            objective=Objective.from_dict(data.get("objective", {})),
            name=str(data.get("name", "")),
        )


@dataclass(frozen=True)
class UserFigures:
    """One user's figures under the equal-share model."""

    latency_s: float
    energy_source_j: float
    energy_total_j: float
    cost: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "latency_s": _json_float(self.latency_s),
            "energy_source_j": _json_float(self.energy_source_j),
            "energy_total_j": _json_float(self.energy_total_j),
            "cost": _json_float(self.cost),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UserFigures:
        return cls(*(_from_json_float(data[k]) for k in ("latency_s", "energy_source_j", "energy_total_j", "cost")))


@dataclass(frozen=True)
class MultiPlan:
    """Placements of every user's DNN and the equal-share figures.

    Attributes:
        algorithm: the planner's registry name.
        placements: user -> (node -> device).
        users: user -> its figures under the equal-share model.
        latency_mean_s, latency_max_s: over users.
        energy_source_j, energy_total_j, cost: summed over users.
        objective_value: the multi-user objective's value.
        solve_s, feasible, optimal, gap, settings, violations, note: as in :class:`Plan`.
    """

    algorithm: str
    placements: Mapping[str, Mapping[str, str]]
    users: Mapping[str, UserFigures]
    latency_mean_s: float
    latency_max_s: float
    energy_source_j: float
    energy_total_j: float
    cost: float
    objective_value: float
    solve_s: float
    feasible: bool
    optimal: bool
    gap: float | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    violations: tuple[str, ...] = ()
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "algorithm": self.algorithm,
            "placements": {u: dict(p) for u, p in self.placements.items()},
            "users": {u: f.to_dict() for u, f in self.users.items()},
            "latency_mean_s": _json_float(self.latency_mean_s),
            "latency_max_s": _json_float(self.latency_max_s),
            "energy_source_j": _json_float(self.energy_source_j),
            "energy_total_j": _json_float(self.energy_total_j),
            "cost": _json_float(self.cost),
            "objective_value": _json_float(self.objective_value),
            "solve_s": self.solve_s,
            "feasible": self.feasible,
            "optimal": self.optimal,
            "gap": None if self.gap is None else _json_float(self.gap),
            "settings": {k: _jsonable(v) for k, v in self.settings.items()},
            "violations": list(self.violations),
            "note": self.note,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MultiPlan:
        return cls(
            algorithm=str(data["algorithm"]),
            placements={str(u): {str(k): str(v) for k, v in p.items()} for u, p in data["placements"].items()},
            users={str(u): UserFigures.from_dict(f) for u, f in data["users"].items()},
            latency_mean_s=_from_json_float(data["latency_mean_s"]),
            latency_max_s=_from_json_float(data["latency_max_s"]),
            energy_source_j=_from_json_float(data["energy_source_j"]),
            energy_total_j=_from_json_float(data["energy_total_j"]),
            cost=_from_json_float(data["cost"]),
            objective_value=_from_json_float(data.get("objective_value")),
            solve_s=float(data.get("solve_s", 0.0)),
            feasible=bool(data["feasible"]),
            optimal=bool(data["optimal"]),
            gap=None if data.get("gap") is None else float(data["gap"]),
            settings=dict(data.get("settings", {})),
            violations=tuple(str(v) for v in data.get("violations", ())),
            note=str(data.get("note", "")),
        )


# ---------------------------------------------------------------- building problems
def resolve_devices(
    env: Environment, *, speeds: bool = True
) -> tuple[dict[str, Any], tuple[ProblemDevice, ...], dict[str, str]]:
    """Environment devices -> (name -> profile DeviceSpec or None, cost-model devices, provenance).

    This and :func:`compute_table_for` are the only code that talks to
    :mod:`tiercut.profile`: catalog names go through
    ``tiercut.profile.get_device_spec``, explicit roofline figures and CPU
    clocks become ``DeviceSpec`` objects, and no spec means this host.
    A device's powers default to its catalog entry's (compute, idle), else 0.
    With ``speeds=False`` (compute times given explicitly) explicit speeds
    are not turned into specs; catalog entries are still read for powers.
    """
    from tiercut.env import CatalogRef, DeviceSpeed

    specs: dict[str, Any] = {}
    devices: list[ProblemDevice] = []
    provenance: dict[str, str] = {}
    for device in env.devices:
        spec: Any = None
        if isinstance(device.spec, str):
            from tiercut.profile import get_device_spec

            spec = get_device_spec(device.spec)
            provenance[device.name] = f"catalog entry {device.spec!r}"
        elif isinstance(device.spec, CatalogRef):
            from tiercut.profile import get_device_spec

            spec = get_device_spec(device.spec.entry, device.spec.catalog)
            provenance[device.name] = f"entry {device.spec.entry!r} of catalog {device.spec.catalog}"
        elif isinstance(device.spec, DeviceSpeed):
            if speeds:
                spec = _speed_to_spec(device.name, device.tier, device.spec, device)
                provenance[device.name] = spec.description or "explicit speed"
            else:
                provenance[device.name] = "explicit speed (times given)"
        else:
            provenance[device.name] = "this host"
        specs[device.name] = spec

        def power(value: float | None, attr: str, spec: Any = spec) -> float:
            if value is not None:
                return float(value)
            fallback = getattr(spec, attr, None) if spec is not None else None
            return float(fallback) if fallback is not None else 0.0

        devices.append(
            ProblemDevice(
                name=device.name,
                tier=device.tier,
                power_compute_w=power(device.power_compute_w, "power_compute_w"),
                power_tx_w=power(device.power_tx_w, "power_tx_w"),
                power_rx_w=power(device.power_rx_w, "power_rx_w"),
                power_idle_w=power(device.power_idle_w, "power_idle_w"),
                price_per_s=float(device.price_per_s),
                memory_bytes=device.memory_bytes,
            )
        )
    return specs, tuple(devices), provenance


def _speed_to_spec(name: str, tier: str, speed: Any, device: Any) -> Any:
    """An explicit :class:`~tiercut.env.DeviceSpeed` as a ``tiercut.profile.DeviceSpec``.

    A CPU clock goes through ``DeviceSpec.from_cpu_ghz`` (the seed's GHz
    model, calibrated on the reference host); a roofline pair becomes a spec
    with those figures. The spec's powers are the device's (0 if not given).
    """
    from tiercut.profile import DeviceSpec

    compute_w = float(device.power_compute_w or 0.0)
    idle_w = min(float(device.power_idle_w or 0.0), compute_w)
    if speed.cpu_ghz is not None:
        return DeviceSpec.from_cpu_ghz(name, speed.cpu_ghz, power_compute_w=compute_w, power_idle_w=idle_w)
    return DeviceSpec(
        name=name,
        kind="cpu",
        peak_flops=float(speed.peak_flops),
        memory_bandwidth_bps=float(speed.memory_bandwidth_bps),
        power_compute_w=compute_w,
        power_idle_w=idle_w,
        description=f"explicit {speed.peak_flops:.3g} FLOP/s, {speed.memory_bandwidth_bps:.3g} B/s (environment file)",
        sources={"peak_flops": "environment file", "memory_bandwidth_bps": "environment file"},
    )


def compute_table_for(
    graph: LayerGraph, specs: Mapping[str, Any], profile: Any = None, precisions: Mapping[str, str] | None = None
) -> tuple[dict, dict]:
    """node -> device -> seconds from :func:`tiercut.profile.compute_table`, and device -> how its
    column was obtained (the table's ``basis``). ``precisions``: device -> precision of catalog devices."""
    try:
        from tiercut.profile import compute_table
    except ImportError:
        raise TiercutError(
            "per-node device times need tiercut.profile.compute_table, which this installation lacks; "
            "pass an explicit compute table (--compute-table FILE)"
        ) from None
    precisions = {d: p for d, p in (precisions or {}).items() if d in specs}
    for device, precision in precisions.items():
        if specs[device] is None and precision != "fp32":
            raise TiercutError(
                f"device {device!r} is this host, which tiercut measures in fp32, but asks for {precision}; "
                "drop its precision or give it a catalog spec"
            )
    precisions = {d: p for d, p in precisions.items() if specs[d] is not None}
    table = compute_table(graph, specs, profile=profile, precisions=precisions)
    seconds = {str(n): {str(d): float(s) for d, s in row.items()} for n, row in table.seconds.items()}
    basis = dict(getattr(table, "basis", {}) or {})
    provenance = {str(k): str(v) for k, v in basis.items()}
    return seconds, provenance


def load_profile_file(path: Any) -> Any:
    """A per-node profile file of this host (``tiercut.profile.load_profile``)."""
    from tiercut.profile import load_profile

    return load_profile(path)


def build_problem(
    graph: LayerGraph,
    env: Environment,
    *,
    source: str | None = None,
    objective: Objective | str = "latency",
    constraints: Constraints | None = None,
    compute_s: Mapping[str, Mapping[str, float]] | None = None,
    profile: Any = None,
    devices: list[str] | None = None,
    compute_provenance: Mapping[str, str] | None = None,
) -> Problem:
    """A :class:`Problem` for ``graph`` over ``env``.

    Args:
        graph: the layer graph.
        env: the environment (devices, links).
        source: the source device (default: the environment's first user's
            device, else its first end device).
        objective: an :class:`Objective` or its text form (``latency``,
            ``weighted:latency=1,energy_source=0.1``...).
        constraints: budgets, pins, memory (default: memory only).
        compute_s: node -> device -> seconds to use instead of the profiler
            (e.g. a measured table, or explicit figures in tests); input nodes
            and devices not in the environment are ignored.
        profile: a per-node profile of this host, passed to
            ``tiercut.profile.compute_table``.
        devices: keep only these devices (default: all).
        compute_provenance: with ``compute_s``, device -> how its column was
            obtained (default: "given compute table").
    """
    specs, problem_devices, provenance = resolve_devices(env, speeds=compute_s is None)
    if devices is not None:
        for name in devices:
            env.device(name)
        problem_devices = tuple(d for d in problem_devices if d.name in set(devices))
        specs = {k: v for k, v in specs.items() if k in set(devices)}
    names = {d.name for d in problem_devices}
    if compute_s is None:
        precisions = {d.name: d.precision for d in env.devices if d.precision is not None}
        compute, table_provenance = compute_table_for(graph, specs, profile, precisions)
        provenance.update({k: v for k, v in table_provenance.items() if k in names})
    else:
        compute = {str(n): {str(d): float(s) for d, s in row.items()} for n, row in compute_s.items()}
        provenance = {d: (compute_provenance or {}).get(d, "given compute table") for d in names}
    compute = {
        node.name: {d: s for d, s in compute.get(node.name, {}).items() if d in names}
        for node in graph
        if not node.is_input
    }
    src = source or env.default_source()
    if src not in names:
        raise TiercutError(f"source {src!r} is not a device of environment {env.name!r}; devices are {', '.join(sorted(names))}")
    return Problem(
        graph=graph,
        devices=problem_devices,
        links=tuple(link for link in env.links if link.a in names and link.b in names),
        source=src,
        compute_s=compute,
        objective=Objective.parse(objective) if isinstance(objective, str) else objective,
        constraints=constraints or Constraints(),
        provenance={d: provenance[d] for d in (x.name for x in problem_devices) if d in provenance},
        name=f"{graph.model}@{env.name}",
    )


def build_multi_user_problem(
    env: Environment,
    graphs: Mapping[str, LayerGraph],
    *,
    objective: Objective | str = "latency",
    constraints: Mapping[str, Constraints] | None = None,
    compute_s: Mapping[str, Mapping[str, Mapping[str, float]]] | None = None,
    profile: Any = None,
) -> MultiUserProblem:
    """A :class:`MultiUserProblem` for the environment's users.

    ``graphs`` maps each user's name to its layer graph (capture them with
    :func:`tiercut.graph.extract_graph` from ``User.model``);
    ``compute_s`` optionally maps a user to an explicit compute table.
    """
    if not env.users:
        raise TiercutError(f"environment {env.name!r} has no users; add a users: list for a multi-user problem")
    users = []
    for user in env.users:
        if user.name not in graphs:
            raise TiercutError(f"no graph for user {user.name!r}; pass one per user")
        problem = build_problem(
            graphs[user.name],
            env,
            source=user.device,
            objective=objective,
            constraints=(constraints or {}).get(user.name),
            compute_s=None if compute_s is None else compute_s.get(user.name),
            profile=profile,
        )
        users.append(UserProblem(user.name, problem, user.query_rate_hz))
    obj = Objective.parse(objective) if isinstance(objective, str) else objective
    return MultiUserProblem(tuple(users), obj, name=env.name)

# `tiercut.problem(...)` is the front-door step of this stage (tiercut/_front_door.py)
from tiercut._front_door import make_callable  # noqa: E402

make_callable(__name__)
