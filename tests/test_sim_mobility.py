"""Mobility in the simulator: hand-overs, strategies, memory bounds, link rates, scenario errors."""

from __future__ import annotations

import math
from pathlib import Path
from unittest.mock import patch

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiercut.cost import evaluate
from tiercut.env import Link
from tiercut.errors import TiercutError
from tiercut.graph.types import LayerGraph, Node
from tiercut.problem import Problem, ProblemDevice
from tiercut.sim import SimConfig, SimUser, TraceArrivals
from tiercut.sim.mobile import MobileRun, MobileSimulation, compare_strategies
from tiercut.sim.mobility import (
    AttachmentTrace,
    Backhaul,
    Mobility,
    RandomWaypoint,
    ShannonRadio,
    Site,
    WaypointPath,
    attached_problem,
    handovers,
    link_timeline,
    mobile_problem,
    predict_heading,
)
from tiercut.sim.scenario import build_scenario, parse_scenario
from tiercut.sim.strategies import STRATEGIES, Oracle, Proactive, Reactive, Static


def _problem(sites=("e1", "e2", "e3"), n_layers=5, memory=None, client="phone", param_bytes=2_000_000) -> Problem:
    """A chain whose layers run 10x faster on the sites; its weights take a few seconds to upload at 10 MB/s."""
    nodes = [Node("in", "input", out_bytes=600_000)]
    for i in range(n_layers):
        last = i == n_layers - 1
        nodes.append(Node(f"l{i}", "conv2d", ("in" if i == 0 else f"l{i - 1}",), out_bytes=4_000 if last else 300_000,
                          param_bytes=param_bytes, is_output=last))  # fmt: skip
    devices = (ProblemDevice(client, "end"), *(ProblemDevice(s, "edge", memory_bytes=memory) for s in sites))
    compute = {f"l{i}": {client: 0.05, **dict.fromkeys(sites, 0.005)} for i in range(n_layers)}
    links = tuple(Link(client, s, 1e7, 0.005) for s in sites)
    return Problem(LayerGraph(nodes), devices, links, client, compute, name="chain")


ROAD = (Site("e1", 0, 0), Site("e2", 400, 0), Site("e3", 800, 0))


def _road(users, **kw) -> Mobility:
    return Mobility(sites=ROAD, users=users, backhaul=Backhaul(1.25e7, 0.002), window_s=5.0, **kw)


# ---------------------------------------------------------------- the model
def test_radio_rate_falls_with_distance_and_timeline_hands_over_at_the_midpoint():
    radio = ShannonRadio()
    rates = [radio.bytes_per_s(d) for d in (10, 100, 300, 1000)]
    assert rates == sorted(rates, reverse=True) and rates[-1] > 0
    # 3GPP macro path loss at 100 m: 90.5 dB; 23 dBm - 90.5 - (-174 + 73.0 + 9) = 24.5 dB SNR
    assert radio.snr_db(100) == pytest.approx(23 - 90.5 - (-174 + 10 * math.log10(20e6) + 9), abs=1e-9)
    mob = _road({"u": WaypointPath(((0, 0, 0), (80, 800, 0)))}, step_s=1.0)
    timeline = link_timeline(mob, "u", 80)
    changes = [(h.t_s, h.old, h.new) for h in handovers("u", timeline)]
    # at 10 m/s the midpoints 200 m and 600 m are reached at 20 s and 60 s (a tie stays), passed at the next step
    assert changes == [(21.0, "e1", "e2"), (61.0, "e2", "e3")]
    assert predict_heading(mob, WaypointPath(((0, 0, 0), (80, 800, 0))), 15.0) == "e2"


def test_random_waypoint_is_seeded_and_stays_in_its_area():
    walk = RandomWaypoint(500, 200, speed_mps=(1, 3), pause_s=(0, 2), seed=4)
    a, b = walk.path(100), walk.path(100)
    assert a == b and a != RandomWaypoint(500, 200, speed_mps=(1, 3), pause_s=(0, 2), seed=5).path(100)
    assert a.points[-1][0] >= 100
    assert all(0 <= x <= 500 and 0 <= y <= 200 for _, x, y in a.points)


