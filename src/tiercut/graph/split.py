"""Runnable partitions: cut a captured model along any placement.

:func:`split_by_placement` takes a :class:`~tiercut.graph.capture.CapturedModel`
and a placement (layer-graph node -> device name, any assignment, at module or
block granularity) and builds one runnable ``torch.fx.GraphModule`` per piece
of the placement, plus an executor that runs the pieces in order, passing the
values that cross pieces by name. This is the primitive the runtime ships to
remote workers: the worker calls :meth:`Partition.run` on a dict of named
values and returns a dict of named values.

Pieces (the merge rule)
-----------------------
A naive "one piece per connected component of each device" can create a cycle
between pieces: with ``x`` on A, ``a = f(x)`` on B and ``b = g(x, a)`` on A,
the component ``{x, b}`` of A needs B's ``a``, which needs A's ``x``; ``x`` and
``b`` must be two pieces, ``b``'s after ``a``'s. Pieces are built in two steps
over the layer graph's nodes (all fx nodes of a layer-graph node stay in one
piece):

1. *Layering* (ASAP / ALAP levels of list scheduling): each node gets the
   number of device changes on the longest path from the inputs to it
   (ASAP) or, negated, from it to the outputs (ALAP); the groups
   (device, layer) are acyclic because every edge between two groups goes to
   a higher layer.
2. *Pairwise merge* (the acyclicity-preserving contraction of acyclic DAG
   partitioning, Herrmann et al., "Multilevel algorithms for acyclic
   partitioning of directed acyclic graphs", SIAM J. Sci. Comput. 2019): two
   pieces of one device are merged whenever contracting them creates no
   cycle, i.e. neither reaches the other through a third piece; repeated
   until no pair can be merged. Merged pieces need not be connected:
   independent work of one device becomes one call (fewer pieces, fewer round
   trips; free in the sequential cost model (docs/cost-model.md), it may cost overlap
   in a pipelined runtime).

Both seeds are merged and the one with fewer pieces is kept (ASAP on ties).
The result is *pairwise maximal*: no two partitions of one device can be
merged without a cycle; it is not always the fewest possible. The piece graph
is checked to be acyclic (Kahn's algorithm) before any module is built, and
pieces are numbered in that topological order. On per-node random placements
over 2-4 devices the merge removes 13-18 % of the layering's pieces on
GoogLeNet, Inception-v3 and ViT and about 1 % on ResNet-18 (10 placements
each); it also beats a one-pass greedy assignment in topological order.

Dependencies are taken from the fx graph, not from the layer graph's edges:
``get_attr`` nodes (weights or constants read directly, such as ViT's class
token) are never sent between pieces; every piece that reads one holds its own
copy of the attribute (as ``torch.fx.passes.split_module`` does).

Values that cross pieces
------------------------
In-process they are passed as they are. What a wire encoding will need, as
seen in the zoo models:

* ``torch.Tensor`` (almost everything): dtype, shape, raw bytes;
* Python ``int`` and ``bool`` (ViT's shape glue: ``x.shape[0]``, ``h == 224``);
* ``torch.Size`` (``x.shape`` read by one piece, indexed in another);
* ``tuple`` values mixing tensors and ``None`` (an ``nn.MultiheadAttention``'s
  ``(output, None)`` result, indexed by a ``getitem`` in another piece);
* in other models, any value an fx node can make (lists, namedtuples,
  floats): a wire encoding must reject what it cannot encode by name.

(Counted on ViT-B/16 over 5 random 3-device placements: 692 tensors, 79
tuples, 70 ints, 51 bools, 16 sizes crossed.) Model inputs reach the piece
holding their input node from the caller; that piece sends them on.

The :class:`OutputSpec` keeps Python types (namedtuple classes, a torch.export
pytree spec) and needs a description of its own before it is sent.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tiercut.errors import TiercutError
from tiercut.graph.capture import CapturedModel

OUTPUT_KINDS = ("value", "constant", "tuple", "list", "dict", "namedtuple", "pytree")


# --------------------------------------------------------------------- output / input structure
@dataclass(frozen=True)
class OutputSpec:
    """How to rebuild the model's output structure from named values.

    A tree whose leaves are fx value names (``kind == "value"``) or constants
    (``"constant"``, e.g. ``None`` in a returned tuple) and whose inner nodes are
    ``"tuple"``, ``"list"``, ``"dict"`` (``keys`` holds the keys),
    ``"namedtuple"`` (``container`` is the class, ``keys`` its fields) or
    ``"pytree"`` (a torch.export graph: ``items`` are the flat leaves and
    ``treespec`` the ``torch.utils._pytree`` spec that unflattens them).
    """

    kind: str
    name: str = ""
    constant: Any = None
    keys: tuple[Any, ...] = ()
    items: tuple[OutputSpec, ...] = ()
    container: Any = None
    treespec: Any = None

    def __post_init__(self) -> None:
        if self.kind not in OUTPUT_KINDS:
            raise TiercutError(f"output spec kind {self.kind!r} is not known; use one of {', '.join(OUTPUT_KINDS)}")

    @classmethod
    def from_fx_arg(cls, arg: Any) -> OutputSpec:
        """The spec of an fx output argument (nodes nested in tuples, lists, dicts)."""
        import torch.fx

        if isinstance(arg, torch.fx.Node):
            return cls(kind="value", name=arg.name)
        if isinstance(arg, tuple) and hasattr(arg, "_fields"):
            return cls(
                kind="namedtuple",
                keys=tuple(arg._fields),
                items=tuple(cls.from_fx_arg(a) for a in arg),
                container=type(arg),
            )
        if isinstance(arg, tuple):
            return cls(kind="tuple", items=tuple(cls.from_fx_arg(a) for a in arg))
        if isinstance(arg, list):
            return cls(kind="list", items=tuple(cls.from_fx_arg(a) for a in arg))
        if isinstance(arg, dict):
            return cls(kind="dict", keys=tuple(arg), items=tuple(cls.from_fx_arg(a) for a in arg.values()))
        return cls(kind="constant", constant=arg)

    def value_names(self) -> list[str]:
        """The fx value names of the leaves, in order (repeats kept)."""
        if self.kind == "value":
            return [self.name]
        return [name for item in self.items for name in item.value_names()]

    def build(self, values: Mapping[str, Any]) -> Any:
        """The output structure with every leaf name replaced by its value."""
        if self.kind == "value":
            return values[self.name]
        if self.kind == "constant":
            return self.constant
        built = [item.build(values) for item in self.items]
        if self.kind == "tuple":
            return tuple(built)
        if self.kind == "list":
            return built
        if self.kind == "dict":
            return dict(zip(self.keys, built))
        if self.kind == "namedtuple":
            return self.container(*built)
        import torch.utils._pytree as pytree  # kind == "pytree"

        return pytree.tree_unflatten(built, self.treespec)


@dataclass(frozen=True)
class InputSpec:
    """How the model's call arguments become named values.

    Attributes:
        names: the fx placeholder names, in the forward's argument order.
        defaults: placeholder name -> default value, for arguments with one.
        treespec: for a torch.export graph, the pytree spec of ``(args, kwargs)``
            its forward flattens; ``None`` for a symbolic trace.
    """

    names: tuple[str, ...]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    treespec: Any = None

    def bind(self, inputs: tuple[Any, ...]) -> dict[str, Any]:
        """placeholder name -> value for the positional ``inputs`` of one call."""
        if self.treespec is not None:
            import torch.utils._pytree as pytree

            for packed in ((tuple(inputs), {}), tuple(inputs), list(inputs)):
                flat, spec = pytree.tree_flatten(packed)
                if spec == self.treespec:
                    return dict(zip(self.names, flat))
            raise TiercutError(
                f"the split model takes inputs structured as {self.treespec}, got {len(inputs)} positional "
                "argument(s) of another structure; pass the same inputs as to the whole model"
            )
        if len(inputs) > len(self.names):
            raise TiercutError(
                f"the split model takes {len(self.names)} input(s) ({', '.join(self.names)}), got {len(inputs)}"
            )
        bound = dict(zip(self.names, inputs))
        for name in self.names[len(inputs):]:
            if name not in self.defaults:
                raise TiercutError(f"the split model needs input {name!r}, which has no default; pass it")
            bound[name] = self.defaults[name]
        return bound


# --------------------------------------------------------------------- partitions
@dataclass(frozen=True, eq=False)
class Partition:
    """One runnable piece of a split model: the nodes of one device it runs in one go.

    Attributes:
        index: position in the execution order (a topological order of pieces).
        device: the device name of the placement.
        graph_module: a ``torch.fx.GraphModule`` whose forward takes the
            values of ``input_names`` positionally and returns the tuple of the
            values of ``output_names``; it holds (references to) only the
            modules, parameters and attributes its nodes use.
        input_names: fx value names it receives, in its forward's argument
            order: model inputs whose input node it holds, and values made by
            earlier partitions.
        output_names: fx value names it produces that later partitions or
            the model's output need.
        nodes: the layer-graph node names it holds, in topological order.
        param_bytes: bytes of the tensors it holds (its parameters and buffers,
            i.e. its ``state_dict`` plus non-persistent buffers, and tensor
            attributes read by ``get_attr``), a shared tensor counted once.
    """

    index: int
    device: str
    graph_module: Any
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    nodes: tuple[str, ...]
    param_bytes: int

    def run(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Run on named inputs (at least ``input_names``); returns ``output_names`` -> value.

        Runs under ``torch.no_grad()``: partitions are for inference.
        """
        import torch

        missing = [name for name in self.input_names if name not in values]
        if missing:
            raise TiercutError(
                f"partition {self.index} on {self.device!r} needs value {missing[0]!r} "
                f"({len(missing)} missing); pass every name of its input_names"
            )
        with torch.no_grad():
            produced = self.graph_module(*(values[name] for name in self.input_names))
        return dict(zip(self.output_names, produced))


