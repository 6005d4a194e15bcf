"""Fixtures for pytest-nocrud's own tests: throwaway data dirs for embedded clusters."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _support import discard_cluster_dir, new_cluster_dir


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A data dir that does not exist yet (cold start); removed afterwards."""
    path = new_cluster_dir()
    yield path
    discard_cluster_dir(path)


@pytest.fixture(scope="session")
def warm_data_dir() -> Iterator[Path]:
    """A data dir shared by the tests of one worker, initialised once (warm starts)."""
    path = new_cluster_dir()
    yield path
    discard_cluster_dir(path)
