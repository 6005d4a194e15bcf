"""Whole pytest runs (inner sessions in subprocesses) against the embedded server and DSN mode.

Each test checks what a user would see -- exit status, messages -- and what is left behind: after every
run no postgres process may remain for the run's data dir.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from _support import popen_inner, postgres_pids, run_inner

from pytest_nocrud.pg.procs import ProcessId, wait_gone
from pytest_nocrud.pg.server import EmbeddedCluster

USES_SERVER = """
import psycopg

def test_server(nocrud_postgres):
    with psycopg.connect(nocrud_postgres.dsn) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    assert nocrud_postgres.embedded is {embedded}
    assert nocrud_postgres.version[0].isdigit()

def test_unrelated():
    assert 1 + 1 == 2
"""

BLOCKS_UNTIL_RELEASED = """
import os, pathlib, threading
import psycopg

def test_holds_server(nocrud_postgres):
    pathlib.Path(os.environ["STARTED_MARKER"]).write_text("started")
    release = pathlib.Path(os.environ["RELEASE_MARKER"])
    waited = threading.Event()
    for _ in range(1200):  # up to 60 s for the outer test to interrupt or release us
        if release.exists():
            break
        waited.wait(0.05)
    with psycopg.connect(nocrud_postgres.dsn) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
"""


def _wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 60.0) -> None:
    """Block until the inner run writes ``path``; fail with its output if it exits first."""
    import time

    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"inner run exited early:\n{proc.stdout.read() if proc.stdout else ''}")
        assert time.monotonic() < deadline, "inner run never reached its test"
        wait_gone(os.getpid() * 0 - 1, 0.02)  # yields ~20 ms (pid -1 is never running)


@pytest.mark.parametrize("workers", [["-n", "2"], ["-p", "no:xdist"]], ids=["xdist", "single"])
def test_cold_then_warm_run_leave_no_server(
    pytester: pytest.Pytester, data_dir: Path, workers: list[str]
) -> None:
    pytester.makepyfile(test_inner=USES_SERVER.format(embedded=True))

    cold = run_inner(pytester, data_dir, *workers)
    cold.assert_outcomes(passed=2)
    marker = next(data_dir.glob("pg*/initdb.done"))
    initialised_at = marker.stat().st_mtime_ns
    assert postgres_pids(data_dir) == []

    warm = run_inner(pytester, data_dir, *workers)
    warm.assert_outcomes(passed=2)
    assert marker.stat().st_mtime_ns == initialised_at, "a warm run must not initdb again"
    assert postgres_pids(data_dir) == []


def test_collect_only_and_unrelated_runs_start_nothing(pytester: pytest.Pytester, data_dir: Path) -> None:
    pytester.makepyfile(test_inner=USES_SERVER.format(embedded=True))

    run_inner(pytester, data_dir, "--collect-only", "-n", "2").assert_outcomes()
    run_inner(pytester, data_dir, "-k", "unrelated", "-n", "2").assert_outcomes(passed=1)

    assert not data_dir.exists(), "nothing may be created before a test needs PostgreSQL"


def test_sigint_mid_session_leaves_no_server_and_next_run_is_clean(
    pytester: pytest.Pytester, data_dir: Path, tmp_path: Path
) -> None:
    pytester.makepyfile(test_inner=BLOCKS_UNTIL_RELEASED)
    started = tmp_path / "started"
    env = {"STARTED_MARKER": str(started), "RELEASE_MARKER": str(tmp_path / "never")}
    proc = popen_inner(pytester, data_dir, "-n", "2", **env)
    _wait_for(started, proc)
    assert postgres_pids(data_dir), "the inner run should be using the server now"

    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    output, _ = proc.communicate(timeout=60)

    assert proc.returncode != 0
    assert postgres_pids(data_dir) == [], output
    env["RELEASE_MARKER"] = str(started)  # already exists: the next run does not block
    nxt = popen_inner(pytester, data_dir, "-n", "2", **env)
    output, _ = nxt.communicate(timeout=120)
    assert nxt.returncode == 0, output
    assert postgres_pids(data_dir) == []


def test_concurrent_runs_share_the_server_and_the_last_one_stops_it(
    pytester: pytest.Pytester, data_dir: Path, tmp_path: Path
) -> None:
    pytester.makepyfile(test_inner=BLOCKS_UNTIL_RELEASED)
    pytester.makepyfile(test_quick=USES_SERVER.format(embedded=True))
    started, release = tmp_path / "started", tmp_path / "release"
    long_run = popen_inner(
        pytester,
        data_dir,
        "-n",
        "2",
        "test_inner.py",
        STARTED_MARKER=str(started),
        RELEASE_MARKER=str(release),
    )
    _wait_for(started, long_run)
    # The postmaster only: a just-forked child still carries its parent's command line for a moment.
    (postmaster,) = {int(p.read_text().split()[0]) for p in data_dir.glob("pg*/data/postmaster.pid")}

    run_inner(pytester, data_dir, "-n", "2", "test_quick.py").assert_outcomes(passed=2)
    assert postmaster in postgres_pids(data_dir), "a finishing run must not stop a server in use"

    release.write_text("go")  # the long run now queries the server it shares
    output, _ = long_run.communicate(timeout=60)
    assert long_run.returncode == 0, output
    assert postgres_pids(data_dir) == []


def test_dsn_mode_uses_the_given_server_and_starts_none(
    pytester: pytest.Pytester, data_dir: Path, warm_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = EmbeddedCluster(warm_data_dir)
    me = ProcessId.of(os.getpid())
    server = other.acquire(me)
    try:
        pytester.makepyfile(test_inner=USES_SERVER.format(embedded=False))
        run_inner(pytester, data_dir, f"--nocrud-dsn={server.dsn}", "-n", "2").assert_outcomes(passed=2)
        monkeypatch.setenv("NOCRUD_DSN", server.dsn)
        run_inner(pytester, data_dir, "-n", "2").assert_outcomes(passed=2)
    finally:
        other.release(me)
    assert not data_dir.exists(), "DSN mode must not create an embedded cluster"


def test_unreachable_dsn_fails_once_clearly_without_the_password(
    pytester: pytest.Pytester, data_dir: Path
) -> None:
    pytester.makepyfile(
        test_inner=USES_SERVER.format(embedded=False).replace("test_unrelated()", "test_b(nocrud_postgres)")
    )
    result = run_inner(
        pytester, data_dir, "--nocrud-dsn=postgresql://bob:s3cr%40t@127.0.0.1:1/appdb", "-p", "no:xdist"
    )

    result.assert_outcomes(errors=2)
    text = result.stdout.str()
    assert "127.0.0.1:1/appdb" in text and "bob:***@" in text
    assert "s3cr" not in text
    errors = text.split("= ERRORS =", 1)[1].split("short test summary info", 1)[0]  # the reports only
    assert errors.count("Check that the server is running") == 1, "full message once, then a short one"
    assert "full error in the first failing test" in errors


def test_missing_binaries_name_the_way_out(pytester: pytest.Pytester, data_dir: Path, tmp_path: Path) -> None:
    pytester.makepyfile(test_inner=USES_SERVER.format(embedded=True))
    result = run_inner(pytester, data_dir, f"--nocrud-pg-bindir={tmp_path}", "-p", "no:xdist")

    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*does not contain both 'initdb' and 'postgres'*"])
