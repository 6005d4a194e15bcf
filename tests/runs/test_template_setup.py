"""``@template_setup``, ``nocrud_setup`` and baked logins, through whole inner pytest runs.

The inner project is a small real app (``APP``: stdlib ``http.server`` + psycopg) with a Django-like
login: ``GET /csrf`` sets a ``csrftoken`` cookie, ``POST /login`` checks it and stores a session row
(valid one hour) in the database, ``GET /me`` answers 200 only with a live session. The app appends
every request it serves to ``requests.log`` with the database it serves, so login requests are counted
where they land -- and build-time requests (database ``nocrud_bld_*``, a layer being built) are told
apart from tests'.
``APP_CLOCK_OFFSET`` moves the app's clock forward: a template older than its sessions' lifetime.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from _support import postgres_pids, run_inner

from pytest_nocrud.pg import admin
from pytest_nocrud.pg.procs import ProcessId
from pytest_nocrud.pg.server import EmbeddedCluster, PostgresServer

APP = r'''
import http.cookies, http.server, json, os, pathlib, secrets, sys, time
import psycopg

HERE = pathlib.Path(__file__).parent
TTL = 3600.0


def now():
    return time.time() + float(os.environ.get("APP_CLOCK_OFFSET", "0"))


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _send(self, status, body, cookies=()):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in cookies:
            self.send_header("Set-Cookie", f"{name}={value}; Path=/")
        self.end_headers()
        self.wfile.write(data)

    def _cookies(self):
        jar = http.cookies.SimpleCookie(self.headers.get("Cookie", ""))
        return {name: morsel.value for name, morsel in jar.items()}

    def _db(self):
        return psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)

    def _user(self, conn):
        row = conn.execute(
            "select username from sessions where token = %s and expires_at > %s",
            (self._cookies().get("sessionid", ""), now()),
        ).fetchone()
        return row[0] if row else None

    def _record(self):
        with open(HERE / "requests.log", "a") as log:
            log.write(f"{os.environ['PGDATABASE']} {self.command} {self.path}\n")

    def do_GET(self):
        self._record()
        with self._db() as conn:
            if self.path == "/ready":
                return self._send(200, "ready")
            if self.path == "/csrf":
                token = secrets.token_hex(16)
                return self._send(200, {"csrfToken": token}, [("csrftoken", token)])
            if self.path == "/me":
                user = self._user(conn)
                return self._send(200, {"username": user}) if user else self._send(401, "not logged in")
            if self.path == "/count":
                return self._send(200, conn.execute("select count(*) from items").fetchone()[0])
        self._send(404, "no such path")

    def do_POST(self):
        self._record()
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        with self._db() as conn:
            if self.path == "/login":
                csrf = self._cookies().get("csrftoken")
                if not csrf or self.headers.get("X-CSRFToken") != csrf:
                    return self._send(403, "CSRF failed")
                if body.get("password") != f"{body.get('username')}-pass":
                    return self._send(400, "invalid username or password")
                token = secrets.token_hex(16)
                session = (token, body["username"], now() + TTL)
                conn.execute("insert into sessions values (%s, %s, %s)", session)
                return self._send(200, {"username": body["username"]}, [("sessionid", token)])
            if self.path.startswith("/items/"):
                user = self._user(conn)
                if user is None:
                    return self._send(401, "not logged in")
                label = self.path.removeprefix("/items/")
                row = conn.execute(
                    "insert into items (label, owner) values (%s, %s) returning id", (label, user)
                ).fetchone()
                return self._send(201, {"id": row[0], "label": label, "owner": user})
        self._send(404, "no such path")


http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
'''

SCHEMA = """
create table items (id serial primary key, label text not null, owner text);
insert into items (label) values ('seed-1'), ('seed-2');
create table sessions (token text primary key, username text not null, expires_at double precision);
"""

INI = """
[pytest]
nocrud_builder = sql:schema
nocrud_app_command = {python} -u app.py {port}
nocrud_app_ready_path = /ready
"""

CONFTEST = '''
from pytest_nocrud import AsUser, bake_login, expect_status, session_login, template_setup

ADA = AsUser("ada", "ada-pass", csrf_path="/csrf", login_path="/login")
BOB = AsUser("bob", "bob-pass", csrf_path="/csrf", login_path="/login")


@template_setup
def logins(client):
    return {user.username: bake_login(client, user, check="/me") for user in (ADA, BOB)}


@template_setup
def prerequisites(client):
    session_login(client, "ada", "ada-pass", csrf_path="/csrf", login_path="/login")
    return {"item": expect_status(client.post("/items/PREREQ"), 201).json()}
'''

TESTS = """
import pytest
from conftest import ADA

