"""Dynamic programming over the chain of units, any number of devices.

The chain DP is the classic exact method for layer chains over several
devices (the survey's shortest-path/DP family: IONN, Jeong et al.,
SoCC'18; PerDNN, Jeong et al., 2021; the multi-device DP of JointDNN,
Eshratifar et al., TMC'19): the state is the device of the last layer, the
step adds a layer's cost and the transfer into it. Here the DAG is first cut
into a chain of units at its separators (:mod:`tiercut.plan.structure`), the
DP state is the device of each unit's exit, and each unit contributes a
table ``T[entry device, exit device]`` of its best internal placement:

- a single-node unit: exact;
- a ``parallel`` unit (residual and inception blocks, squeeze-excitation:
  plain chains between the entry and the exit): exact, by a DP along each
  chain and a DP over the set of devices the entry's tensor is sent to
  (the tensor goes once to each device that needs it, so the branches are
  coupled only through that set; O(chains * |D| * 2^|D|) per exit device);
- any other unit (nested branches, dense connections): exact by enumeration
  when it has at most ``enumeration_limit`` placements, otherwise by
  iterated conditional modes (each node in turn moved to its best device
  until nothing improves, ``local_search_rounds`` passes) -- a local optimum
  only, and the plan is then not marked optimal.

Objectives: any (their linear forms, :func:`tiercut.cost.linear_form`);
pinned nodes are respected. Memory limits and budgets are not part of the
DP: the result is checked and marked infeasible if it breaks one (use
``ilp``).

Guarantee: optimal (for the objective with pins) when every unit was solved
exactly -- always on chains and series-parallel graphs of plain branches.
Complexity: O(|V| |D|^2) on chains; O(|V| |D|^2 2^|D|) with parallel units.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from tiercut.cost import CompiledProblem, LinearForm, compile_problem, decode, linear_form
from tiercut.plan.base import PlacementResult, Planner
from tiercut.plan.structure import Unit, UnitEvaluator, units
from tiercut.problem import Problem


def _allowed(comp: CompiledProblem, v: int) -> np.ndarray:
    return np.flatnonzero(comp.allowed[v])


def _entry_devices(comp: CompiledProblem, unit: Unit) -> np.ndarray:
    return np.arange(comp.n_devices) if unit.entry is not None else np.array([comp.source])


def _boundary_row(comp: CompiledProblem, unit: Unit, entry_device: int) -> list[int]:
    return ([entry_device] if unit.entry is not None else []) + [comp.source] * len(unit.inputs)


def unit_table_enumerate(
    comp: CompiledProblem, form: LinearForm, unit: Unit, limit: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """Exact table by enumeration: (costs [E, D], placements [E, D, k]); None if over ``limit``."""
    choices = [_allowed(comp, v) for v in unit.nodes]
    count = math.prod(len(c) for c in choices)
    if count > limit:
        return None
    evaluator = UnitEvaluator(comp, form, unit)
    combos = np.array(list(itertools.product(*choices)), dtype=np.int64).reshape(count, len(unit.nodes))
    entries = _entry_devices(comp, unit)
    D = comp.n_devices
    k = len(unit.nodes)
    table = np.full((len(entries), D), np.inf)
    place = np.zeros((len(entries), D, k), dtype=np.int64)
    for i, e in enumerate(entries):
        boundary = np.tile(np.array(_boundary_row(comp, unit, int(e)), dtype=np.int64), (count, 1))
        cost = evaluator.cost(np.concatenate([boundary, combos], axis=1))
        exit_dev = combos[:, -1]
        for d in range(D):
            sel = np.flatnonzero(exit_dev == d)
            if len(sel):
                j = sel[int(np.argmin(cost[sel]))]
                table[i, d] = cost[j]
                place[i, d] = combos[j]
    return table, place


def unit_table_single(comp: CompiledProblem, form: LinearForm, unit: Unit) -> tuple[np.ndarray, np.ndarray]:
    """Exact table of a one-node unit with an entry: the node's cost plus the entry's tensor sent to it
    (and to the source if the entry is a graph output) -- each destination paid once."""
    D = comp.n_devices
    entry, v = unit.entry, unit.nodes[0]
    assert entry is not None
    node = np.where(comp.allowed[v], form.node[v], np.inf)  # [d]
    send = form.transfer[entry]  # [e, d]; 0 on the diagonal
    table = node[None, :] + send
    if comp.is_output[entry]:
        src = comp.source
        back = send[:, src][:, None]  # the entry's tensor to the source, unless v already sits there
        with np.errstate(invalid="ignore"):
            table = table + np.where(np.arange(D)[None, :] == src, 0.0, back)
    place = np.broadcast_to(np.arange(D)[None, :, None], (D, D, 1)).copy()
    return table, place


def unit_table_parallel(comp: CompiledProblem, form: LinearForm, unit: Unit) -> tuple[np.ndarray, np.ndarray]:
    """Exact table of a ``parallel`` unit: chain DPs coupled by the set of devices the entry's tensor reaches."""
    D = comp.n_devices
    entry = unit.entry
    assert entry is not None
    exit_ = unit.exit
    node = np.where(comp.allowed, form.node, np.inf)
    chain_best = []  # per chain: (g [h, d_exit], choice arrays for reconstruction)
    for chain in unit.chains:
        m = len(chain)
        # B[j][d, de]: best cost of chain[j:] with chain[j] on d, exit on de (incl. transfer tail -> de)
        tail = chain[-1]
        B = node[tail][:, None] + form.transfer[tail]  # [d, de]
        nexts: list[np.ndarray] = []
        for j in range(m - 2, -1, -1):
            v = chain[j]
            # cand[d, d2, de] = transfer[v, d, d2] + B[d2, de]
            cand = form.transfer[v][:, :, None] + B[None, :, :]
            arg = np.argmin(cand, axis=1)  # [d, de]
            B = node[v][:, None] + np.take_along_axis(cand, arg[:, None, :], axis=1)[:, 0, :]
            nexts.append(arg)
        nexts.reverse()  # nexts[j][d, de] = device of chain[j+1] when chain[j] on d
        chain_best.append((B, nexts))
    n_states = 1 << D
    bits = ((np.arange(n_states)[:, None] >> np.arange(D)[None, :]) & 1).astype(bool)  # [S, D]
    entries = np.arange(D)
    table = np.full((D, D), np.inf)
    k = len(unit.nodes)
    place = np.zeros((D, D, k), dtype=np.int64)
    col = {v: i for i, v in enumerate(unit.nodes)}
    exit_cost = node[exit_]
    for de in range(D):
        if not np.isfinite(exit_cost[de]):
            continue
        start = 0
        if unit.skip:
            start |= 1 << de
        if comp.is_output[entry]:
            start |= 1 << comp.source
        f = np.full(n_states, np.inf)
        f[start] = 0.0
        choices = []  # per chain: (prev_state [S], head [S])
        for B, _ in chain_best:
            g = B[:, de]
            new = np.full(n_states, np.inf)
            prev = np.full(n_states, -1, dtype=np.int64)
            head = np.full(n_states, -1, dtype=np.int64)
            for h in range(D):
                if not np.isfinite(g[h]):
                    continue
                cand = f + g[h]
                keep = np.flatnonzero(np.isfinite(cand))
                if not len(keep):
                    continue
                target = keep | (1 << h)
                order = np.lexsort((cand[keep], target))  # by target, then cost
                first = np.r_[True, target[order][1:] != target[order][:-1]]
                sel = order[first]  # the cheapest way to reach each target state
                tgt, cost, origin = target[sel], cand[keep][sel], keep[sel]
                upd = cost < new[tgt]
                new[tgt[upd]] = cost[upd]
                prev[tgt[upd]] = origin[upd]
                head[tgt[upd]] = h
            f = new
            choices.append((prev, head))
        for e in entries:
            tr = np.where(np.arange(D) == e, 0.0, form.transfer[entry, e])  # [D]
            with np.errstate(invalid="ignore"):
                send = np.where(bits, tr[None, :], 0.0).sum(axis=1)  # [S]
            total = f + send
            s = int(np.argmin(total))
            value = total[s] + exit_cost[de]
            if not np.isfinite(value):
                continue
            table[e, de] = value
            # reconstruct heads, then each chain's devices
            state = s
            row = place[e, de]
            row[col[exit_]] = de
            for ci in range(len(unit.chains) - 1, -1, -1):
                prev, head = choices[ci]
                h = int(head[state])
                chain = unit.chains[ci]
                _, nexts = chain_best[ci]
                d = h
                row[col[chain[0]]] = d
                for j in range(1, len(chain)):
                    d = int(nexts[j - 1][d, de])
                    row[col[chain[j]]] = d
                state = int(prev[state])
    return table, place


