"""Random and synthetic partition problems, for tests and benchmarks.

- :func:`random_problem`: a small random DAG (or chain, or series-parallel
  graph) over 1-4 devices with random times, powers, prices, links and
  optionally constraints -- what the exactness tests compare the planners
  with brute force on (hypothesis passes its own ``random.Random``).
- :func:`synthetic_dag` / :func:`synthetic_problem`: DNN-like DAGs of any
  size (a backbone chain with residual skips and occasional parallel
  branches) with times from a roofline over two to three devices, for the
  solve-time benchmark at 1k, 10k and 100k nodes.
"""

from __future__ import annotations

import random

from tiercut.env import Link
from tiercut.graph.types import LayerGraph, Node
from tiercut.problem import Constraints, CutCodec, CutCompression, Objective, Problem, ProblemDevice, TensorCompression

SHAPES = ("dag", "chain", "series-parallel")


def _random_graph(rng: random.Random, n_nodes: int, shape: str, extra_outputs: float) -> LayerGraph:
    nodes: list[Node] = [Node("in", "input", out_bytes=rng.randint(1, 5000))]

    def add(inputs: list[str], op: str = "conv2d") -> str:
        name = f"n{len(nodes) - 1}"
        nodes.append(
            Node(name, op, tuple(dict.fromkeys(inputs)), flops=rng.randint(1, 10**6), param_bytes=rng.randint(0, 1000),
                 out_bytes=rng.randint(1, 5000))
        )
        return name

    if shape == "chain":
        for _ in range(n_nodes):
            add([nodes[-1].name])
    elif shape == "series-parallel":
        prev = add(["in"])
        while len(nodes) - 1 < n_nodes:
            tails = []
            for _ in range(rng.randint(1, 3)):
                cur = prev
                for _ in range(rng.randint(1, 2)):
                    cur = add([cur])
                tails.append(cur)
            if rng.random() < 0.5:
                tails.append(prev)
            prev = add(sorted(set(tails)), "add")
    elif shape == "dag":
        for _ in range(n_nodes):
            names = [x.name for x in nodes]
            k = rng.randint(1, min(3, len(names)))
            add([names[-1], *rng.sample(names, k - 1)])
    else:
        raise ValueError(f"shape {shape!r} is not one of {SHAPES}")
    consumed = {src for x in nodes for src in x.inputs}
    final = []
    for x in nodes:
        out = not x.is_input and (x.name not in consumed or rng.random() < extra_outputs)
        final.append(Node(x.name, x.op, x.inputs, flops=x.flops, param_bytes=x.param_bytes, out_bytes=x.out_bytes, is_output=out))
    return LayerGraph(tuple(final), model=f"random-{shape}")


