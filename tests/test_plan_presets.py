"""Problems built from environments: presets, the catalog's powers, the profiler's times, multi-user."""

from __future__ import annotations

import pytest

from tiercut.env import Environment, load_environment
from tiercut.errors import TiercutError
from tiercut.graph.types import LayerGraph, Node
from tiercut.plan import plan
from tiercut.problem import Constraints, MultiUserProblem, build_multi_user_problem, build_problem


def tiny_graph(label: str = "tiny") -> LayerGraph:
    return LayerGraph(
        (
            Node("x", "input", out_bytes=600_000),
            Node("conv", "conv2d", ("x",), flops=10**9, param_bytes=10_000, out_bytes=400_000),
            Node("fc", "linear", ("conv",), flops=10**8, param_bytes=4_000_000, out_bytes=4_000, is_output=True),
        ),
        model=label,
    )


def table(devices: list[str], slow: str) -> dict[str, dict[str, float]]:
    return {n: {d: (0.5 if d == slow else 0.01) for d in devices} for n in ("conv", "fc")}


def test_two_device_preset_takes_powers_from_env_and_catalog():
    env = load_environment("neurosurgeon-wifi")
    problem = build_problem(tiny_graph(), env, compute_s=table(["mobile", "cloud"], "mobile"), objective="energy_source")
    mobile = problem.device("mobile")
    assert mobile.power_tx_w == pytest.approx(5.479)  # the preset's radio power
    assert mobile.power_compute_w > mobile.power_idle_w > 0  # the catalog's Jetson TK1 figures
    assert problem.source == "mobile"
    assert problem.link("mobile", "cloud").bandwidth_bytes_per_s == pytest.approx(2.36e6)
    assert problem.provenance["mobile"] == "given compute table"
    result = plan(problem, "mincut")
    assert result.optimal and result.placement["fc"] == "cloud"


def test_migration_12_problem_and_device_subset():
    env = load_environment("migration-12")
    names = [d.name for d in env.devices]
    problem = build_problem(tiny_graph(), env, source="client1", compute_s=table(names, "client1"))
    assert len(problem.devices) == 12 and len(problem.links) == 65
    result = plan(problem, "dp")
    assert result.optimal and result.feasible
    assert result.objective_value == pytest.approx(plan(problem, "ilp").objective_value)
    sub = build_problem(tiny_graph(), env, source="client1", compute_s=table(names, "client1"),
                        devices=["client1", "edge1", "cloud1"])
    assert sub.device_names == ["client1", "edge1", "cloud1"]
    assert {frozenset((link.a, link.b)) for link in sub.links} == {
        frozenset(("client1", "edge1")), frozenset(("client1", "cloud1")), frozenset(("edge1", "cloud1"))}


def test_build_problem_errors():
    env = load_environment("three-tier")
    with pytest.raises(TiercutError, match="source 'watch'"):
        build_problem(tiny_graph(), env, source="watch", compute_s=table(["end"], "end"))
    with pytest.raises(TiercutError, match="no device 'moon'"):
        build_problem(tiny_graph(), env, compute_s=table(["end"], "end"), devices=["end", "moon"])
    with pytest.raises(TiercutError, match="can run on no device"):
        build_problem(tiny_graph(), env, compute_s={"conv": {"end": 1.0}})
    with pytest.raises(TiercutError, match="unknown device 'ghost'"):
        build_problem(tiny_graph(), Environment.from_dict({"devices": [{"name": "a", "tier": "end", "spec": "ghost"}]}),
                      compute_s=table(["a"], "a"))


def test_multi_user_problem_from_migration_12():
    env = load_environment("migration-12")
    names = [d.name for d in env.devices]
    graphs = {"user1": tiny_graph("a"), "user2": tiny_graph("b")}
    mp = build_multi_user_problem(
        env, graphs, objective="latency",
        compute_s={"user1": table(names, "client1"), "user2": table(names, "client2")},
        constraints={"user2": Constraints(pinned={"conv": "client2"})},
    )
    assert isinstance(mp, MultiUserProblem)
    assert [u.problem.source for u in mp.users] == ["client1", "client2"]
    assert mp.users[1].problem.constraints.pinned == {"conv": "client2"}
    with pytest.raises(TiercutError, match="no graph for user 'user2'"):
        build_multi_user_problem(env, {"user1": tiny_graph()}, compute_s={"user1": table(names, "client1")})
    with pytest.raises(TiercutError, match="has no users"):
        build_multi_user_problem(load_environment("three-tier").__class__(name="none", devices=env.devices), graphs)


@pytest.mark.parametrize("preset", ["neurosurgeon-lte", "three-tier", "migration-12"])
def test_profiler_times_for_every_preset(preset):
    """The real path: per-node times from tiercut.profile (catalog roofline, GHz model, this host)."""
    env = load_environment(preset)
    problem = build_problem(tiny_graph(), env)
    for node in ("conv", "fc"):
        assert set(problem.compute_s[node]) == set(problem.device_names)
        assert all(s > 0 for s in problem.compute_s[node].values())
    assert set(problem.provenance) == set(problem.device_names)
    result = plan(problem, "ilp")
    assert result.optimal


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["latency", "energy_source"])
def test_alexnet_on_neurosurgeon_wifi_is_split_and_the_exact_planners_agree(objective):
    """Neurosurgeon partitions AlexNet on Wi-Fi (Kang et al., ASPLOS'17); with the paper's devices
    (Jetson TK1, Tesla K40) and the catalog's figures tiercut's planners split it too."""
    from tiercut.graph import extract_graph

    problem = build_problem(extract_graph("alexnet"), load_environment("neurosurgeon-wifi"), objective=objective)
    assert problem.provenance["mobile"].startswith("jetson_tk1") and "device model" in problem.provenance["mobile"]
    exact = {name: plan(problem, name) for name in ("ilp", "mincut", "dp", "shortest-path", "neurosurgeon")}
    best = exact["ilp"]
    for name, result in exact.items():
        assert result.feasible and result.objective_value == pytest.approx(best.objective_value, rel=1e-9), name
    if objective == "latency":
        compute_nodes = [n.name for n in problem.graph if not n.is_input]
        used = {best.placement[n] for n in compute_nodes}
        assert used == {"mobile", "cloud"}  # neither all-local nor all-server
        local = plan(problem, "local")
        cloud = plan(problem, "all-on", device="cloud")
        assert best.latency_s < local.latency_s and best.latency_s < cloud.latency_s


@pytest.mark.slow
def test_the_demo_shows_a_split_that_beats_local_only_and_cloud_only_with_numbers(tmp_path):
    from tiercut.cli.demo_cmd import _case, demo_cases

    assert demo_cases()[0] == ("alexnet", "neurosurgeon-wifi")
    echoed: list[str] = []
    lines = _case("alexnet", "neurosurgeon-wifi", tmp_path, echoed.append)
    best = next(line for line in lines if line.startswith("Best:"))
    assert "splits the model over mobile, cloud and beats both local-only (" in best and "cloud-only (" in best
    assert "x)" in best and "beats both" in echoed[0]
    assert (tmp_path / "alexnet@neurosurgeon-wifi.json").exists()
