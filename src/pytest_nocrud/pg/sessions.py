"""Watch which databases a client connects to, by its application_name, while something happens.

An app whose settings ignore DATABASE_URL/PG* silently runs against some other database -- the
developer's own, or the server's ``postgres`` -- and the tests then write there. The plugin starts each
app with a unique ``PGAPPNAME``; watching ``pg_stat_activity`` for that name during the app's start-up
(readiness probes included) shows where it really connects, even when it closes each connection at the
end of a request as Django does. Polling is cheap (one catalog read per couple of milliseconds) and
lasts only as long as the ``with`` block.
"""

from __future__ import annotations

import threading
from types import TracebackType

import psycopg

from . import admin
from .conninfo import ConnInfo

POLL_SECONDS = 0.002


class SessionWatch:
    """``with SessionWatch(server, name) as watch: ...`` then ``watch.databases``."""

    def __init__(self, server: ConnInfo, application_name: str) -> None:
        self.server = server
        self.application_name = application_name
        self.databases: set[str] = set()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="nocrud-session-watch", daemon=True)
        self._conn = admin.connect(server, purpose="session watch")

    def __enter__(self) -> SessionWatch:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._done.set()
        self._thread.join(timeout=5)
        self._look()  # a last look: a pooled app keeps its session open
        self._conn.close()

    def _poll(self) -> None:
        try:
            while not self._done.wait(POLL_SECONDS):
                self._look()
        except psycopg.Error:
            return  # the server went away: whoever needs it next reports that

    def _look(self) -> None:
        rows = self._conn.execute(
            "SELECT DISTINCT datname FROM pg_stat_get_activity(NULL) s JOIN pg_database d ON d.oid = s.datid "
            "WHERE s.application_name = %s",
            [self.application_name],
        ).fetchall()
        self.databases.update(row[0] for row in rows)


def sessions_on(conn: admin.Conn, dbname: str) -> int:
    """Sessions ever established to ``dbname`` (``pg_stat_database.sessions``, PostgreSQL 14+).

    A backend adds its session to the count at its first transaction's end or at its exit, so even a
    per-request connection that lasted a millisecond is counted once it is over. Before 14 there is no
    such counter: transactions committed or rolled back there stand in for it.
    """
    column = "sessions" if conn.info.server_version >= 140000 else "xact_commit + xact_rollback"
    conn.execute("SELECT pg_stat_clear_snapshot()")
    row = conn.execute(
        f"SELECT coalesce({column}, 0) FROM pg_stat_database WHERE datname = %s",  # noqa: S608 - constant
        [dbname],
    ).fetchone()
    return int(row[0]) if row else 0


def open_sessions_on(conn: admin.Conn, dbname: str) -> int:
    """Sessions connected to ``dbname`` right now (other than ``conn``)."""
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_get_activity(NULL) s JOIN pg_database d ON d.oid = s.datid "
        "WHERE d.datname = %s AND s.pid <> pg_backend_pid()",
        [dbname],
    ).fetchone()
    return int(row[0]) if row else 0
