"""PANDA's online control in the event simulator (tiercut.sim.online), the one trace type, the CLI.

Checked:
- the contract: one user, one query per slot issued at the slot's start, idle resources: every simulated
  query takes its slot choice's cost-model latency and energy, so the simulated run is
  tiercut.plan.panda.lyapunov_run (same choices, same queue) -- DVFS clock levels included -- and the
  baselines replay their schedules exactly;
- on a long random trace in the simulator: Q(t) <= V dT / delta + E_max - E_budget (Neely 2010, ch. 4),
  mean energy <= E_budget + Q_bound / N (so within the budget up to O(V)/N), and mean latency <= the best
  per-slot budget-feasible policy + B / V (the sample-path drift-plus-penalty bound: O(1/V));
- several users sharing one edge: each its own queue and budget, the simulated energies (with contention)
  fed back, every user's mean energy <= its budget + Q_final / n;
- BandwidthTrace is the gym's bandwidth process too, and gym processes sample into it;
- `tiercut simulate` with a controller: section (JSON + table) and its bad input (one line each).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import yaml

from allocation_fixtures import panda_problem
from tiercut.cli import main
from tiercut.errors import TiercutError
from tiercut.plan.panda import build_menu, lyapunov_run, offline_oracle, static_optimum
from tiercut.sim import BandwidthTrace, Periodic, Poisson, SimConfig, SimUser
from tiercut.sim.online import PandaControl, simulate_online

SLOT_S = 4.0  # longer than any choice's latency (2.1 s at most): one query per slot ends within its slot
VS = (0.1, 1.0, 10.0)


def _trace(problem, n_slots: int, seed: int = 0, a: str = "phone", b: str = "edge") -> BandwidthTrace:
    levels = problem.link(a, b).bandwidth_bytes_per_s * np.array([0.1, 0.3, 1.0, 3.0])
    bw = np.random.default_rng(seed).choice(levels, size=n_slots)
    return BandwidthTrace.from_slots(a, b, bw.tolist(), SLOT_S)


def _budget(menu) -> float:
    frugal = max(float(menu.energy_j[s, h].min()) for s, h in enumerate(menu.hull))
    fastest = offline_oracle(menu, 1e9).mean_energy_j
    return frugal + 0.5 * (fastest - frugal)  # binds, and strictly feasible in every slot


def _one_user(n_slots: int, seed: int = 0, frequencies=(1.0,), downlink_bytes_per_s: float | None = None):
    problem = panda_problem()
    if downlink_bytes_per_s is not None:  # a directional link: the trace sets its uplink (phone -> edge) only
        from dataclasses import replace

        problem = replace(problem, links=(replace(problem.links[0], bandwidth_bytes_per_s_ba=downlink_bytes_per_s),))
    trace = _trace(problem, n_slots, seed)
    menu = build_menu(problem, [trace], SLOT_S, n_slots, frequencies)
    user = SimUser("u", problem, arrivals=Periodic(SLOT_S))
    return problem, trace, menu, user, SimConfig(duration_s=n_slots * SLOT_S, traces=(trace,))


@pytest.mark.parametrize(("frequencies", "downlink"), [((1.0,), None), ((0.5, 0.75, 1.0), None), ((1.0,), 3e5)])
def test_one_user_without_contention_is_the_cost_models_run(frequencies, downlink):
    n = 150
    _, _, menu, user, config = _one_user(n, seed=4, frequencies=frequencies, downlink_bytes_per_s=downlink)
    budget = _budget(menu)
    online = simulate_online([user], config, PandaControl(SLOT_S, VS, budget, frequencies))
    assert online.n_slots == n
    for V in VS:
        analytic = lyapunov_run(menu, V, budget)
        sim = online.run("lyapunov", V)
        fig = sim.users["u"]
        assert fig.queries == n and fig.queries_per_slot == 1
        np.testing.assert_array_equal(fig.choice, analytic.choice)
        np.testing.assert_allclose(fig.queue_j, analytic.queue_j, rtol=1e-9, atol=1e-9 * budget)  # sums of rounded J
        assert fig.mean_latency_s == pytest.approx(analytic.mean_latency_s, rel=1e-9)
        assert fig.mean_energy_j == pytest.approx(analytic.mean_energy_j, rel=1e-9)
        queries = sorted(sim.result.queries, key=lambda q: q.start_s)
        for k, q in enumerate(queries):  # every query: its slot choice's cost-model figures
            s = menu.state_of_slot[k]
            assert q.end_s - q.start_s == pytest.approx(menu.latency_s[s, fig.choice[k]], rel=1e-9)
            assert q.energy_source_j == pytest.approx(menu.energy_j[s, fig.choice[k]], rel=1e-9)
        assert fig.max_queue_j <= fig.queue_bound_j == pytest.approx(analytic.queue_bound_j, rel=1e-12)
    for policy, schedule in (("static", static_optimum(menu, budget)), ("oracle", offline_oracle(menu, budget))):
        fig = online.run(policy).users["u"]
        np.testing.assert_array_equal(fig.choice, schedule.choice)
        assert fig.mean_latency_s == pytest.approx(schedule.latency_s.mean(), rel=1e-9)
        assert fig.mean_energy_j == pytest.approx(schedule.energy_j.mean(), rel=1e-9)
        assert fig.mean_energy_j <= budget * (1 + 1e-9)  # both baselines meet the budget as replayed
    if len(frequencies) > 1:
        used = {menu.choices[int(c)].frequency for r in online.runs for c in r.users["u"].choice}
        assert used - {1.0}, "a lower clock level is chosen somewhere"


# about 1-2 s: 3,000 slots, five simulated runs
def test_long_random_trace_budget_queue_bound_and_one_over_v():
    n = 3_000
    _, _, menu, user, config = _one_user(n, seed=11)
    budget = _budget(menu)
    online = simulate_online([user], config, PandaControl(SLOT_S, VS, budget))
    # the best policy meeting the budget in every slot (over the menu's choices): the sample-path comparison
    ok = menu.energy_j <= budget
    per_slot = np.where(ok, menu.latency_s, np.inf).min(axis=1)[menu.state_of_slot]
    assert np.isfinite(per_slot).all()
    oracle = offline_oracle(menu, budget)
    gaps = []
    for V in VS:
        fig = online.run("lyapunov", V).users["u"]
        analytic = lyapunov_run(menu, V, budget)
        assert fig.max_queue_j <= fig.queue_bound_j  # Neely: V dT / delta + E_max - E_budget
        assert fig.mean_energy_j <= budget + fig.queue_bound_j / fig.queries  # within the budget up to O(V)/N
        assert fig.mean_energy_j <= fig.energy_bound_j + 1e-12
        assert fig.mean_latency_s <= per_slot.mean() + analytic.drift_constant / V  # O(1/V)
        assert fig.mean_latency_s <= oracle.mean_latency_s + analytic.drift_constant / V
        gaps.append(fig.mean_latency_s - oracle.mean_latency_s)
    assert gaps[-1] < gaps[0]  # larger V: closer to the oracle
    static = online.run("static").users["u"]
    assert online.run("lyapunov", 10.0).users["u"].mean_latency_s < static.mean_latency_s


def _edge_user(k: int, n_slots: int, seed: int) -> tuple[SimUser, BandwidthTrace]:
    """User k: its own phone and link to the one shared edge (panda_problem's chain, renamed)."""
    from dataclasses import replace

    base = panda_problem()
    phone = f"phone{k}"
    devices = tuple(replace(d, name=phone) if d.name == "phone" else d for d in base.devices)
    links = (replace(base.links[0], a=phone),)
    compute = {n: {(phone if d == "phone" else d): s for d, s in row.items()} for n, row in base.compute_s.items()}
    problem = replace(base, devices=devices, links=links, source=phone, compute_s=compute, name=f"chain{k}")
    trace = _trace(problem, n_slots, seed, a=phone)
    return SimUser(f"u{k}", problem, arrivals=Poisson(0.5), seed=k), trace


def test_several_users_share_the_edge_each_with_its_own_queue():
    n = 200
    users, traces = zip(*(_edge_user(k, n, seed=20 + k) for k in range(3)), strict=True)
    budgets = {"u0": 0.40, "u1": 0.42, "u2": 0.45}  # each strictly feasible in every slot (all local: 0.39 J)
    config = SimConfig(duration_s=n * SLOT_S, traces=traces)
    online = simulate_online(users, config, PandaControl(SLOT_S, (1.0,), budgets, baselines=False))
    run = online.run("lyapunov", 1.0)
    assert [r.policy for r in online.runs] == ["lyapunov"]
    queues = [tuple(run.users[u].queue_j) for u in budgets]
    assert len(set(queues)) == 3  # each user its own queue
    for name, budget in budgets.items():
        fig = run.users[name]
        assert fig.energy_budget_j == budget and fig.queries > 50
        assert fig.mean_energy_j <= budget + fig.final_queue_j / fig.queries + 1e-12
        assert math.isfinite(fig.queue_bound_j)
    # the edge is shared: queries of different users overlap on it somewhere, so some take longer than planned
    slower = [q.end_s - q.start_s > q.planned_latency_s * (1 + 1e-9) for q in run.result.queries]
    assert any(slower)
    within = [q for q in run.result.queries if math.floor(q.start_s / SLOT_S) == math.floor(q.end_s / SLOT_S)]
    assert all(q.end_s - q.start_s >= q.planned_latency_s * (1 - 1e-9) for q in within)  # contention only slows


def test_bandwidth_trace_is_the_gyms_process_and_gym_processes_sample_into_it():
    from tiercut.gym import processes as gp
    from tiercut.gym.task import PartitionTask

    trace = BandwidthTrace("phone", "edge", ((0.0, 2e6), (3.0, 5e5)))
    assert isinstance(trace, gp.ConditionProcess)
    times = np.array([0.0, 2.9, 3.0, 10.0])
    assert trace.values(times).tolist() == [2e6, 2e6, 5e5, 5e5]
    assert trace.values(times).tolist() == gp.PiecewiseConstant(trace.points).values(times, np.random.default_rng()).tolist()
    assert trace.at(2.0) == 2e6 and BandwidthTrace("a", "b", ((1.0, 1.0),)).at(0.5) is None
    PartitionTask(panda_problem(), {("phone", "edge"): trace})  # the gym takes it as the link's bandwidth process
    chain = gp.MarkovChain.sticky([2e5, 2e6], 0.8, step_s=SLOT_S)
    drawn = BandwidthTrace.from_process("phone", "edge", chain, np.arange(50) * SLOT_S, np.random.default_rng(3))
    again = chain.values(np.arange(50) * SLOT_S, np.random.default_rng(3))
    np.testing.assert_array_equal(drawn.slots(SLOT_S, 50), again)
    problem = panda_problem()
    menu = build_menu(problem, [drawn], SLOT_S, 50)
    assert len(menu.hull) == 2  # two bandwidth levels: two states


def test_bad_settings_are_one_line_errors():
    _, trace, _, user, config = _one_user(10)
    with pytest.raises(TiercutError, match="V=0"):
        PandaControl(SLOT_S, (0.0,), 1.0)
    with pytest.raises(TiercutError, match="V is empty"):
        PandaControl(SLOT_S, (), 1.0)
    with pytest.raises(TiercutError, match="slot_s"):
        PandaControl(-1.0, (1.0,), 1.0)
    with pytest.raises(TiercutError, match="energy_budget_j"):
        PandaControl(SLOT_S, (1.0,), math.inf)
    with pytest.raises(TiercutError, match="frequencies"):
        PandaControl(SLOT_S, (1.0,), 1.0, frequencies=(2.0,))
    with pytest.raises(TiercutError, match="no budget for user 'u'"):
        simulate_online([user], config, PandaControl(SLOT_S, (1.0,), {"v": 1.0}))
    with pytest.raises(TiercutError, match="needs a duration_s"):
        simulate_online([user], SimConfig(traces=(trace,)), PandaControl(SLOT_S, (1.0,), 1.0))
    with pytest.raises(TiercutError, match="no single placement meets"):
        simulate_online([user], config, PandaControl(SLOT_S, (1.0,), 1e-6))
    down = BandwidthTrace("phone", "edge", ((0.0, 1e6), (8.0, 0.0)))
    with pytest.raises(TiercutError, match=r"user 'u': .*needs every slot's bandwidth > 0"):
        simulate_online([user], SimConfig(duration_s=40.0, traces=(down,)), PandaControl(SLOT_S, (1.0,), 1.0))
    from dataclasses import replace

    with pytest.raises(TiercutError, match="chooses its placement every slot"):
        simulate_online([replace(user, cut_compression={"l0": "zstd"}, placement={})], config,
                        PandaControl(SLOT_S, (1.0,), 1.0))


# ---------------------------------------------------------------- the command line
def _scenario(tmp_path, **controller) -> dict:
    problem = panda_problem()
    (tmp_path / "p.json").write_text(json.dumps({"problem": problem.to_dict()}))
    points = [[i * SLOT_S, float(bw)] for i, bw in enumerate(2e6 * np.array([0.1, 3.0, 0.3, 1.0] * 5))]
    return {
        "schema_version": 1, "name": "online", "duration_s": 20 * SLOT_S,
        "users": [{"name": "u", "problem": "p.json", "arrivals": {"kind": "periodic", "interval_s": SLOT_S}}],
        "bandwidth_traces": [{"a": "phone", "b": "edge", "points": points}],
        "controller": {"kind": "panda", "slot_s": SLOT_S, "V": [0.1, 10], "energy_budget_j": 0.4,
                       "frequencies": [0.5, 1.0], **controller},
    }


def _write(tmp_path, data: dict):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_simulate_command_runs_the_controller(tmp_path, capsys):
    path = _write(tmp_path, _scenario(tmp_path))
    assert main(["simulate", path, "--json", "--no-progress", "--queries"]) == 0
    data = json.loads(capsys.readouterr().out)
    online = data["online"]
    assert online["controller"] == "panda" and online["slots"] == 20
    assert [(r["policy"], r["V"]) for r in online["runs"]] == [("lyapunov", 0.1), ("lyapunov", 10.0), ("static", None),
                                                                ("oracle", None)]
    for r in online["runs"]:
        u = r["users"]["u"]
        assert u["queries"] == 20 and len(u["queue_j"]) == 21 and len(u["choice"]) == 20
        assert u["mean_energy_j"] <= u["energy_bound_j"] + 1e-12
    lyap = online["runs"][0]["users"]["u"]
    assert lyap["max_queue_j"] <= lyap["queue_bound_j"]
    assert [row["policy"] for row in online["analytic"]["u"]] == ["lyapunov", "lyapunov", "static", "oracle"]
    assert data["result"]["queries"] == 20  # the first run's simulation
    assert main(["simulate", path, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "PANDA online control" in out and "oracle" in out and "queue bound" in out


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"V": [0]}, "controller.V.0"),
        ({"V": []}, "controller.V"),
        ({"slot_s": 0}, "controller.slot_s"),
        ({"energy_budget_j": -1}, "controller.energy_budget_j"),
        ({"energy_budget_j": {"someone": 0.4}}, "no budget for user 'u'"),
        ({"frequencies": [1.5]}, "controller.frequencies.0"),
        ({"kind": "dqn"}, "controller.kind"),
        ({"inner": "magic"}, "magic"),
        ({"energy_budget_j": 1e-6}, "no single placement meets"),
    ],
)
def test_simulate_controller_bad_input_is_one_line(tmp_path, capsys, change, message):
    path = _write(tmp_path, _scenario(tmp_path, **change))
    assert main(["simulate", path, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err, err


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"duration_s": None}, "needs duration_s"),
        ({"upload": {"algorithm": "ionn"}}, "no uploads are planned"),
        ({"upload": {"mode": "joint"}}, "no uploads are planned"),
    ],
)
def test_simulate_controller_scenario_conflicts_are_one_line(tmp_path, capsys, change, message):
    data = {k: v for k, v in {**_scenario(tmp_path), **change}.items() if v is not None}
    path = _write(tmp_path, data)
    assert main(["simulate", path, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err, err


@pytest.mark.slow  # 6-17 s: AlexNet's graph, its hulls at six bandwidth levels, five simulated runs
def test_the_example_scenario_runs(capsys):
    from pathlib import Path

    example = Path(__file__).parents[1] / "examples" / "panda-online.yaml"
    assert main(["simulate", str(example), "--json", "--no-progress"]) == 0
    online = json.loads(capsys.readouterr().out)["online"]
    assert [r["policy"] for r in online["runs"]] == ["lyapunov"] * 3 + ["static", "oracle"]
    for r in online["runs"]:
        assert set(r["users"]) == {"app1", "app2"}
        for u in r["users"].values():
            assert u["mean_energy_j"] <= u["energy_bound_j"] + 1e-12
    static, oracle = online["runs"][3], online["runs"][4]
    assert oracle["mean_latency_s"] < static["mean_latency_s"]
