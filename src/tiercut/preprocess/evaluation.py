"""Compress a model and measure it against the uncompressed one: what ``tiercut compress`` and the benchmark run.

Accuracy comes from real data: with ``digits=True`` the model is first
trained on scikit-learn's bundled handwritten digits (1,797 8x8 images,
``tiercut.exits.train``; fixed seed) -- the reference -- and every model is
scored top-1 on the held-out split. Without it (random-weight zoo models)
the compressed model is compared with the uncompressed one on a seeded
random batch: top-1 agreement and relative output error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tiercut.errors import TiercutError
from tiercut.preprocess.compress import Compressed, CompressionReport, compress, measure_compression


@dataclass(frozen=True)
class CompressionRun:
    """The reference and the compressed model, measured the same way."""

    reference: CompressionReport
    compressed: CompressionReport
    result: Compressed
    reference_model: Any
    data: str

    def to_dict(self) -> dict[str, Any]:
        ref, new = self.reference, self.compressed
        return {
            "method": new.method,
            "stage": self.result.stage.to_dict(),
            "data": self.data,
            "reference": ref.to_dict(),
            "compressed": new.to_dict(),
            "bytes_ratio": new.weight_bytes / ref.weight_bytes if ref.weight_bytes else None,
            "flops_ratio": new.flops / ref.flops if ref.flops else None,
            "stored_bytes_ratio": new.stored_bytes / ref.stored_bytes if ref.stored_bytes and new.stored_bytes else None,
            "nonzero_flops_ratio": new.nonzero_flops / ref.flops if ref.flops and new.nonzero_flops is not None else None,
            "speedup": ref.latency_s / new.latency_s if new.latency_s else None,
        }


def _random_batch(example_inputs: tuple[Any, ...], batch: int, seed: int) -> Any:
    import torch

    if len(example_inputs) != 1 or not isinstance(example_inputs[0], torch.Tensor) or not example_inputs[0].is_floating_point():
        return None
    shape = (batch, *example_inputs[0].shape[1:])
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def run_compression(
    model: Any,
    example_inputs: tuple[Any, ...],
    method: str,
    *,
    digits: bool = False,
    epochs: int = 12,
    finetune_epochs: int = 0,
    seed: int = 0,
    runs: int = 20,
    eval_batch: int = 64,
    **settings: Any,
) -> CompressionRun:
    """Train on digits (optional), compress by ``method`` with ``settings``, fine-tune (optional), measure both."""
    import torch

    if epochs < 1 or finetune_epochs < 0:
        raise TiercutError(f"--epochs {epochs} must be >= 1 and --finetune-epochs {finetune_epochs} >= 0")
    if finetune_epochs and not digits:
        raise TiercutError("--finetune-epochs trains on the digits data; add --digits")
    if finetune_epochs and method in ("int8", "fp16"):
        raise TiercutError(f"{method} is post-training; drop --finetune-epochs")
    model = model.eval()
    labels = None
    calibration: list[tuple[Any, ...]]
    if digits:
        from tiercut.exits.train import DATA_SOURCE, TrainingSettings, load_digits_split, train_jointly

        x = example_inputs[0] if len(example_inputs) == 1 else None
        if x is None or not isinstance(x, torch.Tensor):
            raise TiercutError("--digits needs a model with one image input")
        data = load_digits_split(tuple(x.shape), seed=seed)
        torch.manual_seed(seed)
        train_jointly(model, data, TrainingSettings(epochs=epochs, seed=seed))
        model.eval()
        eval_inputs, labels = data.x_test, data.y_test
        calibration = [(data.x_train[i : i + 64],) for i in range(0, min(len(data.x_train), 256), 64)]
        source = f"{DATA_SOURCE}; trained {epochs} epochs, seed {seed}; top-1 on the held-out 25%"
    else:
        eval_inputs = _random_batch(example_inputs, eval_batch, seed)
        calibration = [(_random_batch(example_inputs, 8, seed + 1 + i),) for i in range(4)] if eval_inputs is not None else [
            example_inputs
        ]
        source = f"random weights: agreement and relative error on {eval_batch} seeded N(0,1) inputs"
    result = compress(model, method, example_inputs, calibration=calibration, **settings)
    if finetune_epochs:
        from tiercut.exits.train import TrainingSettings, train_jointly
        from tiercut.preprocess.magnitude import masks, reapply_masks

        kept = masks(result.model) if settings.get("pruning") == "magnitude" else None
        train_jointly(result.model, data, TrainingSettings(epochs=finetune_epochs, seed=seed))
        if kept is not None:  # magnitude pruning: the pruned weights are zero again after fine-tuning
            reapply_masks(result.model, kept)
        result.model.eval()
    with torch.no_grad():
        reference = measure_compression("reference", model, example_inputs, eval_inputs=eval_inputs,
                                        eval_labels=labels, runs=runs)
        compressed = measure_compression(method, result.model, example_inputs, reference=model,
                                         eval_inputs=eval_inputs, eval_labels=labels, runs=runs)
    return CompressionRun(reference, compressed, result, model, source)


__all__ = ["CompressionRun", "run_compression"]
