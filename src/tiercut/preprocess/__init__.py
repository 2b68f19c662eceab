"""Model preprocessing: the stage between graph and problem (the migration seed's first stage).

Structural transforms contract groups of nodes into one, changing no
computation (:mod:`tiercut.preprocess.types` states the contraction's
contract; :func:`Preprocessed.expand` maps a placement back to the original
graph with equal cost-model figures):

- ``merge`` (:mod:`~tiercut.preprocess.merge`): chains whose interior can
  never be the only optimal cut, proven per candidate on the problem's own
  figures; exact for every exact planner. On a bare graph (no problem) it
  applies the seed's degree rule and reports it unproven.
- ``blocks`` (:mod:`~tiercut.preprocess.units`): each residual / inception
  block becomes one node; may lose optimality (:func:`optimality_loss`).
- ``dominators``: IONN's units between consecutive dominators of the
  output; may lose optimality.

Compression that changes the model lives in :mod:`tiercut.preprocess.compress`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tiercut.errors import TiercutError
from tiercut.graph.types import LayerGraph
from tiercut.preprocess.merge import exact_chain_groups, seed_chain_groups
from tiercut.preprocess.types import Preprocessed, StepReport, check_groups, contract_graph, reduce_problem
from tiercut.preprocess.units import block_groups, dominator_groups
from tiercut.problem import Problem

STEPS = ("merge", "blocks", "dominators")
_OPS = {"merge": "chain", "blocks": "block", "dominators": "unit"}


def parse_steps(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"merge,blocks"`` (or a list) -> the step names, checked; empty for None / ``""`` / ``"none"``."""
    if text is None:
        return ()
    items = [s.strip() for s in (text.split(",") if isinstance(text, str) else text)]
    items = [s for s in items if s and s != "none"]
    for step in items:
        if step not in STEPS:
            raise TiercutError(f"preprocessing step {step!r} is not known; use a comma list of {', '.join(STEPS)}")
    return tuple(dict.fromkeys(items))


def _groups_for(step: str, graph: LayerGraph, problem: Problem | None) -> tuple[list[list[str]], bool, str]:
    if step == "merge":
        if problem is None:
            groups = seed_chain_groups(graph)
            return groups, False, "the seed's degree rule (no problem given, so not proven exact)"
        groups, note = exact_chain_groups(problem)
        return groups, True, note
    if step == "blocks":
        return block_groups(graph), False, "residual / inception blocks collapsed"
    return dominator_groups(graph), False, "IONN units between consecutive dominators"


def preprocess(target: LayerGraph | Problem, steps: str | Sequence[str] = ("merge",)) -> Preprocessed:
    """Apply structural ``steps`` in order to a graph or a problem.

    Requires: a layer graph or a single-user problem; known step names.
    Ensures: the result's graph is a DAG in topological order whose nodes
    each stand for a group of original nodes with a single exit; for a
    problem, ``evaluate(result.problem, p)`` equals
    ``evaluate(problem, result.expand(p))`` for every placement ``p``.
    """
    if isinstance(target, Problem):
        problem: Problem | None = target
        graph = target.graph
    elif isinstance(target, LayerGraph):
        problem, graph = None, target
    else:
        raise TiercutError(f"preprocess takes a layer graph or a problem, not {type(target).__name__}")
    original = graph
    groups: dict[str, tuple[str, ...]] = {n.name: (n.name,) for n in graph}
    reports: list[StepReport] = []
    for step in parse_steps(steps):
        proposed, exact, note = _groups_for(step, graph, problem)
        before = len(graph)
        if proposed:
            check_groups(graph, proposed)
            graph = contract_graph(graph, proposed, _OPS[step])
            inner = {m: g[-1] for g in proposed for m in g}
            merged: dict[str, list[str]] = {}
            for name, members in groups.items():
                merged.setdefault(inner.get(name, name), []).extend(members)
            groups = {n.name: tuple(sorted(merged[n.name], key=original.index)) for n in graph}
            if problem is not None:
                problem = reduce_problem(target, graph, groups)  # type: ignore[arg-type]
        reports.append(StepReport(step, before, len(graph), exact, note))
    return Preprocessed(original=original, graph=graph, groups=groups, problem=problem, steps=tuple(reports))


@dataclass(frozen=True)
class OptimalityLoss:
    """The exact optimum before and after preprocessing (same planner).

    Attributes:
        planner: the exact planner used.
        original, preprocessed: the objective values (inf if infeasible).
        loss: ``preprocessed - original`` (>= 0; 0 for exact steps).
        relative: ``loss / original`` (0 when the original is 0 or inf).
    """

    planner: str
    original: float
    preprocessed: float

    @property
    def loss(self) -> float:
        return self.preprocessed - self.original

    @property
    def relative(self) -> float:
        if self.original in (0.0, float("inf")):
            return 0.0
        return self.loss / self.original

    def to_dict(self) -> dict[str, float | str]:
        return {"planner": self.planner, "original": self.original, "preprocessed": self.preprocessed,
                "loss": self.loss, "relative": self.relative}


def optimality_loss(problem: Problem, result: Preprocessed, planner: str = "ilp") -> OptimalityLoss:
    """Solve the original and the preprocessed problem with one exact planner and compare the optima."""
    from tiercut.plan import plan

    if result.problem is None:
        raise TiercutError("optimality_loss needs the result of preprocessing a problem, not a bare graph")
    before = plan(problem, planner)
    after = plan(result.problem, planner)
    return OptimalityLoss(planner, float(before.objective_value), float(after.objective_value))


__all__ = [
    "STEPS",
    "OptimalityLoss",
    "Preprocessed",
    "StepReport",
    "optimality_loss",
    "parse_steps",
    "preprocess",
    "reduce_problem",
]
