"""Model -> LayerGraph: the first stage of the pipeline.

Front doors:

- :func:`capture_model` (a torch model, spec or module) -> :class:`CapturedModel`
  with the fx graph that runnable partitions are cut from;
- :func:`extract_graph` (a torch model, an ``.onnx`` file or a layer graph JSON) -> :class:`LayerGraph`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tiercut.errors import TiercutError
from tiercut.graph.capture import CapturedModel, capture
from tiercut.graph.models import (
    ZOO,
    ModelSource,
    check_input_shape,
    data_model_spec,
    is_factory_spec,
    is_graph_json_path,
    parse_shape,
    resolve_model,
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
    seed: int = 0,
) -> CapturedModel:
    """Capture a torch model: a zoo name, ``package.module:factory`` or an ``nn.Module``.

    ``example_inputs`` wins over ``input_shape``; a zoo model without either is
    evaluated at its documented size.
    """
    import torch

    if isinstance(model, torch.nn.Module):
        if example_inputs is None:
            if input_shape is None:
                raise TiercutError("an nn.Module needs example_inputs or input_shape to be traced")
            example_inputs = (torch.randn(*input_shape, generator=torch.Generator().manual_seed(seed)),)
        source = ModelSource(model.eval(), tuple(example_inputs), type(model).__name__.lower())
    elif is_onnx_path(model):
        raise TiercutError(f"{model} is an ONNX file; it has a layer graph (extract_graph) but no torch fx graph")
    elif is_graph_json_path(model):
        raise TiercutError(f"{model} is a layer graph JSON; it has a layer graph but no torch model to run")
    else:
        source = resolve_model(str(model), input_shape, seed)
        if example_inputs is not None:
            source.example_inputs = tuple(example_inputs)
    return capture(source.module, source.example_inputs, source.label, granularity)


def read_graph_json(path: str | Path) -> LayerGraph:
    """A layer graph JSON file (``tiercut graph --json``), read as data."""
    from tiercut.datafiles import read_json_file

    data = read_json_file(path, "layer graph")
    if isinstance(data, dict) and isinstance(data.get("graph"), dict):
        data = data["graph"]
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
    seed: int = 0,
) -> LayerGraph:
    """The layer graph of a torch model, an ``.onnx`` file or a layer graph JSON file."""
    if is_graph_json_path(model):
        if input_shape is not None:
            raise TiercutError(f"{model} is a layer graph JSON with its own shapes; drop the input shape")
        graph = read_graph_json(model)
        if graph.granularity != granularity:
            raise TiercutError(f"layer graph {model} is at {graph.granularity} granularity, not {granularity}; extract it again")
        return graph
    if is_onnx_path(model):
        from tiercut.graph.onnx_import import onnx_graph

        return onnx_graph(Path(model), input_shape, granularity=granularity)
    return capture_model(model, input_shape, granularity=granularity, seed=seed).graph


__all__ = [
    "GRANULARITIES",
    "INPUT_OP",
    "SCHEMA_VERSION",
    "ZOO",
    "CapturedModel",
    "LayerGraph",
    "Node",
    "Partition",
    "SplitModel",
    "capture_model",
    "check_input_shape",
    "data_model_spec",
    "extract_graph",
    "is_factory_spec",
    "is_graph_json_path",
    "is_onnx_path",
    "parse_shape",
    "read_graph_json",
    "split_by_placement",
]

# `tiercut.graph(...)` is the front-door step of this stage (tiercut/_front_door.py)
from tiercut._front_door import make_callable  # noqa: E402

make_callable(__name__)
