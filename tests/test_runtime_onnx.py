"""An ``.onnx`` file split over real gRPC workers: its partitions as ``onnx`` programs behind ``--allow-onnx``.

The ONNX files are exported here from tiny torch models (two inputs, one of
them int64 token ids; and one with an operator off the ONNX allow-list).
"""

from __future__ import annotations

import asyncio
import json
import warnings

import pytest
import torch
from torch import nn

from tiercut.cli import main
from tiercut.runtime.artifact import ArtifactError, PartitionBundle, sha256_hex
from tiercut.runtime.onnx_program import build_onnx_program, load_onnx_captured, pack_piece
from tiercut.runtime.protocol import Connection, Credentials
from tiercut.runtime.route import ForwardResult, HopRecord, Route, Step, run_route
from tiercut.runtime.worker import Worker, WorkerConfig

TOKEN = "test-token"


class ImageAndTokens(nn.Module):
    """An image branch and a token-id branch joined by a linear head (two inputs, float32 and int64)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.embed = nn.Embedding(50, 8)
        self.head = nn.Linear(16, 5)

    def forward(self, image: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.conv2(torch.relu(self.conv1(image)))).mean(dim=(2, 3))
        b = self.embed(ids).mean(dim=1)
        return self.head(torch.cat([a, b], dim=1))


class CumulativeSum(nn.Module):
    """Uses ``CumSum``, which is not on a worker's ONNX allow-list."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 6)
        self.fc2 = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.cumsum(torch.relu(self.fc1(x)), dim=1))


def _export(model: nn.Module, inputs: tuple[torch.Tensor, ...], names: list[str], path) -> None:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), inputs, str(path), dynamo=False, input_names=names, output_names=["out"],
                          opset_version=17)


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(0)
    two = folder / "image_and_tokens.onnx"
    _export(ImageAndTokens(), (torch.randn(1, 3, 8, 8), torch.randint(0, 50, (1, 6))), ["image", "ids"], two)
    cumsum = folder / "cumsum.onnx"
    _export(CumulativeSum(), (torch.randn(2, 6),), ["x"], cumsum)
    return {"two": two, "cumsum": cumsum}


def _three_way(captured) -> dict[str, str]:
    """Inputs and the first third of the layers on end, the second on edge, the rest on cloud."""
    compute = [n.name for n in captured.graph.nodes if not n.is_input]
    third = len(compute) // 3
    placement = {n.name: "end" for n in captured.graph.nodes if n.is_input}
    for i, name in enumerate(compute):
        placement[name] = "end" if i < third else ("edge" if i < 2 * third else "cloud")
    return placement


def _programs(captured, placement):
    """The split, the route and one bundle per server (each server runs one consecutive piece)."""
    split = captured.split(placement)
    values = captured.example_values(split)
    steps, bundles = [], {}
    for p in split.partitions:
        program_id = None
        if p.device != "end":
            built = build_onnx_program(p.piece, {n: values[n] for n in p.input_names}, index=p.index)
            program_id = built.program.manifest.program_id
            bundles[p.device] = PartitionBundle("", p.nodes, dict(built.weights), (built.program,)).named(f"onnx.{p.device}")
        steps.append(Step(p.index, p.device, program_id, p.input_names, p.output_names))
    return split, Route(tuple(steps), tuple(split.output_spec.value_names()), "end"), bundles


async def _start(device: str, **settings) -> tuple[Worker, str]:
    worker = Worker(
        WorkerConfig(device=device, listen="127.0.0.1:0", credentials=Credentials(token=TOKEN), **settings),
        log=lambda line: None,
    )
    return worker, f"127.0.0.1:{await worker.start()}"


async def _upload(connection: Connection, bundle: PartitionBundle):
    data = bundle.to_bytes()
    return await connection.upload(bundle.partition_id, data, sha256_hex(data))


def _run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, timeout=120))


