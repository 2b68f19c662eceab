"""``tiercut demo``: the main job on an embedded default.

AlexNet on ``neurosurgeon-wifi`` (the paper's own setting: a Jetson TK1
and a Tesla K40 over Wi-Fi, where the best plan splits the model and beats
both running everything on the phone and sending everything to the
server), then VGG16 and GoogLeNet on the ``three-tier`` and ``migration-12`` presets:
extract the layer graph, predict every layer's time on every device, run
every applicable planner, compare them, plan the partition uploads on the
first server of the best plan, and write it all to a report folder
(``summary.md`` to read, one ``{"problem", "plans", "upload_plans"}`` JSON per
case to recompute from).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from tiercut.cli.checks import check_output_path, write_text_output

DEMO_MODELS = ("vgg16", "googlenet")
DEMO_ENVS = ("three-tier", "migration-12")
#: cases on presets faithful to their paper, shown first: the split beats local-only and cloud-only
FAITHFUL_CASES = (("alexnet", "neurosurgeon-wifi"),)


def demo_cases() -> list[tuple[str, str]]:
    """(model, environment) of every case: the faithful ones, then each demo model on each demo environment."""
    return [*FAITHFUL_CASES, *((m, e) for m in DEMO_MODELS for e in DEMO_ENVS)]


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def _case(model: str, env_name: str, out: Path, echo: Any) -> list[str]:
    """Plan one model on one environment; write its JSON; return its summary lines."""
    from tiercut.cli.plan_cmd import compare_plans
    from tiercut.env import load_environment
    from tiercut.graph import extract_graph
    from tiercut.problem import build_problem
    from tiercut.upload import UPLOAD_PLANNERS, plan_upload

    graph = extract_graph(model)
    problem = build_problem(graph, load_environment(env_name))
    plans = compare_plans(problem)
    feasible = {name: p for name, p in plans.items() if p.feasible}
    lowest = min(p.objective_value for p in feasible.values())
    tied = [n for n, p in feasible.items() if p.objective_value <= lowest * (1 + 1e-9)]
    best_name = next((n for n in tied if feasible[n].optimal), tied[0])  # name a planner that proves it
    best = feasible[best_name]
    local = plans.get("local")
    from tiercut.plan import get_planner

    clouds = [get_planner("all-on", device=d.name).solve(problem) for d in problem.devices if d.tier == "cloud"]
    cloud = min((c for c in clouds if c.feasible), key=lambda c: c.latency_s, default=None)

    upload_plans: dict[str, Any] = {}
    servers = sorted({d for n, d in best.placement.items() if d != problem.source})
    if servers:
        for name in UPLOAD_PLANNERS:
            if name == "exhaustive":
                continue
            upload_plans[name] = plan_upload(problem, algorithm=name, server=servers[0])

    path = out / f"{model}@{env_name}.json"
    write_text_output(path, "--out", json.dumps({
        "problem": problem.to_dict(),
        "plans": {k: p.to_dict() for k, p in plans.items()},
        "upload_plans": {k: u.to_dict() for k, u in upload_plans.items()},
    }, indent=1))

    lines = [f"## {model} on {env_name}", "",
             f"{len(graph)} layers, {graph.total_flops / 1e9:.2f} GFLOPs, {graph.total_param_bytes / 1e6:.1f} MB of weights; "
             f"source device `{problem.source}`; objective {problem.objective.describe()}.", "",
             "| planner | latency | source energy | total energy | cost | devices used | optimal | solve |",
             "|---|---|---|---|---|---|---|---|"]
    for name, p in plans.items():
        used = ",".join(sorted({p.placement[n.name] for n in graph if not n.is_input}))
        lines.append(f"| {name} | {_ms(p.latency_s)} | {p.energy_source_j:.3f} J | {p.energy_total_j:.3f} J | {p.cost:.3g} | "
                     f"{used} | {'yes' if p.optimal else '-'} | {p.solve_s * 1e3:.1f} ms |")
    local_ok = local is not None and math.isfinite(local.latency_s)
    cloud_ok = cloud is not None and math.isfinite(cloud.latency_s)
    speedup = local.latency_s / best.latency_s if local_ok and best.latency_s > 0 else float("nan")
    vs_cloud = cloud.latency_s / best.latency_s if cloud_ok and best.latency_s > 0 else float("nan")
    placed = {best.placement[n.name] for n in graph if not n.is_input}
    used = [d.name for d in problem.devices if d.name in placed]
    vs_local = (f"{speedup:.2f}x faster than local-only" if local_ok
                else "local-only is not possible here (a layer cannot run on the source)")
    verdict = (
        f"it splits the model over {', '.join(used)} and beats both local-only ({_ms(local.latency_s)}, "
        f"{speedup:.2f}x) and cloud-only ({_ms(cloud.latency_s)}, {vs_cloud:.2f}x)"
        if local_ok and cloud_ok and len(used) > 1 and speedup > 1.0 and vs_cloud > 1.0
        else vs_local + (f", {vs_cloud:.2f}x faster than cloud-only" if cloud_ok else "")
        + (f" (runs everything on {used[0]})" if len(used) == 1 else "")
    )
    lines += ["", f"Best: **{best_name}**, {_ms(best.latency_s)}; {verdict}."]
    if upload_plans:
        lines += ["", f"Uploading the server side to `{servers[0]}` while queries run (IONN model, queries back to back):", "",
                  "| upload plan | partitions | upload ends | queries done by then | mean latency during upload |",
                  "|---|---|---|---|---|"]
        for name, u in upload_plans.items():
            ends = u.partitions[-1].arrives_s if u.partitions else 0.0
            lines.append(f"| {name} | {len(u.partitions)} | {ends:.2f} s | {u.metrics.queries_done_by_upload_end} | "
                         f"{_ms(u.metrics.mean_latency_during_upload_s)} |")
    echo(f"{model} on {env_name}: best {best_name} {_ms(best.latency_s)}; {verdict}; wrote {path}")
    return [*lines, ""]


def demo(
    out: Annotated[Path, typer.Option(help="folder the report is written to")] = Path("report"),
) -> None:
    """Plan AlexNet on neurosurgeon-wifi, VGG16 and GoogLeNet on three-tier and migration-12; compare every planner."""
    start = time.perf_counter()
    check_output_path(out / "summary.md", "--out")  # the folder and its parents may be created, never replaced
    summary = ["# tiercut demo", "",
               "Every applicable planner on each model and environment; catalog devices' times come from their "
               "achieved per-class efficiencies (`tiercut devices`), the migration seed's GHz devices from this "
               "project's reference host.", ""]
    cases = demo_cases()
    for model, env_name in cases:
        summary += _case(model, env_name, out, typer.echo)
    summary.append(f"Made in {time.perf_counter() - start:.1f} s by `tiercut demo`.")
    report = out / "summary.md"
    write_text_output(report, "--out", "\n".join(summary) + "\n")
    typer.echo(f"report: {report.resolve()}")
    from tiercut.report import write_report

    html = write_report([out / f"{model}@{env_name}.json" for model, env_name in cases], out / "report.html",
                        title="tiercut demo")
    typer.echo(f"HTML report: {html.resolve()}")
