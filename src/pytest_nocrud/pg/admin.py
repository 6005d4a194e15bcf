"""Admin SQL on the maintenance database: create, clone, rename, drop, terminate, lock.

Every database name is passed through ``psycopg.sql.Identifier`` -- names come from users' projects and
test ids -- and every statement here runs on an autocommit connection because CREATE/DROP DATABASE
cannot run inside a transaction block.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql

from .conninfo import ConnInfo
from .names import check_name

Conn = psycopg.Connection[Any]


def connect(info: ConnInfo, *, purpose: str = "admin") -> Conn:
    """Autocommit connection to the maintenance database, tagged so it is easy to spot in pg_stat_activity."""
    return psycopg.connect(
        info.dsn, autocommit=True, application_name=f"pytest-nocrud {purpose}", connect_timeout=10
    )


def _ident(name: str) -> sql.Identifier:
    return sql.Identifier(check_name(name))


def exists(conn: Conn, name: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None


def is_finalized(conn: Conn, name: str) -> bool:
    """A template is usable only once its build finished: IS_TEMPLATE and no connections allowed."""
    row = conn.execute(
        "SELECT datistemplate AND NOT datallowconn FROM pg_database WHERE datname = %s", [name]
    ).fetchone()
    return bool(row and row[0])


def create(conn: Conn, name: str, *, template: str | None = None, strategy: str | None = None) -> None:
    query = sql.SQL("CREATE DATABASE {}").format(_ident(name))
    if template:
        query += sql.SQL(" TEMPLATE {}").format(_ident(template))
    if strategy:
        query += sql.SQL(" STRATEGY {}").format(sql.SQL(strategy.upper()))
    conn.execute(query)


def drop(conn: Conn, name: str, *, maybe_template: bool = False) -> None:
    """Drop even if someone is still connected (PostgreSQL 13+ FORCE).

    A template must be unmarked first. Our layers are templates (``maybe_template``), and so is a test's
    database after the test ran ``ALTER DATABASE ... IS_TEMPLATE true`` on it: one statement in a test
    must not wedge every later drop, so a refused drop unmarks the database and tries once more.
    """
    if maybe_template and is_template(conn, name):
        conn.execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE false").format(_ident(name)))
    statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(_ident(name))
    try:
        conn.execute(statement)
    except psycopg.errors.WrongObjectType:  # "cannot drop a template database"
        conn.execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE false").format(_ident(name)))
        conn.execute(statement)


def oid_of(conn: Conn, name: str) -> int | None:
    row = conn.execute("SELECT oid FROM pg_database WHERE datname = %s", [name]).fetchone()
    return int(row[0]) if row else None


def name_of(conn: Conn, oid: int) -> str | None:
    """The current name of database ``oid`` (a test may have renamed it), None if it is gone."""
    row = conn.execute("SELECT datname FROM pg_database WHERE oid = %s", [oid]).fetchone()
    return str(row[0]) if row else None


def is_template(conn: Conn, name: str) -> bool:
    row = conn.execute("SELECT datistemplate FROM pg_database WHERE datname = %s", [name]).fetchone()
    return bool(row and row[0])


def rename(conn: Conn, old: str, new: str) -> None:
    conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(_ident(old), _ident(new)))


def allow_connections(conn: Conn, name: str, allow: bool = True) -> None:
    conn.execute(
        sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}").format(_ident(name), sql.Literal(allow))
    )


def end_sessions_statement(
    dbname: str, *, grace_s: float, spare: str = "", settle_s: float = 0.1
) -> sql.Composed:
    """End every session on ``dbname`` and wait, on the server, until they are really gone.

    ``ALTER DATABASE ... RENAME`` refuses to run while another session is on the database and waits
    for it by sleeping in 100 ms steps; ``pg_terminate_backend()`` only signals, so a rename right
    after it sleeps 100 ms whenever a session was open (p50 101 ms measured with one open). Polling
    the backend list until it is empty costs ~0.2 ms per round instead. Details that make this work:
    ``pg_stat_clear_snapshot()`` each round (the activity snapshot is frozen per transaction);
    ``pg_stat_get_activity()``, not the pg_stat_activity view (whose joins cost ~0.5 ms more once
    our renames invalidated its caches); sessions that arrive meanwhile (a pooled app reconnecting)
    are terminated too, and so are backends still starting up on it (they hold a lock on the
    database before the activity list shows them; the rename would count them and wait 5 s if they
    stay). ``pg_terminate_backend(pid, timeout)`` is no help: it checks whether the process is gone
    and then sleeps in 100 ms steps as well. A session that outlives
    ``grace_s`` raises ``object_in_use`` naming it (pid, application_name, client address).
    Sessions whose application_name is ``spare`` stay (the handoff's look inside the database).

    For the first ``settle_s`` only idle sessions are ended: a session inside a statement or a
    transaction is left to finish it. An app answers before its request's clean-up is done (FastAPI
    closes the request's database session after sending the response); ended in the middle of its
    ROLLBACK, the app fails that clean-up and drops the client's keep-alive connection, and the next
    request of a test that goes on (``nocrud_db.reset()``) gets "connection reset by peer".
    """
    body = sql.SQL(
        """
DECLARE
  deadline timestamptz := clock_timestamp() + make_interval(secs => {grace});
  settled timestamptz := clock_timestamp() + make_interval(secs => {settle});
  target oid := (SELECT oid FROM pg_database WHERE datname = {name});
  left_over record;
BEGIN
  LOOP
    PERFORM pg_stat_clear_snapshot();
    SELECT s.pid, s.application_name, s.client_addr,
           count(CASE WHEN s.state IS NULL OR s.state IN ('idle', 'disabled') OR clock_timestamp() > settled
                      THEN pg_terminate_backend(s.pid) END) OVER () AS ended,
           count(*) OVER () AS n
      INTO left_over
      FROM pg_stat_get_activity(NULL) AS s
     WHERE s.datid = target AND s.pid <> pg_backend_pid()
       AND ({spare} = '' OR s.application_name IS DISTINCT FROM {spare})
     LIMIT 1;
    IF NOT FOUND THEN  -- a backend still starting up is listed nowhere yet, but holds the database's lock
      SELECT l.pid, NULL::text AS application_name, NULL::inet AS client_addr,
             count(pg_terminate_backend(l.pid)) OVER () AS n
        INTO left_over
        FROM pg_locks AS l
       WHERE l.locktype = 'object' AND l.classid = 'pg_database'::regclass AND l.objid = target
         AND l.pid <> pg_backend_pid()
         AND l.pid NOT IN (SELECT a.pid FROM pg_stat_get_activity(NULL) AS a
                            WHERE {spare} <> '' AND a.application_name = {spare})
       LIMIT 1;
      EXIT WHEN NOT FOUND;
    END IF;
    IF clock_timestamp() > deadline THEN
      RAISE EXCEPTION USING ERRCODE = 'object_in_use',
        MESSAGE = format('database %I still has sessions %s s after ending them (%s of them; e.g. pid %s, '
                         'application_name %L, client %s)', {name}, {grace}, left_over.n, left_over.pid,
                         left_over.application_name, coalesce(left_over.client_addr::text, 'local socket'));
    END IF;
    PERFORM pg_sleep(0.0002);
  END LOOP;
END"""
    ).format(
        name=sql.Literal(dbname),
        grace=sql.Literal(grace_s),
        settle=sql.Literal(min(settle_s, grace_s)),
        spare=sql.Literal(spare),
    )
    return sql.SQL("DO $nocrud$") + body + sql.SQL("$nocrud$")


def terminate(conn: Conn, name: str, *, wait_ms: int = 0, spare: str = "") -> None:
    """End every other session on ``name``; with ``wait_ms`` wait until they are really gone. Without
    waiting, only idle sessions are ended (one inside a statement or transaction is left to finish: see
    ``end_sessions_statement``), and those whose application_name is ``spare`` are left alone."""
    if wait_ms:
        conn.execute(end_sessions_statement(name, grace_s=wait_ms / 1000))
    else:
        conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_get_activity(NULL) "
            "WHERE pid <> pg_backend_pid() AND datid = (SELECT oid FROM pg_database WHERE datname = %s) "
            "AND application_name IS DISTINCT FROM %s AND state = 'idle'",  # busy ones: the handoff's
            [name, spare],
        )


def roll_back_prepared(server: ConnInfo, name: str) -> int:
    """Roll back the prepared transactions a test left on ``name`` (they block its rename and its
    drop, FORCE or not); how many. ``ROLLBACK PREPARED`` only works from inside that database."""
    with psycopg.connect(server.with_db(name).dsn, autocommit=True, connect_timeout=10) as conn:
        gids = [row[0] for row in conn.execute(
            "SELECT gid FROM pg_prepared_xacts WHERE database = current_database()"
        ).fetchall()]  # fmt: skip
        for gid in gids:
            conn.execute(sql.SQL("ROLLBACK PREPARED {}").format(sql.Literal(gid)))
    return len(gids)


def freeze(info: ConnInfo) -> None:
    """``VACUUM (FREEZE)`` the whole database: no dead row left for a later read to prune, every row's
    hint bits set. A clone of it then stays byte for byte the same under reads, which is what lets a
    read-only test hand its database on (``unchanged``)."""
    with psycopg.connect(info.dsn, autocommit=True, connect_timeout=10) as conn:
        conn.execute("VACUUM (FREEZE)")


def set_note(conn: Conn, name: str, note: dict[str, object]) -> None:
    """Store a JSON note in the database's COMMENT (a shared catalog: no table of ours is written)."""
    conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(_ident(name), sql.Literal(json.dumps(note))))


