"""The runtime measured: serialisation, transport overhead, program formats, load, fidelity, migration.

Sections (``--sections``, all by default):

- ``serialization``: frame encode + decode throughput (MB/s) of tensors of
  64 KiB .. 16 MiB, and of partition bundles (safetensors + digests);
- ``transport``: one hop to a worker process on loopback with unlimited
  emulated bandwidth, a 1 MiB tensor each way: round trip minus the
  worker's compute, halved = overhead per hop (target < 2 ms), with every
  check of the worker on (frame checksums, the run's input and per-step
  checks, budgets, the execution thread); in the same loop, query by
  query, plain grpc.aio echoes of 1 MiB to another process (on a stream,
  unary, unary with the worker's malloc setting), each round in a rotating
  order: the floor under any gRPC runtime on this machine at the same load,
  and what tiercut adds above it (median of the per-round differences);
  ``--sections transport --quick`` takes about half a minute;
- ``formats``: the zoo's partitions (each model cut in three) as
  ``aten-json`` programs (ATen interpreter) and ``onnx`` programs
  (onnxruntime): run time on this CPU, max deviation from PyTorch;
- ``load``: 8 clients x 100 queries against one worker: lost or mismatched
  queries, throughput, the worker's peak RSS;
- ``fidelity``: on ``three-tier`` with emulated links, measured mean query
  latency after upload vs the cost model's prediction (compute times: a
  profile of this host, every device = this host): relative error per model
  and placement (target: within 15 %);
- ``migration``: AlexNet on ``migration-12`` with its links scaled up (a
  scaled-down upload), one client: direct vs IONN vs recursive efficiency,
  real, each query's delay over time (PNG) and the time to finish the
  queries issued during the upload.

    .venv/bin/python benchmarks/runtime_fidelity.py [--sections transport,serialization] [--quick]

Writes benchmarks/results/runtime_fidelity.json (and runtime_migration.png).
Timings on a shared machine are noisy; every worker and the client use one
intra-op thread.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import math
import os
import statistics
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, write_result

warnings.filterwarnings("ignore")

SECTIONS = ("serialization", "transport", "formats", "load", "fidelity", "migration")
TARGET_HOP_S = 0.002
TARGET_FIDELITY = 0.15


# --------------------------------------------------------------------- serialization
def serialization(quick: bool) -> dict[str, Any]:
    import torch

    from tiercut.runtime.artifact import PartitionBundle, tensor_digest
    from tiercut.runtime.codec import decode_chunks, encode_chunks

    rows = []
    for size in (64 * 1024, 1 << 20, 16 << 20):
        tensor = torch.randn(size // 4)
        repeats = 20 if quick else 60
        encode, decode = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            chunks = encode_chunks({"k": 1}, {"x": tensor})
            middle = time.perf_counter()
            frame = decode_chunks(chunks)
            encode.append(middle - start)
            decode.append(time.perf_counter() - middle)
        assert torch.equal(frame.values["x"], tensor)
        rows.append(
            {
                "bytes": size,
                "encode_mb_s": size / statistics.median(encode) / 1e6,
                "decode_mb_s": size / statistics.median(decode) / 1e6,
                "round_trip_mb_s": size / (statistics.median(encode) + statistics.median(decode)) / 1e6,
            }
        )
    weights = {}
    for _ in range(16):
        t = torch.randn(1 << 20)
        weights[tensor_digest(t)] = t
    bundle = PartitionBundle("bench", (), weights, ())
    start = time.perf_counter()
    data = bundle.to_bytes()
    encoded = time.perf_counter() - start
    start = time.perf_counter()
    PartitionBundle.from_bytes(data)
    parsed = time.perf_counter() - start
    return {
        "frames": rows,
        "bundle": {"bytes": len(data), "encode_mb_s": len(data) / encoded / 1e6, "verify_parse_mb_s": len(data) / parsed / 1e6},
    }


# --------------------------------------------------------------------- transport
def transport(quick: bool) -> dict[str, Any]:
    """One hop with every check on, interleaved with plain gRPC echoes of the same size (same machine load)."""
    import torch
    from torch import nn

    from tiercut.graph import capture_model
    from tiercut.graph.split import split_by_placement
    from tiercut.profile.measure import record_fx_values
    from tiercut.runtime.artifact import PartitionBundle, build_program, sha256_hex
    from tiercut.runtime.protocol import Connection, reuse_message_memory
    from tiercut.runtime.route import HopRecord, Route, Step
    from tiercut.runtime.session import LocalCluster

    shape = (1, 256, 32, 32)  # 1 MiB of float32
    captured = capture_model(nn.Sequential(nn.ReLU()).eval(), shape)
    nodes = [n.name for n in captured.graph.nodes]
    split = split_by_placement(captured, {n: ("end" if n == nodes[0] else "edge") for n in nodes})
    values = record_fx_values(captured)
    remote = next(p for p in split.partitions if p.device == "edge")
    program = build_program(remote, {n: values[n] for n in remote.input_names})
    route = Route(
        (Step(remote.index, "edge", program.program.manifest.program_id, remote.input_names, remote.output_names),),
        tuple(split.output_spec.value_names()),
        "end",
    )
    bundle = PartitionBundle("hop", remote.nodes, dict(program.weights), (program.program,))
    data = bundle.to_bytes()
    x = torch.randn(*shape)
    repeats = 150 if quick else 400
    warm_up = 20
    # this process is a tiercut client: it tunes malloc as `tiercut run` does (and as the worker does); the echo
    # clients share the process, so the floor is measured with the same setting
    client_malloc_tuned = reuse_message_memory()
    load_before = os.getloadavg()

    async def measure(address: str, token: str, echo_ports: dict[str, int]) -> dict[str, Any]:
        import grpc

        from tiercut.runtime.protocol import Credentials

        connection = Connection("edge", address, Credentials(token=token))
        options = [("grpc.max_receive_message_length", 8 << 20), ("grpc.max_send_message_length", 8 << 20)]
        channels = {name: grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options) for name, port in echo_ports.items()}
        echoes = {
            "echo_stream": channels["default"].stream_stream("/bench.Echo/E"),
            "echo_unary": channels["default"].unary_unary("/bench.Echo/U"),
            "echo_unary_tuned": channels["tuned"].unary_unary("/bench.Echo/U"),
        }
        payload = os.urandom(1 << 20)
        meta = {"route": route.to_dict(), "position": 0, "chain": ["end"], "wanted": list(route.result_names), "from": "end"}

        async def hop() -> tuple[float, float, int, str]:
            start = time.perf_counter()
            reply = await connection.execute(meta, {remote.input_names[0]: x})
            rtt = time.perf_counter() - start
            compute = sum(HopRecord.from_dict(r).compute_s for r in reply.frame.meta["records"])
            return rtt, compute, reply.bytes_sent + reply.bytes_received, getattr(reply, "method", "Execute")

        async def echo(name: str) -> float:
            start = time.perf_counter()
            if name == "echo_stream":
                _ = [m async for m in echoes[name](iter([payload]))]
            else:
                _ = await echoes[name](payload)
            return time.perf_counter() - start

        try:
            confirmation = await connection.upload("hop", data, sha256_hex(data))
            assert confirmation.ok, f"the worker refused the benchmark partition: {confirmation.code}: {confirmation.reason}"
            hops: list[tuple[float, float, int, str]] = []
            echo_s: dict[str, list[float]] = {name: [] for name in echoes}
            order = ["hop", *echoes]
            for i in range(repeats + warm_up):
                # one round of every exchange, in a rotating order (no exchange always runs first after a pause)
                shift = i % len(order)
                for name in order[shift:] + order[:shift]:
                    if name == "hop":
                        sample = await hop()
                        if i >= warm_up:
                            hops.append(sample)
                    else:
                        seconds = await echo(name)
                        if i >= warm_up:
                            echo_s[name].append(seconds)
            return {"hops": hops, "echo_s": echo_s}
        finally:
            await connection.close()
            for channel in channels.values():
                await channel.close()

    with (
        _echo_server(tuned=False) as default_port,
        _echo_server(tuned=True) as tuned_port,
        LocalCluster(["edge"], torch_threads=1) as cluster,
    ):
        ports = {"default": default_port, "tuned": tuned_port}
        measured = asyncio.run(measure(cluster.addresses["edge"], cluster.token or "", ports))
    samples, echo_s = measured["hops"], measured["echo_s"]
    overhead = [(rtt - compute) / 2 for rtt, compute, _, _ in samples]
    per_hop = statistics.median(overhead)
    floors = {name: statistics.median(times) / 2 for name, times in echo_s.items()}
    floor = floors["echo_unary_tuned"]  # one gRPC message each way, the server with the worker's malloc setting
    # paired: each round's hop overhead minus the same round's echo, so load that changes over the run cancels
    above = {name: statistics.median(o - t / 2 for o, t in zip(overhead, times)) for name, times in echo_s.items()}
    return {
        "tensor_bytes": 1 << 20,
        "samples": len(samples),
        "methods": sorted({s[3] for s in samples}),
        "client_malloc_tuned": client_malloc_tuned,
        "load_average_before": list(load_before),
        "load_average_after": list(os.getloadavg()),
        "round_trip_median_s": statistics.median(s[0] for s in samples),
        "worker_compute_median_s": statistics.median(s[1] for s in samples),
        "overhead_per_hop_median_s": per_hop,
        "overhead_per_hop_p90_s": sorted(overhead)[int(0.9 * len(overhead))],
        # plain grpc.aio echoes of 1 MiB to another process, measured in turn with tiercut's hops (same load):
        # stream (one message each way on a stream), unary, unary with the worker's malloc setting
        "grpc_echo_stream_per_hop_s": floors["echo_stream"],
        "grpc_echo_unary_per_hop_s": floors["echo_unary"],
        "grpc_echo_unary_tuned_malloc_per_hop_s": floors["echo_unary_tuned"],
        "grpc_floor_per_hop_s": floor,
        # what tiercut adds to gRPC itself (frames, checks, thread handoff), paired round by round (median of the
        # differences): steadier than the total on a loaded machine
        "overhead_above_grpc_floor_per_hop_s": above["echo_unary_tuned"],
        "overhead_above_grpc_unary_echo_per_hop_s": above["echo_unary"],
        "overhead_above_grpc_stream_echo_per_hop_s": above["echo_stream"],
        "frame_bytes_per_round_trip": samples[0][2],
        "target_s": TARGET_HOP_S,
        "meets_target": per_hop < TARGET_HOP_S,
    }


def _print_transport(t: dict[str, Any]) -> None:
    """The transport section as a table (ms per hop: half a round trip of 1 MiB each way)."""
    load = t.get("load_average_before", [math.nan])[0]
    rows = [
        ("tiercut hop, all checks on (round trip - compute) / 2", t["overhead_per_hop_median_s"]),
        ("  p90", t["overhead_per_hop_p90_s"]),
        ("plain gRPC unary echo, worker malloc setting (floor)", t["grpc_floor_per_hop_s"]),
        ("plain gRPC unary echo, default malloc", t["grpc_echo_unary_per_hop_s"]),
        ("plain gRPC stream echo", t["grpc_echo_stream_per_hop_s"]),
        ("tiercut above the floor (paired, median of differences)", t["overhead_above_grpc_floor_per_hop_s"]),
        ("tiercut above the default unary echo (paired)", t.get("overhead_above_grpc_unary_echo_per_hop_s", math.nan)),
    ]
    print(f"  transport, 1 MiB each way, {t['samples']} rounds, load average {load:.1f} on {os.cpu_count()} cores")
    print(f"  {'exchange':<58} {'ms/hop':>7}")
    for label, seconds in rows:
        print(f"  {label:<58} {seconds * 1e3:7.3f}")
    verdict = "meets" if t["meets_target"] else "misses"
    print(f"  target < {t['target_s'] * 1e3:.1f} ms per hop: {verdict}", flush=True)


_ECHO_SERVER = """
import asyncio, ctypes, sys, grpc
if sys.argv[1] == "tuned":  # the worker's setting (tiercut.runtime.protocol.reuse_message_memory, 4 MiB messages)
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(-3, 8 << 20)  # M_MMAP_THRESHOLD
    libc.mallopt(-1, 16 << 20)  # M_TRIM_THRESHOLD
