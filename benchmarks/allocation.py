"""Issue 19's front door: shared resources and online decisions (allocation, Lyapunov, D2D, routing, variants).

Sections (``--sections``, default all; each a ``run(quick) -> dict`` in :data:`SECTIONS`):

- ``allocation``: on the ``migration-12`` preset with 2-20 users (users alternate between its two clients,
  AlexNet on client1, VGG-19 on client2, as its own two users), the equal-share plan (``best-response``,
  the multi-user planner of the equal-share model) against the joint plan (``jmdp``: alternating partition
  and optimal shares), for the mean objective and for the max objective: mean and max user latency by the
  analytic model, the allocation step alone on the equal plan's placements, the joint planner's rounds and
  objective per round, and both plans in the discrete-event simulator (queries back to back; the joint plan's
  shares as processor-sharing weights, the equal plan plain processor sharing). Why the simulated joint plan
  can lose to plain processor sharing (``simulated_decomposition``): the same placements with the shares
  *reserved* (each user alone on its fraction: the static model executed, which reproduces the analytic
  figures), and the joint placements under plain processor sharing (weights dropped); see :data:`WHY_PS_WINS`.
- ``lyapunov``: PANDA's drift-plus-penalty over a long random bandwidth trace (AlexNet on
  ``neurosurgeon-wifi``; i.i.d. slots over 0.05x-2x the link's nominal bandwidth; the mobile's clock at 0.6,
  0.8 or 1.0 of nominal with the cubic power model): average latency, average source energy and the largest
  virtual-queue backlog against V, with the static optimum and the offline oracle (PNG + JSON).
- ``d2d``: DCOSD2D's speed-up with 1-4 helper phones (``benchmarks/d2d.py``, which also runs alone).
- ``routing``: AppealNet's accuracy against the fraction of inputs offloaded (``benchmarks/routing.py``).
- ``variants``: MCDNN's choice of model variant and placement under latency and energy budgets
  (``benchmarks/variants.py``).

Writes benchmarks/results/allocation.json (and allocation_lyapunov.png) and prints a table. The machine's
load average is recorded before and after: the figures are analytic or simulated, the solve times are not.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import d2d
import routing
import variants
from _common import RESULTS, host_description, write_result

USER_COUNTS = (2, 4, 8, 12, 16, 20)
QUICK_USER_COUNTS = (2, 4)
VS = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
SLOTS = 20_000
QUICK_SLOTS = 2_000
SIM_QUERIES = 10


#: printed under the allocation table and stored in the JSON: how the static-share model relates to the simulator
WHY_PS_WINS = (
    "The allocation model is static: user i holds s_i of a server or link for its whole query, idle or not, "
    "and its latency is the sum of work / share. The simulator is work-conserving: weighted processor sharing "
    "(GPS) gives a job at least its weight's fraction and hands the capacity of idle or finished users to those "
    "present, and back-to-back users are only part of the time on a given server (the rest computing "
    "elsewhere or on a link). Executed as reservations (column 'reserved'), the shares reproduce the analytic "
    "figures exactly, and the joint plan beats the equal one there as the model says; executed work-conserving, "
    "both plans are much faster than the model (it over-counts contention) and the model's ranking need not "
    "hold. GPS/PS = pl. x wt.: (1) pl., the joint planner picks placements for the static model, and under "
    "plain processor sharing (column 'joint pl. PS') they can be slower than best response's; (2) wt., "
    "the shares as GPS weights on those placements: for the mean objective the optimal "
    "static shares grow with the work (s ~ sqrt(work)), and as GPS weights that favours long jobs -- the "
    "opposite of shortest-remaining-first, optimal for the mean under work conservation (two jobs of 1 and 4 s "
    "on one server: static sqrt shares give 3 and 6 s, GPS with those weights 3 and 5 s, plain PS 2 and 5 s). "
    "A reserved (non-work-conserving) execution would only be slower (column 'reserved' vs the simulated ones), "
    "so the executed allocation stays work-conserving GPS; the gap to plain PS is reported, not hidden."
)


# ---------------------------------------------------------------- allocation
def _users(n: int) -> list[Any]:
    from tiercut.env import User

    return [
        User(f"user{i + 1}", f"client{i % 2 + 1}", "alexnet" if i % 2 == 0 else "torchvision.models:vgg19",
             input_shape=None if i % 2 == 0 else (1, 3, 224, 224))
        for i in range(n)
    ]


def _simulate(problem: Any, plan: Any, weighted: bool = True) -> dict[str, float]:
    """Every user's queries back to back in the simulator: work-conserving processor sharing of each server and
    link, the plan's shares as GPS weights (``weighted`` and the plan has shares) or equal weights."""
    from tiercut.sim import BackToBack, SimConfig, SimUser, simulate, user_shares

    users = [
        SimUser(u.name, u.problem, placement=plan.placements[u.name], arrivals=BackToBack(), max_queries=SIM_QUERIES,
                shares=user_shares(plan.shares, u.name) if weighted and plan.shares is not None else {})
        for u in problem.users
    ]
    result = simulate(users, SimConfig())
    means = [s.mean_latency_s for s in result.summaries()]
    return {"latency_mean_s": float(np.mean(means)), "latency_max_s": float(np.max(means))}


