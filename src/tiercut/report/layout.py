"""A layered drawing of a layer graph, left to right (Sugiyama's framework).

The steps of Sugiyama, Tagawa and Toda, "Methods for visual understanding of
hierarchical system structures" (IEEE SMC 1981), in their plainest form:

1. layering: a node's layer is its longest path from a graph input;
2. an edge spanning a few layers gets a dummy point on each layer it
   crosses, so that the ordering step sees it; an edge spanning more than
   ``max_dummy_span`` layers (DenseNet's concatenations, long skips) is drawn
   as an arc above or below the band instead;
3. ordering: barycentric sweeps down and up the layers, keeping the order
   with the fewest crossings;
4. coordinates: each layer's items move towards the mean position of their
   neighbours in the previous layer (then the next), and the closest
   positions that keep the order and the minimum gaps are found exactly by
   isotonic regression (pool adjacent violators).

The result holds plain numbers: where each node's box is centred and the
points each edge passes through, ready for :mod:`tiercut.report.svg`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise

from tiercut.graph.types import LayerGraph


@dataclass(frozen=True)
class EdgePath:
    """How one edge ``src -> dst`` is drawn.

    Attributes:
        src, dst: node names.
        points: the points the edge passes through, from the right side of
            ``src``'s box to the left side of ``dst``'s box (straight runs
            through the layers it crosses, curves between layers).
        arc: True for a long edge drawn as one arc; ``points`` are then the
            start, the two control points and the end of a cubic Bézier curve.
    """

    src: str
    dst: str
    points: tuple[tuple[float, float], ...]
    arc: bool = False


@dataclass(frozen=True)
class GraphLayout:
    """Positions of a layered drawing (pixels, y down).

    Attributes:
        positions: node name -> centre of its box.
        layers: node name -> its layer (0 for graph inputs).
        edges: one :class:`EdgePath` per distinct edge, in the graph's order.
        node_width, node_height: the size of every node box.
        width, height: the size of the whole drawing, margins included.
        crossings: edge crossings between adjacent layers of the chosen order
            (arcs not counted).
    """

    positions: dict[str, tuple[float, float]]
    layers: dict[str, int]
    edges: tuple[EdgePath, ...]
    node_width: float
    node_height: float
    width: float
    height: float
    crossings: int

    @property
    def layer_count(self) -> int:
        return 1 + max(self.layers.values(), default=-1)


def longest_path_layers(graph: LayerGraph) -> dict[str, int]:
    """node -> length of its longest path from a graph input (the graph is in topological order)."""
    layer: dict[str, int] = {}
    for node in graph:
        layer[node.name] = max((layer[src] + 1 for src in node.inputs), default=0)
    return layer


def _crossings(upper: Sequence[int], lower_pos: dict[int, int], down: dict[int, list[int]]) -> int:
    """Crossings of the edges between one layer (in order) and the next (positions given)."""
    ends = [lower_pos[v] for u in upper for v in sorted(down.get(u, ()), key=lower_pos.__getitem__)]
    # inversions of ``ends`` by merge sort
    count = 0

    def sort(values: list[int]) -> list[int]:
        nonlocal count
        if len(values) <= 1:
            return values
        mid = len(values) // 2
        left, right = sort(values[:mid]), sort(values[mid:])
        merged: list[int] = []
        i = j = 0
        while i < len(left) and j < len(right):
            if right[j] < left[i]:
                merged.append(right[j])
                count += len(left) - i
                j += 1
            else:
                merged.append(left[i])
                i += 1
        merged.extend(left[i:])
        merged.extend(right[j:])
        return merged

    sort(ends)
    return count


def _isotonic(targets: Sequence[float], weights: Sequence[float], gaps: Sequence[float]) -> list[float]:
    """The positions closest (weighted least squares) to ``targets`` with ``y[i+1] - y[i] >= gaps[i]``.

    Substituting ``z[i] = y[i] - offset[i]`` (offset = cumulative gaps) turns the
    constraints into ``z`` non-decreasing: weighted isotonic regression, solved
    exactly by pool adjacent violators.
    """
    offsets = [0.0]
    for gap in gaps:
        offsets.append(offsets[-1] + gap)
    blocks: list[list[float]] = []  # [mean, weight, count]
    for target, weight, offset in zip(targets, weights, offsets):
        blocks.append([target - offset, weight, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            mean_b, w_b, n_b = blocks.pop()
            mean_a, w_a, n_a = blocks[-1]
            total = w_a + w_b
            blocks[-1] = [(mean_a * w_a + mean_b * w_b) / total, total, n_a + n_b]
    z: list[float] = []
    for mean, _, count in blocks:
        z.extend([mean] * int(count))
    return [zi + offset for zi, offset in zip(z, offsets)]


def layered_layout(
    graph: LayerGraph,
    *,
    node_width: float = 132.0,
    node_height: float = 34.0,
    layer_gap: float = 46.0,
    row_gap: float = 16.0,
    dummy_gap: float = 8.0,
    max_dummy_span: int = 6,
    sweeps: int = 8,
    margin: float = 24.0,
) -> GraphLayout:
    """Lay ``graph`` out left to right in layers (see the module docstring).

    Args:
        graph: the layer graph.
        node_width, node_height: size of a node's box (px).
        layer_gap: horizontal space between two layers' boxes.
        row_gap: vertical space between two boxes of one layer.
        dummy_gap: vertical space kept around an edge passing through a layer.
        max_dummy_span: edges spanning more layers than this are arcs.
        sweeps: down-and-up ordering sweeps.
        margin: empty border around the drawing.
    """
    layer_of = longest_path_layers(graph)
    n_layers = 1 + max(layer_of.values(), default=-1)
    items = _items_with_dummies(graph, layer_of, max_dummy_span)
    layers, crossings = _order_layers(_initial_layers(items, n_layers), items, sweeps)
    size = [node_height if real else 0.0 for real in items.is_real]
    y = _rows(layers, items, size, row_gap, dummy_gap)
    pitch = node_width + layer_gap
    top = min((y[i] - size[i] / 2 for i in y), default=0.0)
    bottom = max((y[i] + size[i] / 2 for i in y), default=0.0)
    edges, arc_extent = _edge_paths(items, layer_of, y, pitch, node_width, node_height, top, bottom)

    # shift everything to positive coordinates with a margin
    dx = margin + node_width / 2
    dy = margin - top + arc_extent[0]
    positions = {name: (layer_of[name] * pitch + dx, y[items.index[name]] + dy) for name in graph.names}
    moved = tuple(
        EdgePath(e.src, e.dst, tuple((px + dx, py + dy) for px, py in e.points), e.arc) for e in edges
    )
    width = max(n_layers - 1, 0) * pitch + node_width + 2 * margin
    height = (bottom - top) + arc_extent[0] + arc_extent[1] + 2 * margin
    return GraphLayout(
        positions=positions,
        layers=dict(layer_of),
        edges=moved,
        node_width=node_width,
        node_height=node_height,
        width=width,
        height=height,
        crossings=crossings,
    )


@dataclass
class _Items:
    """The layout's items: real nodes 0..n-1 (graph order), then the dummies of long edges.

    Attributes:
        index: node name -> item.
        layer: item -> layer.
        is_real: item -> a node (True) or a dummy (False).
        down, up: item -> the items it links to in the next / previous layer.
        chains: (src, dst, items from src to dst), None for an edge drawn as an arc.
    """

    index: dict[str, int]
    layer: list[int]
    is_real: list[bool]
    down: dict[int, list[int]] = field(default_factory=dict)
    up: dict[int, list[int]] = field(default_factory=dict)
    chains: list[tuple[str, str, list[int] | None]] = field(default_factory=list)


def _items_with_dummies(graph: LayerGraph, layer_of: dict[str, int], max_dummy_span: int) -> _Items:
    """One dummy per layer an edge passes through; edges spanning more than ``max_dummy_span`` layers are arcs."""
    names = graph.names
    items = _Items({name: i for i, name in enumerate(names)}, [layer_of[name] for name in names], [True] * len(names))
    for src, dst in graph.edges():
        span = layer_of[dst] - layer_of[src]
        if span > max_dummy_span:
            items.chains.append((src, dst, None))
            continue
        chain = [items.index[src]]
        for k in range(1, span):
            items.layer.append(layer_of[src] + k)
            items.is_real.append(False)
            chain.append(len(items.layer) - 1)
        chain.append(items.index[dst])
        for a, b in pairwise(chain):
            items.down.setdefault(a, []).append(b)
            items.up.setdefault(b, []).append(a)
        items.chains.append((src, dst, chain))
    return items


def _initial_layers(items: _Items, n_layers: int) -> list[list[int]]:
    """Graph order for nodes; a dummy sits where its edge's source is."""
    layers: list[list[int]] = [[] for _ in range(n_layers)]
    sort_key: list[float] = [float(i) for i in range(len(items.index))]
    for _, _, chain in items.chains:
        if chain:
            for _ in chain[1:-1]:
                sort_key.append(sort_key[chain[0]] + 0.5)
    for item in sorted(range(len(items.layer)), key=sort_key.__getitem__):
        layers[items.layer[item]].append(item)
    return layers


