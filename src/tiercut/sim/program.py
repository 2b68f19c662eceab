"""A query as a program of operations: layer runs on devices and tensor transfers over links.

Built from a placement with docs/cost-model.md terms (``c(v, d)``,
``out(u)``, each tensor sent once to each other device that needs it, graph
outputs returned to the source), so that one query alone on idle resources
takes exactly the cost model's ``T(x)`` in ``sequential`` execution:

- ``sequential``: layers in topological order; before a layer runs, the
  tensors it needs from other devices are sent; at the end the outputs go
  back to the source. Consecutive layers on one device are one operation
  (one job on that device), and consecutive transfers over one link in one
  direction are one transfer -- the operations are strictly one after
  another, so this changes no time, only the number of events;
- ``overlapped``: a layer starts as soon as its inputs are on its device, so
  parallel branches on different devices overlap; a chain of layers on one
  device (each the only reader of the previous) is one operation.

A transfer follows the cost model's routing (:mod:`tiercut.cost.routing`):
the path of links its size travels fastest, one operation per hop (the
hop's latency, then its bytes on that link's channel), store-and-forward:
a hop starts when the previous one has ended. With per-message costs
(a device's ``message_s``) each end of a hop also does its message seconds
as work on its device (a :data:`MESSAGE` operation on the device's compute
resource), the sender before the hop, the receiver after it, so that under
load they queue with that device's layers as in the pipelined stages. A symmetric link is one
channel that both directions share; a link with different figures per
direction (an uplink slower than the downlink) is two channels, one per
direction (:func:`channel_key`).

Energy coefficients follow the cost model: compute energy is the device's
compute power times the work; a hop costs its sender's tx power plus its
receiver's rx power for as long as it takes (its message work too, for its
work seconds); the source's energy is
``P_compute * busy_compute + P_tx * busy_tx + P_rx * busy_rx + P_idle * rest``
(busy transmitting or receiving on the hops it is an end of).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from tiercut.errors import TiercutError
from tiercut.problem import Problem

COMPUTE = 0
TRANSFER = 1
#: a device's per-message work (its ``message_s``) for one end of a hop: a job on that device, like compute
MESSAGE = 2

#: the source's role in an operation
ROLE_NONE, ROLE_COMPUTE, ROLE_TX, ROLE_RX = 0, 1, 2, 3


def link_key(a: str, b: str) -> str:
    """The name of the (undirected) link between ``a`` and ``b``."""
    return f"{a}|{b}" if a <= b else f"{b}|{a}"


def channel_key(link: Any, src: str, dst: str) -> str:
    """The channel a hop from ``src`` to ``dst`` occupies: the link's one shared channel (``a|b``) when it is
    symmetric, its ``src>dst`` direction's own channel when the directions differ."""
    return f"{src}>{dst}" if link.directional else link_key(src, dst)


@dataclass(frozen=True, slots=True)
class Op:
    """One operation of a query.

    Attributes:
        kind: :data:`COMPUTE`, :data:`TRANSFER` or :data:`MESSAGE`.
        where: the device (compute, message) or the channel key of the hop's link (transfer, :func:`channel_key`).
        amount: work seconds (compute, message) or bytes (transfer).
        latency_s: link latency paid before the bytes move (transfers).
        src, dst: the two ends of a transfer's or a message's hop (``src == dst == where`` for compute).
        nodes: layers run, or tensors moved.
        energy_j: fixed total energy (compute: power x work; message: the hop's sender tx + receiver rx power
            x work, as the cost model charges the hop's message seconds).
        power_w: power drawn while a transfer lasts (sender tx + receiver rx).
        role: the source device's part (:data:`ROLE_COMPUTE`, :data:`ROLE_TX`, :data:`ROLE_RX`; a message op
            has its hop's role: the source's message seconds and its peer's are transmit/receive time).
        deps: indices of the operations that must finish first (overlapped).
    """

    kind: int
    where: str
    amount: float
    latency_s: float
    src: str
    dst: str
    nodes: tuple[str, ...]
    energy_j: float
    power_w: float
    role: int
    deps: tuple[int, ...] = ()


