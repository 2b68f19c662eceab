"""Shared fixtures: zoo models are captured once per test session."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
import warnings

import pytest

warnings.filterwarnings("ignore", message="The default weight initialization", category=FutureWarning)

# the graph cache of this test session: fresh, so no entry of an earlier run (or of the user's) is read
os.environ["TIERCUT_CACHE_DIR"] = tempfile.mkdtemp(prefix="tiercut-test-cache-")
atexit.register(shutil.rmtree, os.environ["TIERCUT_CACHE_DIR"], ignore_errors=True)


@functools.cache
def captured(name: str, granularity: str = "module", input_shape: tuple[int, ...] | None = None):
    """A zoo model captured once per session (module or block granularity)."""
    from tiercut.graph import capture_model

    return capture_model(name, input_shape, granularity=granularity)


@pytest.fixture(scope="session")
def capture_zoo():
    return captured
