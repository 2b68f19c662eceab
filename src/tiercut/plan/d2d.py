"""D2D collaboration: segments of one user's model matched to nearby helper devices by Kuhn-Munkres.

DCOSD2D: Guo, Dong, Wen, "Dynamic Computation Offloading Strategy with DNN
Partitioning in D2D Multi-Hop Networks", ICCBN 2021 (ACM, pp. 172-178,
doi:10.1145/3456415.3457224); the survey's table lists it as co-ends, layer
granularity, latency objective, Kuhn-Munkres (KM) assignment. A
resource-poor end device (the problem's ``source``) splits its DNN into
segments and offloads them to other end devices it reaches over
device-to-device links (Wi-Fi Direct, possibly several hops).

The paper's exact formulation was not reachable here (only its abstract), so
this is the formulation tiercut uses, stated in full:

1. **Segmentation.** The non-input nodes in topological order are cut into
   ``K`` contiguous segments, for ``K = 1 .. min(max_segments, helpers + 1,
   nodes)``: the two balanced segmentations (equal source compute time,
   equal parameter bytes) and every choice of ``K - 1`` boundaries among
   ``cut_candidates`` positions where little crosses (the local minima of the
   crossing bytes first: a D2D link is slow, so where the activations are
   small is where a model is cut; DCOSD2D's "dynamically find the partition
   point") and the positions the helpers' memory calls for (around a layer
   no helper can hold, and where a greedy packing into the largest helper
   memory ends a run).
2. **Matching (KM).** Rows are the segments; columns are the helper devices
   (each takes at most one segment, DCOSD2D's one task per helper) and ``K``
   copies of the source (it may keep any number of segments). The weight of
   segment ``k`` on device ``d`` is its cost in a *star* model where every
   tensor crossing a segment boundary goes through the source::

       W[k, d] = sum_{v in k} node[v, d] + sum_{u in In(k)} transfer[u, s, d] + sum_{u in Out(k)} transfer[u, d, s]

   with ``node`` / ``transfer`` the objective's linear form
   (:func:`tiercut.cost.linear_form`: the cost model's own per-node and
   per-transfer terms), ``In(k)`` the tensors made outside ``k`` that ``k``
   reads and ``Out(k)`` those ``k`` makes that another segment or the result
   reads; ``inf`` where a node of ``k`` cannot run on ``d``, is pinned
   elsewhere, or ``k``'s parameters exceed ``d``'s memory. The star model is
   separable, so the best assignment is a linear assignment problem, solved
   exactly by ``scipy.optimize.linear_sum_assignment`` (Kuhn-Munkres /
   Jonker-Volgenant).
3. **Refinement (iterated KM).** Relaying every boundary through the source
   over-charges a chain of helpers passing tensors straight to each other.
   So, up to ``refine_rounds`` times, each segment is re-weighted in a
   *neighbour* model that fixes the others where the last matching put them
   (a segment pays for each tensor it reads from its maker's current device,
   and for the graph outputs it sends to the source) and KM is solved again,
   until the assignment repeats. Each round is exact for its own weights;
   together they are a local search (the joint problem with pairwise
   transfer costs is a quadratic assignment problem, which KM alone does not
   solve).
4. **Selection.** Every (segmentation, matching) candidate becomes a
   placement whose figures come from the cost model (direct D2D transfers
   between helpers where the routing finds them faster than the star); the
   best feasible one wins (and, as for every planner, no worse than all-local
   or all-on-one-device).

Guarantee: every matching step is exact for its weights (equal to brute
force over all assignments; tests/test_plan_d2d.py). The star model
approximates the cost model: where every tensor crossing a boundary is read
by one other device (a chain), the cost model's latency of the placement is
at most its star-model weight (a direct D2D path is never slower than the
relay through the source); a tensor read on several devices is charged once
into the source and once out per reader in the star model but once per
reading device from its maker in the cost model, so there either can be
larger. The plan's figures are always the cost model's. The whole plan is a heuristic: the segments are contiguous and
balanced, not optimised jointly with the assignment, so it can be above the
exact joint optimum (``ilp`` / ``brute-force``); benchmarks/d2d.py measures
that gap on random small problems.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tiercut.cost import compile_problem, evaluate_many, linear_form
from tiercut.cost.vector import CompiledProblem
from tiercut.errors import TiercutError
from tiercut.plan.base import PlacementResult, Planner
from tiercut.problem import Problem

#: the ways a model is cut into contiguous segments (each K tries every one)
SEGMENTATIONS = ("time", "params")
#: at most this many boundary choices per number of segments (the candidates with the most crossing bytes are
#: dropped first)
MAX_COMBINATIONS = 1000


@dataclass(frozen=True)
class Matching:
    """One KM assignment of segments to devices.

    Attributes:
        segments: each segment's node indices (contiguous in topological order).
        columns: the device of each column of ``weights`` (helpers once, then ``K`` copies of the source).
        weights: [K, columns] the weights KM solved (star or neighbour model; inf: the segment cannot go there).
        assignment: each segment's column.
        total: the sum of the chosen weights (inf: no feasible assignment).
        model: ``"star"`` (the first matching) or ``"neighbour"`` (a refinement round).
    """

    segments: tuple[tuple[int, ...], ...]
    columns: tuple[str, ...]
    weights: np.ndarray
    assignment: tuple[int, ...]
    total: float
    model: str = "star"

    @property
    def devices(self) -> tuple[str, ...]:
        """Each segment's device."""
        return tuple(self.columns[c] for c in self.assignment)


