"""Fused stacks of a torch model, tile programs and stitching.

:func:`fused_stack` reads a run of an fx graph (every layer of a module, or
the named layers of a captured model) into a :class:`FusedStack`: the torch
modules plus the :class:`~tiercut.spatial.stack.StackGeometry` the cost
model uses. :meth:`FusedStack.tile_module` builds, for one output tile, an
ordinary ``torch.nn.Module`` that takes the tile's input region and returns
the tile: every window layer runs with padding 0 on its input crop padded
explicitly where the crop touches the map's border (zeros for convolutions
and average pooling, ``-inf`` for max pooling), so the numbers equal the
whole layer's. Being a plain module, a tile program is exported and
allow-listed by the runtime like any partition.
"""

from __future__ import annotations

import functools
import itertools
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tiercut.errors import TiercutError
from tiercut.spatial.geometry import Region, Window
from tiercut.spatial.stack import POINTWISE, WINDOW, StackGeometry, StackStep

_POINTWISE_MODULES = (
    "BatchNorm2d",
    "ReLU",
    "ReLU6",
    "LeakyReLU",
    "ELU",
    "SELU",
    "CELU",
    "SiLU",
    "GELU",
    "Mish",
    "Sigmoid",
    "Tanh",
    "Hardswish",
    "Hardsigmoid",
    "Hardtanh",
    "PReLU",
    "Identity",
    "Dropout",
    "Dropout2d",
)
_POINTWISE_METHODS = frozenset({"relu", "sigmoid", "tanh", "add", "mul", "sub", "div", "contiguous", "clamp"})


def _pointwise_functions() -> frozenset:
    import torch
    import torch.nn.functional as func

    return frozenset(
        {
            operator.add, operator.iadd, operator.mul, operator.sub, operator.truediv,
            torch.add, torch.mul, torch.sub, torch.relu, torch.sigmoid, torch.tanh, torch.clamp,
            func.relu, func.relu6, func.silu, func.gelu, func.hardswish, func.leaky_relu, func.sigmoid, func.tanh,
        }
    )  # fmt: skip


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        return (int(value[0]), int(value[-1]))
    return (int(value), int(value))


