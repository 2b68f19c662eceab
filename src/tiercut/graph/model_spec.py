"""What a user names as a model, with what inputs: one front door, :func:`load_model`.

A model spec is one of:

- a zoo name (``resnet50``; :mod:`tiercut.graph.models`), evaluated at its
  documented input size;
- ``package.module:factory``: a callable imported from the user's own code;
- ``path/to/file.py:factory``: the same from a Python file, loaded as a module.
  Both import and run code, so both need the caller's leave (``--allow-code``,
  ``allow_code=True``): running code is the user's explicit decision, never a
  side effect of naming a model. Factories of tiercut's and torchvision's own
  model modules (``torchvision.models:vgg19``, ``tiercut.exits.models:digits_cnn``)
  are not user code and need no leave;
- an ``.onnx`` file or a layer graph / problem JSON: these have no torch
  model; :func:`load_model` names them in a one-line error and the graph
  stage (:func:`tiercut.graph.extract_graph`) reads them.

A factory returns either an ``nn.Module`` or ``(module, example_inputs)``,
``example_inputs`` being one tensor, a tuple of tensors (positional
arguments) or a dict of tensors (forward argument name -> tensor).

Inputs are described by :class:`InputSpec`, written on the command line as
``[NAME:][DTYPE:]SHAPE[:FILL]``, e.g. ``ids:int64:1x128``,
``mask:bool:1x128:zeros`` or ``1x3x224x224`` (float32). Explicit input specs
win over a factory's example inputs and a zoo model's documented size. The
example values are random but reproducible (a seeded generator):

- floating dtypes: standard normal (``randn``), or ``rand``/``zeros``/``ones``;
- integer dtypes: uniform in ``[LOW, HIGH)`` written ``LOW..HIGH``; by
  default ``[0, n)`` with ``n`` the smallest ``nn.Embedding`` vocabulary of
  the model (so token ids are valid), or ``[0, 2)`` without embeddings;
- ``bool``: ``zeros`` (all False, i.e. nothing masked in a padding mask) by
  default, or ``ones``/``rand``.
"""

from __future__ import annotations

import importlib.util
import inspect
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tiercut.errors import TiercutError
from tiercut.graph.models import (
    MAX_INPUT_ELEMENTS,
    TRUSTED_FACTORY_MODULES,
    ZOO,
    build_zoo_model,
    check_input_shape,
    import_factory,
    imports_user_code,
    is_factory_spec,
    is_file_factory,
    parse_shape,
)

#: dtype names an input may have (wire names, as ``torch.<name>``), with their aliases
DTYPES: dict[str, str] = {
    "float32": "float32", "float": "float32", "f32": "float32",
    "float64": "float64", "double": "float64", "f64": "float64",
    "float16": "float16", "half": "float16", "f16": "float16",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "int64": "int64", "long": "int64", "i64": "int64",
    "int32": "int32", "int": "int32", "i32": "int32",
    "int16": "int16", "i16": "int16",
    "int8": "int8", "i8": "int8",
    "uint8": "uint8", "u8": "uint8",
    "bool": "bool",
}
FLOAT_FILLS = ("randn", "rand", "zeros", "ones")
BOOL_FILLS = ("zeros", "ones", "rand")
#: integer inputs without an embedding to size them are drawn from [0, DEFAULT_INT_HIGH)
DEFAULT_INT_HIGH = 2
#: at most this many model inputs (each bounded by MAX_INPUT_ELEMENTS)
MAX_INPUTS = 32


def _is_float(dtype: str) -> bool:
    return dtype.startswith(("float", "bfloat"))


