"""From an upload plan to what the runtime sends and runs.

The upload planners (:mod:`tiercut.upload`) decide, for one client and each
server, the partitions P3 in upload order (node sets) and the placement
queries use after each arrival (the ``upload_plan`` contract of docs/contracts.md:
``partitions[].nodes``, ``stages[].placement``, ``stages[].arrived``). This
module turns that into:

* per server, the :class:`UploadItem` sequence: upload ``k`` is a
  :class:`~tiercut.runtime.artifact.PartitionBundle` carrying the weights of
  P3_k's nodes and the programs of the stages that become runnable with it
  (each stage's pieces on that server, exported once and shared by the
  stages that reuse them), named ``<model>.<plan>.<server>.<k>@<content
  digest>``: two users of one worker never clash, even with the same model
  and plan but other weights;
* per stage, a :class:`RuntimeStage`: its split (runnable partitions, for the
  client's own steps and for local fallback), its route template and what
  it needs confirmed (``requires``: server -> number of uploads).

A weight a program needs that no earlier upload to that server carried
(a constant the exporter created, a tensor shared with a node uploaded
later) rides with the upload that makes the program runnable and is
counted in :attr:`UploadItem.extra_weight_bytes`.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from tiercut.errors import TiercutError
from tiercut.problem import Problem
from tiercut.runtime.artifact import DEFAULT_FORMAT, BuiltProgram, PartitionBundle, build_program, sha256_hex, tensor_digest
from tiercut.runtime.route import Route, Step
from tiercut.upload.types import Stage, UploadMetrics, UploadPartition, UploadPlan, UserUploadPlan

Progress = Callable[[str], None]
#: characters a partition id may not hold (see :func:`~tiercut.runtime.artifact.check_partition_id`)
_LABEL_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")


@dataclass(eq=False)
class UploadItem:
    """One upload to one server.

    Attributes:
        server: the server it goes to.
        position: 1-based position in that server's upload order.
        partition_id: the name the worker stores it under.
        nodes: the P3's layer-graph nodes.
        bundle: the weights and programs it carries.
        planned_param_bytes, planned_upload_s, planned_arrives_s: the plan's figures.
        extra_weight_bytes: weights it carries beyond its nodes' parameters.
    """

    server: str
    position: int
    partition_id: str
    nodes: tuple[str, ...]
    bundle: PartitionBundle
    planned_param_bytes: int = 0
    planned_upload_s: float = 0.0
    planned_arrives_s: float = 0.0
    extra_weight_bytes: int = 0
    _data: bytes | None = field(default=None, init=False, repr=False)
    _sha256: str = field(default="", init=False, repr=False)

    def data(self) -> tuple[bytes, str]:
        """The bundle's bytes and their SHA-256 (encoded once)."""
        if self._data is None:
            self._data = self.bundle.to_bytes()
            self._sha256 = sha256_hex(self._data)
        return self._data, self._sha256

    def to_dict(self) -> dict[str, Any]:
        data, sha = self.data()
        return {
            "server": self.server,
            "position": self.position,
            "partition_id": self.partition_id,
            "nodes": list(self.nodes),
            "bytes": len(data),
            "sha256": sha,
            "weight_bytes": self.bundle.weight_bytes,
            "extra_weight_bytes": self.extra_weight_bytes,
            "programs": [p.manifest.program_id for p in self.bundle.programs],
            "planned_param_bytes": self.planned_param_bytes,
            "planned_upload_s": self.planned_upload_s,
            "planned_arrives_s": self.planned_arrives_s,
        }