@dataclass(frozen=True)
class Program:
    """A query's operations for one placement.

    Attributes:
        placement: node -> device (the stage's, shared by reference).
        ops: operations (sequential: in order; overlapped: with ``deps``).
        execution: ``sequential`` or ``overlapped``.
        bytes_moved: tensor bytes sent between devices, on every hop (a tensor sent compressed at a cut counts its
            wire bytes, :func:`tiercut.cost.cut_compression.transfer_figures`).
        source powers: the source device's compute, tx, rx and idle powers.
    """

    placement: Mapping[str, str]
    ops: tuple[Op, ...]
    execution: str
    bytes_moved: int
    power_compute_w: float
    power_tx_w: float
    power_rx_w: float
    power_idle_w: float


def _compute_op(problem: Problem, node: str, device: str, deps: tuple[int, ...] = ()) -> Op:
    seconds = problem.compute_s[node].get(device)
    if seconds is None:
        raise TiercutError(f"placement runs {node!r} on {device!r}, where it cannot run")
    dev = problem.device(device)
    role = ROLE_COMPUTE if device == problem.source else ROLE_NONE
    return Op(COMPUTE, device, seconds, 0.0, device, device, (node,), dev.power_compute_w * seconds, 0.0, role, deps)


def _codec_op(problem: Problem, node: str, device: str, seconds: float) -> Op:
    """Encoding or decoding ``node``'s tensor on ``device`` (cut compression): computation there."""
    dev = problem.device(device)
    role = ROLE_COMPUTE if device == problem.source else ROLE_NONE
    return Op(COMPUTE, device, seconds, 0.0, device, device, (node,), dev.power_compute_w * seconds, 0.0, role)


def _transfer_ops(problem: Problem, node: str, a: str, b: str, codec: str | None = None) -> list[Op]:
    """One operation per hop of the path ``node``'s tensor takes from ``a`` to ``b`` (deps left to the caller);
    with a cut ``codec``, its encoding on ``a`` first and its decoding on ``b`` last, the compressed bytes between
    (:func:`tiercut.cost.cut_compression.transfer_figures`)."""
    if codec is not None:
        from tiercut.cost.cut_compression import transfer_figures

        fig = transfer_figures(problem, node, a, b, codec)
        if fig is None:
            raise TiercutError(f"placement sends {node!r} from {a!r} to {b!r}, which no path of links joins")
        hops = _hop_ops(problem, float(fig.wire_bytes), a, b, (node,))
        return [_codec_op(problem, node, a, fig.encode_s), *hops, _codec_op(problem, node, b, fig.decode_s)]
    return _hop_ops(problem, float(problem.graph[node].out_bytes), a, b, (node,))


def _hop_ops(problem: Problem, amount: float, a: str, b: str, nodes: tuple[str, ...], occupy: bool = True) -> list[Op]:
    """The operations of the path ``amount`` bytes take from ``a`` to ``b`` (deps left to the caller, to chain them
    in order): per hop, its sender's message work (a :data:`MESSAGE` job on the sender, when its ``message_s`` is
    not 0), the transfer (latency, then the bytes and the link's overhead bytes on its channel), its receiver's
    message work. Alone on idle resources the three take the cost model's hop time; under load the message
    seconds occupy the devices (the pipelined stages' device stages). ``occupy=False``: the message seconds only
    delay the transfer (added to its latency), occupying no device."""
    path = problem.routing.path(a, b, amount)
    if path is None:
        raise TiercutError(f"placement sends {nodes[0]!r} from {a!r} to {b!r}, which no path of links joins")
    ops = []
    for hop in path.hops:
        link = problem.link(hop.src, hop.dst)
        assert link is not None
        role = ROLE_TX if hop.src == problem.source else (ROLE_RX if hop.dst == problem.source else ROLE_NONE)
        power = problem.device(hop.src).power_tx_w + problem.device(hop.dst).power_rx_w
        where = channel_key(link, hop.src, hop.dst)
        # per-message costs (docs/cost-model.md): the overhead bytes share the link, the ends' message seconds are
        # work on the ends' devices before sending / after receiving
        send_s, receive_s = problem.device(hop.src).message_s, problem.device(hop.dst).message_s
        delay = hop.latency_s if occupy else hop.latency_s + send_s + receive_s
        if occupy and send_s > 0:
            ops.append(Op(MESSAGE, hop.src, send_s, 0.0, hop.src, hop.dst, nodes, power * send_s, power, role))
        ops.append(Op(TRANSFER, where, amount + hop.message_overhead_bytes, delay, hop.src, hop.dst, nodes, 0.0, power, role))
        if occupy and receive_s > 0:
            ops.append(Op(MESSAGE, hop.dst, receive_s, 0.0, hop.src, hop.dst, nodes, power * receive_s, power, role))
    return ops


