"""The default app command for Django projects, through inner runs of a tiny real Django project.

The project has no ``nocrud_app_command``: the plugin detects ``manage.py`` and starts ``runserver``
through its own wrapper, which sets TCP_NODELAY on accepted sockets (stock ``runserver`` writes a
response in several small sends; on some kernels a keep-alive client then waits ~40 ms per request for
the delayed ACK). The app reports the flag of its own client sockets, so the test sees what the real
process did.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _support import run_inner

pytest.importorskip("django")  # the dev extra installs it; the plugin itself does not need it

MANAGE = """
import os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tinyproj.settings")
from django.core.management import execute_from_command_line
execute_from_command_line(sys.argv)
"""

SETTINGS = """
import os
SECRET_KEY = "test-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "tinyproj.urls"
INSTALLED_APPS = []
MIDDLEWARE = []
DATABASES = {"default": {
    "ENGINE": "django.db.backends.postgresql",
    "NAME": os.environ.get("DB_NAME", "devdb") if os.environ.get("READS_DB_NAME")
            else os.environ["PGDATABASE"],
    "HOST": os.environ["PGHOST"], "PORT": os.environ["PGPORT"], "USER": os.environ["PGUSER"],
    "PASSWORD": os.environ.get("PGPASSWORD", ""),
}}
"""

URLS = """
import gc, socket
from django.db import connection
from django.http import JsonResponse
from django.urls import path

def items(request):
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM item ORDER BY name")
        return JsonResponse({"items": [row[0] for row in cursor.fetchall()], "pad": "x" * 2000})

def nodelay(request):
    accepted = [s for s in gc.get_objects() if isinstance(s, socket.socket) and s.fileno() >= 0
                and s.type == socket.SOCK_STREAM and s.family == socket.AF_INET and _peer(s)]
    flags = [s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for s in accepted]
    return JsonResponse({"flags": flags})

def _peer(s):
    try:
        return s.getpeername()
    except OSError:
        return None

urlpatterns = [path("items/", items), path("nodelay/", nodelay)]
"""

TESTS = """
import os
import pytest

@pytest.mark.crud_flow
@pytest.mark.parametrize("n", range(3))
def test_items(nocrud_client, n):
    assert nocrud_client.get("/items/").json()["items"] == ["seed"]

@pytest.mark.crud_flow
def test_nodelay(nocrud_client):
    flags = nocrud_client.get("/nodelay/").json()["flags"]
    assert flags and set(flags) == {int(os.environ["EXPECT_NODELAY"])}, flags
"""

INI = """
[pytest]
nocrud_builder = sql:schema
nocrud_app_ready_path = /items/
"""


@pytest.fixture
def django_project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(manage=MANAGE, test_items=TESTS)
    package = pytester.mkpydir("tinyproj")
    (package / "settings.py").write_text(SETTINGS)
    (package / "urls.py").write_text(URLS)
    schema = pytester.mkdir("schema")
    (schema / "001.sql").write_text("CREATE TABLE item (name text); INSERT INTO item VALUES ('seed');")
    pytester.makeini(INI)
    return pytester


def test_default_django_command_sets_tcp_nodelay(
    django_project: pytest.Pytester, warm_data_dir: Path
) -> None:
    result = run_inner(django_project, warm_data_dir, "-p", "no:xdist", EXPECT_NODELAY="1")

    result.assert_outcomes(passed=4)
    assert "startup: " in result.stdout.str() and "app main " in result.stdout.str()


def test_stock_runserver_leaves_nagle_on(django_project: pytest.Pytester, warm_data_dir: Path) -> None:
    """The control: the same project with the stock command, so the check above can fail."""
    stock = "nocrud_app_command={python} manage.py runserver {host}:{port} --noreload"

    result = run_inner(django_project, warm_data_dir, "-p", "no:xdist", "-o", stock, EXPECT_NODELAY="0")

    result.assert_outcomes(passed=4)


def test_settings_on_another_database_stop_the_app_before_any_test(
    django_project: pytest.Pytester, warm_data_dir: Path
) -> None:
    """Settings that read DB_NAME (default: the developer's database) instead of DATABASE_URL/PG*."""
    result = run_inner(django_project, warm_data_dir, "-p", "no:xdist", READS_DB_NAME="1", EXPECT_NODELAY="1")

    result.assert_outcomes(errors=4)
    out = result.stdout.str()
    assert "point the app at another database than this worker's test database" in out, out
    assert "DATABASES['default']: database 'devdb' on " in out, out
    assert out.count("DB_NAME={dbname}") == 1, "in full once, then one line"
