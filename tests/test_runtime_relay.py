"""A routed transfer in the runtime: end -> edge -> cloud with no end-cloud link.

The cost model forwards the tensors between the end device and the cloud
through the edge (store-and-forward, the edge computes nothing); the runtime
follows the same route: the client's forward goes to the edge worker, which
relays it to the cloud and the reply back. Every query's output must equal
the whole model's.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tiercut.cost import evaluate
from tiercut.env import environment_from_mapping, load_environment
from tiercut.runtime.client import RunSettings
from tiercut.runtime.migration import placement_plan, prepare_migration, route_relays
from tiercut.runtime.route import Route, RouteError, Step
from tiercut.runtime.session import LocalCluster, run_migration

pytestmark = pytest.mark.slow  # every test spawns worker processes

ENVIRONMENT = {
    "name": "chain-no-end-cloud",
    "devices": [{"name": "end", "tier": "end"}, {"name": "edge", "tier": "edge"}, {"name": "cloud", "tier": "cloud"}],
    "links": [
        {"a": "end", "b": "edge", "up": 2.0e7, "down": 4.0e7, "latency_s": 0.002},
        {"a": "edge", "b": "cloud", "bandwidth_bytes_per_s": 5.0e7, "latency_s": 0.002},
    ],
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _problem(captured):
    from tiercut.problem import build_problem

    env = environment_from_mapping(ENVIRONMENT)
    times = {n.name: {"end": 0.01, "edge": 0.005, "cloud": 0.001} for n in captured.graph if not n.is_input}
    return build_problem(captured.graph, env, source="end", compute_s=times)


def test_next_hop_and_route_relays_follow_the_cost_model():
    from tiercut.graph import capture_model

    captured = capture_model("alexnet", (1, 3, 64, 64))
    problem = _problem(captured)
    nodes = [n.name for n in captured.graph.nodes]
    placement = {n: ("cloud" if 0 < i < len(nodes) - 1 else "end") for i, n in enumerate(nodes)}
    assert evaluate(problem, placement).valid  # the relay makes the all-cloud middle feasible
    relays = route_relays(problem, placement, ["end", "cloud"])
    assert relays == {"end>cloud": ("edge",), "cloud>end": ("edge",)}
    route = Route((Step(0, "end", None, (), ("x",)),), ("x",), "end", relays)
    assert route.next_hop("end", "cloud") == ("edge", ["cloud"])
    assert route.next_hop("end", "edge") == ("edge", [])
    assert Route.from_dict(route.to_dict()).relays == relays
    with pytest.raises(RouteError, match="malformed"):
        Route((), (), "end", {"end>cloud": ("cloud",)})  # a relay cannot be an end of its own path
    with pytest.raises(RouteError, match="relays"):
        Route.from_dict({**route.to_dict(), "relays": {"end>cloud": "edge"}})


@pytest.mark.slow
def test_the_edge_relays_queries_between_end_and_cloud_and_outputs_match(tmp_path: Path):
    from tiercut.graph import capture_model

    captured = capture_model("alexnet", (1, 3, 64, 64))
    problem = _problem(captured)
    nodes = [n.name for n in captured.graph.nodes]
    placement = {n: ("cloud" if 2 <= i < len(nodes) - 2 else "end") for i, n in enumerate(nodes)}
    migration = prepare_migration(captured, placement_plan(placement, "end"), problem=problem)
    assert migration.servers == ["cloud"] and migration.relays == ["edge"]
    env_file = tmp_path / "env.yaml"
    env_file.write_text(yaml.safe_dump(ENVIRONMENT))
    settings = RunSettings(queries=3, rate_hz=20.0, verify_outputs=True, queries_after_upload=3, max_run_s=240)
    with LocalCluster(["cloud", "edge"], env=str(env_file)) as cluster:
        result = run_migration(
            migration,
            cluster.addresses,
            credentials=cluster.credentials(),
            settings=settings,
            environment=load_environment(env_file),
        )
    assert result.failed_queries == 0 and all(q.output_matches for q in result.queries)
    last = result.queries[-1]
    assert last.stage == 1 and not last.fallback
    assert [h.device for h in last.spans if h.kind == "compute"] == ["end", "cloud", "end"]  # the edge computes nothing
    relayed = [(h.device, h.peer) for h in last.spans if h.kind == "relay"]
    assert relayed == [("edge", "cloud")]
    assert {(h.device, h.peer) for h in last.spans if h.kind == "transfer"} == {("end", "cloud")}
