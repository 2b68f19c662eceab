"""The HTML report in a real headless Chromium (Debian's ``chromium`` package, driven by Playwright).

One page holds every kind of section: DenseNet-121 (432 layers) planned on
``migration-12`` with several planners and upload plans, a simulation, a
measured run and a bare layer graph. The test loads it offline and checks
that no console error appears, nothing is fetched, the expected elements
exist (a box per graph node, a timeline bar per compute step, a row per
tensor crossing a link), choosing another plan re-colours the graph, pan and
zoom change the SVG transforms, and a screenshot is not blank.

Skipped, with what is missing named, where Chromium or Playwright is absent
(``make test`` installs Chromium from Debian's packages first).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tempfile

import pytest

from conftest import captured
from test_report import _run_payload, _simulate_payload

pytestmark = pytest.mark.slow

#: Debian's Chromium; TIERCUT_CHROMIUM names another binary.
CHROMIUM = os.environ.get("TIERCUT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PLANNERS = ("local", "all-on", "mincut", "shortest-path")
UPLOADS = ("direct", "ionn", "recursive-efficiency")


@pytest.fixture(scope="module")
def chromium():
    """A fresh headless Chromium profile (launched once for the module), offline."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Playwright is not installed: pip install 'playwright>=1.45,<2' (tiercut's dev extra)")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"Chromium is not installed ({CHROMIUM} missing): apt-get install chromium, as 'make test' does")
    with tempfile.TemporaryDirectory(prefix="tiercut-chromium-") as profile, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS, viewport={"width": 1400, "height": 900}
        )
        context.set_offline(True)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """The report page and what it must show."""
    from tiercut.cost import evaluate
    from tiercut.env import load_environment
    from tiercut.plan import get_planner
    from tiercut.problem import build_problem
    from tiercut.report import best_plan_name, write_report
    from tiercut.upload import plan_upload

    folder = tmp_path_factory.mktemp("report")
    problem = build_problem(captured("densenet121").graph, load_environment("migration-12"))
    plans = {name: get_planner(name).solve(problem) for name in PLANNERS}
    best = best_plan_name(plans)
    server = next(d for d in plans[best].placement.values() if d != problem.source)
    uploads = {name: plan_upload(problem, algorithm=name, server=server) for name in UPLOADS}
    case = {"problem": problem.to_dict(), "plans": {k: p.to_dict() for k, p in plans.items()},
            "upload_plans": {k: u.to_dict() for k, u in uploads.items()}}
    files = {"case": case, "simulate": _simulate_payload(), "run": _run_payload(), "graph": captured("alexnet").graph.to_dict()}
    paths = []
    for name, payload in files.items():
        paths.append(folder / f"{name}.json")
        paths[-1].write_text(json.dumps(payload))
    page = write_report(paths, folder / "report.html")
    return {"path": page, "problem": problem, "plans": plans, "best": best, "uploads": uploads,
            "evaluation": evaluate(problem, plans[best].placement), "alexnet_nodes": len(captured("alexnet").graph)}


def _transform(page, selector: str) -> str:
    return page.locator(selector).first.get_attribute("transform")


def _scale(transform: str) -> float:
    return float(re.search(r"scale\(([-\d.e]+)", transform).group(1))


def _pixel_spread(png: bytes) -> float:
    import numpy as np
    from PIL import Image

    return float(np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=float).std())


