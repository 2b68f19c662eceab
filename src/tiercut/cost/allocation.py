"""Optimal resource shares for given placements (JMDP / JPDRA's allocation step; docs/cost-model.md).

With every user's placement fixed, user ``i``'s figures under shares ``s``
(:class:`~tiercut.problem.Shares`) are affine in the inverse shares: the
latency is a sum of compute times (divided by the user's share of the device)
and transfer hop times (their ``out / bandwidth`` term divided by the share of
the link); energy and price are charged for the user's own (unshared) work, so
the total energy and the cost do not depend on the shares (slope 0) and the
source energy only through its idle power over the latency (slope ``P_idle / m``
times the latency's, ``m`` the users sharing the source device). So for every metric ``M`` (latency, source energy,
total energy, cost)::

    M_i(s) = M_i^0 + sum_r k^M_{i,r} / s_{i,r}          (k >= 0)

:func:`share_terms` reads ``M_i^0`` and ``k`` off the cost model itself
(:func:`tiercut.cost.evaluate` with multiplier 1 and 2 on one resource at a
time), so the allocation never re-implements the model. The allocation
problem, over the resources ``r`` two or more users use (one user alone gets
the whole resource, share 1)::

    minimise   J(s)   subject to   sum_i s_{i,r} <= 1,  s_{i,r} > 0

is convex (``1/s`` is convex on ``s > 0``; a max of convex functions is convex):

- ``aggregate="mean"`` (the latency term is the mean over users, the other
  metrics sums): ``J = sum_r sum_i K_{i,r} / s_{i,r} + const`` with
  ``K = sum_M w_M k^M`` (latency weight divided by the number of users).
  The resources separate and the KKT conditions (``K_{i,r} / s_{i,r}^2 =
  lambda_r``) give the **closed form** ``s_{i,r} = sqrt(K_{i,r}) / sum_j
  sqrt(K_{j,r})``, value ``(sum_i sqrt(K_{i,r}))^2`` per resource
  (Tang et al. 2020's allocation step has the same square-root rule).
- ``aggregate="max"`` (latency term the max over users): when each user
  competes on one resource only and the objective is latency alone, the
  resources separate and each is a **bisection** on its users' common
  latency ``t``: ``sum_i a_{i,r} / (t - L_i) = 1`` (water-filling; ``a`` the
  user's latency coefficient, ``L_i`` the rest of its latency). When users
  compete on several resources each (latency alone), the Lagrangian dual is
  the Rayleigh quotient of ``B = C C' + diag(L)`` (``C = sqrt(a)`` over the
  contended resources): the least max latency is ``B``'s largest eigenvalue
  and its Perron vector ``mu`` gives the shares ``s_{i,r} ∝ mu_i c_{i,r}``,
  exactly (``perron``; :func:`_perron_shares`), one eigenproblem per group
  of users linked by shared resources. With other metrics weighted in, the
  epigraph program ``min w t + sum_{i,r} K'_{i,r}/s_{i,r}`` s.t. ``L_i +
  sum_r a_{i,r}/s_{i,r} <= t`` is solved by ``scipy.optimize.minimize``
  (SLSQP, analytic gradients) from the equal shares, and the answer is
  never worse than the equal shares.

A user with no work on a resource it touches (``K = 0``, e.g. a zero-FLOP
node) keeps a floor of ``1e-6`` of the resource's largest ``sqrt(K)`` in the
closed form, so every share stays positive.

Papers: Tang, Chen, Zeng, Yu, Chen, "Joint Multi-User DNN Partitioning and
Computational Resource Allocation for Collaborative Edge Intelligence",
IEEE Internet of Things Journal 2020 (arXiv:2007.09072; the survey's JMDP,
solved by Iterative Alternating Optimization); He, Guo, Guo, Qiu, Qi, "Joint
DNN Partition Deployment and Resource Allocation for Delay-Sensitive Deep
Learning Inference in IoT", IEEE IoT Journal 7(10):9241-9254, 2020 (JPDRA).
Convexity and KKT: Boyd and Vandenberghe, Convex Optimization, 2004, ch. 5.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from tiercut.cost.model import evaluate
from tiercut.cost.multiuser import _full, evaluate_users, source_users, usage
from tiercut.errors import TiercutError
from tiercut.problem import METRICS, MultiUserProblem, Problem, Shares
from tiercut.problem.shares import link_name

#: how an allocation was solved.
METHODS = ("closed-form", "bisection", "perron", "slsqp", "equal")

_FLOOR = 1e-6


@dataclass(frozen=True)
class ShareTerms:
    """The affine model of one joint placement's figures in the inverse shares.

    Attributes:
        users: user names, in the problem's order.
        resources: ``("device", name)`` or ``("link", "a|b")`` of every resource some user uses.
        uses: [U, R] user i uses resource r.
        constant: metric -> [U] the figure with no shared work (``M_i^0``).
        slope: metric -> [U, R] the coefficient of ``1 / s_{i,r}`` (0 where unused).
    """

    users: tuple[str, ...]
    resources: tuple[tuple[str, str], ...]
    uses: np.ndarray
    constant: Mapping[str, np.ndarray]
    slope: Mapping[str, np.ndarray]

    @property
    def contended(self) -> np.ndarray:
        """[R] resources two or more users use."""
        return self.uses.sum(axis=0) >= 2

    def metrics(self, S: np.ndarray) -> dict[str, np.ndarray]:
        """metric -> [U] figures under shares ``S`` ([U, R]; entries where unused are ignored)."""
        inv = np.where(self.uses, 1.0 / np.where(self.uses, S, 1.0), 0.0)
        return {m: self.constant[m] + (self.slope[m] * inv).sum(axis=1) for m in METRICS}

    def equal_shares(self) -> np.ndarray:
        n = np.maximum(self.uses.sum(axis=0), 1)
        return np.where(self.uses, 1.0 / n[None, :], 0.0)


@dataclass(frozen=True)
class Allocation:
    """The shares an allocation chose and what they achieve.

    Attributes:
        shares: the fractions, for every resource some user uses.
        objective_value: the multi-user objective under ``shares`` (affine model, equal to
            :func:`tiercut.cost.evaluate_users` with them).
        equal_objective_value: the same objective under equal shares.
        method: one of :data:`METHODS`: how it was solved (``equal``: the solver's answer was not
            better than the equal shares, which were kept).
        matrix: [U, R] the shares (0 where a user does not use the resource), over ``terms.resources``.
        terms: the affine model the allocation solved.
    """

    shares: Shares
    objective_value: float
    equal_objective_value: float
    method: str
    matrix: np.ndarray
    terms: ShareTerms


# ---------------------------------------------------------------- the affine model, read off the cost model
def share_terms(
    problem: MultiUserProblem, placements: Mapping[str, Mapping[str, str]], cache: dict[Any, Any] | None = None
) -> ShareTerms:
    """The affine model ``M_i(s) = M_i^0 + sum_r k_{i,r} / s_{i,r}`` of ``placements``, from the cost model.

    Each slope is ``evaluate`` with multiplier 2 on one resource minus ``evaluate`` with multiplier 1 (the
    model is exactly affine in the multipliers: docs/cost-model.md's latency is a sum of stretched times, the
    source energy ``P_idle`` times the latency plus share-independent terms, total energy and cost
    share-independent). An invalid placement (a node where it cannot run, an unreachable transfer) is an error.
    A user's terms depend on its own placement only: ``cache`` (a dict the caller keeps across calls, e.g.
    the rounds of :mod:`tiercut.plan.jmdp`) holds them per user and placement.
    """
    users = tuple(u.name for u in problem.users)
    for name in placements:
        problem.user(name)
    sources = source_users(problem)
    rows = []
    for user in problem.users:
        if user.name not in placements:
            raise TiercutError(f"no placement for user {user.name!r}; give one per user")
        full = _full(user.problem, placements[user.name])
        key = (user.name, tuple(sorted(full.items())))
        row = cache.get(key) if cache is not None else None
        if row is None:
            row = _user_terms(user.name, user.problem, full, sources[user.problem.source])
            if cache is not None:
                cache[key] = row
        rows.append(row)
    device_order = {d: i for i, d in enumerate(problem.device_names)}
    resources: list[tuple[str, str]] = sorted({r for row in rows for r in row[1] if r[0] == "device"},
                                              key=lambda r: device_order[r[1]])
    resources += sorted({r for row in rows for r in row[1] if r[0] == "link"})
    index = {r: j for j, r in enumerate(resources)}
    U, R = len(users), len(resources)
    uses = np.zeros((U, R), dtype=bool)
    constant = {m: np.zeros(U) for m in METRICS}
    slope = {m: np.zeros((U, R)) for m in METRICS}
    for i, (const, slopes) in enumerate(rows):
        for m in METRICS:
            constant[m][i] = const[m]
        for r, per_metric in slopes.items():
            uses[i, index[r]] = True
            for m in METRICS:
                slope[m][i, index[r]] = per_metric[m]
    return ShareTerms(users, tuple(resources), uses, constant, slope)


def _user_terms(
    name: str, problem: Problem, full: Mapping[str, str], n_source_users: float = 1.0
) -> tuple[dict[str, float], dict[tuple[str, str], dict[str, float]]]:
    """One user's constant figures and per-resource slopes (``share_terms``)."""
    devs, links = usage(problem, full)
    alone = problem.with_constraints(replace(problem.constraints, memory=False))
    dmult = dict.fromkeys(devs, 1.0)
    lmult = dict.fromkeys(links, 1.0)
    base = evaluate(alone, full, device_share=dmult, link_share=lmult, source_users=n_source_users)
    if not base.valid:
        raise TiercutError(f"user {name!r}'s placement is not valid ({base.violations[0]}); fix it first")
    total = {m: base.metric(m) for m in METRICS}
    slopes: dict[tuple[str, str], dict[str, float]] = {}
    for d in devs:
        ev = evaluate(alone, full, device_share={**dmult, d: 2.0}, link_share=lmult, source_users=n_source_users)
        slopes[("device", d)] = {m: max(0.0, ev.metric(m) - total[m]) for m in METRICS}
    for key in links:
        ev = evaluate(alone, full, device_share=dmult, link_share={**lmult, key: 2.0}, source_users=n_source_users)
        slopes[("link", link_name(key))] = {m: max(0.0, ev.metric(m) - total[m]) for m in METRICS}
    constant = {m: total[m] - sum(sl[m] for sl in slopes.values()) for m in METRICS}
    return constant, slopes