@dataclass(frozen=True)
class InputSpec:
    """One model input: its forward argument name (optional), dtype, shape and how its example is filled.

    Attributes:
        name: the forward argument it binds to; ``None`` binds by position.
        dtype: canonical dtype name (``float32``, ``int64``, ``bool``, ...).
        shape: sizes, each >= 1.
        fill: ``randn``/``rand``/``zeros``/``ones``, or ``LOW..HIGH`` for integers;
            ``None`` is the dtype's default (module docstring).
    """

    name: str | None
    dtype: str
    shape: tuple[int, ...]
    fill: str | None = None

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES.values():
            known = ", ".join(sorted(set(DTYPES.values())))
            raise TiercutError(f"input dtype {self.dtype!r} is not supported; use one of {known}")
        check_input_shape(tuple(self.shape), f"of input {self.describe()!r}")
        if self.name is not None and not self.name.isidentifier():
            raise TiercutError(f"input name {self.name!r} is not a Python identifier (a forward argument name)")
        if self.fill is not None:
            _int_range(self)  # validates the fill for this dtype

    @classmethod
    def parse(cls, text: str) -> InputSpec:
        """``[NAME:][DTYPE:]SHAPE[:FILL]``, e.g. ``ids:int64:1x128`` or ``1,3,224,224``."""
        shown = text if len(text) <= 60 else text[:57] + "..."
        parts = [p.strip() for p in text.split(":")]
        name = dtype = fill = None
        shape_at = next((i for i, p in enumerate(parts) if p and p[0].isdigit() and "." not in p), None)
        if shape_at is None or shape_at > 2 or len(parts) - shape_at > 2:
            raise TiercutError(
                f"--input {shown!r} is not [NAME:][DTYPE:]SHAPE[:FILL]; write e.g. ids:int64:1x128 or 1x3x224x224"
            )
        head = parts[:shape_at]
        if len(head) == 2:
            name, dtype = head
        elif len(head) == 1:
            if head[0].lower() in DTYPES:
                dtype = head[0]
            else:
                name = head[0]
        if dtype is not None and dtype.lower() not in DTYPES:
            raise TiercutError(
                f"--input {shown!r}: dtype {dtype!r} is not supported; use one of {', '.join(sorted(set(DTYPES.values())))}"
            )
        if shape_at + 1 < len(parts):
            fill = parts[shape_at + 1]
        return cls(
            name=name or None,
            dtype=DTYPES[(dtype or "float32").lower()],
            shape=parse_shape(parts[shape_at]),
            fill=fill or None,
        )

    @classmethod
    def of(cls, tensor: Any, name: str | None = None) -> InputSpec:
        """The spec of an example tensor (its fill is not recorded: the tensor's values are given)."""
        return cls(name=name, dtype=str(tensor.dtype).replace("torch.", ""), shape=tuple(int(s) for s in tensor.shape))

    def describe(self) -> str:
        text = "x".join(map(str, self.shape))
        text = f"{self.dtype}:{text}"
        if self.name:
            text = f"{self.name}:{text}"
        return f"{text}:{self.fill}" if self.fill else text

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape), "fill": self.fill}

    def make(self, generator: Any, int_high: int = DEFAULT_INT_HIGH) -> Any:
        """A reproducible example tensor of this spec (``int_high``: default exclusive bound of integers)."""
        import torch

        dtype = getattr(torch, self.dtype)
        if _is_float(self.dtype):
            fill = self.fill or "randn"
            if fill in ("zeros", "ones"):
                return getattr(torch, fill)(*self.shape, dtype=dtype)
            return getattr(torch, fill)(*self.shape, generator=generator).to(dtype)
        if self.dtype == "bool":
            fill = self.fill or "zeros"
            if fill in ("zeros", "ones"):
                return getattr(torch, fill)(*self.shape, dtype=torch.bool)
            return torch.rand(*self.shape, generator=generator) < 0.5
        low, high = _int_range(self) or (0, int_high)
        return torch.randint(low, high, self.shape, generator=generator, dtype=dtype)


def _int_range(spec: InputSpec) -> tuple[int, int] | None:
    """The ``LOW..HIGH`` of an integer spec's fill (None: the default); raises on a fill the dtype cannot take."""
    fill = spec.fill
    if _is_float(spec.dtype):
        if fill is not None and fill not in FLOAT_FILLS:
            raise TiercutError(f"input {spec.name or ''} fill {fill!r} is not one of {', '.join(FLOAT_FILLS)} for {spec.dtype}")
        return None
    if spec.dtype == "bool":
        if fill is not None and fill not in BOOL_FILLS:
            raise TiercutError(f"input {spec.name or ''} fill {fill!r} is not one of {', '.join(BOOL_FILLS)} for bool")
        return None
    if fill is None:
        return None
    if fill == "zeros":
        return 0, 1
    if fill == "ones":
        return 1, 2
    low, sep, high = fill.partition("..")
    try:
        if not sep or len(low) > 19 or len(high) > 19:
            raise ValueError
        bounds = int(low), int(high)
    except ValueError:
        raise TiercutError(
            f"input {spec.name or ''} fill {fill!r} of an {spec.dtype} input must be LOW..HIGH (HIGH excluded), "
            "e.g. 0..30000, or zeros/ones"
        ) from None
    if bounds[0] >= bounds[1]:
        raise TiercutError(f"input {spec.name or ''} fill {fill!r} is empty; LOW must be below HIGH")
    return bounds


