"""SVG pictures of the report, written as text: the layer graph, timelines, line and bar charts.

Each function returns one ``<svg>`` element (or a small block holding one)
as a string. Every name from a model or a file is escaped. The pictures are
complete without script; ``report.js`` adds pan and zoom (elements with the
``panzoom`` class and a ``g.viewport`` inside), re-colouring by plan and the
graph search.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from itertools import pairwise

from tiercut.graph.types import LayerGraph
from tiercut.report import format as fmt
from tiercut.report.layout import GraphLayout


def attr(value: object) -> str:
    """An attribute value, escaped (quotes included)."""
    return escape(str(value), quote=True)


def _n(value: float) -> str:
    """A coordinate with two decimals at most."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def nice_ticks(low: float, high: float, count: int = 6) -> list[float]:
    """Round tick values covering ``[low, high]`` (steps of 1, 2 or 5 times a power of ten)."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low] if math.isfinite(low) else [0.0]
    raw = (high - low) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(low / step) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        if value >= low - step * 1e-9:
            ticks.append(round(value, 12))
        value += step
    return ticks


def shorten(text: str, limit: int) -> str:
    """``text`` cut in the middle with an ellipsis to at most ``limit`` characters."""
    if len(text) <= limit:
        return text
    keep = limit - 1
    head = (keep + 1) // 2
    return text[:head] + "…" + text[len(text) - (keep - head):]


# ---------------------------------------------------------------- the layer graph
def graph_svg(
    svg_id: str,
    graph: LayerGraph,
    layout: GraphLayout,
    device_of: Mapping[str, int | None],
    tooltips: Mapping[str, str],
) -> str:
    """The layer graph: a box per node (class ``d<k>`` for device ``k``) and a path per edge.

    Edges whose tensor crosses devices get the ``cut`` class. Nodes carry
    ``data-i`` (graph order) and ``data-node`` (name); edges ``data-s`` and
    ``data-t`` (their ends' graph order), which is how the script re-colours
    them for another plan.
    """
    index = {name: i for i, name in enumerate(graph.names)}
    w, h = layout.node_width, layout.node_height
    label_chars = max(6, int((w - 10) / 6.4))
    parts = [
        f'<svg id="{attr(svg_id)}" class="panzoom graph" data-zoom="xy" data-width="{_n(layout.width)}" '
        f'data-height="{_n(layout.height)}" style="height:{_n(min(max(layout.height + 24, 240), 560))}px" role="img" '
        f'aria-label="layer graph, {len(graph)} nodes" tabindex="0">',
        f'<defs><marker id="{attr(svg_id)}-arrow" viewBox="0 0 8 8" refX="7" refY="4" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L8,4 L0,8 z" class="arrowhead"/></marker></defs>',
        '<g class="viewport">',
        f'<g id="{attr(svg_id)}-content">',
        f'<rect class="backdrop" width="{_n(layout.width)}" height="{_n(layout.height)}"/>',
        '<g class="edges">',
    ]
    for edge in layout.edges:
        s, t = index[edge.src], index[edge.dst]
        points = edge.points
        if edge.arc:
            (x0, y0), (x1, y1), (x2, y2), (x3, y3) = points
            d = f"M{_n(x0)},{_n(y0)} C{_n(x1)},{_n(y1)} {_n(x2)},{_n(y2)} {_n(x3)},{_n(y3)}"
        else:
            d = f"M{_n(points[0][0])},{_n(points[0][1])}"
            for (xa, ya), (xb, yb) in pairwise(points):
                if abs(ya - yb) < 0.01 or abs(xb - xa) < 0.01:
                    d += f" L{_n(xb)},{_n(yb)}"
                else:
                    mid = (xa + xb) / 2
                    d += f" C{_n(mid)},{_n(ya)} {_n(mid)},{_n(yb)} {_n(xb)},{_n(yb)}"
        da, db = device_of.get(edge.src), device_of.get(edge.dst)
        cut = " cut" if da is not None and db is not None and da != db else ""
        src = graph[edge.src]
        shape = "×".join(str(v) for v in src.out_shape) or "?"
        title = f"{edge.src} → {edge.dst}: {shape} {src.out_dtype}, {fmt.size(src.out_bytes)}"
        parts.append(
            f'<path class="edge{cut}" data-s="{s}" data-t="{t}" d="{d}" marker-end="url(#{attr(svg_id)}-arrow)">'
            f"<title>{escape(title)}</title></path>"
        )
    parts.append("</g><g class=\"nodes\">")
    for node in graph:
        x, y = layout.positions[node.name]
        device = device_of.get(node.name)
        cls = "node" + (f" d{device}" if device is not None else "") + (" input" if node.is_input else "")
        cls += " output" if node.is_output else ""
        parts.append(
            f'<g class="{cls}" data-i="{index[node.name]}" data-node="{attr(node.name)}" '
            f'transform="translate({_n(x - w / 2)},{_n(y - h / 2)})">'
            f'<rect width="{_n(w)}" height="{_n(h)}" rx="4"/>'
            f'<text class="name" x="6" y="14">{escape(shorten(node.name, label_chars))}</text>'
            f'<text class="op" x="6" y="27">{escape(shorten(node.op, label_chars))}</text>'
            f"<title>{escape(tooltips.get(node.name, node.name))}</title></g>"
        )
    parts.append("</g></g></g></svg>")
    # the overview strip: one small box per node, coloured like the graph (the script moves its window)
    mini = [
        f'<svg class="minimap" data-for="{attr(svg_id)}" viewBox="0 0 {_n(layout.width)} {_n(layout.height)}" '
        'preserveAspectRatio="none" aria-label="overview of the whole graph">'
    ]
    mh = max(h, layout.height / 5)  # boxes stay visible in a strip squeezed from a tall or very long drawing
    for node in graph:
        x, y = layout.positions[node.name]
        device = device_of.get(node.name)
        cls = "mm" + (f" d{device}" if device is not None else "")
        mini.append(f'<rect class="{cls}" data-i="{index[node.name]}" x="{_n(x - w / 2)}" y="{_n(y - mh / 2)}" '
                    f'width="{_n(w)}" height="{_n(mh)}"/>')
    mini.append('<rect class="window" x="0" y="0" width="0" height="0"/></svg>')
    minimap = "".join(mini)
    return "".join(parts) + minimap


# ---------------------------------------------------------------- timelines
@dataclass(frozen=True)
class TimelineBar:
    """One bar of a timeline picture."""

    row: int
    start: float
    end: float
    fill: str
    title: str
    classes: str = "bar"
    data: Mapping[str, str] = field(default_factory=dict)


def timeline_svg(
    svg_id: str,
    rows: Sequence[str],
    bars: Sequence[TimelineBar],
    *,
    total: float,
    axis_label: str,
    label_width: float = 170.0,
    plot_width: float = 880.0,
    row_height: float = 24.0,
    marks: Sequence[tuple[float, str]] = (),
    tick_format: Callable[[float], str] = fmt.seconds,
) -> str:
    """Bars on rows against time (a Gantt chart), zoomable along time.

    The row labels stay put; the bars live in ``g.viewport`` which the script
    scales along x only (``data-zoom="x"``) and whose axis it redraws.
    ``marks`` are vertical lines with a label (an upload arrival, the end).
    """
    total = total if total > 0 and math.isfinite(total) else 1.0
    top = 8.0
    height = top + row_height * len(rows) + 34.0
    width = label_width + plot_width + 12.0
    scale = plot_width / total
    parts = [
        f'<svg id="{attr(svg_id)}" class="panzoom timeline" data-zoom="x" data-total="{total!r}" '
        f'data-plot-x="{_n(label_width)}" data-plot-w="{_n(plot_width)}" data-axis-y="{_n(top + row_height * len(rows))}" '
        f'viewBox="0 0 {_n(width)} {_n(height)}" role="img" aria-label="{attr(axis_label)}" tabindex="0">',
        f'<defs><clipPath id="{attr(svg_id)}-clip"><rect x="{_n(label_width)}" y="0" width="{_n(plot_width)}" '
        f'height="{_n(height)}"/></clipPath></defs>',
    ]
    for i, row in enumerate(rows):
        y = top + i * row_height
        parts.append(
            f'<rect class="row-band{" odd" if i % 2 else ""}" x="0" y="{_n(y)}" width="{_n(width)}" height="{_n(row_height)}"/>'
            f'<text class="row-label" x="{_n(label_width - 8)}" y="{_n(y + row_height / 2 + 4)}" text-anchor="end">'
            f"{escape(shorten(row, 26))}<title>{escape(row)}</title></text>"
        )
    parts.append(f'<g clip-path="url(#{attr(svg_id)}-clip)"><g class="viewport" data-origin="{_n(label_width)}" '
                 f'transform="translate({_n(label_width)},0)">')
    for bar in bars:
        x = bar.start * scale
        bw = max((bar.end - bar.start) * scale, 0.35)
        y = top + bar.row * row_height + 3
        data = "".join(f' data-{k}="{attr(v)}"' for k, v in bar.data.items())
        parts.append(
            f'<rect class="{attr(bar.classes)}"{data} x="{_n(x)}" y="{_n(y)}" width="{_n(bw)}" '
            f'height="{_n(row_height - 6)}" fill="{attr(bar.fill)}"><title>{escape(bar.title)}</title></rect>'
        )
    for at, label in marks:
        x = at * scale
        parts.append(
            f'<line class="mark" x1="{_n(x)}" x2="{_n(x)}" y1="{_n(top)}" y2="{_n(top + row_height * len(rows))}">'
            f"<title>{escape(label)}</title></line>"
        )
    parts.append("</g></g>")
    axis_y = top + row_height * len(rows)
    parts.append(f'<g class="axis" data-label="{attr(axis_label)}">')
    parts.append(f'<line x1="{_n(label_width)}" x2="{_n(label_width + plot_width)}" y1="{_n(axis_y)}" y2="{_n(axis_y)}"/>')
    for tick in nice_ticks(0.0, total):
        x = label_width + tick * scale
        parts.append(
            f'<line x1="{_n(x)}" x2="{_n(x)}" y1="{_n(axis_y)}" y2="{_n(axis_y + 4)}"/>'
            f'<text x="{_n(x)}" y="{_n(axis_y + 16)}" text-anchor="middle">{escape(tick_format(tick))}</text>'
        )
    parts.append(
        f'<text class="axis-label" x="{_n(label_width + plot_width)}" y="{_n(axis_y + 30)}" text-anchor="end">'
        f"{escape(axis_label)}</text></g></svg>"
    )
    return "".join(parts)


# ---------------------------------------------------------------- charts
@dataclass(frozen=True)
class Series:
    """One line of a chart."""

    name: str
    xs: Sequence[float]
    ys: Sequence[float]
    colour: str
    step: bool = False
    dashed: bool = False
    markers: bool = False


def line_chart(
    svg_id: str,
    series: Sequence[Series],
    *,
    x_label: str,
    y_label: str,
    x_format: Callable[[float], str] = fmt.seconds,
    y_format: Callable[[float], str] = fmt.seconds,
    vlines: Sequence[tuple[float, str]] = (),
    width: float = 900.0,
    height: float = 320.0,
) -> str:
    """A line chart with axes, ticks, a legend, and vertical marks (e.g. partition arrivals)."""
    left, right, top, bottom = 74.0, 16.0, 22.0 + 16.0 * math.ceil(len(series) / 3), 44.0
    points = [(x, y) for s in series for x, y in zip(s.xs, s.ys) if math.isfinite(x) and math.isfinite(y)]
    xs = [p[0] for p in points] + [v for v, _ in vlines if math.isfinite(v)]
    ys = [p[1] for p in points]
    x_low, x_high = (min(0.0, min(xs)), max(xs)) if xs else (0.0, 1.0)
    y_low, y_high = (min(0.0, min(ys)), max(ys)) if ys else (0.0, 1.0)
    if x_high <= x_low:
        x_high = x_low + 1.0
    if y_high <= y_low:
        y_high = y_low + 1.0
    y_high *= 1.05
    plot_w, plot_h = width - left - right, height - top - bottom

    def px(x: float) -> float:
        return left + (x - x_low) / (x_high - x_low) * plot_w

    def py(y: float) -> float:
        return top + plot_h - (y - y_low) / (y_high - y_low) * plot_h

    parts = [f'<svg id="{attr(svg_id)}" class="chart" viewBox="0 0 {_n(width)} {_n(height)}" role="img" '
             f'aria-label="{attr(y_label)} against {attr(x_label)}">']
    parts.append('<g class="grid">')
    for tick in nice_ticks(y_low, y_high, 5):
        parts.append(f'<line x1="{_n(left)}" x2="{_n(left + plot_w)}" y1="{_n(py(tick))}" y2="{_n(py(tick))}"/>'
                     f'<text x="{_n(left - 6)}" y="{_n(py(tick) + 4)}" text-anchor="end">{escape(y_format(tick))}</text>')
    for tick in nice_ticks(x_low, x_high, 8):
        parts.append(f'<line x1="{_n(px(tick))}" x2="{_n(px(tick))}" y1="{_n(top)}" y2="{_n(top + plot_h)}"/>'
                     f'<text x="{_n(px(tick))}" y="{_n(top + plot_h + 16)}" text-anchor="middle">{escape(x_format(tick))}</text>')
    parts.append("</g>")
    parts.append(f'<text class="axis-label" x="{_n(left + plot_w / 2)}" y="{_n(height - 6)}" text-anchor="middle">'
                 f"{escape(x_label)}</text>")
    parts.append(f'<text class="axis-label" transform="translate(14,{_n(top + plot_h / 2)}) rotate(-90)" '
                 f'text-anchor="middle">{escape(y_label)}</text>')
    for at, label in vlines:
        if math.isfinite(at):
            parts.append(f'<line class="mark" x1="{_n(px(at))}" x2="{_n(px(at))}" y1="{_n(top)}" y2="{_n(top + plot_h)}">'
                         f"<title>{escape(label)}</title></line>")
    for k, s in enumerate(series):
        pairs = [(x, y) for x, y in zip(s.xs, s.ys) if math.isfinite(x) and math.isfinite(y)]
        if not pairs:
            continue
        d = f"M{_n(px(pairs[0][0]))},{_n(py(pairs[0][1]))}"
        for (_, ya), (xb, yb) in pairwise(pairs):
            if s.step:
                d += f" H{_n(px(xb))} V{_n(py(yb))}" if ya != yb else f" H{_n(px(xb))}"
            else:
                d += f" L{_n(px(xb))},{_n(py(yb))}"
        dash = ' stroke-dasharray="6 4"' if s.dashed else ""
        parts.append(f'<path class="series" data-series="{attr(s.name)}" d="{d}" stroke="{attr(s.colour)}"{dash}>'
                     f"<title>{escape(s.name)}</title></path>")
        if s.markers and len(pairs) <= 600:
            parts.append(f'<g class="markers" fill="{attr(s.colour)}">')
            for x, y in pairs:
                parts.append(f'<circle cx="{_n(px(x))}" cy="{_n(py(y))}" r="2.4"><title>{escape(s.name)}: '
                             f"{escape(x_format(x))}, {escape(y_format(y))}</title></circle>")
            parts.append("</g>")
        lx = left + 8 + (k % 3) * (plot_w / 3)
        ly = 12 + 16 * (k // 3)
        parts.append(f'<g class="legend"><line x1="{_n(lx)}" x2="{_n(lx + 18)}" y1="{_n(ly - 4)}" y2="{_n(ly - 4)}" '
                     f'stroke="{attr(s.colour)}"{dash}/><text x="{_n(lx + 24)}" y="{_n(ly)}">{escape(shorten(s.name, 40))}'
                     "</text></g>")
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(
    svg_id: str,
    rows: Sequence[tuple[str, float, str, str]],
    *,
    value_format: Callable[[float], str],
    label_width: float = 150.0,
    width: float = 900.0,
    row_height: float = 20.0,
) -> str:
    """Horizontal bars: ``(label, value, colour, note)`` per row; a non-finite value shows its note only."""
    finite = [v for _, v, _, _ in rows if math.isfinite(v) and v > 0]
    high = max(finite) if finite else 1.0
    plot_w = width - label_width - 150.0
    height = row_height * len(rows) + 8
    parts = [f'<svg id="{attr(svg_id)}" class="chart bars" viewBox="0 0 {_n(width)} {_n(height)}" role="img">']
    for i, (label, value, colour, note) in enumerate(rows):
        y = 4 + i * row_height
        parts.append(f'<text x="{_n(label_width - 6)}" y="{_n(y + row_height * 0.7)}" text-anchor="end">'
                     f"{escape(shorten(label, 24))}</text>")
        if math.isfinite(value) and value > 0:
            bw = max(value / high * plot_w, 1.0)
            parts.append(f'<rect class="bar" x="{_n(label_width)}" y="{_n(y + 3)}" width="{_n(bw)}" '
                         f'height="{_n(row_height - 6)}" fill="{attr(colour)}"><title>{escape(label)}: '
                         f"{escape(value_format(value))}</title></rect>")
            text_x = label_width + bw + 6
        else:
            text_x = label_width + 6
        text = value_format(value) if math.isfinite(value) else "-"
        parts.append(f'<text x="{_n(text_x)}" y="{_n(y + row_height * 0.7)}">{escape(text)}'
                     f'{escape("  " + note) if note else ""}</text>')
    parts.append("</svg>")
    return "".join(parts)


__all__ = [
    "Series",
    "TimelineBar",
    "attr",
    "bar_chart",
    "graph_svg",
    "line_chart",
    "nice_ticks",
    "shorten",
    "timeline_svg",
]