def finalize(conn: Conn, name: str, note: dict[str, object]) -> None:
    """Mark a finished build usable as a template; nobody may connect to it from now on."""
    set_note(conn, name, note)
    conn.execute(
        sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false").format(_ident(name))
    )


def note_of(conn: Conn, name: str) -> dict[str, Any]:
    """The JSON note ``finalize`` left on a database ({} if none or not ours)."""
    row = conn.execute(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", [name]
    ).fetchone()
    try:
        value = json.loads(row[0]) if row and row[0] else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "nocrud")  # nocrud: our own bookkeeping


def user_object_count(info: ConnInfo) -> int:
    """Tables, views, sequences, functions and types a build created in ``info``'s database, outside
    the system schemas and our own ``nocrud`` schema: 0 means the builder worked somewhere else."""
    with psycopg.connect(info.dsn, autocommit=True, connect_timeout=10) as conn:
        row = conn.execute(
            """
            WITH user_ns AS (
                SELECT oid FROM pg_namespace
                WHERE nspname <> ALL(%(system)s) AND nspname NOT LIKE 'pg\\_%%'
            )
            SELECT (SELECT count(*) FROM pg_class WHERE relnamespace IN (SELECT oid FROM user_ns))
                 + (SELECT count(*) FROM pg_proc WHERE pronamespace IN (SELECT oid FROM user_ns))
                 + (SELECT count(*) FROM pg_type WHERE typnamespace IN (SELECT oid FROM user_ns)
                                                   AND typtype IN ('e', 'd', 'c') AND typrelid = 0)
            """,
            {"system": list(SYSTEM_SCHEMAS)},
        ).fetchone()
    return int(row[0]) if row else 0