def helper_devices(problem: Problem) -> list[str]:
    """The devices other than the source that exchange tensors with it both ways (a path of links)."""
    s = problem.source
    return [d for d in problem.device_names if d != s and problem.reachable(s, d) and problem.reachable(d, s)]


def balanced_segments(comp: CompiledProblem, k: int, by: str = "time") -> list[tuple[int, ...]]:
    """The non-input nodes in topological order cut into ``k`` contiguous segments of about equal weight.

    ``by="time"`` weighs a node by its seconds on the source (the mean of its finite times where it cannot run
    there); ``by="params"`` by its parameter bytes. Every segment has at least one node.
    """
    if by not in SEGMENTATIONS:
        raise TiercutError(f"segmentation {by!r} is not known; use one of {', '.join(SEGMENTATIONS)}")
    problem = comp.problem
    nodes = [i for i, n in enumerate(problem.graph) if not n.is_input]
    if not 1 <= k <= len(nodes):
        raise TiercutError(f"cannot cut {len(nodes)} nodes into {k} segments; use 1..{len(nodes)}")
    if by == "time":
        c = comp.compute[nodes]
        finite = np.isfinite(c)
        mean = np.where(finite.any(axis=1), np.where(finite, c, 0.0).sum(axis=1) / np.maximum(finite.sum(axis=1), 1), 0.0)
        weight = np.where(finite[:, comp.source], c[:, comp.source], mean)
    else:
        weight = comp.param_bytes[nodes].astype(float)
    if not np.isfinite(weight).all() or weight.sum() <= 0:
        weight = np.ones(len(nodes))
    cum = np.cumsum(weight)
    targets = cum[-1] * np.arange(1, k) / k
    cuts = np.searchsorted(cum, targets, side="left") + 1  # segment j ends before position cuts[j]
    bounds = [0]
    for j, cut in enumerate(cuts):
        lo = bounds[-1] + 1  # every segment non-empty
        hi = len(nodes) - (k - 1 - j)  # room left for the segments after it
        bounds.append(int(min(max(cut, lo), hi)))
    bounds.append(len(nodes))
    return [tuple(nodes[a:b]) for a, b in itertools.pairwise(bounds)]


def crossing_bytes(comp: CompiledProblem) -> np.ndarray:
    """[m + 1] bytes of the tensors crossing each boundary of the non-input order (boundary j: before node j)."""
    problem = comp.problem
    nodes = [i for i, n in enumerate(problem.graph) if not n.is_input]
    rank = np.full(comp.n_nodes, -1)
    rank[nodes] = np.arange(len(nodes))
    last_reader = rank.copy()  # a tensor crosses every boundary between its maker and its last reader
    for u, w in zip(comp.edge_src.tolist(), comp.edge_dst.tolist(), strict=True):
        last_reader[u] = max(last_reader[u], rank[w])
    delta = np.zeros(len(nodes) + 2)
    for u in range(comp.n_nodes):
        first = rank[u] + 1  # inputs (rank -1) cross from boundary 0
        if last_reader[u] >= first:
            delta[first] += comp.out_bytes[u]
            delta[last_reader[u] + 1] -= comp.out_bytes[u]
    return np.cumsum(delta)[: len(nodes) + 1]


