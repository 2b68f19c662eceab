"""Measuring on the device itself: the worker's ``Profile`` RPC and the ``--measure-on`` compute table.

The seed paper's installation phase profiles subtasks where they will run
(dnn-migration-in-iots, Program 1). A worker (``tiercut serve``) answers a
``Profile`` request by timing, on its own hardware:

- a model of tiercut's zoo, by name (:data:`tiercut.graph.ZOO` is the
  allow-list: the worker builds the torchvision model itself, with random
  weights -- it never receives code), every node alone and the whole model
  (:func:`tiercut.profile.measure_profile`); or
- a partition program it has already accepted and stored (by program id),
  on zero inputs of the shapes its manifest declares (checked when the
  program was admitted).

Resources are bounded: the input size (:data:`MAX_INPUT_ELEMENTS`), the
repeats, and the time -- every timing gets an equal share of the request's
``max_seconds`` (itself capped at :data:`MAX_PROFILE_SECONDS`), the
profile is abandoned once that deadline passes, and one profile runs at a
time per worker.

A worker started with ``--compute-slowdown k`` emulates a device ``k``
times slower than the machine it runs on (several "devices" on one test
host), with the definition the client's ``--source-slowdown`` uses: the
device takes ``k`` times this host's time for the same work. Partitions it
executes are made to take that long for real -- after each run it waits
``(k - 1)`` times the run's duration (:func:`pause`) --, and its profiles
report ``k`` times what each timed call took here. Profiles scale rather
than wait because waiting perturbs what it emulates: on the development
host a ResNet-18 call made right after a pause of twice its length takes
about 30 % longer than one made back to back (colder caches), so a waiting
timer would report about 3.8x for k = 3.

:func:`measure_on_workers` is the client side of ``tiercut plan ...
--measure-on workers.yaml``: each listed worker profiles the model, the
client profiles it locally, and every device with a measurement gets a
``measured`` column in the compute table.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tiercut.errors import TiercutError
from tiercut.runtime.protocol import SERVICE

if TYPE_CHECKING:
    from tiercut.runtime.artifact import PartitionBundle

METHOD_PROFILE = f"/{SERVICE}/Profile"
#: the longest a worker spends on one Profile request
MAX_PROFILE_SECONDS = 300.0
#: the largest input (elements) a worker builds for a zoo model
MAX_INPUT_ELEMENTS = 4 * 3 * 512 * 512
MAX_REPEATS = 50
GRANULARITIES = ("module", "block")


class ProfileDeadlineError(TiercutError):
    """The profile did not finish within its time budget."""


#: waits shorter than this spin (sleeping lets the core cool and other processes evict its caches,
#: which would slow the next call by more than the emulated factor)
SPIN_BELOW_S = 0.05


def pause(seconds: float) -> None:
    """Wait ``seconds``: spin for short waits (precise, core kept warm), sleep all but the last 10 ms of long ones."""
    if seconds <= 0:
        return
    end = time.perf_counter() + seconds
    if seconds > SPIN_BELOW_S:
        time.sleep(seconds - 0.01)
    while time.perf_counter() < end:
        pass


def slowed_timer(slowdown: float, base: Callable[[Callable[[], Any], int], float] | None = None) -> Callable:
    """A timer reporting ``slowdown`` times what ``base`` measures (see the module docstring); ``base`` at 1."""
    from tiercut.profile.measure import wall_timer

    base = base or wall_timer
    if slowdown == 1.0:
        return base

    def timer(fn: Callable[[], Any], number: int) -> float:
        return base(fn, number) * slowdown

    return timer


@dataclass(eq=False)
class DeviceProgram:
    """A stored program run on a GPU: its weights copied there once, inputs moved there and outputs back.

    ONNX programs keep running on the CPU (onnxruntime's CPU session).
    """

    inner: Any
    device: str

    @property
    def program_id(self) -> str:
        return self.inner.program_id

    @property
    def manifest(self) -> Any:
        return self.inner.manifest

    def run(self, values: Mapping[str, Any], control: Any = None) -> dict[str, Any]:
        from tiercut.runtime.codec import unflatten_value

        leaves = [leaf.to(self.device) for leaf in self.inner.check_inputs(values)]  # checked on the CPU, as received
        outputs = [t.cpu() for t in self.inner.run_leaves(leaves, control)]
        manifest = self.inner.manifest
        return {name: unflatten_value(structure, outputs)
                for name, structure in zip(manifest.output_names, manifest.output_structures, strict=True)}


def on_device(program: Any, device: str) -> Any:
    """``program`` running on ``device`` (itself when that is the CPU or the program is ONNX)."""
    from dataclasses import replace

    if device == "cpu" or getattr(program, "_aten", None) is None:
        return program
    weights = {k: v.to(device) for k, v in program._weights.items()}
    return DeviceProgram(replace(program, _weights=weights), device)


@dataclass(frozen=True)
class ProfileRequest:
    """What a client asks a worker to profile (JSON body of ``Profile``).

    Exactly one of ``model`` (a zoo name) and ``program_id`` (a stored program).
    """

    model: str | None = None
    input_shape: tuple[int, ...] | None = None
    granularity: str = "module"
    program_id: str | None = None
    repeats: int = 10
    max_seconds: float = 60.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "input_shape": list(self.input_shape) if self.input_shape else None,
            "granularity": self.granularity,
            "program_id": self.program_id,
            "repeats": self.repeats,
            "max_seconds": self.max_seconds,
        }

    @classmethod
    def from_dict(cls, data: Any) -> ProfileRequest:
        """Validate an untrusted request: an allow-listed model or a program id, bounded shape, repeats and time."""
        from tiercut.graph import ZOO

        if not isinstance(data, Mapping):
            raise TiercutError("profile request is not a JSON object")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise TiercutError(f"profile request has unknown field(s) {', '.join(sorted(map(str, unknown)))}")
        model, program_id = data.get("model"), data.get("program_id")
        if (model is None) == (program_id is None):
            raise TiercutError("profile request needs exactly one of model (a zoo name) and program_id")
        if model is not None and (not isinstance(model, str) or model not in ZOO):
            raise TiercutError(f"model {model!r} is not in the zoo this worker builds ({', '.join(ZOO)})")
        if program_id is not None and not (isinstance(program_id, str) and len(program_id) == 64
                                           and all(c in "0123456789abcdef" for c in program_id)):
            raise TiercutError("program_id must be the 64-hex-digit id of a stored partition program")
        shape = data.get("input_shape")
        if shape is not None:
            if not (isinstance(shape, list) and 1 <= len(shape) <= 5
                    and all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)):
                raise TiercutError("input_shape must be a list of 1 to 5 positive integers")
            if math.prod(shape) > MAX_INPUT_ELEMENTS:
                raise TiercutError(f"input_shape {shape} has more than {MAX_INPUT_ELEMENTS} elements; profile a smaller input")
        granularity = data.get("granularity", "module")
        if granularity not in GRANULARITIES:
            raise TiercutError(f"granularity must be one of {', '.join(GRANULARITIES)}")
        repeats, seconds = data.get("repeats", 10), data.get("max_seconds", 60.0)
        if not (isinstance(repeats, int) and not isinstance(repeats, bool) and 1 <= repeats <= MAX_REPEATS):
            raise TiercutError(f"repeats must be an integer in 1..{MAX_REPEATS}")
        if not (isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and 0 < seconds <= MAX_PROFILE_SECONDS):
            raise TiercutError(f"max_seconds must be a number in (0, {MAX_PROFILE_SECONDS:g}]")
        return cls(model, tuple(shape) if shape else None, granularity, program_id, int(repeats), float(seconds))


def _rule(request: ProfileRequest, timings: int) -> Any:
    from tiercut.profile import StoppingRule

    share = request.max_seconds / max(timings, 1)
    return StoppingRule(warmup=1, min_repeats=min(3, request.repeats), max_repeats=request.repeats,
                        max_seconds=max(share * 0.5, 1e-3), min_sample_s=min(2e-4, share / 20))


def profile_model(
    request: ProfileRequest, *, slowdown: float = 1.0, torch_device: str = "cpu", threads: int | None = None
) -> Any:
    """Profile a zoo model here within the request's deadline (runs in a worker thread)."""
    from tiercut.graph import capture_model
    from tiercut.profile import measure_profile

    deadline = time.monotonic() + request.max_seconds
    captured = capture_model(str(request.model), request.input_shape, granularity=request.granularity)
    timings = len(captured.graph) + 3

    def check(done: int, total: int, label: str) -> None:
        if time.monotonic() > deadline:
            raise ProfileDeadlineError(
                f"profile of {request.model!r} exceeded its {request.max_seconds:g} s budget after {done} of {total} "
                "timings; ask for fewer repeats or a longer max_seconds"
            )

    from tiercut.profile.measure import cuda_timer, wall_timer

    on_gpu = torch_device.startswith("cuda")
    timer = slowed_timer(slowdown, cuda_timer if on_gpu else wall_timer)
    return measure_profile(captured, rule=_rule(request, timings), threads=threads, progress=check,
                           torch_device=torch_device, clock="cuda" if on_gpu else "wall", timer=timer)


def profile_program(program: Any, request: ProfileRequest, *, slowdown: float = 1.0) -> dict[str, Any]:
    """Time a stored partition program on zero inputs of its declared shapes."""
    import torch

    from tiercut.profile import repeat_until_stable
    from tiercut.runtime.codec import torch_dtype, unflatten_value

    manifest = program.manifest
    leaves = [torch.zeros(spec.shape, dtype=torch_dtype(spec.dtype)) for spec in manifest.tensor_inputs]
    values = {name: unflatten_value(structure, leaves)
              for name, structure in zip(manifest.input_names, manifest.input_structures, strict=True)}
    stats = repeat_until_stable(lambda: program.run(values), _rule(request, 1), slowed_timer(slowdown))
    return {"program_id": program.program_id, "timing": stats.to_dict()}


@dataclass(eq=False)
class ProfileService:
    """The ``Profile`` handler of a :class:`~tiercut.runtime.worker.Worker` (one profile at a time)."""

    worker: Any
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)

    async def handle(self, request: bytes, context: Any) -> bytes:
        import grpc

        worker = self.worker
        owner = await worker._authorize(context)
        try:
            parsed = ProfileRequest.from_dict(json.loads(request or b"{}"))
        except (UnicodeDecodeError, ValueError):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "profile request is not JSON")
        except TiercutError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        config = worker.config
        slowdown = float(getattr(config, "compute_slowdown", 1.0))
        if self._lock.locked():
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "this worker is already profiling; try again later")
        async with self._lock:
            loop = asyncio.get_running_loop()
            try:
                if parsed.program_id is not None:
                    store = worker.store
                    if store is None or not store.has_program(parsed.program_id, owner):
                        await context.abort(
                            grpc.StatusCode.NOT_FOUND,
                            f"program {parsed.program_id[:12]} is not stored on {config.device!r}; upload it first",
                        )
                    program = store.program(parsed.program_id, owner)
                    work = loop.run_in_executor(None, lambda: profile_program(program, parsed, slowdown=slowdown))
                    body: dict[str, Any] = {"kind": "program", **(await asyncio.wait_for(work, parsed.max_seconds * 1.5 + 5))}
                else:
                    device = getattr(config, "torch_device", "cpu")
                    work = loop.run_in_executor(None, lambda: profile_model(parsed, slowdown=slowdown, torch_device=device,
                                                                             threads=config.torch_threads))
                    profile = await asyncio.wait_for(work, parsed.max_seconds * 1.5 + 5)
                    body = {"kind": "model", "profile": profile.to_dict()}
            except ProfileDeadlineError as exc:
                await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, str(exc))
            except TimeoutError:
                await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, f"profile exceeded {parsed.max_seconds:g} s")
            except TiercutError as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        worker._count("profiles")
        body.update(device=config.device, compute_slowdown=slowdown)
        return json.dumps(body).encode()


