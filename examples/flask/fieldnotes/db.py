"""The database: one psycopg connection per request, from ``DATABASE_URL``.

A connection per request is the simplest thing that survives pytest-nocrud swapping the database under
the running app before every test: nothing is kept between requests, so nothing goes stale. (A
``psycopg_pool.ConnectionPool`` would need ``check=ConnectionPool.check_connection`` for the same
reason SQLAlchemy needs ``pool_pre_ping``.) The request's work is one transaction: committed when the
view returned, rolled back when it raised or a statement failed.
"""

from __future__ import annotations

import os
from typing import Any

import psycopg
from flask import Flask, g
from psycopg.pq import TransactionStatus
from psycopg.rows import DictRow, dict_row


def database_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if not url:
        raise RuntimeError("fieldnotes: set DATABASE_URL (postgresql://user:pass@host:port/dbname)")
    return url


def conn() -> psycopg.Connection[DictRow]:
    """This request's connection, opened on first use."""
    if "db" not in g:
        g.db = psycopg.connect(database_url(), row_factory=dict_row)
    connection: psycopg.Connection[DictRow] = g.db
    return connection


def query(sql: str, *params: Any) -> list[DictRow]:
    return conn().execute(sql, params).fetchall()


def one(sql: str, *params: Any) -> DictRow | None:
    return conn().execute(sql, params).fetchone()


def _close(exc: BaseException | None) -> None:
    connection: psycopg.Connection[DictRow] | None = g.pop("db", None)
    if connection is None:
        return
    try:
        if exc is None and connection.info.transaction_status == TransactionStatus.INTRANS:
            connection.commit()
        else:
            connection.rollback()
    finally:
        connection.close()


def init_app(app: Flask) -> None:
    app.teardown_appcontext(_close)
