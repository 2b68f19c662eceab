"""Graph structure shared by the chain planners: separators, units, unit shapes.

IONN (Jeong et al., SoCC'18) makes a DAG a chain by cutting it at the nodes
every path passes through; each *unit* is the sub-graph between two
consecutive such nodes (an inception or residual block becomes one unit).
With the graph in topological order, node ``i`` is a *separator* when no
edge leaves a node before ``i`` for a node after ``i``: everything later
reads only ``i`` and what comes after it. A unit is then the nodes after
one separator up to and including the next; its *entry* is the previous
separator (None for the first unit, whose boundary is the graph inputs).

Within a unit the chain planners need its shape:

- ``single``: one node;
- ``parallel``: every node other than the exit lies on one of several
  chains from the entry to the exit (each chain node reads only its
  predecessor, or the entry for the head, and is read only by its successor,
  or the exit for the tail; none is a graph output), and the exit reads the
  chain tails and possibly the entry itself (a skip edge): residual blocks,
  inception blocks of plain branches, squeeze-excitation;
- ``general``: anything else (nested branches, dense connections).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tiercut.cost import CompiledProblem, LinearForm


@dataclass(frozen=True)
class Unit:
    """One unit of the chain of units.

    Attributes:
        entry: node index of the previous separator (None for the first unit).
        nodes: node indices of the unit in topological order (the exit last);
            graph inputs are never in a unit.
        exit: node index of the separator ending the unit.
        inputs: graph-input node indices read by the unit (first unit only).
        shape: ``single``, ``parallel`` or ``general``.
        chains: for ``parallel``: the chains (node indices, head first).
        skip: for ``parallel``: the exit reads the entry directly.
        edges: the DAG edges (producer, consumer) into the unit's nodes.
    """

    entry: int | None
    nodes: tuple[int, ...]
    exit: int
    inputs: tuple[int, ...]
    shape: str
    chains: tuple[tuple[int, ...], ...] = ()
    skip: bool = False
    edges: tuple[tuple[int, int], ...] = ()


def separators(comp: CompiledProblem) -> list[int]:
    """Node indices (non-input) no edge jumps over, in order; the last node is always one."""
    n = comp.n_nodes
    reach = np.full(n, -1, dtype=np.int64)
    np.maximum.at(reach, comp.edge_src, comp.edge_dst)
    before = np.maximum.accumulate(np.concatenate([[-1], reach[:-1]]))  # furthest target of edges from nodes < i
    is_input = np.array([node.is_input for node in comp.problem.graph])
    out = [i for i in range(n) if not is_input[i] and before[i] <= i]
    if out and out[-1] != n - 1 and not is_input[n - 1]:
        out.append(n - 1)
    return out


def units(comp: CompiledProblem) -> list[Unit]:
    """The chain of units of the problem's graph (IONN's decomposition)."""
    graph = comp.problem.graph
    n = comp.n_nodes
    is_input = np.array([node.is_input for node in graph])
    preds: list[list[int]] = [[] for _ in range(n)]
    succs: list[list[int]] = [[] for _ in range(n)]
    for u, w in zip(comp.edge_src.tolist(), comp.edge_dst.tolist(), strict=True):
        preds[w].append(u)
        succs[u].append(w)
    result: list[Unit] = []
    entry: int | None = None
    start = 0
    for sep in separators(comp):
        members = tuple(i for i in range(start, sep + 1) if not is_input[i])
        inputs = tuple(sorted({p for i in members for p in preds[i] if is_input[p]}))
        shape, chains, skip = _shape(entry, members, sep, preds, succs, comp.is_output, is_input)
        edges = tuple((u, w) for w in members for u in preds[w])
        result.append(Unit(entry, members, sep, inputs, shape, chains, skip, edges))
        entry = sep
        start = sep + 1
    return result


def _shape(
    entry: int | None,
    members: tuple[int, ...],
    exit_: int,
    preds: list[list[int]],
    succs: list[list[int]],
    is_output: np.ndarray,
    is_input: np.ndarray,
) -> tuple[str, tuple[tuple[int, ...], ...], bool]:
    if len(members) == 1:
        return "single", (), False
    if entry is None:
        return "general", (), False
    inner = set(members) - {exit_}
    for i in inner:
        if is_output[i] or len(succs[i]) != 1 or len(preds[i]) != 1:
            return "general", (), False
    if any(p not in inner and p != entry for p in preds[exit_]):
        return "general", (), False
    heads = [w for w in succs[entry] if w in inner]
    chains = []
    seen: set[int] = set()
    for head in heads:
        if preds[head] != [entry]:
            return "general", (), False
        chain = [head]
        while True:
            nxt = succs[chain[-1]][0]
            if nxt == exit_:
                break
            if nxt not in inner or preds[nxt] != [chain[-1]]:
                return "general", (), False
            chain.append(nxt)
        seen.update(chain)
        chains.append(tuple(chain))
    if seen != inner:
        return "general", (), False
    skip = entry in preds[exit_]
    return "parallel", tuple(chains), skip


class UnitEvaluator:
    """The objective's part that belongs to one unit, for many placements of it.

    Local columns: the unit's boundary (its entry, if any, then the graph
    inputs it reads), then its nodes. The part counted is the linear form of
    the unit's nodes plus every transfer of a boundary or unit node except
    the exit (the exit's tensor is the next unit's business), including the
    return of graph outputs to the source. By the separator property every
    consumer of those tensors is inside the unit, so the objective of a
    whole placement is the sum of its units' parts plus the return of the
    last exit if it is an output.
    """

    def __init__(self, comp: CompiledProblem, form: LinearForm, unit: Unit) -> None:
        self.comp = comp
        self.form = form
        self.unit = unit
        boundary = ([unit.entry] if unit.entry is not None else []) + list(unit.inputs)
        self.columns = np.array(boundary + list(unit.nodes), dtype=np.int64)
        self.n_boundary = len(boundary)
        local = {int(v): i for i, v in enumerate(self.columns)}
        src, dst = [], []
        for u, w in unit.edges:
            if u in local:
                src.append(local[u])
                dst.append(local[w])
        self.edge_src = np.array(src, dtype=np.int64)
        self.edge_dst = np.array(dst, dtype=np.int64)
        senders = [i for i, v in enumerate(self.columns) if int(v) != unit.exit]
        self.senders = np.array(senders, dtype=np.int64)
        self.sender_output = comp.is_output[self.columns[self.senders]]
        self.node_cols = np.arange(self.n_boundary, len(self.columns))

    def cost(self, X: np.ndarray) -> np.ndarray:
        """[M] unit part of the objective for local placements X [M, n_columns] (inf if invalid)."""
        comp, form = self.comp, self.form
        M = X.shape[0]
        D = comp.n_devices
        glob = self.columns
        cols = glob[self.node_cols][None, :]
        placed = X[:, self.node_cols]
        node = np.where(comp.allowed[cols, placed], form.node[cols, placed], np.inf).sum(axis=1)
        if not len(self.senders):
            return node
        position = np.full(len(glob), -1, dtype=np.int64)
        position[self.senders] = np.arange(len(self.senders))
        mask = np.zeros((M, len(self.senders), D), dtype=bool)
        rows = np.arange(M)[:, None]
        if len(self.edge_src):
            keep = position[self.edge_src] >= 0
            mask[rows, position[self.edge_src[keep]][None, :], X[:, self.edge_dst[keep]]] = True
        out_pos = np.flatnonzero(self.sender_output)
        if len(out_pos):
            mask[:, out_pos, comp.source] = True
        own = X[:, self.senders]
        mask[rows, np.arange(len(self.senders))[None, :], own] = False
        tr = form.transfer[glob[self.senders][None, :, None], own[:, :, None], np.arange(D)[None, None, :]]
        with np.errstate(invalid="ignore"):
            transfer = np.where(mask, tr, 0.0).sum(axis=(1, 2))
        return node + transfer


__all__ = ["Unit", "UnitEvaluator", "separators", "units"]
