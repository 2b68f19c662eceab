"""The cost of a tensor compressed at a cut (JALAD), and the best choice for a placement.

JALAD (Li et al., ICPADS 2018) sends the feature map at the cut quantized to
``c`` bits and entropy-coded; docs/cost-model.md's transfer term becomes,
for node ``u``'s tensor sent from ``a`` to ``b`` with codec ``k``
(:class:`tiercut.problem.CutCompression` holds the figures)::

    wire(u, k)      = ratio(u, k) * out(u)
    tau_k(u, a, b)  = enc_k(a) * out(u) + route(wire(u, k), a, b) + dec_k(b) * out(u)

where ``route`` is the routed transfer time of ``wire`` bytes (the path
chosen for that size) and ``enc_k(a)`` / ``dec_k(b)`` are the codec's seconds
per raw byte on the sending / receiving device. Encoding and decoding are
computation on those devices: they draw their compute power (total energy;
the source's busy compute time when it is one of them) and their price per
second; the wire bytes pay the path's price per byte. A compression decision
is per tensor (the plan's ``cut_compression``: node -> codec): every transfer
of that tensor is compressed, each encoded by its sender. The accuracy loss
of a plan is the sum of its compressed tensors' measured losses (an additive,
pessimistic model of errors introduced at several cuts), bounded by
``accuracy_loss_max``.

:func:`transfer_figures` is the one transcription of that term; the
reference evaluator (:func:`tiercut.cost.evaluate`), the ILP's coefficients
and :func:`choose_compression` all use it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass

from tiercut.errors import TiercutError
from tiercut.problem import Objective, Problem

#: the post-pass enumerates every combination of options up to this many; beyond, it is greedy (see
#: :func:`choose_compression`)
EXACT_COMBINATIONS = 4096


@dataclass(frozen=True)
class TransferFigures:
    """The cost model's figures of one (possibly compressed) transfer of a tensor.

    Attributes:
        seconds: its share of the latency (encode + routed wire time + decode).
        wire_bytes: bytes on the wire.
        encode_s, decode_s: codec time on the sender / the receiver (0 raw).
        path: the devices the wire bytes travel through.
        hop_seconds: each hop's time.
        energy_total_j: tx/rx energy of every hop plus the codec's compute energy.
        busy_compute_source_s, busy_tx_source_s, busy_rx_source_s: the source
            device's busy times in it.
        cost: the path's price of the wire bytes plus the codec's compute price.
    """

    seconds: float
    wire_bytes: float
    encode_s: float
    decode_s: float
    path: tuple[str, ...]
    hop_seconds: tuple[float, ...]
    energy_total_j: float
    busy_compute_source_s: float
    busy_tx_source_s: float
    busy_rx_source_s: float
    cost: float

    def metrics(self, problem: Problem) -> dict[str, float]:
        """Its term in each metric's linear form (docs/cost-model.md; idle source power for the rest)."""
        src = problem.device(problem.source)
        busy = self.busy_compute_source_s + self.busy_tx_source_s + self.busy_rx_source_s
        energy_source = (
            src.power_compute_w * self.busy_compute_source_s
            + src.power_tx_w * self.busy_tx_source_s
            + src.power_rx_w * self.busy_rx_source_s
            + src.power_idle_w * max(self.seconds - busy, 0.0)
        )
        return {"latency": self.seconds, "energy_source": energy_source, "energy_total": self.energy_total_j, "cost": self.cost}


def transfer_figures(problem: Problem, node: str, a: str, b: str, codec: str | None = None) -> TransferFigures | None:
    """Node ``node``'s tensor from ``a`` to ``b`` (``a != b``), raw (``codec`` None) or with ``codec``;
    None when no path of links joins them. A codec the tensor or the devices do not offer is a
    :class:`TiercutError`."""
    raw = problem.graph[node].out_bytes
    encode_s = decode_s = 0.0
    wire = float(raw)
    if codec is not None:
        cc = problem.cut_compression
        if cc is None or codec not in cc.options(node, a, b):
            raise TiercutError(
                f"tensor {node!r} cannot be compressed with {codec!r} from {a!r} to {b!r}; "
                "the problem's cut_compression offers no such option"
            )
        spec = cc.codec(codec)
        wire = cc.tensors[node][codec].ratio * raw
        encode_s = spec.encode_s_per_byte[a] * raw
        decode_s = spec.decode_s_per_byte[b] * raw
    path = problem.routing.path(a, b, wire)
    if path is None:
        return None
    hops = path.hop_seconds(wire)
    devices = {d.name: d for d in problem.devices}
    source = problem.source
    energy = devices[a].power_compute_w * encode_s + devices[b].power_compute_w * decode_s
    tx = rx = 0.0
    for hop, t in zip(path.hops, hops, strict=True):
        energy += (devices[hop.src].power_tx_w + devices[hop.dst].power_rx_w) * t
        tx += t if hop.src == source else 0.0
        rx += t if hop.dst == source else 0.0
    busy_compute = (encode_s if a == source else 0.0) + (decode_s if b == source else 0.0)
    cost = wire * path.price_per_byte + devices[a].price_per_s * encode_s + devices[b].price_per_s * decode_s
    return TransferFigures(
        seconds=encode_s + float(sum(hops)) + decode_s,
        wire_bytes=wire,
        encode_s=encode_s,
        decode_s=decode_s,
        path=tuple(path.devices),
        hop_seconds=tuple(float(t) for t in hops),
        energy_total_j=energy,
        busy_compute_source_s=busy_compute,
        busy_tx_source_s=tx,
        busy_rx_source_s=rx,
        cost=cost,
    )