def cheap_boundaries(comp: CompiledProblem, count: int) -> list[int]:
    """``count`` inner boundaries (1 .. nodes-1) where little crosses, ascending.

    The local minima of the crossing bytes come first (a boundary no more costly than the one before it and
    cheaper than the one after it: the end of a pooling stage, a block's output), cheapest first; other
    boundaries, cheapest first, fill up to ``count``. Local minima keep the candidates spread over the model
    instead of bunched on one plateau of small tensors near its end.
    """
    crossing = crossing_bytes(comp)
    inner = np.arange(1, len(crossing) - 1)
    if not len(inner):
        return []
    minimum = (crossing[inner] <= crossing[inner - 1]) & (crossing[inner] < crossing[inner + 1])
    order = inner[np.lexsort((inner, crossing[inner], ~minimum))]
    return sorted(int(j) for j in order[:count])


def memory_boundaries(comp: CompiledProblem) -> list[int]:
    """Inner boundaries the helpers' memory calls for, ascending.

    Around every node no helper can take (its parameters exceed every helper's memory, it cannot run on any
    helper, or it is pinned to the source), and at the ends of a greedy packing of the order into runs whose
    parameters fit the largest helper memory.
    """
    problem = comp.problem
    helpers = [problem.device_index(d) for d in helper_devices(problem)]
    nodes = [i for i, n in enumerate(problem.graph) if not n.is_input]
    if not helpers or len(nodes) < 2:
        return []
    capacity = float(max(comp.memory_limit[h] for h in helpers))
    pinned = set(comp.pinned_nodes.tolist())
    out: set[int] = set()
    run_bytes = 0.0
    was_stuck = False
    for position, v in enumerate(nodes):
        size = float(comp.param_bytes[v])
        stuck = size > capacity or v in pinned or not np.isfinite(comp.compute[v, helpers]).any()
        if stuck != was_stuck:  # the ends of each run of nodes no helper can take
            out.add(position)
        was_stuck = stuck
        if stuck:
            run_bytes = 0.0
            continue
        if run_bytes + size > capacity:
            out.add(position)
            run_bytes = 0.0
        run_bytes += size
    return sorted(j for j in out if 0 < j < len(nodes))


def segmentations(comp: CompiledProblem, k: int, cut_candidates: int) -> list[tuple[tuple[int, ...], ...]]:
    """The candidate cuts of the non-input order into ``k`` segments: the balanced ones, then every choice of
    ``k - 1`` boundaries among the cheap ones (:func:`cheap_boundaries`) and the memory ones (:func:`memory_boundaries`)."""
    nodes = [i for i, n in enumerate(comp.problem.graph) if not n.is_input]
    out = [tuple(balanced_segments(comp, k, by)) for by in SEGMENTATIONS]
    crossing = crossing_bytes(comp)
    memory = sorted(memory_boundaries(comp), key=lambda j: (crossing[j], j))[:cut_candidates]
    candidates = sorted(set(cheap_boundaries(comp, cut_candidates)) | set(memory), key=lambda j: (crossing[j], j))
    while len(candidates) > k - 1 and math.comb(len(candidates), k - 1) > MAX_COMBINATIONS:
        candidates.pop()  # the costliest boundary goes first
    for bounds in itertools.combinations(sorted(candidates), k - 1):
        edges = [0, *bounds, len(nodes)]
        out.append(tuple(tuple(nodes[a:b]) for a, b in itertools.pairwise(edges)))
    unique: dict[tuple[tuple[int, ...], ...], None] = dict.fromkeys(out)
    return list(unique)