def objective_of(problem: MultiUserProblem, terms: ShareTerms, S: np.ndarray) -> float:
    """The multi-user objective (:func:`tiercut.cost.multiuser.multi_objective_value`) under shares ``S``."""
    fig = terms.metrics(S)
    agg = {
        "latency": float(fig["latency"].mean() if problem.objective.aggregate == "mean" else fig["latency"].max()),
        "energy_source": float(fig["energy_source"].sum()),
        "energy_total": float(fig["energy_total"].sum()),
        "cost": float(fig["cost"].sum()),
    }
    return sum(w * agg[m] for m, w in problem.objective.metric_weights().items())


def to_shares(terms: ShareTerms, S: np.ndarray) -> Shares:
    """:class:`~tiercut.problem.Shares` of the matrix ``S`` ([U, R])."""
    devices: dict[str, dict[str, float]] = {}
    links: dict[str, dict[str, float]] = {}
    for j, (kind, name) in enumerate(terms.resources):
        row = {u: float(S[i, j]) for i, u in enumerate(terms.users) if terms.uses[i, j]}
        (devices if kind == "device" else links)[name] = row
    return Shares(devices, links)


# ---------------------------------------------------------------- solvers
def _summed_weights(problem: MultiUserProblem, terms: ShareTerms, with_latency: bool) -> np.ndarray:
    """[U, R] ``K = sum_M w_M k^M`` of the metrics summed over users (latency: weight / U when ``with_latency``)."""
    K = np.zeros(terms.uses.shape)
    U = len(terms.users)
    for m, w in problem.objective.metric_weights().items():
        if m == "latency":
            if with_latency:
                K += (w / U) * terms.slope[m]
        else:
            K += w * terms.slope[m]
    return K


