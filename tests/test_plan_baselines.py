"""Honest baselines and refusals: all-on picks a reachable server by the objective, speed-ups are finite or
explained, brute force refuses huge problems in one line (issue 10)."""

from __future__ import annotations

import math
import random

import pytest

from tiercut.env import Link
from tiercut.errors import TiercutError
from tiercut.graph.types import LayerGraph, Node
from tiercut.plan import applicable_planners, plan
from tiercut.plan.baselines import AllOnPlanner
from tiercut.plan.brute_force import count_text
from tiercut.plan.synthetic import random_problem
from tiercut.problem import Objective, Problem, ProblemDevice


def three_servers(objective: str = "latency") -> Problem:
    """A phone, an edge over Wi-Fi, a fast cloud over a slow LTE uplink, and the fastest box with no link at all."""
    graph = LayerGraph(
        (
            Node("x", "input", out_bytes=600_000),
            Node("a", "conv2d", ("x",), out_bytes=200_000),
            Node("b", "linear", ("a",), out_bytes=4_000, is_output=True),
        ),
        model="pair",
    )
    devices = (
        ProblemDevice("phone", "end", 3.0, 1.5, 1.0, 0.3),
        ProblemDevice("edge", "edge", 50.0, 2.0, 2.0, 10.0),
        ProblemDevice("cloud", "cloud", 200.0, 5.0, 5.0, 60.0),
        ProblemDevice("island", "cloud", 300.0, 5.0, 5.0, 60.0),
    )
    links = (Link("phone", "edge", 2.36e6, 0.005), Link("phone", "cloud", 731_250, 0.05, bandwidth_bytes_per_s_ba=1.6e6))
    compute = {n: {"phone": 0.3, "edge": 0.03, "cloud": 0.005, "island": 0.0001} for n in ("a", "b")}
    return Problem(graph, devices, links, "phone", compute, Objective.parse(objective), name="three-servers")


def test_all_on_picks_the_best_reachable_server_by_the_objective():
    problem = three_servers()
    result = plan(problem, "all-on")
    # the island computes fastest but cannot be reached; the cloud computes faster than the edge but its uplink
    # makes it slower overall
    assert result.placement["a"] == "edge" and math.isfinite(result.latency_s)
    cloud = plan(problem, "all-on", device="cloud")
    assert cloud.latency_s > result.latency_s
    island = plan(problem, "all-on", device="island")
    assert not island.feasible and math.isinf(island.latency_s)
    # by the objective: on total energy the edge's 50 W beat the cloud's 200 W even longer
    assert plan(three_servers("energy_total"), "all-on").placement["a"] in {"edge", "cloud"}
    ranked = [name for name, _ in AllOnPlanner().ranked(problem)]
    assert ranked[-1] == "island"


def test_all_on_refuses_when_no_server_is_reachable():
    problem = three_servers()
    alone = Problem(problem.graph, problem.devices, (), "phone", problem.compute_s)
    with pytest.raises(TiercutError, match="no device besides the source"):
        plan(alone, "all-on")
    assert "all-on" not in applicable_planners(alone)


def test_speed_ups_are_finite_or_explained():
    from tiercut.cli.plan_cmd import speedup_text

    problem = three_servers()
    best = plan(problem, "ilp")
    local = plan(problem, "local")
    ratio = local.latency_s / best.latency_s
    assert ratio > 1.01  # the split beats running everything on the phone
    assert speedup_text(local, best) == f"{ratio:.2f}x slower"  # said from the baseline's side: it is slower
    assert speedup_text(best, local) == f"{ratio:.2f}x faster"
    assert speedup_text(best, best) == "same"
    island = plan(problem, "all-on", device="island")
    assert speedup_text(island, best) == "- (baseline not evaluable)"
    assert speedup_text(best, island) == "- (plan not evaluable)"


def test_brute_force_refuses_astronomically_large_problems_in_one_line():
    rng = random.Random(0)
    huge = random_problem(rng, n_nodes=700, n_devices=4, shape="chain")  # 4^700 placements: beyond float range
    with pytest.raises(TiercutError) as info:
        plan(huge, "brute-force")
    text = str(info.value)
    assert "about 10^" in text and "max_placements" in text and "\n" not in text
    assert "brute-force" not in applicable_planners(huge)
    assert count_text(4**700).startswith("about 10^42")
    assert count_text(1234) == "1.23e+03"
    with pytest.raises(TiercutError, match="max_placements"):
        plan(random_problem(rng, n_nodes=3, n_devices=2), "brute-force", max_placements=0)


def test_demo_verdict_says_slower_when_the_plan_loses():
    from tiercut.cli.demo_cmd import _faster_or_slower

    assert _faster_or_slower(4.0, "local-only") == "4.00x faster than local-only"
    assert _faster_or_slower(0.25, "cloud-only") == "4.00x slower than cloud-only"