def _simulate_reserved(problem: Any, placements: Any, shares: Any) -> dict[str, float]:
    """The static-share model executed: each user alone in the simulator on its *reserved* fraction of every
    resource it uses (compute times / share, bandwidths x share; what nobody else uses, whole), so no capacity
    moves between users when one idles -- not work-conserving. Reproduces the analytic figures."""
    from tiercut.cost.multiuser import shared_problem
    from tiercut.sim import BackToBack, SimConfig, SimUser, simulate

    means = []
    for u in problem.users:
        mine = shares.user(u.name)
        stretched = shared_problem(u.problem, {d: 1.0 / s for d, s in mine["devices"].items()},
                                   {frozenset(name.split("|")): 1.0 / s for name, s in mine["links"].items()})
        result = simulate([SimUser(u.name, stretched, placement=placements[u.name], arrivals=BackToBack(),
                                   max_queries=SIM_QUERIES)], SimConfig())
        means.append(result.summaries()[0].mean_latency_s)
    return {"latency_mean_s": float(np.mean(means)), "latency_max_s": float(np.max(means))}


def run_allocation(quick: bool) -> dict[str, Any]:
    """Joint allocation (jmdp) against equal sharing (best-response) on migration-12 with 2-20 users."""
    from dataclasses import replace

    from tiercut.cost import evaluate_users
    from tiercut.cost.allocation import allocate
    from tiercut.pipeline import multi_user_problem
    from tiercut.plan import plan
    from tiercut.problem import Objective

    rows = []
    for n in QUICK_USER_COUNTS if quick else USER_COUNTS:
        base = multi_user_problem("migration-12", _users(n), allow_code=True)
        for aggregate in ("mean", "max"):
            problem = replace(base, objective=Objective("latency", {}, aggregate))
            t0 = time.perf_counter()
            equal = plan(problem, "best-response")
            t1 = time.perf_counter()
            joint = plan(problem, "jmdp")
            t2 = time.perf_counter()
            alloc_only = allocate(problem, equal.placements)
            ev_alloc = evaluate_users(problem, equal.placements, alloc_only.shares)
            row = {
                "users": n,
                "objective": f"latency {aggregate}",
                "equal": {"latency_mean_s": equal.latency_mean_s, "latency_max_s": equal.latency_max_s,
                          "solve_s": t1 - t0},
                "allocation_only": {"latency_mean_s": ev_alloc.latency_mean_s, "latency_max_s": ev_alloc.latency_max_s,
                                    "method": alloc_only.method},
                "joint": {"latency_mean_s": joint.latency_mean_s, "latency_max_s": joint.latency_max_s,
                          "solve_s": t2 - t1, "convergence": list(joint.convergence), "note": joint.note,
                          "shared_resources": sum(1 for row in (joint.shares.devices | joint.shares.links).values()
                                                  if len(row) > 1) if joint.shares else 0},
                "simulated": {"equal": _simulate(problem, equal), "joint": _simulate(problem, joint)},
                # where the simulated gap comes from: the same placements under other executions of the shares
                "simulated_decomposition": {
                    "equal_reserved": _simulate_reserved(
                        problem, equal.placements, allocate(problem, equal.placements, method="equal").shares),
                    "joint_reserved": _simulate_reserved(problem, joint.placements, joint.shares),
                    "joint_placements_plain_ps": _simulate(problem, joint, weighted=False),
                },
            }
            key = "latency_mean_s" if aggregate == "mean" else "latency_max_s"
            row["joint_over_equal"] = row["joint"][key] / row["equal"][key]
            row["simulated_joint_over_equal"] = row["simulated"]["joint"][key] / row["simulated"]["equal"][key]
            plain = row["simulated_decomposition"]["joint_placements_plain_ps"][key]
            row["simulated_gap_factors"] = {  # their product is simulated_joint_over_equal
                "placements_under_plain_ps": plain / row["simulated"]["equal"][key],
                "shares_as_gps_weights": row["simulated"]["joint"][key] / plain,
            }
            rows.append(row)
            print(f"  {n:2d} users, {aggregate:4s}: equal {row['equal'][key] * 1e3:8.2f} ms, joint "
                  f"{row['joint'][key] * 1e3:8.2f} ms (x{row['joint_over_equal']:.3f}), simulated x"
                  f"{row['simulated_joint_over_equal']:.3f}, {len(joint.convergence) - 1} rounds", flush=True)
    return {"preset": "migration-12", "queries_per_user_simulated": SIM_QUERIES, "rows": rows,
            "why_processor_sharing_can_win": WHY_PS_WINS}


