"""Shared parameters: every device that runs a user of a weight holds it, counted once per device (issue 10).

The graph names each node's weights (``params``) with their bytes in the
graph's table; memory per device, the memory constraints of the planners and
the upload planners (a partition carries a shared weight once, a node runs on
a server once all its weights are there) use it.
"""

from __future__ import annotations

import json

import pytest

from tiercut.cost import evaluate, evaluate_many
from tiercut.env import Link
from tiercut.graph.types import LayerGraph, Node
from tiercut.plan import plan
from tiercut.problem import Problem, ProblemDevice


def tied_problem(memory: int | None = None) -> Problem:
    """embed -> mid -> head, where head reuses embed's 1000-byte matrix (tied weights) and has 10 bytes of its own."""
    graph = LayerGraph(
        (
            Node("x", "input", out_bytes=100),
            Node("embed", "linear", ("x",), param_bytes=1000, out_bytes=100, params=("w.embed",)),
            Node("mid", "relu", ("embed",), out_bytes=100),
            Node("head", "linear", ("mid",), param_bytes=10, out_bytes=10, is_output=True, params=("w.embed", "w.bias")),
        ),
        model="tied",
        params={"w.embed": 1000, "w.bias": 10},
    )
    devices = (ProblemDevice("phone", "end"), ProblemDevice("edge", "edge", memory_bytes=memory))
    compute = {n: {"phone": 1.0, "edge": 0.1} for n in ("embed", "mid", "head")}
    return Problem(graph, devices, (Link("phone", "edge", 1e6),), "phone", compute)


def test_a_shared_weight_is_held_by_every_device_that_runs_a_user_counted_once():
    problem = tied_problem()
    split = evaluate(problem, {"embed": "phone", "mid": "phone", "head": "edge"})
    # head on the edge needs the tied matrix there too (the old per-node count charged it 10 bytes)
    assert split.memory_bytes == {"phone": 1000, "edge": 1010}
    together = evaluate(problem, {"embed": "edge", "mid": "edge", "head": "edge"})
    assert together.memory_bytes == {"phone": 0, "edge": 1010}  # once per device
    batch = evaluate_many(problem, [[0, 0, 0, 1], [0, 1, 1, 1]])
    assert batch.memory_bytes.tolist() == [[1000, 1010], [0, 1010]]
    assert problem.graph.total_param_bytes == 1010  # the sum over nodes stays the model's weight bytes


def test_memory_limits_see_the_shared_weight():
    tight = tied_problem(memory=500)  # the edge cannot hold the tied matrix: nothing that uses it may run there
    for name in ("ilp", "brute-force", "greedy", "pso"):
        result = plan(tight, name)
        assert result.feasible, name
        assert result.placement["head"] == "phone" and result.placement["embed"] == "phone", name
    roomy = tied_problem(memory=1010)
    assert plan(roomy, "ilp").placement["head"] == "edge"


def test_params_round_trip_through_the_problem_json():
    problem = tied_problem()
    data = json.loads(json.dumps(problem.to_dict()))
    assert data["params"] == {"w.embed": 1000, "w.bias": 10}
    assert [n["params"] for n in data["nodes"]] == [[], ["w.embed"], [], ["w.embed", "w.bias"]]
    again = Problem.from_dict(data)
    assert evaluate(again, {"embed": "phone", "mid": "phone", "head": "edge"}).memory_bytes["edge"] == 1010


def test_a_graph_naming_an_unknown_weight_is_refused():
    from tiercut.errors import TiercutError

    with pytest.raises(TiercutError, match="params table lacks"):
        LayerGraph((Node("x", "input"), Node("a", "linear", ("x",), params=("w",))))


def test_capture_names_tied_weights_once():
    import torch

    from tiercut.graph.capture import capture

    class Tied(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encode = torch.nn.Linear(8, 8)
            self.decode = torch.nn.Linear(8, 8)
            self.decode.weight = self.encode.weight  # tied

        def forward(self, x):
            return self.decode(torch.relu(self.encode(x)))

    graph = capture(Tied(), (torch.randn(1, 8),)).graph
    encode, decode = graph["encode"], graph["decode"]
    assert "encode.weight" in encode.params and "encode.weight" in decode.params
    assert graph.params["encode.weight"] == 8 * 8 * 4
    assert encode.param_bytes == (64 + 8) * 4 and decode.param_bytes == 8 * 4  # first user carries it
    assert graph.weight_bytes(["decode"]) == (64 + 8) * 4


def test_uploads_carry_a_shared_weight_once_and_run_a_node_once_its_weights_arrived():
    from tiercut.upload.analytic import stage_problem, timeline

    problem = tied_problem()
    parts = timeline(problem, "edge", [["head"], ["embed"]])
    assert [p.param_bytes for p in parts] == [1010, 0]  # head brings the tied matrix; embed's is already there
    # after head's partition, embed's weights are all on the edge: it may run there before its own upload
    staged = stage_problem(problem, {"edge": {"head"}})
    assert "edge" in staged.compute_s["embed"] and "edge" in staged.compute_s["head"]
    staged = stage_problem(problem, {"edge": {"embed"}})
    assert "edge" not in staged.compute_s["head"]  # its bias has not arrived