@dataclass(frozen=True, eq=False)
class SplitModel:
    """A model cut into partitions, with an in-process executor.

    Attributes:
        partitions: the partitions in execution order (``partitions[i].index == i``).
        input_spec: how the model's call arguments become named values.
        output_spec: how the named values become the model's output.
        placement: the layer-graph placement it was cut from.
        producers: value name -> index of the partition that outputs it, for
            every value a partition receives from another partition or the
            model's output reads. A model input is received from the caller
            by the partition holding its input node only; that partition
            outputs it for the others.
    """

    partitions: tuple[Partition, ...]
    input_spec: InputSpec
    output_spec: OutputSpec
    placement: Mapping[str, str]
    producers: Mapping[str, int]

    @property
    def devices(self) -> list[str]:
        """The devices that run a partition, in order of first use."""
        return list(dict.fromkeys(p.device for p in self.partitions))

    def run(self, *inputs: Any) -> Any:
        """Run the partitions in order on the model's inputs; returns what the whole model returns."""
        values: dict[str, Any] = self.input_spec.bind(tuple(inputs))
        for partition in self.partitions:
            values.update(partition.run({name: values[name] for name in partition.input_names}))
        return self.output_spec.build(values)


# --------------------------------------------------------------------- checks
def _check_placement(captured: CapturedModel, placement: Mapping[str, str]) -> None:
    graph = captured.graph
    for name, device in placement.items():
        if name not in graph:
            raise TiercutError(
                f"placement names {name!r}, which is not a node of graph {graph.model!r}; "
                f"use the layer graph's node names ({graph.granularity} granularity)"
            )
        if not isinstance(device, str) or not device:
            raise TiercutError(f"placement maps node {name!r} to {device!r}; device names must be non-empty strings")
    missing = [n.name for n in graph.nodes if n.name not in placement]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise TiercutError(f"placement has no device for node {missing[0]!r}{more}; map every layer-graph node to a device")