def _merge(first: Op, second: Op) -> Op:
    return Op(
        first.kind,
        first.where,
        first.amount + second.amount,
        first.latency_s + second.latency_s,
        first.src,
        first.dst,
        first.nodes + second.nodes,
        first.energy_j + second.energy_j,
        first.power_w,
        first.role,
        first.deps,
    )


def compile_program(
    problem: Problem, placement: Mapping[str, str], execution: str = "sequential", compression: Mapping[str, str] | None = None
) -> Program:
    """The operations of one query of ``problem`` with ``placement`` (``compression``: node -> cut codec)."""
    graph = problem.graph
    codecs = dict(compression or {})
    place = {n.name: placement.get(n.name, problem.source if n.is_input else "") for n in graph}
    for name, device in place.items():
        if not device:
            raise TiercutError(f"placement has no device for node {name!r}; place every node")
    src = problem.device(problem.source)
    ops = _sequential(problem, place, codecs) if execution == "sequential" else _overlapped(problem, place, codecs)
    # the bytes each hop carries: a compressed tensor's wire bytes (the cost model's), not its raw size
    moved = round(sum(op.amount for op in ops if op.kind == TRANSFER))
    return Program(placement, tuple(ops), execution, moved, src.power_compute_w, src.power_tx_w, src.power_rx_w, src.power_idle_w)


def _sequential(
    problem: Problem,
    place: Mapping[str, str],
    codecs: Mapping[str, str] | None = None,
    blocks: Mapping[str, Any] | None = None,
) -> list[Any]:
    """The sequential operations (``codecs``: node -> cut codec of a tensor sent compressed); with ``blocks``
    (first layer of a tiled stack -> its stage), each tiled stack's layers are one marker (the stage) in the
    list instead of compute operations."""
    codecs = codecs or {}
    graph = problem.graph
    ops: list[Any] = []
    sent: set[tuple[str, str]] = set()
    blocks = blocks or {}
    skipped: set[str] = set()
    for stage in blocks.values():
        skipped.update(stage.names)

    def push(op: Op) -> None:
        last = ops[-1] if ops else None
        if isinstance(last, Op) and last.kind == op.kind and op.kind != MESSAGE and last.src == op.src and last.dst == op.dst:
            ops[-1] = _merge(last, op)
        else:
            ops.append(op)

    for node in graph:
        if node.is_input:
            continue
        device = place[node.name]
        if node.name in skipped:
            if node.name in blocks:  # the stack's input arrives at its home, then the stage runs
                for u in dict.fromkeys(node.inputs):
                    if place[u] != device and (u, device) not in sent:
                        sent.add((u, device))
                        for hop in _transfer_ops(problem, u, place[u], device):
                            push(hop)
                ops.append(blocks[node.name])
            continue
        for u in dict.fromkeys(node.inputs):
            here = place[u]
            if here != device and (u, device) not in sent:
                sent.add((u, device))
                for hop in _transfer_ops(problem, u, here, device, codecs.get(u)):
                    push(hop)
        push(_compute_op(problem, node.name, device))
    for node in graph.outputs:
        here = place[node.name]
        if here != problem.source and (node.name, problem.source) not in sent:
            sent.add((node.name, problem.source))
            for hop in _transfer_ops(problem, node.name, here, problem.source, codecs.get(node.name)):
                push(hop)
    return ops


