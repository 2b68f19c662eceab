"""The ILP: exact against brute force with every constraint and routed, directional links; warm start,
time-out, presolve and size refusal; every planner never worse than the cheap candidates."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiercut.cost import compile_problem, evaluate, evaluate_many, linear_form
from tiercut.env import Link
from tiercut.errors import TiercutError
from tiercut.plan import PLANNERS, get_planner, plan
from tiercut.plan.base import cheap_rows
from tiercut.plan.ilp import build_milp, cheap_candidates, dominated_devices
from tiercut.plan.synthetic import random_problem, synthetic_dag
from tiercut.problem import Constraints, Objective, Problem, ProblemDevice

OBJECTIVES = st.sampled_from(
    ["latency", "energy_source", "energy_total", "cost", "weighted:latency=1,energy_source=0.2,cost=5"]
)
SETTINGS = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}


def hard_problem(rng: random.Random, n_nodes: int, n_devices: int, objective: str, constrained: bool) -> Problem:
    """Pins, budgets, memory limits, shared weights, missing and directional links (devices reached via relays)."""
    return random_problem(
        rng, n_nodes=n_nodes, n_devices=n_devices, shape=rng.choice(["dag", "chain", "series-parallel"]),
        objective=objective, missing_compute=0.25, missing_link=0.4, constraints=constrained,
        missing_source_link=0.4, directional=0.5, shared_params=0.5,
    )


@settings(max_examples=120, **SETTINGS)
@given(
    rng=st.randoms(use_true_random=False),
    n_nodes=st.integers(1, 7),
    n_devices=st.integers(2, 4),
    objective=OBJECTIVES,
    constrained=st.booleans(),
    solver=st.sampled_from(["highs", "scipy"]),
)
@pytest.mark.slow
def test_ilp_equals_brute_force_with_routes_shared_weights_and_constraints(rng, n_nodes, n_devices, objective, constrained,
                                                                            solver):
    problem = hard_problem(rng, n_nodes, n_devices, objective, constrained)
    truth = plan(problem, "brute-force")
    result = plan(problem, "ilp", solver=solver)
    assert result.feasible == truth.feasible, result.note
    # proven, unless HiGHS's bound is looser than PROOF_RTOL (objective coefficients 1e13 apart: hypothesis draws them)
    assert result.optimal == truth.feasible or "failed the cost model's check" in result.note, result.note
    if truth.feasible:
        assert result.objective_value == pytest.approx(truth.objective_value, rel=1e-7, abs=1e-12), result.note
        assert result.bound is not None and result.bound <= result.objective_value * (1 + 1e-7) + 1e-12
    # the warm start never makes it worse, and the answer is never worse than the best warm-start candidate
    cold = plan(problem, "ilp", solver=solver, warm_start=False, reduce_devices=False)
    assert cold.feasible == truth.feasible
    if truth.feasible:
        assert cold.objective_value == pytest.approx(truth.objective_value, rel=1e-7, abs=1e-12)
        best = cheap_candidates(problem, compile_problem(problem))[0]
        if best.feasible:
            assert result.objective_value <= best.objective * (1 + 1e-12) + 1e-15


@pytest.mark.slow
def test_time_out_is_never_worse_than_local_or_the_warm_start():
    rng = random.Random(3)
    problem = random_problem(rng, n_nodes=120, n_devices=6, objective="energy_total", missing_link=0.2,
                             missing_source_link=0.3, directional=0.5)
    comp = compile_problem(problem)
    result = plan(problem, "ilp", time_limit_s=1e-3, reduce_devices=False)
    assert not result.optimal and "time limit" in result.note
    local = evaluate(problem, problem.local_placement())
    assert result.feasible and result.objective_value <= local.objective_value
    best = cheap_candidates(problem, comp)[0]
    assert result.objective_value <= best.objective * (1 + 1e-12)
    full = plan(problem, "ilp")
    assert full.optimal and full.objective_value <= result.objective_value * (1 + 1e-9)
    if result.bound is not None:
        assert result.bound <= full.objective_value * (1 + 1e-9)


def test_a_problem_too_large_for_the_program_is_refused_in_one_line():
    problem = random_problem(random.Random(1), n_nodes=30, n_devices=4)
    with pytest.raises(TiercutError) as info:
        plan(problem, "ilp", max_variables=10)
    assert "max_variables" in str(info.value) and "\n" not in str(info.value)
    for bad, message in ((dict(solver="gurobi"), "solver"), (dict(time_limit_s=0), "time_limit_s"),
                         (dict(mip_rel_gap=2.0), "mip_rel_gap")):
        with pytest.raises(TiercutError, match=message):
            plan(problem, "ilp", **bad)


def twelve_like(objective: str = "latency", memory: int | None = None) -> Problem:
    """A source, three identical edges of different speed, two clouds, one slow second client (migration-12's shape)."""
    graph = synthetic_dag(30, seed=2)
    speed = {"c1": 1.0, "c2": 2.0, "e1": 4.0, "e2": 8.0, "e3": 16.0, "k1": 40.0, "k2": 80.0}
    tier = {"c": "end", "e": "edge", "k": "cloud"}
    power = {"c": (4.0, 1.5, 1.0, 0.5), "e": (65.0, 2.0, 2.0, 20.0), "k": (200.0, 5.0, 5.0, 60.0)}
    devices = tuple(ProblemDevice(d, tier[d[0]], *power[d[0]], memory_bytes=memory if d == "e3" else None) for d in speed)
    rate = {("c", "e"): 1e7, ("c", "k"): 5e5, ("e", "k"): 5e5, ("k", "k"): 5e6, ("e", "e"): 1e7}
    links = tuple(Link(a, b, rate[(a[0], b[0])]) for a in speed for b in speed if a < b and (a[0], b[0]) in rate)
    compute = {n.name: {d: (n.flops + 1) / (1e9 * s) for d, s in speed.items()} for n in graph if not n.is_input}
    return Problem(graph, devices, links, "c1", compute, Objective.parse(objective))


@pytest.mark.parametrize("objective", ["latency", "energy_source", "energy_total"])
def test_dominated_devices_are_dropped_without_changing_the_optimum(objective):
    problem = twelve_like(objective)
    comp = compile_problem(problem)
    merge = dominated_devices(comp, [linear_form(comp, problem.objective)])
    names = problem.device_names
    kept = {names[d] for d in range(len(names)) if d not in merge}
    assert {"e1", "e2", "k1"} <= {names[d] for d in merge}  # slower copies of e3 and k2
    assert {"c1", "e3", "k2"} <= kept
    reduced = plan(problem, "ilp")
    full = plan(problem, "ilp", reduce_devices=False, warm_start=False)
    assert reduced.optimal and full.optimal
    assert reduced.objective_value == pytest.approx(full.objective_value, rel=1e-9)
    # a memory limit on the fast edge keeps the slower ones: they may be needed
    limited = twelve_like(objective, memory=1)
    comp = compile_problem(limited)
    merge = dominated_devices(comp, [linear_form(comp, limited.objective)])
    assert limited.device_index("e3") not in merge.values()


def test_the_model_is_tight_where_transfers_matter():
    problem = twelve_like("latency")
    comp = compile_problem(problem)
    form = linear_form(comp, problem.objective)
    model = build_milp(comp, form, {}, list(range(len(problem.devices))))
    # no transfer variable for a tensor to a device none of its consumers can use, none on the diagonal
    assert all(a != d for (_, a, d) in model.z)
    # the LP relaxation of a placement's own transfers: setting x from a placement and z at their least is feasible
    row = np.array([problem.device_index("e3" if not n.is_input and i % 2 else "c1") for i, n in enumerate(problem.graph)])
    values = model.column_values(comp, row)
    A = model.matrix()
    lhs = A @ values
    assert np.all(lhs >= np.array(model.row_lo) - 1e-9) and np.all(lhs <= np.array(model.row_hi) + 1e-9)
    cost = float(np.dot(model.c, values)) + model.offset
    assert cost == pytest.approx(evaluate(problem, dict(zip(problem.graph.names, (problem.device_names[d] for d in row),
                                                            strict=True))).objective_value, rel=1e-9)


@settings(max_examples=40, **SETTINGS)
@given(rng=st.randoms(use_true_random=False), n_nodes=st.integers(2, 7), n_devices=st.integers(2, 4), objective=OBJECTIVES)
@pytest.mark.slow
def test_no_planner_is_worse_than_the_cheap_candidates(rng, n_nodes, n_devices, objective):
    problem = hard_problem(rng, n_nodes, n_devices, objective, constrained=True)
    comp = compile_problem(problem)
    _, rows = cheap_rows(problem)
    batch = evaluate_many(comp, rows)
    feasible = batch.objective[batch.feasible]
    best = float(feasible.min()) if len(feasible) else math.inf
    quick = {"pso": {"population": 8, "iterations": 10}, "ga": {"population": 8, "generations": 10},
             "sa": {"chains": 2, "steps": 20}}
    for name in PLANNERS:
        planner = get_planner(name, **quick.get(name, {}))
        # panda is one slot of an online loop: its energy budget is a long-term average, not met per query
        if name in ("local", "all-on", "best-response", "panda") or not planner.applicable(problem):
            continue
        result = planner.solve(problem)
        if math.isfinite(best):
            assert result.feasible, (name, result.note)
            assert result.objective_value <= best * (1 + 1e-9) + 1e-15, (name, result.note)


@pytest.mark.slow
def test_budget_infeasible_for_the_heuristics_start_is_repaired():
    # energy wants the layers home, a latency budget wants them away; a pin keeps the first layer home
    problem = twelve_like("energy_total")
    first = next(n.name for n in problem.graph if not n.is_input)
    pinned = problem.with_constraints(Constraints(pinned={first: "c1"}))
    fast = plan(pinned.with_objective(Objective("latency")), "ilp")
    frugal = plan(pinned, "ilp")
    assert frugal.latency_s > 1.5 * fast.latency_s  # the budget below binds
    budget = (fast.latency_s + frugal.latency_s) / 2
    constrained = problem.with_constraints(Constraints(latency_budget_s=budget, pinned={first: "c1"}))
    truth = plan(constrained, "ilp")
    assert truth.feasible and truth.optimal
    for name in ("greedy", "pso", "ga", "sa"):
        result = plan(constrained, name)
        assert result.feasible, (name, result.note)
        assert result.placement[first] == "c1"