def closed_form_shares(terms: ShareTerms, K: np.ndarray) -> np.ndarray:
    """The KKT shares of ``min sum_{i,r} K_{i,r} / s_{i,r}`` s.t. ``sum_i s_{i,r} <= 1``: ``s ∝ sqrt(K)``."""
    root = np.sqrt(np.maximum(K, 0.0)) * terms.uses
    top = root.max(axis=0, initial=0.0)
    root = np.where(terms.uses, np.maximum(root, _FLOOR * top[None, :]), 0.0)
    col = root.sum(axis=0)
    S = np.where(col[None, :] > 0, root / np.where(col > 0, col, 1.0)[None, :], terms.equal_shares())
    return np.where(terms.contended[None, :], S, terms.uses.astype(float))


def _bisection_shares(terms: ShareTerms) -> np.ndarray:
    """Min-max latency when each user competes on one resource: per resource, the common latency ``t`` with
    ``sum_i a_i / (t - L_i) = 1`` by bisection, ``s_i = a_i / (t - L_i)``."""
    S = terms.uses.astype(float)
    a_all = terms.slope["latency"]
    contended = terms.contended
    for j in np.nonzero(contended)[0]:
        members = np.nonzero(terms.uses[:, j])[0]
        a = a_all[members, j]
        rest = terms.constant["latency"][members] + (a_all[members] * (~contended)[None, :] * terms.uses[members]).sum(axis=1)
        if not np.any(a > 0):
            S[members, j] = 1.0 / len(members)
            continue
        lo = float(np.max(rest))
        hi = float(np.max(rest + a * len(members)))  # equal shares meet it
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            need = np.sum(a / np.maximum(mid - rest, 1e-300))
            if need > 1.0:
                lo = mid
            else:
                hi = mid
            if hi - lo <= 1e-15 * max(1.0, hi):
                break
        s = a / np.maximum(hi - rest, 1e-300)
        s = np.maximum(s, _FLOOR * s.max())
        S[members, j] = s / max(1.0, s.sum())
    return S


