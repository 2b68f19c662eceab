"""Baseline policies for :class:`~tiercut.gym.env.PartitionEnv`, and episode roll-outs.

Each policy chooses among the candidate plans (in either action mode, through
:meth:`PartitionEnv.action_for`):

- :class:`StaticPolicy`: one plan for the whole episode, the best candidate
  at the processes' mean conditions (a long seeded sample of them): what a
  planner run once at deployment does;
- :class:`GreedyPolicy`: the best candidate for the last observed conditions
  (the agent's estimates, one step old), ignoring the switching cost:
  Neurosurgeon-style re-planning at every step (Kang et al., ASPLOS'17
  re-partition on bandwidth changes);
- :class:`HysteresisPolicy`: greedy, but it switches only when the predicted
  gain exceeds a threshold for a dwell of several steps (the runtime's rule);
- :class:`MyopicOracle`: the best candidate for the true current conditions,
  step by step (knows the present, not the future; ignores switching);
- :class:`Oracle`: the best sequence of candidates for the whole episode,
  knowing every step's true conditions, with the switching costs: dynamic
  programming over (step, plan), exact under the switching model of
  :mod:`tiercut.gym.task`. No policy that chooses among the candidates can
  earn more on the same episode;
- :class:`RandomPolicy`: a uniformly random candidate (seeded).

:func:`rollout` runs one seeded episode and returns an :class:`EpisodeResult`;
:func:`compare_policies` runs several policies on the same seeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from tiercut.errors import TiercutError
from tiercut.gym.env import PartitionEnv
from tiercut.gym.task import Conditions, PartitionTask


class Policy(Protocol):
    """Chooses an action each step. ``begin`` is called after every ``env.reset``."""

    name: str

    def begin(self, env: PartitionEnv) -> None:
        """Prepare for the episode ``env`` has just reset."""

    def act(self, observation: np.ndarray, env: PartitionEnv) -> Any:
        """The action for this step."""


def mean_conditions(task: PartitionTask, steps: int = 10_000, seed: int = 0) -> Conditions:
    """The time-average of ``steps`` seeded steps of the task's processes (one row)."""
    sample = task.sample(np.arange(steps) * task.step_s, np.random.default_rng(seed))
    return Conditions(
        np.zeros(1), sample.bandwidth_bytes_per_s.mean(axis=0, keepdims=True), sample.load.mean(axis=0, keepdims=True)
    )


@dataclass
class StaticPolicy:
    """The candidate best at the mean conditions, for the whole episode (``steps``, ``seed``: the sample)."""

    steps: int = 10_000
    seed: int = 0
    name: str = "static"
    choice: int | None = field(default=None, init=False)

    def begin(self, env: PartitionEnv) -> None:
        if self.choice is None:
            objectives = env.task.objectives(env.candidates.placements, mean_conditions(env.task, self.steps, self.seed))
            self.choice = int(np.argmin(objectives[0]))

    def act(self, observation: np.ndarray, env: PartitionEnv) -> Any:
        assert self.choice is not None, "begin() first"
        return env.action_for(self.choice)


@dataclass
class GreedyPolicy:
    """The candidate best for the last observed conditions (re-plans every step; switching not counted)."""

    name: str = "greedy"

    def begin(self, env: PartitionEnv) -> None:
        return None

    def act(self, observation: np.ndarray, env: PartitionEnv) -> Any:
        objectives = env.task.objectives(env.candidates.placements, env.last_estimate())
        return env.action_for(int(np.argmin(objectives[0])))


@dataclass
class HysteresisPolicy:
    """Greedy re-planning with hysteresis: switch to the best candidate for the last estimate only when its
    predicted gain over the current plan exceeds ``threshold`` (a fraction of the current plan's objective)
    for ``dwell`` consecutive steps (the runtime's adaptation rule, ``tiercut run --adapt``)."""

    threshold: float = 0.2
    dwell: int = 3
    name: str = "hysteresis"
    _streak: int = field(default=0, init=False)
    _target: int = field(default=-1, init=False)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.threshold) and self.threshold >= 0):
            raise TiercutError(f"hysteresis threshold {self.threshold!r} must be a finite number >= 0")
        if int(self.dwell) < 1:
            raise TiercutError(f"hysteresis dwell {self.dwell!r} must be >= 1 step")

    def begin(self, env: PartitionEnv) -> None:
        self._streak, self._target = 0, -1

    def act(self, observation: np.ndarray, env: PartitionEnv) -> Any:
        current = env.episode.plan
        objectives = env.task.objectives(env.candidates.placements, env.last_estimate())[0]
        best = int(np.argmin(objectives))
        if current < 0:  # running a placement outside the candidates (placement mode): take the best one
            return env.action_for(best)
        gain = objectives[current] - objectives[best]
        if best != current and gain > self.threshold * objectives[current]:
            self._streak = self._streak + 1 if best == self._target else 1
            self._target = best
        else:
            self._streak, self._target = 0, -1
        if self._streak >= self.dwell:
            self._streak, self._target = 0, -1
            return env.action_for(best)
        return env.action_for(current)


@dataclass
class MyopicOracle:
    """The candidate best for the true current conditions (switching not counted)."""

    name: str = "oracle-myopic"

    def begin(self, env: PartitionEnv) -> None:
        return None

    def act(self, observation: np.ndarray, env: PartitionEnv) -> Any:
        ep = env.episode
        return env.action_for(int(np.argmin(ep.objectives[ep.t])))


