"""The running phase end to end: worker processes, an upload thread with CRs, queries on the partial model.

Every query's output must equal the whole model's (atol 1e-5), during and
after the upload, for a chain (AlexNet) and a DAG (ResNet-18) of the zoo,
with faults (damaged and lost messages, a worker killed mid-upload and
restarted, a worker gone for good): no query fails and no damaged
partition ever runs.
"""

from __future__ import annotations

import functools
import threading
import time
from pathlib import Path

import pytest
import yaml

from tiercut.env import load_environment
from tiercut.runtime.client import RunSettings
from tiercut.runtime.links import FaultPlan
from tiercut.runtime.migration import placement_plan, prepare_migration
from tiercut.runtime.session import LocalCluster, run_migration

pytestmark = pytest.mark.slow  # every test spawns worker processes

ENVIRONMENT = {
    "name": "test-links",
    "devices": [{"name": "end", "tier": "end"}, {"name": "edge", "tier": "edge"}, {"name": "cloud", "tier": "cloud"}],
    "links": [
        {"a": "end", "b": "edge", "bandwidth_bytes_per_s": 2.0e7, "latency_s": 0.002},
        {"a": "edge", "b": "cloud", "bandwidth_bytes_per_s": 5.0e7, "latency_s": 0.002},
        {"a": "end", "b": "cloud", "bandwidth_bytes_per_s": 1.0e7, "latency_s": 0.005},
    ],
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Client and workers share two cores here: one intra-op thread each (oversubscription is several-fold slower)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def env_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("env") / "links.yaml"
    path.write_text(yaml.safe_dump(ENVIRONMENT))
    return path


def staged_plan(captured, groups: list[list[str]], server: str = "edge", source: str = "end") -> dict:
    """An upload plan: the groups go up in order; stage k places groups 1..k on the server."""
    nodes = [n.name for n in captured.graph.nodes]
    stages, placed = [], set()
    stages.append({"from_s": 0.0, "placement": {n: source for n in nodes}, "latency_s": 1.0, "arrived": {}})
    partitions = []
    for k, group in enumerate(groups, 1):
        placed |= set(group)
        stages.append(
            {
                "from_s": float(k),
                "placement": {n: (server if n in placed else source) for n in nodes},
                "latency_s": 1.0 / (k + 1),
                "arrived": {server: k},
            }
        )
        partitions.append({"nodes": list(group), "param_bytes": 0, "upload_s": 1.0, "arrives_s": float(k)})
    metrics = {"queries_done_by_upload_end": 0, "time_for_n_queries_s": None, "n": 0, "mean_latency_during_upload_s": None}
    return {
        "schema_version": 1,
        "algorithm": "test-staged",
        "server": server,
        "source": source,
        "partitions": partitions,
        "stages": stages,
        "metrics": metrics,
    }


@functools.cache
def _migration(model: str):
    from tiercut.graph import capture_model

    shape = (1, 3, 64, 64) if model == "alexnet" else (1, 3, 32, 32)
    captured = capture_model(model, shape)
    nodes = [n.name for n in captured.graph.nodes]
    if model == "alexnet":  # a chain: the convolutions go up in two pieces, the classifier stays
        convs = [n for n in nodes if n.startswith("features")]
        groups = [convs[len(convs) // 2 :], convs[: len(convs) // 2]]
    else:  # a DAG: three pieces of the residual stages (branches and joins cut anywhere)
        middle = nodes[8:-4]
        third = len(middle) // 3
        groups = [middle[2 * third :], middle[third : 2 * third], middle[:third]]
    return prepare_migration(captured, staged_plan(captured, groups))


def _check_outputs_and_order(result, migration):
    assert result.failed_queries == 0
    assert [q.output_matches for q in result.queries] == [True] * len(result.queries)
    assert result.upload_end_s is not None and not result.abandoned
    times = result.confirmed_s["edge"]
    assert list(times) == sorted(times) and len(times) == len(migration.uploads["edge"])
    final = max(s.index for s in migration.stages)
    after = [q for q in result.queries if q.start_s > result.upload_end_s]
    assert after and all(q.stage == final for q in after if not q.fallback)
    for query in result.queries:  # never a stage before its uploads were confirmed
        needed = migration.stages[query.stage].requires.get("edge", 0)
        confirmations = [a.end_s for a in result.attempts if a.ok and a.position == needed]
        assert needed == 0 or min(confirmations) <= query.start_s


@pytest.mark.parametrize("model", ["alexnet", "resnet18"])
def test_every_query_during_and_after_the_upload_equals_the_whole_model(model, env_file):
    migration = _migration(model)
    settings = RunSettings(queries=10, rate_hz=20.0, verify_outputs=True, queries_after_upload=5, max_run_s=240)
    with LocalCluster(["edge"], env=str(env_file)) as cluster:
        result = run_migration(
            migration,
            cluster.addresses,
            credentials=cluster.credentials(),
            settings=settings,
            environment=load_environment(env_file),
        )
    _check_outputs_and_order(result, migration)
    # every upload confirmed once; on a loaded machine an attempt may time out and be resent, nothing else
    confirmed = [a.position for a in result.attempts if a.ok]
    assert len(confirmed) == len(set(confirmed)) == len(migration.uploads["edge"])
    assert all(a.code in ("timeout", "DEADLINE_EXCEEDED") for a in result.attempts if not a.ok), result.attempts
    assert result.fallbacks == 0
    remote = [q for q in result.queries if q.stage > 0]
    assert remote and all(q.bytes_sent > 0 and q.bytes_received > 0 for q in remote)
    assert {h.device for q in remote for h in q.spans if h.kind == "compute"} == {"end", "edge"}


def test_a_three_device_chain_forwards_end_edge_cloud_and_back(env_file):
    from tiercut.graph import capture_model

    captured = capture_model("resnet18", (1, 3, 32, 32))
    nodes = [n.name for n in captured.graph.nodes]
    placement = {n: ("end" if i < 10 or i >= len(nodes) - 2 else ("edge" if i < 40 else "cloud")) for i, n in enumerate(nodes)}
    migration = prepare_migration(captured, placement_plan(placement, "end"))
    settings = RunSettings(queries=3, rate_hz=20.0, verify_outputs=True, queries_after_upload=4, max_run_s=240)
    with LocalCluster(["edge", "cloud"], env=str(env_file)) as cluster:
        result = run_migration(
            migration,
            cluster.addresses,
            credentials=cluster.credentials(),
            settings=settings,
            environment=load_environment(env_file),
        )
    assert result.failed_queries == 0 and all(q.output_matches for q in result.queries)
    last = result.queries[-1]
    assert last.stage == 1 and not last.fallback
    assert [h.device for h in last.spans if h.kind == "compute"] == ["end", "edge", "cloud", "end"]
    forwards = {(h.device, h.peer) for h in last.spans if h.kind == "transfer"}
    assert forwards == {("end", "edge"), ("edge", "cloud")}


def test_lost_and_damaged_messages_never_fail_a_query_nor_run_a_damaged_partition(env_file):
    migration = _migration("resnet18")
    settings = RunSettings(
        queries=20, rate_hz=20.0, verify_outputs=True, queries_after_upload=5, max_run_s=240, backoff_s=0.01, max_attempts=12
    )
    faults = {"edge": FaultPlan(drop_probability=0.05, corrupt_probability=0.05, seed=11)}
    reply_faults = {"edge": FaultPlan(drop_probability=0.05, corrupt_probability=0.05, seed=12)}
    with LocalCluster(["edge"], env=str(env_file)) as cluster:
        result = run_migration(
            migration,
            cluster.addresses,
            credentials=cluster.credentials(),
            settings=settings,
            environment=load_environment(env_file),
            faults=faults,
            reply_faults=reply_faults,
            chunk_bytes=256 * 1024,
        )
        log = (cluster.log_dir / "edge.log").read_text()
    assert faults["edge"].dropped + faults["edge"].corrupted > 0
    _check_outputs_and_order(result, migration)
    assert any(not a.ok for a in result.attempts)  # some CRs failed and were resent
    assert "CR failure" in log


def _run_in_background(migration, cluster, settings, **extra):
    box: dict = {}
    confirmed = threading.Event()

    def log(line: str) -> None:
        if "CR ok" in line:
            confirmed.set()

    def target() -> None:
        try:
            box["result"] = run_migration(
                migration, cluster.addresses, credentials=cluster.credentials(), settings=settings, log=log, **extra
            )
        except BaseException as exc:  # surfaced by the test
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box, confirmed


@pytest.mark.slow
def test_a_worker_killed_mid_upload_and_restarted_gets_the_rest(env_file):
    migration = _migration("resnet18")
    settings = RunSettings(
        queries=30,
        rate_hz=10.0,
        verify_outputs=True,
        queries_after_upload=5,
        max_run_s=300,
        backoff_s=0.2,
        backoff_max_s=1.0,
        max_attempts=20,
        suspect_s=0.5,
    )
    environment = load_environment(env_file)
    with LocalCluster(["edge"], env=str(env_file), bandwidth_scale=0.2) as cluster:
        thread, box, confirmed = _run_in_background(migration, cluster, settings, environment=environment, bandwidth_scale=0.2)
        assert confirmed.wait(timeout=120), "no upload was confirmed"
        cluster.processes["edge"].kill()  # mid-upload: the first partition is in, the rest is not
        time.sleep(1.5)
        cluster.restart("edge")  # without a store: it lost what it had
        thread.join(timeout=280)
    assert "error" not in box, box.get("error")
    result = box["result"]
    _check_outputs_and_order(result, migration)
    first_ok = [a for a in result.attempts if a.position == 1 and a.ok]
    assert len(first_ok) >= 2  # the lost partition was uploaded again after the restart


def test_a_worker_gone_for_good_leaves_every_query_local_and_correct(env_file):
    migration = _migration("alexnet")
    settings = RunSettings(
        queries=12,
        verify_outputs=True,
        max_run_s=120,
        backoff_s=0.05,
        backoff_max_s=0.2,
        max_attempts=3,
        upload_timeout_floor_s=2.0,
        keep_uploading_s=10.0,
        give_up_unreachable_s=1.0,
    )
    with LocalCluster(["edge"], env=str(env_file)) as cluster:
        addresses = cluster.addresses
        cluster.processes["edge"].kill()
        result = run_migration(
            migration, addresses, credentials=cluster.credentials(), settings=settings, environment=load_environment(env_file)
        )
    assert result.failed_queries == 0 and all(q.output_matches for q in result.queries)
    assert all(q.stage == 0 for q in result.queries) and len(result.queries) == 12
    assert "unreachable" in result.abandoned["edge"] and result.upload_end_s is None
    # an unreachable worker is probed (with a capped backoff) until give_up_unreachable_s, not max_attempts times
    assert len(result.attempts) > settings.max_attempts and not any(a.ok for a in result.attempts)
    assert all(a.code == "unavailable" for a in result.attempts)


def test_a_worker_with_a_store_keeps_its_partitions_for_the_next_run(env_file, tmp_path):
    migration = _migration("alexnet")
    with LocalCluster(["edge"], env=str(env_file), store_root=tmp_path) as cluster:
        first = run_migration(
            migration,
            cluster.addresses,
            credentials=cluster.credentials(),
            settings=RunSettings(queries=2, queries_after_upload=1, max_run_s=120),
        )
        assert first.upload_end_s is not None
        cluster.restart("edge")
        second = run_migration(
            migration,
            cluster.addresses,
            credentials=cluster.credentials(),
            settings=RunSettings(queries=3, fresh=False, verify_outputs=True, max_run_s=120),
        )
    assert second.attempts == () and second.upload_end_s == 0.0
    final = max(s.index for s in migration.stages)
    assert [q.stage for q in second.queries] == [final] * 3 and all(q.output_matches for q in second.queries)


def _same_architecture(seed: int):
    """TinyNet with its own random weights: two users, one architecture."""
    import torch

    from fixtures_models import tiny_net
    from tiercut.graph import capture_model

    torch.manual_seed(seed)
    captured = capture_model(tiny_net(), (1, 3, 8, 8))
    nodes = [n.name for n in captured.graph.nodes]
    return prepare_migration(captured, staged_plan(captured, [nodes[1:-1]]), label="tiny")


@pytest.mark.slow
def test_two_users_with_one_architecture_and_other_weights_share_a_worker_and_get_their_own_answers():
    alice, bob = _same_architecture(1), _same_architecture(2)
    ids = {m: [i.partition_id for i in m.uploads["edge"]] for m in (alice, bob)}
    assert ids[alice] != ids[bob] and all(i.startswith("tiny.") and "@" in i for i in ids[alice])
    settings = RunSettings(queries=3, queries_after_upload=2, verify_outputs=True, max_run_s=120)
    with LocalCluster(["edge"]) as cluster:
        runs = [
            run_migration(m, cluster.addresses, credentials=cluster.credentials(), settings=settings) for m in (alice, bob)
        ]
        # alice again without uploading: her partitions are still there, untouched by bob's
        again = run_migration(
            alice,
            cluster.addresses,
            credentials=cluster.credentials(),
            settings=RunSettings(queries=3, fresh=False, verify_outputs=True, max_run_s=120),
        )
    for result in [*runs, again]:
        assert result.failed_queries == 0 and all(q.output_matches for q in result.queries)
        assert not any(q.fallback for q in result.queries if q.stage > 0)
    assert again.attempts == () and [q.stage for q in again.queries] == [1, 1, 1]


@pytest.mark.slow
def test_a_worker_killed_mid_upload_and_back_with_its_store_10_s_later_gets_the_rest(env_file, tmp_path):
    migration = _migration("resnet18")
    settings = RunSettings(
        queries=40,
        rate_hz=2.0,
        verify_outputs=True,
        queries_after_upload=3,
        max_run_s=300,
        backoff_s=0.2,
        backoff_max_s=1.0,
        max_attempts=3,  # a worker that answers may refuse 3 times; an unreachable one is probed, not counted
        suspect_s=0.5,
    )
    environment = load_environment(env_file)
    with LocalCluster(["edge"], env=str(env_file), bandwidth_scale=0.2, store_root=tmp_path) as cluster:
        thread, box, confirmed = _run_in_background(migration, cluster, settings, environment=environment, bandwidth_scale=0.2)
        assert confirmed.wait(timeout=120), "no upload was confirmed"
        cluster.processes["edge"].kill()  # mid-upload: the first partition is in (and in the store), the rest is not
        killed_at = time.time()
        time.sleep(10.0)
        cluster.restart("edge")  # with its store: it still holds what it confirmed
        thread.join(timeout=280)
        log = (cluster.log_dir / "edge.log").read_text()
    assert "error" not in box, box.get("error")
    result = box["result"]
    _check_outputs_and_order(result, migration)
    assert "reloaded 1 partition(s)" in log
    first_ok = [a for a in result.attempts if a.position == 1 and a.ok]
    assert len(first_ok) == 1  # the store kept it: it was not uploaded again
    probes = [a for a in result.attempts if not a.ok and a.code == "unavailable"]
    assert len(probes) > settings.max_attempts  # probed with a capped backoff all along, never given up
    assert result.started_at + result.upload_end_s > killed_at + 10.0  # the rest went up after the restart
    final = max(s.index for s in migration.stages)
    assert any(q.stage == final and not q.fallback for q in result.queries)
