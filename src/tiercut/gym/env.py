"""``PartitionEnv``: a gymnasium environment over the dynamic partition task.

Each step is one decision epoch of ``task.step_s`` seconds: the agent sees
its estimates of the tracked links' bandwidths and of the servers' loads
(what it measured during the previous steps) and the plan it runs now, and
chooses the plan for this step.

Observation (a flat ``Box`` of float32; :meth:`PartitionEnv.observation_names`
names every entry):

- for each tracked link, newest first over the last ``history`` steps:
  ``log2(estimate / nominal bandwidth)``, clipped to ``[-clip, clip]``; the
  estimate of a step is the true bandwidth of that step times
  ``exp(estimate_noise * N(0, 1))`` (a noisy throughput measurement);
- for each tracked server, newest first: ``log2(load)``, clipped to ``[0, clip]``;
- the current plan: a one-hot vector over the K candidates
  (``action_mode="candidates"``), or each non-input node's device index
  divided by ``D - 1`` (``action_mode="placement"``).

Action: ``Discrete(K)``, the index of a candidate plan
(:meth:`tiercut.gym.task.PartitionTask.candidates`), or, with
``action_mode="placement"``, ``MultiDiscrete([D] * n)``, a device per
non-input node in graph order (inputs stay on the source).

Reward: ``-(objective + switching cost)``: the problem objective (latency,
energy or the weighted sum it is configured with) of the chosen plan under
this step's true conditions, from the cost model
(:meth:`~tiercut.gym.task.PartitionTask.objectives`), plus
``switching_weight`` times the seconds of uploading the parameters it needs
on servers the previous plan did not use. A placement the cost model finds
invalid (a node on a device that cannot run it, an unreachable transfer) or
over a device's memory is refused: the previous plan stays and the reward is ``-invalid_penalty``
times the worst candidate's objective at this step (placement mode only).
An episode is truncated after ``episode_steps`` steps; it never terminates.

Same seed, same episode: every random draw (conditions, measurement noise)
is made at :meth:`reset` from the environment's seeded generator.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tiercut.errors import TiercutError
from tiercut.gym.task import CandidateSet, Conditions, PartitionTask
from tiercut.problem import Problem

try:
    import gymnasium
    from gymnasium import spaces
except ImportError as exc:  # pragma: no cover - the `gym` extra is installed with the dev set
    raise TiercutError("tiercut.gym needs gymnasium: pip install 'tiercut[gym]'") from exc

ACTION_MODES = ("candidates", "placement")


class PartitionEnv(gymnasium.Env):
    """Choose a DNN partition plan step by step while bandwidth and server load change (module docstring).

    Args:
        task: the problem, its condition processes and candidate plans.
        episode_steps: steps per episode (truncated after them).
        history: past steps of estimates in each observation.
        estimate_noise: sigma of the log-normal error of each bandwidth estimate (0: exact, one step late).
        action_mode: ``candidates`` (choose a plan) or ``placement`` (choose a device per node).
        initial_plan: candidate index running (and uploaded) at reset; None: the best candidate at nominal
            conditions.
        invalid_penalty: placement mode: the reward of an invalid placement is ``-invalid_penalty`` times the
            worst candidate's objective at that step.
        clip: bound of the log2 observation entries.
    """

    metadata = {"render_modes": ["ansi"]}

    def __init__(
        self,
        task: PartitionTask,
        *,
        episode_steps: int = 200,
        history: int = 4,
        estimate_noise: float = 0.0,
        action_mode: str = "candidates",
        initial_plan: int | None = None,
        invalid_penalty: float = 10.0,
        clip: float = 10.0,
        render_mode: str | None = None,
    ) -> None:
        if not isinstance(task, PartitionTask):
            raise TiercutError("PartitionEnv takes a tiercut.gym.PartitionTask")
        if int(episode_steps) < 1:
            raise TiercutError(f"episode_steps {episode_steps!r} must be >= 1")
        if int(history) < 1:
            raise TiercutError(f"history {history!r} must be >= 1")
        if not (math.isfinite(estimate_noise) and estimate_noise >= 0):
            raise TiercutError(f"estimate_noise {estimate_noise!r} must be a finite number >= 0")
        if action_mode not in ACTION_MODES:
            raise TiercutError(f"action_mode {action_mode!r} is not known; use {' or '.join(ACTION_MODES)}")
        if initial_plan is not None and int(initial_plan) < 0:
            raise TiercutError(f"initial_plan {initial_plan!r} must be a candidate index >= 0")
        if not (math.isfinite(invalid_penalty) and invalid_penalty >= 1):
            raise TiercutError(f"invalid_penalty {invalid_penalty!r} must be a finite number >= 1")
        if not (math.isfinite(clip) and clip > 0):
            raise TiercutError(f"clip {clip!r} must be a finite number > 0")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise TiercutError(f"render_mode {render_mode!r} is not supported; use 'ansi' or None")
        self.task = task
        self.episode_steps = int(episode_steps)
        self.history = int(history)
        self.estimate_noise = float(estimate_noise)
        self.action_mode = action_mode
        self.initial_plan = initial_plan
        self.invalid_penalty = float(invalid_penalty)
        self.clip = float(clip)
        self.render_mode = render_mode
        self._episode: _Episode | None = None
        self._spaces: tuple[spaces.Space, spaces.Space] | None = None

    def get_params(self) -> dict[str, Any]:
        """The constructor keywords (scikit-learn style), for logs and benchmarks."""
        return {
            "episode_steps": self.episode_steps,
            "history": self.history,
            "estimate_noise": self.estimate_noise,
            "action_mode": self.action_mode,
            "initial_plan": self.initial_plan,
            "invalid_penalty": self.invalid_penalty,
            "clip": self.clip,
        }

    # ----------------------------------------------------------- spaces (built on first use: the candidates are solved then)
    @property
    def candidates(self) -> CandidateSet:
        return self.task.candidates()

    def _free_nodes(self) -> np.ndarray:
        return np.array([i for i, node in enumerate(self.task.problem.graph) if not node.is_input], dtype=np.int64)

    def _build_spaces(self) -> tuple[spaces.Space, spaces.Space]:
        if self._spaces is None:
            L, S, h = len(self.task.links), len(self.task.servers), self.history
            if self.action_mode == "candidates":
                K = len(self.candidates)
                action: spaces.Space = spaces.Discrete(K)
                plan_low, plan_high = np.zeros(K), np.ones(K)
            else:
                n, D = len(self._free_nodes()), self.task.compiled.n_devices
                action = spaces.MultiDiscrete(np.full(n, D, dtype=np.int64))
                plan_low, plan_high = np.zeros(n), np.ones(n)
            low = np.concatenate([np.full(L * h, -self.clip), np.zeros(S * h), plan_low]).astype(np.float32)
            high = np.concatenate([np.full(L * h, self.clip), np.full(S * h, self.clip), plan_high]).astype(np.float32)
            self._spaces = (spaces.Box(low, high, dtype=np.float32), action)
        return self._spaces

    @property
    def observation_space(self) -> spaces.Space:  # type: ignore[override]
        return self._build_spaces()[0]

    @property
    def action_space(self) -> spaces.Space:  # type: ignore[override]
        return self._build_spaces()[1]

    def observation_names(self) -> list[str]:
        """What each entry of an observation holds, in order."""
        names = [f"log2_bw[{a}->{b}][t-{k}]" for k in range(1, self.history + 1) for a, b in self.task.links]
        names += [f"log2_load[{s}][t-{k}]" for k in range(1, self.history + 1) for s in self.task.servers]
        if self.action_mode == "candidates":
            names += [f"plan=={label}" for label in self.candidates.labels]
        else:
            graph = self.task.problem.graph
            names += [f"device[{graph.nodes[i].name}]" for i in self._free_nodes()]
        return names

    # ----------------------------------------------------------- episodes
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        task, h, T = self.task, self.history, self.episode_steps
        cands = self.candidates
        self._build_spaces()
        times = (np.arange(T + h) - h) * task.step_s
        conditions = task.sample(times, self.np_random)
        noise = np.exp(self.estimate_noise * self.np_random.standard_normal(conditions.bandwidth_bytes_per_s.shape))
        estimates = conditions.bandwidth_bytes_per_s * noise
        now = conditions.at(slice(h, None))
        batch = task.evaluate(cands.placements, now)
        objectives = batch.objective.reshape(T, -1)
        latency = batch.latency_s.reshape(T, -1)
        start = self.initial_plan
        if start is None:
            nominal = Conditions(np.zeros(1), task.nominal_bandwidth()[None, :], np.ones((1, len(task.servers))))
            start = int(np.argmin(task.objectives(cands.placements, nominal)[0]))
        if start >= len(cands):
            raise TiercutError(f"initial_plan {start} is not a candidate; there are {len(cands)} (0..{len(cands) - 1})")
        self._episode = _Episode(conditions, estimates, objectives, latency, start, cands.placements[start].copy())
        return self._observation(), {"step": 0, "plan": start}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        ep = self._episode
        if ep is None:
            raise TiercutError("call reset() before step()")
        if ep.t >= self.episode_steps:
            raise TiercutError("the episode is over (truncated); call reset()")
        t = ep.t
        task, cands = self.task, self.candidates
        if self.action_mode == "candidates":
            index = int(action)
            if not 0 <= index < len(cands):
                raise TiercutError(f"action {action!r} is not a candidate index 0..{len(cands) - 1}")
            new = cands.placements[index]
            objective = float(ep.objectives[t, index])
            latency = float(ep.latency_s[t, index])
            missing = cands.missing_bytes[ep.plan, index]
            valid = math.isfinite(objective)
        else:
            devices = np.asarray(action, dtype=np.int64).reshape(-1)
            free = self._free_nodes()
            if devices.shape != free.shape or devices.min(initial=0) < 0 or devices.max(initial=0) >= task.compiled.n_devices:
                raise TiercutError(f"action must be {len(free)} device indices in 0..{task.compiled.n_devices - 1}")
            new = np.full(task.compiled.n_nodes, task.compiled.source, dtype=np.int64)
            new[free] = devices
            same = np.flatnonzero((cands.placements == new[None, :]).all(axis=1))
            index = int(same[0]) if len(same) else -1  # the candidate it is, if any
            batch = task.evaluate(new[None, :], self._now(t))
            objective = float(batch.objective[0])
            latency = float(batch.latency_s[0])
            within_memory = bool(np.all(batch.memory_bytes[0] <= task.compiled.memory_limit))
            valid = bool(batch.valid[0]) and within_memory and math.isfinite(objective)
            missing = task.missing_bytes(ep.placement, new) if valid else np.zeros(task.compiled.n_devices)
        if not valid:
            worst = ep.objectives[t][np.isfinite(ep.objectives[t])]
            reward = -self.invalid_penalty * float(worst.max() if len(worst) else 1.0)
            switch = upload_s = 0.0
            objective = latency = math.inf
        else:
            upload_s = 0.0
            switch = 0.0
            if np.any(missing > 0):
                problem_now = self._problem_now(t)
                upload_s = task.upload_seconds(missing, problem_now)
                switch = task.switching_weight * upload_s
            reward = -(objective + switch)
            ep.plan = index
            ep.placement = new.copy()
        ep.t += 1
        info = {
            "step": t,
            "plan": ep.plan,
            "valid": valid,
            "objective": objective,
            "latency_s": latency,
            "switching_cost": switch,
            "upload_s": upload_s,
            "bandwidth_bytes_per_s": ep.conditions.bandwidth_bytes_per_s[self.history + t].copy(),
            "load": ep.conditions.load[self.history + t].copy(),
        }
        return self._observation(), float(reward), False, ep.t >= self.episode_steps, info

    def render(self) -> str | None:
        if self.render_mode != "ansi" or self._episode is None:
            return None
        ep = self._episode
        t = min(ep.t, self.episode_steps - 1)
        bw = ", ".join(f"{a}->{b} {v / 1e6:.2f} MB/s" for (a, b), v in
                       zip(self.task.links, ep.conditions.bandwidth_bytes_per_s[self.history + t], strict=True))
        plan = self.candidates.labels[ep.plan] if ep.plan >= 0 else "a placement outside the candidates"
        return f"step {ep.t}/{self.episode_steps}: plan {plan}; {bw}"

    # ----------------------------------------------------------- what baselines and the oracle read
    @property
    def episode(self) -> _Episode:
        """The current episode's true conditions and per-candidate objectives (for the oracle and the benchmarks)."""
        if self._episode is None:
            raise TiercutError("call reset() first")
        return self._episode

    def last_estimate(self) -> Conditions:
        """The most recent estimates the agent has: bandwidth and load measured during the previous step."""
        ep = self.episode
        i = self.history + ep.t - 1
        return Conditions(ep.conditions.times_s[i:i + 1], ep.estimates[i:i + 1], ep.conditions.load[i:i + 1])

    def action_for(self, candidate: int) -> int | np.ndarray:
        """The action that runs candidate plan ``candidate`` in this environment's action mode."""
        if self.action_mode == "candidates":
            return int(candidate)
        return self.candidates.placements[int(candidate)][self._free_nodes()].copy()

    def switching_costs(self) -> np.ndarray:
        """[T, K, K] the switching cost (objective units) of going from candidate i to j at each step."""
        ep = self.episode
        if ep.switch is None:
            cands, T, K = self.candidates, self.episode_steps, len(self.candidates)
            switch = np.zeros((T, K, K))
            if self.task.switching_weight > 0:
                for t in range(T):
                    problem_now = self._problem_now(t)
                    for i in range(K):
                        for j in range(K):
                            switch[t, i, j] = self.task.switching_cost(cands.missing_bytes[i, j], problem_now)
            ep.switch = switch
        return ep.switch

    def _now(self, t: int) -> Conditions:
        return self.episode.conditions.at(self.history + t)

    def _problem_now(self, t: int) -> Problem:
        ep = self.episode
        problem = ep.problems.get(t)
        if problem is None:
            now = self._now(t)
            problem = ep.problems[t] = self.task.problem_at(now.bandwidth_bytes_per_s[0], now.load[0])
        return problem

    def _observation(self) -> np.ndarray:
        ep = self.episode
        h, t, task = self.history, ep.t, self.task
        past = slice(t + h - 1, t - 1 if t > 0 else None, -1)  # newest first: steps t-1 .. t-h
        bw = np.log2(ep.estimates[past] / task.nominal_bandwidth()[None, :]).reshape(-1)
        load = np.log2(ep.conditions.load[past]).reshape(-1)
        if self.action_mode == "candidates":
            plan = np.zeros(len(self.candidates))
            plan[ep.plan] = 1.0
        else:
            D = task.compiled.n_devices
            plan = ep.placement[self._free_nodes()] / max(1, D - 1)
        obs = np.concatenate([np.clip(bw, -self.clip, self.clip), np.clip(load, 0.0, self.clip), plan])
        return obs.astype(np.float32)


class _Episode:
    """One episode's draws and state (mutable; owned by the environment)."""

    def __init__(self, conditions: Conditions, estimates: np.ndarray, objectives: np.ndarray, latency_s: np.ndarray,
                 plan: int, placement: np.ndarray) -> None:
        self.conditions = conditions  # [T + history] true conditions; index history + t is step t
        self.estimates = estimates  # [T + history, L] the agent's bandwidth measurements
        self.objectives = objectives  # [T, K] each candidate's objective at each step
        self.latency_s = latency_s  # [T, K] and its latency
        self.start_plan = plan
        self.plan = plan  # the candidate running now (-1: a placement that is no candidate)
        self.placement = placement
        self.t = 0
        self.switch: np.ndarray | None = None
        self.problems: dict[int, Problem] = {}


__all__ = ["ACTION_MODES", "PartitionEnv"]
