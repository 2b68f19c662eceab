"""A cache of layer graphs, so the second command on the same model does not trace it again.

Tracing and measuring a model takes seconds (VGG16: about 10 s, most of it
building 138 M random weights and running every node once); the layer graph
it produces is a few hundred kB of JSON. :func:`cached_graph` keys a graph by
everything that decides it:

- the model: a zoo name (with the torchvision version), or a factory
  (``package.module:factory`` or ``file.py:factory``) with the SHA-256 of the
  file that defines it (edits to *other* files the factory imports are not
  seen: pass ``--no-cache`` after changing those);
- the input specs (names, dtypes, shapes, fills) and the seed;
- the granularity and the module types kept whole or opened;
- the torch and tiercut versions, and this cache's format version.

Entries live in ``$TIERCUT_CACHE_DIR/graphs``, else
``$XDG_CACHE_HOME/tiercut/graphs``, else ``~/.cache/tiercut/graphs``. Each is a
JSON file (never pickle: reading one imports or runs nothing) holding its key
and the graph, written to a temporary file and renamed into place, so a
reader never sees half an entry. An entry that cannot be read, is not the
expected JSON, or holds another key is ignored and rebuilt.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tiercut.graph.capture import DEFAULT_OPEN_MODULES
from tiercut.graph.model_spec import ModelRequest, is_file_factory_spec
from tiercut.graph.models import ZOO, is_factory_spec
from tiercut.graph.types import LayerGraph

CACHE_FORMAT = 1
MAX_ENTRY_BYTES = 256 * 2**20  # an entry larger than this is not read (a graph of 100k nodes is ~60 MB)


def cache_dir() -> Path:
    """Where graph cache entries live (see the module docstring)."""
    explicit = os.environ.get("TIERCUT_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser() / "graphs"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "tiercut" / "graphs"


def package_version(name: str) -> str:
    """An installed package's version from its metadata (importing torch/torchvision to ask costs seconds)."""
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def _file_digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _model_identity(spec: str) -> dict[str, Any] | None:
    """What identifies the model ``spec`` names, or None when it cannot be identified without running it."""
    if spec in ZOO:
        return {"zoo": spec, "torchvision": package_version("torchvision")}
    if is_file_factory_spec(spec):
        path_text, _, attr = spec.rpartition(":")
        path = Path(path_text).resolve()
        digest = _file_digest(path)
        return None if digest is None else {"file": str(path), "sha256": digest, "factory": attr}
    if is_factory_spec(spec):
        module_name, _, attr = spec.partition(":")
        try:
            found = importlib.util.find_spec(module_name)
        except (ImportError, ValueError, AttributeError):
            return None
        origin = getattr(found, "origin", None)
        digest = _file_digest(Path(origin)) if origin and origin not in ("built-in", "frozen") else None
        return None if digest is None else {"module": module_name, "sha256": digest, "factory": attr}
    return None


def cache_key(request: ModelRequest) -> tuple[str, dict[str, Any]] | None:
    """(SHA-256 hex, the key's fields) of a request's graph, or None for a model that cannot be cached."""
    import tiercut

    identity = _model_identity(request.spec)
    if identity is None:
        return None
    fields = {
        "format": CACHE_FORMAT,
        "model": identity,
        "inputs": None if request.inputs is None else [s.to_dict() for s in request.inputs],
        "seed": request.seed,
        "granularity": request.granularity,
        "leaf_modules": sorted(request.leaf_modules),
        "open_modules": sorted(request.open_modules),
        "default_open_modules": list(DEFAULT_OPEN_MODULES),
        "torch": package_version("torch"),
        "tiercut": getattr(tiercut, "__version__", "unknown"),
    }
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()
    return digest, fields


def read_entry(path: Path, fields: dict[str, Any]) -> LayerGraph | None:
    """The graph of a cache entry, or None if it is missing, unreadable, corrupt or for another key."""
    try:
        if path.stat().st_size > MAX_ENTRY_BYTES:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or data.get("key") != fields or not isinstance(data.get("graph"), dict):
        return None
    try:
        return LayerGraph.from_dict(data["graph"])
    except Exception:  # a damaged entry is rebuilt, whatever the damage
        return None


def write_entry(path: Path, fields: dict[str, Any], graph: LayerGraph) -> bool:
    """Write an entry atomically (temporary file + rename); False (and nothing left behind) if it cannot be written."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    except OSError:
        return False
    temporary = Path(name)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump({"key": fields, "graph": graph.to_dict()}, out)
        os.replace(temporary, path)
        return True
    except OSError:
        return False
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)


def cached_graph(request: ModelRequest, build: Callable[[], LayerGraph]) -> LayerGraph:
    """The request's graph from the cache, or ``build()`` stored in it (``request.use_cache`` False: just ``build()``)."""
    keyed = cache_key(request) if request.use_cache else None
    if keyed is None:
        return build()
    digest, fields = keyed
    path = cache_dir() / f"{digest}.json"
    graph = read_entry(path, fields)
    if graph is None:
        graph = build()
        write_entry(path, fields, graph)
    return graph


def store_graph(request: ModelRequest, graph: LayerGraph) -> None:
    """Store a graph captured for another reason (profile, run) so later commands find it."""
    keyed = cache_key(request) if request.use_cache else None
    if keyed is not None:
        write_entry(cache_dir() / f"{keyed[0]}.json", keyed[1], graph)


__all__ = ["CACHE_FORMAT", "cache_dir", "cache_key", "cached_graph", "read_entry", "store_graph", "write_entry"]