def unit_table_local_search(
    comp: CompiledProblem, form: LinearForm, unit: Unit, rounds: int
) -> tuple[np.ndarray, np.ndarray]:
    """Iterated conditional modes for every (entry, exit) device pair at once (a local optimum)."""
    D = comp.n_devices
    evaluator = UnitEvaluator(comp, form, unit)
    entries = _entry_devices(comp, unit)
    k = len(unit.nodes)
    pairs = [(int(e), d) for e in entries for d in range(D) if comp.allowed[unit.exit, d]]
    boundary = np.array([_boundary_row(comp, unit, e) for e, _ in pairs], dtype=np.int64).reshape(len(pairs), -1)
    # start: every inner node on the exit's device if allowed, else its first allowed device
    current = np.zeros((len(pairs), k), dtype=np.int64)
    for p, (_, d) in enumerate(pairs):
        for j, v in enumerate(unit.nodes):
            current[p, j] = d if comp.allowed[v, d] else _allowed(comp, v)[0]
    best = evaluator.cost(np.concatenate([boundary, current], axis=1))
    for _ in range(rounds):
        improved = False
        for j, v in enumerate(unit.nodes[:-1]):
            options = _allowed(comp, v)
            trial = np.repeat(current, len(options), axis=0)
            trial[:, j] = np.tile(options, len(pairs))
            cost = evaluator.cost(np.concatenate([np.repeat(boundary, len(options), axis=0), trial], axis=1))
            cost = cost.reshape(len(pairs), len(options))
            arg = np.argmin(cost, axis=1)
            new = cost[np.arange(len(pairs)), arg]
            with np.errstate(invalid="ignore"):
                threshold = np.where(np.isfinite(best), best - 1e-15 * np.maximum(1.0, np.abs(best)), np.inf)
            better = new < threshold
            if better.any():
                improved = True
                current[better, j] = options[arg[better]]
                best[better] = new[better]
        if not improved:
            break
    table = np.full((len(entries), D), np.inf)
    place = np.zeros((len(entries), D, k), dtype=np.int64)
    index = {int(e): i for i, e in enumerate(entries)}
    for p, (e, d) in enumerate(pairs):
        table[index[e], d] = best[p]
        place[index[e], d] = current[p]
    return table, place


