"""Joint placement of several DNNs on shared devices and links (the shared-capacity model).

Several models, each with its own graph, source and query rate, share one
environment (:class:`~tiercut.problem.joint.JointProblem`); a stage's
utilisation is the sum over models of rate x busy seconds per query
(docs/cost-model.md "Several DNNs", :mod:`tiercut.cost.joint`). The joint
scheduling of several DNNs on shared edge resources is the multi-DNN setting
of Hu, Dong and Wen (ICCCS 2021, "Enable pipeline processing of DNN
co-inference tasks in the mobile-edge cloud", in the survey) and of the
multi-tenant partition papers the survey lists. Planners (one interface, a
registry, the figures always from :func:`tiercut.cost.joint.evaluate_joint`):

- ``independent``: each model planned alone, as if it had the environment to
  itself (its own throughput or latency optimum, :func:`tiercut.plan.plan`
  with ``planner``), then evaluated together: the baseline joint planning is
  compared with;
- ``joint-ilp``: one MILP over every model's placement variables (the
  per-model blocks of :func:`tiercut.plan.ilp.build_milp`) with the shared
  rows ``sum_m r_m stage_s(x_m) <= U`` for every stage: ``min U`` for
  throughput; for latency ``min`` the rate-weighted mean (or the max, by an
  epigraph variable) of the models' latency forms with ``U <= 1``; memory:
  ``sum_m`` of every model's parameter bytes on a device ``<=`` its memory
  (shared parameters once per model, by the per-model ``m`` columns). Cutoff: the independent
  plans; the answer is the better of the two by Deb's rule, so it is never
  worse than planning each alone;
- ``joint-brute-force``: every combination of every model's placements
  (tiny problems; the reference the tests check the others against), with
  the same throughput tie-break.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np

from tiercut.cost import compile_problem, decode, evaluate_many, linear_form, memory_many
from tiercut.cost.joint import JointEvaluation, evaluate_joint
from tiercut.cost.throughput import stage_forms, stage_times_many
from tiercut.errors import TiercutError
from tiercut.problem import Objective
from tiercut.problem.joint import JointPlan, JointProblem, ModelFigures
from tiercut.settings import Configurable


@dataclass(frozen=True)
class JointResult:
    """What a joint planner's ``_solve`` returns: model -> placement, and what it proved."""

    placements: Mapping[str, Mapping[str, str]]
    optimal: bool = False
    gap: float | None = None
    note: str = ""


def make_joint_plan(problem: JointProblem, algorithm: str, result: JointResult, solve_s: float,
                    settings: Mapping[str, Any]) -> JointPlan:
    """A :class:`JointPlan` whose figures are the shared-capacity model's for ``result``'s placements."""
    ev = evaluate_joint(problem, result.placements)
    return JointPlan(
        algorithm=algorithm,
        placements={m: dict(e.placement) for m, e in ev.models.items()},
        models={m.name: ModelFigures(ev.models[m.name].latency_s, ev.models[m.name].bottleneck_s, m.query_rate_hz)
                for m in problem.models},
        utilisation=dict(ev.utilisation), max_utilisation=ev.max_utilisation, bottleneck_stage=ev.bottleneck_stage,
        latency_mean_s=ev.latency_mean_s, latency_max_s=ev.latency_max_s, objective_value=ev.objective_value,
        solve_s=solve_s, feasible=ev.feasible, optimal=bool(result.optimal and ev.feasible), gap=result.gap,
        settings=dict(settings), violations=ev.violations, note=result.note,
    )


def _key(ev: JointEvaluation) -> tuple[int, float]:
    """Deb's rule: feasible first by the objective, then valid by the number of violations."""
    if ev.feasible:
        return (0, ev.objective_value)
    return (1, float(len(ev.violations))) if ev.valid else (2, 0.0)


#: throughput ties: a joint placement whose largest utilisation is within this relative tolerance of the least is
#: tied with it, and the tie is broken by latency (the single-model ilp's tolerance)
TIE_RTOL = 1e-9


def tie_latency_s(problem: JointProblem, ev: JointEvaluation) -> float:
    """The latency that breaks a throughput tie: the objective's aggregate (``mean`` per query, or ``max``)."""
    return ev.latency_max_s if problem.objective.aggregate == "max" else ev.latency_mean_s


