"""The public fixtures. Each is a thin view onto the process's Runtime (see runtime.py)."""

from __future__ import annotations

import pytest

from .runtime import Runtime, SetupFailed
from .server import PostgresServer

RUNTIME = pytest.StashKey[Runtime]()


def runtime_of(config: pytest.Config) -> Runtime:
    return config.stash[RUNTIME]


@pytest.fixture(scope="session")
def nocrud_postgres(request: pytest.FixtureRequest) -> PostgresServer:
    """The PostgreSQL server in use: ``.dsn`` (admin), ``.version``, ``.embedded``."""
    try:
        return runtime_of(request.config).postgres()
    except SetupFailed as failure:
        pytest.fail(str(failure), pytrace=False)
