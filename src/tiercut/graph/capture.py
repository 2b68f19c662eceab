"""Capture a PyTorch model as an fx graph and measure every node once.

Capture order (documented fallback):

1. ``torch.fx.symbolic_trace`` (module granularity: one node per leaf
   module or function call). The traced module must reproduce the model's
   output on the example input; otherwise, or if tracing fails,
2. ``torch.export.export(model, inputs, strict=False).module()``: an fx graph
   of ATen ops (``conv2d``, ``linear``, ``add``...) that handles data-dependent
   Python the symbolic tracer cannot.
3. If both fail, a :class:`TiercutError` names the module (innermost first)
   where symbolic tracing stopped and the export error's first line.

Each node is then executed once, in order, on the example input by an fx
``Interpreter`` that records its output's bytes, shape and dtype and its
FLOPs (:mod:`tiercut.graph.flops`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tiercut.errors import TiercutError
from tiercut.graph.flops import formula_flops
from tiercut.graph.types import INPUT_OP, LayerGraph, Node

_INT_BYTES = 8  # a Python int/float crossing devices is sent as one 64-bit value


@dataclass
class CapturedModel:
    """A model captured as an fx graph, with its layer graph.

    Attributes:
        graph_module: the fx ``GraphModule`` whose nodes the layer graph names.
        example_inputs: the inputs the graph was measured on.
        graph: the layer graph (module or block granularity).
        method: ``"fx"`` (symbolic trace) or ``"export"`` (torch.export fallback).
        owner: fx node name -> name of the layer-graph node that holds it
            (every fx node but the output; ``get_attr`` nodes belong to
            their first consumer).
    """

    graph_module: Any
    example_inputs: tuple[Any, ...]
    graph: LayerGraph
    method: str
    owner: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------- which modules are nodes
#: modules opened by default: a whole ``nn.TransformerEncoder`` as one node leaves a planner nothing to
#: cut between its layers, so its layers are the nodes (``--leaf-module nn.TransformerEncoder`` keeps it whole)
DEFAULT_OPEN_MODULES: tuple[str, ...] = ("nn.TransformerEncoder",)


def module_type_names(cls: type) -> set[str]:
    """The names a user may write for a module class: ``Name``, ``pkg.mod.Name`` and, for torch.nn, ``nn.Name``."""
    names = {cls.__name__, cls.__qualname__, f"{cls.__module__}.{cls.__qualname__}"}
    if cls.__module__.startswith("torch.nn."):
        names |= {f"nn.{cls.__name__}", f"torch.nn.{cls.__name__}"}
    return names


@dataclass(frozen=True)
class ModuleTypes:
    """Which module types are kept as one node and which are traced into.

    Attributes:
        leaf: types kept as one node (``--leaf-module``), on top of torch.fx's
            default leaves (every ``torch.nn`` module but containers).
        open: types traced into (``--open-module``), torch.nn ones included.
        default_open: types opened unless named in ``leaf`` (:data:`DEFAULT_OPEN_MODULES`).

    A type matches a module whose class, or any base class, has that name
    (:func:`module_type_names`). A name given in both ``leaf`` and ``open``
    is a mistake; a name no module of the model has is one too
    (:meth:`check`), so a typo is not silently ignored.
    """

    leaf: tuple[str, ...] = ()
    open: tuple[str, ...] = ()
    default_open: tuple[str, ...] = DEFAULT_OPEN_MODULES

    def _matches(self, module: Any, names: tuple[str, ...]) -> bool:
        return bool(names) and any(module_type_names(cls) & set(names) for cls in type(module).__mro__[:-1])

    def is_leaf(self, module: Any) -> bool | None:
        """True/False when these settings decide; None leaves it to torch.fx's default."""
        if self._matches(module, self.leaf):
            return True
        if self._matches(module, self.open) or self._matches(module, self.default_open):
            return False
        return None

    def check(self, model: Any) -> None:
        """Raise a one-line error for a type named twice or matching no module of ``model``."""
        both = set(self.leaf) & set(self.open)
        if both:
            raise TiercutError(f"module type {sorted(both)[0]!r} is given as both a leaf and open; choose one")
        present: set[str] = set()
        for module in model.modules():
            for cls in type(module).__mro__[:-1]:
                present |= module_type_names(cls)
        for name in (*self.leaf, *self.open):
            if name not in present:
                kinds = sorted({type(m).__name__ for m in model.modules()})
                raise TiercutError(
                    f"the model has no module of type {name!r}; its module types are {', '.join(kinds[:20])}"
                    f"{', ...' if len(kinds) > 20 else ''}"
                )