def parse_inputs(texts: Sequence[str] | None, input_shape: str | None = None) -> tuple[InputSpec, ...] | None:
    """The input specs of ``--input`` (repeatable) or the older ``--input-shape`` (one float32 input)."""
    if texts and input_shape is not None:
        raise TiercutError("--input and --input-shape both describe the inputs; use --input only")
    if input_shape is not None:
        return (InputSpec(name=None, dtype="float32", shape=parse_shape(input_shape)),)
    if not texts:
        return None
    if len(texts) > MAX_INPUTS:
        raise TiercutError(f"{len(texts)} --input options; a model may have at most {MAX_INPUTS} inputs")
    specs = tuple(InputSpec.parse(t) for t in texts)
    total = sum(math.prod(s.shape) for s in specs)
    if total > MAX_INPUT_ELEMENTS:
        raise TiercutError(f"the inputs hold {total:.3g} elements together, more than {MAX_INPUT_ELEMENTS:,}; use smaller shapes")
    return specs


# --------------------------------------------------------------------- the loaded model
@dataclass
class LoadedModel:
    """A torch model ready to capture.

    Attributes:
        model: the ``nn.Module``, in eval mode.
        example_inputs: positional arguments of one forward call.
        input_specs: the spec of each example input (named by the forward's argument).
        label: the name graphs and reports show.
        spec: the model spec it was loaded from.
    """

    model: Any
    example_inputs: tuple[Any, ...]
    input_specs: tuple[InputSpec, ...]
    label: str
    spec: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


def is_file_factory_spec(spec: str) -> bool:
    """Whether ``spec`` is written ``path/to/file.py:factory``."""
    return is_file_factory(spec)


def has_torch_model(spec: Any) -> bool:
    """Whether ``spec`` names a torch model (a zoo name or a factory), not an ONNX file or a JSON file."""
    return not str(spec).lower().endswith((".onnx", ".json"))


def check_code_allowed(spec: str, allow_code: bool) -> None:
    """A one-line error if ``spec`` imports user code (:func:`imports_user_code`) and that was not allowed."""
    if allow_code or not imports_user_code(spec):
        return
    if is_file_factory_spec(spec):
        what = f"runs the Python file {spec.rpartition(':')[0]}"
    else:
        what = f"imports and runs the Python module {spec.partition(':')[0]}"
    raise TiercutError(
        f"model {spec!r} {what}; pass --allow-code to load it (allow_code=True in Python), or name a zoo model"
    )


def load_file_factory(spec: str, *, allow_code: bool) -> Any:
    """The callable ``path/to/file.py:factory`` names, loading the file as a module (needs ``allow_code``)."""
    path_text, _, attr = spec.rpartition(":")
    path = Path(path_text)
    check_code_allowed(spec, allow_code)
    if not path.is_file():
        raise TiercutError(f"model file {path_text} does not exist (model {spec!r}); check the path")
    module_name = f"tiercut_user_model_{abs(hash(str(path.resolve()))):x}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise TiercutError(f"model file {path_text} cannot be loaded as a Python module; it must be a .py file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module  # dataclasses and pickling-free introspection look the module up
    try:
        module_spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:  # the user's file failed while loading: one line
        sys.modules.pop(module_name, None)
        line = (str(exc).strip().splitlines() or [""])[0]
        raise TiercutError(f"loading {path_text} for model {spec!r} raised {type(exc).__name__}: {line[:200]}") from None
    factory: Any = module
    for part in attr.split("."):
        factory = getattr(factory, part, None)
        if factory is None:
            names = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))[:12]
            raise TiercutError(f"{path_text} has no {attr!r}; callables there: {', '.join(names) or 'none'}")
    if not callable(factory):
        raise TiercutError(f"{spec!r} is not callable; it must name a function or class returning an nn.Module")
    return factory


