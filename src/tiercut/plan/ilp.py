"""Exact multi-device DAG placement as a mixed-integer linear program.

The integer-programming formulation of DNN partition is the survey's
general model (its Eq. 3-5: minimise one objective with the others as
constraints); JointDNN (Eshratifar et al., IEEE TMC 2019) and the
multi-device placements the survey lists formulate it as an ILP. Here it is
docs/cost-model.md exactly (routed and directional transfers included:
the coefficients are the cost model's linear forms,
:func:`tiercut.cost.linear_form`), solved by HiGHS:

- ``x[v, d]`` binary: node ``v`` runs on device ``d`` (only allowed devices:
  where it can run, its pinned device; graph inputs fixed on the source);
  ``sum_d x[v, d] = 1``;
- ``z[u, a, d]`` (continuous in [0, 1], integral at any vertex with binary
  ``x``): ``u``'s tensor goes from ``a`` to ``d``, created only where it can
  matter: ``a`` allowed for ``u``, ``d`` allowed for one of its consumers
  (or the source, for a graph output), ``d`` reachable from ``a`` and the
  transfer charged by the objective or a budget;
- *arrival* rows, one per consumer ``w`` and device ``d``: a tensor needed on
  ``d`` is there or arrives from some device,
  ``x[u, d] + sum_a z[u, a, d] + sum_{a: free} x[u, a] >= x[w, d]`` (``>= 1``
  on the source for a graph output), where a *free* transfer (charged by no
  metric) stands in with its upper bound ``x[u, a]``, and an unreachable
  ``a`` contributes nothing; and ``z[u, a, d] <= x[u, a]``. A tensor is sent
  once to each device that needs it, however many consumers it has there.
  These rows make the LP relaxation tight where the textbook
  ``z >= x[u, a] + y[u, d] - 1`` makes transfers almost free;
- objective and budgets: the linear forms over ``x`` and ``z``; the
  ``throughput`` objective (the bottleneck stage, docs/cost-model.md
  "Throughput") is ``min B`` with one row ``stage_s <= B`` per pipeline stage
  (:mod:`tiercut.plan.throughput_ilp`), without the device presolve, its
  optimum verified by a feasibility program (HiGHS has cut off its optimum);
- memory: ``sum_p bytes(p) m[p, d] <= memory(d)`` with ``m[p, d] >= x[v, d]``
  for each node ``v`` using parameter ``p`` (a shared parameter counted once
  per device; a parameter of one node is its ``x``);
- cut compression (JALAD, Li et al., ICPADS 2018, which chooses the cut and
  the quantization bits together by an integer program under an accuracy
  budget), when the problem offers it: ``y[u, k]`` binary, tensor ``u`` is
  sent with codec ``k`` (``sum_k y[u, k] <= 1``); ``w[u, a, d, k]`` binary, the
  compressed transfer, with ``w <= x[u, a]`` and ``w <= y[u, k]``, joining the
  arrival rows next to ``z``, its coefficients the compressed transfer's
  figures (:func:`tiercut.cost.cut_compression.transfer_figures`);
  ``z[u, a, d] + sum_k y[u, k] <= 1`` (a compressed tensor is compressed on
  every transfer, as the cost model charges it); and the accuracy row
  ``sum accuracy_loss(u, k) y[u, k] <= accuracy_loss_max``. The
  dominated-device presolve is off then.

Presolve (``reduce_devices``): a device ``d2`` is dropped when another
device ``d1`` *dominates* it: every node that can run on ``d2`` can run on
``d1`` at no higher cost in the objective and every budget, every transfer
to or from ``d1`` costs no more than the same transfer to or from ``d2``,
no node is pinned to ``d2``, and ``d1`` has no memory limit (or memory is
not enforced). Moving every node from ``d2`` to ``d1`` then never raises a
metric (transfers between them vanish, all coefficients being >= 0), so an
optimum over the remaining devices is an optimum over all. On
``migration-12`` this leaves the source, the other client, the fastest edge
server and the fastest cloud server. Relays are unaffected: routing still
uses every device.

Warm start (``warm_start``): the best by Deb's rule of the cheap
candidates -- all-local, every all-on-one-device placement, the best
single split per server (Neurosurgeon), the minimum cut per server
(DADS), and the chain DP (:mod:`tiercut.plan.dp`) -- is handed to HiGHS as
its first incumbent (``setSolution``) and as an objective cutoff. The
objective is scaled so that this incumbent's value is 1, so HiGHS's
absolute tolerances (``mip_abs_gap``, ``mip_feasibility_tolerance``) are
relative ones; budget and memory rows are normalised by their bounds.

Guarantee: optimal for every objective and every constraint when HiGHS
proves it (relative gap ``mip_rel_gap``; the answer's cost-model objective
is then checked to lie within :data:`PROOF_RTOL` of HiGHS's bound, else the
proof is not claimed; for ``throughput`` the proof is a feasibility program's,
:func:`tiercut.plan.throughput_ilp.verified_bottleneck`); on a time-out the result is the
better of HiGHS's incumbent and the warm start, never worse than any cheap
candidate, with HiGHS's proven lower bound and the gap (``bound``, ``gap``);
a problem HiGHS proves infeasible returns the least-violating candidate,
marked infeasible.
Complexity: NP-hard in general; O(|V| |D|^2) variables and rows before the
presolve; the zoo models on migration-12 (12 devices) are proven optimal in
seconds (``benchmarks/planners.py``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
from scipy.sparse import csr_matrix

from tiercut.cost import CompiledProblem, LinearForm, compile_problem, decode, encode, evaluate_many, linear_form
from tiercut.plan.base import PlacementResult, Planner
from tiercut.problem import Objective, Problem

#: solvers: HiGHS through the API scipy bundles (MIP start, cutoff, tolerances), or scipy.optimize.milp (neither)
SOLVERS = ("auto", "highs", "scipy")
#: an answer HiGHS calls optimal counts as proven when its cost-model objective is within this relative
#: distance of HiGHS's bound: HiGHS's LP tolerances loosen its bound on objectives with coefficients many
#: orders of magnitude apart (1.5e-5 seen); a larger distance means HiGHS's answer is not trusted (a HiGHS
#: release has been seen to return its MIP start, 3.45% above the optimum, as "optimal")
PROOF_RTOL = 1e-4


# ---------------------------------------------------------------- the model
@dataclass
class MILP:
    """A mixed-integer program ``min c x`` s.t. ``row_lo <= A x <= row_hi``, ``lb <= x <= ub``, some x integer.

    Columns are named by :attr:`x` ((node, device) -> column), :attr:`z`
    ((node, from, to) -> column) and :attr:`m` ((parameter, device) -> column).
    """

    c: list[float] = field(default_factory=list)
    lb: list[float] = field(default_factory=list)
    ub: list[float] = field(default_factory=list)
    integer: list[bool] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    cols: list[int] = field(default_factory=list)
    vals: list[float] = field(default_factory=list)
    row_lo: list[float] = field(default_factory=list)
    row_hi: list[float] = field(default_factory=list)
    offset: float = 0.0
    x: dict[tuple[int, int], int] = field(default_factory=dict)
    z: dict[tuple[int, int, int], int] = field(default_factory=dict)
    m: dict[tuple[int, int], int] = field(default_factory=dict)
    #: cut compression: (node, codec) -> column of y; (node, from, to, codec) -> column of w and its metric terms
    y: dict[tuple[int, str], int] = field(default_factory=dict)
    w: dict[tuple[int, int, int, str], int] = field(default_factory=dict)
    w_metrics: dict[tuple[int, int, int, str], dict[str, float]] = field(default_factory=dict)
    #: the throughput objective's bottleneck variable B (:mod:`tiercut.plan.throughput_ilp`), if any
    bottleneck: int | None = None

    @property
    def n_vars(self) -> int:
        return len(self.c)

    @property
    def n_rows(self) -> int:
        return len(self.row_lo)

    def var(self, cost: float, integer: bool, lo: float = 0.0, hi: float = 1.0) -> int:
        self.c.append(float(cost))
        self.lb.append(lo)
        self.ub.append(hi)
        self.integer.append(integer)
        return len(self.c) - 1

    def row(self, terms: dict[int, float], lo: float, hi: float) -> None:
        r = len(self.row_lo)
        for col, val in terms.items():
            if val:
                self.rows.append(r)
                self.cols.append(col)
                self.vals.append(float(val))
        self.row_lo.append(lo)
        self.row_hi.append(hi)

    def matrix(self) -> csr_matrix:
        return csr_matrix((self.vals, (self.rows, self.cols)), shape=(self.n_rows, self.n_vars))

    def column_values(self, comp: CompiledProblem, row: np.ndarray) -> np.ndarray:
        """The model's variables for a placement row (for a MIP start): x, then z and m at their least values."""
        values = np.zeros(self.n_vars)
        for (v, d), col in self.x.items():
            values[col] = 1.0 if row[v] == d else 0.0
        needed = _needed(comp, row)
        for (u, a, d), col in self.z.items():
            values[col] = 1.0 if (row[u] == a and (u, d) in needed) else 0.0
        for (p, d), col in self.m.items():
            values[col] = 1.0 if any(row[v] == d for v in comp.shared_params[p][1]) else 0.0
        if self.bottleneck is not None:  # B at the least value its rows (stage <= B) allow
            A = self.matrix().tocsc()
            coef = A[:, self.bottleneck].toarray().ravel()
            lhs = A @ values
            rows = coef < 0
            values[self.bottleneck] = max(0.0, float((lhs[rows] / -coef[rows]).max(initial=0.0)))
        return values


