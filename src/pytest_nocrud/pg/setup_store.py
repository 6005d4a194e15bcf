"""Where ``@template_setup`` results live: two tables inside the template, so every clone has them.

``nocrud.setup_outputs(name, outputs)`` holds each setup function's JSON return value;
``nocrud.baked_logins(identity, session)`` holds the sessions ``bake_login`` recorded. A worker reads
both once from its own database (a clone of the template). A template built without setups has neither
table, which reads as empty.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from .conninfo import ConnInfo

SCHEMA = "nocrud"
OUTPUTS = "setup_outputs"
BAKED = "baked_logins"


@dataclasses.dataclass(frozen=True)
class StoredSetup:
    outputs: Mapping[str, Any]  # setup function name -> its JSON outputs
    baked: Mapping[str, Mapping[str, Any]]  # login identity -> baked session record


def _table(name: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(SCHEMA), sql.Identifier(name))


def save(db: ConnInfo, setup: StoredSetup) -> None:
    """Write the results into the database being built (one transaction)."""
    with psycopg.connect(db.dsn, application_name="pytest-nocrud setup", connect_timeout=10) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA)))
        outputs = sql.SQL("CREATE TABLE {} (name text PRIMARY KEY, outputs jsonb NOT NULL)")
        conn.execute(outputs.format(_table(OUTPUTS)))
        sessions = sql.SQL("CREATE TABLE {} (identity text PRIMARY KEY, session jsonb NOT NULL)")
        conn.execute(sessions.format(_table(BAKED)))
        with conn.cursor() as cur:
            cur.executemany(
                sql.SQL("INSERT INTO {} (name, outputs) VALUES (%s, %s)").format(_table(OUTPUTS)),
                [(name, Jsonb(value)) for name, value in setup.outputs.items()],
            )
            cur.executemany(
                sql.SQL("INSERT INTO {} (identity, session) VALUES (%s, %s)").format(_table(BAKED)),
                [(key, Jsonb(dict(value))) for key, value in setup.baked.items()],
            )


def load(db: ConnInfo) -> StoredSetup:
    """Read the results from a clone of the template; empty when the template had no setups."""
    with psycopg.connect(
        db.dsn, autocommit=True, application_name="pytest-nocrud setup", connect_timeout=10
    ) as conn:
        row = conn.execute("SELECT to_regclass(%s)", [f"{SCHEMA}.{OUTPUTS}"]).fetchone()
        if row is None or row[0] is None:
            return StoredSetup({}, {})
        outputs = conn.execute(sql.SQL("SELECT name, outputs FROM {}").format(_table(OUTPUTS))).fetchall()
        baked = conn.execute(sql.SQL("SELECT identity, session FROM {}").format(_table(BAKED))).fetchall()
        return StoredSetup(dict(outputs), dict(baked))
