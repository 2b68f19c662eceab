"""The discrete-event simulator: resources, agreement with the analytic model, traces, users."""

from __future__ import annotations

import math
import random
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiercut.cost import evaluate
from tiercut.env import Link
from tiercut.errors import TiercutError
from tiercut.graph.types import LayerGraph, Node
from tiercut.problem import MultiUserProblem, Problem, ProblemDevice, UserProblem
from tiercut.sim import (
    BackToBack,
    BandwidthTrace,
    Periodic,
    Poisson,
    SimConfig,
    SimEnvironment,
    SimUser,
    TraceArrivals,
    compile_program,
    simulate,
)
from tiercut.sim.core import SharedResource
from tiercut.sim.replicate import rename_devices, rename_user_plan
from tiercut.upload import plan_multi_upload, plan_upload, user_plan_from_upload
from tiercut.upload.synthetic import random_upload_problem


# ---------------------------------------------------------------- resources
def _finish_times(discipline, jobs, rate=1.0, changes=()):
    env = SimEnvironment()
    res = SharedResource(env, "r", rate, discipline)
    done = {}
    for name, at, amount in jobs:
        env.schedule(at, lambda n=name, a=amount: res.submit(a, lambda n=n: done.__setitem__(n, env.now)))
    for at, new_rate in changes:
        env.schedule(at, res.set_rate, new_rate)
    env.run()
    return done


def test_processor_sharing_and_fifo():
    jobs = [("a", 0.0, 2.0), ("b", 0.0, 2.0), ("c", 1.0, 0.5)]
    ps = _finish_times("ps", jobs)
    # 0-1: a, b at 1/2 each (0.5 done); 1-2.5: three jobs at 1/3: c done at 2.5, a, b have 1.0 done;
    # then two jobs at 1/2: 1.0 more each takes 2.0 -> 4.5
    assert ps == pytest.approx({"c": 2.5, "a": 4.5, "b": 4.5})
    fifo = _finish_times("fifo", jobs)
    assert fifo == pytest.approx({"a": 2.0, "b": 4.0, "c": 4.5})


def test_rate_changes_and_stalls():
    # 10 units at rate 1; at t=5 the rate doubles: 5 left at 2/s -> 7.5
    assert _finish_times("ps", [("a", 0.0, 10.0)], changes=[(5.0, 2.0)]) == pytest.approx({"a": 7.5})
    assert _finish_times("fifo", [("a", 0.0, 10.0)], changes=[(5.0, 2.0)]) == pytest.approx({"a": 7.5})
    # a link that goes down at 2 and back at 6 stalls the job for 4 s
    assert _finish_times("ps", [("a", 0.0, 5.0)], changes=[(2.0, 0.0), (6.0, 1.0)]) == pytest.approx({"a": 9.0})
    with pytest.raises(TiercutError, match="discipline"):
        SharedResource(SimEnvironment(), "r", 1.0, "lifo")
    with pytest.raises(TiercutError, match="rate"):
        SharedResource(SimEnvironment(), "r", -1.0)


# ---------------------------------------------------------------- the event loop
def test_event_loop_runs_processes_timers_and_events_in_time_order():
    env = SimEnvironment()
    log = []
    done = env.event()

    def waiter():
        value = yield done
        log.append(("waiter woke", env.now, value))

    def ticker():
        for _ in range(3):
            yield env.timeout(1.5)
            log.append(("tick", env.now, None))
        done.succeed("go")
        log.append(("succeeded", env.now, None))

    env.process(waiter())
    env.process(ticker())
    env.schedule(1.5, lambda: log.append(("timer", env.now, None)))
    env.run()
    # same-time entries run in scheduling order (the timer was scheduled before the processes' first step);
    # a waiter wakes after the succeeding step, at the same time
    assert log == [
        ("timer", 1.5, None), ("tick", 1.5, None), ("tick", 3.0, None), ("tick", 4.5, None),
        ("succeeded", 4.5, None), ("waiter woke", 4.5, "go"),
    ]
    assert env.events == 7  # two process starts, three timeouts, one timer, one success