def _needed(comp: CompiledProblem, row: np.ndarray) -> set[tuple[int, int]]:
    """(node, device) pairs where the node's tensor is needed on another device than its own."""
    out = set()
    for u, w in zip(comp.edge_src.tolist(), comp.edge_dst.tolist(), strict=True):
        if row[w] != row[u]:
            out.add((u, int(row[w])))
    for u in np.flatnonzero(comp.is_output):
        if row[u] != comp.source:
            out.add((int(u), comp.source))
    return out


# ---------------------------------------------------------------- presolve
def dominated_devices(comp: CompiledProblem, forms: list[LinearForm]) -> dict[int, int]:
    """device -> the device it merges into (see the module docstring), following chains to a kept device."""
    problem = comp.problem
    D = comp.n_devices
    pinned = set(problem.constraints.pinned.values())
    memory_on = problem.constraints.memory
    allowed = comp.allowed

    def dominates(d1: int, d2: int) -> bool:
        if memory_on and problem.devices[d1].memory_bytes is not None:
            return False
        if not np.all(allowed[:, d1] | ~allowed[:, d2]):
            return False
        others = np.array([x for x in range(D) if x not in (d1, d2)], dtype=np.int64)
        runs = allowed[:, d2]
        for form in forms:
            if not np.all(form.node[runs, d1] <= form.node[runs, d2]):
                return False
            if len(others):
                out1, out2 = form.transfer[:, d1, others], form.transfer[:, d2, others]
                in1, in2 = form.transfer[:, others, d1], form.transfer[:, others, d2]
                if not (np.all(out1 <= out2) and np.all(in1 <= in2)):
                    return False
        return True

    removed: dict[int, int] = {}
    names = problem.device_names
    for d2 in range(D):
        if d2 == comp.source or names[d2] in pinned:
            continue
        for d1 in range(D):
            if d1 == d2 or d1 in removed:
                continue
            if dominates(d1, d2) and (d1 < d2 or not dominates(d2, d1)):
                removed[d2] = d1
                break

    def final(d: int) -> int:
        seen = set()
        while d in removed and d not in seen:
            seen.add(d)
            d = removed[d]
        return d

    return {d: final(d) for d in removed}


