"""tiercut.gym: the environment passes gymnasium's checker, is reproducible per seed, its figures are the cost
model's, the oracle is never beaten, and the DQN learns."""

from __future__ import annotations

import subprocess
import sys

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import tiercut.gym as tg
from tiercut.cost import evaluate
from tiercut.env import Link
from tiercut.errors import TiercutError
from tiercut.graph.types import LayerGraph, Node
from tiercut.problem import Objective, Problem, ProblemDevice
from tiercut.sim import BandwidthTrace
from tiercut.upload.analytic import upload_seconds


def chain_problem(objective: str = "latency") -> Problem:
    """A 4-layer chain over end, edge and cloud whose best cut moves with the end-edge bandwidth:
    all local when it is poor, a cut after ``b`` (50 kB) or ``a`` in between, all on the edge when it is good."""
    nodes = [
        Node("x", "input", out_bytes=1_000_000),
        Node("a", "conv2d", ("x",), flops=10**8, param_bytes=4_000, out_bytes=400_000),
        Node("b", "conv2d", ("a",), flops=10**8, param_bytes=40_000, out_bytes=50_000),
        Node("c", "conv2d", ("b",), flops=10**8, param_bytes=400_000, out_bytes=10_000),
        Node("d", "linear", ("c",), flops=10**7, param_bytes=2_000_000, out_bytes=400, is_output=True),
    ]
    devices = (
        ProblemDevice("end", "end", 3.0, 1.5, 1.0, 0.3),
        ProblemDevice("edge", "edge", 50.0, 2.0, 2.0),
        ProblemDevice("cloud", "cloud", 200.0, 2.0, 2.0),
    )
    speed = {"end": 1e9, "edge": 2e10, "cloud": 1e11}
    compute = {n.name: {d: n.flops / s for d, s in speed.items()} for n in nodes if not n.is_input}
    links = (
        Link("end", "edge", 2e6, 0.002),
        Link("end", "cloud", 1e6, 0.03, bandwidth_bytes_per_s_ba=3e6),  # a slower uplink
        Link("edge", "cloud", 1e7, 0.01),
    )
    return Problem(LayerGraph(nodes, model="chain"), devices, links, "end", compute, Objective.parse(objective))


def make_task(switching_weight: float = 0.05, **kwargs) -> tg.PartitionTask:
    bandwidth = {
        ("end", "edge"): tg.MarkovChain.sticky([0.5e6, 2e6, 8e6], 0.8),
        ("end", "cloud"): tg.LogRandomWalk(1e6, volatility=0.3, reversion=0.2),
    }
    loads = {"edge": tg.MarkovChain.sticky([1.0, 4.0], 0.9)}
    return tg.PartitionTask(chain_problem(**kwargs), bandwidth, loads=loads, load_grid=(1.0, 4.0),
                            switching_weight=switching_weight)


@pytest.fixture(scope="module")
def task() -> tg.PartitionTask:
    return make_task()


def make_env(task: tg.PartitionTask, **kwargs) -> tg.PartitionEnv:
    return tg.PartitionEnv(task, **{"episode_steps": 30, "estimate_noise": 0.2, **kwargs})


def play(env: tg.PartitionEnv, seed: int, actions_seed: int = 7):
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(actions_seed)
    out = [obs]
    done = False
    while not done:
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        out.append((obs, reward, info["objective"], info["upload_s"]))
        done = terminated or truncated
    return out


# ---------------------------------------------------------------- the gymnasium contract
@pytest.mark.parametrize("mode", tg.ACTION_MODES)
def test_check_env_passes(task, mode):
    check_env(make_env(task, action_mode=mode), skip_render_check=True)


def test_registered_explicitly_and_made_by_id(task):
    code = "import gymnasium, tiercut.gym; print('tiercut/Partition-v0' in gymnasium.registry)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"  # importing registers nothing
    assert tg.register() == tg.ENV_ID and tg.register() == tg.ENV_ID  # again: a no-op
    env = gymnasium.make(tg.ENV_ID, task=task, episode_steps=10)
    check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=3)
    assert env.observation_space.contains(obs)
    env.close()


@pytest.mark.slow
def test_the_registered_default_is_vgg16_on_a_markov_wifi_link():
    tg.register()
    env = gymnasium.make(tg.ENV_ID, episode_steps=5)
    check_env(env.unwrapped, skip_render_check=True)
    task = env.unwrapped.task
    assert task.problem.graph.model == "vgg16" and task.links == [("mobile", "cloud")]
    assert len(task.candidates()) >= 2
    env.close()


