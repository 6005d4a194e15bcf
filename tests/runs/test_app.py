"""The live app server through whole inner pytest runs: a real app process, real HTTP, real PostgreSQL.

The inner project is tiny on purpose: a stdlib ``http.server`` app (``APP`` below) that reads
``DATABASE_URL``, answers ``/ready`` once it could connect, and misbehaves on request (``APP_MODE``:
crash at start, never become ready, collide on a port). It appends its pid to ``app_pids`` at start, so
the outer test can count app starts and check that none survives the run. The template comes from a
one-file ``sql:`` builder, so it builds in milliseconds.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _support import JSON_HANDLER, popen_inner, postgres_pids, run_inner

from pytest_nocrud.app.process import PORT_ATTEMPTS
from pytest_nocrud.pg.procs import is_running

APP = JSON_HANDLER + r'''
"""Tiny app under test: one table, a few endpoints, misbehaviour chosen by APP_MODE."""
import contextlib, http.server, json, os, pathlib, signal, socket, sys, time
import psycopg

KEPT = None  # wrong-db mode's pooled connection

MODE = os.environ.get("APP_MODE", "ok")
HERE = pathlib.Path(__file__).parent
port = int(sys.argv[1])
with open(HERE / "app_pids", "a") as pids:
    pids.write(f"{os.getpid()}\n")
print(f"app {os.getpid()} starting on port {port} mode {MODE}", flush=True)

if MODE == "crash":
    print("fatal: SECRET_KEY is not set", flush=True)
    sys.exit(3)
if MODE == "hang":
    def on_term(signum, frame):
        (HERE / "hang_terms").write_text(f"{os.getpid()}")
        sys.exit(0)
    signal.signal(signal.SIGTERM, on_term)
    print("warming caches forever", flush=True)
    while True:
        time.sleep(1)
if MODE == "elsewhere":  # ignores the port it was given, as if {port} were not passed on
    port = 0
if MODE.startswith("collide"):
    attempts = HERE / "collide_attempts"
    first = not attempts.exists()
    with open(attempts, "a") as f:
        f.write(f"{port}\n")
    if first or MODE == "collide-always":
        port = int(os.environ["HELD_PORT"])  # the outer test holds this one open


def on_term(signum, frame):  # proves an orderly stop by the plugin, not a death by SIGPIPE
    with open(HERE / "app_terms", "a") as terms:
        terms.write(f"{os.getpid()}\n")
    sys.exit(0)


signal.signal(signal.SIGTERM, on_term)


class Handler(JsonHandler):

    def _db(self):
        if MODE == "wrong-db":  # settings that ignore DATABASE_URL, and a pool that keeps its session
            global KEPT
            if KEPT is None:
                KEPT = psycopg.connect(os.environ["DATABASE_URL"], dbname="postgres", autocommit=True)
            return contextlib.nullcontext(KEPT)
        return psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)

    def do_GET(self):
        if self.path == "/ready" and MODE == "error500":
            return self._send(500, "ImproperlyConfigured: SECRET_KEY must not be empty\nline two")
        if self.path == "/ready":
            with self._db() as conn:
                conn.execute("select 1")
            return self._send(200, "ready")
        if self.path == "/count":
            with self._db() as conn:
                return self._send(200, conn.execute("select count(*) from items").fetchone()[0])
        if self.path == "/info":
            env = {name: os.environ.get(name) for name in ("APP_DB", "APP_PORT", "APP_DSN", "PGDATABASE")}
            return self._send(200, {"pid": os.getpid(), "port": port, "env": env})
        if self.path == "/post-only":
            return self._send(405, "use POST here")
        if self.path == "/private":
            return self._send(401, "log in first")
        self._send(404, "no such path")

    def do_POST(self):
        if self.path.startswith("/items/"):
            label = self.path.removeprefix("/items/")
            print(f"creating item {label}", file=sys.stderr, flush=True)
            with self._db() as conn:
                conn.execute("insert into items (label) values (%s)", (label,))
            return self._send(201, label)
        self._send(404, "no such path")


server = http.server.HTTPServer(("127.0.0.1", port), Handler)
print(f"really listening on {server.server_port}", flush=True)
server.serve_forever()
'''

SCHEMA = """
create table items (id serial primary key, label text not null);
insert into items (label) values ('seed-1'), ('seed-2');
"""

INI = """
[pytest]
nocrud_builder = sql:schema
nocrud_app_command = {{python}} -u app.py {{port}}
nocrud_app_ready_path = {ready}
nocrud_app_start_timeout = {timeout}
{extra}
"""

SEED_ROWS = 2
ENV_LINES = """nocrud_app_env =
    APP_DB={dbname}
    APP_PORT={app_port}
    APP_DSN={dsn}
