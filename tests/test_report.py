"""The HTML report: reading every result kind, the graph layout, one query's timeline, the page, the CLI.

The page itself is driven in a real Chromium by ``test_report_browser.py``.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import replace
from itertools import pairwise

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiercut.cli import main
from tiercut.cost import evaluate
from tiercut.errors import TiercutError
from tiercut.graph.types import LayerGraph, Node
from tiercut.plan import get_planner
from tiercut.plan.synthetic import random_problem, synthetic_dag
from tiercut.problem import Problem, ProblemDevice
from tiercut.report import (
    ACCEPTED,
    best_plan_name,
    layered_layout,
    load_result,
    query_timeline,
    read_result,
    render_html,
    write_report,
)
from tiercut.report.layout import _isotonic
from tiercut.runtime.client import RunResult, UploadAttempt
from tiercut.sim import SimConfig, SimUser, simulate
from tiercut.trace import QueryRecord
from tiercut.upload import get_upload_planner, plan_upload, user_plan_from_upload
from tiercut.upload.synthetic import random_upload_problem


# ---------------------------------------------------------------- results as the commands write them
def _problem(seed: int = 1, n_nodes: int = 12, n_devices: int = 3) -> Problem:
    return random_problem(random.Random(seed), n_nodes=n_nodes, n_devices=n_devices, shape="dag")


def _compare_payload(problem: Problem, names=("local", "dp", "ilp", "greedy")) -> dict:
    plans = {n: get_planner(n).solve(problem) for n in names}
    return {"problem": problem.to_dict(), "plans": {k: p.to_dict() for k, p in plans.items()}}


def _upload_payload(seed: int = 3) -> tuple[Problem, dict]:
    problem = random_upload_problem(random.Random(seed), n_nodes=8, shape="dag")
    plan = plan_upload(problem, "recursive-efficiency")
    other = plan_upload(problem, "direct", server=plan.server)
    pair = problem.restricted_to([problem.source, plan.server])
    return problem, {"problem": pair.to_dict(), "upload_plan": plan.to_dict(), "compare": {"direct": other.to_dict()}}


def _simulate_payload(queries: bool = True) -> dict:
    problem = random_upload_problem(random.Random(5), n_nodes=6, shape="chain")
    plan = plan_upload(problem, "ionn")
    user = SimUser("u", problem, plan=user_plan_from_upload("u", plan), max_queries=plan.metrics.n + 3)
    result = simulate([user], SimConfig(upload_shares_link=False))
    return {"scenario": "one-user", "result": result.to_dict(include_queries=queries),
            "analytic": {"u": plan.metrics.to_dict()}}


def _run_payload() -> dict:
    """What ``tiercut run --json`` prints, built from the runtime's own result types."""
    problem = random_upload_problem(random.Random(7), n_nodes=5, shape="chain")
    plan = plan_upload(problem, "direct")
    queries = tuple(
        QueryRecord(user="d0", index=k, start_s=0.05 * k, end_s=0.05 * k + 0.04, stage=0 if k < 3 else 1,
                    planned_latency_s=plan.stages[0 if k < 3 else 1].latency_s, devices=("d0",) if k < 3 else ("d0", "d1"),
                    bytes_sent=0 if k < 3 else 4000, bytes_received=0, fallback=False, error="")
        for k in range(6)
    )
    attempts = (
        UploadAttempt("d1", "p.1", 1, 1, 0.0, 0.08, False, "unavailable", "worker restarted", 1000),
        UploadAttempt("d1", "p.1", 1, 2, 0.09, 0.14, True, "ok", "stored and verified", 1000),
    )
    run = RunResult(model="random", source="d0", algorithm="direct", started_at=0.0, queries=queries, attempts=attempts,
                    confirmed_s={"d1": (0.14,)}, upload_end_s=0.14, abandoned={},
                    uploads=({"server": "d1", "position": 1, "nodes": ["n0"], "bytes": 1000, "planned_arrives_s": 0.1},),
                    duration_s=0.3)
    return {"upload_plan": plan.to_dict(), "run": run.to_dict()}


def _write(tmp_path, name: str, payload: dict):
    path = tmp_path / name
    path.write_text(json.dumps(payload))
    return path


