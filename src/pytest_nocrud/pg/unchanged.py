"""Did a test change its database? The server's own evidence, read after the test's sessions ended.

A test that changed nothing (a 403, a read, a 400 that rolled back) can hand its database to the next
test as it is: no clone, no rename, no drop. "Changed nothing" is decided from two readings, both taken
once every session on the database has ended (a backend flushes its activity counters when it exits,
before it leaves the activity list):

*From outside* (the maintenance connection, ``Footprint``):
- the database's row counters (``pg_stat_database``: rows inserted, updated, deleted). They count every
  heap write, system catalogs included, committed or rolled back: DML, ``COPY``, ``TRUNCATE`` (a new
  relfilenode is a ``pg_class`` update), every DDL (``CREATE INDEX``, ``COMMENT``, ``GRANT``), large
  objects (``pg_largeobject``), ``ANALYZE`` (``pg_statistic``);
- when its counters were last reset (a test that calls ``pg_stat_reset()`` to hide a write shows here);
- its row in the shared catalogs: ``pg_database`` itself (owner, connection limit, ``IS_TEMPLATE``,
  ``ALLOW_CONNECTIONS``, ACL ...), ``ALTER DATABASE ... SET`` (``pg_db_role_setting``), ``COMMENT ON
  DATABASE``, security labels and subscriptions -- all outside the database's own counters;
- prepared transactions and replication slots on it.

*From inside* (one connection into the database, opened while the test's teardown runs, ``Inspector``):
- any block of a sequence read (``nextval()``/``setval()`` change a sequence in place, without a row
  counter) and any VACUUM or ANALYZE run (they rewrite ``pg_class`` in place).

If all of that is as it was when the database was handed out, the database is the template's copy
still. Then the inside connection resets the database's activity statistics (a fresh clone has none)
and ends. Anything unreadable (no connection, PostgreSQL before 15, ``track_counts`` off, no right to
reset statistics) means a fresh clone, never a guess. The template's pages are vacuumed and frozen when
it is built, so a read in a test cannot prune or hint a page either (which would move where later rows
land, and with it the order of an unordered SELECT).
"""

from __future__ import annotations

import dataclasses
import threading
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from . import admin
from .conninfo import ConnInfo

MIN_MAJOR = 15  # shared-memory statistics: a backend's counters are flushed when it exits, not sent off

FOOTPRINT_SQL = """
SELECT pg_stat_get_db_tuples_inserted(d.oid), pg_stat_get_db_tuples_updated(d.oid),
       pg_stat_get_db_tuples_deleted(d.oid), pg_stat_get_db_stat_reset_time(d.oid),
       (to_jsonb(d) - 'oid' - 'datname')::text,
       (SELECT array_agg(s.setrole::text || ':' || s.setconfig::text ORDER BY s.setrole)
          FROM pg_db_role_setting s WHERE s.setdatabase = d.oid)::text,
       (SELECT array_agg(c.description ORDER BY c.description)
          FROM pg_shdescription c WHERE c.objoid = d.oid AND c.classoid = 'pg_database'::regclass)::text,
       (SELECT array_agg(l.provider || ':' || l.label ORDER BY l.provider)
          FROM pg_shseclabel l WHERE l.objoid = d.oid AND l.classoid = 'pg_database'::regclass)::text,
       (SELECT count(*) FROM pg_subscription b WHERE b.subdbid = d.oid),
       (SELECT count(*) FROM pg_prepared_xacts p WHERE p.database = d.datname),
       (SELECT count(*) FROM pg_replication_slots r WHERE r.database = d.datname)
  FROM pg_database d WHERE d.datname = {name}
"""

# Sessions on the database, but ours: in the activity list (a backend leaves it after it flushed its
# counters on exit) or, still starting up, holding the database's lock. Read in a statement of its own,
# before the footprint: zero then means every earlier session's counters are in.
OTHERS_SQL = """
WITH target AS (SELECT oid FROM pg_database WHERE datname = {name}),
     spared AS (SELECT a.pid FROM pg_stat_get_activity(NULL) a
                 WHERE {spare} <> '' AND a.application_name = {spare})
SELECT (SELECT count(*) FROM pg_stat_get_activity(NULL) s
         WHERE s.datid = (SELECT oid FROM target) AND s.pid <> pg_backend_pid()
           AND s.pid NOT IN (SELECT pid FROM spared))
     + (SELECT count(*) FROM pg_locks l
         WHERE l.locktype = 'object' AND l.classid = 'pg_database'::regclass
           AND l.objid = (SELECT oid FROM target) AND l.pid <> pg_backend_pid()
           AND l.pid NOT IN (SELECT pid FROM spared))
"""


# Shared catalogs are left out: their counters are the whole server's.
INSIDE_SQL = """
SELECT coalesce(sum(pg_stat_get_blocks_fetched(c.oid)) FILTER (WHERE c.relkind = 'S'), 0),
       coalesce(sum(pg_stat_get_vacuum_count(c.oid) + pg_stat_get_autovacuum_count(c.oid)
                    + pg_stat_get_analyze_count(c.oid) + pg_stat_get_autoanalyze_count(c.oid))
                FILTER (WHERE c.relkind <> 'S'), 0)
  FROM pg_class c
 WHERE c.relkind IN ('S', 'r', 't', 'm', 'p') AND NOT c.relisshared
"""
RESET_SQL = """
SELECT pg_stat_reset();
SELECT pg_stat_get_db_stat_reset_time(oid) FROM pg_database WHERE datname = current_database()
"""


