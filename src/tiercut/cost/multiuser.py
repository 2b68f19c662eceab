"""The multi-user equal-share model of docs/cost-model.md.

Each user has its own graph and source device. A device used by ``n_d``
users (a user uses a device when at least one of its non-input nodes runs
there) gives each of them ``1/n_d`` of its speed: their compute times on it
are multiplied by ``n_d``. A link used by ``n_l`` users (a user uses a link
when at least one hop of one of its transfers goes over it, either direction)
gives each ``1/n_l`` of its bandwidth: the ``out/bandwidth`` term of every hop
over it is multiplied by ``n_l`` (the link latency is not shared). Transfers
keep the paths of the problem's own routing (chosen on the links' nominal
figures). Each user's figures are then its single-user figures
(:func:`tiercut.cost.evaluate` with the share multipliers): its latency with
those stretched times, its energy and cost for its own work (the unstretched
seconds: during the rest of a stretched second the shared resource does the
other users' work, charged to them), so ``n`` identical users on one server
sum to ``n`` times one user's compute energy and price, not ``n^2``. The
source's energy is ``P_idle*T + sum_X (P_X - P_idle)*work_X`` (``T`` the
stretched latency, ``work_X`` its own compute/tx/rx seconds), the
simulator's attribution with one query per user in flight: users whose
sources are one device split its idle power (``P_idle*T/m`` each, ``m`` of
them). A user's source may also serve other users (they place nodes on it):
its compute for them is in their ``energy_total``, not in this user's source
energy.

Aggregates: mean and max user latency, summed source energy, summed total
energy, summed cost. The objective's ``latency`` term is the mean or the max
(``objective.aggregate``). Memory limits hold for every user's parameters
together; budgets and pinned nodes are per user.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from tiercut.cost.model import Evaluation, evaluate, objective_value
from tiercut.cost.vector import CompiledProblem, compile_problem, evaluate_many, transfer_mask
from tiercut.errors import TiercutError
from tiercut.problem import MultiUserProblem, Problem, Shares
from tiercut.problem.shares import link_name


@dataclass(frozen=True)
class MultiEvaluation:
    """Figures of one joint placement of every user.

    Attributes:
        users: user -> its :class:`Evaluation` under the shared speeds.
        latency_mean_s, latency_max_s: over users.
        energy_source_j, energy_total_j, cost: sums over users.
        objective_value: the multi-user objective.
        memory_bytes: device -> parameter bytes of every user placed on it.
        device_users: device -> number of users computing on it.
        link_users: "a|b" -> number of users sending over the link.
        valid: every user's placement is valid.
        violations: broken rules, each prefixed with the user (memory: shared).
    """

    users: Mapping[str, Evaluation]
    latency_mean_s: float
    latency_max_s: float
    energy_source_j: float
    energy_total_j: float
    cost: float
    objective_value: float
    memory_bytes: Mapping[str, int]
    device_users: Mapping[str, int]
    link_users: Mapping[str, int]
    valid: bool
    violations: tuple[str, ...]

    @property
    def feasible(self) -> bool:
        return not self.violations


def _full(problem: Problem, placement: Mapping[str, str]) -> dict[str, str]:
    out = {}
    for node in problem.graph:
        device = placement.get(node.name, problem.source if node.is_input else None)
        if device is None:
            raise TiercutError(f"placement has no device for node {node.name!r}; place every node")
        out[node.name] = device
    return out


def usage(problem: Problem, placement: Mapping[str, str]) -> tuple[set[str], set[frozenset[str]]]:
    """Devices a user computes on and links its transfers' hops go over, for ``placement``."""
    full = _full(problem, placement)
    devices = {full[n.name] for n in problem.graph if not n.is_input}
    links: set[frozenset[str]] = set()
    consumers = problem.graph.consumers()
    routing = problem.routing
    for node in problem.graph:
        here = full[node.name]
        dest = {full[w] for w in consumers[node.name]}
        if node.is_output:
            dest.add(problem.source)
        for d in dest:
            if d == here:
                continue
            path = routing.path(here, d, node.out_bytes)
            if path is not None:
                links.update(frozenset((h.src, h.dst)) for h in path.hops)
    return devices, links


