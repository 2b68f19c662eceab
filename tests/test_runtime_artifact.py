"""Partitions as data: programs rebuilt on the worker without running code they carry."""

from __future__ import annotations

import json

import onnx
import pytest
import torch
from torch import nn

from tiercut.errors import TiercutError
from tiercut.graph import capture_model
from tiercut.graph.split import split_by_placement
from tiercut.profile.measure import record_fx_values
from tiercut.runtime.artifact import (
    ONNX_STORE_LOCATION,
    ArtifactError,
    PartitionBundle,
    PartitionProgram,
    build_program,
    check_operator,
    load_program,
    make_program,
    program_id,
    tensor_digest,
)


class ShapeGlue(nn.Module):
    """Ints, a torch.Size, and a (tensor, None) tuple cross partitions, as in ViT."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.norm = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 6 * 6, 5)
        self.token = nn.Parameter(torch.randn(1, 1, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        size = x.shape
        y = torch.relu(self.norm(self.conv(x)))
        pair = (y, None)
        z = pair[0].reshape(size[0], -1)
        out = self.fc(z)
        return torch.cat([self.token.expand(n, -1, -1), out.unsqueeze(1)], dim=1).sum(1)


def _capture(model: nn.Module, shape: tuple[int, ...]):
    torch.manual_seed(0)
    return capture_model(model.eval(), shape)


def _alternating(captured, period: int = 1) -> dict[str, str]:
    return {n.name: ("a" if (i // period) % 2 == 0 else "b") for i, n in enumerate(captured.graph.nodes)}


def _programs(captured, placement, fmt="aten-json"):
    split = split_by_placement(captured, placement)
    values = record_fx_values(captured)
    return split, values, [(p, build_program(p, {n: values[n] for n in p.input_names}, format=fmt)) for p in split.partitions]


def _run_remote(split, built, inputs):
    """Run every partition from its program (as a worker would), on received copies of the values."""
    values = split.input_spec.bind(inputs)
    for partition, program in built:
        bundle = PartitionBundle.from_bytes(PartitionBundle("p", partition.nodes, program.weights, (program.program,)).to_bytes())
        loaded = load_program(bundle.programs[0], bundle.weights)
        sent = {n: (v.clone() if isinstance(v, torch.Tensor) else v) for n, v in ((n, values[n]) for n in partition.input_names)}
        values.update(loaded.run(sent))
    return split.output_spec.build(values)


@pytest.mark.parametrize("period", [1, 2, 3])
@pytest.mark.slow
def test_aten_programs_reproduce_the_model_bit_for_bit_with_shape_glue_crossing(period):
    captured = _capture(ShapeGlue(), (2, 3, 6, 6))
    split, _, built = _programs(captured, _alternating(captured, period))
    assert len(split.partitions) > 2
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        expected = captured.graph_module(x)
    assert torch.equal(_run_remote(split, built, (x,)), expected)


@pytest.mark.slow
def test_resnet_partitions_are_exact_and_carry_their_weights_by_digest(capture_zoo):
    captured = capture_zoo("resnet18", "module", (1, 3, 32, 32))
    split, _, built = _programs(captured, _alternating(captured, 7))
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = captured.graph_module(x)
    assert torch.equal(_run_remote(split, built, (x,)), expected)
    for partition, program in built:
        manifest = program.program.manifest
        assert manifest.program_id == program_id(manifest, program.program.data)
        assert set(manifest.weights.values()) == set(program.weights)
        for digest, tensor in program.weights.items():
            assert tensor_digest(tensor) == digest
        assert sum(t.numel() * t.element_size() for t in program.weights.values()) >= partition.param_bytes * 0.99


def test_onnx_programs_run_in_onnxruntime_close_to_torch():
    captured = _capture(ShapeGlue(), (2, 3, 6, 6))
    split, _, built = _programs(captured, _alternating(captured, 2), fmt="onnx")
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        expected = captured.graph_module(x)
    assert torch.allclose(_run_remote(split, built, (x,)), expected, atol=1e-5)
    model = onnx.load_from_string(built[0][1].program.data)
    assert all(init.data_location == onnx.TensorProto.EXTERNAL for init in model.graph.initializer)


def test_programs_check_what_they_receive():
    captured = _capture(ShapeGlue(), (2, 3, 6, 6))
    _, values, built = _programs(captured, _alternating(captured, 1))
    glue = next((p, b) for p, b in built if any(isinstance(values[n], int) for n in p.input_names))
    partition, program = glue
    loaded = load_program(program.program, program.weights)
    good = {n: values[n] for n in partition.input_names}
    loaded.run(good)
    int_name = next(n for n in partition.input_names if isinstance(values[n], int))
    with pytest.raises(ArtifactError, match="structure or constants"):
        loaded.run({**good, int_name: values[int_name] + 1})
    tensor_part, tensor_program = next(
        (p, b) for p, b in built if any(isinstance(values[n], torch.Tensor) for n in p.input_names)
    )
    loaded = load_program(tensor_program.program, tensor_program.weights)
    name = next(n for n in tensor_part.input_names if isinstance(values[n], torch.Tensor))
    inputs = {n: values[n] for n in tensor_part.input_names}
    with pytest.raises(ArtifactError, match="exported for"):
        loaded.run({**inputs, name: torch.zeros(7, 7)})
    with pytest.raises(ArtifactError, match="was not sent"):
        loaded.run({k: v for k, v in inputs.items() if k != name})


# ----------------------------------------------------------------- what a worker refuses
def _one_program():
    captured = _capture(ShapeGlue(), (2, 3, 6, 6))
    _, _, built = _programs(captured, {n.name: "a" for n in captured.graph.nodes})
    return built[0][1]


def _forge(program, mutate) -> PartitionProgram:
    body = json.loads(program.program.data)
    mutate(body)
    return make_program(program.program.manifest, json.dumps(body).encode())


@pytest.mark.parametrize(
    "op",
    [
        "aten.from_file.default",
        "aten._print.default",
        "aten.as_strided.default",
        "aten.set_.source_Storage",
        "aten.resize_.default",
        "aten._unsafe_view.default",
        "aten.empty.memory_format",
        "aten.relu_.default",
        "aten.add.out",
        "prims.add.default",
        "builtins.eval",
        "os.system",
        "aten.__class__.default",
        "aten.no_such_op.default",
        "aten.add.no_such_overload",
    ],
)
def test_operators_outside_the_allow_list_are_refused_by_name(op):
    with pytest.raises(ArtifactError, match=r"not on this worker's allow-list") as info:
        check_operator(op)
    assert op in str(info.value)


def test_a_program_calling_a_forbidden_operator_is_refused_at_load():
    program = _one_program()

    def to_from_file(body):
        body["nodes"][0]["op"] = "aten.from_file.default"
        body["nodes"][0]["args"] = ["/etc/passwd"]

    with pytest.raises(ArtifactError, match=r"aten\.from_file\.default.*allow-list"):
        load_program(_forge(program, to_from_file), program.weights)


def test_a_program_writing_into_a_weight_is_refused():
    program = _one_program()

    def write_weight(body):
        weight = body["weights"][0]
        body["nodes"].insert(0, {"name": "poison", "op": "aten.t.default", "args": [{"ref": weight}], "kwargs": {}})
        body["nodes"].insert(1, {"name": "poison2", "op": "aten.mul_.Scalar", "args": [{"ref": "poison"}, 0.0], "kwargs": {}})

    with pytest.raises(ArtifactError, match=r"aten\.mul_\.Scalar.*allow-list"):
        load_program(_forge(program, write_weight), program.weights)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: b["nodes"][0].update(args=[{"ref": "later_node"}]), "before it is defined"),
        (lambda b: b["nodes"][0].update(args=[{"pickle": "x"}]), "not a known kind"),
        (lambda b: b["nodes"][0].update(args=[{"device": "file:///etc"}]), "runs programs on cpu"),
        (lambda b: b.update(schema_version=99), "schema version"),
        (lambda b: b["nodes"].append(dict(b["nodes"][0])), "twice"),
    ],
)
def test_malformed_programs_are_refused(mutate, message):
    program = _one_program()
    with pytest.raises(ArtifactError, match=message):
        load_program(_forge(program, mutate), program.weights)


def test_tampered_bytes_missing_or_wrong_weights_are_refused():
    program = _one_program()
    tampered = PartitionProgram(program.program.manifest, program.program.data.replace(b"aten", b"aTen", 1))
    with pytest.raises(ArtifactError, match="does not hash"):
        load_program(tampered, program.weights)
    some = next(iter(program.weights))
    with pytest.raises(ArtifactError, match="does not hold"):
        load_program(program.program, {d: t for d, t in program.weights.items() if d != some})
    with pytest.raises(ArtifactError, match="dtype or shape"):
        load_program(program.program, {**program.weights, some: torch.zeros(1, 2, 3, 4, 5)})


def test_onnx_programs_reading_files_or_custom_domains_are_refused():
    captured = _capture(ShapeGlue(), (2, 3, 6, 6))
    _, _, built = _programs(captured, {n.name: "a" for n in captured.graph.nodes}, fmt="onnx")
    program = built[0][1]

    def forged(edit) -> PartitionProgram:
        model = onnx.load_from_string(program.program.data)
        edit(model)
        data = model.SerializeToString()
        return make_program(program.program.manifest, data)

    def read_passwd(model):
        init = model.graph.initializer[0]
        for entry in init.external_data:
            if entry.key == "location":
                entry.value = "/etc/passwd"

    def custom_domain(model):
        model.graph.node[0].domain = "com.evil"

    with pytest.raises(ArtifactError, match="external data"):
        load_program(forged(read_passwd), program.weights)
    with pytest.raises(ArtifactError, match="domain"):
        load_program(forged(custom_domain), program.weights)
    assert ONNX_STORE_LOCATION not in "/etc/passwd"


def test_bundles_round_trip_and_refuse_tampering():
    program = _one_program()
    bundle = PartitionBundle("id-1", ("conv", "fc"), program.weights, (program.program,), ("abc",))
    data = bundle.to_bytes()
    back = PartitionBundle.from_bytes(data)
    assert back.partition_id == "id-1" and back.nodes == ("conv", "fc") and back.requires == ("abc",)
    assert {d: torch.equal(t, bundle.weights[d]) for d, t in back.weights.items()} == dict.fromkeys(bundle.weights, True)
    assert back.programs[0].data == program.program.data
    # flip one byte of a weight's data (at the end of the file): the digest check catches it
    damaged = bytearray(data)
    damaged[-3] ^= 0x40
    with pytest.raises(ArtifactError):
        PartitionBundle.from_bytes(bytes(damaged))
    with pytest.raises(ArtifactError, match=r"shorter|header|safetensors|manifest"):
        PartitionBundle.from_bytes(data[:50])
    with pytest.raises(TiercutError):
        PartitionBundle.from_bytes(b"\x80\x04\x95\x00\x00\x00\x00\x00junk")
