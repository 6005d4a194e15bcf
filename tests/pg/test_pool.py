"""ClonePool and admin SQL driven directly against a live embedded server.

These pin the pool's promises at the level a flow never sees: every handoff yields a fresh database,
the number of databases per worker stays bounded, sessions left on the stable name are cut, close()
leaves nothing -- and hostile database names survive quoting.
"""

from __future__ import annotations

import os
import signal
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pytest_nocrud import HandoffError
from pytest_nocrud.pg import admin
from pytest_nocrud.pg.conninfo import ConnInfo
from pytest_nocrud.pg.pool import (
    MAX_READY,
    MAX_USED_BACKLOG,
    ClonePool,
    PoolError,
    collect_garbage,
    pool_prefix,
)
from pytest_nocrud.pg.procs import ProcessId
from pytest_nocrud.pg.server import EmbeddedCluster

SIZE = 2


@pytest.fixture(scope="module")
def server(warm_data_dir: Path) -> Iterator[ConnInfo]:
    """The admin ConnInfo of a server held for this module."""
    cluster = EmbeddedCluster(warm_data_dir)
    me = ProcessId.of(os.getpid())
    info = cluster.acquire(me).admin
    try:
        yield info
    finally:
        cluster.release(me)


@pytest.fixture(scope="module")
def template(server: ConnInfo) -> Iterator[str]:
    """A finalized template with one table and one seed row."""
    name = f"pooltest_tpl_{uuid.uuid4().hex[:8]}"
    with admin.connect(server) as conn:
        admin.create(conn, name)
        with psycopg.connect(server.with_db(name).dsn, autocommit=True) as db:
            db.execute("CREATE TABLE item (name text); INSERT INTO item VALUES ('seed')")
        admin.finalize(conn, name, {"test": True})
    yield name
    with admin.connect(server) as conn:
        admin.drop(conn, name, maybe_template=True)


@pytest.fixture
def pool(server: ConnInfo, template: str) -> Iterator[ClonePool]:
    pool = ClonePool(
        server, template, prefix=pool_prefix(uuid.uuid4().hex, "gw0"), size=SIZE, strategy="file_copy"
    )
    try:
        yield pool
    finally:
        pool.close()


def rows(info: ConnInfo) -> list[str]:
    with psycopg.connect(info.dsn) as conn:
        return sorted(row[0] for row in conn.execute("SELECT name FROM item"))


def test_each_handoff_gives_a_fresh_database(pool: ClonePool) -> None:
    pool.handoff()
    with psycopg.connect(pool.info.dsn) as conn:
        conn.execute("INSERT INTO item VALUES ('dirty')")
    assert rows(pool.info) == ["dirty", "seed"]

    pool.handoff()

    assert rows(pool.info) == ["seed"]
    assert len(pool.handoff_ms) == 2


def test_databases_per_pool_stay_bounded(server: ConnInfo, pool: ClonePool) -> None:
    """Handoffs back to back (the filler cannot keep up) while another thread samples pg_database."""
    seen: list[int] = []
    done = threading.Event()

    def sample() -> None:
        with admin.connect(server) as conn:
            while not done.is_set():
                seen.append(len(admin.names_like(conn, pool.stable)))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        for _ in range(30):
            pool.handoff()
            with psycopg.connect(pool.info.dsn, autocommit=True) as conn:
                conn.execute("INSERT INTO item VALUES ('x')")
    finally:
        done.set()
        sampler.join()
    assert len(seen) > 30
    # The stable one, the ready clones (more when clones are slower than tests), a bounded backlog of
    # used ones, and one being made or dropped per filler.
    assert max(seen) <= 1 + MAX_READY + MAX_USED_BACKLOG + pool.fillers, seen


def test_a_session_left_on_the_stable_database_is_terminated_at_handoff(pool: ClonePool) -> None:
    pool.handoff()
    leftover = psycopg.connect(pool.info.dsn, autocommit=True)
    leftover.execute("INSERT INTO item VALUES ('left open')")

    pool.handoff()

    with pytest.raises(psycopg.OperationalError):
        leftover.execute("SELECT 1")
    leftover.close()
    assert rows(pool.info) == ["seed"]


def test_handoff_ends_sessions_left_open_before_it_renames(pool: ClonePool) -> None:
    """Sessions left open (as a test's are) are ended by the handoff itself, never by the rename.

    The rename would find a session still there and wait in PostgreSQL's 100 ms steps (5 s at most,
    then refuse: a retry). How fast the handoff's own wait is, is measured in bench/handoff_wait.py;
    that it is the handoff that waits is pinned by the frozen-backend test below (its message).
    """
    pool.handoff()
    left_open = []
    for _ in range(12):
        conn = psycopg.connect(pool.info.dsn, autocommit=True)
        conn.execute("SELECT 1")  # left open, like a test's
        left_open.append(conn)
        pool.handoff()
    for conn in left_open:
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
        conn.close()
    assert pool.swap_retries == 0, "a rename found a session the handoff had not ended"
    assert rows(pool.info) == ["seed"]


