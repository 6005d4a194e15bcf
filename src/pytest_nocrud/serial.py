"""Serial mode (``--nocrud-serial``): run flows one at a time against an app and database you run.

Nothing is provisioned or started: the app is ``NOCRUD_APP_URL`` and the database is taken from
``NOCRUD_DSN``, else ``DATABASE_URL``, else the libpq ``PG*`` variables -- the same environment the
original noCRUD runner's ``backend_env.sh`` exported. ``nocrud_serial_reset`` (a shell command, given
that database's ``DATABASE_URL``/``PG*``) runs before every test that uses the database.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

from .errors import SerialError
from .pg.conninfo import ConnInfo


@dataclasses.dataclass(frozen=True)
class ExternalApp:
    """An app somebody else runs: what ``nocrud_app`` returns in serial mode (no log file)."""

    url: str
    log_path: Path | None = None

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (443 if parts.scheme == "https" else 80)


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
            return str(conn.info.parameter_status("server_version") or "unknown").split()[0]
    except psycopg.Error as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
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
        output = db.redact(result.stdout + result.stderr).strip().splitlines()[-20:]
        raise SerialError(
            f"nocrud_serial_reset exited with code {result.returncode}: {command}\n"
            + "\n".join("    " + line for line in output)
        )
