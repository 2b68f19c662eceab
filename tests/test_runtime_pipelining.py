"""Pipelined runs: several queries in flight across three tiers, every answer once, in order, equal to the whole model.

The in-flight window (backpressure) and the in-order delivery are checked
alone on threads; the pipelined model's stages are recomputed by hand; the
end-to-end run spawns two workers (slow).
"""

from __future__ import annotations

import asyncio
import random
import threading
import time

import pytest
import yaml

from tiercut.env import Link
from tiercut.errors import TiercutError
from tiercut.graph.types import LayerGraph, Node
from tiercut.problem import Constraints, Objective, Problem, ProblemDevice
from tiercut.runtime.client import MAX_IN_FLIGHT, RunSettings, _Window
from tiercut.runtime.pipelining import measure_pipeline, pipeline_stages
from tiercut.trace import QueryRecord

ENVIRONMENT = {
    "name": "pipeline-links",
    "devices": [{"name": "end", "tier": "end"}, {"name": "edge", "tier": "edge"}, {"name": "cloud", "tier": "cloud"}],
    "links": [
        {"a": "end", "b": "edge", "bandwidth_bytes_per_s": 2.0e7, "latency_s": 0.002},
        {"a": "edge", "b": "cloud", "bandwidth_bytes_per_s": 5.0e7, "latency_s": 0.002},
        {"a": "end", "b": "cloud", "bandwidth_bytes_per_s": 1.0e7, "latency_s": 0.005},
    ],
}


def small_problem() -> Problem:
    """x -> a -> b -> c (c also reads a); mobile m and cloud c, one link (as test_cost's hand-computed problem)."""
    graph = LayerGraph(
        (
            Node("x", "input", out_bytes=1000),
            Node("a", "conv2d", ("x",), param_bytes=10, out_bytes=500),
            Node("b", "relu", ("a",), out_bytes=500),
            Node("c", "linear", ("b", "a"), out_bytes=10, is_output=True),
        ),
        model="tiny",
    )
    devices = (ProblemDevice("m", "end"), ProblemDevice("c", "cloud"))
    links = (Link("m", "c", bandwidth_bytes_per_s=1e4, latency_s=0.01),)
    compute = {"a": {"m": 0.1, "c": 0.01}, "b": {"m": 0.05, "c": 0.005}, "c": {"m": 0.2, "c": 0.001}}
    return Problem(graph, devices, links, "m", compute, Objective.parse("latency"), Constraints())


@pytest.mark.parametrize("bad", [0, -1, MAX_IN_FLIGHT + 1, 2.5, True])
def test_in_flight_out_of_range_is_refused(bad):
    with pytest.raises(TiercutError, match="in-flight"):
        RunSettings(in_flight=bad)


def test_window_holds_at_most_size_and_delivers_in_order():
    """Queries finishing in random order: never more than 3 issued and undelivered, delivery in index order."""
    window = _Window(3)
    delivered: list[int] = []
    rng = random.Random(7)
    delays = [rng.uniform(0.0, 0.01) for _ in range(40)]
    stop = threading.Event()
    threads = []
    for index in range(40):
        assert window.enter(index, (stop,), time.monotonic() + 30)
        assert len(window._issued) <= 3

        def finish(i=index):
            time.sleep(delays[i])
            window.answered(i, i, lambda k, answer: delivered.append(answer))  # under the window's lock

        thread = threading.Thread(target=finish)
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()
    assert delivered == list(range(40))
    assert window.peak == 3


def test_window_stops_waiting_when_told():
    window = _Window(1)
    stop = threading.Event()
    assert window.enter(0, (stop,), time.monotonic() + 30)
    stop.set()
    assert not window.enter(1, (stop,), time.monotonic() + 30)  # slot never freed: gives up instead of blocking


def test_pipeline_stages_recompute_from_the_problem():
    p = small_problem()
    placement = {"a": "m", "b": "c", "c": "m"}
    prediction = pipeline_stages(p, placement)
    stages = {s.name: s.seconds for s in prediction.stages}
    # m computes a and c, c computes b; a goes m->c and b comes back c->m, each 500 / 1e4 on the link
    # (the 0.01 s latency is propagation: it delays a query, it does not occupy the link)
    assert stages == pytest.approx({"m": 0.3, "c": 0.005, "m->c": 0.05, "c->m": 0.05})
    assert prediction.bottleneck.name == "m"
    assert prediction.throughput_qps == pytest.approx(1 / 0.3)
    assert prediction.latency_s == pytest.approx(0.425)
    with pytest.raises(TiercutError, match="cannot be pipelined"):
        pipeline_stages(p, {"x": "c", "a": "c", "b": "c", "c": "c"})


