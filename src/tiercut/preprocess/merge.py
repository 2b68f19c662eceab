"""Merging chains whose interior can never be the only optimal cut.

The migration seed's preprocessing merges adjacent layers ``u -> v`` when
``u``'s out-degree and ``v``'s in-degree allow it. Under tiercut's cost
model (docs/cost-model.md) that is *not* exact by itself: with per-device
compute times a chain is often best cut in its interior (Neurosurgeon's
whole point), so merging on degrees alone can lose the optimum. This module
therefore merges ``u`` into ``v`` only when a *dominance* test on the
problem's own figures proves that some optimal placement keeps them
together; without a problem (``tiercut graph``) it applies the seed's
degree rule and says the result is unproven.

Candidates: ``u`` is not a graph input nor a graph output and ``v`` is its
only consumer (so ``{u, v}`` has the single exit ``v``; groups grow to
in-trees with a single exit).

Every metric is linear (``tiercut.cost.linear_form``)::

    F(x) = sum_v N[v, x(v)] + sum_{(w, a, b) in transfers(x)} W[w, a, b]

Claim. Let the problem have no latency/energy/cost budget (memory limits
and pins are allowed). For groups ``U`` (exit ``u``) and ``V`` (exit ``v``)
with ``v`` the only consumer of ``u``, write ``NU[d]``, ``NV[d]`` for the
summed node terms (inf where a member may not run or is pinned elsewhere).
If for every pair of devices ``a != b`` (with ``NU[a], NV[b], W[u, a, b]``
finite)

    Delta_A(a, b) <= 0   or   Delta_B(a, b) <= 0,

then some optimal placement puts ``U`` and ``V`` on one device, so
contracting them keeps the optimum of every exact planner. Here

- ``Delta_A`` (move ``V`` from ``b`` to ``a``) =
  ``NV[a] - NV[b] - W[u, a, b]``
  ``+ sum_{y in in(V) - u} max_f [f != a] W[y, f, a]``
  ``+ [v output] ([s != a] W[v, a, s] - [s != b] W[v, b, s])``
  ``+ (sum of the k largest positive [d != a] W[v, a, d] - [d != b] W[v, b, d] over d != s)``,
  ``k`` the number of ``v``'s consumers (its tensor reaches at most ``k`` devices besides the source),
  and ``+inf`` if ``V`` may not run on ``a`` or, under a memory limit, ``V``
  holds weights;
- ``Delta_B`` (move ``U`` from ``a`` to ``b``) =
  ``NU[b] - NU[a] - W[u, a, b] + sum_{w in in(U)} max_f [f != b] W[w, f, b]``,
  ``+inf`` likewise for ``U``;

``f`` ranging over the devices the input's group may use.

With cut compression (JALAD) each ``W[w, a, b]`` above is replaced by a bound
over the ways ``w``'s tensor may travel (:func:`_transfer_bounds`): the lower
one where a transfer disappears, the upper one where a transfer appears or
changes its sender; the moved placement compresses nothing new.

Proof. Take an optimal placement ``x`` with ``x(U) = a != x(V) = b`` (a
group is on one device by induction over the merges already made). Moving
``V`` to ``a`` changes only: ``V``'s node terms (``NV[a] - NV[b]``); the
transfer ``(u, a, b)``, which disappears (``v`` is ``u``'s only consumer
and ``u`` is no output, so ``b`` needed ``u`` only for ``v``); each other
outside input ``y`` of ``V`` may now need to reach ``a`` (at most
``W[y, x(y), a]`` more; its transfer to ``b`` may vanish, which only
helps); and ``v``'s own transfers, from ``a`` instead of ``b`` to the same
set of destinations (the consumers' devices, the source if ``v`` is an
output), bounded by the sum of the ``k`` largest positive changes.
So ``F(x') - F(x) <= Delta_A(a, b)``; symmetrically moving ``U`` to ``b``
gives ``F(x'') - F(x) <= Delta_B(a, b)``. Memory: a moved group without
weights changes no device's memory, and without memory limits memory is no
constraint; pins and "cannot run" are the infinite ``N``. So one of ``x'``,
``x''`` is feasible with ``F <= F(x)``, hence optimal with ``U``, ``V``
together. Merges are made one at a time on the contracted problem, so the
argument chains. With a budget on another metric the moved placement could
break the budget, so no merge is made (the step reports it).

The test is cheap (``O(|D|^3)`` per candidate with a few inputs) and
conservative: every bound is an upper bound, so a rejected candidate may
still be safe to merge; an accepted one never costs the optimum
(``tests/test_preprocess.py`` checks it against brute force).
"""

