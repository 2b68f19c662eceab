"""Input-aware routing (AppealNet): the threshold curve, the expected cost, the router file, the runtime, the CLI.

- The fraction offloaded is non-increasing in the threshold (by construction,
  checked on random scores and on a trained router's held-out scores). The
  accuracy is NOT monotone in general (appealing an input the small model
  gets right and the big one wrong lowers it); what is checked is that it is
  exactly the mixture of the two models' correctness, the big model's
  accuracy when every input is appealed and the small one's when none is.
- The expected cost is the cost model's local path plus the fraction times
  its appeal path, and recomputes from the JSON document alone.
- In the runtime every answer equals the output of the model that gave it
  (the two-head model's here, the big model's on the worker).
"""

from __future__ import annotations

import itertools
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exits_cli_fixtures import run as run_cli
from tiercut.appeal.curve import RoutedAnswers, check_threshold, routing_curve
from tiercut.cost import evaluate
from tiercut.cost.input_routing import (
    ROUTING_METRICS,
    expected_routing,
    expected_routing_from_dict,
    routing_document,
)
from tiercut.errors import TiercutError
from tiercut.plan.synthetic import random_problem

TINY = {"epochs_big": 2, "epochs_small": 3, "epochs_predictor": 3}


# ---------------------------------------------------------------- the curve
@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.booleans(), st.booleans()), min_size=1, max_size=40),
       st.lists(st.floats(0, 1), min_size=2, max_size=12))
def test_offloaded_fraction_is_non_increasing_and_accuracy_is_the_mixture(rows, thresholds):
    score = np.array([r[0] for r in rows])
    small = np.array([r[1] for r in rows])
    big = np.array([r[2] for r in rows])
    answers = RoutedAnswers(score, small, big)
    curve = routing_curve(answers, thresholds)
    assert [p.threshold for p in curve] == sorted(p.threshold for p in curve)
    fractions = [p.fraction_offloaded for p in curve]
    assert all(a >= b for a, b in itertools.pairwise(fractions))
    for p in curve:
        sent = score > p.threshold
        assert p.fraction_offloaded == pytest.approx(sent.mean())
        assert p.accuracy == pytest.approx(np.where(sent, big, small).mean())
    assert answers.point(1.0).accuracy == pytest.approx(small.mean())  # scores are <= 1: nothing appealed
    if (score > 0).all():
        assert answers.point(0.0).accuracy == pytest.approx(big.mean())


def test_accuracy_is_not_monotone_when_appeals_hurt():
    # the small model is right and the big one wrong on the input with the highest score
    answers = RoutedAnswers(np.array([0.9, 0.1]), np.array([True, False]), np.array([False, True]))
    accuracies = [p.accuracy for p in routing_curve(answers, [0.0, 0.5, 0.95])]
    assert accuracies == [0.5, 0.0, 0.5]


def test_thresholds_and_answers_are_checked():
    for bad in (-0.1, 1.5, math.nan, math.inf):
        with pytest.raises(TiercutError, match="from 0 to 1"):
            check_threshold(bad)
    with pytest.raises(TiercutError, match="one score"):
        RoutedAnswers(np.array([0.5]), np.array([True, False]), np.array([True]))


# ---------------------------------------------------------------- expected cost (the cost model)
def _problems(seed: int = 3):
    rng = random.Random(seed)
    small = random_problem(rng, n_nodes=4, n_devices=3, shape="chain")
    big = random_problem(rng, n_nodes=7, n_devices=3, shape="dag")
    return small, big


def test_expected_cost_is_the_local_path_plus_the_fraction_of_the_appeal_path():
    small, big = _problems()
    local = evaluate(small, {n.name: small.source for n in small.graph})
    appeal = evaluate(big, {n.name: (big.source if n.is_input else "d2") for n in big.graph})
    previous = None
    for f in (0.0, 0.25, 0.5, 1.0):
        expected = expected_routing(small, big, "d2", f)
        for metric in ROUTING_METRICS:
            assert expected.expected(metric) == pytest.approx(getattr(local, metric) + f * getattr(appeal, metric))
        if previous is not None:  # more appeals never cost less (every figure is >= 0)
            assert all(expected.expected(m) >= previous.expected(m) for m in ROUTING_METRICS)
        previous = expected
    assert expected_routing(small, big, "d2", 0.0).latency_s == pytest.approx(local.latency_s)


