"""PANDA's Lyapunov online control (tiercut.plan.panda): budget, bounded queue, V trade-off, privacy, baselines.

The long random trace is i.i.d. over four bandwidth levels (0.1x to 3x the link's nominal 2 MB/s) on a
device-edge chain where offloading is faster but costs radio energy (allocation_fixtures.panda_problem).
Checked constants (Neely 2010, ch. 4, module docstring of tiercut.plan.panda):
- queue: Q(t) <= V dT / delta + E_max - E_budget for every t (deterministic);
- energy: mean over N slots <= E_budget + Q_bound / N (deterministic);
- latency: mean <= offline oracle + B / V with B = max (E - E_budget)^2 / 2 (Neely's Theorem 4.8 in
  expectation; held by this 20,000-slot trace at every V checked).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from allocation_fixtures import panda_problem
from tiercut.cost import evaluate
from tiercut.errors import TiercutError
from tiercut.plan import get_planner
from tiercut.plan.panda import (
    build_menu,
    lyapunov_run,
    offline_oracle,
    slot_bandwidths,
    slot_problem,
    static_optimum,
)
from tiercut.sim import BandwidthTrace

VS = (0.01, 0.1, 1.0, 10.0, 100.0)


def _bandwidths(problem, n_slots: int, seed: int = 0) -> np.ndarray:
    levels = problem.links[0].bandwidth_bytes_per_s * np.array([0.1, 0.3, 1.0, 3.0])
    return np.random.default_rng(seed).choice(levels, size=n_slots)


def _series(problem, n_slots: int, seed: int = 0) -> list[BandwidthTrace]:
    """One slot a second: the simulator's trace type (tiercut.sim.BandwidthTrace)."""
    link = problem.links[0]
    return [BandwidthTrace.from_slots(link.a, link.b, _bandwidths(problem, n_slots, seed).tolist())]


@pytest.fixture(scope="module")
def menu_and_budget():
    problem = panda_problem()
    menu = build_menu(problem, _series(problem, 20_000), n_slots=20_000)
    frugal = max(float(menu.energy_j[s, h].min()) for s, h in enumerate(menu.hull))
    fastest = offline_oracle(menu, 1e9).mean_energy_j  # the budget-free policy's energy
    return problem, menu, frugal + 0.5 * (fastest - frugal)  # a budget that binds and is strictly feasible


def test_energy_within_budget_and_queue_bounded(menu_and_budget):
    _, menu, budget = menu_and_budget
    for V in VS:
        run = lyapunov_run(menu, V, budget)
        assert math.isfinite(run.queue_bound_j)
        assert run.max_queue_j <= run.queue_bound_j
        assert run.mean_energy_j <= budget + run.queue_bound_j / menu.n_slots
        assert run.mean_energy_j <= budget + run.queue_j[-1] / menu.n_slots + 1e-12  # the queue's own accounting


def test_latency_within_b_over_v_of_the_oracle(menu_and_budget):
    _, menu, budget = menu_and_budget
    oracle = offline_oracle(menu, budget)
    assert oracle.mean_energy_j == pytest.approx(budget, rel=1e-9)  # the budget binds: tuned to meet it exactly
    assert oracle.multiplier > 0
    for V in VS:
        run = lyapunov_run(menu, V, budget)
        assert run.mean_latency_s <= oracle.mean_latency_s + run.drift_constant / V
        assert run.mean_latency_s >= oracle.mean_latency_s * (1 - 1e-3)  # the oracle is (nearly) a lower bound


def test_v_traces_a_monotone_trade_off(menu_and_budget):
    _, menu, budget = menu_and_budget
    runs = [lyapunov_run(menu, V, budget) for V in VS]
    for a, b in itertools.pairwise(runs):
        assert b.mean_latency_s <= a.mean_latency_s + 1e-12
        assert b.mean_energy_j >= a.mean_energy_j - 1e-12
        assert b.max_queue_j >= a.max_queue_j - 1e-12
    assert runs[-1].mean_latency_s < runs[0].mean_latency_s


def test_beats_the_static_optimum(menu_and_budget):
    _, menu, budget = menu_and_budget
    static = static_optimum(menu, budget)
    oracle = offline_oracle(menu, budget)
    assert static.mean_energy_j <= budget
    assert oracle.mean_latency_s <= static.mean_latency_s
    assert lyapunov_run(menu, 10.0, budget).mean_latency_s < static.mean_latency_s


def test_each_slot_is_the_registered_planners_choice(menu_and_budget):
    """The run's choice in a slot minimises V T + Q E as the 'panda' planner (exact ILP) finds it."""
    problem, menu, budget = menu_and_budget
    V = 1.0
    run = lyapunov_run(menu, V, budget)
    series = _bandwidths(problem, 20_000)
    for t in (0, 1, 7, 500, 19_999):
        sp = slot_problem(problem, {problem.links[0].key: series[t]})
        q = float(run.queue_j[t])
        planned = get_planner("panda", V=V, queue_j=q).solve(sp)
        ev = evaluate(sp, planned.placement)
        chosen = V * run.latency_s[t] + q * run.energy_j[t]
        assert chosen <= V * ev.latency_s + q * ev.energy_source_j + 1e-9 * chosen


