"""One contract every registered upload planner must keep (loops over UPLOAD_PLANNERS)."""

from __future__ import annotations

import inspect
import itertools
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiercut.errors import TiercutError
from tiercut.plan import get_planner
from tiercut.upload import UPLOAD_PLANNERS, UploadPlan, UploadPlanner, check_upload_plan, get_upload_planner
from tiercut.upload.synthetic import random_upload_problem

NAMES = list(UPLOAD_PLANNERS)


@pytest.mark.parametrize("name", NAMES)
def test_registration_and_settings(name):
    cls = UPLOAD_PLANNERS[name]
    assert issubclass(cls, UploadPlanner)
    assert cls.name == name
    assert cls.summary and cls.reference and cls.__doc__
    module_doc = inspect.getmodule(cls).__doc__ or ""
    assert len(module_doc) > 100  # cites its paper
    planner = cls()
    params = planner.get_params()
    signature = inspect.signature(cls.__init__)
    assert list(params) == [p for p in signature.parameters if p != "self"]
    assert {"server", "offloading", "n_queries"} <= set(params)
    for key, parameter in signature.parameters.items():
        if key != "self":
            assert params[key] == parameter.default  # __init__ stores settings as given, no work
    assert planner.set_params(n_queries=4).n_queries == 4
    with pytest.raises(TiercutError, match="no setting"):
        planner.set_params(bogus=1)
    assert name in repr(planner) or cls.__name__ in repr(planner)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(
    rng=st.randoms(use_true_random=False),
    n_nodes=st.integers(1, 6),
    shape=st.sampled_from(["chain", "series-parallel", "dag"]),
)
def test_upload_plan_contract(name, rng, n_nodes, shape):
    problem = random_upload_problem(rng, n_nodes=n_nodes, shape=shape)
    target = get_planner("mincut").solve(problem).placement
    server_nodes = sorted(n for n, d in target.items() if d != problem.source)
    planner = get_upload_planner(name, max_units=6) if name == "exhaustive" else get_upload_planner(name)
    plan = planner.solve(problem, target)
    # exactly the target's server-side nodes, each once
    covered = [n for p in plan.partitions for n in p.nodes]
    assert sorted(covered) == server_nodes
    assert len(covered) == len(set(covered))
    # every partition carries parameters (parameter-free target nodes ride along)
    if any(problem.graph[n].param_bytes for n in server_nodes):
        assert all(p.param_bytes > 0 for p in plan.partitions)
    # stage 0 then one per arrival; later stages never slower (more is available)
    assert len(plan.stages) == len(plan.partitions) + 1
    assert plan.stages[0].from_s == 0.0
    latencies = [s.latency_s for s in plan.stages]
    assert all(b <= a * (1 + 1e-9) + 1e-12 for a, b in itertools.pairwise(latencies))
    # the last stage is as good as the offloading plan's placement
    if plan.partitions:
        optimum = get_planner("mincut").solve(problem).latency_s
        assert latencies[-1] == pytest.approx(optimum, rel=1e-9, abs=1e-12)
    # anyone can recompute everything from the problem and the partitions
    check_upload_plan(problem, plan, server_nodes)
    again = UploadPlan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert again == plan
    data = plan.to_dict()
    assert data["schema_version"] == 1
    assert set(data) >= {"algorithm", "server", "partitions", "stages", "metrics"}
    assert set(data["partitions"][0] if data["partitions"] else {"nodes", "param_bytes", "upload_s", "arrives_s"}) >= {
        "nodes", "param_bytes", "upload_s", "arrives_s"}
    assert set(data["stages"][0]) >= {"from_s", "placement", "latency_s"}
    assert set(data["metrics"]) >= {"queries_done_by_upload_end", "time_for_n_queries_s", "n", "mean_latency_during_upload_s"}
    assert plan.algorithm == name and plan.source == problem.source