def _perron_shares(terms: ShareTerms) -> np.ndarray:
    """Min-max latency over any number of shared resources per user, exactly, by one symmetric eigenproblem.

    With ``c_{i,r} = sqrt(a_{i,r})`` over the contended resources and ``L_i`` the rest of user ``i``'s latency,
    the Lagrangian dual of ``min t`` s.t. ``L_i + sum_r a_{i,r} / s_{i,r} <= t``, ``sum_i s_{i,r} <= 1`` is
    (the inner minimum over the shares is the square-root rule, weights ``lambda_i a_{i,r}``)::

        max_{lambda >= 0, sum lambda = 1}  sum_i lambda_i L_i + sum_r (sum_i sqrt(lambda_i) c_{i,r})^2
          = max_{mu != 0}  mu' B mu / mu' mu,      B = C C' + diag(L),  lambda = mu^2 / |mu|^2

    a Rayleigh quotient: the optimum ``t*`` is ``B``'s largest eigenvalue, and the shares of its Perron vector
    ``mu`` (``B >= 0``; ``mu > 0`` on a connected group of users), ``s_{i,r} = mu_i c_{i,r} / sum_j mu_j c_{j,r}``,
    fill every resource (``sum_i s_{i,r} = 1``) and give every user of the group latency exactly ``t*`` (the
    eigen-equation ``(C C' mu)_i = (t* - L_i) mu_i`` is ``L_i + sum_r a_{i,r} / s_{i,r} = t*``): primal value =
    dual value, so the shares are optimal. Users who share no contended resource fall into separate groups
    (``B`` block-diagonal), each solved on its own: every group gets its own least common latency, not only
    the worst group (with one contended resource per user this is the bisection's water-filling).
    """
    from scipy.sparse.csgraph import connected_components

    S = terms.uses.astype(float)
    contended = terms.contended
    a = np.where(terms.uses, terms.slope["latency"], 0.0)
    C = np.sqrt(np.maximum(a, 0.0)) * contended[None, :]
    L = terms.constant["latency"] + (a * (~contended)[None, :]).sum(axis=1)
    M = C @ C.T
    working = np.nonzero(C.sum(axis=1) > 0)[0]
    if working.size:
        n_groups, label = connected_components(M[np.ix_(working, working)] > 0, directed=False)
        for g in range(n_groups):
            group = working[label == g]
            B = M[np.ix_(group, group)] + np.diag(L[group])
            values, vectors = np.linalg.eigh(B)
            t = float(values[-1])
            mu = np.abs(vectors[:, -1])
            # one fixed-point step mu_i = (C C' mu)_i / (t - L_i): sums of non-negative terms, so it restores
            # the relative accuracy of small components (eigh's is absolute); then t is mu's Rayleigh quotient
            gap = t - L[group]
            if np.all(gap > 0):
                mu = (M[np.ix_(group, group)] @ mu) / gap
                mu /= np.linalg.norm(mu)
            Cg = C[group]
            A = mu @ Cg  # [R] sum_j mu_j c_{j,r}
            cols = np.nonzero(A > 0)[0]
            S[np.ix_(group, cols)] = (mu[:, None] * Cg[:, cols]) / A[cols][None, :]
    # a user with no work on a contended resource it touches: a floor share, then each resource back to <= 1
    for j in np.nonzero(contended)[0]:
        members = np.nonzero(terms.uses[:, j])[0]
        s = np.where(C[members, j] > 0, S[members, j], 0.0)
        if not np.any(s > 0):
            S[members, j] = 1.0 / len(members)
            continue
        s = np.maximum(s, _FLOOR * s.max())
        S[members, j] = s / max(1.0, s.sum())
    return S


