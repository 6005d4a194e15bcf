"""The ``nocrud`` command against a real embedded cluster."""

from __future__ import annotations

import os
import re
import signal
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


# -- the real console script ------------------------------------------------------------------------

NOCRUD = str(Path(sys.executable).parent / "nocrud")


def nocrud(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([NOCRUD, *map(str, args)], capture_output=True, text=True, timeout=120)


def test_started_server_holds_its_own_lease_until_server_stop(data_dir: Path) -> None:
    start = nocrud("server", "start", "--data-dir", data_dir)  # options after the subcommand work too
    assert start.returncode == 0, start.stderr
    dsn = start.stdout.strip()

    for command in (["status"], ["gc"], ["status", "--rootdir", data_dir]):
        done = nocrud("--data-dir", data_dir, *command)
        assert done.returncode == 0, done.stderr
        assert postgres_pids(data_dir), f"nocrud {' '.join(map(str, command))} stopped the started server"
        psycopg.connect(dsn).close()

    # A run that used the server and ended leaves it up as well: it is not the run's to stop.
    cluster = EmbeddedCluster(data_dir)
    me = ProcessId.of(os.getpid())
    cluster.acquire(me)
    assert cluster.release(me) is False and postgres_pids(data_dir)

    stop = nocrud("server", "stop", "--data-dir", data_dir)
    assert stop.returncode == 0 and stop.stdout.strip() == "stopped", stop.stderr
    assert postgres_pids(data_dir) == []


def test_output_into_a_closed_pipe_is_not_a_traceback(warm_data_dir: Path) -> None:
    """``nocrud status | head -1``: the reader is gone before nocrud writes."""
    proc = subprocess.Popen(
        [NOCRUD, "status", "--data-dir", str(warm_data_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # like head exiting: every write from now on gets EPIPE
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 128 + signal.SIGPIPE
    assert err == "", err


def test_gc_removes_app_logs_and_registries_of_ended_runs(data_dir: Path) -> None:
    dead_pid = subprocess.Popen(["true"])  # a real process that has ended: its pid names a finished run
    dead_pid.wait()
    logs, apps = data_dir / "logs", data_dir / "apps"
    logs.mkdir(parents=True)
    dead_log, live_log = logs / f"app-{dead_pid.pid}-gw0.log", logs / f"app-{os.getpid()}-main.log"
    dead_log.write_text("[app:1] old\n")
    live_log.write_text("[app:2] a run still going\n")
    dead_registry = apps / ProcessId(dead_pid.pid, "1").token
    live_registry = apps / ProcessId.of(os.getpid()).token
    dead_registry.mkdir(parents=True)
    live_registry.mkdir()

    done = nocrud("gc", "--data-dir", data_dir)

    assert done.returncode == 0, done.stderr
    # the dead run's empty registry goes with its (no) apps, its log with the tidy-up
    assert "stopped 0 app(s) of dead runs" in done.stdout, done.stdout
    assert "removed 1 app log file(s) and registries of ended runs" in done.stdout, done.stdout
    assert sorted(logs.iterdir()) == [live_log]
    assert sorted(apps.iterdir()) == [live_registry]


def nocrud_in(root: Path, data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
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

    cold = nocrud_in(root, data_dir, "preview")
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

    built = nocrud_in(root, data_dir, "build")
    assert built.returncode == 0, built.stderr
    assert re.search(
        r"template nocrud_tpl_\w+ built in [\d.]+s \(schema layer nocrud_sch_\w+ built in", built.stdout
    ), built.stdout
    assert "reused" in nocrud_in(root, data_dir, "build").stdout

    warm = nocrud_in(root, data_dir, "preview")
    assert "data layer nocrud_tpl_" in warm.stdout and ": reused" in warm.stdout
    assert "-- nothing would run" in warm.stdout

    (root / "db" / "003_u.sql").write_text("CREATE TABLE u (id int);\n")
    appended = nocrud_in(root, data_dir, "preview")
    assert re.search(r"would be built from nocrud_sch_\w+ \+ 1 new file", appended.stdout), appended.stdout
    assert "-- File: db/003_u.sql" in appended.stdout and "-- File: db/001_t.sql" not in appended.stdout
    after = nocrud_in(root, data_dir, "build")
    assert re.search(r"schema layer nocrud_sch_\w+ built from nocrud_sch_\w+ \+ 1 new file", after.stdout), (
        after.stdout
    )
    assert postgres_pids(data_dir) == []


EXAMPLE_APP = Path(__file__).resolve().parents[2] / "example_app"


def test_build_and_preview_see_the_template_setups_a_test_run_sees(data_dir: Path) -> None:
    """example_app has @template_setup functions in its conftest: ``nocrud build`` must finalize the
    very data layer the tests then reuse, and ``preview`` must name that layer."""
    built = nocrud_in(EXAMPLE_APP, data_dir, "build")
    assert built.returncode == 0, built.stdout + built.stderr
    assert "running 2 @template_setup function(s)" in built.stdout, built.stdout
    layer = re.search(r"template (nocrud_tpl_\w+) built", built.stdout)
    assert layer, built.stdout

    preview = nocrud_in(EXAMPLE_APP, data_dir, "preview")
    assert f"-- data layer {layer.group(1)}: reused" in preview.stdout, preview.stdout + preview.stderr

    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "-q",
         f"--nocrud-data-dir={data_dir}", "tests/test_auth.py"],
        cwd=EXAMPLE_APP, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"template: {layer.group(1)} (key " in run.stdout and ") reused" in run.stdout, run.stdout
    assert "building template layer" not in run.stdout + run.stderr


@pytest.mark.parametrize("command", ["status", "gc", "server", "scaffold", "build", "preview", "key", "perf"])
def test_every_help_lists_the_common_options_with_their_defaults(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "common options (before or after the command)" in out, out
    for option in ("--rootdir", "--dsn", "--data-dir", "--pg-bindir"):
        assert option in out
    assert "(default: the current directory)" in out and "(default: $NOCRUD_DSN" in out


def test_common_options_work_after_build_and_preview_and_errors_carry_one_prefix(
    tmp_path: Path, data_dir: Path
) -> None:
    root = tmp_path / "proj"
    (root / "db").mkdir(parents=True)
    (root / "pytest.ini").write_text("[pytest]\nnocrud_builder = sql:db\n")
    (root / "db" / "001_t.sql").write_text("CREATE TABLE t (id int);\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    for command in ("preview", "build"):
        done = subprocess.run(
            [NOCRUD, command, "--rootdir", str(root), "--data-dir", str(data_dir)],
            cwd=elsewhere, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr

    (root / "pytest.ini").write_text("[pytest]\nnocrud_builder = python:nomodule:build\n")
    failed = subprocess.run(
        [NOCRUD, "build", "--rootdir", str(root), "--data-dir", str(data_dir)],
        cwd=elsewhere, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert failed.returncode == 1
    assert failed.stderr.startswith("nocrud: ") and "pytest-nocrud:" not in failed.stderr, failed.stderr
    assert "is not available" not in failed.stderr
    assert postgres_pids(data_dir) == []


def test_status_says_it_started_the_server_and_marks_this_projects_layers(
    tmp_path: Path, data_dir: Path
) -> None:
    root = tmp_path / "proj"
    (root / "db").mkdir(parents=True)
    (root / "pytest.ini").write_text("[pytest]\nnocrud_builder = sql:db\n")
    (root / "db" / "001_t.sql").write_text("CREATE TABLE t (id int);\n")
    assert nocrud_in(root, data_dir, "build").returncode == 0
    (root / "db" / "002_u.sql").write_text("CREATE TABLE u (id int);\n")  # the built layers are old now
    assert nocrud_in(root, data_dir, "build").returncode == 0

    status = nocrud_in(root, data_dir, "status")
    assert status.returncode == 0, status.stderr
    out = status.stdout
    assert "it was not running: started for this command, and stopped again after it" in out, out
    marked = [line for line in out.splitlines() if "<- this project's" in line]
    assert len(marked) == 2, out  # the current schema layer and template, not the older pair
    assert all(re.search(r"finalized, [\d.]+ MB, last used (just now|\d+ min ago)", line) for line in marked)
    layers = [line for line in out.splitlines() if line.startswith(("schema layer:", "template:"))]
    assert len(layers) == 4, out
    assert postgres_pids(data_dir) == []


def _key_project(root: Path) -> Path:
    (root / "db").mkdir(parents=True)
    (root / "pytest.ini").write_text("[pytest]\nnocrud_builder = sql:db\nnocrud_fixtures = seed.sql\n")
    (root / "db" / "001_t.sql").write_text("CREATE TABLE t (id int);\n")
    (root / "seed.sql").write_text("INSERT INTO t VALUES (1);\n")
    return root


def _keys(root: Path, data_dir: Path) -> dict[str, str]:
    done = nocrud_in(root, data_dir, "key")
    assert done.returncode == 0, done.stdout + done.stderr
    pairs = [line.split() for line in done.stdout.splitlines()]
    assert [name for name, _ in pairs] == ["schema", "template"], done.stdout
    assert all(re.fullmatch(r"[0-9a-f]{64}", value) for _, value in pairs), done.stdout
    return dict(pairs)


def test_key_is_stable_across_paths_and_follows_each_layers_inputs(tmp_path: Path, data_dir: Path) -> None:
    one = _key_project(tmp_path / "one")
    other = _key_project(tmp_path / "elsewhere" / "two")
    first = _keys(one, data_dir)
    assert _keys(other, data_dir) == first, "a copy at another path must have the same keys"
    assert postgres_pids(data_dir) == [], "the embedded server's major comes from its binaries"
    short = nocrud_in(one, data_dir, "key", "--short")
    assert short.stdout == f"{first['template']}\n", short.stdout + short.stderr

    (other / "seed.sql").write_text("INSERT INTO t VALUES (2);\n")
    seeded = _keys(other, data_dir)
    assert seeded["schema"] == first["schema"] and seeded["template"] != first["template"]

    (other / "db" / "001_t.sql").write_text("CREATE TABLE t (id bigint);\n")
    migrated = _keys(other, data_dir)
    assert migrated["schema"] != first["schema"] and migrated["template"] != seeded["template"]