def test_expected_cost_recomputes_from_the_json_document_alone():
    small, big = _problems(5)
    doc = json.loads(json.dumps(routing_document(small, big, "d1", 0.3)))
    again = expected_routing_from_dict(doc)
    for metric in ROUTING_METRICS:
        want = doc["expected"][metric]
        assert (want is None and math.isinf(again.expected(metric))) or again.expected(metric) == pytest.approx(want, rel=1e-12)
    assert doc["expected"]["local"]["latency_s"] == pytest.approx(again.local.latency_s)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"fraction_offloaded": 1.5}, "from 0 to 1"),
        ({"cloud": "d0"}, "is the source"),
        ({"cloud": "moon"}, "'moon' is not a device"),
        ({"schema_version": 7}, "schema_version 7"),
        ({"cloud": None, "drop": "cloud"}, "lacks 'cloud'"),
    ],
)
def test_a_bad_routing_document_is_one_line(change, message):
    small, big = _problems()
    doc = json.loads(json.dumps(routing_document(small, big, "d1", 0.5)))
    if "drop" in change:
        del doc[change["drop"]]
    else:
        doc.update(change)
    with pytest.raises(TiercutError, match=message) as info:
        expected_routing_from_dict(doc)
    assert "\n" not in str(info.value)


def test_problems_from_different_sources_are_refused():
    small, _ = _problems()
    moved = random_problem(random.Random(9), n_nodes=3, n_devices=3)
    from dataclasses import replace

    moved = replace(moved, source="d1")
    with pytest.raises(TiercutError, match="differ"):
        expected_routing(small, moved, "d2", 0.5)
    with pytest.raises(TiercutError, match="a JSON object"):
        expected_routing_from_dict([1, 2])  # type: ignore[arg-type]


# ---------------------------------------------------------------- the router file
def test_bad_router_files_are_one_line(tmp_path: Path):
    import torch
    from safetensors.torch import save_file

    from tiercut.appeal.train import load_router, save_router

    with pytest.raises(TiercutError, match="does not exist"):
        load_router(tmp_path / "none.safetensors")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00\x01not a safetensors file")
    with pytest.raises(TiercutError, match="not a readable safetensors file"):
        load_router(garbage)
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(TiercutError, match="no tiercut router header"):
        load_router(plain)
    meta = {"format": "tiercut-router", "schema_version": 1, "settings": {}, "accuracy_small": 0.5, "accuracy_big": 0.9}
    wrong = tmp_path / "wrong.safetensors"
    save_file({"small.features.2.weight": torch.zeros(3, 3)}, str(wrong), metadata={"router": json.dumps(meta)})
    with pytest.raises(TiercutError, match="does not match tiercut's router models"):
        load_router(wrong)
    with pytest.raises(TiercutError, match=r"must end in \.safetensors"):
        save_router(None, tmp_path / "router.pt")  # type: ignore[arg-type]


def test_router_settings_are_checked():
    from tiercut.appeal.train import RouterSettings

    with pytest.raises(TiercutError, match="epochs_big"):
        RouterSettings(epochs_big=0)


# ---------------------------------------------------------------- trained (slow)
@pytest.fixture(scope="module")
def router_file(tmp_path_factory):
    from tiercut.appeal.train import RouterSettings, save_router, train_router

    path = tmp_path_factory.mktemp("router") / "router.safetensors"
    save_router(train_router(RouterSettings(**TINY)), path)
    return path


