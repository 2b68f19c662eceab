"""``plan``/``compare --users FILE``: multi-user problems from the command line, and their report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tiercut.cli import main
from tiercut.cost import evaluate, evaluate_users
from tiercut.plan import PLANNERS, get_planner
from tiercut.plan.multiuser import response_problem
from tiercut.problem import MultiPlan, MultiUserProblem

MODEL = "fixtures_models:tiny_net"
USER_CODE = (MODEL, "--allow-code")  # a factory of the tests' own code needs --allow-code
MULTI = [name for name, cls in PLANNERS.items() if cls.multi_user]


@pytest.fixture
def lab(tmp_path: Path) -> dict[str, Path]:
    env = {
        "name": "lab",
        "devices": [{"name": "phone", "tier": "end", "spec": {"peak_flops": 2e8, "memory_bandwidth_bps": 1e9}},
                    {"name": "tablet", "tier": "end", "spec": {"peak_flops": 4e8, "memory_bandwidth_bps": 2e9}},
                    {"name": "edge", "tier": "edge", "spec": {"peak_flops": 5e10, "memory_bandwidth_bps": 2e10}}],
        "links": [{"a": "phone", "b": "edge", "bandwidth_bytes_per_s": 5.0e6, "latency_s": 0.001},
                  {"a": "tablet", "b": "edge", "bandwidth_bytes_per_s": 5.0e6, "latency_s": 0.001}],
    }
    users = {"users": [{"name": "ann", "device": "phone", "model": MODEL, "input_shape": [1, 3, 8, 8]},
                       {"name": "bo", "device": "tablet", "input_shape": [1, 3, 8, 8], "query_rate_hz": 3}]}
    (tmp_path / "lab.yaml").write_text(yaml.safe_dump(env))
    (tmp_path / "users.yaml").write_text(yaml.safe_dump(users))
    return {"env": tmp_path / "lab.yaml", "users": tmp_path / "users.yaml"}


def _plan_json(lab, capsys, *extra: str) -> dict:
    # MODEL is the model of bo, who names none in the users file
    assert main(["plan", *USER_CODE, "--users", str(lab["users"]), "--env", str(lab["env"]), *extra, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_plan_users_prints_a_multi_user_plan_whose_figures_recompute(lab, capsys):
    data = _plan_json(lab, capsys, "--algorithm", "best-response")
    problem = MultiUserProblem.from_dict(data["problem"])
    plan = MultiPlan.from_dict(data["plan"])
    assert [u.name for u in problem.users] == ["ann", "bo"] and problem.user("bo").query_rate_hz == 3
    assert {u.problem.source for u in problem.users} == {"phone", "tablet"}
    assert plan.algorithm == "best-response" and set(plan.placements) == {"ann", "bo"}
    figures = evaluate_users(problem, {u: dict(p) for u, p in plan.placements.items()})
    assert figures.objective_value == pytest.approx(plan.objective_value, rel=1e-9)
    for user, ev in figures.users.items():
        assert ev.latency_s == pytest.approx(plan.users[user].latency_s, rel=1e-9)
    assert main(["plan", "--users", str(lab["users"]), "--env", str(lab["env"]), "--algorithm", "greedy"]) == 2
    assert "model" in capsys.readouterr().err  # bo names no model and no MODEL was given


def test_plan_users_table_shows_each_user(lab, capsys):
    assert main(["plan", *USER_CODE, "--users", str(lab["users"]), "--env", str(lab["env"]), "--algorithm", "greedy"]) == 0
    out = capsys.readouterr().out
    assert "greedy placement of 2 users" in out and re.search(r"ann\s.*phone", out) and re.search(r"bo\s.*tablet", out)


@pytest.mark.slow
def test_compare_users_runs_the_multi_user_planners(lab, capsys):
    args = ["compare", *USER_CODE, "--users", str(lab["users"]), "--env", str(lab["env"])]
    assert main([*args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert list(data["plans"]) == MULTI
    problem = MultiUserProblem.from_dict(data["problem"])
    for name, plan in data["plans"].items():
        assert MultiPlan.from_dict(plan).algorithm == name
    direct = get_planner("best-response").solve_multi(problem)
    assert data["plans"]["best-response"]["placements"] == {u: dict(p) for u, p in direct.placements.items()}
    assert main([*args, "--algorithm", "greedy,ilp"]) == 0
    out = capsys.readouterr().out
    assert "greedy" in out and "not applicable here: ilp" in out and "mean latency" in out


@pytest.mark.parametrize(
    ("extra", "users", "message"),
    [
        (["--pin", "conv=phone"], None, "--pin applies to a single-user problem"),
        (["--source", "phone"], None, "--source applies to a single-user problem"),
        (["--aggregate", "median"], None, "--aggregate 'median' is not known"),
        ([], {"users": []}, "non-empty list"),
        ([], {"users": [{"name": "x", "device": "watch", "model": MODEL}]}, "unknown device 'watch'"),
        ([], {"users": [{"name": "x", "device": "phone", "model": MODEL, "speed": 3}]}, "users.0.speed"),
        ([], {"users": [{"name": "x", "device": "phone", "model": MODEL},
                        {"name": "x", "device": "tablet", "model": MODEL}]}, "two users named 'x'"),
    ],
)
def test_bad_users_options_are_one_line_errors(lab, capsys, extra, users, message):
    path = lab["users"]
    if users is not None:
        path = path.with_name("bad-users.yaml")
        path.write_text(yaml.safe_dump(users))
    code = main(["plan", *USER_CODE, "--users", str(path), "--env", str(lab["env"]), "--algorithm", "greedy", *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_missing_users_file_is_a_user_error(lab, capsys):
    assert main(["compare", *USER_CODE, "--users", str(lab["users"].with_name("nope.yaml")), "--env", str(lab["env"])]) == 2
    assert "nope.yaml" in capsys.readouterr().err


# ---------------------------------------------------------------- the report draws them
def _report_pieces(lab, tmp_path, capsys):
    args = ["compare", *USER_CODE, "--users", str(lab["users"]), "--env", str(lab["env"]), "--algorithm", "greedy,best-response"]
    assert main([*args, "--out", str(tmp_path / "multi.json")]) == 0
    capsys.readouterr()
    data = json.loads((tmp_path / "multi.json").read_text())
    assert main(["report", str(tmp_path / "multi.json"), "-o", str(tmp_path / "multi.html")]) == 0
    return data, (tmp_path / "multi.html").read_text()


def test_report_draws_every_users_placement(lab, tmp_path, capsys):
    from tiercut.report import load_result

    data, page = _report_pieces(lab, tmp_path, capsys)
    problem = MultiUserProblem.from_dict(data["problem"])
    result = load_result(tmp_path / "multi.json")
    assert result.kind == "multi-compare" and list(result.multi_plans) == ["greedy", "best-response"]
    best = min(result.multi_plans, key=lambda n: (result.multi_plans[n].objective_value, n != "best-response"))
    plan = result.multi_plans[best]
    assert [u.label.split()[1] for u in result.users] == ["ann", "bo"]
    for user, drawn in zip(problem.users, result.users):
        shared = response_problem(problem, {u: dict(p) for u, p in plan.placements.items()}, user.name)
        (only,) = drawn.plans.values()
        assert dict(only.placement) == {n.name: plan.placements[user.name].get(n.name, shared.source)
                                        for n in shared.graph}
        # drawn with the user's figures under sharing: those of the multi-user plan
        assert only.latency_s == pytest.approx(plan.users[user.name].latency_s, rel=1e-9)
        assert evaluate(drawn.problem, only.placement).latency_s == pytest.approx(only.latency_s)
    # one summary section, then one section per user with the user's layer graph coloured by device
    assert page.count('<section class="case"') == 1 + len(problem.users)
    assert page.count('class="user-row"') == len(problem.users)
    assert 'table class="planners multi"' in page
    for k, user in enumerate(problem.users, start=1):
        section = page.split(f'<section class="case" id="c{k}"')[1].split("</section>")[0]
        assert len(re.findall(r'<g class="node[ "]', section)) == len(user.problem.graph)
        assert f"user {user.name} " in section


def test_a_multi_user_result_of_another_kind_is_refused(lab, tmp_path, capsys):
    data = _plan_json(lab, capsys, "--algorithm", "greedy")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"problem": data["problem"], "plan": {"algorithm": "x", "placement": {}}}))
    assert main(["report", str(bad), "-o", str(tmp_path / "bad.html")]) == 2
    assert "not a multi-user plan" in capsys.readouterr().err
    bad.write_text(json.dumps({"problem": data["problem"], "plans": {"greedy": {**data["plan"], "placements": {}}}}))
    assert main(["report", str(bad), "-o", str(tmp_path / "bad.html")]) == 2
    assert "places nothing for user 'ann'" in capsys.readouterr().err


@pytest.mark.slow
def test_multi_user_report_in_headless_chromium(lab, tmp_path, capsys):
    pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (tiercut's dev extra)")
    from test_report_browser import CHROMIUM, CHROMIUM_FLAGS

    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium is not installed ({CHROMIUM} missing): apt-get install chromium, as 'make test' does")
    from playwright.sync_api import sync_playwright

    data, _ = _report_pieces(lab, tmp_path, capsys)
    problem = MultiUserProblem.from_dict(data["problem"])
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((tmp_path / "multi.html").resolve().as_uri())
        page.wait_for_selector("html[data-ready='1']", timeout=30_000)
        assert page.locator("#c0 table.users tbody tr").count() == len(problem.users)
        for k, user in enumerate(problem.users, start=1):
            assert page.locator(f"#c{k} svg.graph g.node").count() == len(user.problem.graph)
            assert page.locator(f"#c{k} .per-plan:visible svg.timeline rect.bar.compute").count() == sum(
                1 for n in user.problem.graph if not n.is_input)
        assert errors == []
        browser.close()
