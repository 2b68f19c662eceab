"""Efficiency-based uploading and its recursive form.

Shin, Jeong and Moon, "Enhanced Partitioning of DNN Layers for Uploading
from Mobile Devices to Edge Servers", EMDL'19 (the migration seed's
"Efficiency-Based" and "Recursive Efficiency" algorithms; the seed finds the
recursive one best). As ALGORITHMS.md describes them, on IONN's chain of
units:

1. the ideal placement is the target P1 (the offloading plan with upload
   free); its server side is a set of blocks of consecutive units;
2. candidates are the contiguous sub-ranges ``[l, r]`` of every block that
   carry parameters;
3. the gain of a candidate is the query time it saves once uploaded, with
   the uploaded ranges on the server: ``T(uploaded) - T(uploaded + [l, r])``
   by the cost model -- for a candidate apart from the uploaded ranges this
   is its client time minus its server time (send input, run, send output);
   next to uploaded ranges it is the marginal gain of joining them (its
   client time plus the adjacent ranges' server time minus the merged
   range's server time); efficiency = gain / ``(sum m_i) / B``;
4. the first partition is the candidate with the largest positive
   ``gain - upload time`` (the highest efficiency if none is positive);
5. then repeatedly the candidate of highest efficiency; the **recursive**
   variant looks inside every pick (the first one too: the seed's "recursively
   splits partitions obtained by the efficiency-based algorithm") for a
   strictly smaller sub-range with fewer parameter bytes and positive
   efficiency, takes the best such one, and repeats inside that until none
   is left;
6. candidates overlapping an uploaded range drop out; the rest are
   re-scored against the new uploaded set; stop when the blocks are uploaded.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from tiercut.upload.base import GroupResult, UploadPlanner
from tiercut.upload.context import UploadContext

Range = tuple[int, int]


def _units(span: Range) -> range:
    return range(span[0], span[1] + 1)


class EfficiencyUploadPlanner(UploadPlanner):
    """Greedy by upload efficiency (query-time gain per upload second)."""

    name = "efficiency"
    summary = "greedy: the unit range of highest query-time gain per upload second next"
    reference = "Shin, Jeong and Moon, EMDL'19 (efficiency-based partitioning)"
    recursive: ClassVar[bool] = False

    # ----------------------------------------------------------- scoring
    @staticmethod
    def _gains(ctx: UploadContext, uploaded: set[int], candidates: list[Range]) -> np.ndarray:
        sets = [uploaded] + [uploaded | set(_units(c)) for c in candidates]
        latency = ctx.latencies(sets)
        return latency[0] - latency[1:]

    @staticmethod
    def _upload_s(ctx: UploadContext, candidates: list[Range]) -> np.ndarray:
        return np.array([ctx.weight_upload_s(_units(c)) for c in candidates])

    def _refine(self, ctx: UploadContext, uploaded: set[int], chosen: Range) -> Range:
        """Recursive efficiency: the best strictly smaller, lighter, positive-efficiency sub-range, repeatedly."""
        while True:
            weight = ctx.param_bytes(_units(chosen))
            subs = [
                (a, b)
                for a in _units(chosen)
                for b in range(a, chosen[1] + 1)
                if (a, b) != chosen and 0 < ctx.param_bytes(range(a, b + 1)) < weight
            ]
            if not subs:
                return chosen
            efficiency = self._gains(ctx, uploaded, subs) / self._upload_s(ctx, subs)
            best = int(np.argmax(efficiency))
            if not efficiency[best] > 0:
                return chosen
            chosen = subs[best]

    # ----------------------------------------------------------- planning
    def _groups(self, ctx: UploadContext) -> GroupResult:
        candidates = [
            (block[i], block[j])
            for block in ctx.blocks
            for i in range(len(block))
            for j in range(i, len(block))
            if ctx.param_bytes(range(block[i], block[j] + 1)) > 0
        ]
        uploaded: set[int] = set()
        groups: list[tuple[str, ...]] = []
        refined = 0
        while True:
            live = [c for c in candidates if not uploaded.intersection(_units(c))]
            if not live:
                break
            gains = self._gains(ctx, uploaded, live)
            upload_s = self._upload_s(ctx, live)
            if not groups:
                score = gains - upload_s
                best = int(np.argmax(score))
                if not score[best] > 0:
                    best = int(np.argmax(gains / upload_s))
                chosen = live[best]
            else:
                chosen = live[int(np.argmax(gains / upload_s))]
            if self.recursive:
                finer = self._refine(ctx, uploaded, chosen)
                refined += finer != chosen
                chosen = finer
            uploaded.update(_units(chosen))
            groups.append(tuple(ctx.nodes_of(_units(chosen))))
        note = f"{len(groups)} partitions over {len(ctx.blocks)} block(s)"
        if self.recursive:
            note += f", {refined} refined recursively"
        return GroupResult(tuple(groups), note)


class RecursiveEfficiencyUploadPlanner(EfficiencyUploadPlanner):
    """Efficiency-based uploading with each pick split recursively into finer partitions."""

    name = "recursive-efficiency"
    summary = "efficiency greedy, each pick recursively split into its best finer sub-range"
    reference = "Shin, Jeong and Moon, EMDL'19 (recursive); the migration seed's best method (Xue, Wu and Li, 2023)"
    recursive: ClassVar[bool] = True


__all__ = ["EfficiencyUploadPlanner", "RecursiveEfficiencyUploadPlanner"]