@dataclass(frozen=True, eq=False)
class RuntimeStage:
    """One stage of the plan as the runtime runs it.

    Attributes:
        index: position in the plan's stage list.
        from_s: when the plan expects it to start.
        latency_s: the cost model's latency of its placement.
        placement: node -> device.
        requires: server -> uploads that must be confirmed before it may be used.
        split: the runnable partitions of the placement.
        route: the steps of a query (program ids on server steps).
        extra_steps: step index -> how the client runs a route step that is not a partition of ``split``
            (a tiled stage's crop, tiles and stitch, :func:`tiercut.runtime.tiled.tiled_steps`).
        answer_name: with early exits, the value the last active exit answers with ("" without exits:
            the model's output is built from the route's result).
        last_exit: with early exits, the last active exit's name.
    """

    index: int
    from_s: float
    latency_s: float
    placement: Mapping[str, str]
    requires: Mapping[str, int]
    split: Any
    route: Route
    extra_steps: Mapping[int, Callable[[Mapping[str, Any]], Mapping[str, Any]]] = field(default_factory=dict)
    answer_name: str = ""
    last_exit: str = ""

    @property
    def devices(self) -> list[str]:
        return self.route.devices()

    def node_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for device in self.placement.values():
            counts[device] = counts.get(device, 0) + 1
        return counts


@dataclass(frozen=True, eq=False)
class MigrationPlan:
    """What the runtime needs to run an upload plan: uploads per server and stages.

    Attributes:
        model: label of the model.
        source: the client device.
        algorithm: the upload planner that made the plan.
        captured: the captured model (the client holds the whole model).
        uploads: server -> its uploads in order.
        stages: the stages in plan order (stage 0 needs nothing).
        artifact_format: the program format of the bundles.
        exit_positions: with early exits, exit name -> its position among the network's outputs.
    """

    model: str
    source: str
    algorithm: str
    captured: Any
    uploads: Mapping[str, tuple[UploadItem, ...]]
    stages: tuple[RuntimeStage, ...]
    artifact_format: str = DEFAULT_FORMAT
    exit_positions: Mapping[str, int] = field(default_factory=dict)

    @property
    def servers(self) -> list[str]:
        return list(self.uploads)

    @property
    def relays(self) -> list[str]:
        """Devices the stages' routes forward through that are not servers of the plan (they compute nothing)."""
        return [d for d in dict.fromkeys(r for s in self.stages for r in s.route.relay_devices()) if d not in self.uploads]

    def best_stage(self, confirmed: Mapping[str, int], usable: set[str] | None = None) -> RuntimeStage:
        """The stage of lowest predicted latency whose uploads are confirmed and whose servers are usable.

        Ties go to the later stage. With nothing confirmed this is a stage
        that needs nothing (the all-local one), which always exists.
        """
        best: RuntimeStage | None = None
        for stage in self.stages:
            if any(confirmed.get(server, 0) < count for server, count in stage.requires.items()):
                continue
            if usable is not None and any(d != self.source and d not in usable for d in stage.devices):
                continue
            if best is None or stage.latency_s <= best.latency_s or math.isnan(best.latency_s):
                best = stage
        if best is None:
            return self.local_stage
        return best

    @property
    def local_stage(self) -> RuntimeStage:
        for stage in self.stages:
            if stage.devices == [self.source]:
                return stage
        raise TiercutError("the plan has no all-local stage; this is a tiercut bug")


# --------------------------------------------------------------------- the plan, typed
@dataclass(frozen=True)
class _PlanView:
    """An upload plan of one client as per-server partitions and one stage timeline."""

    algorithm: str
    source: str
    partitions: Mapping[str, tuple[UploadPartition, ...]]
    stages: tuple[Stage, ...]


def read_upload_plan(plan: UploadPlan | UserUploadPlan | Mapping[str, Any]) -> UploadPlan | UserUploadPlan:
    """``plan`` as a typed upload plan: an :class:`~tiercut.upload.UploadPlan` (one server), a
    :class:`~tiercut.upload.UserUploadPlan` (several servers, merged stages), or their JSON
    (``{"problem", "upload_plan"}`` as ``tiercut upload --json`` prints it, or the plan alone)."""
    if isinstance(plan, (UploadPlan, UserUploadPlan)):
        return plan
    if not isinstance(plan, Mapping):
        raise TiercutError("the upload plan is not a JSON object; pass the 'upload_plan' of 'tiercut upload --json'")
    if isinstance(plan.get("upload_plan"), Mapping):
        plan = plan["upload_plan"]
    if "servers" in plan:
        return UserUploadPlan.from_dict(plan)
    return UploadPlan.from_dict(plan)


