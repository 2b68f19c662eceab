"""Routed and directional links: the cost model, its JSON and YAML forms, the simulator.

A transfer between devices without a direct link follows the fastest path
of links (store-and-forward; each hop's time, energy and price counted); a
link may give different figures per direction.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiercut.cost import build_routing, compile_problem, decode, evaluate, evaluate_many
from tiercut.env import LegacyFieldWarning, Link, environment_from_mapping
from tiercut.errors import TiercutError
from tiercut.graph.types import LayerGraph, Node
from tiercut.plan import plan
from tiercut.problem import Objective, Problem, ProblemDevice

SETTINGS = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}


def chain_problem(objective: str = "latency") -> Problem:
    """end -> edge -> cloud, no end-cloud link; the cloud is by far the fastest."""
    graph = LayerGraph(
        (
            Node("x", "input", out_bytes=100_000),
            Node("a", "conv2d", ("x",), param_bytes=1_000, out_bytes=50_000),
            Node("b", "linear", ("a",), param_bytes=2_000, out_bytes=1_000, is_output=True),
        ),
        model="chain",
    )
    devices = (
        ProblemDevice("end", "end", power_compute_w=2.0, power_tx_w=1.5, power_rx_w=0.7, power_idle_w=0.2),
        ProblemDevice("edge", "edge", power_compute_w=30.0, power_tx_w=3.0, power_rx_w=2.0, price_per_s=1e-4),
        ProblemDevice("cloud", "cloud", power_compute_w=200.0, power_tx_w=5.0, power_rx_w=4.0, price_per_s=1e-3),
    )
    links = (
        # up (end -> edge) slower than down
        Link("end", "edge", 1.0e6, 0.002, 0.0, bandwidth_bytes_per_s_ba=4.0e6, latency_s_ba=0.001),
        Link("edge", "cloud", 1.0e7, 0.01, 1e-9),
    )
    compute = {"a": {"end": 1.0, "edge": 0.1, "cloud": 0.001}, "b": {"end": 0.5, "edge": 0.05, "cloud": 0.0005}}
    return Problem(graph, devices, links, "end", compute, Objective.parse(objective), name="chain")


def test_all_cloud_over_a_relay_is_feasible_and_costs_the_hop_sum():
    problem = chain_problem()
    ev = evaluate(problem, {"a": "cloud", "b": "cloud"})
    assert ev.valid and ev.feasible
    up = [0.002 + 100_000 / 1.0e6, 0.01 + 100_000 / 1.0e7]  # x: end -> edge -> cloud
    down = [0.01 + 1_000 / 1.0e7, 0.001 + 1_000 / 4.0e6]  # b: cloud -> edge -> end, the downlink's own figures
    assert [(t.node, t.path) for t in ev.transfers] == [("x", ("end", "edge", "cloud")), ("b", ("cloud", "edge", "end"))]
    assert ev.transfers[0].hop_seconds == pytest.approx(tuple(up))
    assert ev.transfer_s == pytest.approx(sum(up) + sum(down))
    assert ev.latency_s == pytest.approx(0.0015 + sum(up) + sum(down))
    # energy: each hop's sender tx and receiver rx; the end only on the hops it is an end of
    devs = {d.name: d for d in problem.devices}
    hops = [("end", "edge", up[0]), ("edge", "cloud", up[1]), ("cloud", "edge", down[0]), ("edge", "end", down[1])]
    expected_total = 200.0 * 0.0015 + sum((devs[a].power_tx_w + devs[b].power_rx_w) * t for a, b, t in hops)
    assert ev.energy_total_j == pytest.approx(expected_total)
    assert ev.busy_tx_s == pytest.approx(up[0]) and ev.busy_rx_s == pytest.approx(down[1])
    idle = ev.latency_s - up[0] - down[1]
    assert ev.energy_source_j == pytest.approx(1.5 * up[0] + 0.7 * down[1] + 0.2 * idle)
    assert ev.cost == pytest.approx(1e-3 * 0.0015 + 1e-9 * (100_000 + 1_000))  # only the edge-cloud hops charge
    # and the vectorised evaluator agrees
    batch = evaluate_many(problem, np.array([[0, 2, 2]]))  # x on end, a and b on cloud
    assert batch.latency_s[0] == pytest.approx(ev.latency_s) and batch.energy_source_j[0] == pytest.approx(ev.energy_source_j)


def test_exact_planners_use_the_relay():
    problem = chain_problem()
    truth = plan(problem, "brute-force")
    for name in ("ilp", "dp", "shortest-path", "mincut"):
        result = plan(problem, name)
        assert result.objective_value == pytest.approx(truth.objective_value, rel=1e-9), name
    assert truth.placement["a"] == "cloud"


def test_an_unreachable_device_makes_a_placement_invalid():
    problem = chain_problem()
    island = Problem(problem.graph, (*problem.devices, ProblemDevice("moon", "cloud")), problem.links, "end",
                     {n: {**row, "moon": 1e-6} for n, row in problem.compute_s.items()})
    ev = evaluate(island, {"a": "moon", "b": "end"})
    assert not ev.valid and "no path of links" in ev.violations[0]
    assert not island.reachable("end", "moon") and island.reachable("end", "cloud")
    assert plan(island, "ilp").placement["a"] != "moon"


def test_the_best_path_depends_on_the_tensor_size():
    # a direct link with low latency but little bandwidth, and a relayed path with much bandwidth
    links = (Link("p", "c", 1.0e5, 0.001), Link("p", "e", 1.0e7, 0.02), Link("e", "c", 1.0e7, 0.02))
    routing = build_routing(["p", "e", "c"], links)
    assert routing.path("p", "c", 100).devices == ("p", "c")
    assert routing.path("p", "c", 1_000_000).devices == ("p", "e", "c")
    assert routing.seconds("p", "c", 1_000_000) == pytest.approx(0.04 + 2 * 0.1)
    assert len(routing.candidates[("p", "c")]) == 2


def _all_paths_seconds(names, links, a, b, nbytes):
    hops = {(h.src, h.dst): h for link in links for h in link.directions()}
    best = math.inf
    others = [d for d in names if d not in (a, b)]
    for k in range(len(others) + 1):
        for middle in itertools.permutations(others, k):
            path = (a, *middle, b)
            steps = list(itertools.pairwise(path))
            if all(s in hops for s in steps):
                best = min(best, sum(hops[s].latency_s + nbytes / hops[s].bandwidth_bytes_per_s for s in steps))
    return best


@settings(max_examples=60, **SETTINGS)
@given(rng=st.randoms(use_true_random=False), n=st.integers(2, 6))
def test_routing_equals_the_best_of_every_simple_path(rng, n):
    names = [f"d{i}" for i in range(n)]
    links = []
    for i, j in itertools.combinations(range(n), 2):
        if rng.random() < 0.6:
            links.append(Link(names[i], names[j], rng.choice([1e3, 1e5, rng.uniform(1e3, 1e6)]), rng.uniform(0, 0.05), 0.0,
                              bandwidth_bytes_per_s_ba=rng.uniform(1e3, 1e6) if rng.random() < 0.5 else None))
    routing = build_routing(names, links)
    for a, b in itertools.permutations(names, 2):
        for nbytes in (0, 10, 1e4, 1e6, rng.uniform(0, 1e7)):
            got, want = routing.seconds(a, b, nbytes), _all_paths_seconds(names, links, a, b, nbytes)
            assert (math.isinf(got) and math.isinf(want)) or got == pytest.approx(want, rel=1e-9)


def test_directional_link_json_round_trip_and_legacy_field():
    link = Link("a", "b", 1.0, 0.1, 0.2, bandwidth_bytes_per_s_ba=3.0)
    data = link.to_dict()
    assert data["bandwidth_bytes_per_s"] == 1.0 and data["bandwidth_bytes_per_s_ba"] == 3.0 and "latency_s_ba" not in data
    assert Link.from_dict(data) == link
    back = link.direction("b", "a")
    assert (back.bandwidth_bytes_per_s, back.latency_s, back.price_per_byte) == (3.0, 0.1, 0.2)
    assert link.directional and not Link("a", "b", 1.0).directional
    with pytest.warns(LegacyFieldWarning, match="bandwidth_bps"):
        old = Link.from_dict({"a": "a", "b": "b", "bandwidth_bps": 5.0})
    assert old.bandwidth_bytes_per_s == 5.0
    with pytest.raises(TiercutError, match="keep bandwidth_bytes_per_s"):
        Link.from_dict({"a": "a", "b": "b", "bandwidth_bps": 5.0, "bandwidth_bytes_per_s": 5.0})
    problem = chain_problem()
    again = Problem.from_dict(json.loads(json.dumps(problem.to_dict())))
    assert again.links == problem.links
    assert evaluate(again, {"a": "cloud", "b": "cloud"}).latency_s == evaluate(problem, {"a": "cloud", "b": "cloud"}).latency_s


def _env(**link):
    return {
        "name": "e",
        "devices": [{"name": "phone", "tier": "end"}, {"name": "edge", "tier": "edge"}, {"name": "edge2", "tier": "edge"}],
        "links": [link],
    }


def test_yaml_up_is_a_to_b_and_down_is_b_to_a():
    env = environment_from_mapping(_env(a="phone", b="edge", up=731250, down=2.5e6, latency_s=0.01, latency_s_ba=0.002))
    link = env.link("phone", "edge")
    assert link.direction("phone", "edge").bandwidth_bytes_per_s == 731250
    assert link.direction("edge", "phone").bandwidth_bytes_per_s == 2.5e6
    assert link.direction("edge", "phone").latency_s == 0.002
    tiers = environment_from_mapping(_env(tiers=["end", "edge"], up=1.0, down=2.0))
    for edge in ("edge", "edge2"):
        assert tiers.link("phone", edge).direction("phone", edge).bandwidth_bytes_per_s == 1.0  # up: first tier -> second
        assert tiers.link("phone", edge).direction(edge, "phone").bandwidth_bytes_per_s == 2.0
    symmetric = environment_from_mapping(_env(a="phone", b="edge", up=7.0))
    assert not symmetric.link("phone", "edge").directional


@pytest.mark.parametrize(
    ("link", "message"),
    [
        ({"a": "phone", "b": "edge"}, "needs a rate"),
        ({"a": "phone", "b": "edge", "up": 1.0, "bandwidth_bytes_per_s": 1.0}, "not several"),
        ({"a": "phone", "b": "edge", "up": 1.0, "down": 2.0, "bandwidth_bytes_per_s_ba": 2.0}, "not both"),
        ({"a": "phone", "b": "edge", "up": "5.85 ms"}, "links.0.up: '5.85 ms' is a time, expected a rate like '20 Mbit/s'"),
        ({"a": "phone", "b": "edge", "up": 0}, "it must be finite and > 0 (bytes per second"),
        ({"tiers": ["edge", "edge"], "up": 1.0, "down": 2.0}, "no up or down direction"),
        ({"a": "phone", "b": "edge", "up": 1.0, "latency_s_ba": -1}, "latency_s_ba"),
    ],
)
def test_bad_link_fields_are_one_line_errors(link, message):
    with pytest.raises(TiercutError) as info:
        environment_from_mapping(_env(**link))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_legacy_yaml_field_is_read_with_a_warning():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        env = environment_from_mapping(_env(a="phone", b="edge", bandwidth_bps=1.0e6))
    assert env.link("phone", "edge").bandwidth_bytes_per_s == 1.0e6
    assert any(issubclass(w.category, LegacyFieldWarning) and "bandwidth_bps" in str(w.message) for w in caught)


def test_simulator_routes_the_hops_and_reproduces_the_cost_model():
    from tiercut.sim import SimConfig, SimUser, simulate
    from tiercut.sim.model import BackToBack
    from tiercut.sim.program import compile_program

    problem = chain_problem()
    placement = {"x": "end", "a": "cloud", "b": "cloud"}
    program = compile_program(problem, placement)
    transfers = [(op.src, op.dst, op.where) for op in program.ops if op.kind == 1]
    assert transfers == [("end", "edge", "end>edge"), ("edge", "cloud", "cloud|edge"), ("cloud", "edge", "cloud|edge"),
                         ("edge", "end", "edge>end")]
    user = SimUser("u", problem, placement=placement, arrivals=BackToBack(), max_queries=3)
    result = simulate([user], SimConfig())
    ev = evaluate(problem, placement)
    for query in result.queries:
        assert query.latency_s == pytest.approx(ev.latency_s, rel=1e-9)
        assert query.energy_source_j == pytest.approx(ev.energy_source_j, rel=1e-9)
        assert query.energy_total_j == pytest.approx(ev.energy_total_j, rel=1e-9)


@settings(max_examples=80, **SETTINGS)
@given(rng=st.randoms(use_true_random=False), n_nodes=st.integers(1, 8), n_devices=st.integers(2, 5))
@pytest.mark.slow
def test_vectorised_and_linear_forms_equal_the_scalar_model_with_routes_and_shared_weights(rng, n_nodes, n_devices):
    from tiercut.cost import linear_form, linear_value
    from tiercut.plan.synthetic import random_problem

    problem = random_problem(
        rng, n_nodes=n_nodes, n_devices=n_devices, objective="weighted:latency=1,energy_source=0.3,energy_total=0.1,cost=2",
        missing_compute=0.3, missing_link=0.4, missing_source_link=0.5, directional=0.5, shared_params=0.6,
        constraints=True,
    )
    comp = compile_problem(problem)
    D = len(problem.devices)
    gen = random.Random(rng.random())
    X = np.array([[gen.randrange(D) for _ in problem.graph] for _ in range(25)], dtype=np.int64)
    X[:, [i for i, n in enumerate(problem.graph) if n.is_input]] = problem.device_index(problem.source)
    batch = evaluate_many(comp, X)
    for metric in ("latency", "energy_source", "energy_total", "cost"):
        values = linear_value(comp, linear_form(comp, metric), X)
        finite = np.isfinite(batch.metric(metric))
        assert np.allclose(values[finite], batch.metric(metric)[finite], rtol=1e-9, atol=1e-12)
    for i, row in enumerate(X):
        ev = evaluate(problem, decode(problem, row))
        assert bool(batch.valid[i]) == ev.valid and bool(batch.feasible[i]) == ev.feasible
        for metric in ("latency", "energy_source", "energy_total", "cost"):
            a, b = float(batch.metric(metric)[i]), ev.metric(metric)
            assert (math.isinf(a) and math.isinf(b)) or a == pytest.approx(b, rel=1e-9, abs=1e-12)
        assert list(batch.memory_bytes[i]) == [ev.memory_bytes[d] for d in problem.device_names]


def test_uploads_to_a_server_behind_a_relay_take_the_routed_time():
    from tiercut.upload import check_upload_plan, plan_upload

    problem = chain_problem()
    placement = {"x": "end", "a": "cloud", "b": "cloud"}
    upload = plan_upload(problem, algorithm="direct", target=placement)
    assert upload.server == "cloud"
    part = upload.partitions[0]
    assert part.param_bytes == 3_000
    hops = [0.002 + 3_000 / 1.0e6, 0.01 + 3_000 / 1.0e7]  # end -> edge -> cloud
    assert part.upload_s == pytest.approx(sum(hops))
    pair = problem.restricted_to([problem.source, "cloud"])
    assert pair.device_names == ["end", "edge", "cloud"]  # the relay stays, computing nothing
    assert all("edge" not in row for row in pair.compute_s.values())
    check_upload_plan(pair, upload)
    assert upload.stages[-1].latency_s == pytest.approx(evaluate(problem, placement).latency_s)