"""


def _project(
    pytester: pytest.Pytester, *, timeout: float = 20, extra: str = "", ready: str = "/ready"
) -> None:
    pytester.makefile(".py", app=APP)
    (pytester.path / "schema").mkdir()
    (pytester.path / "schema" / "001_items.sql").write_text(SCHEMA)
    pytester.makeini(INI.format(timeout=timeout, extra=extra, ready=ready))


def _app_pids(pytester: pytest.Pytester) -> list[int]:
    path = pytester.path / "app_pids"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def _assert_nothing_left(pytester: pytest.Pytester, data_dir: Path, output: str = "") -> None:
    """No app process the run started and no postgres for its data dir may be alive."""
    alive = [pid for pid in _app_pids(pytester) if is_running(pid)]
    assert alive == [], f"app processes left running: {alive}\n{output}"
    assert postgres_pids(data_dir) == [], output


def _wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 60.0) -> str:
    """Block until the inner run writes ``path`` (returns its text); fail with its output if it exits."""
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text().endswith("\n")):
        if proc.poll() is not None:
            pytest.fail(f"inner run exited early:\n{proc.stdout.read() if proc.stdout else ''}")
        assert time.monotonic() < deadline, "inner run never reached its test"
        time.sleep(0.02)  # polling for the other process, not waiting for a result to appear true
    return path.read_text()


@pytest.fixture
def held_port() -> Iterator[int]:
    """A loopback port held open (listening) for the whole test: any app binding it collides."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


# -- isolation, start count, leftovers -------------------------------------------------------------

ISOLATION = """
import pytest

@pytest.mark.crud_flow
def test_app_env_placeholders_reach_the_app(nocrud_client, nocrud_db, nocrud_app):
    env = nocrud_client.get("/info").json()["env"]
    assert env["APP_DB"] == nocrud_db.name == env["PGDATABASE"]
    assert env["APP_PORT"] == str(nocrud_app.port)
    assert env["APP_DSN"] == nocrud_db.dsn

@pytest.mark.crud_flow
@pytest.mark.parametrize("n", range(6))
def test_create_through_the_app(nocrud_client, nocrud_db, n):
    assert nocrud_client.get("/count").json() == {seed}, "rows of an earlier test leaked"
    assert nocrud_client.post(f"/items/made-by-{{n}}").status_code == 201
    assert nocrud_client.get("/count").json() == {seed} + 1
    with nocrud_db.connect() as conn:  # the app writes into exactly this test's database
        labels = [row[0] for row in conn.execute("select label from items order by id")]
    assert labels == ["seed-1", "seed-2", f"made-by-{{n}}"]
"""


@pytest.mark.parametrize("workers", [["-n", "2"], ["-p", "no:xdist"]], ids=["xdist", "single"])
def test_each_test_sees_only_seed_rows_and_the_app_starts_once_per_worker(
    pytester: pytest.Pytester, warm_data_dir: Path, workers: list[str]
) -> None:
    """Also: nocrud_app_env placeholders are filled with this worker's database and app port."""
    _project(pytester, extra=ENV_LINES)
    pytester.makepyfile(test_inner=ISOLATION.format(seed=SEED_ROWS))

    result = run_inner(pytester, warm_data_dir, "-v", *workers)

    result.assert_outcomes(passed=7)
    used = set(re.findall(r"\[(gw\d+)\]", result.stdout.str())) or {"main"}
    assert len(_app_pids(pytester)) == len(used), "one app start per worker that ran tests"
    _assert_nothing_left(pytester, warm_data_dir, result.stdout.str())


