"""Direct uploading: the whole target partition P1 in one piece (Neurosurgeon-style).

Kang et al., "Neurosurgeon: Collaborative Intelligence Between the Cloud
and Mobile Edge", ASPLOS'17, as the migration seed's "Direct Uploading
Algorithm" uses it: the partition-offloading plan picks the best split and
the server-side partition P1 goes up whole (P3 = P1); until it has arrived
every query runs with what is available without it (the client, plus
parameter-free layers).
"""

from __future__ import annotations

from tiercut.upload.base import GroupResult, UploadPlanner
from tiercut.upload.context import UploadContext


class DirectUploadPlanner(UploadPlanner):
    """Upload P1 whole (P3 = P1)."""

    name = "direct"
    summary = "the offloading plan's server partition P1 uploaded in one piece"
    reference = "Neurosurgeon (Kang et al., ASPLOS'17), the migration seed's Direct Uploading"

    def _groups(self, ctx: UploadContext) -> GroupResult:
        return GroupResult((tuple(ctx.nodes_of(range(len(ctx.chain)))),))


__all__ = ["DirectUploadPlanner"]
