"""One query's timeline under the cost model's sequential schedule.

docs/cost-model.md is the sequential model of Neurosurgeon and DADS:
one node or one transfer at a time, ``T(x) = sum_v c(v, x(v)) + sum tau``.
Any order that respects the graph gives that total; the one drawn here runs
the nodes in the graph's topological order and sends each tensor right
after it is produced, to every device that needs it (in the order
:func:`tiercut.cost.evaluate` lists the transfers). The seconds come from the
problem's ``compute_s`` (``c(v, d)``) and from the evaluation's transfers
(``tau``): nothing is recomputed here, so the timeline ends exactly at the
evaluation's ``latency_s``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tiercut.cost import Evaluation, evaluate
from tiercut.cost.model import Transfer
from tiercut.problem import Problem


@dataclass(frozen=True)
class Bar:
    """One step of the query: a node computing on a device, or a tensor on a link.

    Attributes:
        kind: ``"compute"`` or ``"transfer"``.
        row: the device (compute) or the link direction ``"a → b"`` (transfer).
        node: the node computed, or whose output tensor is sent.
        start_s, end_s: when the step runs (seconds from the query's start).
        device: the device computing (compute) or sending (transfer).
        dst: the receiving device of a transfer ("" for compute).
        out_bytes: bytes of the tensor sent (0 for compute).
    """

    kind: str
    row: str
    node: str
    start_s: float
    end_s: float
    device: str
    dst: str = ""
    out_bytes: int = 0

    @property
    def seconds(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True)
class QueryTimeline:
    """The steps of one query and the evaluation they come from.

    Attributes:
        bars: every step in time order.
        device_rows: devices that compute something (problem order, source first).
        link_rows: link directions that carry something, in order of first use.
        evaluation: the cost model's evaluation of the placement.
    """

    bars: tuple[Bar, ...]
    device_rows: tuple[str, ...]
    link_rows: tuple[str, ...]
    evaluation: Evaluation

    @property
    def rows(self) -> tuple[str, ...]:
        return self.device_rows + self.link_rows

    @property
    def end_s(self) -> float:
        return self.bars[-1].end_s if self.bars else 0.0


def link_row(src: str, dst: str) -> str:
    """The name of a link direction's timeline row."""
    return f"{src} → {dst}"


def transfer_hops(transfer: Transfer) -> list[tuple[str, str, float]]:
    """``(from, to, seconds)`` of each hop of a transfer.

    A transfer routed through relays (store-and-forward, DESIGN.md) lists its
    hops; a direct one is one hop.
    """
    hops = getattr(transfer, "hops", None)
    if hops:
        out = []
        for hop in hops:
            if isinstance(hop, Mapping):
                out.append((str(hop["src"]), str(hop["dst"]), float(hop["seconds"])))
            else:
                out.append((str(hop.src), str(hop.dst), float(hop.seconds)))
        return out
    return [(transfer.src, transfer.dst, transfer.seconds)]


def query_timeline(problem: Problem, placement: Mapping[str, str], evaluation: Evaluation | None = None) -> QueryTimeline:
    """The sequential schedule of one query of ``placement`` (see the module docstring).

    ``evaluation`` is :func:`tiercut.cost.evaluate` of the placement (computed
    when not given). An invalid placement (the evaluation has inf figures)
    gives no bars.
    """
    if evaluation is None:
        evaluation = evaluate(problem, placement)
    if not evaluation.valid:
        return QueryTimeline((), (), (), evaluation)
    full = evaluation.placement
    by_node: dict[str, list[Transfer]] = {}
    for transfer in evaluation.transfers:
        by_node.setdefault(transfer.node, []).append(transfer)
    bars: list[Bar] = []
    now = 0.0
    links: dict[str, None] = {}
    used: set[str] = set()
    for node in problem.graph:
        device = full[node.name]
        if not node.is_input:
            seconds = problem.compute_s[node.name][device]
            bars.append(Bar("compute", device, node.name, now, now + seconds, device))
            used.add(device)
            now += seconds
        for transfer in by_node.get(node.name, ()):
            for src, dst, seconds in transfer_hops(transfer):
                row = link_row(src, dst)
                links.setdefault(row)
                bars.append(Bar("transfer", row, node.name, now, now + seconds, src, dst, transfer.out_bytes))
                now += seconds
    used.add(problem.source)
    device_rows = tuple(d for d in problem.device_names if d in used)
    return QueryTimeline(tuple(bars), device_rows, tuple(links), evaluation)


__all__ = ["Bar", "QueryTimeline", "link_row", "query_timeline", "transfer_hops"]
