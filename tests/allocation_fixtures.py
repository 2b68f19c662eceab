"""Random multi-user problems and joint placements for the resource-allocation and joint-planning tests."""

from __future__ import annotations

import random

from tiercut.plan.synthetic import random_problem
from tiercut.problem import MultiUserProblem, Objective, Problem, UserProblem


def random_multi_problem(rng: random.Random, n_users: int, *, n_nodes: int = 4, objective: Objective | None = None,
                         shape: str = "chain") -> MultiUserProblem:
    """``n_users`` users, user ``u`` on its own device ``d{u}``, sharing two servers (every device linked)."""
    n_devices = n_users + 2
    base = random_problem(rng, n_nodes=n_nodes, n_devices=n_devices)
    users = []
    for u in range(n_users):
        p = random_problem(rng, n_nodes=n_nodes, n_devices=n_devices, shape=shape)
        src = f"d{u}"
        compute = {n: {**row, src: row.get(src, rng.uniform(0.01, 0.2))} for n, row in p.compute_s.items()}
        users.append(UserProblem(f"u{u}", Problem(p.graph, base.devices, base.links, src, compute)))
    return MultiUserProblem(tuple(users), objective or Objective("latency", {}, "mean"))


def random_placements(rng: random.Random, problem: MultiUserProblem, servers_only: bool = False) -> dict[str, dict[str, str]]:
    """Every user's nodes on random devices that can run them (``servers_only``: the two servers, when they can)."""
    servers = problem.device_names[-2:]
    out = {}
    for user in problem.users:
        p = user.problem
        placement = {}
        for node in p.graph:
            if node.is_input:
                placement[node.name] = p.source
                continue
            row = p.compute_s[node.name]
            options = [d for d in row if d in servers] if servers_only else [d for d in row if d == p.source or d in servers]
            placement[node.name] = rng.choice(options or [p.source])
        out[user.name] = placement
    return out


def panda_problem(n_layers: int = 6, pinned: int = 0) -> Problem:
    """A device-edge chain with a latency/energy trade-off: offloading is faster but the radio costs energy.

    Figures are made up for the tests (no device is meant): a 1 W device core, a 4 W radio, a 10x faster
    edge; outputs shrink layer by layer. ``pinned``: the first layers pinned to the device (privacy).
    """
    from tiercut.env import Link
    from tiercut.graph.types import LayerGraph, Node
    from tiercut.problem import Constraints, ProblemDevice

    nodes = [Node("x", "input", out_bytes=400_000)]
    out = 300_000
    for i in range(n_layers):
        nodes.append(Node(f"l{i}", "conv2d", (nodes[-1].name,), out_bytes=out, is_output=i == n_layers - 1))
        out = max(out // 2, 1000)
    graph = LayerGraph(tuple(nodes))
    devices = (
        ProblemDevice("phone", "end", power_compute_w=1.0, power_tx_w=4.0, power_rx_w=1.0, power_idle_w=0.1),
        ProblemDevice("edge", "edge", power_compute_w=50.0),
    )
    compute = {f"l{i}": {"phone": 0.04 + 0.01 * i, "edge": 0.004 + 0.001 * i} for i in range(n_layers)}
    links = (Link("phone", "edge", 2e6, 0.002, 0.0),)
    cons = Constraints(pinned={f"l{i}": "phone" for i in range(pinned)})
    return Problem(graph, devices, links, "phone", compute, Objective("latency"), cons, name="panda-chain")
