"""What a user does about its partitions when it moves: the hand-over strategies the simulator compares.

Each strategy is a small frozen dataclass (settings are explicit keywords,
no work in ``__init__``) with hooks the mobile run (:mod:`tiercut.sim.mobile`)
calls; it acts only through the run's :class:`StrategyContext` (plan a
target, upload partitions over a route, install them, predict the next
site), so every figure still comes from the cost model and the existing
planners:

- :class:`Static`: the plan made at t = 0 for the first site never
  changes; after a hand-over its server part is reached through the new
  site and the backhaul (the cost model's relay routing).
- :class:`Reactive`: at each hand-over, re-plan for the new site (the
  partition-offloading planner ``offloading`` at the current link rate)
  and upload the partitions it needs from the client with the upload
  planner ``upload`` (IONN, efficiency, ...); queries meanwhile run the best
  placement of what is already there (the IONN model's rule: what has
  arrived on any site, the rest on the client).
- :class:`Proactive`: PerDNN (Jeong, Lee, Shin, Yoo and Moon, "PerDNN:
  Offloading Deep Neural Network Computations to Pervasive Edge Servers",
  ICDCS 2020): predict the next site, plan for it speculatively, and send
  the server-side partitions there ahead of time over the backhaul, in the
  upload planner's order (the most useful first) and only as much as the
  predicted site's free memory admits; at the hand-over it does what
  :class:`Reactive` does for whatever is still missing.
- :class:`Oracle`: knows the future: at every site it reaches the whole
  model (or, if that does not fit the site's memory, its plan's partition)
  is already there, and it re-plans at every change of the link rate; a
  lower bound on the others' latency.

In every strategy the first site's partitions are in place at t = 0 (the
comparison is about hand-overs, not the first upload; stated assumption),
and no upload ever makes a site hold more than its ``memory_bytes``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from tiercut.errors import TiercutError
from tiercut.upload.base import DEFAULT_OFFLOADING_PLANNER, DEFAULT_UPLOAD_PLANNER


class StrategyContext(Protocol):
    """What a strategy may ask of the mobile run (implemented by :class:`tiercut.sim.mobile.MobileRun`)."""

    def target(self, user: str, server: str) -> dict[str, str]:
        """The offloading planner's placement for ``user`` attached to ``server`` at the current link rate."""

    def install(self, user: str, server: str, nodes: list[str]) -> bool:
        """Make ``nodes``' parameters present on ``server`` now, without a transfer; False (nothing installed)
        when the site's memory cannot take them."""

    def upload(self, user: str, server: str, placement: dict[str, str], route: str, fraction: float = 1.0) -> None:
        """Send what ``placement`` needs on ``server`` and is not there yet, partition by partition in the upload
        planner's order; ``route`` ``client`` (over the user's wireless link) or ``backhaul`` (from its
        current site); each partition only if the site's memory admits it, and no more than ``fraction`` of
        the placement's parameter bytes there."""

    def prefetched(self, user: str, server: str) -> bool:
        """A backhaul upload to ``server`` was already started since the user's last hand-over."""

    def cancel_client_uploads(self, user: str) -> None:
        """Stop sending partitions over the user's old wireless link (the one in flight finishes)."""

    def predict_next(self, user: str) -> str | None:
        """The predicted next site (None: no prediction)."""

    def attached(self, user: str) -> str:
        """The site the user is attached to now."""

    def all_param_nodes(self, user: str, server: str) -> list[str]:
        """Every node with parameters that can run on ``server``."""


