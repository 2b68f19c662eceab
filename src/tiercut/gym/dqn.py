"""A small deep Q-network for :class:`~tiercut.gym.env.PartitionEnv` (candidate actions), in torch on the CPU.

The learned baseline of the survey's RL planners (FEPD, Ren et al., IEEE
Trans. Services Computing 2021; EAIOD, Xu et al., IEEE TPDS 32(4) 2020) and
of the DQN partitioners since (DPTO, Zhang et al., "Joint DNN partitioning
and task offloading in mobile edge computing via deep reinforcement
learning", J. Cloud Computing 12:116, 2023, which re-partitions as the
channel changes; POADQ, IET Communications 2025, doi:10.1049/cmu2.70048,
whose DQN picks the partition point): a multilayer perceptron maps an
observation to one Q-value per candidate plan, trained by DQN (Mnih et al.,
Nature 2015: experience replay, a target network, epsilon-greedy
exploration) with the double-DQN target (van Hasselt et al., AAAI 2016) and
the Huber loss.

Rewards are divided by a scale fixed after the warm-up (the mean absolute
reward of the random warm-up steps), so one learning rate suits seconds and
joules alike. Everything is seeded: the same settings, environment and seeds
give the same network (torch's CPU kernels are deterministic on one thread,
which :meth:`DQN.fit` uses by default and restores afterwards).

Settings are constructor keywords (scikit-learn style); :meth:`DQN.fit`
does the work and sets the fitted attributes (``q_network_``,
``episode_returns_``, ``fit_s_``, ``reward_scale_``).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tiercut.errors import TiercutError
from tiercut.gym.env import PartitionEnv
from tiercut.settings import Configurable


def _torch() -> Any:
    import torch

    return torch


class DQN(Configurable):
    """Double DQN with experience replay over the candidate plans (module docstring).

    Args:
        hidden: width of the two hidden layers.
        gamma: discount factor.
        learning_rate: Adam's step size.
        batch_size: transitions per update.
        buffer_size: replay memory (transitions).
        train_steps: environment steps of training.
        warmup_steps: random steps before the first update (they also fix the reward scale).
        epsilon_start, epsilon_end: exploration, decayed linearly ...
        epsilon_fraction: ... over this fraction of ``train_steps``.
        target_every: steps between copies of the online network into the target network.
        train_every: environment steps between two gradient steps.
        seed: seeds torch's initialisation, exploration and replay sampling.
        n_threads: torch threads while fitting (restored afterwards).
    """

    kind = "learner"

    def __init__(
        self,
        *,
        hidden: int = 64,
        gamma: float = 0.9,
        learning_rate: float = 1e-3,
        batch_size: int = 64,
        buffer_size: int = 20_000,
        train_steps: int = 10_000,
        warmup_steps: int = 500,
        epsilon_start: float = 1.0,
        epsilon_end: float = 0.05,
        epsilon_fraction: float = 0.5,
        target_every: int = 250,
        train_every: int = 1,
        seed: int = 0,
        n_threads: int = 1,
    ) -> None:
        self.hidden = hidden
        self.gamma = gamma
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.buffer_size = buffer_size
        self.train_steps = train_steps
        self.warmup_steps = warmup_steps
        self.epsilon_start = epsilon_start
        self.epsilon_end = epsilon_end
        self.epsilon_fraction = epsilon_fraction
        self.target_every = target_every
        self.train_every = train_every
        self.seed = seed
        self.n_threads = n_threads

    def _check(self) -> None:
        for key in ("hidden", "batch_size", "buffer_size", "train_steps", "target_every", "train_every", "n_threads"):
            if int(getattr(self, key)) < 1:
                raise TiercutError(f"DQN: {key} {getattr(self, key)!r} must be >= 1")
        if int(self.warmup_steps) < 0:
            raise TiercutError(f"DQN: warmup_steps {self.warmup_steps!r} must be >= 0")
        if not 0.0 <= self.gamma < 1.0:
            raise TiercutError(f"DQN: gamma {self.gamma!r} must be in [0, 1)")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise TiercutError(f"DQN: learning_rate {self.learning_rate!r} must be > 0")
        for key in ("epsilon_start", "epsilon_end", "epsilon_fraction"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise TiercutError(f"DQN: {key} {getattr(self, key)!r} must be in [0, 1]")

    # ----------------------------------------------------------- network
    def _network(self, n_inputs: int, n_actions: int) -> Any:
        nn = _torch().nn
        return nn.Sequential(
            nn.Linear(n_inputs, self.hidden), nn.ReLU(), nn.Linear(self.hidden, self.hidden), nn.ReLU(),
            nn.Linear(self.hidden, n_actions),
        )

    def epsilon(self, step: int) -> float:
        """Exploration rate at training step ``step``."""
        span = max(1.0, self.epsilon_fraction * self.train_steps)
        frac = min(1.0, step / span)
        return self.epsilon_start + frac * (self.epsilon_end - self.epsilon_start)

    def update(self, network: Any, target: Any, optimizer: Any, batch: Transitions) -> float:
        """One double-DQN gradient step on ``batch`` (rewards already scaled); returns the Huber loss before it."""
        torch = _torch()
        obs = torch.as_tensor(batch.observations)
        actions = torch.as_tensor(batch.actions, dtype=torch.int64)
        rewards = torch.as_tensor(batch.rewards, dtype=torch.float32)
        next_obs = torch.as_tensor(batch.next_observations)
        not_done = 1.0 - torch.as_tensor(batch.terminal, dtype=torch.float32)
        q = network(obs).gather(1, actions[:, None]).squeeze(1)
        with torch.no_grad():
            best = network(next_obs).argmax(dim=1, keepdim=True)
            target_q = rewards + self.gamma * not_done * target(next_obs).gather(1, best).squeeze(1)
        loss = torch.nn.functional.smooth_l1_loss(q, target_q)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    # ----------------------------------------------------------- training
    def fit(self, env: PartitionEnv, seeds: Sequence[int]) -> DQN:
        """Train on episodes of ``env`` reset with ``seeds`` in turn (cycling) for ``train_steps`` steps."""
        self._check()
        if env.action_mode != "candidates":
            raise TiercutError("DQN chooses among candidate plans; use PartitionEnv(action_mode='candidates')")
        if not seeds:
            raise TiercutError("DQN.fit needs at least one training seed")
        torch = _torch()
        threads = torch.get_num_threads()
        start = time.perf_counter()
        try:
            torch.set_num_threads(int(self.n_threads))
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(self.seed))
                self._fit(env, [int(s) for s in seeds])
        finally:
            torch.set_num_threads(threads)
        self.fit_s_ = time.perf_counter() - start
        return self

    def _fit(self, env: PartitionEnv, seeds: list[int]) -> None:
        torch = _torch()
        rng = np.random.default_rng(self.seed)
        n_actions = int(env.action_space.n)
        n_inputs = int(np.prod(env.observation_space.shape))
        network = self._network(n_inputs, n_actions)
        target = copy.deepcopy(network)
        optimizer = torch.optim.Adam(network.parameters(), lr=self.learning_rate)
        memory = _Replay(int(self.buffer_size), n_inputs)
        returns: list[float] = []
        losses: list[float] = []
        scale: float | None = None
        episode = 0
        obs, _ = env.reset(seed=seeds[0])
        total = 0.0
        for step in range(int(self.train_steps)):
            if step < self.warmup_steps or rng.random() < self.epsilon(step):
                action = int(rng.integers(n_actions))
            else:
                with torch.no_grad():
                    action = int(network(torch.as_tensor(obs[None, :])).argmax(dim=1)[0])
            next_obs, reward, terminated, truncated, _ = env.step(action)
            total += reward
            memory.add(obs, action, reward, next_obs, terminated)
            obs = next_obs
            if terminated or truncated:
                returns.append(total)
                total = 0.0
                episode += 1
                obs, _ = env.reset(seed=seeds[episode % len(seeds)])
            if step + 1 < self.warmup_steps or len(memory) < self.batch_size or (step + 1) % int(self.train_every):
                continue
            if scale is None:
                scale = max(1e-12, float(np.mean(np.abs(memory.rewards[: len(memory)]))))
            batch = memory.sample(rng, int(self.batch_size), scale)
            losses.append(self.update(network, target, optimizer, batch))
            if (step + 1) % int(self.target_every) == 0:
                target.load_state_dict(network.state_dict())
        self.q_network_ = network
        self.reward_scale_ = scale if scale is not None else 1.0
        self.episode_returns_ = returns
        self.losses_ = losses
        self.n_actions_ = n_actions

    # ----------------------------------------------------------- acting
    def q_values(self, observation: np.ndarray) -> np.ndarray:
        """The fitted network's Q-values of ``observation`` (one per candidate)."""
        torch = _torch()
        if not hasattr(self, "q_network_"):
            raise TiercutError("DQN: call fit() before using it")
        with torch.no_grad():
            return self.q_network_(torch.as_tensor(np.asarray(observation, dtype=np.float32)[None, :]))[0].numpy()

    def policy(self, name: str = "dqn") -> DQNPolicy:
        """The greedy policy of the fitted network."""
        if not hasattr(self, "q_network_"):
            raise TiercutError("DQN: call fit() before asking for its policy")
        return DQNPolicy(self, name)