def _positions_of(layer: list[int]) -> dict[int, int]:
    return {item: i for i, item in enumerate(layer)}


def _order_layers(layers: list[list[int]], items: _Items, sweeps: int) -> tuple[list[list[int]], int]:
    """Barycentre sweeps down and up, keeping the order with the fewest crossings (and their count)."""
    n_layers = len(layers)

    def total_crossings(order: list[list[int]]) -> int:
        return sum(_crossings(order[k], _positions_of(order[k + 1]), items.down) for k in range(n_layers - 1))

    best = [list(layer) for layer in layers]
    best_crossings = total_crossings(best)
    for _ in range(sweeps if best_crossings else 0):
        for direction in (1, -1):
            rng = range(1, n_layers) if direction == 1 else range(n_layers - 2, -1, -1)
            neighbours = items.up if direction == 1 else items.down
            for k in rng:
                ref = _positions_of(layers[k - direction])
                current = _positions_of(layers[k])

                def barycentre(
                    item: int, ref: dict[int, int] = ref, current: dict[int, int] = current, neighbours: dict = neighbours
                ) -> float:
                    linked = neighbours.get(item)
                    if not linked:
                        return float(current[item])
                    return sum(ref[v] for v in linked) / len(linked)

                layers[k].sort(key=barycentre)
            crossings = total_crossings(layers)
            if crossings < best_crossings:
                best, best_crossings = [list(layer) for layer in layers], crossings
        if best_crossings == 0:
            break
    return best, best_crossings


