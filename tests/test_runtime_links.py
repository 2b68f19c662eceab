"""Link emulation: token bucket on bytes sent plus one-way latency; fault injection."""

from __future__ import annotations

import asyncio
import itertools
import math
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tiercut.env import load_environment
from tiercut.errors import TiercutError
from tiercut.runtime.links import FaultPlan, LinkShaper, LinkSpec, LinkTable, shaped


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 10**6), min_size=1, max_size=20), st.floats(1e3, 1e9), st.floats(0, 10))
def test_back_to_back_reservations_take_exactly_bytes_over_bandwidth(sizes, bandwidth, start):
    shaper = LinkShaper(LinkSpec(bandwidth, 0.0))
    done = [shaper._reserve(n, start) for n in sizes]  # all asked at once
    assert done[-1] == pytest.approx(start + sum(sizes) / bandwidth, rel=1e-9)
    assert all(b > a for a, b in itertools.pairwise(done))
    assert shaper.bytes_sent == sum(sizes)


def test_an_idle_link_does_not_bank_credit_unless_given_a_burst():
    strict = LinkShaper(LinkSpec(1000.0))
    assert strict._reserve(100, now=50.0) == pytest.approx(50.1)  # idle since 0: still 100 / 1000 s
    bursty = LinkShaper(LinkSpec(1000.0), burst_bytes=100)
    assert bursty._reserve(100, now=50.0) == pytest.approx(50.0)  # the bucket held 100 bytes


def test_two_flows_alternating_quanta_share_the_link():
    shaper = LinkShaper(LinkSpec(1e6), quantum_s=0.01)
    quantum = shaper.quantum_bytes
    assert quantum == 10_000
    now = 0.0
    finish = {}
    remaining = {"upload": 10 * quantum, "query": 2 * quantum}
    while any(remaining.values()):  # each flow takes one quantum, then waits for it to go
        for flow in ("upload", "query"):
            if remaining[flow]:
                piece = min(quantum, remaining[flow])
                finish[flow] = shaper._reserve(piece, now)
                remaining[flow] -= piece
    # the small query finishes after ~4 quanta, not after the upload's 10
    assert finish["query"] == pytest.approx(4 * 0.01)
    assert finish["upload"] == pytest.approx(12 * 0.01)


def test_unlimited_links_only_add_latency():
    spec = LinkSpec(math.inf, 0.02)
    assert spec.transfer_s(10**9) == 0.02
    shaper = LinkShaper(spec)
    assert shaper._reserve(10**9, 3.0) == 3.0


@pytest.mark.parametrize("bandwidth, latency", [(0.0, 0.0), (-1.0, 0.0), (1e6, -0.1), (1e6, math.inf)])
def test_invalid_links_are_refused(bandwidth, latency):
    with pytest.raises(TiercutError):
        LinkSpec(bandwidth, latency)


def test_shaped_messages_arrive_no_sooner_than_the_link_allows_and_latency_is_pipelined():
    spec = LinkSpec(200_000.0, 0.2)  # 200 kB/s, 200 ms one way
    messages = [b"x" * 10_000] * 5  # 50 kB: 0.25 s of serialisation
    arrivals = []

    async def receive():
        start = time.monotonic()
        async for message in shaped(messages, LinkShaper(spec)):
            arrivals.append((time.monotonic() - start, len(message)))

    asyncio.run(receive())
    assert [n for _, n in arrivals] == [10_000] * 5
    for k, (at, _) in enumerate(arrivals, 1):
        assert at >= k * 0.05 + 0.2 - 0.005  # k messages serialised, then the latency
    # pipelined: the link reserves only serialisation time per message, the latency is added once to each arrival
    # (0.25 + 0.2 s for the last, not 0.25 + 5 x 0.2 s as stop-and-wait): checked on the reservations, not the clock
    shaper = LinkShaper(spec)
    assert [shaper._reserve(10_000, 0.0) for _ in range(5)] == pytest.approx([0.05, 0.1, 0.15, 0.2, 0.25])


def test_faults_drop_and_corrupt_reproducibly():
    def run(seed):
        plan = FaultPlan(drop_probability=0.1, corrupt_probability=0.1, seed=seed)
        out = [plan.apply(bytes([i % 256]) * 8) for i in range(2000)]
        return plan, out

    plan, out = run(3)
    assert 120 < plan.dropped < 280 and 120 < plan.corrupted < 280
    assert sum(m is None for m in out) == plan.dropped
    assert sum(m is not None and m != bytes([i % 256]) * 8 for i, m in enumerate(out)) == plan.corrupted
    assert run(3)[1] == out
    with pytest.raises(TiercutError, match="within"):
        FaultPlan(drop_probability=1.5)


def test_link_table_follows_the_environment_both_ways():
    env = load_environment("three-tier")
    end = LinkTable.from_environment(env, "end", bandwidth_scale=2.0)
    link = env.link("end", "edge")
    assert end.specs["edge"] == LinkSpec(link.bandwidth_bytes_per_s * 2.0, link.latency_s)
    assert end.shaper("edge") is end.shaper("edge")  # one bucket per direction
    assert end.shaper("nowhere") is None
    cloud = LinkTable.from_environment(env, "cloud")
    assert set(cloud.specs) == {"end", "edge"}