class DynamicProgrammingPlanner(Planner):
    """Exact DP over the chain of units (exact on chains and plain-branch blocks)."""

    name = "dp"
    summary = "dynamic programming over the chain of units, any number of devices"
    reference = "chain DP of IONN (Jeong et al., SoCC'18) / JointDNN (Eshratifar et al., TMC'19), over IONN's units"
    guarantee = (
        "optimal on chains and series-parallel blocks of plain branches (any objective, pins); "
        "local optimum inside other blocks"
    )
    complexity = "O(|V| |D|^2) on chains, O(|V| |D|^2 2^|D|) with parallel blocks"

    def __init__(self, enumeration_limit: int = 50_000, local_search_rounds: int = 10) -> None:
        self.enumeration_limit = enumeration_limit
        self.local_search_rounds = local_search_rounds

    def check(self, problem: Problem) -> str | None:
        if len(problem.devices) > 16:
            return "more than 16 devices (the parallel-block DP is exponential in |D|); use ilp or a heuristic"
        return None

    def _solve(self, problem: Problem) -> PlacementResult:
        comp = compile_problem(problem)
        form = linear_form(comp, problem.objective)
        D = comp.n_devices
        chain = units(comp)
        value = np.zeros(1)
        back: list[tuple[Unit, np.ndarray, np.ndarray, np.ndarray]] = []
        inexact: list[str] = []
        for unit in chain:
            solved = None
            if unit.shape == "parallel":
                solved = unit_table_parallel(comp, form, unit)
            elif unit.shape == "single" and unit.entry is not None and not unit.inputs:
                solved = unit_table_single(comp, form, unit)
            else:
                solved = unit_table_enumerate(comp, form, unit, self.enumeration_limit)
                if solved is None:
                    solved = unit_table_local_search(comp, form, unit, self.local_search_rounds)
                    inexact.append(comp.problem.graph.nodes[unit.exit].name)
            table, place = solved
            if unit.entry is None:
                total = value[0] + table[0]  # [D]
                arg = np.zeros(D, dtype=np.int64)
            else:
                cand = value[:, None] + table  # [D prev, D]
                arg = np.argmin(cand, axis=0)
                total = cand[arg, np.arange(D)]
            back.append((unit, arg, place, total))
            value = total
        last = chain[-1].exit
        final = value.copy()
        if comp.is_output[last]:
            final = final + form.transfer[last, :, comp.source]
        row = np.full(comp.n_nodes, comp.source, dtype=np.int64)
        if not np.isfinite(final).any():
            return PlacementResult(problem.local_placement(), note="no placement satisfies the devices' abilities and pins")
        d = int(np.argmin(final))
        for unit, arg, place, _ in reversed(back):
            e = int(arg[d])
            entry_row = e if unit.entry is not None else 0
            row[list(unit.nodes)] = place[entry_row, d]
            d = e
        note = f"{len(chain)} units"
        if inexact:
            note += f"; {len(inexact)} irregular block(s) by local search (ending at {', '.join(inexact[:3])})"
        return PlacementResult(decode(comp, row), optimal=not inexact, note=note)
