"""Positive proof that the app under test uses the test database, not the developer's own.

An app whose settings read their own variables (``DB_HOST``, ``DB_NAME``... defaulting to a developer
database, even on another server) serves every request from there and the flows write there. Two
checks stop that:

* **Django** (a ``manage.py``, or ``DJANGO_SETTINGS_MODULE``): before any test, whatever the app
  command is, ``django_databases.py`` prints where each ``DATABASES`` alias would really connect in the
  app's own environment; anything but this worker's test database stops the run.
* **Every app**: until it is confirmed, each test whose requests the app answered with a successful write
  (a 2xx to POST/PUT/PATCH/DELETE) is followed by a look at the server's own evidence: a new session on
  the worker's database (``pg_stat_database.sessions``, which counts even a per-request connection that
  lasted a millisecond) or one still open there, beyond the connections the test itself opened with
  ``nocrud_db.connect()``. None means the app wrote somewhere else: the run stops with one error.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..errors import AppStartError, WrongDatabaseError
from ..pg import admin, sessions
from ..pg.conninfo import ConnInfo

DJANGO_PROBE = Path(__file__).with_name("django_databases.py")
PROBE_TIMEOUT = 120.0
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: A backend's exit (and the flush of its statistics) may trail the response it sent by a moment.
EVIDENCE_SETTLE_S = 1.0


def mapping_lines(prefix: str = "DB_") -> str:
    """The ``nocrud_app_env`` lines that point an app's own variables at the test database."""
    names = {
        "HOST": "{host}", "PORT": "{port}", "NAME": "{dbname}", "USER": "{user}", "PASSWORD": "{password}"
    }  # fmt: skip
    return "  nocrud_app_env =\n" + "\n".join(f"      {prefix}{k}={v}" for k, v in names.items())


ADVICE = (
    "Make the app's settings read DATABASE_URL (or PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE), or map its "
    "own variables in nocrud_app_env -- host, port, name and user, not only the name -- e.g.\n"
    + mapping_lines()
)


# -- Django: the effective DATABASES, before any test -----------------------------------------------


