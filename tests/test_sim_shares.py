"""The simulator honours a multi-user plan's resource shares (weighted processor sharing)."""

from __future__ import annotations

import random

import pytest

from allocation_fixtures import random_multi_problem
from tiercut.cost import evaluate_users
from tiercut.cost.allocation import allocate
from tiercut.errors import TiercutError
from tiercut.sim import BackToBack, SharedResource, SimConfig, SimEnvironment, SimUser, simulate, user_shares


def test_weighted_processor_sharing():
    """Weights 3 and 1 on a rate-1 server: 1 unit each; the heavy job leaves at 4/3, the light one at 2."""
    env = SimEnvironment()
    server = SharedResource(env, "server", 1.0, "ps")
    done: dict[str, float] = {}
    server.submit(1.0, lambda: done.setdefault("heavy", env.now), 3.0)
    server.submit(1.0, lambda: done.setdefault("light", env.now), 1.0)
    env.run()
    assert done["heavy"] == pytest.approx(4 / 3)
    assert done["light"] == pytest.approx(2.0)


def test_equal_weights_are_plain_sharing():
    env = SimEnvironment()
    server = SharedResource(env, "server", 2.0, "ps")
    done: list[float] = []
    for amount in (1.0, 2.0, 3.0):
        server.submit(amount, lambda: done.append(env.now))
    env.run()
    assert done == pytest.approx([1.5, 2.5, 3.0])


def test_simulated_users_get_at_least_their_shares():
    """Users offloading to one server, queries back to back (one operation at a time each): with the plan's
    shares as weights every job gets at least its share of the server and links whenever it runs (generalised
    processor sharing is work-conserving), so no simulated query is slower than the shared model's latency."""
    for seed in range(3):
        problem = random_multi_problem(random.Random(seed), 3, n_nodes=3)
        server = problem.device_names[-1]
        placements = {u.name: {n.name: (u.problem.source if n.is_input else server) for n in u.problem.graph}
                      for u in problem.users}
        alloc = allocate(problem, placements)
        ev = evaluate_users(problem, placements, alloc.shares)

        weighted, plain = (
            simulate([SimUser(u.name, u.problem, placement=placements[u.name], arrivals=BackToBack(), max_queries=50,
                              shares=user_shares(alloc.shares, u.name) if on else {}) for u in problem.users], SimConfig())
            for on in (True, False)
        )
        for q in weighted.queries:
            assert q.latency_s <= ev.users[q.user].latency_s * (1 + 1e-9)
        mean = {s.user: s.mean_latency_s for s in weighted.summaries()}
        mean_plain = {s.user: s.mean_latency_s for s in plain.summaries()}
        assert any(abs(mean[u] - mean_plain[u]) > 1e-6 * mean_plain[u] for u in mean)  # the weights act


def test_bad_share_weight_is_an_error():
    problem = random_multi_problem(random.Random(1), 2, n_nodes=3)
    with pytest.raises(TiercutError, match="resource share must be a finite number > 0"):
        SimUser("u0", problem.users[0].problem, shares={"d3": 0.0})


def _scenario(tmp_path, offloading: str, allocation: str, mode: str = "joint"):
    import json

    from tiercut.sim.scenario import build_scenario, parse_scenario

    problem = random_multi_problem(random.Random(4), 3, n_nodes=3)
    users = []
    for u in problem.users:
        path = tmp_path / f"{u.name}.json"
        path.write_text(json.dumps(u.problem.to_dict()))
        users.append({"name": u.name, "problem": path.name, "max_queries": 5, "arrivals": {"kind": "back-to-back"}})
    data = {"schema_version": 1, "name": "shares", "users": users,
            "upload": {"algorithm": "none", "offloading": offloading, "mode": mode, "allocation": allocation}}
    return build_scenario(parse_scenario(data, "s.yaml", tmp_path))


def test_scenario_gives_users_their_optimal_shares(tmp_path):
    equal = _scenario(tmp_path, "best-response", "equal")
    assert all(not u.shares for u in equal.simulation.users)
    optimal = _scenario(tmp_path, "best-response", "optimal")
    joint = _scenario(tmp_path, "jmdp", "equal")  # jmdp's plan carries its shares
    for built in (optimal, joint):
        weights = [w for u in built.simulation.users for w in u.shares.values()]
        assert weights and all(0 < w <= 1 for w in weights)
        assert built.simulation.run().queries
    with pytest.raises(TiercutError, match=r"upload\.allocation optimal"):
        _scenario(tmp_path, "ilp", "optimal", mode="per-user")


def _identical_users(n: int):
    from tiercut.env import Link
    from tiercut.graph.types import LayerGraph, Node
    from tiercut.problem import MultiUserProblem, Objective, Problem, ProblemDevice, UserProblem

    graph = LayerGraph((Node("x", "input", out_bytes=200), Node("a", "conv2d", ("x",), out_bytes=50, is_output=True)),
                       model="one-layer")
    clients = tuple(ProblemDevice(f"p{i}", "end", power_compute_w=2.0, power_tx_w=1.5, power_rx_w=1.0, power_idle_w=0.25)
                    for i in range(n))
    server = ProblemDevice("srv", "edge", power_compute_w=5.0, power_tx_w=3.0, power_rx_w=2.0, power_idle_w=1.0)
    links = tuple(Link(f"p{i}", "srv", 100.0, 0.02) for i in range(n))
    users = tuple(UserProblem(f"u{i}", Problem(graph, (*clients, server), links, f"p{i}", {"a": {f"p{i}": 2.0, "srv": 0.5}}))
                  for i in range(n))
    return MultiUserProblem(users, Objective("energy_total"))


