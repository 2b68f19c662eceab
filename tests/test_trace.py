"""One query trace for simulated and measured runs, compared point by point.

A real split model runs on local workers (gRPC, emulated links) and the
simulator runs the same problem and upload plan; :func:`compare_traces`
matches their queries by index. Figures differ (this host's timings are not
the problem's), so the test asserts the structure and the matching, not
closeness.
"""

from __future__ import annotations

import json
import math

import pytest
import yaml

from tiercut.errors import TiercutError
from tiercut.trace import QueryRecord, Span, compare_traces

ENVIRONMENT = {
    "name": "trace-pair",
    "devices": [{"name": "end", "tier": "end"}, {"name": "edge", "tier": "edge"}],
    "links": [{"a": "end", "b": "edge", "bandwidth_bytes_per_s": 2.0e7, "latency_s": 0.002}],
}


def _record(index, latency, stage=0, user="u", spans=None, start=None):
    start = float(index) if start is None else start
    return QueryRecord(user, index, start, start + latency, stage=stage, spans=spans)


def test_compare_matches_by_index_and_reports_query_stage_and_summary_differences():
    compute = (Span("compute", "end", 0.0, 0.3), Span("transfer", "end", 0.3, 0.4, peer="edge", nbytes=10),
               Span("compute", "edge", 0.4, 0.5))
    measured = [_record(0, 0.5, 0, spans=compute), _record(1, 0.2, 1, spans=()), _record(3, 0.4, 1)]
    simulated = [_record(1, 0.1, 1, user="sim", spans=()), _record(0, 0.4, 0, user="sim",
                 spans=(Span("compute", "end", 0.0, 0.25),)), _record(2, 0.1, 1, user="sim")]
    result = compare_traces(measured, simulated)
    assert [q.index for q in result.queries] == [0, 1]  # matched by index, in index order
    assert result.measured_only == (3,) and result.simulated_only == (2,)
    first, second = result.queries
    assert first.difference_s == pytest.approx(0.1) and first.ratio == pytest.approx(1.25)
    assert sorted(first.compute_s) == ["edge", "end"]
    assert first.compute_s["edge"] == pytest.approx((0.1, 0.0)) and first.compute_s["end"] == pytest.approx((0.3, 0.25))
    assert second.compute_s == {}  # neither side computed anything in its spans
    assert result.same_stage == 2
    assert [(s.stage, s.measured_queries, s.simulated_queries) for s in result.stages] == [(0, 1, 1), (1, 1, 1)]
    assert result.stages[1].difference_s == pytest.approx(0.1)
    assert result.mean_difference_s == pytest.approx(0.1)
    assert result.max_abs_difference_s == pytest.approx(0.1) and result.median_ratio == pytest.approx(1.625)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["matched"] == 2 and data["queries"][0]["compute_s"]["end"] == pytest.approx([0.3, 0.25])


def test_compare_leaves_out_unfinished_queries_and_refuses_what_cannot_be_matched():
    unfinished = QueryRecord("u", 5, 0.0)  # end_s is NaN: never completed
    result = compare_traces([_record(0, 0.1), unfinished], [_record(0, 0.1), _record(5, 0.1)])
    assert result.simulated_only == (5,) and result.measured_only == ()
    with pytest.raises(TiercutError, match="2 users"):
        compare_traces([_record(0, 0.1, user="a"), _record(1, 0.1, user="b")], [_record(0, 0.1)])
    with pytest.raises(TiercutError, match="query 0 twice"):
        compare_traces([_record(0, 0.1), _record(0, 0.2)], [_record(0, 0.1)])
    with pytest.raises(TiercutError, match="no query index is in both"):
        compare_traces([_record(0, 0.1)], [_record(1, 0.1)])


