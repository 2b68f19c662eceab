"""Two clients sharing workers, each with its own token, over real gRPC: neither reaches the other's partitions.

Alice uploads a partition whose weights hold a secret. Bob knows everything
but the weights' bytes: the program, the weight digests, the partition id
(digests travel in manifests, logs and plans). Content addressing stores
identical bytes once, yet Bob must not be able to make a worker run his
program on Alice's weights by naming their digest, run Alice's programs,
see her partitions in Status, or remove what she holds by dropping his own
identical copy (nor after a restart from the store).
"""

from __future__ import annotations

import asyncio

import pytest
import torch

from runtime_programs import bundle_of, hand_program, node, ref
from tiercut.errors import TiercutError
from tiercut.runtime.artifact import sha256_hex, tensor_digest
from tiercut.runtime.profiling import ProfileRequest, request_profile
from tiercut.runtime.protocol import (
    METHOD_UPLOAD,
    ConfirmationResult,
    Connection,
    Credentials,
    RemoteError,
    UploadHeader,
    encode_chunk,
)
from tiercut.runtime.route import Route, Step
from tiercut.runtime.worker import Worker, WorkerConfig, read_client_tokens

TOKENS = {"alice": "alice-token-0123", "bob": "bob-token-4567"}
X = torch.linspace(-1, 1, 4 * 64).reshape(4, 64)
SECRET_W = torch.randn(64, generator=torch.Generator().manual_seed(7)) * 100 + 4242
SPEC = [((4, 64), torch.float32)]


def _times_weight(w: torch.Tensor, *, name: str = "w"):
    return hand_program([node("y", "aten.mul.Tensor", ref("x"), ref(name))], {"x": X}, {name: w}, ["y"], SPEC)


ALICE_PROGRAM, ALICE_WEIGHTS = _times_weight(SECRET_W)
ALICE = bundle_of("mul", ALICE_PROGRAM, ALICE_WEIGHTS)


def _route(program_id: str, device: str = "edge") -> Route:
    return Route((Step(0, device, program_id, ("x",), ("y",)),), ("y",), "end")


def _meta(route: Route) -> dict:
    return {"route": route.to_dict(), "position": 0, "chain": ["end"], "wanted": list(route.result_names), "from": "end"}


async def _start(device: str = "edge", **settings) -> tuple[Worker, str]:
    config = WorkerConfig(device=device, listen="127.0.0.1:0", client_tokens=TOKENS, **settings)
    worker = Worker(config, log=lambda line: None)
    port = await worker.start()
    return worker, f"127.0.0.1:{port}"


def _client(name: str, address: str, device: str = "edge") -> Connection:
    return Connection(device, address, Credentials(token=TOKENS[name]))


async def _upload(connection: Connection, bundle):
    data = bundle.to_bytes()
    return await connection.upload(bundle.partition_id, data, sha256_hex(data))


async def _query(connection: Connection, route: Route) -> torch.Tensor:
    reply = await connection.execute(_meta(route), {"x": X})
    return reply.frame.values["y"]


def _run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, timeout=120))


def _held(status: dict) -> list[str]:
    return sorted(p["partition_id"] for p in status["partitions"])


def test_a_client_cannot_use_weights_it_did_not_upload_by_naming_their_digest():
    secret_digest = tensor_digest(SECRET_W)
    # Bob's program names Alice's weight digest and does not carry the weight: only "uses" it
    forged = bundle_of("steal", ALICE_PROGRAM, {})

    async def scenario():
        worker, address = await _start()
        alice, bob = _client("alice", address), _client("bob", address)
        try:
            assert (await _upload(alice, ALICE)).ok
            held_after_alice = (await alice.status())["held_bytes"]
            stolen = await _upload(bob, forged)
            try:
                await _query(bob, _route(ALICE_PROGRAM.manifest.program_id))
                bob_ran = "ran"
            except RemoteError as exc:
                bob_ran = exc.code
            try:  # nor may he time it (the Profile RPC runs a stored program)
                await request_profile(bob, ProfileRequest(program_id=ALICE_PROGRAM.manifest.program_id, repeats=1))
                bob_profiled = "profiled"
            except RemoteError as exc:
                bob_profiled = exc.code
            bob_status = await bob.status()
            alice_answer = await _query(alice, _route(ALICE_PROGRAM.manifest.program_id))
            # possession proven: Bob uploads the weight's bytes himself; they are stored once
            own = await _upload(bob, ALICE)
            bob_answer = await _query(bob, _route(ALICE_PROGRAM.manifest.program_id))
            held_after_bob = (await bob.status())["held_bytes"]
            return stolen, (bob_ran, bob_profiled), bob_status, alice_answer, own, bob_answer, held_after_alice, held_after_bob
        finally:
            await alice.close()
            await bob.close()
            await worker.stop()

    stolen, bob_tries, bob_status, alice_answer, own, bob_answer, held_alice, held_bob = _run(scenario())
    assert not stolen.ok and stolen.code == "missing_weights" and stolen.missing == (secret_digest,)
    assert bob_tries == ("NOT_FOUND", "NOT_FOUND")  # Alice's program is unknown to Bob, not merely refused
    assert _held(bob_status) == []  # and her partitions are not listed to him
    assert torch.equal(alice_answer, X * SECRET_W)
    assert own.ok and torch.equal(bob_answer, X * SECRET_W)
    assert held_bob == held_alice  # content addressing: the same weight and program are stored once