def lexicographic_best(problem: JointProblem, evaluations: list[JointEvaluation]) -> int:
    """The index of the best of ``evaluations``: Deb's rule (:func:`_key`); under the throughput objective, of the
    feasible ones whose ``U`` is within ``TIE_RTOL`` of the least, the one of least :func:`tie_latency_s` (the
    first on equal latency)."""
    best = min(range(len(evaluations)), key=lambda i: _key(evaluations[i]))
    if problem.objective.kind != "throughput" or not evaluations[best].feasible:
        return best
    limit = evaluations[best].max_utilisation * (1 + TIE_RTOL)
    tied = [i for i, ev in enumerate(evaluations) if ev.feasible and ev.max_utilisation <= limit]
    return min(tied, key=lambda i: tie_latency_s(problem, evaluations[i]))


class JointPlanner(Configurable):
    """Base of the joint planners: settings in ``__init__``, work in :meth:`solve`."""

    kind: ClassVar[str] = "joint planner"
    summary: ClassVar[str] = ""
    reference: ClassVar[str] = ""
    guarantee: ClassVar[str] = ""
    complexity: ClassVar[str] = ""

    def check(self, problem: JointProblem) -> str | None:
        """Why this planner cannot solve ``problem`` (None: it can)."""
        return None

    def solve(self, problem: JointProblem) -> JointPlan:
        if not isinstance(problem, JointProblem):
            raise TiercutError(f"joint planner {self.name!r} plans a JointProblem (several models on shared devices)")
        reason = self.check(problem)
        if reason is not None:
            raise TiercutError(f"joint planner {self.name!r} cannot solve {problem.name or 'this problem'}: {reason}")
        start = time.perf_counter()
        result = self._solve(problem)
        return make_joint_plan(problem, self.name, result, time.perf_counter() - start, self.get_params())

    def _solve(self, problem: JointProblem) -> JointResult:
        raise TiercutError(f"joint planner {self.name!r} has no solver")


def solo_problem(problem: JointProblem, name: str):
    """Model ``name``'s problem as if alone: the joint objective applied to it (throughput: its own bottleneck;
    latency: its own latency)."""
    model = problem.model(name)
    kind = "throughput" if problem.objective.kind == "throughput" else "latency"
    return model.problem.with_objective(Objective(kind))


class IndependentPlanner(JointPlanner):
    """Each model planned alone (its own optimum), then evaluated together."""

    name = "independent"
    summary = "each model planned alone as if it had the devices to itself, evaluated together"
    reference = "the baseline of joint multi-DNN planning (docs/cost-model.md 'Several DNNs')"
    guarantee = "none jointly: each model's own plan is its planner's"
    complexity = "one single-model plan per model"

    def __init__(self, planner: str = "ilp") -> None:
        self.planner = planner

    def check(self, problem: JointProblem) -> str | None:
        from tiercut.plan.registry import PLANNERS

        if self.planner not in PLANNERS:
            return f"setting planner={self.planner!r} is not a planner; use one of {', '.join(PLANNERS)}"
        return None

    def _solve(self, problem: JointProblem) -> JointResult:
        from tiercut.plan.registry import plan

        placements = {m.name: dict(plan(solo_problem(problem, m.name), self.planner).placement) for m in problem.models}
        return JointResult(placements, note=f"each model by {self.planner} alone")