# ---------------------------------------------------------------- lyapunov
#: slot length of the simulated online runs: longer than any choice's latency (AlexNet on neurosurgeon-wifi:
#: 0.1 s at most, the mobile alone at 0.6 of its clock), so one query per slot ends within its slot
LYAPUNOV_SLOT_S = 0.25
#: the shared-mobile run: this many users (apps on the one mobile: its CPU, its wireless link, the cloud)
LYAPUNOV_USERS, QUICK_LYAPUNOV_USERS = 4, 2
#: ... each issuing Poisson queries at these rates (Hz): light (the mobile's CPU about a tenth busy if every
#: query ran there) and heavy (about half busy)
LYAPUNOV_RATES_HZ = (0.5, 2.5)


def _online_row(r: Any, n_slots: int) -> dict[str, Any]:
    users = list(r.users.values())
    return {
        "policy": r.policy, "V": None if r.V != r.V else r.V,
        "mean_latency_s": r.mean_latency_s, "mean_energy_j": r.mean_energy_j, "max_queue_j": r.max_queue_j,
        "queue_bound_j": max((u.queue_bound_j for u in users), default=None) if r.policy == "lyapunov" else None,
        "energy_bound_j": max(u.energy_bound_j for u in users),
        "planned_latency_s": float(np.mean([u.planned_latency_s for u in users])),
        "planned_energy_j": float(np.mean([u.planned_energy_j for u in users])),
        "queries": sum(u.queries for u in users), "events": r.result.events, "wall_s": r.result.wall_s,
        "users": {u.user: u.to_dict() for u in users}, "slots": n_slots,
    }


