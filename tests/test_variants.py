"""Model variants (MCDNN): the planner picks the variant and its placement under budgets and an accuracy floor.

- on random small problems (hypothesis), ``mcdnn`` equals brute force over
  variants x every placement, for both goals and with latency, energy and
  cost budgets;
- the plan's figures recompute from the JSON alone (the chosen variant's
  problem and the placement);
- no feasible variant is reported as such; bad variant files are one-line
  errors.
"""

from __future__ import annotations

import json
import math
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiercut.cli import main
from tiercut.cost import evaluate
from tiercut.errors import TiercutError
from tiercut.plan import get_planner
from tiercut.plan.synthetic import random_problem
from tiercut.plan.variants import brute_force_variants
from tiercut.problem import Constraints, Problem
from tiercut.problem.variants import ModelVariant, VariantPlan, VariantProblem

METRICS = ("latency_s", "energy_source_j", "energy_total_j", "cost")


def random_variants(rng: random.Random, n_variants: int, n_devices: int, goal: str, objective: str) -> VariantProblem:
    """Variants of different sizes over one environment, with random accuracies and budgets from the first one."""
    base = random_problem(rng, n_nodes=rng.randint(3, 5), n_devices=n_devices, objective=objective)
    local = evaluate(base, {n.name: base.source for n in base.graph})
    budgets = Constraints(
        latency_budget_s=rng.choice([None, local.latency_s * rng.uniform(0.3, 1.2)]),
        energy_source_budget_j=rng.choice([None, local.energy_source_j * rng.uniform(0.3, 1.2)]),
        cost_budget=rng.choice([None, rng.uniform(0.3, 2.0) * local.cost]) if local.cost > 1e-9 else None,
    )
    variants = []
    for k in range(n_variants):
        other = random_problem(rng, n_nodes=rng.randint(2, 5), n_devices=n_devices, objective=objective)
        compute = {n: {d: s for d, s in row.items() if d in base.device_names} for n, row in other.compute_s.items()}
        problem = Problem(other.graph, base.devices, base.links, base.source, compute, base.objective, budgets)
        variants.append(ModelVariant(f"v{k}", problem, round(rng.uniform(0.5, 0.95), 3), "random (test)"))
    return VariantProblem(tuple(variants), accuracy_min=rng.choice([0.0, 0.6, 0.8]), goal=goal)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rng=st.randoms(use_true_random=False), n_variants=st.integers(1, 3), n_devices=st.integers(2, 3),
       goal=st.sampled_from(["accuracy", "objective"]), objective=st.sampled_from(["latency", "energy_source", "cost"]))
def test_mcdnn_equals_brute_force_over_variants_and_placements(rng, n_variants, n_devices, goal, objective):
    # a seeded stdlib generator: hypothesis's own random draws extreme floats (objectives ~1e-20), which HiGHS
    # cannot prove; the ILP's numerics are tested elsewhere
    problem = random_variants(random.Random(rng.getrandbits(32)), n_variants, n_devices, goal, objective)
    if all(v.accuracy < problem.accuracy_min for v in problem.variants):  # nothing to plan: a user's error
        with pytest.raises(TiercutError, match="lower --accuracy-min"):
            get_planner("mcdnn").solve_variants(problem)
        return
    result = get_planner("mcdnn").solve_variants(problem)
    name, value = brute_force_variants(problem)
    assert result.variant == name
    if name:
        assert result.feasible and result.optimal, (result.plan.note, problem.variants[0].problem.constraints)
        assert result.plan.objective_value == pytest.approx(value, rel=1e-7, abs=1e-12)
        assert problem.variant(name).accuracy >= problem.accuracy_min
    else:
        assert not result.feasible


def test_the_most_accurate_fitting_variant_wins_and_figures_recompute_from_json():
    rng = random.Random(3)
    problem = random_variants(rng, 3, 2, "accuracy", "latency")
    # budgets off: every variant fits, so the most accurate one is chosen
    free = VariantProblem(tuple(ModelVariant(v.name, v.problem.with_constraints(Constraints()), v.accuracy,
                                             v.accuracy_source) for v in problem.variants), goal="accuracy")
    result = get_planner("mcdnn").solve_variants(free)
    assert result.variant == max(free.variants, key=lambda v: v.accuracy).name
    data = json.loads(json.dumps({"problem": free.to_dict(), "plan": result.to_dict()}))
    again, plan = VariantProblem.from_dict(data["problem"]), VariantPlan.from_dict(data["plan"])
    ev = evaluate(again.variant(plan.variant).problem, plan.plan.placement)
    for metric in METRICS:
        assert getattr(ev, metric) == pytest.approx(getattr(plan.plan, metric), rel=1e-9)
    assert [o["variant"] for o in data["plan"]["outcomes"]] == [v.name for v in free.variants]
    # the objective goal picks the cheapest instead
    cheapest = get_planner("mcdnn").solve_variants(VariantProblem(free.variants, goal="objective"))
    best = min(cheapest.outcomes, key=lambda o: o.plan.objective_value)
    assert cheapest.variant == best.variant


