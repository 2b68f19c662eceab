"""``tiercut compress``: a smaller model (low-rank, pruned, int8 or fp16), written as safetensors + a JSON spec."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tiercut.cli.model_opts import MODEL_HELP, AllowCodeOpt, InputOpt, ShapeOpt
from tiercut.cli.options import JsonOpt, emit_json
from tiercut.errors import TiercutError


def _human_bytes(n: float) -> str:
    for scale, suffix in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if n >= scale:
            return f"{n / scale:.2f} {suffix}"
    return f"{n:.0f} B"


def _print(run: dict, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{run['method']} ({run['data']})")
    columns = ("model", "weights", "stored", "FLOPs", "non-zero FLOPs", "latency here", "top-1", "agreement", "rel. error")
    for column in columns:
        table.add_column(column, justify="left" if column == "model" else "right")
    for label in ("reference", "compressed"):
        r = run[label]

        def pct(v: float | None) -> str:
            return "-" if v is None else f"{100 * v:.1f}%"

        error = "-" if r["relative_error"] is None else f"{r['relative_error']:.3g}"
        stored = "-" if r.get("stored_bytes") is None else _human_bytes(r["stored_bytes"])
        nonzero = "-" if r.get("nonzero_flops") is None else f"{r['nonzero_flops'] / 1e6:.2f} M"
        table.add_row(label, _human_bytes(r["weight_bytes"]), stored, f"{r['flops'] / 1e6:.2f} M", nonzero,
                      f"{r['latency_s'] * 1e3:.3f} ms", pct(r["accuracy"]), pct(r["agreement"]), error)
    console = Console(width=None if Console().is_terminal else 160)
    console.print(table)
    stored = f", stored bytes x{run['stored_bytes_ratio']:.3f}" if run.get("stored_bytes_ratio") else ""
    console.print(
        f"bytes x{run['bytes_ratio']:.3f}{stored}, FLOPs x{run['flops_ratio']:.3f}, speed-up {run['speedup']:.2f}x; wrote {out}"
    )
    if run["stage"]["settings"].get("pruning") == "magnitude":
        console.print("magnitude pruning: weights stored sparse (bitmap + values); torch's dense CPU kernels still "
                      "multiply the zeros, so FLOPs (what the cost model counts) and latency stay; non-zero FLOPs is "
                      "a sparse-kernel bound")


def compress(
    model: Annotated[str, typer.Argument(help=MODEL_HELP + ", or a compressed model directory")],
    method: Annotated[str, typer.Option("--method", help="lowrank | prune | int8 | fp16")],
    out: Annotated[Path, typer.Option("--out", "-o", help="the directory to write (new or empty)")],
    energy: Annotated[float, typer.Option("--energy", help="lowrank: keep this fraction of the squared singular values")] = 0.9,
    rank: Annotated[int | None, typer.Option("--rank", help="lowrank: a fixed rank instead of --energy")] = None,
    ratio: Annotated[
        float,
        typer.Option("--ratio", help="prune: fraction of each layer's channels removed (channel) or weights zeroed (magnitude)"),
    ] = 0.5,
    pruning: Annotated[
        str,
        typer.Option("--pruning", help="prune: channel (remove L1-smallest channels) | magnitude (zero the smallest weights, "
                     "stored sparse)"),
    ] = "channel",
    int8_mode: Annotated[
        str, typer.Option("--int8-mode", help="int8: auto | static (FX, calibrated) | dynamic (Linear)")
    ] = "auto",
    digits: Annotated[
        bool, typer.Option("--digits", help="train on scikit-learn's digits first; top-1 on its held-out split")
    ] = False,
    epochs: Annotated[int, typer.Option("--epochs", help="with --digits: training epochs of the reference")] = 12,
    finetune_epochs: Annotated[int, typer.Option("--finetune-epochs", help="with --digits: fine-tune after lowrank/prune")] = 0,
    runs: Annotated[int, typer.Option("--runs", help="forward passes timed (median)")] = 20,
    input_shape: ShapeOpt = None,
    inputs: InputOpt = None,
    allow_code: AllowCodeOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Compress MODEL; write it (safetensors + a JSON spec rebuilding its architecture) and a size/FLOPs/latency/accuracy report.

    The directory is a model for every command: 'tiercut graph DIR', 'tiercut plan DIR --env ...'.
    """
    from tiercut.cli.checks import check_finite
    from tiercut.graph.model_spec import load_model, parse_inputs
    from tiercut.preprocess.compress import METHODS, PRUNINGS, Stage, is_compressed_dir, read_spec, save_compressed
    from tiercut.preprocess.evaluation import run_compression
    from tiercut.preprocess.quantize import INT8_MODES

    if method not in METHODS:
        raise TiercutError(f"--method {method!r} is not known; use one of {', '.join(METHODS)}")
    if pruning not in PRUNINGS:
        raise TiercutError(f"--pruning {pruning!r} is not known; use one of {', '.join(PRUNINGS)}")
    if pruning != "channel" and method != "prune":
        raise TiercutError(f"--pruning {pruning} goes with --method prune, not {method}")
    if int8_mode not in INT8_MODES:
        raise TiercutError(f"--int8-mode {int8_mode!r} is not known; use one of {', '.join(INT8_MODES)}")
    check_finite("--energy", energy)
    check_finite("--ratio", ratio)
    if not 0.0 < energy <= 1.0:
        raise TiercutError(f"--energy {energy} must lie in (0, 1], e.g. 0.9")
    if not 0.0 <= ratio < 1.0:
        raise TiercutError(f"--ratio {ratio} must lie in [0, 1), the fraction of channels (or weights) removed, e.g. 0.5")
    if rank is not None and rank < 1:
        raise TiercutError(f"--rank {rank} must be >= 1")
    if runs < 1:
        raise TiercutError(f"--runs {runs} must be >= 1")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TiercutError(f"--out {out} exists and is not an empty directory; give a new directory")
    specs = parse_inputs(inputs, input_shape)
    stages: list[Stage] = []
    if is_compressed_dir(model):  # compress a compressed model further: its stages come first
        spec = read_spec(model)
        base, stages = str(spec["base"]), list(spec["stages"])
    else:
        base = model
    loaded = load_model(model, specs, allow_code=allow_code)
    if is_compressed_dir(model) and digits:
        raise TiercutError("--digits trains the model from scratch; give the base model, not a compressed one")
    run = run_compression(
        loaded.model, loaded.example_inputs, method, digits=digits, epochs=epochs, finetune_epochs=finetune_epochs,
        runs=runs, energy=energy, rank=rank, ratio=ratio, int8_mode=int8_mode,
        **({"pruning": pruning} if method == "prune" else {}),
    )
    payload = run.to_dict()
    payload["model"] = model
    written = save_compressed(out, run.result.model, base, [s.describe() for s in loaded.input_specs],
                              [*stages, run.result.stage], payload)
    if as_json:
        emit_json(payload, None)
    else:
        _print(payload, written)