# ---------------------------------------------------------------- reading results
def test_every_result_kind_is_recognised(tmp_path):
    problem = _problem()
    compare = _compare_payload(problem)
    plan = {"problem": compare["problem"], "plan": compare["plans"]["dp"]}
    upload_problem, upload = _upload_payload()
    demo = {**_compare_payload(upload_problem, ("local", "dp")), "upload_plans": {"direct": upload["upload_plan"]}}
    cases = {
        "plan": plan, "compare": compare, "demo": demo, "upload": upload, "simulate": _simulate_payload(),
        "run": _run_payload(), "graph": problem.graph.to_dict(),
    }
    for kind, payload in cases.items():
        result = load_result(_write(tmp_path, f"{kind}.json", payload))
        assert result.kind == kind
    assert set(load_result(tmp_path / "compare.json").plans) == {"local", "dp", "ilp", "greedy"}
    assert load_result(tmp_path / "upload.json").upload_plans.keys() == {"recursive-efficiency", "direct"}
    sim = load_result(tmp_path / "simulate.json").simulation
    assert sim is not None and sim.queries and sim.users[0]["user"] == "u"
    run = load_result(tmp_path / "run.json")
    assert run.run is not None and len(run.run.queries) == 6 and run.upload_plans


@pytest.mark.parametrize(
    "payload, message",
    [
        ({"hello": 1}, "is not a result tiercut knows"),
        ([1, 2, 3], "is not a result tiercut knows"),
        ({"problem": {"nodes": []}, "plan": {}}, "schema_version"),
        ({"problem": "x", "plans": {}}, "'problem' is not a JSON object"),
        ({"scenario": "s", "result": {"users": "nope"}}, "result.users"),
        ({"upload_plan": {}, "run": []}, "'run' is not a JSON object"),
    ],
)
def test_a_file_that_is_no_result_is_one_line_naming_what_is_accepted(tmp_path, payload, message):
    path = _write(tmp_path, "thing.json", payload)
    with pytest.raises(TiercutError, match=re.escape(message)) as caught:
        load_result(path)
    text = str(caught.value)
    assert "\n" not in text and str(path) in text


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda placement, last: placement.pop(last), "places no device for node"),
        (lambda placement, last: placement.__setitem__(last, "mars"), "uses device 'mars'"),
        (lambda placement, last: placement.__setitem__("ghost", "d0"), "places node 'ghost'"),
    ],
)
def test_a_plan_for_another_problem_is_refused(change, message):
    problem = _problem()
    payload = _compare_payload(problem, ("local",))
    change(payload["plans"]["local"]["placement"], problem.graph.nodes[-1].name)
    with pytest.raises(TiercutError, match=message):
        read_result(payload)
    _, upload = _upload_payload()
    change(upload["upload_plan"]["stages"][0]["placement"], upload["problem"]["nodes"][-1]["name"])
    with pytest.raises(TiercutError, match="upload plan 'recursive-efficiency' stage 0"):
        read_result(upload)