from __future__ import annotations

import numpy as np

from tiercut.cost import compile_problem, linear_form
from tiercut.graph.types import LayerGraph
from tiercut.problem import Problem


def seed_chain_groups(graph: LayerGraph) -> list[list[str]]:
    """The seed's degree rule: merge ``u -> v`` when ``u`` has one consumer ``v`` and ``v`` reads only ``u``.

    Maximal chains of such edges become one group (inputs and interior graph
    outputs excluded). Not exact under the cost model (see the module doc).
    """
    consumers = graph.consumers()
    groups: list[list[str]] = []
    current: list[str] = []
    for node in graph.nodes:
        if node.is_input:
            continue
        if current:
            last = graph[current[-1]]
            if (not last.is_output and consumers[last.name] == [node.name]
                    and tuple(dict.fromkeys(node.inputs)) == (last.name,)):
                current.append(node.name)
                continue
            groups.append(current)
        current = [node.name]
    if current:
        groups.append(current)
    return [g for g in groups if len(g) > 1]


def _top_positive(values: np.ndarray, k: int) -> float:
    """Sum of the ``k`` largest positive entries (a tensor read by ``k`` consumers reaches at most ``k`` devices)."""
    positive = np.sort(values[values > 0])[::-1]
    return float(positive[:k].sum())


class _Groups:
    """Union of nodes into groups with a single exit, with their summed node terms."""

    def __init__(self, node: np.ndarray) -> None:
        n = node.shape[0]
        self.exit = np.arange(n)  # exit of the group a node is in (valid for exits via find)
        self.parent = np.arange(n)
        self.node = node.copy()  # [n, D] summed node terms, valid at group exits
        self.members: dict[int, list[int]] = {i: [i] for i in range(n)}

    def find(self, i: int) -> int:
        root = i
        while self.parent[root] != root:
            root = int(self.parent[root])
        while self.parent[i] != root:
            self.parent[i], i = root, int(self.parent[i])
        return root

    def merge_into(self, u: int, v: int) -> None:
        """Group of ``u`` joins group of ``v`` (``v``'s exit stays the exit)."""
        ru, rv = self.find(u), self.find(v)
        self.parent[ru] = rv
        self.node[rv] = self.node[rv] + self.node[ru]
        self.members[rv] = self.members.pop(ru) + self.members[rv]


