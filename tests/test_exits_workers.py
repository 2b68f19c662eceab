"""Early exits on real gRPC workers (issue 15): exit heads are partition programs, a confident exit ends the query.

Three devices: the phone (the client) runs the trunk up to the first exit
and its head, the edge worker the next segment and the second exit head,
the cloud worker the rest and the final exit. Workers are local processes
on random ports.
"""

from __future__ import annotations

import numpy as np
import pytest

from tiercut.cost import evaluate
from tiercut.env import Link
from tiercut.errors import TiercutError
from tiercut.exits.build import build_exit_model
from tiercut.exits.cost import ExitProblem, query_problem
from tiercut.exits.deploy import ExitDeployment
from tiercut.exits.runtime import ExitExecutor
from tiercut.exits.train import TrainingSettings, load_digits_split
from tiercut.graph import capture_model
from tiercut.problem import Problem, ProblemDevice
from tiercut.runtime.client import RunSettings
from tiercut.runtime.migration import placement_plan, prepare_migration
from tiercut.runtime.route import ExitCheck, Route, RouteError, Step
from tiercut.runtime.session import LocalCluster, run_migration


@pytest.fixture(scope="module")
def three_tier():
    exit_model, net = build_exit_model("tiercut.exits.models:digits_cnn", (1, 1, 8, 8), ["_1", "_4"],
                                       settings=TrainingSettings(epochs=2, seed=0), baseline=False)
    # thresholds at each side exit's median entropy: about half the queries reaching it leave
    thresholds = {e.name: float(np.median(exit_model.measurements.entropy[i])) for i, e in enumerate(exit_model.exits[:-1])}
    exit_model = exit_model.with_thresholds("entropy", thresholds)
    data = load_digits_split((1, 1, 8, 8), 0)
    graph = exit_model.graph
    e1, e2, _ = exit_model.exits
    placement = {}
    for n in graph:
        if n.is_input:
            continue
        i = graph.index(n.name)
        if i <= graph.index(e1.after) or n.name in e1.nodes:
            placement[n.name] = "phone"
        elif i <= graph.index(e2.after) or n.name in e2.nodes:
            placement[n.name] = "edge"
        else:
            placement[n.name] = "cloud"
    captured = capture_model(net, example_inputs=(data.x_test[:1],))
    devices = (ProblemDevice("phone", "end", 2.0, 1.0, 1.0, 0.1), ProblemDevice("edge", "edge", 10.0, 1.0, 1.0),
               ProblemDevice("cloud", "cloud", 50.0, 1.0, 1.0))
    compute = {n.name: {"phone": 1e-3, "edge": 1e-4, "cloud": 1e-5} for n in graph if not n.is_input}
    links = (Link("phone", "edge", 1e6, 0.005), Link("edge", "cloud", 1e7, 0.01), Link("phone", "cloud", 1e5, 0.05))
    ep = ExitProblem.from_exit_model(Problem(graph, devices, links, "phone", compute), exit_model)
    return exit_model, data, captured, placement, ep