def shared_problem(
    problem: Problem, device_users: Mapping[str, int], link_users: Mapping[frozenset[str], int], source_users: float = 1.0
) -> Problem:
    """``problem`` with compute times stretched by the device's user count and
    bandwidths divided by the link's user count (memory checked jointly, so off).

    The transfers keep the paths the nominal links choose (``routing_links``),
    as in :func:`evaluate_users`. A device's compute power and price per
    second are divided by its user count, so a stretched second is charged as
    the user's own ``1/n`` of a second of work. A placement's latency and cost
    here are the user's equal-share figures; its energies too except where a
    single-user problem cannot express the share rule: the radio energy of a
    hop over a shared link is charged for the stretched hop time (an upper
    bound: the devices' tx/rx powers serve all their links), and a source
    device that other users compute on has its idle power charged for the
    user's stretched compute seconds only (this user's own work, not the
    others': a lower bound there). ``source_users`` users sharing the source
    device divide its idle power (over the source's idle time here, not its
    whole latency: an upper bound when the source also works for the user).
    """
    n_users = {d.name: max(1.0, float(device_users.get(d.name, 0))) for d in problem.devices}
    compute = {
        n: {d: s * n_users.get(d, 1.0) for d, s in row.items()} for n, row in problem.compute_s.items()
    }
    devices = tuple(
        d if n_users[d.name] == 1.0
        else replace(d, power_compute_w=d.power_compute_w / n_users[d.name], price_per_s=d.price_per_s / n_users[d.name])
        for d in problem.devices
    )
    if source_users != 1.0:
        devices = tuple(replace(d, power_idle_w=d.power_idle_w / source_users) if d.name == problem.source else d
                        for d in devices)
    links = tuple(link.scaled(1.0 / max(1, link_users.get(link.key, 0))) for link in problem.links)
    nominal = problem.routing_links if problem.routing_links is not None else problem.links
    return replace(
        problem, devices=devices, compute_s=compute, links=links, routing_links=nominal,
        constraints=replace(problem.constraints, memory=False),
    )


def evaluate_users(
    problem: MultiUserProblem, placements: Mapping[str, Mapping[str, str]], shares: Shares | None = None
) -> MultiEvaluation:
    """Every figure of a joint placement under the equal-share model, or under explicit resource ``shares``.

    With ``shares`` (:class:`~tiercut.problem.Shares`, e.g. from :func:`tiercut.cost.allocation.allocate`)
    user ``u``'s compute times on a device are divided by its fraction of the device and its ``out /
    bandwidth`` terms on a link by its fraction of the link; every resource a user uses must have its
    fraction there, unless no other user uses it (then it has the whole resource).
    """
    for name in placements:
        problem.user(name)
    fulls: dict[str, dict[str, str]] = {}
    device_users: dict[str, int] = {}
    link_users: dict[frozenset[str], int] = {}
    for user in problem.users:
        if user.name not in placements:
            raise TiercutError(f"no placement for user {user.name!r}; give one per user")
        fulls[user.name] = _full(user.problem, placements[user.name])
        devices, links = usage(user.problem, fulls[user.name])
        for d in devices:
            device_users[d] = device_users.get(d, 0) + 1
        for key in links:
            link_users[key] = link_users.get(key, 0) + 1
    evaluations: dict[str, Evaluation] = {}
    violations: list[str] = []
    memory = {d: 0 for d in problem.device_names}
    device_share = {d: float(max(1, n)) for d, n in device_users.items()}
    link_share = {k: float(max(1, n)) for k, n in link_users.items()}
    per_user = _share_multipliers(problem, fulls, device_users, link_users, shares) if shares is not None else None
    sources = source_users(problem)
    for user in problem.users:
        unshared = user.problem.with_constraints(replace(user.problem.constraints, memory=False))  # routing kept
        m = sources[user.problem.source]
        if per_user is not None:
            ev = evaluate(unshared, fulls[user.name], device_share=per_user[user.name][0], link_share=per_user[user.name][1],
                          source_users=m)
        else:
            ev = evaluate(unshared, fulls[user.name], device_share=device_share, link_share=link_share, source_users=m)
        evaluations[user.name] = ev
        violations.extend(f"user {user.name!r}: {v}" for v in ev.violations)
        for d, b in ev.memory_bytes.items():
            memory[d] += b
    for device in problem.devices:
        limit = device.memory_bytes
        if limit is not None and any(u.problem.constraints.memory for u in problem.users) and memory[device.name] > limit:
            violations.append(
                f"{device.name!r} holds {memory[device.name]:,} parameter bytes of all users, over its memory of {limit:,}"
            )
    lat = [ev.latency_s for ev in evaluations.values()]
    metrics = {
        "latency_mean": float(np.mean(lat)),
        "latency_max": float(max(lat)),
        "energy_source": float(sum(ev.energy_source_j for ev in evaluations.values())),
        "energy_total": float(sum(ev.energy_total_j for ev in evaluations.values())),
        "cost": float(sum(ev.cost for ev in evaluations.values())),
    }
    valid = all(ev.valid for ev in evaluations.values())
    return MultiEvaluation(
        users=evaluations,
        latency_mean_s=metrics["latency_mean"],
        latency_max_s=metrics["latency_max"],
        energy_source_j=metrics["energy_source"],
        energy_total_j=metrics["energy_total"],
        cost=metrics["cost"],
        objective_value=multi_objective_value(problem, metrics) if valid else math.inf,
        memory_bytes=memory,
        device_users={d: device_users.get(d, 0) for d in problem.device_names},
        link_users={"|".join(sorted(k)): v for k, v in link_users.items()},
        valid=valid,
        violations=tuple(violations),
    )


