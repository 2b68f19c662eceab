"""``tiercut demo``: the main job on an embedded default (VGG16)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tiercut.cli.graph_cmd import graph_table
from tiercut.graph import extract_graph


def demo(
    out: Annotated[Path, typer.Option(help="folder the report is written to")] = Path("report"),
) -> None:
    """Run the main job on the embedded default and print where its report is."""
    out.mkdir(parents=True, exist_ok=True)
    layer_graph = extract_graph("vgg16")
    graph_table(layer_graph)
    path = out / "vgg16.graph.json"
    path.write_text(json.dumps(layer_graph.to_dict(), indent=1))
    typer.echo(f"report: {path.resolve()}")
