"""The app part: the worker's app started on the stable database, the proof that it uses it, and
what happens when it exits mid-run (reported, restarted once)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

import httpx
import psycopg

from ..app.database_check import Baseline, DjangoProbe, Evidence, successful_writes
from ..app.process import (
    AppProcess,
    ExternalApp,
    LiveApp,
    app_session_name,
    describe_exit,
    reap_orphaned_apps,
)
from ..errors import (
    AppExited,
    AppStartError,
    SetupFailed,
    WrongDatabaseError,
    first_line,
)
from ..pg.procs import indented
from ..pg.sessions import SessionWatch
from ..pg.testdb import TestDatabase
from .base import DJANGO_APP_COMMAND
from .pool import PoolPart

# Linux's minimum delayed ACK is 40 ms: an app server that writes a response in several small sends
# without TCP_NODELAY makes most requests of a keep-alive client land in this band.
DELAYED_ACK_BAND = (39.0, 52.0)


# How long a test whose connection to the app broke waits for the app's exit to show (a SIGKILLed
# app's sockets close a moment before it is a zombie; a shell leader exits after the app it waits for).
APP_EXIT_SETTLE = 2.0


APP_EXIT_LOG_LINES = 10



class AppPart(PoolPart):
    """The live app of this worker (or of each test with ``nocrud_app_scope = test``)."""

    def new_app(self) -> AppProcess:
        """Start an app on this worker's stable database (a clone must be in place to answer probes)."""
        pool = self.pool()
        if not pool.has_stable:
            pool.handoff()
        reap_orphaned_apps(self._app_registry.parent)  # apps of runs killed with kill -9
        spec = self.app_spec()
        app = AppProcess(spec, pool.info, self.app_log(), registry=self._app_registry)
        started = time.perf_counter()
        probe = self._cache.pop("django probe", None) or self._django_probe(pool.info)

        def check_settings() -> None:
            if isinstance(probe, DjangoProbe):
                try:
                    probe.check(pool.info)  # before the app's start-up may write (migrate, create_all)
                finally:
                    probe.stop()

        # Our own Django command boots while the settings are checked and waits for the verdict before
        # its first database access; any other command starts only after the check.
        gated = isinstance(probe, DjangoProbe) and spec.command == DJANGO_APP_COMMAND
        if not gated:
            check_settings()
        with SessionWatch(self.postgres().admin, app_session_name(pool.stable)) as watch:
            app.start(gate=check_settings if gated else None)
        self._app_start_ms = (time.perf_counter() - started) * 1000
        self._check_app_database(app, pool.stable, watch.databases)
        return app

    def app_database_baseline(self, database: TestDatabase) -> Baseline | None:
        """Before a test's requests: the evidence to compare with after it (None once confirmed)."""
        evidence = self._cache.get("app database evidence")
        if self.settings.check_app_database and not isinstance(evidence, Evidence):
            evidence = self._cache["app database evidence"] = Evidence(self.postgres().admin)
        baseline = evidence.baseline(database.name) if isinstance(evidence, Evidence) else None
        if baseline is None and self._pool is not None:
            self._pool.settle = False  # nothing counts the sessions any more: no need to wait for ours
        if baseline is not None:
            baseline.opened = database.opened
        return baseline

    def test_call_ended(self) -> None:
        """The test body is over: the next handoff's look inside its database may start connecting --
        unless the app-database check still counts the sessions of each test's database (at teardown:
        then ours connects after that, at release). The first test whose app used its database ends
        that check."""
        if self._pool is not None and not self._pool.settle:
            self._pool.prepare_inspection()

    def judge_app_database(self, baseline: Baseline, entries: Sequence[object], opened: int) -> None:
        """After the test: stop the run if the app wrote successfully without touching its database."""
        evidence = self._cache.get("app database evidence")
        if not isinstance(evidence, Evidence):
            return
        try:
            writes = successful_writes(entries)
            evidence.judge(baseline, writes, opened - baseline.opened, requests=len(entries))
        except (WrongDatabaseError, psycopg.Error) as exc:
            if self._app is not None:
                self._app.stop()  # no later request may write there
                self._app = None
            raise self._failed("app", exc) from None

    def _check_app_database(self, app: AppProcess, expected: str, seen: set[str]) -> None:
        """Stop before any test if the app talks to another database; warn once if it showed none."""
        elsewhere = sorted(seen - {expected})
        if elsewhere:
            app.stop()
            raise AppStartError(
                f"the app connected to database {', '.join(map(repr, elsewhere))} instead of this "
                f"worker's test database {expected!r}; the tests would have read and written there.\n"
                "Make the app's settings read DATABASE_URL (or PGHOST/PGPORT/PGUSER/PGPASSWORD/"
                "PGDATABASE), or map its own variables in nocrud_app_env, e.g.\n"
                "  nocrud_app_env =\n      DB_NAME={dbname}\n      DB_HOST={host}"
            )
        if not seen and not self._warned_no_app_session and not self.settings.check_app_database:
            self._warned_no_app_session = True
            self.progress(
                "warning: the app opened no database session while starting (nocrud_app_ready_path = "
                f"{self.settings.app_ready_path}); if its ready path queried the database, pytest-nocrud "
                "could check that the app uses the test database. Clients that ignore PGAPPNAME "
                "(e.g. asyncpg) are not seen."
            )

    def app(self) -> AppProcess | ExternalApp:
        """The worker's app (nocrud_app_scope = worker), started on first use."""
        self._app = self.once("app", self.new_app)
        return self._app

    @property
    def started_app_url(self) -> str | None:
        """The app this process started; None when none is up."""
        if self._app is None or self._app.exit_status is not None:
            return None
        return self._app.url

    def app_exit_during_test(
        self, app: AppProcess | None, error: BaseException | None, nodeid: str
    ) -> str | None:
        """After a failed test: if its app exited meanwhile, the test's failure message (else None).

        The first exit of the worker's app says that it is restarted for the next test (see
        ``revive_app``); an exit right after a restart stops the worker's app for good, and this test
        shows that error in full (the later tests get its brief line).
        """
        if app is None:
            return None
        code = app.wait_exit(APP_EXIT_SETTLE if _broke_connection(error) else 0.0)
        if code is None:
            return None
        how = describe_exit(code)
        details = _exit_details(app, error)
        if app is not self._app:  # nocrud_app_scope = test: the next test starts its own app anyway
            return f"pytest-nocrud: the app exited ({how}) during this test.{details}"
        if self._count_app_exit(app) > 1:
            return str(self._exited_again(how, f"during {nodeid}", details))
        return (
            f"pytest-nocrud: the app exited ({how}) during this test; it is restarted for the next "
            f"test.{details}"
        )

    def app_outlived_test(self, app: AppProcess | None) -> None:
        """A test ended with the worker's app alive: a later exit is a first one again."""
        if app is not None and app is self._app and app.exit_status is None:
            self._app_exits_in_a_row = 0

    def revive_app(self, app: LiveApp) -> None:
        """Before a test: restart the worker's app if it exited since the last one (same port if it
        can). A second exit in a row (the restarted app died too) stops this worker's app for good:
        one clear error, then a line per test that needs it."""
        if app is not self._app or not isinstance(app, AppProcess):
            return
        code = app.exit_status
        if code is None:
            return
        how = describe_exit(code)
        if self._count_app_exit(app) > 1:
            raise self._exited_again(how, "before this test", _exit_details(app, None))
        old_port, pool = app.port, self.pool()
        try:
            if not pool.has_stable:
                pool.handoff()
            with SessionWatch(self.postgres().admin, app_session_name(pool.stable)) as watch:
                app.restart()
            self._check_app_database(app, pool.stable, watch.databases)
        except Exception as exc:  # noqa: BLE001 - a restart that fails is the app's setup failure
            raise self._failed("app", exc) from None
        self._app_restarts += 1
        port = f"port {app.port}" if app.port == old_port else f"port {app.port} (port {old_port} was taken)"
        self.progress(f"the app exited ({how}); restarted it on {port}")

    def _count_app_exit(self, app: AppProcess) -> int:
        """Count the exit of the app's current process once; how many exits in a row that makes."""
        if self._app_exit_counted != app.starts:
            self._app_exit_counted = app.starts
            self._app_exits_in_a_row += 1
        return self._app_exits_in_a_row

    def _exited_again(self, how: str, when: str, details: str) -> SetupFailed:
        return self._failed(
            "app",
            AppExited(
                f"the app exited again ({how}) {when}, right after its restart: not restarted a second "
                f"time.{details}\nFind why it exits in its log above; the next run starts it afresh."
            ),
        )

    def note_requests(self, durations_ms: Iterable[float | None]) -> None:
        """Count a test's requests, and those in the 40-50 ms band that Nagle + delayed ACK produce."""
        for ms in durations_ms:
            if ms is not None:
                self._requests_seen += 1
                self._requests_like_delayed_ack += DELAYED_ACK_BAND[0] <= ms < DELAYED_ACK_BAND[1]


def _broke_connection(error: BaseException | None) -> bool:
    """Whether ``error`` (or what caused it) is a transport error: the app may have just died."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, httpx.TransportError):
            return True
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False


def _exit_details(app: AppProcess, error: BaseException | None) -> str:
    """What the test saw, and the exited app's last log lines."""
    saw = f"\n  this test saw: {type(error).__name__}: {first_line(error)}" if error is not None else ""
    tail = indented(app.log.tail(app.log_start, APP_EXIT_LOG_LINES), empty="(no output)")
    return f"{saw}\n  app on port {app.port}, last log lines ({app.log.path}):\n{tail}"