def test_a_clients_drop_removes_only_its_own_reference_to_an_identical_partition(tmp_path):
    route = _route(ALICE_PROGRAM.manifest.program_id)

    async def scenario():
        worker, address = await _start(store_dir=tmp_path)
        alice, bob = _client("alice", address), _client("bob", address)
        try:
            assert (await _upload(alice, ALICE)).ok
            assert (await _upload(bob, ALICE)).ok  # the very same bundle, under the same partition id
            held_both = (await alice.status())["held_bytes"]
            dropped_by_id = await bob.drop([ALICE.partition_id])  # a "fresh" run drops its plan's partitions
            dropped_all = await bob.drop()
            alice_answer = await _query(alice, route)
            try:
                await _query(bob, route)
                bob_outcome = "ran"
            except RemoteError as exc:
                bob_outcome = exc.code
            alice_status = await alice.status()
        finally:
            await alice.close()
            await bob.close()
            await worker.stop()
        # a restarted worker reloads Alice's partition from the store, as hers only
        worker, address = await _start(store_dir=tmp_path)
        alice, bob = _client("alice", address), _client("bob", address)
        try:
            restarted = (await alice.status(), await bob.status(), await _query(alice, route))
            dropped_by_alice = await alice.drop()
            empty = (await alice.status())["held_bytes"]
        finally:
            await alice.close()
            await bob.close()
            await worker.stop()
        return (held_both, dropped_by_id, dropped_all, alice_answer, bob_outcome, alice_status, restarted,
                dropped_by_alice, empty)

    held_both, by_id, dropped_all, alice_answer, bob_outcome, alice_status, restarted, by_alice, empty = _run(scenario())
    assert held_both > 0 and by_id == [ALICE.partition_id] and dropped_all == []
    assert torch.equal(alice_answer, X * SECRET_W) and bob_outcome == "NOT_FOUND"
    assert _held(alice_status) == [ALICE.partition_id] and alice_status["held_bytes"] == held_both
    alice_after, bob_after, answer_after = restarted
    assert _held(alice_after) == [ALICE.partition_id] and _held(bob_after) == []
    assert torch.equal(answer_after, X * SECRET_W)
    assert by_alice == [ALICE.partition_id] and empty == 0
    assert not list(tmp_path.glob("*.safetensors"))  # the last reference gone, the file is too


def test_a_forwarded_query_runs_on_the_next_worker_as_its_own_client():
    edge_program, edge_weights = hand_program(
        [node("h", "aten.mul.Tensor", ref("x"), ref("w"))], {"x": X}, {"w": torch.full((64,), 2.0)}, ["h"], SPEC
    )
    cloud_program, cloud_weights = hand_program(
        [node("y", "aten.mul.Tensor", ref("h"), ref("w"))], {"h": X}, {"w": SECRET_W}, ["y"], SPEC
    )
    route = Route(
        (
            Step(0, "edge", edge_program.manifest.program_id, ("x",), ("h",)),
            Step(1, "cloud", cloud_program.manifest.program_id, ("h",), ("y",)),
        ),
        ("y",),
        "end",
    )

    async def scenario():
        cloud, cloud_address = await _start("cloud")
        edge, edge_address = await _start("edge", peers={"cloud": cloud_address})
        connections = {
            (who, device): _client(who, address, device)
            for who in TOKENS
            for device, address in (("edge", edge_address), ("cloud", cloud_address))
        }
        try:
            assert (await _upload(connections["alice", "cloud"], bundle_of("cloud-part", cloud_program, cloud_weights))).ok
            for who in TOKENS:  # both clients hold the (harmless) edge partition
                assert (await _upload(connections[who, "edge"], bundle_of("edge-part", edge_program, edge_weights))).ok
            outcomes = {}
            for who in TOKENS:
                try:
                    reply = await connections[who, "edge"].execute(_meta(route), {"x": X})
                    outcomes[who] = reply.frame.values["y"]
                except RemoteError as exc:
                    outcomes[who] = exc.code
            return outcomes
        finally:
            for connection in connections.values():
                await connection.close()
            await edge.stop()
            await cloud.stop()

    outcomes = _run(scenario())
    assert torch.equal(outcomes["alice"], X * 2.0 * SECRET_W)
    assert outcomes["bob"] == "NOT_FOUND"  # the edge forwarded Bob's query as Bob's: the cloud part is Alice's


