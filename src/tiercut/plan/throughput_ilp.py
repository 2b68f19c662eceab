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
"""

from __future__ import annotations

import math
from functools import reduce

import numpy as np

from tiercut.cost import CompiledProblem, LinearForm
from tiercut.cost.throughput import stage_forms


def build_bottleneck_milp(
    comp: CompiledProblem, budgets: dict[str, tuple[LinearForm, float]], kept: list[int], reference: float
):
    """The MILP ``min B`` with a row ``stage_s <= B`` per stage (module docstring), over the devices ``kept``.

    ``reference`` (seconds, e.g. the warm start's bottleneck) normalises the stage rows: ``B`` is in units of
    it, and its objective coefficient is ``reference``, so the objective is in seconds.
    """
    from tiercut.plan.ilp import build_milp

    forms = [form for _, form in stage_forms(comp)]
    charged = reduce(lambda a, b: a + b, forms)
    model = build_milp(comp, charged, budgets, kept)  # every transfer a stage charges gets its z
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
    return model


__all__ = ["build_bottleneck_milp"]