def _view(plan: UploadPlan | UserUploadPlan | Mapping[str, Any], source: str | None) -> _PlanView:
    typed = read_upload_plan(plan)
    if isinstance(typed, UserUploadPlan):
        partitions = {server: one.partitions for server, one in typed.servers.items()}
        stages = typed.stages
    else:  # one server: stage i needs the first i uploads unless the plan says otherwise
        partitions = {typed.server: typed.partitions}
        stages = tuple(
            stage if stage.arrived else replace(stage, arrived={typed.server: i} if i else {})
            for i, stage in enumerate(typed.stages)
        )
    chosen = source or typed.source
    if not chosen:
        raise TiercutError("the upload plan names no source device; pass the client device (--source)")
    if not stages:
        raise TiercutError("the upload plan has no stages; it must hold at least stage 0 (nothing uploaded)")
    return _PlanView(typed.algorithm, chosen, partitions, stages)


def _check_partitions(view: _PlanView, graph: Any, model: str) -> None:
    """Every uploaded node is in the model, goes to a server (not the source), and goes up once."""
    if view.source in view.partitions:
        raise TiercutError(f"the source device {view.source!r} is also an upload target; the client uploads to servers")
    for server, parts in view.partitions.items():
        seen: set[str] = set()
        for part in parts:
            for node in part.nodes:
                if node not in graph:
                    raise TiercutError(f"upload partition for {server!r} names node {node!r}, which model {model!r} lacks")
                if node in seen:
                    raise TiercutError(f"node {node!r} is uploaded to {server!r} twice; each node goes up once")
                seen.add(node)


# --------------------------------------------------------------------- weights of nodes
def _node_tensors(captured: Any) -> dict[str, list[Any]]:
    """layer-graph node -> tensors its fx nodes hold (module parameters and buffers, get_attr tensors)."""
    import torch

    gm = captured.graph_module
    held: dict[str, list[Any]] = {}
    for fx_node in gm.graph.nodes:
        if fx_node.op == "output":
            continue
        owner = captured.owner.get(fx_node.name)
        if owner is None:
            continue
        tensors = held.setdefault(owner, [])
        if fx_node.op == "call_module":
            module = gm.get_submodule(str(fx_node.target))
            tensors.extend(t for _, t in module.named_parameters(remove_duplicate=False))
            tensors.extend(t for _, t in module.named_buffers(remove_duplicate=False))
        elif fx_node.op == "get_attr":
            value: Any = gm
            for part in str(fx_node.target).split("."):
                value = getattr(value, part)
            if isinstance(value, torch.Tensor):
                tensors.append(value)
    return held