# ---------------------------------------------------------------- strategies
def test_proactive_beats_reactive_around_predictable_handovers():
    mob = _road({"u": WaypointPath(((0, 0, 0), (60, 800, 0)))})
    cmp = compare_strategies([SimUser("u", _problem())], SimConfig(duration_s=60), mob)
    fig = {f.strategy: f for f in cmp.figures()}
    assert fig["reactive"].handovers == fig["proactive"].handovers == 2
    reactive, proactive, oracle, static = fig["reactive"], fig["proactive"], fig["oracle"], fig["static"]
    assert proactive.handover_max_latency_s < 0.75 * reactive.handover_max_latency_s
    assert proactive.handover_mean_latency_s < reactive.handover_mean_latency_s
    assert oracle.handover_mean_latency_s <= proactive.handover_mean_latency_s + 1e-9
    assert static.mean_latency_s > reactive.mean_latency_s  # reached over the backhaul after each hand-over
    assert proactive.wasted_bytes == reactive.wasted_bytes == 0  # the prediction was right: all used
    assert oracle.uploaded_bytes == static.uploaded_bytes == 0 and reactive.uploaded_bytes > 0
    # the static plan never changes; after the hand-overs it still computes on e1, through the backhaul
    static_run = cmp.by_strategy("static").result
    assert {q.placement["l0"] for q in static_run.queries} == {"e1"}
    late = [q for q in cmp.by_strategy("reactive").result.queries if q.start_s > 55]
    assert late and all(q.placement["l0"] == "e3" for q in late)


def test_proactive_prefetches_at_most_its_fraction_of_the_server_part():
    mob = _road({"u": WaypointPath(((0, 0, 0), (60, 800, 0)))})
    user = [SimUser("u", _problem())]
    partial = MobileSimulation(user, SimConfig(duration_s=60), mob, Proactive(prefetch_fraction=0.3)).run()
    ahead: dict[str, int] = {}
    for u in partial.uploads:
        if u.route == "backhaul":
            ahead[u.server] = ahead.get(u.server, 0) + u.param_bytes
    assert set(ahead) == {"e2", "e3"}
    assert all(0 < b <= 0.3 * 5 * 2_000_000 for b in ahead.values())  # the server part is 5 layers of 2 MB
    assert any(u.route == "client" for u in partial.uploads)  # the rest goes up after the hand-over
    with pytest.raises(TiercutError, match="prefetch_fraction"):
        Proactive(prefetch_fraction=0.0)


def test_a_wrong_prediction_wastes_the_prefetched_bytes():
    # heading east towards e2, the user turns north before reaching it: e2 never serves it
    sites = (Site("e1", 0, 0), Site("e2", 300, 0), Site("e3", 150, 300))
    path = WaypointPath(((0, 0, 0), (14, 140, 0), (40, 150, 400)))
    mob = Mobility(sites=sites, users={"u": path}, backhaul=Backhaul(1.25e7, 0.002), lookahead_s=10.0)
    cmp = compare_strategies([SimUser("u", _problem())], SimConfig(duration_s=40), mob, ["reactive", "proactive"])
    proactive = cmp.by_strategy("proactive")
    assert {h.new for h in proactive.handovers} == {"e3"}
    sent_to_e2 = sum(u.param_bytes for u in proactive.uploads if u.server == "e2")
    assert sent_to_e2 > 0 and proactive.figures().wasted_bytes >= sent_to_e2
    assert cmp.by_strategy("reactive").figures().wasted_bytes == 0


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n_sites=st.integers(2, 3),
    memory_mb=st.sampled_from([5, 9, 13, 50]),
    n_users=st.integers(1, 3),
    seed=st.integers(0, 10_000),
    strategy=st.sampled_from(sorted(STRATEGIES)),
)
def test_no_site_ever_holds_more_than_its_memory(n_sites, memory_mb, n_users, seed, strategy):
    sites = tuple(Site(f"e{i}", 250.0 * i, 0.0) for i in range(n_sites))
    names = tuple(s.server for s in sites)
    cap = memory_mb * 1_000_000
    users, movements = [], {}
    for k in range(n_users):  # each user's whole model (8 MB) fits a site alone; several users compete for it
        users.append(SimUser(f"u{k}", _problem(names, n_layers=4, memory=cap, client=f"c{k}")))
        movements[f"u{k}"] = RandomWaypoint(250.0 * n_sites, 100, speed_mps=(8, 20), seed=seed + k)
    mob = Mobility(sites=sites, users=movements, backhaul=Backhaul(1.25e7, 0.001), lookahead_s=5.0)
    held_max: dict[str, int] = {}
    reserve = MobileRun._reserve

    def checked(run, mover, server, params, **kw):  # recount every site's holdings from the parameter names after each call
        ok = reserve(run, mover, server, params, **kw)
        for site, memory in run.memory.items():
            total = sum(_param_bytes(run.movers[u].problem, params) for u, params in memory.held.items())
            held_max[site] = max(held_max.get(site, 0), total)
        return ok

    with patch.object(MobileRun, "_reserve", checked):
        run = MobileSimulation(users, SimConfig(duration_s=20), mob, strategy).run()
    assert all(v <= cap for v in held_max.values())
    assert all(run.peak_memory_bytes[s] == v for s, v in held_max.items())  # the run's own count agrees
    assert all(peak <= cap for peak in run.peak_memory_bytes.values())
    assert run.figures().memory_exceeded is False
    assert run.result.queries  # the users kept answering