def numerical_shares(
    problem: MultiUserProblem, terms: ShareTerms, method: str = "SLSQP", start: np.ndarray | None = None
) -> np.ndarray:
    """The allocation by a general solver (``scipy.optimize.minimize`` with ``method`` SLSQP or trust-constr).

    The mean objective directly; the max objective as its epigraph (``min w t + sum K'/s`` s.t. every user's
    latency ``<= t``). Used for the max objective and, in the tests, to check the closed form and the bisection.
    """
    with warnings.catch_warnings():  # trust-constr's quasi-Newton notes on flat steps
        warnings.simplefilter("ignore", UserWarning)
        return _numerical_shares(problem, terms, method, start)


def _numerical_shares(problem: MultiUserProblem, terms: ShareTerms, method: str, start: np.ndarray | None) -> np.ndarray:
    from scipy.optimize import Bounds, LinearConstraint, NonlinearConstraint, minimize

    pairs = [(i, j) for j in np.nonzero(terms.contended)[0] for i in np.nonzero(terms.uses[:, j])[0]]
    S = terms.uses.astype(float)
    if not pairs:
        return S
    P = len(pairs)
    rows = np.array([i for i, _ in pairs])
    cols = np.array([j for _, j in pairs])
    start = terms.equal_shares() if start is None else start
    x0 = start[rows, cols]
    is_max = problem.objective.aggregate == "max"
    weights = problem.objective.metric_weights()
    w_lat = weights.get("latency", 0.0)
    K = _summed_weights(problem, terms, with_latency=not is_max)[rows, cols]
    fixed = terms.metrics(S)  # with share 1 on the uncontended resources and the contended ones counted at 1
    a = terms.slope["latency"][rows, cols]
    base_lat = fixed["latency"] - np.bincount(rows, weights=a, minlength=len(terms.users))
    col_ids = sorted(set(cols.tolist()))
    A = np.zeros((len(col_ids), P))
    for k, j in enumerate(col_ids):
        A[k, cols == j] = 1.0
    lower = 1e-9
    if not is_max or w_lat == 0.0:

        def f(x: np.ndarray) -> float:
            return float(np.sum(K / x))

        def g(x: np.ndarray) -> np.ndarray:
            return -K / x**2

        res = minimize(f, x0, jac=g, method=method, bounds=Bounds(np.full(P, lower), np.ones(P)),
                       constraints=[LinearConstraint(A, -np.inf, 1.0)],
                       options={"maxiter": 2000} if method == "SLSQP" else {"maxiter": 5000, "gtol": 1e-12, "xtol": 1e-14})
        x = res.x
    else:
        U = len(terms.users)
        lat0 = base_lat + np.bincount(rows, weights=a / x0, minlength=U)
        y0 = np.concatenate([x0, [float(lat0.max())]])

        def f(y: np.ndarray) -> float:
            return float(w_lat * y[-1] + np.sum(K / y[:-1]))

        def g(y: np.ndarray) -> np.ndarray:
            return np.concatenate([-K / y[:-1] ** 2, [w_lat]])

        def lat(y: np.ndarray) -> np.ndarray:
            return y[-1] - base_lat - np.bincount(rows, weights=a / y[:-1], minlength=U)

        def lat_jac(y: np.ndarray) -> np.ndarray:
            J = np.zeros((U, P + 1))
            J[rows, np.arange(P)] = a / y[:-1] ** 2
            J[:, -1] = 1.0
            return J

        A1 = np.hstack([A, np.zeros((len(col_ids), 1))])
        cons: list[Any]
        if method == "SLSQP":
            cons = [{"type": "ineq", "fun": lambda y: 1.0 - A1 @ y, "jac": lambda y: -A1},
                    {"type": "ineq", "fun": lat, "jac": lat_jac}]
        else:
            cons = [LinearConstraint(A1, -np.inf, 1.0), NonlinearConstraint(lat, 0.0, np.inf, jac=lat_jac)]
        bounds = Bounds(np.concatenate([np.full(P, lower), [0.0]]), np.concatenate([np.ones(P), [np.inf]]))
        res = minimize(f, y0, jac=g, method=method, bounds=bounds, constraints=cons,
                       options={"maxiter": 2000, "ftol": 1e-14} if method == "SLSQP"
                       else {"maxiter": 5000, "gtol": 1e-12, "xtol": 1e-14})
        x = res.x[:-1]
    x = np.clip(x, lower, 1.0)
    S[rows, cols] = x
    total = A @ x
    for k, j in enumerate(col_ids):  # project back into the simplex if the solver left a crumb over 1
        if total[k] > 1.0:
            S[:, j] = np.where(terms.uses[:, j], S[:, j] / total[k], 0.0)
    return S