class JointBruteForcePlanner(JointPlanner):
    """Every combination of every model's placements (tiny problems)."""

    name = "joint-brute-force"
    summary = "every combination of the models' placements, scored by the shared-capacity model"
    reference = "exhaustive search (the reference of the tests)"
    guarantee = "optimal for the joint objective and every constraint"
    complexity = "prod_m prod_v |D(v)| joint placements"

    def __init__(self, max_combinations: int = 500_000) -> None:
        self.max_combinations = max_combinations

    def counts(self, problem: JointProblem) -> list[int]:
        return [int(np.prod(compile_problem(m.problem).allowed.sum(axis=1), dtype=float)) for m in problem.models]

    def check(self, problem: JointProblem) -> str | None:
        total = math.prod(self.counts(problem))
        if total > self.max_combinations:
            return f"{total:,} joint placements, over max_combinations={self.max_combinations:,}; use joint-ilp"
        return None

    def _solve(self, problem: JointProblem) -> JointResult:
        parts = []
        for model in problem.models:
            unshared = replace(model.problem, constraints=replace(model.problem.constraints, memory=False))
            comp = compile_problem(unshared)
            X = np.array(list(itertools.product(*[np.flatnonzero(comp.allowed[v]) for v in range(comp.n_nodes)])),
                         dtype=np.int64).reshape(-1, comp.n_nodes)
            batch = evaluate_many(comp, X)
            parts.append((comp, X, batch, stage_times_many(comp, X), memory_many(comp, X)))
        grids = np.meshgrid(*[np.arange(len(p[1])) for p in parts], indexing="ij")
        index = [g.ravel() for g in grids]
        rates = [m.query_rate_hz for m in problem.models]
        util = sum(r * p[3][i] for r, p, i in zip(rates, parts, index, strict=True))
        peak = util.max(axis=1) if util.shape[1] else np.zeros(len(index[0]))
        valid = np.all([p[2].valid[i] for p, i in zip(parts, index, strict=True)], axis=0)
        own_ok = np.all([p[2].feasible[i] for p, i in zip(parts, index, strict=True)], axis=0)
        memory = sum(p[4][i] for p, i in zip(parts, index, strict=True))
        limits = np.array([np.inf if d.memory_bytes is None else float(d.memory_bytes)
                           for d in problem.models[0].problem.devices])
        if any(m.problem.constraints.memory for m in problem.models):
            own_ok &= np.all(memory <= limits[None, :], axis=1)
        latency = np.stack([p[2].latency_s[i] for p, i in zip(parts, index, strict=True)], axis=1)
        if problem.objective.kind == "throughput":
            value = peak
        else:
            own_ok &= peak <= 1.0 * (1 + 1e-9)
            r = np.array(rates)
            value = latency @ r / r.sum() if problem.objective.aggregate == "mean" else latency.max(axis=1)
        value = np.where(valid, value, np.inf)
        feasible = valid & own_ok
        pick = int(np.argmin(np.where(feasible, value, np.inf))) if feasible.any() else int(np.argmin(value))
        if problem.objective.kind == "throughput" and feasible.any():  # ties: least latency (lexicographic)
            r = np.array(rates)
            tie = latency.max(axis=1) if problem.objective.aggregate == "max" else latency @ r / r.sum()
            tied = feasible & (value <= value[pick] * (1 + TIE_RTOL))
            pick = int(np.argmin(np.where(tied, tie, np.inf)))
        placements = {m.name: decode(p[0], p[1][i[pick]]) for m, p, i in zip(problem.models, parts, index, strict=True)}
        return JointResult(placements, optimal=bool(feasible.any()), note=f"{len(index[0]):,} joint placements")


