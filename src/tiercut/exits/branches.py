"""Exit branches on a torch model: a side classifier after chosen layers (BranchyNet).

:func:`add_exits` traces a model with torch.fx, finds the layers named in
``after`` (the layer-graph node names of ``tiercut graph``), and returns a
:class:`MultiExitNet` whose forward returns the logits of every exit, the
side exits in depth order first and the model's own output last. A branch is
kept light, as BranchyNet advises for early branches (Teerapittayanon et al.,
ICPR 2016, Sec. III: a branch must cost little next to the layers it saves):
on a feature map ``adaptive average-pool to 2x2 -> flatten -> linear``; on a
flat feature, one linear layer.

Requires: every ``after`` name is a layer of the model, not its input nor
its output, with a 2-D (batch, features) or 4-D (batch, C, H, W) output,
and the names lie on one path (each an ancestor of the next and of the
output), so "a query that did not exit at exit k" has a meaning.
Ensures: the final logits equal the model's own output for the same
weights (checked on the example input).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from tiercut.errors import TiercutError


def _ancestors(fx_node: Any) -> set[str]:
    seen: set[str] = set()
    stack = list(fx_node.all_input_nodes)
    while stack:
        n = stack.pop()
        if n.name not in seen:
            seen.add(n.name)
            stack.extend(n.all_input_nodes)
    return seen


def _branch(shape: Sequence[int], num_classes: int) -> Any:
    from torch import nn

    if len(shape) == 4:
        channels = int(shape[1])
        return nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(channels * 4, num_classes))
    return nn.Sequential(nn.Linear(int(shape[1]), num_classes))


def _multi_exit_class() -> type:
    from torch import nn

    class MultiExitNet(nn.Module):
        """A backbone returning (features after each exit point..., final logits) and one head per exit.

        ``forward(x)`` returns ``(exit_1 logits, ..., exit_K logits, final logits)``.
        """

        def __init__(self, backbone: Any, heads: Any, after: tuple[str, ...]) -> None:
            super().__init__()
            self.backbone = backbone
            self.heads = heads
            self.after = after

        def forward(self, x: Any) -> tuple[Any, ...]:
            *features, final = self.backbone(x)
            return (*(head(f) for head, f in zip(self.heads, features, strict=True)), final)

    return MultiExitNet


def add_exits(model: Any, example_input: Any, after: Sequence[str], num_classes: int, *, seed: int = 0) -> Any:
    """``model`` with a BranchyNet exit branch after each layer in ``after`` (a :class:`MultiExitNet`).

    The model's weights are shared, not copied; the branches are new, with
    weights drawn from ``seed``.
    """
    import torch
    import torch.fx
    from torch import nn

    from tiercut.graph.capture import trace_module

    if not after:
        raise TiercutError("no exit point given; name at least one layer, e.g. --after relu_1")
    if len(set(after)) != len(after):
        raise TiercutError(f"exit points {', '.join(after)} name a layer twice; give each once")
    model = model.eval()
    gm, _ = trace_module(model, (example_input,))
    nodes = {n.name: n for n in gm.graph.nodes}
    output = next(n for n in gm.graph.nodes if n.op == "output")
    finals = output.all_input_nodes
    if len(finals) != 1:
        raise TiercutError("the model returns several tensors; exits need a classifier with one logits output")
    final = finals[0]
    layers = [n.name for n in gm.graph.nodes if n.op not in ("placeholder", "output", "get_attr")]
    order = {name: i for i, name in enumerate(n.name for n in gm.graph.nodes)}
    for name in after:
        if name not in nodes or nodes[name].op in ("placeholder", "output", "get_attr"):
            shown = ", ".join(layers[:12]) + (", ..." if len(layers) > 12 else "")
            raise TiercutError(f"exit point {name!r} is not a layer of the model; layers are {shown} (see 'tiercut graph')")
        if nodes[name] is final:
            raise TiercutError(f"exit point {name!r} is the model's output; an exit goes after an inner layer")
    points = sorted(after, key=order.__getitem__)
    chain = [*points, final.name]
    for a, b in itertools.pairwise(chain):
        if a not in _ancestors(nodes[b]):
            raise TiercutError(
                f"exit points must lie on one path through the model: {a!r} is not before {b!r}; "
                "choose layers every query passes in order"
            )
    with torch.no_grad():
        shapes = {}
        interp = torch.fx.Interpreter(gm)
        values: dict[str, Any] = {}
        orig_run = interp.run_node

        def run_node(n: Any) -> Any:
            out = orig_run(n)
            values[n.name] = out
            return out

        interp.run_node = run_node  # type: ignore[method-assign]
        expected = interp.run(example_input)
    for name in points:
        value = values[name]
        if not isinstance(value, torch.Tensor) or value.dim() not in (2, 4):
            raise TiercutError(
                f"exit point {name!r} outputs {getattr(value, 'shape', type(value).__name__)}; an exit needs a "
                "(batch, features) or (batch, channels, H, W) tensor"
            )
        shapes[name] = tuple(value.shape)

    graph = gm.graph
    with graph.inserting_before(output):
        new_out = (*(nodes[p] for p in points), final)
    output.args = (tuple(new_out),)
    graph.lint()
    backbone = torch.fx.GraphModule(gm, graph)
    torch.manual_seed(seed)
    heads = nn.ModuleList([_branch(shapes[p], num_classes) for p in points])
    net = _multi_exit_class()(backbone, heads, tuple(points)).eval()
    with torch.no_grad():
        got = net(example_input)[-1]
    if not torch.equal(got, expected):
        raise TiercutError("the model with exits does not reproduce the model's own output; it cannot take exits")
    return net


__all__ = ["add_exits"]
