"""What every preprocessing transform returns, and the contraction they share.

A structural transform groups nodes of a layer graph; each group becomes one
node. A group is contracted only when it has a single *exit*: every member
except the last (the exit) sends its output only to other members and is
not a graph output, and no member is a graph input. Then

- the contracted node is named after the exit and stands where the exit
  stood in the topological order (every outside input of a member comes
  before the exit, every consumer of the exit after it), so the contracted
  graph is a DAG in topological order;
- its output is the exit's (bytes, shape, dtype, ``is_output``), its
  weights the union of the members', its FLOPs their sum;
- a placement of the contracted graph *expands* to the original graph by
  putting every member where its group is, and the cost model's figures of
  the two are equal (:func:`reduce_problem` builds the contracted problem
  with ``c(group, d) = sum of c(member, d)``): no transfer happens inside a
  group, and the only tensor that leaves it is the exit's, sent to the same
  devices from the same device; memory counts the same distinct weights.

Contracting therefore never changes computation; it restricts the
placements to those keeping each group on one device. Whether that
restriction can lose the optimum is each transform's claim
(:attr:`StepReport.exact`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tiercut.errors import TiercutError
from tiercut.graph.types import LayerGraph, Node
from tiercut.problem import Constraints, Problem


@dataclass(frozen=True)
class StepReport:
    """One transform's outcome.

    Attributes:
        name: the transform (``merge``, ``blocks``, ``dominators``).
        nodes_before, nodes_after: node counts (graph inputs included).
        exact: the transform provably keeps the optimum of every exact
            planner (see the transform's docstring for the precise claim).
        note: what it did or why it did nothing.
    """

    name: str
    nodes_before: int
    nodes_after: int
    exact: bool
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Preprocessed:
    """A contracted graph (and problem) and the way back to the original.

    Attributes:
        original: the graph before any transform.
        graph: the graph after all transforms.
        groups: contracted node name -> the original node names it stands
            for (topological order, exit last); every node of ``graph`` has
            an entry (an untouched node stands for itself).
        problem: the contracted problem, when a problem was preprocessed.
        steps: the transforms' reports, in order.
    """

    original: LayerGraph
    graph: LayerGraph
    groups: Mapping[str, tuple[str, ...]]
    problem: Problem | None = None
    steps: tuple[StepReport, ...] = ()
    _owner: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._owner.update({m: g for g, members in self.groups.items() for m in members})

    @property
    def exact(self) -> bool:
        """Every step keeps the optimum of the exact planners."""
        return all(step.exact for step in self.steps)

    def owner(self, original_name: str) -> str:
        """The contracted node an original node went into."""
        return self._owner[original_name]

    def expand(self, placement: Mapping[str, str]) -> dict[str, str]:
        """A placement of the contracted graph as a placement of the original graph."""
        missing = [n for n in self.graph.names if n not in placement]
        if missing:
            raise TiercutError(f"placement lacks contracted node(s) {', '.join(missing[:5])}; place every node of the graph")
        return {name: placement[self._owner[name]] for name in self.original.names}

    def contract(self, placement: Mapping[str, str]) -> dict[str, str]:
        """A placement of the original graph that keeps every group on one device, contracted."""
        out: dict[str, str] = {}
        for group, members in self.groups.items():
            devices = {placement[m] for m in members}
            if len(devices) != 1:
                raise TiercutError(f"group {group!r} is split over {sorted(devices)}; it cannot be contracted")
            out[group] = devices.pop()
        return out

    def summary(self) -> str:
        parts = [f"{s.name}: {s.nodes_before} -> {s.nodes_after} nodes ({'exact' if s.exact else 'may lose optimality'})"
                 for s in self.steps]
        return "; ".join(parts) if parts else "no preprocessing"

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": [s.to_dict() for s in self.steps],
            "exact": self.exact,
            "groups": {g: list(m) for g, m in self.groups.items() if len(m) > 1},
        }


def check_groups(graph: LayerGraph, groups: Sequence[Sequence[str]]) -> None:
    """Requires of :func:`contract_graph`: disjoint groups of non-input nodes, each with a single exit."""
    consumers = graph.consumers()
    seen: set[str] = set()
    for group in groups:
        members = set(group)
        if len(members) != len(group) or not group:
            raise TiercutError(f"group {list(group)} is empty or repeats a node")
        if members & seen:
            raise TiercutError(f"group {list(group)} overlaps another group")
        seen |= members
        exit_ = group[-1]
        for name in group:
            node = graph[name]
            if node.is_input:
                raise TiercutError(f"group {list(group)} holds graph input {name!r}; inputs stay on the source")
            if name != exit_ and (node.is_output or any(c not in members for c in consumers[name])):
                raise TiercutError(
                    f"group {list(group)}: {name!r} sends its output out of the group, but only the exit may"
                )
        if any(graph.index(m) > graph.index(exit_) for m in group):
            raise TiercutError(f"group {list(group)}: the exit {exit_!r} must come last in topological order")


def contract_graph(graph: LayerGraph, groups: Sequence[Sequence[str]], op: str) -> LayerGraph:
    """The graph with every group (exit last, see :func:`check_groups`) contracted into one node named after its exit."""
    check_groups(graph, groups)
    owner = {m: g[-1] for g in groups for m in g}
    by_exit = {g[-1]: g for g in groups}
    nodes: list[Node] = []
    for node in graph.nodes:
        if node.name in owner and node.name not in by_exit:
            continue
        group = by_exit.get(node.name)
        if group is None or len(group) == 1:
            nodes.append(dataclasses.replace(node, inputs=tuple(dict.fromkeys(owner.get(i, i) for i in node.inputs))))
            continue
        members = [graph[m] for m in group]
        inside = set(group)
        nodes.append(
            Node(
                name=node.name,
                op=op,
                inputs=tuple(dict.fromkeys(owner.get(i, i) for m in members for i in m.inputs if i not in inside)),
                flops=sum(m.flops for m in members),
                matmul_flops=sum(m.matmul_flops for m in members),
                param_bytes=sum(m.param_bytes for m in members),
                param_count=sum(m.param_count for m in members),
                out_bytes=node.out_bytes,
                out_shape=node.out_shape,
                out_dtype=node.out_dtype,
                is_output=node.is_output,
                members=tuple(x for m in members for x in (m.members or (m.name,))),
                module=node.module,
                params=_merged_params(graph, members),
            )
        )
    names, _ = graph.param_table()
    extra = {p: names[p] for n in nodes for p in n.params if p not in graph.params}
    return graph.with_nodes(tuple(nodes), params={**dict(graph.params), **extra}) if extra else graph.with_nodes(tuple(nodes))


def _merged_params(graph: LayerGraph, members: Sequence[Node]) -> tuple[str, ...]:
    """The distinct weights of the members; members without named weights keep theirs as ``<node>:weights``."""
    if not any(m.params for m in members):
        return ()
    _, uses = graph.param_table()
    return tuple(dict.fromkeys(p for m in members for p in uses[m.name]))


def reduce_problem(problem: Problem, graph: LayerGraph, groups: Mapping[str, Sequence[str]]) -> Problem:
    """The problem over a contracted ``graph``: each group's compute time the sum of its members'.

    A group may run on a device when every member may (its compute time is
    the sum of theirs); a group is pinned where a member is (members pinned
    to different devices are a :class:`TiercutError`). Cut-compression
    options (JALAD) stay for the tensors that still cross: each group's exit,
    whose name the group keeps.
    """
    compute: dict[str, dict[str, float]] = {}
    pinned: dict[str, str] = {}
    for node in graph:
        if node.is_input:
            continue
        members = groups.get(node.name, (node.name,))
        rows = [problem.compute_s.get(m, {}) for m in members]
        devices = [d for d in problem.device_names if all(d in row for row in rows)]
        compute[node.name] = {d: float(sum(row[d] for row in rows)) for d in devices}
        pins = {problem.constraints.pinned[m] for m in members if m in problem.constraints.pinned}
        if len(pins) > 1:
            raise TiercutError(f"group {node.name!r} holds nodes pinned to different devices {sorted(pins)}")
        if pins:
            pinned[node.name] = pins.pop()
    constraints = Constraints(**{**{f.name: getattr(problem.constraints, f.name)
                                    for f in dataclasses.fields(Constraints)}, "pinned": pinned})
    cut_compression = problem.cut_compression
    if cut_compression is not None:  # a group's output is its exit's tensor (named as the group): its options stay
        kept = {node.name for node in graph}
        cut_compression = dataclasses.replace(
            cut_compression, tensors={n: row for n, row in cut_compression.tensors.items() if n in kept}
        )
    return dataclasses.replace(problem, graph=graph, compute_s=compute, constraints=constraints,
                               cut_compression=cut_compression)


__all__ = ["Preprocessed", "StepReport", "check_groups", "contract_graph", "reduce_problem"]