def test_unknown_files_exit_2_with_one_line_on_the_command_line(tmp_path, capsys):
    bad = _write(tmp_path, "env.json", {"name": "x", "devices": []})
    out = tmp_path / "r.html"
    assert main(["report", str(bad), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and ACCEPTED in err and not out.exists()
    (tmp_path / "broken.json").write_text("{not json")
    assert main(["report", str(tmp_path / "broken.json"), "-o", str(out)]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing.json"), "-o", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_report_command_writes_the_page_and_prints_its_path(tmp_path, capsys):
    path = _write(tmp_path, "compare.json", _compare_payload(_problem()))
    out = tmp_path / "sub" / "report.html"
    assert main(["report", str(path), "--out", str(out)]) == 0
    assert str(out.resolve()) in capsys.readouterr().out
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert main(["report", str(path), "-o", str(tmp_path / "report.txt")]) == 2
    assert "must end in .html" in capsys.readouterr().err
    assert main(["report", str(path), "-o", str(tmp_path / "sub")]) == 2  # a directory
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["report.html"]


def test_a_failing_result_leaves_no_report_and_no_temporary_file(tmp_path):
    good = _write(tmp_path, "good.json", _compare_payload(_problem()))
    bad = _write(tmp_path, "bad.json", {"what": "ever"})
    out = tmp_path / "report.html"
    out.write_text("previous report")
    with pytest.raises(TiercutError):
        write_report([good, bad], out)
    assert out.read_text() == "previous report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json", "good.json", "report.html"]


# ---------------------------------------------------------------- layout
def _check_layout(graph: LayerGraph) -> None:
    layout = layered_layout(graph)
    w, h = layout.node_width, layout.node_height
    assert set(layout.positions) == set(graph.names)
    by_layer: dict[int, list[float]] = {}
    for node in graph:
        x, y = layout.positions[node.name]
        assert w / 2 <= x <= layout.width - w / 2 and h / 2 <= y <= layout.height - h / 2
        by_layer.setdefault(layout.layers[node.name], []).append(y)
        for src in node.inputs:
            assert layout.layers[src] < layout.layers[node.name]
            assert layout.positions[src][0] < x
    for ys in by_layer.values():  # boxes of one layer never overlap
        ys.sort()
        assert all(b - a >= h - 1e-6 for a, b in pairwise(ys))
    assert len(layout.edges) == len(graph.edges())
    for edge in layout.edges:
        (x0, y0), (x1, y1) = edge.points[0], edge.points[-1]
        sx, sy = layout.positions[edge.src]
        dx, dy = layout.positions[edge.dst]
        if edge.arc:
            assert (x0, x1) == pytest.approx((sx, dx))
        else:
            assert (x0, y0) == pytest.approx((sx + w / 2, sy)) and (x1, y1) == pytest.approx((dx - w / 2, dy))
        on_curve = edge.points
        if edge.arc:  # the drawn curve, not its control points, stays inside the drawing
            p0, p1, p2, p3 = edge.points
            on_curve = [tuple((1 - t) ** 3 * a + 3 * (1 - t) ** 2 * t * b + 3 * (1 - t) * t**2 * c + t**3 * d
                              for a, b, c, d in zip(p0, p1, p2, p3)) for t in (k / 20 for k in range(21))]
        for px, py in on_curve:
            assert -1e-6 <= px <= layout.width + 1e-6 and -1e-6 <= py <= layout.height + 1e-6


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rng=st.randoms(use_true_random=False), n_nodes=st.integers(1, 40),
       shape=st.sampled_from(["chain", "series-parallel", "dag"]))
def test_layout_puts_every_edge_left_to_right_without_overlaps(rng, n_nodes, shape):
    _check_layout(random_problem(rng, n_nodes=n_nodes, shape=shape).graph)


def test_layout_of_a_large_dnn_like_graph():
    graph = synthetic_dag(400, seed=2, skip_every=3, branch_every=20)
    _check_layout(graph)
    chain = LayerGraph((Node("x", "input"), *[Node(f"n{i}", "relu", (f"n{i - 1}" if i else "x",)) for i in range(30)]))
    layout = layered_layout(chain)
    assert layout.crossings == 0 and layout.layer_count == 31
    assert len({round(y, 6) for _, y in layout.positions.values()}) == 1  # a chain is one straight row


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(-100, 100), st.floats(0.1, 3), st.floats(0, 20)), min_size=1, max_size=9))
def test_isotonic_spacing_keeps_the_gaps_and_is_least_squares(rows):
    targets, weights, gaps = [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows][:-1]
    ys = _isotonic(targets, weights, gaps)
    assert all(b - a >= g - 1e-9 for a, b, g in zip(ys, ys[1:], gaps))
    cost = sum(w * (y - t) ** 2 for y, t, w in zip(ys, targets, weights))
    # no feasible nudge of one position or of a suffix lowers the cost (KKT of the convex problem, sampled)
    for k in range(len(ys)):
        for delta in (-1e-3, 1e-3):
            moved = ys[:k] + [y + delta for y in ys[k:]]
            if all(b - a >= g - 1e-9 for a, b, g in zip(moved, moved[1:], gaps)):
                assert sum(w * (y - t) ** 2 for y, t, w in zip(moved, targets, weights)) >= cost - 1e-9
    if all(b - a >= g for a, b, g in zip(targets, targets[1:], gaps)):
        assert ys == pytest.approx(targets)


