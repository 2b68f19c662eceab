"""Edgent and DDNN against brute force over (exit, placement) and over DDNN's mappings (issue 15, item 3)."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tiercut.errors import TiercutError
from tiercut.exits.cost import check_exit_plan, deployed_nodes, evaluate_expected
from tiercut.exits.synthetic import random_exit_problem
from tiercut.plan import PLANNERS, get_planner


def all_placements(ep, active):
    """Every placement of the nodes ``active`` deploys (inputs on the source)."""
    p = ep.problem
    nodes = [n.name for n in p.graph if n.name in deployed_nodes(ep, active) and not n.is_input]
    for choice in itertools.product(*(p.allowed_devices(n) for n in nodes)):
        yield dict(zip(nodes, choice, strict=True))


def brute_edgent(ep):
    """(feasible, accuracy, objective) of the best (exit, placement) pair by Edgent's rule."""
    best = None
    for e in ep.exits:
        for placement in all_placements(ep, [e.name]):
            ev = evaluate_expected(ep, placement, [e.name])
            if not ev.feasible:
                continue
            key = (ev.objective_value, -ev.accuracy) if ep.accuracy_min is not None else (-ev.accuracy, ev.objective_value)
            if best is None or key < best:
                best = key
    return best


def limits(rng, ep):
    """A latency SLO around the exits' spread, or an accuracy floor around the exits' accuracies (some infeasible)."""
    if rng.random() < 0.5:
        return ep.with_limits(latency_slo_s=rng.uniform(0.005, 0.4))
    return ep.with_limits(accuracy_min=rng.choice([e.accuracy for e in ep.exits] + [0.999]))


@pytest.mark.slow
@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6), n_devices=st.integers(1, 3), inner=st.sampled_from(["ilp", "brute-force"]),
       objective=st.sampled_from(["latency", "energy_source", "weighted:latency=1,cost=0.5"]))
def test_edgent_equals_brute_force(seed, n_devices, inner, objective):
    rng = random.Random(seed)
    ep = random_exit_problem(rng, n_devices=n_devices, n_exits=rng.randint(1, 3), n_layers=4, objective=objective,
                             memory=rng.random() < 0.3)
    ep = limits(rng, ep)
    plan = get_planner("edgent", inner=inner).solve(ep)
    assert check_exit_plan(ep, plan) == []
    assert len(plan.active) == 1  # right-sized: every query leaves at the chosen exit
    best = brute_edgent(ep)
    if best is None:
        assert not plan.feasible
        assert "no exit" in plan.note
        return
    assert plan.feasible and plan.optimal
    if ep.latency_slo_s is not None:
        assert plan.latency_s <= ep.latency_slo_s * (1 + 1e-9)  # the SLO is met whenever a choice meets it
        assert plan.accuracy == pytest.approx(-best[0])
        assert plan.objective_value == pytest.approx(best[1], rel=1e-6, abs=1e-12)
    else:
        assert plan.accuracy >= ep.accuracy_min
        assert plan.objective_value == pytest.approx(best[0], rel=1e-6, abs=1e-12)


def test_edgent_reports_an_impossible_slo_clearly():
    ep = random_exit_problem(random.Random(3), n_devices=2).with_limits(latency_slo_s=1e-9)
    plan = get_planner("edgent").solve(ep)
    assert not plan.feasible
    assert "no exit point meets the latency SLO 1e-06 ms" in plan.note
    assert any("latency SLO" in v for v in plan.violations)
    # the closest miss is the fastest right-sized exit
    fastest = min(r["latency_s"] for r in plan.candidates)
    assert plan.latency_s == pytest.approx(fastest)


def test_edgent_reports_an_impossible_floor_clearly():
    ep = random_exit_problem(random.Random(4), n_devices=2).with_limits(accuracy_min=1.0)
    plan = get_planner("edgent").solve(ep)
    if max(e.accuracy for e in ep.exits) < 1.0:
        assert not plan.feasible and "no exit reaches accuracy 1.0000" in plan.note


