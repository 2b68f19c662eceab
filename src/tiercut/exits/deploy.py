"""Early exits on the real runtime: a multi-exit network cut into partitions whose exit heads are checked.

:class:`ExitDeployment` says which exits a deployment runs (the active ones
of a plan, in depth order) and how they decide (the confidence rule and the
thresholds). :meth:`ExitDeployment.split` cuts the captured multi-exit
network along a placement so that the runtime (:mod:`tiercut.runtime`) can
stop a query at an exit:

* the nodes are grouped by *segment* (segment ``k``: what exit ``k``'s
  answer needs beyond the earlier segments, the order
  :class:`~tiercut.exits.runtime.ExitExecutor` runs them in) and by device,
  and each exit head (the branch's nodes) is a partition of its own: an
  ordinary partition program, exported, allow-listed and shape-checked by
  the worker like every other (:mod:`tiercut.runtime.artifact`);
* partitions run segment by segment, so nothing past exit ``k`` runs before
  exit ``k`` is decided;
* the partition producing a side exit's logits carries an
  :class:`~tiercut.runtime.route.ExitCheck` (rule name and threshold: data);
  the device that ran it evaluates the rule and, when it fires, returns the
  answer and forwards nothing (:func:`tiercut.runtime.route.run_route`);
* nodes of inactive exits are cut into a partition no route runs.

The answer of the last active exit is the route's result: a query no side
exit let out answers there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from tiercut.errors import TiercutError
from tiercut.exits.confidence import check_rule

#: the virtual-device suffix of nodes no active exit needs
_UNUSED = "\x1funused"


@dataclass(frozen=True)
class ExitSplit:
    """A multi-exit network cut for the runtime.

    Attributes:
        split: the :class:`~tiercut.graph.split.SplitModel` (real device names, partitions in run order).
        order: the indices of the partitions a query runs, in order (inactive branches left out).
        checks: partition index -> the exit checked after it.
        answer_name: the fx value the last active exit answers with.
        last_exit: the last active exit's name.
    """

    split: Any
    order: tuple[int, ...]
    checks: Mapping[int, Any]
    answer_name: str
    last_exit: str


@dataclass(frozen=True)
class ExitDeployment:
    """The exits a deployment runs and how they decide.

    Attributes:
        exits: every exit of the network (:class:`~tiercut.exits.types.ExitBranch`, depth order, final last);
            the network returns their logits in this order.
        active: the exits queries try, in depth order (the last always answers).
        rule: ``entropy`` or ``max_softmax``.
        thresholds: side exit -> threshold (every active exit but the last).
    """

    exits: tuple[Any, ...]
    active: tuple[str, ...]
    rule: str
    thresholds: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_rule(self.rule)
        names = [e.name for e in self.exits]
        if not self.active:
            raise TiercutError("no active exit; name at least the exit that answers")
        for name in self.active:
            if name not in names:
                raise TiercutError(f"no exit {name!r}; exits are {', '.join(names)}")
        if [names.index(a) for a in self.active] != sorted(names.index(a) for a in self.active):
            raise TiercutError("active exits are not in depth order")
        for name in self.active[:-1]:
            if name not in self.thresholds:
                raise TiercutError(f"exit {name!r} has no threshold; give one or tune them")

    @classmethod
    def of(cls, exit_model: Any, active: Sequence[str] | None = None) -> ExitDeployment:
        """An exits file's exits, rule and thresholds, with ``active`` (default: every exit)."""
        names = tuple(e.name for e in exit_model.exits) if active is None else tuple(active)
        return cls(tuple(exit_model.exits), names, exit_model.rule, dict(exit_model.thresholds))

    @property
    def positions(self) -> dict[str, int]:
        """exit name -> its position among the network's outputs."""
        return {e.name: i for i, e in enumerate(self.exits)}

    def segments(self, graph: Any) -> dict[str, tuple[int, bool]]:
        """layer -> (segment, is it the exit head's) for every layer an active exit needs."""
        by_name = {e.name: e for e in self.exits}
        out: dict[str, tuple[int, bool]] = {}
        for k, name in enumerate(self.active):
            e = by_name[name]
            own = set(e.nodes)
            stack = [e.output]
            while stack:
                n = stack.pop()
                if n not in out:
                    out[n] = (k, n in own)
                    stack.extend(graph[n].inputs)
        return out

    def split(self, captured: Any, placement: Mapping[str, str], source: str) -> ExitSplit:
        """Cut ``captured`` (the multi-exit network) along ``placement`` (see the module docstring).

        Requires every layer an active exit needs on a device (graph inputs default to ``source``).
        Ensures the partitions in ``order`` are a topological order running segment after segment, each
        side exit's check on the partition producing its logits, and (checked by
        :func:`~tiercut.graph.split.split_by_placement`) that all partitions reproduce the network's output.
        """
        from tiercut.graph.split import SplitModel, split_by_placement
        from tiercut.runtime.route import ExitCheck

        graph = captured.graph
        segment = self.segments(graph)
        real: dict[str, str] = {}
        virtual: dict[str, str] = {}
        for node in graph:
            device = placement.get(node.name, source if node.is_input else None)
            if node.name not in segment:
                real[node.name] = device or source
                virtual[node.name] = f"{device or source}{_UNUSED}"
                continue
            if device is None:
                raise TiercutError(f"placement has no device for node {node.name!r}, which exit "
                                   f"{self.active[segment[node.name][0]]!r} needs")
            k, head = segment[node.name]
            real[node.name] = device
            virtual[node.name] = f"{device}\x1f{k}\x1f{'head' if head else 'trunk'}"
        cut = split_by_placement(captured, virtual)

        def rank(p: Any) -> tuple[int, int]:
            if p.device.endswith(_UNUSED):
                return (len(self.active), p.index)
            return (int(p.device.split("\x1f")[1]), p.index)

        ranked = sorted(cut.partitions, key=rank)
        new_index = {p.index: i for i, p in enumerate(ranked)}
        partitions = tuple(replace(p, index=i, device=p.device.split("\x1f")[0]) for i, p in enumerate(ranked))
        split = SplitModel(partitions, cut.input_spec, cut.output_spec, real,
                           {name: new_index[i] for name, i in cut.producers.items()})
        order = tuple(i for i, p in enumerate(ranked) if not p.device.endswith(_UNUSED))

        output_node = next(n for n in reversed(captured.graph_module.graph.nodes) if n.op == "output")
        value_of = {captured.owner[n.name]: n.name for n in output_node.all_input_nodes}
        by_name = {e.name: e for e in self.exits}
        producer = {name: i for i in order for name in partitions[i].output_names}
        checks = {}
        for name in self.active[:-1]:
            value = value_of[by_name[name].output]
            checks[producer[value]] = ExitCheck(name, value, self.rule, float(self.thresholds[name]))
        return ExitSplit(split, order, checks, value_of[by_name[self.active[-1]].output], self.active[-1])