def segment_weights(
    comp: CompiledProblem,
    segments: Sequence[Sequence[int]],
    node: np.ndarray,
    transfer: np.ndarray,
    placed: Sequence[int] | None = None,
) -> tuple[np.ndarray, tuple[str, ...]]:
    """The weight matrix [K, helpers + K] and the device of each column (see the module docstring).

    Without ``placed``: the star model. With ``placed`` (each segment's current device index): the neighbour
    model of the refinement: a segment pays for each tensor it reads from its maker's current device (the
    source for graph inputs) and for sending the graph outputs it makes to the source.
    """
    problem = comp.problem
    names = problem.device_names
    s = comp.source
    helpers = [problem.device_index(d) for d in helper_devices(problem)]
    cols = [*helpers, *([s] * len(segments))]
    seg_of = np.full(comp.n_nodes, -1)
    for k, seg in enumerate(segments):
        seg_of[list(seg)] = k
    pinned = dict(zip(comp.pinned_nodes.tolist(), comp.pinned_devices.tolist(), strict=True))
    param_names, uses = problem.graph.param_table()
    graph_nodes = list(problem.graph)
    index = {n.name: i for i, n in enumerate(graph_nodes)}
    consumers: list[list[int]] = [[] for _ in graph_nodes]
    for u, w in zip(comp.edge_src.tolist(), comp.edge_dst.tolist(), strict=True):
        consumers[u].append(w)
    K = len(segments)
    W = np.zeros((K, len(cols)))
    for k, seg in enumerate(segments):
        reads: set[int] = set()
        for v in seg:
            reads.update(index[name] for name in graph_nodes[v].inputs if seg_of[index[name]] != k)
        consumers_outside = {
            u for u in seg
            if comp.is_output[u] or any(seg_of[w] != k for w in consumers[u])
        }
        params = set().union(*(uses[graph_nodes[v].name] for v in seg))
        seg_bytes = sum(param_names[p] for p in params)
        for c, d in enumerate(cols):
            if any(pinned.get(v, d) != d for v in seg) or seg_bytes > comp.memory_limit[d]:
                W[k, c] = math.inf
                continue
            w = float(node[list(seg), d].sum())
            if placed is None:
                w += float(sum(transfer[u, s, d] for u in reads)) + float(sum(transfer[u, d, s] for u in consumers_outside))
            else:
                w += float(sum(transfer[u, s if seg_of[u] < 0 else placed[seg_of[u]], d] for u in reads))
                w += float(sum(transfer[u, d, s] for u in seg if comp.is_output[u]))
            W[k, c] = w if math.isfinite(w) else math.inf
    return W, tuple(names[d] for d in cols)


def match_segments(weights: np.ndarray) -> tuple[tuple[int, ...], float]:
    """The least-total assignment of each row (segment) to a distinct column (Kuhn-Munkres, exact).

    Returns each row's column and the total; the total is inf when every assignment uses an inf weight.
    """
    from scipy.optimize import linear_sum_assignment

    W = np.asarray(weights, dtype=float)
    finite = W[np.isfinite(W)]
    big = (float(np.abs(finite).sum()) + 1.0) * (W.shape[0] + 1) * 10.0
    rows, cols = linear_sum_assignment(np.where(np.isfinite(W), W, big))
    assignment = tuple(int(c) for _, c in sorted(zip(rows.tolist(), cols.tolist(), strict=True)))
    chosen = W[np.arange(W.shape[0]), list(assignment)]
    return assignment, float(chosen.sum()) if np.isfinite(chosen).all() else math.inf


def brute_force_matching(weights: np.ndarray) -> tuple[tuple[int, ...], float]:
    """The least-total assignment by trying every injective map of rows to columns (the reference for tests)."""
    W = np.asarray(weights, dtype=float)
    best: tuple[tuple[int, ...], float] = ((), math.inf)
    for perm in itertools.permutations(range(W.shape[1]), W.shape[0]):
        total = float(W[np.arange(W.shape[0]), list(perm)].sum())
        if total < best[1] or not best[0]:
            best = (tuple(perm), total)
    return best


