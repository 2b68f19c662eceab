"""The simulator's energy is what the devices draw, attributed to the queries in flight (no double counting).

docs/cost-model.md, "Energy in the simulator": a source device draws its idle power while at least one of its
queries is in flight, plus each activity's power over idle (computing; each channel it is an end of, by the
send/receive mix of the hops on it); a channel's time is split among the hops on it by their weights. The
checks recompute the devices' power over time independently from the queries' spans (the op log) and compare
it with the sum of the queries' figures; one query alone is the cost model's ``evaluate`` exactly.
"""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiercut.cost import evaluate
from tiercut.plan.synthetic import random_problem
from tiercut.problem import Problem
from tiercut.sim import BandwidthTrace, SimConfig, SimEnvironment, SimUser, simulate
from tiercut.sim.engine import ShareMeter
from tiercut.sim.model import TraceArrivals


def _random_placement(rng: random.Random, problem: Problem, p_source: float = 0.4) -> dict[str, str]:
    placement = {}
    for node in problem.graph:
        if node.is_input:
            placement[node.name] = problem.source
            continue
        row = problem.compute_s[node.name]
        others = [d for d in row if d != problem.source]
        placement[node.name] = problem.source if not others or rng.random() < p_source else rng.choice(others)
    return placement


def _reachable(problem: Problem, placement: dict[str, str]) -> bool:
    return all(problem.reachable(problem.source, d) for d in set(placement.values()))


def _device_power_integrals(result, problem: Problem, weights: dict[str, dict[str, float]]) -> tuple[float, float]:
    """(source device's energy over the time at least one query is in flight, every device's active energy),
    from the queries' spans alone: an elementary-interval sweep over every span and query bound."""
    src = problem.device(problem.source)
    queries = result.queries
    spans = [(q.user, s) for q in queries for s in q.spans]
    times = sorted({t for q in queries for t in (q.start_s, q.end_s)} | {t for _, s in spans for t in (s.start_s, s.end_s)})
    source_j = total_j = 0.0
    for a, b in itertools.pairwise(times):
        if b <= a:
            continue
        m = 0.5 * (a + b)
        computing: set[str] = set()
        channels: dict[str, list[tuple[float, str, str]]] = defaultdict(list)
        for user, s in spans:
            if s.start_s < m < s.end_s:
                if s.kind == "compute":
                    computing.add(s.where)
                else:
                    channels[s.where].append((weights[user].get(s.where, 1.0), s.device, s.peer))
        for d in computing:
            total_j += problem.device(d).power_compute_w * (b - a)
        power = src.power_idle_w + (src.power_compute_w - src.power_idle_w) * (problem.source in computing)
        for hops in channels.values():
            w_sum = sum(w for w, _, _ in hops)
            for w, sender, receiver in hops:
                f = w / w_sum
                total_j += f * (problem.device(sender).power_tx_w + problem.device(receiver).power_rx_w) * (b - a)
                if sender == problem.source:
                    power += f * (src.power_tx_w - src.power_idle_w)
                if receiver == problem.source:
                    power += f * (src.power_rx_w - src.power_idle_w)
        if any(q.start_s < m < q.end_s for q in queries):
            source_j += power * (b - a)
    return source_j, total_j


# ----------------------------------------------------------- the meter


def test_share_meter_credits_weights_and_sums_to_the_busy_time():
    env = SimEnvironment()
    meter = ShareMeter(env)
    credit: dict[str, float] = {}
    entered: dict[str, float] = {}

    def enter(name, w):
        entered[name] = meter.enter(w)

    def leave(name, w):
        credit[name] = meter.leave(w, entered[name])

    env.schedule(0.0, enter, "a", 3.0)
    env.schedule(1.0, enter, "b", 1.0)  # [1, 3): a gets 3/4, b 1/4
    env.schedule(3.0, leave, "a", 3.0)
    env.schedule(4.0, leave, "b", 1.0)  # [3, 4): b alone
    env.schedule(6.0, enter, "c", 2.0)  # after an empty gap: alone again
    env.schedule(6.5, leave, "c", 2.0)
    env.run()
    assert credit["a"] == pytest.approx(1.0 + 2.0 * 0.75)
    assert credit["b"] == pytest.approx(2.0 * 0.25 + 1.0)
    assert credit["c"] == pytest.approx(0.5)
    assert sum(credit.values()) == pytest.approx(4.0 + 0.5)  # the time someone was present