def test_event_loop_run_until_stops_before_due_entries_and_sets_the_clock():
    env = SimEnvironment()
    fired = []
    env.schedule(2.0, fired.append, 2.0)
    env.schedule(5.0, fired.append, 5.0)
    env.run(until=5.0)
    assert fired == [2.0] and env.now == 5.0  # an entry due at ``until`` waits for the next run
    env.run(until=6.0)
    assert fired == [2.0, 5.0] and env.now == 6.0


def test_event_loop_rejects_misuse():
    env = SimEnvironment()
    with pytest.raises(TiercutError, match="in the past"):
        env.schedule(-1.0, print)
    event = env.event()
    event.succeed()
    with pytest.raises(TiercutError, match="twice"):
        event.succeed()

    def bad():
        yield 3

    env.process(bad())
    with pytest.raises(TiercutError, match="yielded int"):
        env.run()
    env.run(until=10.0)
    with pytest.raises(TiercutError, match="clock already reads"):
        env.run(until=1.0)


def test_a_process_waiting_on_an_event_that_already_happened_resumes_at_once():
    env = SimEnvironment()
    event = env.event()
    event.succeed(7)
    seen = []

    def late():
        yield env.timeout(1.0)
        seen.append((yield event))
        seen.append(env.now)

    env.process(late())
    env.run()
    assert seen == [7, 1.0]


# ---------------------------------------------------------------- agreement with the analytic model
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rng=st.randoms(use_true_random=False),
    n_nodes=st.integers(1, 7),
    shape=st.sampled_from(["chain", "series-parallel", "dag"]),
    algorithm=st.sampled_from(["direct", "ionn", "efficiency", "recursive-efficiency"]),
)
def test_one_user_alone_agrees_with_the_analytic_model(rng, n_nodes, shape, algorithm):
    problem = random_upload_problem(rng, n_nodes=n_nodes, shape=shape)
    plan = plan_upload(problem, algorithm)
    metrics = plan.metrics
    count = max(metrics.n, metrics.queries_done_by_upload_end + 1) + 2
    user = SimUser("u", problem, plan=user_plan_from_upload("u", plan), max_queries=count)
    result = simulate([user], SimConfig(upload_shares_link=False))
    measured = result.upload_metrics("u", metrics.n)
    assert measured.queries_done_by_upload_end == metrics.queries_done_by_upload_end
    for key in ("time_for_n_queries_s", "mean_latency_during_upload_s", "upload_end_s"):
        assert getattr(measured, key) == pytest.approx(getattr(metrics, key), rel=1e-9, abs=1e-12), key
    for arrival, part in zip(result.user_arrivals("u"), plan.partitions, strict=True):
        assert arrival.arrives_s == pytest.approx(part.arrives_s, rel=1e-9)
    previous_end = 0.0
    for q in result.user_queries("u"):
        assert q.start_s == pytest.approx(previous_end, rel=1e-12, abs=1e-15)
        stage = plan.stages[q.stage]
        assert q.latency_s == pytest.approx(stage.latency_s, rel=1e-9)
        ev = evaluate(problem, q.placement)
        assert q.energy_source_j == pytest.approx(ev.energy_source_j, rel=1e-9, abs=1e-12)
        assert q.energy_total_j == pytest.approx(ev.energy_total_j, rel=1e-9, abs=1e-12)
        assert q.bytes_moved == sum(t.out_bytes for t in ev.transfers)
        previous_end = q.end_s


def test_off_plan_arrival_orders_are_solved_on_the_fly():
    problem = random_upload_problem(random.Random(4), n_nodes=6, shape="chain", upload_queries=10)
    plan = plan_upload(problem, "recursive-efficiency")
    assert len(plan.partitions) >= 2
    user_plan = user_plan_from_upload("u", plan)
    stripped = replace(user_plan, stages=user_plan.stages[:1])  # the simulator must find the other stages itself
    n = plan.metrics.n
    a = simulate([SimUser("u", problem, plan=user_plan, max_queries=n + 2)], SimConfig(upload_shares_link=False))
    b = simulate([SimUser("u", problem, plan=stripped, max_queries=n + 2)], SimConfig(upload_shares_link=False))
    assert {q.stage for q in b.queries} >= {0, -1}
    for qa, qb in zip(a.user_queries("u"), b.user_queries("u"), strict=True):
        assert qb.latency_s == pytest.approx(qa.latency_s, rel=1e-9)


