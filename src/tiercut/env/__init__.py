"""Environments: the devices, links and users a DNN is split over.

Front doors:

- :func:`load_environment` (a preset name or a YAML/JSON file) -> :class:`Environment`;
- :func:`list_presets` -> the presets shipped with tiercut (``tiercut env list``).

Presets live as YAML files in ``tiercut/env/presets/``; each cites where its
figures come from.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from tiercut.datafiles import MAX_JSON_BYTES, MAX_YAML_BYTES, parse_json, parse_yaml, read_text_file
from tiercut.env.schema import environment_from_mapping
from tiercut.env.types import (
    SCHEMA_VERSION,
    TIERS,
    CatalogRef,
    Device,
    DeviceSpeed,
    Environment,
    LegacyFieldWarning,
    Link,
    LinkDirection,
    User,
)
from tiercut.errors import TiercutError

__all__ = [
    "SCHEMA_VERSION",
    "TIERS",
    "CatalogRef",
    "Device",
    "DeviceSpeed",
    "Environment",
    "LegacyFieldWarning",
    "Link",
    "LinkDirection",
    "PresetInfo",
    "User",
    "environment_from_mapping",
    "list_presets",
    "load_environment",
]


@dataclass(frozen=True)
class PresetInfo:
    """One shipped preset: its name, description and counts."""

    name: str
    description: str
    devices: int
    links: int
    users: int


def _preset_files() -> dict[str, Any]:
    folder = resources.files("tiercut.env") / "presets"
    return {p.name.removesuffix(".yaml"): p for p in folder.iterdir() if p.name.endswith(".yaml")}


def _parse(text: str, label: str, json_file: bool) -> Any:
    """Environment data: bounded safe YAML or JSON (:mod:`tiercut.datafiles`), never code."""
    return parse_json(text, f"environment file {label}") if json_file else parse_yaml(text, f"environment file {label}")


def load_environment(preset_or_path: str | Path) -> Environment:
    """A shipped preset by name, or a YAML (``.yaml``/``.yml``) or JSON file, validated."""
    presets = _preset_files()
    text_name = str(preset_or_path)
    if text_name in presets and not Path(text_name).exists():
        data = _parse(presets[text_name].read_text(encoding="utf-8"), text_name, json_file=False)
        return environment_from_mapping(data, name=text_name)
    path = Path(preset_or_path)
    if not path.exists():
        raise TiercutError(
            f"environment {text_name!r} is neither a preset nor a file; presets: {', '.join(sorted(presets))} "
            "(see 'tiercut env list')"
        )
    if path.is_dir():
        raise TiercutError(f"environment {text_name!r} is a folder; pass a YAML or JSON file")
    json_file = path.suffix.lower() == ".json"
    text = read_text_file(path, "environment file", max_bytes=MAX_JSON_BYTES if json_file else MAX_YAML_BYTES)
    data = _parse(text, text_name, json_file=json_file)
    if isinstance(data, dict) and not data.get("name"):
        data = {**data, "name": path.stem}
    return environment_from_mapping(data, base_dir=path.resolve().parent)


def list_presets() -> list[PresetInfo]:
    """Every shipped preset, sorted by name."""
    infos = []
    for name in sorted(_preset_files()):
        env = load_environment(name)
        infos.append(PresetInfo(name, env.description, len(env.devices), len(env.links), len(env.users)))
    return infos