async def main():
    async def echo(requests, context):
        for chunk in [c async for c in requests]:
            yield chunk
    async def echo_unary(request, context):
        return request
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 8 << 20), ("grpc.max_send_message_length", 8 << 20)])
    handler = grpc.method_handlers_generic_handler(
        "bench.Echo",
        {"E": grpc.stream_stream_rpc_method_handler(echo), "U": grpc.unary_unary_rpc_method_handler(echo_unary)},
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    await server.wait_for_termination()
asyncio.run(main())
"""


@contextlib.contextmanager
def _echo_server(*, tuned: bool) -> Any:
    """A plain grpc.aio echo server in another process (``tuned``: with the worker's malloc setting); yields its port."""
    import subprocess

    server = subprocess.Popen(
        [sys.executable, "-c", _ECHO_SERVER, "tuned" if tuned else "default"], stdout=subprocess.PIPE, text=True
    )
    try:
        yield int(server.stdout.readline())  # type: ignore[union-attr]
    finally:
        server.kill()
        server.wait(timeout=10)


# --------------------------------------------------------------------- formats
def formats(quick: bool, models: list[str]) -> dict[str, Any]:
    import torch

    from tiercut.graph import capture_model
    from tiercut.graph.split import split_by_placement
    from tiercut.profile.measure import record_fx_values
    from tiercut.runtime.artifact import build_program, load_program

    rows = []
    for model in models:
        captured = capture_model(model)
        nodes = [n.name for n in captured.graph.nodes]
        k = len(nodes) // 3
        placement = {n: ("a" if i < k or i >= 2 * k else "b") for i, n in enumerate(nodes)}
        split = split_by_placement(captured, placement)
        values = record_fx_values(captured)
        row: dict[str, Any] = {"model": model, "partitions": len(split.partitions)}
        for fmt in ("aten-json", "onnx"):
            total_s, build_s, deviation = 0.0, 0.0, 0.0
            for partition in split.partitions:
                inputs = {n: values[n] for n in partition.input_names}
                start = time.perf_counter()
                built = build_program(partition, inputs, format=fmt)
                loaded = load_program(built.program, built.weights)
                build_s += time.perf_counter() - start
                loaded.run(inputs)
                times = []
                for _ in range(3 if quick else 7):
                    start = time.perf_counter()
                    out = loaded.run(inputs)
                    times.append(time.perf_counter() - start)
                total_s += statistics.median(times)
                with torch.no_grad():
                    reference = partition.run({n: (v.clone() if isinstance(v, torch.Tensor) else v) for n, v in inputs.items()})
                for name, value in reference.items():
                    if isinstance(value, torch.Tensor) and value.is_floating_point():
                        deviation = max(deviation, (out[name] - value).abs().max().item())
            row[fmt] = {"run_s": total_s, "build_and_load_s": build_s, "max_abs_deviation": deviation}
        row["onnx_speedup"] = row["aten-json"]["run_s"] / row["onnx"]["run_s"]
        rows.append(row)
        print(
            f"  formats {model}: aten-json {row['aten-json']['run_s'] * 1e3:.1f} ms, onnx {row['onnx']['run_s'] * 1e3:.1f} ms "
            f"(x{row['onnx_speedup']:.2f}), onnx deviation {row['onnx']['max_abs_deviation']:.2g}",
            flush=True,
        )
    return {"rows": rows, "faster_on_this_cpu": "onnx" if all(r["onnx_speedup"] > 1 for r in rows) else "mixed"}


# --------------------------------------------------------------------- load
def load(quick: bool) -> dict[str, Any]:
    import torch

    from tiercut.graph import capture_model
    from tiercut.runtime.client import RunSettings
    from tiercut.runtime.migration import placement_plan, prepare_migration
    from tiercut.runtime.protocol import Connection
    from tiercut.runtime.session import LocalCluster, run_migration

    clients, queries = 8, (20 if quick else 100)
    captured = capture_model("resnet18", (1, 3, 32, 32))
    nodes = [n.name for n in captured.graph.nodes]
    migration = prepare_migration(captured, placement_plan({n: ("end" if i < 4 else "edge") for i, n in enumerate(nodes)}, "end"))
    results: list[Any] = [None] * clients
    with LocalCluster(["edge"], torch_threads=1) as cluster:
        run_migration(
            migration,
            cluster.addresses,
            credentials=cluster.credentials(),
            settings=RunSettings(queries=1, queries_after_upload=1),
        )

        def client(c: int) -> None:
            def inputs(i: int) -> tuple[Any, ...]:
                return (torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(7919 * c + i)),)

            results[c] = run_migration(
                migration,
                cluster.addresses,
                credentials=cluster.credentials(),
                settings=RunSettings(queries=queries, fresh=False, verify_outputs=True, max_run_s=900),
                query_inputs=inputs,
            )

        start = time.perf_counter()
        threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=1200)
        wall = time.perf_counter() - start

        async def status() -> dict[str, Any]:
            connection = Connection("edge", cluster.addresses["edge"], cluster.credentials())
            try:
                return await connection.status()
            finally:
                await connection.close()

        worker = asyncio.run(status())
    done = [q for r in results if r is not None for q in r.queries]
    return {
        "clients": clients,
        "queries_per_client": queries,
        "completed": len(done),
        "lost": clients * queries - len(done),
        "mismatched": sum(1 for q in done if not q.output_matches),
        "fell_back": sum(1 for q in done if q.fallback),
        "throughput_qps": len(done) / wall,
        "mean_latency_s": statistics.mean(q.latency_s for q in done),
        "worker_peak_rss_bytes": worker["peak_rss_bytes"],
        "worker_rss_bytes": worker["rss_bytes"],
    }