def test_looser_slo_never_lowers_accuracy():
    ep = random_exit_problem(random.Random(9), n_devices=3, n_exits=3, n_layers=5)
    accs = []
    for slo in (0.02, 0.05, 0.1, 0.2, 0.5, 2.0):
        plan = get_planner("edgent").solve(ep.with_limits(latency_slo_s=slo))
        accs.append(plan.accuracy if plan.feasible else 0.0)
    assert accs == sorted(accs)


def ddnn_mappings(ep):
    """DDNN's mappings by brute force: each (local, edge or none, edge device, cloud device)."""
    p = ep.problem
    side = [e.name for e in ep.exits[:-1]]
    edges = [d.name for d in p.devices if d.tier == "edge"]
    clouds = [d.name for d in p.devices if d.tier == "cloud"]
    for i, local in enumerate(side):
        for edge_exit in [*side[i + 1:], None]:
            if edge_exit and not edges:
                continue
            for edge in edges if edge_exit else [None]:
                for cloud in clouds:
                    t1 = deployed_nodes(ep, [local])
                    t2 = deployed_nodes(ep, [edge_exit]) - t1 if edge_exit else set()
                    placement = {n.name: (p.source if n.name in t1 or n.is_input else edge if n.name in t2 else cloud)
                                 for n in p.graph}
                    yield [local, *([edge_exit] if edge_exit else []), "final"], placement


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10**6), n_devices=st.integers(2, 4), slo=st.booleans())
def test_ddnn_is_the_best_tier_mapping(seed, n_devices, slo):
    rng = random.Random(seed)
    ep = random_exit_problem(rng, n_devices=n_devices, n_exits=rng.randint(1, 3), n_layers=5)
    if slo:
        ep = ep.with_limits(latency_slo_s=rng.uniform(0.02, 0.3))
    best, valid = None, False
    for active, placement in ddnn_mappings(ep):
        ev = evaluate_expected(ep, placement, active)
        valid |= ev.valid
        if ev.feasible and (best is None or ev.objective_value < best):
            best = ev.objective_value
    if not valid:  # some layer cannot run on its tier's device in every mapping
        with pytest.raises(TiercutError, match="no DDNN mapping can run"):
            get_planner("ddnn").solve(ep)
        return
    plan = get_planner("ddnn").solve(ep)
    assert check_exit_plan(ep, plan) == []
    assert plan.active[-1] == "final" and len(plan.active) >= 2
    local = ep.exit(plan.active[0])
    assert plan.placement[local.output] == ep.problem.source  # the local exit answers on the end device
    if best is None:
        assert not plan.feasible
    else:
        assert plan.feasible and plan.objective_value == pytest.approx(best)


def test_ddnn_three_tiers_each_answer_with_its_exit():
    rng = random.Random(2)
    ep = random_exit_problem(rng, n_devices=3, n_exits=2, n_layers=5)
    plan = get_planner("ddnn", local_exit="exit1", edge_exit="exit2").solve(ep)
    tiers = {d.name: d.tier for d in ep.problem.devices}
    answered = [tiers[plan.placement[ep.exit(a).output]] for a in plan.active]
    assert answered == ["end", "edge", "cloud"]
    assert sum(plan.exit_rates) == pytest.approx(1.0)


def test_exit_planners_on_plain_problems_and_bad_settings():
    ep = random_exit_problem(random.Random(1), n_devices=3)
    assert "edgent" in PLANNERS and "ddnn" in PLANNERS
    # a model without branches: Edgent is its exact partition, DDNN its cloud-only mapping
    plain = get_planner("edgent").solve(ep.problem)
    assert plain.objective_value == pytest.approx(get_planner("ilp").solve(ep.problem).objective_value)
    cloud = get_planner("ddnn").solve(ep.problem)
    assert {d for n, d in cloud.placement.items() if n != "x"} == {"d2"}
    with pytest.raises(TiercutError, match="not exact"):
        get_planner("edgent", inner="greedy").solve(ep)
    with pytest.raises(TiercutError, match="local exit 'exit7'"):
        get_planner("ddnn", local_exit="exit7").solve(ep)
    with pytest.raises(TiercutError, match="cloud-tier device"):
        get_planner("ddnn").solve(random_exit_problem(random.Random(1), n_devices=1))