@dataclass
class DQNPolicy:
    """Acts greedily on a fitted :class:`DQN`'s Q-values."""

    model: DQN
    name: str = "dqn"

    def begin(self, env: PartitionEnv) -> None:
        if int(env.action_space.n) != self.model.n_actions_:
            raise TiercutError(f"this DQN chooses among {self.model.n_actions_} candidates; the environment has "
                               f"{env.action_space.n}")

    def act(self, observation: np.ndarray, env: PartitionEnv) -> Any:
        return int(np.argmax(self.model.q_values(observation)))


@dataclass(frozen=True)
class Transitions:
    """A batch of transitions (arrays with one row per transition)."""

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminal: np.ndarray


class _Replay:
    """A ring buffer of transitions."""

    def __init__(self, capacity: int, n_inputs: int) -> None:
        self.capacity = capacity
        self.observations = np.zeros((capacity, n_inputs), dtype=np.float32)
        self.next_observations = np.zeros((capacity, n_inputs), dtype=np.float32)
        self.actions = np.zeros(capacity, dtype=np.int64)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.terminal = np.zeros(capacity, dtype=bool)
        self.size = 0
        self.next = 0

    def __len__(self) -> int:
        return self.size

    def add(self, obs: np.ndarray, action: int, reward: float, next_obs: np.ndarray, terminal: bool) -> None:
        i = self.next
        self.observations[i] = obs
        self.actions[i] = action
        self.rewards[i] = reward
        self.next_observations[i] = next_obs
        self.terminal[i] = terminal
        self.next = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, rng: np.random.Generator, n: int, scale: float) -> Transitions:
        index = rng.integers(self.size, size=n)
        return Transitions(
            self.observations[index], self.actions[index], (self.rewards[index] / scale).astype(np.float32),
            self.next_observations[index], self.terminal[index],
        )


__all__ = ["DQN", "DQNPolicy", "Transitions"]