def names_like(conn: Conn, prefix: str) -> list[str]:
    """Databases whose name starts with ``prefix`` (LIKE wildcards in the prefix are escaped)."""
    pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s ORDER BY datname", [pattern])
    return [row[0] for row in rows.fetchall()]


def running_version(conn: Conn) -> str:
    """The server's version as ``16.4`` (a distribution's suffix, ``16.4 (Debian ...)``, dropped)."""
    return str(conn.info.parameter_status("server_version") or "unknown").split()[0]


def fsync_enabled(conn: Conn) -> bool:
    row = conn.execute("SHOW fsync").fetchone()
    return bool(row and row[0] == "on")


def lock_id(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for a name (same on every machine)."""
    return int.from_bytes(hashlib.sha256(b"pytest-nocrud:" + name.encode()).digest()[:8], "big", signed=True)


@contextmanager
def advisory_lock(conn: Conn, name: str) -> Iterator[None]:
    """Session-level advisory lock: serialises work on ``name`` across machines sharing a server."""
    key = lock_id(name)
    conn.execute("SELECT pg_advisory_lock(%s)", [key])
    try:
        yield
    finally:
        if not conn.closed:
            conn.execute("SELECT pg_advisory_unlock(%s)", [key])


def try_advisory_lock(conn: Conn, name: str) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", [lock_id(name)]).fetchone()
    return bool(row and row[0])


def advisory_unlock(conn: Conn, name: str) -> None:
    conn.execute("SELECT pg_advisory_unlock(%s)", [lock_id(name)])
