"""Pipelined runs measured: throughput and latency with 1..N queries in flight on a 3-tier split, vs predicted.

A small zoo model (MobileNetV2, 64x64 input) is cut end | edge | cloud (the
first quarter of its nodes on the end device, the second on the edge, the
rest on the cloud, the classifier's last two nodes back on the end device)
and run on local workers (``--concurrent-partitions 1``: each device one
pipeline stage) with ``tiercut run``'s client at 1, 2, 3, 4 (quick: 1, 2, 4)
queries in flight (:mod:`tiercut.runtime.pipelining`).

The prediction is the pipelined model: ``1 / max(stage seconds)`` over each
device's compute and each link direction's transfers, from the cost model's
figures of the plan's problem. Compute times are a profile of this host
(every device = this host, one intra-op thread). Two scenarios, each with
stages long beside the runtime's per-hop overhead (a few ms of gRPC and
framing, which the cost model does not count):

- ``link-bound``: edge-cloud at 1 GB/s, the end device's links slowed so
  that the end -> edge transfer takes 100 ms (or 2.5 times the slowest
  compute stage): the emulated link serialises bytes exactly, so the
  prediction is sharp;
- ``compute-bound``: every link at 1 GB/s, every device emulated 30 times
  slower than this host (workers ``--compute-slowdown 30``, sleeping 29 times
  the CPU time each partition used; the client ``source_slowdown 30``) and
  the predicted compute times multiplied by 30: the devices' compute is the
  bottleneck. The client's emulation scales its measured wall time, so
  other processes on this shared machine slow it down: the load is shown.

Per level: measured throughput (completions per second after the first
``in_flight`` ones, :func:`tiercut.runtime.pipelining.measure_pipeline`),
beside Little's law's ``in_flight / mean latency`` as a check, latency
p50/p95 per query, the ratio to the predicted throughput, and that every
answer came back once, in order.

    .venv/bin/python benchmarks/pipelining.py [--quick]

Writes benchmarks/results/pipelining.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import OthersCpuShare, write_result

MODEL = "mobilenet_v2"
INPUT_SHAPE = (1, 3, 64, 64)


def environment_spec(end_bytes_per_s: float, fast_bytes_per_s: float) -> dict[str, Any]:
    """Three devices; the end device's two links at ``end_bytes_per_s`` (so the cost model routes nothing around
    the end-edge link), edge-cloud at ``fast_bytes_per_s`` (figures chosen for the experiment, not measured ones)."""
    return {
        "name": "pipeline-bench",
        "devices": [{"name": "end", "tier": "end"}, {"name": "edge", "tier": "edge"}, {"name": "cloud", "tier": "cloud"}],
        "links": [
            {"a": "end", "b": "edge", "bandwidth_bytes_per_s": end_bytes_per_s, "latency_s": 0.002},
            {"a": "edge", "b": "cloud", "bandwidth_bytes_per_s": fast_bytes_per_s, "latency_s": 0.002},
            {"a": "end", "b": "cloud", "bandwidth_bytes_per_s": end_bytes_per_s, "latency_s": 0.002},
        ],
    }


def _placement(nodes: list[str]) -> dict[str, str]:
    quarter = len(nodes) // 4
    tiers = ["end"] * quarter + ["edge"] * quarter + ["cloud"] * (len(nodes) - 2 * quarter - 2) + ["end"] * 2
    return dict(zip(nodes, tiers, strict=True))


def host_table(captured: Any, devices: list[str]) -> dict[str, dict[str, float]]:
    from tiercut.profile.measure import StoppingRule, measure_profile

    profile = measure_profile(captured, threads=1, rule=StoppingRule().with_max_repeats(15), measure_host_roofline=False)
    return {name: {d: node.median_s for d in devices} for name, node in profile.nodes.items()}


def measure_scenario(
    label: str, captured: Any, migration: Any, placement: dict[str, str], table: dict[str, Any], env: dict[str, Any],
    levels: list[int], queries: int, folder: Path, slowdown: float = 1.0,
    model: tuple[dict[str, Any], dict[str, dict[str, float]]] | None = None,
) -> dict[str, Any]:
    """Run ``placement`` on local workers emulating ``env`` (devices ``slowdown`` x slower) at each level of queries
    in flight, beside the prediction from ``model`` (the environment and node table the cost model is given, e.g.
    :func:`calibrated`'s; default: ``env`` and ``table`` themselves)."""
    import statistics

    import yaml

    from tiercut.cost import evaluate
    from tiercut.env import environment_from_mapping
    from tiercut.problem import build_problem
    from tiercut.runtime.client import RunSettings
    from tiercut.runtime.pipelining import measure_pipeline, pipeline_stages
    from tiercut.runtime.session import LocalCluster, run_migration

    environment = environment_from_mapping(env)
    model_env, model_table = model if model is not None else (env, table)
    scaled = {n: {d: t * slowdown for d, t in row.items()} for n, row in model_table.items()}
    problem = build_problem(captured.graph, environment_from_mapping(model_env), source="end", compute_s=scaled)
    predicted = pipeline_stages(problem, placement)
    model_hops = sum(len(t.path or (t.src, t.dst)) - 1 for t in evaluate(problem, placement).transfers)
    env_file = folder / f"{label}.yaml"
    env_file.write_text(yaml.safe_dump(env))
    rows = []
    extra = ["--concurrent-partitions", "1", "--max-queued-runs", "16", "--compute-slowdown", str(slowdown)]
    with LocalCluster(migration.servers, env=str(env_file), torch_threads=1, extra_args=extra) as cluster:
        run_migration(  # the partitions go up unshaped first
            migration, cluster.addresses, credentials=cluster.credentials(),
            settings=RunSettings(queries=1, keep_uploading_s=300, max_run_s=600),
        )
        for level in levels:
            with OthersCpuShare() as share:
                result = run_migration(
                    migration, cluster.addresses, credentials=cluster.credentials(), environment=environment,
                    settings=RunSettings(
                        queries=queries + level, in_flight=level, fresh=False, max_run_s=600, source_slowdown=slowdown
                    ),
                )
            measured = measure_pipeline(result, skip=level)
            indices = [q.index for q in result.queries]
            rows.append(
                {
                    **measured.to_dict(),
                    "ratio_to_predicted": measured.throughput_qps / predicted.throughput_qps,
                    "bound_at_level_qps": predicted.throughput_bound_qps(level),
                    # the runtime's messages (two per forward: the call and its reply, results back along the chain)
                    "runtime_messages_per_query": statistics.median(
                        [2 * sum(sp.kind == "transfer" for sp in q.spans) for q in result.queries] or [0]),
                    "model_hops_per_query": model_hops,
                    "ratio_to_bound_at_level": measured.throughput_qps / predicted.throughput_bound_qps(level),
                    "latency_bound_at_level_s": predicted.latency_bound_s(level),
                    "little_qps": level / measured.latency_mean_s,  # Little's law: in flight / mean latency
                    "every_answer_once_in_order": indices == list(range(queries + level)),
                    "fallbacks": result.fallbacks,
                    "failed": result.failed_queries,
                    "others_cpu_share": share.fraction,
                    "load_average": list(os.getloadavg()),
                }
            )
            print(
                f"  {label:13s} in flight {level}: {measured.throughput_qps:6.2f} q/s measured, "
                f"{predicted.throughput_qps:6.2f} predicted ({rows[-1]['ratio_to_predicted']:.2f}x), "
                f"p50 {measured.latency_p50_s * 1e3:6.1f} ms, p95 {measured.latency_p95_s * 1e3:6.1f} ms, "
                f"in order {rows[-1]['every_answer_once_in_order']}, load {os.getloadavg()[0]:.2f}",
                flush=True,
            )
    return {
        "environment": env,
        "model_environment": model_env,
        "compute_slowdown": slowdown,
        "predicted": predicted.to_dict(),
        "sequential_qps": 1.0 / predicted.latency_s,
        "levels": rows,
    }


#: the calibration placements' devices (benchmarks/throughput.py's three-tier environment)
CALIBRATION_DEVICES = ("end", "edge", "cloud")
#: blocks of the graph's nodes (topological order) the ``cycle`` calibration placement deals out end, edge, cloud, ...
CALIBRATION_BLOCKS = 12


def calibration_placements(captured: Any) -> dict[str, dict[str, str]]:
    """The placements :func:`calibrate_runtime` runs: everything on each device (one partition each: the executor's
    compute against the profile), and ``cycle``, the nodes in topological order cut into
    :data:`CALIBRATION_BLOCKS` blocks dealt out end, edge, cloud, end, ... (many partitions and messages: the
    per-run and per-message costs). None is a plan the benchmarks measure."""
    nodes = [n.name for n in captured.graph.nodes]
    inputs = {n.name for n in captured.graph.nodes if n.is_input}
    out = {d: {n: ("end" if n in inputs else d) for n in nodes} for d in CALIBRATION_DEVICES}
    size = max(1, -(-len(nodes) // CALIBRATION_BLOCKS))
    out["cycle"] = {n: ("end" if n in inputs else CALIBRATION_DEVICES[(i // size) % 3]) for i, n in enumerate(nodes)}
    return out


def _query_figures(query: Any) -> dict[str, Any]:
    """Per device: compute-span seconds and runs; forwards (two messages each) and their frame bytes."""
    compute: dict[str, float] = {}
    runs: dict[str, int] = {}
    forwards = frame_bytes = 0
    for span in query.spans:
        if span.kind == "compute":
            compute[span.device] = compute.get(span.device, 0.0) + (span.end_s - span.start_s)
            runs[span.device] = runs.get(span.device, 0) + 1
        elif span.kind == "transfer":
            forwards += 1
            frame_bytes += span.nbytes
    return {"latency_s": query.latency_s, "compute_s": compute, "runs": runs, "forwards": forwards,
            "frame_bytes": frame_bytes}


def calibrate_runtime(
    captured: Any, table: dict[str, dict[str, float]], env: dict[str, Any], slowdown: float, folder: Path,
    queries: int = 8,
) -> dict[str, Any]:
    """Measure, on local workers emulating ``env`` (every device this host ``slowdown`` x slower), what the
    runtime adds to the profile's figures, one query at a time on :func:`calibration_placements`:

    - ``compute_factor[d]``: a partition's measured compute span on ``d`` over the profile's node medians x
      ``slowdown`` (the client runs torch.fx code, the workers the aten interpreter; a device idle between
      queries runs colder than the profile's back-to-back samples), from the placement with everything on ``d``;
    - ``message_s[d]``: the rest of ``d``'s compute spans in ``cycle`` (what each partition run costs beyond its
      nodes: the executor's per-call work, scaled by the emulation as all of the run is), per message the cost
      model counts at ``d`` (a hop it sends or receives) -- the busy seconds the device stage gains per message;
    - ``message_overhead_bytes``: frame bytes per message beyond the tensors the cost model counts (the route,
      the hop records of replies, framing), from ``cycle``;
    - ``message_latency_s``: the per-message delay that occupies no stage (the gRPC call, the event loops,
      codec work overlapping other queries' runs): ``cycle``'s latency minus its compute spans, minus the
      cost model's transfer times with the overhead bytes, per hop the cost model counts.

    Medians over the queries after the first. Returns the figures and what each came from.
    """
    import statistics

    import yaml

    from tiercut.cost import evaluate
    from tiercut.env import environment_from_mapping
    from tiercut.problem import build_problem
    from tiercut.runtime.client import RunSettings
    from tiercut.runtime.migration import placement_plan, prepare_migration
    from tiercut.runtime.session import LocalCluster, run_migration

    environment = environment_from_mapping(env)
    scaled = {n: {d: t * slowdown for d, t in row.items()} for n, row in table.items()}
    problem = build_problem(captured.graph, environment, source="end", compute_s=scaled)
    env_file = folder / "calibration.yaml"
    env_file.write_text(yaml.safe_dump(env))
    extra = ["--concurrent-partitions", "1", "--max-queued-runs", "16", "--compute-slowdown", str(slowdown)]
    measured: dict[str, list[dict[str, Any]]] = {}
    placements = calibration_placements(captured)
    with LocalCluster(["edge", "cloud"], env=str(env_file), torch_threads=1, extra_args=extra) as cluster:
        for label, placement in placements.items():
            migration = prepare_migration(captured, placement_plan(placement, "end"))
            if migration.servers:
                run_migration(migration, cluster.addresses, credentials=cluster.credentials(),
                              settings=RunSettings(queries=1, keep_uploading_s=300, max_run_s=600))
            result = run_migration(
                migration, cluster.addresses, credentials=cluster.credentials(), environment=environment,
                settings=RunSettings(queries=queries + 1, in_flight=1, fresh=False, max_run_s=600,
                                     source_slowdown=slowdown),
            )
            measured[label] = [_query_figures(q) for q in result.queries[1:] if not q.fallback]

    def median(label: str, key: str, device: str | None = None) -> float:
        rows = measured[label]
        return statistics.median(float(r[key].get(device, 0.0) if device else r[key]) for r in rows)

    def predicted_compute(placement: dict[str, str], device: str) -> float:
        return sum(scaled[n][device] for n, d in placement.items() if d == device and n in scaled)

    factor = {d: median(d, "compute_s", d) / predicted_compute(placements[d], d) for d in CALIBRATION_DEVICES}
    cycle = placements["cycle"]
    bare = evaluate(problem, cycle)
    hops = [(a, b) for t in bare.transfers for a, b in zip(t.path or (t.src, t.dst), (t.path or (t.src, t.dst))[1:])]
    ends = {d: sum((a == d) + (b == d) for a, b in hops) for d in CALIBRATION_DEVICES}
    message_s = {
        d: max(0.0, (median("cycle", "compute_s", d) - factor[d] * predicted_compute(cycle, d)) / ends[d])
        if ends[d] else 0.0
        for d in CALIBRATION_DEVICES
    }
    payload = sum(t.out_bytes * (len(t.path or (t.src, t.dst)) - 1) for t in bare.transfers)
    overhead = max(0.0, (median("cycle", "frame_bytes") - payload) / max(1, len(hops)))
    with_bytes = {**env, "links": [{**link, "message_overhead_bytes": overhead} for link in env["links"]]}
    problem_bytes = build_problem(captured.graph, environment_from_mapping(with_bytes), source="end", compute_s=scaled)
    transfer_s = evaluate(problem_bytes, cycle).transfer_s
    unexplained = median("cycle", "latency_s") - sum(median("cycle", "compute_s", d) for d in CALIBRATION_DEVICES)
    message_latency = max(0.0, (unexplained - transfer_s) / max(1, len(hops)))
    return {
        "compute_factor": factor,
        "message_s": message_s,
        "message_overhead_bytes": overhead,
        "message_latency_s": message_latency,
        "cycle_hops": len(hops),
        "cycle_message_ends": ends,
        "cycle_runtime_messages": 2 * median("cycle", "forwards"),
        "slowdown": slowdown,
        "queries": queries,
        "measured": {label: {"latency_s": median(label, "latency_s"),
                             "compute_s": {d: median(label, "compute_s", d) for d in CALIBRATION_DEVICES},
                             "runs": {d: median(label, "runs", d) for d in CALIBRATION_DEVICES},
                             "messages": 2 * median(label, "forwards"),
                             "frame_bytes": median(label, "frame_bytes")}
                     for label in measured},
        "load_average": list(os.getloadavg()),
    }


def calibrated(env: dict[str, Any], table: dict[str, dict[str, float]], calibration: dict[str, Any]) -> tuple[
        dict[str, Any], dict[str, dict[str, float]]]:
    """``env`` and ``table`` with :func:`calibrate_runtime`'s figures: each device's ``message_s``, each link's
    ``message_overhead_bytes`` and its latency plus ``message_latency_s`` (the emulated propagation plus the
    measured per-message delay), and each device's column of node times times its ``compute_factor``."""
    devices = [{**d, "message_s": calibration["message_s"].get(d["name"], 0.0)} for d in env["devices"]]
    links = [{**link, "message_overhead_bytes": calibration["message_overhead_bytes"],
              "latency_s": link.get("latency_s", 0.0) + calibration["message_latency_s"]} for link in env["links"]]
    factor = calibration["compute_factor"]
    scaled = {n: {d: t * factor.get(d, 1.0) for d, t in row.items()} for n, row in table.items()}
    return {**env, "name": f"{env['name']}-calibrated", "devices": devices, "links": links}, scaled


def run(quick: bool) -> dict[str, Any]:
    import torch

    from tiercut.graph import capture_model
    from tiercut.runtime.migration import placement_plan, prepare_migration

    torch.set_num_threads(1)
    levels = [1, 2, 4] if quick else [1, 2, 3, 4]
    queries = 12 if quick else 30
    captured = capture_model(MODEL, INPUT_SHAPE)
    nodes = [n.name for n in captured.graph.nodes]
    placement = _placement(nodes)
    migration = prepare_migration(captured, placement_plan(placement, "end"))
    table = host_table(captured, ["end", "edge", "cloud"])
    compute = {d: sum(row[d] for n, row in table.items() if placement.get(n) == d) for d in ("end", "edge", "cloud")}
    # the end -> edge tensors' bytes, to size the link-bound case: its transfer takes 2.5x the slowest compute stage
    consumers = {n.name: [m.name for m in captured.graph.nodes if n.name in m.inputs] for n in captured.graph.nodes}
    crossing = sum(
        n.out_bytes for n in captured.graph.nodes
        if placement.get(n.name) == "end" and any(placement.get(c) == "edge" for c in consumers[n.name])
    )
    link_s = max(0.1, 2.5 * max(compute.values()))
    scenarios = {
        "link-bound": (environment_spec(crossing / link_s, 1e9), 1.0),
        "compute-bound": (environment_spec(1e9, 1e9), 30.0),
    }
    out: dict[str, Any] = {
        "model": MODEL,
        "input_shape": list(INPUT_SHAPE),
        "placement_counts": {d: sum(1 for v in placement.values() if v == d) for d in ("end", "edge", "cloud")},
        "host_compute_s": compute,
        "end_edge_bytes": crossing,
        "quick": quick,
        "scenarios": {},
    }
    with tempfile.TemporaryDirectory(prefix="tiercut-pipelining-") as folder:
        for label, (env, slowdown) in scenarios.items():
            out["scenarios"][label] = measure_scenario(
                label, captured, migration, placement, table, env, levels, queries, Path(folder), slowdown
            )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="levels 1, 2, 4 and 16 queries each")
    args = parser.parse_args(argv)
    result = run(args.quick)
    path = write_result("pipelining", result)
    header = ["scenario", "in flight", "measured q/s", "predicted q/s", "ratio", "p50 ms", "p95 ms"]
    print(f"{header[0]:14s} " + " ".join(f"{h:>13s}" for h in header[1:]))
    for label, scenario in result["scenarios"].items():
        for row in scenario["levels"]:
            print(
                f"{label:14s} {row['in_flight']:13d} {row['throughput_qps']:13.2f} "
                f"{scenario['predicted']['throughput_qps']:13.2f} {row['ratio_to_predicted']:13.2f} "
                f"{row['latency_p50_s'] * 1e3:13.1f} {row['latency_p95_s'] * 1e3:13.1f}"
            )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
