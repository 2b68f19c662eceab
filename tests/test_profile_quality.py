"""Busy-host detection: a profile taken on a busy machine says so, with what to do, and is never "stable"."""

from __future__ import annotations

import numpy as np
import pytest

from tiercut.profile import StoppingRule, TimingStats, repeat_until_stable
from tiercut.profile.measure import ProfileQuality, assess_quality


def _series(median: float, noise: float, n: int = 15, seed: int = 0, spikes: float = 0.0) -> list[float]:
    rng = np.random.default_rng(seed)
    samples = median * np.exp(rng.normal(0.0, noise, n))
    if spikes:  # a competing process takes the core now and then: some samples several times longer
        hit = rng.random(n) < spikes
        samples[hit] *= rng.uniform(3.0, 12.0, hit.sum())
    return [float(s) for s in samples]


def _timed(samples: list[float]) -> TimingStats:
    """The stopping rule applied to a synthetic series (a fake timer replays it)."""
    it = iter(samples * 4)
    return repeat_until_stable(lambda: None, StoppingRule(warmup=1, max_repeats=15, min_sample_s=0.0),
                               timer=lambda fn, n: next(it))


def _nodes(noise: float, spikes: float = 0.0) -> list[TimingStats]:
    return [_timed(_series(1e-3 * (1 + i % 5), noise, seed=i, spikes=spikes)) for i in range(40)]


def test_a_quiet_series_is_stable():
    nodes = _nodes(0.01)
    whole = TimingStats.from_samples([0.95 * sum(t.median_s for t in nodes)] * 9, 1, "stable")
    q = assess_quality(nodes, whole, load_before=0.1, load_after=0.2, cpus=2, threads=1)
    assert q.verdict == "stable" and not q.reasons and not q.advice


def test_a_noisy_series_is_busy_and_says_what_to_do():
    nodes = _nodes(0.05, spikes=0.4)
    whole = TimingStats.from_samples([0.9 * sum(t.median_s for t in nodes)] * 9, 1, "stable")
    q = assess_quality(nodes, whole, cpus=2, threads=2, clock="wall")
    assert q.verdict == "busy"
    assert any("spread" in r or "stable median" in r for r in q.reasons)
    text = " ".join(q.advice)
    assert "--clock cpu" in text and "--torch-threads 1" in text and "quiet machine" in text


@pytest.mark.parametrize(
    ("load", "cpus", "threads", "busy"),
    [(0.2, 2, 1, False), (1.4, 2, 1, False), (1.7, 2, 1, True), (0.6, 2, 2, True), (3.0, 8, 4, False)],
)
def test_load_beyond_the_free_cpus_is_busy(load, cpus, threads, busy):
    nodes = _nodes(0.01)
    whole = TimingStats.from_samples([sum(t.median_s for t in nodes)] * 9, 1, "stable")
    q = assess_quality(nodes, whole, load_before=load, load_after=load, cpus=cpus, threads=threads)
    assert (q.verdict == "busy") is busy
    assert busy == any("load average" in r for r in q.reasons)


def test_nodes_adding_up_to_far_more_than_the_whole_model_is_busy_but_less_is_normal():
    nodes = _nodes(0.01)
    total = sum(t.median_s for t in nodes)
    inflated = assess_quality(nodes, TimingStats.from_samples([total / 3.0] * 9, 1, "stable"), cpus=2, threads=1)
    assert inflated.verdict == "busy" and inflated.node_sum_excess == pytest.approx(2.0)  # the "+200%"
    assert "+200%" in " ".join(inflated.reasons)
    in_context = assess_quality(nodes, TimingStats.from_samples([total * 1.25] * 9, 1, "stable"), cpus=2, threads=1)
    assert in_context.verdict == "stable"  # nodes alone are normally a little faster than inside the model


def test_quality_round_trips_and_rejects_unknown_verdicts():
    q = assess_quality(_nodes(0.05, spikes=0.4), TimingStats.from_samples([1e-3] * 9, 1, "stable"), cpus=2, threads=1)
    assert ProfileQuality.from_dict(q.to_dict()) == q
    from tiercut.errors import TiercutError

    with pytest.raises(TiercutError, match="verdict"):
        ProfileQuality.from_dict({**q.to_dict(), "verdict": "fine"})


def test_a_profile_from_a_busy_host_is_never_labelled_stable(tmp_path):
    from tiercut.profile import NodeFeatures, NodeProfile, Profile, load_profile
    from tiercut.profile.host import HostInfo

    host = HostInfo("cpu", 2, 2, 2000.0, 1, "2", "3", "test")
    nodes = {f"n{i}": NodeProfile(f"n{i}", NodeFeatures("relu", 0, 1e3, 4e3, 4e3, 0), t) for i, t in enumerate(_nodes(0.05, 0.4))}
    whole = TimingStats.from_samples([sum(n.median_s for n in nodes.values()) / 3.0] * 9, 1, "stable")
    profile = Profile("m", "module", ((1, 3),), host, StoppingRule(), nodes, whole)  # no quality given: assessed
    assert profile.quality.verdict == "busy" and not profile.is_stable
    loaded = load_profile(profile.save(tmp_path / "p.json"))
    assert loaded.quality == profile.quality and not loaded.is_stable