def source_users(problem: MultiUserProblem) -> dict[str, float]:
    """Source device -> the number of users whose source it is (they split its idle power)."""
    out: dict[str, float] = {}
    for user in problem.users:
        out[user.problem.source] = out.get(user.problem.source, 0.0) + 1.0
    return out


def _share_multipliers(
    problem: MultiUserProblem,
    fulls: Mapping[str, Mapping[str, str]],
    device_users: Mapping[str, int],
    link_users: Mapping[frozenset[str], int],
    shares: Shares,
) -> dict[str, tuple[dict[str, float], dict[frozenset[str], float]]]:
    """user -> (device multipliers, link multipliers) of ``shares``; a used resource without a fraction is an error
    unless the user is its only user."""
    for name in (*shares.devices, *shares.links):
        for user in (shares.devices.get(name) or shares.links.get(name) or {}):
            problem.user(user)
    known_links = {link_name(link.key) for link in problem.links}
    for name in shares.devices:
        if name not in problem.device_names:
            raise TiercutError(
                f"shares name device {name!r}, which is not a device; devices are {', '.join(problem.device_names)}"
            )
    for name in shares.links:
        if name not in known_links:
            raise TiercutError(f"shares name link {name!r}, which is not a link; name a link as 'a|b' (ends sorted)")
    out: dict[str, tuple[dict[str, float], dict[frozenset[str], float]]] = {}
    for user in problem.users:
        devices, links = usage(user.problem, fulls[user.name])
        dmult = shares.device_multipliers(user.name)
        lmult = shares.link_multipliers(user.name)
        for d in devices:
            if d not in dmult:
                if device_users.get(d, 0) > 1:
                    raise TiercutError(f"shares give user {user.name!r} no fraction of device {d!r}, which it shares; add one")
                dmult[d] = 1.0
        for key in links:
            if key not in lmult:
                if link_users.get(key, 0) > 1:
                    raise TiercutError(
                        f"shares give user {user.name!r} no fraction of link {link_name(key)!r}, which it shares; add one"
                    )
                lmult[key] = 1.0
        out[user.name] = (dmult, lmult)
    return out


def multi_objective_value(problem: MultiUserProblem, metrics: Mapping[str, float]) -> float:
    """The multi-user objective from aggregated metrics (``latency_mean``/``latency_max`` + sums)."""
    agg = {
        "latency": metrics[f"latency_{problem.objective.aggregate}"],
        "energy_source": metrics["energy_source"],
        "energy_total": metrics["energy_total"],
        "cost": metrics["cost"],
    }
    return objective_value(problem.objective, agg)


# ---------------------------------------------------------------- vectorised
@dataclass(frozen=True)
class MultiBatchEvaluation:
    """Figures of many joint placements.

    Attributes:
        latency_s, energy_source_j, energy_total_j, cost: [P, U] per user.
        latency_mean_s, latency_max_s: [P].
        objective: [P] the multi-user objective (inf where not valid).
        memory_bytes: [P, D] every user's parameters per device.
        valid, feasible: [P].
        penalty: [P] 0 when feasible, summed relative excess otherwise (inf when not valid).
    """

    latency_s: np.ndarray
    energy_source_j: np.ndarray
    energy_total_j: np.ndarray
    cost: np.ndarray
    latency_mean_s: np.ndarray
    latency_max_s: np.ndarray
    objective: np.ndarray
    memory_bytes: np.ndarray
    valid: np.ndarray
    feasible: np.ndarray
    penalty: np.ndarray


@dataclass(frozen=True)
class CompiledMultiUser:
    """Per-user compiled problems and the column offsets of a joint placement row.

    A joint placement row is the users' rows side by side, in user order:
    columns ``offsets[u]:offsets[u + 1]`` are user ``u``'s nodes.
    """

    problem: MultiUserProblem

    @cached_property
    def users(self) -> tuple[CompiledProblem, ...]:
        return tuple(compile_problem(shared_problem(u.problem, {}, {})) for u in self.problem.users)

    @cached_property
    def offsets(self) -> np.ndarray:
        sizes = [len(u.problem.graph) for u in self.problem.users]
        return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

    @property
    def n_columns(self) -> int:
        return int(self.offsets[-1])

    def split(self, X: np.ndarray) -> list[np.ndarray]:
        return [X[:, self.offsets[i] : self.offsets[i + 1]] for i in range(len(self.problem.users))]


