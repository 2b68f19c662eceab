"""Upload planners and the analytic IONN model: hand-checked cases, brute force, errors."""

from __future__ import annotations

import itertools
import json
import math
import random
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiercut.env import Link
from tiercut.errors import TiercutError
from tiercut.graph.types import LayerGraph, Node
from tiercut.plan import get_planner
from tiercut.problem import Constraints, MultiUserProblem, Problem, ProblemDevice, UserProblem
from tiercut.upload import (
    UPLOAD_PLANNERS,
    UploadPlan,
    check_upload_plan,
    get_upload_planner,
    plan_multi_upload,
    plan_upload,
    query_schedule,
)
from tiercut.upload.analytic import default_query_count, metrics_of
from tiercut.upload.exhaustive import ordered_partitions
from tiercut.upload.synthetic import random_upload_problem


def chain_problem(layers, *, bandwidth=1e6, latency=0.0, out_bytes=0, input_bytes=0) -> Problem:
    """A hand-made chain: layers = [(client_s, server_s, param_bytes), ...]."""
    nodes = [Node("in", "input", out_bytes=input_bytes)]
    compute = {}
    for i, (client_s, server_s, params) in enumerate(layers):
        name = f"L{i}"
        last = i == len(layers) - 1
        nodes.append(Node(name, "linear", (nodes[-1].name,), param_bytes=params, out_bytes=out_bytes, is_output=last))
        compute[name] = {"client": client_s, "server": server_s}
    devices = (ProblemDevice("client", "end", 2.0, 1.0, 1.0, 0.5), ProblemDevice("server", "edge", 50.0, 2.0, 2.0, 10.0))
    return Problem(LayerGraph(tuple(nodes), model="hand"), devices, (Link("client", "server", bandwidth, latency),), "client",
                   compute, name="hand")


def groups(plan: UploadPlan) -> list[list[str]]:
    return [list(p.nodes) for p in plan.partitions]


# ---------------------------------------------------------------- hand-checked cases
def test_ionn_and_efficiency_split_where_direct_uploads_whole():
    # A: fast to upload and worth it; B: 10x heavier. Transfers free (0 bytes, no latency).
    problem = chain_problem([(1.0, 0.1, 200_000), (1.0, 0.1, 2_000_000)])
    direct = plan_upload(problem, "direct")
    assert groups(direct) == [["L0", "L1"]]
    assert direct.partitions[0].upload_s == pytest.approx(2.2)
    for name in ("ionn", "efficiency", "recursive-efficiency"):
        assert groups(plan_upload(problem, name)) == [["L0"], ["L1"]], name
    ionn = plan_upload(problem, "ionn")
    assert [p.arrives_s for p in ionn.partitions] == pytest.approx([0.2, 2.2])
    assert [s.latency_s for s in ionn.stages] == pytest.approx([2.0, 1.1, 0.2])
    # n = queries started before the direct upload ends (2.2 s) at 2 s each: t = 0 and t = 2
    assert ionn.metrics.n == direct.metrics.n == 2
    # ionn: q0 0 -> 2.0 (nothing there at 0); q1 starts at 2.0 with L0 arrived -> 3.1
    assert ionn.metrics.time_for_n_queries_s == pytest.approx(3.1)
    assert ionn.metrics.queries_done_by_upload_end == 1
    assert ionn.metrics.mean_latency_during_upload_s == pytest.approx((2.0 + 1.1) / 2)
    # direct: q1 starts at 2.0 < 2.2 -> still local -> 4.0
    assert direct.metrics.time_for_n_queries_s == pytest.approx(4.0)
    assert direct.metrics.mean_latency_during_upload_s == pytest.approx(2.0)


def test_recursive_efficiency_splits_the_pick_efficiency_uploads_whole():
    # every cut pays 0.5 s latency; a single layer on the server loses, pairs win
    problem = chain_problem([(1.0, 0.1, 1_000_000)] * 3, latency=0.5)
    efficiency = plan_upload(problem, "efficiency")
    recursive = plan_upload(problem, "recursive-efficiency")
    assert groups(efficiency) == [["L0", "L1", "L2"]]
    assert groups(recursive) == [["L0", "L1"], ["L2"]]
    assert [s.latency_s for s in recursive.stages] == pytest.approx([3.0, 2.2, 1.3])
    assert recursive.metrics.n == 2
    assert efficiency.metrics.time_for_n_queries_s == pytest.approx(6.0)
    assert recursive.metrics.time_for_n_queries_s == pytest.approx(5.2)


