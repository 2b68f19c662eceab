"""Measuring on the device itself: the worker's Profile RPC, slowed workers, and plan --measure-on."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
import torch
import yaml
from torch import nn

from tiercut.cli import main
from tiercut.errors import TiercutError
from tiercut.graph import capture_model
from tiercut.graph.split import split_by_placement
from tiercut.profile.measure import record_fx_values
from tiercut.runtime.artifact import PartitionBundle, build_program, sha256_hex
from tiercut.runtime.profiling import ProfileRequest, WorkersFile, pause, request_profile, slowed_timer
from tiercut.runtime.protocol import Connection, Credentials, RemoteError
from tiercut.runtime.worker import Worker, WorkerConfig

TOKEN = "profile-token"
SHAPE = [1, 3, 64, 64]


class Workers:
    """Workers served by an event loop on a background thread (so synchronous client code can call them)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.workers: list[Worker] = []

    def start(self, device: str, **settings) -> str:
        async def go() -> int:
            worker = Worker(WorkerConfig(device=device, listen="127.0.0.1:0", credentials=Credentials(token=TOKEN),
                                         torch_threads=1, **settings), log=lambda line: None)
            self.workers.append(worker)
            return await worker.start()

        port = asyncio.run_coroutine_threadsafe(go(), self.loop).result(60)
        return f"127.0.0.1:{port}"

    def close(self) -> None:
        for worker in self.workers:
            asyncio.run_coroutine_threadsafe(worker.stop(0), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def workers():
    pool = Workers()
    yield pool
    pool.close()


def _ask(address: str, request: ProfileRequest, token: str = TOKEN) -> dict:
    async def go() -> dict:
        connection = Connection(device="w", address=address, credentials=Credentials(token=token))
        try:
            return await request_profile(connection, request, timeout_s=120)
        finally:
            await connection.close()

    return asyncio.run(go())


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"model": "resnet18", "program_id": "a" * 64}, "exactly one"),
        ({}, "exactly one"),
        ({"model": "os.system"}, "not in the zoo"),
        ({"model": "resnet18", "input_shape": [1, 3, 4096, 4096]}, "more than"),
        ({"model": "resnet18", "input_shape": [1, -3]}, "positive integers"),
        ({"model": "resnet18", "repeats": 10_000}, "repeats"),
        ({"model": "resnet18", "max_seconds": 1e6}, "max_seconds"),
        ({"program_id": "../etc/passwd"}, "64-hex-digit"),
        ({"model": "resnet18", "code": "print(1)"}, "unknown field"),
    ],
)
def test_profile_requests_are_allow_listed_and_bounded(body, words):
    with pytest.raises(TiercutError, match=words):
        ProfileRequest.from_dict(body)


def test_a_slowed_timer_reports_k_times_its_base_and_pause_waits_at_least_its_time(monkeypatch):
    import time

    from tiercut.runtime import profiling

    calls = []

    def base(fn, number):
        for _ in range(number):
            fn()
        return 0.125

    assert slowed_timer(3.0, base)(lambda: calls.append(1), 4) == pytest.approx(0.375) and len(calls) == 4
    assert slowed_timer(1.0, base) is base
    for seconds in (2e-4, 0.03):  # a spin, and a sleep then a spin
        start = time.perf_counter()
        pause(seconds)
        assert time.perf_counter() - start >= seconds
    monkeypatch.setattr(profiling.time, "perf_counter", lambda: pytest.fail("pause(0) read the clock"))
    pause(0)
    pause(-1.0)


@pytest.mark.slow
def test_workers_slowed_by_known_factors_measure_those_factors(workers):
    """The Profile RPC on two workers, one emulating a 3x slower device: the slow one's times show the slowdown.

    Two workers measured one after the other on a shared machine: how close to 3x the ratio comes is a
    benchmark figure (it depends on the load); the test checks the slowdown is applied (a ratio well above 1).
    """
    fast = workers.start("edge-fast")
    slow = workers.start("edge-slow", compute_slowdown=3.0)
    request = ProfileRequest(model="resnet18", input_shape=tuple(SHAPE), repeats=7, max_seconds=60)
    replies = {name: _ask(address, request) for name, address in (("fast", fast), ("slow", slow))}
    assert replies["slow"]["compute_slowdown"] == 3.0 and replies["fast"]["device"] == "edge-fast"
    sums = {k: sum(n["timing"]["median_s"] for n in r["profile"]["nodes"].values()) for k, r in replies.items()}
    wholes = {k: r["profile"]["whole_model"]["median_s"] for k, r in replies.items()}
    assert sums["slow"] / sums["fast"] > 1.5 and wholes["slow"] / wholes["fast"] > 1.5
    with pytest.raises(RemoteError, match="token"):
        _ask(fast, request, token="wrong")


def _mlp_bundle():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8)).eval()
    captured = capture_model(model, (4, 16))
    names = [n.name for n in captured.graph.nodes]
    owner = {n: ("end" if i < 2 else "edge") for i, n in enumerate(names)}
    split = split_by_placement(captured, owner)
    values = record_fx_values(captured)
    part = next(p for p in split.partitions if p.device == "edge")
    built = build_program(part, {n: values[n] for n in part.input_names})
    return PartitionBundle("mlp.edge", part.nodes, dict(built.weights), (built.program,)), built.program.manifest.program_id


