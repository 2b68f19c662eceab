"""Pipelined throughput: the stage model of docs/cost-model.md ("Throughput").

A stream of queries runs through a placement as a pipeline. Its *stages* are

- every device ``d``: busy ``C_d(x) = sum_{v: x(v) = d} c(v, d)`` per query
  (plus the encode / decode seconds of the compressed transfers it sends /
  receives). A device hosting several non-contiguous segments of the graph
  is ONE stage whose time is the sum of theirs: it serves one segment at a
  time;
- every direction ``a -> b`` of every link: busy ``L_ab(x) = sum`` over the
  hops ``a -> b`` of every transfer routed over it of ``bytes /
  bandwidth(a -> b)`` (the wire bytes of a compressed tensor). The two
  directions are separate stages (full duplex: an uplink and a downlink).
  The hop's latency is propagation: it delays a query but does not occupy
  the link, so it is not part of the stage. A relay forwards, it computes
  nothing: a relayed transfer occupies each hop's link stage only.

Per-message costs (docs/cost-model.md "Per-message costs"; all 0 unless
given): every hop of a transfer is one message. Its sender's and receiver's
``message_s`` are part of their device stages (a relay's too: it receives and
sends), and its link's ``message_overhead_bytes`` travel with the tensor's
bytes (``(message_overhead_bytes + bytes) / bandwidth`` on the link stage).

The bottleneck ``B(x) = max(max_d C_d(x), max_ab L_ab(x))`` [s per query]; in
steady state with enough queries in flight the pipeline completes one query
per ``B(x)``, so its throughput is ``1 / B(x)`` queries per second (the
``throughput`` objective minimises ``B``; DADS' heavy-load case, Hu et al.,
INFOCOM'19). The latency of one query is still ``T(x)`` (the sequential
model); a latency bound is the problem's latency budget.

Stage names: a device's name, and ``"a->b"`` for a link direction.

:func:`stage_times` is the reference (used by :func:`tiercut.cost.evaluate`);
:func:`stage_times_many` is the vectorised form (used by
:func:`tiercut.cost.evaluate_many`), tested equal; :func:`stage_forms` gives
each stage as a linear form (per-node and per-transfer terms), what the exact
planners (ILP, DP, min-cut) build their models from.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from tiercut.cost.linear import LinearForm
from tiercut.cost.vector import CompiledProblem, compile_problem, transfer_mask
from tiercut.problem import Problem


def link_stage_name(a: str, b: str) -> str:
    """The stage name of the link direction ``a -> b``."""
    return f"{a}->{b}"


def stage_names(problem: Problem) -> list[str]:
    """Every stage of ``problem`` in a fixed order: the devices, then each link's ``a->b`` and ``b->a``."""
    names = list(problem.device_names)
    for link in problem.links:
        names += [link_stage_name(link.a, link.b), link_stage_name(link.b, link.a)]
    return names


def _direction(problem: Problem, a: str, b: str) -> tuple[float, float]:
    """(bandwidth, message overhead bytes) of the link direction ``a -> b``."""
    link = problem.link(a, b)
    assert link is not None, f"no link {a}-{b}"
    for direction in link.directions():
        if direction.src == a:
            return float(direction.bandwidth_bytes_per_s), float(direction.message_overhead_bytes)
    raise AssertionError(f"link {a}-{b} has no direction from {a}")


def stage_times(problem: Problem, placement: Mapping[str, str], transfers: Iterable) -> dict[str, float]:
    """Stage name -> busy seconds per query (every stage, 0 when idle) of a valid full ``placement`` whose
    transfers (:class:`tiercut.cost.model.Transfer`) the cost model computed."""
    times = dict.fromkeys(stage_names(problem), 0.0)
    for node in problem.graph:
        if node.is_input:
            continue
        device = placement[node.name]
        times[device] += float(problem.compute_s[node.name][device])
    message_s = {d.name: d.message_s for d in problem.devices}
    for tr in transfers:
        nbytes = float(tr.out_bytes if tr.wire_bytes is None else tr.wire_bytes)
        times[tr.src] += tr.encode_s
        times[tr.dst] += tr.decode_s
        path = tr.path or (tr.src, tr.dst)
        for a, b in itertools.pairwise(path):
            bandwidth, overhead_bytes = _direction(problem, a, b)
            times[link_stage_name(a, b)] += (overhead_bytes + nbytes) / bandwidth if overhead_bytes else nbytes / bandwidth
            times[a] += message_s[a]
            times[b] += message_s[b]
    return times


@dataclass(frozen=True)
class StageFigures:
    """The pipelined figures of one placement.

    Attributes:
        stages: stage name -> busy seconds per query.
        bottleneck_s: the largest (inf when the placement is not valid).
        bottleneck_stage: its name ("" when invalid).
    """

    stages: Mapping[str, float]
    bottleneck_s: float
    bottleneck_stage: str

    @property
    def throughput_qps(self) -> float:
        return throughput_qps(self.bottleneck_s)