def _transformer_encoder_forward(encoder: Any, src: Any, mask: Any = None, src_key_padding_mask: Any = None,
                                 is_causal: bool | None = None) -> Any:
    """``nn.TransformerEncoder.forward`` without its data-dependent fast-path checks (the layers check masks)."""
    output = src
    for layer in encoder.layers:
        output = layer(output, src_mask=mask, src_key_padding_mask=src_key_padding_mask, is_causal=bool(is_causal))
    return encoder.norm(output) if encoder.norm is not None else output


def _transformer_encoder_layer_forward(layer: Any, src: Any, src_mask: Any = None, src_key_padding_mask: Any = None,
                                       is_causal: bool = False) -> Any:
    """``nn.TransformerEncoderLayer.forward``'s reference path (self-attention block, feed-forward block)."""

    def attention(x: Any) -> Any:
        out = layer.self_attn(x, x, x, attn_mask=src_mask, key_padding_mask=src_key_padding_mask,
                              need_weights=False, is_causal=is_causal)[0]
        return layer.dropout1(out)

    def feed_forward(x: Any) -> Any:
        return layer.dropout2(layer.linear2(layer.dropout(layer.activation(layer.linear1(x)))))

    x = src
    if layer.norm_first:
        x = x + attention(layer.norm1(x))
        return x + feed_forward(layer.norm2(x))
    x = layer.norm1(x + attention(x))
    return layer.norm2(x + feed_forward(x))


def _traceable_forward(module: Any) -> Any:
    """A forward torch.fx can trace for torch.nn modules whose own forward branches on tensor properties."""
    import functools

    import torch.nn as nn

    openers = {
        nn.TransformerEncoder: _transformer_encoder_forward,
        nn.TransformerEncoderLayer: _transformer_encoder_layer_forward,
    }
    opener = openers.get(type(module))
    return functools.partial(opener, module) if opener is not None else None


# --------------------------------------------------------------------- tracing
def _path_tracer_class() -> type:
    import torch.fx

    class PathTracer(torch.fx.Tracer):
        """Symbolic tracer that remembers in which module tracing failed and honours :class:`ModuleTypes`."""

        def __init__(self, module_types: ModuleTypes | None = None) -> None:
            super().__init__()
            self.module_types = module_types or ModuleTypes()

        def is_leaf_module(self, m, module_qualified_name):
            decided = self.module_types.is_leaf(m)
            return super().is_leaf_module(m, module_qualified_name) if decided is None else decided

        def call_module(self, m, forward, args, kwargs):
            if self.module_types.is_leaf(m) is False:
                forward = _traceable_forward(m) or forward
            try:
                return super().call_module(m, forward, args, kwargs)
            except Exception as exc:
                if not hasattr(exc, "tiercut_module_path"):
                    try:
                        exc.tiercut_module_path = self.path_of_module(m) or type(m).__name__
                    except Exception:
                        exc.tiercut_module_path = type(m).__name__
                raise

    return PathTracer


def _outputs_equal(a: Any, b: Any) -> bool:
    import torch

    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and torch.allclose(a, b, atol=1e-5, rtol=1e-4)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_outputs_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_outputs_equal(a[k], b[k]) for k in a)
    if hasattr(a, "_asdict") and hasattr(b, "_asdict"):  # namedtuples such as GoogLeNetOutputs
        return _outputs_equal(tuple(a), tuple(b))
    return a == b


def _symbolic_trace(module: Any, example_inputs: tuple[Any, ...], expected: Any, module_types: ModuleTypes) -> Any:
    import torch.fx

    tracer = _path_tracer_class()(module_types)
    graph = tracer.trace(module)
    name = getattr(module, "__class__", type(module)).__name__
    gm = torch.fx.GraphModule(tracer.root, graph, name)
    got = gm(*example_inputs)
    if not _outputs_equal(got, expected):
        raise TiercutError(f"the symbolic trace of {name} does not reproduce its output")
    return gm


def _export(module: Any, example_inputs: tuple[Any, ...], expected: Any) -> Any:
    import torch

    exported = torch.export.export(module, example_inputs, strict=False)
    gm = exported.module()
    got = gm(*example_inputs)
    if not _outputs_equal(got, expected):
        raise TiercutError("the torch.export graph does not reproduce the model's output")
    return gm


