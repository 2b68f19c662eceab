"""What every upload planner works on: one client, one server, a target P1, IONN's chain of units.

IONN (Jeong et al., SoCC'18) makes a DAG a chain of *units* by cutting it at
the dominators of the output (:func:`tiercut.plan.structure.units`: an
inception or residual block is one unit). The migration seed's P1 is the
target partition the partition-offloading plan put on the server; here a
unit "on the server" means its P1 part on the server (the rest of the unit
stays on the client), so a target that splits a block is still expressible.

:class:`UploadContext` gives the planners, all through the cost model
(:func:`tiercut.cost.evaluate_many` and :func:`tiercut.cost.linear_form`):

- :meth:`UploadContext.latencies`: latency of "these units' P1 parts on the
  server, everything else on the client", for many unit sets at once (the
  range model of Shin et al., EMDL'19);
- :meth:`UploadContext.ionn_units`: IONN's shortest path over the chain of
  units with an upload penalty ``penalty * m / B`` on the server side (an
  exact DP over the chain; the edge weights of ALGORITHMS.md's execution
  graph are the units' parts of the cost model's linear form);
- :attr:`UploadContext.blocks`: runs of consecutive units holding target
  nodes (the ideal placement's server blocks).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from tiercut.cost import CompiledProblem, LinearForm, compile_problem, evaluate_many, linear_form
from tiercut.plan.structure import Unit, UnitEvaluator, units
from tiercut.problem import Problem
from tiercut.upload.analytic import StageSolver, link_figures


@dataclass(frozen=True)
class ChainUnit:
    """One unit of the chain and its part of the target.

    Attributes:
        index: position in the chain.
        nodes: every node of the unit (topological order).
        server_nodes: its nodes in the target P1.
        param_bytes: bytes of the distinct parameters ``server_nodes`` use.
        structure: the unit's node indices (:class:`tiercut.plan.structure.Unit`).
    """

    index: int
    nodes: tuple[str, ...]
    server_nodes: tuple[str, ...]
    param_bytes: int
    structure: Unit


class UploadContext:
    """A two-device problem (client = source, one server), a target P1 and its chain of units.

    Build with :func:`build_context`; the planners only read it.
    """

    def __init__(
        self,
        problem: Problem,
        server: str,
        target: frozenset[str],
        n_queries: int | None,
        comp: CompiledProblem,
        chain: tuple[ChainUnit, ...],
        solver: StageSolver,
    ) -> None:
        self.problem = problem
        self.server = server
        self.target = target
        self.n_queries = n_queries
        self.comp = comp
        self.chain = chain
        self.solver = solver
        self.bandwidth_bytes_per_s, self.latency_s = link_figures(problem, server)
        self.server_index = problem.device_index(server)
        self._form: LinearForm | None = None
        self._target_mask = np.array([node.name in target for node in problem.graph], dtype=bool)

    # ----------------------------------------------------------- structure
    @property
    def blocks(self) -> list[list[int]]:
        """Maximal runs of consecutive units that hold target nodes (unit indices)."""
        out: list[list[int]] = []
        for unit in self.chain:
            if not unit.server_nodes:
                continue
            if out and out[-1][-1] == unit.index - 1:
                out[-1].append(unit.index)
            else:
                out.append([unit.index])
        return out

    def param_bytes(self, unit_ids: Iterable[int]) -> int:
        return sum(self.chain[i].param_bytes for i in unit_ids)

    def weight_upload_s(self, unit_ids: Iterable[int]) -> float:
        """Upload time of the units' own weights, ``sum m_i / B`` (Shin et al.'s denominator)."""
        return self.param_bytes(unit_ids) / self.bandwidth_bytes_per_s

    def nodes_of(self, unit_ids: Iterable[int]) -> list[str]:
        """The target nodes of these units, in topological order."""
        ids = sorted(set(unit_ids))
        return [n for i in ids for n in self.chain[i].server_nodes]

    # ----------------------------------------------------------- range model
    def rows(self, unit_sets: Sequence[Iterable[int]]) -> np.ndarray:
        """Placement rows: each set's units' target nodes on the server, the rest on the client."""
        comp = self.comp
        X = np.full((len(unit_sets), comp.n_nodes), comp.source, dtype=np.int64)
        for r, ids in enumerate(unit_sets):
            for i in ids:
                cols = np.asarray(self.chain[i].structure.nodes, dtype=np.int64)
                cols = cols[self._target_mask[cols]]
                X[r, cols] = self.server_index
        return X

    def latencies(self, unit_sets: Sequence[Iterable[int]]) -> np.ndarray:
        """Cost-model latency of each set's units on the server (:func:`tiercut.cost.evaluate_many`)."""
        if not unit_sets:
            return np.zeros(0)
        return evaluate_many(self.comp, self.rows(unit_sets)).latency_s

    # ----------------------------------------------------------- IONN shortest path
    def _latency_form(self) -> LinearForm:
        if self._form is None:
            self._form = linear_form(self.comp, "latency")
        return self._form

    def ionn_units(self, penalty: float) -> frozenset[int]:
        """Units on the server in IONN's shortest path with upload penalty ``penalty`` (the paper's ``1 - k``).

        Every unit is either on the client or has its target nodes on the
        server; the server side pays ``penalty * m_v / B`` per target node
        ``v`` on top of the latency. Exact DP over the chain of units (two
        states per unit), ties kept on the client.
        """
        comp = self.comp
        form = self._latency_form()
        node = form.node.copy()
        extra = penalty * comp.param_bytes / self.bandwidth_bytes_per_s
        node[self._target_mask, self.server_index] += extra[self._target_mask]
        pen = LinearForm(node, form.transfer)
        src, srv = comp.source, self.server_index
        # state 0: unit on the client; state 1: its target nodes on the server
        cost = {0: 0.0}
        exit_device = {0: src}
        back: list[dict[int, int]] = []
        for unit in self.chain:
            structure = unit.structure
            evaluator = UnitEvaluator(comp, pen, structure)
            options = [0, 1] if unit.server_nodes else [0]
            prev_states = list(cost) if structure.entry is not None else [0]
            rows, keys = [], []
            for option in options:
                devices = [srv if (option and self._target_mask[v]) else src for v in structure.nodes]
                for p in prev_states:
                    boundary = ([exit_device[p]] if structure.entry is not None else []) + [src] * len(structure.inputs)
                    rows.append(boundary + devices)
                    keys.append((option, p))
            values = evaluator.cost(np.asarray(rows, dtype=np.int64))
            new_cost: dict[int, float] = {}
            choice: dict[int, int] = {}
            for (option, p), value in zip(keys, values, strict=True):
                total = cost[p] + float(value)
                if option not in new_cost or total < new_cost[option]:
                    new_cost[option] = total
                    choice[option] = p
            exit_device = {
                o: (srv if (o and self._target_mask[structure.exit]) else src) for o in new_cost
            }
            cost = new_cost
            back.append(choice)
        last = self.chain[-1].structure.exit if self.chain else None
        if last is not None and comp.is_output[last]:
            cost = {o: c + float(pen.transfer[last, exit_device[o], src]) for o, c in cost.items()}
        state = min(cost, key=lambda o: (cost[o], o))
        chosen = []
        for i in range(len(self.chain) - 1, -1, -1):
            if state:
                chosen.append(i)
            state = back[i][state]
        return frozenset(chosen)


def build_context(problem: Problem, server: str, target: Iterable[str], n_queries: int | None = None) -> UploadContext:
    """The context of uploading ``target`` (node names) from ``problem.source`` to ``server``.

    ``problem`` must compute only on the source and ``server`` (other devices may relay).
    """
    target_set = frozenset(target)
    comp = compile_problem(problem)
    graph = problem.graph
    chain = []
    for i, unit in enumerate(units(comp)):
        names = tuple(graph.nodes[v].name for v in unit.nodes)
        server_nodes = tuple(n for n in names if n in target_set)
        chain.append(
            ChainUnit(i, names, server_nodes, graph.weight_bytes(server_nodes), unit)
        )
    return UploadContext(problem, server, target_set, n_queries, comp, tuple(chain), StageSolver(problem))


__all__ = ["ChainUnit", "UploadContext", "build_context"]