class JointILPPlanner(JointPlanner):
    """One MILP over every model's placement with the shared stage rows (HiGHS)."""

    name = "joint-ilp"
    summary = "one MILP over every model's placement with the shared-capacity rows (min max utilisation or latency)"
    reference = (
        "JointDNN-style ILP (Eshratifar et al., TMC'19) per model, coupled by the shared-capacity rows; "
        "docs/cost-model.md 'Several DNNs'"
    )
    guarantee = (
        "optimal for the joint objective and every constraint when HiGHS proves it; never worse than the independent "
        "plans; throughput ties broken by least latency"
    )
    complexity = "NP-hard; the sum of the models' ILP sizes plus one row per stage"

    def __init__(self, time_limit_s: float = 60.0, mip_rel_gap: float = 1e-9, planner: str = "ilp") -> None:
        self.time_limit_s = time_limit_s
        self.mip_rel_gap = mip_rel_gap
        self.planner = planner

    def check(self, problem: JointProblem) -> str | None:
        if not (isinstance(self.time_limit_s, (int, float)) and self.time_limit_s > 0):
            return f"setting time_limit_s={self.time_limit_s!r} must be a number of seconds > 0"
        if not (isinstance(self.mip_rel_gap, (int, float)) and 0 <= self.mip_rel_gap < 1):
            return f"setting mip_rel_gap={self.mip_rel_gap!r} must be in [0, 1)"
        return IndependentPlanner(self.planner).check(problem)

    def _solve(self, problem: JointProblem) -> JointResult:
        start = time.perf_counter()
        alone = IndependentPlanner(self.planner)._solve(problem)
        alone_ev = evaluate_joint(problem, alone.placements)
        model, blocks = self._build(problem, alone_ev)
        reference = alone_ev.objective_value if alone_ev.feasible else math.nan
        solution = self._run(model, reference, None, reference if math.isfinite(reference) else None, start)
        note = f"{model.n_vars:,} variables, {model.n_rows:,} rows over {len(problem.models)} models"
        found = self._decoded(problem, blocks, solution)
        candidates = [(alone.placements, alone_ev, "independent")]
        if found is not None:
            candidates.insert(0, (found, evaluate_joint(problem, found), "joint"))
        proven = solution.status in ("optimal", "cut_off")
        if solution.status == "cut_off":
            note += "; HiGHS proved nothing beats the independent plans"
        elif solution.status != "optimal":
            note += f"; HiGHS: {solution.message}"
        first = candidates[lexicographic_best(problem, [c[1] for c in candidates])][1]
        if problem.objective.kind == "throughput" and first.feasible and math.isfinite(first.max_utilisation):
            tied, status = self._least_latency(problem, alone_ev, candidates, first, start)
            if tied is not None:
                candidates.insert(0, (tied, evaluate_joint(problem, tied), "joint"))
            if status != "optimal":  # the bottleneck stands; the latency among its ties may not be the least
                note += f"; latency tie-break not proven ({status})"
        placements, ev, label = candidates[lexicographic_best(problem, [c[1] for c in candidates])]
        if ev is not first:
            note += f"; least latency at that bottleneck ({tie_latency_s(problem, ev):.6g} s)"
        if solution.bound is not None and ev.feasible and math.isfinite(ev.objective_value):
            tol = max(float(self.mip_rel_gap), 1e-4) * max(abs(ev.objective_value), 1e-300)
            proven = proven and (solution.status == "cut_off" or ev.objective_value <= solution.bound + tol)
        note += f"; {label} plan kept (independent: {alone_ev.objective_value:.6g})"
        return JointResult(placements, optimal=proven, note=note)

    def _run(self, model, reference: float, start_values: np.ndarray | None, cutoff: float | None, start: float):
        """Solve ``model`` by HiGHS (scipy's when the HiGHS API is missing) in the time left."""
        from tiercut.plan.ilp import _highs_class, objective_scale, solve_highs, solve_scipy

        scale = objective_scale(model, reference)
        remaining = max(1e-3, float(self.time_limit_s) - (time.perf_counter() - start))
        if _highs_class()[0] is not None:
            return solve_highs(model, scale, start_values, cutoff, remaining, float(self.mip_rel_gap))
        return solve_scipy(model, scale, cutoff, remaining, float(self.mip_rel_gap), cutoff_row=cutoff is not None)

    @staticmethod
    def _decoded(problem: JointProblem, blocks, solution) -> dict[str, dict[str, str]] | None:
        """Model -> placement of a solver answer (None without one)."""
        if solution.values is None:
            return None
        found = {}
        for m, (comp, x_cols, _, _) in zip(problem.models, blocks, strict=True):
            row = np.full(comp.n_nodes, comp.source, dtype=np.int64)
            for (v, d), col in x_cols.items():
                if solution.values[col] > 0.5:
                    row[v] = d
            found[m.name] = decode(comp, row)
        return found

    def _least_latency(self, problem: JointProblem, alone: JointEvaluation, candidates: list, best: JointEvaluation,
                       start: float) -> tuple[dict[str, dict[str, str]] | None, str]:
        """The throughput tie-break: of the joint placements whose ``U`` is at most ``best``'s (within ``TIE_RTOL``),
        one of least :func:`tie_latency_s` -- the stacked MILP with ``U <= U*`` rows and that latency as the
        objective, started from ``best``. Returns its placements (None when HiGHS gives no answer) and HiGHS's
        status."""
        reference = tie_latency_s(problem, best)
        model, blocks = self._build(problem, alone, bottleneck=best.max_utilisation, latency_ref=reference)
        placements = next(c[0] for c in candidates if c[1] is best)
        values = np.zeros(model.n_vars)
        for m, (comp, _, block, offset) in zip(problem.models, blocks, strict=True):
            own = comp.problem
            row = np.array([own.device_index(placements[m.name][n.name]) for n in own.graph], dtype=np.int64)
            values[offset:offset + block.n_vars] = block.column_values(comp, row)
        if model.bottleneck is not None:  # the max aggregate's epigraph variable, in units of the reference
            values[model.bottleneck] = best.latency_max_s / (reference if reference > 0 else 1.0) * (1 + 1e-12)
        solution = self._run(model, reference, values, None, start)
        return self._decoded(problem, blocks, solution), solution.status

    def _build(self, problem: JointProblem, alone: JointEvaluation, bottleneck: float | None = None,
               latency_ref: float | None = None):
        """The stacked MILP and, per model, (compiled problem, (node, device) -> column, its block, column offset).

        ``bottleneck`` (throughput only): the tie-break's MILP instead -- every stage's utilisation at most
        ``bottleneck`` (within ``TIE_RTOL``) and the objective's latency aggregate as the objective (in units of
        ``latency_ref`` for the ``max`` epigraph, whose variable is then ``model.bottleneck``).
        """
        from tiercut.plan.ilp import MILP, build_milp

        throughput = problem.objective.kind == "throughput"
        total_rate = problem.total_rate_hz
        model = MILP()
        blocks = []
        shared: list[dict[int, float]] | None = None
        shared_fixed: np.ndarray | None = None  # sum_m r_m x the graph inputs' (constant) share of every stage
        latency_cols: list[dict[int, float]] = []
        latency_fixed: list[float] = []
        ref = alone.objective_value if alone.feasible and math.isfinite(alone.objective_value) and \
            alone.objective_value > 0 else 1.0
        enforce = any(m.problem.constraints.memory for m in problem.models)
        devices = problem.models[0].problem.devices
        memory_terms: list[dict[int, float]] = [{} for _ in devices]
        for m in problem.models:
            # each model's own memory rows (implied by the joint ones, they create the shared parameters' m columns)
            own = m.problem if m.problem.constraints.memory == enforce else m.problem.with_constraints(
                replace(m.problem.constraints, memory=enforce))
            comp = compile_problem(own)
            forms = stage_forms(comp)
            latency = linear_form(comp, "latency")
            budgets = {k: (linear_form(comp, k), b) for k, b in own.constraints.budgets().items()}
            charged = latency
            for _, form in forms:
                charged = charged + form
            block = build_milp(comp, charged, budgets, list(range(comp.n_devices)))
            offset = model.n_vars
            row_offset = model.n_rows
            model.c += [0.0] * block.n_vars
            model.lb += block.lb
            model.ub += block.ub
            model.integer += block.integer
            model.rows += [r + row_offset for r in block.rows]
            model.cols += [c + offset for c in block.cols]
            model.vals += block.vals
            model.row_lo += block.row_lo
            model.row_hi += block.row_hi
            x_cols = {k: c + offset for k, c in block.x.items()}
            z_cols = {k: c + offset for k, c in block.z.items()}
            blocks.append((comp, x_cols, block, offset))
            for (v, d), col in x_cols.items():
                if comp.private_param_bytes[v] > 0:
                    memory_terms[d][col] = float(comp.private_param_bytes[v])
            for (p, d), col in block.m.items():
                memory_terms[d][col + offset] = float(comp.shared_params[p][0])
            inputs = [v for v, node in enumerate(comp.problem.graph) if node.is_input]

            def terms(form, x_cols=x_cols, z_cols=z_cols, weight=1.0) -> dict[int, float]:
                out: dict[int, float] = {}
                for (v, d), col in x_cols.items():
                    out[col] = out.get(col, 0.0) + weight * float(form.node[v, d])
                for (u, a, d), col in z_cols.items():
                    out[col] = out.get(col, 0.0) + weight * float(form.transfer[u, a, d])
                return out

            def fixed(form, comp=comp, inputs=inputs) -> float:  # graph inputs sit on the source: constants
                return float(sum(float(form.node[v, comp.source]) for v in inputs))

            stage_terms = [terms(form, weight=m.query_rate_hz) for _, form in forms]
            stage_fixed = np.array([m.query_rate_hz * fixed(form) for _, form in forms])
            if shared is None:
                shared, shared_fixed = stage_terms, stage_fixed
            else:
                for acc, extra in zip(shared, stage_terms, strict=True):
                    for col, val in extra.items():
                        acc[col] = acc.get(col, 0.0) + val
                shared_fixed = shared_fixed + stage_fixed
            latency_cols.append(terms(latency))
            latency_fixed.append(fixed(latency))
        assert shared is not None and shared_fixed is not None
        for device, terms in zip(devices, memory_terms, strict=True):  # every model's parameters on one device
            if enforce and device.memory_bytes is not None and terms:
                norm = max(float(device.memory_bytes), 1.0)
                model.row({c: v / norm for c, v in terms.items()}, -math.inf, float(device.memory_bytes) / norm)
        if throughput and bottleneck is None:
            u = model.var(ref, False, 0.0, math.inf)
            for row, const in zip(shared, shared_fixed, strict=True):
                model.row({**{c: v / ref for c, v in row.items()}, u: -1.0}, -math.inf, -const / ref)
            return model, blocks
        if throughput:  # the tie-break: no stage above the least U found
            assert bottleneck is not None
            norm = bottleneck if bottleneck > 0 else 1.0
            for row, const in zip(shared, shared_fixed, strict=True):
                model.row({c: v / norm for c, v in row.items()}, -math.inf,
                          (bottleneck * (1 + TIE_RTOL) - const) / norm)
            if latency_ref is not None and math.isfinite(latency_ref) and latency_ref > 0:
                ref = latency_ref
        else:
            for row, const in zip(shared, shared_fixed, strict=True):  # keep up with every rate
                model.row(row, -math.inf, 1.0 - const)
        if problem.objective.aggregate == "mean":
            for m, cols, const in zip(problem.models, latency_cols, latency_fixed, strict=True):
                for col, val in cols.items():
                    model.c[col] += val * m.query_rate_hz / total_rate
                model.offset += const * m.query_rate_hz / total_rate
            return model, blocks
        t = model.var(ref, False, 0.0, math.inf)
        model.bottleneck = t
        for cols, const in zip(latency_cols, latency_fixed, strict=True):
            model.row({**{c: v / ref for c, v in cols.items()}, t: -1.0}, -math.inf, -const / ref)
        return model, blocks


