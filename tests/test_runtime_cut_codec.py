"""Cut compression on the wire (JALAD) between real gRPC workers: negotiated, decoded safely, output as the reference."""

from __future__ import annotations

import asyncio
import functools

import pytest
import torch
import zstandard
from torch import nn

from runtime_programs import split_route
from tiercut.graph import capture_model
from tiercut.runtime.artifact import sha256_hex
from tiercut.runtime.cut_codec import compressed_reference, encode_tensor
from tiercut.runtime.protocol import Connection, Credentials, RemoteError
from tiercut.runtime.route import ForwardResult, HopRecord, run_route
from tiercut.runtime.worker import Worker, WorkerConfig

TOKEN = "cut-codec-token"


@functools.cache
def _setup():
    """A 5-layer MLP placed end -> edge -> cloud -> end, with its programs, bundles and route."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 8)).eval()
    captured = capture_model(model, (4, 16))
    names = [n.name for n in captured.graph.nodes]
    owner = {name: ("end" if i < 2 or i >= 5 else ("edge" if i < 4 else "cloud")) for i, name in enumerate(names)}
    split, bundles, route = split_route(captured, owner)
    crossing = sorted({n for s in route.steps for n in s.input_names if n not in split.input_spec.names})
    return captured, split, bundles, route, crossing


async def _cluster(edge_settings: dict | None = None):
    cloud = Worker(WorkerConfig(device="cloud", credentials=Credentials(token=TOKEN)), log=lambda line: None)
    cloud_at = f"127.0.0.1:{await cloud.start()}"
    edge = Worker(
        WorkerConfig(device="edge", credentials=Credentials(token=TOKEN), peers={"cloud": cloud_at}, **(edge_settings or {})),
        log=lambda line: None,
    )
    edge_at = f"127.0.0.1:{await edge.start()}"
    _, _, bundles, _, _ = _setup()
    connections = {d: Connection(d, a, Credentials(token=TOKEN)) for d, a in (("edge", edge_at), ("cloud", cloud_at))}
    for device, connection in connections.items():
        data = bundles[device].to_bytes()
        assert (await connection.upload(bundles[device].partition_id, data, sha256_hex(data))).ok
    return (edge, cloud), connections


async def _query(connection: Connection, x, codecs: dict | None):
    _, split, _, route, _ = _setup()
    values = dict(split.input_spec.bind((x,)))
    records: list[HopRecord] = []

    async def run_step(step, received):
        return split.partitions[step.index].run(received), 0.0

    async def forward(device, at, sent, wanted, chain):
        meta = {"route": route.to_dict(), "position": at, "chain": chain, "wanted": wanted, "from": "end"}
        if codecs:
            meta["cut_codec"] = {n: list(spec) for n, spec in codecs.items()}
        reply = await connection.execute(meta, sent)
        records.append(HopRecord("forward", "end", at, 0.0, 0.0, peer=device, bytes_sent=reply.bytes_sent))
        return ForwardResult(
            reply.frame.values, int(reply.frame.meta["position"]), [HopRecord.from_dict(r) for r in reply.frame.meta["records"]]
        )

    assert await run_route(route, "end", [], 0, values, run_step, forward, records) == len(route)
    return split.output_spec.build(values), records


async def _stop(workers, connections):
    for connection in connections.values():
        await connection.close()
    for worker in workers:
        await worker.stop()


def _run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, timeout=120))


@pytest.mark.slow
def test_compressed_cuts_answer_the_dequantized_reference_with_fewer_bytes():
    captured, _, _, _, crossing = _setup()
    codecs = dict.fromkeys(crossing, (8, "tensor"))
    x = torch.randn(4, 16, generator=torch.Generator().manual_seed(3))

    async def scenario():
        workers, connections = await _cluster()
        try:
            raw, raw_records = await _query(connections["edge"], x, None)
            packed, packed_records = await _query(connections["edge"], x, codecs)
            status = await connections["edge"].status()
            return raw, raw_records, packed, packed_records, status
        finally:
            await _stop(workers, connections)

    raw, raw_records, packed, packed_records, status = _run(scenario())
    assert status["cut_codec"] == "TCQ1"
    with torch.no_grad():
        assert torch.equal(raw, captured.graph_module(x))
    assert torch.equal(packed, compressed_reference(captured.graph_module, (x,), crossing, codecs))
    assert not torch.equal(packed, raw)  # the quantization is really there
    # both hops (end -> edge by the client, edge -> cloud by the worker) carry fewer bytes
    for device in ("end", "edge"):
        sent_raw = sum(r.bytes_sent for r in raw_records if r.kind == "forward" and r.device == device)
        sent_packed = sum(r.bytes_sent for r in packed_records if r.kind == "forward" and r.device == device)
        assert 0 < sent_packed < sent_raw, device


def test_a_worker_without_cut_compression_gets_raw_tensors_and_refuses_compressed_ones():
    captured, split, _, route, crossing = _setup()
    codecs = dict.fromkeys(crossing, (8, "tensor"))
    x = torch.randn(4, 16)

    async def scenario():
        workers, connections = await _cluster({"cut_compression": False})
        try:
            status = await connections["edge"].status()
            output, _ = await _query(connections["edge"], x, codecs)  # negotiated: sent raw
            # a client that ignores the negotiation is refused
            first = route.steps[1]
            values = split.partitions[0].run(dict(split.input_spec.bind((x,))))
            blob = torch.frombuffer(bytearray(encode_tensor(values[first.input_names[0]])), dtype=torch.uint8)
            forged = Connection("edge", connections["edge"].address, Credentials(token=TOKEN))
            meta = {"route": route.to_dict(), "position": 1, "chain": [], "wanted": list(route.steps[1].output_names),
                    "from": "end", "compressed": [first.input_names[0]]}
            with pytest.raises(RemoteError, match="does not accept compressed values"):
                await forged.execute(meta, {first.input_names[0]: blob})
            await forged.close()
            return status, output
        finally:
            await _stop(workers, connections)

    status, output = _run(scenario())
    assert status["cut_codec"] is None
    with torch.no_grad():
        assert torch.equal(output, captured.graph_module(x))


@pytest.mark.parametrize("kind", ["bomb", "not-a-blob", "unlisted-codec"])
def test_a_malicious_compressed_value_is_refused_and_the_worker_keeps_serving(kind):
    captured, split, _, route, _ = _setup()
    x = torch.randn(4, 16)
    first = route.steps[1]
    name = first.input_names[0]

    async def scenario():
        workers, connections = await _cluster()
        try:
            values = split.partitions[0].run(dict(split.input_spec.bind((x,))))
            good = encode_tensor(values[name])
            if kind == "bomb":  # a valid header whose zstd frame inflates to 100 MB
                header_len = int.from_bytes(good[4:8], "little")
                bomb = zstandard.ZstdCompressor().compress(b"\0" * 100_000_000)
                import json

                header = json.loads(good[8 : 8 + header_len])
                header["zstd_bytes"] = len(bomb)
                text = json.dumps(header).encode()
                scales = good[8 + header_len : 8 + header_len + 8 * header["groups"]]
                blob = b"TCQ1" + len(text).to_bytes(4, "little") + text + scales + bomb
                sent = {name: torch.frombuffer(bytearray(blob), dtype=torch.uint8)}
                listed = [name]
            elif kind == "not-a-blob":
                sent = {name: values[name]}
                listed = [name]
            else:
                sent = {name: values[name]}
                listed = "everything"
            meta = {"route": route.to_dict(), "position": 1, "chain": [], "wanted": list(first.output_names),
                    "from": "end", "compressed": listed}
            forged = Connection("edge", connections["edge"].address, Credentials(token=TOKEN))
            with pytest.raises(RemoteError, match=r"INVALID_ARGUMENT|query message"):
                await forged.execute(meta, sent)
            await forged.close()
            output, _ = await _query(connections["edge"], x, None)
            return output
        finally:
            await _stop(workers, connections)

    output = _run(scenario())
    with torch.no_grad():
        assert torch.equal(output, captured.graph_module(x))
