"""The upload step: in which pieces and order a server partition goes up while queries run (IONN model).

:func:`plan_uploads` plans one client's upload to one server and, when
asked, every other upload planner on the same server partition, returning an
:class:`UploadResult`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tiercut.errors import TiercutError
from tiercut.pipeline.planning import records_to_dataframe, warm_imports
from tiercut.pipeline.progress import SILENT, Progress
from tiercut.problem import Plan, Problem
from tiercut.upload import UploadPlan


@dataclass(frozen=True)
class UploadRecord:
    """One upload planner's figures (queries back to back from t = 0, IONN model)."""

    upload_planner: str
    server: str
    partitions: int
    upload_end_s: float
    time_for_n_queries_s: float
    n: int
    queries_done_by_upload_end: int
    mean_latency_during_upload_s: float
    solve_s: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class UploadResult:
    """An upload plan on the client-server pair it was planned for, and the other planners' plans if compared.

    Attributes:
        problem: the problem restricted to the source and the server (and relays).
        plan: the chosen planner's upload plan.
        others: other upload planner name -> its plan of the same server partition.
    """

    problem: Problem
    plan: UploadPlan
    others: dict[str, UploadPlan] = field(default_factory=dict)

    @property
    def plans(self) -> dict[str, UploadPlan]:
        return {self.plan.algorithm: self.plan, **self.others}

    @property
    def records(self) -> tuple[UploadRecord, ...]:
        return tuple(
            UploadRecord(
                upload_planner=name, server=p.server, partitions=len(p.partitions), upload_end_s=p.metrics.upload_end_s,
                time_for_n_queries_s=p.metrics.time_for_n_queries_s, n=p.metrics.n,
                queries_done_by_upload_end=p.metrics.queries_done_by_upload_end,
                mean_latency_during_upload_s=p.metrics.mean_latency_during_upload_s, solve_s=p.solve_s,
            )
            for name, p in self.plans.items()
        )

    def to_dataframe(self) -> Any:
        return records_to_dataframe(self.records)

    def to_dict(self) -> dict[str, Any]:
        """``{"problem", "upload_plan"[, "compare"]}``: what ``tiercut upload --json`` prints."""
        data: dict[str, Any] = {"problem": self.problem.to_dict(), "upload_plan": self.plan.to_dict()}
        if self.others:
            data["compare"] = {k: v.to_dict() for k, v in self.others.items()}
        return data


def check_upload_algorithm(name: str) -> str:
    from tiercut.plan import PLANNERS
    from tiercut.upload import UPLOAD_PLANNERS

    if name not in UPLOAD_PLANNERS:
        hint = " (that is a partition planner: give it as --algorithm)" if name in PLANNERS else ""
        raise TiercutError(
            f"upload planner {name!r} is not known{hint}; use one of {', '.join(UPLOAD_PLANNERS)} (see 'tiercut upload --list')"
        )
    return name


def plan_uploads(
    problem: Problem,
    algorithm: str = "recursive-efficiency",
    *,
    server: str | None = None,
    offloading: str = "mincut",
    target: Plan | dict[str, str] | None = None,
    n_queries: int | None = None,
    compare: bool | Sequence[str] = False,
    progress: Progress = SILENT,
    **settings: Any,
) -> UploadResult:
    """Plan the upload of ``problem``'s server partition with the upload planner ``algorithm``.

    The server partition P1 is ``target``'s nodes on one server, else the
    ``offloading`` partition planner's plan (``server`` picks the server).
    ``compare``: True for every other upload planner (but the brute-force
    ``exhaustive``), or a list of names.
    """
    from tiercut.upload import UPLOAD_PLANNERS, get_upload_planner

    check_upload_algorithm(algorithm)
    if n_queries is not None and n_queries < 1:
        raise TiercutError(f"n_queries {n_queries} must be >= 1")
    planner = get_upload_planner(algorithm, server=server, offloading=offloading, n_queries=n_queries, **settings)
    warm_imports()
    with progress.step(f"planning the {algorithm} upload"):
        upload_plan = planner.solve(problem, target)
    pair = problem.restricted_to([problem.source, upload_plan.server])
    names = [n for n in UPLOAD_PLANNERS if n not in (algorithm, "exhaustive")] if compare is True else list(compare or [])
    others: dict[str, UploadPlan] = {}
    if names:
        p1 = {n: upload_plan.server for n in upload_plan.target_nodes}
        with progress.step("comparing upload planners"):
            for index, name in enumerate(names):
                progress.advance(index, len(names), name)
                check_upload_algorithm(name)
                others[name] = get_upload_planner(name, n_queries=upload_plan.metrics.n).solve(pair, p1)
    return UploadResult(pair, upload_plan, others)


__all__ = ["UploadRecord", "UploadResult", "check_upload_algorithm", "plan_uploads"]
