"""The throughput objective as a mixed-integer program: minimise the bottleneck stage.

The min-max form of the pipelined stage model (docs/cost-model.md
"Throughput", :mod:`tiercut.cost.throughput`): with the assignment ``x``,
transfer ``z`` and memory ``m`` variables and rows of the placement MILP
(:func:`tiercut.plan.ilp.build_milp`, JointDNN's formulation, Eshratifar et
al., TMC'19), one continuous variable ``B >= 0`` and one row per pipeline
stage ``s`` (every device and link direction)::

    min  B    s.t.  stage_s(x, z) <= B   for every stage s,

where ``stage_s`` is the stage's linear form (:func:`tiercut.cost.throughput.stage_forms`:
a device's compute times, a link direction's seconds per routed transfer);
the latency bound and the other budgets stay rows of their own (the survey's
Eq. 3-5 with throughput as the objective). The ``z`` of every transfer any
stage or budget charges exist, so the rows are exact at every integral
point and the optimum is the throughput optimum. :class:`tiercut.plan.ilp.ILPPlanner`
solves it (warm start, HiGHS, the cost model's check) when the problem's
objective is ``throughput``; the dominated-device presolve is off (moving a
device's nodes onto another raises that one's stage).

HiGHS's proof is not taken unchecked (issue 18): HiGHS 1.12 (the one scipy
1.17 bundles; highspy 1.15.1 too) has been seen to cut off this program's
optimum once it has an objective limit -- the cutoff (``objective_bound``),
the value of its MIP start, or an incumbent of its own -- and to report a
worse point as optimal (about 1 in 1000 random small problems; the same
program solved without the limit, the cost model and brute force agree).
So the answer is checked by :func:`verified_bottleneck`: a *feasibility*
program (no objective, so no objective limit takes part) with
``B <= (1 - VERIFY_RTOL)`` times the answer's bottleneck; infeasible proves
the answer, a point found is a better answer and the check repeats from it.
Optimality is claimed only when this check proves it. (Bounding ``B`` in the
main program instead -- by the warm start, or by the most any stage can
take -- makes HiGHS miss less often but is no proof, and its speed swings
both ways: resnet18 on migration-12 from 8 s to over 90 s, mobilenet_v2 from
over 90 s to 3-10 s.)
"""

from __future__ import annotations

import math
from functools import reduce

import numpy as np

from tiercut.cost import CompiledProblem, LinearForm, linear_form
from tiercut.cost.throughput import stage_forms


def build_bottleneck_milp(
    comp: CompiledProblem, budgets: dict[str, tuple[LinearForm, float]], kept: list[int], reference: float,
    cutoff: float | None = None,
):
    """The MILP ``min B`` with a row ``stage_s <= B`` per stage (module docstring), over the devices ``kept``.

    ``reference`` (seconds, e.g. the warm start's bottleneck) normalises the stage rows: ``B`` is in units of
    it, and its objective coefficient is ``reference``, so the objective is in seconds. ``cutoff`` (seconds)
    bounds ``B`` (the feasibility check of :func:`verified_bottleneck`); without it ``B`` is unbounded above.
    """
    from tiercut.plan.ilp import build_milp

    forms = [form for _, form in stage_forms(comp)]
    charged = reduce(lambda a, b: a + b, forms) + linear_form(comp, "latency")
    model = build_milp(comp, charged, budgets, kept)  # every transfer a stage or the latency charges gets its z
    model.c = [0.0] * model.n_vars
    model.offset = 0.0
    ref = reference if math.isfinite(reference) and reference > 0 else 1.0
    b = model.var(ref, False, 0.0, math.inf)
    model.bottleneck = b
    src = comp.source
    is_input = np.array([node.is_input for node in comp.problem.graph])
    for form in forms:
        terms: dict[int, float] = {b: -1.0}
        fixed = sum(float(form.node[v, src]) for v in np.flatnonzero(is_input))
        for (v, d), col in model.x.items():
            terms[col] = terms.get(col, 0.0) + float(form.node[v, d]) / ref
        for (u, a, d), col in model.z.items():
            terms[col] = terms.get(col, 0.0) + float(form.transfer[u, a, d]) / ref
        model.row(terms, -math.inf, -fixed / ref)
    if cutoff is not None and math.isfinite(cutoff):
        model.ub[b] = cutoff / ref * (1 + 1e-9) + 1e-12
    return model


