"""Run-time adaptation on shaped links: a bandwidth drop and recovery, measured, next to the simulator's prediction.

A client (the ``end`` device, emulated ``SLOWDOWN`` times slower than this
host) runs a conv net split with one edge worker over a link whose rate
follows a schedule: 4 MB/s, then 0.05 MB/s (the drop), then 4 MB/s again
(the recovery). The plan made for 4 MB/s offloads the convolutions; at
0.05 MB/s running everything locally is faster. Two runs under the same
schedule, each with fresh workers:

* ``static``: the plan stays (``tiercut run --link-schedule ...``);
* ``adaptive``: ``tiercut run --adapt --link-schedule ...`` (EWMA estimator,
  threshold 0.2, dwell 1 s, probes every 0.5 s);
* ``adaptive-window``: the same with the windowed estimator
  (``--adapt-estimator window``, 2 s): the EWMA of seconds per byte sees a
  drop at once but climbs back from an 80x drop in about ten samples, the
  window's median forgets the drop after half a window.

Two kinds of shaping, each its own section:

* ``emulated``: the runtime's token bucket (:mod:`tiercut.runtime.links`);
  the schedule changes the client's sending direction (the worker's replies,
  40 bytes of logits here, keep the environment's rate);
* ``tc``: real interfaces -- the worker in its own network namespace,
  joined to the client's by a veth pair shaped by ``tc tbf`` on both ends
  (the netns/tc test's setting, tests/test_runtime_netns.py), the schedule
  applied with ``tc qdisc change`` on both ends. Skipped (saying why) where
  ``unshare -rn``, veth or tbf are not available.

Reported per run: the time to adapt (from the rate change to the first
query on the new plan), the median latency before the drop, during the
drop (after the switch) and after the recovery, the re-planning time per
decision (median, p90), the switches and the uploaded bytes. Next to them,
the simulator's prediction (``tiercut.sim`` as it is, the same bandwidth
schedule as its ``bandwidth_traces``): each plan's simulated latency in
each phase, and the switch times the controller would make on the cost
model's transfer times (the estimator and the controller replayed on the
schedule), so "predicted adaptive" is the simulated latency of the plan the
controller would be on.

Run: ``PYTHONPATH=src python benchmarks/dynamic_adapt.py [--quick]``;
writes benchmarks/results/dynamic_adapt.json (and .png). Measured on a
machine shared with other work: the JSON records the load average and CPU.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
#: the client is emulated this many times slower than this host (RunSettings.source_slowdown); the compute table
#: charges the end device the host's measured seconds times this, the edge the host's seconds
SLOWDOWN = 8.0
HIGH_BPS, LOW_BPS = 4e6, 0.05e6
LATENCY_S = 0.002
RATE_HZ = 10.0
#: (drop, recovery, end) seconds
PHASES = {False: (12.0, 24.0, 34.0), True: (8.0, 15.0, 21.0)}
VETH = ("ad0", "ad1")
#: the adaptive runs: name -> link estimator
ADAPTIVE_RUNS = {"adaptive": "ewma", "adaptive-window": "window"}
RUNS = {"static": None, **ADAPTIVE_RUNS}
SUBNET = "10.232.1"


def _model() -> Any:
    import torch
    from torch import nn

    class CameraNet(nn.Module):
        """A conv stem on a 64x64 image, a pooled head: heavy early layers, a small input."""

        def __init__(self) -> None:
            super().__init__()
            self.c1 = nn.Conv2d(3, 64, 3, padding=1)
            self.c2 = nn.Conv2d(64, 64, 3, padding=1)
            self.c3 = nn.Conv2d(64, 64, 3, padding=1)
            self.fc = nn.Linear(64 * 16 * 16, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.relu(self.c2(torch.relu(self.c1(x))))
            y = torch.max_pool2d(torch.relu(self.c3(y)), 4)
            return self.fc(torch.flatten(y, 1))

    torch.manual_seed(0)
    return CameraNet().eval()


def _env_yaml() -> str:
    return (
        "schema_version: 1\nname: adapt-bench\n"
        "description: a client and an edge server on one link (the benchmark's compute table gives the times)\n"
        "devices:\n  - {name: end, tier: end, spec: jetson_nano}\n  - {name: edge, tier: edge, spec: xeon_gold_6230}\n"
        f"links:\n  - {{a: end, b: edge, bandwidth: {HIGH_BPS:g}, latency: {LATENCY_S:g}}}\n"
    )


def _setup(env_path: Path) -> dict[str, Any]:
    """Model, measured compute table, problem, the upload plan for the nominal link, the runtime plan."""
    import torch

    from tiercut.env import load_environment
    from tiercut.graph import capture_model
    from tiercut.pipeline.problem import problem as make_problem
    from tiercut.pipeline.profile import profile
    from tiercut.runtime.migration import prepare_migration
    from tiercut.upload import plan_upload

    torch.set_num_threads(1)
    captured = capture_model(_model(), (1, 3, 64, 64))
    measured = profile(_model(), (1, 3, 64, 64), repeats=15, torch_threads=1)
    host = {name: max(node.median_s, 1e-6) for name, node in measured.nodes.items()}
    table = {name: {"end": s * SLOWDOWN, "edge": s} for name, s in host.items()}
    environment = load_environment(env_path)
    problem = make_problem(captured.graph, environment, compute_s=table)
    upload = plan_upload(problem, "recursive-efficiency", offloading="mincut")
    migration = prepare_migration(captured, upload, problem=problem, label="camera-net")
    return {
        "captured": captured, "problem": problem, "environment": environment, "upload": upload, "migration": migration,
        "placement": dict(upload.stages[-1].placement), "host_compute_s": host,
    }


def _schedule(quick: bool) -> Any:
    from tiercut.runtime.adapt import LinkSchedule

    drop, recover, _ = PHASES[quick]
    return LinkSchedule.parse([f"end-edge=0:{HIGH_BPS:g},{drop:g}:{LOW_BPS:g},{recover:g}:{HIGH_BPS:g}"])


def _one_run(setup: dict[str, Any], addresses: dict[str, str], credentials: Any, *, estimator: str | None, quick: bool,
             environment: Any, apply_rate: Any = None) -> Any:
    """One run under the schedule: static (``estimator`` None) or adaptive with that link estimator."""
    from tiercut.runtime.adapt import AdaptSettings
    from tiercut.runtime.adaptive import AdaptiveClient
    from tiercut.runtime.client import RunSettings
    from tiercut.runtime.links import LinkTable
    from tiercut.runtime.protocol import Connection

    _, _, end = PHASES[quick]
    links = LinkTable.from_environment(environment, "end") if environment is not None else None
    connections = {
        "edge": Connection(device="edge", address=addresses["edge"], credentials=credentials,
                           shaper=links.shaper("edge") if links is not None else None)
    }
    settings = RunSettings(queries=100_000, rate_hz=RATE_HZ, verify_outputs=True, max_run_s=end,
                           source_slowdown=SLOWDOWN)
    client = AdaptiveClient(
        setup["problem"], setup["migration"], setup["placement"], connections, settings,
        AdaptSettings(estimator=estimator or "ewma", dwell_s=1.0, probe_interval_s=0.5), label="camera-net",
        schedule=_schedule(quick), apply_rate=apply_rate, replan=estimator is not None,
    )
    return client.run()


# --------------------------------------------------------------------- figures of a run
def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def run_figures(result: Any, quick: bool) -> dict[str, Any]:
    """Phase latencies, times to adapt, re-planning overhead of one run."""
    drop, recover, _ = PHASES[quick]
    trace = result.adaptation
    queries = list(zip(result.queries, trace.query_plans))
    first_plan = 0

    def latencies(lo: float, hi: float) -> list[float]:
        return [q.latency_s for q, _ in queries if lo <= q.start_s < hi]

    def first_switch_after(t: float, until: float) -> Any:
        return next((s for s in trace.switches if t <= s.decided_s < until), None)

    to_drop = first_switch_after(drop, recover)
    to_back = first_switch_after(recover, math.inf)
    settle = 0.5  # the queries just after a switch still share the link with the probes of the old plan
    during_from = (to_drop.at_s + settle) if to_drop is not None else drop + 1.5
    after_from = (to_back.at_s + settle) if to_back is not None else recover + 1.5
    return {
        "queries": len(result.queries),
        "failed": result.failed_queries,
        "outputs_equal": sum(1 for q in result.queries if q.output_matches),
        "switches": [s.to_dict() for s in trace.switches],
        "time_to_adapt_drop_s": None if to_drop is None else to_drop.at_s - drop,
        "time_to_adapt_recovery_s": None if to_back is None else to_back.at_s - recover,
        "decided_after_drop_s": None if to_drop is None else to_drop.decided_s - drop,
        "decided_after_recovery_s": None if to_back is None else to_back.decided_s - recover,
        "latency_before_s": _median(latencies(max(0.0, drop - 3.0), drop)),
        "latency_during_drop_s": _median(latencies(during_from, recover)),
        "latency_after_recovery_s": _median(latencies(after_from, math.inf)),
        "queries_on_first_plan_during_drop": sum(1 for q, p in queries if during_from <= q.start_s < recover and p == first_plan),
        "overhead": trace.overhead(),
        "probes": dict(trace.probes),
        "timeline": [[round(q.start_s, 3), round(q.latency_s, 5), p] for q, p in queries],
        "estimates": [[round(t, 3), round(b), round(lat, 5)] for t, _, b, lat in trace.estimates[::5]],
    }


# --------------------------------------------------------------------- the simulator's prediction
def _replay_controller(setup: dict[str, Any], quick: bool, estimator: str) -> dict[str, Any]:
    """The estimator and the controller on the cost model's run: queries one at a time (each the cost model's
    latency of the plan in use at the scheduled rate, its sample arriving when it ends, decisions between
    queries), the link sampled only by probes every ``probe_interval_s`` while everything runs locally."""
    from tiercut.cost import evaluate
    from tiercut.runtime.adapt import AdaptSettings, HysteresisController, estimated_problem, placement_key, replan
    from tiercut.runtime.estimator import LinkEstimate, LinkEstimates, LinkSample

    problem, first = setup["problem"], setup["placement"]
    drop, recover, end = PHASES[quick]
    schedule = _schedule(quick)
    settings = AdaptSettings(estimator=estimator, dwell_s=1.0, probe_interval_s=0.5)
    estimates = LinkEstimates.for_problem(problem, settings.estimator, **settings.estimator_settings())
    controller = HysteresisController.of(settings)
    current = placement_key(first, "end")
    placements = {current: first}
    nbytes = problem.graph["x"].out_bytes
    key = frozenset(("end", "edge"))
    switches: list[dict[str, Any]] = []
    t, due, last_probe, last_decision = 0.0, 0.0, 0.0, -math.inf
    while t < end:
        start = max(t, due)
        rate = schedule.rate_at("end", "edge", start) or HIGH_BPS
        transfer_s = 2 * LATENCY_S + nbytes / rate
        latency = evaluate(estimated_problem(problem, {key: LinkEstimate(rate, LATENCY_S)}), placements[current]).latency_s
        t = start + latency
        if current != ():
            estimates.observe("end", "edge", LinkSample(t, nbytes, transfer_s, 2))
        while current == () and last_probe + settings.probe_interval_s <= t:
            last_probe += settings.probe_interval_s
            estimates.observe("end", "edge", LinkSample(last_probe + transfer_s, nbytes, transfer_s, 2))
        due += 1.0 / RATE_HZ
        if t - last_decision < settings.interval_s:
            continue
        last_decision = t
        planned = replan(problem, estimates.snapshot(t), placements[current], settings.algorithm)
        candidate = placement_key(planned.placement, "end")
        placements.setdefault(candidate, planned.placement)
        if controller.decide(t, planned.current_latency_s, planned.latency_s, candidate, current).action == "switch":
            switches.append({"at_s": t, "to": "local" if candidate == () else "offload"})
            current = candidate
            last_probe = t
            controller.reset()
    return {
        "controller_switches": switches,
        "time_to_adapt_drop_s": next((s["at_s"] - drop for s in switches if drop <= s["at_s"] < recover), None),
        "time_to_adapt_recovery_s": next((s["at_s"] - recover for s in switches if s["at_s"] >= recover), None),
    }


def predicted(setup: dict[str, Any], quick: bool) -> dict[str, Any]:
    """Each plan simulated under the schedule, and the controller replayed on the cost model's transfer times."""
    from tiercut.sim import SimConfig, SimUser, simulate
    from tiercut.sim.model import BackToBack

    problem = setup["problem"]
    drop, recover, end = PHASES[quick]
    schedule = _schedule(quick)
    offloaded = setup["placement"]
    local = problem.local_placement()
    curves = {}
    for name, placement in (("first_plan", offloaded), ("local", local)):
        # one query at a time, as the runtime issues them (a query due while the previous runs waits for it)
        user = SimUser("end-user", problem, placement=placement, arrivals=BackToBack(think_s=1.0 / RATE_HZ))
        result = simulate([user], SimConfig(duration_s=end, traces=schedule.traces()))
        curves[name] = [(q.start_s, q.end_s - q.start_s) for q in result.queries if math.isfinite(q.end_s)]

    def phase(curve: list[tuple[float, float]], lo: float, hi: float) -> float:
        return _median([lat for t, lat in curve if lo <= t < hi])

    replays = {name: _replay_controller(setup, quick, estimator) for name, estimator in ADAPTIVE_RUNS.items()}
    phases = {
        name: {"before_s": phase(curve, drop - 3, drop), "drop_s": phase(curve, drop + 1, recover),
               "after_s": phase(curve, recover + 1, end)}
        for name, curve in curves.items()
    }
    return {
        **phases,
        **replays,
        "curves": {k: [[round(t, 3), round(lat, 5)] for t, lat in v] for k, v in curves.items()},
    }


