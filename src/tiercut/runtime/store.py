"""What a worker holds: confirmed partitions, their weights and programs.

A :class:`PartitionStore` keeps every *confirmed* partition bundle (one
upload of :class:`~tiercut.runtime.artifact.PartitionBundle`): its weights,
identified by content digest and kept once however many partitions or
programs use them, and its programs, keyed by their content id (the
digest of the program and of every weight's digest, dtype and shape:
:func:`~tiercut.runtime.artifact.program_id`), so two users whose models
share an architecture but not their weights each run their own. Only a
bundle that arrived whole, hashed to the SHA-256 the client announced,
parsed, is named consistently with its content, and whose every program
loaded (allow-list, propagation within ``max_run_bytes``) against the
weights held (its own and those of earlier partitions) is admitted
(:meth:`PartitionStore.admit`); nothing of a failed upload is ever kept or
executed.

With a ``directory``, each admitted bundle is also written there (atomically:
temporary file, fsync, rename) with an index in admission order, so a
restarted worker reloads what it had (:meth:`PartitionStore.open`), checking
every file's SHA-256 again; a file that fails the check is dropped and
reported, and temporary files a crash left behind are removed. The file of
a dropped partition whose weights later partitions of its owner still use
is kept as a *carrier* of those weights (listed in the index, never run nor
shown), until no partition of that owner uses them.

Owners: every partition is held for the client that uploaded it (its
*owner*: the principal a worker authenticated, see
:attr:`tiercut.runtime.worker.WorkerConfig.client_tokens`). Storage stays
content addressed (a weight or program held by several owners is kept
once), but access is not: a bundle's programs may use only weights the
bundle carries or that earlier partitions *of the same owner* carried
(uploading a weight's bytes proves possession of it; knowing its digest
does not), an owner runs only programs of its own partitions, and every
weight, program and file is reference counted per owner, so dropping a
partition removes that owner's reference only, never what another owner
holds (not even an identical partition under the same name).

Size bound: ``max_bytes`` caps the bytes of distinct weights plus program
bytes held; a bundle that would exceed it is refused.

The lock guards the maps only: loading a program (its propagation) and
writing a file happen outside it, so a query looking up its program never
waits for an upload being admitted.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tiercut.errors import TiercutError
from tiercut.runtime.artifact import (
    DEFAULT_MAX_RUN_BYTES,
    ArtifactError,
    LoadedProgram,
    PartitionBundle,
    PartitionProgram,
    load_program,
    sha256_hex,
)

INDEX_FILE = "index.json"
#: the owner of partitions uploaded without a per-client identity (a worker with one shared token, or none)
SHARED_OWNER = "shared"
TEMPORARY_SUFFIX = ".tmp"
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")


class StoreFullError(TiercutError):
    """Admitting a bundle would exceed the store's size bound."""


class MissingWeightsError(TiercutError):
    """A bundle's programs need weights the store does not hold (earlier partitions are missing)."""

    def __init__(self, message: str, missing: list[str]) -> None:
        super().__init__(message)
        self.missing = missing


@dataclass(frozen=True)
class StoredPartition:
    """A confirmed partition: its id, SHA-256, size, programs and weights, and the owner it is held for."""

    partition_id: str
    sha256: str
    nbytes: int
    nodes: tuple[str, ...]
    program_ids: tuple[str, ...]
    weight_digests: tuple[str, ...]
    uses: tuple[str, ...]
    owner: str = SHARED_OWNER

    @property
    def key(self) -> tuple[str, str]:
        return (self.owner, self.partition_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "owner": self.owner,
            "partition_id": self.partition_id,
            "sha256": self.sha256,
            "nbytes": self.nbytes,
            "nodes": list(self.nodes),
            "program_ids": list(self.program_ids),
            "weight_digests": list(self.weight_digests),
            "uses": list(self.uses),
        }


@dataclass(frozen=True)
class OpenReport:
    """What :meth:`PartitionStore.open` reloaded, what it had to drop and which leftover temporary files it removed."""

    loaded: tuple[str, ...]
    dropped: tuple[tuple[str, str], ...]
    removed: tuple[str, ...] = ()