def test_split_onnx_model_over_grpc_workers_equals_the_whole_model(onnx_files):
    captured = load_onnx_captured(onnx_files["two"])
    assert captured.input_names == ("image", "ids") and captured.example_inputs[1].dtype == torch.int64
    split, route, bundles = _programs(captured, _three_way(captured))
    assert set(bundles) == {"edge", "cloud"} and route.devices() == ["end", "edge", "cloud"]
    generator = torch.Generator().manual_seed(7)
    queries = [(torch.randn(1, 3, 8, 8, generator=generator), torch.randint(0, 50, (1, 6), generator=generator))
               for _ in range(3)]

    async def scenario():
        cloud, cloud_at = await _start("cloud", allow_onnx=True)
        edge, edge_at = await _start("edge", allow_onnx=True, peers={"cloud": cloud_at})
        connections = {d: Connection(d, a, Credentials(token=TOKEN)) for d, a in (("edge", edge_at), ("cloud", cloud_at))}
        try:
            for device, bundle in bundles.items():
                assert (await _upload(connections[device], bundle)).ok
            outputs = []
            for inputs in queries:
                values = dict(split.input_spec.bind(inputs))

                async def run_step(step, received):
                    return split.partitions[step.index].run(received), 0.0

                async def forward(device, at, sent, wanted, chain):
                    meta = {"route": route.to_dict(), "position": at, "chain": chain, "wanted": wanted, "from": "end"}
                    reply = await connections[device].execute(meta, sent)
                    records = [HopRecord.from_dict(r) for r in reply.frame.meta["records"]]
                    return ForwardResult(reply.frame.values, int(reply.frame.meta["position"]), records)

                records: list[HopRecord] = []
                assert await run_route(route, "end", [], 0, values, run_step, forward, records) == len(route)
                assert {r.device for r in records if r.kind == "run"} == {"end", "edge", "cloud"}
                outputs.append(split.output_spec.build(values))
            return outputs
        finally:
            for connection in connections.values():
                await connection.close()
            await edge.stop()
            await cloud.stop()

    for inputs, output in zip(queries, _run(scenario())):
        expected = captured.run(*inputs)
        assert output.shape == expected.shape == (1, 5)
        assert torch.allclose(output, expected, rtol=1e-5, atol=1e-6)
        assert torch.allclose(split.run(*inputs), expected, rtol=1e-5, atol=1e-6)  # the client's own fallback too


def test_a_worker_without_allow_onnx_refuses_an_onnx_partition_naming_the_flag(onnx_files):
    captured = load_onnx_captured(onnx_files["two"])
    _, _, bundles = _programs(captured, _three_way(captured))

    async def scenario():
        worker, address = await _start("edge")
        connection = Connection("edge", address, Credentials(token=TOKEN))
        try:
            return await _upload(connection, bundles["edge"]), worker.store.partitions(), worker.store.held_bytes
        finally:
            await connection.close()
            await worker.stop()

    refused, stored, held = _run(scenario())
    assert not refused.ok and refused.code == "invalid"
    assert "start it with --allow-onnx" in refused.reason
    assert stored == [] and held == 0


def test_an_onnx_partition_with_an_operator_off_the_allow_list_is_refused_and_nothing_stored(onnx_files):
    captured = load_onnx_captured(onnx_files["cumsum"])
    placement = {n.name: ("end" if n.is_input else "edge") for n in captured.graph.nodes}
    split = captured.split(placement)
    values = captured.example_values(split)
    (piece,) = [p for p in split.partitions if p.device == "edge"]
    inputs = {n: values[n] for n in piece.input_names}
    with pytest.raises(ArtifactError, match="CumSum, which is not on this worker's allow-list"):
        build_onnx_program(piece.piece, inputs)  # the client refuses it before any upload
    packed = pack_piece(piece.piece, inputs)  # a client that does not check: the worker must
    assert packed.weights  # it carries weights, which the worker must not keep
    bundle = PartitionBundle("", piece.nodes, dict(packed.weights), (packed.program,)).named("cumsum")

    async def scenario():
        worker, address = await _start("edge", allow_onnx=True)
        connection = Connection("edge", address, Credentials(token=TOKEN))
        try:
            return await _upload(connection, bundle), worker.store.partitions(), worker.store.held_bytes
        finally:
            await connection.close()
            await worker.stop()

    refused, stored, held = _run(scenario())
    assert not refused.ok and refused.code == "invalid"
    assert "ai.onnx.CumSum" in refused.reason and "allow-list" in refused.reason
    assert stored == [] and held == 0