@dataclass(frozen=True)
class _StageBlock:
    """A tiled stage's place in a sequential program: its layers, and its schedule (the cost model's)."""

    names: tuple[str, ...]
    timing: Any


def compile_tiled_program(problem: Problem, placement: Mapping[str, str], stages: Any) -> Program:
    """The operations of one query of ``placement`` with tiled ``stages`` (:mod:`tiercut.cost.tiled`), as a DAG.

    The layers outside the stacks run sequentially (each operation after the
    previous one, exactly :func:`compile_program`'s sequential order); each
    tiled stage, in its stack's place, is the cost model's schedule as
    operations with dependencies: the home sends the tiles' inputs one after
    another (each over its routed path, hop by hop), a tile is computed on its
    device once its input is there (the home's own tiles after its sends;
    tiles sharing a device one after another), and the outputs come back to
    the home one at a time, after its own tiles, in the order the cost model
    has them finish. Alone on idle resources one query takes exactly
    :func:`tiercut.cost.tiled.evaluate_tiled`'s latency; with other queries
    the tiles contend for devices and links like any operation (so two
    stages' tiles on one device share it, and a gather may wait on a busy
    link -- the gather order stays the uncontended one). A tiled stage's hops
    keep their ends' ``message_s`` as a delay (``_hop_ops(occupy=False)``):
    its schedule does not serialise them with the tiles on the devices.
    """
    from tiercut.cost.tiled import evaluate_tiled, stage_placement

    tiled = evaluate_tiled(problem, placement, stages)
    if not tiled.evaluation.valid:
        raise TiercutError(f"the tiled plan cannot run: {'; '.join(tiled.evaluation.violations[:1])}")
    full = stage_placement(problem, placement, stages)
    graph = problem.graph
    place = {n.name: full.get(n.name, problem.source if n.is_input else "") for n in graph}
    blocks = {}
    for timing in tiled.stages:
        names = tuple(timing.stage.geometry(problem).names)
        first = next(n.name for n in graph if n.name in set(names))
        blocks[first] = _StageBlock(names, timing)
    items = _sequential(problem, place, blocks=blocks)
    ops: list[Op] = []
    frontier: tuple[int, ...] = ()
    for item in items:
        if isinstance(item, Op):
            ops.append(replace(item, deps=frontier))
            frontier = (len(ops) - 1,)
        else:
            frontier = _stage_ops(problem, item, frontier, ops)
    src = problem.device(problem.source)
    moved = int(sum(op.amount for op in ops if op.kind == TRANSFER))
    return Program(full, tuple(ops), "overlapped", moved, src.power_compute_w, src.power_tx_w, src.power_rx_w,
                   src.power_idle_w)  # fmt: skip


def _stage_ops(problem: Problem, block: _StageBlock, entry: tuple[int, ...], ops: list[Op]) -> tuple[int, ...]:
    """Append a tiled stage's operations after ``entry``; returns the operations the rest must wait for."""
    timing = block.timing
    home = timing.stage.home

    def chain(hops: list[Op], after: tuple[int, ...]) -> int:
        for hop in hops:
            ops.append(replace(hop, deps=after))
            after = (len(ops) - 1,)
        return after[0]

    sent = entry
    arrived: dict[int, int] = {}
    for i, t in enumerate(timing.tiles):  # scatter, in tile order
        if t.tile.device != home:
            label = (f"{block.names[0]}..{block.names[-1]} tile {i} in",)
            arrived[i] = chain(_hop_ops(problem, float(t.in_bytes), home, t.tile.device, label, occupy=False), sent)
            sent = (arrived[i],)
    last_on: dict[str, int] = {}
    computed: dict[int, int] = {}
    for i, t in enumerate(timing.tiles):  # compute: after the input arrived and the device's previous tile
        device = t.tile.device
        deps = sent if device == home else (arrived[i],)
        if device in last_on:
            deps = tuple(sorted({*deps, last_on[device]}))
        role = ROLE_COMPUTE if device == problem.source else ROLE_NONE
        power = problem.device(device).power_compute_w
        ops.append(Op(COMPUTE, device, t.compute_s, 0.0, device, device, block.names, power * t.compute_s, 0.0, role, deps))
        computed[i] = last_on[device] = len(ops) - 1
    own = tuple(computed[i] for i, t in enumerate(timing.tiles) if t.tile.device == home)
    received = own or sent
    order = sorted((i for i, t in enumerate(timing.tiles) if t.tile.device != home), key=lambda k: (timing.tiles[k].finish_s, k))
    for i in order:  # gather, one at a time, after the home's own tiles
        t = timing.tiles[i]
        label = (f"{block.names[0]}..{block.names[-1]} tile {i} out",)
        deps = tuple(sorted({computed[i], *received}))
        received = (chain(_hop_ops(problem, float(t.out_bytes), t.tile.device, home, label, occupy=False), deps),)
    return tuple(sorted({*received, *own}))