class PooledClient:
    """An app's connection pool in miniature: one connection kept open, reconnected when it breaks."""

    def __init__(self, info: ConnInfo) -> None:
        self.info, self.done, self.reconnects = info, threading.Event(), 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        conn: psycopg.Connection[tuple[object, ...]] | None = None
        while not self.done.wait(0.002):
            try:
                if conn is None:
                    conn = psycopg.connect(self.info.dsn, autocommit=True)
                    self.reconnects += 1
                conn.execute("SELECT 1")  # pre_ping
            except psycopg.OperationalError:
                conn = None
        if conn is not None:
            conn.close()

    def stop(self) -> None:
        self.done.set()
        self.thread.join()


def test_a_pooled_app_that_reconnects_at_once_cannot_slip_in_before_the_rename(pool: ClonePool) -> None:
    """Clients reconnecting in a loop (a pooled app's pre-ping) race every handoff.

    One that connected after the wait for the sessions but before the rename made the rename wait
    5 s, fail and be retried (one handoff took 5,075 ms without an error). The database takes no new
    sessions during the swap, and the wait also ends backends still starting up on it.
    """
    pool.handoff()
    clients = [PooledClient(pool.info) for _ in range(3)]
    try:
        for _ in range(40):
            pool.handoff()
    finally:
        for client in clients:
            client.stop()
    assert all(client.reconnects > 1 for client in clients), "each really lost its session at handoffs"
    assert pool.swap_retries == 0, "a session slipped in between the wait and the rename"
    assert rows(pool.info) == ["seed"]
    with psycopg.connect(pool.info.dsn) as conn:  # the fresh database takes sessions again
        allowed = conn.execute("SELECT datallowconn FROM pg_database WHERE datname = current_database()")
        assert allowed.fetchone() == (True,)


def test_a_session_that_will_not_leave_gives_one_clear_error(server: ConnInfo, template: str) -> None:
    """A frozen backend (SIGSTOP) cannot act on its termination: the handoff names it and gives up."""
    pool = ClonePool(
        server, template, prefix=pool_prefix(uuid.uuid4().hex, "gw0"), size=1, strategy=None,
        session_grace_s=0.3,
    )  # fmt: skip
    stuck = None
    try:
        pool.handoff()
        stuck = psycopg.connect(pool.info.dsn, autocommit=True, application_name="stuck-job")
        os.kill(stuck.info.backend_pid, signal.SIGSTOP)
        try:
            with pytest.raises(HandoffError, match=r"still has sessions 0.3 s after .*'stuck-job'"):
                pool.handoff()
            stable = pool.stable
            with admin.connect(server) as conn:  # the failed swap let sessions in again
                allowed = conn.execute("SELECT datallowconn FROM pg_database WHERE datname = %s", [stable])
                assert allowed.fetchone() == (True,)
        finally:
            os.kill(stuck.info.backend_pid, signal.SIGCONT)
        pool.handoff()  # once it is gone, handoffs work again
        assert rows(pool.info) == ["seed"]
    finally:
        if stuck is not None:
            stuck.close()
        pool.close()


@pytest.mark.parametrize("what", ["drop", "rename"])
def test_a_test_that_drops_or_renames_its_own_database_does_not_break_the_next(
    pool: ClonePool, server: ConnInfo, what: str
) -> None:
    pool.handoff()
    with admin.connect(server) as conn:
        if what == "drop":
            admin.drop(conn, pool.stable)
        else:
            admin.rename(conn, pool.stable, f"{pool.stable}_x")  # the renamed one is the test's own business

    pool.handoff()

    assert rows(pool.info) == ["seed"]
    pool.handoff()
    assert rows(pool.info) == ["seed"]


def test_fillers_grow_when_handoffs_wait_and_every_database_is_dropped(
    server: ConnInfo, template: str
) -> None:
    """Back-to-back handoffs outrun one filler; each wait adds a filler, up to max_fillers.

    Reuse is off and the handoffs come with nothing between them: a swap (two renames) is several
    times quicker than a CREATE DATABASE, so the ready clones run out on any machine. (With writes
    between the handoffs a fast machine keeps up, and that is no proof of the growth rule.)
    """
    pool = ClonePool(
        server, template, prefix=pool_prefix(uuid.uuid4().hex, "gw0"), size=1, strategy="file_copy",
        max_fillers=3, reuse_unchanged=False,
    )  # fmt: skip
    try:
        pool.handoff()
        with psycopg.connect(pool.info.dsn, autocommit=True) as conn:
            conn.execute("INSERT INTO item VALUES ('x')")
        for _ in range(40):
            pool.handoff()
        assert pool.waits > 0 and pool.fillers == min(3, 1 + pool.waits), (pool.waits, pool.fillers)
        assert rows(pool.info) == ["seed"]
    finally:
        pool.close()
    with admin.connect(server) as conn:
        assert admin.names_like(conn, pool.stable) == []