from pytest_nocrud import session_login

@pytest.mark.crud_flow
@pytest.mark.parametrize("n", range(6))
def test_starts_logged_in_with_the_prerequisites(nocrud_client, nocrud_client_factory, nocrud_setup, n):
    item = nocrud_setup["prerequisites"]["item"]
    assert item["label"] == "PREREQ" and item["owner"] == "ada"
    assert nocrud_setup["logins"]["bob"] == {"username": "bob"}
    assert nocrud_client.get("/count").json() == 3, "the seed rows and the setup's item"
    ada = nocrud_client_factory(as_user=ADA)
    assert ada.post(f"/items/by-ada-{n}").json()["owner"] == "ada"
    assert session_login(nocrud_client, "bob", "bob-pass", csrf_path="/csrf", login_path="/login") == {
        "username": "bob"
    }
    assert nocrud_client.post(f"/items/by-bob-{n}").json()["owner"] == "bob"
    with pytest.raises(TypeError, match="read-only"):
        nocrud_setup["prerequisites"]["item"]["label"] = "changed"

@pytest.mark.crud_flow
def test_a_wrong_password_is_not_a_baked_login(nocrud_client):
    with pytest.raises(AssertionError, match="400"):
        session_login(nocrud_client, "ada", "wrong-pass", csrf_path="/csrf", login_path="/login")
    assert nocrud_client.post("/items/x").status_code == 401
"""

TEMPLATE_LINE = re.compile(
    r"template: (nocrud_tpl_[0-9a-f]{16}) \(key [0-9a-f]{12}\) (built in [0-9.]+s|reused)"
)


@pytest.fixture
def project(pytester: pytest.Pytester) -> Path:
    pytester.makefile(".py", app=APP)
    (pytester.path / "schema").mkdir()
    (pytester.path / "schema" / "001.sql").write_text(SCHEMA)
    pytester.makeini(INI)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_inner=TESTS)
    return pytester.path


def served(project: Path) -> list[tuple[str, str, str]]:
    """(phase, method, path) of every request the app served; phase 'build' or 'test'; then forgotten."""
    log = project / "requests.log"
    lines = log.read_text().splitlines() if log.exists() else []
    log.unlink(missing_ok=True)
    return [("build" if db.startswith("nocrud_bld_") else "test", m, p) for db, m, p in map(str.split, lines)]


def logins(requests: list[tuple[str, str, str]], phase: str) -> int:
    return sum(1 for ph, method, path in requests if ph == phase and path in ("/csrf", "/login"))


def template_of(output: str) -> tuple[str, str]:
    match = TEMPLATE_LINE.search(output)
    assert match, output
    return match.group(1), match.group(2).split()[0]


@contextmanager
def live_server(data_dir: Path) -> Iterator[PostgresServer]:
    cluster, me = EmbeddedCluster(data_dir), ProcessId.of(os.getpid())
    server = cluster.acquire(me)
    try:
        yield server
    finally:
        cluster.release(me)


def test_setup_runs_once_per_build_and_tests_log_in_with_zero_requests(
    pytester: pytest.Pytester, data_dir: Path, project: Path
) -> None:
    result = run_inner(pytester, data_dir, "-n", "2")

    result.assert_outcomes(passed=7)
    out = result.stdout.str()
    assert template_of(out)[1] == "built"
    requests = served(project)
    assert logins(requests, "build") == 2 * 3, "ada and bob baked, ada again for the prerequisites"
    assert [r for r in requests if r[0] == "build" and r[2].startswith("/items/")] == [
        ("build", "POST", "/items/PREREQ")
    ]
    assert logins(requests, "test") == 2, "only the deliberately wrong password logs in during tests"
    probes = Counter(path for phase, _, path in requests if phase == "test")["/me"]
    assert 2 <= probes <= 2 * 2, "each baked login is verified once per worker (2 of them), not per test"
    assert "baked logins reused: 12 (no login requests)" in out, out
    assert "rejected" not in out

    warm = run_inner(pytester, data_dir, "-p", "no:xdist")
    warm.assert_outcomes(passed=7)
    assert template_of(warm.stdout.str())[1] == "reused"
    assert logins(served(project), "build") == 0, "a reused template runs no setup"


def test_a_change_to_a_setup_rebuilds_the_template(
    pytester: pytest.Pytester, data_dir: Path, project: Path
) -> None:
    first = run_inner(pytester, data_dir, "-p", "no:xdist", "-k", "wrong_password")
    first.assert_outcomes(passed=1)
    old_name, _ = template_of(first.stdout.str())

    conftest = project / "conftest.py"
    conftest.write_text(conftest.read_text().replace("PREREQ", "PREREQ2"))
    pytester.makepyfile(test_inner=TESTS.replace('"PREREQ"', '"PREREQ2"'))
    second = run_inner(pytester, data_dir, "-p", "no:xdist")

    second.assert_outcomes(passed=7)
    new_name, how = template_of(second.stdout.str())
    assert (how, new_name != old_name) == ("built", True)
    assert ("build", "POST", "/items/PREREQ2") in served(project)


FAILING_CONFTEST = '''
from pytest_nocrud import expect_status, template_setup


@template_setup
def fine(client):
    return {"ok": True}


@template_setup
def needs_a_login(client):
    made = client.post("/items/orphan")
    return expect_status(made, 201).json()
'''

NEEDS_TEMPLATE = """
import pytest

