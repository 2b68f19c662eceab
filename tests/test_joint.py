"""Several DNNs on shared devices (docs/cost-model.md "Several DNNs"): the shared-capacity model and its planners."""

from __future__ import annotations

import itertools
import json
import math
import random
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiercut.cost import evaluate
from tiercut.cost.joint import evaluate_joint
from tiercut.errors import TiercutError
from tiercut.plan import JOINT_PLANNERS, get_joint_planner, plan_joint
from tiercut.plan.joint import TIE_RTOL
from tiercut.plan.synthetic import random_problem
from tiercut.problem import JointPlan, JointProblem, Objective, Problem, UserProblem

SETTINGS = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
OBJECTIVES = st.sampled_from([Objective("throughput"), Objective("latency", {}, "mean"), Objective("latency", {}, "max")])
THROUGHPUT = st.sampled_from([Objective("throughput"), Objective("throughput", {}, "max")])


def joint_problem(rng: random.Random, n_models: int, n_devices: int, max_nodes: int, objective: Objective,
                  constrained: bool = False) -> JointProblem:
    """Random models over one random environment; ``constrained``: memory limits, and each model's own budgets
    and pins (random_problem's)."""
    base = random_problem(rng, n_nodes=2, n_devices=n_devices, constraints=constrained)
    models = []
    for m in range(n_models):
        p = random_problem(rng, n_nodes=rng.randint(1, max_nodes), n_devices=n_devices, missing_compute=0.2,
                           constraints=constrained)
        source = rng.choice(base.device_names)
        compute = {n: {**row, source: row.get(source, 0.05)} for n, row in p.compute_s.items()}
        pins = {n: d for n, d in p.constraints.pinned.items() if d in compute[n]}
        problem = Problem(p.graph, base.devices, base.links, source, compute,
                          constraints=replace(p.constraints, pinned=pins))
        models.append(UserProblem(f"m{m}", problem, rng.uniform(0.5, 5.0)))
    return JointProblem(tuple(models), objective)


def check_joint_against_brute_force(problem: JointProblem) -> None:
    truth = plan_joint(problem, "joint-brute-force")
    joint = plan_joint(problem, "joint-ilp")
    alone = plan_joint(problem, "independent")
    assert joint.feasible == truth.feasible, joint.note
    assert joint.optimal == truth.feasible
    if truth.feasible:
        assert joint.objective_value == pytest.approx(truth.objective_value, rel=1e-6, abs=1e-12)
    if alone.feasible:  # the joint plan is never worse than the independent plans under the shared-capacity model
        assert joint.feasible
        assert joint.objective_value <= alone.objective_value * (1 + 1e-9)
    if problem.objective.kind == "throughput" and truth.feasible:  # ties: the least latency (lexicographic)
        assert tie_latency(problem, joint) == pytest.approx(tie_latency(problem, truth), rel=1e-6, abs=1e-12)
        if alone.feasible and alone.objective_value <= joint.objective_value * (1 + TIE_RTOL):
            assert tie_latency(problem, joint) <= tie_latency(problem, alone) * (1 + 1e-9)


def tie_latency(problem: JointProblem, plan: JointPlan) -> float:
    """The latency a throughput tie is broken by: the objective's aggregate (mean per query, or max)."""
    return plan.latency_max_s if problem.objective.aggregate == "max" else plan.latency_mean_s


def every_joint_placement(problem: JointProblem):
    """Every joint placement's evaluation, enumerated here (the test's own reference, not the planner's)."""
    from tiercut.cost import compile_problem, decode

    per_model = []
    for m in problem.models:
        comp = compile_problem(m.problem)
        rows = itertools.product(*[np.flatnonzero(comp.allowed[v]) for v in range(comp.n_nodes)])
        per_model.append([decode(comp, np.array(row, dtype=np.int64)) for row in rows])
    for combo in itertools.product(*per_model):
        placements = {m.name: p for m, p in zip(problem.models, combo, strict=True)}
        yield placements, evaluate_joint(problem, placements)


@settings(max_examples=5, **SETTINGS)
@given(rng=st.randoms(use_true_random=False), objective=OBJECTIVES)
def test_joint_ilp_equals_brute_force_fast_lane(rng, objective):
    check_joint_against_brute_force(joint_problem(rng, 2, 2, 2, objective))


@settings(max_examples=40, **SETTINGS)
@given(rng=st.randoms(use_true_random=False), n_models=st.integers(1, 3), n_devices=st.integers(2, 3),
       objective=OBJECTIVES, constrained=st.booleans())
