"""A worker's pool of ready clones, and the handoff that gives each test a fresh database.

Each worker owns one *stable* database name: the app and the test always use that name. Before a test,
the handoff renames the previous (dirty) database away and renames a ready clone into the stable name --
two catalog updates in one round trip -- instead of copying a template while the test waits. A
test that provably changed nothing keeps its database for the next test instead (``unchanged``: no
clone, no rename, no drop). Background threads keep enough clones ready for the pace measured (clone
time against test time and how many tests need a fresh clone) and drop used databases once the ready
clones are there, so the drops stay out of the way of the clones a test may wait for; the backlog of
used databases is bounded.

Ownership: a worker holds a session-level advisory lock named after its prefix for as long as its pool
lives. A database whose prefix lock can be taken belongs to a dead run and may be collected; one whose
lock is held belongs to a live run -- on this machine or any other sharing the server -- and is never
touched.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from collections import deque
from collections.abc import Callable

import psycopg
from psycopg import sql

from ..errors import HandoffError, PoolError, first_line
from . import admin
from .conninfo import ConnInfo
from .names import OWNED_NAME, RUN_PREFIX, check_pool_prefix, clone_name, dirty_name, pool_prefix
from .unchanged import Footprint, Inspector, inspector_name, read_footprint, unsupported_reason

__all__ = ["OWNED_NAME", "ClonePool", "choose_strategy", "collect_garbage", "pool_prefix", "swap_statement"]

SWAP_ATTEMPTS = 5


def choose_strategy(setting: str, *, server_major: int, fsync_on: bool) -> str | None:
    """FILE_COPY is faster with fsync off (measured 15-23 ms vs 25-60 ms); WAL_LOG wins with fsync on."""
    if server_major < 15:
        return None  # STRATEGY exists since PostgreSQL 15
    if setting != "auto":
        return setting
    return "wal_log" if fsync_on else "file_copy"


MAX_FILLERS = 4
MAX_READY = 6  # ready clones per worker at most, however slow the clones measured
MAX_USED_BACKLOG = 4  # used databases waiting to be dropped before drops go ahead of clones
PACE_WEIGHT = 0.2  # exponential moving averages of the pace: recent tests count most
SESSION_GRACE_S = 5.0  # a session still on the database after this long is a bug worth a clear error


def swap_statement(
    stable: str, clone: str, dirty: str | None, *, grace_s: float = SESSION_GRACE_S
) -> sql.Composed:
    """The handoff in one round trip: close the door, end sessions, dirty away, clone in.

    ``ALLOW_CONNECTIONS false`` is committed first (its own transaction: a new backend reads the
    committed catalog) so that a client reconnecting in a loop cannot slip in between the wait for the
    sessions and the rename: the rename would wait 5 s for it, then fail. The rest is one transaction;
    the fresh clone comes in allowing connections, and the used database is dropped.
    """
    parts: list[sql.Composable] = []
    if dirty:
        parts.append(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(stable)))
        parts.append(sql.SQL("COMMIT"))
        parts.append(admin.end_sessions_statement(stable, grace_s=grace_s))
        parts.append(
            sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(stable), sql.Identifier(dirty))
        )
    parts.append(
        sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(clone), sql.Identifier(stable))
    )
    return sql.SQL("; ").join(parts)


class ClonePool:
    """One per worker; not thread-safe for callers (one test at a time), the filler runs beside it."""

    def __init__(
        self,
        server: ConnInfo,
        template: str,
        *,
        prefix: str,
        size: int,
        strategy: str | None,
        session_grace_s: float = SESSION_GRACE_S,
        max_fillers: int | None = None,
        reuse_unchanged: bool = True,
    ) -> None:
        self.server = server
        self.template = template
        self.stable = check_pool_prefix(prefix)
        self.size = size
        self.strategy = strategy
        self.session_grace_s = session_grace_s
        # One filler keeps up while a clone is quicker than a test. When handoffs start waiting (a big
        # template: ~65 ms per clone at 100 MB), more fillers clone in parallel, one per core at most.
        self.max_fillers = max_fillers or max(1, min(MAX_FILLERS, os.cpu_count() or 1))
        self._fillers: list[threading.Thread] = []
        self.handoff_ms: list[float] = []
        self.reused = 0  # handoffs that kept an unchanged database
        self.background_s = 0.0  # seconds the fillers spent cloning and dropping
        self.waits = 0  # handoffs that found no ready clone
        self.waited_ms = 0.0  # what those handoffs took in all
        self.swap_retries = 0  # swaps refused because a session was on the database at the rename
        self._seq = itertools.count(1)
        self._ready: deque[str] = deque()
        self._dirty: deque[str] = deque()
        self._creating = 0
        self._stopping = False
        self._error: BaseException | None = None
        self._generation = 0  # bumped by retarget: a filler's error on the old template is not final
        self._has_stable = False
        # Each clone's oid: a test that renamed its database away is found by it (and dropped).
        self._oids: dict[str, int] = {}
        self._stable_oid: int | None = None
        # What the current database looked like from outside when it was handed out (a clone's is read
        # right after its CREATE): the reuse check compares with it.
        self._footprints: dict[str, Footprint] = {}
        self._expected: Footprint | None = None
        self._inspector: Inspector | None = None
        self.last_change: str | None = None  # why the last handoff could not keep the database
        # Wait for our look inside to end before the next test (the app-database check counts the
        # sessions a test's database saw); the runtime turns it off once that check is done.
        self.settle = True
        # The pace, measured: how long a clone takes, how long a test takes, how many need a clone.
        self._clone_s: float | None = None
        self._test_s: float | None = None
        self._clone_share = 1.0
        self._last_handoff: float | None = None
        self._cond = threading.Condition()
        self._conn = admin.connect(server, purpose=f"handoff {prefix}")
        if not admin.try_advisory_lock(self._conn, prefix):
            self._conn.close()
            raise PoolError(f"another live process owns databases named {prefix}*")
        self.reuse_off: str | None = "nocrud_reuse_unchanged = false"
        if reuse_unchanged:
            self.reuse_off = unsupported_reason(self._conn)
        self._add_filler()

    @property
    def fillers(self) -> int:
        """Background threads cloning for this pool (grows when handoffs wait)."""
        return len(self._fillers)

    def _add_filler(self) -> None:
        thread = threading.Thread(
            target=self._fill, name=f"nocrud-pool-{self.stable}-{len(self._fillers)}", daemon=True
        )
        self._fillers.append(thread)
        thread.start()

    @property
    def has_stable(self) -> bool:
        """True once a clone sits under the stable name (the app can be pointed at it)."""
        return self._has_stable

    @property
    def info(self) -> ConnInfo:
        """Where the current test's database lives (stable name)."""
        return self.server.with_db(self.stable)

    # -- handoff ---------------------------------------------------------------------------------

    def handoff(self) -> float:
        """Give the next test a pristine database under the stable name: the current one if the test
        provably changed nothing, else a fresh clone. Returns the milliseconds the caller waited."""
        started = time.perf_counter()
        if self._has_stable and self.reuse_off is None:
            self.last_change = self._change_in_current()
            if self.last_change is None:
                self.reused += 1
                self._note_pace(started, cloned=False)
                elapsed = (time.perf_counter() - started) * 1000
                self.handoff_ms.append(elapsed)
                return elapsed
        self._close_inspector()
        self._note_pace(started, cloned=True)
        with self._cond:
            waited = not self._ready and bool(self.handoff_ms)  # the first always waits: just started
            if waited:
                self.waits += 1  # the fillers fell behind: this test waits for a CREATE DATABASE
                if len(self._fillers) < self.max_fillers:
                    self._add_filler()
            while not self._ready:
                if self._error is not None:
                    raise PoolError(f"cannot clone template {self.template}: {self._error}") from None
                self._cond.wait()
            clone = self._ready.popleft()
            self._cond.notify_all()
        dirty = dirty_name(self.stable, next(self._seq)) if self._has_stable else None
        try:
            dirty = self._swap(clone, dirty)
        except BaseException:
            with self._cond:
                self._ready.appendleft(clone)  # untouched: the swap's transaction rolled back
            raise
        self._has_stable = True
        with self._cond:
            self._stable_oid = self._oids.pop(clone, None)
            self._expected = self._footprints.pop(clone, None)
            if dirty:
                self._dirty.append(dirty)
                self._cond.notify_all()
        elapsed = (time.perf_counter() - started) * 1000
        self.handoff_ms.append(elapsed)
        if waited:
            self.waited_ms += elapsed
        return elapsed

    def _change_in_current(self) -> str | None:
        """End the sessions on the current database, then read what changed in it (None: nothing).

        Two round trips: the maintenance connection ends the other sessions and reads the footprint;
        the look inside, opened while the test finished (``prepare_inspection``), reads the inside
        counters and resets the statistics. While ``settle`` is on, it is also gone before the next
        test starts. Any doubt -- no connection, an error -- is a change: a fresh clone then.
        """
        inspector, self._inspector = self._inspector or Inspector(self.info, self.stable), None
        try:
            if self._expected is None or not inspector.connected():
                return "it could not be inspected"
            spare = inspector_name(self.stable)
            now = read_footprint(self._conn, self.stable, spare=spare)  # the sessions usually ended already
            if now is not None and now.others:
                end = admin.end_sessions_statement(self.stable, grace_s=self.session_grace_s, spare=spare)
                try:
                    now = read_footprint(self._conn, self.stable, first=end, spare=spare)
                except psycopg.errors.ObjectInUse:
                    return "a session did not end"  # the swap says so in full
            if now is None:
                return "it was dropped or renamed"
            change = now.change_from(self._expected)
            if change is None:
                change, reset_at = inspector.look()
                if change is None:
                    self._expected = now.after_reset(reset_at)
                    inspector.close()
                    if self.settle:  # no session of ours left when the next test starts
                        admin.terminate(self._conn, self.stable, wait_ms=int(self.session_grace_s * 1000))
            return change
        except psycopg.Error as exc:
            # e.g. the test ended our session; or the server is gone (a full disk, a crash): then the
            # clone path reports what broke, as it would without reuse.
            return f"it could not be inspected ({first_line(exc)})"
        finally:
            inspector.close()

    def _close_inspector(self) -> None:
        inspector, self._inspector = self._inspector, None
        if inspector is not None:
            inspector.close()

    def _note_pace(self, now: float, *, cloned: bool) -> None:
        """Measure how long tests take and how many need a clone; the fillers size the pool from it."""
        with self._cond:
            if self._last_handoff is not None:
                self._test_s = _moving(self._test_s, now - self._last_handoff)
            self._last_handoff = now
            self._clone_share = _moving(self._clone_share, 1.0 if cloned else 0.0)

    @property
    def ready_target(self) -> int:
        """Ready clones to keep: enough to cover one clone's time at the pace measured, ``size`` at
        least. A clone taking 60 ms while every 20 ms test needs one wants 4 ready (a disk-backed
        server, fsync on); a suite that mostly reuses needs no more than ``size``."""
        with self._cond:
            return self._target()

    def _target(self) -> int:
        if self._clone_s is None or not self._test_s:
            return self.size
        need = self._clone_s * self._clone_share / self._test_s
        return max(self.size, min(MAX_READY, int(need) + 2))

    def _swap(self, clone: str, dirty: str | None) -> str | None:
        """Run the swap; returns the name of the used database to drop (None if the test dropped it)."""
        used = dirty
        for attempt in range(1, SWAP_ATTEMPTS + 1):
            try:
                self._conn.execute(swap_statement(self.stable, clone, dirty, grace_s=self.session_grace_s))
                return used
            except psycopg.errors.InvalidCatalogName:
                if dirty is None:
                    raise
                # The test dropped or renamed its own database: move the clone in, and drop the
                # renamed one under whatever name it has now (it is ours: same oid).
                dirty, used = None, self._renamed_stable()
            except psycopg.errors.ObjectInUse as exc:
                self._reopen_stable()
                if "prepared transaction" in (exc.diag.message_detail or "") and attempt < SWAP_ATTEMPTS:
                    admin.roll_back_prepared(self.server, self.stable)  # a test left one: blocks the rename
                    continue
                # Either sessions stayed for the grace period (the message names one), or the
                # rename found one the wait did not (not seen since the database takes no new
                # sessions during the swap; counted in swap_retries): then simply try again.
                if "still has sessions" in str(exc) or attempt == SWAP_ATTEMPTS:
                    raise HandoffError(
                        f"cannot hand a fresh database to the next test: {exc.diag.message_primary or exc}.\n"
                        "A session did not end when terminated: a frozen backend, or a client that "
                        "reconnects in a loop (a health check or background job of the app?). The pid above "
                        "is in pg_stat_activity while it lasts."
                    ) from None
                self.swap_retries += 1
            except psycopg.Error:
                if dirty:
                    self._reopen_stable()
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _reopen_stable(self) -> None:
        """A swap that failed after closing the stable database to new sessions opens it again."""
        with contextlib.suppress(psycopg.Error):  # gone, or the server is: the original error tells
            admin.allow_connections(self._conn, self.stable)

    def _renamed_stable(self) -> str | None:
        """The name the current test's database has now if the test renamed it (None if dropped)."""
        if self._stable_oid is None:
            return None
        name = admin.name_of(self._conn, self._stable_oid)
        return None if name == self.stable else name

    def release(self) -> None:
        """The test is over: end the sessions on its database now, without waiting for them.

        A backend takes a few milliseconds to exit after being terminated (a pooled app keeps idle
        sessions until then); signalling at teardown lets that overlap with pytest's own work between
        two tests, so the next handoff's wait finds them gone. The handoff still waits for any left.
        """
        if self._has_stable:
            try:
                admin.terminate(self._conn, self.stable, spare=inspector_name(self.stable))
            except psycopg.Error:
                pass  # only a head start: the next handoff ends them anyway, and reports what broke
            self.prepare_inspection()

    def prepare_inspection(self) -> None:
        """Start connecting the next handoff's look inside the current database (a backend takes a
        few milliseconds to start: done while pytest finishes the test, not while the next one waits)."""
        if self._has_stable and self.reuse_off is None and self._inspector is None:
            self._inspector = Inspector(self.info, self.stable)

    def keep_current(self, name: str) -> ConnInfo:
        """Keep the current database under ``name`` (failed test); the next handoff starts clean."""
        self._close_inspector()
        admin.terminate(self._conn, self.stable, wait_ms=int(self.session_grace_s * 1000))
        admin.rename(self._conn, self.stable, name)
        self._has_stable = False
        self._stable_oid = None
        self._expected = None
        return self.server.with_db(name)

    # -- background filler ----------------------------------------------------------------------

    def _next_job(self) -> Callable[[admin.Conn], None] | None:
        """Clones first while fewer than the target are ready; then drops (each DROP DATABASE forces a
        checkpoint: done while no test needs a clone, it costs no test a wait); a full backlog of used
        databases is dropped before more clones, so the disk use stays bounded."""
        with self._cond:
            while not self._stopping:
                short = len(self._ready) + self._creating < self._target()
                if self._dirty and (not short or len(self._dirty) >= MAX_USED_BACKLOG):
                    dirty = self._dirty.popleft()
                    return lambda conn: self._timed(admin.drop, conn, dirty)
                if short:
                    self._creating += 1
                    name = clone_name(self.stable, next(self._seq))
                    return lambda conn: self._create(conn, name)
                self._cond.wait()
            return None

    def _timed(self, job: Callable[[admin.Conn, str], None], conn: admin.Conn, name: str) -> None:
        started = time.perf_counter()
        try:
            job(conn, name)
        finally:
            with self._cond:
                self.background_s += time.perf_counter() - started

    def _create(self, conn: admin.Conn, name: str) -> None:
        started = time.perf_counter()
        try:
            admin.create(conn, name, template=self.template, strategy=self.strategy)
            seconds = time.perf_counter() - started
            oid = admin.oid_of(conn, name)
            footprint = read_footprint(conn, name) if self.reuse_off is None else None
        finally:
            with self._cond:
                self._creating -= 1
                self.background_s += time.perf_counter() - started
        with self._cond:
            self._clone_s = _moving(self._clone_s, seconds)
            if oid is not None:
                self._oids[name] = oid
            if footprint is not None:
                self._footprints[name] = footprint
            self._ready.append(name)
            self._cond.notify_all()

    def _fill(self) -> None:
        while True:
            with self._cond:
                generation = self._generation
            try:
                with admin.connect(self.server, purpose=f"pool {self.stable}") as conn:
                    while (job := self._next_job()) is not None:
                        job(conn)
                return
            except BaseException as exc:  # noqa: BLE001 - handed to the test that waits for a clone
                with self._cond:
                    if generation != self._generation and not self._stopping:
                        continue  # it failed on the template that retarget replaced meanwhile
                    self._error = exc
                    self._cond.notify_all()
                return

    @property
    def lost_template(self) -> bool:
        """The fillers stopped because the template database does not exist (dropped from outside)."""
        with self._cond:
            return isinstance(self._error, psycopg.errors.InvalidCatalogName)

    def retarget(self, template: str) -> None:
        """Clone ``template`` from now on (e.g. the template was dropped from outside and rebuilt):
        forget the fillers' error and fill again. Clones made before stay good."""
        with self._cond:
            self.template = template
            self._generation += 1
            self._error = None
            self._fillers = [thread for thread in self._fillers if thread.is_alive()]
            if not self._fillers:
                self._add_filler()
            self._cond.notify_all()

    # -- teardown --------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop filling and drop every database this pool made (kept-failed ones excepted).

        A server that died meanwhile has nothing left to drop (its databases are the next run's
        garbage at worst): the connection error is not worth a traceback at the end of the run.
        """
        self._close_inspector()
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for thread in self._fillers:
            thread.join(timeout=60)
        leftovers = list(self._ready) + list(self._dirty) + ([self.stable] if self._has_stable else [])
        try:
            renamed = self._renamed_stable() if self._has_stable else None
            for name in leftovers + ([renamed] if renamed else []):
                admin.drop(self._conn, name)
            collect_garbage(self._conn, only_prefix=self.stable)  # e.g. a clone whose CREATE was cut
            admin.advisory_unlock(self._conn, self.stable)
        except psycopg.OperationalError:
            if not self._conn.broken:
                raise
        finally:
            self._conn.close()


def _moving(average: float | None, sample: float) -> float:
    return sample if average is None else average + PACE_WEIGHT * (sample - average)


def collect_garbage(conn: admin.Conn, *, only_prefix: str | None = None) -> list[str]:
    """Drop databases of dead runs (their owner lock is free). Returns the names dropped."""
    by_owner: dict[str, list[str]] = {}
    for name in admin.names_like(conn, RUN_PREFIX):
        match = OWNED_NAME.match(name)
        if match and (only_prefix is None or match.group(1) == only_prefix):
            by_owner.setdefault(match.group(1), []).append(name)
    dropped = []
    for owner, names in by_owner.items():
        if owner != only_prefix and not admin.try_advisory_lock(conn, owner):
            continue  # a live run (here or on another machine) owns them
        try:
            for name in names:
                admin.drop(conn, name)
                dropped.append(name)
        finally:
            if owner != only_prefix:
                admin.advisory_unlock(conn, owner)
    return dropped
