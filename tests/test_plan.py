"""The contract every registered planner keeps, and the planners' specific behaviour.

The contract suite loops over the registry (networkx-style): a planner added
to ``PLANNERS`` is tested here without any edit.
"""

from __future__ import annotations

import inspect
import json
import math
import random

import pytest

from tiercut.cost import evaluate, evaluate_users
from tiercut.env import Link
from tiercut.errors import TiercutError
from tiercut.graph.types import LayerGraph, Node
from tiercut.plan import PLANNERS, Planner, applicable_planners, get_planner, plan
from tiercut.plan.synthetic import random_problem
from tiercut.problem import (
    METRICS,
    Constraints,
    MultiPlan,
    MultiUserProblem,
    Objective,
    Plan,
    Problem,
    ProblemDevice,
    UserProblem,
)

NAMES = list(PLANNERS)
#: the searching contract tests keep one population planner (ga) in the fast lane; sa and pso, the slowest there
#: (3-4 s each on two cores), run in `make test` (tests/lanes.py)
SEARCHING = [pytest.param(n, marks=pytest.mark.slow) if n in ("sa", "pso") else n for n in NAMES]


def contract_problems() -> list[Problem]:
    rng = random.Random(11)
    out = []
    for n_devices, shape, objective, constraints in (
        (2, "dag", "latency", False),
        (2, "chain", "energy_source", True),
        (3, "series-parallel", "weighted:latency=1,cost=2", False),
        (3, "dag", "energy_total", True),
        (1, "chain", "latency", False),
        (3, "dag", "throughput", False),
        (2, "chain", "throughput", True),
    ):
        out.append(random_problem(rng, n_nodes=6, n_devices=n_devices, shape=shape, objective=objective,
                                  constraints=constraints, missing_compute=0.1))
    return out


def multi_problem() -> MultiUserProblem:
    rng = random.Random(5)
    base = random_problem(rng, n_nodes=4, n_devices=3)
    users = []
    for u in range(2):
        p = random_problem(rng, n_nodes=4, n_devices=3)
        src = f"d{u}"
        compute = {n: {**row, src: row.get(src, 0.05)} for n, row in p.compute_s.items()}
        users.append(UserProblem(f"u{u}", Problem(p.graph, base.devices, base.links, src, compute)))
    return MultiUserProblem(tuple(users), Objective("latency", {}, "mean"))


# ---------------------------------------------------------------- contract
@pytest.mark.parametrize("name", NAMES)
def test_class_documents_itself(name):
    cls = PLANNERS[name]
    assert issubclass(cls, Planner)
    assert cls.name == name
    for attr in ("summary", "reference", "guarantee", "complexity"):
        assert getattr(cls, attr).strip(), f"{name} lacks {attr}"
    assert (inspect.getmodule(cls).__doc__ or "").strip(), f"{name}'s module has no docstring citing its paper"
    assert cls.single_user or cls.multi_user


@pytest.mark.parametrize("name", NAMES)
def test_settings_are_constructor_keywords(name):
    cls = PLANNERS[name]
    planner = cls()
    params = planner.get_params()
    signature = inspect.signature(cls.__init__)
    keywords = [p for p in signature.parameters if p != "self"]
    assert list(params) == keywords
    for key, value in params.items():
        default = signature.parameters[key].default
        assert default is not inspect.Parameter.empty, f"{name}.{key} has no default"
        assert value == default
        assert not isinstance(default, (list, dict, set)), f"{name}.{key} has a mutable default"
    again = get_planner(name, **params)
    assert again.get_params() == params
    with pytest.raises(TiercutError, match="has no setting 'bogus'"):
        get_planner(name, bogus=1)


