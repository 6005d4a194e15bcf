"""Serial mode (``--nocrud-serial``): run flows one at a time against an app and database you run.

Nothing is provisioned or started: the app is ``NOCRUD_APP_URL`` and the database is taken from
``NOCRUD_DSN``, else ``DATABASE_URL``, else the libpq ``PG*`` variables -- the same environment the
original noCRUD runner's ``backend_env.sh`` exported. ``nocrud_serial_reset`` (a shell command, given
that database's ``DATABASE_URL``/``PG*``) runs before every test that uses the database.

``SerialRuntime`` is the runtime of such a run: the same interface the fixtures use, with the
provisioning steps replaced by "use what is there" (plugin.py picks it once, at configure).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

import psycopg

from .app.process import AppProcess, ExternalApp
from .app.setups import run_setups
from .errors import BuildError, SerialError, first_line
from .pg import admin
from .pg.conninfo import ConnInfo
from .pg.procs import indented
from .pg.server import PostgresServer
from .pg.setup_store import StoredSetup
from .pg.template import Template
from .runtime import Runtime

__all__ = ["ExternalApp", "SerialRuntime", "database_from_env", "run_reset", "server_version"]


@dataclasses.dataclass
class SerialRuntime(Runtime):
    """A run against an app and database somebody else runs: nothing provisioned, nothing started."""

    _setup: StoredSetup | None = None

    @functools.cached_property
    def db(self) -> ConnInfo:
        """The database in use, read from the environment once (a bad PG* value fails as a setup error)."""
        return database_from_env(self.settings.dsn, os.environ)

    def _acquire_postgres(self) -> PostgresServer:
        return PostgresServer(admin=self.db, version=server_version(self.db), embedded=False)

    def _ensure_template(self) -> Template:
        self.postgres()  # provisions nothing: the "template" is the database in use
        return Template(self.db.dbname, key="", reused=True, build_seconds=0.0)

    def template_setup_outputs(self) -> StoredSetup:
        """What the ``@template_setup`` functions returned when they last ran against the app.

        There is no template: the setups run against the running app after every
        ``nocrud_serial_reset`` (so each test starts from fixtures + setups, as from a template), or
        once, before the first test, when there is no reset. Not cached: a reset makes new sessions.
        """
        if self._setup is None:
            self._setup = self._run_template_setups_on_app()
        return self._setup

    def _run_template_setups_on_app(self) -> StoredSetup:
        setups = self.template_setups()
        if not setups:
            return StoredSetup({}, {})
        try:
            return run_setups(setups, str(self.settings.app_url))
        except BuildError as exc:
            raise SerialError(
                f"{exc}\nIn serial mode the @template_setup functions run against NOCRUD_APP_URL after "
                "each nocrud_serial_reset (or once, without one): the reset must leave the database as "
                "the fixtures make it, or a setup that creates a row may find it there already."
            ) from None

    def fresh_database(self) -> ConnInfo:
        """Before a test: the reset command, if any, then the template setups again; the database is
        always the same one."""
        self.postgres()
        if self.settings.serial_reset:
            run_reset(self.settings.serial_reset, self.db, self.settings.rootpath)
            self._setup = None  # the reset wiped what the setups made: they run again on first use
        return self.db

    def reset_database(self) -> ConnInfo:
        """``nocrud_db.reset()`` in serial mode: the reset command again (there is no clone pool)."""
        if not self.settings.serial_reset:
            raise SerialError(
                "nocrud_db.reset() needs a way to reset the database in serial mode: set "
                "nocrud_serial_reset to a command that restores it (it runs before each test, too)."
            )
        return super().reset_database()  # no pool to release; fresh_database runs the reset command

    @property
    def app_per_test(self) -> bool:
        return False  # the app is not ours to start

    def app(self) -> AppProcess | ExternalApp:
        return ExternalApp(str(self.settings.app_url))

    def new_app(self) -> AppProcess:
        raise SerialError("serial mode starts no app: it uses NOCRUD_APP_URL")

    @property
    def started_app_url(self) -> str | None:
        return self.settings.app_url


def database_from_env(dsn: str | None, environ: Mapping[str, str]) -> ConnInfo:
    """NOCRUD_DSN > DATABASE_URL > PG* (libpq defaults for what is missing)."""
    if dsn:
        return ConnInfo.parse(dsn)
    if environ.get("DATABASE_URL"):
        return ConnInfo.parse(environ["DATABASE_URL"])
    user = environ.get("PGUSER", "postgres")
    return ConnInfo(
        host=environ.get("PGHOST", "localhost"),
        port=int(environ.get("PGPORT", "5432")),
        user=user,
        dbname=environ.get("PGDATABASE", user),
        password=environ.get("PGPASSWORD", ""),
    )


def server_version(db: ConnInfo) -> str:
    try:
        with psycopg.connect(db.dsn, connect_timeout=5) as conn:
            return admin.running_version(conn)
    except psycopg.Error as exc:
        reason = first_line(exc)
        raise SerialError(
            f"serial mode cannot connect to {db.describe()} ({db.masked()}): {db.redact(reason)}\n"
            "Set NOCRUD_DSN, DATABASE_URL or PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE to the database "
            "your running app uses."
        ) from None


def run_reset(command: str, db: ConnInfo, cwd: Path) -> None:
    """Run ``nocrud_serial_reset`` with the database's environment; fail loudly with its output."""
    result = subprocess.run(
        command,
        shell=True,
        cwd=cwd,
        env={**os.environ, **db.env()},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
    )
    if result.returncode != 0:
        raise SerialError(
            f"nocrud_serial_reset exited with code {result.returncode}: {command}\n"
            + indented(db.redact(result.stdout + result.stderr), last=20)
        )