def trace_module(module: Any, example_inputs: tuple[Any, ...], module_types: ModuleTypes | None = None) -> tuple[Any, str]:
    """The fx GraphModule of ``module`` and the method that made it.

    ``module_types`` applies to the symbolic trace; the torch.export fallback
    sees ATen ops and opens every module (so ``open`` holds there as well);
    :func:`capture` then merges each ``leaf`` module's ops back into one
    node (:func:`_keep_leaves_whole`).
    """
    import torch

    module_types = module_types or ModuleTypes()
    module_types.check(module)
    name = type(module).__name__
    try:
        with torch.no_grad():
            expected = module(*example_inputs)
    except Exception as exc:
        raise TiercutError(
            f"model {name} fails on the example input of shape "
            f"{[tuple(getattr(x, 'shape', ())) for x in example_inputs]}: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}; check --input-shape"
        ) from None
    try:
        with torch.no_grad():
            return _symbolic_trace(module, example_inputs, expected, module_types), "fx"
    except Exception as fx_exc:
        fx_error = fx_exc
    try:
        with torch.no_grad():
            return _export(module, example_inputs, expected), "export"
    except Exception as export_exc:
        where = getattr(fx_error, "tiercut_module_path", name)
        fx_line = (str(fx_error).strip().splitlines() or [type(fx_error).__name__])[0]
        export_line = (str(export_exc).strip().splitlines() or [type(export_exc).__name__])[0]
        raise TiercutError(
            f"cannot capture {name}: torch.fx stopped in module {where!r} ({fx_line[:160]}) and "
            f"torch.export failed ({export_line[:160]}); make that module traceable or keep it whole with "
            f"--leaf-module {type(_module_at(module, where)).__name__}"
        ) from None


def _module_at(root: Any, path: str) -> Any:
    try:
        return root.get_submodule(path) if path and path != type(root).__name__ else root
    except AttributeError:
        return root


# --------------------------------------------------------------------- naming
def op_kind(fx_node: Any, modules: dict[str, Any]) -> str:
    """docs/DESIGN.md's op kind: lower-case module class or function name."""
    if fx_node.op == "placeholder":
        return INPUT_OP
    if fx_node.op == "call_module":
        return type(modules[fx_node.target]).__name__.lower()
    if fx_node.op == "call_method":
        return str(fx_node.target).lower()
    if fx_node.op == "get_attr":
        return "get_attr"
    target = fx_node.target
    schema = getattr(target, "_schema", None)
    if schema is not None:  # an ATen overload from torch.export: aten::conv2d -> conv2d
        return schema.name.split("::")[-1].lower()
    name = getattr(target, "__name__", str(target))
    return name.lstrip("_").lower() if name not in ("_assert",) else "assert"


def module_path(fx_node: Any) -> str:
    """Qualified path of the module a node was called from ('' at the root)."""
    if fx_node.op == "call_module":
        return str(fx_node.target)
    stack = fx_node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    path = list(stack.values())[-1][0]
    # torch.export records paths like "L['self'].layer1" or "layer1"
    return str(path).replace("L['self'].", "").replace("L__self__.", "")


# --------------------------------------------------------------------- measurement
def _value_bytes(value: Any) -> int:
    import torch

    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (tuple, list)):
        return sum(_value_bytes(v) for v in value)
    if isinstance(value, dict):
        return sum(_value_bytes(v) for v in value.values())
    if isinstance(value, (bool, type(None))):
        return 0
    if isinstance(value, (int, float)):
        return _INT_BYTES
    return 0


def _value_shape_dtype(value: Any) -> tuple[tuple[int, ...], str]:
    import torch

    if isinstance(value, torch.Tensor):
        return tuple(value.shape), str(value.dtype).replace("torch.", "")
    if isinstance(value, (tuple, list)):
        for v in value:
            if isinstance(v, torch.Tensor):
                return _value_shape_dtype(v)
        if isinstance(value, torch.Size):
            return (len(value),), "int64"
        return (), type(value).__name__
    if isinstance(value, bool):
        return (), "bool"
    if isinstance(value, int):
        return (), "int64"
    if isinstance(value, float):
        return (), "float64"
    return (), type(value).__name__.lower()


