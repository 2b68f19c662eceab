"""Learned partition policy vs static, greedy re-planning and the oracle (issue 17, tiercut.gym).

Scenario (``SCENARIO``): VGG-16 on the ``three-tier`` preset (a Jetson Nano
end device, a Xeon edge server, an A100 cloud GPU; figures sourced in the
preset). Each step is one second of queries; the objective is the latency of
a query (the cost model's, sequential). What changes:

- the end device's two links (Wi-Fi to the edge, LTE to the cloud) each
  follow a sticky Markov chain over 1/4x, 1x and 4x their preset rate
  (stay 0.95 per step, i.e. a state lasts 20 s on average);
- the edge server's load follows a sticky chain over 1 and 8 users sharing it;
- the agent's bandwidth estimates are one step old and carry a log-normal
  error of sigma 0.5 (a throughput sample of a fading link);
- a switch uploads the parameters the new plan needs on a server, charged
  0.01 s of latency per second of upload (about one query's worth per 100 s
  of upload: the rest is hidden behind queries that keep running on the old
  plan, as in IONN).

The levels, persistence, noise and weight are assumptions of this benchmark,
chosen so that each of the three candidate plans (all local, all on the
edge, all on the cloud) is best some of the time; they are not a measured
trace.

Policies, on the same held-out episodes (seeds never used in training):
static (best plan at the mean conditions), greedy (best plan for the last
estimate, every step), hysteresis (greedy, switching only after a predicted
gain over 20 % held for 3 steps: the runtime's adaptation rule), the DQN (tiercut.gym.DQN), the myopic oracle (best
plan for the true current conditions) and the oracle (the best plan sequence
for the true conditions with switching costs: dynamic programming, an upper
bound for every policy over these candidates).

``python benchmarks/dynamic_learned.py [--quick]`` writes
benchmarks/results/dynamic_learned.json and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

SCENARIO: dict[str, Any] = {
    "model": "vgg16",
    "environment": "three-tier",
    "bandwidth_levels": (0.25, 1.0, 4.0),
    "bandwidth_stay": 0.95,
    "edge_load_levels": (1.0, 8.0),
    "load_stay": 0.95,
    "estimate_noise": 0.5,
    "switching_weight": 0.01,
    "step_s": 1.0,
    "episode_steps": 200,
}


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def build_task(scenario: dict[str, Any]) -> Any:
    import tiercut
    import tiercut.gym as tg

    problem = tiercut.problem(tiercut.graph(scenario["model"]), tiercut.environment(scenario["environment"]))
    bandwidth = {}
    for link in problem.links:
        if problem.source in (link.a, link.b):
            a, b = (link.a, link.b) if link.a == problem.source else (link.b, link.a)
            nominal = link.direction(a, b).bandwidth_bytes_per_s
            bandwidth[(a, b)] = tg.MarkovChain.sticky(
                [nominal * f for f in scenario["bandwidth_levels"]], scenario["bandwidth_stay"], scenario["step_s"]
            )
    loads = {"edge": tg.MarkovChain.sticky(list(scenario["edge_load_levels"]), scenario["load_stay"], scenario["step_s"])}
    return tg.PartitionTask(
        problem, bandwidth, loads=loads, step_s=scenario["step_s"], load_grid=tuple(scenario["edge_load_levels"]),
        switching_weight=scenario["switching_weight"],
    )


def run(quick: bool = False) -> dict[str, Any]:
    import tiercut.gym as tg

    scenario = dict(SCENARIO)
    train_seeds = list(range(20))
    test_seeds = list(range(1000, 1003 if quick else 1020))
    dqn_settings = {
        "train_steps": 3_000 if quick else 30_000, "warmup_steps": 500, "hidden": 64, "gamma": 0.9,
        "learning_rate": 1e-3, "batch_size": 64, "train_every": 2, "target_every": 500, "epsilon_fraction": 0.4,
        "seed": 0,
    }
    load_before = os.getloadavg()
    task = build_task(scenario)
    start = time.perf_counter()
    candidates = task.candidates()
    candidates_s = time.perf_counter() - start
    env = tg.PartitionEnv(task, episode_steps=scenario["episode_steps"], estimate_noise=scenario["estimate_noise"])

    dqn = tg.DQN(**dqn_settings).fit(env, train_seeds)
    policies = [tg.StaticPolicy(), tg.GreedyPolicy(), tg.HysteresisPolicy(threshold=0.2, dwell=3), dqn.policy(),
                tg.MyopicOracle(), tg.Oracle(), tg.RandomPolicy(seed=0)]
    start = time.perf_counter()
    results = tg.compare_policies(env, policies, test_seeds)
    evaluate_s = time.perf_counter() - start
    oracle = results["oracle"].mean_reward
    table = []
    for name, summary in results.items():
        table.append({
            "policy": name,
            "mean_reward": summary.mean_reward,
            "median_episode_reward": float(np.median([e.mean_reward for e in summary.episodes])),
            "mean_latency_ms": summary.mean_latency_s * 1e3,
            "switches_per_episode": summary.switches,
            "reward_vs_oracle": summary.mean_reward / oracle,
            "wins_vs_greedy": int(sum(a.total_reward > b.total_reward for a, b in
                                      zip(summary.episodes, results["greedy"].episodes, strict=True))),
        })
    return {
        "benchmark": "dynamic_learned",
        "quick": quick,
        "scenario": {k: list(v) if isinstance(v, tuple) else v for k, v in scenario.items()},
        "candidates": [{"label": label, "devices": sorted(set(task.placement(row).values()))}
                       for label, row in zip(candidates.labels, candidates.placements, strict=True)],
        "candidates_s": candidates_s,
        "train_seeds": train_seeds,
        "test_seeds": test_seeds,
        "dqn": {"settings": dqn.get_params(), "fit_s": dqn.fit_s_, "episodes": len(dqn.episode_returns_),
                "first_returns": dqn.episode_returns_[:5], "last_returns": dqn.episode_returns_[-5:]},
        "evaluate_s": evaluate_s,
        "policies": table,
        "episodes": {name: [e.to_dict() for e in summary.episodes] for name, summary in results.items()},
        "machine": {"cpu": _cpu(), "cores": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short training run and 3 held-out episodes")
    args = parser.parse_args()
    result = run(quick=args.quick)
    out = Path(__file__).parent / "results" / "dynamic_learned.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=float) + "\n")
    report(result)
    print(f"wrote {out}")


def report(result: dict[str, Any]) -> None:
    """Print the policies table of a :func:`run` result."""
    print(f"{result['scenario']['model']} on {result['scenario']['environment']}: "
          f"{len(result['candidates'])} candidates ({', '.join(c['label'] for c in result['candidates'])}), "
          f"built in {result['candidates_s']:.1f} s")
    print(f"DQN: {result['dqn']['settings']['train_steps']} steps ({result['dqn']['episodes']} episodes) "
          f"in {result['dqn']['fit_s']:.1f} s; {len(result['test_seeds'])} held-out episodes")
    print(f"{'policy':<15}{'mean reward':>13}{'latency ms':>12}{'switches':>10}{'cost/oracle':>13}{'beats greedy':>14}")
    for row in result["policies"]:
        print(f"{row['policy']:<15}{row['mean_reward']:>13.4f}{row['mean_latency_ms']:>12.1f}"
              f"{row['switches_per_episode']:>10.1f}{row['reward_vs_oracle']:>13.2f}"
              f"{row['wins_vs_greedy']:>9}/{len(result['test_seeds'])}")
    m = result["machine"]
    print(f"machine: {m['cpu']}, {m['cores']} cores, load {m['loadavg_before'][0]:.1f} -> {m['loadavg_after'][0]:.1f}")


if __name__ == "__main__":
    main()
