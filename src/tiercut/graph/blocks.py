"""Block granularity: collapse residual / inception / encoder blocks into one node.

A node's *block* is found by walking its module path from the root. Plain
containers (``Sequential``, ``ModuleList``, ``ModuleDict``), container
subclasses holding a stack of at least three blocks of one type (DenseNet's
``_DenseBlock``) and modules that hold such a stack (ViT's ``Encoder``) are
walked through; the first other module on the path is the block (``layer1.0``
of a ResNet, ``inception3a`` of GoogLeNet, ``features.denseblock1.denselayer3``
of a DenseNet, ``encoder.layers.encoder_layer_0`` of a ViT). Nodes called at
the root (``flatten`` in a ResNet's forward) stay single nodes.

Consecutive nodes (in topological order) of the same block become one node.
Grouping only runs of a topological order keeps the collapsed graph acyclic
(every edge still points forward), so a block split by a node of another
block becomes two nodes (``name`` and ``name#2``) rather than a cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from tiercut.graph.types import LayerGraph, Node

MIN_STACK = 3  # a "stack of one block type" has at least this many (an Inception branch of 2 convs is not one)


def _is_container(module: Any) -> bool:
    import torch.nn as nn

    return type(module) in (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def _repeats(module: Any) -> bool:
    import torch.nn as nn

    if not isinstance(module, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
        return False
    kinds = [type(c) for c in module.children()]
    return len(kinds) >= MIN_STACK and len(set(kinds)) == 1


def _walk_through(module: Any) -> bool:
    """Plain containers, stacks of one block type, and modules holding such a stack."""
    return _is_container(module) or _repeats(module) or any(_repeats(c) for c in module.children())


def block_path(path: str, root: Any) -> str:
    """The block a module path belongs to ('' for the root itself)."""
    if not path:
        return ""
    prefix: list[str] = []
    current = root
    for part in path.split("."):
        child = getattr(current, part, None)
        prefix.append(part)
        if child is None:
            break
        if _walk_through(child):
            current = child
            continue
        break
    return ".".join(prefix)


def _block_op(path: str, root: Any) -> str:
    module = root
    for part in path.split("."):
        module = getattr(module, part, None)
        if module is None:
            return "block"
    return type(module).__name__.lower()


def collapse_runs(graph: LayerGraph, block_key: Mapping[str, str], block_op: Callable[[str], str]) -> LayerGraph:
    """Merge consecutive nodes (topological order) with the same non-empty block key.

    A run of one node keeps it unchanged; a longer run becomes a node named
    after its key (``key#2`` for a later run of the same key) with summed
    FLOPs and weights, the outputs that leave the run as its out bytes, and
    the last leaving node's shape and dtype. Input nodes are never merged.
    Used by the torch path (:func:`collapse_blocks`) and the ONNX path.
    """
    # 1. runs of consecutive nodes with the same block key
    groups: list[list[Node]] = []
    keys: list[str] = []
    for node in graph.nodes:
        key = "" if node.is_input else block_key.get(node.name, "")
        if key and keys and keys[-1] == key:
            groups[-1].append(node)
        else:
            groups.append([node])
            keys.append(key)

    # 2. names: single nodes keep theirs; blocks take their key (#2, #3 for later runs)
    taken = {g[0].name for g in groups if len(g) == 1}
    names: list[str] = []
    runs: dict[str, int] = {}
    for group, key in zip(groups, keys):
        if len(group) == 1:
            names.append(group[0].name)
            continue
        runs[key] = runs.get(key, 0) + 1
        name = key if runs[key] == 1 else f"{key}#{runs[key]}"
        while name in taken:
            name += "_block"
        taken.add(name)
        names.append(name)

    group_of = {node.name: names[i] for i, group in enumerate(groups) for node in group}
    consumers = graph.consumers()

    # 3. the collapsed nodes
    nodes: list[Node] = []
    for name, group, key in zip(names, groups, keys):
        if len(group) == 1:
            node = group[0]
            nodes.append(replace(node, inputs=tuple(dict.fromkeys(group_of[i] for i in node.inputs))))
            continue
        member_names = {n.name for n in group}
        leaving = [n for n in group if n.is_output or any(c not in member_names for c in consumers[n.name])]
        last = leaving[-1] if leaving else group[-1]
        nodes.append(
            Node(
                name=name,
                op=block_op(key),
                inputs=tuple(dict.fromkeys(group_of[i] for n in group for i in n.inputs if i not in member_names)),
                flops=sum(n.flops for n in group),
                matmul_flops=sum(n.matmul_flops for n in group),
                param_bytes=sum(n.param_bytes for n in group),
                param_count=sum(n.param_count for n in group),
                out_bytes=sum(n.out_bytes for n in leaving),
                out_shape=last.out_shape,
                out_dtype=last.out_dtype,
                is_output=any(n.is_output for n in group),
                members=tuple(m for n in group for m in n.members),
                module=key,
                params=tuple(dict.fromkeys(p for n in group for p in n.params)),
            )
        )
    return graph.with_nodes(tuple(nodes), granularity="block")


def collapse_blocks(graph: LayerGraph, owner: dict[str, str], root: Any) -> tuple[LayerGraph, dict[str, str]]:
    """Collapse a module-granularity graph into blocks; returns graph and new owner map."""
    keys = {node.name: block_path(node.module, root) for node in graph.nodes if not node.is_input}
    collapsed = collapse_runs(graph, keys, lambda key: _block_op(key, root))
    holder = {member: node.name for node in collapsed for member in node.members}
    return collapsed, {fx_name: holder[fx_name] for fx_name in owner}