# ---------------------------------------------------------------- warm start
@dataclass(frozen=True)
class Candidate:
    """A cheap placement the ILP starts from, and what it is."""

    row: np.ndarray
    name: str
    objective: float
    feasible: bool
    penalty: float
    compression: dict[str, str] = field(default_factory=dict)


def reduced_problem(problem: Problem, merge: dict[int, int]) -> Problem:
    """``problem`` where the dominated devices run nothing (they still relay: the links are unchanged)."""
    if not merge:
        return problem
    names = problem.device_names
    gone = {names[d] for d in merge}
    compute = {n: {d: s for d, s in row.items() if d not in gone} for n, row in problem.compute_s.items()}
    return replace(problem, compute_s=compute)


def cheap_candidates(problem: Problem, comp: CompiledProblem, *, with_dp: bool = True) -> list[Candidate]:
    """The warm-start placements, best first by Deb's rule: all-local, all-on, best split and min cut per server,
    and the chain DP, each computed on ``problem`` (possibly a :func:`reduced_problem`) and scored with ``comp``
    (the full problem's arrays; the placements are valid there)."""
    from tiercut.plan._population import single_user_seeds

    seeds = single_user_seeds(problem, compile_problem(problem))
    rows, names = list(seeds.rows), list(seeds.names)
    if with_dp and len(problem.devices) <= 16:
        from tiercut.plan.dp import DynamicProgrammingPlanner

        dp = DynamicProgrammingPlanner(enumeration_limit=2_000, local_search_rounds=3)
        rows.append(encode(comp, dp._solve(problem).placement))
        names.append("dp")
    X = np.stack(rows).astype(np.int64)
    batch = evaluate_many(comp, X)
    out = [
        Candidate(X[i], names[i], float(batch.objective[i]), bool(batch.feasible[i]), float(batch.penalty[i]))
        for i in range(len(X))
    ]
    return sorted(out, key=lambda c: (0 if c.feasible else 1, c.objective if c.feasible else c.penalty))


def _better(a: Candidate, b: Candidate) -> bool:
    """``a`` strictly better than ``b`` by Deb's rule."""
    ka = (0 if a.feasible else 1, a.objective if a.feasible else a.penalty)
    kb = (0 if b.feasible else 1, b.objective if b.feasible else b.penalty)
    return ka < kb


# ---------------------------------------------------------------- building the program
def build_milp(
    comp: CompiledProblem, objective: LinearForm, budgets: dict[str, tuple[LinearForm, float]], kept: list[int]
) -> MILP:
    """The tight MILP over the devices ``kept`` (module docstring): assignment, arrival, budget and memory rows."""
    kept_set = set(kept)
    layout = _Layout(
        comp=comp,
        is_input=np.array([node.is_input for node in comp.problem.graph]),
        allowed=[[d for d in np.flatnonzero(comp.allowed[v]).tolist() if d in kept_set] for v in range(comp.n_nodes)],
    )
    model = MILP()
    _add_assignments(model, layout, objective)
    _add_transfers(model, layout, objective, [objective, *(f for f, _ in budgets.values())])
    for metric, (form, budget) in budgets.items():
        _add_budget(model, layout, form, budget, metric)
    _add_accuracy_budget(model, layout)
    if comp.problem.constraints.memory:
        for d in kept:
            _add_memory_limit(model, layout, d)
    return model


@dataclass(frozen=True)
class _Layout:
    """What the row builders share: the compiled problem, which nodes are graph inputs, each node's kept devices."""

    comp: CompiledProblem
    is_input: np.ndarray
    allowed: list[list[int]]

    @property
    def problem(self) -> Problem:
        return self.comp.problem

    def codecs(self, u: int) -> list[str]:
        """The cut codecs node ``u``'s tensor may be compressed with (none without cut compression)."""
        cc = self.problem.cut_compression
        if not self.problem.compresses_cuts or cc is None:
            return []
        row = cc.tensors.get(self.problem.graph.nodes[u].name, {})
        return [c.name for c in cc.codecs if c.name in row]