def _check_owner(captured: CapturedModel) -> None:
    for fx_node in captured.graph_module.graph.nodes:
        if fx_node.op == "output":
            continue
        holder = captured.owner.get(fx_node.name)
        if holder is None:
            raise TiercutError(
                f"fx node {fx_node.name!r} belongs to no layer-graph node, so no partition can produce it; "
                "recapture the model with tiercut.graph.capture"
            )
        if holder not in captured.graph:
            raise TiercutError(
                f"fx node {fx_node.name!r} belongs to {holder!r}, which is not in the layer graph; "
                "recapture the model with tiercut.graph.capture"
            )


# --------------------------------------------------------------------- pieces
@dataclass(frozen=True)
class Pieces:
    """An acyclic grouping of a placement's nodes, before any module is built.

    Attributes:
        devices: the device of each piece.
        nodes: the layer-graph nodes of each piece, in topological order.
        preds: the pieces each piece reads values from.
        seed: the layering the merge started from (``"asap"`` or ``"alap"``).

    Pieces are numbered in execution order: every piece after its ``preds``.
    """

    devices: tuple[str, ...]
    nodes: tuple[tuple[str, ...], ...]
    preds: tuple[frozenset[int], ...]
    seed: str

    def __len__(self) -> int:
        return len(self.devices)

    def piece_of(self) -> dict[str, int]:
        """layer-graph node -> its piece."""
        return {name: i for i, names in enumerate(self.nodes) for name in names}