class DjangoProbe:
    """``manage.py shell -c`` in the app's environment, started beside the app (it takes Django's
    import time, which then overlaps the app's own start-up)."""

    def __init__(self, project_dir: Path, env: Mapping[str, str]) -> None:
        self.project_dir = project_dir
        self._proc = subprocess.Popen(
            [sys.executable, str(DJANGO_PROBE)],
            cwd=project_dir,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.communicate()

    def check(self, expected: ConnInfo) -> None:
        """Raise ``WrongDatabaseError`` unless every PostgreSQL alias points at ``expected``."""
        try:
            out, err = self._proc.communicate(timeout=PROBE_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AppStartError(
                f"reading the Django settings in {self.project_dir} took over {PROBE_TIMEOUT:.0f} s "
                "(`manage.py shell -c` hung)"
            ) from None
        line = next((x for x in out.splitlines() if x.startswith("NOCRUD-DATABASES ")), None)
        if line is None:
            tail = "\n".join((err or out).strip().splitlines()[-8:])
            raise AppStartError(
                f"could not read the Django settings of {self.project_dir} in the app's environment "
                f"(`{shlex.join([Path(sys.executable).name, 'manage.py', 'shell', '-c', '...'])}` exited "
                f"{self._proc.returncode}), so pytest-nocrud cannot check which database the app uses:\n"
                f"{tail}"
            )
        check_django_databases(json.loads(line.split(" ", 1)[1]), expected, self.project_dir)


def check_django_databases(aliases: Sequence[Mapping[str, str]], expected: ConnInfo, where: Path) -> None:
    """The verdict on what ``django_databases.py`` printed (one error naming every alias that is off)."""
    wrong = [alias for alias in aliases if not _points_at(alias, expected)]
    if not wrong:
        return
    seen = "\n".join(f"  DATABASES[{a['alias']!r}]: {_describe(a)}" for a in wrong)
    raise WrongDatabaseError(
        f"the Django settings of {where} point the app at another database than this worker's test "
        f"database ({_describe_conninfo(expected)}); the tests would read and write there:\n{seen}\n"
        f"{ADVICE}\nNo test ran."
    )


def _points_at(alias: Mapping[str, str], expected: ConnInfo) -> bool:
    if "postgresql" not in alias.get("engine", "") and "postgis" not in alias.get("engine", ""):
        return alias.get("alias") != "default"  # another kind of store beside PostgreSQL is not ours to judge
    if alias.get("service"):
        return False  # a pg_service.conf entry: the connection is not ours to read
    return (
        alias.get("dbname") == expected.dbname
        and _same_host(alias.get("host", ""), expected.host)
        and str(alias.get("port", "")) == str(expected.port)
    )


_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


def _same_host(host: str, expected: str) -> bool:
    if host == expected or (host in _LOOPBACK and expected in _LOOPBACK):
        return True
    both_sockets = host.startswith("/") and expected.startswith("/")
    return both_sockets and Path(host).resolve() == Path(expected).resolve()


def _describe(alias: Mapping[str, str]) -> str:
    if "host" not in alias:
        return f"{alias.get('engine')} database {alias.get('dbname')!r}"
    if alias.get("service"):
        return f"service {alias['service']!r}"
    host = alias["host"] or "the default socket"
    return f"database {alias['dbname']!r} on {host}:{alias['port']} as {alias['user']!r}"


def _describe_conninfo(info: ConnInfo) -> str:
    return f"database {info.dbname!r} on {info.host}:{info.port} as {info.user!r}"


# -- every app: the server's evidence after a test -----------------------------------------------


@dataclasses.dataclass
class Baseline:
    """The worker's database before a test: its session count."""

    dbname: str
    sessions: int
    opened: int = 0  # connections the test had made through nocrud_db.connect() by then


@dataclasses.dataclass
class Evidence:
    """The check for one worker's app: done once a test showed the app on its database."""

    server: ConnInfo
    confirmed: bool = False
    _conn: admin.Conn | None = dataclasses.field(default=None, repr=False)

    @property
    def conn(self) -> admin.Conn:
        if self._conn is None or self._conn.closed:
            self._conn = admin.connect(self.server, purpose="app database check")
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def baseline(self, dbname: str) -> Baseline | None:
        """Before a test (None once confirmed: then the check costs nothing)."""
        if self.confirmed:
            return None
        return Baseline(dbname, sessions.sessions_on(self.conn, dbname))

    def judge(
        self, before: Baseline, writes: Sequence[str], own_sessions: int, *, requests: int = 0
    ) -> None:
        """After a test whose app answered ``writes`` (e.g. ``POST /x -> 201``) successfully. A test
        that only read (``requests`` without writes) can confirm the app on its database too -- one
        reading, never an error: the check is then done, and costs nothing more."""
        if self.confirmed or not (writes or requests):
            return
        deadline = time.monotonic() + EVIDENCE_SETTLE_S
        while True:
            now = sessions.sessions_on(self.conn, before.dbname)
            if now - before.sessions > own_sessions or sessions.open_sessions_on(self.conn, before.dbname):
                self.confirmed = True
                self.close()
                return
            if not writes or time.monotonic() > deadline:
                break
            time.sleep(0.02)  # bounded: only on the way to an error
        if not writes:
            return
        raise WrongDatabaseError(
            f"the app answered {len(writes)} write request(s) of this test successfully (e.g. {writes[0]}) "
            f"but never connected to this worker's test database {before.dbname!r}: it writes to some "
            "other database, probably its settings' default. The run stops here, before more tests "
            f"write there.\n{ADVICE}\n(An app that keeps no state in PostgreSQL can turn this check off: "
            "nocrud_check_app_database = false.)"
        )


def successful_writes(entries: Sequence[object]) -> list[str]:
    """``METHOD path -> status`` of the 2xx answers to writing methods among recorded requests."""
    out = []
    for entry in entries:
        method, status = getattr(entry, "method", ""), getattr(entry, "status", None)
        if method.upper() in WRITE_METHODS and status is not None and 200 <= status < 300:
            out.append(f"{method.upper()} {getattr(entry, 'path', '')} -> {status}")
    return out