def _stored(bundle: PartitionBundle, data: bytes, sha256: str, owner: str) -> StoredPartition:
    """What the store records of a bundle admitted for ``owner``."""
    uses = sorted({d for p in bundle.programs for d in p.manifest.weights.values()} - set(bundle.weights))
    return StoredPartition(
        partition_id=bundle.partition_id,
        sha256=sha256,
        nbytes=len(data),
        nodes=tuple(bundle.nodes),
        program_ids=tuple(p.manifest.program_id for p in bundle.programs),
        weight_digests=tuple(sorted(bundle.weights)),
        uses=tuple(uses),
        owner=owner,
    )


class _Counts:
    """Reference counts of keys, in total and per owner (used under the store's lock)."""

    def __init__(self) -> None:
        self.total: dict[str, int] = {}
        self.by_owner: dict[str, dict[str, int]] = {}

    def add(self, owner: str, keys: Any) -> None:
        mine = self.by_owner.setdefault(owner, {})
        for key in keys:
            self.total[key] = self.total.get(key, 0) + 1
            mine[key] = mine.get(key, 0) + 1

    def remove(self, owner: str, keys: Any) -> list[str]:
        """Drop one reference of ``owner`` to each key; returns the keys nobody references any more."""
        mine = self.by_owner.get(owner, {})
        unused = []
        for key in keys:
            if mine.get(key, 0) > 1:
                mine[key] -= 1
            else:
                mine.pop(key, None)
            if self.total.get(key, 0) > 1:
                self.total[key] -= 1
            else:
                self.total.pop(key, None)
                unused.append(key)
        if not mine:
            self.by_owner.pop(owner, None)
        return unused

    def held_by(self, owner: str, key: str) -> bool:
        return key in self.by_owner.get(owner, {})

    def owned(self, owner: str) -> set[str]:
        return set(self.by_owner.get(owner, {}))