def test_uploads_of_an_onnx_model_carry_its_nodes_weights_and_nothing_extra(onnx_files):
    from tiercut.runtime.migration import placement_plan, prepare_migration

    captured = load_onnx_captured(onnx_files["two"])
    placement = {n: ("end" if d == "end" else "edge") for n, d in _three_way(captured).items()}
    migration = prepare_migration(captured, placement_plan(placement, "end"))
    assert migration.artifact_format == "onnx"
    (item,) = migration.uploads["edge"]
    assert item.extra_weight_bytes == 0  # the programs' weights are the uploaded nodes' initializers
    held = captured.node_tensors()
    expected = sum(t.numel() * t.element_size() for n in item.nodes for t in held[n])
    assert expected > 0 and item.bundle.weight_bytes == expected
    assert all(p.manifest.format == "onnx" for p in item.bundle.programs)


def _staged_plan(captured, on_edge: list[str]) -> dict:
    """Stage 0 all on end; stage 1, once the one upload is confirmed, ``on_edge`` on edge."""
    nodes = [n.name for n in captured.graph.nodes]
    return {
        "schema_version": 1, "algorithm": "test-staged", "server": "edge", "source": "end",
        "partitions": [{"nodes": on_edge, "param_bytes": 0, "upload_s": 0.1, "arrives_s": 0.1}],
        "stages": [
            {"from_s": 0.0, "placement": {n: "end" for n in nodes}, "latency_s": 1.0, "arrived": {}},
            {"from_s": 0.1, "placement": {n: ("edge" if n in on_edge else "end") for n in nodes}, "latency_s": 0.5,
             "arrived": {"edge": 1}},
        ],
        "metrics": {"queries_done_by_upload_end": 0, "time_for_n_queries_s": None, "n": 0,
                    "mean_latency_during_upload_s": None},
    }


def test_run_refuses_aten_json_for_an_onnx_model_and_a_disallowed_operator_in_one_line(onnx_files, tmp_path, capsys):
    code = main(["run", str(onnx_files["two"]), "--artifact-format", "aten-json"])
    err = capsys.readouterr().err
    assert code == 2 and "drop --artifact-format aten-json" in err and len(err.strip().splitlines()) == 1

    captured = load_onnx_captured(onnx_files["cumsum"])
    plan = _staged_plan(captured, [n.name for n in captured.graph.nodes if not n.is_input])
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    code = main(["run", str(onnx_files["cumsum"]), "--env", "three-tier", "--upload-plan", str(tmp_path / "plan.json")])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("tiercut:")]  # the others are progress lines
    assert code == 2 and len(errors) == 1 and "Traceback" not in err
    assert "CumSum, which is not on this worker's allow-list" in errors[0]


@pytest.mark.slow
def test_tiercut_run_splits_an_onnx_model_over_worker_processes(onnx_files, tmp_path, capsys):
    """``tiercut run model.onnx``: local worker processes started with --allow-onnx, every output verified."""
    captured = load_onnx_captured(onnx_files["two"])
    compute = [n.name for n in captured.graph.nodes if not n.is_input]
    (tmp_path / "plan.json").write_text(json.dumps(_staged_plan(captured, compute[len(compute) // 2 :])))
    code = main(["run", str(onnx_files["two"]), "--env", "three-tier", "--upload-plan", str(tmp_path / "plan.json"),
                 "--queries", "40", "--rate", "20", "--verify", "--json"])
    out = capsys.readouterr().out
    assert code == 0
    run = json.loads(out)["run"]
    assert all(q["output_matches"] for q in run["queries"]) and len(run["queries"]) == 40
    assert not run["abandoned"] and any(q["stage"] == 1 and not q["fallback"] for q in run["queries"])