def test_privacy_pins_hold_in_every_slot():
    problem = panda_problem(pinned=2)
    menu = build_menu(problem, _series(problem, 200, seed=3), n_slots=200)
    run = lyapunov_run(menu, 1.0, 0.45)
    for k in set(run.choice.tolist()):
        placement = menu.choices[k].placement
        assert placement["l0"] == "phone" and placement["l1"] == "phone"


def test_dvfs_levels_scale_time_and_cubic_power():
    problem = panda_problem()
    slow = slot_problem(problem, {}, frequency=0.5)
    local = {n.name: "phone" for n in problem.graph}
    full, half = evaluate(slot_problem(problem, {}), local), evaluate(slow, local)
    assert half.latency_s == pytest.approx(2 * full.latency_s)
    assert half.busy_compute_s == pytest.approx(2 * full.busy_compute_s)
    # compute energy per query scales with f^2 (power f^3 over time 1/f)
    assert half.energy_source_j == pytest.approx(0.25 * full.energy_source_j)
    series = _series(problem, 400, seed=1)
    plain = build_menu(problem, series, n_slots=400)
    dvfs = build_menu(problem, series, n_slots=400, frequencies=(0.5, 0.75, 1.0))
    budget = 0.42
    assert offline_oracle(dvfs, budget).mean_latency_s <= offline_oracle(plain, budget).mean_latency_s + 1e-12
    assert {c.frequency for c in dvfs.choices} > {1.0}


def test_traces_are_sampled_at_slot_starts_as_the_simulator_replays_them():
    trace = BandwidthTrace("phone", "edge", ((0.0, 1e6), (2.5, 2e6), (4.0, 5e5)))
    assert trace.slots(1.0, 6).tolist() == [1e6, 1e6, 1e6, 2e6, 5e5, 5e5]
    late = BandwidthTrace("phone", "edge", ((1.5, 1e6),))  # before its first point the link keeps its figure
    problem = panda_problem()
    channels, table = slot_bandwidths(problem, [late], 1.0, 3)
    assert channels == (("phone", "edge"),) and table[:, 0].tolist() == [2e6, 2e6, 1e6]
    assert BandwidthTrace.from_slots("phone", "edge", [1e6, 1e6, 2e6], slot_s=0.5).points == ((0.0, 1e6), (1.0, 2e6))


def test_bad_input_is_a_one_line_error():
    problem = panda_problem()
    down = BandwidthTrace("phone", "edge", ((0.0, 1e6), (1.0, 0.0)))
    with pytest.raises(TiercutError, match="needs every slot's bandwidth > 0"):
        build_menu(problem, [down], n_slots=3)
    with pytest.raises(TiercutError, match="has no slots"):
        BandwidthTrace.from_slots("phone", "edge", ())
    with pytest.raises(TiercutError, match="which the problem does not have"):
        build_menu(problem, [BandwidthTrace("phone", "cloud", ((0.0, 1e6),))])
    with pytest.raises(TiercutError, match="two bandwidth traces"):
        build_menu(problem, [BandwidthTrace("phone", "edge", ((0.0, 1e6),)), BandwidthTrace("edge", "phone", ((0.0, 2e6),))])
    with pytest.raises(TiercutError, match="slot_s"):
        build_menu(problem, _series(problem, 3), slot_s=0)
    with pytest.raises(TiercutError, match="fractions of the nominal clock"):
        build_menu(problem, _series(problem, 3), frequencies=(1.5,))
    menu = build_menu(problem, _series(problem, 50), n_slots=50)
    with pytest.raises(TiercutError, match="V=0"):
        lyapunov_run(menu, 0, 0.5)
    with pytest.raises(TiercutError, match="energy budget"):
        lyapunov_run(menu, 1.0, -1.0)
    with pytest.raises(TiercutError, match="no single placement meets"):
        static_optimum(menu, 1e-6)
    with pytest.raises(TiercutError, match="setting V=-1"):
        get_planner("panda", V=-1).solve(problem)


def test_the_oracles_schedule_realises_its_lp_mix_within_the_budget(menu_and_budget):
    """What the simulator replays: one choice per slot, its total energy within the budget, its mean latency
    within one slot's worth of the LP mix's (the mix is split at one pair of choices)."""
    _, menu, budget = menu_and_budget
    oracle = offline_oracle(menu, budget)
    n = menu.n_slots
    assert oracle.energy_j.mean() <= budget * (1 + 1e-12)
    spread = float(np.nanmax(np.where(np.isfinite(menu.latency_s), menu.latency_s, np.nan)))
    assert oracle.mean_latency_s <= oracle.latency_s.mean() <= oracle.mean_latency_s + spread / n * 2
    for t in (0, 5, n - 1):  # each slot's choice is a hull choice of its state
        assert oracle.choice[t] in set(menu.hull[menu.state_of_slot[t]].tolist())