#: the throughput answer is verified to this relative distance: no placement's bottleneck is below it by more
VERIFY_RTOL = 1e-7


def verified_bottleneck(comp: CompiledProblem, budgets: dict[str, tuple[LinearForm, float]], found,
                        time_limit_s: float):
    """Check that no placement has a bottleneck below ``found``'s (a feasible
    :class:`tiercut.plan.ilp.Candidate`) by more than :data:`VERIFY_RTOL`, improving on it while one does.

    Each round asks HiGHS for any point of the program (no objective) with ``B <= (1 - VERIFY_RTOL)`` times
    the answer's bottleneck: a pure feasibility problem, so no objective limit takes part in HiGHS's proof
    (module docstring: with one HiGHS 1.12 has cut off the optimum). "Infeasible" verifies the answer; a
    point found is a better answer (by the cost model) and the next round starts from it. Returns (the
    answer, True when verified; False when the time ran out or HiGHS's point was no better by the cost
    model).
    """
    import time

    from tiercut.plan.ilp import _decoded, _highs_class, solve_highs, solve_scipy

    start_time = time.perf_counter()
    current = found
    kept = list(range(comp.n_devices))
    while True:
        remaining = float(time_limit_s) - (time.perf_counter() - start_time)
        if remaining <= 0:
            return current, False
        target = current.objective * (1 - VERIFY_RTOL)
        model = build_bottleneck_milp(comp, budgets, kept, current.objective, target)
        model.c = [0.0] * model.n_vars
        if _highs_class()[0] is not None:
            solution = solve_highs(model, 1.0, None, None, remaining, 0.0)
        else:
            solution = solve_scipy(model, 1.0, None, remaining, 0.0)
        if solution.status == "infeasible":
            return current, True
        better = _decoded(comp, model, solution) if solution.status == "optimal" else None
        if better is None or not better.feasible or not better.objective < current.objective:
            return current, False
        current = better


def least_latency_at_bottleneck(comp: CompiledProblem, budgets: dict[str, tuple[LinearForm, float]], row: np.ndarray,
                                bottleneck_s: float, time_limit_s: float, mip_rel_gap: float):
    """Among the placements whose bottleneck is at most ``bottleneck_s`` (the optimum found), one of least latency:
    the same MILP with ``B <= bottleneck_s`` and the latency form as the objective, started from ``row``
    (lexicographic: throughput first, then latency). Returns the answer as a :class:`tiercut.plan.ilp.Candidate`
    (its objective the bottleneck, by the cost model), or None when HiGHS gives none."""
    from tiercut.plan.ilp import _decoded, _highs_class, solve_highs, solve_scipy

    model = build_bottleneck_milp(comp, budgets, list(range(comp.n_devices)), bottleneck_s)
    assert model.bottleneck is not None
    model.ub[model.bottleneck] = 1.0 + 1e-9  # B is in units of bottleneck_s
    latency = linear_form(comp, "latency")
    model.c = [0.0] * model.n_vars
    for (v, d), col in model.x.items():
        model.c[col] = float(latency.node[v, d])
    for (u, a, d), col in model.z.items():
        model.c[col] = float(latency.transfer[u, a, d])
    start = model.column_values(comp, row)
    reference = float(np.dot(model.c, start))
    scale = 1.0 / reference if reference > 0 else 1.0
    if _highs_class()[0] is not None:
        solution = solve_highs(model, scale, start, None, time_limit_s, mip_rel_gap)
    else:
        solution = solve_scipy(model, scale, None, time_limit_s, mip_rel_gap)
    return _decoded(comp, model, solution)


__all__ = ["VERIFY_RTOL", "build_bottleneck_milp", "least_latency_at_bottleneck", "verified_bottleneck"]