def _add_assignments(model: MILP, layout: _Layout, objective: LinearForm) -> None:
    """``x[v, d]`` for every non-input node and kept allowed device, ``sum_d x[v, d] = 1``; inputs are constants."""
    src = layout.comp.source
    for v in range(layout.comp.n_nodes):
        if layout.is_input[v]:
            model.offset += float(objective.node[v, src])
            continue
        cols = [model.var(float(objective.node[v, d]), True) for d in layout.allowed[v]]
        for d, col in zip(layout.allowed[v], cols, strict=True):
            model.x[(v, d)] = col
        model.row(dict.fromkeys(cols, 1.0), 1.0, 1.0)


def _add_transfers(model: MILP, layout: _Layout, objective: LinearForm, forms: list[LinearForm]) -> None:
    """The ``z`` variables and arrival rows: a tensor needed on a device is there or arrives from some device."""
    comp = layout.comp
    consumers: list[list[int]] = [[] for _ in range(comp.n_nodes)]
    for u, w in zip(comp.edge_src.tolist(), comp.edge_dst.tolist(), strict=True):
        consumers[u].append(w)
    for u in range(comp.n_nodes):
        targets: dict[int, list[int]] = {}
        for w in consumers[u]:
            for d in layout.allowed[w]:
                targets.setdefault(d, []).append(w)
        if comp.is_output[u]:
            targets.setdefault(comp.source, [])
        codecs = layout.codecs(u)
        if codecs:
            for k in codecs:
                model.y[(u, k)] = model.var(0.0, True)
            model.row({model.y[(u, k)]: 1.0 for k in codecs}, -math.inf, 1.0)
        for d in sorted(targets):
            arrival = _arrival_terms(model, layout, objective, forms, u, d)
            if arrival is None:
                continue  # always there
            if comp.is_output[u] and d == comp.source:
                model.row(arrival, 1.0, math.inf)
            for w in targets[d]:
                terms = dict(arrival)
                col = model.x[(w, d)]
                terms[col] = terms.get(col, 0.0) - 1.0
                model.row(terms, 0.0, math.inf)


def _arrival_terms(
    model: MILP, layout: _Layout, objective: LinearForm, forms: list[LinearForm], u: int, d: int
) -> dict[int, float] | None:
    """The columns whose sum says ``u``'s tensor is on ``d`` (creating the charged transfers' ``z``), or None
    when it always is (a graph input on the source, or sent there for free)."""
    comp = layout.comp
    is_input = bool(layout.is_input[u])
    sources = [comp.source] if is_input else layout.allowed[u]
    arrival: dict[int, float] = {}
    constant = 0.0
    if is_input:
        constant = 1.0 if d == comp.source else 0.0
    elif (u, d) in model.x:
        arrival[model.x[(u, d)]] = 1.0
    codecs = layout.codecs(u)
    for a in sources:
        if a == d or not comp.reachable[a, d]:
            continue
        x_col = None if is_input else model.x[(u, a)]
        if not codecs and not any(float(f.transfer[u, a, d]) > 0.0 for f in forms):  # charged by no metric: free
            if x_col is None:
                constant = 1.0  # a free transfer of a graph input
            else:
                arrival[x_col] = arrival.get(x_col, 0.0) + 1.0
            continue
        z_col = model.var(float(objective.transfer[u, a, d]), False)
        model.z[(u, a, d)] = z_col
        arrival[z_col] = 1.0
        if x_col is not None:
            model.row({z_col: 1.0, x_col: -1.0}, -math.inf, 0.0)  # z <= x[u, a]
        if codecs:
            _add_compressed(model, layout, objective, arrival, u, a, d, x_col)
            model.row({z_col: 1.0, **{model.y[(u, k)]: 1.0 for k in codecs}}, -math.inf, 1.0)  # raw only if not compressed
    return None if constant >= 1.0 else arrival


def _add_compressed(
    model: MILP, layout: _Layout, objective: LinearForm, arrival: dict[int, float], u: int, a: int, d: int,
    x_col: int | None,
) -> None:
    """The compressed transfers ``w[u, a, d, k]`` of ``u``'s tensor from ``a`` to ``d``, one per codec offered there."""
    from tiercut.cost.cut_compression import transfer_figures

    problem = layout.problem
    cc = problem.cut_compression
    assert cc is not None
    names = problem.device_names
    node = problem.graph.nodes[u].name
    weights = problem.objective.metric_weights()
    for k in cc.options(node, names[a], names[d]):
        fig = transfer_figures(problem, node, names[a], names[d], k)
        if fig is None:
            continue
        metrics = fig.metrics(problem)
        col = model.var(sum(w * metrics[m] for m, w in weights.items()), True)
        model.w[(u, a, d, k)] = col
        model.w_metrics[(u, a, d, k)] = metrics
        arrival[col] = 1.0
        if x_col is not None:
            model.row({col: 1.0, x_col: -1.0}, -math.inf, 0.0)  # w <= x[u, a]
        model.row({col: 1.0, model.y[(u, k)]: -1.0}, -math.inf, 0.0)  # w <= y[u, k]


def _add_accuracy_budget(model: MILP, layout: _Layout) -> None:
    """``sum accuracy_loss(u, k) y[u, k] <= accuracy_loss_max`` (JALAD's accuracy constraint)."""
    cc = layout.problem.cut_compression
    if not model.y or cc is None or cc.accuracy_loss_max is None:
        return
    nodes = layout.problem.graph.nodes
    terms = {col: cc.tensors[nodes[u].name][k].accuracy_loss for (u, k), col in model.y.items()}
    model.row(terms, -math.inf, float(cc.accuracy_loss_max) + 1e-12)


