"""Reading the data files a user gives (environments, scenarios, plans, tables): bounded, data only.

A data file never imports or calls code: YAML is read with PyYAML's safe
loader (plain mappings, lists, strings, numbers; no Python tags), JSON with
the standard parser. And it is bounded before it is parsed, so a hostile or
mistaken file is refused at once with one line instead of exhausting memory
or time:

* size: YAML at most :data:`MAX_YAML_BYTES` (4 MiB; environments and
  scenarios are a few KB), JSON at most :data:`MAX_JSON_BYTES` (64 MiB; the
  largest file the project writes, a problem JSON of a 10,000-layer graph,
  is a few MB);
* text: UTF-8 (a binary file is named as such);
* YAML aliases: PyYAML builds an alias as a shared reference, so a "billion
  laughs" document of a few hundred bytes is cheap to load but expands to
  billions of nodes in anything that walks it (validation, ``json.dumps``).
  :class:`BoundedSafeLoader` counts the nodes the document expands to,
  following aliases, and refuses more than :data:`MAX_EXPANDED_NODES`, and
  refuses a recursive alias (a node containing itself);
* nesting: a JSON or YAML document nested deeper than Python's recursion
  allows is refused, not a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tiercut.errors import TiercutError

MAX_YAML_BYTES = 4 * 1024 * 1024
MAX_JSON_BYTES = 64 * 1024 * 1024
MAX_EXPANDED_NODES = 1_000_000
_SafeLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser when PyYAML has it


class BoundedSafeLoader(_SafeLoader):
    """PyYAML's safe loader that refuses documents expanding (through aliases) beyond a node bound."""

    max_expanded_nodes = MAX_EXPANDED_NODES

    def get_single_node(self) -> Any:
        node = super().get_single_node()
        if node is not None:
            _check_expansion(node, self.max_expanded_nodes)
        return node


def _check_expansion(root: Any, limit: int) -> None:
    """Refuse a composed YAML node graph whose expansion (aliases followed) exceeds ``limit`` or is cyclic."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    # iterative post-order walk: (node, children visited?)
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            children = _children(node)
            total = 1 + sum(sizes[id(c)] for c in children)
            if total > limit:
                raise TiercutError(
                    f"it expands (through its aliases) to more than {limit:,} nodes; write the data out or drop the aliases"
                )
            sizes[key] = total
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise TiercutError("it holds a recursive alias (a node that contains itself); data files cannot")
        on_path.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in on_path:
                raise TiercutError("it holds a recursive alias (a node that contains itself); data files cannot")
            if id(child) not in sizes:
                stack.append((child, False))


def _children(node: Any) -> list[Any]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def read_text_file(path: str | Path, what: str, *, max_bytes: int = MAX_JSON_BYTES) -> str:
    """The UTF-8 text of a data file, after checking it is a readable regular file of at most ``max_bytes``."""
    path = Path(path)
    try:
        if path.is_dir():
            raise TiercutError(f"{what} {path} is a folder; pass a file")
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise TiercutError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise TiercutError(f"{what} {path} is larger than {max_bytes / 2**20:g} MiB; a data file this large is refused")
    if b"\0" in data:
        raise TiercutError(f"{what} {path} is a binary file, not text; pass the YAML or JSON file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise TiercutError(f"{what} {path} is not UTF-8 text; pass the YAML or JSON file") from None


def parse_yaml(text: str, label: str) -> Any:
    """Parse YAML with :class:`BoundedSafeLoader`; any problem is one :class:`TiercutError` naming ``label``."""
    try:
        return yaml.load(text, Loader=BoundedSafeLoader)
    except TiercutError as exc:
        raise TiercutError(f"{label}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or (str(exc).strip().splitlines() or ["invalid"])[0]
        raise TiercutError(f"{label} is not valid YAML{where}: {problem}; fix the syntax") from None
    except RecursionError:
        raise TiercutError(f"{label} nests deeper than a data file can") from None


def parse_json(text: str, label: str) -> Any:
    """Parse JSON; any problem is one :class:`TiercutError` naming ``label``."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise TiercutError(f"{label} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    except RecursionError:
        raise TiercutError(f"{label} nests deeper than a data file can") from None


def read_json_file(path: str | Path, what: str, *, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """A bounded JSON data file, parsed (:func:`read_text_file`, :func:`parse_json`)."""
    return parse_json(read_text_file(path, what, max_bytes=max_bytes), f"{what} {path}")


def read_data_file(path: str | Path, what: str) -> Any:
    """A bounded YAML or JSON data file (JSON by its ``.json`` suffix), parsed."""
    label = f"{what} {path}"
    if str(path).lower().endswith(".json"):
        return parse_json(read_text_file(path, what, max_bytes=MAX_JSON_BYTES), label)
    return parse_yaml(read_text_file(path, what, max_bytes=MAX_YAML_BYTES), label)


__all__ = [
    "MAX_EXPANDED_NODES",
    "MAX_JSON_BYTES",
    "MAX_YAML_BYTES",
    "BoundedSafeLoader",
    "parse_json",
    "parse_yaml",
    "read_data_file",
    "read_json_file",
    "read_text_file",
]