# ----------------------------------------------------------- alone: the cost model


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rng=st.randoms(use_true_random=False),
    n_nodes=st.integers(1, 6),
    n_devices=st.integers(2, 4),
    shape=st.sampled_from(["chain", "series-parallel", "dag"]),
)
def test_one_query_alone_is_the_cost_model_exactly(rng, n_nodes, n_devices, shape):
    problem = random_problem(rng, n_nodes=n_nodes, n_devices=n_devices, shape=shape, directional=0.4,
                             missing_source_link=0.3 if n_devices > 2 else 0.0)  # fmt: skip
    placement = _random_placement(rng, problem)
    if not _reachable(problem, placement):
        return
    ev = evaluate(problem, placement)
    user = SimUser("u", problem, placement=placement, arrivals=TraceArrivals((rng.uniform(0.0, 1.0),)))
    (q,) = simulate([user], SimConfig()).queries
    assert q.latency_s == pytest.approx(ev.latency_s, rel=1e-9)
    assert q.energy_source_j == pytest.approx(ev.energy_source_j, rel=1e-9, abs=1e-12)
    assert q.energy_total_j == pytest.approx(ev.energy_total_j, rel=1e-9, abs=1e-12)


# ----------------------------------------------------------- overlapping users: the devices' draw


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rng=st.randoms(use_true_random=False),
    n_users=st.integers(2, 4),
    n_nodes=st.integers(1, 5),
    n_devices=st.integers(2, 3),
    execution=st.sampled_from(["sequential", "overlapped"]),
    discipline=st.sampled_from(["ps", "fifo"]),
    weighted=st.booleans(),
    traced=st.booleans(),
)
def test_attributed_energy_sums_to_the_devices_draw(rng, n_users, n_nodes, n_devices, execution, discipline, weighted,
                                                    traced):  # fmt: skip
    """Several users on one source device, queries overlapping: the queries' source energies sum to the source's
    draw over the time any of them is in flight, and their total energies to every device's active draw, both
    recomputed from the spans; no query's figure is negative."""
    problem = random_problem(rng, n_nodes=n_nodes, n_devices=n_devices, shape="dag", directional=0.4,
                             missing_source_link=0.3 if n_devices > 2 else 0.0)  # fmt: skip
    users, weights = [], {}
    local = evaluate(problem, problem.local_placement()).latency_s
    for u in range(n_users):
        placement = _random_placement(rng, problem)
        if not _reachable(problem, placement):  # a device no path joins (relays are fine)
            placement = problem.local_placement()
        shares = {}
        if weighted:
            resources = [d.name for d in problem.devices] + [f"{lk.a}|{lk.b}" for lk in problem.links]
            resources += [f"{lk.a}>{lk.b}" for lk in problem.links] + [f"{lk.b}>{lk.a}" for lk in problem.links]
            shares = {r: rng.uniform(0.2, 3.0) for r in resources}
        times = tuple(sorted(rng.uniform(0.0, 2.0 * local) for _ in range(rng.randint(1, 4))))
        users.append(SimUser(f"u{u}", problem, placement=placement, arrivals=TraceArrivals(times), shares=shares))
        weights[f"u{u}"] = shares
    traces = ()
    if traced:
        link = problem.links[0]
        bw = link.bandwidth_bytes_per_s
        traces = (BandwidthTrace(link.a, link.b, ((0.0, bw), (0.5 * local, 0.3 * bw), (local, 0.0), (1.3 * local, 2 * bw))),)
    config = SimConfig(execution=execution, default_discipline=discipline, record_ops=True, traces=traces)
    result = simulate(users, config)
    assert result.queries and all(n == 0 for n in result.in_flight.values())
    source_j, total_j = _device_power_integrals(result, problem, weights)
    assert sum(q.energy_source_j for q in result.queries) == pytest.approx(source_j, rel=1e-7, abs=1e-12)
    assert sum(q.energy_total_j for q in result.queries) == pytest.approx(total_j, rel=1e-7, abs=1e-12)
    assert all(q.energy_total_j >= 0 for q in result.queries)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rng=st.randoms(use_true_random=False), k=st.integers(2, 5), n_nodes=st.integers(1, 5),
       discipline=st.sampled_from(["ps", "fifo"]))  # fmt: skip
