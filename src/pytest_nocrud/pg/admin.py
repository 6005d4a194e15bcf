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

Conn = psycopg.Connection[Any]
MAX_NAME_BYTES = 63  # NAMEDATALEN - 1: PostgreSQL silently truncates longer names


def connect(info: ConnInfo, *, purpose: str = "admin") -> Conn:
    """Autocommit connection to the maintenance database, tagged so it is easy to spot in pg_stat_activity."""
    return psycopg.connect(
        info.dsn, autocommit=True, application_name=f"pytest-nocrud {purpose}", connect_timeout=10
    )


def check_name(name: str) -> str:
    """Refuse names PostgreSQL would truncate: two long names could silently become one."""
    if not name or len(name.encode()) > MAX_NAME_BYTES:
        raise ValueError(f"database name {name!r} must be 1..{MAX_NAME_BYTES} bytes")
    return name


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
    """Drop even if someone is still connected (PostgreSQL 13+ FORCE); templates must be unmarked first."""
    if maybe_template and is_template(conn, name):
        conn.execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE false").format(_ident(name)))
    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(_ident(name)))


def is_template(conn: Conn, name: str) -> bool:
    row = conn.execute("SELECT datistemplate FROM pg_database WHERE datname = %s", [name]).fetchone()
    return bool(row and row[0])


def rename(conn: Conn, old: str, new: str) -> None:
    conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(_ident(old), _ident(new)))


def terminate(conn: Conn, name: str, *, wait_ms: int = 0) -> int:
    """End every other session on ``name``; with ``wait_ms`` wait until they are really gone."""
    if wait_ms:
        query = (
            "SELECT count(pg_terminate_backend(pid, %s)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()"
        )
        row = conn.execute(query, [wait_ms, name]).fetchone()
    else:
        query = (
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()"
        )
        row = conn.execute(query, [name]).fetchone()
    return int(row[0]) if row else 0


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


def names_like(conn: Conn, prefix: str) -> list[str]:
    """Databases whose name starts with ``prefix`` (LIKE wildcards in the prefix are escaped)."""
    pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s ORDER BY datname", [pattern])
    return [row[0] for row in rows.fetchall()]


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
