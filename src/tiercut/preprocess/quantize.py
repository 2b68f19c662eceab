"""Reduced precision: int8 through PyTorch's quantization flow, and fp16 weights.

- ``int8`` static (default when the model has convolutions): post-training
  quantization with torch.ao's FX graph mode (``prepare_fx`` inserts
  observers, calibration batches run through, ``convert_fx`` swaps in int8
  kernels; the ``x86`` backend, fbgemm's successor, with per-channel
  weights and per-tensor activations). Jacob et al., "Quantization and
  Training of Neural Networks for Efficient Integer-Arithmetic-Only
  Inference", CVPR 2018 is the scheme.
- ``int8`` dynamic: ``torch.ao.quantization.quantize_dynamic`` on the
  ``Linear`` layers only (int8 weights, activations quantized on the fly);
  for fully connected / transformer models.
- ``fp16``: the weights and the computation in half precision; floating
  inputs are cast to fp16 on the way in and the outputs back to fp32, so
  the model keeps its interface.

The quantized modules keep their weights packed (neither parameters nor
buffers); :func:`tiercut.preprocess.serialize` writes them as int8 tensors
plus scales and zero points.
"""

from __future__ import annotations

from typing import Any

from tiercut.errors import TiercutError

INT8_MODES = ("auto", "static", "dynamic")
BACKEND = "x86"



def half_precision(model: Any) -> Any:
    """``model`` in fp16 behind an fp32 interface (floating inputs cast in, floating outputs cast out)."""
    import torch
    from torch import nn

    class Float16Model(nn.Module):
        """Runs ``inner`` in float16; floating tensors cross the boundary as float32."""

        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *args: Any) -> Any:
            cast = [a.half() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args]
            out = self.inner(*cast)
            if isinstance(out, torch.Tensor):
                return out.float() if out.is_floating_point() else out
            return type(out)(o.float() if isinstance(o, torch.Tensor) and o.is_floating_point() else o for o in out)

    return Float16Model(model.half()).eval()


def has_conv(model: Any) -> bool:
    from torch import nn

    return any(isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) for m in model.modules())


def resolve_mode(model: Any, mode: str) -> str:
    if mode not in INT8_MODES:
        raise TiercutError(f"int8 mode {mode!r} is not known; use one of {', '.join(INT8_MODES)}")
    if mode == "auto":
        return "static" if has_conv(model) else "dynamic"
    return mode


def quantize_int8(model: Any, mode: str, calibration: list[tuple[Any, ...]]) -> Any:
    """An int8 copy of ``model``: ``static`` (FX, calibrated on ``calibration`` batches) or ``dynamic`` (Linear only)."""
    import copy

    import torch
    from torch.ao.quantization import get_default_qconfig_mapping, quantize_dynamic

    if BACKEND not in torch.backends.quantized.supported_engines:
        raise TiercutError(f"this torch build lacks the {BACKEND} quantized engine; int8 needs it")
    torch.backends.quantized.engine = BACKEND
    model = copy.deepcopy(model).float().eval()
    if mode == "dynamic":
        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    if not calibration:
        raise TiercutError("static int8 needs calibration batches")
    try:
        prepared = prepare_fx(model, get_default_qconfig_mapping(BACKEND), calibration[0])
    except Exception as exc:  # FX graph mode needs a symbolically traceable model
        raise TiercutError(
            f"static int8 cannot trace this model ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            "use --int8-mode dynamic (Linear layers only) or fp16"
        ) from None
    with torch.no_grad():
        for batch in calibration:
            prepared(*batch)
    return convert_fx(prepared).eval()


__all__ = ["INT8_MODES", "half_precision", "quantize_int8", "resolve_mode"]