class _DigestCache:
    """Content digests of tensors, computed once per tensor (keyed by storage, view and version)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[Any, ...], str] = {}

    def __call__(self, tensor: Any) -> str:
        key = (
            tensor.data_ptr(),
            tensor.storage_offset(),
            tuple(tensor.shape),
            tuple(tensor.stride()),
            str(tensor.dtype),
            tensor._version,
        )
        digest = self._cache.get(key)
        if digest is None:
            digest = self._cache[key] = tensor_digest(tensor)
        return digest


# --------------------------------------------------------------------- preparation
def prepare_migration(
    captured: Any,
    plan: UploadPlan | UserUploadPlan | Mapping[str, Any],
    *,
    source: str | None = None,
    artifact_format: str = DEFAULT_FORMAT,
    label: str | None = None,
    progress: Progress | None = None,
    problem: Problem | None = None,
    tiled: Sequence[Any] = (),
    exits: Any | None = None,
) -> MigrationPlan:
    """Build the uploads and stages of an upload plan for a captured model.

    ``plan`` is an :class:`~tiercut.upload.UploadPlan` (one server) or a
    user's :class:`~tiercut.upload.UserUploadPlan` (several servers, merged
    ``stages`` with ``arrived``), or the JSON of either
    (:func:`read_upload_plan`). With ``problem`` (the plan's
    :class:`~tiercut.problem.Problem`), each stage's route forwards through
    the relays the cost model's routing chooses (:func:`route_relays`).
    ``tiled``: the plan's tiled stages (:class:`tiercut.spatial.problem.TiledStage`, ``problem`` then a
    :class:`~tiercut.spatial.problem.SpatialProblem`): every stage that needs an upload to each of their
    devices runs them as parallel tiles (:func:`tiercut.runtime.tiled.tiled_steps`).
    ``captured`` may be an ONNX model
    (:class:`~tiercut.runtime.onnx_program.OnnxCaptured`): its programs are
    then ``onnx`` programs whatever ``artifact_format`` says.
    With ``exits`` (a :class:`~tiercut.exits.deploy.ExitDeployment`, the
    captured model being its multi-exit network) every stage runs the exit
    heads as partitions of their own and stops a query at the first exit
    whose confidence rule fires.

    Steps: read the plan (:func:`_view`), check its partitions against the
    model, build each stage's split, programs and route
    (:func:`_build_stages`), add the all-local stage if the plan lacks it,
    then pack each server's uploads (:func:`_server_uploads`).
    """
    view = _view(plan, source)
    if _is_onnx(captured):
        artifact_format = "onnx"
    model = label or captured.graph.model or "model"
    _check_partitions(view, captured.graph, model)
    stages, stage_programs = _build_stages(
        captured, view, artifact_format, problem, progress or (lambda _: None), exits, tuple(tiled)
    )
    if not any(stage.devices == [view.source] for stage in stages):
        stages.append(_local_stage(captured, view.source, len(stages), exits))
    node_tensors = captured.node_tensors() if _is_onnx(captured) else _node_tensors(captured)
    plan_tag = hashlib.sha256(
        repr((model, view.algorithm, view.source, sorted(view.partitions.items(), key=str))).encode()
    ).hexdigest()[:10]
    tag = f"{_LABEL_UNSAFE.sub('_', model)[:48]}.{plan_tag}"
    uploads = {
        server: _server_uploads(server, parts, tag, stages, stage_programs, node_tensors)
        for server, parts in view.partitions.items()
    }
    return MigrationPlan(
        model=model,
        source=view.source,
        algorithm=view.algorithm,
        captured=captured,
        uploads=uploads,
        stages=tuple(stages),
        artifact_format=artifact_format,
        exit_positions={} if exits is None else exits.positions,
    )


def _stage_placement(view: _PlanView, index: int, stage: Stage, graph: Any) -> tuple[dict[str, str], dict[str, int]]:
    """Stage ``index``'s placement (graph inputs on the source) and the uploads it needs, checked against the plan."""
    placement = dict(stage.placement)
    requires = {server: count for server, count in stage.arrived.items() if count > 0}
    for node in graph.nodes:
        if node.name not in placement and node.is_input:
            placement[node.name] = view.source
    for device in set(placement.values()):
        if device != view.source and device not in view.partitions:
            raise TiercutError(
                f"stage {index} places nodes on {device!r}, which is neither the source {view.source!r} nor a server "
                f"the plan uploads to ({', '.join(view.partitions) or 'none'})"
            )
    for server, count in requires.items():
        if server not in view.partitions or count > len(view.partitions[server]):
            raise TiercutError(f"stage {index} needs {count} upload(s) to {server!r}, which the plan does not have")
    return placement, requires


def _cut(captured: Any, placement: Mapping[str, str], source: str, exits: Any | None) -> tuple[Any, Any]:
    """The stage's split and what its route needs of it: (split, exit split or None)."""
    from tiercut.graph.split import split_by_placement

    if _is_onnx(captured):  # an ONNX model's pieces, run in onnxruntime
        if exits is not None:
            raise TiercutError("early exits are added to torch models; an ONNX model runs without them")
        return captured.split(placement), None
    if exits is None:
        return split_by_placement(captured, placement), None
    cut = exits.split(captured, placement, source)
    return cut.split, cut


