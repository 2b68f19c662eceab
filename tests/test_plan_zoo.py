"""On every zoo model (module granularity), min-cut equals the ILP for the 2-device presets.

Graphs are captured once per session (tests/conftest.py). Device times come
from a roofline over fixed figures (the catalog's Jetson TX2 and NVIDIA T4
data-sheet numbers), so this test depends on neither the profiler nor the
host's speed; the links and radio powers are the presets'.
"""

from __future__ import annotations

import pytest

from lanes import fast_first
from tiercut.env import load_environment
from tiercut.graph.models import ZOO
from tiercut.plan import plan
from tiercut.problem import Objective, Problem, ProblemDevice

TWO_DEVICE_PRESETS = ("neurosurgeon-3g", "neurosurgeon-lte", "neurosurgeon-wifi")
#: device -> (FLOP/s, memory bytes/s, P compute, P idle): Jetson TX2 and NVIDIA T4 data-sheet figures
ROOFLINE = {"mobile": (6.656e11, 5.97e10, 15.0, 2.0), "cloud": (8.1e12, 3.2e11, 70.0, 10.0)}


def zoo_problem(graph, preset: str, objective: str, roofline: dict | None = None) -> Problem:
    roofline = roofline or ROOFLINE
    env = load_environment(preset)
    devices = tuple(
        ProblemDevice(d.name, d.tier, roofline[d.name][2], d.power_tx_w or 0.0, d.power_rx_w or 0.0, roofline[d.name][3])
        for d in env.devices
    )
    compute = {
        node.name: {
            name: max(node.flops / flops_s, (node.param_bytes + node.out_bytes) / bw) + 1e-5
            for name, (flops_s, bw, _, _) in roofline.items()
        }
        for node in graph
        if not node.is_input
    }
    return Problem(graph, devices, env.links, "mobile", compute, Objective.parse(objective), name=f"{graph.model}@{preset}")


@pytest.mark.parametrize("model", fast_first(sorted(ZOO)))
def test_mincut_equals_ilp_on_zoo_models(model, capture_zoo):
    graph = capture_zoo(model).graph
    for preset in TWO_DEVICE_PRESETS:
        for objective in ("latency", "energy_source"):
            problem = zoo_problem(graph, preset, objective)
            cut = plan(problem, "mincut")
            ilp = plan(problem, "ilp")
            assert cut.optimal and ilp.optimal, (cut.note, ilp.note)
            assert cut.objective_value == pytest.approx(ilp.objective_value, rel=1e-7), (preset, objective)
            dp = plan(problem, "dp")
            if dp.optimal:
                assert dp.objective_value == pytest.approx(ilp.objective_value, rel=1e-7)
            else:
                assert dp.objective_value >= ilp.objective_value * (1 - 1e-9)
            split = plan(problem, "neurosurgeon")
            assert split.objective_value >= ilp.objective_value * (1 - 1e-9)


@pytest.mark.slow
def test_slow_mobile_offloads_vgg16_over_wifi(capture_zoo):
    """With a Raspberry-Pi-class mobile (48 GFLOP/s), the best VGG16 plan over Wi-Fi uses the cloud
    and beats both baselines; with the Jetson TX2 GPU, local wins (the input alone takes 0.26 s to send)."""
    graph = capture_zoo("vgg16").graph
    slow = {**ROOFLINE, "mobile": (4.8e10, 8.0e9, 6.4, 2.7)}
    problem = zoo_problem(graph, "neurosurgeon-wifi", "latency", slow)
    best = plan(problem, "mincut")
    local = plan(problem, "local")
    cloud = plan(problem, "all-on", device="cloud")
    assert best.latency_s < local.latency_s and best.latency_s <= cloud.latency_s
    assert "cloud" in best.placement.values()
    fast = plan(zoo_problem(graph, "neurosurgeon-wifi", "latency"), "mincut")
    assert set(fast.placement.values()) == {"mobile"}