def test_episodes_are_reproducible_per_seed(task):
    first, again = play(make_env(task), 11), play(make_env(task), 11)
    other = play(make_env(task), 12)
    np.testing.assert_array_equal(first[0], again[0])
    for a, b in zip(first[1:], again[1:], strict=True):
        np.testing.assert_array_equal(a[0], b[0])
        assert a[1:] == b[1:]
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(first[1:], other[1:], strict=True))


def test_spaces_are_the_documented_ones(task):
    env = make_env(task, history=3)
    K, L, S, h = len(task.candidates()), 2, 1, 3
    assert env.action_space == gymnasium.spaces.Discrete(K)
    assert env.observation_space.shape == (L * h + S * h + K,)
    assert env.observation_space.dtype == np.float32
    names = env.observation_names()
    assert len(names) == env.observation_space.shape[0]
    assert names[0] == "log2_bw[end->edge][t-1]" and names[L * h] == "log2_load[edge][t-1]"
    obs, info = env.reset(seed=5)
    ep = env.episode
    # the newest bandwidth entries are the estimates of the step before, relative to the nominal rates
    np.testing.assert_allclose(obs[:L], np.log2(ep.estimates[h - 1] / task.nominal_bandwidth()), rtol=1e-5)
    np.testing.assert_allclose(obs[L:2 * L], np.log2(ep.estimates[h - 2] / task.nominal_bandwidth()), rtol=1e-5)
    np.testing.assert_allclose(obs[L * h], np.log2(ep.conditions.load[h - 1, 0]), rtol=1e-5)
    onehot = obs[-K:]
    assert onehot.sum() == 1 and onehot[info["plan"]] == 1
    obs, *_ = env.step(K - 1)
    assert obs[-K:][K - 1] == 1

    placement = make_env(task, action_mode="placement")
    assert placement.action_space == gymnasium.spaces.MultiDiscrete([3, 3, 3, 3])  # a device per non-input node
    assert placement.observation_space.shape == (L * 4 + S * 4 + 4,)


def test_without_noise_the_estimate_is_the_last_step_true_bandwidth(task):
    env = make_env(task, estimate_noise=0.0)
    env.reset(seed=2)
    env.step(0)
    ep = env.episode
    np.testing.assert_array_equal(env.last_estimate().bandwidth_bytes_per_s[0], ep.conditions.bandwidth_bytes_per_s[env.history])


# ---------------------------------------------------------------- figures from the cost model
def test_reward_is_the_cost_model_figure_under_the_step_conditions():
    task = make_task(switching_weight=0.05, objective="weighted:latency=1,energy_source=0.1")
    env = make_env(task)
    env.reset(seed=4)
    cands = task.candidates()
    for t, action in enumerate([0, 0, 2, 1, 1, 3, 0]):
        previous = env.episode.plan
        _, reward, _, _, info = env.step(action)
        problem_now = task.problem_at(info["bandwidth_bytes_per_s"], info["load"])
        placement = task.placement(cands.placements[action])
        reference = evaluate(problem_now, placement)  # the scalar reference cost model
        assert info["objective"] == pytest.approx(reference.objective_value, rel=1e-9)
        assert info["latency_s"] == pytest.approx(reference.latency_s, rel=1e-9)
        missing = cands.missing_bytes[previous, action]
        expected_upload = sum(upload_seconds(problem_now, problem_now.device_names[d], b) for d, b in enumerate(missing) if b)
        assert info["upload_s"] == pytest.approx(expected_upload, rel=1e-9)
        assert reward == pytest.approx(-(reference.objective_value + 0.05 * expected_upload), rel=1e-9)
        assert info["step"] == t


def test_the_step_latency_is_what_the_simulator_measures_event_by_event(task):
    env = make_env(task)
    env.reset(seed=6)
    cands = task.candidates()
    for action in range(len(cands)):
        _, _, _, _, info = env.step(action)
        simulated = task.simulated_latency_s(cands.placements[action], info["bandwidth_bytes_per_s"], info["load"],
                                             queries=2)
        assert simulated == pytest.approx(info["latency_s"], rel=1e-9)


