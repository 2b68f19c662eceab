"""``tiercut route train|eval|run``: input-aware routing (AppealNet) on scikit-learn's digits.

``route train`` trains the device's two-head model and the cloud's digits CNN
and writes a router file (safetensors); ``route eval`` measures accuracy vs
the fraction of held-out inputs sent to the cloud as the threshold sweeps,
with the cost model's expected latency and energy in an environment
(``--env``); ``route run`` routes held-out inputs one by one at a threshold,
the big model on a local gRPC worker, and checks every answer against the
model that gave it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from tiercut.cli.checks import check_output_path
from tiercut.cli.options import JsonOpt, OutJsonOpt, emit_json
from tiercut.errors import TiercutError

RouterArg = Annotated[Path, typer.Argument(help="router file written by 'tiercut route train' (.safetensors)")]


def _thresholds(text: str | None) -> list[float] | None:
    from tiercut.appeal.curve import check_threshold

    if text is None:
        return None
    values = []
    for part in text.split(","):
        try:
            values.append(check_threshold(float(part)))
        except ValueError:
            raise TiercutError(f"--thresholds {text!r}: {part.strip()!r} is not a number; write e.g. 0,0.2,0.5") from None
    return values


def _problems(router: Any, env_name: str, source: str | None, cloud: str) -> tuple[Any, Any, str]:
    """The small and the big model's problems in ``env_name`` (the same source), and that source."""
    from tiercut.appeal.models import INPUT_SHAPE
    from tiercut.env import load_environment
    from tiercut.pipeline.problem import problem

    env = load_environment(env_name)
    names = [d.name for d in env.devices]
    if cloud not in names:
        raise TiercutError(f"--cloud {cloud!r} is not a device of environment {env.name!r}; devices are {', '.join(names)}")
    src = source or env.default_source()
    if src not in names:
        raise TiercutError(f"--source {src!r} is not a device of environment {env.name!r}; devices are {', '.join(names)}")
    if src == cloud:
        raise TiercutError(f"--cloud {cloud!r} is the source device; name the device the big model runs on")
    small = problem(router.small, env, source=src, input_shape=INPUT_SHAPE, memory=False)
    big = problem(router.big, env, source=src, input_shape=INPUT_SHAPE, memory=False)
    return small, big, src


def route_train(
    out: Annotated[Path, typer.Option("--out", "-o", help="router file to write (.safetensors)")],
    seed: Annotated[int, typer.Option(help="seed of the split, the weights and the batch order")] = 0,
    epochs_big: Annotated[int, typer.Option(help="epochs of the big model (digits CNN)")] = 12,
    epochs_small: Annotated[int, typer.Option(help="epochs of the small model's features and answer head")] = 20,
    epochs_predictor: Annotated[int, typer.Option(help="epochs of the predictor head")] = 30,
) -> None:
    """Train the small two-head model and the big model on digits (AppealNet) and write the router file."""
    from tiercut.appeal.train import RouterSettings, save_router, train_router

    if out.suffix != ".safetensors":
        raise TiercutError(f"--out {str(out)!r} must end in .safetensors (the router file is a safetensors file)")
    check_output_path(out, "--out")
    settings = RouterSettings(epochs_big=epochs_big, epochs_small=epochs_small, epochs_predictor=epochs_predictor, seed=seed)
    router = train_router(settings)
    save_router(router, out)
    typer.echo(f"wrote {out}: small model accuracy {router.accuracy_small:.3f}, big model {router.accuracy_big:.3f} "
               "(held-out digits)")


