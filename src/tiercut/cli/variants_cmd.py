"""``tiercut plan --variants FILE``: choose the model variant and its placement (MCDNN, :mod:`tiercut.plan.variants`).

The file (YAML or JSON) lists the variants and the accuracy floor::

    accuracy_min: 0.70          # optional, default 0
    goal: accuracy              # accuracy (default: the most accurate that fits) | objective
    variants:
      - name: resnet18
        model: resnet18                       # any MODEL 'tiercut plan' takes (zoo, compressed directory, ...)
        accuracy: 0.69758
        accuracy_source: torchvision ResNet18_Weights.IMAGENET1K_V1 model card (ImageNet-1k top-1)
      - name: digits-int8
        model: out/digits-int8                # a 'tiercut compress' directory
        input_shape: 1,1,8,8                  # optional, like --input-shape
        accuracy: 0.962
        accuracy_source: measured on scikit-learn's digits (held-out 25%) by 'tiercut compress --digits'

Each variant's problem is built with the command's environment, profile,
objective and budgets (``--latency-budget``, ``--energy-budget``,
``--cost-budget``), as ``tiercut plan MODEL`` would build it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from tiercut.errors import TiercutError

_KEYS = {"name", "model", "accuracy", "accuracy_source", "input_shape"}
_TOP = {"accuracy_min", "goal", "variants"}


def read_variants_file(path: Path) -> dict[str, Any]:
    """The checked content of a variants file (module docstring), before any model work."""
    from tiercut.datafiles import read_data_file
    from tiercut.problem.variants import GOALS

    data = read_data_file(path, "variants file")
    where = f"variants file {path}"
    if not isinstance(data, dict):
        raise TiercutError(f"{where} must be a mapping with 'variants' (a list) and optional accuracy_min, goal")
    unknown = set(data) - _TOP
    if unknown:
        raise TiercutError(f"{where}: unknown key {sorted(unknown)[0]!r}; use {', '.join(sorted(_TOP))}")
    entries = data.get("variants")
    if not isinstance(entries, list) or not entries:
        raise TiercutError(f"{where} lists no variants; give 'variants:' with at least one entry")
    accuracy_min = data.get("accuracy_min", 0.0)
    if isinstance(accuracy_min, bool) or not isinstance(accuracy_min, (int, float)) or not 0 <= accuracy_min <= 1:
        raise TiercutError(f"{where}: accuracy_min {accuracy_min!r} must be a fraction in [0, 1], e.g. 0.7")
    goal = data.get("goal", "accuracy")
    if goal not in GOALS:
        raise TiercutError(f"{where}: goal {goal!r} is not known; use {' or '.join(GOALS)}")
    checked = []
    for i, entry in enumerate(entries):
        label = f"{where}: variant {i + 1}"
        if not isinstance(entry, dict):
            raise TiercutError(f"{label} must be a mapping with name, model, accuracy, accuracy_source")
        unknown = set(entry) - _KEYS
        if unknown:
            raise TiercutError(f"{label}: unknown key {sorted(unknown)[0]!r}; use {', '.join(sorted(_KEYS))}")
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise TiercutError(f"{label} needs a name")
        if not isinstance(entry.get("model"), str) or not entry["model"]:
            raise TiercutError(f"{label} ({name}) needs a model (a zoo name, a compressed directory, a factory)")
        accuracy = entry.get("accuracy")
        if isinstance(accuracy, bool) or not isinstance(accuracy, (int, float)):
            raise TiercutError(f"{label} ({name}) needs accuracy, a fraction in [0, 1]")
        source = entry.get("accuracy_source")
        if not isinstance(source, str) or not source.strip():
            raise TiercutError(
                f"{label} ({name}) gives no accuracy_source; say where its accuracy comes from (measured on ..., "
                "or the model card / paper it is declared in)"
            )
        shape = entry.get("input_shape")
        if shape is not None and not isinstance(shape, str):
            raise TiercutError(f"{label} ({name}): input_shape must be a string like '1,3,224,224'")
        checked.append({"name": name, "model": entry["model"], "accuracy": float(accuracy), "accuracy_source": source,
                        "input_shape": shape})
    names = [c["name"] for c in checked]
    if len(set(names)) != len(names):
        raise TiercutError(f"{where}: variant names must differ ({', '.join(names)})")
    return {"accuracy_min": float(accuracy_min), "goal": goal, "variants": checked}


def plan_from_cli(
    path: Path, algorithm: str, problem_options: Any, model_options: Any, as_json: bool, out: Path | None,
    progress: Any, given: Any,
) -> None:
    """``tiercut plan --variants FILE``: every check before any model work, then :func:`plan_variants`."""
    from tiercut.cli.checks import check_output_path
    from tiercut.plan.base import EXACT_INNER

    for option, value in given:
        if value:
            raise TiercutError(f"--variants names the models and their accuracy_min; drop {option} (or --variants)")
    if out is not None:
        check_output_path(out, "--out")
    read_variants_file(path)  # a bad file fails before any model work
    inner = "ilp" if algorithm == "mcdnn" else algorithm
    if inner not in EXACT_INNER:
        raise TiercutError(f"--variants plans each variant exactly; use --algorithm {' or '.join(EXACT_INNER)}")
    plan_variants(path, problem_options, model_options, inner, as_json, out, progress)


def plan_variants(
    path: Path, problem_options: Any, model_options: Any, inner: str, as_json: bool, out: Path | None, progress: Any
) -> None:
    """Build every variant's problem, choose with ``mcdnn``, print the choice (or its JSON)."""
    from dataclasses import replace

    from tiercut.cli.options import emit_json
    from tiercut.plan import get_planner
    from tiercut.problem.variants import ModelVariant, VariantProblem

    spec = read_variants_file(path)
    planner = get_planner("mcdnn", inner=inner)
    variants = []
    for entry in spec["variants"]:
        options = replace(model_options, input_shape=entry["input_shape"]) if entry["input_shape"] else model_options
        problem = problem_options.single_user(options.request(entry["model"]), progress)
        variants.append(ModelVariant(entry["name"], problem, entry["accuracy"], entry["accuracy_source"]))
    vp = VariantProblem(tuple(variants), spec["accuracy_min"], spec["goal"], name=Path(path).stem)
    result = planner.solve_variants(vp)  # type: ignore[attr-defined]
    payload = {"problem": vp.to_dict(), "plan": result.to_dict()}
    if out is not None:
        emit_json(payload, out)
    if as_json:
        if out is None:
            emit_json(payload, None)
        return
    for o in result.outcomes:
        if o.plan is None:
            state = f"below accuracy_min {vp.accuracy_min:.3g}"
        else:
            state = (f"latency {o.plan.latency_s * 1e3:.2f} ms, source energy {o.plan.energy_source_j:.4g} J, "
                     f"cost {o.plan.cost:.4g}" + ("" if o.plan.feasible else f" (breaks {', '.join(o.plan.violations)})"))
        mark = "*" if o.variant == result.variant else " "
        typer.echo(f"{mark} {o.variant:20s} accuracy {o.accuracy:.4f}  {state}")
    if result.variant:
        typer.echo(f"chosen: {result.variant} (goal {vp.goal}; {'optimal' if result.optimal else 'not proven'}), "
                   f"devices {', '.join(sorted(set(result.plan.placement.values())))}")
    else:
        typer.echo("no variant meets the budgets; the most accurate one's plan is shown as infeasible")


__all__ = ["plan_from_cli", "plan_variants", "read_variants_file"]
