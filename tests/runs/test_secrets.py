"""The password of ``nocrud_dsn`` never reaches a human or a file: a real password-protected server.

The inner run points ``--nocrud-dsn`` at a server that wants a password (scram-sha-256 over TCP), its
app echoes ``DATABASE_URL`` and ``PGPASSWORD`` into its log, and its one test fails while holding
every object that knows the password -- with every output pytest-nocrud feeds switched on.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from _support import PasswordServer, run_inner

from pytest_nocrud.pg import admin

APP = r"""
import http.server, os, sys
import psycopg

port = int(sys.argv[1])
print(f"starting with DATABASE_URL={os.environ['DATABASE_URL']}", flush=True)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
            conn.execute("select 1")
        if self.path.startswith("/leak"):  # an app that logs its settings while handling a request
            print(f"DATABASE_URL={os.environ['DATABASE_URL']} PGPASSWORD={os.environ['PGPASSWORD']}",
                  file=sys.stderr, flush=True)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""

INI = """
[pytest]
nocrud_builder = sql:schema
nocrud_app_command = {python} -u app.py {port}
nocrud_app_ready_path = /ready
nocrud_app_env =
    APP_PASSWORD={password}
"""

FAILING = """
import pytest

@pytest.mark.crud_flow
def test_fails_holding_the_password(nocrud_client, nocrud_db, nocrud_postgres):
    dsn = nocrud_db.dsn
    info = nocrud_db.info
    server = nocrud_postgres
    assert nocrud_client.get("/leak", params={"pw": info.password}).status_code == 200
    print("the test printed", dsn)
    assert dsn == "what it is not"
"""


@pytest.mark.parametrize("workers", [["-p", "no:xdist"], ["-n", "2"]], ids=["single", "xdist"])
def test_password_appears_nowhere(
    pytester: pytest.Pytester, data_dir: Path, password_server: PasswordServer, workers: list[str]
) -> None:
    password = password_server.admin.password
    spellings = {password, quote(password, safe="")}
    pytester.makefile(".py", app=APP)
    (pytester.path / "schema").mkdir()
    (pytester.path / "schema" / "001.sql").write_text("create table items (id int);\n")
    pytester.makeini(INI)
    pytester.makepyfile(test_inner=FAILING)
    junit, page = pytester.path / "junit.xml", pytester.path / "timeline.html"

    result = run_inner(
        pytester, data_dir, *workers, "--tb=long", "-l", f"--junitxml={junit}", "-o", "junit_logging=all",
        "--nocrud-keep-failed", f"--nocrud-html={page}", f"--nocrud-dsn={password_server.admin.dsn}",
    )  # fmt: skip

    result.assert_outcomes(failed=1)
    output = result.stdout.str() + result.stderr.str()
    masked = f"postgresql://postgres:***@127.0.0.1:{password_server.admin.port}/"
    # What each place shows, so the checks below cannot pass because it was not shown at all:
    assert re.search(r"^dsn\s+= '" + re.escape(masked), output, re.M), "-l shows the local, masked"
    assert re.search(r"^server\s+= PostgresServer\(admin=ConnInfo\('" + re.escape(masked), output, re.M)
    assert re.search(r"\[app:\d+\] DATABASE_URL=" + re.escape(masked) + r"\S+ PGPASSWORD=\*\*\*", output)
    kept = re.search(r"database kept for inspection: (" + re.escape(masked) + r"(nocrud_failed_\w+))", output)
    assert kept, output
    assert "the test printed " + masked in output and "AssertionError" in output
    files = {
        "terminal": output,
        "junit xml": junit.read_text(),
        "html": page.read_text(),
        "app log files": "".join(log.read_text() for log in (data_dir / "logs").glob("*.log")),
    }
    assert "/leak?pw=***" in files["html"], files["html"]
    assert "the test printed " + masked in files["junit xml"]
    for where, text in files.items():
        leaked = [spelling for spelling in spellings if spelling in text]
        assert not leaked, f"the password is in the {where}:\n{text}"

    with admin.connect(password_server.admin) as conn:  # the kept database exists: drop it
        assert kept.group(2) in admin.names_like(conn, "nocrud_failed_")
        admin.drop(conn, kept.group(2))
        layers = ("nocrud_tpl_", "nocrud_sch_")
        assert not [n for n in admin.names_like(conn, "nocrud_") if not n.startswith(layers)]


def test_reprs_of_everything_holding_the_password_are_masked(password_server: PasswordServer) -> None:
    from pytest_nocrud.pg.server import check_dsn
    from pytest_nocrud.pg.testdb import TestDatabase

    server = check_dsn(password_server.admin.dsn)
    database = TestDatabase(server.admin.with_db("postgres"))
    with database.connect() as conn:  # the masked objects still connect: the password is only hidden
        assert conn.execute("select 1").fetchone() == (1,)
    password = password_server.admin.password
    for value in (server.admin, server, database, conn):
        text = repr(value) + str(value)
        assert password not in text and quote(password, safe="") not in text
    assert "***" in repr(server) and "***" in repr(database)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(password_server.admin.dsn.replace("s3cr3t", "wrong"), connect_timeout=5).close()
