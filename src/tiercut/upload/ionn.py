"""IONN's incremental upload plan (Jeong et al., SoCC'18).

Jeong, Lee, Shin and Moon, "IONN: Incremental Offloading of Neural Network
Computations from Mobile Devices to Edge Servers", ACM SoCC'18. Exactly as
ALGORITHMS.md describes it: the DAG becomes a chain of units (cut at the
dominators of the output), and the execution graph's shortest path gives the
best placement when the server side also pays ``(1 - k) * m_i / B`` for
uploading the unit's weights. For ``k = 1 - K**level`` (``K = 0.5``) the
penalty runs 1, 0.5, 0.25, ..., then 0: each level's path whose server set
differs from the previous one is the next stage, and the units new in it are
the next partition P3. The migration seed lists eight penalties, "1, 0.5,
0.25, ..., 0.016, 0.0": ``penalty_levels=7`` (the default) gives exactly
those (``K**0 .. K**6``, then 0). The final 0 is the ideal placement within
the target P1, so the partitions end up covering it.
"""

from __future__ import annotations

from tiercut.errors import TiercutError
from tiercut.upload.base import DEFAULT_OFFLOADING_PLANNER, GroupResult, UploadPlanner
from tiercut.upload.context import UploadContext


class IONNUploadPlanner(UploadPlanner):
    """Penalty-factor shortest paths; each new server set is a partition."""

    name = "ionn"
    summary = "shortest paths with upload penalties 1, 0.5, ..., 0.016, 0; new server units per level"
    reference = "IONN (Jeong et al., SoCC'18)"

    def __init__(
        self,
        server: str | None = None,
        offloading: str = DEFAULT_OFFLOADING_PLANNER,
        n_queries: int | None = None,
        penalty_base: float = 0.5,
        penalty_levels: int = 7,
    ) -> None:
        self.server = server
        self.offloading = offloading
        self.n_queries = n_queries
        self.penalty_base = penalty_base
        self.penalty_levels = penalty_levels

    def penalties(self) -> list[float]:
        """The penalty factors ``1 - k`` in order: ``base**0 .. base**(levels - 1)``, then 0."""
        if not (0.0 < float(self.penalty_base) < 1.0):
            raise TiercutError(f"penalty_base is {self.penalty_base!r}; it must lie strictly between 0 and 1")
        if not isinstance(self.penalty_levels, int) or self.penalty_levels < 1:
            raise TiercutError(f"penalty_levels is {self.penalty_levels!r}; give a whole number >= 1")
        return [float(self.penalty_base) ** level for level in range(self.penalty_levels)] + [0.0]

    def _check_settings(self) -> None:
        super()._check_settings()
        self.penalties()

    def _groups(self, ctx: UploadContext) -> GroupResult:
        groups = []
        uploaded: set[int] = set()
        previous: frozenset[int] | None = None
        levels = []
        for penalty in self.penalties():
            server_units = ctx.ionn_units(penalty)
            if server_units == previous:
                continue
            previous = server_units
            new = sorted(server_units - uploaded)
            if not new:
                continue
            uploaded.update(new)
            groups.append(tuple(ctx.nodes_of(new)))
            levels.append(f"{penalty:g}")
        note = f"stages at penalties {', '.join(levels)}" if levels else "no penalty level moves a unit to the server"
        return GroupResult(tuple(groups), note)


__all__ = ["IONNUploadPlanner"]
