"""Runtime adaptation: link estimators, the hysteresis controller on synthetic traces, link schedules,
``tiercut run --adapt`` options, and one real run over local workers with a bandwidth drop and recovery."""

from __future__ import annotations

import json
import math
import random
import threading
import time

import pytest
import torch
from torch import nn

from tiercut.cli import main
from tiercut.env import Device, Environment, Link
from tiercut.errors import TiercutError
from tiercut.runtime.adapt import (
    AdaptSettings,
    HysteresisController,
    LinkSchedule,
    estimated_problem,
    placement_key,
    replan,
    shaper_applier,
)
from tiercut.runtime.estimator import (
    EwmaEstimator,
    Hop,
    LinkEstimate,
    LinkEstimates,
    LinkSample,
    WindowedEstimator,
    forward_samples,
    make_estimator,
)
from tiercut.runtime.links import LinkShaper, LinkSpec

TINY = ["fixtures_models:tiny_net", "--allow-code", "--input-shape", "1,3,8,8"]


class ThreeRegimes(nn.Module):
    """conv -> conv -> pool -> fc: offloading everything, only the head, or nothing wins at high, medium, low bandwidth
    (with :data:`END_S`)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 16 * 16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.c1(x))
        y = torch.max_pool2d(torch.relu(self.c2(y)), 4)
        return self.fc(torch.flatten(y, 1))


#: the end device's seconds per node (a slow client); the edge runs each 20 times faster
END_S = {"c1": 0.040, "relu": 0.002, "c2": 0.080, "relu_1": 0.002, "max_pool2d": 0.002, "flatten": 0.0001, "fc": 0.060}
HIGH, MEDIUM, LOW = 4e6, 0.2e6, 0.01e6


def _environment(bandwidth: float = HIGH) -> Environment:
    return Environment(
        name="adapt-pair",
        devices=(Device("end", "end"), Device("edge", "edge")),
        links=(Link("end", "edge", bandwidth, 0.002),),
    )


@pytest.fixture(scope="module")
def three_regimes():
    from tiercut.graph import capture_model
    from tiercut.pipeline.problem import problem

    torch.manual_seed(0)
    captured = capture_model(ThreeRegimes().eval(), (1, 3, 64, 64))
    table = {n: {"end": s, "edge": s / 20} for n, s in END_S.items()}
    return captured, problem(captured.graph, _environment(), compute_s=table)


def _key(problem, bandwidth: float):
    estimate = {frozenset(("end", "edge")): LinkEstimate(bandwidth, 0.002)}
    return placement_key(replan(problem, estimate, problem.local_placement()).placement, "end")


# ----------------------------------------------------------------- estimators
@pytest.mark.parametrize("name", ["ewma", "window"])
def test_estimator_tracks_a_step_change_in_bandwidth(name):
    estimator = make_estimator(name, LinkEstimate(1e6, 0.001), alpha=0.25, window_s=1.0)
    t = 0.0
    for bandwidth in (1e6, 0.1e6):
        for _ in range(30):
            t += 0.1
            estimator.observe(LinkSample(t, 50_000, 2 * 0.001 + 50_000 / bandwidth, 2))
        assert estimator.estimate(t).bandwidth_bytes_per_s == pytest.approx(bandwidth, rel=0.05)
    assert estimator.estimate(t).latency_s == pytest.approx(0.001)


def test_ewma_moves_a_quarter_of_the_way_in_seconds_per_byte():
    estimator = EwmaEstimator(LinkEstimate(1e6, 0.0), alpha=0.25)
    estimator.observe(LinkSample(1.0, 100_000, 0.5, 1))  # 0.2 MB/s: 5e-6 s per byte against 1e-6
    assert 1 / estimator.estimate(1.0).bandwidth_bytes_per_s == pytest.approx(1e-6 + 0.25 * (5e-6 - 1e-6))


def test_latency_is_the_windowed_minimum_of_small_samples():
    estimator = WindowedEstimator(LinkEstimate(1e6, 0.050), window_s=1.0, latency_window_s=2.0)
    for t, rtt in ((0.0, 0.030), (0.5, 0.010), (1.0, 0.080), (1.5, 0.040)):
        estimator.observe(LinkSample(t, 0, rtt, 2))
    assert estimator.estimate(1.5).latency_s == pytest.approx(0.005)  # the least RTT, per message
    assert estimator.estimate(2.6).latency_s == pytest.approx(0.020)  # 0.5's sample left the window
    assert estimator.estimate(100.0).latency_s == pytest.approx(0.020)  # nothing recent: the last minimum stays


def test_windowed_median_ignores_one_outlier_and_forgets_after_the_window():
    estimator = WindowedEstimator(LinkEstimate(1e6, 0.0), window_s=1.0)
    for i, seconds in enumerate((0.1, 0.1, 5.0, 0.1, 0.1)):  # 1 MB/s with one 50x outlier
        estimator.observe(LinkSample(0.1 * i, 100_000, seconds, 1))
    assert estimator.estimate(0.5).bandwidth_bytes_per_s == pytest.approx(1e6)
    estimator.observe(LinkSample(3.0, 100_000, 1.0, 1))
    assert estimator.estimate(3.0).bandwidth_bytes_per_s == pytest.approx(1e5)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: EwmaEstimator(LinkEstimate(1e6, 0.0), alpha=0.0), "alpha"),
        (lambda: WindowedEstimator(LinkEstimate(1e6, 0.0), window_s=0.0), "window"),
        (lambda: make_estimator("kalman", LinkEstimate(1e6, 0.0)), "is not known"),
        (lambda: EwmaEstimator(LinkEstimate(0.0, 0.0)), "bandwidth > 0"),
        (lambda: LinkSample(0.0, 10, -1.0), "seconds"),
    ],
)
def test_estimator_settings_are_checked(make, message):
    with pytest.raises(TiercutError, match=message):
        make()


def test_forward_samples_take_off_the_peers_work():
    hops = [
        Hop("compute", "end", 0.000, 0.010),
        Hop("transfer", "end", 0.010, 0.110, peer="edge", nbytes=40_000),
        Hop("compute", "edge", 0.030, 0.060),
        Hop("transfer", "edge", 0.060, 0.090, peer="cloud", nbytes=1_000),
        Hop("compute", "cloud", 0.070, 0.080),
    ]
    samples = {(a, b): s for a, b, s in forward_samples(hops)}
    assert samples[("end", "edge")].seconds == pytest.approx(0.100 - 0.030 - 0.030)
    assert samples[("end", "edge")].nbytes == 40_000 and samples[("end", "edge")].messages == 2
    assert samples[("edge", "cloud")].seconds == pytest.approx(0.030 - 0.010)


def test_link_estimates_start_from_the_problem_and_ignore_unknown_links(three_regimes):
    _, problem = three_regimes
    estimates = LinkEstimates.for_problem(problem)
    assert estimates.snapshot(0.0)[frozenset(("end", "edge"))] == LinkEstimate(HIGH, 0.002, 0)
    assert not estimates.observe("end", "cloud", LinkSample(0.0, 10_000, 1.0))
    assert estimates.last_sample_s("end", "edge") == -math.inf
    estimates.observe("edge", "end", LinkSample(1.0, 10_000, 0.1))
    assert estimates.last_sample_s("end", "edge") == 1.0


# ----------------------------------------------------------------- re-planning on the estimated problem
def test_estimated_problem_replaces_only_the_links_figures(three_regimes):
    _, problem = three_regimes
    directional = estimated_problem(
        _environment_problem_with_directional_link(problem), {frozenset(("end", "edge")): LinkEstimate(1e5, 0.01)}
    )
    link = directional.link("end", "edge")
    assert link.direction("end", "edge").bandwidth_bytes_per_s == 1e5
    assert link.direction("edge", "end").bandwidth_bytes_per_s == pytest.approx(2e5)  # the 2:1 ratio stays
    assert link.direction("edge", "end").latency_s == 0.01
    assert directional.compute_s == problem.compute_s and directional.graph is problem.graph


def _environment_problem_with_directional_link(problem):
    import dataclasses

    return dataclasses.replace(problem, links=(Link("end", "edge", HIGH, 0.002, bandwidth_bytes_per_s_ba=2 * HIGH),))


def test_replan_is_the_registered_planner_on_the_estimated_problem(three_regimes):
    from tiercut.cost import evaluate
    from tiercut.plan import plan

    _, problem = three_regimes
    estimate = {frozenset(("end", "edge")): LinkEstimate(MEDIUM, 0.002)}
    result = replan(problem, estimate, problem.local_placement(), "mincut")
    expected = plan(estimated_problem(problem, estimate), "mincut")
    assert dict(result.placement) == dict(expected.placement)
    assert result.latency_s == pytest.approx(expected.latency_s)
    assert result.current_latency_s == pytest.approx(evaluate(problem, problem.local_placement()).latency_s)
    assert result.gain == pytest.approx(1 - result.latency_s / result.current_latency_s)


def test_the_three_bandwidths_have_three_different_best_plans(three_regimes):
    _, problem = three_regimes
    high, medium, low = (_key(problem, b) for b in (HIGH, MEDIUM, LOW))
    assert len({high, medium, low}) == 3 and low == ()
    assert {d for _, d in high} == {"edge"} and len(high) > len(medium) > 0


# ----------------------------------------------------------------- the controller
def test_controller_switches_after_the_gain_held_for_the_dwell():
    controller = HysteresisController(threshold=0.2, dwell_s=1.0)
    a, b = (("x", "edge"),), ()
    assert controller.decide(0.0, 0.10, 0.09, b, a).action == "stay"  # 10 %: inside the band
    assert controller.decide(1.0, 0.10, 0.05, b, a).action == "wait"
    assert controller.decide(1.5, 0.10, 0.05, b, a).action == "wait"
    assert controller.decide(1.9, 0.10, 0.09, b, a).action == "stay"  # dipped: the dwell starts again
    assert controller.decide(2.0, 0.10, 0.05, b, a).action == "wait"
    decision = controller.decide(3.0, 0.10, 0.05, b, a)
    assert decision.action == "switch" and decision.held_s == pytest.approx(1.0) and decision.gain == pytest.approx(0.5)
    assert controller.decide(3.1, 0.10, 0.05, a, a).action == "stay"  # the candidate is the plan in use


def test_controller_min_gain_and_bad_settings():
    controller = HysteresisController(threshold=0.0, dwell_s=0.0, min_gain_s=0.010)
    assert controller.decide(0.0, 0.020, 0.015, ((("x", "e"),)), ()).action == "stay"
    assert controller.decide(0.0, 0.020, 0.005, ((("x", "e"),)), ()).action == "switch"
    with pytest.raises(TiercutError, match="threshold"):
        HysteresisController(threshold=1.0)
    with pytest.raises(TiercutError, match="dwell"):
        HysteresisController(dwell_s=-1.0)


def _replay(problem, trace, settings: AdaptSettings, *, step_s: float = 0.05, noise: float = 0.0, seed: int = 0):
    """Run the estimator and the controller on a synthetic bandwidth trace (a query of the input's bytes every
    ``step_s``); returns the switches as (time, new key)."""
    rng = random.Random(seed)
    estimates = LinkEstimates.for_problem(problem, settings.estimator, **settings.estimator_settings())
    controller = HysteresisController.of(settings)
    current = placement_key(replan(problem, estimates.snapshot(0.0), problem.local_placement()).placement, "end")
    placements = {current: replan(problem, estimates.snapshot(0.0), problem.local_placement()).placement}
    switches, last = [], -math.inf
    nbytes = problem.graph["x"].out_bytes
    for step in range(1, round(trace[-1][0] / step_s) + 1):
        t = step * step_s
        bandwidth = next(b for until, b in trace if t <= until) * (1 + noise * rng.uniform(-1, 1))
        estimates.observe("end", "edge", LinkSample(t, nbytes, 2 * 0.002 + nbytes / bandwidth, 2))
        if t - last < settings.interval_s:
            continue
        last = t
        result = replan(problem, estimates.snapshot(t), placements[current], settings.algorithm)
        key = placement_key(result.placement, "end")
        placements.setdefault(key, result.placement)
        decision = controller.decide(t, result.current_latency_s, result.latency_s, key, current)
        if decision.action == "switch":
            switches.append((t, key))
            current = key
            controller.reset()
    return switches


@pytest.mark.parametrize("estimator", ["ewma", "window"])
def test_drop_and_recovery_switch_twice_each_within_detection_plus_dwell(three_regimes, estimator):
    _, problem = three_regimes
    settings = AdaptSettings(estimator=estimator, dwell_s=1.0, interval_s=0.1, window_s=1.0)
    switches = _replay(problem, [(5.0, HIGH), (12.0, LOW), (20.0, HIGH)], settings)
    assert [key for _, key in switches] == [(), _key(problem, HIGH)]
    # each switch: after the change plus the dwell, and no later than the estimator's reaction plus the dwell
    reaction_s = 1.0  # 20 samples: the EWMA is within 1 % of a step, the 1 s window entirely past it
    for (at, _), change in zip(switches, (5.0, 12.0)):
        assert change + settings.dwell_s <= at <= change + reaction_s + settings.dwell_s + settings.interval_s


def test_a_switch_to_the_medium_plan_needs_a_new_placement(three_regimes):
    _, problem = three_regimes
    switches = _replay(problem, [(3.0, HIGH), (10.0, MEDIUM)], AdaptSettings(dwell_s=0.5))
    assert [key for _, key in switches] == [_key(problem, MEDIUM)]


def test_hysteresis_prevents_flapping_on_a_noisy_trace(three_regimes):
    _, problem = three_regimes
    # the bandwidth where offloading the head and running everything locally are predicted equal
    lo, hi = LOW, MEDIUM
    for _ in range(40):
        mid = (lo + hi) / 2
        if _key(problem, mid) == ():
            lo = mid
        else:
            hi = mid
    trace = [(15.0, hi)]
    naive = _replay(problem, trace, AdaptSettings(threshold=0.0, dwell_s=0.0, interval_s=0.1), noise=0.3, seed=3)
    guarded = _replay(problem, trace, AdaptSettings(threshold=0.2, dwell_s=1.0, interval_s=0.1), noise=0.3, seed=3)
    assert len(naive) >= 10  # the plain argmin flaps with the noise
    assert len(guarded) <= 1


# ----------------------------------------------------------------- schedules
def test_link_schedule_parses_units_and_matches_the_simulator_trace():
    schedule = LinkSchedule.parse(["end-edge=0:10MB/s,5:8Mbit/s,12:2000000"])
    assert schedule.rate_at("edge", "end", 4.9) == 10e6
    assert schedule.rate_at("end", "edge", 5.0) == 1e6
    assert schedule.rate_at("end", "edge", 100.0) == 2e6
    assert schedule.rate_at("end", "cloud", 1.0) is None
    (trace,) = schedule.traces()
    assert (trace.a, trace.b, trace.points) == ("end", "edge", ((0.0, 10e6), (5.0, 1e6), (12.0, 2e6)))


@pytest.mark.parametrize(
    "text, message",
    [
        ("end-edge", "write A-B=TIME:RATE"),
        ("endedge=0:1MB/s", "write A-B=TIME:RATE"),
        ("end-edge=0", "must be TIME:RATE"),
        ("end-edge=0:1MB", "is a size"),
        ("end-edge=5:1MB/s,2:1MB/s", "strictly increasing"),
        ("end-edge=0:0", "must be a finite number > 0"),
    ],
)
def test_link_schedule_bad_text(text, message):
    with pytest.raises(TiercutError, match=message):
        LinkSchedule.parse([text])


def test_link_schedule_names_links_of_the_problem(three_regimes):
    _, problem = three_regimes
    with pytest.raises(TiercutError, match="lacks"):
        LinkSchedule.parse(["end-cloud=0:1MB/s"]).check_links(problem)
    with pytest.raises(TiercutError, match="twice"):
        LinkSchedule.parse(["end-edge=0:1MB/s", "edge-end=1:1MB/s"])


def test_schedule_changes_the_clients_shaper_at_its_times():
    shaper = LinkShaper(LinkSpec(1e6, 0.003))
    schedule = LinkSchedule.parse(["end-edge=0:2MB/s,0.05:0.5MB/s"])
    stop = threading.Event()
    seen = []
    apply = shaper_applier({"edge": shaper}, "end")

    def record(a: str, b: str, rate: float) -> None:
        apply(a, b, rate)
        seen.append((time.monotonic(), shaper.spec))

    t0 = time.monotonic()
    schedule.start(t0, record, stop).join(timeout=10)
    assert [spec for _, spec in seen] == [LinkSpec(2e6, 0.003), LinkSpec(0.5e6, 0.003)]
    assert seen[1][0] - t0 >= 0.05


def test_adapt_settings_are_checked():
    with pytest.raises(TiercutError, match="--adapt-threshold"):
        AdaptSettings(threshold=1.5)
    with pytest.raises(TiercutError, match="--adapt-estimator"):
        AdaptSettings(estimator="kalman")
    with pytest.raises(TiercutError, match="dwell_s"):
        AdaptSettings(dwell_s=math.inf)


# ----------------------------------------------------------------- the command line
def _fails(argv, capsys, message):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err, err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--adapt-dwell", "2"], "--adapt-dwell tunes --adapt; add --adapt"),
        (["--adapt", "--adapt-threshold", "-0.1"], "--adapt-threshold"),
        (["--adapt", "--adapt-estimator", "kalman"], "is not known"),
        (["--link-schedule", "end-edge:0:1MB/s"], "write A-B=TIME:RATE"),
        (["--adapt", "--upload-plan", "plan.json"], "drop --exits, --upload-plan and --tiled-plan"),
        (["--link-schedule", "end-edge=0:1MB/s", "--no-emulate-links"], "drop --no-emulate-links"),
        (["--adapt", "--in-flight", "2"], "drop --in-flight"),
        (["--link-schedule", "end-moon=0:1MB/s"], "lacks"),
    ],
)
def test_run_adapt_bad_options(extra, message, capsys, monkeypatch):
    monkeypatch.chdir(__import__("pathlib").Path(__file__).parent)
    _fails(["run", *TINY, "--env", "three-tier", "--queries", "2", *extra], capsys, message)


# ----------------------------------------------------------------- a real run over a local worker
@pytest.mark.slow
def test_local_worker_run_adapts_to_a_drop_and_a_recovery(three_regimes, tmp_path):
    from tiercut.runtime.client import RunSettings
    from tiercut.runtime.migration import prepare_migration
    from tiercut.runtime.session import LocalCluster, run_adaptive
    from tiercut.upload import plan_upload

    captured, problem = three_regimes
    env_file = tmp_path / "pair.yaml"
    env_file.write_text(
        "schema_version: 1\nname: adapt-pair\ndevices:\n  - {name: end, tier: end, spec: jetson_nano}\n"
        "  - {name: edge, tier: edge, spec: xeon_gold_6230}\nlinks:\n  - {a: end, b: edge, bandwidth: 4 MB/s, latency: 2 ms}\n"
    )
    upload = plan_upload(problem, "recursive-efficiency", offloading="mincut")
    placement = dict(upload.stages[-1].placement)
    assert placement_key(placement, "end") == _key(problem, HIGH)
    migration = prepare_migration(captured, upload, problem=problem, label="three-regimes")
    drop_s, recover_s, dwell_s = 5.0, 11.0, 0.5
    schedule = LinkSchedule.parse([f"end-edge=0:4MB/s,{drop_s}:0.2MB/s,{recover_s}:4MB/s"])
    adapt = AdaptSettings(dwell_s=dwell_s, probe_interval_s=0.3)
    settings = RunSettings(queries=100_000, rate_hz=10, verify_outputs=True, max_run_s=17.0)
    with LocalCluster(["edge"], env=str(env_file), torch_threads=1) as cluster:
        result = run_adaptive(
            problem, migration, placement, cluster.addresses, credentials=cluster.credentials(), settings=settings,
            adapt=adapt, schedule=schedule, environment=_environment(), label="three-regimes",
        )
    trace = result.adaptation
    # no query lost or wrong: every one answered, none failed, each equal to the whole model's output
    assert len(result.queries) == len(trace.query_plans) > 100
    assert result.failed_queries == 0
    assert all(q.output_matches for q in result.queries)
    # the drop: a switch to a new placement (uploaded in the background) once the gain held for the dwell
    first = next(s for s in trace.switches if s.decided_s > drop_s)
    assert first.to_plan != 0
    # a new server placement goes up in the background; on a loaded machine the estimate may instead say
    # all-local, which needs nothing uploaded: either way the bytes are the plan's own
    offloads = trace.plans[first.to_plan]["offloaded"]
    assert (first.uploaded_bytes > 0) == bool(offloads), (offloads, first)
    decision = next(d for d in trace.decisions if d.action == "switch" and d.at_s == first.decided_s)
    # held for the dwell, and switched at the first decision after it (decisions come between queries: one
    # query at the dropped rate, about 0.3 s, may separate two)
    assert dwell_s <= decision.held_s <= dwell_s + 1.0
    assert drop_s + dwell_s <= first.decided_s <= drop_s + 4.0  # detection (a few queries) plus the dwell
    # queries before the switch ran the first plan, after it the new one
    plan_at = {q.start_s: p for q, p in zip(result.queries, trace.query_plans)}
    assert all(p == first.to_plan for t, p in plan_at.items() if first.at_s < t < recover_s)
    # the recovery: back to the first plan, already deployed (nothing uploaded)
    back = [s for s in trace.switches if s.decided_s > recover_s]
    assert back and back[0].to_plan == 0 and back[0].uploaded_bytes == 0
    assert len(trace.switches) <= 3
    # the trace as `tiercut run --json` prints it
    data = json.loads(json.dumps(result.to_dict()))["adaptation"]
    assert [s["to_plan"] for s in data["switches"]] == [s.to_plan for s in trace.switches]
    assert len(data["query_plans"]) == len(result.queries)
    assert data["plans"][first.to_plan]["upload_bytes"] == first.uploaded_bytes


@pytest.mark.slow
def test_cli_run_with_adapt_and_a_schedule_prints_the_adaptation(capsys, monkeypatch):
    monkeypatch.chdir(__import__("pathlib").Path(__file__).parent)
    code = main([
        "run", *TINY, "--env", "three-tier", "--queries", "30", "--rate", "20", "--verify", "--json", "-q",
        "--adapt", "--adapt-estimator", "window", "--adapt-dwell", "0.3", "--adapt-threshold", "0.3",
        "--link-schedule", "end-edge=0:2MB/s,0.5:100kB/s",
    ])
    out = capsys.readouterr().out
    assert code == 0
    run = json.loads(out)["run"]
    assert all(q["output_matches"] for q in run["queries"]) and len(run["queries"]) == 30
    adaptation = run["adaptation"]
    assert adaptation["settings"]["estimator"] == "window" and adaptation["settings"]["dwell_s"] == 0.3
    assert adaptation["schedule"]["links"][0]["points"] == [[0.0, 2e6], [0.5, 1e5]]
    assert len(adaptation["query_plans"]) == 30 and adaptation["overhead"]["decisions"] >= 1
