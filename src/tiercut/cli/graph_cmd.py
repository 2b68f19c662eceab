"""``tiercut graph``: the layer graph of a model as a table or JSON."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from tiercut.cli.model_opts import DEFAULT_MODEL_OPTIONS, MODEL_HELP, ModelOptions
from tiercut.cli.options import QuietOpt, option_group, progress_for
from tiercut.graph import LayerGraph


def _human(n: float, unit: str = "") -> str:
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{suffix}{unit}"
    return f"{n:.0f}{unit}"


def graph_table(graph: LayerGraph) -> None:
    """Print the graph as a rich table with totals."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{graph.model} ({graph.granularity} granularity, {len(graph)} nodes)")
    for column, justify in (("node", "left"), ("op", "left"), ("inputs", "left"), ("FLOPs", "right"),
                            ("params", "right"), ("param bytes", "right"), ("out bytes", "right"),
                            ("out shape", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for node in graph:
        inputs = ", ".join(node.inputs)
        table.add_row(
            node.name + (" *" if node.is_output else ""), node.op, inputs if len(inputs) < 40 else inputs[:37] + "...",
            _human(node.flops), _human(node.param_count), _human(node.param_bytes, "B"), _human(node.out_bytes, "B"),
            "x".join(map(str, node.out_shape)),
        )
    matmul = graph.total_matmul_flops
    console = Console(width=None if Console().is_terminal else 160)
    console.print(table)
    console.print(
        f"total: {_human(graph.total_flops)}FLOPs ({_human(matmul)} conv/linear/matmul/attention, "
        f"{_human(graph.total_flops - matmul)} other), {graph.total_param_count:,} parameters, "
        f"{_human(graph.total_param_bytes, 'B')} of weights, {len(graph.edges())} edges; * = graph output"
    )
    if graph.unused_param_count:
        console.print(
            f"not in the inference graph: {graph.unused_param_count:,} parameters "
            f"({_human(graph.unused_param_bytes, 'B')}), e.g. auxiliary heads"
        )


@option_group("model_options", ModelOptions)
def graph(
    model: Annotated[str, typer.Argument(help=MODEL_HELP)],
    model_options: ModelOptions = DEFAULT_MODEL_OPTIONS,
    as_json: Annotated[bool, typer.Option("--json", help="print the LayerGraph JSON instead of a table")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Extract a model's layer graph (DAG) with FLOPs, parameter bytes and output bytes."""
    from tiercut.pipeline import graph as graph_step

    request = model_options.request(model)
    layer_graph = graph_step(request, progress=progress_for(quiet))
    if as_json:
        typer.echo(json.dumps(layer_graph.to_dict(), indent=1))
    else:
        graph_table(layer_graph)