def test_close_drops_everything_and_frees_the_owner_lock(server: ConnInfo, template: str) -> None:
    prefix = pool_prefix(uuid.uuid4().hex, "gw1")
    pool = ClonePool(server, template, prefix=prefix, size=SIZE, strategy=None)
    for _ in range(3):
        pool.handoff()
    with admin.connect(server) as conn:
        assert pool.stable in admin.names_like(conn, prefix)
        with pytest.raises(PoolError, match="another live process"):
            ClonePool(server, template, prefix=prefix, size=SIZE, strategy=None)

        pool.close()

        assert admin.names_like(conn, prefix) == []
        assert admin.try_advisory_lock(conn, prefix), "close() must release the owner lock"
        admin.advisory_unlock(conn, prefix)


def test_a_clone_failure_reaches_the_waiting_test(server: ConnInfo) -> None:
    pool = ClonePool(
        server, "no_such_template", prefix=pool_prefix(uuid.uuid4().hex, "gw0"), size=1, strategy=None
    )
    try:
        with pytest.raises(PoolError, match="no_such_template"):
            pool.handoff()
    finally:
        pool.close()


def test_garbage_collection_spares_live_owners(server: ConnInfo) -> None:
    dead, live = pool_prefix(uuid.uuid4().hex, "gw0"), pool_prefix(uuid.uuid4().hex, "gw0")
    with admin.connect(server) as owner, admin.connect(server) as conn:
        for name in (dead, f"{dead}_c7", live, f"{live}_d3"):
            admin.create(conn, name)
        assert admin.try_advisory_lock(owner, live)

        dropped = collect_garbage(conn)

        assert {dead, f"{dead}_c7"} <= set(dropped)
        assert admin.names_like(conn, dead) == []
        assert admin.names_like(conn, live) == [live, f"{live}_d3"]
        admin.advisory_unlock(owner, live)
        assert set(collect_garbage(conn)) >= {live, f"{live}_d3"}


HOSTILE = [
    'tëst "x"; DROP DATABASE postgres; --',
    'it\'s; "quoted" name',
    "  spaces  and\ttab ",
    "Mixed-Case_ünïcødé_名前",
    "x" * 63,  # exactly the limit
    "é" * 31 + "x",  # 63 bytes, 32 characters
]


@pytest.mark.parametrize("name", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_names_survive_create_rename_drop(server: ConnInfo, name: str) -> None:
    renamed = name[:-1] + "2" if len(name.encode()) >= 63 else name + " 2"
    with admin.connect(server) as conn:
        admin.drop(conn, name)
        admin.drop(conn, renamed)
        admin.create(conn, name)
        assert admin.exists(conn, name)
        with psycopg.connect(server.with_db(name).dsn) as db:
            assert db.execute("SELECT current_database()").fetchone() == (name,)
        admin.rename(conn, name, renamed)
        assert not admin.exists(conn, name) and admin.exists(conn, renamed)
        admin.drop(conn, renamed)
        assert not admin.exists(conn, renamed)
        assert admin.exists(conn, "postgres")


@pytest.mark.parametrize("name", ["x" * 64, "é" * 32, ""], ids=["64-ascii", "64-bytes-utf8", "empty"])
def test_names_beyond_63_bytes_are_refused_before_reaching_the_server(server: ConnInfo, name: str) -> None:
    with admin.connect(server) as conn:
        with pytest.raises(ValueError, match="1..63 bytes"):
            admin.create(conn, name)
        with pytest.raises(ValueError):
            admin.rename(conn, "postgres", name)
        with pytest.raises(ValueError):
            admin.drop(conn, name)
        truncated = name.encode()[:63].decode(errors="ignore")
        assert not truncated or not admin.exists(conn, truncated), "nothing was created under a cut name"


def test_a_session_inside_a_transaction_is_left_to_finish_it_before_it_is_ended(server: ConnInfo) -> None:
    """An app answers before its clean-up (FastAPI closes the request's session after the response):
    ending it mid-ROLLBACK made the app drop the client's connection. The end waits for it first."""
    name = f"settle_{uuid.uuid4().hex[:8]}"
    with admin.connect(server) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        busy = psycopg.connect(server.with_db(name).dsn)
        busy.execute("SELECT 1")  # a transaction is open: the app's request is not done yet
        ended: list[BaseException | None] = []

        def end() -> None:
            try:
                with admin.connect(server) as admin_conn:
                    admin_conn.execute(admin.end_sessions_statement(name, grace_s=60, settle_s=30))
                ended.append(None)
            except BaseException as exc:  # noqa: BLE001 - the main thread asserts on it
                ended.append(exc)

        ender = threading.Thread(target=end)
        ender.start()
        running = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'DO $nocrud$%' AND state = 'active'"
        with admin.connect(server) as watch:
            for _ in range(10_000):  # until the end statement runs (polling a state, bounded)
                watch.execute("SELECT pg_stat_clear_snapshot()")
                if watch.execute(running).fetchone() == (1,):
                    break
            else:
                pytest.fail("the end statement never ran")
        busy.commit()  # inside the settle window: not ended mid-transaction
        ender.join(timeout=60)
        assert ended == [None]
        with pytest.raises(psycopg.OperationalError):
            busy.execute("SELECT 1")  # once idle, it was ended
        busy.close()
    finally:
        with admin.connect(server) as conn:
            admin.drop(conn, name)