def test_overlapped_execution_runs_branches_in_parallel():
    nodes = (
        Node("in", "input", out_bytes=0),
        Node("a", "conv2d", ("in",), out_bytes=0),
        Node("b", "conv2d", ("in",), out_bytes=0),
        Node("c", "add", ("a", "b"), out_bytes=0, is_output=True),
    )
    devices = (ProblemDevice("client", "end"), ProblemDevice("server", "edge"))
    compute = {"a": {"client": 1.0, "server": 1.0}, "b": {"client": 1.0, "server": 1.0}, "c": {"client": 0.1, "server": 0.1}}
    problem = Problem(LayerGraph(nodes), devices, (Link("client", "server", 1e6, 0.0),), "client", compute)
    placement = {"in": "client", "a": "client", "b": "server", "c": "client"}
    user = SimUser("u", problem, placement=placement, max_queries=1)
    seq = simulate([user], SimConfig(execution="sequential")).queries[0].latency_s
    over = simulate([user], SimConfig(execution="overlapped")).queries[0].latency_s
    assert seq == pytest.approx(evaluate(problem, placement).latency_s)
    assert seq == pytest.approx(2.1)
    assert over == pytest.approx(1.1)
    program = compile_program(problem, placement, "overlapped")
    assert len(program.ops) == 5  # a; in -> server; b; b -> client; c
    chain = random_upload_problem(random.Random(2), n_nodes=5, shape="chain")
    local = compile_program(chain, chain.local_placement(), "overlapped")
    assert len(local.ops) == 1  # a chain on one device is one operation


# ---------------------------------------------------------------- contention, traces, arrivals
def _shared_scenario(seed: int = 1):
    rng = random.Random(seed)
    problem = random_upload_problem(rng, n_nodes=6, shape="series-parallel", upload_queries=8)
    plan = user_plan_from_upload("t", plan_upload(problem, "recursive-efficiency"))
    users = []
    for i in range(4):
        mapping = {"d0": f"client{i}"}  # four clients, one shared server d1
        users.append(
            SimUser(
                f"u{i}", rename_devices(problem, mapping), plan=rename_user_plan(plan, mapping, f"u{i}"),
                arrivals=[BackToBack(), Poisson(2.0), Periodic(0.3), BackToBack(think_s=0.2)][i], seed=i, join_s=0.5 * i,
            )
        )
    return problem, users


def test_queries_never_use_a_node_before_it_arrived():
    problem, users = _shared_scenario()
    duration = 40 * max(u.plan.stages[0].latency_s for u in users)
    traces = (BandwidthTrace("client0", "d1", ((0.0, 1e4), (duration / 3, 3e3), (duration / 2, 5e4))),)
    result = simulate(users, SimConfig(duration_s=duration, traces=traces, upload_shares_link=True))
    assert result.queries and result.arrivals
    arrived: dict[tuple[str, str, str], float] = {}
    for a in result.arrivals:
        for node in a.nodes:
            arrived[(a.user, a.server, node)] = a.arrives_s
    checked = 0
    for q in result.queries:
        for node, device in q.placement.items():
            if device.startswith("client") or problem.graph[node].param_bytes == 0:
                continue
            assert arrived[(q.user, device, node)] <= q.start_s
            checked += 1
    assert checked > 0
    # contention makes queries slower than alone, never faster
    for q in result.queries:
        stage_latency = min(s.latency_s for s in users[0].plan.stages)
        assert q.latency_s >= stage_latency * (1 - 1e-9)