def test_ionn_penalties_are_the_seeds_eight_factors():
    planner = get_upload_planner("ionn")
    assert planner.penalties() == pytest.approx([1, 0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625, 0])
    with pytest.raises(TiercutError, match="penalty_base"):
        get_upload_planner("ionn", penalty_base=1.5).solve(chain_problem([(1.0, 0.1, 1000)]))
    with pytest.raises(TiercutError, match="penalty_levels"):
        get_upload_planner("ionn", penalty_levels=0).solve(chain_problem([(1.0, 0.1, 1000)]))


def test_nothing_to_upload_when_the_target_stays_on_the_client():
    problem = chain_problem([(0.1, 1.0, 1000)])  # the server is slower
    for name in UPLOAD_PLANNERS:
        plan = plan_upload(problem, name)
        assert plan.partitions == ()
        assert len(plan.stages) == 1
        assert plan.metrics.upload_end_s == 0.0
        assert plan.metrics.n == 1
        assert plan.metrics.time_for_n_queries_s == pytest.approx(0.1)


def test_schedule_and_metrics_by_hand():
    slots = query_schedule([0.0, 1.0], [0.4, 0.1], n=5)
    assert [round(q.start_s, 9) for q in slots] == [0.0, 0.4, 0.8, 1.2, 1.3]
    assert [q.stage for q in slots] == [0, 0, 0, 1, 1]
    m = metrics_of([0.0, 1.0], [0.4, 0.1], 1.0, 5)
    assert m.queries_done_by_upload_end == 2  # q2 ends at 1.2 > 1.0
    assert m.time_for_n_queries_s == pytest.approx(1.4)
    assert m.mean_latency_during_upload_s == pytest.approx(0.4)  # q0, q1, q2 start before 1.0
    assert default_query_count(0.4, 1.0) == 3
    assert default_query_count(0.4, 0.0) == 1
    with pytest.raises(TiercutError, match="latency"):
        query_schedule([0.0], [0.0], n=1)
    with pytest.raises(TiercutError, match="n_queries"):
        metrics_of([0.0], [1.0], 0.0, 0)


def test_ordered_partitions_are_the_fubini_numbers():
    assert [sum(1 for _ in ordered_partitions(list(range(k)))) for k in range(6)] == [1, 1, 3, 13, 75, 541]
    seen = {tuple(tuple(b) for b in p) for p in ordered_partitions([1, 2, 3])}
    assert len(seen) == 13 and ((1,), (2,), (3,)) in seen and ((1, 2, 3),) in seen


# ---------------------------------------------------------------- brute force
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rng=st.randoms(use_true_random=False),
    n_nodes=st.integers(2, 6),
    shape=st.sampled_from(["chain", "series-parallel", "dag"]),
)
def test_no_planner_beats_the_exhaustive_search(rng, n_nodes, shape):
    problem = random_upload_problem(rng, n_nodes=n_nodes, shape=shape)
    target = get_planner("mincut").solve(problem).placement
    best = get_upload_planner("exhaustive", max_units=5)
    try:
        reference = best.solve(problem, target)
    except TiercutError as exc:
        assert "too large" in str(exc)
        return
    n = reference.metrics.n
    check_upload_plan(problem, reference)
    for name in ("direct", "ionn", "efficiency", "recursive-efficiency"):
        plan = get_upload_planner(name, n_queries=n).solve(problem, target)
        assert plan.metrics.time_for_n_queries_s >= reference.metrics.time_for_n_queries_s * (1 - 1e-12), name
    mean = get_upload_planner("exhaustive", max_units=5, metric="mean_latency_during_upload").solve(problem, target)
    assert mean.metrics.mean_latency_during_upload_s <= reference.metrics.mean_latency_during_upload_s * (1 + 1e-12)
    done = get_upload_planner("exhaustive", max_units=5, metric="queries_done_by_upload_end").solve(problem, target)
    assert done.metrics.queries_done_by_upload_end >= reference.metrics.queries_done_by_upload_end


def test_exhaustive_refuses_large_models_and_bad_metrics():
    problem = chain_problem([(1.0, 0.1, 1000)] * 8)
    with pytest.raises(TiercutError, match="too large"):
        plan_upload(problem, "exhaustive", max_units=6)
    with pytest.raises(TiercutError, match="metric"):
        plan_upload(problem, "exhaustive", metric="speed")


