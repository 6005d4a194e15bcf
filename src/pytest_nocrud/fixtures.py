"""The public fixtures. Each is a thin view onto the process's Runtime (see runtime.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from .runtime import Runtime, SetupFailed
from .server import PostgresServer
from .template import Template
from .testdb import TestDatabase

RUNTIME = pytest.StashKey[Runtime]()
KEEP_AS = pytest.StashKey[str]()  # set by the report hook when a failed test's database is kept
T = TypeVar("T")


def runtime_of(config: pytest.Config) -> Runtime:
    return config.stash[RUNTIME]


@pytest.fixture(scope="session")
def nocrud_postgres(request: pytest.FixtureRequest) -> PostgresServer:
    """The PostgreSQL server in use: ``.dsn`` (admin), ``.version``, ``.embedded``."""
    return _or_fail(runtime_of(request.config).postgres)


@pytest.fixture(scope="session")
def nocrud_template(request: pytest.FixtureRequest, nocrud_postgres: PostgresServer) -> Template:
    """The finalized template database: ``.name``, ``.key``, ``.reused``, ``.build_seconds``."""
    return _or_fail(runtime_of(request.config).template)


@pytest.fixture
def nocrud_db(request: pytest.FixtureRequest, nocrud_template: Template) -> Iterator[TestDatabase]:
    """This test's fresh database: ``.name``, ``.dsn``, ``.connect()``."""
    pool = _or_fail(runtime_of(request.config).pool)
    pool.handoff()
    database = TestDatabase(pool.info)
    yield database
    database.close()
    kept = request.node.stash.get(KEEP_AS, None)
    if kept:
        pool.keep_current(kept)


def _or_fail(make: Callable[[], T]) -> T:
    """Report a setup failure as its message alone (no traceback, no chained exception)."""
    try:
        return make()
    except SetupFailed as failure:
        message = str(failure)
    pytest.fail(message, pytrace=False)
