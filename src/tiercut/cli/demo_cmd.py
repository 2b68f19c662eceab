"""``tiercut demo``: the main job on an embedded default.

AlexNet on ``neurosurgeon-wifi`` (the paper's own setting: a Jetson TK1
and a Tesla K40 over Wi-Fi, where the best plan splits the model and beats
both running everything on the phone and sending everything to the
server), then VGG16 and GoogLeNet on the ``three-tier`` and ``migration-12`` presets:
each case is :func:`tiercut.pipeline.demo_case` (layer graph, predicted
times, every applicable planner compared, uploads of the best plan planned);
this command writes them to a report folder (``summary.md`` to read, one
``{"problem", "plans", "upload_plans"}`` JSON per case to recompute from, and
``report.html``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from tiercut.cli.checks import check_output_path, write_text_output
from tiercut.cli.options import QuietOpt, progress_for
from tiercut.pipeline import SILENT, DemoCase, Progress, demo_case
from tiercut.pipeline.demo import DEMO_ENVS, DEMO_MODELS, FAITHFUL_CASES
from tiercut.pipeline.demo import demo_cases as _pipeline_cases


def demo_cases() -> list[tuple[str, str]]:
    """(model, environment) of every case (this module's lists, which tests may narrow)."""
    return _pipeline_cases(DEMO_MODELS, DEMO_ENVS, FAITHFUL_CASES)


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def _faster_or_slower(speedup: float, than: str) -> str:
    """``2.00x faster than local-only`` for a speed-up of 2, ``4.00x slower than ...`` for 0.25."""
    if speedup >= 1.0:
        return f"{speedup:.2f}x faster than {than}"
    return f"{1.0 / speedup:.2f}x slower than {than}"


def verdict(case: DemoCase) -> str:
    """One sentence: how the best plan compares with local-only and cloud-only."""
    speedup, vs_cloud = case.speedup_vs_local, case.speedup_vs_cloud
    used = case.devices_used
    if case.beats_both:
        return (f"it splits the model over {', '.join(used)} and beats both local-only ({_ms(case.local.latency_s)}, "  # type: ignore[union-attr]
                f"{speedup:.2f}x) and cloud-only ({_ms(case.cloud.latency_s)}, {vs_cloud:.2f}x)")  # type: ignore[union-attr]
    vs_local = (_faster_or_slower(speedup, "local-only") if speedup == speedup and speedup > 0
                else "local-only is not possible here (a layer cannot run on the source)")
    return (vs_local + (f", {_faster_or_slower(vs_cloud, 'cloud-only')}" if vs_cloud == vs_cloud and vs_cloud > 0 else "")
            + (f" (runs everything on {used[0]})" if len(used) == 1 else ""))


def summary_lines(case: DemoCase) -> list[str]:
    """The case's section of ``summary.md``."""
    problem, graph, best = case.problem, case.problem.graph, case.best_plan
    lines = [f"## {case.model} on {case.env}", "",
             f"{len(graph)} layers, {graph.total_flops / 1e9:.2f} GFLOPs, {graph.total_param_bytes / 1e6:.1f} MB of weights; "
             f"source device `{problem.source}`; objective {problem.objective.describe()}.", "",
             "| planner | latency | source energy | total energy | cost | devices used | optimal | solve |",
             "|---|---|---|---|---|---|---|---|"]
    for name, p in case.comparison.plans.items():
        used = ",".join(sorted({p.placement[n.name] for n in graph if not n.is_input}))  # type: ignore[union-attr]
        lines.append(f"| {name} | {_ms(p.latency_s)} | {p.energy_source_j:.3f} J | {p.energy_total_j:.3f} J | "  # type: ignore[union-attr]
                     f"{p.cost:.3g} | {used} | {'yes' if p.optimal else '-'} | {p.solve_s * 1e3:.1f} ms |")
    lines += ["", f"Best: **{case.best}**, {_ms(best.latency_s)}; {verdict(case)}."]
    if case.upload_plans:
        lines += ["", f"Uploading the server side to `{case.server}` while queries run (IONN model, queries back to back):",
                  "", "| upload plan | partitions | upload ends | queries done by then | mean latency during upload |",
                  "|---|---|---|---|---|"]
        for name, u in case.upload_plans.items():
            ends = u.partitions[-1].arrives_s if u.partitions else 0.0
            lines.append(f"| {name} | {len(u.partitions)} | {ends:.2f} s | {u.metrics.queries_done_by_upload_end} | "
                         f"{_ms(u.metrics.mean_latency_during_upload_s)} |")
    return [*lines, ""]


def _case(model: str, env_name: str, out: Path, echo: Any, progress: Progress = SILENT) -> list[str]:
    """Plan one model on one environment; write its JSON; return its summary lines."""
    case = demo_case(model, env_name, progress=progress)
    path = out / f"{model}@{env_name}.json"
    write_text_output(path, "--out", json.dumps(case.to_dict(), indent=1))
    echo(f"{model} on {env_name}: best {case.best} {_ms(case.best_plan.latency_s)}; {verdict(case)}; wrote {path}")
    return summary_lines(case)


def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="folder the report is written to")] = Path("report"),
    quiet: QuietOpt = False,
) -> None:
    """Plan AlexNet on neurosurgeon-wifi, VGG16 and GoogLeNet on three-tier and migration-12; compare every planner."""
    start = time.perf_counter()
    check_output_path(out / "summary.md", "--out")  # the folder and its parents may be created, never replaced
    progress = progress_for(quiet)
    summary = ["# tiercut demo", "",
               "Every applicable planner on each model and environment; catalog devices' times come from their "
               "achieved per-class efficiencies (`tiercut devices`), the migration seed's GHz devices from this "
               "project's reference host.", ""]
    cases = demo_cases()
    with progress.step("tiercut demo"):
        for index, (model, env_name) in enumerate(cases):
            progress.advance(index, len(cases), f"{model} on {env_name}")
            summary += _case(model, env_name, out, typer.echo, progress)
    summary.append(f"Made in {time.perf_counter() - start:.1f} s by `tiercut demo`.")
    report = out / "summary.md"
    write_text_output(report, "--out", "\n".join(summary) + "\n")
    typer.echo(f"report: {report.resolve()}")
    from tiercut.report import write_report

    html = write_report([out / f"{model}@{env_name}.json" for model, env_name in cases], out / "report.html",
                        title="tiercut demo")
    typer.echo(f"HTML report: {html.resolve()}")
