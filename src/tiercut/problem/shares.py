"""Resource shares of a multi-user plan: which fraction of each device's speed and each link's bandwidth a user gets.

The equal-share model of docs/cost-model.md gives each of the ``n`` users of a
device (or link) ``1/n`` of it. A :class:`Shares` replaces that rule by
explicit fractions, chosen by a resource-allocation step (JMDP/JPDRA,
:mod:`tiercut.cost.allocation`): user ``u`` computing on device ``d`` with
share ``s`` sees its compute times there divided by ``s``; sending over link
``l`` with share ``s``, the ``out / bandwidth`` term of every hop over it
divided by ``s`` (the link latency is not shared). The cost model is the
same :func:`tiercut.cost.evaluate` with multipliers ``1/s`` instead of ``n``.

JSON (a multi-user plan's ``shares``, null for the equal-share model)::

    {"devices": {"edge": {"u0": 0.62, "u1": 0.38}},
     "links": {"client0|edge": {"u0": 1.0}}}

A link is named by its two ends sorted and joined by ``|`` (as a
:class:`~tiercut.cost.MultiEvaluation`'s ``link_users``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tiercut.errors import TiercutError
from tiercut.serialization import json_contract

#: relative slack on "the shares of a resource sum to at most 1".
SHARE_SUM_RTOL = 1e-9


def link_name(key: frozenset[str]) -> str:
    """The JSON name of a link key: its two ends sorted, joined by ``|``."""
    return "|".join(sorted(key))


@dataclass(frozen=True)
class Shares:
    """Fractions of each shared resource per user.

    Attributes:
        devices: device -> user -> fraction of its speed, in (0, 1].
        links: link name (``"a|b"``, ends sorted) -> user -> fraction of its bandwidth, in (0, 1].

    A resource's fractions sum to at most 1. A user's resource not listed
    here is not shared (fraction 1) only if no other user uses it; the
    evaluator (:func:`tiercut.cost.evaluate_users`) checks that every resource
    a user uses has its fraction.
    """

    devices: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    links: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for kind, table in (("device", self.devices), ("link", self.links)):
            for resource, row in table.items():
                for user, share in row.items():
                    if not (isinstance(share, (int, float)) and math.isfinite(share) and 0.0 < share <= 1.0 + SHARE_SUM_RTOL):
                        raise TiercutError(
                            f"share {share!r} of {kind} {resource!r} for user {user!r} must be in (0, 1]; give a fraction"
                        )
                total = sum(row.values())
                if total > 1.0 + SHARE_SUM_RTOL:
                    raise TiercutError(
                        f"the shares of {kind} {resource!r} sum to {total:.6g}, over 1; scale them down"
                    )

    def device_multipliers(self, user: str) -> dict[str, float]:
        """Device -> factor on ``user``'s compute times there (1 / its share)."""
        return {d: 1.0 / row[user] for d, row in self.devices.items() if user in row}

    def link_multipliers(self, user: str) -> dict[frozenset[str], float]:
        """Link key -> factor on ``user``'s ``out / bandwidth`` terms over it (1 / its share)."""
        return {frozenset(name.split("|")): 1.0 / row[user] for name, row in self.links.items() if user in row}

    def user(self, user: str) -> dict[str, dict[str, float]]:
        """``user``'s fractions: ``{"devices": {...}, "links": {...}}``."""
        return {
            "devices": {d: row[user] for d, row in self.devices.items() if user in row},
            "links": {name: row[user] for name, row in self.links.items() if user in row},
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "devices": {d: dict(row) for d, row in self.devices.items()},
            "links": {name: dict(row) for name, row in self.links.items()},
        }

    @classmethod
    @json_contract("resource shares", hint="give devices and links as {resource: {user: fraction}}")
    def from_dict(cls, data: Mapping[str, Any]) -> Shares:
        def table(raw: Any, kind: str) -> dict[str, dict[str, float]]:
            if not isinstance(raw, Mapping) or not all(isinstance(row, Mapping) for row in raw.values()):
                raise TiercutError(f"resource shares: {kind} must map each resource to {{user: fraction}}")
            return {str(r): {str(u): float(s) for u, s in row.items()} for r, row in raw.items()}

        return cls(devices=table(data.get("devices", {}), "devices"), links=table(data.get("links", {}), "links"))


__all__ = ["SHARE_SUM_RTOL", "Shares", "link_name"]
