"""The worker's interpreter: the allow-list, the load-time propagation on fake tensors, and runs that stop.

Programs here are written by hand (:mod:`runtime_programs`), as an attacker
would write them; the exporter's own programs are checked in
``test_runtime_artifact.py``. The property test draws random operator
sequences from every registered ATen overload: each program is refused at
load, or runs with outputs equal to the same operators called eagerly.
"""

from __future__ import annotations

import functools
import math
import operator
import re

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from runtime_programs import hand_program, node, ref
from tiercut.graph import capture_model
from tiercut.graph.split import split_by_placement
from tiercut.profile.measure import record_fx_values
from tiercut.runtime.allowlist import ALLOWED_OPERATORS, ARGUMENT_CONSTRAINTS, ONNX_ALLOWED_OPS
from tiercut.runtime.artifact import ArtifactError, build_program, load_program
from tiercut.runtime.interpreter import RunControl, RunStoppedError, check_operator

X = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4) / 7
W = torch.linspace(-1, 1, 12).reshape(3, 4)


def _load(nodes, outputs, specs, *, inputs=None, weights=None, **options):
    program, by_digest = hand_program(nodes, inputs or {"x": X}, weights or {"w": W}, outputs, specs)
    return program, load_program(program, by_digest, **options)


# ----------------------------------------------------------------- the allow-list itself
def test_every_allowed_operator_exists_and_writes_into_nothing():
    for name in ALLOWED_OPERATORS:
        target = check_operator(name)
        if target is not operator.getitem:
            assert not any(a.alias_info is not None and a.alias_info.is_write for a in target._schema.arguments), name
    for name, pinned in ARGUMENT_CONSTRAINTS.items():
        schema_names = {a.name for a in check_operator(name)._schema.arguments}
        assert set(pinned) <= schema_names, name


def test_the_allow_list_holds_no_aliasing_storage_random_or_uninitialised_operator():
    forbidden = re.compile(r"as_strided|_reshape_alias|\bset_|resize|_unsafe|from_file|index_put|empty|rand|bernoulli|"
                           r"dropout|normal|multinomial|_local_scalar|nonzero|unique|masked_select|\.out$")  # fmt: skip
    assert not [name for name in ALLOWED_OPERATORS if forbidden.search(name)]
    assert "If" not in ONNX_ALLOWED_OPS and "Loop" not in ONNX_ALLOWED_OPS


def test_an_in_place_operator_is_refused_even_if_someone_lists_it(monkeypatch):
    import tiercut.runtime.interpreter as interpreter

    monkeypatch.setattr(interpreter, "ALLOWED_OPERATORS", ALLOWED_OPERATORS | {"aten.relu_.default"})
    with pytest.raises(ArtifactError, match="writes into an argument"):
        interpreter.check_operator("aten.relu_.default")


# ----------------------------------------------------------------- what the propagation refuses
def test_a_view_reaching_outside_its_base_is_refused():
    # view() checks its size; narrow/slice clamp; a view of more elements than the base has cannot be made
    with pytest.raises(ArtifactError, match="cannot run on the declared shapes"):
        _load([node("v", "aten.view.default", ref("x"), {"list": [100]})], ["v"], [((100,), torch.float32)])
    with pytest.raises(ArtifactError, match="cannot run on the declared shapes"):
        _load([node("s", "aten.select.int", ref("x"), 0, 5)], ["s"], [((3, 4), torch.float32)])


def test_the_extent_check_refuses_a_view_beyond_its_storage(monkeypatch):
    """A view kernel that failed to check its bounds would still be caught (as_strided stands in for one)."""
    import tiercut.runtime.interpreter as interpreter

    monkeypatch.setattr(interpreter, "ALLOWED_OPERATORS", ALLOWED_OPERATORS | {"aten.as_strided.default"})
    nodes = [node("peek", "aten.as_strided.default", ref("w"), {"list": [64]}, {"list": [1]}, 0)]
    with pytest.raises(ArtifactError, match="reaching outside its base"):
        _load(nodes, ["peek"], [((64,), torch.float32)])
    inside = [node("ok", "aten.as_strided.default", ref("w"), {"list": [6]}, {"list": [2]}, 0)]
    _, loaded = _load(inside, ["ok"], [((6,), torch.float32)])
    assert torch.equal(loaded.run({"x": X})["ok"], W.reshape(-1)[::2])


