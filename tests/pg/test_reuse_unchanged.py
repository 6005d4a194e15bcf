"""A test that changed nothing hands its database on; every kind of change gets the next test a clone.

Each case makes one change in "a test" (between two handoffs, the way a test and the app would), then
the next handoff runs and the database the next test gets is compared with a fresh clone of the template
-- by ``pg_dump`` (schema, data, sequences, large objects, grants, comments, the database's own
settings) plus what a dump leaves out (the database's row in ``pg_database``, prepared transactions) --
not against a list of expectations. Every case runs twice: on a fresh clone, and on a database that was
reused once already (its statistics were reset: the change must show against the new reading).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from pytest_nocrud.pg import admin
from pytest_nocrud.pg.binaries import find_bindir
from pytest_nocrud.pg.conninfo import ConnInfo
from pytest_nocrud.pg.pool import ClonePool, pool_prefix
from pytest_nocrud.pg.procs import ProcessId
from pytest_nocrud.pg.server import EmbeddedCluster

Conn = psycopg.Connection[tuple[object, ...]]


@pytest.fixture(scope="module")
def server(warm_data_dir: Path) -> Iterator[ConnInfo]:
    cluster = EmbeddedCluster(warm_data_dir)
    me = ProcessId.of(os.getpid())
    info = cluster.acquire(me).admin
    try:
        yield info
    finally:
        cluster.release(me)


@pytest.fixture(scope="module")
def template(server: ConnInfo) -> Iterator[str]:
    """A finalized, frozen template with rows, an index, a sequence used by a default, a free sequence,
    a large object and a view: something of each kind a test could touch."""
    name = f"reusetest_tpl_{uuid.uuid4().hex[:8]}"
    with admin.connect(server) as conn:
        admin.create(conn, name)
        with psycopg.connect(server.with_db(name).dsn, autocommit=True) as db:
            db.execute(
                "CREATE TABLE item (id serial PRIMARY KEY, name text NOT NULL);"
                "INSERT INTO item (name) SELECT 'seed ' || i FROM generate_series(1, 50) i;"
                "DELETE FROM item WHERE id % 7 = 0;"  # dead rows: the freeze must leave none to prune
                "CREATE SEQUENCE counter;"
                "CREATE VIEW item_names AS SELECT name FROM item;"
                "SELECT lo_from_bytea(4242, 'seed blob');"
            )
        admin.freeze(server.with_db(name))
        admin.finalize(conn, name, {"test": True})
    yield name
    with admin.connect(server) as conn:
        admin.drop(conn, name, maybe_template=True)


@pytest.fixture
def pool(server: ConnInfo, template: str) -> Iterator[ClonePool]:
    pool = ClonePool(
        server, template, prefix=pool_prefix(uuid.uuid4().hex, "gw0"), size=2, strategy="file_copy"
    )
    try:
        yield pool
    finally:
        pool.close()


def state_of(server: ConnInfo, dbname: str) -> str:
    """Everything a test could observe of a database, as text with the database's name taken out."""
    dump = subprocess.run(
        [str(find_bindir() / "pg_dump"), "--create", "--no-sync", "-d", server.with_db(dbname).dsn],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    lines = [line for line in dump.splitlines() if not line.startswith(("--", "\\restrict", "\\unrestrict"))]
    with admin.connect(server) as conn:
        row = conn.execute(
            "SELECT (to_jsonb(d) - 'oid' - 'datname' - 'datfrozenxid' - 'datminmxid')::text,"
            " (SELECT count(*) FROM pg_prepared_xacts p WHERE p.database = d.datname)"
            " FROM pg_database d WHERE datname = %s",
            [dbname],
        ).fetchone()
    with psycopg.connect(server.with_db(dbname).dsn, autocommit=True) as db:
        counter = db.execute("SELECT last_value, is_called FROM counter").fetchone()
        stats = db.execute(
            "SELECT count(*) FROM pg_statistic s JOIN pg_class c ON c.oid = s.starelid "
            "WHERE NOT c.relisshared"
        ).fetchone()
    return "\n".join(
        [*lines, f"database row: {row}", f"counter: {counter}", f"statistics rows: {stats}"]
    ).replace(dbname, "<db>")


@pytest.fixture
def pristine(server: ConnInfo, template: str) -> Iterator[str]:
    """The template's state, read from a fresh clone of it (a template takes no connections)."""
    name = f"reusetest_ref_{uuid.uuid4().hex[:8]}"
    with admin.connect(server) as conn:
        admin.create(conn, name, template=template)
    try:
        yield state_of(server, name)
    finally:
        with admin.connect(server) as conn:
            admin.drop(conn, name)


def run_sql(*statements: str) -> Callable[[ConnInfo], None]:
    def change(info: ConnInfo) -> None:
        with psycopg.connect(info.dsn, autocommit=True) as db:
            for statement in statements:
                db.execute(statement.replace("<db>", info.dbname))

    return change


def copy_rows(info: ConnInfo) -> None:
    with psycopg.connect(info.dsn, autocommit=True) as db:
        with db.cursor().copy("COPY item (name) FROM STDIN") as copy:
            copy.write_row(["copied"])


def rolled_back_insert(info: ConnInfo) -> None:
    with psycopg.connect(info.dsn) as db:
        db.execute("INSERT INTO item (name) VALUES ('gone')")
        db.rollback()


def prepared_transaction(info: ConnInfo) -> None:
    with psycopg.connect(info.dsn, autocommit=True) as db:
        db.execute("BEGIN")
        db.execute("INSERT INTO item (name) VALUES ('prepared')")
        db.execute("PREPARE TRANSACTION 'nocrud-test-prepared'")


WRITER = """
import sys, time, psycopg
conn = psycopg.connect(sys.argv[1], autocommit=True)
conn.execute("INSERT INTO item (name) VALUES ('bg')")
if sys.argv[2:] == ["stay"]:
    print("ok", flush=True)
    time.sleep(60)
"""


def spawned_process_writes(info: ConnInfo) -> None:
    """A process the app spawned writes and exits; another writes and stays connected (a worker)."""
    subprocess.run([sys.executable, "-c", WRITER, info.dsn], check=True)
    stays = subprocess.Popen(
        [sys.executable, "-c", WRITER, info.dsn, "stay"], stdout=subprocess.PIPE, text=True
    )
    assert stays.stdout is not None and stays.stdout.readline().strip() == "ok"
    STAYING.append(stays)


STAYING: list[subprocess.Popen[str]] = []

CHANGES: dict[str, Callable[[ConnInfo], None]] = {
    "insert": run_sql("INSERT INTO item (name) VALUES ('new')"),
    "update": run_sql("UPDATE item SET name = 'renamed' WHERE id = 1"),
    "delete": run_sql("DELETE FROM item WHERE id = 2"),
    "truncate": run_sql("TRUNCATE item"),
    "copy": copy_rows,
    "rolled back insert": rolled_back_insert,
    "create index": run_sql("CREATE INDEX item_name ON item (name)"),
    "create table": run_sql("CREATE TABLE extra (x int)"),
    "temp table": run_sql("CREATE TEMP TABLE scratch (x int)"),
    "comment": run_sql("COMMENT ON TABLE item IS 'touched'"),
    "grant": run_sql("GRANT SELECT ON item TO PUBLIC"),
    "nextval alone": run_sql("SELECT nextval('counter')"),
    "setval": run_sql("SELECT setval('counter', 41)"),
    "serial nextval without insert": run_sql("SELECT nextval('item_id_seq')"),
    "large object created": run_sql("SELECT lo_from_bytea(0, 'new blob')"),
    "large object written": run_sql("SELECT lo_put(4242, 0, 'SEED')"),
    "large object unlinked": run_sql("SELECT lo_unlink(4242)"),
    "alter database set": run_sql("ALTER DATABASE <db> SET work_mem = '8MB'"),
    "alter role in database set": run_sql("ALTER ROLE CURRENT_USER IN DATABASE <db> SET work_mem = '9MB'"),
    "comment on database": run_sql("COMMENT ON DATABASE <db> IS 'touched'"),
    "connection limit": run_sql("ALTER DATABASE <db> CONNECTION LIMIT 50"),
    "prepared transaction": prepared_transaction,
    "analyze": run_sql("ANALYZE item"),
    "vacuum": run_sql("VACUUM item"),
    "statistics reset after a write": run_sql(
        "INSERT INTO item (name) VALUES ('hidden')", "SELECT pg_stat_reset()"
    ),
    "spawned processes": spawned_process_writes,
}


@pytest.fixture(autouse=True)
def _end_staying_processes() -> Iterator[None]:
    yield
    while STAYING:
        proc = STAYING.pop()
        proc.kill()
        proc.wait()


def a_test(pool: ClonePool, body: Callable[[ConnInfo], None]) -> None:
    """What the plugin does around one test: handoff before, the body, the call's end, the release."""
    pool.handoff()
    body(pool.info)
    pool.prepare_inspection()
    pool.release()


def reads(info: ConnInfo) -> None:
    with psycopg.connect(info.dsn, autocommit=True) as db:
        db.execute("SELECT * FROM item ORDER BY id").fetchall()
        db.execute("SELECT * FROM item_names").fetchall()
        db.execute("SELECT lo_get(4242)").fetchone()
        db.execute("SELECT count(*) FROM pg_stat_user_tables").fetchone()


@pytest.mark.parametrize("start", ["fresh clone", "reused database"])
@pytest.mark.parametrize("change", sorted(CHANGES))
def test_the_next_test_sees_the_template_whatever_a_test_changed(
    pool: ClonePool, server: ConnInfo, pristine: str, change: str, start: str
) -> None:
    if start == "reused database":
        a_test(pool, reads)  # read only: the next handoff keeps its database
    a_test(pool, CHANGES[change])
    assert pool.reused == (1 if start == "reused database" else 0), pool.last_change

    reused = pool.reused
    pool.handoff()

    assert pool.reused == reused, f"{change}: the changed database was handed on"
    assert pool.last_change, "the reason for the clone is known"
    assert state_of(server, pool.stable) == pristine


def test_a_read_only_test_hands_its_database_on(pool: ClonePool, server: ConnInfo, pristine: str) -> None:
    a_test(pool, reads)
    with admin.connect(server) as conn:
        before = admin.oid_of(conn, pool.stable)

    for _ in range(3):
        a_test(pool, reads)
    pool.handoff()

    assert pool.reused == 4, pool.last_change
    with admin.connect(server) as conn:
        assert admin.oid_of(conn, pool.stable) == before, "the same database object, not a clone"
    with psycopg.connect(pool.info.dsn, autocommit=True) as db:
        scans = db.execute("SELECT coalesce(sum(seq_scan), 0) FROM pg_stat_user_tables").fetchone()
    assert scans == (0,), "a reused database starts with no activity statistics, like a fresh clone"
    assert state_of(server, pool.stable) == pristine


def test_reuse_off_clones_every_time(server: ConnInfo, template: str) -> None:
    pool = ClonePool(
        server, template, prefix=pool_prefix(uuid.uuid4().hex, "gw0"), size=2, strategy="file_copy",
        reuse_unchanged=False,
    )  # fmt: skip
    try:
        for _ in range(3):
            a_test(pool, reads)
        pool.handoff()
        assert pool.reused == 0
        assert pool.reuse_off == "nocrud_reuse_unchanged = false"
    finally:
        pool.close()


def test_a_session_that_stays_past_the_test_is_ended_and_its_write_seen(
    pool: ClonePool, server: ConnInfo
) -> None:
    """A client that keeps its session (a pooled app) and wrote in it: the write shows once it ends."""
    pool.handoff()
    held: Conn = psycopg.connect(pool.info.dsn, autocommit=True)
    held.execute("INSERT INTO item (name) VALUES ('pooled')")
    pool.prepare_inspection()
    pool.release()

    pool.handoff()

    assert pool.reused == 0 and pool.last_change and "rows were written" in pool.last_change
    assert held.closed or held.broken or _is_terminated(held)
    with psycopg.connect(pool.info.dsn) as db:
        assert db.execute("SELECT count(*) FROM item WHERE name = 'pooled'").fetchone() == (0,)


def _is_terminated(conn: Conn) -> bool:
    try:
        conn.execute("SELECT 1")
    except psycopg.OperationalError:
        return True
    return False
