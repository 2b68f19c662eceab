"""The layer graph every later stage works on.

A :class:`LayerGraph` is a DAG of :class:`Node` in topological order. Each
node is one leaf module or function call of the model (module granularity)
or one collapsed block (block granularity). Graph inputs are nodes too, with
``op == "input"`` and no inputs. Units are SI: FLOPs (one multiply-add = 2),
bytes (``numel * element_size``).

The JSON form is docs/DESIGN.md's ``problem.nodes`` contract plus a header
(``schema_version``, ``model``, ``granularity``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from tiercut.errors import TiercutError
from tiercut.serialization import json_contract

SCHEMA_VERSION = 1
#: what every layer-graph error tells the reader to do.
_HINT = "pass the output of 'tiercut graph --json' of this tiercut"

INPUT_OP = "input"


@dataclass(frozen=True)
class Node:
    """One layer (or block) of the graph.

    Attributes:
        name: unique name; at module granularity the torch.fx node name.
        op: lower-case module class or function name (``conv2d``, ``add``...);
            ``"input"`` for graph inputs.
        inputs: names of the nodes whose outputs this node reads (DAG edges).
        flops: floating point operations of one forward pass (multiply-add = 2).
        matmul_flops: the part of ``flops`` in convolutions, matrix products and
            attention (counted by torch's flop counter); the rest comes from
            the project's formulas for norms, activations, pooling, arithmetic.
        param_bytes: bytes of the weights this node needs on the device that
            runs it (parameters and persistent buffers; a tensor shared by
            several nodes is counted on the first one only, so the sum over
            nodes is the model's weight bytes).
        param_count: number of trainable parameter elements (same sharing rule).
        params: names of every weight tensor the node uses (shared ones
            included), keys of :attr:`LayerGraph.params`; empty when the
            graph does not name its weights (then the node's own
            ``param_bytes`` is its private weights).
        out_bytes: bytes of the output tensor(s).
        out_shape: shape of the output (of the first output for tuples).
        out_dtype: dtype name of the output, e.g. ``"float32"``.
        is_output: the node's output is (part of) the model's output.
        members: the fx node names this node stands for (itself at module
            granularity; the block's nodes at block granularity).
        module: the qualified module path it came from (``layer1.0.conv1``),
            empty for function calls and inputs.
    """

    name: str
    op: str
    inputs: tuple[str, ...] = ()
    flops: int = 0
    matmul_flops: int = 0
    param_bytes: int = 0
    param_count: int = 0
    out_bytes: int = 0
    out_shape: tuple[int, ...] = ()
    out_dtype: str = "float32"
    is_output: bool = False
    members: tuple[str, ...] = ()
    module: str = ""
    params: tuple[str, ...] = ()

    @property
    def is_input(self) -> bool:
        return self.op == INPUT_OP

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "op": self.op,
            "inputs": list(self.inputs),
            "flops": self.flops,
            "matmul_flops": self.matmul_flops,
            "param_bytes": self.param_bytes,
            "param_count": self.param_count,
            "out_bytes": self.out_bytes,
            "out_shape": list(self.out_shape),
            "out_dtype": self.out_dtype,
            "is_output": self.is_output,
            "members": list(self.members),
            "module": self.module,
            "params": list(self.params),
        }

    @classmethod
    @json_contract("graph node", hint=_HINT)
    def from_dict(cls, data: Mapping[str, Any]) -> Node:
        return cls(
            name=str(data["name"]),
            op=str(data["op"]),
            inputs=tuple(str(i) for i in data.get("inputs", ())),
            flops=int(data.get("flops", 0)),
            matmul_flops=int(data.get("matmul_flops", 0)),
            param_bytes=int(data.get("param_bytes", 0)),
            param_count=int(data.get("param_count", 0)),
            out_bytes=int(data.get("out_bytes", 0)),
            out_shape=tuple(int(s) for s in data.get("out_shape", ())),
            out_dtype=str(data.get("out_dtype", "float32")),
            is_output=bool(data.get("is_output", False)),
            members=tuple(str(m) for m in data.get("members", ())),
            module=str(data.get("module", "")),
            params=tuple(dict.fromkeys(str(p) for p in data.get("params", ()))),
        )


@dataclass(frozen=True)
class LayerGraph:
    """A DAG of nodes in topological order.

    Attributes:
        nodes: the nodes, every node after all of its inputs.
        model: a label of the model it came from (``"resnet18"``, a file name).
        granularity: ``"module"`` or ``"block"``.
        unused_param_count: parameters of the model that inference never
            reaches (e.g. Inception-v3's auxiliary head in eval mode); they
            are in no node and never uploaded.
        unused_param_bytes: bytes of those parameters.
        params: weight tensor name -> bytes, for the names nodes list in
            their ``params`` (docs/DESIGN.md: memory per device counts each
            distinct parameter of its nodes once).
    """

    nodes: tuple[Node, ...]
    model: str = ""
    granularity: str = "module"
    unused_param_count: int = 0
    unused_param_bytes: int = 0
    params: Mapping[str, int] = field(default_factory=dict)
    _index: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)
    _tables: list[Any] = field(default_factory=list, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index: dict[str, int] = {}
        for i, node in enumerate(self.nodes):
            if node.name in index:
                raise TiercutError(f"graph has two nodes named {node.name!r}; node names must be unique")
            for src in node.inputs:
                if src not in index:
                    raise TiercutError(
                        f"graph node {node.name!r} reads {src!r}, which is not an earlier node; "
                        "nodes must be listed in topological order"
                    )
            if node.is_input and node.inputs:
                raise TiercutError(f"graph input {node.name!r} has inputs; inputs take none")
            for param in node.params:
                if param not in self.params:
                    raise TiercutError(
                        f"graph node {node.name!r} uses parameter {param!r}, which the graph's params table lacks; "
                        "give its bytes in params"
                    )
            index[node.name] = i
        for param, nbytes in self.params.items():
            if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 0:
                raise TiercutError(f"parameter {param!r} has {nbytes!r} bytes; give an integer >= 0")
        self._index.update(index)

    # ----------------------------------------------------------- access
    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __getitem__(self, name: str) -> Node:
        try:
            return self.nodes[self._index[name]]
        except KeyError:
            raise TiercutError(f"graph {self.model!r} has no node {name!r}") from None

    def index(self, name: str) -> int:
        """Position of ``name`` in the topological order."""
        return self._index[name]

    @property
    def names(self) -> list[str]:
        return [n.name for n in self.nodes]

    @property
    def inputs(self) -> list[Node]:
        return [n for n in self.nodes if n.is_input]

    @property
    def outputs(self) -> list[Node]:
        return [n for n in self.nodes if n.is_output]

    def consumers(self) -> dict[str, list[str]]:
        """node name -> names of the nodes that read its output, in order."""
        result: dict[str, list[str]] = {n.name: [] for n in self.nodes}
        for node in self.nodes:
            for src in dict.fromkeys(node.inputs):
                result[src].append(node.name)
        return result

    def edges(self) -> list[tuple[str, str]]:
        """Distinct (producer, consumer) pairs."""
        return [(src, n.name) for n in self.nodes for src in dict.fromkeys(n.inputs)]

    def is_chain(self) -> bool:
        """Every non-input node reads exactly the previous node (one input)."""
        for i, node in enumerate(self.nodes):
            if i == 0:
                if not node.is_input:
                    return False
                continue
            if node.is_input or tuple(dict.fromkeys(node.inputs)) != (self.nodes[i - 1].name,):
                return False
        return True

    # ----------------------------------------------------------- totals
    @property
    def total_flops(self) -> int:
        return sum(n.flops for n in self.nodes)

    @property
    def total_matmul_flops(self) -> int:
        return sum(n.matmul_flops for n in self.nodes)

    @property
    def total_param_bytes(self) -> int:
        return sum(n.param_bytes for n in self.nodes)

    def param_table(self) -> tuple[dict[str, int], dict[str, tuple[str, ...]]]:
        """(parameter name -> bytes, node name -> the parameters it uses).

        A node that lists no ``params`` but has ``param_bytes`` gets a private
        parameter ``"<node>:weights"`` of that size, so graphs that do not
        name their weights keep their per-node memory.
        """
        if self._tables:
            return self._tables[0]
        names: dict[str, int] = {k: int(v) for k, v in self.params.items()}
        uses: dict[str, tuple[str, ...]] = {}
        for node in self.nodes:
            if node.params:
                uses[node.name] = node.params
            elif node.param_bytes > 0:
                private = f"{node.name}:weights"
                names[private] = int(node.param_bytes)
                uses[node.name] = (private,)
            else:
                uses[node.name] = ()
        self._tables.append((names, uses))
        return names, uses

    def weight_bytes(self, node_names: Iterable[str], held: Iterable[str] = ()) -> int:
        """Bytes of the distinct parameters ``node_names`` use, leaving out the parameter names in ``held``."""
        names, uses = self.param_table()
        skip = set(held)
        wanted = {p for n in node_names for p in uses[n]} - skip
        return sum(names[p] for p in wanted)

    @property
    def total_param_count(self) -> int:
        return sum(n.param_count for n in self.nodes)

    def flops_by_op(self) -> dict[str, int]:
        """op kind -> summed FLOPs, largest first."""
        totals: dict[str, int] = {}
        for n in self.nodes:
            totals[n.op] = totals.get(n.op, 0) + n.flops
        return dict(sorted(totals.items(), key=lambda kv: -kv[1]))

    def with_nodes(self, nodes: tuple[Node, ...], **changes: Any) -> LayerGraph:
        """A copy with other nodes (and optionally other header fields)."""
        return replace(self, nodes=tuple(nodes), **changes)

    # ----------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "model": self.model,
            "granularity": self.granularity,
            "unused_param_count": self.unused_param_count,
            "unused_param_bytes": self.unused_param_bytes,
            "params": dict(self.params),
            "nodes": [n.to_dict() for n in self.nodes],
        }

    @classmethod
    @json_contract("layer graph", version=SCHEMA_VERSION, hint=_HINT)
    def from_dict(cls, data: Mapping[str, Any]) -> LayerGraph:
        return cls(
            nodes=tuple(Node.from_dict(n) for n in data["nodes"]),
            model=str(data.get("model", "")),
            granularity=str(data.get("granularity", "module")),
            unused_param_count=int(data.get("unused_param_count", 0)),
            unused_param_bytes=int(data.get("unused_param_bytes", 0)),
            params=_params_table(data.get("params", {})),
        )


def _params_table(data: Any) -> dict[str, int]:
    """The ``params`` object of a graph or problem JSON: name -> bytes (integers >= 0)."""
    if not isinstance(data, Mapping):
        raise TiercutError("the graph's params must be an object of parameter name -> bytes")
    out: dict[str, int] = {}
    for name, nbytes in data.items():
        if isinstance(nbytes, bool) or not isinstance(nbytes, (int, float)) or nbytes < 0 or int(nbytes) != nbytes:
            raise TiercutError(f"parameter {name!r} has {nbytes!r} bytes; give an integer >= 0")
        out[str(name)] = int(nbytes)
    return out
