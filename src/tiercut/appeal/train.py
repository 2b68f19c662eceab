"""Training the small two-head model and the big model on scikit-learn's digits, and the router file.

AppealNet (Li et al., DAC 2021, arXiv:2105.04104) trains its two-head network
so that the predictor head flags the inputs the approximator would get wrong,
trading accuracy against the cost of appealing to the cloud. The paper's
exact loss was not reachable here; tiercut's formulation, in two stages on
the training split (scikit-learn's bundled ``load_digits``, split 75/25
stratified by :func:`tiercut.exits.train.load_digits_split`):

1. the big model (the digits CNN) and the small model's features +
   approximator head are trained by cross-entropy
   (:func:`tiercut.exits.train.train_jointly`, Adam, seeded);
2. the predictor head alone, on the frozen features and the approximator's
   softmax, learns to flag the
   inputs worth appealing: those the small model gets wrong and the big
   model gets right, by binary cross-entropy on the training split::

       L = mean_x BCE(q(x), [small wrong on x and big right on x])

   with ``q = sigmoid(predictor logit)``, the estimated probability that
   appealing ``x`` turns a wrong answer into a right one. An input is
   appealed when ``q(x) > threshold``; sweeping the threshold trades
   accuracy against the fraction sent to the cloud (:mod:`tiercut.appeal.curve`).
   (A first attempt, the expected routed loss plus a price per appeal,
   saturated ``q`` at 1 on digits, the big model's training loss being near
   0 everywhere, and ranked the inputs no better than chance: discarded.)

A router file is one safetensors file (no pickle: tensors and a string
metadata header): the two models' weights under ``small.`` / ``big.`` and a
JSON ``router`` entry with the settings, the data source and the held-out
accuracies. Reading it builds the two architectures from tiercut's own
factories and loads the tensors with strict names and shapes; it imports and
calls nothing named in the file.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tiercut.errors import TiercutError
from tiercut.exits.train import DATA_SOURCE, DigitsData, TrainingSettings, load_digits_split, train_jointly

#: the router file's format name and version (its metadata header)
ROUTER_FORMAT = "tiercut-router"
ROUTER_VERSION = 1
#: the largest router file read (the models are a few hundred kB)
MAX_ROUTER_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class RouterSettings:
    """How the two models and the predictor are trained (all seeded).

    Attributes:
        epochs_big: epochs of the big model (the digits CNN).
        epochs_small: epochs of the small model's features and approximator head.
        epochs_predictor: epochs of the predictor head.
        hidden: width of the small model's feature layer.
        seed: seeds the split, the weights and the batch order.
    """

    epochs_big: int = 12
    epochs_small: int = 20
    epochs_predictor: int = 30
    hidden: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs_big", "epochs_small", "epochs_predictor", "hidden"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise TiercutError(f"router setting {name} is {value!r}; it must be a whole number >= 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(eq=False)
class Router:
    """A trained router: the device's two-head model, the cloud's big model and how they were made.

    Attributes:
        small: the two-head network (``(logits, appeal_logit)``), eval mode.
        big: the big model (logits), eval mode.
        settings: how they were trained.
        accuracy_small, accuracy_big: accuracy of each model alone on the held-out split.
    """

    small: Any
    big: Any
    settings: RouterSettings
    accuracy_small: float
    accuracy_big: float

    def data(self) -> DigitsData:
        """The digits split the router was trained on (its held-out part is the test split)."""
        from tiercut.appeal.models import INPUT_SHAPE

        return load_digits_split(INPUT_SHAPE, self.settings.seed)


def train_predictor(small: Any, big: Any, data: DigitsData, settings: RouterSettings) -> list[float]:
    """Stage 2: the predictor head alone on the frozen features (the loss of the module docstring); loss per epoch."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        small.eval()
        big.eval()
        with torch.no_grad():
            f = small.features(data.x_train)
            logits = small.approximator(f)
            features = torch.cat([f, torch.softmax(logits, dim=1)], dim=1)  # what the predictor head reads
            small_wrong = logits.argmax(1) != data.y_train
            big_right = big(data.x_train).argmax(1) == data.y_train
            target = (small_wrong & big_right).float()
        torch.manual_seed(settings.seed + 1)
        for layer in small.predictor:
            if hasattr(layer, "reset_parameters"):
                layer.reset_parameters()
        generator = torch.Generator().manual_seed(settings.seed + 1)
        optimizer = torch.optim.Adam(small.predictor.parameters(), lr=5e-3)
        n = len(data.y_train)
        losses = []
        small.predictor.train()
        for _ in range(settings.epochs_predictor):
            order = torch.randperm(n, generator=generator)
            total = 0.0
            for start in range(0, n, 64):
                idx = order[start : start + 64]
                optimizer.zero_grad()
                logit = small.predictor(features[idx]).squeeze(1)
                loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, target[idx])
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(idx)
            losses.append(total / n)
        small.eval()
    finally:
        torch.set_num_threads(threads)
    return losses