#: the joint planners by name (``tiercut plan --models ... --algorithm NAME``)
JOINT_PLANNERS: dict[str, type[JointPlanner]] = {
    "joint-ilp": JointILPPlanner,
    "independent": IndependentPlanner,
    "joint-brute-force": JointBruteForcePlanner,
}
DEFAULT_JOINT_PLANNER = "joint-ilp"


def get_joint_planner(algorithm: str, **settings: Any) -> JointPlanner:
    try:
        cls = JOINT_PLANNERS[algorithm]
    except KeyError:
        raise TiercutError(
            f"joint planner {algorithm!r} is not known; use one of {', '.join(JOINT_PLANNERS)}"
        ) from None
    return cls().set_params(**settings)


def plan_joint(problem: JointProblem, algorithm: str = DEFAULT_JOINT_PLANNER, **settings: Any) -> JointPlan:
    """Plan several models jointly on shared devices (``joint-ilp`` by default)."""
    return get_joint_planner(algorithm, **settings).solve(problem)


__all__ = [
    "DEFAULT_JOINT_PLANNER",
    "JOINT_PLANNERS",
    "TIE_RTOL",
    "IndependentPlanner",
    "JointBruteForcePlanner",
    "JointILPPlanner",
    "JointPlanner",
    "JointResult",
    "get_joint_planner",
    "lexicographic_best",
    "make_joint_plan",
    "plan_joint",
    "tie_latency_s",
]
