"""One serialisation layer for tiercut's JSON contracts.

Every JSON document tiercut writes and reads back (layer graph, profile,
predictor, compute table, environment, problem, plan, multi-user problem and
plan, upload plans; docs/contracts.md) follows the same rules,
and they live here once:

* a top-level document carries ``schema_version``; reading one whose version
  is missing or differs is a one-line :class:`~tiercut.errors.TiercutError`
  naming the type, the version found and the version this tiercut reads;
* a missing key is a one-line error naming the type and the key, a value of
  the wrong type a one-line error naming the type (never a ``KeyError``
  traceback);
* a non-finite float (an infeasible plan's latency) is written as ``null``
  and read back as ``inf`` (:func:`json_float`, :func:`from_json_float`);
  planner settings are made JSON-safe by :func:`jsonable`.

A type opts in by decorating its ``from_dict`` with :func:`json_contract`,
under ``@classmethod``::

    @classmethod
    @json_contract("plan", version=SCHEMA_VERSION, hint="pass the 'plan' object of 'tiercut plan --json'")
    def from_dict(cls, data: Mapping[str, Any]) -> Plan:
        return cls(algorithm=str(data["algorithm"]), ...)

The body indexes ``data[...]`` for required keys and ``data.get(...)`` for
optional ones; the decorator turns what goes wrong into the one-line error.
``tests/test_contracts.py`` loops over every contract type and checks the
rules (round trip, missing key, wrong and missing version).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from tiercut.errors import TiercutError

T = TypeVar("T")

#: the attribute :func:`json_contract` sets on a decorated ``from_dict`` (what, version, hint).
CONTRACT_ATTRIBUTE = "__tiercut_contract__"


def json_float(value: float) -> float | None:
    """A float for JSON: finite values as they are, ``inf``/``nan`` as ``null``."""
    value = float(value)
    return value if math.isfinite(value) else None


def finite_or_null(value: Any) -> Any:
    """``value`` with every non-finite float, at any depth of dicts and lists, replaced by ``null``
    (:func:`json_float` over an output-only document such as a simulation result)."""
    if isinstance(value, float):
        return json_float(value)
    if isinstance(value, dict):
        return {k: finite_or_null(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite_or_null(v) for v in value]
    return value


def from_json_float(value: Any) -> float:
    """The inverse of :func:`json_float`: ``null`` is ``inf`` (a figure that cannot be evaluated)."""
    return math.inf if value is None else float(value)


def optional_float(value: Any) -> float | None:
    """``null`` stays None, anything else a float (gaps, bounds, budgets)."""
    return None if value is None else float(value)


def jsonable(value: Any) -> Any:
    """A JSON-safe copy of a planner setting: mappings and sequences recursively, non-finite floats and
    other objects as strings."""
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    return repr(value)


def expect_object(data: Any, what: str, hint: str) -> Mapping[str, Any]:
    """``data`` if it is a JSON object, else a one-line error naming ``what``."""
    if not isinstance(data, Mapping):
        raise TiercutError(f"{what} is not a JSON object (got {type(data).__name__}); {hint}")
    return data


def check_version(data: Mapping[str, Any], what: str, expected: int | tuple[int, ...], hint: str) -> int:
    """The document's ``schema_version`` if it is ``expected`` (one version or several readable ones)."""
    readable = expected if isinstance(expected, tuple) else (expected,)
    shown = " or ".join(str(v) for v in readable)
    if "schema_version" not in data:
        raise TiercutError(f"{what} has no schema_version, this tiercut reads {shown}; {hint}")
    version = data["schema_version"]
    if isinstance(version, bool) or version not in readable:
        raise TiercutError(f"{what} has schema_version {version!r}, this tiercut reads {shown}; {hint}")
    return int(version)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:120]


def json_contract(
    what: str, *, version: int | tuple[int, ...] | None = None, hint: str = "re-create it with this tiercut"
) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Decorate a ``from_dict(cls, data, ...)`` with the contract's rules.

    Args:
        what: the type as a reader names it (``"plan"``, ``"upload plan"``).
        version: the ``schema_version`` a top-level document must carry (a
            tuple: the readable versions); None for a nested object, which
            has none.
        hint: what the reader should do, ending every error message.

    A ``where=`` keyword of the call (a file name) replaces ``what`` in the
    messages.
    """

    def decorate(from_dict: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(from_dict)
        def read(cls: Any, data: Any, *args: Any, **kwargs: Any) -> T:
            label = str(kwargs.get("where") or what)
            expect_object(data, label, hint)
            if version is not None:
                check_version(data, label, version, hint)
            try:
                return from_dict(cls, data, *args, **kwargs)
            except KeyError as exc:
                key = exc.args[0] if exc.args else "?"
                raise TiercutError(f"{label} lacks the field {key!r}; {hint}") from None
            except (TypeError, ValueError, AttributeError) as exc:
                raise TiercutError(f"{label} holds a value of the wrong type ({_one_line(exc)}); {hint}") from None

        setattr(read, CONTRACT_ATTRIBUTE, (what, version, hint))
        return read

    return decorate


#: the file kinds :func:`file_schema` exports (``tiercut schema KIND``).
SCHEMA_KINDS = ("env", "scenario", "grid")


def file_schema(kind: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of an environment (``env``) or scenario (``scenario``) file.

    Generated from the pydantic models those files are validated with
    (:class:`tiercut.env.schema.EnvironmentModel`,
    :class:`tiercut.sim.scenario.ScenarioSpec`), so it is what tiercut
    accepts, not a copy. Editors use it for completion and checking
    (``# yaml-language-server: $schema=...``; docs/contracts.md).
    """
    if kind == "env":
        from tiercut.env.schema import EnvironmentModel

        schema = EnvironmentModel.model_json_schema()
        title = "tiercut environment"
        description = "Devices, links and users a model is split over (tiercut plan --env FILE)."
    elif kind == "scenario":
        from tiercut.sim.scenario import ScenarioSpec

        schema = ScenarioSpec.model_json_schema()
        title = "tiercut scenario"
        description = "Users joining, uploading partitions and issuing queries over an environment (tiercut simulate FILE)."
    elif kind == "grid":
        from tiercut.sweep.grid import GridModel

        schema = GridModel.model_json_schema()
        title = "tiercut sweep grid"
        description = "Models x environments x planners x settings (x simulator replications) (tiercut sweep FILE)."
    else:
        raise TiercutError(f"no schema for {kind!r}; use one of {', '.join(SCHEMA_KINDS)}")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": title,
        "description": description,
        **{k: v for k, v in schema.items() if k not in ("title", "description")},
    }


def contract_of(cls: type) -> tuple[str, int | tuple[int, ...] | None, str] | None:
    """(what, version, hint) of a type whose ``from_dict`` follows :func:`json_contract`, else None."""
    reader = getattr(cls, "from_dict", None)
    return getattr(reader, CONTRACT_ATTRIBUTE, None)


__all__ = [
    "SCHEMA_KINDS",
    "check_version",
    "contract_of",
    "expect_object",
    "file_schema",
    "finite_or_null",
    "from_json_float",
    "json_contract",
    "json_float",
    "jsonable",
    "optional_float",
]
