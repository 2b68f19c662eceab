"""The one-message query path (``Run``) beside ``Execute``: same answers, same checks, falls back when a reply grows."""

from __future__ import annotations

import asyncio

import pytest
import torch
from torch import nn

from tiercut.graph import capture_model
from tiercut.graph.split import split_by_placement
from tiercut.profile.measure import record_fx_values as record_values
from tiercut.runtime.artifact import PartitionBundle, build_program, sha256_hex
from tiercut.runtime.codec import encode_frame
from tiercut.runtime.protocol import (
    METHOD_RUN,
    REPLY_NEEDS_EXECUTE_TEXT,
    Connection,
    Credentials,
    _reply_key,
)
from tiercut.runtime.route import Route, Step
from tiercut.runtime.worker import Worker, WorkerConfig

TOKEN = "transport-token"


def _setup(out_features: int):
    """A Linear layer widening 16 -> ``out_features`` values, all of it on the edge: (model, bundle, route, meta)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Identity(), nn.Linear(16, out_features)).eval()
    captured = capture_model(model, (4, 16))
    names = [n.name for n in captured.graph.nodes]
    split = split_by_placement(captured, {n: ("end" if n == names[0] else "edge") for n in names})
    values = record_values(captured)
    remote = next(p for p in split.partitions if p.device == "edge")
    built = build_program(remote, {n: values[n] for n in remote.input_names})
    step = Step(remote.index, "edge", built.program.manifest.program_id, remote.input_names, remote.output_names)
    route = Route((step,), tuple(split.output_spec.value_names()), "end")
    bundle = PartitionBundle("wide", remote.nodes, dict(built.weights), (built.program,))
    meta = {"route": route.to_dict(), "position": 0, "chain": ["end"], "wanted": list(route.result_names), "from": "end"}
    return model, bundle, remote.input_names[0], meta


async def _serve(**settings) -> tuple[Worker, str]:
    worker = Worker(
        WorkerConfig(device="edge", listen="127.0.0.1:0", credentials=Credentials(token=TOKEN), **settings), log=lambda _: None
    )
    return worker, f"127.0.0.1:{await worker.start()}"


def _run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, timeout=120))


def test_repeated_queries_take_one_message_each_way_and_answer_like_the_model():
    model, bundle, name, meta = _setup(8)

    async def scenario():
        worker, address = await _serve()
        connection = Connection("edge", address, Credentials(token=TOKEN))
        try:
            data = bundle.to_bytes()
            assert (await connection.upload(bundle.partition_id, data, sha256_hex(data))).ok
            answers = []
            for seed in range(3):
                x = torch.randn(4, 16, generator=torch.Generator().manual_seed(seed))
                reply = await connection.execute(meta, {name: x})
                answers.append((x, reply.method, next(iter(reply.frame.values.values()))))
            return answers, (await connection.status())["counters"]
        finally:
            await connection.close()
            await worker.stop()

    answers, counters = _run(scenario())
    assert [method for _, method, _ in answers] == ["Execute", "Run", "Run"]
    with torch.no_grad():
        for x, _, y in answers:
            assert torch.equal(y, model(x))
            y.add_(1)  # the client's values are its own, writable
    assert counters["queries_ok"] == 3


def test_a_reply_larger_than_one_message_is_refused_on_run_and_the_client_resends_it_to_execute():
    model, bundle, name, meta = _setup(4096)  # a 4 x 4096 float reply: 64 KiB, more than the worker's 16 KiB messages
    x = torch.randn(4, 16)

    async def scenario():
        import grpc

        worker, address = await _serve(chunk_bytes=16 * 1024)
        connection = Connection("edge", address, Credentials(token=TOKEN), chunk_bytes=16 * 1024)
        channel = grpc.aio.insecure_channel(address)
        try:
            data = bundle.to_bytes()
            assert (await connection.upload(bundle.partition_id, data, sha256_hex(data))).ok
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await channel.unary_unary(METHOD_RUN)(
                    encode_frame(meta, {name: x}), metadata=(("authorization", f"Bearer {TOKEN}"),), timeout=30
                )
            # the connection expected one message back (as if an earlier reply had been one): it falls back
            connection._one_message_replies.add(_reply_key(meta))
            first = await connection.execute(meta, {name: x})
            second = await connection.execute(meta, {name: x})
            return refused.value, first, second, (await connection.status())["counters"]
        finally:
            await channel.close()
            await connection.close()
            await worker.stop()

    refused, first, second, counters = _run(scenario())
    assert refused.code().name == "FAILED_PRECONDITION" and REPLY_NEEDS_EXECUTE_TEXT in refused.details()
    assert first.method == "Execute" and second.method == "Execute"  # not tried on Run again
    with torch.no_grad():
        expected = model(x)
    for reply in (first, second):
        assert torch.equal(next(iter(reply.frame.values.values())), expected)
    assert counters["queries_reply_too_large"] == 2 and counters["queries_ok"] == 4