@pytest.mark.parametrize("n", [1, 2, 4])
def test_analytic_and_simulated_energy_agree_for_identical_users_on_one_server(n):
    """n identical users, each on its own client and link, offload to one server, queries back to back: their
    phases stay aligned, so the simulator's processor sharing is the equal-share model exactly -- latency n*c on
    the server, and energy (the simulator's attribution rule) the analytic model's own-work figures."""
    problem = _identical_users(n)
    placements = {u.name: {"x": u.problem.source, "a": "srv"} for u in problem.users}
    ev = evaluate_users(problem, placements)
    result = simulate([SimUser(u.name, u.problem, placement=placements[u.name], arrivals=BackToBack(), max_queries=3)
                       for u in problem.users], SimConfig())
    assert len(result.queries) == 3 * n
    for q in result.queries:
        mine = ev.users[q.user]
        assert q.latency_s == pytest.approx(mine.latency_s, rel=1e-9)
        assert q.energy_source_j == pytest.approx(mine.energy_source_j, rel=1e-9)
        assert q.energy_total_j == pytest.approx(mine.energy_total_j, rel=1e-9)


def test_analytic_and_simulated_energy_agree_for_users_that_do_not_contend():
    """Users on resources of their own (each its own server, or its own client): one query at a time each,
    the simulated queries have the analytic figures."""
    for seed in range(4):
        problem = random_multi_problem(random.Random(seed), 2, n_nodes=3)
        servers = problem.device_names[-2:]
        placements = {}
        for i, u in enumerate(problem.users):
            mine = servers[i]
            placements[u.name] = {n.name: (mine if not n.is_input and mine in u.problem.compute_s[n.name]
                                           else u.problem.source) for n in u.problem.graph}
        ev = evaluate_users(problem, placements)
        if max(ev.link_users.values(), default=0) > 1 or max(ev.device_users.values()) > 1:
            continue  # a relayed path through another user's resource: they contend
        result = simulate([SimUser(u.name, u.problem, placement=placements[u.name], arrivals=BackToBack(),
                                   max_queries=2) for u in problem.users], SimConfig())
        for q in result.queries:
            mine = ev.users[q.user]
            assert q.latency_s == pytest.approx(mine.latency_s, rel=1e-9)
            assert q.energy_source_j == pytest.approx(mine.energy_source_j, rel=1e-9)
            assert q.energy_total_j == pytest.approx(mine.energy_total_j, rel=1e-9)


def test_users_on_one_source_split_its_idle_power_as_the_simulator_does():
    """Two identical apps on one phone offload to one server (no link latency: see docs/cost-model.md, a shared
    link's latency period): the analytic model splits the phone's idle power between them, as the simulator
    splits it among the queries in flight, and both charge each app its own work."""
    from tiercut.env import Link
    from tiercut.graph.types import LayerGraph, Node
    from tiercut.problem import MultiUserProblem, Objective, Problem, ProblemDevice, UserProblem

    graph = LayerGraph((Node("x", "input", out_bytes=200), Node("a", "conv2d", ("x",), out_bytes=50, is_output=True)),
                       model="one-layer")
    phone = ProblemDevice("phone", "end", power_compute_w=2.0, power_tx_w=1.5, power_rx_w=1.0, power_idle_w=0.25)
    server = ProblemDevice("srv", "edge", power_compute_w=5.0, power_tx_w=3.0, power_rx_w=2.0, power_idle_w=1.0)
    links = (Link("phone", "srv", 100.0, 0.0),)
    problem = MultiUserProblem(tuple(UserProblem(f"app{i}", Problem(graph, (phone, server), links, "phone",
                                                                    {"a": {"phone": 2.0, "srv": 0.5}}))
                                     for i in range(2)), Objective("energy_source"))
    placements = {u.name: {"x": "phone", "a": "srv"} for u in problem.users}
    ev = evaluate_users(problem, placements)
    app = ev.users["app0"]
    up, down = 2 * 200 / 100, 2 * 50 / 100  # the link is shared: half the bandwidth each
    assert app.latency_s == pytest.approx(up + 2 * 0.5 + down)
    assert app.energy_source_j == pytest.approx(0.25 * app.latency_s / 2 + (1.5 - 0.25) * up / 2 + (1.0 - 0.25) * down / 2)
    result = simulate([SimUser(u.name, u.problem, placement=placements[u.name], arrivals=BackToBack(), max_queries=3)
                       for u in problem.users], SimConfig())
    assert len(result.queries) == 6
    for q in result.queries:
        mine = ev.users[q.user]
        assert q.latency_s == pytest.approx(mine.latency_s, rel=1e-9)
        assert q.energy_source_j == pytest.approx(mine.energy_source_j, rel=1e-9)
        assert q.energy_total_j == pytest.approx(mine.energy_total_j, rel=1e-9)
