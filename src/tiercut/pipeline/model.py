"""The model step: a model spec (and its example inputs) -> a module, a layer graph, a captured fx graph.

Every step that takes a model takes a :class:`~tiercut.graph.ModelRequest`
too (what the CLI's model options say: several typed inputs, leaf and opened
module types, ``file.py:factory`` behind ``allow_code``, the graph cache), or
the short forms it is built from here (a spec string and an input shape).
:func:`load_model`, :func:`capture` and :func:`graph` go through
:func:`tiercut.graph.load_model`, :func:`tiercut.graph.capture_request` and
:func:`tiercut.graph.graph_of`: the ONE way from a model spec to a module and
a graph. ONNX files and layer-graph / problem JSON files have a layer graph
but no torch module: :func:`graph` reads them (no cache needed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tiercut.errors import TiercutError
from tiercut.graph import GRANULARITIES, CapturedModel, InputSpec, LayerGraph, ModelRequest, ModelSource
from tiercut.pipeline.progress import SILENT, Progress


def check_granularity(granularity: str) -> str:
    if granularity not in GRANULARITIES:
        raise TiercutError(f"granularity {granularity!r} is not known; use one of {', '.join(GRANULARITIES)}")
    return granularity


def model_request(
    model: str | ModelRequest,
    input_shape: tuple[int, ...] | None = None,
    *,
    inputs: Sequence[InputSpec | str] | None = None,
    granularity: str = "module",
    leaf_modules: Sequence[str] = (),
    open_modules: Sequence[str] = (),
    allow_code: bool = False,
    use_cache: bool = True,
    seed: int = 0,
) -> ModelRequest:
    """The :class:`ModelRequest` of a model spec and its options (``model`` itself when it is one).

    ``inputs``: input specs (:class:`InputSpec` or their text ``ids:int64:1x128``);
    ``input_shape``: the short form of one float32 input (not with ``inputs``).
    """
    from tiercut.graph import check_input_shape

    if isinstance(model, ModelRequest):
        return model
    check_granularity(granularity)
    if input_shape is not None and inputs:
        raise TiercutError("give the inputs once: input specs or an input shape, not both")
    specs: tuple[InputSpec, ...] | None = None
    if inputs:
        specs = tuple(InputSpec.parse(s) if isinstance(s, str) else s for s in inputs)
    elif input_shape is not None:
        shape = check_input_shape(tuple(input_shape), str(list(input_shape)))
        specs = (InputSpec(name=None, dtype="float32", shape=shape),)
    return ModelRequest(
        spec=str(model), inputs=specs, granularity=granularity, leaf_modules=tuple(dict.fromkeys(leaf_modules)),
        open_modules=tuple(dict.fromkeys(open_modules)), allow_code=allow_code, use_cache=use_cache, seed=seed,
    )


def _is_module(model: Any) -> bool:
    if isinstance(model, (str, ModelRequest, LayerGraph)) or model is None:
        return False
    import torch

    return isinstance(model, torch.nn.Module)


def _examples(example_inputs: Any) -> tuple[Any, ...] | None:
    if example_inputs is None or isinstance(example_inputs, tuple):
        return example_inputs
    return (example_inputs,)


def load_model(
    model: Any,
    input_shape: tuple[int, ...] | None = None,
    *,
    example_inputs: tuple[Any, ...] | None = None,
    inputs: Sequence[InputSpec | str] | None = None,
    allow_code: bool = False,
    seed: int = 0,
) -> ModelSource:
    """A torch module, its example inputs and a label from a model spec.

    ``model``: a zoo name (``resnet18``), ``package.module:factory``,
    ``path/to/file.py:factory`` (with ``allow_code``), a :class:`ModelRequest`
    or an ``nn.Module``. The inputs are, first found: ``example_inputs``
    (tensors), ``inputs`` (specs), ``input_shape`` (one float32 input), the
    factory's own example inputs, or a zoo model's documented size. Weights are
    random (seeded): tiercut times and splits models, it does not train them.
    """
    import torch

    from tiercut.graph import load_model as load_torch_model

    examples = _examples(example_inputs)
    if _is_module(model):
        if examples is None and input_shape is None and not inputs:
            raise TiercutError("an nn.Module needs example_inputs or input_shape to be traced")
        if examples is None and inputs:
            loaded = load_torch_model(model, inputs, seed=seed)
            examples = loaded.example_inputs
        elif examples is None:
            examples = (torch.randn(*input_shape, generator=torch.Generator().manual_seed(seed)),)  # type: ignore[misc]
        return ModelSource(model.eval(), tuple(examples), type(model).__name__.lower())
    request = model_request(model, input_shape, inputs=inputs, allow_code=allow_code, seed=seed)
    loaded = request.load()
    return ModelSource(loaded.model, examples if examples is not None else loaded.example_inputs, loaded.label)


def capture(
    model: Any,
    input_shape: tuple[int, ...] | None = None,
    *,
    example_inputs: tuple[Any, ...] | None = None,
    inputs: Sequence[InputSpec | str] | None = None,
    granularity: str = "module",
    leaf_modules: Sequence[str] = (),
    open_modules: Sequence[str] = (),
    allow_code: bool = False,
    seed: int = 0,
    progress: Progress = SILENT,
) -> CapturedModel:
    """The fx graph runnable partitions are cut from, and its layer graph (a torch model only).

    ``model``: anything :func:`load_model` takes; a :class:`ModelRequest`
    carries its own inputs, granularity and module types; a
    :class:`CapturedModel` is returned as it is.
    """
    from tiercut.graph import ModuleTypes, capture_request
    from tiercut.graph.capture import capture as capture_source

    if isinstance(model, CapturedModel):
        return model
    examples = _examples(example_inputs)
    if _is_module(model) or examples is not None:
        check_granularity(granularity)
        source = load_model(model, input_shape, example_inputs=examples, inputs=inputs, allow_code=allow_code, seed=seed)
        types = ModuleTypes(leaf=tuple(leaf_modules), open=tuple(open_modules))
        with progress.step(f"tracing {source.label}"):
            return capture_source(source.module, source.example_inputs, source.label, granularity, types)
    request = model_request(
        model, input_shape, inputs=inputs, granularity=granularity, leaf_modules=leaf_modules,
        open_modules=open_modules, allow_code=allow_code, seed=seed,
    )
    with progress.step(f"tracing {request.spec}"):
        return capture_request(request)


def graph(
    model: Any,
    example_inputs: tuple[Any, ...] | Any | None = None,
    *,
    input_shape: tuple[int, ...] | None = None,
    inputs: Sequence[InputSpec | str] | None = None,
    granularity: str = "module",
    leaf_modules: Sequence[str] = (),
    open_modules: Sequence[str] = (),
    allow_code: bool = False,
    use_cache: bool = True,
    seed: int = 0,
    progress: Progress = SILENT,
) -> LayerGraph:
    """The layer graph (DAG with FLOPs, parameter and activation bytes) of a model.

    ``model``: a zoo name, ``package.module:factory``, ``file.py:factory``
    (with ``allow_code``), an ``nn.Module``, an ``.onnx`` file, a layer graph
    or problem JSON file, a :class:`ModelRequest`, a :class:`CapturedModel`
    (its layer graph), or a :class:`LayerGraph` (returned as it is). ``example_inputs``: a tensor or a tuple of tensors the
    model is traced with (a torch model only). A torch model named by its spec
    is read from the graph cache when it was traced before (``use_cache``).
    """
    from tiercut.graph import graph_of
    from tiercut.graph.model_spec import has_torch_model

    if isinstance(model, LayerGraph):
        return model
    if isinstance(model, CapturedModel):
        return model.graph
    examples = _examples(example_inputs)
    if _is_module(model) or examples is not None:
        return capture(
            model, input_shape, example_inputs=examples, inputs=inputs, granularity=granularity,
            leaf_modules=leaf_modules, open_modules=open_modules, allow_code=allow_code, seed=seed, progress=progress,
        ).graph
    request = model_request(
        model, input_shape, inputs=inputs, granularity=granularity, leaf_modules=leaf_modules,
        open_modules=open_modules, allow_code=allow_code, use_cache=use_cache, seed=seed,
    )
    verb = "tracing" if has_torch_model(request.spec) else "reading"
    with progress.step(f"{verb} {request.spec}"):
        return graph_of(request)


__all__ = ["capture", "check_granularity", "graph", "load_model", "model_request"]