async def request_profile(connection: Any, request: ProfileRequest, *, timeout_s: float | None = None) -> dict[str, Any]:
    """Client side: ask the worker behind ``connection`` to profile (its JSON reply)."""
    return await connection._unary(METHOD_PROFILE, request.to_dict(), timeout_s or request.max_seconds * 2 + 30)


# --------------------------------------------------------------------- --measure-on
@dataclass(frozen=True)
class WorkersFile:
    """``workers.yaml``: the running workers to measure on, and how to reach them.

    Format::

        workers:            # environment device -> address of its `tiercut serve`
          edge: 10.0.0.2:50051
          cloud: 10.0.0.3:50051
        token_env: TIERCUT_TOKEN     # optional: the token's environment variable
        tls: {cert: c.pem, key: k.pem, ca: ca.pem}   # optional mutual TLS
        max_seconds: 120             # optional: budget of each worker's profile
    """

    workers: Mapping[str, str]
    token_env: str | None = None
    tls: Mapping[str, str] = field(default_factory=dict)
    max_seconds: float = 120.0
    base_dir: Path | None = None

    @classmethod
    def load(cls, path: str | Path) -> WorkersFile:
        import yaml

        from tiercut.runtime.worker import parse_address

        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise TiercutError(f"cannot read workers file {path}: {exc.strerror}; check the path") from None
        except yaml.YAMLError:
            raise TiercutError(f"workers file {path} is not valid YAML; fix the syntax") from None
        if not isinstance(data, Mapping) or not isinstance(data.get("workers"), Mapping) or not data["workers"]:
            raise TiercutError(f"workers file {path} needs a 'workers:' mapping of device -> host:port")
        unknown = set(data) - {"workers", "token_env", "tls", "max_seconds"}
        if unknown:
            raise TiercutError(f"workers file {path} has unknown key(s) {', '.join(sorted(map(str, unknown)))}")
        workers = {str(k): str(v) for k, v in data["workers"].items()}
        for address in workers.values():
            parse_address(address)
        tls = data.get("tls") or {}
        if not isinstance(tls, Mapping) or set(tls) - {"cert", "key", "ca"}:
            raise TiercutError(f"workers file {path}: tls takes cert, key and ca (PEM files)")
        seconds = data.get("max_seconds", 120.0)
        if not isinstance(seconds, (int, float)) or not 0 < seconds <= MAX_PROFILE_SECONDS:
            raise TiercutError(f"workers file {path}: max_seconds must be in (0, {MAX_PROFILE_SECONDS:g}]")
        return cls(workers, data.get("token_env"), {k: str(v) for k, v in tls.items()}, float(seconds), path.parent)

    def credentials(self) -> Any:
        import os

        from tiercut.runtime.protocol import Credentials

        token = os.environ.get(self.token_env) if self.token_env else None
        if self.token_env and not token:
            raise TiercutError(f"workers file names token_env {self.token_env!r}, which is not set; export it")

        def path(key: str) -> Path | None:
            value = self.tls.get(key)
            return None if value is None else (self.base_dir / value if self.base_dir else Path(value))

        return Credentials(token=token, tls_cert=path("cert"), tls_key=path("key"), tls_ca=path("ca"))