@pytest.mark.slow
def test_a_trained_router_round_trips_and_its_curve_keeps_the_contract(router_file):
    import torch

    from tiercut.appeal.curve import router_answers
    from tiercut.appeal.train import load_router

    router = load_router(router_file)
    again = load_router(router_file)
    data = router.data()
    x = data.x_test[:20]
    with torch.no_grad():
        assert torch.equal(router.small(x)[0], again.small(x)[0]) and torch.equal(router.big(x), again.big(x))
    answers = router_answers(router, data.x_test, data.y_test)
    assert answers.small_correct.mean() == pytest.approx(router.accuracy_small)
    assert answers.big_correct.mean() == pytest.approx(router.accuracy_big)
    curve = routing_curve(answers)
    fractions = [p.fraction_offloaded for p in curve]
    assert all(a >= b for a, b in itertools.pairwise(fractions))
    assert curve[-1].fraction_offloaded == 0 and curve[-1].accuracy == pytest.approx(router.accuracy_small)
    # the predictor flags hard inputs: the appealed inputs are wrong on the small model more often than the rest
    sent = answers.score > np.median(answers.score)
    assert (~answers.small_correct[sent]).mean() > (~answers.small_correct[~sent]).mean()


@pytest.mark.slow
def test_the_runtime_routes_per_input_and_answers_equal_the_chosen_model(router_file):
    import torch

    from tiercut.appeal.runtime import run_routed
    from tiercut.appeal.train import load_router
    from tiercut.runtime.session import LocalCluster

    router = load_router(router_file)
    x = router.data().x_test[:10]
    with torch.no_grad():
        small_logits, appeal = router.small(x)
        big_logits = router.big(x)
        q = torch.sigmoid(appeal.squeeze(1))
    ordered = sorted(q.tolist())
    threshold = (ordered[4] + ordered[5]) / 2  # half appealed, no score at the threshold
    with LocalCluster(["cloud"]) as cluster:
        run = run_routed(router, x, threshold, cluster.addresses, credentials=cluster.credentials())
    assert [r.appealed for r in run.queries] == (q > threshold).tolist()
    assert 0 < run.fraction_offloaded < 1
    for r in run.queries:
        chosen = big_logits if r.appealed else small_logits
        other = small_logits if r.appealed else big_logits
        assert torch.allclose(r.answer, chosen[r.index], atol=1e-5)
        assert not torch.allclose(r.answer, other[r.index], atol=1e-5)
    assert run.remote is not None
    assert all(not rec.fallback and "cloud" in rec.devices for rec in run.remote.queries)


@pytest.mark.slow
def test_cli_eval_json_recomputes_and_bad_input_is_one_line(router_file, capsys, tmp_path):
    code, out, _ = run_cli(capsys, "route", "eval", str(router_file), "--env", "three-tier", "--thresholds", "0,0.3,1",
                           "--json")
    assert code == 0
    doc = json.loads(out)
    assert [p["threshold"] for p in doc["curve"]] == [0.0, 0.3, 1.0]
    for point in doc["curve"]:
        again = expected_routing_from_dict({**doc, "fraction_offloaded": point["fraction_offloaded"]})
        assert again.latency_s == pytest.approx(point["expected"]["latency_s"], rel=1e-12)
        assert again.energy_source_j == pytest.approx(point["expected"]["energy_source_j"], rel=1e-12)
    for args, message in (
        (("route", "eval", str(tmp_path / "none.safetensors")), "does not exist"),
        (("route", "eval", str(router_file), "--thresholds", "0,x"), "'x' is not a number"),
        (("route", "eval", str(router_file), "--thresholds", "2"), "from 0 to 1"),
        (("route", "eval", str(router_file), "--env", "three-tier", "--cloud", "moon"), "--cloud 'moon' is not a device"),
        (("route", "eval", str(router_file), "--score", "vibes"), "--score 'vibes' is not known"),
        (("route", "run", str(router_file), "--queries", "0"), "--queries 0 must be"),
        (("route", "run", str(router_file), "--threshold", "-1"), "from 0 to 1"),
        (("route", "train", "--out", str(tmp_path / "r.pt")), r"must end in \.safetensors"),
    ):
        code, _, err = run_cli(capsys, *args)
        assert code == 2, args
        assert message.replace("\\", "") in err and err.count("\n") == 1 and "Traceback" not in err