def _transfer_bounds(problem: Problem, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of each transfer's objective term ``W[w, a, b]`` over the ways ``w``'s tensor may be
    sent (raw, or each cut codec the problem offers for it, :mod:`tiercut.cost.cut_compression`): without cut
    compression both are the raw terms.

    With compression the dominance test stays sound with the bounds: a transfer that disappears saves at least
    ``W_lo``; one that appears, or changes its sender, costs at most ``W_hi`` (the tensor's codec, whichever it
    is, applies to every transfer of it; a codec a device cannot encode or decode makes ``W_hi`` infinite there);
    the moved placement compresses no tensor the original did not, so the accuracy-loss budget still holds.
    """
    if not problem.compresses_cuts:
        return raw, raw
    from tiercut.cost.cut_compression import transfer_figures

    cc = problem.cut_compression
    assert cc is not None
    lo, hi = raw.copy(), raw.copy()
    names, devices = problem.graph.names, problem.device_names
    index = {name: i for i, name in enumerate(names)}
    weights = problem.objective.metric_weights()
    for tensor, offered in cc.tensors.items():
        i = index.get(tensor)
        if i is None or not offered:
            continue
        for a, da in enumerate(devices):
            for b, db in enumerate(devices):
                if a == b or not np.isfinite(raw[i, a, b]):
                    continue
                possible = set(cc.options(tensor, da, db))
                for codec in offered:
                    fig = transfer_figures(problem, tensor, da, db, codec) if codec in possible else None
                    if fig is None:
                        hi[i, a, b] = np.inf
                        continue
                    metrics = fig.metrics(problem)
                    value = sum(w * metrics[m] for m, w in weights.items())
                    lo[i, a, b] = min(lo[i, a, b], value)
                    hi[i, a, b] = max(hi[i, a, b], value)
    return lo, hi


def exact_chain_groups(problem: Problem) -> tuple[list[list[str]], str]:
    """Groups (exit last) the dominance test of the module doc proves safe, and a note."""
    graph = problem.graph
    if problem.constraints.budgets():
        return [], "no merge: a budget on another metric makes moving a group non-monotone"
    comp = compile_problem(problem)
    form = linear_form(comp, problem.objective)
    n, D = comp.n_nodes, comp.n_devices
    node = np.where(comp.allowed, form.node, np.inf)
    W_lo, W_hi = _transfer_bounds(problem, form.transfer)
    src = comp.source
    limited = bool(np.isfinite(comp.memory_limit).any())
    names = graph.names
    _, uses = graph.param_table()
    has_weights = np.array([bool(uses[name]) for name in names])
    is_input = np.array([nd.is_input for nd in graph.nodes])
    preds: list[list[int]] = [[] for _ in range(n)]
    succs: list[list[int]] = [[] for _ in range(n)]
    for a, b in zip(comp.edge_src.tolist(), comp.edge_dst.tolist(), strict=True):
        preds[b].append(a)
        succs[a].append(b)
    groups = _Groups(node)
    fanout = [len(succs[i]) for i in range(n)]  # v's tensor goes to at most this many devices (+ the source)
    weighty = has_weights.copy()  # per group root: holds weights

    def outside_inputs(root: int, skip: int = -1) -> list[int]:
        members = set(groups.members[root])
        return sorted({p for m in members for p in preds[m] if p not in members and p != skip})

    def input_bound(inputs: list[int], origin: int, target: int) -> float:
        """Sum over the moved group's outside inputs ``w`` of ``max_f W[w, f, target]`` (0 when ``f == target``),
        ``f`` over the devices ``w``'s group may use that can reach ``origin`` (any other ``x`` is infeasible)."""
        total = 0.0
        for w in inputs:
            possible = np.isfinite(groups.node[groups.find(w)]) & np.isfinite(W_lo[w, :, origin])
            costs = W_hi[w, possible, target]
            total += float(costs.max()) if costs.size else 0.0
        return total

    dev = np.arange(D)
    merged = 0
    for u in range(n):
        if is_input[u] or comp.is_output[u] or len(succs[u]) != 1:
            continue
        v = succs[u][0]
        ru, rv = groups.find(u), groups.find(v)
        NU, NV = groups.node[ru], groups.node[rv]
        ins_u = outside_inputs(ru)
        ins_v = outside_inputs(rv, skip=u)
        move_u_ok = not (limited and weighty[ru])
        move_v_ok = not (limited and weighty[rv])
        # a group no device may run (members allowed or pinned apart): every x is infeasible here, so the
        # test below holds vacuously, but the contracted problem could not state it; keep the nodes apart
        safe = bool(np.isfinite(NU + NV).any())
        for a in range(D):
            for b in range(D):
                if a == b or not (np.isfinite(NU[a]) and np.isfinite(NV[b]) and np.isfinite(W_lo[u, a, b])):
                    continue
                delta_a = np.inf
                if move_v_ok and np.isfinite(NV[a]):
                    old = np.where(dev == b, 0.0, W_lo[v, b])
                    new = np.where(dev == a, 0.0, W_hi[v, a])
                    with np.errstate(invalid="ignore"):
                        change = new - old  # nan where both are inf: masked out below
                    feasible_dest = np.isfinite(old)
                    if comp.is_output[v]:
                        if not feasible_dest[src]:
                            continue  # x cannot return v's output from b: no feasible x here
                        others = np.where(feasible_dest & (dev != src), change, 0.0)
                        dest = change[src] + _top_positive(others, fanout[v])
                    else:
                        dest = _top_positive(np.where(feasible_dest, change, 0.0), fanout[v])
                    delta_a = NV[a] - NV[b] - W_lo[u, a, b] + input_bound(ins_v, b, a) + dest
                if delta_a <= 0:
                    continue
                delta_b = np.inf
                if move_u_ok and np.isfinite(NU[b]):
                    delta_b = NU[b] - NU[a] - W_lo[u, a, b] + input_bound(ins_u, a, b)
                if not delta_b <= 0:
                    safe = False
                    break
            if not safe:
                break
        if safe:
            groups.merge_into(u, v)
            weighty[rv] = weighty[rv] or weighty[ru]
            merged += 1
    result = [[names[i] for i in sorted(members)] for members in groups.members.values() if len(members) > 1]
    note = f"{merged} merge(s) proven safe by the dominance test"
    return result, note


__all__ = ["exact_chain_groups", "seed_chain_groups"]