def _param_bytes(problem: Problem, params) -> int:
    sizes = problem.graph.param_table()[0]
    return sum(sizes[p] for p in params)


def test_a_full_site_evicts_a_user_attached_elsewhere_and_refuses_one_in_use():
    # each site holds one model (8 MB of 9 MB); the backhaul is too slow to compute on a site one has left
    sites = (Site("e1", 0, 0), Site("e2", 100, 0))
    users = [SimUser(f"u{k}", _problem(("e1", "e2"), n_layers=4, memory=9_000_000, client=f"c{k}")) for k in (1, 2)]
    movements = {"u1": AttachmentTrace(((0.0, "e1", 1e7), (5.0, "e2", 1e7))),
                 "u2": AttachmentTrace(((0.0, "e2", 1e7), (10.0, "e1", 1e7)))}  # fmt: skip
    mob = Mobility(sites=sites, users=movements, backhaul=Backhaul(1e5, 0.01))
    run = MobileSimulation(users, SimConfig(duration_s=20), mob, Reactive()).run()
    assert run.refusals >= 1  # at 5 s u1 wants e2, which u2 is using: refused, u1 computes locally
    assert run.evictions == 1  # at 10 s u2 wants e1, which u1 left: u1's weights there are evicted
    assert all(peak <= 9_000_000 for peak in run.peak_memory_bytes.values())
    u1 = [q for q in run.result.queries if q.user == "u1" and q.start_s > 5.5]
    u2 = [q for q in run.result.queries if q.user == "u2" and q.start_s > 13]
    assert u1 and all(set(q.placement.values()) == {"c1"} for q in u1)
    assert u2 and all(q.placement["l0"] == "e1" for q in u2)


# ---------------------------------------------------------------- rates
def test_link_rate_segments_change_transfer_times_exactly_as_the_cost_model_says():
    problem = _problem(("e1", "e2"))
    rates = (1e7, 2.5e6, 4e7)
    trace = AttachmentTrace(((0.0, "e1", rates[0]), (10.0, "e1", rates[1]), (20.0, "e2", rates[2], 0.03)))
    mob = Mobility(sites=(Site("e1", 0, 0), Site("e2", 100, 0)), users={"u": trace}, backhaul=Backhaul(1.25e7, 0.002))
    starts = (1.0, 12.0, 25.0, 9.99)
    user = SimUser("u", problem, arrivals=TraceArrivals(tuple(sorted(starts))))
    run = MobileSimulation([user], SimConfig(duration_s=30), mob, Oracle()).run()
    by_start = {round(q.start_s, 6): q for q in run.result.queries}
    mobile = mobile_problem(problem, mob)
    for start, server, rate, latency in ((1.0, "e1", rates[0], None), (12.0, "e1", rates[1], None),
                                         (25.0, "e2", rates[2], 0.03)):  # fmt: skip
        q = by_start[start]
        expected = evaluate(attached_problem(mobile, server, rate, mob, latency), q.placement).latency_s
        assert q.latency_s == pytest.approx(expected, rel=1e-9)
    assert by_start[1.0].placement["l0"] == "e1" and by_start[12.0].placement["l0"] == "phone"  # the oracle re-plans
    assert by_start[25.0].placement["l0"] == "e2"
    assert by_start[25.0].latency_s > evaluate(attached_problem(mobile, "e2", rates[2], mob), by_start[25.0].placement).latency_s
    # a query whose input crosses the change at 10 s: its bytes go at 1e7 B/s until 10 s, the rest at 2.5e6 B/s
    q = by_start[9.99]
    assert q.placement["l0"] == "e1" and all(q.placement[f"l{i}"] == "e1" for i in range(5))
    sent_by_change = (10.0 - (9.99 + 0.005)) * rates[0]
    input_done = 10.0 + (600_000 - sent_by_change) / rates[1]
    expected_end = input_done + 5 * 0.005 + 0.005 + 4_000 / rates[1]
    assert q.end_s == pytest.approx(expected_end, rel=1e-9)