def _stage_route(split: Any, cut: Any, program_ids: Mapping[int, str | None], source: str,
                 relays: Mapping[str, tuple[str, ...]]) -> tuple[Route, dict[str, str]]:
    """The route of a stage's split (with exits: the exit split's order and checks) and the exit fields."""
    order = range(len(split.partitions)) if cut is None else cut.order
    steps = []
    for i in order:
        p = split.partitions[i]
        check = None if cut is None else cut.checks.get(i)
        steps.append(Step(p.index, p.device, program_ids.get(i), p.input_names, p.output_names, check))
    if cut is None:
        return Route(tuple(steps), tuple(split.output_spec.value_names()), source, relays), {}
    return (Route(tuple(steps), (cut.answer_name,), source, relays),
            {"answer_name": cut.answer_name, "last_exit": cut.last_exit})


def _build_stages(
    captured: Any, view: _PlanView, artifact_format: str, problem: Problem | None, note: Progress, exits: Any | None = None,
    tiled: tuple[Any, ...] = (),
) -> tuple[list[RuntimeStage], list[dict[str, list[BuiltProgram]]]]:
    """Every stage's split, route and the programs its server steps run (each exported once, shared by stages)."""
    from tiercut.profile.measure import record_fx_values

    if tiled and problem is None:
        raise TiercutError("tiled stages need the plan's problem (its spatial stacks); pass problem=")
    if tiled and exits is not None:
        raise TiercutError("a plan with tiled stages runs without early exits; give one or the other")
    onnx = _is_onnx(captured)
    if tiled and onnx:
        raise TiercutError("a plan with tiled stages runs a torch model (its tiles are torch layers), not an ONNX file")
    stacks = {}
    if tiled:
        from tiercut.runtime.tiled import runtime_stack

        stacks = {i: runtime_stack(captured, problem, stage) for i, stage in enumerate(tiled)}
    values = {} if onnx else record_fx_values(captured)
    programs: dict[tuple[Any, ...], BuiltProgram] = {}
    splits: dict[tuple[tuple[str, str], ...], Any] = {}
    stages: list[RuntimeStage] = []
    stage_programs: list[dict[str, list[BuiltProgram]]] = []
    for index, stage in enumerate(view.stages):
        placement, requires = _stage_placement(view, index, stage, captured.graph)
        here = [i for i, t in enumerate(tiled) if all(requires.get(d, 0) > 0 for d in [t.home, *t.devices] if d != view.source)]
        cut_placement = dict(placement)
        for i in here:  # each tiled stack its own partition (a device name no placement uses)
            cut_placement.update({name: f"{tiled[i].home}~tiles{i}" for name in stacks[i].names})
        key = tuple(sorted(cut_placement.items()))
        if key not in splits:
            note(f"stage {index}: splitting the model")
            splits[key] = _cut(captured, cut_placement, view.source, exits)
        split, cut = splits[key]
        if onnx:  # the tensors this cut's partitions exchange, on the example inputs
            values = captured.example_values(split)
        built: dict[str, list[BuiltProgram]] = {}
        program_ids: dict[int, str | None] = {}
        tiled_runs: dict[int, Any] = {}
        next_index = len(split.partitions)  # route steps beyond the split's partitions
        for partition in split.partitions:
            if "~tiles" in partition.device:
                from tiercut.runtime.tiled import tiled_steps

                which = int(partition.device.rpartition("~tiles")[2])
                note(f"stage {index}: exporting {len(tiled[which].tiles)} tiles of {stacks[which].geometry.output_name}")
                run = tiled_steps(
                    stacks[which], tiled[which], values[stacks[which].geometry.input_name], source=view.source,
                    first_index=next_index, artifact_format=artifact_format,
                )  # fmt: skip
                next_index += len(run.steps)
                tiled_runs[partition.index] = run
                for device, programs_of in run.programs.items():
                    built.setdefault(device, []).extend(programs_of)
                continue
            program_id = None
            if cut is not None and partition.index not in cut.order:
                continue  # an inactive exit's nodes: no query runs them
            if partition.device != view.source:
                program_key = (partition.device, partition.nodes, partition.input_names, partition.output_names, artifact_format)
                if program_key not in programs:
                    note(f"stage {index}: exporting partition {partition.index} for {partition.device}")
                    inputs = {n: values[n] for n in partition.input_names}
                    programs[program_key] = (
                        captured.build_program(partition, inputs) if onnx
                        else build_program(partition, inputs, format=artifact_format)
                    )
                program = programs[program_key]
                built.setdefault(partition.device, []).append(program)
                program_id = program.program.manifest.program_id
            program_ids[partition.index] = program_id
        for server in built:
            if requires.get(server, 0) == 0:
                raise TiercutError(
                    f"stage {index} runs partitions on {server!r} before any upload to it is confirmed; the plan must "
                    "say how many uploads each stage needs ('arrived')"
                )
        if tiled_runs:
            steps: list[Step] = []
            groups: list[tuple[int, int]] = []
            extra: dict[int, Any] = {}
            for p in split.partitions:
                run = tiled_runs.get(p.index)
                if run is None:
                    steps.append(Step(p.index, p.device, program_ids.get(p.index), p.input_names, p.output_names))
                    continue
                groups.append((len(steps) + run.group[0], len(steps) + run.group[1]))
                steps.extend(run.steps)
                extra.update(run.local)
            relays = route_relays(problem, placement, [view.source, *(s.device for s in steps)])
            route = Route(tuple(steps), tuple(split.output_spec.value_names()), view.source, relays, tuple(groups))
            stages.append(RuntimeStage(index, stage.from_s, stage.latency_s, placement, requires, split, route, extra))
        else:
            relays = route_relays(problem, placement, [view.source, *(p.device for p in split.partitions)])
            route, exit_fields = _stage_route(split, cut, program_ids, view.source, relays)
            stages.append(RuntimeStage(index, stage.from_s, stage.latency_s, placement, requires, split, route, **exit_fields))
        stage_programs.append(built)
    return stages, stage_programs