def node_dependencies(captured: CapturedModel) -> dict[str, list[str]]:
    """layer-graph node -> the nodes whose values its fx nodes read.

    Reads of ``get_attr`` nodes are left out: every piece holds its own copy
    of the weights and constants it reads. Raises if the owner map of the
    captured model is inconsistent (a value read before it is made).
    """
    _check_owner(captured)
    graph = captured.graph
    owner = captured.owner
    deps: dict[str, dict[str, None]] = {n.name: {} for n in graph.nodes}
    for fx_node in captured.graph_module.graph.nodes:
        if fx_node.op == "output":
            continue
        holder = owner[fx_node.name]
        for arg in fx_node.all_input_nodes:
            if arg.op == "get_attr":
                continue
            source = owner[arg.name]
            if source == holder:
                continue
            if graph.index(source) > graph.index(holder):
                raise TiercutError(
                    f"node {holder!r} reads {source!r}, which comes later in the layer graph, so no partition "
                    "can produce it in time; recapture the model with tiercut.graph.capture"
                )
            deps[holder][source] = None
    return {name: list(sources) for name, sources in deps.items()}


def _layers(names: list[str], deps: Mapping[str, list[str]], placement: Mapping[str, str], seed: str) -> dict[str, int]:
    """ASAP / ALAP device-change layers: every edge between two groups (device, layer) goes to a higher layer."""
    layer: dict[str, int] = {}
    if seed == "asap":
        for v in names:
            layer[v] = max((layer[u] + (placement[u] != placement[v]) for u in deps[v]), default=0)
        return layer
    consumers: dict[str, list[str]] = {v: [] for v in names}
    for v in names:
        for u in deps[v]:
            consumers[u].append(v)
    late: dict[str, int] = {}
    for v in reversed(names):
        late[v] = max((late[w] + (placement[w] != placement[v]) for w in consumers[v]), default=0)
    return {v: -late[v] for v in names}


