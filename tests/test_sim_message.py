"""Per-message seconds in the simulator occupy the devices (docs/cost-model.md "Per-message costs").

Each end of a hop does its ``message_s`` as work on its device's compute resource (a relay twice), before
sending / after receiving. A query alone on idle resources still takes exactly the cost model's latency and
energy; under saturation the simulated throughput is the cost model's ``1 / B(x)``, message seconds included in
the device stages (``pipeline_stages``), where a delay alone would let message handling overlap the compute.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from collections import defaultdict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiercut.cost import evaluate
from tiercut.env import Link
from tiercut.graph.types import LayerGraph, Node
from tiercut.plan.synthetic import random_problem
from tiercut.problem import Problem, ProblemDevice
from tiercut.sim import SimConfig, SimUser, simulate
from tiercut.sim.model import BackToBack, TraceArrivals
from tiercut.sim.program import MESSAGE, compile_program

SETTINGS = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}


def _with_message_costs(problem: Problem, rng: random.Random) -> Problem:
    """``problem`` through its JSON with nonzero per-message seconds on most devices, overhead bytes on some links."""
    data = json.loads(json.dumps(problem.to_dict()))
    for device in data["devices"]:
        device["message_s"] = rng.choice([0.0, rng.uniform(0.001, 0.5), rng.uniform(0.001, 0.5)])
    for link in data["links"]:
        link["message_overhead_bytes"] = rng.choice([0.0, rng.uniform(0.0, 2000.0)])
    return Problem.from_dict(data)


def _random_placement(rng: random.Random, problem: Problem) -> dict[str, str]:
    placement = {}
    for node in problem.graph:
        if node.is_input:
            placement[node.name] = problem.source
            continue
        others = [d for d in problem.compute_s[node.name] if d != problem.source]
        placement[node.name] = problem.source if not others or rng.random() < 0.3 else rng.choice(others)
    return placement


@settings(max_examples=40, **SETTINGS)
@given(
    rng=st.randoms(use_true_random=False),
    n_nodes=st.integers(1, 6),
    n_devices=st.integers(2, 4),
    shape=st.sampled_from(["chain", "series-parallel", "dag"]),
)
def test_one_query_alone_is_the_cost_model_exactly(rng, n_nodes, n_devices, shape):
    """Nonzero message seconds, relays (missing links), directional links: latency, source and total energy."""
    problem = _with_message_costs(
        random_problem(rng, n_nodes=n_nodes, n_devices=n_devices, shape=shape, directional=0.4,
                       missing_source_link=0.5 if n_devices > 2 else 0.0), rng)  # fmt: skip
    placement = _random_placement(rng, problem)
    if not all(problem.reachable(problem.source, d) for d in set(placement.values())):
        return
    ev = evaluate(problem, placement)
    if not ev.valid:
        return
    user = SimUser("u", problem, placement=placement, arrivals=TraceArrivals((rng.uniform(0.0, 1.0),)))
    (q,) = simulate([user], SimConfig(record_ops=True)).queries
    assert q.latency_s == pytest.approx(ev.latency_s, rel=1e-9)
    assert q.energy_source_j == pytest.approx(ev.energy_source_j, rel=1e-9, abs=1e-12)
    assert q.energy_total_j == pytest.approx(ev.energy_total_j, rel=1e-9, abs=1e-12)
    # every message second is a span of work on its device: the device stages' message part
    message_work: dict[str, float] = {}
    for span in q.spans:
        if span.kind == "message":
            message_work[span.where] = message_work.get(span.where, 0.0) + span.work_s
    compute_work: dict[str, float] = {}
    for node in problem.graph:
        if not node.is_input:
            d = placement[node.name]
            compute_work[d] = compute_work.get(d, 0.0) + problem.compute_s[node.name][d]
    for device, stage_s in ev.pipeline_stages.items():
        if "->" in device:
            continue
        assert compute_work.get(device, 0.0) + message_work.get(device, 0.0) == pytest.approx(stage_s, rel=1e-9, abs=1e-12)


def test_a_relay_does_its_message_seconds_twice_as_work():
    """c -> r -> s and back: the relay receives and sends each tensor, two message jobs per transfer on r."""
    problem = _relay_problem(message_c=0.01, message_r=0.05, message_s=0.001)
    program = compile_program(problem, {"a": "s"})
    on_r = [op for op in program.ops if op.kind == MESSAGE and op.where == "r"]
    assert len(on_r) == 4 and sum(op.amount for op in on_r) == pytest.approx(4 * 0.05)
    ev = evaluate(problem, {"a": "s"})
    (q,) = simulate([SimUser("u", problem, placement={"a": "s"}, max_queries=1)], SimConfig()).queries
    assert q.latency_s == pytest.approx(ev.latency_s, rel=1e-12)
    assert q.energy_total_j == pytest.approx(ev.energy_total_j, rel=1e-12)


def test_zero_message_seconds_add_no_operations():
    problem = _relay_problem(message_c=0.0, message_r=0.0, message_s=0.0)
    assert not any(op.kind == MESSAGE for op in compile_program(problem, {"a": "s"}).ops)


def _relay_problem(message_c: float, message_r: float, message_s: float, compute_s: float = 1.0) -> Problem:
    nodes = (Node("in", "input", out_bytes=100), Node("a", "conv2d", ("in",), out_bytes=10, is_output=True))
    devices = (
        ProblemDevice("c", "end", message_s=message_c, power_tx_w=2.0, power_rx_w=1.5, power_idle_w=0.3),
        ProblemDevice("r", "edge", message_s=message_r, power_tx_w=3.0, power_rx_w=2.5),
        ProblemDevice("s", "cloud", message_s=message_s),
    )
    links = (Link("c", "r", 1000.0, 0.01), Link("r", "s", 1000.0, 0.02))
    return Problem(LayerGraph(nodes), devices, links, "c", {"a": {"c": 5.0, "r": 5.0, "s": compute_s}})


def _pipeline_problem(message_end_s: float) -> Problem:
    """in -> a -> b -> c (output): a on the end device, b on the edge, c on the cloud; fast links."""
    nodes = (
        Node("in", "input", out_bytes=1000),
        Node("a", "conv2d", ("in",), out_bytes=2000),
        Node("b", "conv2d", ("a",), out_bytes=1000),
        Node("c", "linear", ("b",), out_bytes=100, is_output=True),
    )
    devices = (
        ProblemDevice("end", "end", message_s=message_end_s),
        ProblemDevice("edge", "edge", message_s=0.002),
        ProblemDevice("cloud", "cloud", message_s=0.002),
    )
    links = (Link("end", "edge", 1e6, 0.005, message_overhead_bytes=200.0), Link("edge", "cloud", 2e6, 0.01))
    compute = {"a": {"end": 0.020, "edge": 0.01, "cloud": 0.01}, "b": {"end": 1.0, "edge": 0.015, "cloud": 0.02},
               "c": {"end": 1.0, "edge": 1.0, "cloud": 0.015}}  # fmt: skip
    return Problem(LayerGraph(nodes), devices, links, "end", compute)


@pytest.mark.parametrize(("discipline", "extra_users", "rel"), [("fifo", 3, 0.01), ("ps", 8, 0.03)])
@pytest.mark.parametrize("execution", ["sequential", "overlapped"])
def test_saturated_throughput_is_the_cost_models_bottleneck_with_message_seconds(discipline, extra_users, rel, execution):
    """Several users on one end device, queries back to back (more in flight than the pipeline holds, the users
    joining one bottleneck apart): the end device's message handling (a send and a receive per query) makes it
    the bottleneck stage, and the simulated throughput is ``1 / B``; without the message seconds in the device
    stage it would be 1.5x higher. FIFO devices (one job at a time, like the runtime's) reach ``1 / B`` within
    1 %; processor sharing bunches queries (equal jobs started together finish together and move on as a
    convoy, leaving the bottleneck idle), so it needs more queries in flight and stays a little below."""
    placement = {"a": "end", "b": "edge", "c": "cloud"}
    problem = _pipeline_problem(message_end_s=0.005)
    ev = evaluate(problem, placement)
    b_s = ev.bottleneck_s
    assert max(ev.pipeline_stages, key=ev.pipeline_stages.get) == "end"
    assert ev.pipeline_stages["end"] == pytest.approx(0.020 + 2 * 0.005)
    compute_only_b_s = max(0.020, 0.015, 0.015)  # the devices' compute alone
    assert b_s > 1.4 * compute_only_b_s
    n_users = math.ceil(ev.latency_s / b_s) + extra_users
    duration_s = 400 * b_s
    users = [SimUser(f"u{k}", problem, placement=placement, arrivals=BackToBack(), join_s=k * b_s)
             for k in range(n_users)]  # fmt: skip
    result = simulate(users, SimConfig(duration_s=duration_s, execution=execution, default_discipline=discipline))
    warm_s = 50 * b_s
    done = [q for q in result.queries if warm_s <= q.end_s <= duration_s]
    throughput_qps = len(done) / (duration_s - warm_s)
    assert throughput_qps <= (1 + 1 / len(done)) / b_s  # never above the bottleneck's rate
    assert throughput_qps == pytest.approx(1 / b_s, rel=rel)


def test_message_seconds_share_the_device_with_compute_under_load():
    """Two queries at once on one source (processor sharing): the end device serves both queries' compute and
    message seconds, so together they take at least its work; a delay alone would have let them overlap."""
    placement = {"a": "end", "b": "edge", "c": "cloud"}
    problem = _pipeline_problem(message_end_s=0.05)
    ev = evaluate(problem, placement)
    users = [SimUser(f"u{k}", problem, placement=placement, max_queries=1) for k in range(2)]
    result = simulate(users, SimConfig())
    busy = {r.name: r.busy_s for r in result.resources}
    assert busy["end"] == pytest.approx(2 * ev.pipeline_stages["end"], rel=1e-9)
    assert all(q.latency_s > ev.latency_s for q in result.queries)


def _draw_with_messages(result, problem: Problem, discipline: str) -> tuple[float, float]:
    """(source device's energy over the time at least one query is in flight, every device's active energy),
    recomputed from the spans: a device serves its compute and message jobs (all its present jobs equally under
    processor sharing; under FIFO the one finishing first), a channel its hops equally (no shares)."""
    src = problem.device(problem.source)
    queries = result.queries
    spans = [s for q in queries for s in q.spans]
    times = sorted({t for q in queries for t in (q.start_s, q.end_s)} | {t for s in spans for t in (s.start_s, s.end_s)})
    source_j = total_j = 0.0

    for a, b in itertools.pairwise(times):
        if b <= a:
            continue
        m = 0.5 * (a + b)
        present = [s for s in spans if s.start_s < m < s.end_s]
        on: dict[str, list] = defaultdict(list)
        for s in present:
            on[s.where].append(s)
        power = src.power_idle_w
        for where, jobs in on.items():
            if jobs[0].kind != "transfer" and discipline == "fifo":
                jobs = [min(jobs, key=lambda s: s.end_s)]
            for s in jobs:
                f = 1.0 / len(jobs)
                if s.kind == "compute":
                    total_j += f * problem.device(where).power_compute_w * (b - a)
                    if where == problem.source:
                        power += f * (src.power_compute_w - src.power_idle_w)
                    continue
                sender, receiver = s.device, s.peer  # a transfer's or a message's hop
                total_j += f * (problem.device(sender).power_tx_w + problem.device(receiver).power_rx_w) * (b - a)
                if sender == problem.source:
                    power += f * (src.power_tx_w - src.power_idle_w)
                if receiver == problem.source:
                    power += f * (src.power_rx_w - src.power_idle_w)
        if any(q.start_s < m < q.end_s for q in queries):
            source_j += power * (b - a)
    return source_j, total_j



@settings(max_examples=30, **SETTINGS)
@given(
    rng=st.randoms(use_true_random=False),
    n_users=st.integers(2, 4),
    n_nodes=st.integers(1, 5),
    n_devices=st.integers(2, 4),
    execution=st.sampled_from(["sequential", "overlapped"]),
    discipline=st.sampled_from(["ps", "fifo"]),
)
def test_attributed_energy_with_message_work_sums_to_the_devices_draw(rng, n_users, n_nodes, n_devices, execution,
                                                                      discipline):  # fmt: skip
    """Several users on one source, queries overlapping, message seconds queueing with compute on the devices: the
    queries' source and total energies sum to the devices' draw recomputed from the spans (docs/cost-model.md,
    "Energy in the simulator"), nothing counted twice."""
    problem = _with_message_costs(
        random_problem(rng, n_nodes=n_nodes, n_devices=n_devices, shape="dag", directional=0.4,
                       missing_source_link=0.5 if n_devices > 2 else 0.0), rng)  # fmt: skip
    local = evaluate(problem, problem.local_placement()).latency_s
    users = []
    for u in range(n_users):
        placement = _random_placement(rng, problem)
        if not all(problem.reachable(problem.source, d) for d in set(placement.values())):
            placement = problem.local_placement()
        times = tuple(sorted(rng.uniform(0.0, 2.0 * local) for _ in range(rng.randint(1, 4))))
        users.append(SimUser(f"u{u}", problem, placement=placement, arrivals=TraceArrivals(times)))
    result = simulate(users, SimConfig(execution=execution, default_discipline=discipline, record_ops=True))
    assert result.queries and all(n == 0 for n in result.in_flight.values())
    source_j, total_j = _draw_with_messages(result, problem, discipline)
    assert sum(q.energy_source_j for q in result.queries) == pytest.approx(source_j, rel=1e-7, abs=1e-12)
    assert sum(q.energy_total_j for q in result.queries) == pytest.approx(total_j, rel=1e-7, abs=1e-12)
