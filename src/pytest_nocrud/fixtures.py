"""The public fixtures. Each is a thin view onto the process's Runtime (see runtime.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import pytest

from .runtime import Runtime, SetupFailed
from .server import PostgresServer

RUNTIME = pytest.StashKey[Runtime]()
T = TypeVar("T")


def runtime_of(config: pytest.Config) -> Runtime:
    return config.stash[RUNTIME]


@pytest.fixture(scope="session")
def nocrud_postgres(request: pytest.FixtureRequest) -> PostgresServer:
    """The PostgreSQL server in use: ``.dsn`` (admin), ``.version``, ``.embedded``."""
    return _or_fail(runtime_of(request.config).postgres)


def _or_fail(make: Callable[[], T]) -> T:
    """Report a setup failure as its message alone (no traceback, no chained exception)."""
    try:
        return make()
    except SetupFailed as failure:
        message = str(failure)
    pytest.fail(message, pytrace=False)
