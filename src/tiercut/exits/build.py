"""``tiercut exits add``: a model, exit points -> a trained, measured :class:`~tiercut.exits.types.ExitModel`.

Steps (each one of this package's modules): add BranchyNet branches after
the named layers (:mod:`tiercut.exits.branches`), train the same network
without exits as the reference and the branchy one jointly
(:mod:`tiercut.exits.train`), capture the branchy network's layer graph
(:mod:`tiercut.graph`), measure every exit on the held-out split and tune
the thresholds from the accuracy/exit-rate curves
(:mod:`tiercut.exits.confidence`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tiercut.errors import TiercutError
from tiercut.exits.branches import add_exits
from tiercut.exits.confidence import ExitMeasurements, check_rule, tune_thresholds
from tiercut.exits.train import DATA_SOURCE, TrainingSettings, accuracy, exit_logits, load_digits_split, train_jointly
from tiercut.exits.types import FINAL, ExitBranch, ExitModel
from tiercut.graph.types import LayerGraph


def exit_branches(graph: LayerGraph, n_side: int, accuracies: Sequence[float]) -> tuple[ExitBranch, ...]:
    """The exits of a captured :class:`~tiercut.exits.branches.MultiExitNet` graph: branch ``i``'s nodes are
    those of module ``heads.i``; the final exit is the output outside every branch."""
    out = []
    for i in range(n_side):
        prefix = f"heads.{i}."
        nodes = tuple(n.name for n in graph if n.module.startswith(prefix))
        own = set(nodes)
        after = next(src for n in nodes for src in graph[n].inputs if src not in own)
        output = next(n for n in nodes if graph[n].is_output)
        out.append(ExitBranch(f"exit{i + 1}", after, nodes, output, float(accuracies[i])))
    branch_nodes = {n for e in out for n in e.nodes}
    finals = [n.name for n in graph.outputs if n.name not in branch_nodes]
    if len(finals) != 1:
        raise TiercutError("the model with exits has no single final output; exits need a one-output classifier")
    out.append(ExitBranch(FINAL, finals[0], (), finals[0], float(accuracies[-1])))
    return tuple(out)


def rebuild_net(model: str, input_shape: Sequence[int], after: Sequence[str], seed: int = 0) -> Any:
    """The untrained multi-exit network of an exits file (the weights come from its safetensors file)."""
    from tiercut.graph import resolve_model

    source = resolve_model(model, tuple(input_shape), seed)
    n_logits = int(source.module(source.example_inputs[0]).shape[-1])
    return add_exits(source.module, source.example_inputs[0], list(after), n_logits, seed=seed)


def load_net(exit_model: ExitModel, exits_path: str | Path) -> Any:
    """The trained multi-exit network of an exits file: rebuilt from its spec, weights from its safetensors."""
    from safetensors.torch import load_file

    if exit_model.weights_file is None:
        raise TiercutError("this exits file has no weights file; re-create it with 'tiercut exits add'")
    weights = Path(exits_path).parent / exit_model.weights_file
    if not weights.is_file():
        raise TiercutError(f"the exits file's weights {weights} are missing; keep them beside the exits file")
    net = rebuild_net(exit_model.model, exit_model.input_shape, exit_model.training["after"],
                      int(exit_model.training.get("settings", {}).get("seed", 0)))
    state = load_file(str(weights))
    missing = set(net.state_dict()) ^ set(state)
    if missing:
        raise TiercutError(f"weights file {weights} does not fit the model (e.g. {sorted(missing)[0]!r}); re-create it")
    net.load_state_dict(state)
    return net.eval()


def build_exit_model(
    model: str,
    input_shape: Sequence[int],
    after: Sequence[str],
    *,
    rule: str = "entropy",
    settings: TrainingSettings | None = None,
    accuracy_drop: float = 0.01,
    baseline: bool = True,
) -> tuple[ExitModel, Any]:
    """Add exits after ``after`` to ``model``, train on digits, measure, tune; returns the file and the network.

    Thresholds: each side exit lets out the most samples whose accuracy stays
    at least the final exit's minus ``accuracy_drop``
    (:func:`~tiercut.exits.confidence.tune_thresholds`). With ``baseline``
    the same network without exits is trained with the same settings and its
    accuracy recorded (``training.baseline_accuracy``).
    """
    import torch

    from tiercut.graph import capture_model, resolve_model

    check_rule(rule)
    settings = settings or TrainingSettings()
    shape = tuple(int(s) for s in input_shape)
    data = load_digits_split(shape, settings.seed)
    source = resolve_model(model, shape, settings.seed)
    with torch.no_grad():
        out = source.module(source.example_inputs[0])
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[-1] < 10:
        raise TiercutError(f"model {model!r} does not output (batch, >= 10) logits; exits train a 10-class classifier")
    n_logits = int(out.shape[-1])
    reference = copy.deepcopy(source.module)
    net = add_exits(source.module, source.example_inputs[0], list(after), n_logits, seed=settings.seed)
    baseline_accuracy = None
    if baseline:
        train_jointly(reference, data, TrainingSettings(settings.epochs, settings.batch_size, settings.learning_rate,
                                                        settings.seed, None, None))
        baseline_accuracy = accuracy(reference, data.x_test, data.y_test)[0]
    losses = train_jointly(net, data, settings)
    captured = capture_model(net, example_inputs=(data.x_test[:1],))
    graph = captured.graph.with_nodes(captured.graph.nodes, model=f"{model}+exits")
    logits = exit_logits(net, data.x_test)
    accs = [float((lg.argmax(1) == data.y_test).float().mean()) for lg in logits]
    exits = exit_branches(graph, len(net.after), accs)
    measurements = ExitMeasurements.from_logits([e.name for e in exits], logits, data.y_test)
    thresholds = tune_thresholds(measurements, [e.name for e in exits[:-1]], rule,
                                 min_exit_accuracy=max(0.0, accs[-1] - accuracy_drop))
    training = {
        "after": list(net.after),
        "data": DATA_SOURCE,
        "split": f"stratified 75/25, seed {settings.seed}: {len(data.y_train)} train, {len(data.y_test)} held out",
        "loss": "BranchyNet joint loss sum_k w_k * cross_entropy(exit_k)" + (
            "" if settings.trunk_gradient is None or all(g == 1.0 for g in settings.trunk_gradient)
            else f"; side branches' gradient into the trunk scaled by {list(settings.trunk_gradient)}"),
        "settings": settings.to_dict(),
        "losses": [round(v, 6) for v in losses],
        "baseline_accuracy": baseline_accuracy,
        "accuracy_drop": accuracy_drop,
    }
    return ExitModel(model, shape, graph, exits, rule, thresholds, measurements, training), net


def save_exit_model(exit_model: ExitModel, net: Any, path: str | Path) -> ExitModel:
    """Write the exits file and its weights (``<stem>.safetensors`` beside it); returns the model as written."""
    from dataclasses import replace

    from safetensors.torch import save_file

    path = Path(path)
    weights = path.with_suffix(".safetensors")
    tmp = weights.with_name(weights.name + ".tmp")
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp))
    tmp.replace(weights)
    written = replace(exit_model, weights_file=weights.name)
    written.save(path)
    return written


__all__ = ["build_exit_model", "exit_branches", "load_net", "rebuild_net", "save_exit_model"]