@pytest.mark.slow
def test_the_seeds_ordering_holds_on_random_chains():
    """The seed's claim on random chains: recursive efficiency < IONN < direct in time for the n queries,
    recursive efficiency close to the exhaustive optimum."""
    rng = random.Random(7)
    names = ("direct", "ionn", "efficiency", "recursive-efficiency")
    ratios: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(30):
        problem = random_upload_problem(rng, n_nodes=5, shape="chain", link_latency_s=0.0)
        target = get_planner("mincut").solve(problem).placement
        best = get_upload_planner("exhaustive").solve(problem, target).metrics.time_for_n_queries_s
        for name in names:
            ratios[name].append(get_upload_planner(name).solve(problem, target).metrics.time_for_n_queries_s / best)
    mean = {name: sum(v) / len(v) for name, v in ratios.items()}
    assert min(min(v) for v in ratios.values()) >= 1 - 1e-12
    assert mean["recursive-efficiency"] < mean["ionn"] < mean["direct"]
    assert mean["recursive-efficiency"] <= mean["efficiency"] + 1e-12
    assert mean["recursive-efficiency"] < 1.02


# ---------------------------------------------------------------- recomputation and corruption
def test_check_upload_plan_names_each_corruption():
    problem = chain_problem([(1.0, 0.1, 200_000), (1.0, 0.1, 2_000_000)])
    plan = plan_upload(problem, "ionn")
    check_upload_plan(problem, plan, ["L0", "L1"])
    first, second = plan.partitions
    bad = {
        "parameter bytes": replace(plan, partitions=(replace(first, param_bytes=1), second)),
        "arriving": replace(plan, partitions=(replace(first, upload_s=9.0), second)),
        "two upload partitions": replace(plan, partitions=(first, replace(second, nodes=("L0", "L1")))),
        "unknown node": replace(plan, partitions=(replace(first, nodes=("X",)), second)),
        "latency": replace(plan, stages=(plan.stages[0], replace(plan.stages[1], latency_s=5.0), plan.stages[2])),
        "before its parameters arrived": replace(
            plan, stages=(replace(plan.stages[0], placement={"in": "client", "L0": "server", "L1": "client"}), *plan.stages[1:])
        ),
        "is possible": replace(
            plan, stages=(*plan.stages[:2], replace(plan.stages[2], placement={"in": "client", "L0": "client", "L1": "client"},
                                                    latency_s=2.0))
        ),
        "time_for_n_queries_s": replace(plan, metrics=replace(plan.metrics, time_for_n_queries_s=1.0)),
        "stages for": replace(plan, stages=plan.stages[:2]),
    }
    for expected, corrupt in bad.items():
        with pytest.raises(TiercutError, match=expected) as info:
            check_upload_plan(problem, corrupt)
        assert "\n" not in str(info.value)
    with pytest.raises(TiercutError, match="cover the target"):
        check_upload_plan(problem, plan, ["L0"])


def test_upload_plan_json_errors():
    problem = chain_problem([(1.0, 0.1, 200_000)])
    data = plan_upload(problem, "direct").to_dict()
    with pytest.raises(TiercutError, match="schema_version"):
        UploadPlan.from_dict({**data, "schema_version": 7})
    without = {k: v for k, v in data.items() if k != "partitions"}
    with pytest.raises(TiercutError, match="partitions"):
        UploadPlan.from_dict(without)
    with pytest.raises(TiercutError, match="not a JSON object"):
        UploadPlan.from_dict(["x"])  # type: ignore[arg-type]
    broken = json.loads(json.dumps(data))
    broken["partitions"][0]["param_bytes"] = "many"
    with pytest.raises(TiercutError, match="wrong type"):
        UploadPlan.from_dict(broken)


