"""The public fixtures. Each is a thin view onto the process's Runtime (see runtime.py)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import httpx
import pytest

from .app.process import AppProcess, LiveApp
from .app.setups import frozen
from .errors import SetupFailed
from .flows.auth import AsBearer, AsUser, ClientFactory, Login, new_client
from .flows.baked import BAKED
from .flows.locate import use_openapi_path
from .flows.timeline import RequestLog, make_client
from .pg.conninfo import ConnInfo
from .pg.server import PostgresServer
from .pg.template import Template
from .pg.testdb import TestDatabase
from .runtime import Runtime
from .state import TestState, state_of

RUNTIME = pytest.StashKey[Runtime]()
T = TypeVar("T")


def runtime_of(config: pytest.Config) -> Runtime:
    return config.stash[RUNTIME]


def _state(request: pytest.FixtureRequest) -> TestState:
    """This test's state, which the report hooks read (see state.py)."""
    return state_of(request.node, runtime_of(request.config).worker)


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
    """This test's fresh database: ``.name``, ``.dsn``, ``.connect()``, ``.reset()``."""
    runtime = runtime_of(request.config)
    started, clock = time.time(), time.perf_counter()
    database = TestDatabase(_or_fail(runtime.fresh_database))
    _state(request).trace.handoff = (started, time.perf_counter() - clock)
    database._fresh = lambda: _fresh_mid_test(request, database)
    yield database
    database._fresh = None
    database.close()
    state = _state(request)
    try:
        _judge_app_database(request, database)
    finally:
        if state.kept is None:  # a kept failed-test database was renamed away already
            runtime.release_database()


def _fresh_mid_test(request: pytest.FixtureRequest, database: TestDatabase) -> ConnInfo:
    """``nocrud_db.reset()``: judge the app-database evidence of the part before (it dies with that
    database), hand over the next database, and start the request log's next segment."""
    runtime, state = runtime_of(request.config), _state(request)
    _judge_app_database(request, database)
    info = _or_fail(runtime.reset_database)
    if state.requests is not None:
        state.requests.new_database()
    if state.app_db_baseline is not None:
        state.app_db_baseline = _or_fail(lambda: runtime.app_database_baseline(database))
        state.app_db_from = len(state.requests) if state.requests is not None else 0
    return info


def _judge_app_database(request: pytest.FixtureRequest, database: TestDatabase) -> None:
    """Stop the run if the app wrote successfully without touching this test's database."""
    runtime, state = runtime_of(request.config), _state(request)
    baseline = state.app_db_baseline
    if baseline is None:
        return
    entries = state.requests.since(state.app_db_from) if state.requests is not None else []
    judge = lambda: runtime.judge_app_database(baseline, entries, database.opened)  # noqa: E731
    _or_fail(judge, stop=request.session)


def _app_scope(fixture_name: str, config: pytest.Config) -> str:
    """nocrud_app_scope = test restarts the app for every test; the default keeps one per worker."""
    return "function" if runtime_of(config).settings.app_scope == "test" else "session"


@pytest.fixture(scope=_app_scope)  # type: ignore[arg-type]
def nocrud_app(request: pytest.FixtureRequest, nocrud_template: Template) -> Iterator[LiveApp]:
    """The live app server: ``.url``, ``.port``, ``.log_path``."""
    runtime = runtime_of(request.config)
    if runtime.app_per_test:
        request.getfixturevalue("nocrud_db")  # this test's clone first, then an app on it
        app = _or_fail(runtime.new_app)
        yield app
        app.stop()
    else:
        yield _or_fail(runtime.app)


@pytest.fixture
def nocrud_client(
    request: pytest.FixtureRequest, nocrud_db: TestDatabase, nocrud_app: LiveApp
) -> Iterator[httpx.Client]:
    """``httpx.Client(base_url=nocrud_app.url)``; every request is timed and shown if the test fails."""
    BAKED.use(_or_fail(runtime_of(request.config).template_setup_outputs).baked)  # once per process
    use_openapi_path(runtime_of(request.config).settings.openapi_path)  # where CrudFlow reads the schema
    log = RequestLog()
    state = _state(request)
    state.requests = log
    state.app_db_baseline = _or_fail(lambda: runtime_of(request.config).app_database_baseline(nocrud_db))
    with make_client(nocrud_app.url, log=log) as client:
        yield client


