"""The one interface every partition-uploading planner implements.

The migration seed (dnn-migration-in-iots, "DNN Partition-Uploading Plan"):
the partition-offloading plan puts a partition P1 of the model on a server;
an uploading plan divides P1 into partitions P3 and orders them, so that the
client answers queries with whatever has arrived while the rest goes up.

A planner is a class in the scikit-learn style, like
:class:`tiercut.plan.Planner`: settings are explicit keyword arguments of
``__init__`` stored under the same names, ``__init__`` does no work, and
:meth:`UploadPlanner.get_params` returns them. A planner only chooses node
groups (:meth:`UploadPlanner._groups`); :meth:`UploadPlanner.solve` turns
them into partitions and computes every stage and metric with the analytic
IONN model (:mod:`tiercut.upload.analytic`), so no planner can report
figures the model disagrees with.

Groups are normalised the same way for every planner: nodes outside the
target are dropped, a node keeps its first group, target nodes with
parameters that no group covers go up last as one partition (said in the
note), parameter-free target nodes no group covers join the group of the
nearest earlier target node, and a group without parameter bytes merges
into the next one (the last into the one before). The partitions are thus
exactly the target's nodes, each once, every partition carrying parameters.

Implementing a planner: subclass, set ``name``, ``summary``, ``reference``,
override :meth:`UploadPlanner._groups` (and :meth:`UploadPlanner.check` if
it cannot handle some problems), and add ONE line to
:data:`tiercut.upload.registry.UPLOAD_PLANNERS`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from tiercut.errors import TiercutError
from tiercut.problem import Plan, Problem
from tiercut.settings import Configurable
from tiercut.upload.analytic import evaluate_upload
from tiercut.upload.context import UploadContext, build_context
from tiercut.upload.types import UploadPlan

#: the upload planner used when none is named (``plan_upload()``, ``tiercut upload``, ``tiercut run``,
#: scenario files): the recursive efficiency order, the best of the seed's planners in its experiments
#: (ALGORITHMS.md); ``ionn`` is IONN's original order.
DEFAULT_UPLOAD_PLANNER = "recursive-efficiency"

#: the partition planner that picks an upload plan's server partition P1 when none is given: ``mincut``,
#: exact over the two devices (client and server) an upload plan has (a faster special case of
#: :data:`tiercut.plan.base.DEFAULT_PLANNER`).
DEFAULT_OFFLOADING_PLANNER = "mincut"


@dataclass(frozen=True)
class GroupResult:
    """What a planner's ``_groups`` returns: node groups in upload order and a note."""

    groups: tuple[tuple[str, ...], ...]
    note: str = ""


def upload_problem_issue(problem: Problem) -> str | None:
    """Why ``problem`` cannot be an uploading problem (None if it can).

    The client starts with the whole model, so every node must be able to
    run on the source and no node may be pinned elsewhere.
    """
    if len(problem.devices) < 2:
        return "it has no server besides the client"
    for node in problem.graph:
        if node.is_input:
            continue
        if problem.source not in problem.compute_s[node.name]:
            return f"node {node.name!r} cannot run on the client {problem.source!r}, which holds the whole model at first"
    for node, device in problem.constraints.pinned.items():
        if device != problem.source:
            return f"node {node!r} is pinned to {device!r}; before the upload every node runs on the client"
    return None


def resolve_target(
    problem: Problem, target: Plan | Mapping[str, str] | None, server: str | None, offloading: str
) -> tuple[str, frozenset[str], str]:
    """(server, target node names P1, how the target was chosen).

    ``target`` is a partition-offloading plan or placement; without one the
    registered planner ``offloading`` plans ``problem`` (restricted to the
    source and ``server`` when a server is given).
    """
    from tiercut.plan import get_planner

    how = "given target"
    if target is None:
        scope = problem if server is None else problem.restricted_to([problem.source, server])
        plan = get_planner(offloading).solve(scope)
        placement: Mapping[str, str] = plan.placement
        how = f"target from offloading planner {offloading!r}"
    else:
        placement = target.placement if isinstance(target, Plan) else target
    for node, device in placement.items():
        if node not in problem.graph:
            raise TiercutError(f"target placement names unknown node {node!r}")
        if device not in problem.device_names:
            raise TiercutError(f"target placement puts {node!r} on unknown device {device!r}")
    used = sorted(
        {d for d in placement.values() if d != problem.source}, key=problem.device_index
    )
    if len(used) > 1:
        raise TiercutError(
            f"the target places nodes on {', '.join(used)}; a single-server upload plan needs one server "
            "(give --server, or plan every server with tiercut.upload.plan_multi_upload)"
        )
    if server is not None and used and used[0] != server:
        raise TiercutError(f"the target places nodes on {used[0]!r}, not on the chosen server {server!r}")
    chosen = server or (used[0] if used else None)
    if chosen is None:
        others = [d for d in problem.device_names if d != problem.source]
        chosen = others[0]
        how += " (all on the client: nothing to upload)"
    if chosen == problem.source:
        raise TiercutError(f"the server must not be the client {problem.source!r}")
    problem.device_index(chosen)
    nodes = frozenset(n for n, d in placement.items() if d == chosen and not problem.graph[n].is_input)
    return chosen, nodes, how