# ---------------------------------------------------------------- one query's timeline
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rng=st.randoms(use_true_random=False), n_nodes=st.integers(1, 10), n_devices=st.integers(1, 4),
       shape=st.sampled_from(["chain", "series-parallel", "dag"]))
def test_timeline_is_the_cost_models_sequential_schedule(rng, n_nodes, n_devices, shape):
    problem = random_problem(rng, n_nodes=n_nodes, n_devices=n_devices, shape=shape)
    placement = {n.name: (problem.source if n.is_input else rng.choice(problem.allowed_devices(n.name)))
                 for n in problem.graph}
    timeline = query_timeline(problem, placement)
    ev = evaluate(problem, placement)
    assert timeline.end_s == pytest.approx(ev.latency_s, rel=1e-9, abs=1e-15)
    compute = [b for b in timeline.bars if b.kind == "compute"]
    transfers = [b for b in timeline.bars if b.kind == "transfer"]
    assert [b.node for b in compute] == [n.name for n in problem.graph if not n.is_input]
    assert len(transfers) == sum(len(t.hops) for t in ev.transfers)  # a relayed transfer is drawn hop by hop
    for bar in compute:
        assert bar.row == placement[bar.node] and bar.seconds == pytest.approx(problem.compute_s[bar.node][bar.row])
    now = 0.0
    for bar in timeline.bars:  # one step at a time, back to back
        assert bar.start_s == pytest.approx(now, abs=1e-12)
        now = bar.end_s
    done = {(n.name, problem.source): 0.0 for n in problem.graph if n.is_input}
    for bar in timeline.bars:  # a node starts after its inputs are on its device
        if bar.kind == "compute":
            for src in problem.graph[bar.node].inputs:
                assert done[(src, bar.row)] <= bar.start_s + 1e-12
            done[(bar.node, bar.row)] = bar.end_s
        else:
            assert done[(bar.node, bar.device)] <= bar.start_s + 1e-12
            done[(bar.node, bar.dst)] = bar.end_s
    for node in problem.graph:
        if node.is_output:
            assert (node.name, problem.source) in done  # the result comes back
    assert set(timeline.rows) == set(timeline.device_rows) | {b.row for b in transfers}


def test_an_invalid_placement_has_no_timeline():
    problem = random_problem(random.Random(2), n_nodes=4, n_devices=3, missing_compute=1.0)
    placement = {n.name: "d1" if not n.is_input else "d0" for n in problem.graph}
    timeline = query_timeline(problem, placement)
    assert not timeline.evaluation.valid and timeline.bars == ()


# ---------------------------------------------------------------- the page
def _count(pattern: str, text: str) -> int:
    return len(re.findall(pattern, text))


def test_page_holds_the_graph_the_timeline_and_the_links_of_the_best_plan():
    problem = _problem(seed=11, n_nodes=20, n_devices=3)
    payload = _compare_payload(problem)
    result = read_result(payload)
    page = render_html([result])
    best = best_plan_name(result.plans)
    assert best in ("dp", "ilp") and result.plans[best].optimal
    ev = evaluate(problem, result.plans[best].placement)
    assert _count(r'<g class="node[ "]', page) == len(problem.graph)
    assert _count(r'<path class="edge', page) == len(problem.graph.edges())
    assert _count(r'class="edge cut"', page) == sum(
        1 for s, t in problem.graph.edges() if ev.placement[s] != ev.placement[t])
    block = page.split(f'data-plan="plan:{best}">', 1)[1].split('<div class="per-plan"', 1)[0]
    assert _count(r'class="bar compute"', block) == sum(1 for n in problem.graph if not n.is_input)
    assert _count(r'class="bar transfer"', block) == len(ev.transfers)
    transfers_table = block.split('class="transfers"', 1)[1].split("</table>", 1)[0] if ev.transfers else ""
    assert _count("<tr>", transfers_table) == len(ev.transfers) + (1 if ev.transfers else 0)
    assert _count('class="per-plan"', page) == len(result.plans)
    assert _count(r'<tr data-plan="plan:', page) == len(result.plans)  # the comparison table
    data = json.loads(re.search(r'<script type="application/json" class="case-data">(.*?)</script>', page).group(1))
    assert data["default"] == f"plan:{best}"
    names = [d.name for d in problem.devices]
    for name, plan in result.plans.items():
        assert [names[i] for i in data["options"][f"plan:{name}"]] == [
            plan.placement.get(n.name, problem.source) for n in problem.graph]