@pytest.mark.parametrize("name", SEARCHING)
def test_plans_keep_the_contract(name):
    planner = get_planner(name)
    solved = 0
    for problem in contract_problems():
        if not planner.single_user:
            with pytest.raises(TiercutError):
                planner.solve(problem)
            continue
        reason = planner.objective_reason(problem) or planner.check(problem)
        if reason is not None:
            assert isinstance(reason, str) and reason
            assert not planner.applicable(problem)
            with pytest.raises(TiercutError, match=name):
                planner.solve(problem)
            continue
        result = planner.solve(problem)
        solved += 1
        assert isinstance(result, Plan) and result.algorithm == name
        assert set(result.placement) == {n.name for n in problem.graph}
        for node in problem.graph.inputs:
            assert result.placement[node.name] == problem.source
        assert result.settings == planner.get_params()
        assert result.solve_s >= 0
        # every figure is the cost model's, recomputed from the JSON alone
        data = json.loads(json.dumps({"problem": problem.to_dict(), "plan": result.to_dict()}))
        again = Problem.from_dict(data["problem"])
        plan_again = Plan.from_dict(data["plan"])
        ev = evaluate(again, plan_again.placement)
        for metric in METRICS:
            a, b = ev.metric(metric), plan_again.metric(metric)
            assert (math.isinf(a) and math.isinf(b)) or a == pytest.approx(b, rel=1e-9)
        assert plan_again.feasible == ev.feasible
        assert plan_again.violations == ev.violations
        # the pipelined figures (docs/cost-model.md "Throughput") recompute too
        if ev.valid and plan_again.pipeline_stages:
            assert plan_again.pipeline_stages == pytest.approx(dict(ev.pipeline_stages), rel=1e-9)
            assert plan_again.bottleneck_s == pytest.approx(ev.bottleneck_s, rel=1e-9)
            assert plan_again.bottleneck_s == pytest.approx(max(ev.pipeline_stages.values()), rel=1e-12)
            assert data["plan"]["throughput_qps"] == pytest.approx(1 / ev.bottleneck_s, rel=1e-9)
        if problem.objective.is_throughput:
            assert plan_again.objective_value == pytest.approx(ev.bottleneck_s, rel=1e-9)
        if result.optimal:
            assert result.feasible
            best = plan(problem, "brute-force")
            assert result.objective_value == pytest.approx(best.objective_value, rel=1e-7, abs=1e-12)
        # reproducible
        assert planner.solve(problem).placement == result.placement
    if planner.single_user:
        assert solved, f"{name} solved none of the contract problems"


@pytest.mark.parametrize("name", NAMES)
def test_multi_user_contract(name):
    planner = get_planner(name)
    mp = multi_problem()
    if not planner.multi_user:
        assert planner.check_multi(mp)
        with pytest.raises(TiercutError, match="single-user"):
            planner.solve_multi(mp)
        return
    result = planner.solve_multi(mp)
    assert isinstance(result, MultiPlan)
    # every figure recomputed from the JSON alone (with the plan's resource shares, if it has any)
    data = json.loads(json.dumps({"problem": mp.to_dict(), "plan": result.to_dict()}))
    again = MultiPlan.from_dict(data["plan"])
    ev = evaluate_users(MultiUserProblem.from_dict(data["problem"]), again.placements, again.shares)
    assert again.shares == result.shares
    assert result.latency_mean_s == pytest.approx(ev.latency_mean_s, rel=1e-9)
    assert result.objective_value == pytest.approx(ev.objective_value, rel=1e-9)
    assert result.feasible == ev.feasible
    assert plan(mp, name).placements == result.placements


@pytest.mark.parametrize("name", SEARCHING)
def test_constraint_violations_are_never_feasible(name):
    planner = get_planner(name)
    if not planner.single_user:
        return
    rng = random.Random(2)
    for _ in range(6):
        problem = random_problem(rng, n_nodes=6, n_devices=rng.choice([2, 3]), constraints=True, missing_compute=0.1)
        if not planner.applicable(problem):
            continue
        result = planner.solve(problem)
        ev = evaluate(problem, result.placement)
        assert result.feasible == ev.feasible
        if result.feasible:
            assert not ev.violations


# ---------------------------------------------------------------- registry / front door
def test_registry_has_every_family():
    for name in ("local", "all-on", "neurosurgeon", "mincut", "shortest-path", "dp", "ilp", "brute-force"):
        assert name in PLANNERS


def test_unknown_planner():
    with pytest.raises(TiercutError, match="planner 'magic' is not known"):
        get_planner("magic")


def test_applicable_planners():
    rng = random.Random(1)
    one = random_problem(rng, n_nodes=3, n_devices=1)
    names = applicable_planners(one)
    assert "mincut" not in names and "neurosurgeon" not in names and "local" in names
    big = random_problem(rng, n_nodes=30, n_devices=3)
    assert "brute-force" not in applicable_planners(big)


# ---------------------------------------------------------------- behaviour
def chain_problem(link_bps: float = 1e6) -> Problem:
    """input -> conv(big out) -> pool(small out) -> fc; the cloud is 10x faster."""
    graph = LayerGraph(
        (
            Node("x", "input", out_bytes=600_000),
            Node("conv", "conv2d", ("x",), param_bytes=1000, out_bytes=800_000),
            Node("pool", "maxpool2d", ("conv",), out_bytes=10_000),
            Node("fc", "linear", ("pool",), param_bytes=50_000_000, out_bytes=4_000, is_output=True),
        ),
        model="chain",
    )
    devices = (ProblemDevice("mobile", "end", 2.0, 1.0, 1.0, 0.1), ProblemDevice("cloud", "cloud", price_per_s=1.0))
    links = (Link("mobile", "cloud", link_bps, 0.0),)
    compute = {"conv": {"mobile": 0.05, "cloud": 0.005}, "pool": {"mobile": 0.001, "cloud": 0.0001},
               "fc": {"mobile": 0.5, "cloud": 0.05}}
    return Problem(graph, devices, links, "mobile", compute)


