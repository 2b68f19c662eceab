"""Turn what a user names into a model and an example input.

A model spec is one of:

- a torchvision model name of the zoo (``resnet50``), built with random
  weights in the same configuration as torchvision's published weights (so
  parameter counts match the documentation) and evaluated at the documented
  input size;
- ``package.module:factory`` or ``path/to/file.py:factory``: a callable
  returning a ``torch.nn.Module`` or ``(module, example_inputs)`` (the user's
  own code, never anything received; a file is loaded only with
  ``--allow-code``; see :mod:`tiercut.graph.model_spec`, which loads them);
- a path to an ``.onnx`` file (handled by :mod:`tiercut.graph.onnx_import`);
- a path to a layer graph JSON (``tiercut graph --json``), read as data.

A model named in a *data file* (an environment's or a scenario's
``model:``) goes through :func:`data_model_spec`: zoo names and ``.onnx`` /
graph JSON paths only, unless the command line says ``--allow-code``; a data
file never makes tiercut import or call code by itself.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tiercut.errors import TiercutError


@dataclass(frozen=True)
class ZooEntry:
    """A torchvision model of the zoo and its documented figures.

    Attributes:
        name: torchvision builder name.
        weights_enum: name of torchvision's weights enum whose ``meta`` holds
            the documented ``num_params`` and ``_ops`` (GFLOPS, multiply-adds).
        input_size: documented evaluation resolution (square).
        kwargs: builder keywords that reproduce the weights' configuration.
        is_chain: the model is a plain chain of layers (no branches).
    """

    name: str
    weights_enum: str
    input_size: int
    kwargs: tuple[tuple[str, Any], ...] = ()
    is_chain: bool = False

    def input_shape(self, batch: int = 1) -> tuple[int, ...]:
        return (batch, 3, self.input_size, self.input_size)

    def documented(self) -> dict[str, float]:
        """``num_params`` and ``gflops`` as torchvision documents them."""
        import torchvision.models as tvm

        meta = next(iter(getattr(tvm, self.weights_enum))).meta
        return {"num_params": int(meta["num_params"]), "gflops": float(meta["_ops"])}


ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in (
        ZooEntry("alexnet", "AlexNet_Weights", 224, is_chain=True),
        ZooEntry("vgg16", "VGG16_Weights", 224, is_chain=True),
        ZooEntry("resnet18", "ResNet18_Weights", 224),
        ZooEntry("resnet50", "ResNet50_Weights", 224),
        # torchvision's GoogLeNet weights drop the auxiliary heads; Inception-v3's keep
        # them (they are counted in num_params but never run in inference).
        ZooEntry("googlenet", "GoogLeNet_Weights", 224, (("aux_logits", False), ("init_weights", True))),
        ZooEntry("mobilenet_v2", "MobileNet_V2_Weights", 224),
        ZooEntry("inception_v3", "Inception_V3_Weights", 299, (("aux_logits", True), ("init_weights", True))),
        ZooEntry("densenet121", "DenseNet121_Weights", 224),
        ZooEntry("efficientnet_b0", "EfficientNet_B0_Weights", 224),
        ZooEntry("vit_b_16", "ViT_B_16_Weights", 224),
    )
}


#: bounds on an input shape a user gives (a model input is made of it before any other work)
MAX_INPUT_DIMS = 8
MAX_INPUT_ELEMENTS = 2**28  # 1 GiB of float32


def check_input_shape(shape: tuple[int, ...], shown: str) -> tuple[int, ...]:
    """``shape`` if an input of that shape can be made: at most 8 sizes >= 1, at most 2**28 elements."""
    if not shape:
        raise TiercutError(f"input shape {shown} is empty; write e.g. 1,3,224,224")
    if len(shape) > MAX_INPUT_DIMS:
        raise TiercutError(f"input shape {shown} has {len(shape)} dimensions; at most {MAX_INPUT_DIMS} are supported")
    if any(not isinstance(s, int) or isinstance(s, bool) or s <= 0 for s in shape):
        raise TiercutError(f"input shape {shown} has a non-positive size; every dimension must be >= 1")
    elements = math.prod(shape)
    if elements > MAX_INPUT_ELEMENTS:
        raise TiercutError(
            f"input shape {shown} has {elements:.3g} elements, more than the {MAX_INPUT_ELEMENTS:,} an input may have "
            f"({MAX_INPUT_ELEMENTS * 4 / 2**30:g} GiB of float32); use a smaller shape"
        )
    return shape


def parse_shape(text: str) -> tuple[int, ...]:
    """``"1,3,224,224"`` -> ``(1, 3, 224, 224)``, refusing shapes too large to allocate."""
    shown = f"{text[:40]!r}{'...' if len(text) > 40 else ''}"
    if not text.strip():
        raise TiercutError("input shape is empty; write e.g. 1,3,224,224")
    parts = text.replace("x", ",").split(",")
    if len(parts) > MAX_INPUT_DIMS:
        raise TiercutError(f"input shape {shown} has {len(parts)} dimensions; at most {MAX_INPUT_DIMS} are supported")
    try:
        if any(len(part.strip()) > 12 for part in parts):
            raise ValueError("a size of more than 12 digits")
        shape = tuple(int(part) for part in parts)
    except ValueError:
        raise TiercutError(
            f"input shape {shown} is not a comma-separated list of integers below 10**12; write e.g. 1,3,224,224"
        ) from None
    return check_input_shape(shape, shown)


def build_zoo_model(name: str, seed: int = 0) -> Any:
    """A torchvision zoo model with random weights, in eval mode."""
    import torch
    import torchvision.models as tvm

    entry = ZOO[name]
    torch.manual_seed(seed)
    model = getattr(tvm, name)(weights=None, **dict(entry.kwargs))
    return model.eval()


def is_factory_spec(spec: str) -> bool:
    """Whether ``spec`` is written ``package.module:factory`` (dotted identifiers on both sides)."""
    module_name, sep, attr = spec.partition(":")
    return bool(sep) and all(
        part.isidentifier() for name in (module_name, attr) for part in (name.split(".") if name else [""])
    )


def is_graph_json_path(spec: Any) -> bool:
    return isinstance(spec, (str, Path)) and str(spec).lower().endswith(".json")


def is_file_factory(spec: str) -> bool:
    """Whether ``spec`` is written ``path/to/file.py:factory``."""
    path, sep, attr = spec.rpartition(":")
    return bool(sep) and path.lower().endswith(".py") and all(p.isidentifier() for p in attr.split("."))


#: modules whose factories are this project's or torchvision's own code: naming them runs no user code
TRUSTED_FACTORY_MODULES = ("tiercut", "torchvision.models")


def imports_user_code(spec: Any) -> bool:
    """Whether ``spec`` loads user code: ``file.py:factory``, or ``package.module:factory`` outside
    tiercut's and torchvision's model modules (:data:`TRUSTED_FACTORY_MODULES`)."""
    text = str(spec)
    if is_file_factory(text):
        return True
    if not is_factory_spec(text):
        return False  # a zoo name, an .onnx or JSON file, or nothing loadable
    module_name = text.partition(":")[0]
    return not any(module_name == m or module_name.startswith(m + ".") for m in TRUSTED_FACTORY_MODULES)


def data_model_spec(spec: str, *, where: str, allow_code: bool = False, base_dir: Path | None = None) -> str:
    """The model a data file names, as :func:`tiercut.graph.extract_graph` takes it.

    A zoo name, or a path to an ``.onnx`` file or a layer graph JSON
    (relative to ``base_dir``). A ``package.module:factory`` spec imports and
    calls code, so it is accepted only with ``allow_code`` (``--allow-code``
    on the command line); anything else is a one-line error naming ``where``.
    """
    if spec in ZOO:
        return spec
    if spec.lower().endswith((".onnx", ".json")):
        path = Path(spec)
        return str(path if path.is_absolute() or base_dir is None else base_dir / path)
    if is_factory_spec(spec) and not imports_user_code(spec):
        return spec  # tiercut's or torchvision's own factories run no user code
    if is_factory_spec(spec) or is_file_factory(spec):
        if allow_code:
            path, sep, attr = spec.rpartition(":")
            if is_file_factory(spec) and base_dir is not None and not Path(path).is_absolute():
                return f"{base_dir / path}{sep}{attr}"
            return spec
        raise TiercutError(
            f"{where}: model {spec!r} is Python code (package.module:factory), which a data file may name only with "
            "--allow-code on the command line; or use a zoo name, an .onnx file or a graph JSON file"
        )
    raise TiercutError(
        f"{where}: model {spec!r} is not a zoo model ({', '.join(ZOO)}), an .onnx file or a graph JSON file"
    )


def import_factory(spec: str) -> Callable[[], Any]:
    if not is_factory_spec(spec):
        raise TiercutError(f"model {spec!r} is not package.module:factory (dotted names on both sides of one ':')")
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise TiercutError(f"cannot import {module_name!r} for model {spec!r} ({exc}); check PYTHONPATH") from None
    except (Exception, SystemExit) as exc:  # the user's module failed while importing: say so in one line
        raise TiercutError(f"importing {module_name!r} for model {spec!r} raised {type(exc).__name__}: {exc}") from None
    factory = module
    for part in attr.split("."):
        factory = getattr(factory, part, None)
        if factory is None:
            raise TiercutError(f"module {module_name!r} has no {attr!r}; model specs are package.module:factory")
    if not callable(factory):
        raise TiercutError(f"{spec!r} is not callable; it must name a function or class returning an nn.Module")
    return factory