def _is_onnx(captured: Any) -> bool:
    from tiercut.runtime.onnx_program import OnnxCaptured

    return isinstance(captured, OnnxCaptured)


def _local_stage(captured: Any, source: str, index: int, exits: Any | None = None) -> RuntimeStage:
    """The all-local stage (every node on the source), for a plan that lacks one."""
    placement = {node.name: source for node in captured.graph.nodes}
    split, cut = _cut(captured, placement, source, exits)
    route, exit_fields = _stage_route(split, cut, {}, source, {})
    return RuntimeStage(index, 0.0, math.inf, placement, {}, split, route, **exit_fields)


def _server_uploads(
    server: str,
    parts: Sequence[UploadPartition],
    tag: str,
    stages: Sequence[RuntimeStage],
    stage_programs: Sequence[Mapping[str, list[BuiltProgram]]],
    node_tensors: Mapping[str, list[Any]],
) -> tuple[UploadItem, ...]:
    """One server's uploads in order: P3_k's weights, plus the programs (and any weight they lack) of the
    stages upload ``k`` makes runnable; a weight goes up once per server (keyed by content digest)."""
    digest = _DigestCache()
    carried: set[str] = set()
    sent_programs: set[str] = set()
    items: list[UploadItem] = []
    for position, part in enumerate(parts, start=1):
        weights: dict[str, Any] = {}
        for node in part.nodes:
            for tensor in node_tensors.get(node, []):
                key = digest(tensor)
                if key not in carried and key not in weights:
                    weights[key] = tensor.detach()
        own = set(weights)
        new_programs = []
        for stage, built in zip(stages, stage_programs):
            if stage.requires.get(server, 0) != position:
                continue
            for program in built.get(server, []):
                program_id = program.program.manifest.program_id
                if program_id in sent_programs:
                    continue
                sent_programs.add(program_id)
                new_programs.append(program.program)
                for key, tensor in program.weights.items():
                    if key not in carried and key not in weights:
                        weights[key] = tensor.detach()
        extra = sum(t.numel() * t.element_size() for k, t in weights.items() if k not in own)
        requires = sorted({d for p in new_programs for d in p.manifest.weights.values()} & carried)
        carried |= set(weights)
        label = f"{tag}.{_LABEL_UNSAFE.sub('_', server)[:32]}.{position}"
        bundle = PartitionBundle("", part.nodes, weights, tuple(new_programs), tuple(requires)).named(label)
        items.append(
            UploadItem(
                server=server,
                position=position,
                partition_id=bundle.partition_id,
                nodes=part.nodes,
                bundle=bundle,
                planned_param_bytes=part.param_bytes,
                planned_upload_s=part.upload_s,
                planned_arrives_s=part.arrives_s,
                extra_weight_bytes=extra,
            )
        )
    return tuple(items)