# --------------------------------------------------------------------- emulated links (token bucket)
def emulated(setup: dict[str, Any], env_path: Path, quick: bool) -> dict[str, Any]:
    from tiercut.runtime.session import LocalCluster

    out = {}
    for name, estimator in RUNS.items():
        with LocalCluster(["edge"], env=str(env_path), torch_threads=1) as cluster:
            result = _one_run(setup, cluster.addresses, cluster.credentials(), estimator=estimator, quick=quick,
                              environment=setup["environment"])
        out[name] = run_figures(result, quick)
    return out


# --------------------------------------------------------------------- real links (netns + tc tbf)
def _tc_probe() -> str:
    for tool in ("unshare", "nsenter", "ip", "tc"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    script = "ip link add tcv0 type veth peer name tcv1 && tc qdisc add dev tcv0 root tbf rate 8mbit burst 32kb latency 100ms"
    try:
        done = subprocess.run(["unshare", "-rn", "sh", "-c", script], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare -rn failed: {exc}"
    return "" if done.returncode == 0 else f"namespaces, veth or tc tbf unavailable: {done.stderr.strip()[:200]}"


def _tbf(prefix: list[str], device: str, rate_bps: float, verb: str) -> None:
    burst = max(16 * 1024, int(rate_bps / 100))
    subprocess.run(
        [*prefix, "tc", "qdisc", verb, "dev", device, "root", "handle", "1:", "tbf", "rate", f"{int(rate_bps * 8)}bit",
         "burst", str(burst), "latency", "200ms"],
        check=True, capture_output=True, timeout=30,
    )


def tc_scenario(out_path: str, quick: bool) -> None:
    """Inside ``unshare -rn``: the worker in a namespace of its own behind a tbf-shaped veth pair; both runs."""
    from tiercut.runtime.processes import spawn_worker
    from tiercut.runtime.protocol import Credentials

    with tempfile.TemporaryDirectory() as tmp:
        env_path = Path(tmp) / "adapt-bench.yaml"
        env_path.write_text(_env_yaml())
        setup = _setup(env_path)
        report: dict[str, Any] = {}
        holder = subprocess.Popen(["unshare", "-n", "sleep", "900"])
        worker = None
        try:
            time.sleep(0.3)
            inside = ["nsenter", "-t", str(holder.pid), "-n"]
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=30)
            subprocess.run([*inside, "ip", "link", "set", "lo", "up"], check=True, timeout=30)
            subprocess.run(["ip", "link", "add", VETH[0], "type", "veth", "peer", "name", VETH[1]], check=True, timeout=30)
            subprocess.run(["ip", "link", "set", VETH[1], "netns", str(holder.pid)], check=True, timeout=30)
            for prefix, name, index in (([], VETH[0], 1), (inside, VETH[1], 2)):
                subprocess.run([*prefix, "ip", "addr", "add", f"{SUBNET}.{index}/24", "dev", name], check=True, timeout=30)
                subprocess.run([*prefix, "ip", "link", "set", name, "up"], check=True, timeout=30)
                _tbf(prefix, name, HIGH_BPS, "add")

            def apply(a: str, b: str, rate: float) -> None:
                for prefix, name in (([], VETH[0]), (inside, VETH[1])):
                    _tbf(prefix, name, rate, "change")

            token = "adapt-bench"
            worker = spawn_worker(
                "edge", listen="0.0.0.0:50091", token=token, extra_args=["--torch-threads", "1", "--insecure"],
                command_prefix=inside, log_path=Path(out_path).with_suffix(".edge.log"),
            )
            for name, estimator in RUNS.items():
                apply("end", "edge", HIGH_BPS)
                result = _one_run(setup, {"edge": f"{SUBNET}.2:50091"}, Credentials(token=token), estimator=estimator,
                                  quick=quick, environment=None, apply_rate=apply)
                report[name] = run_figures(result, quick)
        finally:
            if worker is not None:
                worker.stop()
            holder.kill()
            holder.wait(timeout=10)
    Path(out_path).write_text(json.dumps(report))


def real_links(quick: bool) -> dict[str, Any]:
    why = _tc_probe()
    if why:
        return {"skipped": why}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "tc.json"
        env = {k: v for k, v in os.environ.items() if k != "TIERCUT_TOKEN"}
        command = [sys.executable, str(Path(__file__).resolve()), "--tc-scenario", str(out), *(["--quick"] if quick else [])]
        done = subprocess.run(["unshare", "-rn", *command], capture_output=True, text=True, timeout=1800, env=env)
        if done.returncode != 0:
            return {"failed": done.stderr[-2000:]}
        return json.loads(out.read_text())


# --------------------------------------------------------------------- front door
def run(quick: bool) -> dict[str, Any]:
    """Every section: the simulator's prediction, emulated links, real (tc) links."""
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        env_path = Path(tmp) / "adapt-bench.yaml"
        env_path.write_text(_env_yaml())
        setup = _setup(env_path)
        prediction = predicted(setup, quick)
        measured_emulated = emulated(setup, env_path, quick)
    measured_tc = real_links(quick)
    drop, recover, end = PHASES[quick]
    return {
        "benchmark": "dynamic_adapt",
        "quick": quick,
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "load_before": load_before, "load_after": os.getloadavg()},
        "setup": {
            "model": "CameraNet (conv 3->64, two conv 64->64 on 64x64, max-pool 4, linear 16384->10), random weights",
            "client_slowdown": SLOWDOWN, "rate_hz": RATE_HZ, "link_latency_s": LATENCY_S,
            "schedule": {"high_bytes_per_s": HIGH_BPS, "low_bytes_per_s": LOW_BPS, "drop_s": drop, "recover_s": recover,
                         "end_s": end},
            "adapt": {"estimators": ADAPTIVE_RUNS, "alpha": 0.25, "window_s": 2.0, "threshold": 0.2, "dwell_s": 1.0,
                      "probe_interval_s": 0.5},
            "first_plan_offloaded_nodes": sum(1 for d in setup["placement"].values() if d == "edge"),
        },
        "predicted": prediction,
        "emulated": measured_emulated,
        "tc": measured_tc,
    }