# -- failure report -----------------------------------------------------------------------------------

FAILING = """
import pytest

@pytest.mark.crud_flow
def test_a_passes(nocrud_client):
    assert nocrud_client.post("/items/marker-of-a-7f3e").status_code == 201

@pytest.mark.crud_flow
def test_b_fails(nocrud_client):
    assert nocrud_client.post("/items/marker-of-b-91c2").status_code == 201
    assert nocrud_client.get("/no-such-page").status_code == 200
"""


def test_failure_report_has_this_tests_app_log_and_request_table(
    pytester: pytest.Pytester, warm_data_dir: Path
) -> None:
    _project(pytester)
    pytester.makepyfile(test_inner=FAILING)

    result = run_inner(pytester, warm_data_dir, "-p", "no:xdist")

    result.assert_outcomes(passed=1, failed=1)
    text = result.stdout.str()
    log_section = _section(text, "app log")
    requests = _section(text, "nocrud requests")
    assert "[app:" in log_section and "creating item marker-of-b-91c2" in log_section, log_section
    assert "marker-of-a-7f3e" not in log_section, "the previous test's log lines leaked into this report"
    assert "starting on port" not in log_section, "start-up lines belong to no test"
    assert len(set(re.findall(r"\[app:(\d+)\]", log_section))) == 1, "every line names the app's port"
    assert re.search(r"\[app:\d+\] .*\"GET /no-such-page HTTP/1.1\" 404", log_section), log_section
    assert re.search(r"POST\s+/items/marker-of-b-91c2\s+201", requests), requests
    assert re.search(r"GET\s+/no-such-page\s+404", requests), requests
    assert "marker-of-a" not in requests
    _assert_nothing_left(pytester, warm_data_dir, text)


def _section(text: str, title: str) -> str:
    """The body of the report section whose ``----- title ... -----`` header contains ``title``."""
    match = re.search(
        rf"^-+ {re.escape(title)}.*?-+$\n(.*?)(?=^(?:-+ .*-+|[=_]{{5,}}.*)$)", text, re.M | re.S
    )
    assert match, f"no {title!r} section in:\n{text}"
    return match.group(1)


# -- start-up failures --------------------------------------------------------------------------------

NEEDS_APP = """
import pytest

@pytest.mark.crud_flow
@pytest.mark.parametrize("n", range(3))
def test_flow(nocrud_client, n):
    nocrud_client.get("/count")

def test_without_app():
    assert 2 + 2 == 4

def test_with_db_only(nocrud_db):
    with nocrud_db.connect() as conn:
        assert conn.execute("select count(*) from items").fetchone() == ({seed},)
"""


def test_app_crashing_at_start_is_reported_once_with_exit_code_and_log(
    pytester: pytest.Pytester, warm_data_dir: Path
) -> None:
    _project(pytester)
    pytester.makepyfile(test_inner=NEEDS_APP.format(seed=SEED_ROWS))

    result = run_inner(pytester, warm_data_dir, "-p", "no:xdist", APP_MODE="crash")

    result.assert_outcomes(passed=2, errors=3)
    text = result.stdout.str()
    assert "the app exited with code 3 during start-up" in text, text
    assert re.search(r"\[app:\d+\] fatal: SECRET_KEY is not set", text), text
    assert text.count("fatal: SECRET_KEY is not set") == 1, "its last log lines in full once per worker"
    assert "app.py" in text, "the command is named"
    assert text.count("full error in the first failing test") == 2, text
    assert len(_app_pids(pytester)) == 1, "a failed start is not retried by every later test"
    _assert_nothing_left(pytester, warm_data_dir, text)


def test_an_app_on_another_database_is_stopped_before_any_test(
    pytester: pytest.Pytester, warm_data_dir: Path
) -> None:
    _project(pytester)
    pytester.makepyfile(test_inner=NEEDS_APP.format(seed=SEED_ROWS))

    result = run_inner(pytester, warm_data_dir, "-p", "no:xdist", APP_MODE="wrong-db")

    out = result.stdout.str()
    result.assert_outcomes(passed=2, errors=3)  # the tests without the app still run
    assert out.count("the app connected to database 'postgres' instead of this worker's test database") == 4
    assert out.count("Make the app's settings read DATABASE_URL") == 1, "in full once, then one line"
    _assert_nothing_left(pytester, warm_data_dir, out)