def _by_name(request: Any) -> tuple[str, tuple[int, ...] | None] | None:
    """(zoo name, input shape) when a worker can build the model itself; None when it must receive it."""
    from tiercut.graph import ZOO

    if request.spec not in ZOO or request.leaf_modules or request.open_modules:
        return None
    if request.inputs is None:
        return request.spec, None
    (first, *others) = request.inputs
    if others or first.dtype != "float32" or first.name is not None or first.fill is not None:
        return None
    return request.spec, first.shape


def _layer_programs(captured: Any) -> tuple[PartitionBundle, dict[str, str]]:
    """Every layer-graph node as its own ``aten-json`` program, all in one bundle; node -> program id.

    The model is split with each node on a device of its own, so every
    partition holds one node; the programs are made as for a run
    (:func:`~tiercut.runtime.artifact.build_program`: data only, checked as a worker checks them).
    """
    from tiercut.graph.split import split_by_placement
    from tiercut.profile.measure import record_fx_values
    from tiercut.runtime.artifact import ArtifactError, PartitionBundle, build_program

    placement = {n.name: ("client" if n.is_input else f"layer{i}") for i, n in enumerate(captured.graph.nodes)}
    split = split_by_placement(captured, placement)
    values = record_fx_values(captured)
    programs: dict[str, Any] = {}
    weights: dict[str, Any] = {}
    for partition in split.partitions:
        if partition.device == "client":
            continue
        try:
            built = build_program(partition, {n: values[n] for n in partition.input_names})
        except ArtifactError as exc:
            raise TiercutError(f"--measure-on cannot send layer {partition.nodes[0]!r} to the workers: {exc}") from None
        (node,) = partition.nodes
        programs[node] = built.program
        weights.update(built.weights)
    unique = {p.manifest.program_id: p for p in programs.values()}
    bundle = PartitionBundle("", tuple(programs), weights, tuple(unique.values())).named(
        f"measure.{''.join(c if c.isalnum() else '_' for c in captured.graph.model)[:48]}"
    )
    return bundle, {node: p.manifest.program_id for node, p in programs.items()}


