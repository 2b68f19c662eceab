"""Model variants (MCDNN): which variant and placement the planner picks as the budgets tighten.

Run ``.venv/bin/python benchmarks/variants.py`` (``--quick``: fewer budgets, the 3G preset only).
Writes ``benchmarks/results/variants.json`` and prints a table. Each variant's layer graph is traced once and
planned on every preset (the compressed digits models are trained once); the full run took about 1 minute on
the shared 2-core machine at load 6.4-6.8 (the first preset 47 s of it, training the digits family; the zoo's
graphs came from the graph cache -- tracing them cold adds about 36 s).

Sections:

1. ``digits``: the digits CNN (``tiercut.exits.models:digits_cnn``)
   trained on scikit-learn's bundled digits (fixed seed) and its compressed
   versions (``tiercut compress``: fp16, int8, channel pruning and low-rank
   fine-tuned, magnitude pruning fine-tuned), each with its top-1 accuracy
   *measured* on the held-out 25%; planned on Neurosurgeon's presets.
2. ``zoo``: mobilenet_v2, resnet18, resnet34, resnet50 with random weights
   (the graph and the times do not depend on the weights) and their
   ImageNet-1k top-1 *declared* by torchvision's model cards (the weights'
   ``meta['_metrics']``, shipped with torchvision: no download).

For each family and preset, the latency budget sweeps from below the
fastest variant's best latency to above the slowest one's, and ``mcdnn``
(goal: accuracy, inner ILP) picks the variant and placement; a second sweep
bounds the device's energy instead. Each row: the budget, the chosen
variant, its accuracy and its latency / energy. Solve times are recorded
with the machine's load (shared 2-core machine).
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import host_description, write_result

PRESETS = ("neurosurgeon-3g", "neurosurgeon-lte", "neurosurgeon-wifi")
#: torchvision's declared ImageNet-1k top-1 of each zoo variant (model card of the IMAGENET1K_V1 weights)
ZOO_VARIANTS = (
    ("mobilenet_v2", "mobilenet_v2", "MobileNet_V2_Weights"),
    ("resnet18", "resnet18", "ResNet18_Weights"),
    ("resnet34", "torchvision.models:resnet34", "ResNet34_Weights"),
    ("resnet50", "resnet50", "ResNet50_Weights"),
)
DIGITS_METHODS = (
    ("reference", None, {}, 0),
    ("fp16", "fp16", {}, 0),
    ("int8", "int8", {}, 0),
    ("prune-channel-0.5", "prune", {"ratio": 0.5}, 4),
    ("lowrank-0.8", "lowrank", {"energy": 0.8}, 4),
    ("prune-magnitude-0.5", "prune", {"ratio": 0.5, "pruning": "magnitude"}, 4),
)


@functools.cache
def digits_models() -> tuple[tuple[str, Any, float], ...]:
    """The digits CNN and its compressed versions with their top-1 on the held-out digits (trained once)."""
    import torch

    from tiercut.exits.models import digits_cnn
    from tiercut.preprocess.evaluation import run_compression

    out = []
    x = torch.zeros(1, 1, 8, 8)
    for label, method, settings, finetune in DIGITS_METHODS:
        torch.manual_seed(0)
        run = run_compression(digits_cnn(), (x,), method or "fp16", digits=True, finetune_epochs=finetune, runs=3,
                              **settings)
        model = run.reference_model if method is None else run.result.model
        report = run.reference if method is None else run.compressed
        out.append((label, model, float(report.accuracy)))
    return tuple(out)


@functools.cache
def digits_graphs() -> tuple[tuple[str, Any, float], ...]:
    """The digits family's layer graphs (traced once; every preset plans the same graphs)."""
    import torch

    from tiercut.pipeline import graph as graph_step

    x = torch.zeros(1, 1, 8, 8)
    return tuple((label, graph_step(model, (x,)), accuracy) for label, model, accuracy in digits_models())


def digits_variants(env: str) -> list[Any]:
    """The digits CNN family as :class:`ModelVariant` on ``env``, accuracies measured on the held-out digits."""
    from tiercut.exits.train import DATA_SOURCE
    from tiercut.pipeline import problem as problem_step
    from tiercut.problem.variants import ModelVariant

    source = f"measured here: top-1 on the held-out 25% of {DATA_SOURCE}"
    return [ModelVariant(label, problem_step(graph, env), accuracy, source) for label, graph, accuracy in digits_graphs()]