def test_a_backhaul_bandwidth_trace_slows_the_static_plan_exactly_as_the_cost_model_says():
    # after the hand-over the static plan computes on e1 through e2 and the e1-e2 backhaul, whose rate a trace halves
    from dataclasses import replace as dc_replace

    from tiercut.sim import BandwidthTrace

    problem = _problem(("e1", "e2"))
    trace = AttachmentTrace(((0.0, "e1", 1e7), (5.0, "e2", 1e7)))
    mob = Mobility(sites=(Site("e1", 0, 0), Site("e2", 100, 0)), users={"u": trace}, backhaul=Backhaul(2e7, 0.002))
    user = SimUser("u", problem, arrivals=TraceArrivals((8.0, 16.0)))
    config = SimConfig(duration_s=20, traces=(BandwidthTrace("e1", "e2", ((0.0, 2e7), (12.0, 1e7))),))
    run = MobileSimulation([user], config, mob, Static()).run()
    q1, q2 = sorted(run.result.queries, key=lambda q: q.start_s)
    attached = attached_problem(mobile_problem(problem, mob), "e2", 1e7, mob)
    assert q1.placement["l0"] == q2.placement["l0"] == "e1"
    assert q1.latency_s == pytest.approx(evaluate(attached, q1.placement).latency_s, rel=1e-9)
    halved = dc_replace(attached, links=tuple(dc_replace(k, bandwidth_bytes_per_s=1e7) if {k.a, k.b} == {"e1", "e2"} else k
                                               for k in attached.links))  # fmt: skip
    assert q2.latency_s == pytest.approx(evaluate(halved, q2.placement).latency_s, rel=1e-9)
    assert q2.latency_s > q1.latency_s


# ---------------------------------------------------------------- scenarios and errors
@pytest.fixture()
def problem_file(tmp_path: Path) -> Path:
    path = tmp_path / "problem.json"
    import json

    path.write_text(json.dumps({"problem": _problem(("e1", "e2")).to_dict()}))
    return path


def _scenario(problem_file: Path, **mobility) -> dict:
    data = {
        "schema_version": 1,
        "duration_s": 20,
        "upload": {"algorithm": "ionn"},
        "users": [{"name": "u", "problem": str(problem_file)}],
        "mobility": {
            "sites": [{"server": "e1", "x_m": 0, "y_m": 0}, {"server": "e2", "x_m": 300, "y_m": 0}],
            "users": {"u": {"waypoints": [[0, 0, 0], [20, 300, 0]]}},
            "backhaul": {"bandwidth_bytes_per_s": 1.25e7},
        },
    }
    data["mobility"].update(mobility)
    return data


def test_scenario_with_mobility_runs_every_strategy(problem_file, tmp_path):
    built = build_scenario(parse_scenario(_scenario(problem_file, strategies=["static", "proactive"]), "s.yaml", tmp_path))
    assert [s.name for s in built.strategies] == ["static", "proactive"]
    assert isinstance(built.strategies[1], Proactive) and built.strategies[1].upload == "ionn"
    assert isinstance(built.strategies[0], Static) and not isinstance(built.strategies[0], Reactive)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("duration_s"), "mobility needs duration_s"),
        (lambda d: d["mobility"].update(strategies=["psychic"]), "mobility.strategies.0"),
        (lambda d: d["mobility"]["users"]["u"].update(attachments=[[0, "e1", 1e6]]), "exactly one of"),
        (lambda d: d["mobility"]["sites"][0].pop("x_m"), "mobility.sites.0.x_m"),
        (lambda d: d["mobility"].update(step_s=0), "mobility.step_s"),
        (lambda d: d["mobility"].update(users={"u": {"attachments": [[0, "e9", 1e6]]}}), "'e9' is not a site"),
        (lambda d: d["mobility"].update(users={"u": {"attachments": [[1, "e1", 1e6]]}}), "starts at t_s 0"),
        (lambda d: d["mobility"].update(users={"u": {"attachments": [[0, "e1", 1e6, -1]]}}), "latency_s"),
        (lambda d: d["mobility"].update(users={"u": {"attachments": [[0, "e1", 0]]}}), "bytes_per_s"),
        (lambda d: d["mobility"].update(users={"u": {"waypoints": [[0, 0, 0], [0, 1, 1]]}}), "strictly increasing"),
        (lambda d: d["mobility"]["sites"].append({"server": "e7", "x_m": 1, "y_m": 1}), "'e7' is not a device"),
        (lambda d: d["mobility"].update(users={}), "no movement"),
        (lambda d: d["mobility"].pop("backhaul"), "joined by no links"),
        (lambda d: d["upload"].update(algorithm="none"), "not none"),
        (lambda d: d["users"][0].update(servers=["e1"]), "drop its plan/servers"),
        (lambda d: d.update(bandwidth_traces=[{"a": "phone", "b": "e1", "points": [[0, 1e6]]}]), "wireless link"),
    ],
)
def test_bad_mobility_input_is_one_line(problem_file, tmp_path, change, message):
    data = _scenario(problem_file)
    change(data)
    with pytest.raises(TiercutError) as err:
        build_scenario(parse_scenario(data, "s.yaml", tmp_path))
    text = str(err.value)
    assert message in text and "\n" not in text


