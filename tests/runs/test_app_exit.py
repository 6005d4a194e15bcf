"""An app that exits mid-run: the test in flight says how, the app is restarted once, then stopped.

The inner project's tiny app dies on request -- ``POST /die`` sends itself SIGKILL (like a ``kill -9``
from outside, or the OOM killer), ``POST /exit/N`` ends it with exit code N -- so the fault is real and
lands in the middle of a test's request. It appends its pid to ``app_pids`` at every start.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from _support import JSON_HANDLER, postgres_pids, run_inner

from pytest_nocrud.pg.procs import is_running

APP = JSON_HANDLER + r'''
import http.server, json, os, pathlib, signal, sys
import psycopg

HERE = pathlib.Path(__file__).parent
port = int(sys.argv[1])
with open(HERE / "app_pids", "a") as pids:
    pids.write(f"{os.getpid()}\n")
print(f"app {os.getpid()} starting on port {port}", flush=True)


class Handler(JsonHandler):

    def do_GET(self):
        with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
            if self.path == "/ready":
                conn.execute("select 1")
                return self._send(200, "ready")
            if self.path == "/count":
                return self._send(200, conn.execute("select count(*) from items").fetchone()[0])
        self._send(404, "no such path")

    def do_POST(self):
        if self.path == "/die":
            print(f"app {os.getpid()}: dying by SIGKILL", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        if self.path.startswith("/exit/"):
            print(f"app {os.getpid()}: exiting", flush=True)
            os._exit(int(self.path.removeprefix("/exit/")))
        if self.path.startswith("/items/"):
            with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
                conn.execute("insert into items (label) values (%s)", (self.path[7:],))
            return self._send(201, "made")
        self._send(404, "no such path")


http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
'''

SCHEMA = (
    "create table items (id serial primary key, label text);"
    " insert into items (label) values ('a'), ('b');"
)

INI = """
[pytest]
nocrud_builder = sql:schema
nocrud_app_command = {python} -u app.py {port}
nocrud_app_ready_path = /ready
"""

INNER = """
import pathlib
import httpx
import pytest

HERE = pathlib.Path(__file__).parent


@pytest.fixture(scope="session")
def session_client(nocrud_app):
    # built once from nocrud_app.url, as a session-scoped login fixture would be
    with httpx.Client(base_url=nocrud_app.url) as client:
        yield client


@pytest.mark.crud_flow
def test_1_before(nocrud_client, nocrud_app, session_client):
    assert session_client.get("/count").json() == 2
    (HERE / "port_before").write_text(str(nocrud_app.port))


@pytest.mark.crud_flow
def test_2_killed(nocrud_client):
    nocrud_client.post("/die")


@pytest.mark.crud_flow
@pytest.mark.parametrize("n", range(2))
def test_3_after(nocrud_client, nocrud_app, session_client, n):
    assert nocrud_client.post(f"/items/x{n}").status_code == 201
    assert session_client.get("/count").json() == 3
    (HERE / "port_after").write_text(str(nocrud_app.port))


@pytest.mark.crud_flow
def test_4_exits(nocrud_client):
    nocrud_client.post("/exit/7")


@pytest.mark.crud_flow
def test_5_killed_right_after_the_restart(nocrud_client):
    nocrud_client.post("/die")


@pytest.mark.crud_flow
@pytest.mark.parametrize("n", range(3))
def test_6_needs_the_app(nocrud_client, n):
    nocrud_client.get("/count")


def test_7_database_only(nocrud_db):
    with nocrud_db.connect() as conn:
        assert conn.execute("select count(*) from items").fetchone()[0] == 2
"""


def _app_pids(pytester: pytest.Pytester) -> list[int]:
    path = pytester.path / "app_pids"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


@pytest.mark.parametrize("workers", [["-n", "1"], ["-p", "no:xdist"]], ids=["xdist", "single"])
def test_an_app_that_exits_mid_test_is_named_restarted_once_and_then_stopped(
    pytester: pytest.Pytester, warm_data_dir: Path, workers: list[str]
) -> None:
    pytester.makefile(".py", app=APP)
    (pytester.path / "schema").mkdir()
    (pytester.path / "schema" / "001_items.sql").write_text(SCHEMA)
    pytester.makeini(INI)
    pytester.makepyfile(test_inner=INNER)

    result = run_inner(pytester, warm_data_dir, *workers)
    text = result.stdout.str() + result.stderr.str()

    # 1, 3a, 3b and 7 pass; 2, 4 and 5 fail in flight; the 6s fail before they start (one line each)
    result.assert_outcomes(passed=4, failed=3, errors=3)
    killed = "exit code 137: killed by signal SIGKILL"
    assert f"the app exited ({killed}) during this test; it is restarted for the next test" in text, text
    assert "this test saw: RemoteProtocolError" in text, text
    assert "dying by SIGKILL" in text, "the failure shows the app's last log lines"
    assert "the app exited (exit code 7) during this test; it is restarted for the next test" in text, text
    again = f"the app exited again ({killed}) during test_inner.py::test_5_killed_right_after_the_restart"
    assert f"{again}, right after its restart: not restarted a second time" in text, text
    briefs = re.findall(r"app is not available \(the app exited again .*full error in the first", text)
    assert len(briefs) == 3, text  # test_6 x 3, each one line
    assert len(re.findall(r"restarted it on port \d+", text)) == 2, text
    worker = "gw0" if "-n" in workers else "main"
    restarts = rf"^startup: .*; app restarts: 2 \({worker} 2\); critical path [\d.]+ s \([^)]*\)$"
    assert re.search(restarts, text, re.MULTILINE), text

    # the restarted app kept its port: a client built from nocrud_app.url before the crash still works
    assert (pytester.path / "port_before").read_text() == (pytester.path / "port_after").read_text()
    # short: no client traceback, no "Connection refused" per later test
    assert "Connection refused" not in text and "httpcore" not in text, text
    assert len(text.splitlines()) < 200, text
    pids = _app_pids(pytester)
    assert len(pids) == 3, "the first start and two restarts"
    assert [pid for pid in pids if is_running(pid)] == [], text
    assert postgres_pids(warm_data_dir) == [], text