@pytest.fixture
def nocrud_client_factory(nocrud_client: httpx.Client) -> Iterator[ClientFactory]:
    """Make more clients of the same app (e.g. a second logged-in user); they share the request log.

    ``nocrud_client_factory(as_user=AsUser("writer2", "writer2-pass"))`` returns a logged-in client;
    ``as_user`` is anything ``Flow(as_user=...)`` takes: ``AsUser``, ``AsToken``, ``AsBearer`` or a
    function of the client (labelled by its name in the request table).
    """
    made: list[httpx.Client] = []

    def make(as_user: Login | None = None, label: str | None = None) -> httpx.Client:
        client = new_client(nocrud_client, as_user=as_user, label=label or client_label(as_user))
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture(scope=_app_scope)  # type: ignore[arg-type]
def nocrud_openapi_schema(request: pytest.FixtureRequest, nocrud_app: LiveApp) -> Any:
    """The app's OpenAPI schema as schemathesis loads it, read from the running app at
    ``nocrud_openapi_path`` (once per worker); for ``schemathesis.pytest.from_fixture``."""
    from .flows.fuzz import load_schema  # the fuzz extra: imported by tests that fuzz only

    path = runtime_of(request.config).settings.openapi_path or "/openapi.json"
    with make_client(nocrud_app.url) as client:
        return _or_fail(lambda: load_schema(client, path))


@pytest.fixture
def nocrud_fuzz(nocrud_db: TestDatabase, nocrud_client: httpx.Client) -> Any:
    """schemathesis cases on a fresh database each: ``nocrud_fuzz.call(case)``, and
    ``nocrud_fuzz.state_machine(schema)`` for stateful scenarios (see flows/fuzz.py)."""
    from .flows.fuzz import Fuzz

    return Fuzz(nocrud_client, nocrud_db.reset)


@pytest.fixture(scope="session")
def nocrud_setup(request: pytest.FixtureRequest, nocrud_template: Template) -> Mapping[str, Any]:
    """What the ``@template_setup`` functions returned, by function name (read-only; one read per worker)."""
    stored = _or_fail(runtime_of(request.config).template_setup_outputs)
    return frozen(stored.outputs)  # type: ignore[no-any-return]


def client_label(as_user: Login | None) -> str | None:
    """A label that tells clients apart in reports: ``as writer``, ``bearer …f00`` (a token's last 3)."""
    if isinstance(as_user, AsUser):
        return f"as {as_user.username}"
    if isinstance(as_user, AsBearer) and as_user.label == "bearer":  # the default: add the token's tail
        return f"bearer …{as_user.token[-3:]}" if len(as_user.token) >= 12 else "bearer"
    return None


@pytest.fixture(autouse=True)
def _nocrud_test_context(request: pytest.FixtureRequest) -> None:
    """``@pytest.mark.crud_flow`` brings a fresh database and the app; remember where its log starts."""
    if request.node.get_closest_marker("crud_flow") is not None:
        request.getfixturevalue("nocrud_db")
        request.getfixturevalue("nocrud_app")
    if "nocrud_app" in request.fixturenames:
        app = request.getfixturevalue("nocrud_app")
        if isinstance(app, AppProcess):
            _or_fail(lambda: runtime_of(request.config).revive_app(app))  # it exited since the last test
            state = _state(request)
            state.app, state.app_log, state.app_log_from = app, app.log, app.log.offset()


def _or_fail(make: Callable[[], T], *, stop: pytest.Session | None = None) -> T:
    """Report a setup failure as its message alone (no traceback, no chained exception); with ``stop``,
    also end the run after this test (pytest -x style)."""
    try:
        return make()
    except SetupFailed as failure:
        message = str(failure)
    if stop is not None:
        stop.shouldstop = message.splitlines()[0]
    pytest.fail(message, pytrace=False)
