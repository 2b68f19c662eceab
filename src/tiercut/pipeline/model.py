"""The model step: a model spec (and its example inputs) -> a module, a layer graph, a captured fx graph.

:func:`load_model` is the ONE place a model spec becomes a torch module with
example inputs; :func:`graph` and :func:`capture` go through it for torch
models, so a richer spec language (several inputs, dtypes, files) changes
this one function. ONNX files and layer-graph JSON files have a layer graph
but no torch module: :func:`graph` reads them directly.
"""

from __future__ import annotations

from typing import Any

from tiercut.errors import TiercutError
from tiercut.graph import GRANULARITIES, CapturedModel, LayerGraph, ModelSource
from tiercut.pipeline.progress import SILENT, Progress


def _label(model: Any) -> str:
    return model if isinstance(model, str) else type(model).__name__.lower()


def check_granularity(granularity: str) -> str:
    if granularity not in GRANULARITIES:
        raise TiercutError(f"granularity {granularity!r} is not known; use one of {', '.join(GRANULARITIES)}")
    return granularity


def load_model(
    model: Any,
    input_shape: tuple[int, ...] | None = None,
    *,
    example_inputs: tuple[Any, ...] | None = None,
    seed: int = 0,
) -> ModelSource:
    """A torch module, its example inputs and a label from a model spec.

    ``model``: a zoo name (``resnet18``), ``package.module:factory``, or an
    ``nn.Module``. ``example_inputs`` wins over ``input_shape``; a zoo model
    without either gets a random input of its documented size. Weights are
    random (seeded): tiercut times and splits models, it does not train them.
    """
    import torch

    from tiercut.graph import check_input_shape, is_graph_json_path, is_onnx_path, resolve_model

    if input_shape is not None:
        input_shape = check_input_shape(tuple(input_shape), str(list(input_shape)))
    if isinstance(model, torch.nn.Module):
        if example_inputs is None:
            if input_shape is None:
                raise TiercutError("an nn.Module needs example_inputs or input_shape to be traced")
            example_inputs = (torch.randn(*input_shape, generator=torch.Generator().manual_seed(seed)),)
        return ModelSource(model.eval(), tuple(example_inputs), type(model).__name__.lower())
    if is_onnx_path(model) or is_graph_json_path(model):
        raise TiercutError(f"{model} is a layer graph source (ONNX or graph JSON), not a torch model; use tiercut.graph")
    source = resolve_model(str(model), input_shape, seed)
    if example_inputs is not None:
        source.example_inputs = tuple(example_inputs)
    return source


def capture(
    model: Any,
    input_shape: tuple[int, ...] | None = None,
    *,
    example_inputs: tuple[Any, ...] | None = None,
    granularity: str = "module",
    seed: int = 0,
    progress: Progress = SILENT,
) -> CapturedModel:
    """The fx graph runnable partitions are cut from, and its layer graph (a torch model only)."""
    from tiercut.graph.capture import capture as capture_source

    check_granularity(granularity)
    source = load_model(model, input_shape, example_inputs=example_inputs, seed=seed)
    with progress.step(f"tracing {source.label}"):
        return capture_source(source.module, source.example_inputs, source.label, granularity)


def graph(
    model: Any,
    example_inputs: tuple[Any, ...] | Any | None = None,
    *,
    input_shape: tuple[int, ...] | None = None,
    granularity: str = "module",
    seed: int = 0,
    progress: Progress = SILENT,
) -> LayerGraph:
    """The layer graph (DAG with FLOPs, parameter and activation bytes) of a model.

    ``model``: a zoo name, ``package.module:factory``, an ``nn.Module``, an
    ``.onnx`` file, a layer graph JSON file, or a :class:`LayerGraph` (returned
    as it is). ``example_inputs``: a tensor or a tuple of tensors the model is
    traced with (a torch model only).
    """
    from tiercut.graph import extract_graph, is_graph_json_path, is_onnx_path

    check_granularity(granularity)
    if isinstance(model, LayerGraph):
        return model
    if example_inputs is not None and not isinstance(example_inputs, tuple):
        example_inputs = (example_inputs,)
    if is_graph_json_path(model) or is_onnx_path(model):
        with progress.step(f"reading {model}"):
            return extract_graph(model, input_shape, granularity=granularity, seed=seed)
    return capture(
        model, input_shape, example_inputs=example_inputs, granularity=granularity, seed=seed, progress=progress
    ).graph


__all__ = ["capture", "check_granularity", "graph", "load_model"]
