"""The HTML report of plans with early exits (issue 15): the graph by device, the exits, the accuracy-latency
curve with the chosen point; and the threshold trade-off it draws (tiercut.exits.tradeoff)."""

from __future__ import annotations

import json
import random
import re

import pytest

from tiercut.errors import TiercutError
from tiercut.exits.cost import evaluate_expected
from tiercut.exits.synthetic import random_exit_problem
from tiercut.exits.tradeoff import choose_thresholds, threshold_tradeoff
from tiercut.plan import get_planner
from tiercut.report import read_result, render_html, write_report


def _problem(seed: int = 3, **kw):
    return random_exit_problem(random.Random(seed), n_layers=6, n_exits=2, n_devices=3, n_samples=200, **kw)


def _payload(ep, plan):
    return {"problem": ep.to_dict(), "plan": plan.to_dict()}


@pytest.mark.parametrize("algorithm", ["edgent", "ddnn"])
def test_exit_plans_are_drawn_with_their_curve(algorithm):
    ep = _problem()
    planner = get_planner(algorithm, inner="brute-force") if algorithm == "edgent" else get_planner(algorithm)
    plan = planner.solve(ep)
    result = read_result(json.loads(json.dumps(_payload(ep, plan))), path="x.json")
    assert result.kind == "exit-plan" and result.exit_plan.active == plan.active
    page = render_html([result])
    graph = ep.problem.graph
    assert len(re.findall(r'<g class="node(?: [^"]*)?"', page)) == len(graph)
    deployed = [n for n in graph if n.name in plan.placement or n.is_input]
    coloured = re.findall(r'<g class="node d(\d+)', page)
    assert len(coloured) == len(deployed)  # a layer no active exit needs is not deployed: uncoloured
    # one row per active exit, the chosen point marked on the curve
    assert len(re.findall(r'<tr data-exit="', page)) == len(plan.active)
    curve = page[page.index('id="c0-exit-curve"'):]
    curve = curve[:curve.index("</svg>")]
    series = re.findall(r'data-series="([^"]+)"', curve)
    assert series[-1] == f"chosen: {' + '.join(plan.active)}"
    assert len(series) == (2 if len(plan.active) == 1 else 3)
    assert len(re.findall(r"<circle", curve)) >= len(plan.candidates) + 1


def test_bad_exit_plans_are_one_line_errors(tmp_path):
    ep = _problem()
    plan = get_planner("ddnn").solve(ep)
    data = _payload(ep, plan)
    data["plan"]["latency_s"] = plan.latency_s * 2
    with pytest.raises(TiercutError, match="does not match its problem"):
        read_result(data, path="p.json")
    with pytest.raises(TiercutError, match=r"p\.json"):
        read_result({"problem": {"exits": {}}, "plan": {}}, path="p.json")
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(TiercutError, match=r"bad\.json"):
        write_report([path], tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


def test_threshold_tradeoff_trades_accuracy_for_latency():
    ep = _problem(seed=7)
    plan = get_planner("ddnn").solve(ep)
    points = threshold_tradeoff(ep, plan.placement, plan.active)
    assert len(points) > 5
    # each point is the cost model's expected latency under its thresholds, recomputed from scratch
    for q in points[:: max(1, len(points) // 4)]:
        again = evaluate_expected(type(ep)(ep.problem, ep.exits, ep.rule, {**ep.thresholds, **q.thresholds},
                                           ep.measurements), plan.placement, plan.active)
        assert q.latency_s == pytest.approx(again.latency_s) and q.accuracy == pytest.approx(again.accuracy)
        assert q.exit_rates == pytest.approx(again.exit_rates)
    # a larger allowed drop lets out at least as many queries at the first exit, never slower
    first = [q.exit_rates[0] for q in points]
    assert first == sorted(first) and points[-1].latency_s <= points[0].latency_s + 1e-12
    slo = (points[0].latency_s + points[-1].latency_s) / 2
    chosen = choose_thresholds(points, latency_slo_s=slo)
    assert chosen is not None and chosen.latency_s <= slo
    assert all(q.accuracy <= chosen.accuracy for q in points if q.latency_s <= slo)
    floor = min(q.accuracy for q in points)
    fast = choose_thresholds(points, accuracy_min=floor)
    assert fast.latency_s == min(q.latency_s for q in points)
    assert choose_thresholds(points, latency_slo_s=points[-1].latency_s * 0.5 - 1) is None
    with pytest.raises(TiercutError, match="drops"):
        threshold_tradeoff(ep, plan.placement, plan.active, drops=[1.5])


@pytest.mark.slow
def test_exit_plan_report_in_headless_chromium(tmp_path):
    from test_report_browser import CHROMIUM, CHROMIUM_FLAGS

    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Playwright is not installed: pip install 'playwright>=1.45,<2' (tiercut's dev extra)")
    import os

    if not os.path.exists(CHROMIUM):
        pytest.skip(f"Chromium is not installed ({CHROMIUM} missing): apt-get install chromium, as 'make test' does")
    ep = _problem(seed=11).with_limits(latency_slo_s=None)
    plans = {"ddnn": get_planner("ddnn").solve(ep), "edgent": get_planner("edgent", inner="brute-force").solve(ep)}
    paths = []
    for name, plan in plans.items():
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(_payload(ep, plan)))
    page_path = write_report(paths, tmp_path / "exits.html")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            context.set_offline(True)
            page = context.new_page()
            console = []
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
            page.goto(page_path.resolve().as_uri())
            page.wait_for_selector("html[data-ready='1']", timeout=30_000)
            graph = ep.problem.graph
            for k, plan in enumerate(plans.values()):
                case = f"#c{k}"
                assert page.locator(f"{case} svg.graph g.node").count() == len(graph)
                classes = page.locator(f"{case} svg.graph g.node").evaluate_all(
                    "ns => ns.map(n => n.getAttribute('class'))")
                devices = [d.name for d in ep.problem.devices]
                expected = [f"d{devices.index(plan.placement.get(n.name, ep.problem.source))}"
                            if n.name in plan.placement or n.is_input else None for n in graph]
                got = [(re.search(r"\bd\d+\b", c) or [None])[0] for c in classes]
                assert got == expected
                assert page.locator(f"{case} table.exits tbody tr").count() == len(plan.active)
                curve = page.locator(f"{case}-exit-curve")
                assert curve.is_visible()
                chosen = curve.locator(f'path.series[data-series="chosen: {" + ".join(plan.active)}"]')
                assert chosen.count() == 1
                assert curve.locator("g.markers circle").count() >= len(plan.candidates) + 1
                box = curve.bounding_box()
                assert box["width"] > 300 and box["height"] > 150
            assert console == []
        finally:
            browser.close()
