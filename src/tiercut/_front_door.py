"""Steps named like their package: ``tiercut.graph``, ``tiercut.problem``, ``tiercut.plan``, ``tiercut.report``.

``tiercut.graph`` is the package of the graph stage (``tiercut.graph.LayerGraph``)
*and* the front-door function of that step (``tiercut.graph("resnet18")``):
Python sets a package's attribute to its submodule whenever the submodule is
imported, so a plain function of the same name in ``tiercut/__init__.py``
would be replaced the first time tiercut imports the submodule itself. Such a
module calls :func:`make_callable` on itself; calling it runs the pipeline step
:func:`tiercut.pipeline.<step>` of that name.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any


class StepModule(types.ModuleType):
    """A module that, called, runs the pipeline step it is named after."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        step = getattr(importlib.import_module("tiercut.pipeline"), self.__name__.rsplit(".", 1)[-1])
        return step(*args, **kwargs)


def make_callable(module_name: str) -> None:
    """Make the module ``module_name`` (``tiercut.<step>``) callable as :func:`tiercut.pipeline.<step>`."""
    sys.modules[module_name].__class__ = StepModule


__all__ = ["StepModule", "make_callable"]