# ---------------------------------------------------------------- problems planners refuse
def test_targets_and_problems_that_cannot_be_uploaded():
    problem = chain_problem([(1.0, 0.1, 1000), (1.0, 0.1, 1000)])
    with pytest.raises(TiercutError, match="unknown node"):
        plan_upload(problem, "direct", target={"nope": "server"})
    with pytest.raises(TiercutError, match="unknown device"):
        plan_upload(problem, "direct", target={"L0": "mars"})
    three = replace(
        problem,
        devices=(*problem.devices, ProblemDevice("cloud", "cloud")),
        links=(*problem.links, Link("client", "cloud", 1e6)),
        compute_s={n: {**row, "cloud": 0.05} for n, row in problem.compute_s.items()},
    )
    with pytest.raises(TiercutError, match="one server"):
        plan_upload(three, "direct", target={"L0": "server", "L1": "cloud"})
    with pytest.raises(TiercutError, match="not on the chosen server"):
        plan_upload(three, "direct", target={"L0": "cloud"}, server="server")
    plan = plan_upload(three, "ionn", server="server")
    assert plan.server == "server"
    no_client = replace(problem, compute_s={"L0": {"server": 0.1}, "L1": problem.compute_s["L1"]})
    with pytest.raises(TiercutError, match="cannot run on the client"):
        plan_upload(no_client, "direct")
    pinned = replace(problem, constraints=Constraints(pinned={"L0": "server"}))
    with pytest.raises(TiercutError, match="pinned"):
        plan_upload(pinned, "direct")
    with pytest.raises(TiercutError, match="not known"):
        plan_upload(problem, "teleport")
    with pytest.raises(TiercutError, match="no setting"):
        plan_upload(problem, "direct", speed=3)
    with pytest.raises(TiercutError, match="n_queries"):
        plan_upload(problem, "direct", n_queries=0)
    lonely = replace(problem, devices=problem.devices[:1], links=(), compute_s={n: {"client": 1.0} for n in ("L0", "L1")})
    with pytest.raises(TiercutError, match="no server"):
        plan_upload(lonely, "direct")


# ---------------------------------------------------------------- multi-server, multi-user
def _two_server_problem(rng: random.Random) -> Problem:
    base = random_upload_problem(rng, n_nodes=6, shape="chain", n_devices=3, link_latency_s=0.0)
    return base


def test_multi_server_upload_covers_each_servers_target():
    rng = random.Random(11)
    problem = _two_server_problem(rng)
    nodes = [n.name for n in problem.graph if not n.is_input]
    placement = {n: ("d1" if i < 3 else "d2") for i, n in enumerate(nodes)}
    multi = MultiUserProblem((UserProblem("u", problem),))
    plan = plan_multi_upload(multi, "recursive-efficiency", offloading={"u": placement})
    user = plan.users["u"]
    assert set(user.servers) == {"d1", "d2"}
    for server, up in user.servers.items():
        assert sorted(up.target_nodes) == sorted(n for n, d in placement.items() if d == server)
    assert len(user.stages) == 1 + len({p.arrives_s for up in user.servers.values() for p in up.partitions})
    arrived_at = {(n, s): p.arrives_s for s, up in user.servers.items() for p in up.partitions for n in p.nodes}
    for stage in user.stages:
        for node, device in stage.placement.items():
            if device != problem.source and problem.graph[node].param_bytes > 0:
                assert arrived_at[(node, device)] <= stage.from_s
    latencies = [s.latency_s for s in user.stages]
    assert all(b <= a * (1 + 1e-9) for a, b in itertools.pairwise(latencies))
    again = type(plan).from_dict(json.loads(json.dumps(plan.to_dict())))
    assert again.users["u"].metrics == user.metrics


def test_multi_user_upload_with_a_registered_multi_user_planner():
    from tiercut.plan import PLANNERS

    names = [n for n, cls in PLANNERS.items() if cls.multi_user]
    if not names:
        pytest.skip("no multi-user partition planner is registered yet")
    name = "pso" if "pso" in names else names[0]
    rng = random.Random(3)
    a = _two_server_problem(rng)
    b = replace(a, name="other")
    multi = MultiUserProblem((UserProblem("a", a), UserProblem("b", b)))
    plan = plan_multi_upload(multi, "ionn", offloading=name)
    assert plan.offloading.algorithm == name
    for user, up in plan.users.items():
        placement = plan.offloading.placements[user]
        for server, sp in up.servers.items():
            assert sorted(sp.target_nodes) == sorted(n for n, d in placement.items() if d == server)
    with pytest.raises(TiercutError, match="decided by the offloading plan"):
        plan_multi_upload(multi, "ionn", offloading=plan.offloading, server="d1")


def test_real_model_with_branches(tmp_path):
    from tiercut.graph import extract_graph

    graph = extract_graph("fixtures_models:tiny_net", (1, 3, 8, 8))
    compute = {n.name: {"client": 1e-3 + n.flops / 1e7, "server": 1e-4 + n.flops / 1e9} for n in graph if not n.is_input}
    problem = Problem(graph, (ProblemDevice("client", "end"), ProblemDevice("server", "edge")),
                      (Link("client", "server", 2e4, 0.001),), "client", compute, name="tiny")
    for name in UPLOAD_PLANNERS:
        plan = plan_upload(problem, name)
        check_upload_plan(problem, plan)
        assert math.isfinite(plan.metrics.time_for_n_queries_s)