def _conv_window(name: str, module: Any) -> Window:
    kernel, stride, dilation = _pair(module.kernel_size), _pair(module.stride), _pair(module.dilation)
    if module.padding_mode != "zeros":
        raise TiercutError(
            f"convolution {name!r} pads with {module.padding_mode!r}; tiles re-create only zero padding, "
            "so keep it out of the fused stack"
        )
    padding = module.padding
    if padding == "valid":
        padding = (0, 0)
    elif padding == "same":
        totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
        if any(t % 2 for t in totals):
            raise TiercutError(f"convolution {name!r} uses asymmetric 'same' padding; keep it out of the fused stack")
        padding = tuple(t // 2 for t in totals)
    return Window.of(kernel, stride, _pair(padding), dilation)


def _pool_window(name: str, module: Any, kind: str) -> Window:
    if module.ceil_mode:
        raise TiercutError(f"pooling {name!r} uses ceil_mode=True; keep it out of the fused stack")
    if kind == "MaxPool2d":
        if module.return_indices:
            raise TiercutError(f"max pooling {name!r} returns indices; keep it out of the fused stack")
        dilation = _pair(module.dilation)
    else:
        if not module.count_include_pad and _pair(module.padding) != (0, 0):
            raise TiercutError(
                f"average pooling {name!r} excludes padding from its count; a tile cannot tell its border "
                "apart, so keep it out of the fused stack"
            )
        dilation = (1, 1)
    stride = module.stride if module.stride is not None else module.kernel_size
    return Window.of(_pair(module.kernel_size), _pair(stride), _pair(module.padding), dilation)


@dataclass(frozen=True)
class _Op:
    """How a tile computes one step: what to call, on which crops."""

    step: StackStep
    call: str  # "conv", "maxpool", "avgpool", "module", "function", "method"
    target: Any  # module key, function, or method name
    args: tuple[Any, ...]  # stack-value names are _Ref
    kwargs: Mapping[str, Any]


@dataclass(frozen=True)
class _Ref:
    name: str


class FusedStack:
    """A run of spatially local layers of a torch model and its geometry.

    Build it with :func:`fused_stack`. ``modules`` maps each module step's
    key to the model's own module (weights shared, nothing copied).
    """

    def __init__(self, geometry: StackGeometry, ops: Sequence[_Op], modules: Mapping[str, Any], channels: Mapping[str, int]):
        self.geometry = geometry
        self._ops = tuple(ops)
        self._modules = dict(modules)
        self._channels = dict(channels)

    @property
    def names(self) -> list[str]:
        return self.geometry.names

    def output_shape(self, batch: int = 1) -> tuple[int, int, int, int]:
        return (batch, self._channels[self.geometry.output_name], *self.geometry.output_hw)

    def input_channels(self) -> int:
        return self._channels[self.geometry.input_name]

    def tile_module(self, tile: Region) -> TileModule:
        """The program computing ``tile`` of the output from the tile's input region."""
        return TileModule(self.geometry, self._ops, self._modules, tile)

    def run_tiled(self, x: Any, tiles: Sequence[Region]) -> Any:
        """Run every tile on its crop of ``x`` and stitch: equals the whole stack's output."""
        parts = []
        for tile in tiles:
            region = self.geometry.input_region(tile)
            parts.append(self.tile_module(tile)(crop(x, region)))
        return stitch(self.output_shape(x.shape[0]), tiles, parts, dtype=x.dtype)


@functools.cache
def _module_class() -> type:
    import torch

    class _TileModule(torch.nn.Module):
        def __init__(self, geometry: StackGeometry, ops: Sequence[_Op], modules: Mapping[str, Any], tile: Region):
            super().__init__()
            self.tile = tile
            self.geometry = geometry
            self.regions = geometry.regions(tile)
            self.layers = torch.nn.ModuleDict({key.replace(".", "__"): m for key, m in modules.items()})
            self._ops = tuple(ops)

        def forward(self, x):
            import torch.nn.functional as func

            geometry, regions = self.geometry, self.regions
            values = {geometry.input_name: (x, regions[geometry.input_name])}
            for op in self._ops:
                step = op.step
                out = regions.get(step.name)
                if out is None:
                    continue
                if step.kind == WINDOW:
                    src, have = values[step.inputs[0]]
                    need, pads = step.window.input_region(out, *geometry.hw_of(step.inputs[0]))
                    piece = _crop_from(src, have, need)
                    m = self.layers[op.target] if op.call != "function" else None
                    if op.call == "conv":
                        piece = func.pad(piece, pads) if any(pads) else piece
                        y = func.conv2d(piece, m.weight, m.bias, m.stride, 0, m.dilation, m.groups)
                    elif op.call == "maxpool":
                        piece = func.pad(piece, pads, value=float("-inf")) if any(pads) else piece
                        w = step.window
                        y = func.max_pool2d(
                            piece,
                            (w.rows.kernel, w.cols.kernel),
                            (w.rows.stride, w.cols.stride),
                            0,
                            (w.rows.dilation, w.cols.dilation),
                        )
                    else:  # avgpool, count_include_pad: padding counts as zeros
                        piece = func.pad(piece, pads) if any(pads) else piece
                        w = step.window
                        y = func.avg_pool2d(
                            piece,
                            (w.rows.kernel, w.cols.kernel),
                            (w.rows.stride, w.cols.stride),
                            0,
                            divisor_override=m.divisor_override,
                        )
                else:

                    def arg(a, out=out):
                        if isinstance(a, _Ref):
                            src, have = values[a.name]
                            return _crop_from(src, have, out)
                        if isinstance(a, (list, tuple)):
                            return type(a)(arg(b) for b in a)
                        return a

                    args = tuple(arg(a) for a in op.args)
                    kwargs = {k: arg(v) for k, v in op.kwargs.items()}
                    if op.call == "module":
                        y = self.layers[op.target](*args, **kwargs)
                    elif op.call == "method":
                        y = getattr(args[0], op.target)(*args[1:], **kwargs)
                    else:
                        y = op.target(*args, **kwargs)
                values[step.name] = (y, out)
            return values[geometry.output_name][0]

    return _TileModule


def TileModule(geometry: StackGeometry, ops: Sequence[_Op], modules: Mapping[str, Any], tile: Region) -> Any:  # noqa: N802
    """A ``torch.nn.Module`` computing one tile (its class built on first use, so importing needs no torch)."""
    return _module_class()(geometry, ops, modules, tile)


def _crop_from(tensor: Any, have: Region, need: Region) -> Any:
    """Crop ``need`` (map coordinates) out of ``tensor`` holding ``have``."""
    if have == need:
        return tensor
    r0, c0 = need.rows.start - have.rows.start, need.cols.start - have.cols.start
    return tensor[:, :, r0 : r0 + need.rows.size, c0 : c0 + need.cols.size]


def crop(x: Any, region: Region) -> Any:
    """The part of an NCHW map ``x`` inside ``region`` (a copy, contiguous)."""
    return x[:, :, region.rows.start : region.rows.stop, region.cols.start : region.cols.stop].contiguous()


def stitch(shape: Sequence[int], tiles: Sequence[Region], parts: Sequence[Any], dtype: Any = None) -> Any:
    """Place each tile's output at its region of a map of ``shape``.

    Requires the tiles to cover the map exactly once (a partition); a gap
    or an overlap is an error, never a silently wrong map.
    """
    import torch

    if len(tiles) != len(parts):
        raise TiercutError(f"{len(tiles)} tiles but {len(parts)} outputs to stitch")
    check_partition(tiles, int(shape[-2]), int(shape[-1]))
    out = torch.empty(tuple(shape), dtype=dtype if dtype is not None else parts[0].dtype)
    for tile, part in zip(tiles, parts):
        expected = (int(shape[0]), int(shape[1]), tile.rows.size, tile.cols.size)
        if tuple(part.shape) != expected:
            raise TiercutError(f"tile {tile.to_list()} came back with shape {tuple(part.shape)}, expected {expected}")
        out[:, :, tile.rows.start : tile.rows.stop, tile.cols.start : tile.cols.stop] = part
    return out


def check_partition(tiles: Sequence[Region], height: int, width: int) -> None:
    """Raise unless ``tiles`` cover the ``height x width`` map exactly once."""
    whole = Region.whole(height, width)
    if not tiles:
        raise TiercutError("a tiled stage needs at least one tile")
    for tile in tiles:
        if tile.area == 0 or not whole.contains(tile):
            raise TiercutError(f"tile {tile.to_list()} is empty or outside the {height}x{width} map")
    if sum(t.area for t in tiles) != height * width:
        raise TiercutError(f"tiles cover {sum(t.area for t in tiles)} of {height * width} positions; they must partition the map")
    for i, a in enumerate(tiles):
        for b in tiles[i + 1 :]:
            rows = min(a.rows.stop, b.rows.stop) - max(a.rows.start, b.rows.start)
            cols = min(a.cols.stop, b.cols.stop) - max(a.cols.start, b.cols.start)
            if rows > 0 and cols > 0:
                raise TiercutError(f"tiles {a.to_list()} and {b.to_list()} overlap; they must partition the map")


# --------------------------------------------------------------------- reading an fx graph
def _classify(fx_node: Any, modules: Mapping[str, Any], pointwise_functions: frozenset) -> tuple[str, Window | None]:
    name = fx_node.name
    if fx_node.op == "call_module":
        module = modules[fx_node.target]
        kind = type(module).__name__
        if kind == "Conv2d":
            return "conv", _conv_window(name, module)
        if kind in ("MaxPool2d", "AvgPool2d"):
            return ("maxpool" if kind == "MaxPool2d" else "avgpool"), _pool_window(name, module, kind)
        if kind in _POINTWISE_MODULES:
            if kind.startswith(("BatchNorm", "Dropout")) and module.training:
                raise TiercutError(
                    f"layer {name!r} ({kind}) is in training mode; call model.eval() before tiling"
                )
            return "module", None
        raise TiercutError(
            f"layer {name!r} ({kind}) is not spatially local; a fused stack holds only Conv2d, "
            "MaxPool2d/AvgPool2d and pointwise layers"
        )
    if fx_node.op == "call_function":
        import torch

        if fx_node.target in (torch.cat, torch.concat):
            dim = fx_node.kwargs.get("dim", fx_node.args[1] if len(fx_node.args) > 1 else 0)
            if dim not in (1, -3):
                raise TiercutError(f"{name!r} concatenates along dim {dim}; only channel (dim 1) concatenation tiles")
            return "function", None
        if fx_node.target in pointwise_functions:
            return "function", None
        raise TiercutError(f"function {name!r} ({getattr(fx_node.target, '__name__', fx_node.target)}) is not spatially local")
    if fx_node.op == "call_method" and fx_node.target in _POINTWISE_METHODS:
        return "method", None
    raise TiercutError(f"{fx_node.op} {name!r} ({fx_node.target}) cannot be part of a fused stack")


def _as_refs(value: Any, inside: set[str]) -> Any:
    import torch.fx

    if isinstance(value, torch.fx.Node):
        if value.name not in inside:
            raise TiercutError(f"{value.name!r} is read inside the fused stack but computed outside it")
        return _Ref(value.name)
    if isinstance(value, (list, tuple)):
        return type(value)(_as_refs(v, inside) for v in value)
    return value


def _map_shape(fx_node: Any) -> tuple[int, int, int, int]:
    meta = fx_node.meta.get("tensor_meta")
    shape = tuple(getattr(meta, "shape", ()) or ())
    if len(shape) != 4:
        raise TiercutError(f"{fx_node.name!r} makes a {len(shape)}-D value; a fused stack carries NCHW feature maps")
    return tuple(int(s) for s in shape)


def stack_from_fx(graph_module: Any, names: Sequence[str] | None = None) -> FusedStack:
    """Read a fused stack out of a shape-propagated fx ``GraphModule``.

    ``names``: the nodes of the stack (in any order); all call nodes when
    absent. Requires exactly one value entering from outside (a 4-D map)
    and exactly one leaving (the last node in topological order); raises a
    :class:`TiercutError` naming the offending layer otherwise.
    """
    modules = dict(graph_module.named_modules())
    nodes = [n for n in graph_module.graph.nodes if n.op not in ("placeholder", "output", "get_attr")]
    if names is not None:
        wanted = set(names)
        unknown = wanted - {n.name for n in nodes}
        if unknown:
            raise TiercutError(f"layers {sorted(unknown)} are not in the model; name layers of its graph")
        nodes = [n for n in nodes if n.name in wanted]
    if not nodes:
        raise TiercutError("a fused stack needs at least one layer")
    inside = {n.name for n in nodes}
    entering = {a.name: a for n in nodes for a in n.all_input_nodes if a.name not in inside}
    if len(entering) != 1:
        raise TiercutError(f"a fused stack reads exactly one map from outside; these layers read {sorted(entering)}")
    (input_node,) = entering.values()
    last = nodes[-1]
    for n in nodes[:-1]:
        if any(u.name not in inside for u in n.users):
            raise TiercutError(
                f"layer {n.name!r} is read outside the fused stack; a stack hands on only its last layer's output"
            )
    functions = _pointwise_functions()
    in_shape = _map_shape(input_node)
    channels = {input_node.name: in_shape[1]}
    steps, ops, used = [], [], {}
    for n in nodes:
        call, window = _classify(n, modules, functions)
        shape = _map_shape(n)
        channels[n.name] = shape[1]
        refs = [a.name for a in n.all_input_nodes]
        kind = WINDOW if window is not None else POINTWISE
        if kind == WINDOW and refs != [n.args[0].name]:
            raise TiercutError(f"window layer {n.name!r} must read exactly one feature map")
        step = StackStep(n.name, kind, tuple(refs), (shape[2], shape[3]), window)
        target = n.target
        if n.op == "call_module":
            used[str(n.target)] = modules[n.target]
            target = str(n.target).replace(".", "__")
        known = inside | {input_node.name}
        kwargs = {k: _as_refs(v, known) for k, v in n.kwargs.items()}
        ops.append(_Op(step, call, target, _as_refs(tuple(n.args), known), kwargs))
        steps.append(step)
    geometry = StackGeometry(input_node.name, (in_shape[2], in_shape[3]), tuple(steps))
    if geometry.output_name != last.name:
        raise TiercutError("the fused stack's output must be its last layer")
    return FusedStack(geometry, ops, used, channels)


def fused_stack(module: Any, example_input: Any) -> FusedStack:
    """Every layer of ``module`` (traced with torch.fx) as one fused stack."""
    import torch.fx
    from torch.fx.passes.shape_prop import ShapeProp

    try:
        gm = torch.fx.symbolic_trace(module)
    except Exception as exc:
        raise TiercutError(
            f"{type(module).__name__} cannot be traced by torch.fx ({exc}); give a traceable conv/pool stack"
        ) from None
    ShapeProp(gm).propagate(example_input)
    return stack_from_fx(gm)


def find_stacks(graph_module: Any, *, min_windows: int = 1) -> list[FusedStack]:
    """The maximal fused stacks of a shape-propagated fx graph, in topological order.

    Walks the graph's call nodes in order and grows a stack while the next
    run between two cut points (where one value is live) holds only
    spatially local layers on 4-D maps; a stack with fewer than
    ``min_windows`` window layers (convolutions, pooling) is dropped.
    """
    nodes = [n for n in graph_module.graph.nodes if n.op not in ("output", "get_attr")]
    position = {n.name: i for i, n in enumerate(nodes)}
    last_use = {n.name: max([position[n.name], *(position[u.name] for u in n.users if u.name in position)]) for n in nodes}
    # a node ends a run if no earlier value is read after it; graph outputs read by 'output' stay live
    reach, cuts = -1, []
    for i, n in enumerate(nodes):
        if reach <= i:
            cuts.append(i)
        reach = max(reach, last_use[n.name])
        if any(u.op == "output" for u in n.users):
            reach = max(reach, len(nodes))
    modules = dict(graph_module.named_modules())
    functions = _pointwise_functions()

    def local(n: Any) -> bool:
        if n.op in ("placeholder",):
            return False
        try:
            _classify(n, modules, functions)
            _map_shape(n)
        except TiercutError:
            return False
        return True

    stacks: list[FusedStack] = []
    run: list[Any] = []
    for a, b in itertools.pairwise(cuts):
        piece = nodes[a + 1 : b + 1]
        if all(local(n) for n in piece) and (run or _map_ok(nodes[a])):
            run.extend(piece)
            continue
        _close(graph_module, run, stacks, min_windows)
        run = []
    _close(graph_module, run, stacks, min_windows)
    return stacks


def _map_ok(n: Any) -> bool:
    try:
        _map_shape(n)
    except TiercutError:
        return False
    return True


def _close(graph_module: Any, run: list[Any], stacks: list[FusedStack], min_windows: int) -> None:
    if not run:
        return
    try:
        stack = stack_from_fx(graph_module, [n.name for n in run])
    except TiercutError:
        return
    if sum(1 for s in stack.geometry.steps if s.kind == WINDOW) >= min_windows:
        stacks.append(stack)


def stacks_of_captured(captured: Any, *, min_windows: int = 1) -> list[StackGeometry]:
    """The geometry of every maximal fused stack of a captured model (module granularity).

    Its layer names are the layer graph's node names, so the stacks attach
    to a problem built from ``captured.graph``
    (:meth:`tiercut.spatial.problem.SpatialProblem.of`). A block-granularity
    graph names blocks, not layers: build the stacks from a module-granularity capture.
    """
    from torch.fx.passes.shape_prop import ShapeProp

    if captured.graph.granularity != "module":
        raise TiercutError("spatial stacks need a module-granularity graph; capture with --granularity module")
    gm = captured.graph_module
    if not all("tensor_meta" in n.meta for n in gm.graph.nodes if n.op != "output"):
        ShapeProp(gm).propagate(*captured.example_inputs)
    names = {n.name for n in captured.graph}
    return [s.geometry for s in find_stacks(gm, min_windows=min_windows) if set(s.names) <= names]


def attach_stacks(problem: Any, model: Any, input_shape: tuple[int, ...] | None = None, *, seed: int = 0) -> Any:
    """``problem`` (built from ``model``'s module-granularity graph) with the model's fused stacks attached.

    ``model`` is what ``tiercut plan`` takes: a zoo name, ``package.module:factory``
    or a ``torch.nn.Module``; an ONNX file or a layer-graph JSON has no torch
    layers to tile and is refused.
    """
    from tiercut.graph import capture_model, is_onnx_path
    from tiercut.graph.models import is_graph_json_path
    from tiercut.spatial.problem import SpatialProblem

    if is_onnx_path(model) or is_graph_json_path(model):
        raise TiercutError(
            f"--spatial auto tiles torch layers; {model} is not a torch model (use a zoo name or package.module:factory)"
        )
    if problem.graph.granularity != "module":
        raise TiercutError("--spatial auto needs --granularity module (tiles are cut inside single layers' maps)")
    captured = capture_model(model, input_shape, granularity="module", seed=seed)
    return SpatialProblem.of(problem, tuple(stacks_of_captured(captured)))
