"""``tiercut profile`` (per-node timing on this host) and ``tiercut devices`` (the device catalog)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tiercut.cli.checks import check_output_path, write_text_output
from tiercut.cli.model_opts import DEFAULT_MODEL_OPTIONS, MODEL_HELP, ModelOptions
from tiercut.cli.options import QuietOpt, alias, option_group, progress_for
from tiercut.errors import TiercutError


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}"


@option_group("model_options", ModelOptions)
def profile(
    model: Annotated[str, typer.Argument(help=MODEL_HELP)],
    repeats: Annotated[
        int, typer.Option(help="at most this many timed samples per node (fewer once the median is stable)")
    ] = 30,
    torch_threads: Annotated[
        int | None, typer.Option("--torch-threads", help="torch threads to measure at (default: torch's current setting)")
    ] = None,
    old_threads: Annotated[int | None, typer.Option("--threads", hidden=True, help="deprecated: --torch-threads")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="profile JSON file to write")] = Path("profile.json"),
    model_options: ModelOptions = DEFAULT_MODEL_OPTIONS,
    clock: Annotated[
        str | None,
        typer.Option(help="wall: latency (CPU default); cpu: the thread's CPU time (--torch-threads 1); cuda: CUDA events"),
    ] = None,
    torch_device: Annotated[
        str, typer.Option("--torch-device", help="cpu, cuda, cuda:N or auto (CUDA when present): where the model runs")
    ] = "cpu",
    as_json: Annotated[bool, typer.Option("--json", help="also print the profile JSON")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Time every node of a model alone on this host, and the whole model; write a profile JSON."""
    threads = alias(torch_threads, old_threads, new="--torch-threads", old="--threads", default=None)
    from rich.console import Console
    from rich.table import Table

    request = model_options.request(model)
    if repeats < 1:
        raise TiercutError(f"--repeats {repeats} is not positive; use at least 1")
    if threads is not None and threads < 1:
        raise TiercutError(f"--torch-threads {threads} is not positive; use at least 1")
    check_output_path(out, "--out")
    from tiercut.profile.measure import resolve_torch_device, timer_for

    torch_device = resolve_torch_device(torch_device)  # a missing GPU is a one-line error before any work
    import torch

    timer_for(clock or ("cuda" if torch_device.startswith("cuda") else "wall"), threads or torch.get_num_threads(), torch_device)
    from tiercut.pipeline.profile import profile as profile_step

    result = profile_step(
        request, repeats=repeats, torch_threads=threads, clock=clock, torch_device=torch_device,
        progress=progress_for(quiet),
    )
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
        f"host: {host.name}, {host.logical_cpus} CPUs, torch {host.torch_version}, {result.clock} clock; "
        f"reference peak {host.peak_flops / 1e9:.0f} GFLOP/s (best GEMM at {host.cpu_mhz:.0f} MHz, {host.threads} threads, "
        f"load {host.load_avg_1m:.2f}), {host.memory_bandwidth_bps / 1e9:.1f} GB/s\n"
        f"profile: {out.resolve()}"
    )
    quality = result.quality
    if quality is not None and quality.verdict != "stable":
        report.print(f"[bold red]busy host[/bold red]: this profile is not stable -- {'; '.join(quality.reasons)}")
        for line in quality.advice:
            report.print(f"  advice: {line}")
    else:
        report.print("quality: stable (load, timing spread and node-sum gap within bounds)")
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=1))


