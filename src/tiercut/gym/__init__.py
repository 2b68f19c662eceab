"""A gymnasium environment for choosing DNN partition plans under changing conditions, and its baselines.

- :mod:`tiercut.gym.processes`: how bandwidth and server load change over time
  (:class:`PiecewiseConstant`, :class:`MarkovChain`, :class:`LogRandomWalk`, or
  anything with ``values(times_s, rng)``);
- :mod:`tiercut.gym.task`: :class:`PartitionTask`, the problem side: a
  :class:`~tiercut.problem.Problem`, its condition processes, the candidate
  plans (the exact planner over a grid of bandwidths and loads) and the
  switching cost; every figure from the cost model;
- :mod:`tiercut.gym.env`: :class:`PartitionEnv`, the gymnasium environment;
- :mod:`tiercut.gym.policies`: static, greedy re-planning, the oracle (exact
  dynamic programming over the episode), random; :func:`rollout`,
  :func:`compare_policies`;
- :mod:`tiercut.gym.dqn`: :class:`DQN`, a small double DQN in torch.

Registering with gymnasium is explicit (no registration by import side
effect)::

    import gymnasium, tiercut.gym
    tiercut.gym.register()                         # id "tiercut/Partition-v0"
    env = gymnasium.make("tiercut/Partition-v0", task=task, episode_steps=100)

``gymnasium.make`` without ``task`` builds :func:`default_task` (VGG-16 on
the ``neurosurgeon-wifi`` preset, its link's bandwidth a Markov chain).
"""

from __future__ import annotations

from typing import Any

from tiercut.gym.dqn import DQN, DQNPolicy, Transitions
from tiercut.gym.env import ACTION_MODES, PartitionEnv
from tiercut.gym.policies import (
    EpisodeResult,
    GreedyPolicy,
    HysteresisPolicy,
    MyopicOracle,
    Oracle,
    Policy,
    PolicySummary,
    RandomPolicy,
    StaticPolicy,
    compare_policies,
    mean_conditions,
    rollout,
)
from tiercut.gym.processes import ConditionProcess, Constant, LogRandomWalk, MarkovChain, PiecewiseConstant
from tiercut.gym.task import DEFAULT_BANDWIDTH_GRID, CandidateSet, Conditions, PartitionTask

#: the id :func:`register` registers :class:`PartitionEnv` under
ENV_ID = "tiercut/Partition-v0"

#: bandwidth levels of :func:`default_task`, as factors of the link's nominal rate: an assumption of this
#: example (a good, a fair and a poor channel state), not a measured trace
DEFAULT_LEVELS = (0.25, 1.0, 4.0)


def default_task(
    model: str = "vgg16",
    environment: str = "neurosurgeon-wifi",
    *,
    levels: tuple[float, ...] = DEFAULT_LEVELS,
    stay_probability: float = 0.9,
    switching_weight: float = 0.01,
) -> PartitionTask:
    """A ready task: ``model`` on the preset ``environment``; every link touching the source follows a sticky
    Markov chain over ``levels`` times its nominal bandwidth (:meth:`MarkovChain.sticky`)."""
    import tiercut

    problem = tiercut.problem(tiercut.graph(model), tiercut.environment(environment))
    bandwidth: dict[tuple[str, str], ConditionProcess] = {}
    for link in problem.links:
        if problem.source in (link.a, link.b):
            a, b = (link.a, link.b) if link.a == problem.source else (link.b, link.a)
            nominal = link.direction(a, b).bandwidth_bytes_per_s
            bandwidth[(a, b)] = MarkovChain.sticky([nominal * f for f in levels], stay_probability)
    return PartitionTask(problem, bandwidth, switching_weight=switching_weight)


def make_env(task: PartitionTask | None = None, **kwargs: Any) -> PartitionEnv:
    """A :class:`PartitionEnv` over ``task`` (None: :func:`default_task`); the entry point :func:`register` names."""
    return PartitionEnv(task if task is not None else default_task(), **kwargs)


def register(env_id: str = ENV_ID, **kwargs: Any) -> str:
    """Register :class:`PartitionEnv` with gymnasium under ``env_id`` (once; again is a no-op); returns the id.

    ``kwargs`` are default keywords of :func:`make_env` (``gymnasium.make`` keywords override them).
    """
    import gymnasium

    if env_id not in gymnasium.registry:
        gymnasium.register(id=env_id, entry_point="tiercut.gym:make_env", kwargs=dict(kwargs))
    return env_id


__all__ = [
    "ACTION_MODES",
    "DEFAULT_BANDWIDTH_GRID",
    "DEFAULT_LEVELS",
    "DQN",
    "ENV_ID",
    "CandidateSet",
    "ConditionProcess",
    "Conditions",
    "Constant",
    "DQNPolicy",
    "EpisodeResult",
    "GreedyPolicy",
    "HysteresisPolicy",
    "LogRandomWalk",
    "MarkovChain",
    "MyopicOracle",
    "Oracle",
    "PartitionEnv",
    "PartitionTask",
    "PiecewiseConstant",
    "Policy",
    "PolicySummary",
    "RandomPolicy",
    "StaticPolicy",
    "Transitions",
    "compare_policies",
    "default_task",
    "make_env",
    "mean_conditions",
    "register",
    "rollout",
]