def random_problem(
    rng: random.Random,
    *,
    n_nodes: int = 6,
    n_devices: int = 2,
    shape: str = "dag",
    objective: str | Objective = "latency",
    missing_compute: float = 0.0,
    missing_link: float = 0.0,
    constraints: bool = False,
    extra_outputs: float = 0.1,
    missing_source_link: float = 0.0,
    directional: float = 0.0,
    shared_params: float = 0.0,
) -> Problem:
    """A small random problem; device ``d0`` is the source.

    ``missing_compute`` is the chance a node cannot run on a non-source
    device, ``missing_link`` the chance a link between two non-source devices
    is absent; ``constraints`` draws memory limits, budgets and a pinned node
    (some of them infeasible on purpose). ``missing_source_link`` is the
    chance a link from the source is absent (that device is then reached
    through relays, or not at all); ``directional`` the chance a link gets
    other ``b -> a`` figures; ``shared_params`` the chance a node with
    weights also uses the weights of an earlier node (the graph then names
    every node's weights, docs/DESIGN.md's shared parameters).
    """
    graph = _random_graph(rng, n_nodes, shape, extra_outputs)
    if shared_params > 0:
        graph = _share_params(rng, graph, shared_params)
    devices = []
    for j in range(n_devices):
        compute_w = rng.uniform(0.5, 5.0)
        devices.append(
            ProblemDevice(
                name=f"d{j}",
                tier="end" if j == 0 else ("edge" if j == 1 and n_devices > 2 else "cloud"),
                power_compute_w=compute_w,
                power_tx_w=rng.uniform(0.1, 3.0),
                power_rx_w=rng.uniform(0.1, 2.0),
                power_idle_w=rng.uniform(0.0, 0.5),
                price_per_s=rng.uniform(0.0, 1.0),
                memory_bytes=(rng.randint(0, 3000) if constraints and rng.random() < 0.5 else None),
            )
        )
    links = []
    for a in range(n_devices):
        for b in range(a + 1, n_devices):
            if a != 0 and rng.random() < missing_link:
                continue
            if a == 0 and missing_source_link > 0 and rng.random() < missing_source_link:
                continue
            link = Link(f"d{a}", f"d{b}", rng.uniform(1e3, 1e5), rng.uniform(0.0, 0.01), rng.uniform(0.0, 1e-5))
            if directional > 0 and rng.random() < directional:
                link = Link(
                    link.a, link.b, link.bandwidth_bytes_per_s, link.latency_s, link.price_per_byte,
                    bandwidth_bytes_per_s_ba=rng.uniform(1e3, 1e5),
                    latency_s_ba=rng.uniform(0.0, 0.01) if rng.random() < 0.5 else None,
                    price_per_byte_ba=rng.uniform(0.0, 1e-5) if rng.random() < 0.5 else None,
                )
            links.append(link)
    compute = {}
    for node in graph:
        if node.is_input:
            continue
        compute[node.name] = {
            f"d{j}": rng.uniform(0.001, 0.2) / (1 + 3 * j)
            for j in range(n_devices)
            if j == 0 or rng.random() >= missing_compute
        }
    cons = Constraints()
    if constraints:
        names = [n.name for n in graph if not n.is_input]
        pinned = {}
        if rng.random() < 0.4:
            node = rng.choice(names)
            pinned[node] = rng.choice(sorted(compute[node]))
        cons = Constraints(
            memory=True,
            latency_budget_s=rng.uniform(0.05, 0.6) if rng.random() < 0.5 else None,
            energy_source_budget_j=rng.uniform(0.02, 1.0) if rng.random() < 0.3 else None,
            cost_budget=rng.uniform(0.01, 0.3) if rng.random() < 0.2 else None,
            pinned=pinned,
        )
    obj = objective if isinstance(objective, Objective) else Objective.parse(objective)
    return Problem(graph, tuple(devices), tuple(links), "d0", compute, obj, cons, name=f"random-{shape}")


def _share_params(rng: random.Random, graph: LayerGraph, chance: float) -> LayerGraph:
    """Name every node's weights ``w.<node>``; with ``chance`` a node with weights also uses an earlier one's."""
    table: dict[str, int] = {}
    nodes = []
    owners: list[str] = []
    for node in graph:
        params: list[str] = []
        if node.param_bytes > 0:
            own = f"w.{node.name}"
            table[own] = node.param_bytes
            if owners and rng.random() < chance:
                params.append(rng.choice(owners))
            params.append(own)
            owners.append(own)
        nodes.append(Node(node.name, node.op, node.inputs, flops=node.flops, param_bytes=node.param_bytes,
                          out_bytes=node.out_bytes, is_output=node.is_output, params=tuple(params)))
    return LayerGraph(tuple(nodes), model=graph.model, params=table)