def test_intermediates_beyond_the_memory_bound_are_refused_before_anything_is_allocated():
    huge = [
        node("e", "aten.expand.default", ref("w"), {"list": [1 << 20, 1 << 10, 3, 4]}),  # a view: no memory
        node("c", "aten.clone.default", ref("e")),  # 48 GiB if it ran
        node("s", "aten.sum.default", ref("c")),
    ]
    with pytest.raises(ArtifactError, match=r"needs \d+ bytes of intermediates at node 'c'.*--max-run-bytes"):
        _load(huge, ["s"], [((), torch.float32)])
    small = [node("a", "aten.add.Tensor", ref("x"), ref("x")), node("b", "aten.mul.Tensor", ref("a"), ref("a"))]
    with pytest.raises(ArtifactError, match="intermediates"):
        _load(small, ["b"], [((2, 3, 4), torch.float32)], max_run_bytes=100)
    _, loaded = _load(small, ["b"], [((2, 3, 4), torch.float32)], max_run_bytes=2 * X.numel() * 4)
    assert loaded.peak_bytes == 2 * X.numel() * 4  # a and b alive together; a freed after b


@pytest.mark.parametrize(
    "specs, message",
    [
        ([((2, 3, 5), torch.float32)], "not the declared"),
        ([((2, 3, 4), torch.float64)], "not the declared"),
        ([((2, 3, 4), torch.float32), ((1,), torch.float32)], "declares 2"),
    ],
)
def test_declared_outputs_must_agree_with_the_propagation(specs, message):
    with pytest.raises(ArtifactError, match=message):
        _load([node("r", "aten.relu.default", ref("x"))], ["r"], specs)


def test_operators_whose_shapes_depend_on_data_are_refused(monkeypatch):
    import tiercut.runtime.interpreter as interpreter

    mask = [node("m", "aten.gt.Scalar", ref("x"), 0.5), node("i", "aten.index.Tensor", ref("x"), {"list": [ref("m")]})]
    with pytest.raises(ArtifactError, match="cannot run on the declared shapes"):
        _load(mask, ["i"], [((3,), torch.float32)])
    monkeypatch.setattr(interpreter, "ALLOWED_OPERATORS", ALLOWED_OPERATORS | {"aten.nonzero.default"})
    with pytest.raises(ArtifactError, match="cannot run on the declared shapes"):
        _load([node("n", "aten.nonzero.default", ref("x"))], ["n"], [((3, 3), torch.int64)])


@pytest.mark.parametrize(
    "nodes, message",
    [
        ([node("a", "aten.scaled_dot_product_attention.default", ref("x"), ref("x"), ref("x"), None, 0.5)], "dropout_p"),
        ([node("a", "aten.scaled_dot_product_attention.default", ref("x"), ref("x"), ref("x"), dropout_p=0.1)], "dropout_p"),
        ([node("a", "aten.zeros.default", {"list": [2]}, pin_memory=True)], "pin_memory"),
        ([node("a", "aten.gelu.default", ref("x"), "none", "extra")], "positional arguments"),
        ([node("a", "aten.gelu.default", ref("x"), bogus=1)], "unknown or repeated argument"),
        ([node("a", "aten.add.Tensor", ref("x"), "/etc/passwd")], "passes a string"),
        ([node("a", "getitem", ref("x"), 0)], "indexes item"),
        ([node("a", "aten.max.dim", ref("x"), 0), node("b", "getitem", ref("a"), 7)], "indexes item 7"),
        ([node("a", "getitem", ref("x"), "0")], "indexes something other"),
        ([node("a", "aten.relu.default", {"ref": "x", "extra": 1})], "not a known kind"),
        ([node("a", "aten.relu.default", ref("x")), node("a", "aten.relu.default", ref("x"))], "twice"),
    ],
)
def test_malformed_or_pinned_calls_are_refused(nodes, message):
    with pytest.raises(ArtifactError, match=message):
        _load(nodes, [nodes[-1]["name"]], [((2, 3, 4), torch.float32)])


def test_a_run_checks_each_step_against_the_propagation():
    program, weights = hand_program(
        [node("r", "aten.relu.default", ref("x"))], {"x": X}, {"w": W}, ["r"], [((2, 3, 4), torch.float32)]
    )
    loaded = load_program(program, weights)
    assert torch.equal(loaded.run({"x": X})["r"], torch.relu(X))
    with pytest.raises(ArtifactError, match="exported for"):
        loaded.run({"x": X.double()})
    with pytest.raises(ArtifactError, match="exported for"):
        loaded.run({"x": X[:1]})
    strided = X.transpose(0, 2).contiguous().transpose(0, 2)  # same shape, other strides: made contiguous
    assert torch.equal(loaded.run({"x": strided})["r"], torch.relu(X))