def test_a_record_serialises_every_field_with_non_finite_figures_as_null():
    record = QueryRecord("u", 2, 1.0, 1.5, stage=1, placement={"a": "end"}, devices=("end",),
                         spans=(Span("compute", "end", 1.0, 1.5, nodes=("a",), work_s=0.5),))
    data = json.loads(json.dumps(record.to_dict(with_placement=True)))
    assert data["latency_s"] == 0.5 and data["planned_latency_s"] is None and data["energy_source_j"] is None
    assert data["placement"] == {"a": "end"} and data["spans"][0]["nodes"] == ["a"]
    assert "placement" not in record.to_dict()
    assert record.compute_s_by_device() == {"end": 0.5}


@pytest.mark.slow
def test_a_measured_run_and_its_simulation_compare_point_by_point(tmp_path):
    import torch

    from fixtures_models import tiny_net
    from tiercut.env import environment_from_mapping, load_environment
    from tiercut.graph import capture_model
    from tiercut.problem import build_problem
    from tiercut.runtime.client import RunSettings
    from tiercut.runtime.migration import prepare_migration
    from tiercut.runtime.session import LocalCluster, run_migration
    from tiercut.sim import SimConfig, SimUser, simulate
    from tiercut.upload import plan_upload, user_plan_from_upload

    torch.manual_seed(0)
    captured = capture_model(tiny_net(), (1, 3, 8, 8))
    times = {n.name: {"end": 2e-3, "edge": 1e-4} for n in captured.graph if not n.is_input}
    problem = build_problem(captured.graph, environment_from_mapping(ENVIRONMENT), source="end", compute_s=times)
    upload = plan_upload(problem, "direct")
    assert len(upload.stages) == 2 and set(upload.stages[-1].placement.values()) == {"end", "edge"}
    migration = prepare_migration(captured, upload.to_dict(), problem=problem)
    env_file = tmp_path / "env.yaml"
    env_file.write_text(yaml.safe_dump(ENVIRONMENT))
    n = 8
    settings = RunSettings(queries=n, queries_after_upload=2, verify_outputs=True, max_run_s=240)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with LocalCluster(["edge"], env=str(env_file)) as cluster:
            run = run_migration(migration, cluster.addresses, credentials=cluster.credentials(), settings=settings,
                                environment=load_environment(env_file))
    finally:
        torch.set_num_threads(threads)
    measured = list(run.queries)
    n = len(measured)  # the run goes on past n until two queries ran after the upload
    sim = simulate([SimUser("end", problem, plan=user_plan_from_upload("end", upload), max_queries=n)],
                   SimConfig(record_ops=True))
    simulated = sim.user_queries("end")
    assert all(type(q) is QueryRecord for q in [*measured, *simulated])  # one record type on both sides
    assert all(q.output_matches for q in measured) and measured[-1].stage == simulated[-1].stage == 1

    result = compare_traces(measured, simulated)
    assert [q.index for q in result.queries] == list(range(n))
    assert result.measured_only == () and result.simulated_only == ()
    for diff, m, s in zip(result.queries, measured, simulated):
        assert (diff.measured_latency_s, diff.simulated_latency_s) == (m.latency_s, s.latency_s)
        assert (diff.measured_stage, diff.simulated_stage) == (m.stage, s.stage)
        assert "end" in diff.compute_s  # the client computes on both sides, spans recorded on both
        if m.stage == s.stage == len(upload.stages) - 1:  # split: the edge's share shows on both sides
            assert set(diff.compute_s) == {"end", "edge"}
    assert {s.stage for s in result.stages} == {q.stage for q in [*measured, *simulated]}
    assert sum(s.measured_queries for s in result.stages) == sum(s.simulated_queries for s in result.stages) == n
    assert result.max_abs_difference_s >= result.p95_abs_difference_s >= result.median_abs_difference_s >= 0
    # loose: a host's measured latency is within three orders of magnitude of the cost model's
    assert 1e-3 < result.median_ratio < 1e3 and math.isfinite(result.mean_difference_s)
    json.dumps(result.to_dict())
