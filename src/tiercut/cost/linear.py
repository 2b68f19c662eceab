"""Every metric of the cost model as a sum of per-node and per-transfer terms.

Each metric of docs/cost-model.md's single-user model is separable::

    metric(x) = sum_v node[v, x(v)] + sum_{(u, a, b) in transfers(x)} transfer[u, a, b]

- latency: ``node = c(v, d)``, ``transfer = tau(u, a, b)`` (along its routed path);
- source energy (source ``s`` with powers ``P_*``): ``node[v, s] = P_compute c(v, s)``,
  ``node[v, d != s] = P_idle c(v, d)``; ``transfer = P_tx tx + P_rx rx +
  P_idle (tau - tx - rx)`` with ``tx`` / ``rx`` the time of the path's hops the
  source sends / receives (the idle term of ``E_source`` is ``P_idle`` times
  the time the source is not busy);
- total energy: ``node = P_compute(d) c(v, d)``, ``transfer = sum_hops (P_tx(sender) + P_rx(receiver)) t_hop``;
- cost: ``node = price_per_s(d) c(v, d)``, ``transfer = out(u) sum_hops price_per_byte(hop)``.

Routed transfers keep the form separable: the path a tensor takes between
two devices depends only on its own size (:mod:`tiercut.cost.routing`), so
each ``(u, a, b)`` has one fixed coefficient per metric.

The exact planners (min-cut, DP, shortest path, ILP) build their models from
these arrays, so no planner re-derives the cost model; tests check the forms
against :func:`tiercut.cost.evaluate`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from tiercut.cost.vector import CompiledProblem, compile_problem
from tiercut.errors import TiercutError
from tiercut.problem import METRICS, Objective, Problem


@dataclass(frozen=True)
class LinearForm:
    """``metric(x) = sum_v node[v, x(v)] + sum_transfers transfer[u, a, b]``.

    Attributes:
        node: [n, D]; inf where the node cannot run on the device (inputs: 0
            on the source, inf elsewhere).
        transfer: [n, D, D]; 0 on the diagonal, inf where a != b have no link.
    """

    node: np.ndarray
    transfer: np.ndarray

    def __add__(self, other: LinearForm) -> LinearForm:
        return LinearForm(self.node + other.node, self.transfer + other.transfer)

    def scaled(self, factor: float) -> LinearForm:
        with np.errstate(invalid="ignore"):
            node = np.where(np.isinf(self.node), self.node, self.node * factor)
            transfer = np.where(np.isinf(self.transfer), self.transfer, self.transfer * factor)
        return LinearForm(node, transfer)


def transfer_seconds_array(comp: CompiledProblem) -> np.ndarray:
    """[n, D, D] tau(u, a, b) along the routed path: 0 on the diagonal, inf where unreachable."""
    return comp.transfer_arrays()["seconds"]


def linear_form(problem: Problem | CompiledProblem, what: str | Objective | Mapping[str, float]) -> LinearForm:
    """The linear form of a metric name, of an :class:`Objective`, or of metric -> weight."""
    comp = problem if isinstance(problem, CompiledProblem) else compile_problem(problem)
    if isinstance(what, Objective):
        if what.is_throughput:
            raise TiercutError(
                "the throughput objective (the bottleneck stage) is a max, not a linear form; use "
                "tiercut.cost.throughput.stage_forms for its stages"
            )
        weights = what.metric_weights()
    elif isinstance(what, str):
        if what not in METRICS:
            raise TiercutError(f"metric {what!r} is not known; use one of {', '.join(METRICS)}")
        weights = {what: 1.0}
    else:
        weights = {str(k): float(v) for k, v in what.items() if v}
    n, D = comp.compute.shape
    total = LinearForm(np.zeros((n, D)), np.zeros((n, D, D)))
    arrays = comp.transfer_arrays()
    tau = arrays["seconds"]
    for name, weight in weights.items():
        total = total + _metric_form(comp, name, arrays).scaled(weight)
    # inf where a node cannot run / a pair has no link, whatever the weights
    node = np.where(np.isfinite(comp.compute), total.node, np.inf)
    transfer = np.where(np.isfinite(tau), total.transfer, np.inf)
    return LinearForm(node, transfer)


def _metric_form(comp: CompiledProblem, name: str, arrays: Mapping[str, np.ndarray]) -> LinearForm:
    c = np.where(np.isfinite(comp.compute), comp.compute, 0.0)
    tau = arrays["seconds"]
    reach = np.isfinite(tau)
    t = np.where(reach, tau, 0.0)
    s = comp.source
    if name == "latency":
        return LinearForm(c, t)
    if name == "energy_total":
        node = c * comp.power_compute[None, :]
        return LinearForm(node, np.where(reach, arrays["energy_total"], 0.0))
    if name == "cost":
        node = c * comp.price_per_s[None, :]
        return LinearForm(node, np.where(reach, arrays["price"], 0.0))
    if name == "energy_source":
        src = comp.problem.devices[s]
        D = comp.n_devices
        weight_node = np.full(D, src.power_idle_w)
        weight_node[s] = src.power_compute_w
        node = c * weight_node[None, :]
        tx = np.where(reach, arrays["tx_source"], 0.0)
        rx = np.where(reach, arrays["rx_source"], 0.0)
        transfer = src.power_tx_w * tx + src.power_rx_w * rx + src.power_idle_w * np.maximum(t - tx - rx, 0.0)
        return LinearForm(node, transfer)
    raise TiercutError(f"metric {name!r} is not known; use one of {', '.join(METRICS)}")


def linear_value(comp: CompiledProblem, form: LinearForm, X: np.ndarray) -> np.ndarray:
    """Evaluate a linear form on placements [P, n] (for tests and planners)."""
    from tiercut.cost.vector import transfer_mask

    X = np.atleast_2d(X).astype(np.int64)
    n = X.shape[1]
    node = form.node[np.arange(n)[None, :], X].sum(axis=1)
    if not len(comp.senders):
        return node
    mask = transfer_mask(comp, X)
    a = X[:, comp.senders]
    tr = form.transfer[comp.senders[None, :, None], a[:, :, None], np.arange(comp.n_devices)[None, None, :]]
    return node + np.where(mask, tr, 0.0).sum(axis=(1, 2))


__all__ = ["LinearForm", "linear_form", "linear_value", "transfer_seconds_array"]
