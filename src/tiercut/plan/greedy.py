"""Greedy steepest descent over node, prefix, suffix, segment and range moves.

The greedy family of the survey (§4.6: "approximate algorithms, including
greedy algorithms"; its Table 3 lists greedy partitioners such as EPDNN,
Shin et al. EMDL'19, and ADDA, Wang et al. ICPADS'19; §4.6.7's greedy
two-dimensional partition, GTDP, of MeDNN, Mao et al. ICCAD'17): start from
a placement and repeatedly apply the single move that improves it most.

Exactly:

1. start from the all-local placement (``start="local"``; nodes that
   cannot run on the source take their first allowed device), or from the
   best warm-start placement (``start="best-seed"``: best of all-local,
   all-on-one-device, best single split and min cut per server);
2. build every move of the current placement ``x`` (for a multi-user
   problem, of each user's part of the joint placement):

   - *node*: one free node ``v`` to another allowed device ``d``;
   - *prefix*: node ``v`` and every earlier node of its user's topological
     order to ``d`` (where ``d`` is allowed; a new cut point);
   - *suffix*: node ``v`` and every later node to ``d`` (where allowed);
   - *segment*: the maximal run of consecutive nodes (topological order)
     that share ``v``'s device, to ``d`` (where allowed);
   - *range*: every node between two of the ``range_cuts`` smallest cuts
     of a user's topological order (cut size: bytes of the tensors
     crossing it; the block's end counts as a cut), to ``d`` (where
     allowed) -- e.g. a middle part of the network on a server reached
     through another one;

   duplicates are removed; placements needing a missing link are repaired;
3. score every move with the vectorised cost model and take the best by
   Deb's rule (feasible before infeasible, then objective, else least
   constraint excess); if it is strictly better than ``x`` it becomes ``x``
   and step 2 repeats, else ``x`` is a local optimum for these moves and is
   returned (or after ``max_steps`` moves).

Deterministic: no random choice (ties go to the move generated first:
devices in index order and, for each, the node, prefix, suffix, segment and
range moves in that order). Guarantee: none (a local optimum); never worse than its start.
Complexity: O(steps * |V| * |D| * (|V| + |E|) * |D|) (each step scores
about (4 |V| + range_cuts^2 / 2) |D| placements).
"""

from __future__ import annotations

import numpy as np

from tiercut.plan._population import HeuristicPlanner, SearchResult, SearchSpace, better, count_problem

STARTS = ("local", "best-seed")


def range_cuts(space: SearchSpace, count: int) -> list[np.ndarray]:
    """Per user block: its ``count`` smallest cuts (positions) and its end, sorted."""
    out = []
    for start, stop in zip(space.blocks[:-1], space.blocks[1:], strict=True):
        inner = np.arange(start + 1, stop)
        best = inner[np.lexsort((inner, space.cut_bytes[inner]))][:count]
        out.append(np.unique(np.concatenate([best, [stop]])).astype(np.int64))
    return out


def neighbourhood(space: SearchSpace, x: np.ndarray, cuts: list[np.ndarray] | None = None) -> np.ndarray:
    """Every node, prefix, suffix, segment and range move of ``x`` (rows; duplicates and ``x`` itself removed)."""
    n, D = space.n_columns, space.n_devices
    free = space.free
    cols = np.arange(n)
    block_end = space.block_end
    block_start = np.repeat(space.blocks[:-1], np.diff(space.blocks))
    # run id: consecutive columns of one block with the same device share a run
    new_run = np.ones(n, dtype=bool)
    new_run[1:] = (x[1:] != x[:-1]) | (block_start[1:] == cols[1:])
    run = np.cumsum(new_run)
    parts = []
    for d in range(D):
        movable = free[space.allowed[free, d] & (x[free] != d)]
        if not len(movable):
            continue
        k = len(movable)
        node = np.repeat(x[None, :], k, axis=0)
        node[np.arange(k), movable] = d
        target = space.allowed[:, d][None, :]
        suffix_mask = (cols[None, :] >= movable[:, None]) & (cols[None, :] < block_end[movable][:, None]) & target
        suffix = np.where(suffix_mask, d, x[None, :])
        prefix_mask = (cols[None, :] >= block_start[movable][:, None]) & (cols[None, :] <= movable[:, None]) & target
        prefix = np.where(prefix_mask, d, x[None, :])
        runs = np.unique(run[movable])
        segment_mask = (run[None, :] == runs[:, None]) & target
        segment = np.where(segment_mask, d, x[None, :])
        parts.extend([node, prefix, suffix, segment])
        for block_cuts in cuts or []:
            lo, hi = np.triu_indices(len(block_cuts), k=1)
            if not len(lo):
                continue
            a, b = block_cuts[lo], block_cuts[hi]
            range_mask = (cols[None, :] >= a[:, None]) & (cols[None, :] < b[:, None]) & target
            parts.append(np.where(range_mask, d, x[None, :]))
    if not parts:
        return np.empty((0, n), dtype=np.int64)
    moves = np.concatenate(parts, axis=0)
    _, first = np.unique(moves, axis=0, return_index=True)
    moves = moves[np.sort(first)]
    return moves[(moves != x[None, :]).any(axis=1)]


class GreedyPlanner(HeuristicPlanner):
    """Steepest descent from the all-local placement over node, prefix, suffix, segment and range moves (deterministic)."""

    name = "greedy"
    summary = "greedy steepest descent from all-local over node/prefix/suffix/segment/range moves, single and multi-user"
    reference = (
        "survey §4.6 greedy partitioners (EPDNN, Shin et al. EMDL'19; ADDA, Wang et al. ICPADS'19; "
        "GTDP, Mao et al. ICCAD'17)"
    )
    guarantee = "none: a local optimum for its moves (never worse than its start)"
    complexity = "O(steps * |V| |D| * (|V| + |E|) |D|)"

    def __init__(self, start: str = "local", max_steps: int = 1000, range_cuts: int = 16) -> None:
        self.start = start
        self.max_steps = max_steps
        self.range_cuts = range_cuts

    def wants_warm_start(self) -> bool:
        return self.start == "best-seed"

    def settings_problem(self) -> str | None:
        if self.start not in STARTS:
            return f"setting start={self.start!r} is not one of {', '.join(STARTS)}"
        return count_problem(max_steps=(self.max_steps, 0), range_cuts=(self.range_cuts, 0))

    def search(self, space: SearchSpace, rng: np.random.Generator) -> SearchResult:
        x = space.repair(space.local[None, :])[0] if self.start == "local" else space.seeds[0].copy()
        current = space.score(x[None, :])
        cuts = range_cuts(space, int(self.range_cuts))
        steps = 0
        converged = False
        while steps < int(self.max_steps):
            moves = space.repair(neighbourhood(space, x, cuts))
            if not len(moves):
                converged = True
                break
            scores = space.score(moves)
            b = scores.best()
            if not better(scores.take(b), current)[0]:
                converged = True
                break
            x, current = moves[b].copy(), scores.take(b)
            steps += 1
        how = f"greedy from {self.start}: {steps} moves"
        how += ", local optimum" if converged else f", stopped at max_steps={self.max_steps}"
        return SearchResult(x, how)