@functools.cache
def zoo_graph(spec: str) -> Any:
    """A zoo model's layer graph at 224x224 (traced once, then from the graph cache; shared by the presets)."""
    from tiercut.pipeline import graph as graph_step

    return graph_step(spec, input_shape=(1, 3, 224, 224))


def zoo_variants(env: str) -> list[Any]:
    import torchvision.models as tvm

    from tiercut.pipeline import problem as problem_step
    from tiercut.problem.variants import ModelVariant

    out = []
    for label, spec, weights in ZOO_VARIANTS:
        meta = getattr(tvm, weights).IMAGENET1K_V1.meta
        accuracy = meta["_metrics"]["ImageNet-1K"]["acc@1"] / 100
        source = (f"declared: torchvision {weights}.IMAGENET1K_V1 model card, ImageNet-1k acc@1 "
                  f"({meta.get('recipe', '')})")
        out.append(ModelVariant(label, problem_step(zoo_graph(spec), env), accuracy, source))
    return out


def sweep(variants: list[Any], metric: str, points: int) -> list[dict[str, Any]]:
    """``mcdnn`` (goal accuracy) as ``metric``'s budget runs from below the cheapest variant to above the dearest."""
    from tiercut.plan import get_planner
    from tiercut.problem import Constraints
    from tiercut.problem.variants import ModelVariant, VariantProblem

    planner = get_planner("mcdnn")
    free = planner.solve_variants(VariantProblem(tuple(variants)))
    best = {o.variant: getattr(o.plan, "latency_s" if metric == "latency" else "energy_source_j") for o in free.outcomes}
    low, high = min(best.values()) * 0.8, max(best.values()) * 1.05
    rows = []
    for k in range(points):
        budget = low * (high / low) ** (k / max(1, points - 1))
        key = "latency_budget_s" if metric == "latency" else "energy_source_budget_j"
        bounded = tuple(
            ModelVariant(v.name, v.problem.with_constraints(Constraints(**{key: budget})), v.accuracy, v.accuracy_source)
            for v in variants
        )
        start = time.perf_counter()
        result = planner.solve_variants(VariantProblem(bounded))
        rows.append({
            "budget": budget,
            "variant": result.variant or None,
            "accuracy": result.accuracy if result.variant else None,
            "latency_s": result.plan.latency_s if result.variant else None,
            "energy_source_j": result.plan.energy_source_j if result.variant else None,
            "devices": sorted(set(result.plan.placement.values())) if result.variant else [],
            "optimal": result.optimal,
            "solve_s": time.perf_counter() - start,
        })
    return rows


def run(quick: bool) -> dict[str, Any]:
    """Variant selection under latency and energy budgets on the digits and the zoo families."""
    presets = PRESETS[:1] if quick else PRESETS
    points = 5 if quick else 9
    out: dict[str, Any] = {"host": host_description(), "quick": quick, "families": {}}
    for family, build in (("digits", digits_variants), ("zoo", zoo_variants)):
        for env in presets:
            start = time.perf_counter()
            variants = build(env)
            entry = {
                "variants": [{"name": v.name, "accuracy": v.accuracy, "accuracy_source": v.accuracy_source,
                              "nodes": len(v.problem.graph), "flops": v.problem.graph.total_flops,
                              "param_bytes": v.problem.graph.total_param_bytes} for v in variants],
                "latency_sweep": sweep(variants, "latency", points),
                "energy_sweep": sweep(variants, "energy", points),
                "seconds": time.perf_counter() - start,
            }
            out["families"][f"{family}@{env}"] = entry
            print(f"{family}@{env}:")
            for metric in ("latency", "energy"):
                for row in entry[f"{metric}_sweep"]:
                    unit = "ms" if metric == "latency" else "mJ"
                    chosen = row["variant"] or "(none fits)"
                    acc = f"{row['accuracy']:.4f}" if row["accuracy"] is not None else "-"
                    print(f"  {metric} budget {row['budget'] * 1e3:10.3f} {unit}: {chosen:20s} accuracy {acc}")
    out["load_after"] = host_description()["load_average"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer budgets, the 3G preset only")
    args = parser.parse_args(argv)
    import warnings

    warnings.filterwarnings("ignore")
    path = write_result("variants", run(args.quick))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
