"""Shared fixtures: zoo models are captured once per test session."""

from __future__ import annotations

import functools
import warnings

import pytest

warnings.filterwarnings("ignore", message="The default weight initialization", category=FutureWarning)


@functools.cache
def captured(name: str, granularity: str = "module", input_shape: tuple[int, ...] | None = None):
    """A zoo model captured once per session (module or block granularity)."""
    from tiercut.graph import capture_model

    return capture_model(name, input_shape, granularity=granularity)


@pytest.fixture(scope="session")
def capture_zoo():
    return captured