def test_client_tokens_are_checked():
    with pytest.raises(TiercutError, match="client name"):
        WorkerConfig(device="edge", client_tokens={"shared": "t0123"})
    with pytest.raises(TiercutError, match="client name"):
        WorkerConfig(device="edge", client_tokens={"a b": "t0123"})
    with pytest.raises(TiercutError, match="without spaces"):
        WorkerConfig(device="edge", client_tokens={"alice": ""})
    with pytest.raises(TiercutError, match="give each its own"):
        WorkerConfig(device="edge", client_tokens={"alice": "same", "bob": "same"})
    with pytest.raises(TiercutError, match="give each its own"):
        WorkerConfig(device="edge", credentials=Credentials(token="same"), client_tokens={"alice": "same"})


def test_a_wrong_token_is_refused_when_clients_have_their_own():
    async def scenario():
        worker, address = await _start()
        stranger = Connection("edge", address, Credentials(token="not-a-client-token"))
        try:
            await stranger.status()
        except RemoteError as exc:
            return exc.code
        finally:
            await stranger.close()
            await worker.stop()
        return "answered"

    assert _run(scenario()) == "UNAUTHENTICATED"


def test_client_tokens_are_read_from_a_private_file(tmp_path):
    path = tmp_path / "clients"
    path.write_text("# name token\nalice alice-token-0123\n\nbob bob-token-4567  # the second client\n")
    path.chmod(0o600)
    assert read_client_tokens(path) == TOKENS
    path.chmod(0o644)
    with pytest.raises(TiercutError, match="chmod 600"):
        read_client_tokens(path)
    for text, message in (("alice\n", "NAME TOKEN"), ("a t1\na t2\n", "second time"), ("# none\n", "names no client")):
        path.write_text(text)
        path.chmod(0o600)
        with pytest.raises(TiercutError, match=message):
            read_client_tokens(path)
    with pytest.raises(TiercutError, match="cannot read"):
        read_client_tokens(tmp_path / "missing")


async def _incomplete_upload(name: str, address: str, partition_id: str) -> ConfirmationResult:
    """Send the first of two 1 KiB chunks of an upload as client ``name``: the worker keeps it for a resend."""
    import grpc

    async def stream():
        yield UploadHeader(partition_id, 2048, "ab" * 32, 1024).to_bytes()
        yield encode_chunk(0, b"\1" * 1024)

    async with grpc.aio.insecure_channel(address) as channel:
        metadata = (("authorization", f"Bearer {TOKENS[name]}"),)
        reply = await channel.stream_unary(METHOD_UPLOAD)(stream(), metadata=metadata, timeout=30)
    return ConfirmationResult.from_bytes(reply)


def test_one_client_cannot_take_every_slot_for_incomplete_uploads():
    async def scenario():
        worker, address = await _start(max_pending_uploads=4, max_pending_uploads_per_client=2)
        try:
            alice = [await _incomplete_upload("alice", address, f"a{i}") for i in range(3)]
            bob = await _incomplete_upload("bob", address, "b0")
            return alice, bob
        finally:
            await worker.stop()

    alice, bob = _run(scenario())
    assert [cr.code for cr in alice] == ["incomplete", "incomplete", "busy"]
    assert "per client" in alice[2].reason and alice[2].retryable
    assert bob.code == "incomplete"  # Alice's third was turned away, yet Bob still gets a slot


def test_a_full_store_refuses_an_upload_of_weights_it_holds_like_any_other():
    """Near a full store, whether an upload fits must not reveal that another client's weights are held."""
    other_w = SECRET_W + 1  # same size, different bytes
    program, weights = _times_weight(other_w)
    novel = bundle_of("mul", program, weights)
    size = len(ALICE.to_bytes())
    held = sum(t.numel() * t.element_size() for t in ALICE.weights.values()) + sum(len(p.data) for p in ALICE.programs)

    async def scenario():
        # Alice's partition fits, and Bob's deduplicated copy would add nothing, but a novel one would not fit
        worker, address = await _start(max_store_bytes=held + size - 1)
        try:
            alice, bob = _client("alice", address), _client("bob", address)
            assert (await _upload(alice, ALICE)).ok
            # Bob's copy of Alice's bundle, then one nobody holds: the same answer
            return [await _upload(bob, bundle) for bundle in (ALICE, novel)]
        finally:
            await worker.stop()

    outcomes = _run(scenario())
    assert [cr.code for cr in outcomes] == ["too_large", "too_large"]
    assert outcomes[0].reason == outcomes[1].reason  # same bytes counted, same held figure: nothing to tell them apart