def route_eval(
    router_file: RouterArg,
    thresholds: Annotated[
        str | None, typer.Option(help="comma-separated thresholds in 0..1 (default 0, 0.05, ..., 1)")
    ] = None,
    score: Annotated[str, typer.Option(help="appeal score: predictor (AppealNet) or max_softmax (baseline)")] = "predictor",
    env: Annotated[str | None, typer.Option("--env", help="environment preset or file: adds the expected latency/energy")] = None,
    cloud: Annotated[str, typer.Option(help="device of --env the big model runs on")] = "cloud",
    source: Annotated[
        str | None, typer.Option(help="device of --env the small model runs on (default: its first user's)")
    ] = None,
    as_json: JsonOpt = False,
    out: OutJsonOpt = None,
) -> None:
    """Accuracy vs fraction of held-out inputs sent to the cloud as the threshold sweeps."""
    from tiercut.appeal.curve import router_answers, routing_curve
    from tiercut.appeal.train import load_router
    from tiercut.cost.input_routing import ROUTING_SCHEMA_VERSION, expected_routing

    ts = _thresholds(thresholds)
    router = load_router(router_file)
    if score not in ("predictor", "max_softmax"):
        raise TiercutError(f"--score {score!r} is not known; use predictor or max_softmax")
    data = router.data()
    curve = routing_curve(router_answers(router, data.x_test, data.y_test, score), ts)
    problems = _problems(router, env, source, cloud) if env is not None else None
    rows = []
    for point in curve:
        row: dict[str, Any] = point.to_dict()
        if problems is not None:
            row["expected"] = expected_routing(problems[0], problems[1], cloud, point.fraction_offloaded).to_dict()
        rows.append(row)
    if as_json or out is not None:
        payload: dict[str, Any] = {
            "schema_version": ROUTING_SCHEMA_VERSION,
            "score": score,
            "accuracy_small": router.accuracy_small,
            "accuracy_big": router.accuracy_big,
            "held_out": len(data.y_test),
            "curve": rows,
        }
        if problems is not None:
            payload |= {"small_problem": problems[0].to_dict(), "big_problem": problems[1].to_dict(), "cloud": cloud}
        emit_json(payload, out)
        return
    typer.echo(f"held-out digits: {len(data.y_test)}; small model alone {router.accuracy_small:.3f}, "
               f"big model alone {router.accuracy_big:.3f}; score {score}")
    head = f"{'threshold':>9} {'offloaded':>9} {'accuracy':>8}"
    if problems is not None:
        head += f" {'E[latency]':>11} {'E[src energy]':>13}"
    typer.echo(head)
    for row in rows:
        line = f"{row['threshold']:>9.2f} {row['fraction_offloaded']:>9.3f} {row['accuracy']:>8.3f}"
        if "expected" in row:
            e = row["expected"]
            lat = "inf" if e["latency_s"] is None else f"{e['latency_s'] * 1e3:.2f} ms"
            energy = "inf" if e["energy_source_j"] is None else f"{e['energy_source_j'] * 1e3:.2f} mJ"
            line += f" {lat:>11} {energy:>13}"
        typer.echo(line)


def route_run(
    router_file: RouterArg,
    threshold: Annotated[float, typer.Option(help="appeal an input when its predictor score exceeds this (0..1)")] = 0.3,
    queries: Annotated[int, typer.Option(help="held-out inputs to route, one by one")] = 50,
    cloud: Annotated[str, typer.Option(help="name of the cloud worker")] = "cloud",
    env: Annotated[str | None, typer.Option("--env", help="environment whose source-cloud links the worker emulates")] = None,
    source: Annotated[str | None, typer.Option(help="the device of --env the router runs on (default: its first user's)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Route held-out digits one by one: the small model here, appealed inputs to the big model on a local worker."""
    import statistics

    import torch

    from tiercut.appeal.curve import check_threshold
    from tiercut.appeal.runtime import run_routed
    from tiercut.appeal.train import load_router
    from tiercut.runtime.session import LocalCluster

    check_threshold(threshold)
    router = load_router(router_file)
    data = router.data()
    if not 1 <= queries <= len(data.y_test):
        raise TiercutError(f"--queries {queries} must be 1..{len(data.y_test)} (the held-out digits)")
    environment = None
    src = "device"
    if env is not None:
        from tiercut.env import load_environment

        environment = load_environment(env)
        names = [d.name for d in environment.devices]
        if cloud not in names:
            raise TiercutError(f"--cloud {cloud!r} is not a device of environment {environment.name!r}; "
                               f"devices are {', '.join(names)}")
        src = source or environment.default_source()
    x, y = data.x_test[:queries], data.y_test[:queries]
    with LocalCluster([cloud], env=env) as cluster:
        run = run_routed(router, x, threshold, cluster.addresses, credentials=cluster.credentials(), cloud=cloud,
                         source=src, environment=environment)
    with torch.no_grad():
        small, big = router.small(x)[0], router.big(x)
    matches = sum(
        bool(torch.allclose(q.answer, (big if q.appealed else small)[q.index], atol=1e-5)) for q in run.queries
    )
    local = [q.latency_s for q in run.queries if not q.appealed]
    remote = [q.latency_s for q in run.queries if q.appealed]
    summary = {
        "threshold": threshold,
        "queries": len(run.queries),
        "fraction_offloaded": run.fraction_offloaded,
        "accuracy": run.accuracy(y.tolist()),
        "answers_equal_chosen_model": matches,
        "median_latency_local_s": statistics.median(local) if local else None,
        "median_latency_appealed_s": statistics.median(remote) if remote else None,
    }
    if as_json:
        emit_json(summary, None)
        return
    typer.echo(f"routed {len(run.queries)} held-out digits at threshold {threshold}: {run.fraction_offloaded:.1%} to "
               f"{cloud}, accuracy {summary['accuracy']:.3f}; answers equal to the chosen model's: {matches}/{len(run.queries)}")
    if local:
        typer.echo(f"median latency on the device: {summary['median_latency_local_s'] * 1e3:.2f} ms")
    if remote:
        typer.echo(f"median latency when appealed: {summary['median_latency_appealed_s'] * 1e3:.2f} ms")
