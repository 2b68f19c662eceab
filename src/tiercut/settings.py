"""Explicit, introspectable settings (scikit-learn's ``BaseEstimator`` idea).

A :class:`Configurable` takes its settings as constructor keywords and
stores each under the same attribute name; ``__init__`` does no work.
:meth:`~Configurable.get_params` lists them so experiments can log exactly
what ran, :meth:`~Configurable.set_params` changes them with a clear error
for an unknown name. Planners and upload planners both build on it.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar, Self

from tiercut.errors import TiercutError


class Configurable:
    """Settings = the constructor's keyword parameters, stored as attributes."""

    name: ClassVar[str] = ""
    kind: ClassVar[str] = "component"  # how errors name it: "planner", "upload planner"

    @classmethod
    def _param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return [
            p.name
            for p in signature.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    def get_params(self) -> dict[str, Any]:
        """The constructor keywords and their current values."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> Self:
        """Change settings (unknown names are a :class:`TiercutError`)."""
        known = set(self._param_names())
        for key, value in params.items():
            if key not in known:
                raise TiercutError(
                    f"{self.kind} {self.name!r} has no setting {key!r}; its settings are {', '.join(sorted(known)) or 'none'}"
                )
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"