# --------------------------------------------------------------------- a measured run on workers
@dataclass(frozen=True)
class ExitRunReport:
    """An exit plan run on gRPC workers on held-out digits, planned vs measured.

    Only queries that ran on the plan's placement (after its uploads were
    confirmed) count; earlier ones ran on the all-local stage.

    Attributes:
        active: the plan's active exits.
        queries: queries on the plan's placement.
        planned_exit_rates, measured_exit_rates: per active exit.
        standard_errors: sqrt(p (1 - p) / n) of each planned rate over ``queries``.
        planned_accuracy, measured_accuracy: routed accuracy (planned over the exits file's held-out split,
            measured against the labels of the digits queried).
        planned_latency_s, measured_latency_s: expected (cost model) and mean measured latency.
        planned_exit_latency_s, measured_exit_latency_s: per active exit (NaN where no query left there).
        answers_match: queries whose answer equals the exit head's output of the whole network (atol 1e-5).
        fallbacks: queries that finished locally after a worker failed.
        payload_bytes: mean tensor bytes moved between devices per query (every hop).
        planned_payload_bytes: the cost model's expected tensor bytes per query, each transfer counted on every
            hop of its path (the answer goes back along the chain of calls).
    """

    active: tuple[str, ...]
    queries: int
    planned_exit_rates: tuple[float, ...]
    measured_exit_rates: tuple[float, ...]
    standard_errors: tuple[float, ...]
    planned_accuracy: float
    measured_accuracy: float
    planned_latency_s: float
    measured_latency_s: float
    planned_exit_latency_s: tuple[float, ...]
    measured_exit_latency_s: tuple[float, ...]
    answers_match: int
    fallbacks: int
    payload_bytes: float
    planned_payload_bytes: float

    def to_dict(self) -> dict[str, Any]:
        import math

        def clean(v: Any) -> Any:
            if isinstance(v, tuple):
                return [clean(x) for x in v]
            return None if isinstance(v, float) and not math.isfinite(v) else v

        return {k: clean(getattr(self, k)) for k in self.__dataclass_fields__}

    def lines(self) -> list[str]:
        import math

        def ms(v: float) -> str:
            return "-" if not math.isfinite(v) else f"{v * 1e3:.3f} ms"

        out = [f"{self.queries} queries on the plan's placement ({self.fallbacks} fell back to local); answers equal "
               f"to the exit heads' outputs: {self.answers_match}/{self.queries}",
               f"{'exit':8} {'planned rate':>12} {'measured':>9} {'3 s.e.':>7} {'planned lat.':>13} {'measured lat.':>14}"]
        for i, name in enumerate(self.active):
            out.append(f"{name:8} {self.planned_exit_rates[i]:12.3f} {self.measured_exit_rates[i]:9.3f} "
                       f"{3 * self.standard_errors[i]:7.3f} {ms(self.planned_exit_latency_s[i]):>13} "
                       f"{ms(self.measured_exit_latency_s[i]):>14}")
        out.append(f"accuracy planned {self.planned_accuracy:.4f}, measured {self.measured_accuracy:.4f}; latency "
                   f"planned {ms(self.planned_latency_s)} (expected), measured {ms(self.measured_latency_s)} (mean); "
                   f"tensor bytes moved per query planned {self.planned_payload_bytes:.0f}, measured "
                   f"{self.payload_bytes:.0f}")
        return out