def test_each_candidate_is_optimal_at_the_conditions_it_was_planned_for(task):
    cands = task.candidates()
    assert len(cands) >= 3 and cands.labels[0] == "local"
    nominal = task.nominal_bandwidth()
    for k in range(1, len(cands)):
        conditions = tg.Conditions(np.zeros(1), nominal[None, :] * cands.bandwidth_factors[k][None, :],
                                   np.full((1, 1), cands.load_factors[k]))
        objectives = task.objectives(cands.placements, conditions)[0]
        assert objectives[k] <= objectives.min() * (1 + 1e-9)


def test_a_product_grid_plans_every_combination_of_link_factors(task):
    product = tg.PartitionTask(task.problem, dict(task.bandwidth), loads=dict(task.loads), load_grid=task.load_grid,
                               bandwidth_grid=(0.25, 4.0), grid="product")
    cands = product.candidates()
    joint = {tuple(row) for row in tg.PartitionTask(task.problem, dict(task.bandwidth), bandwidth_grid=(0.25, 4.0),
                                                    loads=dict(task.loads), load_grid=task.load_grid)
             .candidates().placements}
    assert joint <= {tuple(row) for row in cands.placements}  # the joint points are among the product's
    assert cands.bandwidth_factors.shape == (len(cands), 2)
    nominal = product.nominal_bandwidth()
    for k in range(1, len(cands)):
        conditions = tg.Conditions(np.zeros(1), nominal[None, :] * cands.bandwidth_factors[k][None, :],
                                   np.full((1, 1), cands.load_factors[k]))
        objectives = product.objectives(cands.placements, conditions)[0]
        assert objectives[k] <= objectives.min() * (1 + 1e-9)


def test_missing_bytes_count_what_the_new_plan_needs_on_each_server(task):
    cands = task.candidates()
    edge = task.problem.device_index("edge")
    local, all_edge = 0, int(np.argmax([(row[1:] == edge).all() for row in cands.placements]))
    assert cands.missing_bytes[local, all_edge, edge] == 4_000 + 40_000 + 400_000 + 2_000_000
    assert cands.missing_bytes[all_edge, local].sum() == 0  # going local uploads nothing
    assert np.all(cands.missing_bytes[np.arange(len(cands)), np.arange(len(cands))] == 0)


def test_placement_mode_refuses_an_invalid_placement():
    problem = chain_problem()
    compute = {n: dict(row) for n, row in problem.compute_s.items()}
    del compute["d"]["cloud"]  # d cannot run on the cloud
    from dataclasses import replace

    task = tg.PartitionTask(replace(problem, compute_s=compute), {("end", "edge"): tg.Constant(2e6)})
    env = make_env(task, action_mode="placement")
    env.reset(seed=0)
    before = env.episode.placement.copy()
    _, reward, _, _, info = env.step(np.array([0, 0, 0, 2]))
    assert not info["valid"] and np.array_equal(env.episode.placement, before)
    assert reward == pytest.approx(-10.0 * env.episode.objectives[0].max())
    _, reward, _, _, info = env.step(np.array([0, 0, 1, 1]))  # a cut after b
    assert info["valid"] and reward < 0


# ---------------------------------------------------------------- baselines and the oracle
def test_the_oracle_is_never_beaten_on_the_same_episode(task):
    env = make_env(task, episode_steps=40)
    policies = [tg.StaticPolicy(), tg.GreedyPolicy(), tg.HysteresisPolicy(), tg.MyopicOracle(), tg.RandomPolicy(seed=1),
                tg.RandomPolicy(seed=2, name="random2")]
    oracle = tg.Oracle()
    for seed in (0, 1, 2, 3):
        best = tg.rollout(env, oracle, seed)
        assert best.total_reward == pytest.approx(-oracle.value, rel=1e-9)  # the DP's value is what the env pays
        for policy in policies:
            assert tg.rollout(env, policy, seed).total_reward <= best.total_reward + 1e-9


def test_without_switching_cost_the_oracle_is_the_myopic_oracle():
    env = make_env(make_task(switching_weight=0.0), episode_steps=25)
    for seed in (5, 6):
        assert tg.rollout(env, tg.Oracle(), seed).total_reward == pytest.approx(
            tg.rollout(env, tg.MyopicOracle(), seed).total_reward, rel=1e-12)