def _add_budget(model: MILP, layout: _Layout, form: LinearForm, budget: float, metric: str) -> None:
    """One metric's budget row over ``x`` and ``z``, normalised by the budget."""
    src = layout.comp.source
    norm = max(abs(budget), 1e-300)
    terms: dict[int, float] = {}
    fixed = sum(float(form.node[v, src]) for v in range(layout.comp.n_nodes) if layout.is_input[v])
    for (v, d), col in model.x.items():
        terms[col] = terms.get(col, 0.0) + float(form.node[v, d]) / norm
    for (u, a, d), col in model.z.items():
        terms[col] = terms.get(col, 0.0) + float(form.transfer[u, a, d]) / norm
    for key, col in model.w.items():
        terms[col] = terms.get(col, 0.0) + model.w_metrics[key][metric] / norm
    model.row(terms, -math.inf, (budget - fixed) / norm)


def _add_memory_limit(model: MILP, layout: _Layout, d: int) -> None:
    """Device ``d``'s memory row: private parameters by ``x``, a shared parameter once by its ``m[p, d]``."""
    comp = layout.comp
    src = comp.source
    is_input = layout.is_input
    limit = comp.problem.devices[d].memory_bytes
    if limit is None:
        return
    norm = max(float(limit), 1.0)
    terms: dict[int, float] = {}
    fixed = 0.0
    for v in range(comp.n_nodes):
        private = float(comp.private_param_bytes[v])
        if is_input[v]:
            fixed += private if d == src else 0.0
        elif private > 0 and (v, d) in model.x:
            terms[model.x[(v, d)]] = private / norm
    for p, (nbytes, nodes) in enumerate(comp.shared_params):
        users = [int(v) for v in nodes if (int(v), d) in model.x or (is_input[v] and d == src)]
        if not users or nbytes <= 0:
            continue
        if any(is_input[v] for v in users):
            fixed += nbytes
            continue
        m_col = model.var(0.0, False)
        model.m[(p, d)] = m_col
        terms[m_col] = nbytes / norm
        for v in users:
            model.row({m_col: 1.0, model.x[(v, d)]: -1.0}, 0.0, math.inf)  # m >= x[v, d]
    model.row(terms, -math.inf, (float(limit) - fixed) / norm)


def objective_scale(model: MILP, reference: float) -> float:
    """The factor that brings the objective near 1: 1 / the warm start's value, else 1 / (the median positive
    coefficient x their count); 1 when neither is a finite positive number, and never so large that a
    coefficient overflows."""
    coefficients = np.abs(np.asarray(model.c, dtype=float))
    scale = 1.0 / reference if math.isfinite(reference) and reference > 0 else math.nan
    if not (math.isfinite(scale) and scale > 0):
        positive = coefficients[np.isfinite(coefficients) & (coefficients > 0)]
        scale = 1.0 / (float(np.median(positive)) * len(positive)) if len(positive) else 1.0
    if not (math.isfinite(scale) and scale > 0):
        return 1.0
    largest = float(coefficients.max(initial=0.0))
    if largest > 0 and largest * scale > 1e200:
        scale = 1e200 / largest
    return scale


# ---------------------------------------------------------------- solving
@dataclass(frozen=True)
class Solution:
    """What a solver run gives back (in the model's scaled objective units)."""

    values: np.ndarray | None
    status: str  # optimal | time_limit | infeasible | other
    bound: float | None
    gap: float | None
    message: str


def _highs_class():
    """HiGHS's model class as scipy bundles it (scipy >= 1.15 ships the ``highspy`` bindings it runs ``milp`` with);
    (None, None) when this scipy lacks it."""
    try:
        from scipy.optimize._highspy import _core as core  # type: ignore[import-not-found]
    except ImportError:
        return None, None
    cls = getattr(core, "_Highs", None)
    if cls is None or not all(hasattr(cls, m) for m in ("setSolution", "passModel", "setOptionValue")):
        return None, None
    return cls, core