def test_bandwidth_trace_slows_an_upload():
    problem = random_upload_problem(random.Random(5), n_nodes=4, shape="chain", link_latency_s=0.0)
    plan = plan_upload(problem, "direct")
    assert len(plan.partitions) == 1
    end = plan.partitions[0].arrives_s
    bandwidth = problem.link("d0", "d1").bandwidth_bytes_per_s
    trace = BandwidthTrace("d0", "d1", ((0.0, bandwidth), (end / 2, bandwidth / 4)))
    user = SimUser("u", problem, plan=user_plan_from_upload("u", plan), max_queries=1)
    result = simulate([user], SimConfig(traces=(trace,), upload_shares_link=False))
    # half the bytes at full speed, the other half at a quarter: end/2 + 4 * end/2
    assert result.arrivals[0].arrives_s == pytest.approx(end / 2 + 2 * end, rel=1e-9)


def test_users_join_and_leave():
    problem = random_upload_problem(random.Random(4), n_nodes=6, shape="chain", upload_queries=10)
    plan = user_plan_from_upload("u", plan_upload(problem, "recursive-efficiency"))
    (server_plan,) = plan.servers.values()
    assert len(server_plan.partitions) >= 2
    local = plan.stages[0].latency_s
    join = 3 * local
    leave = join + server_plan.partitions[0].arrives_s / 2  # while the first partition goes up
    user = SimUser("u", problem, plan=plan, join_s=join, leave_s=leave)
    result = simulate([user], SimConfig(duration_s=join + 2 * server_plan.upload_end_s, upload_shares_link=False))
    starts = [q.start_s for q in result.queries]
    assert starts[0] == pytest.approx(join)
    assert max(starts) < leave
    assert [a.index for a in result.arrivals] == [0]  # the partition in flight lands, no further one starts
    assert result.arrivals[0].arrives_s == pytest.approx(join + server_plan.partitions[0].arrives_s, rel=1e-9)
    periodic = SimUser("p", problem, plan=plan, arrivals=Periodic(2 * local), max_queries=3)
    starts = [q.start_s for q in simulate([periodic]).queries]
    assert starts == pytest.approx([0.0, 2 * local, 4 * local])
    traced = SimUser("t", problem, plan=plan, arrivals=TraceArrivals((1.0, 2.5, 2.5, 7.0)))
    assert sorted(q.start_s for q in simulate([traced]).queries) == pytest.approx([1.0, 2.5, 2.5, 7.0])


def test_poisson_arrival_rate():
    problem = random_upload_problem(random.Random(8), n_nodes=3, shape="chain")
    local = problem.local_placement()
    user = SimUser("u", problem, placement=local, arrivals=Poisson(5.0), seed=3)
    result = simulate([user], SimConfig(duration_s=200.0))
    issued = len(result.queries) + result.in_flight["u"]
    assert 800 <= issued <= 1200  # 1000 expected


def test_multi_user_multi_server_plan_in_the_simulator():
    rng = random.Random(12)
    base = random_upload_problem(rng, n_nodes=6, shape="chain", n_devices=3, link_latency_s=0.0)
    nodes = [n.name for n in base.graph if not n.is_input]
    users, placements = [], {}
    problems = {}
    for i in range(2):
        problems[f"u{i}"] = rename_devices(base, {"d0": f"c{i}"})
        placements[f"u{i}"] = {n: ("d1" if j % 2 == 0 else "d2") for j, n in enumerate(nodes)}
    # both clients need links to both servers for a shared multi-user problem
    multi = MultiUserProblem(tuple(UserProblem(u, _with_both_clients(p)) for u, p in problems.items()))
    plan = plan_multi_upload(multi, "recursive-efficiency", offloading=placements)
    for name, user_plan in plan.users.items():
        users.append(SimUser(name, multi.user(name).problem, plan=user_plan, max_queries=user_plan.metrics.n + 2))
    result = simulate(users, SimConfig(upload_shares_link=True))
    for name, user_plan in plan.users.items():
        mine = result.user_arrivals(name)
        assert {a.server for a in mine} == set(user_plan.servers)
        assert len(mine) == sum(len(p.partitions) for p in user_plan.servers.values())
        assert len(result.user_queries(name)) == user_plan.metrics.n + 2


