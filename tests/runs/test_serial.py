"""Serial mode against an app and database the test provisions itself, like the original runner's
``backend_env.sh`` workflow: nothing may be provisioned or started by the plugin."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pytest_nocrud.app.process import AppLog, AppProcess, AppSpec
from pytest_nocrud.pg import admin
from pytest_nocrud.pg.builders import DjangoBuilder
from pytest_nocrud.pg.conninfo import ConnInfo
from pytest_nocrud.pg.procs import ProcessId
from pytest_nocrud.pg.server import EmbeddedCluster

EXAMPLE = Path(__file__).resolve().parents[2] / "example_app"
FIXTURES = ("fixtures/users.json", "fixtures/catalog.json")
DBNAME = "pitchdesk_serial"


@pytest.fixture
def running_example(warm_data_dir: Path, tmp_path: Path) -> Iterator[tuple[ConnInfo, str]]:
    """The example app on a database provisioned by hand: migrate + loaddata, then runserver."""
    cluster = EmbeddedCluster(warm_data_dir)
    me = ProcessId.of(os.getpid())
    server = cluster.acquire(me)
    db = server.admin.with_db(DBNAME)
    app = None
    try:
        with admin.connect(server.admin) as conn:
            admin.drop(conn, DBNAME)
            admin.create(conn, DBNAME)
        DjangoBuilder(EXAMPLE, fixtures=FIXTURES).build(db, lambda line: None)
        spec = AppSpec(
            command="{python} manage.py runserver {host}:{port} --noreload --skip-checks",
            cwd=EXAMPLE,
            ready_path="/api/health/",
            extra_env=(("PITCHDESK_FAST_PASSWORD_HASHER", "1"),),
        )
        app = AppProcess(spec, db, AppLog(tmp_path / "app.log"))
        app.start()
        yield db, app.url
    finally:
        if app is not None:
            app.stop()
        cluster.release(me)


def test_serial_mode_runs_flows_against_the_running_app(
    running_example: tuple[ConnInfo, str], tmp_path: Path
) -> None:
    db, url = running_example
    env_file = tmp_path / "backend_env.sh"  # what the original runner exported
    env_file.write_text(f"export NOCRUD_APP_URL={url}\nexport DATABASE_URL='{db.dsn}'\n")
    resets = tmp_path / "resets"
    reset = (
        f"echo reset >> {resets} && {sys.executable} manage.py flush --noinput && "
        f"{sys.executable} manage.py loaddata {' '.join(FIXTURES)}"
    )
    command = (
        f". {env_file} && {sys.executable} -m pytest -p no:cacheprovider --nocrud-serial "
        f"-o nocrud_serial_reset='{reset}' -k test_each_test_sees_only_fixture_rows tests/test_wiring.py"
    )
    before = _nocrud_databases(db)
    result = subprocess.run(
        ["bash", "-c", command], cwd=EXAMPLE, capture_output=True, text=True, env=os.environ.copy()
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout
    assert f"database: {DBNAME} (serial mode: used as is, nothing provisioned)" in result.stdout
    assert "(key )" not in result.stdout
    assert resets.read_text().count("reset") == 3, "the reset command runs before every flow"
    assert _nocrud_databases(db) == before, "serial mode provisions nothing"


def _nocrud_databases(db: ConnInfo) -> set[str]:
    with psycopg.connect(db.with_db("postgres").dsn) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'nocrud%'")
        return {row[0] for row in rows}


def test_without_reset_the_writes_of_earlier_flows_are_visible(running_example: tuple[ConnInfo, str]) -> None:
    """The point of per-test databases, shown by its absence: serial flows share one database."""
    db, url = running_example
    env = {**os.environ, "NOCRUD_APP_URL": url, "DATABASE_URL": db.dsn}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--nocrud-serial",
         "-k", "test_each_test_sees_only_fixture_rows", "tests/test_wiring.py"],
        cwd=EXAMPLE, capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert result.returncode == 1
    assert "1 passed" in result.stdout and "2 failed" in result.stdout


def test_serial_mode_needs_the_app_url(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner="def test_x():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--nocrud-serial")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "set NOCRUD_APP_URL" in result.stderr.str()


SERIAL_RESET = "{python} manage.py flush --noinput && {python} manage.py loaddata " + " ".join(FIXTURES)


def test_the_readme_serial_recipe_passes_the_example_suites_setup_tests(
    running_example: tuple[ConnInfo, str],
) -> None:
    """The README's reset (flush + loaddata) with the example's @template_setup functions: after each
    reset the setups run again against the app, so nocrud_setup's ids and the baked logins hold."""
    db, url = running_example
    env = {**os.environ, "NOCRUD_APP_URL": url, "DATABASE_URL": db.dsn}
    reset = SERIAL_RESET.format(python=sys.executable)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--nocrud-serial", "-q",
         "-o", f"nocrud_serial_reset={reset}", "tests/test_readme_examples.py", "tests/test_cascades.py"],
        cwd=EXAMPLE, capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "16 passed" in result.stdout and "failed" not in result.stdout, result.stdout
