"""The worker's store: only verified partitions, weights by content, a size bound, persistence."""

from __future__ import annotations

import functools
import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from tiercut.graph import capture_model
from tiercut.graph.split import split_by_placement
from tiercut.profile.measure import record_fx_values
from tiercut.runtime.artifact import ArtifactError, PartitionBundle, build_program, sha256_hex
from tiercut.runtime.store import INDEX_FILE, MissingWeightsError, PartitionStore, StoreFullError


@functools.cache
def _two_bundles():
    """Bundle 1 carries the first layer's weights and its program; bundle 2 the rest, whose program needs both."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4)).eval()
    captured = capture_model(model, (2, 8))
    values = record_fx_values(captured)
    names = [n.name for n in captured.graph.nodes]
    first = split_by_placement(captured, {n: ("w" if n in names[1:2] else "c") for n in names})
    both = split_by_placement(captured, {n: ("w" if n in names[1:] else "c") for n in names})
    p1 = next(build_program(p, {n: values[n] for n in p.input_names}) for p in first.partitions if p.device == "w")
    p2 = next(build_program(p, {n: values[n] for n in p.input_names}) for p in both.partitions if p.device == "w")
    b1 = PartitionBundle("m.1", tuple(names[1:2]), dict(p1.weights), (p1.program,))
    rest = {d: t for d, t in p2.weights.items() if d not in p1.weights}
    b2 = PartitionBundle("m.2", tuple(names[2:]), rest, (p2.program,), tuple(sorted(set(p2.weights) - set(rest))))
    return b1, b2, p2, values


def _admit(store, bundle):
    data = bundle.to_bytes()
    return store.admit(bundle, data, sha256_hex(data))


def test_partitions_build_on_each_other_and_weights_are_kept_once(tmp_path):
    b1, b2, p2, values = _two_bundles()
    store = PartitionStore()
    with pytest.raises(MissingWeightsError) as info:
        _admit(store, b2)
    assert info.value.missing and store.partitions() == []
    _admit(store, b1)
    stored = _admit(store, b2)
    assert stored.uses  # it reads weights bundle 1 brought
    program = store.program(p2.program.manifest.program_id)
    inputs = {n: values[n] for n in program.manifest.input_names}
    assert program.run(inputs).keys() == set(program.manifest.output_names)
    held = store.held_bytes
    assert _admit(store, b1) is store.partition("m.1")  # same content again: idempotent
    assert store.held_bytes == held
    # dropping the first keeps the weights the second still uses
    assert store.drop("m.1")
    assert store.program(p2.program.manifest.program_id) is not None
    assert not store.drop("m.1")
    assert store.drop("m.2")
    assert store.held_bytes == 0 and store.program(p2.program.manifest.program_id) is None


def test_the_same_id_with_other_content_is_a_conflict():
    b1, _, _, _ = _two_bundles()
    store = PartitionStore()
    _admit(store, b1)
    other = PartitionBundle("m.1", b1.nodes, {}, ())
    with pytest.raises(ArtifactError, match="already held"):
        _admit(store, other)


def test_the_size_bound_refuses_what_does_not_fit():
    b1, _, _, _ = _two_bundles()
    store = PartitionStore(max_bytes=10)
    with pytest.raises(StoreFullError, match="max-store-bytes"):
        _admit(store, b1)
    assert store.partitions() == []


def test_a_restarted_store_reloads_what_it_had_and_drops_damaged_files(tmp_path):
    b1, b2, p2, values = _two_bundles()
    store = PartitionStore(directory=tmp_path)
    _admit(store, b1)
    _admit(store, b2)
    index = json.loads((tmp_path / INDEX_FILE).read_text())
    assert [p["partition_id"] for p in index["partitions"]] == ["m.1", "m.2"]
    again = PartitionStore(directory=tmp_path)
    report = again.open()
    assert report.loaded == ("m.1", "m.2") and report.dropped == ()
    program = again.program(p2.program.manifest.program_id)
    inputs = {n: values[n] for n in program.manifest.input_names}
    expected = store.program(p2.program.manifest.program_id).run(inputs)
    got = program.run(inputs)
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    # damage the first file: it is dropped, and so is the second, which needs its weights
    victim = next(p for p in tmp_path.iterdir() if p.name.startswith("m.1."))
    data = bytearray(victim.read_bytes())
    data[-1] ^= 1
    victim.write_bytes(bytes(data))
    third = PartitionStore(directory=tmp_path)
    report = third.open()
    assert report.loaded == () and {p for p, _ in report.dropped} == {"m.1", "m.2"}
    assert "SHA-256" in report.dropped[0][1]


def test_evicted_programs_are_rebuilt_on_demand():
    b1, b2, _, _ = _two_bundles()
    store = PartitionStore(max_loaded_programs=1)
    _admit(store, b1)
    _admit(store, b2)
    first_id = b1.programs[0].manifest.program_id
    assert store.program(first_id) is not None  # rebuilt after eviction by the second
    assert store.program("no-such-program") is None


def test_leftover_temporary_files_are_removed_at_start(tmp_path):
    b1, _, _, _ = _two_bundles()
    store = PartitionStore(directory=tmp_path)
    _admit(store, b1)
    (tmp_path / "m.1.0123456789abcdef.safetensors.tmp").write_bytes(b"half a bundle")  # a crash mid-write
    (tmp_path / (INDEX_FILE + ".tmp")).write_text("{")
    report = PartitionStore(directory=tmp_path).open()
    assert report.loaded == ("m.1",) and sorted(report.removed) == ["index.json.tmp", "m.1.0123456789abcdef.safetensors.tmp"]
    assert not list(tmp_path.glob("*.tmp"))


def test_a_bundle_named_for_other_content_is_refused_and_content_names_never_clash():
    b1, _, _, _ = _two_bundles()
    store = PartitionStore()
    named = b1.named("m")
    assert named.partition_id == f"m@{b1.content_digest()}"
    _admit(store, named)
    lying = PartitionBundle(f"m@{'f' * 64}", b1.nodes, b1.weights, b1.programs)
    with pytest.raises(ArtifactError, match="does not hold the content"):
        _admit(store, lying)
    for bad in ("", "x" * 201, "a/b", "a\nb", "ünïcode"):
        with pytest.raises(ArtifactError, match="partition id"):
            _admit(store, PartitionBundle(bad, (), {}, ()))


def test_programs_with_the_same_bytes_and_other_weights_are_two_programs():
    import dataclasses

    from tiercut.runtime.artifact import make_program, tensor_digest

    b1, _, _, values = _two_bundles()
    program = b1.programs[0]
    name, digest = next(iter(program.manifest.weights.items()))
    other = torch.ones_like(b1.weights[digest])
    manifest = dataclasses.replace(program.manifest, weights={**program.manifest.weights, name: tensor_digest(other)})
    twin = make_program(manifest, program.data)
    assert twin.data == program.data and twin.manifest.program_id != program.manifest.program_id
    store = PartitionStore()
    _admit(store, b1)
    _admit(store, PartitionBundle("twin", b1.nodes, {tensor_digest(other): other}, (twin,), tuple(sorted(b1.weights))))
    inputs = {n: values[n] for n in program.manifest.input_names}
    first = store.program(program.manifest.program_id).run(inputs)
    second = store.program(twin.manifest.program_id).run(inputs)
    assert not all(torch.equal(first[k], second[k]) for k in first)


def test_a_partition_readmitted_after_one_that_uses_its_weights_reopens(tmp_path):
    """Admit 1, admit 2 (uses 1's weights), drop 1, admit 1: the index lists 2 before 1; both come back."""
    b1, b2, _, _ = _two_bundles()
    store = PartitionStore(directory=tmp_path)
    for bundle in (b1, b2):
        _admit(store, bundle)
    store.drop(b1.partition_id)
    _admit(store, b1)
    report = PartitionStore(directory=tmp_path).open()
    assert report.dropped == () and sorted(report.loaded) == sorted([b1.partition_id, b2.partition_id])


@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["admit", "drop"]), st.sampled_from(["alice", "bob"]), st.sampled_from([0, 1])),
        max_size=14,
    )
)
@settings(max_examples=40, deadline=None)
@pytest.mark.slow  # up to 14 admissions (each loads its programs) per example
def test_owners_keep_their_own_references_whatever_the_order_of_admits_and_drops(steps, tmp_path_factory):
    """A model of who holds what: each owner reaches exactly its own partitions' programs and weights; storage is shared.

    Bundle 1 carries weights, bundle 2 uses them without carrying them: an
    owner may admit bundle 2 only while it holds bundle 1 (or held it: the
    weights stay referenced by its bundle 2), never thanks to the other owner.
    """
    b1, b2, _, _ = _two_bundles()
    bundles = (b1, b2)
    directory = tmp_path_factory.mktemp("owners")
    store = PartitionStore(directory=directory)
    held: dict[str, set[int]] = {"alice": set(), "bob": set()}
    for action, owner, which in steps:
        bundle = bundles[which]
        if action == "admit":
            data = bundle.to_bytes()
            may = which == 0 or 0 in held[owner] or 1 in held[owner]
            if may:
                store.admit(bundle, data, sha256_hex(data), owner=owner)
                held[owner].add(which)
            else:
                with pytest.raises(MissingWeightsError):
                    store.admit(bundle, data, sha256_hex(data), owner=owner)
        else:
            assert store.drop(bundle.partition_id, owner) == (which in held[owner])
            held[owner].discard(which)
        for name, mine in held.items():
            assert sorted(p.partition_id for p in store.partitions(name)) == sorted(bundles[i].partition_id for i in mine)
            for i, candidate in enumerate(bundles):
                program_id = candidate.programs[0].manifest.program_id
                assert store.has_program(program_id, name) == (i in mine)
                assert (store.program(program_id, name) is not None) == (i in mine)
            reachable = set(store.weights_view(name))
            expected = set().union(*(set(bundles[i].weights) | set(bundles[i].requires) for i in mine)) if mine else set()
            assert reachable == expected
        everything = set().union(*held.values())
        assert set(store.weights_view()) == (
            set().union(*(set(bundles[i].weights) | set(bundles[i].requires) for i in everything)) if everything else set()
        )
        files = {path.name.split(".")[0] + "." + path.name.split(".")[1] for path in directory.glob("*.safetensors")}
        # bundle 1's file stays while an owner holds bundle 1, or bundle 2, which uses its weights (a carrier)
        assert files == {b.partition_id for i, b in enumerate(bundles) if any(mine and max(mine) >= i for mine in held.values())}
    reopened = PartitionStore(directory=directory)
    assert reopened.open().dropped == ()
    for name, mine in held.items():
        assert sorted(p.partition_id for p in reopened.partitions(name)) == sorted(bundles[i].partition_id for i in mine)
        for i in mine:  # and each runs: its weights came back, from its own file or a carrier
            assert reopened.program(bundles[i].programs[0].manifest.program_id, name) is not None