def devices(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="print the catalog as JSON, with the source of every figure")] = False,
    catalog: Annotated[
        Path | None, typer.Option("--catalog", help="list this catalog file (e.g. from 'devices calibrate') instead")
    ] = None,
) -> None:
    """List the device catalog: peaks, bandwidth, achieved efficiency, overhead, power, and where each comes from."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.console import Console
    from rich.table import Table

    from tiercut.profile import load_catalog, load_catalog_file

    specs = load_catalog() if catalog is None else load_catalog_file(catalog)
    if as_json:
        typer.echo(json.dumps({name: spec.to_dict() for name, spec in specs.items()}, indent=1))
        return
    table = Table(title=f"device catalog ({len(specs)} devices; `tiercut devices --json` for every figure's source)")
    for column, justify in (("name", "left"), ("kind", "left"), ("precisions", "left"), ("GFLOP/s fp32", "right"),
                            ("GB/s", "right"), ("eff conv/dw/mm/mem", "left"), ("overhead us", "right"),
                            ("W compute", "right"), ("W idle", "right"), ("stack", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for spec in specs.values():
        eff = spec.efficiency
        effs = "/".join(f"{eff[c]:.2f}" for c in ("conv", "depthwise", "matmul", "memory")) if eff else "- (roofline transfer)"
        table.add_row(
            spec.name, spec.kind, ",".join(spec.precision_names), f"{spec.peak_flops / 1e9:,.0f}",
            f"{spec.memory_bandwidth_bps / 1e9:,.1f}", effs, f"{spec.dispatch_overhead_s * 1e6:.3g}",
            f"{spec.power_compute_w:g}", f"{spec.power_idle_w:g}", spec.stack,
        )
    Console(width=None if Console().is_terminal else 220).print(table)


def calibrate(
    profile_path: Annotated[
        Path, typer.Argument(metavar="PROFILE", help="a profile JSON written by 'tiercut profile' on the device")
    ],
    name: Annotated[str, typer.Option("--name", help="the device entry's name (letters, digits, _ and -)")],
    base: Annotated[
        str | None, typer.Option("--base", help="catalog entry of the same hardware: keep its peaks and powers, refit the rest")
    ] = None,
    precision: Annotated[
        str, typer.Option("--precision", help="precision the profile was measured at: fp32, fp16, int8")
    ] = "fp32",
    out: Annotated[
        Path, typer.Option("--out", "-o", help="catalog YAML to write (an existing one gets the entry added or replaced)")
    ] = Path("devices.yaml"),
    description: Annotated[str, typer.Option(help="one line naming the hardware")] = "",
) -> None:
    """Fit a device's per-node overhead and per-class efficiencies to a profile taken on it; write a catalog entry.

    Use it in an environment file as  spec: {catalog: devices.yaml, entry: NAME}.
    """
    import re

    import yaml

    from tiercut.profile import (
        calibrate_from_profile,
        catalog_document,
        device_seconds,
        get_device_spec,
        load_catalog_file,
        load_profile,
    )

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_\-]*", name):
        raise TiercutError(f"device name {name!r} must be letters, digits, _ or -; e.g. my_board")
    if out.parent and not out.parent.exists():
        raise TiercutError(f"folder {out.parent} for --out does not exist; create it first")
    measured = load_profile(profile_path)
    base_spec = get_device_spec(base) if base else None
    spec = calibrate_from_profile(measured, name, base=base_spec, precision=precision, description=description)
    existing = load_catalog_file(out) if out.exists() else {}
    existing[name] = spec
    tmp = out.with_name(out.name + ".tmp")
    header = "# tiercut device catalog written by 'tiercut devices calibrate'; every figure's source is in its entry.\n"
    try:
        tmp.write_text(header + yaml.safe_dump(catalog_document(existing), sort_keys=False, width=120))
        tmp.replace(out)
    except OSError as exc:
        raise TiercutError(f"cannot write {out}: {exc.strerror}; check the folder") from None
    feats = [n.features for n in measured.nodes.values()]
    predicted = float(device_seconds(feats, spec, precision).sum())
    figures = spec.resolve(precision)
    eff = figures.efficiency or {}
    typer.echo(
        f"{name}: overhead {figures.dispatch_overhead_s * 1e6:.3g} us per node, efficiency "
        + ", ".join(f"{c} {eff[c]:.3f}" for c in ("conv", "depthwise", "matmul", "memory"))
        + f" of {figures.peak_flops / 1e9:.1f} GFLOP/s and {figures.memory_bandwidth_bps / 1e9:.1f} GB/s"
    )
    typer.echo(
        f"{measured.model}: predicted {predicted * 1e3:.3f} ms for the profiled nodes, measured whole model "
        f"{measured.whole_model.median_s * 1e3:.3f} ms"
    )
    if measured.quality is not None and measured.quality.verdict != "stable":
        typer.echo(f"warning: the profile was taken on a busy host ({'; '.join(measured.quality.reasons)}); "
                   "the fitted figures inherit its noise", err=True)
    typer.echo(f"wrote {out.resolve()} (use it as  spec: {{catalog: {out}, entry: {name}}})")
