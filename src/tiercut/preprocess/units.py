"""Blocks and dominator units: contracting the sub-graphs between the nodes every path passes through.

IONN (Jeong et al., SoCC'18) turns a DAG into a chain of *units* by cutting
it at the dominators of the output: the nodes every path from the inputs to
the outputs passes through (``tiercut.plan.structure.separators``, the same
decomposition the IONN upload planner and the chain planners use). A unit
is the sub-graph after one such node up to and including the next; every
member but the last sends only to members (the separator property), so a
unit has a single exit and contracts exactly (``tiercut.preprocess.types``).

- ``dominators``: every unit becomes one node, so the graph becomes IONN's
  chain (a unit that holds a graph output other than its exit is left
  alone: it has two exits).
- ``blocks``: only the units of the migration seed's "inception / residual"
  shape are collapsed: parallel chains from the entry to the exit, with or
  without a skip edge (``shape == "parallel"``: residual, inception, SE
  blocks); dense or nested units stay open.

Both forbid cutting inside a collapsed block, so both may lose optimality:
the loss is what :func:`tiercut.preprocess.optimality_loss` reports (the
exact optimum with and without the step).
"""

from __future__ import annotations

from tiercut.cost import compile_problem
from tiercut.graph.types import LayerGraph, Node
from tiercut.plan.structure import units
from tiercut.problem import Problem, ProblemDevice


def _unit_problem(graph: LayerGraph) -> Problem:
    """A one-device problem over ``graph``: the structure helpers work on compiled problems."""
    compute = {n.name: {"here": 0.0} for n in graph if not n.is_input}
    return Problem(graph=graph, devices=(ProblemDevice("here", "end"),), links=(), source="here", compute_s=compute)


def unit_groups(graph: LayerGraph, shapes: tuple[str, ...] | None = None) -> list[list[str]]:
    """The units of ``graph`` (names, exit last) with more than one node and one exit, of the given shapes (all if None)."""
    if not any(not n.is_input for n in graph):
        return []
    comp = compile_problem(_unit_problem(graph))
    names = graph.names
    out: list[list[str]] = []
    for unit in units(comp):
        if len(unit.nodes) < 2 or (shapes is not None and unit.shape not in shapes):
            continue
        nodes: list[Node] = [graph.nodes[i] for i in unit.nodes]
        if any(nd.is_output for nd in nodes[:-1]):
            continue
        out.append([names[i] for i in unit.nodes])
    return out


def block_groups(graph: LayerGraph) -> list[list[str]]:
    """Residual / inception shaped units (parallel chains between two separators)."""
    return unit_groups(graph, ("parallel",))


def dominator_groups(graph: LayerGraph) -> list[list[str]]:
    """Every unit between two consecutive dominators of the output (IONN's chain of units)."""
    return unit_groups(graph, None)


__all__ = ["block_groups", "dominator_groups", "unit_groups"]
