"""The options every command that takes a MODEL shares (:class:`ModelOptions`), and the :class:`ModelRequest` they make.

A command declares ``model_options: ModelOptions`` and is decorated with
``@option_group("model_options", ModelOptions)`` (:func:`tiercut.cli.options.option_group`):
typer then shows ``--input-shape``, ``--input``, ``--granularity``,
``--leaf-module``, ``--open-module``, ``--allow-code`` and ``--no-cache``
in its place, the same for every command.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import typer

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
GranularityOpt = Annotated[
    str, typer.Option(help="module: one node per leaf module or function call; block: one per residual/inception block")
]
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


@dataclass(frozen=True)
class ModelOptions:
    """The model options of a command (see the module docstring); :meth:`request` makes its :class:`ModelRequest`."""

    input_shape: ShapeOpt = None
    inputs: InputOpt = None
    granularity: GranularityOpt = "module"
    leaf_module: LeafModuleOpt = None
    open_module: OpenModuleOpt = None
    allow_code: AllowCodeOpt = False
    no_cache: NoCacheOpt = False

    def given(self) -> dict[str, object]:
        """flag -> value of the options that describe one model's inputs and modules, as given."""
        return {"--input-shape": self.input_shape, "--input": self.inputs, "--leaf-module": self.leaf_module,
                "--open-module": self.open_module}

    def request(self, model: str) -> ModelRequest:
        """The :class:`ModelRequest` of MODEL and these options, checked before any model work.

        A MODEL that imports user code (``package.module:factory``, ``file.py:factory``) needs ``--allow-code``.
        """
        from tiercut.graph.model_spec import check_code_allowed
        from tiercut.pipeline.model import model_request

        check_code_allowed(model, self.allow_code)
        return model_request(
            model, inputs=parse_inputs(self.inputs, self.input_shape), granularity=self.granularity,
            leaf_modules=self.leaf_module or (), open_modules=self.open_module or (), allow_code=self.allow_code,
            use_cache=not self.no_cache,
        )


#: the options as a command declares its ``model_options`` parameter (the decorator always passes the given ones)
DEFAULT_MODEL_OPTIONS = ModelOptions()


__all__ = [
    "DEFAULT_MODEL_OPTIONS",
    "MODEL_HELP",
    "AllowCodeOpt",
    "GranularityOpt",
    "InputOpt",
    "LeafModuleOpt",
    "ModelOptions",
    "NoCacheOpt",
    "OpenModuleOpt",
    "ShapeOpt",
]