def run_exit_plan(
    exit_model: Any,
    net: Any,
    ep: Any,
    plan: Any,
    *,
    addresses: Mapping[str, str] | None = None,
    credentials: Any = None,
    environment: Any = None,
    env_spec: str | None = None,
    queries: int = 100,
    rate_hz: float | None = None,
    bandwidth_scale: float = 1.0,
    max_run_s: float = 600.0,
    log: Any = None,
) -> tuple[ExitRunReport, Any]:
    """Run ``plan`` (an :class:`~tiercut.exits.cost.ExitPlan` of ``ep``) on gRPC workers with held-out digits.

    Workers: ``addresses`` (device -> host:port, with ``credentials``), else local worker processes, one per
    server of the plan (emulating ``env_spec``'s links when given). ``environment`` shapes the client's links.
    Returns the report and the runtime's :class:`~tiercut.runtime.client.RunResult`.
    """
    import math

    import numpy as np

    from tiercut.exits.cost import evaluate_expected
    from tiercut.exits.train import load_digits_split
    from tiercut.graph import capture_model
    from tiercut.runtime.client import RunSettings
    from tiercut.runtime.migration import placement_plan, prepare_migration
    from tiercut.runtime.session import LocalCluster, run_migration

    if queries < 1:
        raise TiercutError(f"--queries {queries} must be >= 1")
    source = ep.problem.source
    data = load_digits_split(exit_model.input_shape, int(exit_model.training.get("settings", {}).get("seed", 0)))
    n_test = len(data.y_test)
    captured = capture_model(net, example_inputs=(data.x_test[:1],))
    placement = {n: d for n, d in plan.placement.items() if not ep.problem.graph[n].is_input}
    migration = prepare_migration(
        captured, placement_plan(placement, source, latency_s=plan.latency_s, algorithm=plan.algorithm),
        exits=ExitDeployment.of(exit_model, plan.active), problem=ep.problem, label=exit_model.model,
    )
    settings = RunSettings(queries=1, queries_after_upload=queries, rate_hz=rate_hz, verify_outputs=True,
                           max_run_s=max_run_s)

    def inputs(i: int) -> tuple[Any, ...]:
        return (data.x_test[i % n_test:i % n_test + 1],)

    if addresses is None:
        with LocalCluster([*migration.servers, *migration.relays], env=env_spec, bandwidth_scale=bandwidth_scale) as cluster:
            result = run_migration(migration, cluster.addresses, credentials=cluster.credentials(), settings=settings,
                                   environment=environment, bandwidth_scale=bandwidth_scale, query_inputs=inputs, log=log)
    else:
        result = run_migration(migration, addresses, credentials=credentials, settings=settings,
                               environment=environment, bandwidth_scale=bandwidth_scale, query_inputs=inputs, log=log)
    final = max(s.index for s in migration.stages if s.devices != [source] or not migration.servers)
    ran = [q for q in result.queries if q.stage == final and not q.fallback] or list(result.queries)
    n = len(ran)
    ev = evaluate_expected(ep, plan.placement, plan.active)
    measured = tuple(sum(q.exit == a for q in ran) / n for a in plan.active)
    right = sum(int(result.outputs[q.index].argmax(1).item() == int(data.y_test[q.index % n_test])) for q in ran)
    per_exit = []
    for a in plan.active:
        lat = [q.latency_s for q in ran if q.exit == a]
        per_exit.append(float(np.mean(lat)) if lat else math.nan)
    report = ExitRunReport(
        active=tuple(plan.active),
        queries=n,
        planned_exit_rates=tuple(ev.exit_rates),
        measured_exit_rates=measured,
        standard_errors=tuple(math.sqrt(p * (1 - p) / n) for p in ev.exit_rates),
        planned_accuracy=ev.accuracy,
        measured_accuracy=right / n,
        planned_latency_s=ev.latency_s,
        measured_latency_s=float(np.mean([q.latency_s for q in ran])),
        planned_exit_latency_s=tuple(q.latency_s for q in ev.queries),
        measured_exit_latency_s=tuple(per_exit),
        answers_match=sum(bool(q.output_matches) for q in ran),
        fallbacks=result.fallbacks,
        payload_bytes=float(np.mean([sum(b for _, _, b in q.transfers) for q in ran])),
        planned_payload_bytes=sum(p * sum(t.out_bytes * max(1, len(t.path) - 1) for t in q.transfers)
                                  for p, q in zip(ev.exit_rates, ev.queries, strict=True)),
    )
    return report, result
__all__ = ["ExitDeployment", "ExitRunReport", "ExitSplit", "run_exit_plan"]