def route_relays(problem: Any, placement: Mapping[str, str], devices: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """``"a>b"`` -> the relays between route devices ``a`` and ``b`` where the cost model's routing forwards
    through other devices, for the bytes ``a`` sends ``b`` under ``placement`` (empty without ``problem``)."""
    if problem is None:
        return {}
    graph = problem.graph
    consumers = graph.consumers()
    sent: dict[tuple[str, str], int] = {}
    for node in graph:
        here = placement.get(node.name, problem.source)
        targets = {placement.get(w, problem.source) for w in consumers[node.name]}
        if node.is_output:
            targets.add(problem.source)
        for there in targets - {here}:
            sent[(here, there)] = sent.get((here, there), 0) + int(node.out_bytes)
    out: dict[str, tuple[str, ...]] = {}
    names = list(dict.fromkeys(devices))
    for a in names:
        for b in names:
            if a == b or a not in problem.device_names or b not in problem.device_names:
                continue
            path = problem.routing.path(a, b, float(sent.get((a, b), 0)))
            if path is not None and path.relays:
                out[f"{a}>{b}"] = tuple(path.relays)
    return out


def placement_plan(
    placement: Mapping[str, str],
    source: str,
    *,
    latency_s: float = math.nan,
    algorithm: str = "placement",
    also_holds: Mapping[str, Sequence[str]] | None = None,
) -> UserUploadPlan:
    """An upload plan with one upload per server holding all its nodes (the ``direct`` shape).

    ``also_holds``: server -> nodes it holds besides those placed on it (a tiled stage's tile devices hold the
    stack's layers); such a server gets an upload too, and stage 1 needs it.

    Stage 0 is all-local, stage 1 (needing every server's upload) is
    ``placement``. For running a partition-offloading plan as it is; its
    upload figures are unknown (zero bytes and seconds planned, metrics
    not evaluated).
    """
    held = {server: [n for n, d in placement.items() if d == server] for server in placement.values() if server != source}
    for server, nodes in (also_holds or {}).items():
        if server != source:
            mine = held.setdefault(server, [])
            mine.extend(n for n in nodes if n not in mine)
    servers = list(held)
    local = Stage(0.0, {n: source for n in placement}, math.inf, {})
    offloaded = Stage(0.0, dict(placement), math.inf if math.isnan(latency_s) else latency_s, {s: 1 for s in servers})
    unknown = UploadMetrics(0, math.inf, 0, math.inf, 0.0)
    plans = {
        server: UploadPlan(
            algorithm=algorithm,
            server=server,
            source=source,
            partitions=(UploadPartition(tuple(held[server]), 0, 0.0, 0.0),),
            stages=(local, replace(offloaded, arrived={server: 1})),
            metrics=unknown,
        )
        for server in servers
    }
    return UserUploadPlan(source, source, algorithm, dict(placement), plans, (local, offloaded), unknown)


__all__ = [
    "MigrationPlan",
    "RuntimeStage",
    "UploadItem",
    "placement_plan",
    "prepare_migration",
    "read_upload_plan",
    "route_relays",
]