def solve_highs(
    model: MILP, scale: float, start: np.ndarray | None, cutoff: float | None, time_limit_s: float, mip_rel_gap: float
) -> Solution:
    """Solve with the HiGHS API: MIP start (``setSolution``), objective cutoff (``objective_bound``), and
    absolute tolerances of 1e-9 (objective units: the warm start is 1)."""
    cls, core = _highs_class()
    assert cls is not None and core is not None
    h = cls()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", float(time_limit_s))
    h.setOptionValue("mip_rel_gap", float(mip_rel_gap))
    h.setOptionValue("mip_abs_gap", 1e-12)
    h.setOptionValue("mip_feasibility_tolerance", 1e-9)
    h.setOptionValue("primal_feasibility_tolerance", 1e-9)
    h.setOptionValue("threads", 1)
    if cutoff is not None and math.isfinite(cutoff):
        h.setOptionValue("objective_bound", float(cutoff) * scale * (1 + 1e-9) + 1e-12)
    A = model.matrix().tocsc()
    inf = core.kHighsInf
    lp = core.HighsLp()
    lp.num_col_ = model.n_vars
    lp.num_row_ = model.n_rows
    lp.col_cost_ = np.asarray(model.c) * scale
    lp.offset_ = model.offset * scale
    lp.col_lower_ = np.asarray(model.lb, dtype=float)
    lp.col_upper_ = np.asarray(model.ub, dtype=float)
    lp.row_lower_ = np.where(np.isinf(model.row_lo), -inf, model.row_lo)
    lp.row_upper_ = np.where(np.isinf(model.row_hi), inf, model.row_hi)
    lp.a_matrix_.format_ = core.MatrixFormat.kColwise
    lp.a_matrix_.start_ = A.indptr
    lp.a_matrix_.index_ = A.indices
    lp.a_matrix_.value_ = A.data
    lp.integrality_ = [core.HighsVarType.kInteger if i else core.HighsVarType.kContinuous for i in model.integer]
    h.passModel(lp)
    if start is not None:
        sol = core.HighsSolution()
        sol.col_value = list(map(float, start))
        sol.value_valid = True
        h.setSolution(sol)
    h.run()
    status = h.getModelStatus()
    info = h.getInfo()
    text = h.modelStatusToString(status)
    solution = h.getSolution()
    values = np.asarray(solution.col_value) if solution.value_valid else None
    bound = float(info.mip_dual_bound) / scale if math.isfinite(info.mip_dual_bound) else None
    gap = float(info.mip_gap) if math.isfinite(info.mip_gap) else None
    kinds = {
        core.HighsModelStatus.kOptimal: "optimal",
        core.HighsModelStatus.kTimeLimit: "time_limit",
        core.HighsModelStatus.kInfeasible: "infeasible",
    }
    kind = kinds.get(status, "other")
    if kind == "infeasible" and cutoff is not None:
        kind = "cut_off"  # nothing better than the cutoff (the warm start): it is optimal
    if status == getattr(core.HighsModelStatus, "kObjectiveBound", None):
        kind = "cut_off"
    return Solution(values, kind, bound, gap, text)