def test_a_run_stops_at_the_next_step_once_its_deadline_passes_or_it_is_cancelled():
    chain = [node("s0", "aten.mul.Tensor", ref("x"), 1.0)] + [
        node(f"s{i}", "aten.mul.Tensor", ref(f"s{i - 1}"), 1.0) for i in range(1, 50)
    ]
    program, weights = hand_program(chain, {"x": X}, {}, ["s49"], [((2, 3, 4), torch.float32)])
    loaded = load_program(program, weights)
    expired = RunControl(deadline_s=0.0)
    with pytest.raises(RunStoppedError, match="deadline passed before node 's0'") as info:
        loaded.run({"x": X}, expired)
    assert info.value.reason == "deadline" and expired.steps_done == 0
    cancelled = RunControl()
    cancelled.cancelled.set()
    with pytest.raises(RunStoppedError, match="cancelled"):
        loaded.run({"x": X}, cancelled)
    finished = RunControl(deadline_s=math.inf)
    assert torch.equal(loaded.run({"x": X}, finished)["s49"], X) and finished.steps_done == 50


# ----------------------------------------------------------------- the corpus: exported, checked, exact
class _Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(8, 2, batch_first=True)
        self.norm = nn.LayerNorm(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.attention(x, x, x, need_weights=False)[0] + x)


class _Recurrent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(8, 8, batch_first=True, num_layers=2, dropout=0.5)
        self.gru = nn.GRU(8, 8, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gru(self.lstm(x)[0])[0]


def _conv_block() -> nn.Module:
    return nn.Sequential(nn.Conv1d(3, 4, 3, padding=1), nn.InstanceNorm1d(4), nn.GELU(), nn.AdaptiveMaxPool1d(2))


def _transposed_block() -> nn.Module:
    return nn.Sequential(nn.ConvTranspose2d(3, 4, 3, stride=2), nn.GroupNorm(2, 4), nn.Hardswish(), nn.PixelShuffle(2))


def _resampling_block() -> nn.Module:
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear"), nn.ReflectionPad2d(1), nn.AvgPool2d(2))


def _attention_block() -> nn.Module:
    return nn.Sequential(_Attention(), nn.Dropout(0.3), nn.Softmax(-1))


@pytest.mark.parametrize(
    "make, shape",
    [
        (_conv_block, (2, 3, 8)),
        (_transposed_block, (1, 3, 4, 4)),
        (_resampling_block, (1, 3, 4, 4)),
        (_attention_block, (2, 5, 8)),
        (_Recurrent, (2, 5, 8)),
    ],
)
@pytest.mark.slow
def test_common_layers_export_to_programs_a_worker_accepts_and_that_answer_like_the_model(make, shape):
    torch.manual_seed(0)
    captured = capture_model(make().eval(), shape)
    nodes = [n.name for n in captured.graph.nodes]
    split = split_by_placement(captured, {n: ("a" if i % 2 else "b") for i, n in enumerate(nodes)})
    values = record_fx_values(captured)
    x = torch.randn(*shape)
    got = split.input_spec.bind((x,))
    for partition in split.partitions:
        built = build_program(partition, {n: values[n] for n in partition.input_names})
        loaded = load_program(built.program, built.weights, max_run_bytes=16 << 20)
        got.update(loaded.run({n: got[n] for n in partition.input_names}))
    with torch.no_grad():  # exact but for multi-head attention, whose eager path is a fused kernel export does not take
        torch.testing.assert_close(split.output_spec.build(got), captured.graph_module(x), rtol=0, atol=1e-6)


# ----------------------------------------------------------------- random operator sequences
@functools.cache
def _all_overloads() -> tuple[str, ...]:
    names = []
    for op_name in dir(torch.ops.aten):
        packet = getattr(torch.ops.aten, op_name, None)
        if isinstance(packet, torch._ops.OpOverloadPacket):
            names += [f"aten.{op_name}.{overload}" for overload in packet.overloads()]
    return tuple(sorted(names))


_VALUES = {
    "x": torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(1)),
    "y": torch.randn(4, 4, generator=torch.Generator().manual_seed(2)),
    "i": torch.randint(0, 3, (2, 4), generator=torch.Generator().manual_seed(3)),
}
_WEIGHTS = {"w": torch.randn(3, 4, generator=torch.Generator().manual_seed(4))}
_STRINGS = ("none", "tanh", "floor", "trunc", "mean", "sum", "constant", "reflect", "bilinear", "ij", "i,i->", "left")
_DTYPES = ("float32", "float64", "int64", "int32", "bool", "float16")


