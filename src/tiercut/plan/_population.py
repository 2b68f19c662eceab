"""Shared machinery of the heuristic planners (greedy, PSO, GA, SA).

A placement is a row of device indices (``problem.device_names`` order), one
column per node in topological order; a multi-user *joint* placement is the
users' rows side by side (:func:`tiercut.cost.compile_users`). Everything the
heuristics need about a problem is a :class:`SearchSpace`:

- ``allowed`` ``[n, D]``: the devices each column may take -- where the node
  can run, its pinned device, the source for graph inputs. Every operator
  here only ever writes allowed devices, so pins and "inputs on the source"
  hold by construction (the *repair* of allowed devices);
- ``score``: the vectorised cost model (:func:`tiercut.cost.evaluate_many`
  or :func:`tiercut.cost.evaluate_users_many`) -> :class:`Scores`;
- link repair data: a placement whose transfers join devices no path of
  links connects (relays forward tensors, :mod:`tiercut.cost.routing`) is not
  evaluable; :meth:`SearchSpace.repair` walks the columns in topological
  order and moves a node whose inputs (or, for an output, the source)
  cannot reach it onto a reachable allowed device;
- ``seeds``: the warm-start placements (:func:`single_user_seeds`).

Devices without a direct link exchange tensors through relays
(:mod:`tiercut.cost.routing`); only a pair no path of links joins breaks a
placement.

Constraints (memory, budgets) are handled by the feasibility rule of Deb
("An efficient constraint handling method for genetic algorithms", CMAME
2000), :func:`better`: a feasible placement beats an infeasible one, two
feasible ones compare by objective, two infeasible ones by their constraint
penalty (the cost model's summed relative excess), and a placement that is
not evaluable loses to everything. So a heuristic returns a feasible
placement whenever it met one. When its answer breaks a constraint, it is
repaired (:meth:`HeuristicPlanner._finish`): a Deb-rule steepest descent
from the answer and the best warm-start placements, then from each
budgeted metric's own optimum; if that finds nothing feasible (single
user), the exact program decides within ``repair_ilp_s`` seconds whether a
feasible placement exists and gives one. Only when none exists (or the
exact program ran out of time) is the least-violating placement returned,
which the plan reports as infeasible.

Warm start: a randomised search with ``warm_start`` runs the cold search
(same seed and budget) as well and keeps the better answer, so a warm start
is never worse than cold (:meth:`HeuristicPlanner._search`).

No figure is computed here: every score comes from :mod:`tiercut.cost`.
"""

from __future__ import annotations

import math
from abc import ABCMeta, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import ClassVar, cast

import numpy as np

from tiercut.cost import (
    BatchEvaluation,
    CompiledProblem,
    MultiBatchEvaluation,
    compile_problem,
    compile_users,
    decode,
    evaluate_many,
    evaluate_users_many,
    linear_form,
)
from tiercut.plan.base import MultiPlacementResult, PlacementResult, Planner
from tiercut.problem import MultiUserProblem, Problem

#: rows per call of the vectorised cost model (its per-row cost is flat above ~64 rows)
SCORE_CHUNK = 512
#: at most this many split points per server are tried when seeding (evenly spaced)
MAX_SEED_SPLITS = 128
#: scores remembered per search (the memo is emptied when it would grow past this)
MEMO_ROWS = 200_000
#: warm-start placements the feasibility repair also descends from
REPAIR_STARTS = 4


# ---------------------------------------------------------------- scores
@dataclass(frozen=True)
class Scores:
    """The cost model's verdict on a batch of placements, for Deb's rule.

    Attributes:
        objective: [P] objective values (inf where not evaluable).
        penalty: [P] 0 when feasible, summed relative constraint excess
            otherwise, inf when not evaluable.
        feasible: [P] evaluable and breaking no constraint.
    """

    objective: np.ndarray
    penalty: np.ndarray
    feasible: np.ndarray

    @classmethod
    def of(cls, batch: BatchEvaluation | MultiBatchEvaluation) -> Scores:
        return cls(np.asarray(batch.objective, dtype=float), np.asarray(batch.penalty, dtype=float),
                   np.asarray(batch.feasible, dtype=bool))

    @classmethod
    def concat(cls, parts: list[Scores]) -> Scores:
        return cls(
            np.concatenate([p.objective for p in parts]),
            np.concatenate([p.penalty for p in parts]),
            np.concatenate([p.feasible for p in parts]),
        )

    def __len__(self) -> int:
        return int(self.objective.shape[0])

    @property
    def tier(self) -> np.ndarray:
        """0 feasible, 1 evaluable but breaking a constraint, 2 not evaluable."""
        return np.where(self.feasible, 0, np.where(np.isfinite(self.penalty), 1, 2))

    @property
    def value(self) -> np.ndarray:
        """What is compared within a tier: objective (tier 0), penalty (tier 1), 0 (tier 2)."""
        return np.where(self.feasible, self.objective, np.where(np.isfinite(self.penalty), self.penalty, 0.0))

    def updated(self, mask: np.ndarray, new: Scores) -> Scores:
        """These scores with rows ``mask`` replaced by ``new``'s."""
        return Scores(
            np.where(mask, new.objective, self.objective),
            np.where(mask, new.penalty, self.penalty),
            np.where(mask, new.feasible, self.feasible),
        )

    def take(self, index: np.ndarray | int) -> Scores:
        index = np.atleast_1d(np.asarray(index))
        return Scores(self.objective[index], self.penalty[index], self.feasible[index])

    def order(self) -> np.ndarray:
        """Indices from best to worst by Deb's rule (stable: ties keep their order)."""
        return np.lexsort((np.arange(len(self)), self.value, self.tier))

    def best(self) -> int:
        return int(self.order()[0])

    def energy(self, scale: float, penalty_weight: float) -> np.ndarray:
        """A scalar for annealing: objective + penalty_weight * scale * penalty (inf if not evaluable)."""
        with np.errstate(invalid="ignore"):
            out = self.objective + penalty_weight * scale * self.penalty
        return np.where(np.isfinite(self.penalty), out, np.inf)