def test_simulate_command_prints_strategies_and_refuses_them_without_mobility(problem_file, tmp_path, capsys):
    import json

    from tiercut.cli import main

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(_scenario(problem_file)))
    assert main(["simulate", str(path), "--no-progress", "--json", "--strategies", "reactive,oracle"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [s["strategy"] for s in data["mobility"]["strategies"]] == ["reactive", "oracle"]
    assert data["mobility"]["strategies"][0]["memory_exceeded"] is False
    assert main(["simulate", str(path), "--no-progress"]) == 0
    table = capsys.readouterr().out
    assert "proactive" in table and "wasted" in table
    assert main(["simulate", str(path), "--no-progress", "--strategies", "psychic"]) == 2
    err = capsys.readouterr().err
    assert "psychic" in err and len(err.strip().splitlines()) == 1
    report_in, page = tmp_path / "sim.json", tmp_path / "report.html"
    assert main(["simulate", str(path), "--no-progress", "--json", "--queries", "--strategies", "static,proactive"]) == 0
    report_in.write_text(capsys.readouterr().out)
    assert main(["report", str(report_in), "--out", str(page)]) == 0
    html = page.read_text()
    assert "Hand-over strategies" in html and "proactive" in html and "static" in html
    still = dict(_scenario(problem_file))
    still.pop("mobility")
    path.write_text(yaml.safe_dump(still))
    assert main(["simulate", str(path), "--no-progress", "--strategies", "reactive"]) == 2
    err = capsys.readouterr().err
    assert "no mobility" in err and len(err.strip().splitlines()) == 1


def test_example_mobility_scenario_is_valid():
    import jsonschema

    from tiercut.serialization import file_schema

    path = Path(__file__).parents[1] / "examples" / "mobility.yaml"
    data = yaml.safe_load(path.read_text())
    assert list(jsonschema.Draft202012Validator(file_schema("scenario")).iter_errors(data)) == []
    scenario = parse_scenario(data, str(path), path.parent)
    assert scenario.spec.mobility is not None and len(scenario.spec.mobility.strategies) == 4


@pytest.mark.slow
def test_example_mobility_scenario_runs():
    from tiercut.pipeline import simulate_scenario

    run = simulate_scenario(Path(__file__).parents[1] / "examples" / "mobility.yaml", strategies=["reactive", "proactive"])
    figures = {f.strategy: f for f in run.mobility.figures()}
    assert figures["reactive"].handovers >= 2 and not figures["proactive"].memory_exceeded
    assert figures["proactive"].handover_max_latency_s <= figures["reactive"].handover_max_latency_s


def test_a_run_stepped_from_outside_equals_one_run_at_once():
    mob = _road({"u": WaypointPath(((0, 0, 0), (30, 800, 0)))})
    sim = MobileSimulation([SimUser("u", _problem())], SimConfig(duration_s=30), mob, "proactive")
    run = sim.begin()
    seen = []
    for t in range(1, 31):
        run.env.run(until=float(t))
        seen.append(len(run.handover_records))
    stepped, whole = sim.finish(run), sim.run()
    assert seen[-1] == 2 and seen[5] == 0
    assert [q.end_s for q in stepped.result.queries] == [q.end_s for q in whole.result.queries]
    assert stepped.figures().to_dict() == whole.figures().to_dict()


def test_a_user_who_leaves_stops_handing_over_and_uploading():
    mob = _road({"u": WaypointPath(((0, 0, 0), (60, 800, 0)))})
    user = SimUser("u", _problem(), leave_s=30.0)
    run = MobileSimulation([user], SimConfig(duration_s=60), mob, "proactive").run()
    assert [h.new for h in run.handovers] == ["e2"]  # at 13.3 m/s: e2 at 16 s, e3 at 46 s (after it left)
    assert all(u.start_s < 30.0 for u in run.uploads)
    assert all(q.start_s < 30.0 for q in run.result.queries)