def _argument(draw, kind: str, name: str, refs: list[str]):
    small_int = st.integers(-2, 4)
    if name == "dtype" and "int" in kind:
        return draw(st.sampled_from([None, *({"dtype": d} for d in _DTYPES)]))
    if name in ("layout", "memory_format", "device", "generator", "pin_memory"):
        return None
    optional = kind.startswith("Optional[")
    inner = kind[len("Optional[") : -1] if optional else kind
    if optional and draw(st.booleans()):
        return None
    if inner == "Tensor":
        return ref(draw(st.sampled_from(refs)))
    if inner in ("List[Tensor]", "List[Optional[Tensor]]"):
        return {"list": [ref(r) for r in draw(st.lists(st.sampled_from(refs), min_size=1, max_size=3))]}
    if inner == "int":
        return draw(small_int)
    if inner == "List[int]":
        return {"list": draw(st.lists(small_int, max_size=4))}
    if inner in ("float", "number"):
        return draw(st.sampled_from([0.0, 0.5, -1.0, 2.0, 1e-5, 3]))
    if inner == "List[float]":
        return {"list": draw(st.lists(st.sampled_from([0.5, 1.0, 2.0]), max_size=3))}
    if inner == "bool":
        return draw(st.booleans())
    if inner == "List[bool]":
        return {"list": draw(st.lists(st.booleans(), min_size=1, max_size=3))}
    if inner == "str":
        return draw(st.sampled_from(_STRINGS))
    return None  # a kind programs cannot carry: the operator must refuse None or the program is refused


@st.composite
def _programs(draw):
    every = _all_overloads()
    allowed = sorted(ALLOWED_OPERATORS - {"getitem"})
    refs = [*_VALUES, *_WEIGHTS]
    nodes = []
    for index in range(draw(st.integers(1, 3))):
        op = draw(st.one_of(st.sampled_from(allowed), st.sampled_from(every)))
        _, op_name, overload = op.split(".")
        schema = getattr(getattr(torch.ops.aten, op_name), overload)._schema
        args, kwargs = [], {}
        by_name = False  # once a positional argument is left to its default, the later ones go by name
        for argument in schema.arguments:
            if argument.has_default_value() and draw(st.booleans()):
                by_name = True
                continue
            value = _argument(draw, str(argument.type), argument.name, refs)
            if argument.kwarg_only or by_name:
                kwargs[argument.name] = value
            else:
                args.append(value)
        name = f"n{index}"
        nodes.append(node(name, op, *args, **kwargs))
        refs.append(name)
    return nodes


def _eager(nodes):
    """The reference: the same operators called eagerly on the same tensors (allow-listed programs only)."""
    env = {**_VALUES, **_WEIGHTS}

    def resolve(value):
        if isinstance(value, dict) and "ref" in value:
            return env[value["ref"]]
        if isinstance(value, dict) and "list" in value:
            return [resolve(v) for v in value["list"]]
        if isinstance(value, dict) and "dtype" in value:
            return getattr(torch, value["dtype"])
        return value

    with torch.no_grad():
        for n in nodes:
            _, op_name, overload = n["op"].split(".")
            target = getattr(getattr(torch.ops.aten, op_name), overload)
            env[n["name"]] = target(*[resolve(a) for a in n["args"]], **{k: resolve(v) for k, v in n["kwargs"].items()})
    return env[nodes[-1]["name"]]


def _same(got, expected) -> bool:
    if got.shape != expected.shape or got.dtype != expected.dtype:
        return False
    if got.is_floating_point() or got.is_complex():
        return bool(torch.equal(torch.nan_to_num(got, 0.5, 1.5, -1.5), torch.nan_to_num(expected, 0.5, 1.5, -1.5)))
    return bool(torch.equal(got, expected))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(_programs())
def test_random_operator_sequences_are_refused_at_load_or_answer_like_eager_pytorch(nodes):
    every_allowed = all(n["op"] in ALLOWED_OPERATORS for n in nodes)
    reference, reference_error = None, None
    if every_allowed:
        try:
            reference = _eager(nodes)
        except Exception as exc:  # the operators themselves refuse these arguments
            reference_error = exc
    declared = [] if not isinstance(reference, torch.Tensor) else [(tuple(reference.shape), reference.dtype)]
    outputs = [nodes[-1]["name"]] if declared else []
    try:
        program, weights = hand_program(nodes, _VALUES, _WEIGHTS, outputs, declared)
        loaded = load_program(program, weights, max_run_bytes=64 << 20)
    except ArtifactError:  # refused at load: the only other outcome allowed (any operator off the list refuses)
        return
    assert every_allowed, "a program calling an operator off the allow-list was accepted"
    try:
        got = loaded.run(dict(_VALUES))
    except ArtifactError:
        assert reference_error is not None, "the worker failed a program eager PyTorch runs"
        return
    assert reference_error is None, f"the worker ran a program eager PyTorch refuses ({reference_error})"
    if outputs:
        assert _same(got[outputs[0]], reference)