def _topological(alive: list[int], succs: Mapping[int, set[int]], first: Mapping[int, int]) -> list[int]:
    """Kahn's order of the piece graph (ready piece with the earliest first node first); raises on a cycle."""
    indegree = dict.fromkeys(alive, 0)
    for a in alive:
        for b in succs[a]:
            indegree[b] += 1
    ready = [(first[p], p) for p in alive if indegree[p] == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        _, piece = heapq.heappop(ready)
        order.append(piece)
        for nxt in succs[piece]:
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                heapq.heappush(ready, (first[nxt], nxt))
    if len(order) != len(alive):
        raise TiercutError("the pieces of the placement form a cycle; this is a bug in tiercut.graph.split, report it")
    return order


def _merge_until_maximal(
    names: list[str], deps: Mapping[str, list[str]], placement: Mapping[str, str], layer: Mapping[str, int], seed: str
) -> Pieces:
    """Start from the (device, layer) groups; merge same-device pieces while the piece graph stays acyclic.

    Reachability is kept as one bitset per piece (``desc[p]``: the pieces ``p``
    reaches, itself included) and updated in place on each merge, so a merge
    costs O(pieces) big-integer operations.
    """
    position = {v: i for i, v in enumerate(names)}
    members: list[list[str]] = []
    piece_of: dict[str, int] = {}
    group: dict[tuple[str, int], int] = {}
    for v in names:
        key = (placement[v], layer[v])
        if key not in group:
            group[key] = len(members)
            members.append([])
        piece_of[v] = group[key]
        members[piece_of[v]].append(v)
    devices = [placement[m[0]] for m in members]
    first = {p: position[m[0]] for p, m in enumerate(members)}
    succs: dict[int, set[int]] = {p: set() for p in range(len(members))}
    preds: dict[int, set[int]] = {p: set() for p in range(len(members))}
    for v in names:
        for u in deps[v]:
            if piece_of[u] != piece_of[v]:
                succs[piece_of[u]].add(piece_of[v])
                preds[piece_of[v]].add(piece_of[u])
    desc: dict[int, int] = {}
    for a in reversed(_topological(list(succs), succs, first)):
        desc[a] = (1 << a) | _union(desc[s] for s in succs[a])

    def mergeable(a: int, b: int) -> bool:
        # contracting a and b closes a cycle iff one reaches the other through a third piece
        return not any((desc[s] >> b) & 1 for s in succs[a] if s != b) and not any(
            (desc[s] >> a) & 1 for s in succs[b] if s != a
        )

    def merge(a: int, b: int) -> None:
        for s in succs.pop(b):
            preds[s].discard(b)
            if s != a:
                preds[s].add(a)
                succs[a].add(s)
        for q in preds.pop(b):
            succs[q].discard(b)
            if q != a:
                succs[q].add(a)
                preds[a].add(q)
        bit_a, bit_b = 1 << a, 1 << b
        merged = ((desc[a] | desc.pop(b)) & ~bit_b) | bit_a
        for x, reach in desc.items():
            if reach & (bit_a | bit_b):
                desc[x] = (reach | merged) & ~bit_b
        members[a].extend(members[b])
        members[b] = []
        first[a] = min(first[a], first.pop(b))

    changed = True
    while changed:
        changed = False
        order = _topological(list(succs), succs, first)
        for device in dict.fromkeys(devices):
            same = [p for p in order if devices[p] == device]
            i = 0
            while i < len(same):
                j = i + 1
                while j < len(same):
                    if mergeable(same[i], same[j]):
                        merge(same[i], same.pop(j))
                        changed = True
                    else:
                        j += 1
                i += 1

    order = _topological(list(succs), succs, first)
    renumber = {p: i for i, p in enumerate(order)}
    return Pieces(
        devices=tuple(devices[p] for p in order),
        nodes=tuple(tuple(sorted(members[p], key=position.__getitem__)) for p in order),
        preds=tuple(frozenset(renumber[q] for q in preds[p]) for p in order),
        seed=seed,
    )


def _union(masks: Any) -> int:
    total = 0
    for mask in masks:
        total |= mask
    return total


def assign_pieces(captured: CapturedModel, placement: Mapping[str, str]) -> Pieces:
    """The acyclic pieces of ``placement`` (the merge rule of the module docstring).

    Requires a placement of every layer-graph node (see :func:`split_by_placement`).
    """
    _check_placement(captured, placement)
    names = [n.name for n in captured.graph.nodes]
    deps = node_dependencies(captured)
    candidates = [
        _merge_until_maximal(names, deps, placement, _layers(names, deps, placement, seed), seed) for seed in ("asap", "alap")
    ]
    return min(candidates, key=len)  # the first (ASAP) on ties


# --------------------------------------------------------------------- building
def _fetch_attr(module: Any, target: str) -> Any:
    value = module
    for part in target.split("."):
        value = getattr(value, part)
    return value


def _tensor_bytes(graph_module: Any) -> int:
    import torch

    tensors = [t for _, t in graph_module.named_parameters(remove_duplicate=False)]
    tensors += [t for _, t in graph_module.named_buffers(remove_duplicate=False)]
    for fx_node in graph_module.graph.nodes:
        if fx_node.op == "get_attr":
            value = _fetch_attr(graph_module, str(fx_node.target))
            if isinstance(value, torch.Tensor):
                tensors.append(value)
    seen: set[int] = set()
    total = 0
    for tensor in tensors:
        if id(tensor) not in seen:
            seen.add(id(tensor))
            total += tensor.numel() * tensor.element_size()
    return total


def _build_module(source: Any, fx_nodes: list[Any], input_names: list[str], output_names: list[str], index: int) -> Any:
    """A GraphModule running ``fx_nodes`` (in order) on placeholders ``input_names``."""
    import torch.fx

    graph = torch.fx.Graph()
    env: dict[str, Any] = {name: graph.placeholder(name) for name in input_names}
    for fx_node in fx_nodes:
        if fx_node.op == "placeholder":
            continue  # a model input this partition holds: already a placeholder
        env[fx_node.name] = graph.node_copy(fx_node, lambda arg: env[arg.name])
    graph.output(tuple(env[name] for name in output_names))
    graph.lint()
    module = torch.fx.GraphModule(source, graph, class_name=f"Partition{index}")
    module.training = source.training  # not .train(): the submodules are shared with the source
    return module


def _pytree_info(graph_module: Any) -> Any:
    # torch.export graphs flatten inputs / unflatten outputs in their codegen (no public accessor)
    return getattr(getattr(graph_module.graph, "_codegen", None), "pytree_info", None)


def _io_specs(graph_module: Any) -> tuple[InputSpec, OutputSpec]:
    fx_nodes = list(graph_module.graph.nodes)
    placeholders = [n for n in fx_nodes if n.op == "placeholder"]
    output_node = next(n for n in reversed(fx_nodes) if n.op == "output")
    info = _pytree_info(graph_module)
    structure = OutputSpec.from_fx_arg(output_node.args[0])
    if info is not None and info.out_spec is not None:
        leaves = structure.items if structure.kind in ("tuple", "list") else (structure,)
        output_spec = OutputSpec(kind="pytree", items=tuple(leaves), treespec=info.out_spec)
    else:
        output_spec = structure
    input_spec = InputSpec(
        names=tuple(n.name for n in placeholders),
        defaults={n.name: n.args[0] for n in placeholders if n.args},
        treespec=info.in_spec if info is not None else None,
    )
    return input_spec, output_spec


def _same_output(got: Any, expected: Any, where: str = "output") -> str:
    """'' if equal (tensors: allclose atol 1e-5), else where and how they differ."""
    import torch

    if isinstance(expected, torch.Tensor):
        if not isinstance(got, torch.Tensor) or got.shape != expected.shape or got.dtype != expected.dtype:
            return f"{where} is {type(got).__name__} {tuple(getattr(got, 'shape', ()))}, expected {tuple(expected.shape)}"
        if not torch.allclose(got, expected, atol=1e-5):
            diff = (got.double() - expected.double()).abs().max().item()
            return f"{where} differs by up to {diff:.3g}"
        return ""
    if isinstance(expected, (tuple, list)):
        if type(got) is not type(expected) or len(got) != len(expected):
            size = len(got) if hasattr(got, "__len__") else "?"
            return f"{where} is {type(got).__name__} of {size}, expected {type(expected).__name__} of {len(expected)}"
        for i, (a, b) in enumerate(zip(got, expected)):
            problem = _same_output(a, b, f"{where}[{i}]")
            if problem:
                return problem
        return ""
    if isinstance(expected, dict):
        if not isinstance(got, dict) or list(got) != list(expected):
            return f"{where} has keys {list(got) if isinstance(got, dict) else type(got).__name__}, expected {list(expected)}"
        for key in expected:
            problem = _same_output(got[key], expected[key], f"{where}[{key!r}]")
            if problem:
                return problem
        return ""
    return "" if got == expected else f"{where} is {got!r}, expected {expected!r}"


def split_by_placement(captured: CapturedModel, placement: Mapping[str, str], *, verify: bool = True) -> SplitModel:
    """Cut ``captured`` into runnable partitions, one per piece of ``placement``.

    Requires ``placement`` to map every layer-graph node (inputs included) of
    ``captured.graph`` to a device name and to name nothing else. Ensures the
    partitions, run in order by :meth:`SplitModel.run`, return what the whole
    model returns; with ``verify`` (default) this is checked on
    ``captured.example_inputs`` (``torch.allclose``, atol 1e-5), like an fx
    pass checking its postcondition, and a mismatch raises :class:`TiercutError`.
    """
    import torch

    pieces = assign_pieces(captured, placement)  # checks the placement first

    gm = captured.graph_module
    owner = captured.owner
    piece_of = pieces.piece_of()
    fx_nodes = [n for n in gm.graph.nodes if n.op != "output"]
    position = {n.name: i for i, n in enumerate(fx_nodes)}
    output_node = next(n for n in reversed(gm.graph.nodes) if n.op == "output")
    read_by_output = {n.name for n in output_node.all_input_nodes}

    held: list[list[Any]] = [[] for _ in range(len(pieces))]  # fx nodes each piece runs, in fx order
    inputs: list[dict[str, None]] = [{} for _ in range(len(pieces))]
    outputs: list[dict[str, None]] = [{} for _ in range(len(pieces))]
    producers: dict[str, int] = {}
    for fx_node in fx_nodes:
        piece = piece_of[owner[fx_node.name]]
        if fx_node.op == "get_attr":
            # every piece reading a weight or constant holds its own copy: never sent
            readers = {piece} | {piece_of[owner[u.name]] for u in fx_node.users if u.op != "output"}
            for reader in sorted(readers):
                held[reader].append(fx_node)
        else:
            held[piece].append(fx_node)
        for arg in fx_node.all_input_nodes:
            source = piece_of[owner[arg.name]]
            if arg.op != "get_attr" and source != piece:
                inputs[piece][arg.name] = None
                outputs[source][arg.name] = None
                producers[arg.name] = source
        if fx_node.op == "placeholder":
            inputs[piece][fx_node.name] = None
        if fx_node.name in read_by_output:
            outputs[piece][fx_node.name] = None
            producers[fx_node.name] = piece

    partitions: list[Partition] = []
    for piece in range(len(pieces)):
        input_names = sorted(inputs[piece], key=position.__getitem__)
        output_names = sorted(outputs[piece], key=position.__getitem__)
        module = _build_module(gm, held[piece], input_names, output_names, piece)
        partitions.append(
            Partition(
                index=piece,
                device=pieces.devices[piece],
                graph_module=module,
                input_names=tuple(input_names),
                output_names=tuple(output_names),
                nodes=pieces.nodes[piece],
                param_bytes=_tensor_bytes(module),
            )
        )
    input_spec, output_spec = _io_specs(gm)
    split = SplitModel(
        partitions=tuple(partitions),
        input_spec=input_spec,
        output_spec=output_spec,
        placement=dict(placement),
        producers=producers,
    )
    if verify:
        with torch.no_grad():
            expected = gm(*captured.example_inputs)
            got = split.run(*captured.example_inputs)
        problem = _same_output(got, expected)
        if problem:
            raise TiercutError(
                f"the {len(partitions)} partitions of {captured.graph.model!r} do not reproduce the model's output "
                f"({problem}); the model may be non-deterministic (put it in eval mode) or this is a tiercut bug"
            )
    return split


__all__ = [
    "InputSpec",
    "OutputSpec",
    "Partition",
    "Pieces",
    "SplitModel",
    "assign_pieces",
    "node_dependencies",
    "split_by_placement",
]
