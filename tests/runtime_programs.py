"""Programs written by hand, as an attacker (or a buggy exporter) would write them, for the runtime's tests."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from tiercut.runtime.artifact import PartitionBundle, PartitionProgram, ProgramManifest, TensorSpec, make_program, tensor_digest


def ref(name: str) -> dict[str, str]:
    return {"ref": name}


def node(name: str, op: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"name": name, "op": op, "args": list(args), "kwargs": kwargs}


def hand_program(
    nodes: Sequence[Mapping[str, Any]],
    inputs: Mapping[str, torch.Tensor],
    weights: Mapping[str, torch.Tensor],
    outputs: Sequence[str],
    output_specs: Sequence[tuple[tuple[int, ...], torch.dtype]],
) -> tuple[PartitionProgram, dict[str, torch.Tensor]]:
    """An aten-json program with a consistent manifest (its content id included), and its weights by digest.

    ``inputs`` are example tensors (their specs are declared), ``weights``
    the tensors the program names; ``output_specs`` the declared outputs.
    """
    body = {
        "schema_version": 1,
        "inputs": list(inputs),
        "weights": list(weights),
        "nodes": [dict(n) for n in nodes],
        "outputs": [ref(o) for o in outputs],
    }
    data = json.dumps(body).encode()
    digests = {name: tensor_digest(t) for name, t in weights.items()}
    manifest = ProgramManifest(
        program_id="",
        format="aten-json",
        input_names=tuple(inputs),
        output_names=tuple(outputs),
        input_structures=tuple({"kind": "leaf", "index": i} for i in range(len(inputs))),
        tensor_inputs=tuple(TensorSpec.of(t) for t in inputs.values()),
        output_structures=tuple({"kind": "leaf", "index": i} for i in range(len(outputs))),
        tensor_outputs=tuple(TensorSpec(str(dtype).removeprefix("torch."), tuple(shape)) for shape, dtype in output_specs),
        weights=digests,
        weight_specs={name: TensorSpec.of(t) for name, t in weights.items()},
        program_bytes=0,
    )
    return make_program(manifest, data), {digests[name]: t for name, t in weights.items()}


def bundle_of(label: str, program: PartitionProgram, weights: Mapping[str, torch.Tensor]) -> PartitionBundle:
    """A bundle carrying one program and its weights, named ``label@<content digest>``."""
    return PartitionBundle("", (label,), dict(weights), (program,)).named(label)


__all__ = ["bundle_of", "hand_program", "node", "ref"]


def split_route(captured: Any, owner: Mapping[str, str], label: str = "mlp") -> tuple[Any, dict[str, PartitionBundle], Any]:
    """A captured model split by ``owner`` (node -> device; the client is ``end``): the split, one bundle per
    worker device (its partition's program and weights) and the route a query takes."""
    from tiercut.graph.split import split_by_placement
    from tiercut.profile.measure import record_fx_values
    from tiercut.runtime.artifact import build_program
    from tiercut.runtime.route import Route, Step

    split = split_by_placement(captured, owner)
    values = record_fx_values(captured)
    steps, bundles = [], {}
    for p in split.partitions:
        program_id = None
        if p.device != "end":
            built = build_program(p, {n: values[n] for n in p.input_names})
            program_id = built.program.manifest.program_id
            bundles[p.device] = PartitionBundle(f"{label}.{p.device}", p.nodes, dict(built.weights), (built.program,))
        steps.append(Step(p.index, p.device, program_id, p.input_names, p.output_names))
    return split, bundles, Route(tuple(steps), tuple(split.output_spec.value_names()), "end")
