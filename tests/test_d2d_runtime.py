"""A D2D plan run on local workers: one worker process per helper device, outputs equal to the whole model.

The camera (the client) cannot lend its model to one phone alone: each phone
lends 100 kB, less than the CNN's weights, so the d2d planner puts the conv
stack on one helper and the classifier on another; the runtime follows the
plan (camera -> phone -> phone over their D2D links, the answer back along
the chain of calls) and every query's output must equal the whole model's.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tiercut.env import environment_from_mapping, load_environment
from tiercut.runtime.client import RunSettings
from tiercut.runtime.migration import placement_plan, prepare_migration
from tiercut.runtime.session import LocalCluster, run_migration

pytestmark = pytest.mark.slow  # spawns worker processes

HELPERS = ("phone1", "phone2", "phone3")
ENVIRONMENT = {
    "name": "d2d-small",
    "devices": [
        {"name": "camera", "tier": "end"},
        *({"name": h, "tier": "end", "memory_bytes": 100_000} for h in HELPERS),
    ],
    "links": [{"tiers": ["end", "end"], "bandwidth_bytes_per_s": 5.0e7, "latency_s": 0.001}],
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _plan():
    from tiercut.exits.models import digits_cnn
    from tiercut.graph import capture_model
    from tiercut.plan import plan
    from tiercut.problem import build_problem

    captured = capture_model(digits_cnn(), (1, 1, 8, 8))
    env = environment_from_mapping(ENVIRONMENT)
    times = {n.name: {"camera": 0.02, **dict.fromkeys(HELPERS, 0.002)} for n in captured.graph if not n.is_input}
    problem = build_problem(captured.graph, env, source="camera", compute_s=times)
    return captured, problem, plan(problem, "d2d")


def test_the_d2d_plan_runs_on_one_worker_per_helper_and_outputs_match(tmp_path: Path):
    captured, problem, d2d = _plan()
    assert d2d.feasible
    helpers_used = {d for n, d in d2d.placement.items() if d != "camera"}
    assert len(helpers_used) == 2  # no phone holds the whole CNN
    migration = prepare_migration(captured, placement_plan(dict(d2d.placement), "camera"), problem=problem)
    assert set(migration.servers) == helpers_used
    env_file = tmp_path / "env.yaml"
    env_file.write_text(yaml.safe_dump(ENVIRONMENT))
    settings = RunSettings(queries=3, rate_hz=20.0, verify_outputs=True, queries_after_upload=3, max_run_s=240)
    with LocalCluster(list(HELPERS), env=str(env_file)) as cluster:
        assert set(cluster.processes) == set(HELPERS)  # one worker process per helper device
        assert len({p.pid for p in cluster.processes.values()}) == len(HELPERS)
        result = run_migration(
            migration,
            cluster.addresses,
            credentials=cluster.credentials(),
            settings=settings,
            environment=load_environment(env_file),
        )
    assert result.failed_queries == 0 and all(q.output_matches for q in result.queries)
    last = result.queries[-1]
    assert not last.fallback
    computed = [h.device for h in last.spans if h.kind == "compute"]
    assert set(computed) >= helpers_used