@pytest.mark.slow
def test_joint_ilp_equals_brute_force_and_is_never_worse_than_planning_alone(rng, n_models, n_devices, objective,
                                                                               constrained):
    check_joint_against_brute_force(
        joint_problem(rng, n_models, n_devices, 4 if n_models < 3 else 2, objective, constrained))


@settings(max_examples=8, **SETTINGS)
@given(rng=st.randoms(use_true_random=False), objective=THROUGHPUT)
def test_throughput_ties_are_broken_by_least_latency_fast_lane(rng, objective):
    """Bottleneck equal to an enumeration's least; latency the least among the placements tied at it."""
    problem = joint_problem(rng, 2, 3, 2, objective)
    joint = plan_joint(problem, "joint-ilp")
    every = [ev for _, ev in every_joint_placement(problem) if ev.feasible]
    assert joint.feasible == bool(every)
    if not every:
        return
    least = min(ev.max_utilisation for ev in every)
    tied = [ev for ev in every if ev.max_utilisation <= least * (1 + TIE_RTOL)]
    best = min(ev.latency_max_s if objective.aggregate == "max" else ev.latency_mean_s for ev in tied)
    assert joint.max_utilisation == pytest.approx(least, rel=1e-6, abs=1e-12)
    assert tie_latency(problem, joint) == pytest.approx(best, rel=1e-6, abs=1e-12)
    truth = plan_joint(problem, "joint-brute-force")
    assert truth.max_utilisation == pytest.approx(least, rel=1e-9, abs=1e-12)
    assert tie_latency(problem, truth) == pytest.approx(best, rel=1e-9, abs=1e-12)


@settings(max_examples=40, **SETTINGS)
@given(rng=st.randoms(use_true_random=False), n_models=st.integers(1, 3), n_devices=st.integers(2, 3),
       objective=THROUGHPUT, constrained=st.booleans())
@pytest.mark.slow
def test_throughput_tie_break_equals_brute_force_and_never_loses_to_planning_alone(rng, n_models, n_devices,
                                                                                   objective, constrained):
    check_joint_against_brute_force(
        joint_problem(rng, n_models, n_devices, 4 if n_models < 3 else 2, objective, constrained))


def test_the_tie_break_lowers_latency_at_the_same_bottleneck():
    """Model a's node is slow everywhere, so its device is the bottleneck whatever model b does; b's placement is
    free up to that bottleneck, and the plan takes its fastest one (not merely any of the tied ones)."""
    rng = random.Random(4)
    base = random_problem(rng, n_nodes=1, n_devices=2, shape="chain")
    models = []
    for name, compute in (("a", {"d0": 10.0, "d1": 10.0}), ("b", {"d0": 2.0, "d1": 0.5})):
        p = random_problem(rng, n_nodes=1, n_devices=2, shape="chain", extra_outputs=0.0)
        node = p.graph.nodes[-1].name
        models.append(UserProblem(name, Problem(p.graph, base.devices, base.links, "d0", {node: compute}), 1.0))
    problem = JointProblem(tuple(models), Objective("throughput"))
    joint = plan_joint(problem, "joint-ilp")
    truth = plan_joint(problem, "joint-brute-force")
    every = [(p, ev) for p, ev in every_joint_placement(problem) if ev.feasible]
    least = min(ev.max_utilisation for _, ev in every)
    tied = [(p, ev) for p, ev in every if ev.max_utilisation <= least * (1 + TIE_RTOL)]
    assert len({ev.latency_mean_s for _, ev in tied}) > 1  # the tie is real: the tied placements differ in latency
    best = min(ev.latency_mean_s for _, ev in tied)
    for plan in (joint, truth):
        assert plan.max_utilisation == pytest.approx(least, rel=1e-12)
        assert plan.latency_mean_s == pytest.approx(best, rel=1e-12)


