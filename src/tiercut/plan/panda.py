"""Online partitioning under a long-term energy budget by Lyapunov drift-plus-penalty (PANDA).

Paper: Shi, Chen, Shen, Song, Xu, "Privacy-Aware Edge Computing Based on
Adaptive DNN Partitioning", IEEE GLOBECOM 2019 (the survey's PANDA: per time
slot, the partition point of a user's DNN under a long-term average energy
budget, by Lyapunov optimisation, with privacy as a constraint). Method:
Neely, "Stochastic Network Optimization with Application to Communication and
Queueing Systems", Morgan & Claypool 2010 (drift-plus-penalty, ch. 3-4).

Per slot ``t`` the bandwidth of each traced link is known (the simulator's
:class:`tiercut.sim.BandwidthTrace`, the project's one trace type, sampled at
each slot's start: :func:`slot_bandwidths`); the controller picks the placement (and, with ``frequencies``, the source's
clock) minimising ``V * T(x, t) + Q(t) * E(x, t)`` where ``T`` is the cost
model's latency and ``E`` the source energy of one query in that slot's
conditions, then updates the virtual energy queue ``Q(t+1) = max(Q(t) +
E(x(t), t) - E_budget, 0)``. The problem's other constraints hold in every
slot (its pinned nodes are the privacy constraint: those layers stay where
they are pinned, e.g. on the device; a latency budget); its energy budget
becomes the long-term one (``E_budget``).

Exact per-slot choice: ``min_x V T + Q E`` is a weighted sum, so its
minimum is a vertex of the lower convex hull of the points ``(E(x), T(x))``
in that slot's conditions. :func:`build_menu` computes each distinct
condition's hull exactly by the non-inferior set estimation of Cohon
(weighted sums solved by the exact single-user planner ``inner``, the ILP by
default: each new weight is the normal of a hull edge found so far), so a run
of any length needs one hull per distinct bandwidth state, and the per-slot
choice is an argmin over the hull's vertices -- the same answer as the
registered ``panda`` planner (one slot, :class:`PandaPlanner`) up to ties.

DVFS: the device model has no clock levels, so ``frequencies`` adds a small
set of them as fractions ``f`` of the source's nominal clock (an
assumption of this module): compute times on the source scale by ``1 / f``
and its compute power by ``f^3`` (dynamic CMOS power ``kappa f^3``, energy
per cycle ``kappa f^2``: Mao, You, Zhang, Huang, Letaief, "A Survey on
Mobile Edge Computing: The Communication Perspective", IEEE Communications
Surveys & Tutorials 19(4), 2017, local computing model). Default ``(1.0,)``:
no DVFS.

Guarantees (Neely 2010, ch. 4; proved here for the sample path):

- queue bound: with ``delta = E_budget - max_t min_x E(x, t) > 0`` (the
  budget is strictly feasible in every slot), ``dT = max_t (T(x_E(t), t) -
  min_x T(x, t))`` (``x_E`` the min-energy choice), and ``E_max`` the largest
  energy of any choice, ``Q(t) <= V dT / delta + E_max - E_budget`` for all
  ``t`` (above ``V dT / delta`` every choice uses less than the budget);
- energy: the average over ``N`` slots is at most ``E_budget + Q(N) / N <=
  E_budget + Q_bound / N``;
- latency: on i.i.d. slot conditions, the expected average latency is at most
  the offline optimum plus ``B / V`` with ``B = max (E - E_budget)^2 / 2``.

Baselines: :func:`static_optimum` (one placement for the whole trace that
meets the budget on average; exact over the hull placements plus the exact
planner's answer on the trace-average problem) and :func:`offline_oracle`
(the per-slot choice minimising ``T + mu E`` with the multiplier ``mu`` tuned
on the whole trace by bisection so the average energy meets the budget
exactly, mixing the two choices at ``mu*``: the optimum of the LP
relaxation, a lower bound of every policy that meets the budget).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from tiercut.cost import evaluate
from tiercut.errors import TiercutError
from tiercut.plan.base import DEFAULT_PLANNER, PlacementResult, Planner
from tiercut.problem import Objective, Problem

if TYPE_CHECKING:
    from tiercut.sim.model import BandwidthTrace

#: relative improvement a weighted solve must make over a hull edge to be a new vertex.
HULL_RTOL = 1e-9


# ---------------------------------------------------------------- the trace input
def slot_bandwidths(
    problem: Problem, traces: Sequence[BandwidthTrace], slot_s: float, n_slots: int | None = None
) -> tuple[tuple[tuple[str, str], ...], np.ndarray]:
    """The traced channels ``(a, b)`` and ``[N, L]`` their bandwidth at the start of each slot of ``slot_s``.

    The traces are the simulator's (:class:`tiercut.sim.BandwidthTrace`, one per link, as the simulator
    replays them): before a trace's first point its link keeps the problem's figure. ``n_slots`` None: up
    to the last trace point's slot.
    """
    if not (isinstance(slot_s, (int, float)) and not isinstance(slot_s, bool) and math.isfinite(slot_s) and slot_s > 0):
        raise TiercutError(f"slot_s {slot_s!r} must be a finite number of seconds > 0")
    if n_slots is None:
        last = max((t.points[-1][0] for t in traces), default=0.0)
        n_slots = math.floor(last / slot_s + 1e-9) + 1
    if not (isinstance(n_slots, int) and n_slots >= 1):
        raise TiercutError(f"n_slots {n_slots!r} must be an integer >= 1")
    channels: list[tuple[str, str]] = []
    columns = []
    seen: set[frozenset[str]] = set()
    for trace in traces:
        link = problem.link(trace.a, trace.b)
        if link is None:
            raise TiercutError(f"bandwidth trace names link {trace.a}-{trace.b}, which the problem does not have")
        if link.key in seen:
            raise TiercutError(f"two bandwidth traces for link {trace.a}-{trace.b}; give one per link")
        seen.add(link.key)
        nominal = link.direction(trace.a, trace.b).bandwidth_bytes_per_s
        column = trace.slots(float(slot_s), n_slots, before=nominal)
        bad = np.flatnonzero(~(column > 0))
        if bad.size:
            raise TiercutError(
                f"bandwidth trace of link {trace.a}-{trace.b} is {column[bad[0]]:g} B/s in slot {int(bad[0])} (from "
                f"{bad[0] * slot_s:g} s): PANDA needs every slot's bandwidth > 0 (a link that is down has no placement "
                "to choose); raise it or drop the link"
            )
        channels.append((trace.a, trace.b))
        columns.append(column)
    table = np.array(columns, dtype=float).T if columns else np.zeros((n_slots, 0))
    return tuple(channels), table


# ---------------------------------------------------------------- per-state menus
@dataclass(frozen=True)
class Choice:
    """A placement at a source clock (fraction of nominal)."""

    placement: Mapping[str, str]
    frequency: float = 1.0


@dataclass(frozen=True)
class Menu:
    """Every slot's options: the distinct conditions, their hull choices and every choice's figures.

    Attributes:
        choices: every choice met (hull vertices of any state, plus the static candidates).
        state_of_slot: [N] index of each slot's distinct condition.
        latency_s, energy_j: [S, K] each choice's latency and source energy in each state
            (inf where it breaks a per-slot constraint or is not evaluable).
        hull: per state, the indices of its lower-convex-hull choices.
        conditions: per state, the traced channels' bandwidths ``{(a, b): bytes/s}`` (:func:`slot_problem`'s).
        slot_s: the slot length (seconds).
    """

    choices: tuple[Choice, ...]
    state_of_slot: np.ndarray
    latency_s: np.ndarray
    energy_j: np.ndarray
    hull: tuple[np.ndarray, ...]
    conditions: tuple[Mapping[tuple[str, str], float], ...] = ()
    slot_s: float = 1.0

    def problem(self, problem: Problem, state: int, choice: int) -> Problem:
        """``problem`` in state ``state``'s conditions at choice ``choice``'s clock (its figures are the menu's)."""
        return slot_problem(problem, self.conditions[state], self.choices[choice].frequency)

    @property
    def n_slots(self) -> int:
        return int(self.state_of_slot.shape[0])


def _with_bandwidth(link: Any, key: Any, bandwidth: float) -> Any:
    """``link`` with a trace's bandwidth as the simulator sets it: a symmetric link's one channel (both
    directions), or the ``a -> b`` direction of a directional link (``key`` the ordered pair ``(a, b)``; a
    frozenset key sets both directions)."""
    ba = link.bandwidth_bytes_per_s_ba
    if isinstance(key, frozenset) or not link.directional:
        return replace(link, bandwidth_bytes_per_s=bandwidth, bandwidth_bytes_per_s_ba=None if ba is None else bandwidth)
    if tuple(key) == (link.a, link.b):
        return replace(link, bandwidth_bytes_per_s=bandwidth)
    return replace(link, bandwidth_bytes_per_s_ba=bandwidth)


def slot_problem(problem: Problem, bandwidths: Mapping[Any, float], frequency: float = 1.0) -> Problem:
    """``problem`` in one slot's conditions: traced links at their slot bandwidth (keys: the trace's ordered
    ``(a, b)`` -- a directional link's ``a -> b`` direction, as the simulator replays a trace -- or a link's
    ``key`` for both directions), the source at clock ``frequency`` (times / f, compute power * f^3), no
    per-query energy budget (it is the long-term one)."""
    by_link = {frozenset(k): (k, v) for k, v in bandwidths.items()}
    links = tuple(
        _with_bandwidth(link, *by_link[link.key]) if link.key in by_link else link for link in problem.links
    )
    devices = problem.devices
    compute = problem.compute_s
    if frequency != 1.0:
        devices = tuple(replace(d, power_compute_w=d.power_compute_w * frequency**3) if d.name == problem.source else d
                        for d in problem.devices)
        compute = {n: {d: (s / frequency if d == problem.source else s) for d, s in row.items()}
                   for n, row in problem.compute_s.items()}
    return replace(problem, links=links, devices=devices, compute_s=compute, routing_links=None,
                   constraints=replace(problem.constraints, energy_source_budget_j=None))


def _weighted(problem: Problem, w_latency: float, w_energy: float) -> Problem:
    weights = {k: v for k, v in (("latency", w_latency), ("energy_source", w_energy)) if v > 0}
    return replace(problem, objective=Objective("weighted", weights))


def _figures(problem: Problem, placement: Mapping[str, str]) -> tuple[float, float]:
    ev = evaluate(problem, placement)
    if not ev.feasible:
        return math.inf, math.inf
    return ev.latency_s, ev.energy_source_j


def lower_hull(problem: Problem, inner: Planner, max_vertices: int = 64) -> list[tuple[dict[str, str], float, float]]:
    """The vertices ``(placement, T, E)`` of the lower convex hull of ``(E, T)`` over feasible placements
    (non-inferior set estimation: Cohon, Multiobjective Programming and Planning, 1978), by weighted solves."""

    def solve(w_t: float, w_e: float) -> tuple[dict[str, str], float, float]:
        top = max(w_t, w_e)
        placement = dict(inner.solve(_weighted(problem, w_t / top, w_e / top)).placement)
        t, e = _figures(problem, placement)
        return placement, t, e

    first = solve(1.0, 0.0)
    if not math.isfinite(first[1]):
        raise TiercutError(f"no placement meets the per-slot constraints of {problem.name or 'the problem'}; relax them")
    ratio = first[1] / max(first[2], 1e-300)  # seconds per joule at the fastest point: the weights' scale
    fast = solve(1.0, 1e-7 * ratio)  # min T, ties broken by E
    frugal = solve(1e-7 / max(ratio, 1e-300), 1.0)  # min E, ties broken by T
    vertices = {(fast[1], fast[2]): fast, (frugal[1], frugal[2]): frugal}
    stack = [(fast, frugal)] if (fast[1], fast[2]) != (frugal[1], frugal[2]) else []
    while stack and len(vertices) < max_vertices:
        a, b = stack.pop()
        w_t, w_e = a[2] - b[2], b[1] - a[1]  # the normal of the edge a-b (a faster, b more frugal)
        if not (w_t > 0 and w_e > 0):
            continue
        c = solve(w_t, w_e)
        edge = w_t * a[1] + w_e * a[2]
        if w_t * c[1] + w_e * c[2] < edge - HULL_RTOL * abs(edge) and (c[1], c[2]) not in vertices:
            vertices[(c[1], c[2])] = c
            stack += [(a, c), (c, b)]
    return sorted(vertices.values(), key=lambda v: v[1])


def build_menu(
    problem: Problem,
    traces: Sequence[BandwidthTrace],
    slot_s: float = 1.0,
    n_slots: int | None = None,
    frequencies: Sequence[float] = (1.0,),
    inner: str = DEFAULT_PLANNER,
    energy_budget_j: float | None = None,
) -> Menu:
    """The exact per-state options of a run of ``n_slots`` slots of ``slot_s`` over ``traces`` (the
    simulator's :class:`~tiercut.sim.BandwidthTrace`, sampled at each slot's start; module docstring)."""
    from tiercut.plan.registry import get_planner

    planner = get_planner(inner)
    if not frequencies or any(not (isinstance(f, (int, float)) and 0 < f <= 1.0) for f in frequencies):
        raise TiercutError(f"frequencies {tuple(frequencies)!r} must be fractions of the nominal clock in (0, 1]")
    channels, table = slot_bandwidths(problem, traces, slot_s, n_slots)  # [N, L]
    states, state_of_slot = np.unique(table, axis=0, return_inverse=True)
    state_of_slot = np.asarray(state_of_slot).reshape(-1)
    choices: list[Choice] = []
    index: dict[tuple[tuple[tuple[str, str], ...], float], int] = {}

    def add(placement: Mapping[str, str], f: float) -> int:
        key = (tuple(sorted(placement.items())), f)
        if key not in index:
            index[key] = len(choices)
            choices.append(Choice(dict(placement), f))
        return index[key]

    hull_ids: list[list[int]] = []
    problems = []
    conditions = []
    for row in states:
        bw = {c: float(v) for c, v in zip(channels, row, strict=True)}
        conditions.append(bw)
        ids = []
        per_f = []
        for f in frequencies:
            sp = slot_problem(problem, bw, f)
            per_f.append(sp)
            ids += [add(p, f) for p, _, _ in lower_hull(sp, planner)]
        hull_ids.append(ids)
        problems.append(per_f)
    # static candidates: the exact planner on the trace-average problem (harmonic mean bandwidth) with the budget
    budget = energy_budget_j if energy_budget_j is not None else problem.constraints.energy_source_budget_j
    if budget is not None:
        harmonic = {c: float(table.shape[0] / np.sum(1.0 / table[:, i])) for i, c in enumerate(channels)}
        for f in frequencies:
            avg = slot_problem(problem, harmonic, f)
            avg = replace(avg, objective=Objective("latency"),
                          constraints=replace(avg.constraints, energy_source_budget_j=budget))
            if planner.check(avg) is None:
                answer = planner.solve(avg)
                if answer.feasible:
                    add(answer.placement, f)
    S, K = len(states), len(choices)
    latency = np.full((S, K), math.inf)
    energy = np.full((S, K), math.inf)
    f_index = {f: i for i, f in enumerate(frequencies)}
    for s in range(S):
        for k, choice in enumerate(choices):
            latency[s, k], energy[s, k] = _figures(problems[s][f_index[choice.frequency]], choice.placement)
    hull = []
    for s in range(S):  # the state's own hull over every choice (a vertex of one frequency may be dominated)
        ids = np.array(sorted(set(hull_ids[s])), dtype=np.int64)
        hull.append(ids)
    return Menu(tuple(choices), state_of_slot, latency, energy, tuple(hull), tuple(conditions), float(slot_s))


# ---------------------------------------------------------------- the controller and its baselines
@dataclass(frozen=True)
class OnlineRun:
    """One run of a per-slot policy over a trace.

    Attributes:
        policy: ``lyapunov``, ``static`` or ``oracle``.
        V: the trade-off parameter (lyapunov), else nan.
        energy_budget_j: the long-term average budget of source energy per slot.
        choice: [N] the index (into the menu's choices) of each slot's choice.
        latency_s, energy_j: [N] each slot's figures.
        queue_j: [N + 1] the virtual energy queue (lyapunov), zeros otherwise.
        mean_latency_s, mean_energy_j: the averages over the slots (the oracle's: of its LP mix).
        queue_bound_j: the theoretical bound of the queue (lyapunov), else nan.
        drift_constant: ``B = max (E - E_budget)^2 / 2`` of the run's menu (lyapunov).
        multiplier: the oracle's tuned ``mu`` (J -> s), else nan.
    """

    policy: str
    V: float
    energy_budget_j: float
    choice: np.ndarray
    latency_s: np.ndarray
    energy_j: np.ndarray
    queue_j: np.ndarray
    mean_latency_s: float
    mean_energy_j: float
    queue_bound_j: float = math.nan
    drift_constant: float = math.nan
    multiplier: float = math.nan

    @property
    def max_queue_j(self) -> float:
        return float(self.queue_j.max())

    def summary(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "V": None if math.isnan(self.V) else self.V,
            "energy_budget_j": float(self.energy_budget_j),
            "mean_latency_s": self.mean_latency_s,
            "mean_energy_j": self.mean_energy_j,
            "max_queue_j": self.max_queue_j,
            "queue_bound_j": None if math.isnan(self.queue_bound_j) else float(self.queue_bound_j),
            "slots": int(self.choice.shape[0]),
        }


def _hull_arrays(menu: Menu) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    ids = list(menu.hull)
    return ids, [menu.latency_s[s, i] for s, i in enumerate(ids)], [menu.energy_j[s, i] for s, i in enumerate(ids)]


def _slater(menu: Menu, budget: float) -> tuple[float, float, float, float]:
    """(delta, dT, E_max, B) of the bounds (module docstring)."""
    _, lat, en = _hull_arrays(menu)
    e_min = np.array([e.min() for e in en])
    delta = budget - float(e_min.max())
    d_t = max(float(t[np.argmin(e)] - t.min()) for t, e in zip(lat, en, strict=True))
    e_max = max(float(e[np.isfinite(e)].max()) for e in en)
    b = 0.5 * max((e_max - budget) ** 2, (budget - float(e_min.min())) ** 2)
    return delta, d_t, e_max, b


def lyapunov_run(menu: Menu, V: float, energy_budget_j: float, queue_j: float = 0.0) -> OnlineRun:
    """Drift-plus-penalty over the menu's slots: per slot ``argmin V T + Q E``, then the queue update."""
    if not (V > 0 and math.isfinite(V)):
        raise TiercutError(f"V={V!r} must be a finite number > 0 (larger V: lower latency, larger energy queue)")
    if not (energy_budget_j > 0 and math.isfinite(energy_budget_j)):
        raise TiercutError(f"energy budget {energy_budget_j!r} J must be a finite number > 0")
    ids, lat, en = _hull_arrays(menu)
    delta, d_t, e_max, b = _slater(menu, energy_budget_j)
    n = menu.n_slots
    choice = np.empty(n, dtype=np.int64)
    latency = np.empty(n)
    energy = np.empty(n)
    queue = np.empty(n + 1)
    q = float(queue_j)
    queue[0] = q
    for t, s in enumerate(menu.state_of_slot):
        j = int(np.argmin(V * lat[s] + q * en[s]))
        choice[t], latency[t], energy[t] = ids[s][j], lat[s][j], en[s][j]
        q = max(q + energy[t] - energy_budget_j, 0.0)
        queue[t + 1] = q
    bound = (V * d_t / delta + max(e_max - energy_budget_j, 0.0) + queue_j) if delta > 0 else math.inf
    return OnlineRun("lyapunov", float(V), energy_budget_j, choice, latency, energy, queue,
                     float(latency.mean()), float(energy.mean()), bound, b)


def static_optimum(menu: Menu, energy_budget_j: float) -> OnlineRun:
    """The one choice for every slot with the lowest average latency whose average energy meets the budget."""
    lat = menu.latency_s[menu.state_of_slot]  # [N, K]
    en = menu.energy_j[menu.state_of_slot]
    mean_t, mean_e = lat.mean(axis=0), en.mean(axis=0)
    ok = np.isfinite(mean_t) & (mean_e <= energy_budget_j * (1 + 1e-12))
    if not ok.any():
        raise TiercutError(f"no single placement meets the average energy budget {energy_budget_j:.6g} J; raise it")
    k = int(np.argmin(np.where(ok, mean_t, np.inf)))
    n = menu.n_slots
    return OnlineRun("static", math.nan, energy_budget_j, np.full(n, k), lat[:, k].copy(), en[:, k].copy(), np.zeros(n + 1),
                     float(mean_t[k]), float(mean_e[k]))


def offline_oracle(menu: Menu, energy_budget_j: float) -> OnlineRun:
    """Per slot ``argmin T + mu E`` with ``mu`` tuned on the whole trace so the average energy meets the budget
    exactly (the two choices at ``mu*`` mixed): the LP relaxation's optimum, a lower bound for any policy.

    ``mean_latency_s``/``mean_energy_j`` are the LP mix's; ``choice``/``latency_s``/``energy_j`` are a per-slot
    schedule realising it (the slots where the two choices differ take the over-budget one in an evenly spread
    share that keeps the total within the budget): what the simulator replays."""
    ids, lat, en = _hull_arrays(menu)
    states = menu.state_of_slot
    counts = np.bincount(states, minlength=len(ids)).astype(float)
    n = menu.n_slots

    def at(mu: float) -> tuple[np.ndarray, float, float]:
        pick = [int(np.lexsort((e, t + mu * e))[0]) for t, e in zip(lat, en, strict=True)]
        mt = sum(c * lat[s][pick[s]] for s, c in enumerate(counts)) / n
        me = sum(c * en[s][pick[s]] for s, c in enumerate(counts)) / n
        return np.array(pick), float(mt), float(me)

    pick, mt, me = at(0.0)
    mu = 0.0
    if me > energy_budget_j:
        lo, hi = 0.0, 1.0
        while at(hi)[2] > energy_budget_j:
            hi *= 4.0
            if hi > 1e30:
                raise TiercutError(f"no per-slot choice meets the average energy budget {energy_budget_j:.6g} J; raise it")
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            if at(mid)[2] > energy_budget_j:
                lo = mid
            else:
                hi = mid
        pick_lo, t_lo, e_lo = at(lo)  # over the budget
        pick, t_hi, e_hi = at(hi)  # within it
        theta = 0.0 if e_lo == e_hi else (energy_budget_j - e_hi) / (e_lo - e_hi)
        theta = min(max(theta, 0.0), 1.0)
        mt = t_hi + theta * (t_lo - t_hi)
        me = e_hi + theta * (e_lo - e_hi)
        mu = hi
    else:
        pick_lo, theta = pick, 0.0
    # the per-slot schedule realising the mix: the slots whose two picks differ take the over-budget one in
    # an evenly spread theta' of them, theta' such that the total energy stays within the budget
    slot_pick = np.array([pick[s] for s in states], dtype=np.int64)
    differ = np.flatnonzero(np.array([pick_lo[s] != pick[s] for s in states], dtype=bool))
    if theta > 0 and differ.size:
        extra = np.array([en[s][pick_lo[s]] - en[s][pick[s]] for s in states[differ]])
        room = n * energy_budget_j - sum(en[s][pick[s]] for s in states)
        spread = np.flatnonzero(np.floor((np.arange(differ.size) + 1) * theta) > np.floor(np.arange(differ.size) * theta))
        take = spread[np.cumsum(extra[spread]) <= room + 1e-12 * abs(room)]
        slot_pick[differ[take]] = [pick_lo[s] for s in states[differ[take]]]
    choice = np.array([ids[s][slot_pick[t]] for t, s in enumerate(states)], dtype=np.int64)
    latency = np.array([lat[s][slot_pick[t]] for t, s in enumerate(states)])
    energy = np.array([en[s][slot_pick[t]] for t, s in enumerate(states)])
    return OnlineRun("oracle", math.nan, energy_budget_j, choice, latency, energy, np.zeros(n + 1), mt, me, multiplier=mu)


# ---------------------------------------------------------------- one slot as a registered planner
class PandaPlanner(Planner):
    """One slot of PANDA: the placement minimising ``V * latency + queue_j * source energy``."""

    name = "panda"
    summary = "one slot of PANDA's Lyapunov control: min V*latency + Q*energy (online loop: tiercut.plan.panda)"
    reference = (
        "Shi et al., Privacy-Aware Edge Computing Based on Adaptive DNN Partitioning, IEEE GLOBECOM 2019 (PANDA); "
        "Neely, Stochastic Network Optimization, 2010 (drift-plus-penalty)"
    )
    guarantee = "exact per slot (the inner planner's guarantee); the online loop: queue bounded, latency within B/V"
    complexity = "one inner solve per slot (the online loop: one lower hull per distinct bandwidth state)"
    cheap_fallback = False  # its objective is the slot's V*T + Q*E, not the problem's

    def __init__(self, V: float = 1.0, queue_j: float = 0.0, inner: str = DEFAULT_PLANNER) -> None:
        self.V = V
        self.queue_j = queue_j
        self.inner = inner

    def check(self, problem: Problem) -> str | None:
        from tiercut.plan.registry import PLANNERS

        if self.inner not in PLANNERS or self.inner == self.name or not PLANNERS[self.inner].single_user:
            return f"inner planner {self.inner!r} is not a registered single-user planner (e.g. ilp, brute-force)"
        if isinstance(self.V, bool) or not isinstance(self.V, (int, float)) or not (self.V > 0 and math.isfinite(self.V)):
            return f"setting V={self.V!r} must be a finite number > 0"
        if isinstance(self.queue_j, bool) or not isinstance(self.queue_j, (int, float)) or not (
                self.queue_j >= 0 and math.isfinite(self.queue_j)):
            return f"setting queue_j={self.queue_j!r} must be a finite number >= 0"
        if problem.compresses_cuts:
            return "cut compression is not part of PANDA's slot problem; drop it"
        from tiercut.plan.registry import get_planner

        return get_planner(self.inner).check(_weighted(slot_problem(problem, {}), float(self.V), float(self.queue_j)))

    def _solve(self, problem: Problem) -> PlacementResult:
        from tiercut.plan.registry import get_planner

        sub = _weighted(slot_problem(problem, {}), float(self.V), float(self.queue_j))
        answer = get_planner(self.inner).solve(sub)
        note = (f"one PANDA slot: min {self.V:g}*latency + {self.queue_j:g}*energy_source; the energy budget is "
                "the long-term one (met on average by the online loop, not per query)")
        return PlacementResult(dict(answer.placement), optimal=False, note=note)


__all__ = [
    "Choice",
    "Menu",
    "OnlineRun",
    "PandaPlanner",
    "build_menu",
    "lower_hull",
    "lyapunov_run",
    "offline_oracle",
    "slot_bandwidths",
    "slot_problem",
    "static_optimum",
]
