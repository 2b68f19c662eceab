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