def compile_users(problem: MultiUserProblem) -> CompiledMultiUser:
    return CompiledMultiUser(problem)


def evaluate_users_many(problem: MultiUserProblem | CompiledMultiUser, placements: np.ndarray) -> MultiBatchEvaluation:
    """Score joint placements ([P, total nodes], users side by side) under the equal-share model."""
    comp = problem if isinstance(problem, CompiledMultiUser) else CompiledMultiUser(problem)
    mp = comp.problem
    X = np.atleast_2d(np.asarray(placements)).astype(np.int64)
    if X.shape[1] != comp.n_columns:
        raise TiercutError(f"joint placements have {X.shape[1]} columns; the users have {comp.n_columns} nodes together")
    P = X.shape[0]
    D = len(mp.device_names)
    parts = comp.split(X)
    dev_count = np.zeros((P, D))
    link_count = np.zeros((P, D, D))
    for cu, Xu in zip(comp.users, parts, strict=True):
        cols = np.array([i for i, node in enumerate(cu.problem.graph) if not node.is_input], dtype=np.int64)
        used = np.zeros((P, D), dtype=bool)
        used[np.arange(P)[:, None], Xu[:, cols]] = True
        dev_count += used
        if len(cu.senders):
            mask = transfer_mask(cu, Xu)  # [P, S, D]
            a = Xu[:, cu.senders]
            pp, ss, dd = np.nonzero(mask)
            k = cu.route[cu.senders[ss], a[pp, ss], dd]
            used = np.zeros((P, len(cu.paths.latency)), dtype=bool)
            used[pp, k] = True
            hops = (used.astype(np.float64) @ (cu.paths.hop_spb > 0)).reshape(P, D, D) > 0
            hops |= hops.transpose(0, 2, 1)
            link_count += hops
    device_share = np.maximum(dev_count, 1.0)
    link_share = np.maximum(link_count, 1.0)
    U = len(mp.users)
    fig = {k: np.empty((P, U)) for k in ("latency", "energy_source", "energy_total", "cost")}
    valid = np.ones(P, dtype=bool)
    penalty = np.zeros(P)
    memory = np.zeros((P, D))
    sources = source_users(mp)
    for j, (cu, Xu) in enumerate(zip(comp.users, parts, strict=True)):
        batch = evaluate_many(cu, Xu, device_share=device_share, link_share=link_share,
                              source_users=sources[cu.problem.source])
        for k in fig:
            fig[k][:, j] = batch.metric(k)
        valid &= batch.valid
        penalty += batch.penalty
        memory += batch.memory_bytes
    limits = np.array([np.inf if d.memory_bytes is None else float(d.memory_bytes) for d in mp.devices])
    if not any(u.problem.constraints.memory for u in mp.users):
        limits[:] = np.inf
    finite = np.isfinite(limits)
    if finite.any():
        excess = np.maximum(memory[:, finite] - limits[finite], 0.0)
        penalty = penalty + (excess / np.maximum(limits[finite], 1.0)).sum(axis=1)
    penalty[~valid] = np.inf
    lat_mean = fig["latency"].mean(axis=1)
    lat_max = fig["latency"].max(axis=1)
    agg = {
        "latency": lat_mean if mp.objective.aggregate == "mean" else lat_max,
        "energy_source": fig["energy_source"].sum(axis=1),
        "energy_total": fig["energy_total"].sum(axis=1),
        "cost": fig["cost"].sum(axis=1),
    }
    objective = np.zeros(P)
    for name, weight in mp.objective.metric_weights().items():
        objective = objective + weight * agg[name]
    objective[~valid] = np.inf
    return MultiBatchEvaluation(
        latency_s=fig["latency"],
        energy_source_j=fig["energy_source"],
        energy_total_j=fig["energy_total"],
        cost=fig["cost"],
        latency_mean_s=lat_mean,
        latency_max_s=lat_max,
        objective=objective,
        memory_bytes=memory,
        valid=valid,
        feasible=valid & (penalty == 0),
        penalty=penalty,
    )


__all__ = [
    "CompiledMultiUser",
    "MultiBatchEvaluation",
    "MultiEvaluation",
    "compile_users",
    "evaluate_users",
    "evaluate_users_many",
    "multi_objective_value",
    "shared_problem",
    "source_users",
    "usage",
]
