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