def test_static_policy_keeps_one_plan_and_greedy_follows_the_estimate(task):
    env = make_env(task, estimate_noise=0.0)
    static = tg.rollout(env, tg.StaticPolicy(), 3)
    assert len(set(static.plans)) == 1
    env.reset(seed=3)
    greedy = tg.GreedyPolicy()
    greedy.begin(env)
    for _ in range(5):
        choice = greedy.act(None, env)
        expected = int(np.argmin(task.objectives(task.candidates().placements, env.last_estimate())[0]))
        assert choice == expected
        env.step(choice)


def test_hysteresis_switches_only_after_the_dwell():
    task = tg.PartitionTask(chain_problem(), {("end", "edge"): tg.PiecewiseConstant(((0.0, 0.25e6), (10.0, 16e6)))})
    env = tg.PartitionEnv(task, episode_steps=20, history=1, initial_plan=0)  # starts local; the link improves at 10 s
    result = tg.rollout(env, tg.HysteresisPolicy(threshold=0.1, dwell=3), 0)
    best_fast = int(np.argmin(env.episode.objectives[-1]))
    assert best_fast != 0
    # the estimate sees the fast link from step 11 on; three steps of gain later (steps 11, 12, 13) it switches
    assert result.plans[:13] == (0,) * 13 and result.plans[13:] == (best_fast,) * 7
    assert result.switches == 1


def test_policies_play_the_placement_mode_too(task):
    env = make_env(task, action_mode="placement", episode_steps=15)
    by_candidates = tg.rollout(make_env(task, episode_steps=15), tg.GreedyPolicy(), 4)
    by_placement = tg.rollout(env, tg.GreedyPolicy(), 4)
    assert by_placement.plans == by_candidates.plans
    assert by_placement.total_reward == pytest.approx(by_candidates.total_reward, rel=1e-12)


# ---------------------------------------------------------------- processes
def test_processes_are_seeded_and_validated():
    times = np.arange(200.0)
    chain = tg.MarkovChain.sticky([1.0, 2.0, 4.0], 0.9)
    a = chain.values(times, np.random.default_rng(1))
    assert np.array_equal(a, chain.values(times, np.random.default_rng(1)))
    assert set(np.unique(a)) <= {1.0, 2.0, 4.0} and len(np.unique(a)) > 1
    np.testing.assert_allclose(chain.stationary(), [1 / 3] * 3)
    walk = tg.LogRandomWalk(1e6, volatility=0.5, reversion=0.1, low=2e5, high=5e6)
    w = walk.values(times, np.random.default_rng(2))
    assert w.min() >= 2e5 and w.max() <= 5e6
    trace = tg.PiecewiseConstant.from_sim_trace(BandwidthTrace("end", "edge", ((0.0, 10e6), (30.0, 2e6))))
    assert list(trace.values(np.array([0.0, 29.9, 30.0, 100.0]), np.random.default_rng())) == [10e6, 10e6, 2e6, 2e6]
    periodic = tg.PiecewiseConstant(((0.0, 1.0), (5.0, 2.0)), period_s=10.0)
    assert list(periodic.values(np.array([4.0, 6.0, 14.0, 16.0]), np.random.default_rng())) == [1.0, 2.0, 1.0, 2.0]
    for bad in (
        lambda: tg.MarkovChain((1.0, 2.0), ((0.5, 0.4), (0.5, 0.5))),
        lambda: tg.MarkovChain.sticky([1.0, 0.0], 0.5),
        lambda: tg.PiecewiseConstant(((1.0, 1.0), (0.5, 2.0))),
        lambda: tg.PiecewiseConstant(((0.0, 1.0),), random_offset=True),
        lambda: tg.LogRandomWalk(1.0, reversion=0.0),
        lambda: tg.Constant(-1.0),
    ):
        with pytest.raises(TiercutError):
            bad()


def test_an_episode_replays_as_simulator_traces(task):
    env = make_env(task)
    env.reset(seed=8)
    now = env.episode.conditions.at(slice(env.history, None))
    traces = task.sim_traces(now)
    assert [(t.a, t.b) for t in traces] == task.links
    for k, trace in enumerate(traces):
        back = tg.PiecewiseConstant.from_sim_trace(trace).values(now.times_s - now.times_s[0], np.random.default_rng())
        np.testing.assert_array_equal(back, now.bandwidth_bytes_per_s[:, k])