def run_lyapunov(quick: bool) -> dict[str, Any]:
    """PANDA's V trade-off simulated on a long random bandwidth trace (tiercut.sim.online), with the static
    optimum and the offline oracle replayed in the same simulator on the same trace; the cost model's slotted
    figures beside them; then several users sharing the mobile, its link and the cloud."""
    from dataclasses import replace as dc_replace

    from tiercut.pipeline import problem as make_problem
    from tiercut.plan.panda import build_menu, lyapunov_run, offline_oracle, static_optimum
    from tiercut.sim import BandwidthTrace, Periodic, Poisson, SimConfig, SimUser
    from tiercut.sim.online import PandaControl, simulate_online

    problem = make_problem("alexnet", "neurosurgeon-wifi", private_layers=1)
    link = problem.links[0]
    factors = np.array([0.05, 0.1, 0.25, 0.5, 1.0, 2.0])
    n_slots = QUICK_SLOTS if quick else SLOTS
    slot_s = LYAPUNOV_SLOT_S
    bw = np.random.default_rng(19).choice(link.bandwidth_bytes_per_s * factors, size=n_slots)
    trace = BandwidthTrace.from_slots(link.a, link.b, bw.tolist(), slot_s)  # the simulator's one trace type
    frequencies = (0.6, 0.8, 1.0)
    t0 = time.perf_counter()
    menu = build_menu(problem, [trace], slot_s, n_slots, frequencies)
    menu_s = time.perf_counter() - t0
    longest = float(max(menu.latency_s[s, h].max() for s, h in enumerate(menu.hull)))
    assert longest < slot_s, f"a choice takes {longest:g} s, longer than the {slot_s:g} s slot"
    frugal = max(float(menu.energy_j[s, h].min()) for s, h in enumerate(menu.hull))
    unconstrained = offline_oracle(menu, 1e9)
    budget = frugal + 0.5 * (unconstrained.mean_energy_j - frugal)
    user = SimUser("mobile-user", problem, arrivals=Periodic(slot_s))
    config = SimConfig(duration_s=n_slots * slot_s, traces=(trace,))
    t1 = time.perf_counter()
    online = simulate_online([user], config, PandaControl(slot_s, tuple(VS), budget, frequencies))
    sim_s = time.perf_counter() - t1
    curve = []
    for V in VS:
        sim = _online_row(online.run("lyapunov", V), n_slots)
        analytic = lyapunov_run(menu, V, budget)
        sim.update({"analytic_mean_latency_s": analytic.mean_latency_s, "analytic_mean_energy_j": analytic.mean_energy_j,
                    "analytic_max_queue_j": analytic.max_queue_j,
                    "latency_bound_s": offline_oracle(menu, budget).mean_latency_s + analytic.drift_constant / V})
        curve.append(sim)
    static_a, oracle_a = static_optimum(menu, budget), offline_oracle(menu, budget)
    out: dict[str, Any] = {
        "model": "alexnet", "env": "neurosurgeon-wifi", "privacy": "first layer pinned to the mobile",
        "simulated": "tiercut.sim.online: one query per slot at its start (Periodic(slot_s)); the controller picks the "
                     "placement and clock at each slot boundary from the trace and the virtual queue; the queue takes "
                     "the simulator's energy",
        "slots": n_slots, "slot_s": slot_s, "bandwidth_factors": factors.tolist(),
        "nominal_bandwidth_bytes_per_s": link.bandwidth_bytes_per_s, "frequencies": list(frequencies),
        "energy_budget_j": budget, "menu_s": menu_s, "simulate_s": sim_s, "longest_choice_s": longest,
        "distinct_states": len(menu.hull), "choices": len(menu.choices),
        "static": {**_online_row(online.run("static"), n_slots), "analytic_mean_latency_s": static_a.mean_latency_s},
        "oracle": {**_online_row(online.run("oracle"), n_slots), "analytic_mean_latency_s": oracle_a.mean_latency_s,
                   "multiplier_s_per_j": oracle_a.multiplier},
        "unconstrained": unconstrained.summary(), "curve": curve,
    }
    # several users on the one mobile (apps sharing its CPU, its wireless link and the cloud): each its own queue
    k = QUICK_LYAPUNOV_USERS if quick else LYAPUNOV_USERS
    n_multi = n_slots // 4
    multi_config = dc_replace(config, duration_s=n_multi * slot_s)
    out["shared"] = []
    for rate in LYAPUNOV_RATES_HZ:
        users = [SimUser(f"app{i}", problem, arrivals=Poisson(rate), seed=i) for i in range(k)]
        t2 = time.perf_counter()
        shared = simulate_online(users, multi_config, PandaControl(slot_s, (0.1, 1.0, 10.0), budget, frequencies))
        out["shared"].append({
            "users": k, "rate_hz_per_user": rate, "slots": n_multi, "simulate_s": time.perf_counter() - t2,
            "note": "the controller plans each user on the cost model (the mobile, link and cloud its own); the "
                    "simulator shares them (processor sharing), so simulated latency exceeds the planned one and each "
                    "user's queue absorbs the difference. A query's source energy is its part of what the phone "
                    "draws (docs/cost-model.md, Energy in the simulator: the idle power split among the apps' queries "
                    "in flight, compute and radio to the query using them), so the apps no longer pay for each "
                    "other's waiting (the static choice, all on the phone: exactly the planned energy). Simulated "
                    "energy still exceeds planned for the offloading choices: queries slowed by contention run into "
                    "the next slot, whose bandwidth (0.05x-2x nominal) their choice was not made for; with a constant "
                    "link it is below planned (overlapping apps share the phone's idle time)",
            "runs": [_online_row(r, n_multi) for r in shared.runs],
        })
    out["png"] = str(_plot(out))
    return out


