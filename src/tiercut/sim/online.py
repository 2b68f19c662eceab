"""PANDA's online control in the event simulator: per-slot drift-plus-penalty over simulated queries.

The slotted controller of :mod:`tiercut.plan.panda` (Shi et al., GLOBECOM
2019; Neely 2010) decides on the cost model; here it runs inside the
discrete-event simulator (:mod:`tiercut.sim.engine`), on the same users,
links, servers and bandwidth traces as any other simulation:

- users issue queries over time by their arrival processes while every
  traced link's bandwidth follows its :class:`~tiercut.sim.BandwidthTrace`
  (the simulator replays it on the link's channel);
- a **controller** process wakes at every slot boundary ``k * slot_s``: it
  observes each traced link's bandwidth at that instant (the trace sampled
  at the slot's start, the state of that user's menu) and each user's
  virtual energy queue ``Q_u``, and picks each user's choice (placement and
  the source's clock level) minimising ``V * T + Q_u * E`` over the exact
  hull of that state (:func:`tiercut.plan.panda.build_menu`: the cost
  model's figures of one query in the slot's conditions);
- every query issued during the slot runs that choice, event by event, with
  the simulator's contention (shared links and servers, processor sharing or
  FIFO) and its energy accounting (the source's compute, tx, rx and idle
  energy of what actually happened, at the slot's clock: compute times
  ``/ f``, compute power ``* f^3``);
- at the next boundary each user's queue takes the energy the simulator
  accounted for its queries completed in the slot against the budget per
  query: ``Q_u <- max(Q_u + sum_q (E_q - E_budget_u), 0)`` (each user its
  own queue and budget, Neely's per-slot update with one "arrival" per
  query). A query still running at a boundary counts in the slot it ends in.

The same run with a fixed per-slot schedule replays the baselines on the
same trace and users: the static optimum (one choice per user for the whole
run, :func:`tiercut.plan.panda.static_optimum`) and the offline oracle (the
per-slot choices knowing the whole trace, :func:`tiercut.plan.panda.offline_oracle`,
its LP mix realised slot by slot).

Contract: one user whose queries are issued one per slot at the slot's
start (``Periodic(slot_s)``, join at 0) and end within it, on otherwise idle
resources with sequential execution, gets every query's latency and energy
equal to the cost model's figures of its slot's choice, so the simulated run
equals :func:`tiercut.plan.panda.lyapunov_run` on the menu: same choices,
same queue, same averages (tested to 1e-9 relative). The queue bound
``V dT / delta + m (E_max - E_budget)`` (``m`` the most queries counted in
one slot; ``m = 1`` is Neely's) holds whenever the simulated energies are
the cost model's; under contention the energies drift from the
controller's figures and the bound is reported, not guaranteed. Whatever
happens, ``Q`` dominates the running sum of ``E_q - E_budget``, so a user's
mean energy over its ``n`` completed queries is at most ``E_budget + Q_final / n``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tiercut.errors import TiercutError
from tiercut.plan.base import DEFAULT_PLANNER
from tiercut.sim.core import EventLoop, SimEnvironment
from tiercut.sim.engine import Progress, Simulation, _Bound, _collector_paused, _Query, _Run, _UserState
from tiercut.sim.model import SimConfig, SimUser
from tiercut.sim.program import compile_program
from tiercut.sim.results import SimResult

#: the policies one comparison runs besides the Lyapunov controller at each V.
BASELINES = ("static", "oracle")


@dataclass(frozen=True)
class PandaControl:
    """The online controller's settings.

    Attributes:
        slot_s: the slot length (seconds): the controller decides at every multiple of it.
        V: the trade-off parameter of each Lyapunov run (larger: lower latency, larger queue).
        energy_budget_j: the long-term average source energy per query (J): one figure for every user, or
            user -> its own budget.
        frequencies: the source's clock levels, fractions of nominal (``(1.0,)``: no DVFS).
        inner: the exact single-user planner behind each slot's hull (``ilp`` by default).
        baselines: also run the static optimum and the offline oracle on the same users and trace.
    """

    slot_s: float
    V: tuple[float, ...]
    energy_budget_j: float | Mapping[str, float]
    frequencies: tuple[float, ...] = (1.0,)
    inner: str = DEFAULT_PLANNER
    baselines: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.slot_s, bool) or not (isinstance(self.slot_s, (int, float)) and math.isfinite(self.slot_s)
                                                  and self.slot_s > 0):  # fmt: skip
            raise TiercutError(f"controller slot_s {self.slot_s!r} must be a finite number of seconds > 0")
        if not self.V:
            raise TiercutError("controller V is empty; give one or more trade-off values > 0, e.g. [0.1, 1, 10]")
        for v in self.V:
            if isinstance(v, bool) or not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise TiercutError(f"controller V={v!r} must be a finite number > 0 (larger V: lower latency, larger queue)")
        budgets = self.energy_budget_j.values() if isinstance(self.energy_budget_j, Mapping) else [self.energy_budget_j]
        for b in budgets:
            if isinstance(b, bool) or not (isinstance(b, (int, float)) and math.isfinite(b) and b > 0):
                raise TiercutError(f"controller energy_budget_j {b!r} must be a finite number of joules per query > 0")
        if not self.frequencies or any(isinstance(f, bool) or not (isinstance(f, (int, float)) and 0 < f <= 1.0)
                                       for f in self.frequencies):  # fmt: skip
            raise TiercutError(f"controller frequencies {list(self.frequencies)!r} must be fractions of the nominal "
                               "clock in (0, 1]")  # fmt: skip

    def budget(self, user: str) -> float:
        if isinstance(self.energy_budget_j, Mapping):
            if user not in self.energy_budget_j:
                raise TiercutError(f"controller energy_budget_j names no budget for user {user!r}; give every user one")
            return float(self.energy_budget_j[user])
        return float(self.energy_budget_j)


@dataclass
class UserOnline:
    """One user's figures in one online run.

    Attributes:
        queries: queries completed.
        mean_latency_s, mean_energy_j: over the completed queries, as simulated.
        max_queue_j, final_queue_j: the virtual energy queue (J) at the slot boundaries (lyapunov: the one it
            decides with; baselines: the same bookkeeping, not used to decide).
        queue_bound_j: ``V dT / delta + m (E_max - E_budget)`` (lyapunov; inf if the budget is not strictly
            feasible in every slot; nan for baselines).
        energy_bound_j: ``E_budget + Q_final / queries``: what the mean energy cannot exceed.
        queue_j: [N + 1] the queue at each boundary (the last after the run's end).
        choice: [N] the menu index chosen in each slot.
        queries_per_slot: the most queries counted in one slot (``m``).
        planned_latency_s, planned_energy_j: the cost model's mean figures of the slots' choices (per query
            of each slot, weighted by the queries completed): what the controller expected.
    """

    user: str
    energy_budget_j: float
    queries: int
    mean_latency_s: float
    mean_energy_j: float
    max_queue_j: float
    final_queue_j: float
    queue_bound_j: float
    energy_bound_j: float
    queue_j: np.ndarray
    choice: np.ndarray
    queries_per_slot: int
    planned_latency_s: float
    planned_energy_j: float

    def to_dict(self, *, include_slots: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            k: _num(getattr(self, k))
            for k in ("user", "energy_budget_j", "queries", "mean_latency_s", "mean_energy_j", "max_queue_j",
                      "final_queue_j", "queue_bound_j", "energy_bound_j", "queries_per_slot", "planned_latency_s",
                      "planned_energy_j")
        }
        if include_slots:
            out["queue_j"] = [float(q) for q in self.queue_j]
            out["choice"] = [int(c) for c in self.choice]
        return out


def _num(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.floating):
        return _num(float(value))
    return value


@dataclass
class OnlineRunResult:
    """One policy's simulated run: ``policy`` (``lyapunov``, ``static`` or ``oracle``), its ``V`` (lyapunov),
    each user's figures and the simulation's result (every query)."""

    policy: str
    V: float
    users: dict[str, UserOnline]
    result: SimResult

    @property
    def mean_latency_s(self) -> float:
        """Over every completed query of every user."""
        n = sum(u.queries for u in self.users.values())
        return sum(u.mean_latency_s * u.queries for u in self.users.values() if u.queries) / n if n else math.nan

    @property
    def mean_energy_j(self) -> float:
        n = sum(u.queries for u in self.users.values())
        return sum(u.mean_energy_j * u.queries for u in self.users.values() if u.queries) / n if n else math.nan

    @property
    def max_queue_j(self) -> float:
        return max(u.max_queue_j for u in self.users.values())

    def to_dict(self, *, include_slots: bool = False) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "V": None if math.isnan(self.V) else self.V,
            "mean_latency_s": _num(self.mean_latency_s),
            "mean_energy_j": _num(self.mean_energy_j),
            "max_queue_j": _num(self.max_queue_j),
            "users": {n: u.to_dict(include_slots=include_slots) for n, u in self.users.items()},
            "events": self.result.events,
        }


@dataclass
class OnlineComparison:
    """The Lyapunov runs (one per V) and the baselines, on the same users and trace; ``analytic``: the cost
    model's slotted figures of the same policies (:mod:`tiercut.plan.panda`; per user, one query per slot)."""

    control: PandaControl
    n_slots: int
    runs: list[OnlineRunResult] = field(default_factory=list)
    analytic: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    menus: dict[str, Any] = field(default_factory=dict)

    def run(self, policy: str, V: float | None = None) -> OnlineRunResult:
        for r in self.runs:
            if r.policy == policy and (V is None or r.V == V):
                return r
        raise KeyError((policy, V))

    def to_dict(self, *, include_slots: bool = False) -> dict[str, Any]:
        c = self.control
        return {
            "controller": "panda",
            "slot_s": c.slot_s,
            "slots": self.n_slots,
            "V": list(c.V),
            "energy_budget_j": dict(c.energy_budget_j) if isinstance(c.energy_budget_j, Mapping) else c.energy_budget_j,
            "frequencies": list(c.frequencies),
            "inner": c.inner,
            "menus": {u: {"distinct_states": len(m.hull), "choices": len(m.choices)} for u, m in self.menus.items()},
            "runs": [r.to_dict(include_slots=include_slots) for r in self.runs],
            "analytic": self.analytic,
        }


# ---------------------------------------------------------------- the run
class _Policy(ABC):
    """Per slot and user, the menu index to run (``queue_j``: the user's queue now)."""

    name = "lyapunov"
    V = math.nan

    @abstractmethod
    def pick(self, user: str, slot: int, state: int, queue_j: float) -> int:
        """The menu index ``user`` runs in ``slot`` (bandwidth state ``state``)."""


class _Lyapunov(_Policy):
    def __init__(self, V: float, menus: Mapping[str, Any]) -> None:
        self.V = float(V)
        self.hull = {u: (m.hull, m.latency_s, m.energy_j) for u, m in menus.items()}

    def pick(self, user: str, slot: int, state: int, queue_j: float) -> int:
        hull, lat, en = self.hull[user]
        ids = hull[state]
        j = int(np.argmin(self.V * lat[state, ids] + queue_j * en[state, ids]))  # the same argmin as lyapunov_run
        return int(ids[j])


class _Schedule(_Policy):
    def __init__(self, name: str, schedule: Mapping[str, np.ndarray]) -> None:
        self.name = name
        self.schedule = schedule

    def pick(self, user: str, slot: int, state: int, queue_j: float) -> int:
        return int(self.schedule[user][slot])


class _Tracker:
    """One user's controller state: its queue, the slot's pending energy, its log."""

    def __init__(self, user: SimUser, menu: Any, budget: float, n_slots: int) -> None:
        self.user = user
        self.menu = menu
        self.budget = budget
        self.queue = 0.0
        self.pending = 0.0  # sum of (E_q - budget) over queries completed since the last boundary
        self.counted = 0  # queries completed since the last boundary
        self.most = 0
        self.queues = np.zeros(n_slots + 1)
        self.choice = np.full(n_slots, -1, dtype=np.int64)
        self.bound: _Bound | None = None
        self.cache: dict[tuple[int, int], _Bound] = {}
        self.planned_t = 0.0
        self.planned_e = 0.0
        self.meta: dict[int, tuple[int, int]] = {}  # id(bound) -> (state, choice)

    def close_slot(self) -> None:
        self.queue = max(self.queue + self.pending, 0.0)
        self.most = max(self.most, self.counted)
        self.pending = 0.0
        self.counted = 0


class _OnlineRun(_Run):
    """A simulation run whose users' placements a per-slot controller chooses (module docstring)."""

    def __init__(
        self, users: Sequence[SimUser], config: SimConfig, event_loop: Callable[[], EventLoop], control: PandaControl,
        menus: Mapping[str, Any], policy: _Policy, n_slots: int,
    ) -> None:  # fmt: skip
        super().__init__(users, config, event_loop)
        self.control = control
        self.policy = policy
        self.n_slots = n_slots
        self.trackers = {s.user.name: _Tracker(s.user, menus[s.user.name], control.budget(s.user.name), n_slots)
                         for s in self.states}  # fmt: skip
        self.by_state = {id(s): self.trackers[s.user.name] for s in self.states}

    def start(self) -> None:
        self.env.process(self._controller())  # first: at a boundary it decides before that instant's queries
        super().start()

    def _controller(self) -> Any:
        env = self.env
        for k in range(self.n_slots):
            if k > 0:
                yield env.timeout(self.control.slot_s)
            for tracker in self.trackers.values():
                if k > 0:
                    tracker.close_slot()
                tracker.queues[k] = tracker.queue
                state = int(tracker.menu.state_of_slot[k])
                choice = self.policy.pick(tracker.user.name, k, state, tracker.queue)
                tracker.choice[k] = choice
                tracker.bound = self._bound_for(tracker, state, choice)

    def _bound_for(self, tracker: _Tracker, state: int, choice: int) -> _Bound:
        key = (state, choice)
        bound = tracker.cache.get(key)
        if bound is None:
            user = tracker.user
            menu = tracker.menu
            problem = menu.problem(user.problem, state, choice)
            program = compile_program(problem, menu.choices[choice].placement, self.config.execution)
            st = next(s for s in self.states if s.user is user)
            bound = tracker.cache[key] = self.bind(st, program, -2, float(menu.latency_s[state, choice]))
            tracker.meta[id(bound)] = key
        return bound

    def _current(self, state: _UserState) -> _Bound:
        bound = self.by_state[id(state)].bound
        assert bound is not None  # the controller decides at t = 0, before any query
        return bound

    def finish(self, query: _Query) -> None:
        tracker = self.by_state[id(query.state)]
        super().finish(query)
        record = query.record
        tracker.pending += float(record.energy_source_j) - tracker.budget
        tracker.counted += 1
        state, choice = tracker.meta[id(query.bound)]  # the choice it was issued with
        tracker.planned_t += float(tracker.menu.latency_s[state, choice])
        tracker.planned_e += float(tracker.menu.energy_j[state, choice])


def _queue_bound(menu: Any, V: float, budget: float, m: int) -> float:
    from tiercut.plan.panda import _slater

    delta, d_t, e_max, _ = _slater(menu, budget)
    if delta <= 0:
        return math.inf
    return V * d_t / delta + max(m, 1) * max(e_max - budget, 0.0)


def _simulate(
    users: Sequence[SimUser], config: SimConfig, control: PandaControl, menus: Mapping[str, Any], policy: _Policy,
    n_slots: int, event_loop: Callable[[], EventLoop], progress: Progress | None,
) -> OnlineRunResult:  # fmt: skip
    import time

    from tiercut.sim.engine import PROGRESS_STEPS

    run = _OnlineRun(users, config, event_loop, control, menus, policy, n_slots)
    start = time.perf_counter()
    duration = config.duration_s
    assert duration is not None
    with _collector_paused():
        run.start()
        for step in range(1, PROGRESS_STEPS + 1):
            run.env.run(until=duration * step / PROGRESS_STEPS)
            if progress is not None:
                progress(run.env.now, duration)
    result = run.result(time.perf_counter() - start)
    figures: dict[str, UserOnline] = {}
    for name, tracker in run.trackers.items():
        tracker.close_slot()
        tracker.queues[n_slots] = tracker.queue
        mine = [q for q in result.queries if q.user == name and q.end_s is not None]
        n = len(mine)
        lat = float(np.mean([q.end_s - q.start_s for q in mine])) if n else math.nan
        energy = float(np.mean([q.energy_source_j for q in mine])) if n else math.nan
        bound = _queue_bound(tracker.menu, policy.V, tracker.budget, tracker.most) if policy.name == "lyapunov" else math.nan
        figures[name] = UserOnline(
            name, tracker.budget, n, lat, energy, float(tracker.queues.max()), float(tracker.queue), bound,
            tracker.budget + tracker.queue / n if n else math.nan, tracker.queues, tracker.choice, tracker.most,
            tracker.planned_t / n if n else math.nan, tracker.planned_e / n if n else math.nan,
        )
    return OnlineRunResult(policy.name, policy.V, figures, result)


def _check_users(users: Sequence[SimUser]) -> None:
    if not users:
        raise TiercutError("an online simulation needs at least one user")
    for user in users:
        if user.plan is not None or user.tiled_stages or user.cut_compression:
            raise TiercutError(
                f"user {user.name!r}: the online controller chooses its placement every slot; give it no upload plan, "
                "tiled stages or cut compression (scenario: upload.algorithm none)"
            )


def simulate_online(
    users: Sequence[SimUser], config: SimConfig, control: PandaControl, *,
    event_loop: Callable[[], EventLoop] = SimEnvironment, progress: Callable[[str, float, float], None] | None = None,
) -> OnlineComparison:  # fmt: skip
    """Run PANDA's controller at every V of ``control`` (and the baselines) in the simulator (module docstring).

    ``config.duration_s`` is needed (the run has ``ceil(duration_s / slot_s)`` slots); ``config.traces``
    are the bandwidth traces, replayed by the simulator and observed by the controller. Each user's menu is
    built from its own problem and the traces on its links (a user with none has one state).
    ``progress(label, now_s, total_s)`` is called at checkpoints of each run.
    """
    from tiercut.plan.panda import build_menu, lyapunov_run, offline_oracle, static_optimum

    _check_users(users)
    if config.duration_s is None:
        raise TiercutError("an online simulation needs a duration_s (the controller decides once per slot over it)")
    n_slots = math.ceil(config.duration_s / control.slot_s - 1e-9)
    menus = {}
    for user in users:
        keys = {link.key for link in user.problem.links}
        traces = [t for t in config.traces if frozenset((t.a, t.b)) in keys]
        try:
            menus[user.name] = build_menu(user.problem, traces, control.slot_s, n_slots, control.frequencies, control.inner,
                                          control.budget(user.name))  # fmt: skip
        except TiercutError as exc:
            raise TiercutError(f"user {user.name!r}: {exc}") from None
    Simulation(users, config).check()  # the plain simulator's own checks (names, devices, traces)
    comparison = OnlineComparison(control, n_slots, menus=menus)
    policies: list[_Policy] = [_Lyapunov(V, menus) for V in control.V]
    if control.baselines:
        static, oracle = {}, {}
        for user in users:
            menu, budget = menus[user.name], control.budget(user.name)
            try:
                static[user.name] = static_optimum(menu, budget).choice
                oracle[user.name] = offline_oracle(menu, budget).choice
            except TiercutError as exc:
                raise TiercutError(f"user {user.name!r}: {exc}") from None
        policies += [_Schedule("static", static), _Schedule("oracle", oracle)]
    for policy in policies:
        label = f"{policy.name}" + ("" if math.isnan(policy.V) else f" V={policy.V:g}")

        def tick(now: float, total: float, label: str = label) -> None:
            if progress is not None:
                progress(label, now, total)

        comparison.runs.append(_simulate(users, config, control, menus, policy, n_slots, event_loop, tick))
    for user in users:
        menu, budget = menus[user.name], control.budget(user.name)
        rows = [lyapunov_run(menu, V, budget).summary() for V in control.V]
        if control.baselines:
            rows += [static_optimum(menu, budget).summary(), offline_oracle(menu, budget).summary()]
        comparison.analytic[user.name] = rows
    return comparison


__all__ = ["BASELINES", "OnlineComparison", "OnlineRunResult", "PandaControl", "UserOnline", "simulate_online"]
