"""The worker service: confirmations, execution and forwarding, authentication, bounds, persistence."""

from __future__ import annotations

import asyncio
import functools
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from torch import nn

from runtime_programs import split_route
from tiercut.errors import TiercutError
from tiercut.graph import capture_model
from tiercut.profile.measure import record_fx_values
from tiercut.runtime.artifact import PartitionBundle, build_program, sha256_hex
from tiercut.runtime.links import FaultPlan
from tiercut.runtime.protocol import Connection, Credentials, RemoteError
from tiercut.runtime.route import ForwardResult, HopRecord, Route, Step, run_route
from tiercut.runtime.worker import Worker, WorkerConfig, parse_address, parse_peers

TOKEN = "test-token"


@functools.cache
def _setup(devices: tuple[str, ...] = ("end", "edge", "cloud")):
    """A 4-layer MLP placed end -> edge -> cloud -> end, its programs, bundles and route."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 8)).eval()
    captured = capture_model(model, (4, 16))
    names = [n.name for n in captured.graph.nodes]
    owner = {names[0]: "end", names[1]: "end"}
    for i, name in enumerate(names[2:], 2):
        owner[name] = devices[1] if i < 4 else (devices[2] if i < 5 else devices[0])
    split, bundles, route = split_route(captured, owner)
    return captured, split, bundles, route


def _bytes(bundle: PartitionBundle) -> tuple[bytes, str]:
    data = bundle.to_bytes()
    return data, sha256_hex(data)


async def _start(device: str, **settings) -> tuple[Worker, str]:
    settings.setdefault("credentials", Credentials(token=TOKEN))
    worker = Worker(WorkerConfig(device=device, listen="127.0.0.1:0", **settings), log=lambda line: None)
    port = await worker.start()
    return worker, f"127.0.0.1:{port}"


async def _query(route: Route, split, inputs, connections: dict[str, Connection]):
    """Run the route as the client does: its own steps here, the rest forwarded."""
    values = dict(split.input_spec.bind(inputs))
    records: list[HopRecord] = []

    async def run_step(step, received):
        return split.partitions[step.index].run(received), 0.0

    async def forward(device, at, sent, wanted, chain):
        reply = await connections[device].execute(
            {"route": route.to_dict(), "position": at, "chain": chain, "wanted": wanted, "from": "end"}, sent
        )
        return ForwardResult(
            reply.frame.values, int(reply.frame.meta["position"]), [HopRecord.from_dict(r) for r in reply.frame.meta["records"]]
        )

    end = await run_route(route, "end", [], 0, values, run_step, forward, records)
    assert end == len(route)
    return split.output_spec.build(values), records


def _run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, timeout=120))


# ----------------------------------------------------------------- confirmations and execution
def test_a_query_goes_end_edge_cloud_and_back_with_equal_output():
    captured, split, bundles, route = _setup()

    async def scenario():
        cloud, cloud_at = await _start("cloud")
        edge, edge_at = await _start("edge", peers={"cloud": cloud_at})
        connections = {d: Connection(d, a, Credentials(token=TOKEN)) for d, a in (("edge", edge_at), ("cloud", cloud_at))}
        try:
            for device in ("edge", "cloud"):
                data, sha = _bytes(bundles[device])
                cr = await connections[device].upload(bundles[device].partition_id, data, sha)
                assert cr.ok and cr.code == "ok" and cr.sha256 == sha and cr.programs
            x = torch.randn(4, 16)
            output, records = await _query(route, split, (x,), {"edge": connections["edge"]})
            status = await connections["edge"].status()
            return x, output, records, status
        finally:
            for connection in connections.values():
                await connection.close()
            await edge.stop()
            await cloud.stop()

    x, output, records, status = _run(scenario())
    with torch.no_grad():
        assert torch.equal(output, captured.graph_module(x))
    assert [r.device for r in records if r.kind == "run"] == ["end", "edge", "cloud", "end"]
    assert any(r.kind == "forward" and r.device == "edge" and r.peer == "cloud" and r.bytes_sent > 0 for r in records)
    assert status["device"] == "edge" and [p["partition_id"] for p in status["partitions"]] == ["mlp.edge"]
    assert status["peak_rss_bytes"] >= status["rss_bytes"] > 0


@pytest.mark.slow
def test_damaged_chunks_get_a_failed_cr_listing_what_is_missing_and_the_resend_completes():
    _, _, bundles, _ = _setup()
    data, sha = _bytes(bundles["edge"])

    async def scenario():
        worker, address = await _start("edge")
        faulty = Connection("edge", address, Credentials(token=TOKEN), chunk_bytes=256, faults=FaultPlan(0.15, 0.15, seed=5))
        clean = Connection("edge", address, Credentials(token=TOKEN), chunk_bytes=256)
        program = bundles["edge"].programs[0].manifest.program_id
        try:
            results = []
            chunks = None
            for _ in range(12):
                cr = await faulty.upload("mlp.edge", data, sha, chunks=chunks)
                results.append(cr)
                if cr.ok:
                    break
                assert not worker.store.has_program(program)  # nothing of an incomplete upload is usable
                if cr.missing_chunks is not None:
                    chunks = cr.missing_chunks
            return results, faulty.faults
        finally:
            await faulty.close()
            await clean.close()
            await worker.stop()

    results, faults = _run(scenario())
    assert faults.dropped + faults.corrupted > 0
    assert results[-1].ok
    failures = [cr for cr in results if not cr.ok]
    assert failures and all(cr.retryable for cr in failures)
    assert any(cr.code == "incomplete" and cr.missing_chunks for cr in failures)


@pytest.mark.slow
def test_wrong_checksum_and_invalid_bundles_are_never_stored():
    _, _, bundles, _ = _setup()
    data, sha = _bytes(bundles["edge"])

    async def scenario():
        worker, address = await _start("edge")
        connection = Connection("edge", address, Credentials(token=TOKEN))
        try:
            wrong = await connection.upload("mlp.edge", data, "0" * 64)
            garbage = b"not a bundle" * 10
            invalid = await connection.upload("junk", garbage, sha256_hex(garbage))
            mislabelled = await connection.upload("other-id", data, sha)
            status = await connection.status()
            return wrong, invalid, mislabelled, status
        finally:
            await connection.close()
            await worker.stop()

    wrong, invalid, mislabelled, status = _run(scenario())
    assert not wrong.ok and wrong.code == "corrupt" and wrong.retryable
    assert not invalid.ok and invalid.code == "invalid" and not invalid.retryable
    assert not mislabelled.ok and "not 'other-id'" in mislabelled.reason
    assert status["partitions"] == []


@pytest.mark.slow
def test_unknown_partitions_get_a_clear_not_found():
    _, split, _, route = _setup(("end", "edge", "edge"))

    async def scenario():
        worker, address = await _start("edge")
        connection = Connection("edge", address, Credentials(token=TOKEN))
        try:
            with pytest.raises(RemoteError) as info:
                await _query(route, split, (torch.randn(4, 16),), {"edge": connection})
            return info.value
        finally:
            await connection.close()
            await worker.stop()

    error = _run(scenario())
    assert error.code == "NOT_FOUND" and "not on device 'edge'" in str(error) and "upload it" in str(error)


@pytest.mark.slow
def test_a_worker_without_a_peer_address_says_how_to_give_one():
    _, split, bundles, route = _setup()

    async def scenario():
        worker, address = await _start("edge")
        connection = Connection("edge", address, Credentials(token=TOKEN))
        try:
            data, sha = _bytes(bundles["edge"])
            assert (await connection.upload("mlp.edge", data, sha)).ok
            with pytest.raises(RemoteError) as info:
                await _query(route, split, (torch.randn(4, 16),), {"edge": connection})
            return info.value
        finally:
            await connection.close()
            await worker.stop()

    error = _run(scenario())
    assert error.code == "INVALID_ARGUMENT" and "--peers cloud=HOST:PORT" in str(error)


@pytest.mark.slow
def test_values_that_do_not_fit_the_program_and_damaged_frames_are_refused():
    _, split, bundles, route = _setup(("end", "edge", "edge"))
    data, sha = _bytes(bundles["edge"])

    async def scenario():
        worker, address = await _start("edge")
        connection = Connection("edge", address, Credentials(token=TOKEN))
        damaging = Connection("edge", address, Credentials(token=TOKEN), faults=FaultPlan(corrupt_probability=1.0))
        try:
            assert (await connection.upload("mlp.edge", data, sha)).ok
            with pytest.raises(RemoteError) as wrong_shape:
                await _query(route, split, (torch.randn(3, 16),), {"edge": connection})
            with pytest.raises(RemoteError) as damaged:
                await _query(route, split, (torch.randn(4, 16),), {"edge": damaging})
            return wrong_shape.value, damaged.value
        finally:
            await connection.close()
            await damaging.close()
            await worker.stop()

    wrong_shape, damaged = _run(scenario())
    assert wrong_shape.code == "INVALID_ARGUMENT" and "exported for" in str(wrong_shape)
    assert damaged.code == "DATA_LOSS"


# ----------------------------------------------------------------- authentication and bounds
def test_clients_without_the_token_are_refused():
    _, split, bundles, route = _setup(("end", "edge", "edge"))
    data, sha = _bytes(bundles["edge"])

    async def scenario():
        worker, address = await _start("edge")
        outcomes = {}
        for label, credentials in (("none", Credentials()), ("wrong", Credentials(token="nope"))):
            connection = Connection("edge", address, credentials)
            try:
                with pytest.raises(RemoteError) as status:
                    await connection.status()
                cr = await connection.upload("mlp.edge", data, sha)
                with pytest.raises(RemoteError) as query:
                    await _query(route, split, (torch.randn(4, 16),), {"edge": connection})
                outcomes[label] = (status.value.code, cr, query.value.code)
            finally:
                await connection.close()
        stored = worker.store.partitions()
        await worker.stop()
        return outcomes, stored

    outcomes, stored = _run(scenario())
    for status_code, cr, query_code in outcomes.values():
        assert status_code == "UNAUTHENTICATED" and query_code == "UNAUTHENTICATED"
        assert not cr.ok and cr.code == "refused" and not cr.retryable
    assert stored == []


@pytest.mark.slow
def test_oversize_messages_and_a_full_store_are_refused():
    _, _, bundles, route = _setup(("end", "edge", "edge"))
    data, sha = _bytes(bundles["edge"])

    async def scenario():
        small, small_at = await _start("edge", max_message_bytes=len(data) - 1)
        full, full_at = await _start("edge", max_store_bytes=100)
        roomy, roomy_at = await _start("edge", max_message_bytes=len(data) + 10)
        connections = [Connection("edge", a, Credentials(token=TOKEN)) for a in (small_at, full_at, roomy_at)]
        try:
            too_big = await connections[0].upload("mlp.edge", data, sha)
            store_full = await connections[1].upload("mlp.edge", data, sha)
            assert (await connections[2].upload("mlp.edge", data, sha)).ok
            huge = {"x": torch.zeros(len(data))}  # a query frame larger than the bound
            with pytest.raises(RemoteError) as query:
                await connections[2].execute({"route": route.to_dict(), "position": 1, "chain": ["end"], "wanted": []}, huge)
            return too_big, store_full, query.value
        finally:
            for connection in connections:
                await connection.close()
            for worker in (small, full, roomy):
                await worker.stop()

    too_big, store_full, query = _run(scenario())
    assert not too_big.ok and too_big.code == "too_large" and "--max-message-bytes" in too_big.reason
    assert not store_full.ok and store_full.code == "too_large" and "--max-store-bytes" in store_full.reason
    assert query.code == "RESOURCE_EXHAUSTED" and "--max-message-bytes" in str(query)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: cannot make test certificates for mutual TLS")
    folder = tmp_path_factory.mktemp("tls")

    def run(*args):
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=60)

    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=tiercut test CA")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client", "stranger"):
        run("req", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
    for name in ("server", "client"):
        run(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{name}.pem",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        )
    run("req", "-x509", *key, "-keyout", "other-ca.key", "-out", "other-ca.pem", "-days", "2", "-subj", "/CN=other CA")
    run(
        "x509",
        "-req",
        "-in",
        "stranger.csr",
        "-CA",
        "other-ca.pem",
        "-CAkey",
        "other-ca.key",
        "-CAcreateserial",
        "-out",
        "stranger.pem",
        "-days",
        "2",
    )
    return folder


@pytest.mark.slow
def test_mutual_tls_admits_certified_clients_only(tls_files: Path):
    _, split, bundles, route = _setup(("end", "edge", "edge"))
    data, sha = _bytes(bundles["edge"])
    server = Credentials(tls_cert=tls_files / "server.pem", tls_key=tls_files / "server.key", tls_ca=tls_files / "ca.pem")
    client = Credentials(tls_cert=tls_files / "client.pem", tls_key=tls_files / "client.key", tls_ca=tls_files / "ca.pem")
    stranger = Credentials(tls_cert=tls_files / "stranger.pem", tls_key=tls_files / "stranger.key", tls_ca=tls_files / "ca.pem")

    async def scenario():
        worker, address = await _start("edge", credentials=server)
        good = Connection("edge", address, client)
        bad = Connection("edge", address, stranger)
        plain = Connection("edge", address, Credentials())
        try:
            assert (await good.upload("mlp.edge", data, sha)).ok
            x = torch.randn(4, 16)
            output, _ = await _query(route, split, (x,), {"edge": good})
            refused = []
            for connection in (bad, plain):
                with pytest.raises(RemoteError) as info:
                    await connection.status(timeout_s=5)
                refused.append(info.value.code)
            return x, output, refused
        finally:
            for connection in (good, bad, plain):
                await connection.close()
            await worker.stop()

    x, output, refused = _run(scenario())
    with torch.no_grad():
        assert torch.equal(output, split.run(x))
    assert all(code in ("UNAVAILABLE", "UNAUTHENTICATED", "DEADLINE_EXCEEDED") for code in refused)


@pytest.mark.slow
def test_a_restarted_worker_with_a_store_keeps_and_runs_what_it_had(tmp_path):
    _, split, bundles, route = _setup(("end", "edge", "edge"))
    data, sha = _bytes(bundles["edge"])

    async def scenario():
        first, address = await _start("edge", store_dir=tmp_path)
        connection = Connection("edge", address, Credentials(token=TOKEN))
        assert (await connection.upload("mlp.edge", data, sha)).ok
        await connection.close()
        await first.stop()
        second, address = await _start("edge", store_dir=tmp_path)
        connection = Connection("edge", address, Credentials(token=TOKEN))
        try:
            status = await connection.status()
            x = torch.randn(4, 16)
            output, _ = await _query(route, split, (x,), {"edge": connection})
            dropped = await connection.drop()
            return status, x, output, dropped
        finally:
            await connection.close()
            await second.stop()

    status, x, output, dropped = _run(scenario())
    assert [p["partition_id"] for p in status["partitions"]] == ["mlp.edge"]
    with torch.no_grad():
        assert torch.equal(output, split.run(x))
    assert dropped == ["mlp.edge"]
    assert not any(p.suffix == ".safetensors" for p in tmp_path.iterdir())


@pytest.mark.parametrize(
    "text, message",
    [
        ("nohost", "host:port"),
        ("h:99999", "out of range"),
        ("edge=1.2.3.4", "host:port"),
        ("a=h:1,a=h:2", "two addresses"),
        ("=h:1", "name=host:port"),
    ],
)
def test_bad_addresses_are_one_line_errors(text, message):
    with pytest.raises(TiercutError, match=message):
        parse_peers(text) if "=" in text or "," in text else parse_address(text)


def test_worker_settings_are_checked():
    with pytest.raises(TiercutError, match="device name"):
        WorkerConfig(device="")
    with pytest.raises(TiercutError, match="itself"):
        WorkerConfig(device="edge", peers={"edge": "127.0.0.1:1"})
    with pytest.raises(TiercutError, match="must be > 0"):
        WorkerConfig(device="edge", max_store_bytes=0)
    with pytest.raises(TiercutError, match="together"):
        Credentials(tls_cert=Path("a.pem"))


# ----------------------------------------------------------------- execution off the event loop
def _long_program(seconds: float = 5.0):
    """A chain of identity matrix products taking at least about ``seconds`` here (its output is its input, exactly).

    Few heavy steps (1024 x 1024 products): checking the program at upload costs per step, running it per FLOP.
    """
    import time

    from runtime_programs import hand_program, node, ref

    size = 1024
    eye, x = torch.eye(size), torch.randn(size, size)
    for _ in range(2):  # warm up
        torch.mm(x, eye)
    times = []
    for _ in range(8):
        start = time.perf_counter()
        torch.mm(x, eye)
        times.append(time.perf_counter() - start)
    per_step = sorted(times)[len(times) // 4]  # a fast step: the chain takes at least about ``seconds``
    steps = int(min(20_000, max(20, seconds / per_step)))
    nodes = [node("m0", "aten.mm.default", ref("x"), ref("eye"))]
    nodes += [node(f"m{i}", "aten.mm.default", ref(f"m{i - 1}"), ref("eye")) for i in range(1, steps)]
    program, weights = hand_program(nodes, {"x": x}, {"eye": eye}, [f"m{steps - 1}"], [((size, size), torch.float32)])
    return program, weights, x, steps


def _program_route(program) -> Route:
    manifest = program.manifest
    step = Step(0, "edge", manifest.program_id, manifest.input_names, manifest.output_names)
    return Route((step,), manifest.output_names, "end")


async def _until(predicate, connection, limit_s: float = 60.0) -> dict:
    """Poll the worker's status until ``predicate`` holds (a bound on the wait, not a timing assertion)."""
    for _ in range(int(limit_s / 0.02)):
        status = await connection.status()
        if predicate(status):
            return status
        await asyncio.sleep(0.02)
    raise AssertionError(f"the worker never reached the expected state: {status}")


