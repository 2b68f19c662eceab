"""Tiled stages on real gRPC workers: outputs equal the whole stack; a worker killed mid-query loses nothing."""

from __future__ import annotations

import asyncio
import functools

import pytest
import torch

from spatial_fixtures import SmallCNN
from tiercut.errors import TiercutError
from tiercut.runtime.protocol import Connection, Credentials
from tiercut.runtime.tiled import TiledExecutor
from tiercut.runtime.worker import Worker, WorkerConfig
from tiercut.spatial.geometry import Region, grid_tiles, strip_tiles
from tiercut.spatial.problem import Tile
from tiercut.spatial.tiles import fused_stack

TOKEN = "tiles-token"


@functools.cache
def conv_stack():
    """SmallCNN's fused conv/pool stack (everything before the linear head) and an input."""
    torch.manual_seed(0)
    model = SmallCNN().eval()
    body = torch.nn.Sequential(model.c1, model.r1, model.c2, model.r2, model.p1, model.c3, model.r3, model.c4, model.r4,
                               model.p2).eval()  # fmt: skip
    x = torch.randn(1, 3, 40, 40)
    return body, x, fused_stack(body, x)


async def _start(device: str, **settings) -> tuple[Worker, str]:
    worker = Worker(WorkerConfig(device=device, listen="127.0.0.1:0", credentials=Credentials(token=TOKEN), **settings),
                    log=lambda line: None)  # fmt: skip
    port = await worker.start()
    return worker, f"127.0.0.1:{port}"


@pytest.mark.parametrize(
    ("n_workers", "regions"),
    [
        (2, lambda h, w: strip_tiles(h, w, [2.0, 1.0])),
        (3, lambda h, w: grid_tiles(h, w, 2, 2)),  # 4 tiles on 3 workers: one worker takes two
        (4, lambda h, w: strip_tiles(h, w, [1.0, 1.0, 1.0, 1.0])),
    ],
)
@pytest.mark.slow
def test_tiles_on_two_to_four_workers_equal_the_whole_stack(n_workers, regions):
    body, x, stack = conv_stack()
    devices = [f"edge{i}" for i in range(n_workers)]
    tiles = [Tile(devices[i % n_workers], r) for i, r in enumerate(regions(*stack.geometry.output_hw))]

    async def scenario():
        started = [await _start(d) for d in devices]
        connections = {d: Connection(d, at, Credentials(token=TOKEN)) for d, (_, at) in zip(devices, started, strict=True)}
        try:
            executor = TiledExecutor(stack, tiles, connections)
            executor.build(x)
            crs = await executor.upload()
            assert all(cr.ok for cr in crs.values()), crs
            return await executor.run(x)
        finally:
            for connection in connections.values():
                await connection.close()
            for worker, _ in started:
                await worker.stop()

    query = asyncio.run(asyncio.wait_for(scenario(), timeout=300))
    with torch.no_grad():
        torch.testing.assert_close(query.output, body(x), atol=1e-5, rtol=1e-5)
    assert [r.ran_on for r in query.runs] == [t.device for t in tiles] and not query.recomputed


def test_executor_refuses_what_it_cannot_run():
    _, x, stack = conv_stack()
    tiles = [Tile("edge0", r) for r in strip_tiles(10, 10, [1.0, 1.0])]
    with pytest.raises(TiercutError, match="no worker connection"):
        TiledExecutor(stack, tiles, {})
    with pytest.raises(TiercutError, match="partition"):
        TiledExecutor(stack, [Tile("edge0", Region.of(0, 5, 0, 10))], {"edge0": Connection("edge0", "127.0.0.1:1")})
    executor = TiledExecutor(stack, tiles, {"edge0": Connection("edge0", "127.0.0.1:1")})

    async def unbuilt():
        await executor.run(x)

    with pytest.raises(TiercutError, match="build"):
        asyncio.run(unbuilt())


@pytest.mark.slow
def test_a_worker_process_killed_mid_query_has_its_tile_recomputed_and_the_answer_stays_correct(tmp_path):
    """Three worker processes; edge1 is slowed 1000x (by its CPU time) so its tile is surely still running when killed."""
    from tiercut.runtime.processes import spawn_worker

    body, x, stack = conv_stack()
    devices = ["edge0", "edge1", "edge2"]
    processes = [
        spawn_worker(d, token=TOKEN, extra_args=["--compute-slowdown", "1000" if d == "edge1" else "1"],
                     log_path=tmp_path / f"{d}.log")
        for d in devices
    ]  # fmt: skip
    tiles = [Tile(d, r) for d, r in zip(devices, strip_tiles(10, 10, [1.0, 1.0, 1.0]), strict=True)]
    try:

        async def scenario():
            connections = {p.device: Connection(p.device, p.address, Credentials(token=TOKEN)) for p in processes}
            try:
                executor = TiledExecutor(stack, tiles, connections, timeout_s=120)
                executor.build(x)
                assert all(cr.ok for cr in (await executor.upload()).values())
                query = asyncio.ensure_future(executor.run(x))
                await asyncio.sleep(0.3)  # edge1's tile takes 1000x its CPU time (seconds): it is mid-run
                assert not query.done()
                processes[1].kill()
                during = await query
                after = await executor.run(x)  # the next query finds edge1 gone and moves its tile at once
                return during, after
            finally:
                for connection in connections.values():
                    await connection.close()

        during, after = asyncio.run(asyncio.wait_for(scenario(), timeout=600))
    finally:
        for p in processes:
            p.stop(timeout_s=10)
    with torch.no_grad():
        expected = body(x)
    for query in (during, after):
        torch.testing.assert_close(query.output, expected, atol=1e-5, rtol=1e-5)
        (moved,) = query.recomputed
        assert moved.planned == "edge1" and moved.ran_on in ("edge0", "edge2", "local")
        assert moved.failures and moved.failures[0].startswith("edge1:")


def test_compute_slowdown_scales_cpu_time_not_time_spent_waiting_for_a_core():
    """A slowed worker waits (k - 1) x the CPU time of a run: time it spent without the CPU (a shared core,
    here a sleep) is not the device's work and is not multiplied; on a GPU the wall time is."""
    import time

    from tiercut.runtime.worker import _run_cpu_s, emulated_wait_s

    assert emulated_wait_s(10.0, cpu_s=0.01, wall_s=0.5) == pytest.approx(0.09)
    assert emulated_wait_s(10.0, cpu_s=0.01, wall_s=0.5, torch_device="cuda") == pytest.approx(4.5)
    assert emulated_wait_s(1.0, cpu_s=0.01, wall_s=0.5) == 0.0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        before = _run_cpu_s("cpu")
        time.sleep(0.2)  # off the CPU, as a run waiting for a busy core
        assert _run_cpu_s("cpu") - before < 0.1
    finally:
        torch.set_num_threads(threads)
