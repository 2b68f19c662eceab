"""The options every command that takes a MODEL shares, and the :class:`ModelRequest` they make."""

from __future__ import annotations

from typing import Annotated

import typer

from tiercut.errors import TiercutError
from tiercut.graph.model_spec import ModelRequest, parse_inputs

MODEL_HELP = (
    "zoo name (vgg16, resnet50, ...), package.module:factory or path/to/file.py:factory (both with --allow-code), "
    "an .onnx file, or a layer graph / problem JSON"
)
InputOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--input",
        help="a model input [NAME:][DTYPE:]SHAPE[:FILL], e.g. ids:int64:1x128 or mask:bool:1x128 (repeatable)",
    ),
]
ShapeOpt = Annotated[str | None, typer.Option("--input-shape", help="one float32 input of this shape, e.g. 1,3,224,224")]
GranularityOpt = Annotated[str, typer.Option(help="module (one node per layer) or block")]
LeafModuleOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--leaf-module",
        help="keep every module of this type as one node, e.g. nn.TransformerEncoder or MyBlock (repeatable)",
    ),
]
OpenModuleOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--open-module",
        help="trace into modules of this type (torch.nn ones are whole by default), e.g. nn.TransformerEncoderLayer",
    ),
]
NoCacheOpt = Annotated[
    bool, typer.Option("--no-cache", help="trace the model again instead of reading the graph cache ($TIERCUT_CACHE_DIR)")
]
AllowCodeOpt = Annotated[
    bool, typer.Option(
        "--allow-code",
        help="let MODEL be user code: package.module:factory or path/to/file.py:factory (imports and runs it)",
    ),
]


def model_request(
    model: str,
    *,
    input_shape: str | None = None,
    inputs: list[str] | None = None,
    granularity: str = "module",
    leaf_modules: list[str] | None = None,
    open_modules: list[str] | None = None,
    allow_code: bool = False,
    no_cache: bool = False,
) -> ModelRequest:
    """The :class:`ModelRequest` of a command's model options, checked before any model work.

    A MODEL that imports user code (``package.module:factory``, ``file.py:factory``) needs ``--allow-code``.
    """
    from tiercut.graph import GRANULARITIES
    from tiercut.graph.model_spec import check_code_allowed

    check_code_allowed(model, allow_code)
    if granularity not in GRANULARITIES:
        raise TiercutError(f"granularity {granularity!r} is not known; use one of {', '.join(GRANULARITIES)}")
    return ModelRequest(
        spec=model,
        inputs=parse_inputs(inputs, input_shape),
        granularity=granularity,
        leaf_modules=tuple(dict.fromkeys(leaf_modules or ())),
        open_modules=tuple(dict.fromkeys(open_modules or ())),
        allow_code=allow_code,
        use_cache=not no_cache,
    )


__all__ = [
    "MODEL_HELP",
    "AllowCodeOpt",
    "GranularityOpt",
    "InputOpt",
    "LeafModuleOpt",
    "NoCacheOpt",
    "OpenModuleOpt",
    "ShapeOpt",
    "model_request",
]
