"""``tiercut profile`` (per-node timing on this host) and ``tiercut devices`` (the device catalog)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tiercut.cli.checks import check_output_path, write_text_output
from tiercut.errors import TiercutError
from tiercut.graph import GRANULARITIES, capture_model, parse_shape


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}"


def profile(
    model: Annotated[str, typer.Argument(help="zoo name (resnet50, vgg16, ...) or package.module:factory")],
    repeats: Annotated[
        int, typer.Option(help="at most this many timed samples per node (fewer once the median is stable)")
    ] = 30,
    threads: Annotated[
        int | None, typer.Option(help="torch threads to measure at (default: torch's current setting)")
    ] = None,
    out: Annotated[Path, typer.Option(help="profile JSON file to write")] = Path("profile.json"),
    input_shape: Annotated[
        str | None, typer.Option("--input-shape", help="input shape, e.g. 1,3,224,224 (zoo default: documented size)")
    ] = None,
    granularity: Annotated[
        str, typer.Option(help="module: one node per leaf module or function call; block: one per residual/inception block")
    ] = "module",
    clock: Annotated[
        str, typer.Option(help="wall: latency; cpu: the thread's CPU time (with --threads 1, on a busy machine)")
    ] = "wall",
    as_json: Annotated[bool, typer.Option("--json", help="also print the profile JSON")] = False,
) -> None:
    """Time every node of a model alone on this host, and the whole model; write a profile JSON."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from tiercut.profile import measure_profile

    if granularity not in GRANULARITIES:
        raise TiercutError(f"granularity {granularity!r} is not known; use one of {', '.join(GRANULARITIES)}")
    if repeats < 1:
        raise TiercutError(f"--repeats {repeats} is not positive; use at least 1")
    if threads is not None and threads < 1:
        raise TiercutError(f"--threads {threads} is not positive; use at least 1")
    check_output_path(out, "--out")
    shape = parse_shape(input_shape) if input_shape is not None else None
    captured = capture_model(model, shape, granularity=granularity)

    console = Console(stderr=True)
    with Progress(
        TextColumn("[bold]profiling[/bold] {task.fields[label]:<28.28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("profile", total=None, label=captured.graph.model)

        def progress(done: int, total: int, label: str) -> None:
            bar.update(task, completed=done, total=total, label=label)

        result = measure_profile(captured, repeats=repeats, threads=threads, progress=progress, clock=clock)
    write_text_output(out, "--out", json.dumps(result.to_dict(), indent=1))

    table = Table(title=f"{result.model}: slowest nodes ({len(result.nodes)} timed, {result.granularity} granularity)")
    for column, justify in (("node", "left"), ("op", "left"), ("median ms", "right"), ("IQR ms", "right"),
                            ("samples", "right"), ("stopped", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for node in sorted(result.nodes.values(), key=lambda n: -n.median_s)[:15]:
        t = node.timing
        table.add_row(node.name, node.op, _ms(t.median_s), _ms(t.spread_s), f"{t.repeats}x{t.number}", t.stop_reason)
    report = Console()
    report.print(table)
    whole = result.whole_model
    host = result.host
    report.print(
        f"whole model: {_ms(whole.median_s)} ms (IQR {_ms(whole.spread_s)}); sum of nodes: "
        f"{_ms(result.sum_of_nodes_s)} ms ({result.difference_frac:+.1%} vs whole)\n"
        f"host: {host.cpu_model}, {host.logical_cpus} CPUs, {host.threads} threads, torch {host.torch_version}, "
        f"{clock} clock; measured {host.peak_flops / 1e9:.0f} GFLOP/s, {host.memory_bandwidth_bps / 1e9:.1f} GB/s\n"
        f"profile: {out.resolve()}"
    )
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=1))


def devices(
    as_json: Annotated[bool, typer.Option("--json", help="print the catalog as JSON, with the source of every figure")] = False,
) -> None:
    """List the device catalog: peak FLOP/s, memory bandwidth, power, and where each figure comes from."""
    from rich.console import Console
    from rich.table import Table

    from tiercut.profile import load_catalog

    catalog = load_catalog()
    if as_json:
        typer.echo(json.dumps({name: spec.to_dict() for name, spec in catalog.items()}, indent=1))
        return
    table = Table(title=f"device catalog ({len(catalog)} devices; FP32 peaks; `tiercut devices --json` for sources)")
    for column, justify in (("name", "left"), ("kind", "left"), ("GFLOP/s", "right"), ("GB/s", "right"),
                            ("W compute", "right"), ("W idle", "right"), ("overhead us", "right"),
                            ("description", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for spec in catalog.values():
        table.add_row(
            spec.name, spec.kind, f"{spec.peak_flops / 1e9:,.0f}", f"{spec.memory_bandwidth_bps / 1e9:,.1f}",
            f"{spec.power_compute_w:g}", f"{spec.power_idle_w:g}", f"{spec.dispatch_overhead_s * 1e6:g}",
            spec.description,
        )
    Console(width=None if Console().is_terminal else 200).print(table)