def normalise_groups(problem: Problem, target: frozenset[str], groups: Sequence[Sequence[str]]) -> tuple[list[list[str]], str]:
    """Groups made exactly the target, each node once, every group with parameter bytes (see the module doc)."""
    graph = problem.graph
    order = {n: i for i, n in enumerate(graph.names)}
    seen: set[str] = set()
    out: list[list[str]] = []
    for group in groups:
        kept = []
        for node in group:
            if node in target and node not in seen:
                kept.append(node)
                seen.add(node)
        if kept:
            out.append(kept)
    notes = []
    leftover = sorted(target - seen, key=order.__getitem__)
    _, uses = graph.param_table()
    heavy = [n for n in leftover if uses[n]]
    if heavy:
        out.append(heavy)
        notes.append(f"{len(heavy)} target node(s) the method did not upload go up last")
    light = [n for n in leftover if not uses[n]]
    if light:
        if not out:
            out.append(light)
        else:
            home = {n: k for k, g in enumerate(out) for n in g}
            placed = sorted(home, key=order.__getitem__)
            for node in light:
                earlier = [m for m in placed if order[m] < order[node]]
                anchor = earlier[-1] if earlier else placed[0]
                out[home[anchor]].append(node)
    # groups without parameter bytes ride along with the next (the last with the previous)
    merged: list[list[str]] = []
    carry: list[str] = []
    for group in out:
        carry.extend(group)
        if any(uses[n] for n in carry):
            merged.append(carry)
            carry = []
    if carry:
        if merged:
            merged[-1].extend(carry)
        else:
            merged.append(carry)
    return [sorted(g, key=order.__getitem__) for g in merged], "; ".join(notes)


class UploadPlanner(Configurable):
    """Base class of every upload planner: settings in ``__init__``, work in :meth:`solve`.

    Common settings (every planner has them):
        server: the server to upload to (None: the offloading plan's server).
        offloading: registered partition planner that picks the target P1
            when :meth:`solve` gets none (:data:`DEFAULT_OFFLOADING_PLANNER`).
        n_queries: ``n`` of ``time_for_n_queries_s`` (None: the queries issued
            during a direct upload of the target, the same for every planner).
    """

    name: ClassVar[str] = ""
    kind: ClassVar[str] = "upload planner"
    summary: ClassVar[str] = ""
    reference: ClassVar[str] = ""

    def __init__(
        self, server: str | None = None, offloading: str = DEFAULT_OFFLOADING_PLANNER, n_queries: int | None = None
    ) -> None:
        self.server = server
        self.offloading = offloading
        self.n_queries = n_queries

    # ----------------------------------------------------------- solving
    def check(self, problem: Problem) -> str | None:
        """Why this planner cannot plan uploads for ``problem`` (None: it can)."""
        return upload_problem_issue(problem)

    def _check_settings(self) -> None:
        if self.n_queries is not None and (not isinstance(self.n_queries, int) or self.n_queries < 1):
            raise TiercutError(f"n_queries is {self.n_queries!r}; give a whole number >= 1 or leave it unset")

    def solve(self, problem: Problem, target: Plan | Mapping[str, str] | None = None) -> UploadPlan:
        """Plan the uploads of ``problem``'s target partition P1 to one server.

        Args:
            problem: a single-user problem (the client is its source).
            target: the partition-offloading plan or placement whose nodes on
                the server are P1 (None: plan it with ``offloading``).
        """
        reason = self.check(problem)
        if reason is not None:
            raise TiercutError(f"upload planner {self.name!r} cannot plan {problem.name or 'this problem'}: {reason}")
        self._check_settings()
        start = time.perf_counter()
        server, nodes, how = resolve_target(problem, target, self.server, self.offloading)
        pair = problem.restricted_to([problem.source, server])
        ctx = build_context(pair, server, nodes, self.n_queries)
        chosen = self._groups(ctx) if nodes else GroupResult(())
        groups, fix_note = normalise_groups(pair, nodes, chosen.groups)
        partitions, stages, metrics = evaluate_upload(
            pair, server, groups, target=nodes, n_queries=self.n_queries, solver=ctx.solver
        )
        solve_s = time.perf_counter() - start
        note = "; ".join(x for x in (how, chosen.note, fix_note) if x)
        return UploadPlan(
            algorithm=self.name,
            server=server,
            source=problem.source,
            partitions=partitions,
            stages=stages,
            metrics=metrics,
            settings=self.get_params(),
            solve_s=solve_s,
            note=note,
        )

    def _groups(self, ctx: UploadContext) -> GroupResult:
        raise TiercutError(f"upload planner {self.name!r} does not choose partitions; subclass UploadPlanner")


__all__ = ["GroupResult", "UploadPlanner", "normalise_groups", "resolve_target", "upload_problem_issue"]
