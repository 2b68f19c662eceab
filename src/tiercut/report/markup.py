"""Small pieces of HTML shared by the report's sections, and the case being built.

A :class:`Case` is one result's section while it is written: its element id
prefix, the result, each device's colour and index (the ``d<k>`` class of
the graph boxes) and the warnings collected on the way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

from tiercut.problem import Problem
from tiercut.report import format as fmt
from tiercut.report.inputs import ReportInput
from tiercut.report.svg import attr


def text(value: object) -> str:
    """Text for an element's content, escaped."""
    return escape(str(value))


def script_json(value: object) -> str:
    """JSON safe inside a ``<script>`` element."""
    return json.dumps(value, separators=(",", ":")).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, cls: str = "", row_attrs: Sequence[str] = (),
          numeric_from: int = 1) -> str:
    """An HTML table; ``rows`` hold already-escaped HTML; columns from ``numeric_from`` on are right-aligned."""
    head = "".join(f'<th{" class=num" if i >= numeric_from else ""}>{escape(h)}</th>' for i, h in enumerate(headers))
    body = []
    for k, row in enumerate(rows):
        extra = row_attrs[k] if k < len(row_attrs) else ""
        cells = "".join(f'<td{" class=num" if i >= numeric_from else ""}>{c}</td>' for i, c in enumerate(row))
        body.append(f"<tr{extra}>{cells}</tr>")
    return f'<table class="{attr(cls)}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


@dataclass
class Case:
    """One result's section while it is built.

    Attributes:
        cid: the prefix of its element ids (``c0``, ``c1``...).
        result: the result it shows.
        colours: device name -> fill colour.
        device_index: device name -> its position in the problem (the ``d<k>`` class).
        warnings: lines shown at the top of the section.
    """

    cid: str
    result: ReportInput
    colours: dict[str, str] = field(default_factory=dict)
    device_index: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, number: int, result: ReportInput) -> Case:
        case = cls(f"c{number}", result)
        if result.problem is not None:
            case.colours = fmt.device_colours([(d.name, d.tier) for d in result.problem.devices])
            case.device_index = {d.name: i for i, d in enumerate(result.problem.devices)}
        return case

    @property
    def problem(self) -> Problem | None:
        return self.result.problem

    def css(self) -> str:
        """The colour rules of this case's devices."""
        rules = []
        for name, k in self.device_index.items():
            colour = self.colours[name]
            rules.append(f"#{self.cid} .d{k}>rect,#{self.cid} rect.d{k}{{fill:{colour}}}"
                         f"#{self.cid} svg.far .d{k}>rect{{stroke:{colour}}}"
                         f"#{self.cid} .swatch.d{k}{{background:{colour}}}")
        return "".join(rules)


__all__ = ["Case", "script_json", "table", "text"]