def _call_factory(spec: str, factory: Any, seed: int) -> tuple[Any, Any]:
    """(module, example inputs or None) from a factory's result, checked."""
    import torch

    torch.manual_seed(seed)
    try:
        result = factory()
    except (Exception, SystemExit) as exc:  # the user's factory failed (or tried to exit): one line
        line = (str(exc).strip().splitlines() or [""])[0]
        raise TiercutError(f"model factory {spec!r} raised {type(exc).__name__}: {line[:200]}") from None
    examples = None
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], torch.nn.Module):
        result, examples = result
    if not isinstance(result, torch.nn.Module):
        raise TiercutError(
            f"model factory {spec!r} returned {type(result).__name__}, not a torch.nn.Module or (module, example_inputs)"
        )
    return result.eval(), examples


def _forward_parameters(module: Any) -> list[inspect.Parameter]:
    try:
        params = list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):
        return []
    return [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _bind_named(module: Any, named: Mapping[str, Any], spec: str) -> tuple[tuple[Any, ...], tuple[str, ...]]:
    """Positional arguments (forward order) for inputs given by argument name; defaults fill the gaps."""
    params = _forward_parameters(module)
    names = [p.name for p in params]
    unknown = [n for n in named if n not in names]
    if unknown:
        raise TiercutError(
            f"model {spec!r} has no forward argument {unknown[0]!r}; its arguments are {', '.join(names) or 'none'}"
        )
    last = max(names.index(n) for n in named)
    args: list[Any] = []
    for p in params[: last + 1]:
        if p.name in named:
            args.append(named[p.name])
        elif p.default is not inspect.Parameter.empty:
            args.append(p.default)
        else:
            raise TiercutError(f"model {spec!r} needs forward argument {p.name!r}; add --input {p.name}:DTYPE:SHAPE")
    return tuple(args), tuple(p.name for p in params[: last + 1])


def _positional_names(module: Any, count: int) -> list[str | None]:
    names: list[str | None] = [p.name for p in _forward_parameters(module)][:count]
    return names + [None] * (count - len(names))


def _examples_from_factory(module: Any, examples: Any, spec: str) -> tuple[Any, ...]:
    import torch

    if isinstance(examples, torch.Tensor):
        return (examples,)
    if isinstance(examples, Mapping):
        if not all(isinstance(k, str) for k in examples):
            raise TiercutError(f"model factory {spec!r} returned example inputs keyed by non-strings; use argument names")
        return _bind_named(module, examples, spec)[0]
    if isinstance(examples, (tuple, list)):
        return tuple(examples)
    raise TiercutError(
        f"model factory {spec!r} returned example inputs of type {type(examples).__name__}; "
        "return a tensor, a tuple of tensors or a dict of tensors"
    )


def _embedding_vocabulary(module: Any) -> int | None:
    import torch

    sizes = [m.num_embeddings for m in module.modules() if isinstance(m, torch.nn.Embedding)]
    return min(sizes) if sizes else None


def make_examples(module: Any, specs: Sequence[InputSpec], spec: str, seed: int) -> tuple[Any, ...]:
    """Example inputs for ``specs``: bound by name when every spec is named, by position when none is."""
    import torch

    named = [s.name is not None for s in specs]
    if any(named) and not all(named):
        raise TiercutError("name every --input (ids:int64:1x128) or none of them; a mix cannot be bound to arguments")
    generator = torch.Generator().manual_seed(seed)
    high = _embedding_vocabulary(module) or DEFAULT_INT_HIGH
    values = [s.make(generator, high) for s in specs]
    if all(named) and specs:
        names = [s.name for s in specs]
        duplicate = next((n for n in names if names.count(n) > 1), None)
        if duplicate is not None:
            raise TiercutError(f"--input {duplicate!r} is given twice; name each input once")
        return _bind_named(module, dict(zip(names, values)), spec)[0]
    return tuple(values)


def specs_of(module: Any, example_inputs: tuple[Any, ...]) -> tuple[InputSpec, ...]:
    """The input spec of every tensor example input, named by its forward argument."""
    import torch

    names = _positional_names(module, len(example_inputs))
    return tuple(InputSpec.of(x, name) for x, name in zip(example_inputs, names) if isinstance(x, torch.Tensor))


def load_model(
    spec: Any,
    inputs: Sequence[InputSpec | str] | None = None,
    *,
    allow_code: bool = False,
    seed: int = 0,
) -> LoadedModel:
    """The torch model ``spec`` names, with example inputs.

    Args:
        spec: a zoo name, ``package.module:factory``, ``file.py:factory`` or an ``nn.Module``.
        inputs: input specs (``InputSpec`` or their text); default: the factory's
            example inputs, or the zoo model's documented size.
        allow_code: allow loading user code: ``file.py:factory``, ``package.module:factory`` (``--allow-code``).
        seed: seeds the weights of zoo models and factories, and the example inputs.
    """
    import torch

    specs = tuple(InputSpec.parse(s) if isinstance(s, str) else s for s in inputs) if inputs else None
    examples: Any = None
    if isinstance(spec, torch.nn.Module):
        module, label, text = spec.eval(), type(spec).__name__.lower(), type(spec).__name__
    else:
        text = str(spec)
        label = text
        if not has_torch_model(text):
            kind = "an ONNX file" if text.lower().endswith(".onnx") else "a JSON file (layer graph or problem)"
            raise TiercutError(f"{text} is {kind}, not a torch model; this needs a zoo name or a factory (file.py:factory)")
        if text in ZOO:
            module = build_zoo_model(text, seed)
            if specs is None:
                specs = (InputSpec(name=None, dtype="float32", shape=ZOO[text].input_shape()),)
        elif is_file_factory_spec(text):
            module, examples = _call_factory(text, load_file_factory(text, allow_code=allow_code), seed)
        elif is_factory_spec(text):
            module, examples = _call_factory(text, import_factory(text), seed)
        else:
            if text.lower().endswith(".py") or ".py:" in text.lower():
                raise TiercutError(f"model {text!r} names a Python file without a factory; write {text.split(':')[0]}:FUNCTION")
            if ":" in text:
                import_factory(text)  # raises the one-line error saying how a factory spec is written
            raise TiercutError(
                f"unknown model {text!r}; use a zoo name ({', '.join(ZOO)}), package.module:factory, "
                "path/to/file.py:factory, an .onnx file or a graph/problem JSON"
            )
    if specs is not None:
        example_inputs = make_examples(module, specs, text, seed)
    elif examples is not None:
        example_inputs = _examples_from_factory(module, examples, text)
    else:
        raise TiercutError(
            f"model {text!r} needs an input shape; pass --input NAME:DTYPE:SHAPE (e.g. --input x:float32:1x3x224x224), "
            "--input-shape 1,3,224,224, or return (model, example_inputs) from the factory"
        )
    return LoadedModel(
        model=module, example_inputs=example_inputs, input_specs=specs_of(module, example_inputs), label=label, spec=text
    )


__all__ = [
    "DTYPES",
    "TRUSTED_FACTORY_MODULES",
    "InputSpec",
    "LoadedModel",
    "ModelRequest",
    "check_code_allowed",
    "has_torch_model",
    "imports_user_code",
    "is_file_factory_spec",
    "load_file_factory",
    "load_model",
    "make_examples",
    "parse_inputs",
    "specs_of",
]


# --------------------------------------------------------------------- a request for a model's graph
@dataclass(frozen=True)
class ModelRequest:
    """Everything that decides a model's graph: what the CLI's model options say.

    Attributes:
        spec: the model spec (zoo name, factory, ``file.py:factory``, ``.onnx``, graph or problem JSON).
        inputs: input specs (``None``: the factory's or the zoo's own).
        granularity: ``module`` or ``block``.
        leaf_modules: module types kept as one node (``--leaf-module``).
        open_modules: module types traced into (``--open-module``).
        allow_code: ``file.py:factory`` may be loaded (``--allow-code``).
        use_cache: read and write the graph cache (``--no-cache`` turns it off).
        seed: weights and example inputs.
    """

    spec: str
    inputs: tuple[InputSpec, ...] | None = None
    granularity: str = "module"
    leaf_modules: tuple[str, ...] = ()
    open_modules: tuple[str, ...] = ()
    allow_code: bool = False
    use_cache: bool = True
    seed: int = 0

    def load(self) -> LoadedModel:
        return load_model(self.spec, self.inputs, allow_code=self.allow_code, seed=self.seed)