def _plot(data: dict[str, Any]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    Vs = [c["V"] for c in data["curve"]]
    ax1.semilogx(Vs, [c["mean_latency_s"] * 1e3 for c in data["curve"]], "o-", label="Lyapunov (PANDA), simulated")
    ax1.semilogx(Vs, [c["analytic_mean_latency_s"] * 1e3 for c in data["curve"]], "x:", color="black",
                 label="Lyapunov, cost model")
    ax1.axhline(data["static"]["mean_latency_s"] * 1e3, color="grey", ls="--", label="static optimum (simulated)")
    ax1.axhline(data["oracle"]["mean_latency_s"] * 1e3, color="green", ls=":", label="offline oracle (simulated)")
    ax1.set_xlabel("V")
    ax1.set_ylabel("mean latency (ms)")
    ax1.legend(fontsize=8)
    ax2.semilogx(Vs, [c["mean_energy_j"] * 1e3 for c in data["curve"]], "o-", label="mean source energy (simulated)")
    ax2.axhline(data["energy_budget_j"] * 1e3, color="red", ls="--", label="budget")
    ax3 = ax2.twinx()
    ax3.semilogx(Vs, [c["max_queue_j"] for c in data["curve"]], "s:", color="purple", label="max queue (J)")
    ax3.semilogx(Vs, [c["queue_bound_j"] for c in data["curve"]], "^--", color="purple", alpha=0.4, label="queue bound")
    ax3.set_ylabel("virtual queue (J)")
    ax3.legend(loc="lower right", fontsize=8)
    ax2.set_xlabel("V")
    ax2.set_ylabel("mean source energy per query (mJ)")
    ax2.legend(loc="upper left", fontsize=8)
    fig.suptitle(f"PANDA in the simulator, {data['model']} on {data['env']}, {data['slots']} slots of {data['slot_s']:g} s")
    fig.tight_layout()
    path = RESULTS / "allocation_lyapunov.png"
    RESULTS.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def report_lyapunov(ly: dict[str, Any]) -> None:
    """The lyapunov section's table: simulated figures [cost model's] per V, the baselines, the shared run."""
    print(f"\nPANDA in the simulator on {ly['env']} ({ly['slots']} slots of {ly['slot_s']:g} s, budget "
          f"{ly['energy_budget_j'] * 1e3:.2f} mJ/query): static {ly['static']['mean_latency_s'] * 1e3:.2f} ms "
          f"{ly['static']['mean_energy_j'] * 1e3:.2f} mJ, oracle {ly['oracle']['mean_latency_s'] * 1e3:.2f} ms "
          f"{ly['oracle']['mean_energy_j'] * 1e3:.2f} mJ (simulated)")
    print(f"{'V':>8s} {'latency ms [model]':>20s} {'energy mJ [model]':>20s} {'max Q (J)':>10s} {'Q bound':>10s}")
    for c in ly["curve"]:
        print(f"{c['V']:8.2f} {c['mean_latency_s'] * 1e3:9.3f} [{c['analytic_mean_latency_s'] * 1e3:8.3f}] "
              f"{c['mean_energy_j'] * 1e3:9.3f} [{c['analytic_mean_energy_j'] * 1e3:8.3f}] "
              f"{c['max_queue_j']:10.4f} {c['queue_bound_j']:10.4f}")
    for sh in ly.get("shared", []):
        print(f"{sh['users']} users sharing the mobile (Poisson {sh['rate_hz_per_user']:g} Hz each, {sh['slots']} slots): "
              "simulated [planned]")
        for r in sh["runs"]:
            v = "-" if r["V"] is None else f"{r['V']:g}"
            print(f"  {r['policy']:>8s} V={v:>4s} {r['mean_latency_s'] * 1e3:8.3f} ms [{r['planned_latency_s'] * 1e3:7.3f}] "
                  f"{r['mean_energy_j'] * 1e3:8.3f} mJ [{r['planned_energy_j'] * 1e3:7.3f}] max Q {r['max_queue_j']:.4f} J")


#: section name -> its run(quick); d2d and routing live in their own scripts (each also runs alone)
SECTIONS: dict[str, Callable[[bool], dict[str, Any]]] = {
    "allocation": run_allocation,
    "lyapunov": run_lyapunov,
    "d2d": d2d.run,
    "routing": routing.run,
    "variants": variants.run,  # prints its table as it goes
}
#: section name -> what prints its table (the sections defined here print theirs in :func:`main`)
REPORTS: dict[str, Callable[[dict[str, Any]], None]] = {
    "d2d": d2d.report,
    "routing": routing.report,
}


def run(quick: bool, sections: list[str] | None = None) -> dict[str, Any]:
    """Every section (or ``sections``), each under its name."""
    out = {}
    for name in sections or list(SECTIONS):
        print(f"[{name}]", flush=True)
        t0 = time.perf_counter()
        out[name] = SECTIONS[name](quick)
        out[name]["section_s"] = time.perf_counter() - t0
    return out


def report_allocation(section: dict[str, Any]) -> None:
    """The allocation section's tables: analytic mean and max user latency of both plans (simulated in brackets),
    then where the simulated gap between them comes from."""
    print("\nmigration-12: joint (jmdp) vs equal share (best-response), mean / max user latency, analytic ms "
          "[simulated ms]")
    print(f"{'users':>5s} {'objective':>12s} {'equal mean':>19s} {'equal max':>19s} {'joint mean':>19s} "
          f"{'joint max':>19s} {'ratio':>6s} {'rounds':>6s} {'solve s':>7s}")
    for r in section["rows"]:
        sim = r["simulated"]
        cells = [f"{r[plan][k] * 1e3:8.2f} [{sim[plan][k] * 1e3:8.2f}]" for plan in ("equal", "joint")
                 for k in ("latency_mean_s", "latency_max_s")]
        print(f"{r['users']:5d} {r['objective']:>12s} {cells[0]:>19s} {cells[1]:>19s} {cells[2]:>19s} {cells[3]:>19s} "
              f"{r['joint_over_equal']:6.3f} {len(r['joint']['convergence']) - 1:6d} {r['joint']['solve_s']:7.1f}")
    print("(ratio: joint / equal on the objective's figure, analytic; the allocation step alone on the equal plan's "
          "placements is in the JSON, allocation_only)")
    print("\nsimulated, ms (the objective's figure): equal plan and joint plan, work-conserving (PS / GPS with the"
          " joint shares) and reserved (the static model executed)")
    print(f"{'users':>5s} {'objective':>14s} {'equal PS':>9s} {'joint GPS':>9s} {'joint pl. PS':>12s} "
          f"{'eq. reserved':>12s} {'jt. reserved':>12s} {'GPS/PS':>7s} {'= pl.':>6s} {'x wt.':>6s}")
    for r in section["rows"]:
        key = "latency_mean_s" if r["objective"].endswith("mean") else "latency_max_s"
        sim, dec, gap = r["simulated"], r["simulated_decomposition"], r["simulated_gap_factors"]
        print(f"{r['users']:5d} {r['objective']:>14s} {sim['equal'][key] * 1e3:9.2f} {sim['joint'][key] * 1e3:9.2f} "
              f"{dec['joint_placements_plain_ps'][key] * 1e3:12.2f} {dec['equal_reserved'][key] * 1e3:12.2f} "
              f"{dec['joint_reserved'][key] * 1e3:12.2f} {sim['joint'][key] / sim['equal'][key]:7.3f} "
              f"{gap['placements_under_plain_ps']:6.3f} {gap['shares_as_gps_weights']:6.3f}")
    print(textwrap.fill(WHY_PS_WINS, 110))


def _kept_sections(run_now: list[str], quick: bool) -> dict[str, Any]:
    """The sections of the last allocation.json of the same kind (quick or full) not run now, so running some
    sections keeps the others' results (each section records its own load)."""
    import json

    try:
        old = json.loads((RESULTS / "allocation.json").read_text())
    except (OSError, ValueError):
        return {}
    if old.get("quick") != quick:
        return {}
    kept = {name: old[name] for name in SECTIONS if name not in run_now and isinstance(old.get(name), dict)}
    for section in kept.values():
        section.setdefault("load_average_before", old.get("load_average_before"))  # the run that made it
    return kept


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 and 4 users, 2,000 slots")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of {', '.join(SECTIONS)}")
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        print(f"unknown section {unknown[0]!r}; use some of {', '.join(SECTIONS)}", file=sys.stderr)
        return 2
    load_before = list(os.getloadavg())
    results = run(args.quick, sections)
    for name in results:
        results[name]["load_average_before"] = load_before
    path = write_result("allocation", {"load_average_before": load_before, "quick": args.quick,
                                       **_kept_sections(sections, args.quick), **results})
    if "allocation" in results:
        report_allocation(results["allocation"])
    if "lyapunov" in results:
        report_lyapunov(results["lyapunov"])
    for name, report in REPORTS.items():
        if name in results:
            print(f"\n[{name}]")
            report(results[name])
    print(f"\nwrote {path} (load average before {load_before}, after {list(os.getloadavg())}; "
          f"cpu {host_description()['cpu']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
