"""The worker's interpreter of ``aten-json`` programs: parse, check on the meta device, run.

A program is a list of nodes, each an ATen operator overload named as data
with its arguments as data (:mod:`tiercut.runtime.artifact` writes them).
A worker trusts nothing in it:

1. :meth:`AtenProgram.parse` checks the structure: every operator is on the
   hand-reviewed allow-list (:mod:`tiercut.runtime.allowlist`, functional
   overloads only, so nothing is ever written in place), every argument is a
   known kind of value (a reference to an earlier value, a number, a list, a
   dtype, ``cpu``), string arguments are known options, and pinned arguments
   (a dropout probability, a training switch) have their pinned value;
2. :meth:`AtenProgram.propagate` runs the program on fake tensors (the meta
   kernels, with the CPU's strides) from the declared input and weight
   specs (shapes and dtypes, no data, no memory): an operator that cannot run on those shapes, a view whose extent
   leaves its base's storage, intermediates whose live bytes exceed the
   worker's bound, or outputs other than the declared ones refuse the
   program. Operators whose output shape depends on data have no meta
   kernel and are refused here;
3. :meth:`AtenProgram.run` calls the operators in order on real tensors
   (the kernels eager PyTorch runs), checks that each result has the shape
   and dtype the propagation predicted, frees each value after its last
   use, and stops at the next step once a :class:`RunControl`'s deadline
   passes or it is cancelled.
"""

from __future__ import annotations

import json
import logging
import math
import operator
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tiercut.errors import TiercutError
from tiercut.runtime.allowlist import (
    ALLOWED_OPERATORS,
    ARGUMENT_CONSTRAINTS,
    COMMON_CONSTRAINTS,
    SAFE_STRING_ARGUMENTS,
)
from tiercut.runtime.codec import CodecError, torch_dtype

PROGRAM_SCHEMA_VERSION = 1
#: checking a program costs about 0.2 ms per node here (a whole zoo model has 20 (AlexNet) to 552 (DenseNet-121))
MAX_PROGRAM_NODES = 50_000
_MAX_JSON_DEPTH = 64
_MAX_NAME_CHARS = 256
#: device types a program may name (the worker executes on the CPU)
PROGRAM_DEVICES = ("cpu",)


class ArtifactError(TiercutError):
    """A program or bundle that cannot be built, or received bytes that are not a valid one."""


class RunStoppedError(ArtifactError):
    """A run stopped at a step boundary: its deadline passed or it was cancelled."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class _RefusedMetaFilter(logging.Filter):
    """Drop fake-tensor's own report of a meta kernel refusing its arguments: here that is a refused program."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("failed while attempting to run meta")


_FAKE_TENSOR_LOG = logging.getLogger("torch._subclasses.fake_tensor")
_FAKE_TENSOR_FILTER = _RefusedMetaFilter()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


# --------------------------------------------------------------------- operators
def check_operator(name: str) -> Any:
    """The operator a program names, if it is on the allow-list; an :class:`ArtifactError` otherwise."""
    import torch

    if not isinstance(name, str) or name not in ALLOWED_OPERATORS:
        shown = name if isinstance(name, str) else type(name).__name__
        raise ArtifactError(f"program calls {shown!r:.80}, which is not on this worker's allow-list of ATen operators")
    if name == "getitem":
        return operator.getitem
    _, op_name, overload = name.split(".")
    packet = getattr(torch.ops.aten, op_name, None)
    if packet is None or overload not in packet.overloads():
        raise ArtifactError(f"program calls {name}, which this torch does not have")
    target = getattr(packet, overload)
    if any(a.alias_info is not None and a.alias_info.is_write for a in target._schema.arguments):
        raise ArtifactError(f"program calls {name}, which writes into an argument; a worker runs functional operators only")
    return target