def _table(results: dict[str, Any]) -> list[str]:
    def ms(x: Any) -> str:
        return "   -   " if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x * 1e3:7.1f}"

    def s(x: Any) -> str:
        return "  -  " if x is None else f"{x:5.2f}"

    p = results["predicted"]
    lines = [
        "section     run              before ms  drop ms  after ms  adapt(drop) s  adapt(back) s  replan ms (med/p90)  failed",
        f"predicted   static             {ms(p['first_plan']['before_s'])}  {ms(p['first_plan']['drop_s'])}  "
        f"{ms(p['first_plan']['after_s'])}",
    ]
    for name in ADAPTIVE_RUNS:
        lines.append(
            f"predicted   {name:<16}   {ms(p['first_plan']['before_s'])}  {ms(p['local']['drop_s'])}  "
            f"{ms(p['first_plan']['after_s'])}       {s(p[name]['time_to_adapt_drop_s'])}          "
            f"{s(p[name]['time_to_adapt_recovery_s'])}"
        )
    for section in ("emulated", "tc"):
        block = results.get(section, {})
        if "static" not in block:
            lines.append(f"{section:<11} {next(iter(block.values()), '')[:90]}")
            continue
        for name in RUNS:
            r = block[name]
            o = r["overhead"]
            lines.append(
                f"{section:<11} {name:<16}   {ms(r['latency_before_s'])}  {ms(r['latency_during_drop_s'])}  "
                f"{ms(r['latency_after_recovery_s'])}       {s(r['time_to_adapt_drop_s'])}          "
                f"{s(r['time_to_adapt_recovery_s'])}        {ms(o['median_s'])}/{ms(o['p90_s'])}      "
                f"{r['failed']} ({r['outputs_equal']}/{r['queries']} equal)"
            )
    return lines


