"""Test lanes: ``make check`` runs ``-m "not slow"`` (under a minute on two cores), ``make test`` everything.

Zoo-wide parametrisations keep one model in the fast lane and mark the rest
``slow`` (:func:`fast_first`); tests spawning worker processes or taking more
than a few seconds are marked ``slow`` where they are defined.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest

#: the zoo model the fast lane keeps: a small DAG (residual joins) with batch norm, convolutions and a linear head.
FAST_MODEL = "resnet18"


def fast_first(names: Iterable[str], fast: str = FAST_MODEL) -> list:
    """Parameters for a zoo-wide test: ``fast`` as is, every other name marked ``slow``."""
    names = list(names)
    if fast not in names:
        raise ValueError(f"the fast-lane model {fast!r} is not among {names}")
    return [name if name == fast else pytest.param(name, marks=pytest.mark.slow) for name in names]