@pytest.mark.crud_flow
@pytest.mark.parametrize("n", range(3))
def test_flow(nocrud_client, n):
    pass

def test_outputs(nocrud_setup):
    pass

def test_without_nocrud():
    assert True
"""


def test_a_failing_setup_is_one_clear_error_and_finalizes_nothing(
    pytester: pytest.Pytester, data_dir: Path, project: Path
) -> None:
    pytester.makeconftest(FAILING_CONFTEST)
    pytester.makepyfile(test_inner=NEEDS_TEMPLATE)

    result = run_inner(pytester, data_dir, "-p", "no:xdist")

    result.assert_outcomes(passed=1, errors=4)
    out = result.stdout.str()
    first_line = "@template_setup function 'needs_a_login' (conftest.py:9) failed at conftest.py:12: "
    assert first_line + "AssertionError: expected 201, got POST /items/orphan -> 401" in out, out
    assert re.search(r"failing request:\s+\[needs_a_login\] POST /items/orphan -> 401", out), out
    assert "The template was not finalized" in out
    assert out.count("failing request:") == 1, "in full once; later tests get one line"
    with live_server(data_dir) as server, admin.connect(server.admin) as conn:
        assert admin.names_like(conn, "nocrud_tpl_") == [], "the half-built template is dropped"
        assert admin.names_like(conn, "nocrud_bld_") == [], "and so is its build database"
    assert postgres_pids(data_dir) == []


def test_an_expired_baked_session_falls_back_to_a_live_login_and_says_so(
    pytester: pytest.Pytester, data_dir: Path, project: Path
) -> None:
    run_inner(pytester, data_dir, "-p", "no:xdist", "-k", "wrong_password").assert_outcomes(passed=1)
    served(project)

    aged = run_inner(pytester, data_dir, "-p", "no:xdist", APP_CLOCK_OFFSET="7200")  # sessions live 1 h

    aged.assert_outcomes(passed=7)
    out = aged.stdout.str()
    assert template_of(out)[1] == "reused"
    requests = served(project)
    probes = [r for r in requests if r[2] == "/me"]
    assert len(probes) == 2, "each baked login is tried once per worker, then not again"
    assert logins(requests, "test") == 2 * 12 + 2, "every login of every test is live now"
    for user in ("ada", "bob"):
        assert f"baked login {user!r} was rejected by the app (GET /me -> 401)" in out, out
    assert "rebuild it with --nocrud-rebuild" in out

    rebuilt = run_inner(pytester, data_dir, "-p", "no:xdist", "--nocrud-rebuild", APP_CLOCK_OFFSET="7200")
    rebuilt.assert_outcomes(passed=7)
    assert "rejected" not in rebuilt.stdout.str()
    assert logins(served(project), "test") == 2, "fresh sessions: back to zero login requests"