def test_simultaneous_identical_queries_idle_once(rng, k, n_nodes, discipline):
    """k identical queries issued at once on one device: the device idles once for all of them, so their energies
    sum to at most one device idling for the span plus k times one query's activity over idle (at least the
    idling alone); all local, the device computes throughout and the sum is exactly k queries' compute energy."""
    problem = random_problem(rng, n_nodes=n_nodes, n_devices=2, shape="dag", directional=0.4)
    src = problem.device(problem.source)
    idle = min(src.power_idle_w, src.power_compute_w, src.power_tx_w, src.power_rx_w)  # activities draw >= idle
    problem = replace(problem, devices=tuple(replace(d, power_idle_w=idle) if d.name == problem.source else d
                                             for d in problem.devices))  # fmt: skip
    config = SimConfig(default_discipline=discipline)
    for placement in (_random_placement(rng, problem), problem.local_placement()):
        ev = evaluate(problem, placement)
        activity_j = ev.energy_source_j - idle * ev.latency_s  # one query's draw over idle
        result = simulate([SimUser(f"u{i}", problem, placement=placement, arrivals=TraceArrivals((0.0,))) for i in range(k)],
                          config)  # fmt: skip
        span = max(q.end_s for q in result.queries) - min(q.start_s for q in result.queries)
        energy = sum(q.energy_source_j for q in result.queries)
        assert energy <= idle * span + k * activity_j + 1e-9 * (1 + energy)
        assert energy >= idle * span - 1e-9 * (1 + energy)
        assert sum(q.energy_total_j for q in result.queries) <= k * ev.energy_total_j * (1 + 1e-9) + 1e-12
    busy = sum(problem.compute_s[n.name][problem.source] for n in problem.graph if not n.is_input)
    assert span == pytest.approx(k * busy, rel=1e-9)  # local: the device computes all the time
    assert energy == pytest.approx(k * ev.energy_source_j, rel=1e-9)
    assert energy == pytest.approx(k * src.power_compute_w * busy, rel=1e-9)


def test_four_apps_on_one_phone_no_longer_pay_each_others_waiting():
    """The shared-phone case that found the bug: four apps' queries at once on one phone, all computed there.
    Before, each query charged the idle power while waiting behind the others (4 local queries of c s each:
    ``P_c c + P_idle (T_q - c)`` per query); now the phone's draw is 4 P_c c, nothing more."""
    from allocation_fixtures import panda_problem

    problem = panda_problem(4)
    local = problem.local_placement()
    ev = evaluate(problem, local)
    users = [SimUser(f"app{i}", problem, placement=local, arrivals=TraceArrivals((0.0,))) for i in range(4)]
    result = simulate(users, SimConfig())
    assert sum(q.energy_source_j for q in result.queries) == pytest.approx(4 * ev.energy_source_j, rel=1e-9)
    assert all(q.latency_s == pytest.approx(4 * ev.latency_s, rel=1e-9) for q in result.queries)  # they did wait
