"""Real faults in the middle of a run: the server killed with kill -9, a full disk under the data dir.

Each fault must give one clear error that says what happened -- the first failing test in full, the
rest in one line -- and leave nothing behind.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _support import postgres_pids, run_inner, small_tmpfs

SCHEMA = "CREATE TABLE item (name text); INSERT INTO item VALUES ('seed');"

INI = """
[pytest]
nocrud_builder = sql:schema
"""

KILLS_THE_SERVER = """
import os, signal
import pytest

@pytest.mark.parametrize("n", range(3))
def test_before(nocrud_db, n):
    with nocrud_db.connect() as conn:
        assert conn.execute("SELECT name FROM item").fetchall() == [("seed",)]

def test_kills_the_server(nocrud_db, nocrud_postgres):
    pid_file = next(p for p in os.environ["DATA_DIR_GLOB"].split() if os.path.exists(p))
    os.kill(int(open(pid_file).readline()), signal.SIGKILL)

@pytest.mark.parametrize("n", range(6))
def test_after(nocrud_db, n):
    pass
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    (pytester.mkdir("schema") / "001.sql").write_text(SCHEMA)
    pytester.makeini(INI)
    return pytester


def test_postgres_killed_mid_run_is_said_once_with_its_log(project: pytest.Pytester, data_dir: Path) -> None:
    project.makepyfile(test_inner=KILLS_THE_SERVER)
    pid_files = " ".join(str(p / "data" / "postmaster.pid") for p in [data_dir / "pg15", data_dir / "pg16",
                                                                       data_dir / "pg17", data_dir / "pg14"])

    result = run_inner(project, data_dir, "-p", "no:xdist", DATA_DIR_GLOB=pid_files)

    out = result.stdout.str()
    outcomes = result.parseoutcomes()
    # A backend notices its postmaster's death a moment late: under load the next handoff may still
    # go through, so one more test can pass before the errors start.
    errors = outcomes.get("errors", 0)
    assert outcomes.get("passed", 0) in (4, 5) and outcomes.get("passed", 0) + errors == 10, out
    assert out.count("the PostgreSQL server stopped") == errors + 1, out  # each error, and the summary
    assert out.count("Last lines of its log") == 1, out
    assert "terminating connection due to unexpected postmaster exit" in out, "the log tail is shown"
    assert "Traceback" not in out and "psycopg" not in out, out
    assert len(out.splitlines()) < 150, out
    assert postgres_pids(data_dir) == []


FILLS_THE_DISK = """
import errno, os
import pytest

def test_fills_the_disk(nocrud_db):
    with open(os.environ["FILLER"], "wb") as filler:  # another program takes all the space
        chunk = b"x" * 2**20
        with pytest.raises(OSError) as full:
            while True:
                filler.write(chunk)
                filler.flush()
        assert full.value.errno == errno.ENOSPC

@pytest.mark.parametrize("n", range(8))
def test_after(nocrud_db, n):
    pass
"""


@pytest.fixture
def small_disk() -> Iterator[Path]:
    """A real 96 MiB file system (tmpfs): room for a cluster and a few clones, not more."""
    with small_tmpfs("small-disk", 96) as mount_point:
        yield mount_point


def test_full_disk_under_the_data_dir_is_one_clear_error(project: pytest.Pytester, small_disk: Path) -> None:
    project.makepyfile(test_inner=FILLS_THE_DISK)

    # Every test needs a clone (a test that changed nothing would hand its database on and need no space).
    result = run_inner(
        project, small_disk / "data", "-p", "no:xdist", "-o", "nocrud_reuse_unchanged=false",
        FILLER=str(small_disk / "filler"),
    )  # fmt: skip

    out = result.stdout.str()
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) >= 1 and outcomes.get("errors", 0) >= 1, out
    assert out.count("The file system under the data dir is full") == 1, out
    assert "No space left on device" in out and str(small_disk / "data") in out, out
    assert "Traceback" not in out and "psycopg.errors" not in out, out
    assert out.count("clone pool is not available") == outcomes["errors"], "later ones in one line"
    assert postgres_pids(small_disk / "data") == []
