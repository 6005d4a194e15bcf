"""The pool part: this worker's clone pool, the handoff before each test, and what to do when it
breaks (the server stopped, a full disk, a dropped template)."""

from __future__ import annotations

import contextlib
import os
import socket

import psycopg

from ..errors import (
    HandoffError,
    NocrudError,
    PoolError,
    ServerError,
    SetupFailed,
    first_line,
)
from ..pg import admin, setup_store
from ..pg.conninfo import ConnInfo
from ..pg.names import kept_name, pool_prefix
from ..pg.pool import MAX_FILLERS, ClonePool, choose_strategy, collect_garbage
from ..pg.setup_store import StoredSetup
from .template import TemplatePart


def filler_budget(cpus: int, xdist_workers: str | None) -> int:
    """How many clone fillers a worker may grow to: the cores not taken by the other workers.

    Measured (bench/template_size.py, 113 MB template, 2 cores): one process, fillers growing to 2 cut
    the handoff p50 from 59 to 18 ms; at -n 2 extra fillers only competed with the tests (no gain).
    """
    workers = int(xdist_workers) if xdist_workers and xdist_workers.isdigit() else 1
    return max(1, min(MAX_FILLERS, cpus // max(1, workers)))



class PoolPart(TemplatePart):
    """A fresh database under the worker's stable name for every test."""

    def pool(self) -> ClonePool:
        return self.once("clone pool", self._start_pool)

    def _start_pool(self) -> ClonePool:
        server, template = self.postgres(), self.template()
        with admin.connect(server.admin, purpose="gc") as conn:
            collect_garbage(conn)
            fsync_on = admin.fsync_enabled(conn)
        self._server_fsync = fsync_on
        if self._cluster is not None:
            self._cluster.keep_reserve()  # dead runs' databases are gone: room for it again, maybe
        strategy = choose_strategy(self.settings.clone_strategy, server_major=server.major, fsync_on=fsync_on)
        self._pool = ClonePool(
            server.admin,
            template.name,
            # The host too: two CI containers may both run pytest as pid 7 started at the same tick.
            prefix=pool_prefix(f"{socket.gethostname()}/{self.owner.token}", self.worker),
            size=self.settings.pool_size,
            strategy=strategy,
            max_fillers=filler_budget(os.cpu_count() or 1, os.environ.get("PYTEST_XDIST_WORKER_COUNT")),
            reuse_unchanged=self.settings.reuse_unchanged,
        )
        if not self.app_per_test:  # Django's import time overlaps the first clone and handoff
            self._cache["django probe"] = self._django_probe(self._pool.info)
        return self._pool

    @property
    def has_pool(self) -> bool:
        return self._pool is not None

    def fresh_database(self) -> ConnInfo:
        """Before a test: a fresh clone under the stable name."""
        pool = self.pool()
        try:
            self._handoff(pool)
        except HandoffError as exc:
            raise SetupFailed(f"pytest-nocrud: {exc}", f"pytest-nocrud: {exc}".splitlines()[0]) from None
        except (psycopg.Error, PoolError) as exc:
            stopped = self._server_stopped()
            full = self._cluster is not None and self._cluster.disk_is_full()
            if stopped is not None and not full:
                raise self._failed("PostgreSQL", stopped) from None
            # The server is up (or stopped because the disk is full), but this worker's pool
            # connections broke or its filler gave up: the pool is done for this worker. One clear
            # error, not a traceback per test -- and its databases are dropped now, so a full disk
            # gets its space back for the other workers and the next run.
            error = self._explain_pool_error(exc if stopped is None else ServerError(first_line(stopped)))
            with contextlib.suppress(psycopg.Error, NocrudError, OSError):
                if self._discard_pool() and full and self._cluster is not None:
                    free = self._cluster.free_mib()
                    error = PoolError(
                        f"{error}\npytest-nocrud dropped this worker's databases to give the space back "
                        f"({free} MiB free now); the next run starts clean."
                    )
            raise self._failed("PostgreSQL" if stopped is not None else "clone pool", error) from None
        return pool.info

    def _discard_pool(self) -> bool:
        """Drop this worker's pool databases (its stable one, clones, dirty ones); True if done.

        On a full disk the cluster's reserve goes first, so that a server which PANICked on a WAL
        write can finish its recovery (or start again) and the databases can be dropped at all; the
        reserve is taken back once they are gone.
        """
        pool, self._pool = self._pool, None
        if pool is None:
            return False
        self._dropped_pool = pool
        cluster = self._cluster
        if cluster is None or not cluster.disk_is_full():
            pool.close()
            return True
        cluster.recover_from_full_disk(self.owner)  # accepting connections again, or ServerError
        with contextlib.suppress(psycopg.Error):
            pool.close()  # its own connection may have died with the server
        with admin.connect(self.postgres().admin, purpose="gc") as conn:
            collect_garbage(conn, only_prefix=pool.stable)  # whatever pool.close could not drop
            conn.execute("CHECKPOINT")  # WAL of the dropped data is recycled, not kept
        cluster.keep_reserve()
        return True

    def _handoff(self, pool: ClonePool) -> None:
        """The handoff; a template that disappeared from the server (a ``DROP DATABASE`` from outside)
        is rebuilt once, under the same locks as any build, and the pool goes on cloning it."""
        try:
            pool.handoff()
        except HandoffError:
            raise
        except PoolError:
            if not pool.lost_template:
                raise
            if self._template_rebuilds:
                raise PoolError(
                    f"the template database {pool.template} disappeared from the server again during this "
                    "run (it was rebuilt once already).\nSomething drops it: a test, a script or a colleague "
                    "running DROP DATABASE, another tool's clean-up. Stop that; the next run rebuilds it."
                ) from None
            self.progress(
                f"the template database {pool.template} disappeared from the server during the run; "
                "rebuilding it ..."
            )
            self._cache.pop("template", None)
            template = self.template()  # a failed rebuild is the template's setup error, said once
            self._template_rebuilds += 1
            pool.retarget(template.name)
            pool.handoff()

    def _explain_pool_error(self, exc: BaseException) -> PoolError:
        """A full disk is the usual reason clones stop (also behind a server that restarted after a
        PANIC on a WAL write): say so, where, and what to do."""
        message = str(exc).strip() or type(exc).__name__
        if self._cluster is not None and (
            "No space left on device" in message or self._cluster.disk_is_full()
        ):
            if "No space left on device" not in message:  # e.g. "the connection is closed"
                message = (
                    "PostgreSQL could not write (No space left on device) and restarted, cutting this "
                    f"worker's connections ({message.splitlines()[0]})"
                )
            return PoolError(f"{message}\n{self._cluster.disk_full_hint()}")
        return PoolError(message)

    def keep_database(self, nodeid: str) -> ConnInfo:
        """Keep the current test's database (a failed test's) under its own name; where it now lives."""
        name = kept_name(nodeid, salt=str(os.getpid()))
        if self._pool is None:
            raise PoolError("no database to keep: this worker has no clone pool")
        try:
            return self._pool.keep_current(name)
        except psycopg.Error as exc:
            raise PoolError(f"renaming {self._pool.stable} to {name} failed: {exc}") from None

    def reset_database(self) -> ConnInfo:
        """Mid-test (``nocrud_db.reset()``): end the sessions on the current database and hand over
        the next one -- the current one again if it provably did not change, else a fresh clone."""
        self.release_database()
        info = self.fresh_database()
        self._mid_test_resets += 1
        return info

    def release_database(self) -> None:
        """After a test: let the sessions on its database start ending (see ``ClonePool.release``)."""
        if self._pool is not None:
            self._pool.release()

    def template_setup_outputs(self) -> StoredSetup:
        """What the template's @template_setup functions stored, read once per process from a clone."""
        return self.once("template setup outputs", self._load_setup_outputs)

    def _load_setup_outputs(self) -> StoredSetup:
        if not self.template_setups():  # nothing to read: no connection, no handoff
            return StoredSetup({}, {})
        pool = self.pool()
        if not pool.has_stable:
            pool.handoff()
        return setup_store.load(pool.info)