def test_nothing_fits_is_infeasible_and_names_no_variant():
    rng = random.Random(1)
    base = random_variants(rng, 2, 2, "accuracy", "latency")
    tight = VariantProblem(tuple(
        ModelVariant(v.name, v.problem.with_constraints(Constraints(latency_budget_s=1e-12)), v.accuracy, v.accuracy_source)
        for v in base.variants))
    result = get_planner("mcdnn").solve_variants(tight)
    assert result.variant == "" and not result.feasible and not result.plan.feasible
    with pytest.raises(TiercutError, match="lower --accuracy-min"):
        get_planner("mcdnn").solve_variants(VariantProblem(base.variants, accuracy_min=0.99))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda v: {**v, "accuracy": 1.5}, "fraction in [0, 1]"),
        (lambda v: {**v, "accuracy_source": ""}, "accuracy_source"),
    ],
)
def test_bad_variants_are_refused(change, message):
    rng = random.Random(0)
    problem = random_variants(rng, 2, 2, "accuracy", "latency")
    data = problem.to_dict()
    data["variants"][0] = change(data["variants"][0])
    with pytest.raises(TiercutError, match=message.replace("[", r"\[").replace("]", r"\]")):
        VariantProblem.from_dict(data)
    with pytest.raises(TiercutError, match="goal"):
        VariantProblem(problem.variants, goal="speed")
    with pytest.raises(TiercutError, match="names must differ"):
        VariantProblem((problem.variants[0], problem.variants[0]))


def test_inner_planner_must_be_exact():
    with pytest.raises(TiercutError, match="not exact under budgets"):
        get_planner("mcdnn", inner="greedy").solve_variants(random_variants(random.Random(0), 1, 2, "accuracy", "latency"))


# ----------------------------------------------------------------- CLI
def _fails(argv, capsys, message):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err, err


@pytest.mark.parametrize(
    "text, message",
    [
        ("variants: []\n", "lists no variants"),
        ("variants:\n  - {name: a, model: resnet18}\n", "needs accuracy"),
        ("variants:\n  - {name: a, model: resnet18, accuracy: 0.7}\n", "accuracy_source"),
        ("variants:\n  - {name: a, accuracy: 0.7, accuracy_source: x}\n", "needs a model"),
        ("variants:\n  - {name: a, model: resnet18, accuracy: 0.7, accuracy_source: x, colour: red}\n", "unknown key"),
        ("accuracy_min: 2\nvariants:\n  - {name: a, model: resnet18, accuracy: 0.7, accuracy_source: x}\n", "accuracy_min"),
        ("[1, 2]\n", "must be a mapping"),
    ],
)
def test_cli_bad_variants_file(tmp_path, capsys, text, message):
    path = tmp_path / "variants.yaml"
    path.write_text(text)
    _fails(["plan", "--variants", str(path), "--env", "neurosurgeon-wifi"], capsys, message)


def test_cli_variants_conflicts(tmp_path, capsys):
    path = tmp_path / "variants.yaml"
    path.write_text("variants:\n  - {name: a, model: resnet18, accuracy: 0.7, accuracy_source: x}\n")
    _fails(["plan", "--variants", str(path), "--spatial", "auto"], capsys, "drop --spatial auto")
    _fails(["plan", "--variants", str(tmp_path / "missing.yaml")], capsys, "missing.yaml")


@pytest.mark.slow
def test_cli_plans_zoo_variants_under_a_latency_budget(tmp_path, capsys):
    path = tmp_path / "variants.yaml"
    path.write_text(
        "accuracy_min: 0.0\n"
        "variants:\n"
        "  - {name: mobilenet_v2, model: mobilenet_v2, accuracy: 0.71878, accuracy_source: torchvision model card}\n"
        "  - {name: resnet18, model: resnet18, accuracy: 0.69758, accuracy_source: torchvision model card}\n"
        "  - {name: resnet50, model: resnet50, accuracy: 0.7613, accuracy_source: torchvision model card}\n"
    )
    args = ["plan", "--variants", str(path), "--env", "neurosurgeon-wifi", "--json", "-q"]
    assert main(args) == 0
    free = json.loads(capsys.readouterr().out)
    assert free["plan"]["variant"] == "resnet50" and free["plan"]["feasible"]
    latencies = {o["variant"]: o["latency_s"] for o in free["plan"]["outcomes"]}
    budget = (latencies["mobilenet_v2"] + latencies["resnet50"]) / 2
    if latencies["mobilenet_v2"] < budget < latencies["resnet50"]:
        assert main([*args, "--latency-budget", str(budget)]) == 0
        tight = json.loads(capsys.readouterr().out)
        assert tight["plan"]["variant"] != "resnet50" and tight["plan"]["plan"]["latency_s"] <= budget * (1 + 1e-9)
    problem = VariantProblem.from_dict(free["problem"])
    ev = evaluate(problem.variant("resnet50").problem, free["plan"]["plan"]["placement"])
    assert ev.latency_s == pytest.approx(free["plan"]["plan"]["latency_s"], rel=1e-9)
    assert math.isfinite(ev.latency_s)