class _Ref:
    """A reference to a value defined earlier in the program (an input, a weight or a node)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"_Ref({self.name!r})"


def _decode_arg(value: Any, defined: set[str], depth: int = 0) -> Any:
    import torch

    if depth > _MAX_JSON_DEPTH:
        raise ArtifactError("program argument nests too deep")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict) and len(value) == 1:
        ((key, inner),) = value.items()
        if key == "ref":
            if not isinstance(inner, str) or inner not in defined:
                raise ArtifactError(f"program refers to {inner!r:.60} before it is defined")
            return _Ref(inner)
        if key == "list":
            if not isinstance(inner, list):
                raise ArtifactError("program list argument is not a list")
            return [_decode_arg(v, defined, depth + 1) for v in inner]
        if key == "float" and inner in ("inf", "-inf", "nan"):
            return float(inner)
        if key == "dtype":
            try:
                return torch_dtype(inner)
            except CodecError as exc:
                raise ArtifactError(str(exc)) from None
        if key == "device":
            if not isinstance(inner, str) or inner not in PROGRAM_DEVICES:
                raise ArtifactError(
                    f"program names device {inner!r:.40}; this worker runs programs on {', '.join(PROGRAM_DEVICES)}"
                )
            return torch.device(inner)
        if key == "layout" and inner == "strided":
            return torch.strided
        if key == "memory_format" and inner in ("contiguous_format", "channels_last", "preserve_format", "channels_last_3d"):
            return getattr(torch, inner)
    raise ArtifactError(f"program argument {value!r:.60} is not a known kind of value")


def _refs(value: Any) -> list[str]:
    if isinstance(value, _Ref):
        return [value.name]
    if isinstance(value, list):
        return [name for item in value for name in _refs(item)]
    return []


def _has_ref(value: Any) -> bool:
    return isinstance(value, _Ref) or (isinstance(value, list) and any(_has_ref(v) for v in value))


def _resolve(value: Any, env: Mapping[str, Any]) -> Any:
    if isinstance(value, _Ref):
        return env[value.name]
    if isinstance(value, list):
        return [_resolve(v, env) for v in value]
    return value


def _check_arguments(name: str, op: str, target: Any, args: list[Any], kwargs: dict[str, Any]) -> None:
    """Arity, keyword names, string options and pinned values of one call."""
    if target is operator.getitem:
        if len(args) != 2 or kwargs or not isinstance(args[0], _Ref) or not isinstance(args[1], int) or isinstance(args[1], bool):
            raise ArtifactError(f"program node {name!r} indexes something other than an earlier tuple with an integer")
        return
    schema = target._schema
    positional = [a for a in schema.arguments if not a.kwarg_only]
    if len(args) > len(positional):
        raise ArtifactError(f"program node {name!r} gives {op} {len(args)} positional arguments; it takes {len(positional)}")
    bound: dict[str, Any] = {a.name: v for a, v in zip(positional, args)}
    known = {a.name for a in schema.arguments}
    for key, value in kwargs.items():
        if key not in known or key in bound:
            raise ArtifactError(f"program node {name!r} gives {op} an unknown or repeated argument {key!r:.40}")
        bound[key] = value
    for key, value in bound.items():
        if isinstance(value, str) and key not in SAFE_STRING_ARGUMENTS:
            raise ArtifactError(f"program node {name!r} passes a string as {op}'s argument {key!r}; a worker refuses it")
    pinned = {**{k: v for k, v in COMMON_CONSTRAINTS.items() if k in known}, **ARGUMENT_CONSTRAINTS.get(op, {})}
    defaults = {a.name: a.default_value for a in schema.arguments if a.has_default_value()}
    for key, allowed in pinned.items():
        value = bound.get(key, defaults.get(key))
        choices = allowed if isinstance(allowed, tuple) else (allowed,)
        if not any(_same_constant(value, choice) for choice in choices):
            raise ArtifactError(
                f"program node {name!r} calls {op} with {key}={value!r:.40}; a worker runs it only with {allowed!r}"
            )


def _same_constant(value: Any, expected: Any) -> bool:
    if value is None or expected is None or isinstance(expected, bool) or isinstance(value, bool):
        return value is expected
    return isinstance(value, (int, float)) and isinstance(expected, (int, float)) and value == expected


# --------------------------------------------------------------------- signatures
@dataclass(frozen=True)
class TensorSignature:
    """Shape and dtype of a tensor a step produces (predicted on the meta device)."""

    shape: tuple[int, ...]
    dtype: Any

    def conforms(self, value: Any) -> bool:
        return getattr(value, "dtype", None) == self.dtype and getattr(value, "shape", None) == self.shape


@dataclass(frozen=True)
class SequenceSignature:
    """A tuple or list result: its length (each item is checked where a ``getitem`` reads it).

    Items nothing reads are not compared: meta kernels may describe them
    differently (``_native_batch_norm_legit_no_training``'s saved statistics
    are empty on the CPU and per-channel on the meta device).
    """

    length: int


def _signature(value: Any) -> Any:
    import torch

    if isinstance(value, torch.Tensor):
        return TensorSignature(tuple(value.shape), value.dtype)
    if isinstance(value, (tuple, list)):
        return SequenceSignature(len(value))
    return type(value)


def _conforms(value: Any, signature: Any) -> bool:
    if isinstance(signature, TensorSignature):
        return signature.conforms(value)
    if isinstance(signature, SequenceSignature):
        return isinstance(value, (tuple, list)) and len(value) == signature.length
    return type(value) is signature


def _tensors(value: Any) -> list[Any]:
    import torch

    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for item in value for t in _tensors(item)]
    return []


# --------------------------------------------------------------------- the program
@dataclass
class RunControl:
    """Stops a run at the next step: a deadline (``time.monotonic()`` seconds) or a cancellation.

    Attributes:
        deadline_s: the monotonic time after which the run stops (inf: none).
        cancelled: set it to stop the run (the caller went away).
        steps_done: steps the run has completed (updated as it goes).
    """

    deadline_s: float = math.inf
    cancelled: threading.Event = field(default_factory=threading.Event)
    steps_done: int = 0

    def check(self, node: str) -> None:
        if self.cancelled.is_set():
            raise RunStoppedError(f"the run was cancelled before node {node!r}", "cancelled")
        if time.monotonic() > self.deadline_s:
            raise RunStoppedError(f"the query's deadline passed before node {node!r}; the run stopped there", "deadline")


@dataclass(frozen=True, eq=False)
class Step:
    """One call of a parsed program."""

    name: str
    op: str
    target: Any
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    free_after: tuple[str, ...]
    resolve: bool


@dataclass(frozen=True)
class Propagation:
    """What the meta-device run of a program found.

    Attributes:
        signatures: per step, the shape and dtype of what it returns (propagated).
        peak_bytes: the largest bytes of intermediates alive at once.
        peak_node: the node at which that peak is reached.
    """

    signatures: tuple[Any, ...]
    peak_bytes: int
    peak_node: str


@dataclass(frozen=True, eq=False)
class AtenProgram:
    """A parsed, checked aten-json program (see the module docstring)."""

    inputs: tuple[str, ...]
    weights: tuple[str, ...]
    steps: tuple[Step, ...]
    outputs: tuple[_Ref, ...]

    @classmethod
    def parse(cls, data: bytes) -> AtenProgram:
        try:
            program = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise ArtifactError("aten-json program is not valid JSON") from None
        if not isinstance(program, dict) or program.get("schema_version") != PROGRAM_SCHEMA_VERSION:
            raise ArtifactError(f"aten-json program is not schema version {PROGRAM_SCHEMA_VERSION}")
        inputs = [_name(n) for n in _list(program.get("inputs"))]
        weight_names = [_name(n) for n in _list(program.get("weights"))]
        raw_nodes = _list(program.get("nodes"))
        if len(raw_nodes) > MAX_PROGRAM_NODES:
            raise ArtifactError(f"aten-json program has {len(raw_nodes)} nodes, more than {MAX_PROGRAM_NODES}")
        defined: set[str] = set()
        for name in inputs + weight_names:
            if name in defined:
                raise ArtifactError(f"aten-json program defines {name!r} twice")
            defined.add(name)
        parsed: list[tuple[str, str, Any, list[Any], dict[str, Any]]] = []
        for raw in raw_nodes:
            if not isinstance(raw, dict):
                raise ArtifactError("aten-json program node is not a mapping")
            name = _name(raw.get("name"))
            if name in defined:
                raise ArtifactError(f"aten-json program defines {name!r} twice")
            op = raw.get("op")
            target = check_operator(op)
            raw_kwargs = raw.get("kwargs", {})
            if not isinstance(raw_kwargs, dict):
                raise ArtifactError(f"program node {name!r} has keyword arguments that are not a mapping")
            args = [_decode_arg(a, defined) for a in _list(raw.get("args", []))]
            kwargs = {_name(k): _decode_arg(v, defined) for k, v in raw_kwargs.items()}
            _check_arguments(name, op, target, args, kwargs)
            defined.add(name)
            parsed.append((name, op, target, args, kwargs))
        outputs = []
        for raw in _list(program.get("outputs")):
            output = _decode_arg(raw, defined)
            if not isinstance(output, _Ref):
                raise ArtifactError("aten-json program returns something other than a value it defines")
            outputs.append(output)
        # liveness: each intermediate is freed after its last use
        last_use: dict[str, int] = {}
        for i, (_, _, _, args, kwargs) in enumerate(parsed):
            for ref in _refs(args) + _refs(list(kwargs.values())):
                last_use[ref] = i
        keep = {o.name for o in outputs} | set(weight_names)
        frees: list[list[str]] = [[] for _ in parsed]
        for ref, i in last_use.items():
            if ref not in keep:
                frees[i].append(ref)
        for i, (name, *_) in enumerate(parsed):  # a value nothing reads is freed at once
            if name not in last_use and name not in keep:
                frees[i].append(name)
        steps = tuple(
            Step(
                name,
                op,
                target,
                tuple(args),
                kwargs,
                tuple(frees[i]),
                any(_has_ref(a) for a in args) or any(_has_ref(v) for v in kwargs.values()),
            )
            for i, (name, op, target, args, kwargs) in enumerate(parsed)
        )
        return cls(tuple(inputs), tuple(weight_names), steps, tuple(outputs))

    # ----------------------------------------------------------- load-time check
    def propagate(
        self,
        input_specs: Sequence[tuple[tuple[int, ...], str]],
        weight_specs: Mapping[str, tuple[tuple[int, ...], str]],
        output_specs: Sequence[tuple[tuple[int, ...], str]],
        *,
        max_run_bytes: int,
    ) -> Propagation:
        """Run the program on fake tensors from (shape, dtype) specs; refuse what must not run.

        Fake tensors (``FakeTensorMode``, no fallback to real kernels) carry
        shape, dtype, strides and storage but no data: the meta kernels run,
        with the strides the CPU kernels produce (plain meta tensors differ,
        e.g. after CPU attention). Raises :class:`ArtifactError` naming the
        node if an operator fails on the declared shapes or needs data, a
        view reaches outside its base, the live intermediates exceed
        ``max_run_bytes``, or the outputs are not the declared ones.
        """
        import torch
        from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode

        if len(input_specs) != len(self.inputs):
            raise ArtifactError(f"program takes {len(self.inputs)} tensors but {len(input_specs)} are declared")
        if set(weight_specs) != set(self.weights):
            raise ArtifactError("program names other weights than its manifest declares")
        if _FAKE_TENSOR_FILTER not in _FAKE_TENSOR_LOG.filters:  # a hostile program must not flood the worker's log
            _FAKE_TENSOR_LOG.addFilter(_FAKE_TENSOR_FILTER)
        mode = FakeTensorMode(allow_fallback_kernels=False, allow_non_fake_inputs=False)
        env: dict[str, Any] = {}
        storage_bytes: dict[int, int] = {}  # nbytes of every storage when first seen (a kernel may not grow it later)
        seen: list[Any] = []  # every fake tensor stays referenced, so no storage address is reused during the pass
        external: set[int] = set()
        storage_refs: dict[int, int] = {}
        holds: dict[str, list[int]] = {}
        live = peak = 0
        peak_node = ""
        signatures = []
        with mode, torch.no_grad():
            for name, (shape, dtype) in [*zip(self.inputs, input_specs), *((n, weight_specs[n]) for n in self.weights)]:
                env[name] = tensor = torch.empty(shape, dtype=torch_dtype(dtype))
                seen.append(tensor)
                key = _storage_key(tensor)
                external.add(key)
                storage_bytes[key] = tensor.untyped_storage().nbytes()
            for step in self.steps:
                args = [_resolve(a, env) for a in step.args]
                kwargs = {k: _resolve(v, env) for k, v in step.kwargs.items()}
                if step.target is operator.getitem:
                    container, index = args
                    if not isinstance(container, (tuple, list)) or not -len(container) <= index < len(container):
                        raise ArtifactError(f"program node {step.name!r} indexes item {index} of something that has no such item")
                try:
                    result = step.target(*args, **kwargs)
                except Exception as exc:  # the operator refuses these shapes or needs data: refuse the program
                    raise ArtifactError(
                        f"program node {step.name!r} ({step.op}) cannot run on the declared shapes: {_first_line(exc)}"
                    ) from None
                keys: list[int] = []
                seen.append(result)
                for tensor in _tensors(result):
                    if not isinstance(tensor, FakeTensor):
                        raise ArtifactError(f"program node {step.name!r} ({step.op}) makes a tensor outside the propagation")
                    key = _storage_key(tensor)
                    if key not in storage_bytes:
                        storage_bytes[key] = tensor.untyped_storage().nbytes()
                    _check_extent(step, tensor, storage_bytes[key])
                    if key in external:
                        continue
                    if key not in storage_refs:
                        live += storage_bytes[key]
                    storage_refs[key] = storage_refs.get(key, 0) + 1
                    keys.append(key)
                holds[step.name] = keys
                if live > peak:
                    peak, peak_node = live, step.name
                if live > max_run_bytes:
                    raise ArtifactError(
                        f"program needs {live} bytes of intermediates at node {step.name!r} ({step.op}), more than this "
                        f"worker's bound of {max_run_bytes} bytes (--max-run-bytes)"
                    )
                env[step.name] = result
                signatures.append(_signature(result))
                for name in step.free_after:
                    env.pop(name, None)
                    for key in holds.pop(name, ()):
                        storage_refs[key] -= 1
                        if storage_refs[key] == 0:
                            del storage_refs[key]
                            live -= storage_bytes[key]
            outputs = [env[o.name] for o in self.outputs]
        if len(outputs) != len(output_specs):
            raise ArtifactError(f"program returns {len(outputs)} values but its manifest declares {len(output_specs)}")
        for i, (value, (shape, dtype)) in enumerate(zip(outputs, output_specs)):
            if not isinstance(value, torch.Tensor) or tuple(value.shape) != tuple(shape) or value.dtype != torch_dtype(dtype):
                got = (
                    f"{str(value.dtype).removeprefix('torch.')} {list(value.shape)}"
                    if isinstance(value, torch.Tensor)
                    else type(value).__name__
                )
                raise ArtifactError(f"program output {i} is {got}, not the declared {dtype} {list(shape)}")
        return Propagation(tuple(signatures), peak, peak_node)

    # ----------------------------------------------------------- execution
    def run(
        self,
        leaves: Sequence[Any],
        weights: Mapping[str, Any],
        signatures: Sequence[Any],
        control: RunControl | None = None,
    ) -> list[Any]:
        """Run on real tensors (inputs in order, weights by program name); returns the outputs.

        Every step's result must match ``signatures`` (from :meth:`propagate`);
        ``control`` stops the run at a step boundary (:class:`RunStoppedError`).
        """
        import torch

        env: dict[str, Any] = dict(zip(self.inputs, leaves))
        env.update(weights)
        with torch.no_grad():
            for step, signature in zip(self.steps, signatures):
                if control is not None:
                    control.check(step.name)
                if step.resolve:
                    args = [_resolve(a, env) for a in step.args]
                    kwargs = {k: _resolve(v, env) for k, v in step.kwargs.items()}
                else:
                    args, kwargs = list(step.args), dict(step.kwargs)
                try:
                    result = step.target(*args, **kwargs)
                except Exception as exc:  # a kernel's own check (an index out of range...): this query fails
                    raise ArtifactError(f"program node {step.name!r} ({step.op}) failed: {_first_line(exc)}") from None
                if not _conforms(result, signature):
                    raise ArtifactError(
                        f"program node {step.name!r} ({step.op}) returned {_signature(result)!r:.120}, not the "
                        f"{signature!r:.120} propagated at load; the run stops"
                    )
                env[step.name] = result
                for name in step.free_after:
                    env.pop(name, None)
                if control is not None:
                    control.steps_done += 1
        return [env[o.name] for o in self.outputs]


def _storage_key(tensor: Any) -> int:
    return int(tensor.untyped_storage()._cdata)


def _check_extent(step: Step, tensor: Any, storage_nbytes: int) -> None:
    """Refuse a tensor whose elements reach outside its storage (a view beyond its base)."""
    if tensor.numel() == 0:
        return
    offset = tensor.storage_offset()
    strides = tensor.stride()
    if offset < 0 or any(s < 0 for s in strides):
        raise ArtifactError(f"program node {step.name!r} ({step.op}) makes a view with a negative offset or stride")
    last = offset + sum((size - 1) * stride for size, stride in zip(tensor.shape, strides))
    if (last + 1) * tensor.element_size() > storage_nbytes:
        raise ArtifactError(
            f"program node {step.name!r} ({step.op}) makes a view reaching outside its base "
            f"(element {last} of a storage of {storage_nbytes} bytes); a worker refuses it"
        )


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > _MAX_NAME_CHARS:
        raise ArtifactError(
            f"aten-json program holds a name {value!r:.60} that is not a string of 1..{_MAX_NAME_CHARS} characters"
        )
    return value


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ArtifactError(f"aten-json program holds a {type(value).__name__} where a list belongs")
    return value


__all__ = [
    "MAX_PROGRAM_NODES",
    "PROGRAM_SCHEMA_VERSION",
    "ArtifactError",
    "AtenProgram",
    "Propagation",
    "RunControl",
    "RunStoppedError",
    "TensorSignature",
    "check_operator",
]