def test_neurosurgeon_picks_the_split_after_pool():
    result = plan(chain_problem(), "neurosurgeon")
    assert result.placement == {"x": "mobile", "conv": "mobile", "pool": "mobile", "fc": "cloud"}
    assert "split after 2 of 3" in result.note
    assert not result.optimal


def test_baselines():
    p = chain_problem()
    local = plan(p, "local")
    assert set(local.placement.values()) == {"mobile"}
    cloud = plan(p, "all-on")
    assert cloud.placement["x"] == "mobile" and cloud.placement["fc"] == "cloud"
    assert cloud.latency_s == pytest.approx(0.6 + 0.0551 + 0.004)
    with pytest.raises(TiercutError, match="not in the problem"):
        plan(p, "all-on", device="moon")


def test_memory_limit_changes_the_ilp_plan_and_mincut_reports_it():
    p = chain_problem(link_bps=1e7)
    free = plan(p, "ilp")
    assert free.placement["fc"] == "cloud"
    tight_devices = (p.devices[0], ProblemDevice("cloud", "cloud", price_per_s=1.0, memory_bytes=10_000))
    tight = Problem(p.graph, tight_devices, p.links, "mobile", p.compute_s)
    constrained = plan(tight, "ilp")
    assert constrained.feasible and constrained.optimal
    assert constrained.placement["fc"] == "mobile"
    cut = plan(tight, "mincut")
    # the min cut ignores memory and breaks it; every planner is checked against the cheap candidates, and the
    # feasible all-local placement wins by Deb's rule
    assert cut.feasible and not cut.optimal and "ilp" in cut.note and "cheap candidate local" in cut.note
    assert set(cut.placement.values()) == {"mobile"}


def test_infeasible_problem_gives_an_infeasible_plan():
    p = chain_problem()
    impossible = p.with_constraints(Constraints(latency_budget_s=1e-6))
    for name in ("ilp", "brute-force", "mincut", "dp", "shortest-path", "neurosurgeon", "local"):
        result = plan(impossible, name)
        assert not result.feasible and not result.optimal
        assert any("budget" in v for v in result.violations)
    assert "infeasible" in plan(impossible, "ilp").note


def test_budget_trades_latency_for_energy():
    p = chain_problem(link_bps=1e7).with_objective(Objective("energy_source"))
    fastest = plan(p.with_objective(Objective("latency")), "ilp")
    thrifty = plan(p, "ilp")
    bounded = plan(p.with_constraints(Constraints(latency_budget_s=fastest.latency_s * 1.0001)), "ilp")
    assert bounded.latency_s <= fastest.latency_s * 1.0001
    assert thrifty.energy_source_j <= bounded.energy_source_j + 1e-12
    best = plan(p.with_constraints(Constraints(latency_budget_s=fastest.latency_s * 1.0001)), "brute-force")
    assert bounded.objective_value == pytest.approx(best.objective_value)


def test_pinned_node_is_respected_by_exact_planners():
    p = chain_problem(link_bps=1e7).with_constraints(Constraints(pinned={"conv": "mobile", "fc": "mobile"}))
    for name in ("ilp", "mincut", "dp", "shortest-path", "brute-force"):
        result = plan(p, name)
        assert result.placement["conv"] == "mobile" and result.placement["fc"] == "mobile"
        assert result.feasible


def test_brute_force_refuses_huge_problems():
    rng = random.Random(0)
    big = random_problem(rng, n_nodes=40, n_devices=3)
    with pytest.raises(TiercutError, match="max_placements"):
        plan(big, "brute-force")


def test_ilp_time_limit_reports_gap_or_optimum():
    rng = random.Random(4)
    p = random_problem(rng, n_nodes=12, n_devices=3)
    result = plan(p, "ilp", time_limit_s=30.0)
    assert result.optimal and result.gap is not None and result.gap <= 1e-6


def test_mincut_on_three_devices_is_best_two_device_plan_not_optimal():
    rng = random.Random(9)
    p = random_problem(rng, n_nodes=6, n_devices=3)
    result = plan(p, "mincut")
    assert not result.optimal
    best_pair = min(plan(p.restricted_to(["d0", d]), "brute-force").objective_value for d in ("d1", "d2"))
    assert result.objective_value == pytest.approx(best_pair)
    server = plan(p, "mincut", server="d1")
    assert set(server.placement.values()) <= {"d0", "d1"}
    with pytest.raises(TiercutError, match="must not be the source"):
        plan(p, "mincut", server="d0")


def test_dp_marks_local_search_blocks_not_optimal():
    rng = random.Random(8)
    p = random_problem(rng, n_nodes=9, n_devices=3, shape="dag")
    exact = plan(p, "dp")
    assert exact.optimal
    assert exact.objective_value == pytest.approx(plan(p, "brute-force").objective_value)
    rough = plan(p, "dp", enumeration_limit=1)
    assert "local search" in rough.note and not rough.optimal
    assert rough.objective_value >= exact.objective_value - 1e-12