def test_app_never_ready_fails_within_the_start_timeout(
    pytester: pytest.Pytester, warm_data_dir: Path
) -> None:
    _project(pytester, timeout=2)
    pytester.makepyfile(test_inner=NEEDS_APP.format(seed=SEED_ROWS))

    result = run_inner(pytester, warm_data_dir, "-p", "no:xdist", APP_MODE="hang")

    result.assert_outcomes(passed=2, errors=3)
    text = result.stdout.str()
    assert "did not answer GET /ready" in text and "within 2s" in text, text  # the deadline's message
    assert re.search(r"\[app:\d+\] warming caches forever", text), text
    (app_pid,) = _app_pids(pytester)
    assert (pytester.path / "hang_terms").read_text() == str(app_pid), "the plugin TERMed the hung app"
    _assert_nothing_left(pytester, warm_data_dir, text)


def test_port_taken_at_first_bind_is_retried_on_another_port(
    pytester: pytest.Pytester, warm_data_dir: Path, held_port: int
) -> None:
    _project(pytester)
    pytester.makepyfile(test_inner=NEEDS_APP.format(seed=SEED_ROWS))

    result = run_inner(
        pytester, warm_data_dir, "-p", "no:xdist", APP_MODE="collide-once", HELD_PORT=str(held_port)
    )

    result.assert_outcomes(passed=5)
    ports = (pytester.path / "collide_attempts").read_text().split()
    assert len(ports) == 2 and ports[0] != ports[1], "one collision, then a start on a new port"
    _assert_nothing_left(pytester, warm_data_dir, result.stdout.str())


def test_port_always_taken_fails_clearly_after_bounded_retries(
    pytester: pytest.Pytester, warm_data_dir: Path, held_port: int
) -> None:
    _project(pytester)
    pytester.makepyfile(test_inner=NEEDS_APP.format(seed=SEED_ROWS))

    result = run_inner(
        pytester, warm_data_dir, "-p", "no:xdist", APP_MODE="collide-always", HELD_PORT=str(held_port)
    )

    result.assert_outcomes(passed=2, errors=3)
    text = result.stdout.str()
    assert len((pytester.path / "collide_attempts").read_text().split()) == PORT_ATTEMPTS
    assert f"'address already in use' on {PORT_ATTEMPTS} attempts" in text, text
    assert "Does nocrud_app_command pass {port}" in text, "the likely cause is named"
    assert text.count("Address already in use") == 1, "the app's own words, once in full"
    _assert_nothing_left(pytester, warm_data_dir, text)


# -- interrupted and killed runs ---------------------------------------------------------------------

BLOCKS = """
import os, pathlib, time
import pytest

@pytest.mark.crud_flow
def test_holds_the_app(nocrud_client):
    assert nocrud_client.get("/count").status_code == 200
    pathlib.Path(os.environ["STARTED"]).write_text(f"{os.getpid()}\\n")
    release = pathlib.Path(os.environ["RELEASE"])
    deadline = time.monotonic() + 60
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # until the outer test interrupts or kills us
"""


def test_sigint_mid_test_stops_app_and_server(
    pytester: pytest.Pytester, warm_data_dir: Path, tmp_path: Path
) -> None:
    _project(pytester)
    pytester.makepyfile(test_inner=BLOCKS)
    started = tmp_path / "started"
    proc = popen_inner(
        pytester, warm_data_dir, "-n", "2", STARTED=str(started), RELEASE=str(tmp_path / "never")
    )
    _wait_for(started, proc)
    (app_pid,) = _app_pids(pytester)
    assert is_running(app_pid) and postgres_pids(warm_data_dir), "the run should be using both now"

    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    output, _ = proc.communicate(timeout=60)

    assert proc.returncode != 0
    assert (pytester.path / "app_terms").read_text().split() == [str(app_pid)], "an orderly stop"
    _assert_nothing_left(pytester, warm_data_dir, output)


