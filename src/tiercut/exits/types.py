"""Exit branches as data: :class:`ExitBranch` and the exits file :class:`ExitModel`.

An :class:`ExitModel` is what ``tiercut exits add`` writes (``--exits
FILE`` reads it back): the layer graph of the model *with* its branches
(the branches are ordinary nodes: their FLOPs, weights and activations enter
the cost model like any layer's), each exit's nodes and answer node, the
confidence rule and tuned thresholds, the per-sample measurements on the
held-out split, how it was trained and, beside it, the trained weights as a
safetensors file. It is data: reading it imports and calls nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tiercut.errors import TiercutError
from tiercut.exits.confidence import ExitMeasurements, Routing, check_rule, route
from tiercut.graph.types import LayerGraph
from tiercut.serialization import json_contract

SCHEMA_VERSION = 1
KIND = "tiercut-exits"
FINAL = "final"


@dataclass(frozen=True)
class ExitBranch:
    """One exit of a multi-exit graph.

    Attributes:
        name: ``exit1``, ``exit2``... in depth order; ``final`` for the model's own output.
        after: the layer the branch reads (the final exit: its answer node).
        nodes: the branch's own nodes in the graph (empty for the final exit).
        output: the node whose output is the answer.
        accuracy: held-out accuracy when every sample is classified here.
    """

    name: str
    after: str
    nodes: tuple[str, ...]
    output: str
    accuracy: float

    @property
    def is_final(self) -> bool:
        return self.name == FINAL

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "after": self.after, "nodes": list(self.nodes), "output": self.output,
                "accuracy": self.accuracy}

    @classmethod
    @json_contract("exit", hint="re-create it with 'tiercut exits add'")
    def from_dict(cls, data: Mapping[str, Any]) -> ExitBranch:
        try:
            return cls(str(data["name"]), str(data["after"]), tuple(str(n) for n in data.get("nodes", ())),
                       str(data["output"]), float(data["accuracy"]))
        except (KeyError, ValueError, TypeError) as exc:
            raise TiercutError(f"exit {dict(data)!r:.60} is malformed ({exc}); re-create it with 'tiercut exits add'") from None


def check_exits(graph: LayerGraph, exits: Sequence[ExitBranch]) -> None:
    """Requires of a multi-exit graph: exits in depth order on one path, the final exit last, every named
    node in the graph, each branch reading only its ``after`` layer or its own nodes, answers are outputs."""
    if not exits or not exits[-1].is_final:
        raise TiercutError("the exits must end with the final exit 'final'")
    names = [e.name for e in exits]
    if len(set(names)) != len(names):
        raise TiercutError(f"exit names {', '.join(names)} repeat; give each exit its own name")
    for e in exits:
        for n in (e.after, e.output, *e.nodes):
            if n not in graph:
                raise TiercutError(f"exit {e.name!r} names node {n!r}, which is not in the graph {graph.model!r}")
        own = set(e.nodes)
        for n in e.nodes:
            for src in graph[n].inputs:
                if src not in own and src != e.after:
                    raise TiercutError(f"exit {e.name!r}: branch node {n!r} reads {src!r}, outside the branch and its layer")
        if not e.is_final and e.output not in own:
            raise TiercutError(f"exit {e.name!r}: its answer {e.output!r} is not one of its nodes")
    order = [graph.index(e.after) for e in exits]
    if order != sorted(order):
        raise TiercutError("exits are not in depth order; list them as the layers they follow are ordered")


@dataclass(frozen=True)
class ExitModel:
    """A model with exit branches, trained and measured (the file ``tiercut exits add`` writes).

    Attributes:
        model: the model spec it was built from.
        input_shape: the input shape (batch 1).
        graph: the layer graph with the branches.
        exits: side exits in depth order, then the final exit.
        rule: the confidence rule (``entropy`` or ``max_softmax``).
        thresholds: side exit name -> threshold under ``rule``.
        measurements: per-sample scores and correctness on the held-out split.
        training: how it was trained (settings, data, losses, accuracy of the same network without exits).
        weights_file: the safetensors file of the trained weights, relative to the exits file (None: none).
    """

    model: str
    input_shape: tuple[int, ...]
    graph: LayerGraph
    exits: tuple[ExitBranch, ...]
    rule: str
    thresholds: Mapping[str, float]
    measurements: ExitMeasurements
    training: Mapping[str, Any] = field(default_factory=dict)
    weights_file: str | None = None

    def __post_init__(self) -> None:
        check_rule(self.rule)
        check_exits(self.graph, self.exits)
        if tuple(self.measurements.exits) != tuple(e.name for e in self.exits):
            raise TiercutError("the exit measurements do not name the same exits as the file; re-create it")
        for e in self.exits[:-1]:
            if e.name not in self.thresholds:
                raise TiercutError(f"exit {e.name!r} has no threshold; give one or tune them")

    @property
    def side_exits(self) -> tuple[ExitBranch, ...]:
        return self.exits[:-1]

    def exit(self, name: str) -> ExitBranch:
        for e in self.exits:
            if e.name == name:
                return e
        raise TiercutError(f"no exit {name!r}; exits are {', '.join(e.name for e in self.exits)}")

    def routing(self, active: Sequence[str] | None = None) -> Routing:
        """Exit rates and accuracies of ``active`` exits (default every exit) under the rule and thresholds."""
        names = [e.name for e in self.exits] if active is None else list(active)
        return route(self.measurements, names, self.rule, self.thresholds)

    def with_thresholds(self, rule: str, thresholds: Mapping[str, float]) -> ExitModel:
        from dataclasses import replace

        return replace(self, rule=check_rule(rule), thresholds=dict(thresholds))

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": KIND,
            "model": self.model,
            "input_shape": list(self.input_shape),
            "rule": self.rule,
            "thresholds": dict(self.thresholds),
            "exits": [e.to_dict() for e in self.exits],
            "training": dict(self.training),
            "weights_file": self.weights_file,
            "measurements": self.measurements.to_dict(),
            "graph": self.graph.to_dict(),
        }

    @classmethod
    @json_contract("exits file", hint="re-create it with 'tiercut exits add'")
    def from_dict(cls, data: Mapping[str, Any]) -> ExitModel:
        if not isinstance(data, Mapping) or data.get("kind") != KIND:
            raise TiercutError("this is not an exits file (no \"kind\": \"tiercut-exits\"); write one with 'tiercut exits add'")
        if data.get("schema_version") != SCHEMA_VERSION:
            raise TiercutError(f"exits file has schema_version {data.get('schema_version')!r}, this tiercut reads "
                               f"{SCHEMA_VERSION}; re-create it with 'tiercut exits add'")
        try:
            return cls(
                model=str(data["model"]),
                input_shape=tuple(int(s) for s in data["input_shape"]),
                graph=LayerGraph.from_dict(data["graph"]),
                exits=tuple(ExitBranch.from_dict(e) for e in data["exits"]),
                rule=str(data["rule"]),
                thresholds={str(k): float(v) for k, v in dict(data["thresholds"]).items()},
                measurements=ExitMeasurements.from_dict(data["measurements"]),
                training=dict(data.get("training", {})),
                weights_file=None if data.get("weights_file") is None else str(data["weights_file"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise TiercutError(f"exits file lacks or garbles {exc}; re-create it with 'tiercut exits add'") from None

    def save(self, path: str | Path) -> None:
        """Write the JSON (atomically: a temporary file renamed into place)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict()) + "\n")
        tmp.replace(path)


def load_exit_model(path: str | Path) -> ExitModel:
    """Read an exits file (data only)."""
    from tiercut.datafiles import read_json_file

    return ExitModel.from_dict(read_json_file(path, "exits file"))


__all__ = ["FINAL", "KIND", "SCHEMA_VERSION", "ExitBranch", "ExitModel", "check_exits", "load_exit_model"]