def throughput_qps(bottleneck_s: float) -> float:
    """Queries per second of a pipeline whose bottleneck stage takes ``bottleneck_s`` (inf at 0, 0 at inf)."""
    if bottleneck_s <= 0:
        return math.inf
    return 0.0 if math.isinf(bottleneck_s) else 1.0 / bottleneck_s


def bottleneck(stages: Mapping[str, float]) -> StageFigures:
    """The bottleneck of stage times (the first stage in order on a tie)."""
    if not stages:
        return StageFigures({}, 0.0, "")
    name = max(stages, key=lambda k: stages[k])
    return StageFigures(dict(stages), float(stages[name]), name)


# ---------------------------------------------------------------- vectorised
def _stage_columns(comp: CompiledProblem) -> np.ndarray:
    """Flat directed-pair index (a * D + b) of each link-direction stage, in :func:`stage_names` order."""
    problem = comp.problem
    D = comp.n_devices
    index = {name: i for i, name in enumerate(problem.device_names)}
    cols = []
    for link in problem.links:
        a, b = index[link.a], index[link.b]
        cols += [a * D + b, b * D + a]
    return np.array(cols, dtype=np.int64)


def stage_times_many(problem: Problem | CompiledProblem, placements: np.ndarray) -> np.ndarray:
    """[P, S] busy seconds of every stage (:func:`stage_names` order) of each placement row (raw transfers:
    the vectorised model has no cut compression). Rows that are not valid get meaningless figures; use
    :func:`tiercut.cost.evaluate_many`'s ``valid``."""
    comp = problem if isinstance(problem, CompiledProblem) else compile_problem(problem)
    X = np.atleast_2d(np.asarray(placements)).astype(np.int64)
    P, n = X.shape
    D = comp.n_devices
    c = comp.compute[np.arange(n)[None, :], X]
    c = np.where(np.isfinite(c), c, 0.0)
    devices = np.stack([(c * (d == X)).sum(axis=1) for d in range(D)], axis=1) if P else np.zeros((0, D))
    columns = _stage_columns(comp)
    links = np.zeros((P, len(columns)))
    if len(comp.senders) and len(columns) and P:
        t = comp.paths
        mask = transfer_mask(comp, X)
        a = X[:, comp.senders]
        k = np.where(mask, comp.route[comp.senders[None, :, None], a[:, :, None], np.arange(D)[None, None, :]], t.empty)
        nbytes = np.where(mask, comp.out_bytes[comp.senders][None, :, None], 0.0)
        per_path = np.zeros((P, len(t.latency)))
        np.add.at(per_path, (np.repeat(np.arange(P), k.shape[1] * k.shape[2]), k.reshape(-1)), nbytes.reshape(-1))
        links = (per_path @ t.hop_spb)[:, columns]
        if t.message_device_s is not None and (t.message_device_s.any() or t.hop_message_link_s.any()):
            counts = np.zeros((P, len(t.latency)))  # messages per path (the empty path's row is all 0)
            np.add.at(counts, (np.repeat(np.arange(P), k.shape[1] * k.shape[2]), k.reshape(-1)), mask.reshape(-1) * 1.0)
            links = links + (counts @ t.hop_message_link_s)[:, columns]
            devices = devices + counts @ t.message_device_s
    return np.concatenate([devices, links], axis=1)


def stage_forms(problem: Problem | CompiledProblem) -> list[tuple[str, LinearForm]]:
    """Each stage as a linear form ``sum_v node[v, x(v)] + sum_transfers transfer[u, a, b]`` (:func:`stage_names`
    order): a device's form holds its compute times, a link direction's the seconds each routed transfer
    spends on it (0 elsewhere; inf where a node cannot run or a pair is unreachable, as every form)."""
    comp = problem if isinstance(problem, CompiledProblem) else compile_problem(problem)
    names = stage_names(comp.problem)
    n, D = comp.compute.shape
    c = np.where(np.isfinite(comp.compute), comp.compute, 0.0)
    unreachable = ~comp.reachable
    node_inf = np.where(np.isfinite(comp.compute), 0.0, np.inf)
    tr_inf = np.where(unreachable[None, :, :], np.inf, 0.0) * np.ones((n, 1, 1))
    forms: list[tuple[str, LinearForm]] = []
    paths = comp.paths
    messages = paths.message_device_s is not None and bool(paths.message_device_s.any() or paths.hop_message_link_s.any())
    for d in range(D):
        node = node_inf.copy()
        node[:, d] += c[:, d]
        transfer = tr_inf.copy()
        if messages:  # its message seconds on every routed transfer's path (0 for the empty path)
            transfer = transfer + paths.message_device_s[:, d][comp.route]
        forms.append((names[d], LinearForm(node, transfer)))
    for col, name in zip(_stage_columns(comp), names[D:], strict=True):
        transfer = comp.out_bytes[:, None, None] * paths.hop_spb[:, col][comp.route] + tr_inf
        if messages:
            transfer = transfer + paths.hop_message_link_s[:, col][comp.route]
        forms.append((name, LinearForm(node_inf.copy(), transfer)))
    return forms


__all__ = [
    "StageFigures",
    "bottleneck",
    "link_stage_name",
    "stage_forms",
    "stage_names",
    "stage_times",
    "stage_times_many",
    "throughput_qps",
]