def train_router(settings: RouterSettings | None = None) -> Router:
    """Train the big model, the small model and its predictor head on digits (seconds on one CPU core)."""
    import torch

    from tiercut.appeal.models import INPUT_SHAPE, appeal_big, appeal_small

    settings = settings or RouterSettings()
    data = load_digits_split(INPUT_SHAPE, settings.seed)
    torch.manual_seed(settings.seed)
    big = appeal_big()
    train_jointly(big, data, TrainingSettings(epochs=settings.epochs_big, seed=settings.seed))
    torch.manual_seed(settings.seed)
    small = appeal_small(settings.hidden)
    answer = torch.nn.Sequential(small.features, small.approximator)  # shares the small model's parameters
    train_jointly(answer, data, TrainingSettings(epochs=settings.epochs_small, seed=settings.seed))
    train_predictor(small, big, data, settings)
    small.eval()
    big.eval()
    with torch.no_grad():
        acc_small = float((small(data.x_test)[0].argmax(1) == data.y_test).float().mean())
        acc_big = float((big(data.x_test).argmax(1) == data.y_test).float().mean())
    return Router(small, big, settings, acc_small, acc_big)


def save_router(router: Router, path: str | Path) -> Path:
    """Write ``router`` as one safetensors file (weights + a JSON metadata header); returns the path."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise TiercutError(f"router file {str(path)!r} must end in .safetensors (it is a safetensors file)")
    tensors = {f"small.{k}": v.detach().contiguous() for k, v in router.small.state_dict().items()}
    tensors.update({f"big.{k}": v.detach().contiguous() for k, v in router.big.state_dict().items()})
    meta = {
        "format": ROUTER_FORMAT,
        "schema_version": ROUTER_VERSION,
        "settings": router.settings.to_dict(),
        "data_source": DATA_SOURCE,
        "accuracy_small": router.accuracy_small,
        "accuracy_big": router.accuracy_big,
        "small": "tiercut.appeal.models:appeal_small",
        "big": "tiercut.appeal.models:appeal_big",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    save_file(tensors, str(tmp), metadata={"router": json.dumps(meta)})
    tmp.replace(path)  # nothing half-written under the final name
    return path


def load_router(path: str | Path) -> Router:
    """Read a router file written by :func:`save_router` (strict names and shapes; one-line errors)."""
    from safetensors import safe_open

    from tiercut.appeal.models import appeal_big, appeal_small

    path = Path(path)
    if not path.is_file():
        raise TiercutError(f"router file {str(path)!r} does not exist; write one with 'tiercut route train --out FILE'")
    if path.stat().st_size > MAX_ROUTER_BYTES:
        raise TiercutError(f"router file {str(path)!r} is larger than {MAX_ROUTER_BYTES} bytes; it is not a tiercut router")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta_text = (f.metadata() or {}).get("router")
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no iterator)
    except Exception as exc:  # safetensors raises its own error types for a corrupt header
        raise TiercutError(f"router file {str(path)!r} is not a readable safetensors file ({type(exc).__name__}); "
                           "write it again with 'tiercut route train'") from None
    try:
        meta = json.loads(meta_text) if meta_text else None
    except ValueError:
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != ROUTER_FORMAT:
        raise TiercutError(f"router file {str(path)!r} has no tiercut router header; write it with 'tiercut route train'")
    if meta.get("schema_version") != ROUTER_VERSION:
        raise TiercutError(f"router file {str(path)!r} has schema_version {meta.get('schema_version')!r}; "
                           f"this tiercut reads {ROUTER_VERSION}")
    try:
        settings = RouterSettings(**meta["settings"])
        small, big = appeal_small(settings.hidden), appeal_big()
        small.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("small.")}, strict=True)
        big.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("big.")}, strict=True)
        acc_small, acc_big = float(meta["accuracy_small"]), float(meta["accuracy_big"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TiercutError(f"router file {str(path)!r} does not match tiercut's router models ({first[:160]}); "
                           "write it again with 'tiercut route train'") from None
    small.eval()
    big.eval()
    return Router(small, big, settings, acc_small, acc_big)


__all__ = ["MAX_ROUTER_BYTES", "ROUTER_FORMAT", "ROUTER_VERSION", "Router", "RouterSettings", "load_router",
           "save_router", "train_predictor", "train_router"]