def test_page_fetches_nothing_and_escapes_names():
    evil = '<script>alert("x")</script>'
    graph = LayerGraph((Node("in", "input", out_bytes=10), Node(evil, "conv2d", ("in",), flops=10, out_bytes=10,
                                                                         is_output=True)), model="</script><b>")
    problem = Problem(graph, (ProblemDevice("d0", "end"), ProblemDevice("d1", "cloud")), (), "d0",
                      {evil: {"d0": 0.01}}, name="evil </script>")
    page = render_html([read_result(_compare_payload(problem, ("local",)))])
    assert evil not in page and "</script><b>" not in page and "&lt;script&gt;" in page
    assert _count("<script", page) == 2  # the case data and the report's script, nothing else
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', page)
    assert "default-src 'none'" in page


def test_upload_stages_become_options_with_their_own_timeline():
    _, upload = _upload_payload()
    page = render_html([read_result(upload)])
    plan = read_result(upload).upload_plans["recursive-efficiency"]
    for k in range(len(plan.stages)):
        assert f'value="upload:recursive-efficiency:{k}"' in page
    last = f"upload:recursive-efficiency:{len(plan.stages) - 1}"  # shown first: the split once all has arrived
    assert json.loads(re.search(r'class="case-data">(.*?)</script>', page).group(1))["default"] == last
    assert f'<div class="per-plan" data-plan="{last}">' in page
    assert _count(r'class="bar partition', page) == sum(len(u["partitions"]) for u in
                                                          [upload["upload_plan"], *upload["compare"].values()])
    assert 'class="chart"' in page and "upload-metrics" in page


def test_simulation_and_run_sections(tmp_path):
    page = render_html([read_result(_simulate_payload()), read_result(_run_payload())])
    assert 'id="c0-sim-curve"' in page and 'id="c1-run-curve"' in page
    assert _count(r'class="bar attempt', page) == 2 and _count(r'class="bar attempt failed"', page) == 1
    without = render_html([read_result(_simulate_payload(queries=False))])
    assert "--queries" in without and "sim-curve" not in without


def test_graph_only_and_several_results_on_one_page(tmp_path):
    problem = _problem()
    paths = [_write(tmp_path, "g.json", problem.graph.to_dict()), _write(tmp_path, "c.json", _compare_payload(problem))]
    out = write_report(paths, tmp_path / "r.html", title="two")
    page = out.read_text()
    assert '<section class="case" id="c0" data-kind="graph"' in page and 'id="c1"' in page
    assert _count(r'<g class="node[ "]', page) == 2 * len(problem.graph)
    assert "<nav>" in page and "tiercut report: two" in page


def test_figures_that_disagree_with_the_problem_are_flagged():
    problem = _problem()
    payload = _compare_payload(problem, ("local",))
    payload["plans"]["local"]["latency_s"] *= 2
    page = render_html([read_result(payload)])
    assert "but its problem gives" in page


def test_best_plan_prefers_a_proven_optimum_among_ties_and_skips_infeasible():
    problem = _problem()
    plans = {n: get_planner(n).solve(problem) for n in ("greedy", "ilp", "local")}
    assert plans["ilp"].optimal and not plans["greedy"].optimal
    assert plans["greedy"].objective_value == pytest.approx(plans["ilp"].objective_value)  # a tie on this problem
    assert best_plan_name(plans) == "ilp"
    cheat = replace(plans["local"], feasible=False, objective_value=0.0)
    assert best_plan_name({"cheat": cheat, "local": plans["local"]}) == "local"
    assert best_plan_name({"cheat": cheat}) == "cheat"  # nothing feasible: the first, shown as infeasible