def test_measure_pipeline_counts_the_stage_and_percentiles():
    def record(i, start, end, stage=1, fallback=False):
        return QueryRecord(user="end", index=i, start_s=start, end_s=end, stage=stage, fallback=fallback)

    class Result:
        in_flight, peak_in_flight = 2, 2
        queries = (
            record(0, 0.0, 0.5, stage=0),
            record(1, 0.5, 1.0),
            record(2, 0.6, 1.2),
            record(3, 1.0, 1.4, fallback=True),
            record(4, 1.2, 1.6),
        )

    measured = measure_pipeline(Result())
    assert measured.stage == 1 and measured.queries == 3 and measured.in_order
    assert measured.throughput_qps == pytest.approx(3 / (1.6 - 0.5))  # from the first issue to the last end
    after_fill = measure_pipeline(Result(), skip=1)
    assert after_fill.queries == 2 and after_fill.throughput_qps == pytest.approx(2 / (1.6 - 1.0))  # since the 1st end
    assert measured.latency_p50_s == pytest.approx(0.5)
    assert measured.latency_p95_s == pytest.approx(0.59)  # between 0.5 and 0.6 at 0.95 * 2 = 1.9


def _small_residual_net():
    """A small CNN with residual joins (a DAG), quick to capture, cut and upload."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, width: int) -> None:
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(width, width, 3, padding=1), nn.Conv2d(width, width, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(x + self.conv2(torch.relu(self.conv1(x))))

    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), *(Block(16) for _ in range(4)), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(16, 10),
    ).eval()


@pytest.mark.slow  # spawns two worker processes
def test_three_tier_run_with_queries_in_flight_answers_every_query_once_in_order(tmp_path):
    import torch

    from tiercut.env import load_environment
    from tiercut.graph import capture_model
    from tiercut.runtime.migration import placement_plan, prepare_migration
    from tiercut.runtime.protocol import Connection
    from tiercut.runtime.session import LocalCluster, run_migration

    env_file = tmp_path / "links.yaml"
    env_file.write_text(yaml.safe_dump(ENVIRONMENT))
    environment = load_environment(env_file)
    captured = capture_model(_small_residual_net(), (1, 3, 16, 16))
    nodes = [n.name for n in captured.graph.nodes]
    quarter = len(nodes) // 4
    tiers = ["end"] * quarter + ["edge"] * quarter + ["cloud"] * (len(nodes) - 2 * quarter - 2) + ["end"] * 2
    placement = dict(zip(nodes, tiers, strict=True))
    migration = prepare_migration(captured, placement_plan(placement, "end"))
    in_flight = 3
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with LocalCluster(
            ["edge", "cloud"], env=str(env_file), extra_args=["--concurrent-partitions", "1", "--max-queued-runs", "8"]
        ) as cluster:
            upload = RunSettings(queries=1, keep_uploading_s=120.0, max_run_s=240)  # the partitions go up first
            uploaded = run_migration(
                migration, cluster.addresses, credentials=cluster.credentials(), settings=upload, environment=environment
            )
            assert uploaded.upload_end_s is not None
            settings = RunSettings(queries=12, in_flight=in_flight, verify_outputs=True, fresh=False, max_run_s=240)
            result = run_migration(
                migration, cluster.addresses, credentials=cluster.credentials(), settings=settings, environment=environment
            )

            async def statuses():
                out = {}
                for device, address in cluster.addresses.items():
                    connection = Connection(device, address, cluster.credentials())
                    out[device] = await connection.status()
                    await connection.close()
                return out

            status = asyncio.run(statuses())
    finally:
        torch.set_num_threads(threads)
    indices = [q.index for q in result.queries]
    assert indices == list(range(12))  # every answer once, in order
    assert result.failed_queries == 0 and all(q.output_matches for q in result.queries)
    final = [q for q in result.queries if q.stage == 1 and not q.fallback]
    assert len(final) == 12  # all ran across the three tiers
    assert [h.device for h in final[-1].spans if h.kind == "compute"] == ["end", "edge", "cloud", "end"]
    assert {h.device for q in final for h in q.spans if h.kind == "compute"} == {"end", "edge", "cloud"}
    # backpressure: never more than in_flight queries between issue and delivery, nor waiting on a worker
    assert 2 <= result.peak_in_flight <= in_flight
    for device, body in status.items():
        assert body["runs_waiting_peak"] <= in_flight, device
        assert "queries_busy" not in body["counters"], device
    measured = measure_pipeline(result)
    assert measured.in_order and measured.queries == len(final)


@pytest.mark.parametrize("value", ["0", "33"])
def test_run_in_flight_out_of_range_is_one_line_and_exit_2(value, capsys):
    from tiercut.cli import main

    code = main(["run", "no_such_package.module:factory", "--in-flight", value])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "--in-flight" in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_run_in_flight_with_exits_is_refused(tmp_path, capsys):
    from tiercut.cli import main

    code = main(["run", "no_such_package.module:factory", "--in-flight", "2", "--exits", str(tmp_path / "e.json")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--in-flight pipelines plain runs" in err and len(err.splitlines()) == 1