def test_a_worker_profiles_only_a_program_it_stores(workers):
    address = workers.start("edge-prog")
    bundle, program_id = _mlp_bundle()

    async def upload() -> None:
        connection = Connection(device="edge-prog", address=address, credentials=Credentials(token=TOKEN))
        data = bundle.to_bytes()
        result = await connection.upload(bundle.partition_id, data, sha256_hex(data))
        await connection.close()
        assert result.ok, result

    with pytest.raises(RemoteError, match="not stored"):
        _ask(address, ProfileRequest(program_id=program_id, repeats=3, max_seconds=5))
    asyncio.run(upload())
    reply = _ask(address, ProfileRequest(program_id=program_id, repeats=3, max_seconds=5))
    assert reply["kind"] == "program" and reply["program_id"] == program_id and reply["timing"]["median_s"] > 0


def _plan_measured_on(tmp_path, capsys, edges: dict[str, str], model: list[str], *, extra_devices=(), max_seconds=60):
    """``tiercut plan MODEL --measure-on`` with a phone, the ``edges`` (device -> worker address) and
    ``extra_devices``: the problem JSON it prints."""
    import os

    devices = [{"name": "phone", "tier": "end"}, *({"name": e, "tier": "edge"} for e in edges), *extra_devices]
    links = [{"tiers": ["end", "edge"], "bandwidth_bytes_per_s": 1e7}]
    links += [{"tiers": ["end", d["tier"]], "bandwidth_bytes_per_s": 1e6} for d in extra_devices]
    env = tmp_path / "env.yaml"
    env.write_text(yaml.safe_dump({"devices": devices, "links": links}))
    wfile = tmp_path / "workers.yaml"
    wfile.write_text(yaml.safe_dump({"workers": edges, "token_env": "TIERCUT_TEST_TOKEN", "max_seconds": max_seconds}))
    os.environ["TIERCUT_TEST_TOKEN"] = TOKEN
    try:
        code = main(["plan", *model, "--env", str(env), "--measure-on", str(wfile), "--json"])
    finally:
        del os.environ["TIERCUT_TEST_TOKEN"]
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)["problem"]


@pytest.mark.slow
def test_plan_measure_on_builds_the_table_from_the_workers(workers, tmp_path, capsys):
    fast = workers.start("edge1")
    slow = workers.start("edge2", compute_slowdown=3.0)
    cloud = {"name": "cloud", "tier": "cloud", "spec": "nvidia_t4"}
    problem = _plan_measured_on(tmp_path, capsys, {"edge1": fast, "edge2": slow}, ["resnet18", "--input-shape",
                                ",".join(map(str, SHAPE))], extra_devices=[cloud], max_seconds=60)
    compute = problem["compute_s"]
    total = {d: sum(row[d] for row in compute.values()) for d in ("edge1", "edge2", "phone", "cloud")}
    assert total["edge2"] / total["edge1"] > 1.5  # the 3x slower worker measures slower (how close to 3x: a benchmark figure)
    provenance = problem["provenance"]
    assert provenance["phone"].startswith("measured here")
    assert provenance["edge1"].startswith(f"measured on worker {fast}")
    assert "emulating a 3x slower device" in provenance["edge2"]
    assert "device model" in provenance["cloud"]  # no worker: predicted from the catalog
    assert total["phone"] > 0 and total["cloud"] < total["edge1"]


def test_workers_file_errors_are_one_line(tmp_path):
    path = tmp_path / "w.yaml"
    for text, words in (("workers: {}", "needs a 'workers:'"), ("workers: {edge: nowhere}", "host:port"),
                        ("workers: {edge: '1.2.3.4:5'}\nextra: 1", "unknown key"),
                        ("workers: {edge: '1.2.3.4:5'}\nmax_seconds: 9999", "max_seconds")):
        path.write_text(text)
        with pytest.raises(TiercutError, match=words) as exc:
            WorkersFile.load(path)
        assert "\n" not in str(exc.value)
    with pytest.raises(TiercutError, match="cannot read"):
        WorkersFile.load(tmp_path / "none.yaml")


@pytest.mark.slow
def test_plan_measure_on_sends_a_multi_input_model_with_token_ids_as_layer_programs(workers, tmp_path, capsys):
    """A factory's model with int64 token ids and a bool mask: each layer goes to the worker as a program."""
    edge = workers.start("edge1m")
    slow = workers.start("edge2m", compute_slowdown=4.0)
    model = ["fixtures_models:tiny_transformer", "--allow-code", "--input", "ids:int64:1x12", "--input", "mask:bool:1x12"]
    problem = _plan_measured_on(tmp_path, capsys, {"edge1m": edge, "edge2m": slow}, model, max_seconds=30)
    inputs = {n["name"]: n["out_dtype"] for n in problem["nodes"] if n["op"] == "input"}
    assert inputs == {"ids": "int64", "mask": "bool"}
    compute = problem["compute_s"]
    assert all(row["edge1m"] > 0 and row["edge2m"] > 0 and row["phone"] > 0 for row in compute.values())
    total = {d: sum(row[d] for row in compute.values()) for d in ("edge1m", "edge2m")}
    assert total["edge2m"] / total["edge1m"] > 1.5  # the 4x slower worker measures slower
    provenance = problem["provenance"]
    assert provenance["edge1m"].startswith(f"measured on worker {edge}") and "sent as a program" in provenance["edge1m"]
    assert "emulating a 4x slower device" in provenance["edge2m"]
    assert provenance["phone"].startswith("measured here")
    for worker in workers.workers[-2:]:  # the layers were dropped again: the workers keep nothing
        assert worker.store.partitions() == []