def _extra_flop_formulas() -> dict[Any, Any]:
    """Formulas for ATen ops the flop counter leaves out (CPU fused attention)."""
    import torch
    from torch.utils.flop_counter import sdpa_flop_count

    def cpu_flash_attention(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
        return sdpa_flop_count(query_shape, key_shape, value_shape)

    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    return {op: cpu_flash_attention} if op is not None else {}


@dataclass
class _Measured:
    out_bytes: int
    out_shape: tuple[int, ...]
    out_dtype: str
    flops: int
    matmul_flops: int


def _measure(gm: Any, example_inputs: tuple[Any, ...]) -> dict[str, _Measured]:
    """Run every node once, recording its output and FLOPs."""
    import torch
    import torch.fx
    from torch.utils.flop_counter import FlopCounterMode

    modules = dict(gm.named_modules())
    measured: dict[str, _Measured] = {}

    class Recorder(torch.fx.Interpreter):
        def run_node(self, n):
            if n.op in ("placeholder", "get_attr", "output"):
                out = super().run_node(n)
                counted = matmul = 0
            else:
                counter = FlopCounterMode(display=False, custom_mapping=_extra_flop_formulas())
                with counter:
                    out = super().run_node(n)
                counted = matmul = counter.get_total_flops()
                if counted == 0:
                    args, _ = self.fetch_args_kwargs_from_env(n)
                    module = modules.get(n.target) if n.op == "call_module" else None
                    counted = formula_flops(op_kind(n, modules), tuple(args), out, module)
            shape, dtype = _value_shape_dtype(out)
            measured[n.name] = _Measured(_value_bytes(out), shape, dtype, int(counted), int(matmul))
            return out

    # Grad mode stays on so nn.MultiheadAttention takes its decomposed path,
    # whose matmuls the flop counter sees (the fused inference kernel hides them).
    with torch.enable_grad():
        Recorder(gm).run(*example_inputs)
    return measured


# --------------------------------------------------------------------- parameters
def _tensors_of(fx_node: Any, gm: Any, modules: dict[str, Any]) -> list[tuple[str, Any]]:
    """Weights (parameters and buffers) a node needs where it runs, with their qualified names here."""
    if fx_node.op == "call_module":
        mod = modules[fx_node.target]
        prefix = f"{fx_node.target}."
        return [(prefix + n, t) for n, t in mod.named_parameters(remove_duplicate=False)] + [
            (prefix + n, t) for n, t in mod.named_buffers(remove_duplicate=False)
        ]
    if fx_node.op == "get_attr":
        value = gm
        for part in str(fx_node.target).split("."):
            value = getattr(value, part)
        return [(str(fx_node.target), value)] if hasattr(value, "numel") else []
    return []


def _canonical_names(gm: Any) -> dict[int, str]:
    """id(tensor) -> the first name the model gives it (a weight shared by two modules has one name)."""
    names: dict[int, str] = {}
    for name, tensor in [*gm.named_parameters(remove_duplicate=False), *gm.named_buffers(remove_duplicate=False)]:
        names.setdefault(id(tensor), name)
    return names


def _param_totals(module: Any) -> tuple[int, int]:
    """(parameter elements, bytes of parameters + buffers) of a module, shared counted once."""
    import torch

    count = 0
    nbytes = 0
    seen: set[int] = set()
    for tensor in list(module.parameters()) + list(module.buffers()):
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        nbytes += tensor.numel() * tensor.element_size()
        if isinstance(tensor, torch.nn.Parameter):
            count += tensor.numel()
    return count, nbytes


# --------------------------------------------------------------------- graph
def _module_graph(gm: Any, measured: dict[str, _Measured], label: str, original: Any) -> tuple[LayerGraph, dict[str, str]]:
    """The module-granularity layer graph and the fx-node -> node owner map."""
    import torch

    modules = dict(gm.named_modules())
    fx_nodes = list(gm.graph.nodes)
    output_node = next(n for n in fx_nodes if n.op == "output")
    output_names = {a.name for a in output_node.all_input_nodes}

    # get_attr nodes belong to their first consumer (tensor constants, class tokens, export weights).
    owner: dict[str, str] = {}
    for n in fx_nodes:
        if n.op == "output":
            continue
        if n.op == "get_attr":
            users = [u for u in n.users if u.op != "output"]
            owner[n.name] = users[0].name if users else n.name
        else:
            owner[n.name] = n.name

    weights: dict[str, list[tuple[str, Any]]] = {}
    for n in fx_nodes:
        if n.op not in ("output", "placeholder"):
            weights.setdefault(owner[n.name], []).extend(_tensors_of(n, gm, modules))

    canonical = _canonical_names(gm)
    table: dict[str, int] = {}
    seen: set[int] = set()
    nodes: list[Node] = []
    for n in fx_nodes:
        if n.op in ("output",) or (n.op == "get_attr" and owner[n.name] != n.name):
            continue
        param_bytes = 0
        param_count = 0
        params: dict[str, None] = {}
        for local_name, tensor in weights.get(n.name, []):
            name = canonical.get(id(tensor), local_name)
            nbytes = tensor.numel() * tensor.element_size()
            table.setdefault(name, nbytes)
            params[name] = None
            if id(tensor) in seen:
                continue
            seen.add(id(tensor))
            param_bytes += nbytes
            if isinstance(tensor, torch.nn.Parameter):
                param_count += tensor.numel()
        m = measured[n.name]
        inputs = tuple(dict.fromkeys(owner[a.name] for a in n.all_input_nodes if owner[a.name] != n.name))
        nodes.append(
            Node(
                name=n.name,
                op=op_kind(n, modules),
                inputs=inputs,
                flops=m.flops,
                matmul_flops=m.matmul_flops,
                param_bytes=param_bytes,
                param_count=param_count,
                out_bytes=m.out_bytes,
                out_shape=m.out_shape,
                out_dtype=m.out_dtype,
                is_output=n.name in output_names,
                members=tuple(k for k, v in owner.items() if v == n.name),
                module=module_path(n) if n.op != "placeholder" else "",
                params=tuple(params),
            )
        )
    total_count, total_bytes = _param_totals(original)
    graph = LayerGraph(
        nodes=tuple(nodes),
        model=label,
        granularity="module",
        unused_param_count=max(total_count - sum(x.param_count for x in nodes), 0),
        unused_param_bytes=max(total_bytes - sum(x.param_bytes for x in nodes), 0),
        params=table,
    )
    return graph, owner


def _keep_leaves_whole(
    graph: LayerGraph, owner: dict[str, str], root: Any, module_types: ModuleTypes
) -> tuple[LayerGraph, dict[str, str]]:
    """``--leaf-module`` on a torch.export graph: the ops each instance of a leaf type ran become one node.

    torch.export records, on every ATen op, the path of the module that called
    it (``nn_module_stack``); an op under an instance of a ``leaf`` type (the
    outermost such instance) gets that instance's path as its key, and each run
    of consecutive ops with the same key is merged into one node named after
    the instance, of op kind its class name (:func:`~tiercut.graph.blocks.collapse_runs`),
    as the symbolic trace would have kept it.
    """
    from tiercut.graph.blocks import collapse_runs

    keys: dict[str, str] = {}
    for node in graph.nodes:
        if node.is_input or not node.module:
            continue
        parts = node.module.split(".")
        for depth in range(1, len(parts) + 1):
            path = ".".join(parts[:depth])
            try:
                module = root.get_submodule(path)
            except AttributeError:
                break
            if module_types._matches(module, module_types.leaf):
                keys[node.name] = path
                break
    if not keys:
        return graph, owner
    collapsed = collapse_runs(graph, keys, lambda path: type(root.get_submodule(path)).__name__.lower())
    collapsed = collapsed.with_nodes(collapsed.nodes, granularity=graph.granularity)
    holder = {member: node.name for node in collapsed for member in node.members}
    return collapsed, {fx_name: holder[fx_name] for fx_name in owner}


def capture(
    module: Any,
    example_inputs: tuple[Any, ...],
    label: str = "",
    granularity: str = "module",
    module_types: ModuleTypes | None = None,
) -> CapturedModel:
    """Trace ``module`` on ``example_inputs`` and build its layer graph.

    Requires the model to run on the example inputs. Ensures the returned
    ``graph_module`` reproduces the model's output and every fx node but the
    output belongs to exactly one layer-graph node.
    """
    from tiercut.graph.blocks import collapse_blocks

    if granularity not in ("module", "block"):
        raise TiercutError(f"granularity {granularity!r} is not known; use 'module' or 'block'")
    example_inputs = tuple(example_inputs)
    gm, method = trace_module(module, example_inputs, module_types)
    measured = _measure(gm, example_inputs)
    graph, owner = _module_graph(gm, measured, label or type(module).__name__.lower(), module)
    if method == "export" and module_types is not None and module_types.leaf:
        graph, owner = _keep_leaves_whole(graph, owner, module, module_types)
    if granularity == "block":
        graph, owner = collapse_blocks(graph, owner, module)
    return CapturedModel(graph_module=gm, example_inputs=example_inputs, graph=graph, method=method, owner=owner)


__all__ = [
    "DEFAULT_OPEN_MODULES",
    "CapturedModel",
    "ModuleTypes",
    "capture",
    "module_path",
    "module_type_names",
    "op_kind",
    "trace_module",
]
