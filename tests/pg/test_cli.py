"""The ``nocrud`` command against a real embedded cluster."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from _support import postgres_pids

from pytest_nocrud.cli import main
from pytest_nocrud.pg import admin
from pytest_nocrud.pg.pool import pool_prefix
from pytest_nocrud.pg.procs import ProcessId
from pytest_nocrud.pg.server import EmbeddedCluster


def test_server_start_status_gc_stop(warm_data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--data-dir", str(warm_data_dir)]
    assert main([*base, "server", "start"]) == 0
    dsn = capsys.readouterr().out.strip()
    assert postgres_pids(warm_data_dir), "server start leaves the server running"

    dead_run = pool_prefix("a-run-that-died", "gw0")
    with psycopg.connect(dsn, autocommit=True) as conn:
        for name in (dead_run, f"{dead_run}_c1", "nocrud_failed_test_x_0123abcd"):
            admin.drop(conn, name)
            admin.create(conn, name)

    assert main([*base, "status"]) == 0
    status = capsys.readouterr().out
    assert "pool databases: 2" in status
    assert "kept failed-test database: postgresql://postgres@/nocrud_failed_test_x_0123abcd" in status

    assert main([*base, "gc"]) == 0
    assert "dropped 2 database(s)" in capsys.readouterr().out
    assert main([*base, "gc", "--failed"]) == 0
    assert "nocrud_failed_test_x_0123abcd" in capsys.readouterr().out

    assert main([*base, "server", "stop"]) == 0
    assert postgres_pids(warm_data_dir) == []


def test_unreachable_dsn_is_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--dsn", "postgresql://u:pw@127.0.0.1:1/x", "status"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("nocrud: cannot connect to PostgreSQL at 127.0.0.1:1/x") and "pw@" not in err


def nocrud(root: Path, data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The installed ``nocrud`` command, run in the project directory as a user would."""
    command = [str(Path(sys.executable).parent / "nocrud"), "--data-dir", str(data_dir), *args]
    return subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=120)


def test_preview_touches_nothing_and_build_builds_as_a_run_would(tmp_path: Path, data_dir: Path) -> None:
    root = tmp_path / "proj"
    (root / "db").mkdir(parents=True)
    (root / "pytest.ini").write_text(
        "[pytest]\nnocrud_builder = sql:db\nnocrud_fixtures = seed.sql\nnocrud_sql_vars =\n    OWNER=alice\n"
    )
    (root / "db" / "001_t.sql").write_text("CREATE TABLE t (id int);\n")
    (root / "db" / "002_owner.sql.j2").write_text("CREATE TABLE owned_by_{{ OWNER }} (id int);\n")
    (root / "seed.sql").write_text("INSERT INTO t VALUES (1);\n")

    cold = nocrud(root, data_dir, "preview")
    assert cold.returncode == 0, cold.stderr
    assert "would be built\n" in cold.stdout
    for header in ("-- File: db/001_t.sql", "-- File: db/002_owner.sql.j2", "-- File: seed.sql"):
        assert header in cold.stdout
    assert "CREATE TABLE owned_by_alice (id int);" in cold.stdout, "templates are shown rendered"
    server = EmbeddedCluster(data_dir)
    me = ProcessId.of(os.getpid())
    with admin.connect(server.acquire(me).admin) as conn:
        assert admin.names_like(conn, "nocrud_") == [], "preview must not create a database"
    server.release(me)

    built = nocrud(root, data_dir, "build")
    assert built.returncode == 0, built.stderr
    assert re.search(
        r"template nocrud_tpl_\w+ built in [\d.]+s \(schema layer nocrud_sch_\w+ built in", built.stdout
    ), built.stdout
    assert "reused" in nocrud(root, data_dir, "build").stdout

    warm = nocrud(root, data_dir, "preview")
    assert "data layer nocrud_tpl_" in warm.stdout and ": reused" in warm.stdout
    assert "-- nothing would run" in warm.stdout

    (root / "db" / "003_u.sql").write_text("CREATE TABLE u (id int);\n")
    appended = nocrud(root, data_dir, "preview")
    assert re.search(r"would be built from nocrud_sch_\w+ \+ 1 new file", appended.stdout), appended.stdout
    assert "-- File: db/003_u.sql" in appended.stdout and "-- File: db/001_t.sql" not in appended.stdout
    after = nocrud(root, data_dir, "build")
    assert re.search(r"schema layer nocrud_sch_\w+ built from nocrud_sch_\w+ \+ 1 new file", after.stdout), (
        after.stdout
    )
    assert postgres_pids(data_dir) == []