def _plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sections = [s for s in ("emulated", "tc") if "static" in results.get(s, {})]
    fig, axes = plt.subplots(len(sections) or 1, 1, figsize=(9, 3.6 * max(1, len(sections))), squeeze=False)
    drop, recover = results["setup"]["schedule"]["drop_s"], results["setup"]["schedule"]["recover_s"]
    for ax, section in zip(axes[:, 0], sections):
        for name, style in (("static", "o"), ("adaptive", "s"), ("adaptive-window", "^")):
            line = results[section][name]["timeline"]
            ax.plot([t for t, _, _ in line], [lat * 1e3 for _, lat, _ in line], style, markersize=2.5, label=f"measured {name}")
        for name, style in (("first_plan", "--"), ("local", ":")):
            curve = results["predicted"]["curves"][name]
            ax.plot([t for t, _ in curve], [lat * 1e3 for _, lat in curve], style, label=f"simulated {name.replace('_', ' ')}")
        for t in (drop, recover):
            ax.axvline(t, color="grey", alpha=0.4)
        ax.set_yscale("log")
        ax.set_title(f"{section} links: 4 MB/s -> 0.05 MB/s at {drop:g} s -> 4 MB/s at {recover:g} s")
        ax.set_xlabel("query start (s)")
        ax.set_ylabel("latency (ms)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter phases")
    parser.add_argument("--tc-scenario", help=argparse.SUPPRESS)  # internal: run inside unshare -rn
    args = parser.parse_args(argv)
    if args.tc_scenario:
        tc_scenario(args.tc_scenario, args.quick)
        return
    results = run(args.quick)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "dynamic_adapt.json").write_text(json.dumps(results, indent=1))
    report(results)
    print(f"wrote {RESULTS / 'dynamic_adapt.json'}")


def report(results: dict[str, Any]) -> None:
    """Draw dynamic_adapt.png and print the table of a :func:`run` result."""
    _plot(results, RESULTS / "dynamic_adapt.png")
    print("\n".join(_table(results)))
    print(f"load {results['machine']['load_before'][0]:.1f} -> {results['machine']['load_after'][0]:.1f}")


if __name__ == "__main__":
    main()