def synthetic_dag(n_nodes: int, *, seed: int = 0, skip_every: int = 3, branch_every: int = 50) -> LayerGraph:
    """A DNN-like DAG with ``n_nodes`` non-input nodes.

    A backbone chain of conv-like nodes; every ``skip_every`` nodes a residual
    ``add`` reading the node ``skip_every`` back; every ``branch_every`` nodes
    an inception-like fork of three short branches joined by a ``cat``.
    Sizes shrink and FLOPs grow along the network like a CNN's.
    """
    rng = random.Random(seed)
    nodes = [Node("input", "input", out_bytes=3 * 224 * 224 * 4, out_shape=(1, 3, 224, 224))]
    names = ["input"]
    i = 0
    while len(nodes) - 1 < n_nodes:
        depth = (len(nodes) - 1) / max(1, n_nodes)
        out_bytes = int(4 * 64 * 112 * 112 * (1 - 0.95 * depth)) + 4096
        flops = int(rng.uniform(0.5, 2.0) * 2e8 * (0.3 + depth))
        params = int(rng.uniform(0.5, 2.0) * 4 * 64 * 64 * 9 * (1 + 4 * depth))
        prev = names[-1]
        if branch_every and i and i % branch_every == 0 and n_nodes - (len(nodes) - 1) >= 7:
            tails = []
            for b in range(3):
                cur = prev
                for j in range(2):
                    name = f"b{i}_{b}_{j}"
                    nodes.append(
                        Node(name, "conv2d", (cur,), flops=flops // 3, param_bytes=params // 3, out_bytes=out_bytes // 3)
                    )
                    names.append(name)
                    cur = name
                tails.append(cur)
            name = f"cat{i}"
            nodes.append(Node(name, "cat", tuple(tails), flops=0, out_bytes=out_bytes))
        elif skip_every and i % skip_every == skip_every - 1 and len(names) > skip_every:
            name = f"add{i}"
            nodes.append(Node(name, "add", (prev, names[-skip_every]), flops=out_bytes // 4, out_bytes=out_bytes))
        else:
            name = f"conv{i}"
            nodes.append(Node(name, "conv2d", (prev,), flops=flops, param_bytes=params, out_bytes=out_bytes))
        names.append(name)
        i += 1
    last = nodes[-1]
    nodes[-1] = Node(last.name, last.op, last.inputs, flops=last.flops, param_bytes=last.param_bytes, out_bytes=4000,
                     is_output=True)
    return LayerGraph(tuple(nodes[: n_nodes + 1]), model=f"synthetic-{n_nodes}")


#: (name, tier, FLOP/s, memory B/s, P compute, P tx, P rx, P idle, price/s) of the synthetic devices
SYNTHETIC_DEVICES = (
    ("mobile", "end", 2.0e11, 2.5e10, 5.0, 3.85, 1.59, 0.5, 0.0),
    ("cloud", "cloud", 8.0e12, 3.0e11, 70.0, 2.0, 2.0, 10.0, 1.0e-3),
    ("edge", "edge", 2.7e12, 1.2e11, 125.0, 2.0, 2.0, 40.0, 2.0e-4),
)


def synthetic_problem(graph: LayerGraph, n_devices: int = 2, *, objective: str = "latency") -> Problem:
    """``graph`` over the first ``n_devices`` synthetic devices (mobile, cloud, edge), roofline times,
    LTE-like mobile links (Neurosurgeon's 5.85 Mbit/s) and a fast edge-cloud backhaul."""
    chosen = SYNTHETIC_DEVICES[:n_devices]
    devices = tuple(
        ProblemDevice(name, tier, pc, ptx, prx, pidle, price, None) for name, tier, _, _, pc, ptx, prx, pidle, price in chosen
    )
    compute = {}
    for node in graph:
        if node.is_input:
            continue
        row = {}
        for name, _, flops_s, bw, *_ in chosen:
            work = node.flops / flops_s
            traffic = (node.param_bytes + 2 * node.out_bytes) / bw
            row[name] = max(work, traffic) + 2e-5
        compute[node.name] = row
    link_specs = {("mobile", "cloud"): (731_250.0, 0.05), ("mobile", "edge"): (2.36e6, 0.005), ("cloud", "edge"): (12.5e6, 0.02)}
    names = [c[0] for c in chosen]
    links = tuple(
        Link(a, b, bw, lat) for (a, b), (bw, lat) in link_specs.items() if a in names and b in names
    )
    return Problem(graph, devices, links, "mobile", compute, Objective.parse(objective), Constraints(), name=graph.model)


__all__ = [
    "SHAPES",
    "SYNTHETIC_DEVICES",
    "random_cut_compression",
    "random_problem",
    "synthetic_dag",
    "synthetic_problem",
]


def random_cut_compression(
    rng: random.Random, problem: Problem, *, n_codecs: int = 2, chance: float = 0.7, budget: bool = True
) -> Problem:
    """``problem`` with random cut-compression options (JALAD): ``n_codecs`` codecs with random encode/decode
    seconds per byte on each device (sometimes absent on a device), each tensor compressible with a random
    subset of them at a random ratio and accuracy loss, and (``budget``) a random accuracy-loss budget."""
    names = problem.device_names
    codecs = []
    for k in range(n_codecs):
        encode = {d: rng.uniform(0.0, 2e-5) for d in names if rng.random() < 0.9}
        decode = {d: rng.uniform(0.0, 2e-5) for d in names if rng.random() < 0.9}
        codecs.append(CutCodec(f"int{8 >> k}", bits=max(1, 8 >> k), encode_s_per_byte=encode, decode_s_per_byte=decode))
    tensors = {}
    for node in problem.graph:
        row = {
            c.name: TensorCompression(rng.uniform(0.05, 1.2), rng.choice([0.0, rng.uniform(0.0, 0.05)]))
            for c in codecs
            if rng.random() < chance
        }
        if row:
            tensors[node.name] = row
    limit = rng.choice([None, 0.0, rng.uniform(0.0, 0.06)]) if budget else None
    return problem.with_cut_compression(CutCompression(tuple(codecs), tensors, limit, "random"))
