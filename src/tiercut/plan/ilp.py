"""Exact multi-device DAG placement as a mixed-integer linear program.

The integer-programming formulation of DNN partition is the survey's
general model (its Eq. 3-5: minimise one objective with the others as
constraints); JointDNN (Eshratifar et al., IEEE TMC 2019) and the
multi-device placements the survey lists formulate it as an ILP. Here it is
DESIGN.md's cost model exactly, solved by HiGHS through
``scipy.optimize.milp``:

- ``x[v, d]`` binary: node ``v`` runs on device ``d`` (only allowed devices:
  where it can run, its pinned device; graph inputs fixed on the source);
  ``sum_d x[v, d] = 1``;
- ``y[u, d]`` binary: ``u``'s tensor is needed on ``d``: ``y[u, d] >= x[w, d]``
  for every consumer ``w``; fixed to 1 on the source for graph outputs;
- ``z[u, a, d]`` (continuous in [0, 1], integral at any vertex with binary
  x, y): the tensor goes from ``a`` to ``d``: ``z >= x[u, a] + y[u, d] - 1``.
  This is the transfer-once-per-destination rule: one transfer per device
  that needs the tensor, however many consumers it has there. Without a link
  between ``a`` and ``d``: ``x[u, a] + y[u, d] <= 1``;
- objective and budgets: the linear forms of the metrics
  (:func:`tiercut.cost.linear_form`) over ``x`` and ``z``;
- memory: ``sum_v param_bytes(v) x[v, d] <= memory(d)``.

All coefficients are non-negative, so at an optimum ``y`` and ``z`` are as
small as the constraints allow and the objective equals the cost model's;
the plan's figures are recomputed by the cost model anyway.

Guarantee: optimal for every objective and every constraint when HiGHS
reports optimality (within ``mip_rel_gap``); with a time limit it returns
the incumbent with the gap (``optimal=False``); a problem HiGHS proves
infeasible returns the all-local placement marked infeasible.
Complexity: NP-hard in general; O(|V| |D|^2) variables and rows; seconds for
the zoo models on 2-3 devices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_matrix

from tiercut.cost import CompiledProblem, LinearForm, compile_problem, decode, linear_form
from tiercut.plan.base import PlacementResult, Planner
from tiercut.problem import Problem


@dataclass
class _Model:
    """Variable layout and sparse rows of the MILP, built incrementally."""

    n_vars: int = 0

    def __post_init__(self) -> None:
        self.rows: list[int] = []
        self.cols: list[int] = []
        self.vals: list[float] = []
        self.lower: list[float] = []
        self.upper: list[float] = []
        self.integrality: list[int] = []
        self.var_lo: list[float] = []
        self.var_hi: list[float] = []

    def add_vars(self, count: int, integer: bool, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
        first = self.n_vars
        self.n_vars += count
        self.integrality.extend([1 if integer else 0] * count)
        self.var_lo.extend([lo] * count)
        self.var_hi.extend([hi] * count)
        return np.arange(first, first + count)

    def add_row(self, cols: list[int] | np.ndarray, vals: list[float] | np.ndarray, lo: float, hi: float) -> None:
        r = len(self.lower)
        cols = list(cols)
        self.rows.extend([r] * len(cols))
        self.cols.extend(int(c) for c in cols)
        self.vals.extend(float(v) for v in vals)
        self.lower.append(lo)
        self.upper.append(hi)


@dataclass(frozen=True)
class ILPLayout:
    """Where each variable is: x[(v, d)], y[(u, d)], z[(u, a, d)] -> column."""

    x: dict[tuple[int, int], int]
    y: dict[tuple[int, int], int]
    z: dict[tuple[int, int, int], int]


def _linear_terms(
    comp: CompiledProblem, form: LinearForm, layout: ILPLayout, fixed_x: dict[tuple[int, int], float]
) -> tuple[dict[int, float], float]:
    """Column -> coefficient of a linear form, and its constant part (fixed inputs)."""
    coef: dict[int, float] = {}
    const = 0.0
    for (v, d), col in layout.x.items():
        c = float(form.node[v, d])
        if c:
            coef[col] = coef.get(col, 0.0) + c
    for (v, d), val in fixed_x.items():
        const += float(form.node[v, d]) * val
    for (u, a, d), col in layout.z.items():
        c = float(form.transfer[u, a, d])
        if c:
            coef[col] = coef.get(col, 0.0) + c
    return coef, const


class ILPPlanner(Planner):
    """Exact placement over any number of devices with every constraint (HiGHS MILP)."""

    name = "ilp"
    summary = "exact multi-device DAG placement with every constraint (scipy milp / HiGHS)"
    reference = "survey Eq. 3-5; JointDNN (Eshratifar et al., TMC'19) ILP formulation; DESIGN.md cost model"
    guarantee = "optimal for every objective and constraint when HiGHS proves it (else gap reported)"
    complexity = "NP-hard; O(|V| |D|^2) variables"

    def __init__(self, time_limit_s: float = 60.0, mip_rel_gap: float = 1e-9) -> None:
        self.time_limit_s = time_limit_s
        self.mip_rel_gap = mip_rel_gap

    def _solve(self, problem: Problem) -> PlacementResult:
        comp = compile_problem(problem)
        n, D = comp.n_nodes, comp.n_devices
        src = comp.source
        objective_form = linear_form(comp, problem.objective)
        budgets = problem.constraints.budgets()
        budget_forms = {m: linear_form(comp, m) for m in budgets}
        graph = problem.graph
        consumers: list[list[int]] = [[] for _ in range(n)]
        for u, w in zip(comp.edge_src.tolist(), comp.edge_dst.tolist(), strict=True):
            consumers[u].append(w)
        is_input = np.array([node.is_input for node in graph])

        model = _Model()
        x: dict[tuple[int, int], int] = {}
        fixed_x: dict[tuple[int, int], float] = {}
        allowed = [np.flatnonzero(comp.allowed[v]).tolist() for v in range(n)]
        for v in range(n):
            if is_input[v]:
                fixed_x[(v, src)] = 1.0
                continue
            cols = model.add_vars(len(allowed[v]), integer=True)
            for d, col in zip(allowed[v], cols, strict=True):
                x[(v, d)] = int(col)
            model.add_row(cols, np.ones(len(cols)), 1.0, 1.0)

        def x_terms(v: int, d: int) -> tuple[list[int], float]:
            """(columns, constant) of x[v, d]."""
            if is_input[v]:
                return [], 1.0 if d == src else 0.0
            col = x.get((v, d))
            return ([col] if col is not None else []), 0.0

        y: dict[tuple[int, int], int] = {}
        z: dict[tuple[int, int, int], int] = {}
        needs_z = np.zeros((n, D, D), dtype=bool)
        for form in (objective_form, *budget_forms.values()):
            needs_z |= np.isfinite(form.transfer) & (form.transfer > 0)
        for u in range(n):
            dest_devices = sorted({d for w in consumers[u] for d in allowed[w]} | ({src} if comp.is_output[u] else set()))
            for d in dest_devices:
                sources = [a for a in (allowed[u] if not is_input[u] else [src]) if a != d]
                if not sources:
                    continue
                if comp.is_output[u] and d == src:
                    y_col, y_const = None, 1.0
                else:
                    y_col = int(model.add_vars(1, integer=True)[0])
                    y_const = 0.0
                    y[(u, d)] = y_col
                    for w in consumers[u]:
                        xc, _ = x_terms(w, d)
                        if xc:
                            model.add_row([y_col, xc[0]], [1.0, -1.0], 0.0, math.inf)
                for a in sources:
                    xc, xk = x_terms(u, a)
                    if not xc and xk == 0.0:
                        continue
                    if not comp.has_link[a, d]:
                        # x[u,a] + y[u,d] <= 1
                        cols = xc + ([y_col] if y_col is not None else [])
                        const = xk + y_const
                        if cols:
                            model.add_row(cols, np.ones(len(cols)), -math.inf, 1.0 - const)
                        elif const > 1.0:
                            return PlacementResult(problem.local_placement(), note="an input must cross a missing link")
                        continue
                    if not needs_z[u, a, d]:
                        continue
                    z_col = int(model.add_vars(1, integer=False)[0])
                    z[(u, a, d)] = z_col
                    # z - x[u,a] - y[u,d] >= xk + y_const - 1
                    cols = [z_col, *xc] + ([y_col] if y_col is not None else [])
                    vals = [1.0] + [-1.0] * len(xc) + ([-1.0] if y_col is not None else [])
                    model.add_row(cols, vals, xk + y_const - 1.0, math.inf)
        layout = ILPLayout(x, y, z)

        objective = np.zeros(model.n_vars)
        coef, _ = _linear_terms(comp, objective_form, layout, fixed_x)
        for col, c in coef.items():
            objective[col] = c
        positive = objective[objective > 0]
        if len(positive):
            # bring typical coefficients near 1 (HiGHS' tolerances are absolute), ignoring denormal crumbs
            typical = max(float(np.median(positive)), 1e-9 * float(positive.max()))
            objective *= min(1.0 / typical, 1e12)
        objective[np.abs(objective) < 1e-12 * max(float(np.abs(objective).max(initial=0.0)), 1e-300)] = 0.0

        for metric, budget in budgets.items():
            coef_b, const_b = _linear_terms(comp, budget_forms[metric], layout, fixed_x)
            norm = max(budget, 1e-12)
            cols_b = list(coef_b)
            model.add_row(cols_b, [coef_b[c] / norm for c in cols_b], -math.inf, (budget - const_b) / norm)
        if problem.constraints.memory:
            for d, device in enumerate(problem.devices):
                if device.memory_bytes is None:
                    continue
                terms = [(col, float(comp.param_bytes[v])) for (v, dd), col in x.items() if dd == d and comp.param_bytes[v] > 0]
                fixed_m = sum(float(comp.param_bytes[v]) for (v, dd) in fixed_x if dd == d)
                norm = max(float(device.memory_bytes), 1.0)
                upper = (device.memory_bytes - fixed_m) / norm
                model.add_row([c for c, _ in terms], [b / norm for _, b in terms], -math.inf, upper)

        constraints = []
        if model.lower:
            matrix = coo_matrix((model.vals, (model.rows, model.cols)), shape=(len(model.lower), model.n_vars)).tocsr()
            constraints.append(LinearConstraint(matrix, np.array(model.lower), np.array(model.upper)))
        result = milp(
            objective,
            integrality=np.array(model.integrality),
            bounds=Bounds(np.array(model.var_lo), np.array(model.var_hi)),
            constraints=constraints,
            options={"disp": False, "time_limit": float(self.time_limit_s), "mip_rel_gap": float(self.mip_rel_gap)},
        )
        if result.x is None:
            why = "HiGHS proved the problem infeasible" if result.status == 2 else f"HiGHS stopped: {result.message}"
            return PlacementResult(problem.local_placement(), note=f"{why}; returning the all-local placement")
        row = np.full(n, src, dtype=np.int64)
        for (v, d), col in x.items():
            if result.x[col] > 0.5:
                row[v] = d
        gap = getattr(result, "mip_gap", None)
        gap = None if gap is None or not math.isfinite(gap) else float(gap)
        optimal = result.status == 0
        note = f"{model.n_vars} variables, {len(model.lower)} rows"
        if not optimal:
            note += f"; HiGHS stopped before proving optimality ({result.message})"
        return PlacementResult(decode(comp, row), optimal=optimal, gap=gap, note=note)