def test_sigkilled_worker_app_is_stopped_by_the_run_owner(
    pytester: pytest.Pytester, warm_data_dir: Path, tmp_path: Path
) -> None:
    _project(pytester)
    pytester.makepyfile(test_inner=BLOCKS)
    started = tmp_path / "started"
    proc = popen_inner(
        pytester, warm_data_dir, "-n", "2", "--max-worker-restart=0",
        STARTED=str(started), RELEASE=str(tmp_path / "never"),
    )  # fmt: skip
    worker_pid = int(_wait_for(started, proc))
    (app_pid,) = _app_pids(pytester)

    os.kill(worker_pid, signal.SIGKILL)  # the worker cannot clean up: its app must not be orphaned
    output, _ = proc.communicate(timeout=60)

    assert proc.returncode != 0 and "crashed" in output, output
    assert (pytester.path / "app_terms").read_text().split() == [str(app_pid)], "the owner TERMed it"
    _assert_nothing_left(pytester, warm_data_dir, output)


@pytest.mark.parametrize("reaper", ["next run", "nocrud gc"])
def test_apps_orphaned_by_a_kill_9_of_pytest_are_ended_later(
    pytester: pytest.Pytester, warm_data_dir: Path, tmp_path: Path, reaper: str
) -> None:
    """kill -9 gives pytest no chance to stop its app (its own session): whoever comes next must."""
    _project(pytester)
    pytester.makepyfile(test_inner=BLOCKS)
    started = tmp_path / "started"
    proc = popen_inner(
        pytester, warm_data_dir, "-p", "no:xdist", STARTED=str(started), RELEASE=str(tmp_path / "never")
    )
    _wait_for(started, proc)
    (app_pid,) = _app_pids(pytester)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert is_running(app_pid), "precondition: the app outlived pytest"

    if reaper == "next run":
        (tmp_path / "never").touch()  # this time the test returns at once
        result = run_inner(pytester, warm_data_dir, "-p", "no:xdist", STARTED=str(started),
                           RELEASE=str(tmp_path / "never"))  # fmt: skip
        result.assert_outcomes(passed=1)
        output = result.stdout.str()
    else:
        done = subprocess.run(
            [sys.executable, "-m", "pytest_nocrud.cli", "--data-dir", str(warm_data_dir), "gc"],
            cwd=pytester.path, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        output = done.stdout + done.stderr
        assert done.returncode == 0 and "stopped 1 app(s) of dead runs" in output, output

    assert app_pid in [int(pid) for pid in (pytester.path / "app_terms").read_text().split()], output
    _assert_nothing_left(pytester, warm_data_dir, output)


@pytest.mark.parametrize("workers", [["-n", "2"], ["-p", "no:xdist"]], ids=["xdist", "single"])
def test_sigterm_to_pytest_alone_stops_app_and_server(
    pytester: pytest.Pytester, warm_data_dir: Path, tmp_path: Path, workers: list[str]
) -> None:
    """A cancelled CI job: SIGTERM reaches the pytest process only, not its process group."""
    _project(pytester)
    pytester.makepyfile(test_inner=BLOCKS)
    started = tmp_path / "started"
    proc = popen_inner(
        pytester, warm_data_dir, *workers, STARTED=str(started), RELEASE=str(tmp_path / "never")
    )
    _wait_for(started, proc)
    (app_pid,) = _app_pids(pytester)

    os.kill(proc.pid, signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)

    assert proc.returncode != 0
    assert not is_running(app_pid), output
    _assert_nothing_left(pytester, warm_data_dir, output)


# -- what starts when ---------------------------------------------------------------------------------


def test_collect_only_starts_no_app(pytester: pytest.Pytester, data_dir: Path) -> None:
    _project(pytester)
    pytester.makepyfile(test_inner=ISOLATION.format(seed=SEED_ROWS))

    run_inner(pytester, data_dir, "--collect-only").assert_outcomes()  # what an IDE's test explorer runs

    assert _app_pids(pytester) == []
    assert not data_dir.exists(), "nothing may be created before a test needs it"


PER_TEST = """
import pathlib
import pytest

@pytest.mark.crud_flow
@pytest.mark.parametrize("n", range(3))
def test_fresh_app_and_database(nocrud_client, nocrud_app, n):
    info = nocrud_client.get("/info").json()
    assert info["pid"] != __import__("os").getpid()
    with open("seen_pids", "a") as seen:
        seen.write(f"{{info['pid']}}\\n")
    assert info["port"] == nocrud_app.port
    assert nocrud_client.get("/count").json() == {seed}
    assert nocrud_client.post(f"/items/t{{n}}").status_code == 201
"""


def test_app_scope_test_restarts_the_app_for_every_test(
    pytester: pytest.Pytester, warm_data_dir: Path
) -> None:
    _project(pytester, extra="nocrud_app_scope = test")
    pytester.makepyfile(test_inner=PER_TEST.format(seed=SEED_ROWS))

    result = run_inner(pytester, warm_data_dir, "-p", "no:xdist")

    result.assert_outcomes(passed=3)
    seen = [int(pid) for pid in (pytester.path / "seen_pids").read_text().split()]
    assert len(set(seen)) == 3 and sorted(seen) == sorted(_app_pids(pytester)), "one app per test"
    _assert_nothing_left(pytester, warm_data_dir, result.stdout.str())


# -- an app that does not answer as it should -------------------------------------------------------


def test_app_listening_on_another_port_is_named_instead_of_waiting_for_the_timeout(
    pytester: pytest.Pytester, warm_data_dir: Path
) -> None:
    _project(pytester, timeout=30)
    pytester.makepyfile(test_inner=NEEDS_APP.format(seed=SEED_ROWS))

    result = run_inner(pytester, warm_data_dir, "-p", "no:xdist", APP_MODE="elsewhere")

    result.assert_outcomes(passed=2, errors=3)
    text = result.stdout.str()
    (elsewhere,) = re.findall(r"really listening on (\d+)", text)
    given = re.search(r"starting on port (\d+)", text)
    assert given, text
    assert f"the app listens on port {elsewhere}, not on port {given.group(1)} it was given" in text, text
    assert "did not answer GET /ready" not in text, "the 30 s start timeout was waited out"
    assert len(_app_pids(pytester)) == 1, "named at once, not retried"
    _assert_nothing_left(pytester, warm_data_dir, text)


def test_ready_path_answering_500_shows_the_status_and_the_body(
    pytester: pytest.Pytester, warm_data_dir: Path
) -> None:
    _project(pytester, timeout=2)
    pytester.makepyfile(test_inner=NEEDS_APP.format(seed=SEED_ROWS))

    result = run_inner(pytester, warm_data_dir, "-p", "no:xdist", APP_MODE="error500")

    result.assert_outcomes(passed=2, errors=3)
    text = result.stdout.str()
    assert "Last answer: HTTP 500, its body begins:" in text, text
    assert "ImproperlyConfigured: SECRET_KEY must not be empty" in text
    assert text.count("ImproperlyConfigured") == 1, "in full once, then one line per test"
    _assert_nothing_left(pytester, warm_data_dir, text)


@pytest.mark.parametrize(
    ("ready", "status"), [("/nope", "404 Not Found"), ("/post-only", "405 Method Not Allowed")]
)
def test_ready_path_the_app_has_no_page_for_stops_the_start_at_once(
    pytester: pytest.Pytester, warm_data_dir: Path, ready: str, status: str
) -> None:
    _project(pytester, ready=ready)
    pytester.makepyfile(test_inner=NEEDS_APP.format(seed=SEED_ROWS))

    result = run_inner(pytester, warm_data_dir, "-p", "no:xdist")

    result.assert_outcomes(passed=2, errors=3)
    text = result.stdout.str()
    said = f"the app answered GET {ready} with HTTP {status}: nocrud_app_ready_path = {ready} is not a page"
    assert said in text, text
    assert text.count("Set nocrud_app_ready_path to a path the app serves") == 1, "in full once"
    body = {"/nope": "no such path", "/post-only": "use POST here"}[ready]
    assert f'its body begins: "{body}"' in text, text
    assert "did not answer GET" not in text, "reported at the first answer, not after the start timeout"
    assert len(_app_pids(pytester)) == 1, "a failed start is not retried by every later test"
    _assert_nothing_left(pytester, warm_data_dir, text)


@pytest.mark.parametrize("ready", ["/", "/private"], ids=["404-at-root", "401"])
def test_a_404_at_root_or_a_login_wall_counts_as_ready(
    pytester: pytest.Pytester, warm_data_dir: Path, ready: str
) -> None:
    """Many APIs serve nothing at / (the default); a 401/403/302 means the app is up behind a login."""
    _project(pytester, ready=ready)
    pytester.makepyfile(test_inner=NEEDS_APP.format(seed=SEED_ROWS))

    result = run_inner(pytester, warm_data_dir, "-p", "no:xdist")

    result.assert_outcomes(passed=5)
    _assert_nothing_left(pytester, warm_data_dir, result.stdout.str())


# -- leftovers -----------------------------------------------------------------------------------------


def test_the_runs_end_removes_app_logs_of_earlier_runs_and_empty_registries(
    pytester: pytest.Pytester, data_dir: Path
) -> None:
    _project(pytester, extra=ENV_LINES)
    pytester.makepyfile(test_inner=ISOLATION.format(seed=SEED_ROWS))
    logs = data_dir / "logs"

    owners = []  # the run (controller pid) of every log file left after each run
    for _ in range(3):
        run_inner(pytester, data_dir, "-n", "2").assert_outcomes(passed=7)
        owners.append({log.name.split("-")[1] for log in logs.iterdir()})

    assert all(len(pids) == 1 for pids in owners), f"logs of the last run only: {owners}"
    assert len(set.union(*owners)) == 3, "each run's end removed the previous run's logs"
    assert list((data_dir / "apps").iterdir()) == [], "no empty registry stays behind"


# -- privacy of the data dir ---------------------------------------------------------------------------


PRIVATE = """
import os, pathlib
import pytest

def open_to_others(top):
    paths = [top, *top.rglob("*")]
    return [f"{oct(p.lstat().st_mode & 0o777)} {p}" for p in paths if p.lstat().st_mode & 0o077]

@pytest.mark.crud_flow
def test_while_the_app_runs(nocrud_client):
    assert nocrud_client.post("/items/x").status_code == 201
    top = pathlib.Path(os.environ["DATA_DIR"])
    assert any((top / "apps").rglob("*-*")), "the app's registry entry exists now"
    pathlib.Path(f"open-{os.getpid()}").write_text("\\n".join(open_to_others(top)))
"""


def test_everything_the_run_creates_under_the_data_dir_is_private(
    pytester: pytest.Pytester, data_dir: Path
) -> None:
    """App logs hold the app's own output, build logs the tools': no group or other bits anywhere.

    A cold data dir, so initdb, the server's files, leases, locks, build logs, app logs and registries
    are all created by this run; looked at during the run (registries) and after it. As root the
    server runs as another OS user: the directories it must enter belong to it instead of being
    opened to everybody.
    """
    _project(pytester)
    pytester.makepyfile(test_inner=PRIVATE)

    result = run_inner(pytester, data_dir, "-n", "2", DATA_DIR=str(data_dir))

    result.assert_outcomes(passed=1)
    (during,) = [path.read_text() for path in pytester.path.glob("open-*")]
    assert during == "", during
    assert any((data_dir / "logs").glob("app-*.log")) and any((data_dir / "locks").glob("*.log"))
    after = [data_dir, *data_dir.rglob("*")]
    open_after = [f"{oct(p.lstat().st_mode & 0o777)} {p}" for p in after if p.lstat().st_mode & 0o077]
    assert open_after == [], "\n".join(open_after)
    if os.geteuid() == 0:  # the server's OS user owns the directories on its way, nothing else
        (cluster_data,) = data_dir.glob("pg*/data")
        server_uid = cluster_data.stat().st_uid
        assert server_uid != 0
        assert data_dir.stat().st_uid == cluster_data.parent.stat().st_uid == server_uid
        assert (data_dir / "logs").stat().st_uid == (data_dir / "locks").stat().st_uid == 0
