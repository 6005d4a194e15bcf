"""Build-once templates, fresh databases and garbage collection, seen through whole pytest runs.

Every test drives inner pytest sessions (subprocesses) against a real embedded server and checks what
a user sees (outcomes, the summary block, error text) and what is left on the server afterwards. The
inner project's ``python:`` builder appends a line to a counter file per build, so "built exactly
once" is counted rather than inferred from timings.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from _support import popen_inner, postgres_pids, run_inner

from pytest_nocrud.pg import admin
from pytest_nocrud.pg.pool import pool_prefix
from pytest_nocrud.pg.procs import ProcessId
from pytest_nocrud.pg.server import EmbeddedCluster, PostgresServer

INI = """
[pytest]
nocrud_builder = python:builder_mod:build
nocrud_template_inputs =
    builder_mod.py
    schema/*.sql
"""

BUILDER = '''
import os, pathlib, threading

def build(conn):
    """Count the build, optionally block (kill test) or linger (race test), then run the schema."""
    with open(os.environ["NOCRUD_TEST_COUNTER"], "a") as counter:
        counter.write(f"{os.getpid()}\\n")
    if os.environ.get("NOCRUD_TEST_BLOCK"):
        pathlib.Path(os.environ["NOCRUD_TEST_MARKER"]).write_text("building")
        never = threading.Event()
        for _ in range(2400):  # at most 120 s: the outer test kills us long before
            never.wait(0.05)
    if os.environ.get("NOCRUD_TEST_LINGER"):
        conn.execute("SELECT pg_sleep(0.5)")  # widens the race between concurrent sessions
    here = pathlib.Path(__file__).parent
    for path in sorted((here / "schema").glob("*.sql")):
        conn.execute(path.read_bytes())
'''

SCHEMA = """
CREATE TABLE item (id serial PRIMARY KEY, name text NOT NULL);
INSERT INTO item (name) VALUES ('seed-1'), ('seed-2');
"""

ISOLATION_TESTS = """
import pytest

@pytest.mark.parametrize("i", range(20))
def test_sees_only_own_writes(nocrud_db, i):
    with nocrud_db.connect() as conn:
        conn.execute("INSERT INTO item (name) VALUES (%s)", [f"test-{i}"])
        conn.commit()
        names = sorted(row[0] for row in conn.execute("SELECT name FROM item"))
    assert names == ["seed-1", "seed-2", f"test-{i}"]
"""

SMALL_TESTS = """
def test_one(nocrud_db):
    with nocrud_db.connect() as conn:
        assert conn.execute("SELECT count(*) FROM item").fetchone() == (2,)

def test_two(nocrud_db):
    with nocrud_db.connect() as conn:
        assert conn.execute("SELECT count(*) FROM item").fetchone() == (2,)
"""

TEMPLATE_ONLY_TESTS = """
def test_one(nocrud_template):
    assert nocrud_template.name.startswith("nocrud_tpl_")

def test_two(nocrud_template):
    assert nocrud_template.name.startswith("nocrud_tpl_")
"""

TEMPLATE_LINE = re.compile(
    r"template: (nocrud_tpl_[0-9a-f]{16}) \(key [0-9a-f]{12}\) (built in [0-9.]+s|reused)"
)


# ------------------------------------------------------------------------------------------- helpers


@pytest.fixture
def project(pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An inner project with the counting builder; returns the counter file."""
    (pytester.path / "pytest.ini").write_text(INI)
    (pytester.path / "builder_mod.py").write_text(BUILDER)
    (pytester.path / "schema").mkdir()
    (pytester.path / "schema" / "001_items.sql").write_text(SCHEMA)
    counter = tmp_path / "builds.txt"
    counter.touch()
    monkeypatch.setenv("NOCRUD_TEST_COUNTER", str(counter))
    return counter


def builds(counter: Path) -> int:
    return len(counter.read_text().splitlines())


def template_of(output: str) -> tuple[str, str]:
    """(template name, 'built in ...s' | 'reused') from the summary block."""
    match = TEMPLATE_LINE.search(output)
    assert match, output
    return match.group(1), match.group(2)


@contextmanager
def live_server(data_dir: Path) -> Iterator[PostgresServer]:
    """The inner runs' server, held by this process (started if no run holds it, stopped after)."""
    cluster = EmbeddedCluster(data_dir)
    me = ProcessId.of(os.getpid())
    server = cluster.acquire(me)
    try:
        yield server
    finally:
        cluster.release(me)


def databases(server: PostgresServer, prefix: str) -> list[str]:
    with admin.connect(server.admin) as conn:
        return admin.names_like(conn, prefix)


# --------------------------------------------------------------------------------------------- tests


def test_parallel_tests_are_isolated_built_once_and_summarised(
    pytester: pytest.Pytester, data_dir: Path, project: Path
) -> None:
    pytester.makepyfile(test_inner=ISOLATION_TESTS)

    result = run_inner(pytester, data_dir, "-n", "2", "-v")

    result.assert_outcomes(passed=20)
    assert builds(project) == 1
    out = result.stdout.str()
    assert "[gw0]" in out and "[gw1]" in out, "both workers must hand out databases"
    result.stdout.fnmatch_lines(
        [
            "*- pytest-nocrud -*",
            "server: PostgreSQL 1* (embedded)",
            "template: nocrud_tpl_* (key *) built in *s (schema layer nocrud_sch_* built in *s)",
            "databases handed out: 20 (* fresh clones, * unchanged reused); handoff p50 * ms, p95 * ms, "
            "max * ms; * waited for a clone; pool background * s",
        ]
    )
    _, how = template_of(out)
    assert float(how.split()[-1].rstrip("s")) > 0, "the summary must show the real build time"
    with live_server(data_dir) as server:
        assert databases(server, "nocrud_r") == [], "clone databases left after the run"
        assert len(databases(server, "nocrud_tpl_")) == 1
    assert postgres_pids(data_dir) == []


def test_concurrent_sessions_build_once_and_warm_run_builds_nothing(
    pytester: pytest.Pytester, data_dir: Path, project: Path
) -> None:
    pytester.makepyfile(test_inner=TEMPLATE_ONLY_TESTS)
    with live_server(data_dir):  # shared by the inner runs: they pay no start/stop
        first = popen_inner(pytester, data_dir, "-p", "no:xdist", NOCRUD_TEST_LINGER="1")
        second = popen_inner(pytester, data_dir, "-p", "no:xdist", NOCRUD_TEST_LINGER="1")
        outputs = [proc.communicate(timeout=120)[0] for proc in (first, second)]

        assert [first.returncode, second.returncode] == [0, 0], outputs
        assert builds(project) == 1, "two concurrent sessions on one key must build once between them"
        (name_a, how_a), (name_b, how_b) = map(template_of, outputs)
        assert name_a == name_b
        assert sorted(h.split()[0] for h in (how_a, how_b)) == ["built", "reused"]

        warm = run_inner(pytester, data_dir, "-p", "no:xdist")
        warm.assert_outcomes(passed=2)
        assert builds(project) == 1, "a warm run must not build"
        assert template_of(warm.stdout.str()) == (name_a, "reused")
        assert "building template" not in warm.stdout.str() + warm.stderr.str()
    assert postgres_pids(data_dir) == []


def test_key_follows_input_content_and_rebuild_builds_once(
    pytester: pytest.Pytester, data_dir: Path, project: Path
) -> None:
    pytester.makepyfile(test_inner=TEMPLATE_ONLY_TESTS)
    schema = pytester.path / "schema" / "001_items.sql"
    with live_server(data_dir):
        original = template_of(run_inner(pytester, data_dir, "-p", "no:xdist").stdout.str())[0]

        later = time.time() + 120
        os.utime(schema, (later, later))  # touched, content unchanged
        touched = run_inner(pytester, data_dir, "-p", "no:xdist")
        touched.assert_outcomes(passed=2)
        assert template_of(touched.stdout.str()) == (original, "reused")
        assert builds(project) == 1

        schema.write_text(SCHEMA + "CREATE INDEX item_name ON item (name);\n")
        edited = run_inner(pytester, data_dir, "-p", "no:xdist")
        edited.assert_outcomes(passed=2)
        new_name, how = template_of(edited.stdout.str())
        assert new_name != original and how.startswith("built")
        assert builds(project) == 2

        rebuilt = run_inner(pytester, data_dir, "-n", "2", "--nocrud-rebuild")
        rebuilt.assert_outcomes(passed=2)
        assert builds(project) == 3, "--nocrud-rebuild rebuilds once per run, not once per worker"
        name, how = template_of(rebuilt.stdout.str())
        assert name == new_name and how.startswith("built")
    assert postgres_pids(data_dir) == []


def test_build_killed_midway_leaves_no_usable_template_and_next_run_rebuilds(
    pytester: pytest.Pytester, data_dir: Path, project: Path, tmp_path: Path
) -> None:
    pytester.makepyfile(test_inner=TEMPLATE_ONLY_TESTS)
    marker = tmp_path / "building"
    proc = popen_inner(
        pytester, data_dir, "-p", "no:xdist", NOCRUD_TEST_BLOCK="1", NOCRUD_TEST_MARKER=str(marker)
    )
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "the inner build never started"
        threading.Event().wait(0.02)

    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert builds(project) == 1

    with live_server(data_dir) as server, admin.connect(server.admin) as conn:
        for name in admin.names_like(conn, "nocrud_tpl_"):
            assert not admin.is_template(conn, name), f"{name} was finalized by a killed build"
            assert not admin.is_finalized(conn, name)
    assert postgres_pids(data_dir) == [], "the killed run's server must stop once its lease is gone"

    result = run_inner(pytester, data_dir, "-p", "no:xdist")
    result.assert_outcomes(passed=2)
    assert builds(project) == 2, "the next run rebuilds"
    assert template_of(result.stdout.str())[1].startswith("built")
    assert postgres_pids(data_dir) == []


FAILING_SQL_TESTS = """
def test_plain():
    assert True

def test_server_only(nocrud_postgres):
    import psycopg
    with psycopg.connect(nocrud_postgres.dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
""" + "".join(f"\ndef test_needs_template_{i}(nocrud_db):\n    pass\n" for i in range(6))


def test_failing_sql_file_is_reported_by_file_and_line_once_per_run(
    pytester: pytest.Pytester, data_dir: Path
) -> None:
    (pytester.path / "pytest.ini").write_text("[pytest]\nnocrud_builder = sql:db\n")
    (pytester.path / "db").mkdir()
    (pytester.path / "db" / "001_ok.sql").write_text("CREATE TABLE ok (id int);\n")
    (pytester.path / "db" / "002_bad.sql").write_text(
        "-- a comment\nCREATE TABLE b (id int);\nSELECT * FROM no_such_table;\n"
    )
    pytester.makepyfile(test_inner=FAILING_SQL_TESTS)

    result = run_inner(pytester, data_dir, "-n", "2", "-v")

    result.assert_outcomes(passed=2, errors=6)
    out = result.stdout.str()
    full = out.count("    3 | SELECT * FROM no_such_table;")
    brief = out.count("full error in the first failing test of this worker")
    # the other worker built no more; the summary's SETUP FAILED line may quote one of these: not counted
    earlier = sum(
        line.count("failed earlier in this run (worker gw")
        for line in out.splitlines()
        if not line.lstrip().startswith("SETUP FAILED")
    )
    workers = {
        w for w in ("gw0", "gw1") if re.search(rf"\[{w}\] \[\s*\d+%\] ERROR \S*test_needs_template", out)
    }
    assert full == 1, out  # the build ran once, and the worker that ran it shows it in full
    assert full + brief + earlier == 6, out
    assert (earlier > 0) == (len(workers) == 2), out
    assert 'db/002_bad.sql, line 3: relation "no_such_table" does not exist' in out
    with live_server(data_dir) as server:
        assert databases(server, "nocrud_tpl_") == [], "a failed build must drop its partial database"
    assert postgres_pids(data_dir) == []


KEEP_FAILED_TESTS = """
def test_passes(nocrud_db):
    with nocrud_db.connect() as conn:
        conn.execute("INSERT INTO item (name) VALUES ('passing write')")

def test_fails(nocrud_db):
    with nocrud_db.connect() as conn:
        conn.execute("INSERT INTO item (name) VALUES ('failed write')")
    assert False, "deliberate"

def test_passes_after(nocrud_db):
    pass
"""


def test_no_clones_remain_but_a_kept_failed_database_holds_the_failed_write(
    pytester: pytest.Pytester, data_dir: Path, project: Path
) -> None:
    pytester.makepyfile(test_inner=KEEP_FAILED_TESTS)

    plain = run_inner(pytester, data_dir, "-p", "no:xdist")
    plain.assert_outcomes(passed=2, failed=1)
    kept = run_inner(pytester, data_dir, "-p", "no:xdist", "--nocrud-keep-failed")
    kept.assert_outcomes(passed=2, failed=1)

    assert "database kept for inspection" not in plain.stdout.str()
    match = re.search(r"database kept for inspection: (\S+)", kept.stdout.str())
    assert match, kept.stdout.str()
    dsn = match.group(1)
    with live_server(data_dir) as server:
        assert databases(server, "nocrud_r") == []
        failed = databases(server, "nocrud_failed_")
        assert len(failed) == 1 and failed[0] in dsn and "test_fails" in failed[0]
        with psycopg.connect(dsn) as conn:
            names = sorted(row[0] for row in conn.execute("SELECT name FROM item"))
        assert names == ["failed write", "seed-1", "seed-2"]
    assert postgres_pids(data_dir) == []


def test_leftovers_of_dead_runs_are_collected_and_live_ones_untouched(
    pytester: pytest.Pytester, data_dir: Path, project: Path
) -> None:
    pytester.makepyfile(test_inner=SMALL_TESTS)
    dead, live = pool_prefix("dead-run", "gw0"), pool_prefix("live-run", "gw0")
    with live_server(data_dir) as server, admin.connect(server.admin) as owner:
        with admin.connect(server.admin) as conn:
            for name in (dead, f"{dead}_c1", f"{dead}_d2", live, f"{live}_c1"):
                admin.create(conn, name)
        assert admin.try_advisory_lock(owner, live)  # a live run on another machine owns live*

        run_inner(pytester, data_dir, "-p", "no:xdist").assert_outcomes(passed=2)

        assert databases(server, dead) == []
        assert databases(server, live) == [live, f"{live}_c1"]
        admin.advisory_unlock(owner, live)
        for name in (live, f"{live}_c1"):
            admin.drop(owner, name)
    assert postgres_pids(data_dir) == []


# ---------------------------------------------------------------- kill -9 during a command: build

STEP = """
import os, pathlib, sys, psycopg
with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
    if sys.argv[1] == "one":
        conn.execute("CREATE TABLE item (id serial PRIMARY KEY, name text NOT NULL)")
        marker = os.environ.get("NOCRUD_TEST_MARKER")
        if marker:
            pathlib.Path(marker).write_text(str(os.getppid()))  # the builder's shell
    else:
        conn.execute("INSERT INTO item (name) VALUES ('seed')")
"""

SEED_ONCE_TESTS = """
def test_seed_once(nocrud_db):
    with nocrud_db.connect() as conn:
        assert conn.execute("SELECT name FROM item").fetchall() == [("seed",)]
"""

STEP_COMMAND = "{python} step.py one && sleep ${NOCRUD_TEST_SLEEP:-0} && {python} step.py two"


def test_kill_9_during_command_build_never_poisons_the_next_run(
    pytester: pytest.Pytester, data_dir: Path, tmp_path: Path
) -> None:
    (pytester.path / "pytest.ini").write_text(
        f"[pytest]\nnocrud_builder = command:{STEP_COMMAND}\nnocrud_template_inputs = step.py\n"
    )
    (pytester.path / "step.py").write_text(STEP)
    pytester.makepyfile(test_inner=SEED_ONCE_TESTS)
    marker = tmp_path / "shell.pid"
    killed = popen_inner(
        pytester, data_dir, "-p", "no:xdist", NOCRUD_TEST_SLEEP="60", NOCRUD_TEST_MARKER=str(marker)
    )
    deadline = time.monotonic() + 60
    while not marker.exists() or not marker.read_text():
        assert killed.poll() is None, killed.communicate()[0]
        assert time.monotonic() < deadline, "the inner build never started"
        threading.Event().wait(0.02)
    shell = int(marker.read_text())
    try:
        os.kill(killed.pid, signal.SIGKILL)  # kill -9 of pytest (alone: its builder is orphaned)
        killed.communicate(timeout=30)
        assert ProcessId.of(shell).alive(), (
            "the orphaned builder must outlive pytest for this test to mean it"
        )

        rerun = run_inner(pytester, data_dir, "-p", "no:xdist")

        rerun.assert_outcomes(passed=1)
        assert not ProcessId.of(shell).alive(), "the rerun must end the dead build's process group"
        with live_server(data_dir) as server:
            assert databases(server, "nocrud_bld_") == [], "the dead build's database must be dropped"
    finally:
        if ProcessId.of(shell).alive():
            os.killpg(shell, signal.SIGKILL)
    assert postgres_pids(data_dir) == []


# ------------------------------------------------------ GC never drops a layer a live run uses

BLOCKING_TESTS = """
import os, pathlib, threading
import pytest

def test_0_waits(nocrud_db):
    pathlib.Path(os.environ["NOCRUD_TEST_MARKER"]).write_text("running")
    release = pathlib.Path(os.environ["NOCRUD_TEST_RELEASE"])
    for _ in range(2400):  # at most 120 s: the outer test releases us long before
        if release.exists():
            break
        threading.Event().wait(0.05)

@pytest.mark.parametrize("i", range(8))
def test_later_clones(nocrud_db, i):
    with nocrud_db.connect() as conn:
        assert conn.execute("SELECT count(*) FROM item").fetchone() == (2,)
"""


def test_templates_built_meanwhile_never_drop_a_live_runs_layers(
    pytester: pytest.Pytester, data_dir: Path, project: Path, tmp_path: Path
) -> None:
    pytester.makepyfile(test_inner=BLOCKING_TESTS)
    marker, release = tmp_path / "running", tmp_path / "release"
    schema = pytester.path / "schema" / "001_items.sql"
    with live_server(data_dir) as server:
        live = popen_inner(
            pytester,
            data_dir,
            "-p",
            "no:xdist",
            NOCRUD_TEST_MARKER=str(marker),
            NOCRUD_TEST_RELEASE=str(release),
        )
        try:
            deadline = time.monotonic() + 60
            while not marker.exists():
                assert live.poll() is None, live.communicate()[0]
                assert time.monotonic() < deadline, "the live run never started its first test"
                threading.Event().wait(0.02)
            in_use = set(databases(server, "nocrud_tpl_")) | set(databases(server, "nocrud_sch_"))
            assert in_use

            pytester.makepyfile(test_inner=SMALL_TESTS)
            for i in range(4):  # four other keys, each build followed by GC (keep 3 others)
                schema.write_text(SCHEMA + f"CREATE TABLE other_{i} (id int);\n")
                run_inner(pytester, data_dir, "-p", "no:xdist").assert_outcomes(passed=2)

            left = set(databases(server, "nocrud_tpl_")) | set(databases(server, "nocrud_sch_"))
            assert in_use <= left, "GC dropped a layer of the live run"
            assert len(left) < len(in_use) + 4 * len(in_use), "GC must still evict what no run uses"
        finally:
            release.touch()
            output = live.communicate(timeout=120)[0]
        assert live.returncode == 0, output
    assert postgres_pids(data_dir) == []
