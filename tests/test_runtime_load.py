"""Eight clients querying one worker at once on loopback: no query lost or mixed up, memory bounded.

A smaller version of ``benchmarks/runtime_fidelity.py``'s load run (8 x 100
queries); this one issues 8 x 12.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
import torch

from tiercut.graph import capture_model
from tiercut.runtime.client import RunSettings
from tiercut.runtime.migration import placement_plan, prepare_migration
from tiercut.runtime.protocol import Connection
from tiercut.runtime.session import LocalCluster, run_migration

pytestmark = pytest.mark.slow  # every test spawns worker processes

CLIENTS = 8
QUERIES = 12


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _inputs_of(client: int):
    def inputs(i: int) -> tuple[torch.Tensor, ...]:
        generator = torch.Generator().manual_seed(7919 * client + i)
        return (torch.randn(1, 3, 32, 32, generator=generator),)

    return inputs


def test_eight_clients_at_once_lose_and_mix_up_nothing():
    captured = capture_model("resnet18", (1, 3, 32, 32))
    nodes = [n.name for n in captured.graph.nodes]
    placement = {n: ("end" if i < 4 else "edge") for i, n in enumerate(nodes)}
    migration = prepare_migration(captured, placement_plan(placement, "end"))
    with LocalCluster(["edge"], torch_threads=1) as cluster:
        setup = run_migration(
            migration,
            cluster.addresses,
            credentials=cluster.credentials(),
            settings=RunSettings(queries=1, queries_after_upload=1, max_run_s=120),
        )
        assert setup.upload_end_s is not None
        results: list = [None] * CLIENTS
        errors: list = []

        def client(c: int) -> None:
            try:
                results[c] = run_migration(
                    migration,
                    cluster.addresses,
                    credentials=cluster.credentials(),
                    settings=RunSettings(queries=QUERIES, fresh=False, verify_outputs=True, max_run_s=240),
                    query_inputs=_inputs_of(c),
                )
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=client, args=(c,)) for c in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)

        async def status():
            connection = Connection("edge", cluster.addresses["edge"], cluster.credentials())
            try:
                return await connection.status()
            finally:
                await connection.close()

        worker = asyncio.run(status())
    assert not errors, errors
    for result in results:
        assert [q.index for q in result.queries] == list(range(QUERIES))
        assert all(q.output_matches for q in result.queries)
        assert not any(q.fallback or q.error for q in result.queries)
        assert all(q.stage == 1 for q in result.queries)
    assert worker["counters"]["queries_ok"] >= CLIENTS * QUERIES
    print(f"worker peak RSS {worker['peak_rss_bytes'] / 2**20:.0f} MiB after {CLIENTS}x{QUERIES} queries")
    # everything the clients made the worker hold is released (its own accounting; RSS belongs in benchmarks)
    assert worker["pending_bytes"] == 0 and worker["pending_uploads"] == 0
    assert worker["runs_active"] == 0 and worker["runs_waiting"] == 0 and worker["uploads_active"] == 0
    assert worker["held_bytes"] <= worker["max_store_bytes"]
