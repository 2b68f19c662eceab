"""Pipelined dynamic programming on chains: the exact throughput optimum of a layer chain.

TREND-WANT (Lin et al., 2019, in the survey's table: cloud-edges-ends, layer
partition, latency objective under a throughput requirement, solved by DP)
and the pipelined DPs of its kind walk a chain of layers deciding each
layer's device. With docs/cost-model.md's stage model (a device hosting
several non-contiguous segments is one stage whose time is their sum, each
link direction a stage; :mod:`tiercut.cost.throughput`) the bottleneck is a
max of sums, so the state after layer ``i`` on device ``d`` is not one number
but a *label*: the vector of every stage's load so far (and the latency, when
a latency bound is set). The DP keeps, per ``(i, d)``, the labels no other
label dominates (every component ``<=``); a label whose bottleneck already
exceeds the incumbent's (the best of all-local and the all-on placements), or
whose latency exceeds the bound, is dropped. The answer is the final label of
least bottleneck: exact (Pareto dominance loses no optimum, since the
bottleneck and the latency are monotone in the label), unless a state's labels
exceed ``max_labels`` (then the ones of least bottleneck are kept and the plan
is not marked optimal).

Chains only: one graph input, every other node reads exactly the node before
it (intermediate graph outputs allowed: their tensor returns to the source);
use ``ilp`` on other DAGs. Memory limits and the budgets other than latency
are checked, not optimised (use ``ilp``).
Complexity: O(|V| |D|^2 L K) with L labels per state and K stages (L is 1 for
one device, small in practice; exponential in the worst case).
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from tiercut.cost import compile_problem, decode, evaluate_many, linear_form
from tiercut.cost.throughput import stage_forms
from tiercut.plan.base import PlacementResult, Planner, cheap_rows
from tiercut.problem import Problem


def chain_order(problem: Problem) -> list[int] | None:
    """Node indices of the chain (the graph input first), or None when the graph is not a chain."""
    graph = problem.graph
    nodes = list(graph)
    inputs = [i for i, n in enumerate(nodes) if n.is_input]
    if len(inputs) != 1 or inputs[0] != 0:
        return None
    consumers = graph.consumers()
    for i, node in enumerate(nodes):
        if i > 0 and list(node.inputs) != [nodes[i - 1].name]:
            return None
        if i < len(nodes) - 1 and list(consumers[node.name]) != [nodes[i + 1].name]:
            return None
    return list(range(len(nodes)))


def pareto(labels: np.ndarray) -> np.ndarray:
    """Indices of the rows of ``labels`` that no other row dominates (every component <=, one <; of equal
    rows the first), ordered by their largest component."""
    order = np.lexsort((labels.sum(axis=1), labels.max(axis=1)))
    kept: list[int] = []
    for i in order:
        row = labels[i]
        if kept and np.any(np.all(labels[kept] <= row, axis=1)):
            continue
        kept.append(int(i))
    return np.array(kept, dtype=np.int64)


class ThroughputDPPlanner(Planner):
    """Exact throughput optimum of a chain by a DP over Pareto labels of the stage loads."""

    name = "throughput-dp"
    summary = "pipelined DP on chains: Pareto labels of every stage's load, exact bottleneck optimum"
    reference = "TREND-WANT (Lin et al., 2019) pipelined DP, as listed in the survey; stage model in docs/cost-model.md"
    guarantee = (
        "optimal bottleneck on chains under the latency bound and pins (unless a state exceeds max_labels); "
        "memory and other budgets checked, not optimised"
    )
    complexity = "O(|V| |D|^2 L K): L Pareto labels per state, K stages"
    plans_throughput = True

    def __init__(self, max_labels: int = 5_000) -> None:
        self.max_labels = max_labels

    def check(self, problem: Problem) -> str | None:
        if not problem.objective.is_throughput:
            return "it minimises the bottleneck stage: give the problem the throughput objective (or use dp)"
        if not (isinstance(self.max_labels, int) and self.max_labels >= 1):
            return f"setting max_labels={self.max_labels!r} must be an integer >= 1"
        if chain_order(problem) is None:
            return "the graph is not a chain (one input, each node reading the one before); use ilp"
        return None

    def _solve(self, problem: Problem) -> PlacementResult:
        comp = compile_problem(problem)
        src = comp.source
        order = chain_order(problem)
        assert order is not None
        forms = [f for _, f in stage_forms(comp)]
        node_load = np.stack([np.where(np.isfinite(f.node), f.node, 0.0) for f in forms], axis=-1)  # [n, D, K]
        tr_load = np.stack([np.where(np.isfinite(f.transfer), f.transfer, 0.0) for f in forms], axis=-1)  # [n,D,D,K]
        latency = linear_form(comp, "latency")
        budget = problem.constraints.latency_budget_s
        with_latency = budget is not None
        limit = math.inf if budget is None else budget * (1 + 1e-9) + 1e-15
        incumbent = self._incumbent(problem, comp)

        def send(u: int, a: int, dests: set[int]) -> tuple[np.ndarray, float] | None:
            """Stage loads and latency of sending u's tensor from a to each other device in dests."""
            load = np.zeros(len(forms))
            seconds = 0.0
            for b in dests:
                if b == a:
                    continue
                if not comp.reachable[a, b]:
                    return None
                load += tr_load[u, a, b]
                seconds += float(latency.transfer[u, a, b])
            return load, seconds

        # labels per device: loads [L, K] (+ latency column when bounded), back-pointers (previous label, device)
        first = order[0]
        loads = {src: np.zeros((1, len(forms) + 1))}
        back: list[dict[int, tuple[np.ndarray, np.ndarray]]] = []
        truncated = False
        for prev, v in itertools.pairwise(order):
            new: dict[int, list[tuple[np.ndarray, int, int]]] = {}
            out_dest = {src} if comp.is_output[prev] else set()
            for a, labels in loads.items():
                for d in np.flatnonzero(comp.allowed[v]).tolist():
                    sent = send(prev, a, out_dest | {d})
                    if sent is None:
                        continue
                    extra = np.zeros(len(forms) + 1)
                    extra[:-1] = sent[0] + node_load[v, d]
                    extra[-1] = sent[1] + float(latency.node[v, d])
                    cand = labels + extra
                    keep = (cand[:, :-1].max(axis=1) <= incumbent * (1 + 1e-12)) & (cand[:, -1] <= limit)
                    for i in np.flatnonzero(keep):
                        new.setdefault(d, []).append((cand[i], i, a))
            loads = {}
            step: dict[int, tuple[np.ndarray, np.ndarray]] = {}
            for d, items in new.items():
                matrix = np.stack([row for row, _, _ in items])
                kept = pareto(matrix if with_latency else matrix[:, :-1])
                if len(kept) > self.max_labels:
                    kept = kept[: self.max_labels]
                    truncated = True
                loads[d] = matrix[kept]
                step[d] = (np.array([items[i][1] for i in kept]), np.array([items[i][2] for i in kept]))
            back.append(step)
            if not loads:
                break
        last = order[-1]
        best: tuple[tuple[float, float], int, int] | None = None
        for d, labels in loads.items():
            sent = send(last, d, {src} if comp.is_output[last] else set())
            if sent is None:
                continue
            total = labels.copy()
            total[:, :-1] += sent[0]
            total[:, -1] += sent[1]
            ok = total[:, -1] <= limit
            values = np.where(ok, total[:, :-1].max(axis=1), np.inf)
            i = int(np.lexsort((total[:, -1], values))[0])  # least bottleneck, then least latency among its labels
            key = (float(values[i]), float(total[i, -1]))
            if math.isfinite(key[0]) and (best is None or key < best[0]):
                best = (key, d, i)
        if best is None or len(back) < len(order) - 1:
            return PlacementResult(problem.local_placement(), note="no chain placement beats the incumbent within the bounds")
        row = np.full(comp.n_nodes, src, dtype=np.int64)
        _, d, i = best
        for v, step in zip(reversed(order[1:]), reversed(back)):
            row[v] = d
            prev_index, prev_device = step[d]
            i, d = int(prev_index[i]), int(prev_device[i])
        row[first] = src
        note = f"{sum(len(s) for s in back)} states over {len(order) - 1} layers"
        if truncated:
            note += f"; a state exceeded max_labels={self.max_labels} (labels of least bottleneck kept): not proven"
        other = {m for m in problem.constraints.budgets() if m != "latency"}
        if other or any(dev.memory_bytes is not None for dev in problem.devices):
            note += "; memory and budgets other than latency are checked, not optimised (ilp optimises them)"
        # the optimum ignoring memory and the other budgets is the optimum when it keeps them (make_plan claims
        # optimality only for a feasible plan)
        return PlacementResult(decode(comp, row), optimal=not truncated, note=note)

    @staticmethod
    def _incumbent(problem: Problem, comp) -> float:
        """The least bottleneck among the cheap candidates within the latency bound (inf if none): labels above
        it cannot lead to the optimum."""
        _, X = cheap_rows(problem)
        batch = evaluate_many(comp, X, stages=True)
        budget = problem.constraints.latency_budget_s
        ok = batch.valid & (batch.latency_s <= (math.inf if budget is None else budget * (1 + 1e-9) + 1e-15))
        values = np.where(ok, batch.bottleneck_s, np.inf)
        return float(values.min(initial=math.inf))


__all__ = ["ThroughputDPPlanner", "chain_order", "pareto"]
