"""Fixtures for pytest-nocrud's own tests: throwaway data dirs for embedded clusters."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _support import PasswordServer, discard_cluster_dir, new_cluster_dir, start_password_server


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


@pytest.fixture(scope="session")
def password_server() -> Iterator[PasswordServer]:
    """A server on 127.0.0.1 that wants a password (scram-sha-256), shared by one worker's tests.

    ``password_server.admin`` is its superuser ConnInfo; ``.admin.dsn`` is what ``--nocrud-dsn`` takes.
    """
    server = start_password_server()
    yield server
    server.stop()