@dataclasses.dataclass(frozen=True)
class Footprint:
    """What the maintenance connection sees of a database; equal footprints = no change seen."""

    rows_written: tuple[int, int, int]  # inserted, updated, deleted (every table, catalogs included)
    stats_reset: datetime | None
    shared: tuple[str, ...]  # its pg_database row, settings, comment, labels, subscriptions
    prepared: int  # prepared transactions on it
    slots: int  # replication slots on it
    others: int = dataclasses.field(default=0, compare=False)  # sessions on it (not a change: ended first)

    def after_reset(self, stats_reset: datetime | None) -> Footprint:
        """The footprint once the inside connection reset the database's statistics."""
        return dataclasses.replace(self, rows_written=(0, 0, 0), stats_reset=stats_reset)

    def change_from(self, before: Footprint) -> str | None:
        """What changed since ``before`` (None: nothing this reading can see)."""
        if self.prepared:
            return "a prepared transaction is open on it"
        if self.slots:
            return "a replication slot uses it"
        if self.rows_written != before.rows_written:
            return "rows were written (data, DDL, large objects or statistics)"
        if self.stats_reset != before.stats_reset:
            return "its statistics were reset"
        if self.shared != before.shared:
            return "its database-level settings changed (ALTER DATABASE, COMMENT ON DATABASE, ...)"
        return None


def read_footprint(
    conn: admin.Conn, dbname: str, *, first: sql.Composable | None = None, spare: str = ""
) -> Footprint | None:
    """The database's footprint now (None if it does not exist under that name); ``first`` (ending
    the sessions on it) runs before, in the same round trip. ``others`` counts the sessions still on
    it, ``spare`` (an application_name) and this one left out."""
    name = sql.Literal(dbname)
    parts = [first] if first is not None else []
    parts += [sql.SQL(OTHERS_SQL).format(name=name, spare=sql.Literal(spare))]
    parts += [sql.SQL("SELECT pg_stat_clear_snapshot()"), sql.SQL(FOOTPRINT_SQL).format(name=name)]
    cursor = conn.execute(sql.SQL(";").join(parts))
    if first is not None:
        cursor.nextset()
    others: Any = cursor.fetchone()
    cursor.nextset()
    cursor.nextset()
    footprint = _footprint(cursor.fetchone())
    if footprint is None:
        return None
    return dataclasses.replace(footprint, others=int(others[0]) if others else 0)


def _footprint(row: Any) -> Footprint | None:
    if row is None:
        return None
    return Footprint(
        rows_written=(int(row[0]), int(row[1]), int(row[2])),
        stats_reset=row[3],
        shared=tuple(str(value) for value in row[4:9]),
        prepared=int(row[9]),
        slots=int(row[10]),
    )


def unsupported_reason(conn: admin.Conn) -> str | None:
    """Why this server cannot prove a database unchanged (None: it can)."""
    if conn.info.server_version < MIN_MAJOR * 10000:
        return f"PostgreSQL {conn.info.server_version // 10000} counts activity asynchronously (15+ needed)"
    row = conn.execute("SELECT current_setting('track_counts')::bool").fetchone()
    if not (row and row[0]):
        return "track_counts is off on the server"
    row = conn.execute("SELECT has_function_privilege(current_user, 'pg_stat_reset()', 'EXECUTE')").fetchone()
    if not (row and row[0]):
        return f"the role {conn.info.user} may not call pg_stat_reset()"
    return None


def inspector_name(stable: str) -> str:
    """The inspector's application_name: the handoff's early ``terminate`` spares it by this name."""
    return f"nocrud inspector {stable}"[:63]


class Inspector:
    """One connection into the test's database, opened in the background while the test's teardown runs
    (a backend takes a few milliseconds to start; the handoff should not wait for it)."""

    def __init__(self, info: ConnInfo, stable: str) -> None:
        self._info = info
        self._name = inspector_name(stable)
        self._conn: admin.Conn | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._open, name="nocrud-inspector", daemon=True)
        self._thread.start()

    def _open(self) -> None:
        try:
            self._conn = psycopg.connect(
                self._info.dsn,
                autocommit=True,
                application_name=self._name,
                connect_timeout=10,
                options="-c stats_fetch_consistency=none",
            )
            # A new backend's first query loads its catalog caches (~5 ms): done here, in the
            # background, the handoff's reading then costs a fraction of a millisecond. Reading the
            # counters changes nothing.
            self._conn.execute(INSIDE_SQL)
        except BaseException as exc:  # noqa: BLE001 - no connection: the handoff clones instead
            self._error = exc

    def connected(self) -> bool:
        """Wait for the connection; False if it could not be opened."""
        self._thread.join()
        return self._conn is not None

    def look(self) -> tuple[str | None, datetime | None]:
        """What the inside counters show changed (None: nothing), and the time of the statistics reset
        done in the same round trip (harmless when something changed: that database is dropped)."""
        assert self._conn is not None
        cursor = self._conn.execute(INSIDE_SQL + ";" + RESET_SQL)
        counters: Any = cursor.fetchone()
        cursor.nextset()
        cursor.nextset()
        reset: Any = cursor.fetchone()
        reset_at = reset[0] if reset else None
        if counters and int(counters[0]):
            return "a sequence was used (nextval/setval)", reset_at
        if counters and int(counters[1]):
            return "VACUUM or ANALYZE ran on it", reset_at
        return None, reset_at

    def close(self) -> None:
        self._thread.join()
        if self._conn is not None:
            self._conn.close()
            self._conn = None