@pytest.mark.slow
def test_status_and_an_upload_are_answered_while_a_long_query_runs():
    from runtime_programs import bundle_of

    program, weights, x, _ = _long_program(5.0)
    long_bundle = bundle_of("long", program, weights)
    _, _, bundles, _ = _setup(("end", "edge", "edge"))
    other = bundles["edge"]
    route = _program_route(program)

    async def scenario():
        worker, address = await _start("edge", threads=1)
        connection = Connection("edge", address, Credentials(token=TOKEN))
        try:
            data, sha = _bytes(long_bundle)
            assert (await connection.upload(long_bundle.partition_id, data, sha)).ok
            meta = {"route": route.to_dict(), "position": 0, "chain": ["end"], "wanted": list(route.result_names)}
            query = asyncio.ensure_future(connection.execute(meta, {"x": x}))
            running = await _until(lambda s: s["runs_active"] == 1, connection)
            answered_while_running = not query.done()
            data, sha = _bytes(other)
            cr = await connection.upload(other.partition_id, data, sha)
            uploaded_while_running = not query.done()
            reply = await query
            return running, answered_while_running, cr, uploaded_while_running, reply
        finally:
            await connection.close()
            await worker.stop()

    running, answered_while_running, cr, uploaded_while_running, reply = _run(scenario())
    assert running["runs_active"] == 1 and answered_while_running  # Status came back before the query
    assert cr.ok and uploaded_while_running  # so did a whole upload, verified and admitted
    assert torch.equal(reply.frame.values[route.result_names[0]], x)