def matchings(
    problem: Problem, max_segments: int | None = None, cut_candidates: int = 8, refine_rounds: int = 3
) -> list[Matching]:
    """Every (segmentation, KM matching) candidate of ``problem``, K from 1 to its maximum, with the refinements.

    For each segmentation: the star-model matching, then up to ``refine_rounds`` rounds of KM on the
    neighbour-model weights of the previous round's assignment (until the assignment repeats).
    """
    comp = compile_problem(problem)
    form = linear_form(comp, problem.objective)
    n_compute = sum(1 for n in problem.graph if not n.is_input)
    k_max = min(len(helper_devices(problem)) + 1, n_compute, max_segments or n_compute)
    out: list[Matching] = []
    for k in range(1, k_max + 1):
        for segments in segmentations(comp, k, cut_candidates):
            W, columns = segment_weights(comp, segments, form.node, form.transfer)
            assignment, total = match_segments(W)
            out.append(Matching(segments, columns, W, assignment, total))
            seen = {tuple(columns[c] for c in assignment)}
            for _ in range(refine_rounds if k > 1 else 0):
                if not math.isfinite(total):
                    break
                placed = [problem.device_index(columns[c]) for c in assignment]
                W, columns = segment_weights(comp, segments, form.node, form.transfer, placed)
                assignment, total = match_segments(W)
                devices = tuple(columns[c] for c in assignment)
                if devices in seen:
                    break
                seen.add(devices)
                out.append(Matching(segments, columns, W, assignment, total, "neighbour"))
    return out


def matching_placement(comp: CompiledProblem, matching: Matching) -> np.ndarray:
    """The placement row of a matching: each segment's nodes on its device, inputs on the source."""
    row = np.full(comp.n_nodes, comp.source, dtype=np.int64)
    for seg, device in zip(matching.segments, matching.devices, strict=True):
        row[list(seg)] = comp.problem.device_index(device)
    return row


class D2DPlanner(Planner):
    """DCOSD2D: contiguous segments of the model matched to helper end devices by Kuhn-Munkres."""

    name = "d2d"
    summary = "segments of the model matched to D2D helper devices by Kuhn-Munkres (DCOSD2D)"
    reference = "Guo, Dong, Wen, DCOSD2D, ICCBN 2021 (doi:10.1145/3456415.3457224)"
    guarantee = "each KM matching is exact for its weights; segmentation and refinement are heuristics (not globally optimal)"
    complexity = ("O(S R (K_max (|V| + |E|) |D| + K_max^3)), S = sum_K C(boundaries, K-1) segmentations, "
                  "R = refine_rounds + 1, K_max = helpers + 1")

    def __init__(self, max_segments: int | None = None, cut_candidates: int = 8, refine_rounds: int = 3) -> None:
        self.max_segments = max_segments
        self.cut_candidates = cut_candidates
        self.refine_rounds = refine_rounds

    def check(self, problem: Problem) -> str | None:
        if self.max_segments is not None and (not isinstance(self.max_segments, int) or self.max_segments < 1):
            return f"max_segments must be a whole number >= 1 (got {self.max_segments!r})"
        if not isinstance(self.cut_candidates, int) or self.cut_candidates < 0:
            return f"cut_candidates must be a whole number >= 0 (got {self.cut_candidates!r})"
        if not isinstance(self.refine_rounds, int) or self.refine_rounds < 0:
            return f"refine_rounds must be a whole number >= 0 (got {self.refine_rounds!r})"
        if not helper_devices(problem):
            return "no other device exchanges tensors with the source (no D2D link or path of links)"
        return None

    def _solve(self, problem: Problem) -> PlacementResult:
        comp = compile_problem(problem)
        candidates = matchings(problem, self.max_segments, self.cut_candidates, self.refine_rounds)
        X = np.stack([matching_placement(comp, m) for m in candidates])
        batch = evaluate_many(comp, X)
        keys = [
            (0, float(o)) if f else (1, float(p))
            for f, o, p in zip(batch.feasible.tolist(), batch.objective.tolist(), batch.penalty.tolist(), strict=True)
        ]
        i = min(range(len(keys)), key=lambda j: keys[j])
        best = candidates[i]
        helpers_used = sorted({d for d in best.devices if d != problem.source})
        note = (f"{len(best.segments)} segment(s); helpers used: {', '.join(helpers_used) or 'none'}; "
                f"{best.model}-model weight {best.total:.6g}")
        row = X[i]
        placement = {n.name: problem.device_names[int(row[j])] for j, n in enumerate(problem.graph)}
        return PlacementResult(placement, optimal=False, note=note)


__all__ = [
    "MAX_COMBINATIONS",
    "SEGMENTATIONS",
    "D2DPlanner",
    "Matching",
    "balanced_segments",
    "brute_force_matching",
    "cheap_boundaries",
    "crossing_bytes",
    "helper_devices",
    "match_segments",
    "matching_placement",
    "matchings",
    "memory_boundaries",
    "segment_weights",
    "segmentations",
]