def solve_scipy(
    model: MILP, scale: float, cutoff: float | None, time_limit_s: float, mip_rel_gap: float, cutoff_row: bool = False
) -> Solution:
    """Solve with ``scipy.optimize.milp``: no MIP start, HiGHS's default tolerances (1e-6); with ``cutoff_row`` the
    warm start's value bounds the objective by an extra row."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    constraints = []
    if model.n_rows:
        constraints.append(LinearConstraint(model.matrix(), np.array(model.row_lo), np.array(model.row_hi)))
    if cutoff_row and cutoff is not None:
        c = np.asarray(model.c) * scale
        constraints.append(LinearConstraint(c[None, :], -np.inf, (cutoff - model.offset) * scale * (1 + 1e-9) + 1e-12))
    result = milp(
        np.asarray(model.c) * scale,
        integrality=np.array(model.integer, dtype=int),
        bounds=Bounds(np.array(model.lb), np.array(model.ub)),
        constraints=constraints,
        options={"disp": False, "time_limit": float(time_limit_s), "mip_rel_gap": float(mip_rel_gap)},
    )
    kind = {0: "optimal", 1: "time_limit", 2: "infeasible"}.get(result.status, "other")
    bound = getattr(result, "mip_dual_bound", None)
    gap = getattr(result, "mip_gap", None)
    return Solution(
        result.x,
        kind,
        None if bound is None or not math.isfinite(bound) else float(bound) / scale,
        None if gap is None or not math.isfinite(gap) else float(gap),
        str(result.message),
    )


def estimate_size(comp: CompiledProblem) -> int:
    """An upper bound of the variables of the model before the presolve (x and z)."""
    counts = comp.allowed.sum(axis=1)
    dest = np.zeros(comp.n_nodes)
    for u, w in zip(comp.edge_src.tolist(), comp.edge_dst.tolist(), strict=True):
        dest[u] += counts[w]
    dest += comp.is_output
    return int(counts.sum() + (counts * np.minimum(dest, comp.n_devices)).sum())


class ILPPlanner(Planner):
    """Exact placement over any number of devices with every constraint (HiGHS MILP, tight formulation)."""

    name = "ilp"
    summary = "exact multi-device DAG placement with every constraint (HiGHS MILP, warm-started)"
    reference = (
        "survey Eq. 3-5; JointDNN (Eshratifar et al., TMC'19) ILP formulation; JALAD (Li et al., ICPADS'18) "
        "cut compression; docs/cost-model.md"
    )
    decides_compression = True
    plans_throughput = True
    guarantee = (
        "optimal for every objective and constraint when HiGHS proves it; on a time-out never worse than the "
        "warm start, with the proven bound and gap"
    )
    complexity = "NP-hard; O(|V| |D|^2) variables before the dominated-device presolve"

    def __init__(
        self,
        time_limit_s: float = 60.0,
        mip_rel_gap: float = 1e-9,
        warm_start: bool = True,
        reduce_devices: bool = True,
        solver: str = "auto",
        max_variables: int = 2_000_000,
    ) -> None:
        self.time_limit_s = time_limit_s
        self.mip_rel_gap = mip_rel_gap
        self.warm_start = warm_start
        self.reduce_devices = reduce_devices
        self.solver = solver
        self.max_variables = max_variables

    def check(self, problem: Problem) -> str | None:
        if self.solver not in SOLVERS:
            return f"setting solver={self.solver!r} is not one of {', '.join(SOLVERS)}"
        if self.solver == "highs" and _highs_class()[0] is None:
            return "solver='highs' needs the HiGHS bindings scipy >= 1.15 bundles; use solver='scipy'"
        if not (isinstance(self.time_limit_s, (int, float)) and self.time_limit_s > 0):
            return f"setting time_limit_s={self.time_limit_s!r} must be a number of seconds > 0"
        if not (isinstance(self.mip_rel_gap, (int, float)) and 0 <= self.mip_rel_gap < 1):
            return f"setting mip_rel_gap={self.mip_rel_gap!r} must be in [0, 1)"
        size = estimate_size(compile_problem(problem))
        if size > self.max_variables:
            return (
                f"the program would have up to {size:,} variables, over max_variables={self.max_variables:,}; "
                "use dp, mincut or a heuristic, or raise max_variables"
            )
        return None

    def backend(self) -> str:
        if self.solver == "auto":
            return "highs" if _highs_class()[0] is not None else "scipy"
        return self.solver

    def _solve(self, problem: Problem) -> PlacementResult:
        """Steps: linear forms, device presolve, warm start, MILP, solve (again without the MIP start if the
        answer fails the cost model's check), then the better of the answer and the warm start."""
        start_time = time.perf_counter()
        comp = compile_problem(problem)
        throughput = problem.objective.is_throughput
        budgets = {m: (linear_form(comp, m), b) for m, b in problem.constraints.budgets().items()}
        if throughput:  # min max of the stages (tiercut.plan.throughput_ilp); no device presolve
            merge: dict[int, int] = {}
        else:
            objective = linear_form(comp, problem.objective)
            presolve = self.reduce_devices and not problem.compresses_cuts
            merge = dominated_devices(comp, [objective, *(f for f, _ in budgets.values())]) if presolve else {}
        kept = [d for d in range(comp.n_devices) if d not in merge]
        best = self._warm_start(problem, comp, merge)
        if best.feasible and best.objective <= 0.0:
            # every coefficient is >= 0: a feasible placement of objective 0 is optimal
            note = f"warm start {best.name} is feasible with objective 0, the least possible"
            return PlacementResult(decode(comp, best.row), optimal=True, gap=0.0, bound=0.0, note=note)
        if throughput:
            from tiercut.plan.throughput_ilp import build_bottleneck_milp

            model = build_bottleneck_milp(comp, budgets, kept, best.objective if best.feasible else math.nan)
        else:
            model = build_milp(comp, objective, budgets, kept)
        solution, found = self._run(model, comp, best, merge, start_time)

        note = (
            f"{self.backend()}: {model.n_vars:,} variables, {model.n_rows:,} rows over {len(kept)} of {comp.n_devices} "
            "devices" + (f" ({len(merge)} dominated)" if merge else "")
        )
        if self.warm_start:
            note += f"; warm start {best.name} ({best.objective:.6g})" if best.feasible else f"; warm start {best.name}"
        bound = solution.bound
        if solution.status == "cut_off":
            proven = True
            bound = best.objective
            note += "; HiGHS proved nothing beats the warm start"
        else:
            proven = solution.status == "optimal" and _consistent(solution, found, self._tolerance())
        chosen = found if found is not None and not _better(best, found) else best
        explained = False  # why no optimum is claimed, when the note already says it
        gap = solution.gap
        if throughput and chosen.feasible and math.isfinite(chosen.objective) and chosen.objective > 0:
            answer = chosen
            chosen, verified, checked = self._verified(comp, budgets, chosen, start_time)
            note += checked
            if verified:
                proven, bound = True, chosen.objective
            elif proven or chosen is not answer:  # HiGHS's proof is not trusted unchecked, its bound not after a miss
                proven, explained = False, True
                if chosen is not answer:
                    bound = gap = None
            chosen, tied = self._least_latency(comp, budgets, chosen, start_time)
            note += tied
        if not proven and not explained:
            note += self._unproven_note(solution, time.perf_counter() - start_time)
            if chosen is best:
                note += f"; returning the best cheap candidate ({best.name})"
        if bound is not None and chosen.feasible and math.isfinite(chosen.objective):
            gap = max(0.0, (chosen.objective - bound) / max(abs(chosen.objective), 1e-300))
            note += f"; bound {bound:.6g}, gap {100 * gap:.3g}%"
        optimal = proven and chosen.feasible
        return PlacementResult(
            decode(comp, chosen.row), optimal=optimal, gap=gap, bound=bound, note=note, compression=chosen.compression
        )

    def _verified(
        self, comp: CompiledProblem, budgets: dict, chosen: Candidate, start_time: float
    ) -> tuple[Candidate, bool, str]:
        """The throughput objective's proof: HiGHS's own (with an objective, which HiGHS 1.12 has been seen to get
        wrong on this program) is checked by feasibility programs
        (:func:`tiercut.plan.throughput_ilp.verified_bottleneck`), which also find the better placement when there
        is one. Returns the answer, whether it is verified, and a note."""
        from tiercut.plan.throughput_ilp import VERIFY_RTOL, verified_bottleneck

        remaining = max(1e-3, float(self.time_limit_s) - (time.perf_counter() - start_time))
        checked, verified = verified_bottleneck(comp, budgets, chosen, remaining)
        note = ""
        if checked is not chosen:
            note = f"; a feasibility check found a better bottleneck than HiGHS's answer ({checked.objective:.6g} s)"
            checked = replace(checked, name=chosen.name)
        if verified:
            return checked, True, note + f"; verified: no placement's bottleneck is below it by {VERIFY_RTOL:g}"
        return checked, False, note + "; the feasibility check of the bottleneck did not finish: optimality not claimed"

    def _least_latency(
        self, comp: CompiledProblem, budgets: dict, chosen: Candidate, start_time: float
    ) -> tuple[Candidate, str]:
        """The throughput objective's tie-break: among the placements as good as ``chosen``, one of least latency
        (:func:`tiercut.plan.throughput_ilp.least_latency_at_bottleneck`)."""
        from tiercut.plan.throughput_ilp import least_latency_at_bottleneck

        remaining = max(1e-3, float(self.time_limit_s) - (time.perf_counter() - start_time))
        found = least_latency_at_bottleneck(comp, budgets, chosen.row, chosen.objective, remaining,
                                            float(self.mip_rel_gap))
        if found is None or not found.feasible or found.objective > chosen.objective * (1 + 1e-9):
            return chosen, ""
        latency = evaluate_many(comp, np.stack([chosen.row, found.row])).latency_s
        if latency[1] >= latency[0]:
            return chosen, ""
        return replace(found, name=chosen.name), f"; least latency at that bottleneck ({latency[1]:.6g} s)"

    def _tolerance(self) -> float:
        """A proof holds to HiGHS's tolerances (see PROOF_RTOL); the reported gap says how close the bound is."""
        return max(float(self.mip_rel_gap), PROOF_RTOL)

    def _warm_start(self, problem: Problem, comp: CompiledProblem, merge: dict[int, int]) -> Candidate:
        """The best cheap candidate (Deb's rule), or the all-local placement without a warm start."""
        seeding = problem.with_objective(Objective("latency")) if problem.objective.is_throughput else problem
        candidates = cheap_candidates(reduced_problem(seeding, merge), comp, with_dp=True) if self.warm_start else []
        if candidates:
            return candidates[0]
        local = problem.local_placement()
        local_row = np.array([problem.device_index(local[n.name]) for n in problem.graph], dtype=np.int64)
        batch = evaluate_many(comp, local_row[None, :])
        return Candidate(local_row, "local", float(batch.objective[0]), bool(batch.feasible[0]), float(batch.penalty[0]))

    def _run(
        self, model: MILP, comp: CompiledProblem, best: Candidate, merge: dict[int, int], start_time: float
    ) -> tuple[Solution, Candidate | None]:
        """Solve with the warm start as MIP start and cutoff; once more without the start if the answer fails
        the cost model's check (a MIP start has been seen to stall a HiGHS release on its incumbent)."""
        start_values = None
        cutoff = None
        if self.warm_start and best.feasible and math.isfinite(best.objective):
            merged = np.array([merge.get(int(d), int(d)) for d in best.row], dtype=np.int64)
            start_values = model.column_values(comp, merged)
            cutoff = best.objective
        scale = objective_scale(model, best.objective if best.feasible else math.nan)
        backend = self.backend()

        def run(with_start: bool) -> tuple[Solution, Candidate | None]:
            remaining = max(1e-3, float(self.time_limit_s) - (time.perf_counter() - start_time))
            if backend == "highs":
                start = start_values if with_start else None
                solution = solve_highs(model, scale, start, cutoff, remaining, float(self.mip_rel_gap))
            else:
                solution = solve_scipy(model, scale, cutoff, remaining, float(self.mip_rel_gap), cutoff_row=False)
            return solution, _decoded(comp, model, solution)

        solution, found = run(with_start=True)
        if not _consistent(solution, found, self._tolerance()) and start_values is not None:
            solution, found = run(with_start=False)
        return solution, found

    def _unproven_note(self, solution: Solution, elapsed_s: float) -> str:
        """Why no optimum is claimed."""
        if solution.status == "time_limit":
            return f"; time limit {self.time_limit_s:g} s reached after {elapsed_s:.1f} s"
        if solution.status == "infeasible":
            return "; HiGHS proved the problem infeasible (no placement satisfies every constraint)"
        if solution.status == "optimal":
            return "; HiGHS's answer failed the cost model's check"
        return f"; HiGHS stopped: {solution.message}"


def _decoded(comp: CompiledProblem, model: MILP, solution: Solution) -> Candidate | None:
    """The placement of a solver answer, evaluated by the cost model (None without an answer)."""
    if solution.values is None:
        return None
    row = np.full(comp.n_nodes, comp.source, dtype=np.int64)
    for (v, d), col in model.x.items():
        if solution.values[col] > 0.5:
            row[v] = d
    if model.y:
        from tiercut.cost import evaluate

        problem = comp.problem
        chosen = {problem.graph.nodes[u].name: k for (u, k), col in model.y.items() if solution.values[col] > 0.5}
        ev = evaluate(problem, decode(comp, row), compression=chosen)
        return Candidate(row, "ilp", ev.objective_value, ev.feasible, float(len(ev.violations)), dict(ev.compression))
    batch = evaluate_many(comp, row[None, :])
    return Candidate(row, "ilp", float(batch.objective[0]), bool(batch.feasible[0]), float(batch.penalty[0]))


def _consistent(solution: Solution, found: Candidate | None, tolerance: float) -> bool:
    """An "optimal" answer whose placement the cost model finds feasible and within the gap of the bound
    (any answer that does not claim optimality is consistent)."""
    if solution.status != "optimal" or found is None or not found.feasible or solution.bound is None:
        return solution.status != "optimal"
    return found.objective <= solution.bound + tolerance * max(abs(found.objective), 1e-300)


__all__ = ["MILP", "SOLVERS", "ILPPlanner", "build_milp", "cheap_candidates", "dominated_devices", "estimate_size"]