@dataclass
class Oracle:
    """The best plan sequence for the episode's true conditions, switching costs included (dynamic programming).

    ``V[t, j] = objective[t, j] + min_i (V[t-1, i] + switch[t, i, j])`` with
    ``V[-1]`` zero at the episode's starting plan only; the plan sequence is
    read back from the arg-mins. O(T K^2).
    """

    name: str = "oracle"
    plan: list[int] = field(default_factory=list, init=False)
    value: float = field(default=math.nan, init=False)

    def begin(self, env: PartitionEnv) -> None:
        ep = env.episode
        objective = np.where(np.isfinite(ep.objectives), ep.objectives, np.inf)
        switch = env.switching_costs()
        T, K = objective.shape
        previous = np.full(K, np.inf)
        previous[ep.start_plan] = 0.0
        back = np.zeros((T, K), dtype=np.int64)
        for t in range(T):
            total = previous[:, None] + switch[t]  # [i, j]
            back[t] = np.argmin(total, axis=0)
            previous = total[back[t], np.arange(K)] + objective[t]
        last = int(np.argmin(previous))
        self.value = float(previous[last])
        plan = [last]
        for t in range(T - 1, 0, -1):
            plan.append(int(back[t, plan[-1]]))
        self.plan = plan[::-1]

    def act(self, observation: np.ndarray, env: PartitionEnv) -> Any:
        return env.action_for(self.plan[env.episode.t])


@dataclass
class RandomPolicy:
    """A uniformly random candidate each step (its own seeded generator)."""

    seed: int = 0
    name: str = "random"
    rng: np.random.Generator = field(init=False)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    def begin(self, env: PartitionEnv) -> None:
        return None

    def act(self, observation: np.ndarray, env: PartitionEnv) -> Any:
        return env.action_for(int(self.rng.integers(len(env.candidates))))


@dataclass(frozen=True)
class EpisodeResult:
    """One policy's episode.

    Attributes:
        policy, seed: who played which episode.
        total_reward: the return (sum of rewards).
        mean_reward: per step.
        mean_objective: the plans' mean objective (no switching cost).
        mean_latency_s: the plans' mean latency (cost model, true conditions).
        switches: steps that uploaded parameters to a server.
        upload_s: summed seconds of those uploads.
        plans: the candidate run at each step (-1 where it was not a candidate).
    """

    policy: str
    seed: int
    total_reward: float
    mean_reward: float
    mean_objective: float
    mean_latency_s: float
    switches: int
    upload_s: float
    plans: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy, "seed": self.seed, "total_reward": self.total_reward, "mean_reward": self.mean_reward,
            "mean_objective": self.mean_objective, "mean_latency_s": self.mean_latency_s, "switches": self.switches,
            "upload_s": self.upload_s,
        }


def rollout(env: PartitionEnv, policy: Policy, seed: int) -> EpisodeResult:
    """Play one episode of ``env`` reset with ``seed`` with ``policy``."""
    observation, _ = env.reset(seed=seed)
    policy.begin(env)
    rewards, objectives, latencies, plans = [], [], [], []
    switches, upload_s = 0, 0.0
    done = False
    while not done:
        observation, reward, terminated, truncated, info = env.step(policy.act(observation, env))
        rewards.append(reward)
        objectives.append(info["objective"])
        latencies.append(info["latency_s"])
        plans.append(int(info["plan"]))
        switches += int(info["upload_s"] > 0)
        upload_s += float(info["upload_s"])
        done = terminated or truncated
    return EpisodeResult(
        policy=policy.name,
        seed=seed,
        total_reward=float(np.sum(rewards)),
        mean_reward=float(np.mean(rewards)),
        mean_objective=float(np.mean(objectives)),
        mean_latency_s=float(np.mean(latencies)),
        switches=switches,
        upload_s=upload_s,
        plans=tuple(plans),
    )


@dataclass(frozen=True)
class PolicySummary:
    """A policy over several episodes: means of its :class:`EpisodeResult` figures."""

    policy: str
    episodes: tuple[EpisodeResult, ...]

    @property
    def mean_reward(self) -> float:
        return float(np.mean([e.mean_reward for e in self.episodes]))

    @property
    def mean_objective(self) -> float:
        return float(np.mean([e.mean_objective for e in self.episodes]))

    @property
    def mean_latency_s(self) -> float:
        return float(np.mean([e.mean_latency_s for e in self.episodes]))

    @property
    def switches(self) -> float:
        return float(np.mean([e.switches for e in self.episodes]))

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy, "mean_reward": self.mean_reward, "mean_objective": self.mean_objective,
            "mean_latency_s": self.mean_latency_s, "switches_per_episode": self.switches,
            "episodes": [e.to_dict() for e in self.episodes],
        }


def compare_policies(env: PartitionEnv, policies: Sequence[Policy], seeds: Sequence[int]) -> dict[str, PolicySummary]:
    """Every policy on every seed's episode (the same episodes for all): policy name -> summary."""
    names = [p.name for p in policies]
    if len(set(names)) != len(names):
        raise TiercutError(f"compare_policies: two policies share a name ({names}); name them apart")
    return {p.name: PolicySummary(p.name, tuple(rollout(env, p, int(s)) for s in seeds)) for p in policies}


__all__ = [
    "EpisodeResult",
    "GreedyPolicy",
    "HysteresisPolicy",
    "MyopicOracle",
    "Oracle",
    "Policy",
    "PolicySummary",
    "RandomPolicy",
    "StaticPolicy",
    "compare_policies",
    "mean_conditions",
    "rollout",
]
