"""Random uploading problems: small models whose upload takes several query times.

For tests and benchmarks: :func:`random_upload_problem` draws a random DAG
problem over a client and one server (:func:`tiercut.plan.synthetic.random_problem`),
gives its layers parameter sizes (some layers none, like activations and
pooling) and sets the link so that uploading the whole model takes
``upload_queries`` all-client query times -- the regime where the upload
order matters.
"""

from __future__ import annotations

import random
from dataclasses import replace

from tiercut.cost import evaluate
from tiercut.env import Link
from tiercut.plan.synthetic import random_problem
from tiercut.problem import Problem


def random_upload_problem(
    rng: random.Random,
    *,
    n_nodes: int = 6,
    shape: str = "chain",
    upload_queries: float | None = None,
    link_latency_s: float | None = None,
    param_free: float = 0.3,
    n_devices: int = 2,
) -> Problem:
    """A random problem where uploading every parameter takes ``upload_queries`` local query times.

    ``upload_queries`` defaults to a draw in [2, 30]; ``link_latency_s`` to 0
    or a small draw; ``param_free`` is the chance a layer has no parameters.
    """
    base = random_problem(rng, n_nodes=n_nodes, n_devices=n_devices, shape=shape, extra_outputs=0.0)
    nodes = []
    for node in base.graph:
        if node.is_input:
            nodes.append(node)
            continue
        params = 0 if rng.random() < param_free else rng.randint(1_000, 1_000_000)
        nodes.append(replace(node, param_bytes=params))
    if all(n.param_bytes == 0 for n in nodes):
        last = nodes[-1]
        nodes[-1] = replace(last, param_bytes=rng.randint(1_000, 1_000_000))
    graph = base.graph.with_nodes(tuple(nodes))
    problem = replace(base, graph=graph)
    local = evaluate(problem, problem.local_placement()).latency_s
    ratio = upload_queries if upload_queries is not None else rng.uniform(2.0, 30.0)
    total = sum(n.param_bytes for n in graph)
    upload_bw = total / (ratio * local)
    latency = link_latency_s if link_latency_s is not None else (0.0 if rng.random() < 0.5 else rng.uniform(0.0, 0.2 * local))
    links = []
    for link in problem.links:
        if problem.source in (link.a, link.b):
            # the tensor bandwidth stays the drawn one; the upload regime comes from the parameter sizes
            links.append(Link(link.a, link.b, upload_bw, latency, link.price_per_byte))
        else:
            links.append(link)
    return replace(problem, links=tuple(links), name=f"random-upload-{shape}")


__all__ = ["random_upload_problem"]