# ---------------------------------------------------------------- the commands that feed it
@pytest.mark.slow
def test_demo_writes_the_html_report_and_prints_its_path(tmp_path, monkeypatch, capsys):
    from tiercut.cli import demo_cmd

    monkeypatch.setattr(demo_cmd, "DEMO_MODELS", ("alexnet",))
    monkeypatch.setattr(demo_cmd, "DEMO_ENVS", ("migration-12",))
    monkeypatch.setattr(demo_cmd, "FAITHFUL_CASES", ())
    assert main(["demo", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    page = tmp_path / "report.html"
    assert f"HTML report: {page.resolve()}" in out
    text = page.read_text()
    case = json.loads((tmp_path / "alexnet@migration-12.json").read_text())
    assert _count(r'<g class="node[ "]', text) == len(case["problem"]["nodes"])
    assert _count(r'<tr data-plan="plan:', text) == len(case["plans"])
    assert "upload-metrics" in text and len(case["upload_plans"]) >= 3


@pytest.mark.slow
def test_a_real_run_trace_is_reported(tmp_path, capsys):
    """``tiercut run --json`` with real local workers, then ``tiercut report`` on what it printed.

    On ``migration-12`` the plan offloads the tiny model, so there is an upload to draw.
    """
    import torch

    threads = torch.get_num_threads()
    try:
        code = main(["run", "fixtures_models:tiny_net", "--allow-code", "--input-shape", "1,3,8,8", "--env", "migration-12",
                     "--upload", "direct", "--queries", "5", "--bandwidth-scale", "100", "--keep-uploading-s", "60",
                     "--json"])
    finally:
        torch.set_num_threads(threads)
    captured_run = capsys.readouterr()
    assert code == 0, captured_run.err
    path = _write(tmp_path, "run.json", json.loads(captured_run.out))
    result = load_result(path)
    assert result.kind == "run" and len(result.run.queries) >= 5 and result.run.attempts
    assert main(["report", str(path), "-o", str(tmp_path / "run.html")]) == 0
    page = (tmp_path / "run.html").read_text()
    assert 'id="c0-run-curve"' in page
    assert _count(r'class="bar attempt', page) == len(result.run.attempts)


def test_link_figures_read_either_rate_name_and_the_reverse_direction():
    from types import SimpleNamespace

    from tiercut.report.plans import link_figures

    old = SimpleNamespace(a="phone", b="edge", bandwidth_bps=2e6, latency_s=0.01)
    assert link_figures(old, "phone", "edge") == (2e6, 0.01) == link_figures(old, "edge", "phone")
    directional = SimpleNamespace(a="phone", b="edge", bandwidth_bytes_per_s=5e6, latency_s=0.01,
                                  bandwidth_bytes_per_s_ba=20e6, latency_s_ba=0.002)
    assert link_figures(directional, "phone", "edge") == (5e6, 0.01)
    assert link_figures(directional, "edge", "phone") == (20e6, 0.002)
    symmetric = SimpleNamespace(a="phone", b="edge", bandwidth_bytes_per_s=5e6, latency_s=0.01,
                                bandwidth_bytes_per_s_ba=None, latency_s_ba=None)
    assert link_figures(symmetric, "edge", "phone") == (5e6, 0.01)


def test_an_upload_with_nothing_to_send_says_so():
    problem = _problem()
    local = get_planner("local").solve(problem)
    server = problem.device_names[1]
    nothing = get_upload_planner("direct").solve(problem.restricted_to([problem.source, server]),
                                                 {n: problem.source for n in local.placement})
    assert not nothing.partitions
    page = render_html([read_result({"problem": problem.to_dict(), "upload_plan": nothing.to_dict()})])
    assert "Nothing to upload" in page and "bar partition" not in page


def test_a_routed_transfer_is_drawn_hop_by_hop():
    from types import SimpleNamespace

    from tiercut.cost.model import Transfer
    from tiercut.report.timeline import transfer_hops

    assert transfer_hops(Transfer("x", "end", "cloud", 100, 0.5)) == [("end", "cloud", 0.5)]
    hops = (SimpleNamespace(src="end", dst="edge", seconds=0.2), SimpleNamespace(src="edge", dst="cloud", seconds=0.1))
    routed = SimpleNamespace(node="x", src="end", dst="cloud", out_bytes=100, seconds=0.3, hops=hops)
    assert transfer_hops(routed) == [("end", "edge", 0.2), ("edge", "cloud", 0.1)]
    as_dicts = SimpleNamespace(hops=[{"src": "end", "dst": "edge", "seconds": 0.2}])
    assert transfer_hops(as_dicts) == [("end", "edge", 0.2)]