def better(a: Scores, b: Scores) -> np.ndarray:
    """Elementwise: ``a`` strictly better than ``b`` by Deb's feasibility rule."""
    ta, tb = a.tier, b.tier
    return (ta < tb) | ((ta == tb) & (a.value < b.value))


# ---------------------------------------------------------------- search space
@dataclass(frozen=True)
class SearchSpace:
    """What a heuristic searches: columns, allowed devices, the scorer, seeds.

    Attributes:
        allowed: [n, D] bool, at least one True per column.
        blocks: [U + 1] column offsets of each user's nodes (one user: [0, n]).
        parents: per column, the columns of its inputs.
        output_source: [n] the device an output column's tensor must reach
            (its user's source), -1 for other columns.
        has_link: [D, D] bool: a tensor can go from one device to the other
            (directly or through relays; True on the diagonal).
        score_rows: placements [P, n] -> :class:`Scores` (the cost model).
        decode_row: a row -> what the planner returns (placement or placements).
        seeds: [k, n] warm-start rows (allowed, repaired), best first.
        seed_names: what each seed is (for the plan's note).
        local: [n] the all-on-source row (the first allowed device where the
            source is not allowed).
        column_source: [n] the source device of each column's user.
        cut_bytes: [n] bytes of the tensors crossing a cut of the user's
            topological order just before this column (inf at a user's
            first column). Small cuts are where DNN partitions split well
            (Neurosurgeon's observation); the random moves draw half their
            cut points with a bias towards them.
    """

    allowed: np.ndarray
    blocks: np.ndarray
    parents: tuple[np.ndarray, ...]
    output_source: np.ndarray
    has_link: np.ndarray
    score_rows: Callable[[np.ndarray], Scores]
    decode_row: Callable[[np.ndarray], object]
    seeds: np.ndarray
    seed_names: tuple[str, ...]
    local: np.ndarray
    column_source: np.ndarray
    cut_bytes: np.ndarray
    _choices: np.ndarray = field(init=False, repr=False, compare=False)
    _counts: np.ndarray = field(init=False, repr=False, compare=False)
    _edges: tuple[np.ndarray, np.ndarray] = field(init=False, repr=False, compare=False)
    _memo: dict[bytes, tuple[float, float, bool]] = field(default_factory=dict, init=False, repr=False, compare=False)
    _counter: list[int] = field(default_factory=lambda: [0], init=False, repr=False, compare=False)
    _cut_cdf: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        counts = self.allowed.sum(axis=1)
        choices = np.zeros((self.n_columns, max(1, int(counts.max(initial=1)))), dtype=np.int64)
        for j in range(self.n_columns):
            row = np.flatnonzero(self.allowed[j])
            choices[j, : len(row)] = row
        object.__setattr__(self, "_choices", choices)
        object.__setattr__(self, "_counts", counts.astype(np.int64))
        edge_src = np.concatenate([*self.parents, np.empty(0, dtype=np.int64)]).astype(np.int64)
        edge_dst = np.concatenate(
            [*(np.full(len(p), j, dtype=np.int64) for j, p in enumerate(self.parents)), np.empty(0, dtype=np.int64)]
        )
        object.__setattr__(self, "_edges", (edge_src, edge_dst))
        # cut-point weights: within each user's block, 1 / (1 + rank of the cut size), summing to 1 per block
        weight = np.zeros(self.n_columns)
        for start, stop in zip(self.blocks[:-1], self.blocks[1:], strict=True):
            if stop - start < 2:
                continue
            inner = np.arange(start + 1, stop)
            rank = np.empty(len(inner))
            rank[np.lexsort((inner, self.cut_bytes[inner]))] = np.arange(len(inner))
            w = 1.0 / (1.0 + rank)
            weight[inner] = w / w.sum()
        object.__setattr__(self, "_cut_cdf", np.concatenate([[0.0], np.cumsum(weight)]))

    @property
    def n_columns(self) -> int:
        return int(self.allowed.shape[0])

    def with_seed(self, row: np.ndarray, name: str) -> SearchSpace:
        """This space with ``row`` among its seeds (re-ranked by Deb's rule); scores seen so far are kept."""
        X = np.concatenate([row[None, :].astype(np.int64), self.seeds], axis=0)
        names = (name, *self.seed_names)
        _, first = np.unique(X, axis=0, return_index=True)
        first = np.sort(first)
        X = X[first]
        order = self.score(X).order()
        new = replace(self, seeds=X[order], seed_names=tuple(names[first[i]] for i in order))
        new._memo.update(self._memo)
        new._counter[0] = self._counter[0]
        return new

    @property
    def n_devices(self) -> int:
        return int(self.allowed.shape[1])

    @property
    def free(self) -> np.ndarray:
        """Columns with more than one allowed device (the genes that can change)."""
        return np.flatnonzero(self._counts > 1)

    @property
    def block_end(self) -> np.ndarray:
        """[n] the end column (exclusive) of each column's user block."""
        out = np.empty(self.n_columns, dtype=np.int64)
        for start, stop in zip(self.blocks[:-1], self.blocks[1:], strict=True):
            out[start:stop] = stop
        return out

    @property
    def needs_link_repair(self) -> bool:
        return not bool(self.has_link.all())

    # ----------------------------------------------------------- scoring
    def score(self, X: np.ndarray) -> Scores:
        """The cost model's scores of every row.

        Rows already scored during this search come from a memo (populations
        converge, so many rows repeat); the others are scored by the cost
        model once each, in chunks of :data:`SCORE_CHUNK` rows.
        :attr:`evaluated` counts the placements the cost model scored.
        """
        X = np.atleast_2d(X)
        keys = [row.tobytes() for row in X.astype(np.int16)]
        memo = self._memo
        todo: dict[bytes, int] = {}
        for i, key in enumerate(keys):
            if key not in memo and key not in todo:
                todo[key] = i
        if todo:
            if len(memo) + len(todo) > MEMO_ROWS:
                memo.clear()
            rows = np.fromiter(todo.values(), dtype=np.int64, count=len(todo))
            fresh = [self.score_rows(X[rows[i : i + SCORE_CHUNK]]) for i in range(0, len(rows), SCORE_CHUNK)]
            new = Scores.concat(fresh)
            for j, key in enumerate(todo):
                memo[key] = (float(new.objective[j]), float(new.penalty[j]), bool(new.feasible[j]))
            self._counter[0] += len(todo)
        triples = [memo[key] for key in keys]
        return Scores(
            np.array([t[0] for t in triples], dtype=float),
            np.array([t[1] for t in triples], dtype=float),
            np.array([t[2] for t in triples], dtype=bool),
        )

    @property
    def evaluated(self) -> int:
        """Placements the cost model scored so far (repeats come from the memo)."""
        return int(self._counter[0])

    # ----------------------------------------------------------- random rows
    def random_allowed(self, rng: np.random.Generator, shape_rows: int) -> np.ndarray:
        """[P, n] a uniformly random allowed device per column."""
        r = np.floor(rng.random((shape_rows, self.n_columns)) * self._counts[None, :]).astype(np.int64)
        return self._choices[np.arange(self.n_columns)[None, :], r]

    def random_rows(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """``count`` random placements made of a few contiguous segments.

        Each user's columns (topological order) are cut at 0 to 4 random
        positions (:meth:`sample_cuts`) and each segment goes to a random
        device; a column where that device is not allowed takes a random
        allowed one. DNN partitions are contiguous runs of layers, so such
        rows are far better starting points than independent random genes.
        """
        if count <= 0:
            return np.empty((0, self.n_columns), dtype=np.int64)
        cut = np.zeros((count, self.n_columns + 1), dtype=bool)
        for start, stop in zip(self.blocks[:-1], self.blocks[1:], strict=True):
            cut[:, start] = True
            n_cuts = rng.integers(0, 5, size=count)
            for slot in range(4):
                rows = np.flatnonzero(n_cuts > slot)
                where = self.sample_cuts(rng, np.full(len(rows), start), np.full(len(rows), stop))
                cut[rows, where] = True
        segment = np.cumsum(cut[:, : self.n_columns], axis=1) - 1
        seg_device = rng.integers(0, self.n_devices, size=(count, int(segment.max(initial=0)) + 1))
        device = np.take_along_axis(seg_device, segment, axis=1)
        fallback = self.random_allowed(rng, count)
        X = np.where(self.allowed[np.arange(self.n_columns)[None, :], device], device, fallback)
        return self.repair(X)

    # ----------------------------------------------------------- operators
    def block_of(self, columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(first column, end column) of each column's user block."""
        b = np.searchsorted(self.blocks, columns, side="right") - 1
        return self.blocks[b], self.blocks[b + 1]

    def sample_cuts(self, rng: np.random.Generator, start: np.ndarray, stop: np.ndarray) -> np.ndarray:
        """One cut position per entry in ``(start, stop)``: half uniform, half biased to small cuts.

        The biased half draws from weights ``1 / (1 + rank)`` of the cut
        sizes (:attr:`cut_bytes`) within the block; a position ``k`` means
        "between columns ``k - 1`` and ``k``". Blocks of one column give ``stop``.
        """
        k = len(start)
        span = np.maximum(stop - start - 1, 0)
        uniform = start + 1 + np.floor(rng.random(k) * span).astype(np.int64)
        lo, hi = self._cut_cdf[start + 1], self._cut_cdf[stop]
        u = lo + rng.random(k) * (hi - lo)
        biased = np.clip(np.searchsorted(self._cut_cdf, u, side="right") - 1, start + 1, np.maximum(stop - 1, start + 1))
        out = np.where(rng.random(k) < 0.5, biased, uniform)
        return np.where(span > 0, out, stop)

    def segment_mutation(self, rng: np.random.Generator, X: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Move one random segment of each selected row to one random device.

        For each row in ``rows``: a user block (in proportion to its free
        columns), a cut position ``c`` in it (:meth:`sample_cuts`) and, with
        equal chance, the column ``c`` alone, the prefix before ``c``, the
        suffix from ``c`` (both: a new cut of the topological order), or the
        run between ``c`` and a second cut position; the device is a random
        allowed device of the segment's last (prefix) or first column;
        columns of the segment that do not allow it keep their device.
        """
        X = X.copy()
        free = self.free
        if not len(rows) or not len(free):
            return X
        k = len(rows)
        anchor = free[rng.integers(0, len(free), size=k)]
        block_start, block_end = self.block_of(anchor)
        cut = np.minimum(self.sample_cuts(rng, block_start, block_end), block_end - 1)
        other = self.sample_cuts(rng, block_start, block_end)
        kind = rng.integers(0, 4, size=k)
        lo_run, hi_run = np.minimum(cut, other), np.maximum(cut, other)
        hi_run = np.where(hi_run == lo_run, lo_run + 1, hi_run)
        start = np.select([kind == 0, kind == 1, kind == 2], [cut, block_start, cut], lo_run)
        stop = np.select([kind == 0, kind == 1, kind == 2], [cut + 1, cut, block_end], hi_run)
        ref = np.where(kind == 1, np.maximum(cut - 1, block_start), start)
        r = np.floor(rng.random(k) * self._counts[ref]).astype(np.int64)
        device = self._choices[ref, r]
        cols = np.arange(self.n_columns)[None, :]
        mask = (cols >= start[:, None]) & (cols < stop[:, None]) & self.allowed[:, device].T
        X[rows] = np.where(mask, device[:, None], X[rows])
        return X

    def gene_mutation(self, rng: np.random.Generator, X: np.ndarray, rate: float) -> np.ndarray:
        """Each free gene becomes a random allowed device with probability ``rate``."""
        if rate <= 0:
            return X
        mask = rng.random(X.shape) < rate
        return np.where(mask, self.random_allowed(rng, len(X)), X)

    def two_point_crossover(self, rng: np.random.Generator, X: np.ndarray, donor: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Two-point crossover of the selected rows of ``X`` with ``donor``'s rows.

        Two random cut columns split a row into outside-inside-outside; the
        result keeps one of the two children, with equal chance: the donor's
        inside and the row's outside, or the other way round.
        """
        X = X.copy()
        if not len(rows):
            return X
        n = self.n_columns
        a = rng.integers(0, n, size=len(rows))
        b = rng.integers(0, n, size=len(rows))
        lo, hi = np.minimum(a, b), np.maximum(a, b) + 1
        cols = np.arange(n)[None, :]
        inside = (cols >= lo[:, None]) & (cols < hi[:, None])
        mask = inside ^ (rng.random(len(rows)) < 0.5)[:, None]
        X[rows] = np.where(mask, donor[rows], X[rows])
        return X

    # ----------------------------------------------------------- link repair
    def link_broken(self, X: np.ndarray) -> np.ndarray:
        """[P] rows with a transfer over a missing link (between a node and an input, or an output and the source)."""
        edge_src, edge_dst = self._edges
        broken = (~self.has_link[X[:, edge_src], X[:, edge_dst]]).any(axis=1)
        outputs = np.flatnonzero(self.output_source >= 0)
        if len(outputs):
            broken |= (~self.has_link[X[:, outputs], self.output_source[outputs][None, :]]).any(axis=1)
        return broken

    def repair(self, X: np.ndarray) -> np.ndarray:
        """Rows whose transfers need a missing link, moved onto linked devices.

        Columns are visited in topological order; a column whose device has
        no link with one of its inputs' devices (or, for an output, with the
        source) moves to the first of: its first input's device, its user's
        source, the lowest-index allowed device linked to all of them. A
        column with no such device is left as it is (the row stays not
        evaluable and loses every comparison).
        """
        if not self.needs_link_repair or not len(X):
            return X
        broken = self.link_broken(X)
        if not broken.any():
            return X
        X = X.copy()
        Y = X[broken]
        R = len(Y)
        rows = np.arange(R)
        for j in range(self.n_columns):
            if self._counts[j] <= 1:
                continue
            ok = np.broadcast_to(self.allowed[j], (R, self.n_devices)).copy()
            for p in self.parents[j]:
                ok &= self.has_link[Y[:, p], :]
            if self.output_source[j] >= 0:
                ok &= self.has_link[:, self.output_source[j]][None, :]
            need = ~ok[rows, Y[:, j]]
            if not need.any():
                continue
            source = int(self.column_source[j])
            first = Y[:, self.parents[j][0]] if len(self.parents[j]) else np.full(R, source)
            choice = np.where(ok[rows, first], first, np.where(ok[:, source], source, np.argmax(ok, axis=1)))
            possible = ok.any(axis=1)
            fix = need & possible
            Y[fix, j] = choice[fix]
        X[broken] = Y
        return X


# ---------------------------------------------------------------- building spaces
def _parents(comp: CompiledProblem, offset: int = 0) -> list[np.ndarray]:
    parents: list[list[int]] = [[] for _ in range(comp.n_nodes)]
    for u, w in zip(comp.edge_src.tolist(), comp.edge_dst.tolist(), strict=True):
        parents[w].append(u + offset)
    return [np.array(p, dtype=np.int64) for p in parents]


def _cut_bytes(comp: CompiledProblem) -> np.ndarray:
    """[n] bytes crossing a cut of the topological order just before each node (inf before the first)."""
    n = comp.n_nodes
    last = np.full(n, -1, dtype=np.int64)
    np.maximum.at(last, comp.edge_src, comp.edge_dst)
    diff = np.zeros(n + 1)
    senders = np.flatnonzero(last >= 0)
    np.add.at(diff, senders + 1, comp.out_bytes[senders])
    np.add.at(diff, last[senders] + 1, -comp.out_bytes[senders])
    out = np.cumsum(diff)[:n]
    if n:
        out[0] = np.inf
    return out


def _local_row(comp: CompiledProblem) -> np.ndarray:
    """The source wherever allowed, else the first allowed device."""
    allowed = comp.allowed
    return np.where(allowed[:, comp.source], comp.source, np.argmax(allowed, axis=1)).astype(np.int64)


@dataclass(frozen=True)
class SeedSet:
    """Warm-start placements (rows of device indices, not yet repaired) and what each one is."""

    rows: list[np.ndarray]
    names: list[str]


def single_user_seeds(problem: Problem, comp: CompiledProblem) -> SeedSet:
    """Warm-start placements of a single-user problem (cheap, not repaired).

    - the all-local placement;
    - every "all on device d" placement (inputs on the source);
    - per other device d, the best single split of the topological order
      between the source and d (Neurosurgeon, Kang et al. ASPLOS'17), over at
      most :data:`MAX_SEED_SPLITS` evenly spaced split points, chosen by
      Deb's rule (so budgets and memory count);
    - per other device d, the minimum s-t cut between the source and d for
      the objective (DADS, Hu et al. INFOCOM'19; :mod:`tiercut.plan.mincut`);
    - per budgeted metric and other device d, the minimum cut for that metric
      alone (the placement that keeps the budget best; a budget none of them
      keeps is often unkeepable).
    """
    from tiercut.plan.mincut import mincut_two_devices

    local = _local_row(comp)
    rows: list[np.ndarray] = [local]
    names: list[str] = ["local"]
    D = comp.n_devices
    src = comp.source
    is_input = np.array([n.is_input for n in problem.graph])
    order = np.cumsum(~is_input)
    n_compute = int((~is_input).sum())
    form = None
    for d in range(D):
        if d == src:
            continue
        on_d = np.where(comp.allowed[:, d], d, local)
        rows.append(on_d)
        names.append(f"all-on-{problem.device_names[d]}")
        points = np.unique(np.linspace(0, n_compute, min(n_compute + 1, MAX_SEED_SPLITS)).round().astype(np.int64))
        splits = np.where(order[None, :] <= points[:, None], local[None, :], on_d[None, :])
        scores = Scores.of(evaluate_many(comp, splits))
        rows.append(splits[scores.best()])
        names.append(f"split-{problem.device_names[d]}")
        if form is None:  # the throughput objective's seeds: the latency cut (within #stages of its optimum)
            form = linear_form(comp, "latency" if problem.objective.is_throughput else problem.objective)
        found = mincut_two_devices(comp, form, src, d)
        if found is not None:
            rows.append(found[0].astype(np.int64))
            names.append(f"mincut-{problem.device_names[d]}")
        for metric in problem.constraints.budgets():
            found = mincut_two_devices(comp, linear_form(comp, metric), src, d)
            if found is not None:
                rows.append(found[0].astype(np.int64))
                names.append(f"mincut-{metric}-{problem.device_names[d]}")
    return SeedSet(rows, names)


def _finish_seeds(space_args: dict, seeds: SeedSet) -> SearchSpace:
    """Repair, de-duplicate and rank the seeds (best first by Deb's rule)."""
    draft = SearchSpace(**space_args, seeds=np.empty((0, len(space_args["allowed"])), dtype=np.int64), seed_names=())
    if not seeds.rows:
        return draft
    names = seeds.names
    X = draft.repair(np.stack(seeds.rows).astype(np.int64))
    _, first = np.unique(X, axis=0, return_index=True)
    first = np.sort(first)
    X = X[first]
    kept_names = [names[i] for i in first]
    order = draft.score(X).order()
    return SearchSpace(**space_args, seeds=X[order], seed_names=tuple(kept_names[i] for i in order))


def single_user_space(problem: Problem, *, warm_start: bool) -> SearchSpace:
    """The search space of a single-user problem (cost model: :func:`evaluate_many`)."""
    comp = compile_problem(problem)
    local = _local_row(comp)
    output_source = np.where(comp.is_output, comp.source, -1).astype(np.int64)
    args = {
        "allowed": comp.allowed.copy(),
        "blocks": np.array([0, comp.n_nodes], dtype=np.int64),
        "parents": tuple(_parents(comp)),
        "output_source": output_source,
        "has_link": comp.reachable.copy(),
        "score_rows": lambda X: Scores.of(evaluate_many(comp, X)),
        "decode_row": lambda row: decode(comp, row),
        "local": local,
        "column_source": np.full(comp.n_nodes, comp.source, dtype=np.int64),
        "cut_bytes": _cut_bytes(comp),
    }
    seeds = single_user_seeds(problem, comp) if warm_start else SeedSet([local], ["local"])
    return _finish_seeds(args, seeds)


def multi_user_space(problem: MultiUserProblem, *, warm_start: bool) -> SearchSpace:
    """The joint search space of a multi-user problem (equal-share model, :func:`evaluate_users_many`).

    Warm start: the joint all-local placement; each user's best solo seed
    (:func:`single_user_seeds` on its own problem, as if alone) with the others
    local; and every user on its best solo seed at once.
    """
    cm = compile_users(problem)
    offsets = cm.offsets
    solo = [compile_problem(u.problem) for u in problem.users]
    allowed = np.concatenate([c.allowed for c in solo], axis=0)
    parents: list[np.ndarray] = []
    output_source = []
    for c, off in zip(solo, offsets[:-1], strict=True):
        parents.extend(_parents(c, int(off)))
        output_source.append(np.where(c.is_output, c.source, -1))
    local_parts = [_local_row(c) for c in solo]
    local = np.concatenate(local_parts).astype(np.int64)
    names_users = [u.name for u in problem.users]

    def decode_joint(row: np.ndarray) -> dict[str, dict[str, str]]:
        return {
            name: decode(c, row[offsets[i] : offsets[i + 1]]) for i, (name, c) in enumerate(zip(names_users, solo, strict=True))
        }

    args = {
        "allowed": allowed,
        "blocks": offsets.astype(np.int64),
        "parents": tuple(parents),
        "output_source": np.concatenate(output_source).astype(np.int64),
        "has_link": solo[0].reachable.copy(),
        "score_rows": lambda X: Scores.of(evaluate_users_many(cm, X)),
        "decode_row": decode_joint,
        "local": local,
        "column_source": np.concatenate([np.full(c.n_nodes, c.source, dtype=np.int64) for c in solo]),
        "cut_bytes": np.concatenate([_cut_bytes(c) for c in solo]),
    }
    rows: list[np.ndarray] = [local]
    names: list[str] = ["local"]
    if warm_start:
        best_parts = []
        for user, c in zip(problem.users, solo, strict=True):
            X = np.stack(single_user_seeds(user.problem, c).rows)
            best_parts.append(X[Scores.of(evaluate_many(c, X)).best()])
        for i, name in enumerate(names_users):
            parts = list(local_parts)
            parts[i] = best_parts[i]
            rows.append(np.concatenate(parts))
            names.append(f"solo-best-{name}")
        rows.append(np.concatenate(best_parts))
        names.append("solo-best-all")
    return _finish_seeds(args, SeedSet(rows, names))


# ---------------------------------------------------------------- feasibility repair
def repair_feasibility(space: SearchSpace, row: np.ndarray, steps: int) -> tuple[np.ndarray, str]:
    """``row``, or a better placement by Deb's rule when ``row`` breaks a constraint.

    Steepest descent over the greedy planner's moves (node, prefix, suffix,
    segment, range; :func:`tiercut.plan.greedy.neighbourhood`) by Deb's rule
    -- a move that lowers the constraint excess wins until a feasible
    placement is reached, after which moves must lower the objective -- for
    at most ``steps`` moves, from ``row`` and then from each of the best
    :data:`REPAIR_STARTS` warm-start placements (which include the budget
    metrics' minimum cuts) until one ends feasible; the best by Deb's rule
    is kept. Returns the row and a note (empty when ``row`` was feasible).
    """
    from tiercut.plan.greedy import neighbourhood, range_cuts

    current = space.score(row[None, :])
    if current.feasible[0]:
        return row, ""
    cuts = range_cuts(space, 8)

    def descend(start: np.ndarray, budget: int) -> tuple[np.ndarray, Scores, int]:
        x, score = start.copy(), space.score(start[None, :])
        made = 0
        while made < budget:
            moves = space.repair(neighbourhood(space, x, cuts))
            if not len(moves):
                break
            scores = space.score(moves)
            b = scores.best()
            if not better(scores.take(b), score)[0]:
                break
            x, score = moves[b].copy(), scores.take(b)
            made += 1
        return x, score, made

    # the answer itself, then the best few warm-start placements: each a start of a Deb-rule descent
    starts = [row] + [space.seeds[i] for i in range(min(REPAIR_STARTS, len(space.seeds)))]
    moves_made = 0
    for start in starts:
        x, score, made = descend(start, steps)
        moves_made += made
        if better(score, current)[0]:
            row, current = x, score
        if current.feasible[0]:
            break
    if current.feasible[0]:
        return row, f"; repaired to feasibility ({moves_made} descent moves from {len(starts)} starts at most)"
    return row, f"; no feasible placement found (repair: {moves_made} descent moves from {len(starts)} starts)"


def budget_optima(problem: Problem) -> list[np.ndarray]:
    """Each budgeted metric's own optimum with the pins, by the chain DP (exact on chains and plain blocks):
    when a budget can be kept, its metric's optimum keeps it (when the DP is exact)."""
    from tiercut.cost import encode
    from tiercut.plan.dp import DynamicProgrammingPlanner
    from tiercut.problem import Constraints, Objective

    if len(problem.devices) > 16:
        return []
    rows = []
    comp = compile_problem(problem)
    pins = Constraints(memory=False, pinned=dict(problem.constraints.pinned))
    for metric in problem.constraints.budgets():
        alone = problem.with_objective(Objective(metric)).with_constraints(pins)
        found = DynamicProgrammingPlanner(enumeration_limit=2_000, local_search_rounds=3)._solve(alone)
        row = encode(comp, found.placement)
        if comp.allowed[np.arange(comp.n_nodes), row].all():  # not the DP's fallback when nothing was possible
            rows.append(row)
    return rows


# ---------------------------------------------------------------- the planner base
def initial_population(space: SearchSpace, rng: np.random.Generator, size: int, max_seeds: int) -> np.ndarray:
    """The best ``max_seeds`` seeds, then random segment rows up to ``size``."""
    seeds = space.seeds[: max(0, min(max_seeds, size))]
    return np.concatenate([seeds, space.random_rows(rng, size - len(seeds))], axis=0).astype(np.int64)


@dataclass(frozen=True)
class SearchResult:
    """What a heuristic's search returns: the best row and a line on how it went."""

    row: np.ndarray
    note: str


@dataclass
class Incumbent:
    """The best row a search has seen, and the rounds since it last improved (for ``patience``)."""

    row: np.ndarray
    scores: Scores
    patience: int
    stall: int = 0

    @classmethod
    def first(cls, X: np.ndarray, scores: Scores, patience: int, index: int | None = None) -> Incumbent:
        """Row ``index`` of ``X`` (default: the best-scored one)."""
        i = scores.best() if index is None else int(index)
        return cls(X[i].copy(), scores.take(i), int(patience))

    def offer(self, X: np.ndarray, scores: Scores, index: int | None = None) -> bool:
        """Keep row ``index`` (default: the best) if it beats the incumbent; True once patience runs out."""
        i = scores.best() if index is None else int(index)
        if better(scores.take(i), self.scores)[0]:
            self.row, self.scores, self.stall = X[i].copy(), scores.take(i), 0
        else:
            self.stall += 1
        return self.stall >= self.patience

    def result(self, how: str) -> SearchResult:
        """The search's answer, saying whether it stopped early."""
        if self.stall >= self.patience:
            how += f" (stopped: no improvement in {self.patience})"
        return SearchResult(self.row, how)


class HeuristicPlanner(Planner, metaclass=ABCMeta):
    """Base of the heuristics: builds the space, runs :meth:`search`, decodes the best row.

    Subclasses set the class attributes and ``__init__`` keywords (a
    randomised one has ``seed`` and ``warm_start``), override
    :meth:`settings_problem` (a reason a setting is out of range, or None)
    and :meth:`search`.
    """

    multi_user = True
    plans_throughput = True

    def settings_problem(self) -> str | None:
        return None

    def wants_warm_start(self) -> bool:
        """Build the warm-start seeds (default: the ``warm_start`` setting)."""
        return bool(self.get_params().get("warm_start", False))

    def random_seed(self) -> int | None:
        """The ``seed`` setting (None for a deterministic planner)."""
        seed = self.get_params().get("seed")
        return None if seed is None else int(seed)

    def check(self, problem: Problem) -> str | None:
        return self.settings_problem()

    def check_multi(self, problem: MultiUserProblem) -> str | None:
        return self.settings_problem()

    @abstractmethod
    def search(self, space: SearchSpace, rng: np.random.Generator) -> SearchResult:
        """The heuristic itself: the best row found in ``space`` using only ``rng`` for randomness."""

    #: randomised searches with a ``warm_start`` setting run the cold search too (see :meth:`_search`)
    cold_and_warm: ClassVar[bool] = True
    #: steepest-descent steps of the feasibility repair (:func:`repair_feasibility`)
    repair_steps: ClassVar[int] = 50
    #: seconds the exact program may take when the repair finds no feasible placement (single user)
    repair_ilp_s: ClassVar[float] = 10.0

    def _run(self, space: SearchSpace) -> SearchResult:
        if not len(space.free):
            return SearchResult(space.local, "every node is fixed (inputs, pins or a single allowed device)")
        return self.search(space, np.random.default_rng(self.random_seed() or 0))

    def _search(
        self,
        space: SearchSpace,
        cold_space: Callable[[], SearchSpace],
        warm_space: Callable[[], SearchSpace],
        budget_seeds: Callable[[], list[np.ndarray]],
    ) -> SearchResult:
        """The search, then :meth:`_finish`; warm-started never worse than cold.

        With ``warm_start`` on a randomised planner, the cold planner's whole
        work (the same seed and budget with ``warm_start=False``, its repair
        included) runs first; the warm-started search then starts from the
        warm-start placements plus the cold answer, and the better of the two
        answers by Deb's rule is kept -- so a warm start is never worse than
        the cold run of the same seed and budget (it costs one more search).
        """
        if self.cold_and_warm and self.wants_warm_start() and "warm_start" in self.get_params() and len(space.free):
            first = cold_space()
            cold = self._finish(first, self._run(first), cold=True, warm_space=warm_space, budget_seeds=budget_seeds)
            space = space.with_seed(cold.row, "cold-answer")
            warm = self._finish(space, self._run(space), cold=False, warm_space=warm_space, budget_seeds=budget_seeds)
            pair = space.score(np.stack([warm.row, cold.row]))
            if better(pair.take(1), pair.take(0))[0]:
                return SearchResult(cold.row, cold.note + "; the cold search's answer kept (warm and cold both ran)")
            return SearchResult(warm.row, warm.note + "; the warm-started answer kept (warm and cold both ran)")
        return self._finish(
            space, self._run(space), cold=not self.wants_warm_start(), warm_space=warm_space, budget_seeds=budget_seeds
        )

    def _finish(
        self,
        space: SearchSpace,
        result: SearchResult,
        *,
        cold: bool,
        warm_space: Callable[[], SearchSpace],
        budget_seeds: Callable[[], list[np.ndarray]],
    ) -> SearchResult:
        """The answer repaired towards feasibility when it breaks a constraint (:func:`repair_feasibility`):
        from the space's own seeds, then (a cold search) from the warm-start placements, then from each
        budgeted metric's own optimum by the chain DP."""
        row, note = repair_feasibility(space, result.row, self.repair_steps)
        if note.startswith("; no feasible") and cold:
            seeded = warm_space().with_seed(row, "search-answer")
            row, note = repair_feasibility(seeded, row, self.repair_steps)
            space = seeded
        if note.startswith("; no feasible"):
            extra = space
            for k, seed_row in enumerate(budget_seeds()):
                extra = extra.with_seed(seed_row, f"budget-optimum-{k}")
            row, note = repair_feasibility(extra.with_seed(row, "search-answer"), row, self.repair_steps)
        return SearchResult(row, result.note + note)

    def _last_resort(self, problem: Problem, placement: Mapping[str, str], note: str) -> tuple[Mapping[str, str], str]:
        """When the repair found nothing feasible: the exact program, for at most :attr:`repair_ilp_s` seconds,
        decides whether a feasible placement exists and gives one (kept only if it is feasible)."""
        from tiercut.cost import evaluate
        from tiercut.plan.ilp import ILPPlanner

        planner = ILPPlanner(time_limit_s=self.repair_ilp_s)
        if evaluate(problem, placement).feasible or self.repair_ilp_s <= 0 or planner.check(problem) is not None:
            return placement, note
        exact = planner._solve(problem)
        if evaluate(problem, exact.placement).feasible:
            return exact.placement, note + "; repaired by the exact program (a feasible placement exists)"
        return placement, note + "; the exact program found none either"

    def _note(self, space: SearchSpace, result: SearchResult) -> str:
        note = f"{result.note}; {space.evaluated:,} distinct placements scored"
        if self.wants_warm_start():
            names = ", ".join(space.seed_names[:4]) + (", ..." if len(space.seeds) > 4 else "")
            note += f"; warm start: {len(space.seeds)} seeds ({names})"
        seed = self.random_seed()
        return note if seed is None else f"{note}; seed={seed}"

    def _solve(self, problem: Problem) -> PlacementResult:
        space = single_user_space(problem, warm_start=self.wants_warm_start())
        result = self._search(
            space,
            lambda: single_user_space(problem, warm_start=False),
            lambda: single_user_space(problem, warm_start=True),
            lambda: budget_optima(problem),
        )
        placement = cast(Mapping[str, str], space.decode_row(result.row))
        placement, note = self._last_resort(problem, placement, self._note(space, result))
        return PlacementResult(placement, optimal=False, note=note)

    def _solve_multi(self, problem: MultiUserProblem) -> MultiPlacementResult:
        space = multi_user_space(problem, warm_start=self.wants_warm_start())
        result = self._search(
            space,
            lambda: multi_user_space(problem, warm_start=False),
            lambda: multi_user_space(problem, warm_start=True),
            list,
        )
        placements = cast(Mapping[str, Mapping[str, str]], space.decode_row(result.row))
        return MultiPlacementResult(placements, optimal=False, note=self._note(space, result))


def probability_problem(**values: float) -> str | None:
    """A reason when one of the named settings is not a probability in [0, 1]."""
    for name, value in values.items():
        if not (isinstance(value, (int, float)) and 0.0 <= float(value) <= 1.0 and math.isfinite(float(value))):
            return f"setting {name}={value!r} must be a probability in [0, 1]"
    return None


def count_problem(**values: object) -> str | None:
    """A reason when one of the named settings is not an integer >= its minimum (name=(value, minimum))."""
    for name, pair in values.items():
        value, minimum = pair  # type: ignore[misc]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            return f"setting {name}={value!r} must be an integer >= {minimum}"
    return None


__all__ = [
    "HeuristicPlanner",
    "Scores",
    "SearchResult",
    "SearchSpace",
    "SeedSet",
    "better",
    "count_problem",
    "initial_population",
    "multi_user_space",
    "probability_problem",
    "single_user_seeds",
    "single_user_space",
]