@dataclass(eq=False)
class PartitionStore:
    """Confirmed partitions (per owner), their weights (by digest) and programs (by id), stored once.

    Attributes:
        directory: where admitted bundles are persisted (None: memory only).
        max_bytes: bound on distinct weight bytes plus program bytes held.
        max_loaded_programs: loaded programs kept ready (least recently used
            ones are rebuilt on demand; bounds onnxruntime's per-session copies).
        onnx_threads: intra-op threads of each onnxruntime session.
        max_run_bytes: bound on the intermediates one run of a program holds
            (checked when the program is loaded).
        formats: program formats admitted (``onnx`` only when the worker
            allows it: it runs in onnxruntime, outside the ATen allow-list).
    """

    directory: Path | None = None
    max_bytes: int = 8 * 1024**3
    max_loaded_programs: int = 64
    onnx_threads: int = 1
    max_run_bytes: int = DEFAULT_MAX_RUN_BYTES
    formats: tuple[str, ...] = ("aten-json",)
    _partitions: dict[tuple[str, str], StoredPartition] = field(default_factory=dict, init=False, repr=False)
    _weights: dict[str, Any] = field(default_factory=dict, init=False, repr=False)
    _weight_refs: _Counts = field(default_factory=_Counts, init=False, repr=False)
    _programs: dict[str, PartitionProgram] = field(default_factory=dict, init=False, repr=False)
    _program_refs: _Counts = field(default_factory=_Counts, init=False, repr=False)
    _carriers: dict[tuple[str, str], StoredPartition] = field(default_factory=dict, init=False, repr=False)
    _loaded: OrderedDict[str, LoadedProgram] = field(default_factory=OrderedDict, init=False, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, init=False, repr=False)

    # ----------------------------------------------------------- queries
    @property
    def held_bytes(self) -> int:
        with self._lock:
            weights = sum(t.numel() * t.element_size() for t in self._weights.values())
            return weights + sum(len(p.data) for p in self._programs.values())

    def partitions(self, owner: str | None = None) -> list[StoredPartition]:
        """The partitions held for ``owner`` (every owner's when None), in admission order."""
        with self._lock:
            return [p for p in self._partitions.values() if owner is None or p.owner == owner]

    def partition(self, partition_id: str, owner: str = SHARED_OWNER) -> StoredPartition | None:
        with self._lock:
            return self._partitions.get((owner, partition_id))

    def has_program(self, program_id: str, owner: str = SHARED_OWNER) -> bool:
        """Whether ``owner`` holds a partition with this program (another owner's copy does not count)."""
        with self._lock:
            return self._program_refs.held_by(owner, program_id)

    def weights_view(self, owner: str | None = None) -> Mapping[str, Any]:
        """The weights ``owner`` may use (every weight held when None), by digest."""
        with self._lock:
            if owner is None:
                return dict(self._weights)
            return {d: self._weights[d] for d in self._weight_refs.owned(owner)}

    def program(self, program_id: str, owner: str = SHARED_OWNER) -> LoadedProgram | None:
        """``owner``'s program, rebuilt from its stored bytes if it was evicted; None if ``owner`` holds no such program."""
        with self._lock:
            if not self._program_refs.held_by(owner, program_id):
                return None
            loaded = self._loaded.get(program_id)
            if loaded is not None:
                self._loaded.move_to_end(program_id)
                return loaded
            program = self._programs.get(program_id)
            if program is None:
                return None
            weights = dict(self._weights)
        loaded = self._load(program, weights)
        with self._lock:
            if program_id in self._programs:
                self._remember(loaded)
        return loaded

    def _load(self, program: PartitionProgram, weights: Mapping[str, Any]) -> LoadedProgram:
        return load_program(
            program, weights, max_run_bytes=self.max_run_bytes, onnx_threads=self.onnx_threads, formats=self.formats
        )

    def _remember(self, loaded: LoadedProgram) -> None:
        self._loaded[loaded.program_id] = loaded
        self._loaded.move_to_end(loaded.program_id)
        while len(self._loaded) > self.max_loaded_programs:
            self._loaded.popitem(last=False)

    # ----------------------------------------------------------- admission
    def check_capacity(self, nbytes: int) -> None:
        """Raise :class:`StoreFullError` if ``nbytes`` more could not fit."""
        held = self.held_bytes
        if held + nbytes > self.max_bytes:
            raise StoreFullError(
                f"storing {nbytes} more bytes would exceed the store bound of {self.max_bytes} bytes "
                f"({held} held); drop partitions or raise --max-store-bytes"
            )

    def admit(
        self,
        bundle: PartitionBundle,
        data: bytes,
        sha256: str,
        *,
        owner: str = SHARED_OWNER,
        persist: bool = True,
        carried: Mapping[str, Any] | None = None,
    ) -> StoredPartition:
        """Admit a verified bundle for ``owner``: load its programs against the weights it may use, then keep it.

        ``data`` are the bundle's bytes (hashing to ``sha256``), written to the
        directory when ``persist``. The programs see the bundle's own weights
        and those of ``owner``'s earlier partitions only: a weight another
        owner uploaded is missing for this one until it uploads the bytes
        itself (then they are stored once). ``carried``: weights of ``owner``'s
        dropped partitions kept in carrier files (a reload). Raises :class:`MissingWeightsError`,
        :class:`StoreFullError` or :class:`~tiercut.runtime.artifact.ArtifactError`
        and keeps nothing if anything fails.
        """
        bundle.check_name()
        carried = carried or {}
        with self._lock:
            existing = self._check_new(bundle, sha256, owner, carried)
            if existing is not None:
                return existing
            available = {**carried, **{d: self._weights[d] for d in self._weight_refs.owned(owner)}, **bundle.weights}
        loaded = [self._load(p, available) for p in bundle.programs]  # outside the lock: the propagation takes time
        stored = _stored(bundle, data, sha256, owner)
        written = None
        if persist and self.directory is not None:
            written = self._write_file(stored, data)
        try:
            with self._lock:
                existing = self._check_new(bundle, sha256, owner, carried)  # again: another upload may have landed
                if existing is not None:
                    return existing
                for digest, tensor in bundle.weights.items():
                    self._weights.setdefault(digest, tensor)  # content addressed: one copy whoever uploads it
                for digest in stored.uses:
                    if digest not in self._weights:
                        self._weights[digest] = carried[digest]
                self._weight_refs.add(owner, set(stored.weight_digests) | set(stored.uses))
                for program in bundle.programs:
                    self._programs.setdefault(program.manifest.program_id, program)
                self._program_refs.add(owner, set(stored.program_ids))
                for program in loaded:
                    self._remember(program)
                self._partitions[stored.key] = stored
                self._carriers.pop(stored.key, None)  # its own file carries its weights again
                if written is not None:
                    self._write_index()
                written = None
                return stored
        finally:
            if written is not None:  # not admitted after all: no file of it stays, unless another partition has it
                with self._lock:
                    if not self._file_in_use(stored.partition_id, stored.sha256):
                        written.unlink(missing_ok=True)

    def _check_new(
        self, bundle: PartitionBundle, sha256: str, owner: str, carried: Mapping[str, Any]
    ) -> StoredPartition | None:
        """``owner``'s stored partition if it holds this very bundle; raise if it cannot be admitted (under the lock)."""
        existing = self._partitions.get((owner, bundle.partition_id))
        if existing is not None:
            if existing.sha256 == sha256:
                return existing
            raise ArtifactError(
                f"partition {bundle.partition_id!r} is already held with other content; drop it before uploading it again"
            )
        new_weights = {d: t for d, t in bundle.weights.items() if d not in self._weights}
        new_programs = [p for p in bundle.programs if p.manifest.program_id not in self._programs]
        added = sum(t.numel() * t.element_size() for t in new_weights.values()) + sum(len(p.data) for p in new_programs)
        self.check_capacity(added)
        available = self._weight_refs.owned(owner) | bundle.weights.keys() | carried.keys()
        missing = sorted({d for p in bundle.programs for d in p.manifest.weights.values() if d not in available})
        if missing:
            raise MissingWeightsError(
                f"partition {bundle.partition_id!r} has programs that need {len(missing)} weight(s) of earlier "
                "partitions this client has not uploaded to this worker; upload those first",
                missing,
            )
        return None

    def drop(self, partition_id: str, owner: str = SHARED_OWNER) -> bool:
        """Forget ``owner``'s partition: its references only; what other partitions hold stays. False if unknown."""
        with self._lock:
            stored = self._partitions.pop((owner, partition_id), None)
            if stored is None:
                return False
            for digest in self._weight_refs.remove(owner, set(stored.weight_digests) | set(stored.uses)):
                self._weights.pop(digest, None)
            for program_id in self._program_refs.remove(owner, set(stored.program_ids)):
                self._programs.pop(program_id, None)
                self._loaded.pop(program_id, None)
            if self.directory is not None:
                self._carriers[stored.key] = stored  # kept only while the owner's partitions use its weights
                self._purge_carriers()
                self._write_index()
            return True

    def _purge_carriers(self) -> None:
        """Forget carriers none of whose weights a partition of their owner uses; delete files nothing keeps (under the lock)."""
        for key, carrier in list(self._carriers.items()):
            if not set(carrier.weight_digests) & self._weight_refs.owned(carrier.owner):
                del self._carriers[key]
                if not self._file_in_use(carrier.partition_id, carrier.sha256):
                    self._file(carrier.partition_id, carrier.sha256).unlink(missing_ok=True)

    def _file_in_use(self, partition_id: str, sha256: str) -> bool:
        """Whether a partition or carrier (of any owner) is kept in the file of ``partition_id``, ``sha256`` (under the lock)."""
        return any(
            p.partition_id == partition_id and p.sha256 == sha256
            for p in (*self._partitions.values(), *self._carriers.values())
        )

    # ----------------------------------------------------------- persistence
    def _file(self, partition_id: str, sha256: str) -> Path:
        assert self.directory is not None
        return self.directory / f"{_SAFE_NAME.sub('_', partition_id)[:80]}.{sha256[:16]}.safetensors"

    def _write_file(self, stored: StoredPartition, data: bytes) -> Path:
        """Write a bundle's file atomically (temporary file, fsync, rename); returns its path."""
        assert self.directory is not None
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self._file(stored.partition_id, stored.sha256)
        temporary = path.with_name(path.name + TEMPORARY_SUFFIX)
        try:
            with open(temporary, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
        return path

    def _write_index(self) -> None:
        assert self.directory is not None
        index = {
            "schema_version": 1,
            "partitions": [p.to_dict() for p in self._partitions.values()],
            "carriers": [p.to_dict() for p in self._carriers.values()],
        }
        temporary = self.directory / (INDEX_FILE + TEMPORARY_SUFFIX)
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(index, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.directory / INDEX_FILE)

    def open(self) -> OpenReport:
        """Reload the partitions persisted in ``directory`` (in admission order), re-verifying each.

        A partition that needs weights of one listed after it (an owner dropped
        and re-admitted the other) is retried once that one is in.

        Carrier files (of dropped partitions) are read first, for the weights
        their owner's partitions use; a carrier no partition needs any more
        is deleted.
        """
        if self.directory is None:
            return OpenReport((), ())
        removed = self._remove_temporaries()
        index_path = self.directory / INDEX_FILE
        if not index_path.exists():
            return OpenReport((), (), removed)
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"))
            entries = list(index["partitions"])
            carrier_entries = list(index.get("carriers", []))
            if not all(isinstance(e, dict) for e in (*entries, *carrier_entries)):
                raise TypeError("an index entry is not a mapping")
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            raise TiercutError(f"store index {index_path} is unreadable; move the store folder away to start empty") from None
        carried: dict[str, dict[str, Any]] = {}
        for entry in carrier_entries:
            owner = str(entry.get("owner", SHARED_OWNER))
            try:
                bundle, data, sha256 = self._read_file(entry)
            except (OSError, TiercutError):
                continue  # its weights are missing: the partitions that use them are dropped below, and say why
            carried.setdefault(owner, {}).update(bundle.weights)
            with self._lock:
                self._carriers[(owner, bundle.partition_id)] = _stored(bundle, data, sha256, owner)
        loaded: list[str] = []
        dropped: list[tuple[str, str]] = []
        pending = entries
        while pending:  # a partition re-admitted after one that uses its weights comes later in the index: retry
            waiting: list[tuple[dict[str, Any], MissingWeightsError]] = []
            for entry in pending:
                owner = str(entry.get("owner", SHARED_OWNER))
                try:
                    bundle, data, sha256 = self._read_file(entry)
                    self.admit(bundle, data, sha256, owner=owner, persist=False, carried=carried.get(owner))
                    loaded.append(bundle.partition_id)
                except MissingWeightsError as exc:
                    waiting.append((entry, exc))
                except (OSError, TiercutError) as exc:
                    dropped.append((str(entry.get("partition_id", "")), str(exc)))
            if len(waiting) == len(pending):  # nothing more can come in
                dropped += [(str(entry.get("partition_id", "")), str(exc)) for entry, exc in waiting]
                break
            pending = [entry for entry, _ in waiting]
        with self._lock:
            self._purge_carriers()
            self._write_index()
        return OpenReport(tuple(loaded), tuple(dropped), removed)

    def _read_file(self, entry: Mapping[str, Any]) -> tuple[PartitionBundle, bytes, str]:
        """The bundle an index entry names, its bytes and SHA-256, checked against the entry."""
        partition_id = str(entry.get("partition_id", ""))
        sha256 = str(entry.get("sha256", ""))
        path = self._file(partition_id, sha256)
        data = path.read_bytes()
        if sha256_hex(data) != sha256:
            raise ArtifactError(f"file {path.name} does not hash to its recorded SHA-256")
        bundle = PartitionBundle.from_bytes(data)
        if bundle.partition_id != partition_id:
            raise ArtifactError(f"file {path.name} holds partition {bundle.partition_id!r}")
        return bundle, data, sha256

    def _remove_temporaries(self) -> tuple[str, ...]:
        """Delete the ``*.tmp`` files an interrupted write left (never complete, never indexed)."""
        assert self.directory is not None
        if not self.directory.is_dir():
            return ()
        removed = []
        for path in sorted(self.directory.glob("*" + TEMPORARY_SUFFIX)):
            if path.is_file() and not path.is_symlink():
                path.unlink(missing_ok=True)
                removed.append(path.name)
        return tuple(removed)


__all__ = [
    "INDEX_FILE",
    "SHARED_OWNER",
    "MissingWeightsError",
    "OpenReport",
    "PartitionStore",
    "StoreFullError",
    "StoredPartition",
]