def _overlapped(problem: Problem, place: Mapping[str, str], codecs: Mapping[str, str]) -> list[Op]:
    graph = problem.graph
    raw: list[Op] = []
    compute_of: dict[str, int] = {}
    transfer_of: dict[tuple[str, str], int] = {}

    def transfer(u: str, dst: str) -> int:
        """The index of the last hop of ``u``'s tensor to ``dst`` (hops chained store-and-forward)."""
        key = (u, dst)
        if key not in transfer_of:
            deps = () if graph[u].is_input else (compute_of[u],)
            for hop in _transfer_ops(problem, u, place[u], dst, codecs.get(u)):
                raw.append(replace(hop, deps=deps))
                deps = (len(raw) - 1,)
            transfer_of[key] = len(raw) - 1
        return transfer_of[key]

    for node in graph:
        if node.is_input:
            continue
        device = place[node.name]
        deps = []
        for u in dict.fromkeys(node.inputs):
            if place[u] == device:
                if not graph[u].is_input:
                    deps.append(compute_of[u])
            else:
                deps.append(transfer(u, device))
        raw.append(_compute_op(problem, node.name, device, tuple(deps)))
        compute_of[node.name] = len(raw) - 1
    for node in graph.outputs:
        if place[node.name] != problem.source:
            transfer(node.name, problem.source)
    # merge chains: a compute op whose only dependant is a compute op on the same device depending on it alone
    children: list[list[int]] = [[] for _ in raw]
    for i, op in enumerate(raw):
        for d in op.deps:
            children[d].append(i)
    outputs = {compute_of[n.name] for n in graph.outputs}
    into = list(range(len(raw)))  # op index -> the op it was merged into

    def root(i: int) -> int:
        while into[i] != i:
            i = into[i]
        return i

    merged: dict[int, Op] = {}
    for i, op in enumerate(raw):
        if op.kind == COMPUTE and len(op.deps) == 1:
            parent = root(op.deps[0])
            p_op = merged.get(parent, raw[parent])
            if (
                raw[op.deps[0]].kind == COMPUTE
                and p_op.where == op.where
                and len(children[op.deps[0]]) == 1
                and op.deps[0] not in outputs
            ):
                merged[parent] = _merge(p_op, op)
                into[i] = parent
                continue
        merged[i] = op
    keep = [i for i in range(len(raw)) if into[i] == i]
    position = {i: k for k, i in enumerate(keep)}
    out = []
    for i in keep:
        op = merged[i]
        deps = tuple(sorted({position[root(d)] for d in op.deps}))
        out.append(replace(op, deps=deps))
    return out


__all__ = [
    "COMPUTE",
    "MESSAGE",
    "ROLE_COMPUTE",
    "ROLE_NONE",
    "ROLE_RX",
    "ROLE_TX",
    "TRANSFER",
    "Op",
    "Program",
    "channel_key",
    "compile_program",
    "compile_tiled_program",
    "link_key",
]