def _rows(layers: list[list[int]], items: _Items, size: list[float], row_gap: float, dummy_gap: float) -> dict[int, float]:
    """y per item, by alternating barycentre pulls and exact spacing."""
    n_layers = len(layers)
    y: dict[int, float] = {}

    def gaps_of(layer: list[int]) -> list[float]:
        out = []
        for a, b in pairwise(layer):
            gap = row_gap if items.is_real[a] and items.is_real[b] else dummy_gap
            out.append((size[a] + size[b]) / 2 + gap)
        return out

    for layer in layers:
        gaps = gaps_of(layer)
        acc = -sum(gaps) / 2
        for i, item in enumerate(layer):
            y[item] = acc
            if i < len(gaps):
                acc += gaps[i]
    for _ in range(4):
        for neighbours, rng in ((items.up, range(1, n_layers)), (items.down, range(n_layers - 2, -1, -1))):
            for k in rng:
                layer = layers[k]
                targets = []
                for item in layer:
                    linked = neighbours.get(item)
                    targets.append(sum(y[v] for v in linked) / len(linked) if linked else y[item])
                weights = [1.0 if items.is_real[item] else 0.5 for item in layer]
                for item, value in zip(layer, _isotonic(targets, weights, gaps_of(layer))):
                    y[item] = value
    return y


def _edge_paths(
    items: _Items,
    layer_of: dict[str, int],
    y: dict[int, float],
    pitch: float,
    node_width: float,
    node_height: float,
    top: float,
    bottom: float,
) -> tuple[list[EdgePath], list[float]]:
    """Each edge's polyline (through its dummies) or arc, and how far arcs reach above the top and below the bottom."""
    half_w, half_h = node_width / 2, node_height / 2
    edges: list[EdgePath] = []
    arc_extent = [0.0, 0.0]
    for number, (src, dst, chain) in enumerate(items.chains):
        s, d = items.index[src], items.index[dst]
        if chain is None:
            span = layer_of[dst] - layer_of[src]
            bulge = min(36.0 + 5.0 * span, 420.0)
            side = -1.0 if number % 2 == 0 else 1.0  # alternately above and below
            level = top - bulge if side < 0 else bottom + bulge
            start = (layer_of[src] * pitch, y[s] + side * half_h)
            end = (layer_of[dst] * pitch, y[d] + side * half_h)
            slot = 0 if side < 0 else 1
            arc_extent[slot] = max(arc_extent[slot], 0.75 * bulge)
            edges.append(EdgePath(src, dst, (start, (start[0], level), (end[0], level), end), arc=True))
            continue
        points = [(layer_of[src] * pitch + half_w, y[s])]
        for item in chain[1:-1]:
            cx = items.layer[item] * pitch
            points += [(cx - half_w, y[item]), (cx + half_w, y[item])]
        points.append((layer_of[dst] * pitch - half_w, y[d]))
        edges.append(EdgePath(src, dst, tuple(points)))
    return edges, arc_extent


__all__ = ["EdgePath", "GraphLayout", "layered_layout", "longest_path_layers"]
