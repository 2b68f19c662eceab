"""Per-input routing in the runtime (AppealNet): the small model on the device, the big model on a worker.

Li et al., "AppealNet: An Efficient and Highly-Accurate Edge/Cloud
Collaborative Architecture for DNN Inference", DAC 2021 (arXiv:2105.04104).

For each input, in order, the device (this process, the client) runs the
two-head model and reads its appeal probability ``q``; when ``q >
threshold`` the input is appealed: it goes to the big model on the cloud
worker, whose answer replaces the small model's. The appealed inputs run as
queries of a :class:`~tiercut.runtime.client.MigrationClient` on a plan that
places every layer of the big model on the cloud worker (the existing
upload/route machinery, gRPC, tensors as raw bytes); the big model is
uploaded before the first appealed query, so every appealed answer is the
worker's (never a local fallback, which :func:`run_routed` checks).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tiercut.appeal.curve import check_threshold
from tiercut.errors import TiercutError


@dataclass(frozen=True)
class RoutedQuery:
    """One input's route and answer.

    Attributes:
        index: position of the input.
        score: the appeal probability ``q`` of the predictor head.
        appealed: ``q > threshold``: the big model on the worker answered.
        answer: the logits returned for this input (the small model's or the worker's).
        local_s: seconds of the two-head model on the device.
        remote_s: seconds of the appealed query (send, the worker's big model, answer back; nan when not appealed).
    """

    index: int
    score: float
    appealed: bool
    answer: Any
    local_s: float
    remote_s: float = math.nan

    @property
    def latency_s(self) -> float:
        return self.local_s + (self.remote_s if self.appealed else 0.0)


@dataclass(frozen=True)
class RoutedRun:
    """Every input's route and answer at one threshold, with the worker run's trace (None: nothing appealed)."""

    threshold: float
    cloud: str
    queries: tuple[RoutedQuery, ...]
    remote: Any | None = None

    @property
    def fraction_offloaded(self) -> float:
        return sum(q.appealed for q in self.queries) / max(1, len(self.queries))

    def predictions(self) -> list[int]:
        return [int(q.answer.argmax()) for q in self.queries]

    def accuracy(self, labels: Any) -> float:
        return sum(int(p == int(y)) for p, y in zip(self.predictions(), labels, strict=True)) / max(1, len(self.queries))


def run_routed(
    router: Any,
    x: Any,
    threshold: float,
    addresses: Mapping[str, str],
    *,
    credentials: Any,
    cloud: str = "cloud",
    source: str = "device",
    environment: Any | None = None,
    max_run_s: float = 600.0,
    log: Callable[[str], None] | None = None,
) -> RoutedRun:
    """Route each input of ``x`` [N, 1, 8, 8] at ``threshold`` (see the module docstring).

    ``addresses`` maps ``cloud`` to its worker (e.g. :class:`~tiercut.runtime.session.LocalCluster`'s).
    """
    import torch

    from tiercut.appeal.models import INPUT_SHAPE
    from tiercut.graph import capture_model
    from tiercut.runtime.client import RunSettings
    from tiercut.runtime.migration import placement_plan, prepare_migration
    from tiercut.runtime.session import run_migration

    threshold = check_threshold(threshold)
    if cloud not in addresses:
        raise TiercutError(f"no worker address for the cloud device {cloud!r}; pass --workers {cloud}=HOST:PORT")
    if x.ndim != 4 or tuple(x.shape[1:]) != INPUT_SHAPE[1:]:
        raise TiercutError(f"router inputs are shaped {tuple(x.shape)}; they must be N x 1 x 8 x 8 digits")
    local: list[tuple[float, bool, Any, float]] = []
    with torch.no_grad():
        for i in range(len(x)):
            begin = time.perf_counter()
            logits, appeal = router.small(x[i : i + 1])
            q = float(torch.sigmoid(appeal)[0, 0])
            local.append((q, q > threshold, logits[0].clone(), time.perf_counter() - begin))
    appealed = [i for i, (_, sent, _, _) in enumerate(local) if sent]
    remote_answer: dict[int, Any] = {}
    remote_s: dict[int, float] = {}
    result = None
    if appealed:
        captured = capture_model(router.big, INPUT_SHAPE)
        placement = {n.name: (source if n.is_input else cloud) for n in captured.graph}
        migration = prepare_migration(captured, placement_plan(placement, source), source=source)
        common = {"addresses": addresses, "credentials": credentials, "environment": environment, "log": log}
        # upload the big model first (a warm-up query once it is on the worker), then route the appealed inputs
        run_migration(migration, settings=RunSettings(queries=0, queries_after_upload=1, max_run_s=max_run_s), **common)
        result = run_migration(
            migration,
            settings=RunSettings(queries=len(appealed), fresh=False, verify_outputs=True, max_run_s=max_run_s),
            query_inputs=lambda j: (x[appealed[j] : appealed[j] + 1],),
            **common,
        )
        for j, i in enumerate(appealed):
            record = result.queries[j] if j < len(result.queries) else None
            if record is None or record.error or record.fallback or j not in result.outputs:
                why = "" if record is None else (record.error or "answered locally")
                raise TiercutError(f"appealed input {i} got no answer from the worker {cloud!r} ({why}); "
                                   "check the worker is running (tiercut serve) and reachable")
            remote_answer[i] = result.outputs[j][0].detach().clone()
            remote_s[i] = record.end_s - record.start_s
    queries = tuple(
        RoutedQuery(i, q, sent, remote_answer[i] if sent else logits, local_s, remote_s.get(i, math.nan))
        for i, (q, sent, logits, local_s) in enumerate(local)
    )
    return RoutedRun(threshold, cloud, queries, result)


__all__ = ["RoutedQuery", "RoutedRun", "run_routed"]