async def _profile_programs(
    connection: Any, bundle: PartitionBundle, program_of: Mapping[str, str], repeats: int, max_seconds: float
) -> dict[str, Any]:
    """Upload ``bundle`` to one worker, time each layer's program there, drop the bundle; node -> seconds."""
    from tiercut.runtime.artifact import sha256_hex

    data = bundle.to_bytes()
    result = await connection.upload(bundle.partition_id, data, sha256_hex(data))
    if not result.ok:
        raise TiercutError(f"worker {connection.device!r} refused the layers to measure: {result.reason}")
    try:
        share = max(min(max_seconds / max(len(set(program_of.values())), 1), MAX_PROFILE_SECONDS), 0.05)
        timed: dict[str, float] = {}
        for program_id in dict.fromkeys(program_of.values()):
            reply = await request_profile(
                connection, ProfileRequest(program_id=program_id, repeats=repeats, max_seconds=share)
            )
            timed[program_id] = float(reply["timing"]["median_s"])
        return {
            "seconds": {node: timed[program_id] for node, program_id in program_of.items()},
            "compute_slowdown": float(reply.get("compute_slowdown", 1.0)) if program_of else 1.0,
        }
    finally:
        await connection.drop([bundle.partition_id])


def measure_on_workers(
    model: Any,
    graph: Any,
    env: Any,
    workers: WorkersFile,
    *,
    source: str,
    input_shape: tuple[int, ...] | None = None,
    repeats: int = 10,
    local_profile: Any = None,
    credentials: Any = None,
) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    """The compute table of ``graph`` with measured columns for the workers and the client.

    ``model``: a :class:`~tiercut.graph.ModelRequest` (its inputs of any
    number and dtype, its module types) or a spec with ``input_shape``. Every
    device of ``workers`` times the model on its own hardware (the ``Profile``
    RPC): a zoo model at its one float32 input the worker builds itself, by
    name (every node alone and the whole model); any other model (a factory,
    several inputs, token ids, a mask) reaches the worker as data only: each
    layer as its own ``aten-json`` program, uploaded, timed alone on inputs of
    its declared shapes, then dropped. The source device is measured here
    (``local_profile``, or a fresh :func:`~tiercut.profile.measure_profile` of
    the same model and inputs); the other devices are predicted from the
    catalog as usual. Returns node -> device -> seconds and device -> provenance.
    """
    from tiercut.graph import ModelRequest, capture_request
    from tiercut.graph.model_spec import InputSpec
    from tiercut.problem import compute_table_for, resolve_devices
    from tiercut.profile import Profile, compute_table
    from tiercut.runtime.protocol import Connection

    if not isinstance(model, ModelRequest):
        inputs = (InputSpec(name=None, dtype="float32", shape=tuple(input_shape)),) if input_shape else None
        model = ModelRequest(spec=str(model), inputs=inputs, granularity=graph.granularity)
    names = set(env.device_names)
    for device in workers.workers:
        if device not in names:
            raise TiercutError(f"workers file names device {device!r}, which is not in environment {env.name!r}")
    if source in workers.workers:
        raise TiercutError(f"the source {source!r} is measured here; drop it from the workers file")
    credentials = credentials or workers.credentials()
    by_name = _by_name(model)
    captured = None if by_name is not None and local_profile is not None else capture_request(model)
    if by_name is not None:
        request = ProfileRequest(model=by_name[0], input_shape=by_name[1], granularity=graph.granularity,
                                 repeats=repeats, max_seconds=workers.max_seconds)
    else:
        assert captured is not None
        bundle, program_of = _layer_programs(captured)

    async def gather() -> dict[str, dict[str, Any]]:
        replies = {}
        for device, address in workers.workers.items():  # one at a time: they may share this host's cores
            connection = Connection(device=device, address=address, credentials=credentials)
            try:
                if by_name is not None:
                    replies[device] = await request_profile(connection, request)
                else:
                    replies[device] = await _profile_programs(connection, bundle, program_of, repeats, workers.max_seconds)
            finally:
                await connection.close()
        return replies

    replies = asyncio.run(gather())
    if local_profile is None:
        from tiercut.profile import measure_profile

        local_profile = measure_profile(captured, repeats=repeats)
    specs, _, provenance = resolve_devices(env)
    predicted_specs = {d: s for d, s in specs.items() if d not in workers.workers and d != source}
    seconds: dict[str, dict[str, float]] = {n.name: {} for n in graph if not n.is_input}
    if predicted_specs:
        table, basis = compute_table_for(graph, predicted_specs,
                                         precisions={d.name: d.precision for d in env.devices if d.precision})
        for node, row in table.items():
            seconds[node].update(row)
        provenance.update(basis)
    measured: dict[str, Any] = {source: local_profile}
    if by_name is not None:
        measured.update({d: Profile.from_dict(r["profile"], where=f"profile from worker {d!r}") for d, r in replies.items()})
    for device, profile in measured.items():
        column = compute_table(graph, {device: None}, profile=profile)
        for node, row in column.seconds.items():
            seconds[node][device] = row[device]
        where = "here" if device == source else f"on worker {workers.workers[device]}"
        quality = profile.quality.verdict if profile.quality is not None else "unknown"
        provenance[device] = f"measured {where}{_slowdown_note(replies.get(device, {}))}: {column.basis[device]}; host {quality}"
    if by_name is None:
        for device, reply in replies.items():
            for node, node_s in reply["seconds"].items():
                seconds[node][device] = node_s
            provenance[device] = (
                f"measured on worker {workers.workers[device]}{_slowdown_note(reply)}: each of {len(reply['seconds'])} "
                f"layers sent as a program and timed alone (median of up to {repeats} runs, the worker's per-call "
                "overhead included)"
            )
    return seconds, provenance


def _slowdown_note(reply: Mapping[str, Any]) -> str:
    slow = reply.get("compute_slowdown", 1.0)
    return f" (emulating a {slow:g}x slower device)" if slow != 1.0 else ""


__all__ = [
    "MAX_PROFILE_SECONDS",
    "METHOD_PROFILE",
    "DeviceProgram",
    "ProfileDeadlineError",
    "ProfileRequest",
    "ProfileService",
    "WorkersFile",
    "measure_on_workers",
    "on_device",
    "pause",
    "profile_model",
    "profile_program",
    "request_profile",
    "slowed_timer",
]