def crossing(problem: Problem, placement: Mapping[str, str]) -> dict[str, list[tuple[str, str]]]:
    """node -> its transfers ``(from, to)`` under ``placement`` (nodes whose tensor stays put are absent)."""
    consumers = problem.graph.consumers()
    out: dict[str, list[tuple[str, str]]] = {}
    for node in problem.graph:
        here = placement.get(node.name, problem.source)
        dest = {placement.get(w, problem.source) for w in consumers[node.name]}
        if node.is_output:
            dest.add(problem.source)
        pairs = [(here, d) for d in problem.device_names if d in dest and d != here]
        if pairs:
            out[node.name] = pairs
    return out


def accuracy_loss(problem: Problem, compression: Mapping[str, str]) -> float:
    """The summed accuracy loss of compressing these tensors with these codecs."""
    cc = problem.cut_compression
    if not compression:
        return 0.0
    if cc is None:
        raise TiercutError("the plan compresses cut tensors but the problem has no cut_compression options")
    total = 0.0
    for node, codec in compression.items():
        option = cc.tensors.get(node, {}).get(codec)
        if option is None:
            raise TiercutError(f"tensor {node!r} has no compression option {codec!r} in the problem")
        total += option.accuracy_loss
    return total


@dataclass(frozen=True)
class _Choice:
    codec: str | None
    value: float
    loss: float


def _tensor_choices(problem: Problem, objective: Objective, node: str, pairs: list[tuple[str, str]]) -> list[_Choice]:
    """The options of one crossing tensor (raw first) with their objective term and accuracy loss."""
    cc = problem.cut_compression
    weights = objective.metric_weights()

    def value(codec: str | None) -> float:
        total = 0.0
        for a, b in pairs:
            fig = transfer_figures(problem, node, a, b, codec)
            if fig is None:
                return math.inf
            metrics = fig.metrics(problem)
            total += sum(w * metrics[m] for m, w in weights.items())
        return total

    choices = [_Choice(None, value(None), 0.0)]
    if cc is None:
        return choices
    names = set.intersection(*(set(cc.options(node, a, b)) for a, b in pairs))
    for codec in (c.name for c in cc.codecs if c.name in names):
        choices.append(_Choice(codec, value(codec), cc.tensors[node][codec].accuracy_loss))
    return choices


def choose_compression(problem: Problem, placement: Mapping[str, str]) -> tuple[dict[str, str], bool]:
    """The compression of each crossing tensor that minimises the objective for a fixed ``placement``
    within the accuracy-loss budget, and whether that choice is proven best.

    Each tensor's choice changes only its own transfer terms (the metrics are sums over transfers), so
    without a budget each tensor takes its best option; with one it is a multiple-choice knapsack, solved
    by enumerating every combination (up to :data:`EXACT_COMBINATIONS`), else greedily: start from each
    tensor's best option and, while over budget, take back the change that costs the least objective per
    unit of accuracy regained (then not proven). Budgets on latency, energy or cost are not consulted:
    the objective decides (the plan's figures still report any violation).
    """
    if not problem.compresses_cuts:
        return {}, True
    cc = problem.cut_compression
    assert cc is not None
    tensors = {u: _tensor_choices(problem, problem.objective, u, pairs) for u, pairs in crossing(problem, placement).items()}
    tensors = {u: c for u, c in tensors.items() if len(c) > 1}
    budget = cc.accuracy_loss_max
    best = {u: min(c, key=lambda ch: (ch.value, ch.loss)) for u, c in tensors.items()}
    if budget is None or sum(ch.loss for ch in best.values()) <= budget + 1e-12:
        return {u: ch.codec for u, ch in best.items() if ch.codec is not None}, True
    names = list(tensors)
    if math.prod(len(c) for c in tensors.values()) <= EXACT_COMBINATIONS:
        top: tuple[float, tuple[_Choice, ...]] | None = None
        for combo in itertools.product(*(tensors[u] for u in names)):
            if sum(ch.loss for ch in combo) > budget + 1e-12:
                continue
            value = sum(ch.value for ch in combo)
            if top is None or value < top[0]:
                top = (value, combo)
        assert top is not None  # all raw is within any budget
        return {u: ch.codec for u, ch in zip(names, top[1], strict=True) if ch.codec is not None}, True
    chosen = dict(best)
    while sum(ch.loss for ch in chosen.values()) > budget + 1e-12:
        moves = [
            ((alt.value - chosen[u].value) / (chosen[u].loss - alt.loss), u, alt)
            for u in names
            for alt in tensors[u]
            if alt.loss < chosen[u].loss
        ]
        _, u, alt = min(moves, key=lambda m: m[0])
        chosen[u] = alt
    return {u: ch.codec for u, ch in chosen.items() if ch.codec is not None}, False


__all__ = [
    "EXACT_COMBINATIONS",
    "TransferFigures",
    "accuracy_loss",
    "choose_compression",
    "crossing",
    "transfer_figures",
]