def test_bad_settings_are_one_line_errors(task):
    problem = chain_problem()
    with pytest.raises(TiercutError, match="no link end-nowhere"):
        tg.PartitionTask(problem, {("end", "nowhere"): tg.Constant(1.0)})
    with pytest.raises(TiercutError, match="two bandwidth processes"):
        tg.PartitionTask(problem, {("end", "edge"): tg.Constant(1.0), ("edge", "end"): tg.Constant(1.0)})
    with pytest.raises(TiercutError, match="unknown device"):
        tg.PartitionTask(problem, {("end", "edge"): tg.Constant(1.0)}, loads={"gpu": tg.Constant(1.0)})
    with pytest.raises(TiercutError, match="grid 'all'"):
        tg.PartitionTask(problem, {("end", "edge"): tg.Constant(1.0)}, grid="all")
    with pytest.raises(TiercutError, match="planner"):
        tg.PartitionTask(problem, {("end", "edge"): tg.Constant(1.0)}, planner="magic")
    with pytest.raises(TiercutError, match="action_mode"):
        tg.PartitionEnv(task, action_mode="devices")
    env = make_env(task)
    with pytest.raises(TiercutError, match="reset"):
        env.step(0)
    env.reset(seed=0)
    with pytest.raises(TiercutError, match="candidate index"):
        env.step(99)
    with pytest.raises(TiercutError, match="initial_plan"):
        make_env(task, initial_plan=99).reset(seed=0)


# ---------------------------------------------------------------- the DQN
class _PlainSGD:
    """Gradient descent by hand: torch.optim's first use imports torch._dynamo (seconds), which this test can skip."""

    def __init__(self, params, lr: float) -> None:
        self.params, self.lr = list(params), lr

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        import torch

        with torch.no_grad():
            for p in self.params:
                p -= self.lr * p.grad


def test_dqn_update_fits_the_rewards_of_a_bandit():
    """gamma = 0: the double-DQN target is the reward, so repeated updates drive Q(s, a) to r(s, a)."""
    import copy

    import torch

    dqn = tg.DQN(gamma=0.0, hidden=16)
    torch.manual_seed(0)
    network = dqn._network(2, 3)
    target = copy.deepcopy(network)
    optimizer = _PlainSGD(network.parameters(), lr=0.5)
    obs = np.array([[1, 0], [0, 1]] * 3, dtype=np.float32)
    actions = np.array([0, 0, 1, 1, 2, 2])
    rewards = np.array([1.0, -1.0, 0.5, 0.0, -0.5, 2.0], dtype=np.float32)
    batch = tg.Transitions(obs, actions, rewards, obs, np.zeros(6, dtype=bool))
    losses = [dqn.update(network, target, optimizer, batch) for _ in range(300)]
    assert losses[-1] < 1e-3 < losses[0]
    q = network(torch.as_tensor(obs)).detach().numpy()
    np.testing.assert_allclose(q[np.arange(6), actions], rewards, atol=0.05)
    # with gamma > 0 the target adds gamma * Q_target(s', argmax_a Q(s', a)) (double DQN), not Q(s', .) itself
    dqn.gamma = 0.5
    with torch.no_grad():
        for p in target.parameters():
            p.zero_()
    assert dqn.update(network, target, optimizer, batch) < 1e-3  # a zero target network: the target is r again


@pytest.mark.slow
def test_a_tiny_dqn_run_beats_random_and_is_reproducible():
    """Constant conditions: one candidate is best at every step; a few hundred steps of training find it."""
    problem = chain_problem()
    task = tg.PartitionTask(problem, {("end", "edge"): tg.Constant(16e6)}, switching_weight=0.0)
    env = tg.PartitionEnv(task, episode_steps=20)
    settings = {"train_steps": 600, "warmup_steps": 100, "batch_size": 32, "train_every": 2, "target_every": 50,
                "epsilon_fraction": 0.3, "hidden": 32, "learning_rate": 3e-3, "seed": 0}
    first = tg.DQN(**settings).fit(env, [0, 1])
    again = tg.DQN(**settings).fit(env, [0, 1])
    obs, _ = env.reset(seed=9)
    np.testing.assert_array_equal(first.q_values(obs), again.q_values(obs))
    learned = tg.rollout(env, first.policy(), 9)
    random = tg.rollout(env, tg.RandomPolicy(seed=0), 9)
    oracle = tg.rollout(env, tg.Oracle(), 9)
    assert learned.total_reward > random.total_reward
    assert learned.total_reward == pytest.approx(oracle.total_reward, rel=1e-6)  # it found the best plan