@pytest.mark.slow
def test_exits_fire_in_grpc_workers_and_send_nothing_further(three_tier):
    exit_model, data, captured, placement, ep = three_tier
    names = [e.name for e in exit_model.exits]
    deployment = ExitDeployment.of(exit_model)
    migration = prepare_migration(captured, placement_plan(placement, "phone"), exits=deployment)
    stage = migration.stages[1]
    # the exit heads are partitions of their own, programs like any other, each checked on its own device
    checks = {s.exit.name: s for s in stage.route.steps if s.exit is not None}
    assert set(checks) == {"exit1", "exit2"}
    assert checks["exit1"].device == "phone" and checks["exit1"].program_id is None
    assert checks["exit2"].device == "edge" and checks["exit2"].program_id is not None
    heads = {e.name: set(e.nodes) for e in exit_model.exits}
    assert set(stage.split.partitions[checks["exit2"].index].nodes) == heads["exit2"]

    n = 40
    settings = RunSettings(queries=1, queries_after_upload=n, verify_outputs=True, max_run_s=240)
    with LocalCluster(["edge", "cloud"]) as cluster:
        result = run_migration(migration, cluster.addresses, credentials=cluster.credentials(), settings=settings,
                               query_inputs=lambda i: (data.x_test[i % 450:i % 450 + 1],))
    assert result.failed_queries == 0 and result.fallbacks == 0
    # every answer equals the output of the exit head it left at (the network's own logits there)
    assert all(q.output_matches for q in result.queries)
    executor = ExitExecutor(captured, exit_model.exits, placement, names, "entropy", exit_model.thresholds, "phone")
    planned = [q for q in result.queries if q.stage == 1]
    assert len(planned) >= n - 5
    seen = set()
    for q in planned:
        trace = executor.run(data.x_test[q.index % 450:q.index % 450 + 1])
        assert q.exit == trace.exit  # the same exit as the in-process executor
        seen.add(q.exit)
        k = names.index(q.exit)
        sub = query_problem(ep, names, k)
        cost = evaluate(sub, {m.name: placement[m.name] for m in sub.graph if not m.is_input}).transfers
        answer = [t for t in cost if t.node == exit_model.exits[k].output]
        inner = [(t.src, t.dst, t.out_bytes) for t in cost if t.node != exit_model.exits[k].output]
        forward = [t for t in q.transfers if t[1] != "phone" and not (t[0] == "cloud" and t[1] == "edge")]
        replies = [t for t in q.transfers if t not in forward]
        assert forward == inner  # the tensors sent onwards, byte for byte as the cost model counts them
        compute = {s.device for s in q.spans if s.kind == "compute"}
        if q.exit == "exit1":  # answered on the phone: not one byte sent, no worker computed
            assert q.transfers == () and q.bytes_sent == 0 and answer == [] and compute == {"phone"}
        else:  # only the answer comes back, hop by hop along the path the cost model routes it on
            hops = list(zip(answer[0].path, answer[0].path[1:]))
            assert sorted(replies) == sorted((a, b, answer[0].out_bytes) for a, b in hops)
        if q.exit == "exit2":  # decided on the edge: the cloud got nothing
            assert "cloud" not in {d for s, d, _ in q.transfers} and "cloud" not in compute
        if q.exit == "final":
            assert compute == {"phone", "edge", "cloud"}
    assert seen == set(names)


def test_exit_checks_from_the_network_are_data_and_bounded():
    step = {"index": 0, "device": "edge", "program_id": "p", "input_names": ["a"], "output_names": ["b"],
            "exit": {"name": "exit1", "value": "b", "rule": "entropy", "threshold": 0.5}}
    route = Route.from_dict({"steps": [step], "result_names": ["b"], "source": "phone"})
    assert route.steps[0].exit == ExitCheck("exit1", "b", "entropy", 0.5)
    assert Route.from_dict(route.to_dict()) == route
    for bad, match in (({"rule": "os.system"}, "rule"), ({"threshold": "nan"}, "threshold"),
                       ({"threshold": float("inf")}, "threshold"), ({"value": "zzz"}, "does not produce"),
                       ({"name": ""}, "name")):
        wrong = {**step, "exit": {**step["exit"], **bad}}
        with pytest.raises(RouteError, match=match):
            Route.from_dict({"steps": [wrong], "result_names": ["b"], "source": "phone"})
    import torch

    check = ExitCheck("exit1", "b", "max_softmax", 0.9)
    assert check.fires(torch.tensor([[10.0, 0.0]])) and not check.fires(torch.tensor([[0.0, 0.0]]))
    for value in (torch.zeros(2), torch.zeros(1, 2, dtype=torch.int64), 3):
        with pytest.raises(RouteError, match="logits"):
            check.fires(value)
    with pytest.raises(RouteError, match="does not produce"):
        Step(0, "edge", "p", ("a",), ("b",), ExitCheck("exit1", "c", "entropy", 1.0))


def test_deployment_refuses_bad_exits(three_tier):
    exit_model, _, captured, placement, _ = three_tier
    with pytest.raises(TiercutError, match="no exit 'exit9'"):
        ExitDeployment.of(exit_model, ["exit9", "final"])
    with pytest.raises(TiercutError, match="depth order"):
        ExitDeployment.of(exit_model, ["exit2", "exit1"])
    deployment = ExitDeployment.of(exit_model, ["exit2", "final"])
    partial = {n: d for n, d in placement.items() if d != "cloud"}
    with pytest.raises(TiercutError, match="needs"):
        deployment.split(captured, partial, "phone")
    # Edgent's right-sized model: exit2 only; the cloud's layers and exit1's head are never run nor uploaded
    only = ExitDeployment.of(exit_model, ["exit2"])
    cut = only.split(captured, partial, "phone")
    ran = {n for i in cut.order for n in cut.split.partitions[i].nodes}
    assert not ran & set(exit_model.exits[0].nodes) and "cloud" not in {cut.split.partitions[i].device for i in cut.order}
    assert cut.checks == {} and cut.last_exit == "exit2"