@dataclass(frozen=True)
class _Planned:
    offloading: str = DEFAULT_OFFLOADING_PLANNER
    upload: str = DEFAULT_UPLOAD_PLANNER
    offloading_settings: dict[str, Any] = field(default_factory=dict)
    upload_settings: dict[str, Any] = field(default_factory=dict)

    #: the placement never changes after t = 0.
    fixed = False
    #: re-plan at every change of the link rate.
    follows_rates = False

    def start(self, ctx: StrategyContext, user: str, server: str) -> None:
        """t = 0: the first site's partitions are in place."""
        target = ctx.target(user, server)
        ctx.install(user, server, [n for n, d in target.items() if d == server])

    def on_handover(self, ctx: StrategyContext, user: str, old: str, new: str) -> None:
        """The user's attachment moved from ``old`` to ``new``."""

    def on_step(self, ctx: StrategyContext, user: str) -> None:
        """A mobility step passed (positions sampled again)."""


@dataclass(frozen=True)
class Static(_Planned):
    """The plan made at t = 0 never changes (reached through the backhaul after a hand-over)."""

    name = "static"
    fixed = True


@dataclass(frozen=True)
class Reactive(_Planned):
    """Re-plan at each hand-over and upload the needed partitions from the client (the upload planner's order)."""

    name = "reactive"

    def on_handover(self, ctx: StrategyContext, user: str, old: str, new: str) -> None:
        ctx.cancel_client_uploads(user)
        ctx.upload(user, new, ctx.target(user, new), "client")


@dataclass(frozen=True)
class Proactive(Reactive):
    """PerDNN (Jeong et al., ICDCS 2020): upload to the predicted next site ahead of time, bounded by its memory.

    The speculative plan for the predicted site is made at the current
    link rate (the rate there is not known yet). ``prefetch_fraction``: at
    most this fraction of the planned server part's
    parameter bytes goes ahead (the first partitions of the upload order, the
    most useful per byte); PerDNN migrates "only a tiny fraction of the
    server-side DNN layers" to spare the backhaul. 1: all of it.
    """

    name = "proactive"
    prefetch_fraction: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 < self.prefetch_fraction <= 1.0:
            raise TiercutError(f"proactive prefetch_fraction {self.prefetch_fraction!r} must be in (0, 1]")

    def on_step(self, ctx: StrategyContext, user: str) -> None:
        nxt = ctx.predict_next(user)
        if nxt is not None and nxt != ctx.attached(user) and not ctx.prefetched(user, nxt):
            ctx.upload(user, nxt, ctx.target(user, nxt), "backhaul", self.prefetch_fraction)

    def start(self, ctx: StrategyContext, user: str, server: str) -> None:
        super().start(ctx, user, server)
        self.on_step(ctx, user)

    def on_handover(self, ctx: StrategyContext, user: str, old: str, new: str) -> None:
        super().on_handover(ctx, user, old, new)
        self.on_step(ctx, user)


@dataclass(frozen=True)
class Oracle(_Planned):
    """Knows the future: the model is already on every site it reaches; re-plans at every link-rate change."""

    name = "oracle"
    follows_rates = True

    def start(self, ctx: StrategyContext, user: str, server: str) -> None:
        self._present(ctx, user, server)

    def on_handover(self, ctx: StrategyContext, user: str, old: str, new: str) -> None:
        self._present(ctx, user, new)

    def _present(self, ctx: StrategyContext, user: str, server: str) -> None:
        target = ctx.target(user, server)
        ctx.install(user, server, [n for n, d in target.items() if d == server])
        ctx.install(user, server, ctx.all_param_nodes(user, server))


Strategy = Static | Reactive | Proactive | Oracle

#: strategy name -> class (one line per strategy; no registration by import side effect).
STRATEGIES: dict[str, type[Strategy]] = {"static": Static, "reactive": Reactive, "proactive": Proactive, "oracle": Oracle}


def get_strategy(name: str, **settings: Any) -> Strategy:
    """The strategy registered as ``name`` with ``settings`` (``offloading``, ``upload``, their ``*_settings``)."""
    try:
        cls = STRATEGIES[name]
    except KeyError:
        raise TiercutError(f"mobility strategy {name!r} is not known; use {', '.join(STRATEGIES)}") from None
    return cls(**settings)


__all__ = ["STRATEGIES", "Oracle", "Proactive", "Reactive", "Static", "Strategy", "StrategyContext", "get_strategy"]