def test_joint_beats_independent_when_both_models_want_the_same_server():
    """Two models alone both move to the fast server; together they overload it, and the joint plan spreads them."""
    rng = random.Random(4)
    base = random_problem(rng, n_nodes=1, n_devices=3, shape="chain")
    models = []
    for m in range(2):
        p = random_problem(rng, n_nodes=1, n_devices=3, shape="chain", extra_outputs=0.0)
        node = p.graph.nodes[-1].name
        compute = {node: {"d0": 1.0, "d1": 0.2, "d2": 0.3}}
        models.append(UserProblem(f"m{m}", Problem(p.graph, base.devices, base.links, "d0", compute), 1.0))
    problem = JointProblem(tuple(models), Objective("throughput"))
    alone = plan_joint(problem, "independent")
    joint = plan_joint(problem, "joint-ilp")
    assert alone.utilisation["d1"] == pytest.approx(0.4)  # both on d1
    assert joint.max_utilisation < alone.max_utilisation
    assert joint.optimal


def test_joint_figures_recompute_from_the_json():
    problem = joint_problem(random.Random(9), 2, 3, 4, Objective("throughput"))
    result = plan_joint(problem)
    data = json.loads(json.dumps({"problem": problem.to_dict(), "plan": result.to_dict()}))
    again = JointProblem.from_dict(data["problem"])
    plan_again = JointPlan.from_dict(data["plan"])
    ev = evaluate_joint(again, plan_again.placements)
    assert plan_again.utilisation == pytest.approx(dict(ev.utilisation), rel=1e-12)
    assert plan_again.max_utilisation == pytest.approx(ev.max_utilisation, rel=1e-12)
    assert data["plan"]["throughput_scale"] == pytest.approx(1 / ev.max_utilisation, rel=1e-12)
    # utilisation is the sum over models of rate x each model's own stage time
    for stage, value in ev.utilisation.items():
        by_hand = sum(m.query_rate_hz * evaluate(m.problem, plan_again.placements[m.name]).pipeline_stages[stage]
                      for m in again.models)
        assert value == pytest.approx(by_hand, rel=1e-12)
    rates = [m.query_rate_hz for m in again.models]
    latencies = [plan_again.models[m.name].latency_s for m in again.models]
    assert plan_again.latency_mean_s == pytest.approx(sum(r * t for r, t in zip(rates, latencies)) / sum(rates))


def test_latency_objective_keeps_every_stage_within_capacity():
    problem = joint_problem(random.Random(2), 2, 2, 3, Objective("latency", {}, "mean"))
    heavy = JointProblem(tuple(UserProblem(m.name, m.problem, 1e6) for m in problem.models), problem.objective)
    result = plan_joint(heavy, "joint-ilp")
    assert not result.feasible and any("overloaded" in v for v in result.violations)
    light = plan_joint(problem, "joint-ilp")
    assert light.feasible and light.max_utilisation <= 1.0


@pytest.mark.parametrize("name", list(JOINT_PLANNERS))
def test_joint_planners_document_themselves(name):
    cls = JOINT_PLANNERS[name]
    assert cls.name == name
    for attr in ("summary", "reference", "guarantee", "complexity"):
        assert getattr(cls, attr).strip()
    assert get_joint_planner(name).get_params() == cls().get_params()


def test_bad_joint_problems_are_one_line_errors():
    problem = joint_problem(random.Random(1), 2, 2, 2, Objective("throughput"))
    a, b = problem.models
    cases = [
        (lambda: JointProblem((a, UserProblem("m0", b.problem, 1.0))), "two models named"),
        (lambda: JointProblem((a, UserProblem("m1", b.problem, 0.0))), "rate > 0"),
        (lambda: JointProblem((a, UserProblem("m1", b.problem, math.nan))), "rate > 0"),
        (lambda: JointProblem((a, b), Objective("cost")), "throughput or latency"),
        (lambda: JointProblem(()), "at least one model"),
        (lambda: plan_joint(problem, "bogus"), "not known"),
        (lambda: plan_joint(problem, "joint-brute-force", max_combinations=1), "use joint-ilp"),
        (lambda: plan_joint(problem, "independent", planner="nope"), "not a planner"),
        (lambda: plan_joint(problem, "joint-ilp", bogus=1), "has no setting"),
    ]
    other = random_problem(random.Random(3), n_nodes=2, n_devices=3)
    cases.append((lambda: JointProblem((a, UserProblem("m1", other, 1.0))), "share one environment"))
    for make, message in cases:
        with pytest.raises(TiercutError, match=message) as info:
            make()
        assert "\n" not in str(info.value)


def test_the_front_door_plans_a_joint_problem():
    import tiercut

    problem = joint_problem(random.Random(5), 2, 2, 2, Objective("throughput"))
    assert tiercut.plan(problem).algorithm == "joint-ilp"
    assert tiercut.plan(problem, "independent").algorithm == "independent"
