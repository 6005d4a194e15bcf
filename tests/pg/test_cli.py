"""The ``nocrud`` command against a real embedded cluster."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from _support import postgres_pids

from pytest_nocrud.cli import main
from pytest_nocrud.pg import admin
from pytest_nocrud.pg.pool import pool_prefix


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
