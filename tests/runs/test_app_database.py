"""Positive proof that the app uses the test database: a second, real PostgreSQL server stands in for
the developer's own database, and the apps' settings default to it.

* A Django project whose settings read ``DB_*`` (default: the dev server) with the README's
  ``manage.py runserver`` command: once a template for the key exists, the run still fails before any
  test, and the dev rows are untouched.
* A plain app that ignores ``DATABASE_URL``: the run stops after the first test that wrote; its control
  (the same app reading ``DATABASE_URL``, one short connection per request) passes without a word.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from _support import JSON_HANDLER, PasswordServer, run_inner

from pytest_nocrud.pg import admin
from pytest_nocrud.pg.conninfo import ConnInfo

DEV_ROWS = [("dev-1",), ("dev-2",)]


@pytest.fixture
def dev_database(password_server: PasswordServer) -> Iterator[str]:
    """A developer's database with two rows, on another server; its DSN."""
    admin = password_server.admin
    with psycopg.connect(admin.dsn, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS devdb")
        conn.execute("CREATE DATABASE devdb")
    dev = admin.with_db("devdb")
    with psycopg.connect(dev.dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE item (name text PRIMARY KEY)")
        conn.cursor().executemany("INSERT INTO item VALUES (%s)", DEV_ROWS)
    yield dev.dsn
    with psycopg.connect(admin.dsn, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS devdb WITH (FORCE)")


def _dev_rows(dsn: str) -> list[tuple[str]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT name FROM item ORDER BY name").fetchall()


def _dev_sessions(dsn: str) -> int:
    """Sessions the developer's database ever had, read from the server's maintenance database."""
    with psycopg.connect(ConnInfo.parse(dsn).with_db("postgres").dsn, autocommit=True) as conn:
        # a session that just closed (our own _dev_rows) counts once its backend is gone
        admin.terminate(conn, "devdb", wait_ms=5000)
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute("SELECT sessions FROM pg_stat_database WHERE datname = 'devdb'").fetchone()
    return int(row[0]) if row else 0


# -- Django ---------------------------------------------------------------------------------------

MANAGE = """
import os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "devproj.settings")
from django.core.management import execute_from_command_line
execute_from_command_line(sys.argv)
"""

SETTINGS = """
import os, sys, time
if os.environ.get("SLOW_PROBE") and sys.argv[0].endswith("django_databases.py"):
    time.sleep(3)  # reading the settings for the check is slow: the app would boot first (the fault)
from urllib.parse import unquote, urlsplit
dev = urlsplit(os.environ["DEV_DATABASE_URL"])  # the developer's own database: the settings' default
SECRET_KEY = "test-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "devproj.urls"
INSTALLED_APPS = []
MIDDLEWARE = []
DATABASES = {"default": {
    "ENGINE": "django.db.backends.postgresql",
    "NAME": os.environ.get("DB_NAME", dev.path.lstrip("/")),
    "HOST": os.environ.get("DB_HOST", dev.hostname),
    "PORT": os.environ.get("DB_PORT", str(dev.port)),
    "USER": os.environ.get("DB_USER", dev.username),
    "PASSWORD": os.environ.get("DB_PASSWORD", unquote(dev.password)),
}}
"""

URLS = """
import json
from django.db import connection
from django.http import JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

def health(request):
    return JsonResponse({"ok": True})  # answers without the database, like many health views

@csrf_exempt
def items(request):
    with connection.cursor() as cursor:
        if request.method == "POST":
            cursor.execute("INSERT INTO item VALUES (%s)", [json.loads(request.body)["name"]])
            return JsonResponse({}, status=201)
        cursor.execute("SELECT name FROM item ORDER BY name")
        return JsonResponse({"items": [row[0] for row in cursor.fetchall()]})

@csrf_exempt
def item(request, name):
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM item WHERE name = %s", [name])
    return JsonResponse({}, status=204 if False else 200)

urlpatterns = [path("health/", health), path("items/", items), path("items/<str:name>/", item)]
"""

FLOWS = """
import pytest

@pytest.mark.crud_flow
@pytest.mark.parametrize("name", ["dev-1", "dev-2"])
def test_delete(nocrud_client, name):
    assert nocrud_client.delete(f"/items/{name}/").status_code == 200

@pytest.mark.crud_flow
def test_create(nocrud_client):
    assert nocrud_client.post("/items/", json={"name": "from-a-test"}).status_code == 201

@pytest.mark.crud_flow
def test_list(nocrud_client):
    assert nocrud_client.get("/items/").status_code == 200
"""

DJANGO_INI = """
[pytest]
nocrud_builder = sql:schema
{command}
nocrud_app_ready_path = /health/
{extra}
"""

# The README's runserver command starts only after the settings were checked; the default command (no
# nocrud_app_command: the plugin's own runserver) boots meanwhile and waits before its first query.
COMMANDS = {
    "readme runserver": "nocrud_app_command = {python} manage.py runserver {host}:{port} --noreload",
    "default command": "",
}

MAPPING = """nocrud_app_env =
    DB_HOST={host}
    DB_PORT={port}
    DB_NAME={dbname}
    DB_USER={user}
    DB_PASSWORD={password}
"""


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_django_settings_on_the_dev_server_fail_the_run_before_any_test_even_with_a_template(
    pytester: pytest.Pytester, data_dir: Path, dev_database: str, command: str
) -> None:
    pytest.importorskip("django")
    pytester.makepyfile(manage=MANAGE, test_flows=FLOWS)
    package = pytester.mkpydir("devproj")
    (package / "settings.py").write_text(SETTINGS)
    (package / "urls.py").write_text(URLS)
    (pytester.mkdir("schema") / "001.sql").write_text(
        "CREATE TABLE item (name text PRIMARY KEY); INSERT INTO item VALUES ('dev-1'), ('dev-2');"
    )

    # With the mapping: a template for the key is built and the flows run on the test databases.
    pytester.makeini(DJANGO_INI.format(command=COMMANDS[command], extra=MAPPING))
    mapped = run_inner(pytester, data_dir, "-p", "no:xdist", DEV_DATABASE_URL=dev_database)
    mapped.assert_outcomes(passed=4)
    assert _dev_rows(dev_database) == DEV_ROWS

    # Without it, the template is reused (nothing is built that could be refused) -- and yet no test runs.
    pytester.makeini(DJANGO_INI.format(command=COMMANDS[command], extra=""))
    sessions_before = _dev_sessions(dev_database)
    wrong = run_inner(pytester, data_dir, "-n", "2", DEV_DATABASE_URL=dev_database, SLOW_PROBE="1")
    out = wrong.stdout.str()
    assert wrong.ret != 0
    assert wrong.parseoutcomes().get("passed", 0) == 0, out
    assert "point the app at another database" in out and "database 'devdb' on 127.0.0.1:" in out, out
    for line in ("DB_HOST={host}", "DB_PORT={port}", "DB_NAME={dbname}", "DB_USER={user}"):
        assert line in out
    assert "No test ran." in out
    assert _dev_sessions(dev_database) == sessions_before, "the app never even connected there"
    assert _dev_rows(dev_database) == DEV_ROWS, "not one row of the developer's database may change"


# -- any app ----------------------------------------------------------------------------------------

PLAIN_APP = JSON_HANDLER + r'''
import http.server, json, os, sys
import psycopg

# The app's own setting: DATABASE_URL when READ_DATABASE_URL is set, else the developer's database.
DSN = os.environ["DATABASE_URL"] if os.environ.get("READ_DATABASE_URL") else os.environ["DEV_DATABASE_URL"]

class Handler(JsonHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self._send(200, {"ok": True})  # the ready path needs no database

    def do_POST(self):
        name = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["name"]
        with psycopg.connect(DSN) as conn:  # one short connection per request
            conn.execute("INSERT INTO item VALUES (%s)", [name])
        self._send(201, {"name": name})

http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
'''

PLAIN_FLOWS = """
import pytest

@pytest.mark.crud_flow
@pytest.mark.parametrize("n", range(3))
def test_create(nocrud_client, n):
    assert nocrud_client.post("/items", json={"name": f"from-test-{n}"}).status_code == 201
"""

PLAIN_INI = """
[pytest]
nocrud_builder = sql:schema
nocrud_app_command = {python} plain_app.py {port}
"""


@pytest.fixture
def plain_project(pytester: pytest.Pytester) -> pytest.Pytester:
    (pytester.path / "plain_app.py").write_text(PLAIN_APP)
    pytester.makepyfile(test_plain=PLAIN_FLOWS)
    (pytester.mkdir("schema") / "001.sql").write_text("CREATE TABLE item (name text PRIMARY KEY);")
    pytester.makeini(PLAIN_INI)
    return pytester


def test_an_app_that_writes_elsewhere_stops_the_run_after_its_first_test(
    plain_project: pytest.Pytester, data_dir: Path, dev_database: str
) -> None:
    result = run_inner(plain_project, data_dir, "-p", "no:xdist", DEV_DATABASE_URL=dev_database)

    out = result.stdout.str()
    assert result.ret != 0
    assert "but never connected to this worker's test database" in out, out
    assert out.count("DB_HOST={host}") == 1, "the error in full once"
    result.assert_outcomes(passed=1, errors=1)  # the first test's teardown; no later test ran
    assert "DB_HOST={host}" in out and "nocrud_check_app_database = false" in out
    # Honest about the window: the first test's write landed before the evidence could be read; the
    # run stopped there, so no later test wrote.
    assert _dev_rows(dev_database) == sorted([*DEV_ROWS, ("from-test-0",)])


def test_an_app_with_a_connection_per_request_on_the_test_database_passes_quietly(
    plain_project: pytest.Pytester, data_dir: Path, dev_database: str
) -> None:
    result = run_inner(
        plain_project, data_dir, "-n", "2", DEV_DATABASE_URL=dev_database, READ_DATABASE_URL="1"
    )

    result.assert_outcomes(passed=3)
    assert "never connected" not in result.stdout.str()
    assert _dev_rows(dev_database) == DEV_ROWS