def _with_both_clients(problem: Problem) -> Problem:
    """``problem`` over c0, c1, d1, d2 (the other client present with its links, as in a shared environment)."""
    other = "c1" if problem.source == "c0" else "c0"
    me = problem.device(problem.source)
    devices = (*problem.devices, replace(me, name=other))
    added = []
    for server in ("d1", "d2"):
        link = problem.link(problem.source, server)
        added.append(Link(other, server, link.bandwidth_bytes_per_s, link.latency_s, link.price_per_byte))
    order = ["c0", "c1", "d1", "d2"]
    return replace(problem, devices=tuple(sorted(devices, key=lambda d: order.index(d.name))), links=(*problem.links, *added))


# ---------------------------------------------------------------- errors
def test_simulation_errors_are_one_line():
    problem = random_upload_problem(random.Random(9), n_nodes=3, shape="chain")
    user = SimUser("u", problem)
    cases = [
        (lambda: simulate([user]), "forever"),
        (lambda: simulate([]), "at least one user"),
        (lambda: simulate([SimUser("u", problem, max_queries=1), SimUser("u", problem, max_queries=1)]), "two simulated users"),
        (lambda: SimUser("u", problem, join_s=-1.0), "join_s"),
        (lambda: SimUser("u", problem, join_s=5.0, leave_s=2.0), "leave_s"),
        (lambda: SimUser("u", problem, arrivals=Poisson(0.0)), "rate_hz"),
        (lambda: SimUser("u", problem, arrivals=TraceArrivals((2.0, 1.0))), "increasing"),
        (lambda: SimUser("u", problem, max_queries=0), "max_queries"),
        (lambda: SimConfig(duration_s=-1.0), "duration_s"),
        (lambda: SimConfig(execution="parallel"), "execution"),
        (lambda: SimConfig(disciplines={"d1": "random"}), "discipline"),
        (lambda: BandwidthTrace("d0", "d1", ()), "no points"),
        (lambda: BandwidthTrace("d0", "d1", ((1.0, 5.0), (1.0, 6.0))), "increasing"),
        (lambda: simulate([SimUser("u", problem, max_queries=1)], SimConfig(disciplines={"mars": "ps"})), "unknown device"),
        (lambda: simulate([SimUser("u", problem, max_queries=1)], SimConfig(traces=(BandwidthTrace("d0", "x", ((0, 1),)),))),
         "no user's problem"),
    ]
    for make, message in cases:
        with pytest.raises(TiercutError, match=message) as info:
            make()
        assert "\n" not in str(info.value)
    instant = replace(problem, compute_s={n: {d: 0.0 for d in row} for n, row in problem.compute_s.items()})
    with pytest.raises(TiercutError, match="never advance"):
        simulate([SimUser("u", instant, max_queries=3)])
    other = replace(problem, links=(Link("d0", "d1", 123.0),))
    with pytest.raises(TiercutError, match="same environment"):
        simulate([SimUser("a", problem, max_queries=1), SimUser("b", other, max_queries=1)])


def test_result_summaries_and_json():
    _, users = _shared_scenario(2)
    result = simulate(users, SimConfig(duration_s=5.0, record_ops=True))
    data = result.to_dict(include_queries=True)
    assert data["queries"] == len(result.queries) == len(data["query_trace"])
    assert {u["user"] for u in data["users"]} == {u.name for u in users}
    first = data["query_trace"][0]
    assert first["spans"] and first["spans"][0]["start_s"] == pytest.approx(first["start_s"])
    assert {s["kind"] for q in data["query_trace"] for s in q["spans"]} <= {"compute", "transfer"}
    assert all(math.isfinite(q.planned_latency_s) and q.devices for q in result.queries)
    assert math.isfinite(data["events_per_s"])
    summary = {s.user: s for s in result.summaries()}
    assert sum(s.queries for s in summary.values()) == len(result.queries)
    with pytest.raises(TiercutError, match="no user"):
        result.user_queries("nobody")
