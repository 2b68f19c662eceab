"""Model -> LayerGraph: the first stage of the pipeline.

Front doors:

- :func:`capture_model` (a torch model, spec or module) -> :class:`CapturedModel`
  with the fx graph that runnable partitions are cut from;
- :func:`extract_graph` (a torch model, an ``.onnx`` file or a layer graph JSON) -> :class:`LayerGraph`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tiercut.errors import TiercutError
from tiercut.graph.capture import CapturedModel, ModuleTypes, capture
from tiercut.graph.model_spec import (
    InputSpec,
    LoadedModel,
    ModelRequest,
    check_code_allowed,
    is_file_factory_spec,
    load_model,
    parse_inputs,
)
from tiercut.graph.models import (
    ZOO,
    check_input_shape,
    data_model_spec,
    is_factory_spec,
    is_graph_json_path,
    parse_shape,
)
from tiercut.graph.split import Partition, SplitModel, split_by_placement
from tiercut.graph.types import INPUT_OP, SCHEMA_VERSION, LayerGraph, Node

GRANULARITIES = ("module", "block")


def is_onnx_path(model: Any) -> bool:
    return isinstance(model, (str, Path)) and str(model).lower().endswith(".onnx")


def capture_model(
    model: Any,
    input_shape: tuple[int, ...] | None = None,
    *,
    granularity: str = "module",
    example_inputs: tuple[Any, ...] | None = None,
    inputs: Sequence[InputSpec | str] | None = None,
    allow_code: bool = False,
    module_types: ModuleTypes | None = None,
    seed: int = 0,
) -> CapturedModel:
    """Capture a torch model: a zoo name, a factory spec (``package.module:f``, ``file.py:f``) or an ``nn.Module``.

    The inputs are, first found: ``example_inputs`` (tensors), ``inputs``
    (:class:`InputSpec` or their text, e.g. ``"ids:int64:1x128"``),
    ``input_shape`` (one float32 input), the factory's own example inputs, or
    a zoo model's documented size. ``module_types`` says which modules are
    kept whole or opened (:class:`ModuleTypes`).
    """
    import torch

    if isinstance(model, torch.nn.Module) and example_inputs is not None:  # nothing to load or make
        return capture(model.eval(), tuple(example_inputs), type(model).__name__.lower(), granularity, module_types)
    loaded = _load(model, input_shape, inputs, allow_code, seed)
    examples = tuple(example_inputs) if example_inputs is not None else loaded.example_inputs
    return capture(loaded.model, examples, loaded.label, granularity, module_types)


def _load(
    model: Any, input_shape: tuple[int, ...] | None, inputs: Sequence[InputSpec | str] | None, allow_code: bool, seed: int
) -> LoadedModel:
    if is_onnx_path(model):
        raise TiercutError(
            f"{model} is an ONNX file: it has a layer graph but no torch model; this needs the torch model "
            "(its zoo name or factory)"
        )
    if is_graph_json_path(model):
        raise TiercutError(
            f"{model} is a layer graph or problem JSON: it has a layer graph but no model to run; this command "
            "needs the real model (the zoo name or factory it came from)"
        )
    if input_shape is not None and inputs:
        raise TiercutError("give the inputs once: input specs or an input shape, not both")
    if input_shape is not None:
        inputs = (InputSpec(name=None, dtype="float32", shape=check_input_shape(tuple(input_shape), str(input_shape))),)
    return load_model(model, inputs, allow_code=allow_code, seed=seed)


@dataclasses.dataclass
class ModelSource:
    """A model ready to capture (the older front door's result; :class:`LoadedModel` is the full one)."""

    module: Any
    example_inputs: tuple[Any, ...]
    label: str


def resolve_model(spec: str, input_shape: tuple[int, ...] | None = None, seed: int = 0) -> ModelSource:
    """The module and example input a model spec names, via :func:`load_model` (kept for existing callers)."""
    loaded = _load(spec, input_shape, None, False, seed)
    return ModelSource(module=loaded.model, example_inputs=loaded.example_inputs, label=loaded.label)


def capture_request(request: ModelRequest) -> CapturedModel:
    """Capture the torch model a :class:`ModelRequest` names (every command that runs the model)."""
    from tiercut.graph.cache import store_graph

    loaded = _load(request.spec, None, request.inputs, request.allow_code, request.seed)
    module_types = ModuleTypes(leaf=request.leaf_modules, open=request.open_modules)
    captured = capture(loaded.model, loaded.example_inputs, loaded.label, request.granularity, module_types)
    store_graph(request, captured.graph)
    return captured


def graph_of(request: ModelRequest) -> LayerGraph:
    """The layer graph a :class:`ModelRequest` names: a torch model (through the graph cache), an ONNX file or a JSON."""
    from tiercut.graph.cache import cached_graph

    if is_onnx_path(request.spec):
        specs = request.inputs or ()
        if len(specs) > 1 or any(s.name is not None for s in specs):
            raise TiercutError(f"{request.spec} takes one --input-shape for its first input; its other inputs keep theirs")
        return extract_graph(request.spec, specs[0].shape if specs else None, granularity=request.granularity)
    if is_graph_json_path(request.spec):
        return extract_graph(request.spec, granularity=request.granularity, inputs=request.inputs)
    if is_file_factory_spec(request.spec):  # also when the graph is cached: same rule, same answer
        check_code_allowed(request.spec, request.allow_code)
    return cached_graph(request, lambda: capture_request(dataclasses.replace(request, use_cache=False)).graph)


def is_problem_data(data: Any) -> bool:
    """Whether parsed JSON is a problem (``tiercut plan --json`` output or its ``problem`` object)."""
    if isinstance(data, dict) and isinstance(data.get("problem"), dict):
        data = data["problem"]
    return isinstance(data, dict) and "compute_s" in data and "devices" in data and "nodes" in data


def read_model_json(path: str | Path) -> Any:
    """A JSON file given as a model, parsed as data (a layer graph or a problem)."""
    from tiercut.datafiles import read_json_file

    return read_json_file(path, "model JSON (layer graph or problem)")


def read_graph_json(path: str | Path, data: Any = None) -> LayerGraph:
    """A layer graph JSON file (``tiercut graph --json``), or the graph of a problem JSON, read as data."""
    if data is None:
        data = read_model_json(path)
    if isinstance(data, dict) and isinstance(data.get("graph"), dict):
        data = data["graph"]
    if is_problem_data(data):
        problem = data.get("problem", data)
        data = {"schema_version": SCHEMA_VERSION, **{k: problem.get(k) for k in ("model", "granularity", "nodes", "params")}}
        data = {k: v for k, v in data.items() if v is not None}
    if not isinstance(data, dict):
        raise TiercutError(f"layer graph {path} is not a JSON object; pass the output of 'tiercut graph MODEL --json'")
    try:
        return LayerGraph.from_dict(data)
    except TiercutError as exc:
        raise TiercutError(f"layer graph {path}: {exc}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise TiercutError(
            f"layer graph {path} lacks a field or holds a wrong type ({exc}); pass the output of 'tiercut graph --json'"
        ) from None


def extract_graph(
    model: Any,
    input_shape: tuple[int, ...] | None = None,
    *,
    granularity: str = "module",
    inputs: Sequence[InputSpec | str] | None = None,
    allow_code: bool = False,
    seed: int = 0,
) -> LayerGraph:
    """The layer graph of a torch model, an ``.onnx`` file or a layer graph JSON file."""
    if is_graph_json_path(model):
        if input_shape is not None or inputs:
            raise TiercutError(f"{model} is a layer graph JSON with its own shapes; drop the input shape")
        graph = read_graph_json(model)
        if graph.granularity != granularity:
            raise TiercutError(f"layer graph {model} is at {graph.granularity} granularity, not {granularity}; extract it again")
        return graph
    if is_onnx_path(model):
        from tiercut.graph.onnx_import import onnx_graph

        return onnx_graph(Path(model), input_shape, granularity=granularity)
    return capture_model(model, input_shape, granularity=granularity, inputs=inputs, allow_code=allow_code, seed=seed).graph


__all__ = [
    "GRANULARITIES",
    "INPUT_OP",
    "SCHEMA_VERSION",
    "ZOO",
    "CapturedModel",
    "InputSpec",
    "LayerGraph",
    "LoadedModel",
    "ModelRequest",
    "ModelSource",
    "ModuleTypes",
    "Node",
    "Partition",
    "SplitModel",
    "capture_model",
    "capture_request",
    "check_input_shape",
    "data_model_spec",
    "extract_graph",
    "graph_of",
    "is_factory_spec",
    "is_graph_json_path",
    "is_onnx_path",
    "is_problem_data",
    "load_model",
    "parse_inputs",
    "parse_shape",
    "read_graph_json",
    "read_model_json",
    "resolve_model",
    "split_by_placement",
]

# `tiercut.graph(...)` is the front-door step of this stage (tiercut/_front_door.py)
from tiercut._front_door import make_callable  # noqa: E402

make_callable(__name__)
