"""A project whose settings read their own variables (``DB_NAME``, default: some other database)
instead of ``DATABASE_URL``/``PG*``: the builder must not finalize an empty template, and the
``nocrud_app_env`` mapping that fixes the app fixes the builder too.

The builder here is a real tool run by ``command:``; its "settings" default to the server's own
``postgres`` database, as noCRUD's app did.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _support import run_inner

from pytest_nocrud.pg import admin
from pytest_nocrud.pg.procs import ProcessId
from pytest_nocrud.pg.server import EmbeddedCluster

MIGRATE = """
import os, psycopg
db = os.environ.get("DB_NAME", "postgres")  # the project's own setting, with a default
with psycopg.connect(os.environ["DATABASE_URL"], dbname=db, autocommit=True) as conn:
    conn.execute("CREATE TABLE IF NOT EXISTS wrongdb_probe (id int)")
"""

TESTS = """
def test_table_is_in_the_test_database(nocrud_db):
    with nocrud_db.connect() as conn:
        assert conn.execute("SELECT count(*) FROM wrongdb_probe").fetchone() == (0,)
"""

INI = """
[pytest]
nocrud_builder = command:{{python}} migrate.py
nocrud_template_inputs = migrate.py
{extra}
"""


def _project(pytester: pytest.Pytester, extra: str = "") -> None:
    pytester.makepyfile(migrate=MIGRATE, test_inner=TESTS)
    pytester.makeini(INI.format(extra=extra))


def _layers_and_probe(data_dir: Path) -> tuple[list[str], bool]:
    """Finalized template layers, and whether the probe table landed in ``postgres`` (then dropped)."""
    cluster, me = EmbeddedCluster(data_dir), ProcessId.of(os.getpid())
    server = cluster.acquire(me)
    try:
        with admin.connect(server.admin) as conn:
            layers = [n for n in admin.names_like(conn, "nocrud_") if admin.is_finalized(conn, n)]
            probe = conn.execute("SELECT to_regclass('wrongdb_probe') IS NOT NULL").fetchone()
            conn.execute("DROP TABLE IF EXISTS wrongdb_probe")  # the test's mess in the server's db
        return layers, bool(probe and probe[0])
    finally:
        cluster.release(me)


def test_a_builder_that_migrated_another_database_finalizes_nothing(
    pytester: pytest.Pytester, data_dir: Path
) -> None:
    _project(pytester)

    result = run_inner(pytester, data_dir, "-p", "no:xdist")

    result.assert_outcomes(errors=1)
    out = result.stdout.str()
    assert "created nothing in the template database nocrud_bld_" in out, out
    assert "DB_NAME={dbname}" in out and "nocrud_allow_empty_template = true" in out
    layers, probe_in_postgres = _layers_and_probe(data_dir)
    assert probe_in_postgres, "precondition: the tool really wrote to the other database"
    assert layers == [], "nothing may be finalized, so the next run does not reuse an empty template"


def test_nocrud_app_env_reaches_the_builder(pytester: pytest.Pytester, data_dir: Path) -> None:
    _project(pytester, "nocrud_app_env =\n    DB_NAME={dbname}")

    result = run_inner(pytester, data_dir, "-p", "no:xdist")

    result.assert_outcomes(passed=1)
    layers, probe_in_postgres = _layers_and_probe(data_dir)
    assert not probe_in_postgres and len(layers) == 2


def test_an_intentionally_empty_template_is_allowed_by_a_switch(
    pytester: pytest.Pytester, data_dir: Path
) -> None:
    pytester.makepyfile(
        empty="def build(conn):\n    pass\n",
        test_inner="def test_db(nocrud_db):\n    nocrud_db.connect().close()\n",
    )
    pytester.makeini("[pytest]\nnocrud_builder = python:empty:build\n")
    refused = run_inner(pytester, data_dir, "-p", "no:xdist")
    refused.assert_outcomes(errors=1)

    pytester.makeini("[pytest]\nnocrud_builder = python:empty:build\nnocrud_allow_empty_template = true\n")
    run_inner(pytester, data_dir, "-p", "no:xdist").assert_outcomes(passed=1)