def test_report_page_in_headless_chromium(chromium, report):
    problem, ev, best = report["problem"], report["evaluation"], report["best"]
    devices = [d.name for d in problem.devices]
    page = chromium.new_page()
    console, requests = [], []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(report["path"].resolve().as_uri())
    page.wait_for_selector("html[data-ready='1']", timeout=30_000)

    # the layer graph: a box per node, coloured by the best plan's devices; red edges where tensors cross
    nodes = page.locator("#c0 svg.graph g.node")
    assert len(problem.graph) > 200 and nodes.count() == len(problem.graph)
    classes = nodes.evaluate_all("ns => ns.map(n => n.getAttribute('class'))")
    expected = [f"d{devices.index(ev.placement[n.name])}" for n in problem.graph]
    assert [re.search(r"\bd\d+\b", c).group(0) for c in classes] == expected
    cuts = sum(1 for s, t in problem.graph.edges() if ev.placement[s] != ev.placement[t])
    assert cuts > 0 and page.locator("#c0 svg.graph path.edge.cut").count() == cuts

    # the best plan's block: a timeline bar per compute step and per transfer, a row per tensor on a link
    shown = page.locator("#c0 .per-plan:visible")
    assert shown.count() == 1 and shown.get_attribute("data-plan") == f"plan:{best}"
    assert shown.locator("svg.timeline rect.bar.compute").count() == sum(1 for n in problem.graph if not n.is_input)
    assert shown.locator("svg.timeline rect.bar.transfer").count() == len(ev.transfers)
    assert shown.locator("table.transfers tbody tr").count() == len(ev.transfers) > 0
    assert shown.locator("table.link-totals tbody tr").count() == len({(t.src, t.dst) for t in ev.transfers})

    # the planner comparison and the upload section
    assert page.locator("#c0 table.planners tbody tr").count() == len(PLANNERS)
    assert page.locator("#c0 table.upload-metrics tbody tr").count() == len(UPLOADS)
    parts = sum(len(u.partitions) for u in report["uploads"].values())
    assert page.locator("#c0 svg.timeline rect.bar.partition").count() == parts
    assert page.locator("#c0 svg.chart path.series").count() == len(UPLOADS)

    # another plan re-colours the graph and shows its own timeline: everything local, no red edge
    page.select_option("#c0 select.plan-select", "plan:local")
    source = f"d{devices.index(problem.source)}"
    assert all(re.search(r"\bd\d+\b", c).group(0) == source
               for c in nodes.evaluate_all("ns => ns.map(n => n.getAttribute('class'))"))
    assert page.locator("#c0 svg.graph path.edge.cut").count() == 0
    assert page.locator("#c0 .per-plan:visible").get_attribute("data-plan") == "plan:local"
    assert page.locator("#c0 .per-plan:visible table.transfers").count() == 0
    # a click on a row of the comparison picks that plan; an upload stage is an option too
    page.locator(f'#c0 table.planners tr[data-plan="plan:{best}"]').click()
    assert page.locator("#c0 select.plan-select").input_value() == f"plan:{best}"
    page.select_option("#c0 select.plan-select", "upload:direct:0")  # nothing uploaded yet: all on the client
    assert page.locator("#c0 svg.graph path.edge.cut").count() == 0

    # pan and zoom change the graph's transform; the overview strip follows
    graph = page.locator("#c0 svg.graph")
    graph.scroll_into_view_if_needed()
    box = graph.bounding_box()
    before = _transform(page, "#c0 svg.graph g.viewport")
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, -400)
    zoomed = _transform(page, "#c0 svg.graph g.viewport")
    assert zoomed != before and _scale(zoomed) > _scale(before)
    window = page.locator("#c0 svg.minimap rect.window").get_attribute("width")
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 - 200, box["y"] + box["height"] / 2 + 30, steps=5)
    page.mouse.up()
    panned = _transform(page, "#c0 svg.graph g.viewport")
    assert panned != zoomed and _scale(panned) == _scale(zoomed)
    page.locator('#c0 .toolbar button[data-action="fit"]').click()
    fitted = _transform(page, "#c0 svg.graph g.viewport")
    width, height = float(graph.get_attribute("data-width")), float(graph.get_attribute("data-height"))
    view = graph.bounding_box()
    assert _scale(fitted) == pytest.approx(min(view["width"] / width, view["height"] / height), rel=1e-3)
    assert float(page.locator("#c0 svg.minimap rect.window").get_attribute("width")) > float(window)
    assert page.locator("#c0 svg.graph.far").count() == 1  # labels hidden when zoomed far out

    # the search finds a node and brings it into view
    target = problem.graph.nodes[len(problem.graph) // 2].name
    page.fill("#c0 input.node-search", target)
    assert page.locator(f'#c0 svg.graph g.node.found[data-node="{target}"]').count() == 1
    assert _transform(page, "#c0 svg.graph g.viewport") != fitted

    # a timeline zooms along time only and redraws its axis
    page.locator(f'#c0 table.planners tr[data-plan="plan:{best}"]').click()
    gantt = page.locator("#c0 .per-plan:visible svg.timeline")
    gantt.scroll_into_view_if_needed()
    gbox = gantt.bounding_box()
    ticks_before = gantt.locator("g.axis text").all_text_contents()
    page.mouse.move(gbox["x"] + gbox["width"] * 0.6, gbox["y"] + gbox["height"] / 3)
    page.mouse.wheel(0, -600)
    gantt_transform = gantt.locator("g.viewport").get_attribute("transform")
    assert re.search(r"scale\(([\d.]+),1\)", gantt_transform) and float(
        re.search(r"scale\(([\d.]+),1\)", gantt_transform).group(1)) > 1
    assert gantt.locator("g.axis text").all_text_contents() != ticks_before

    # the other sections: simulator and runtime curves, the graph-only case
    assert page.locator("#c1 svg.chart path.series").count() >= 1
    assert page.locator("#c2-run-curve path.series").count() == 2  # measured and planned
    assert page.locator("#c2 svg.timeline rect.bar.attempt").count() == 2
    assert page.locator("#c3 svg.graph g.node").count() == report["alexnet_nodes"]

    # not blank: the page and the graph have real contrast
    page.locator('#c0 .toolbar button[data-action="fit"]').click()
    page.evaluate("window.scrollTo(0, 0)")
    assert _pixel_spread(page.screenshot(full_page=False)) > 20
    assert _pixel_spread(graph.screenshot()) > 5

    assert console == []
    assert requests and all(url.startswith(("file:", "data:", "about:")) for url in requests), requests
    page.close()