def allocate(
    problem: MultiUserProblem,
    placements: Mapping[str, Mapping[str, str]],
    method: str = "auto",
    *,
    start: Shares | None = None,
    cache: dict[Any, Any] | None = None,
) -> Allocation:
    """The optimal shares of every shared device and link for ``placements`` (module docstring).

    ``method``: ``auto`` (closed form for the mean; bisection or the Perron eigenvector for the max latency; SLSQP
    for a max with other metrics), ``equal`` (the
    equal-share model, for comparison) or ``slsqp`` / ``trust-constr`` (the general solver). ``start``:
    shares to start the numerical solver from (a neighbouring allocation; resources or users it lacks
    start at their equal share). ``cache``: see :func:`share_terms`.
    """
    terms = share_terms(problem, placements, cache)
    equal = terms.equal_shares()
    equal_value = objective_of(problem, terms, equal)
    weights = problem.objective.metric_weights()
    if method == "equal":
        S, used = equal, "equal"
    elif method in ("slsqp", "trust-constr"):
        S = numerical_shares(problem, terms, "SLSQP" if method == "slsqp" else "trust-constr", _start_matrix(terms, start))
        used = method
    elif method != "auto":
        raise TiercutError(f"allocation method {method!r} is not known; use auto, equal, slsqp or trust-constr")
    elif problem.objective.aggregate == "mean" or weights.get("latency", 0.0) == 0.0:
        S, used = closed_form_shares(terms, _summed_weights(problem, terms, with_latency=True)), "closed-form"
    elif set(weights) == {"latency"} and int((terms.uses & terms.contended[None, :]).sum(axis=1).max(initial=0)) <= 1:
        S, used = _bisection_shares(terms), "bisection"
    elif set(weights) == {"latency"}:
        S, used = _perron_shares(terms), "perron"
    else:
        S, used = numerical_shares(problem, terms, "SLSQP", _start_matrix(terms, start)), "slsqp"
    value = objective_of(problem, terms, S)
    if method != "equal" and not value <= equal_value:
        S, value, used = equal, equal_value, "equal"
    return Allocation(to_shares(terms, S), value, equal_value, used, S, terms)


def _start_matrix(terms: ShareTerms, start: Shares | None) -> np.ndarray | None:
    """``start`` as a [U, R] matrix over ``terms`` (equal shares where it has none), inside the simplex."""
    if start is None:
        return None
    S = terms.equal_shares()
    for j, (kind, name) in enumerate(terms.resources):
        row = (start.devices if kind == "device" else start.links).get(name, {})
        for i, user in enumerate(terms.users):
            if terms.uses[i, j] and user in row:
                S[i, j] = max(row[user], 1e-3)
    total = S.sum(axis=0)
    return np.where(total[None, :] > 1.0, S / np.maximum(total, 1.0)[None, :], S)


def check_allocation(problem: MultiUserProblem, placements: Mapping[str, Mapping[str, str]], allocation: Allocation) -> float:
    """The relative difference between the affine model's objective and :func:`evaluate_users` with the shares."""
    ev = evaluate_users(problem, placements, allocation.shares)
    return abs(ev.objective_value - allocation.objective_value) / max(1e-300, abs(ev.objective_value)) if math.isfinite(
        ev.objective_value) else math.inf


__all__ = [
    "METHODS",
    "Allocation",
    "ShareTerms",
    "allocate",
    "check_allocation",
    "closed_form_shares",
    "numerical_shares",
    "objective_of",
    "share_terms",
    "to_shares",
]