@pytest.mark.slow
def test_a_query_whose_deadline_passes_stops_at_the_next_step_and_frees_its_thread():
    program, weights, x, steps = _long_program(10.0)
    route = _program_route(program)
    _, split, bundles, small_route = _setup(("end", "edge", "edge"))

    async def scenario():
        from runtime_programs import bundle_of

        worker, address = await _start("edge", threads=1)
        connection = Connection("edge", address, Credentials(token=TOKEN))
        try:
            for bundle in (bundle_of("long", program, weights), bundles["edge"]):
                data, sha = _bytes(bundle)
                assert (await connection.upload(bundle.partition_id, data, sha)).ok
            meta = {"route": route.to_dict(), "position": 0, "chain": ["end"], "wanted": list(route.result_names)}
            with pytest.raises(RemoteError) as expired:
                await connection.execute(meta, {"x": x}, timeout_s=1.0)
            stopped = await _until(lambda s: s["runs_active"] == 0 and s["counters"].get("runs_stopped", 0) == 1, connection)
            x_small = torch.randn(4, 16)
            output, _ = await _query(small_route, split, (x_small,), {"edge": connection})  # the one thread is free
            return expired.value, stopped, x_small, output
        finally:
            await connection.close()
            await worker.stop()

    expired, stopped, x_small, output = _run(scenario())
    assert expired.code == "DEADLINE_EXCEEDED"
    assert stopped["counters"]["stopped_runs_steps_done"] < steps  # it did not run to the end
    with torch.no_grad():
        assert torch.equal(output, split.run(x_small))


@pytest.mark.slow
def test_onnx_programs_run_only_on_workers_that_allow_them():
    captured, split, _, _ = _setup(("end", "edge", "edge"))
    values = record_fx_values(captured)
    partition = next(p for p in split.partitions if p.device == "edge")
    built = build_program(partition, {n: values[n] for n in partition.input_names}, format="onnx")
    bundle = PartitionBundle("", partition.nodes, dict(built.weights), (built.program,)).named("mlp-onnx")
    data, sha = _bytes(bundle)

    async def scenario():
        results = []
        for allow in (False, True):
            worker, address = await _start("edge", allow_onnx=allow)
            connection = Connection("edge", address, Credentials(token=TOKEN))
            try:
                results.append(await connection.upload(bundle.partition_id, data, sha))
            finally:
                await connection.close()
                await worker.stop()
        return results

    refused, accepted = _run(scenario())
    assert not refused.ok and refused.code == "invalid" and "--allow-onnx" in refused.reason
    assert accepted.ok