# --------------------------------------------------------------------- fidelity
def _host_problem(captured: Any, environment: Any) -> Any:
    """The cost model's problem with every device's compute time = this host's measured node time (one thread)."""
    from tiercut.problem import build_problem
    from tiercut.profile.measure import StoppingRule, measure_profile

    profile = measure_profile(captured, threads=1, rule=StoppingRule().with_max_repeats(15), measure_host_roofline=False)
    table = {name: {d: node.median_s for d in environment.device_names} for name, node in profile.nodes.items()}
    return build_problem(captured.graph, environment, source="end", compute_s=table)


def fidelity(quick: bool, models: list[str]) -> dict[str, Any]:
    import torch

    from tiercut.cost import evaluate
    from tiercut.env import load_environment
    from tiercut.graph import capture_model
    from tiercut.runtime.client import RunSettings
    from tiercut.runtime.migration import placement_plan, prepare_migration
    from tiercut.runtime.session import LocalCluster, run_migration

    environment = load_environment("three-tier")
    rows = []
    torch.set_num_threads(1)
    for model in models:
        captured = capture_model(model)
        problem = _host_problem(captured, environment)
        nodes = [n.name for n in captured.graph.nodes]
        n = len(nodes)
        placements = {
            "end|edge at 1/3": {x: ("end" if i < n // 3 else "edge") for i, x in enumerate(nodes)},
            "end|edge|cloud thirds": {
                x: ("end" if i < n // 3 else "edge" if i < 2 * n // 3 else "cloud") for i, x in enumerate(nodes)
            },
        }
        for label, placement in placements.items():
            evaluation = evaluate(problem, placement)
            predicted = evaluation.latency_s
            relayed = _relayed_latency_s(problem, evaluation, ["end", "edge", "cloud"])
            migration = prepare_migration(captured, placement_plan(placement, "end"))
            with LocalCluster(migration.servers, env="three-tier", torch_threads=1) as cluster:
                # upload with the links unshaped (quick), then query over the emulated links
                run_migration(
                    migration,
                    cluster.addresses,
                    credentials=cluster.credentials(),
                    settings=RunSettings(queries=1, queries_after_upload=1, max_run_s=900),
                )
                result = run_migration(
                    migration,
                    cluster.addresses,
                    credentials=cluster.credentials(),
                    environment=environment,
                    settings=RunSettings(queries=6 if quick else 25, fresh=False, max_run_s=900),
                )
            measured = [q.latency_s for q in result.queries[2:] if not q.fallback]  # the first two warm up
            mean = statistics.mean(measured)
            rows.append(
                {
                    "model": model,
                    "placement": label,
                    "predicted_s": predicted,
                    "predicted_relayed_s": relayed,
                    "measured_mean_s": mean,
                    "relative_error": (mean - predicted) / predicted,
                    "relative_error_relayed": (mean - relayed) / relayed,
                    "queries": len(measured),
                }
            )
            print(
                f"  fidelity {model} {label}: predicted {predicted * 1e3:.1f} ms (returns relayed: {relayed * 1e3:.1f} ms), "
                f"measured {mean * 1e3:.1f} ms ({rows[-1]['relative_error']:+.1%}; {rows[-1]['relative_error_relayed']:+.1%})",
                flush=True,
            )
    worst = max(abs(r["relative_error"]) for r in rows)
    worst_relayed = max(abs(r["relative_error_relayed"]) for r in rows)
    return {
        "environment": "three-tier",
        "rows": rows,
        "worst_relative_error": worst,
        "worst_relative_error_relayed": worst_relayed,
        "target": TARGET_FIDELITY,
        "meets_target": worst <= TARGET_FIDELITY,
        "meets_target_relayed": worst_relayed <= TARGET_FIDELITY,
    }


def _relayed_latency_s(problem: Any, evaluation: Any, chain: list[str]) -> float:
    """The cost model's latency with returns to the source relayed along the call chain, as the runtime sends them.

    The runtime forwards end -> edge -> cloud and values come back along the
    calls (cloud -> edge -> end); docs/DESIGN.md's model sends them straight
    (cloud -> end). Each such transfer's tau is replaced by the taus of the
    relay, every tau from the cost model's own ``transfer_seconds``.
    """
    from tiercut.cost import transfer_seconds

    latency = evaluation.latency_s
    for transfer in evaluation.transfers:
        if transfer.dst != chain[0] or transfer.src not in chain or chain.index(transfer.src) < 2:
            continue
        hops = chain[: chain.index(transfer.src) + 1][::-1]
        relay = sum(transfer_seconds(problem, transfer.out_bytes, a, b) for a, b in itertools.pairwise(hops))
        latency += relay - transfer.seconds
    return latency


# --------------------------------------------------------------------- migration
def migration(quick: bool, scale: float) -> dict[str, Any]:
    import yaml

    from tiercut.env import environment_from_mapping, load_environment
    from tiercut.graph import capture_model
    from tiercut.problem import build_problem
    from tiercut.runtime.client import RunSettings
    from tiercut.runtime.migration import prepare_migration
    from tiercut.runtime.session import LocalCluster, run_migration
    from tiercut.upload import get_upload_planner

    base = load_environment("migration-12").to_dict()
    for link in base["links"]:
        link["bandwidth_bytes_per_s"] *= scale
    base["name"] = f"migration-12-x{scale:g}"
    base["users"] = [u for u in base["users"] if u["model"] == "alexnet"]
    environment = environment_from_mapping(base)
    folder = Path(tempfile.mkdtemp(prefix="tiercut-migration-"))
    env_file = folder / "env.yaml"
    env_file.write_text(yaml.safe_dump(base))
    captured = capture_model("alexnet")
    problem = build_problem(captured.graph, environment, source="client1")
    curves: dict[str, Any] = {}
    slowdowns: dict[str, float] = {}
    for algorithm in ("direct", "ionn", "recursive-efficiency"):
        plan = get_upload_planner(algorithm).solve(problem)
        # the servers run at this host's speed; the client is slowed down by the environment's client/server ratio
        nodes = [n for n, row in problem.compute_s.items() if "client1" in row and plan.server in row]
        slowdown = max(
            1.0, sum(problem.compute_s[n]["client1"] for n in nodes) / sum(problem.compute_s[n][plan.server] for n in nodes)
        )
        slowdowns[algorithm] = slowdown
        prepared = prepare_migration(captured, plan.to_dict())
        with LocalCluster(prepared.servers, env=str(env_file), torch_threads=1) as cluster:
            result = run_migration(
                prepared,
                cluster.addresses,
                credentials=cluster.credentials(),
                environment=environment,
                settings=RunSettings(
                    queries=10, queries_after_upload=10 if quick else 30, max_run_s=900, source_slowdown=slowdown
                ),
            )
        curves[algorithm] = {
            "upload_end_s": result.upload_end_s,
            "planned_upload_end_s": plan.metrics.upload_end_s,
            "partitions": len(plan.partitions),
            "server": plan.server,
            "source_slowdown": slowdown,
            "queries": [(q.start_s, q.latency_s, q.stage) for q in result.queries],
        }
        print(
            f"  migration {algorithm}: {len(plan.partitions)} partition(s) to {plan.server}, client x{slowdown:.1f} slower, "
            f"upload end {result.upload_end_s:.2f} s (plan {plan.metrics.upload_end_s:.2f} s)",
            flush=True,
        )
    # the seed's comparison: time to finish the queries the direct method issues while it uploads
    direct_end = curves["direct"]["upload_end_s"] or 0.0
    n = max(1, sum(1 for s, _, _ in curves["direct"]["queries"] if s < direct_end))
    for curve in curves.values():
        ends = sorted(s + lat for s, lat, _ in curve["queries"])
        curve["time_for_n_queries_s"] = ends[n - 1] if len(ends) >= n else math.inf
        during = [lat for s, lat, _ in curve["queries"] if curve["upload_end_s"] is not None and s < curve["upload_end_s"]]
        curve["mean_latency_during_upload_s"] = statistics.mean(during) if during else math.nan
    order = sorted(curves, key=lambda a: curves[a]["time_for_n_queries_s"])
    order_by_mean = sorted(curves, key=lambda a: curves[a]["mean_latency_during_upload_s"])
    _plot_migration(curves, RESULTS / "runtime_migration.png", scale)
    return {
        "scale": scale,
        "n": n,
        "curves": curves,
        "fastest_to_slowest": order,
        "seed_order_holds": order == ["recursive-efficiency", "ionn", "direct"],
        "fastest_to_slowest_mean_latency_during_upload": order_by_mean,
    }


def _plot_migration(curves: dict[str, Any], path: Path, scale: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for algorithm, curve in curves.items():
        points = curve["queries"]
        ax.plot([p[0] for p in points], [p[1] * 1e3 for p in points], ".-", markersize=3, label=algorithm)
        if curve["upload_end_s"]:
            ax.axvline(curve["upload_end_s"], linestyle=":", alpha=0.5, color=ax.lines[-1].get_color())
    ax.set_xlabel("query start (s)")
    ax.set_ylabel("system delay (ms)")
    ax.set_title(f"AlexNet, migration-12 with links x{scale:g}, one client: measured (tiercut run)")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {', '.join(SECTIONS)}")
    parser.add_argument("--quick", action="store_true", help="fewer repeats and queries")
    parser.add_argument(
        "--models",
        default="alexnet,resnet18,mobilenet_v2,googlenet",
        help="zoo models for formats and fidelity ('all': the whole zoo)",
    )
    parser.add_argument("--migration-scale", type=float, default=4.0, help="multiply migration-12's link rates by this")
    args = parser.parse_args()
    import torch

    from tiercut.graph import ZOO

    torch.set_num_threads(1)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section {unknown[0]!r}; use {', '.join(SECTIONS)}")
    models = list(ZOO) if args.models == "all" else [m.strip() for m in args.models.split(",")]
    out: dict[str, Any] = {"quick": args.quick}
    path = RESULTS / "runtime_fidelity.json"
    if path.exists():  # keep sections measured by earlier runs
        import json

        previous = json.loads(path.read_text())
        out.update({k: v for k, v in previous.items() if k in SECTIONS})
    for section in sections:
        print(f"{section} ...", flush=True)
        start = time.perf_counter()
        if section == "serialization":
            out[section] = serialization(args.quick)
        elif section == "transport":
            out[section] = transport(args.quick)
            _print_transport(out[section])
        elif section == "formats":
            out[section] = formats(args.quick, models)
        elif section == "load":
            out[section] = load(args.quick)
        elif section == "fidelity":
            out[section] = fidelity(args.quick, models)
        else:
            out[section] = migration(args.quick, args.migration_scale)
        out[section]["section_s"] = time.perf_counter() - start
        out[section]["load_average_at_end"] = list(os.getloadavg())  # other work sharing the machine meanwhile
        write_result("runtime_fidelity", out)
    print(f"{'section':<14} result")
    if "serialization" in out:
        frames = out["serialization"]["frames"]
        print(f"{'serialization':<14} " + ", ".join(f"{r['bytes'] >> 10} KiB {r['round_trip_mb_s']:.0f} MB/s" for r in frames))
    if "transport" in out:
        t = out["transport"]
        print(
            f"{'transport':<14} {t['overhead_per_hop_median_s'] * 1e3:.2f} ms per hop for 1 MiB (target < 2 ms); "
            f"plain gRPC unary echo in the same rounds {t['grpc_floor_per_hop_s'] * 1e3:.2f} ms per hop "
            f"(+{t.get('overhead_above_grpc_floor_per_hop_s', math.nan) * 1e3:.2f} ms above it, paired; load average "
            f"{t.get('load_average_before', [math.nan])[0]:.1f} on {os.cpu_count()} cores)"
        )
    if "formats" in out:
        print(f"{'formats':<14} " + ", ".join(f"{r['model']} onnx x{r['onnx_speedup']:.2f}" for r in out["formats"]["rows"]))
    if "load" in out:
        lo = out["load"]
        print(
            f"{'load':<14} {lo['completed']} done, {lo['lost']} lost, {lo['mismatched']} mismatched, "
            f"peak RSS {lo['worker_peak_rss_bytes'] / 2**20:.0f} MiB"
        )
    if "fidelity" in out:
        fid = out["fidelity"]
        print(
            f"{'fidelity':<14} worst relative error {fid['worst_relative_error']:.1%} vs docs/DESIGN.md's model, "
            f"{fid.get('worst_relative_error_relayed', math.nan):.1%} with relayed returns (target 15%)"
        )
    if "migration" in out:
        print(f"{'migration':<14} fastest to slowest: {' < '.join(out['migration']['fastest_to_slowest'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
