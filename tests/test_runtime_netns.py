"""Workers in their own network namespaces, joined by veth pairs shaped with ``tc tbf``.

The test runs :func:`scenario` inside ``unshare -rn`` (a new user and network
namespace: no privilege needed on the host, and nothing it creates outlives
it). There the client's namespace gets two more, one per worker (edge,
cloud), joined by veth pairs (client-edge, client-cloud, edge-cloud) whose
senders are rate-limited by ``tc qdisc ... tbf`` (``netem`` delay is added
where the kernel has it). The workers run with ``nsenter -n`` in their
namespaces and link emulation off: the (virtual) network does the shaping.
A query goes end -> edge -> cloud -> end over real interfaces; the test
checks every output and that the upload to the cloud took at least its
bytes over the tbf rate.

Skipped, saying why, where namespaces, veth or tbf are unavailable.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # every test spawns worker processes

RATE_BPS = {"client-edge": 5e6, "client-cloud": 2.5e6, "edge-cloud": 10e6}  # bytes per second
SUBNETS = {"client-edge": "10.231.1", "client-cloud": "10.231.2", "edge-cloud": "10.231.3"}
VETHS = {"client-edge": ("ce0", "ce1"), "client-cloud": ("ck0", "ck1"), "edge-cloud": ("ek0", "ek1")}
PORT = 50077


def _run(*command: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(command), check=check, capture_output=True, text=True, timeout=60)


def _probe() -> str:
    """'' if this machine allows the scenario, else why not."""
    for tool in ("unshare", "nsenter", "ip", "tc"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    script = "ip link add tcv0 type veth peer name tcv1 && tc qdisc add dev tcv0 root tbf rate 8mbit burst 32kb latency 100ms"
    try:
        result = subprocess.run(["unshare", "-rn", "sh", "-c", script], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare -rn failed: {exc}"
    if result.returncode != 0:
        return f"user/network namespaces, veth or tc tbf are not available here: {result.stderr.strip()[:200]}"
    return ""


def _tbf(device: str, rate_bps: float, prefix: list[str]) -> None:
    _run(
        *prefix,
        "tc",
        "qdisc",
        "add",
        "dev",
        device,
        "root",
        "handle",
        "1:",
        "tbf",
        "rate",
        f"{int(rate_bps * 8)}bit",
        "burst",
        "64kb",
        "latency",
        "200ms",
    )


def scenario(out_path: str) -> None:
    """Inside ``unshare -rn``: namespaces, veths, tbf, two workers, a migration run. Writes a JSON report."""
    import torch

    from tiercut.graph import capture_model
    from tiercut.runtime.client import RunSettings
    from tiercut.runtime.migration import placement_plan, prepare_migration
    from tiercut.runtime.processes import spawn_worker
    from tiercut.runtime.protocol import Credentials
    from tiercut.runtime.session import run_migration

    torch.set_num_threads(1)
    report: dict = {"netem": False}
    holders = {d: subprocess.Popen(["unshare", "-n", "sleep", "900"]) for d in ("edge", "cloud")}
    workers = []
    try:
        time.sleep(0.3)
        pid = {d: str(p.pid) for d, p in holders.items()}
        inside = {"client": [], **{d: ["nsenter", "-t", pid[d], "-n"] for d in pid}}
        _run("ip", "link", "set", "lo", "up")
        for device in ("edge", "cloud"):
            _run(*inside[device], "ip", "link", "set", "lo", "up")
        for link, (a, b) in {
            "client-edge": ("client", "edge"),
            "client-cloud": ("client", "cloud"),
            "edge-cloud": ("edge", "cloud"),
        }.items():
            name_a, name_b = VETHS[link]
            _run("ip", "link", "add", name_a, "type", "veth", "peer", "name", name_b)
            for name, end in ((name_a, a), (name_b, b)):
                if end != "client":
                    _run("ip", "link", "set", name, "netns", pid[end])
            for index, (name, end) in enumerate(((name_a, a), (name_b, b)), start=1):
                _run(*inside[end], "ip", "addr", "add", f"{SUBNETS[link]}.{index}/24", "dev", name)
                _run(*inside[end], "ip", "link", "set", name, "up")
                _tbf(name, RATE_BPS[link], inside[end])
                delay = _run(
                    *inside[end],
                    "tc",
                    "qdisc",
                    "add",
                    "dev",
                    name,
                    "parent",
                    "1:1",
                    "handle",
                    "10:",
                    "netem",
                    "delay",
                    "2ms",
                    check=False,
                )
                report["netem"] = report["netem"] or delay.returncode == 0
        token = "netns-token"
        addresses = {"edge": f"{SUBNETS['client-edge']}.2:{PORT}", "cloud": f"{SUBNETS['client-cloud']}.2:{PORT}"}
        peers = {"edge": {"cloud": f"{SUBNETS['edge-cloud']}.2:{PORT}"}, "cloud": {"edge": f"{SUBNETS['edge-cloud']}.1:{PORT}"}}
        for device in ("edge", "cloud"):
            workers.append(
                spawn_worker(
                    device,
                    listen=f"0.0.0.0:{PORT}",
                    token=token,
                    peers=peers[device],
                    extra_args=["--torch-threads", "1", "--insecure"],  # the namespaces' veths are the trusted network
                    command_prefix=inside[device],
                    log_path=Path(out_path).with_suffix(f".{device}.log"),
                )
            )
        captured = capture_model("resnet18", (1, 3, 32, 32))
        nodes = [n.name for n in captured.graph.nodes]
        start = {k: next(i for i, n in enumerate(nodes) if n.startswith(k)) for k in ("layer2", "layer3", "layer4")}
        # layer2 (with its residual adds) on the edge, layer3 on the cloud, the rest on the client
        placement = {
            n: (
                "edge" if start["layer2"] <= i < start["layer3"] else "cloud" if start["layer3"] <= i < start["layer4"] else "end"
            )
            for i, n in enumerate(nodes)
        }
        migration = prepare_migration(captured, placement_plan(placement, "end"))
        settings = RunSettings(queries=2, queries_after_upload=4, verify_outputs=True, max_run_s=240)
        result = run_migration(migration, addresses, credentials=Credentials(token=token), settings=settings)
        report["result"] = result.to_dict()
        report["bundle_bytes"] = {s: len(items[0].data()[0]) for s, items in migration.uploads.items()}
    finally:
        for worker in workers:
            worker.stop()
        for holder in holders.values():
            holder.kill()
            holder.wait(timeout=10)
    Path(out_path).write_text(json.dumps(report))


def test_workers_in_their_own_namespaces_over_rate_limited_veths(tmp_path):
    why = _probe()
    if why:
        pytest.skip(f"network namespace test skipped: {why}")
    out = tmp_path / "report.json"
    tests_dir = str(Path(__file__).parent)
    code = f"import sys; sys.path.insert(0, {tests_dir!r}); from test_runtime_netns import scenario; scenario({str(out)!r})"
    env = {k: v for k, v in os.environ.items() if k != "TIERCUT_TOKEN"}
    done = subprocess.run(["unshare", "-rn", sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    result = report["result"]
    queries = result["queries"]
    assert all(q["output_matches"] for q in queries) and not any(q["error"] and not q["fallback"] for q in queries)
    last = queries[-1]
    assert last["stage"] == 1 and not last["fallback"]
    forwards = {(h["device"], h["peer"]) for h in last["spans"] if h["kind"] == "transfer"}
    assert forwards == {("end", "edge"), ("edge", "cloud")}
    # the upload to the cloud crossed the client-cloud veth at no more than its tbf rate
    attempt = next(a for a in result["attempts"] if a["server"] == "cloud" and a["ok"])
    seconds = attempt["end_s"] - attempt["start_s"]
    floor = report["bundle_bytes"]["cloud"] / RATE_BPS["client-cloud"]
    assert seconds >= 0.8 * floor, (seconds, floor)
