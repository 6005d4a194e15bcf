"""A test may do anything to its own database -- drop it, rename it, mark it a template, lock it, give
it away, change its settings -- and nothing of that outlives the test: the next test gets a fresh clone,
the run ends without a traceback, nothing is leaked, and the next run and ``nocrud gc`` are fine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from _support import run_inner

from pytest_nocrud.pg import admin
from pytest_nocrud.pg.procs import ProcessId
from pytest_nocrud.pg.server import EmbeddedCluster

SCHEMA = """
def build(conn):
    conn.execute("CREATE TABLE thing (id int PRIMARY KEY)")
    conn.execute("INSERT INTO thing VALUES (1)")
"""

TESTS = """
import psycopg
from psycopg import sql

STATEMENT = {statement!r}

def test_changes_its_own_database(nocrud_db, nocrud_postgres):
    with psycopg.connect(nocrud_postgres.dsn, autocommit=True) as conn:
        conn.execute("DO $$ BEGIN CREATE ROLE nocrud_probe_owner; "
                     "EXCEPTION WHEN duplicate_object THEN NULL; END $$")
        conn.execute(sql.SQL(STATEMENT).format(db=sql.Identifier(nocrud_db.name)))

def test_next_test_gets_a_fresh_clone(nocrud_db):
    with nocrud_db.connect() as conn:
        assert conn.execute("SELECT count(*) FROM thing").fetchone() == (1,)
        assert conn.execute("SHOW statement_timeout").fetchone() == ("0",)
        row = conn.execute(
            "SELECT datistemplate, datallowconn, datconnlimit, pg_get_userbyid(datdba) "
            "FROM pg_database WHERE datname = current_database()"
        ).fetchone()
        assert row == (False, True, -1, "postgres"), row

def test_and_the_one_after(nocrud_db):
    with nocrud_db.connect() as conn:
        assert conn.execute("SELECT count(*) FROM thing").fetchone() == (1,)
"""

STATEMENTS = {
    "drop": "DROP DATABASE {db} WITH (FORCE)",
    "rename": "ALTER DATABASE {db} RENAME TO renamed_by_a_test",
    "is_template": "ALTER DATABASE {db} IS_TEMPLATE true",
    "looks_finalized": "ALTER DATABASE {db} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false",
    "allow_connections": "ALTER DATABASE {db} ALLOW_CONNECTIONS false",
    "connection_limit": "ALTER DATABASE {db} CONNECTION LIMIT 0",
    "owner": "ALTER DATABASE {db} OWNER TO nocrud_probe_owner",
    "settings": "ALTER DATABASE {db} SET statement_timeout = '1ms'",
}


def _databases(data_dir: Path) -> list[str]:
    cluster, me = EmbeddedCluster(data_dir), ProcessId.of(os.getpid())
    server = cluster.acquire(me)
    try:
        with admin.connect(server.admin) as conn:
            rows = conn.execute("SELECT datname FROM pg_database WHERE datname NOT IN "
                                "('postgres', 'template0', 'template1') ORDER BY 1").fetchall()
        return [row[0] for row in rows]
    finally:
        cluster.release(me)


@pytest.mark.parametrize("change", sorted(STATEMENTS))
def test_nothing_a_test_does_to_its_own_database_outlives_it(
    pytester: pytest.Pytester, data_dir: Path, change: str
) -> None:
    pytester.makepyfile(schema=SCHEMA, test_inner=TESTS.format(statement=STATEMENTS[change]))
    pytester.makeini("[pytest]\nnocrud_builder = python:schema:build\nnocrud_pool_size = 1\n")

    first = run_inner(pytester, data_dir, "-p", "no:xdist")
    out = first.stdout.str() + first.stderr.str()
    first.assert_outcomes(passed=3)
    assert "Traceback" not in out and "INTERNALERROR" not in out, out

    # The next run reuses the template and is just as fine; nothing of either run is left.
    second = run_inner(pytester, data_dir, "-p", "no:xdist")
    second.assert_outcomes(passed=3)
    assert "reused" in second.stdout.str()
    left = _databases(data_dir)
    assert [name for name in left if not name.startswith(("nocrud_tpl_", "nocrud_sch_"))] == [], left

    gc = subprocess.run(
        [sys.executable, "-m", "pytest_nocrud.cli", "gc", f"--data-dir={data_dir}",
         f"--rootdir={pytester.path}"],
        capture_output=True, text=True, cwd=pytester.path, timeout=120,
    )  # fmt: skip
    assert gc.returncode == 0, gc.stdout + gc.stderr
    assert "Traceback" not in gc.stdout + gc.stderr
