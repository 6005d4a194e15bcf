"""The example flows under pytest-django: what a Django team would write without pytest-nocrud.

Copied next to the example flows by bench/run.py (which runs them with ``-p no:nocrud``). It provides the
fixture names the flows use, built the way pytest-django users build them:

* database: pytest-django's per-worker test database (``test_pitchdesk_gw0``: created and migrated once
  per worker and session; ``--reuse-db`` keeps it between sessions) and ``transactional_db``, i.e.
  Django's TransactionTestCase: the test commits for real, and *every table is flushed after the test*
  (TRUNCATE ... plus post_migrate re-creating content types and permissions).
* fixture rows: the flush loses them, so they are loaded again before every test from the same files
  pytest-nocrud loads into its template (``call_command("loaddata", ...)``, which is exactly what
  TransactionTestCase does for ``fixtures = [...]``). ``serialized_rollback`` would not help: it
  restores only what migrations created, not loaddata rows.
* app: ``live_server``, a Django server *thread inside the test process* (pytest-django's architecture:
  one per worker, sharing the worker's CPU and GIL with the test code).

One change to stock pytest-django, for fairness: the example app's own ``runserver`` sets TCP_NODELAY
(without it every keep-alive request waits ~40 ms for a delayed ACK); the live server gets the same, so
the comparison measures isolation strategies rather than Nagle's algorithm.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.servers.basehttp import ThreadedWSGIServer
from django.db import connection
from django.test.testcases import LiveServerThread

from pytest_nocrud.flows.auth import AsBearer, AsUser, new_client
from pytest_nocrud.flows.timeline import RequestLog, make_client

HERE = Path(__file__).resolve().parent
FIXTURES = [
    str(HERE / "fixtures" / "users.json"),
    str(HERE / "fixtures" / "catalog.json"),
]  # = nocrud_fixtures


class _NoDelayServer(ThreadedWSGIServer):
    def get_request(self) -> tuple[socket.socket, Any]:
        conn, address = super().get_request()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, address


LiveServerThread.server_class = _NoDelayServer
# live_server's static-files wrapper needs STATIC_URL, which every real Django project sets and the example
# app (no staticfiles) does not: without it every request through live_server is a 500.
settings.STATIC_URL = "/static/"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "crud_flow: end-to-end flow (bench: pytest-django contender)")


@dataclass
class DjangoTestDatabase:
    """``nocrud_db`` look-alike: the worker's test database, which this test has to itself until flush."""

    name: str
    dsn: str
    _connections: list[psycopg.Connection[Any]] = field(default_factory=list)

    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self.dsn, **kwargs)
        self._connections.append(conn)
        return conn

    def close(self) -> None:  # before the flush: an open session would block TRUNCATE
        for conn in self._connections:
            conn.close()


@dataclass(frozen=True)
class LiveApp:
    url: str
    port: int
    log_path: Path | None = None


@pytest.fixture
def nocrud_db(transactional_db: None, django_db_blocker: Any) -> Iterator[DjangoTestDatabase]:
    """Fixture rows loaded into the (flushed) test database, as TransactionTestCase.fixtures does."""
    with django_db_blocker.unblock():
        call_command("loaddata", *FIXTURES, verbosity=0)
        params = connection.get_connection_params()
    dsn = psycopg.conninfo.make_conninfo(
        **{k: v for k, v in params.items() if k in ("dbname", "user", "password", "host", "port")}
    )
    database = DjangoTestDatabase(name=str(params["dbname"]), dsn=dsn)
    yield database
    database.close()


@pytest.fixture
def nocrud_app(live_server: Any) -> LiveApp:
    return LiveApp(url=live_server.url, port=int(live_server.url.rsplit(":", 1)[1]))


@pytest.fixture
def nocrud_client(nocrud_db: DjangoTestDatabase, nocrud_app: LiveApp) -> Iterator[httpx.Client]:
    with make_client(nocrud_app.url, log=RequestLog()) as client:
        yield client


@pytest.fixture
def nocrud_client_factory(nocrud_client: httpx.Client) -> Iterator[Callable[..., httpx.Client]]:
    made: list[httpx.Client] = []

    def make(as_user: AsUser | AsBearer | None = None, label: str | None = None) -> httpx.Client:
        client = new_client(nocrud_client, as_user=as_user, label=label)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture(autouse=True)
def _crud_flow(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("crud_flow") is not None:
        request.getfixturevalue("nocrud_db")
        request.getfixturevalue("nocrud_app")


@pytest.fixture
def nocrud_setup(nocrud_client_factory: Callable[..., httpx.Client]) -> dict[str, Any]:
    """What the example's ``@template_setup`` functions bake into pytest-nocrud's template, made per test
    as a pytest-django suite must (the flush after each test takes it away): writer's pitch through the
    API. The logins need no stand-in: without a baked session ``AsUser`` logs in live in every test."""
    from pitchdesk_api import WRITER, create_pitch  # the example's own helpers (tests/ is on sys.path)

    return {"prerequisites": {"pitch": create_pitch(nocrud_client_factory(as_user=WRITER))}}
