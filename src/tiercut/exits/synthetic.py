"""Small random exit problems, for the planners' brute-force tests and the contract checks.

A chain backbone ``L1 .. Ln`` with side exits hanging off random layers
(each a short chain of branch nodes ending in an answer), devices and links
drawn like :func:`tiercut.plan.synthetic.random_problem`'s, and synthetic
per-sample measurements where deeper exits are right more often and a
right answer is more confident (lower entropy). No paper: test data.
"""

from __future__ import annotations

import math
import random

import numpy as np

from tiercut.exits.confidence import ExitMeasurements
from tiercut.exits.cost import ExitProblem
from tiercut.exits.types import FINAL, ExitBranch
from tiercut.graph.types import LayerGraph, Node
from tiercut.plan.synthetic import random_problem
from tiercut.problem import Constraints, Objective, Problem


def random_exit_problem(
    rng: random.Random,
    *,
    n_layers: int = 4,
    n_exits: int = 2,
    n_devices: int = 2,
    branch_nodes: int = 1,
    n_samples: int = 40,
    objective: str = "latency",
    memory: bool = False,
    latency_slo_s: float | None = None,
    accuracy_min: float | None = None,
    rule: str = "entropy",
) -> ExitProblem:
    """A random :class:`ExitProblem`; device ``d0`` (tier end) is the source, ``d1`` is edge when there are 3+."""
    base = random_problem(rng, n_nodes=2, n_devices=n_devices, shape="chain", objective=objective)
    nodes = [Node("x", "input", out_bytes=rng.randint(200, 4000), out_shape=(1, 8))]
    for i in range(1, n_layers + 1):
        nodes.append(Node(f"L{i}", "conv2d", (nodes[-1].name if i > 1 else "x",), flops=rng.randint(10**5, 10**7),
                          param_bytes=rng.randint(0, 2000), out_bytes=rng.randint(50, 4000), out_shape=(1, 8),
                          is_output=(i == n_layers)))
    points = sorted(rng.sample(range(1, n_layers), min(n_exits, n_layers - 1)))
    exits = []
    for k, at in enumerate(points, start=1):
        prev = f"L{at}"
        names = []
        for j in range(1, branch_nodes + 1):
            name = f"e{k}_{j}"
            nodes.append(Node(name, "linear", (prev,), flops=rng.randint(10**4, 10**6), param_bytes=rng.randint(0, 500),
                              out_bytes=40, out_shape=(1, 10), is_output=(j == branch_nodes)))
            names.append(name)
            prev = name
        exits.append(ExitBranch(f"exit{k}", f"L{at}", tuple(names), names[-1], 0.0))
    exits.append(ExitBranch(FINAL, f"L{n_layers}", (), f"L{n_layers}", 0.0))
    graph = LayerGraph(tuple(nodes), model="random-exits")
    compute = {}
    for node in graph:
        if node.is_input:
            continue
        compute[node.name] = {f"d{j}": rng.uniform(0.001, 0.2) / (1 + 3 * j) for j in range(n_devices)
                              if j == 0 or rng.random() >= 0.1}
    problem = Problem(graph, base.devices, base.links, "d0", compute, Objective.parse(objective),
                      Constraints(memory=memory), name="random-exits")
    # measurements: exit k right with probability rising with depth; right answers more confident
    k_all = len(exits)
    correct = np.zeros((k_all, n_samples), dtype=bool)
    entropy = np.zeros((k_all, n_samples))
    for k in range(k_all):
        p_right = 0.55 + 0.4 * (k + 1) / k_all
        for s in range(n_samples):
            right = rng.random() < p_right
            correct[k, s] = right
            entropy[k, s] = rng.uniform(0.0, 1.2) if right else rng.uniform(0.6, math.log(10))
    max_prob = np.exp(-entropy)
    measurements = ExitMeasurements(tuple(e.name for e in exits), entropy, max_prob, correct)
    exits = [ExitBranch(e.name, e.after, e.nodes, e.output, float(correct[k].mean())) for k, e in enumerate(exits)]
    thresholds = {e.name: (rng.uniform(0.3, 1.2) if rule == "entropy" else rng.uniform(0.3, 0.8)) for e in exits[:-1]}
    return ExitProblem(problem, tuple(exits), rule, thresholds, measurements, latency_slo_s, accuracy_min)


__all__ = ["random_exit_problem"]
