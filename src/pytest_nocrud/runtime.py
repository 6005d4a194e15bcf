"""Per-process state of one pytest run: settings, who owns the run, resources acquired lazily.

Fixtures ask the runtime for resources; the runtime acquires each one on first use (so
``--collect-only`` and runs without nocrud tests touch nothing) and remembers failures so the same
setup error is reported in full once per process and briefly afterwards. Serial mode, which
provisions nothing, is the subclass ``serial.SerialRuntime``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shlex
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypedDict, TypeVar

import httpx
import psycopg

from . import errors
from .app.database_check import Baseline, DjangoProbe, Evidence, successful_writes
from .app.process import (
    AppLog,
    AppProcess,
    AppSpec,
    ExternalApp,
    LiveApp,
    app_environment,
    app_session_name,
    describe_exit,
    reap_orphaned_apps,
    settings_env,
    stop_registered,
    tidy_leftovers,
)
from .app.setups import SetupFunction, run_setups, setup_inputs
from .config import Settings
from .errors import (
    AppExited,
    AppStartError,
    BuildError,
    HandoffError,
    NocrudError,
    PoolError,
    ServerError,
    SetupFailed,
    WrongDatabaseError,
    first_line,
)
from .pg import admin, setup_store
from .pg.builders import ACCEPTED_FORMS, Builder, detect_django_project, parse_builder
from .pg.conninfo import ConnInfo
from .pg.names import kept_name, pool_prefix
from .pg.pool import MAX_FILLERS, ClonePool, choose_strategy, collect_garbage
from .pg.procs import ProcessId, indented
from .pg.server import EmbeddedCluster, PostgresServer, check_dsn, default_home, dsn_stopped_error
from .pg.sessions import SessionWatch
from .pg.setup_store import StoredSetup
from .pg.template import (
    BuildFailedEarlier,
    LayerKeys,
    LayerUse,
    Template,
    TemplateRequest,
    ensure_template,
    layer_keys,
)
from .pg.testdb import TestDatabase

T = TypeVar("T")


# Django's runserver with TCP_NODELAY (40 ms less per request) and no idle session from its start-up.
_DJANGO_RUNSERVER = shlex.quote(str(Path(__file__).parent / "app" / "django_runserver.py"))
DJANGO_APP_COMMAND = "{python} " + _DJANGO_RUNSERVER.replace("{", "{{").replace("}", "}}") + " {host}:{port}"

# Linux's minimum delayed ACK is 40 ms: an app server that writes a response in several small sends
# without TCP_NODELAY makes most requests of a keep-alive client land in this band.
DELAYED_ACK_BAND = (39.0, 52.0)

# How long a test whose connection to the app broke waits for the app's exit to show (a SIGKILLed
# app's sockets close a moment before it is a zombie; a shell leader exits after the app it waits for).
APP_EXIT_SETTLE = 2.0
APP_EXIT_LOG_LINES = 10

# Which fixtures need which shared resource: a failed resource fails only the tests that need it.
NEEDED_BY: dict[str, frozenset[str] | None] = {
    "PostgreSQL": None,  # every nocrud_* fixture
    "template": frozenset({"nocrud_template", "nocrud_db", "nocrud_app", "nocrud_client",
                           "nocrud_client_factory", "nocrud_setup"}),
    "clone pool": frozenset({"nocrud_db", "nocrud_app", "nocrud_client", "nocrud_client_factory",
                             "nocrud_setup"}),
    "template setup outputs": frozenset({"nocrud_client", "nocrud_client_factory", "nocrud_setup"}),
    "app": frozenset({"nocrud_app", "nocrud_client", "nocrud_client_factory"}),
}  # fmt: skip


def template_keys(
    settings: Settings, builder: Builder, server_major: int, *, extra_inputs: Sequence[str] = ()
) -> LayerKeys:
    """Both layer keys of the project, as a test run computes them (also used by ``nocrud build``).

    ``extra_inputs`` (the ``@template_setup`` source files) feed the data layer's key only.
    """
    schema_globs = (*(settings.template_inputs or builder.schema_inputs()), *builder.required_inputs())
    return layer_keys(settings.rootpath, schema_globs, builder, server_major, extra_inputs=extra_inputs)


def input_warnings(settings: Settings, keys: LayerKeys) -> list[str]:
    """Warnings about key inputs: a glob line that matches nothing, or no input at all."""
    configured = set(settings.template_inputs)  # a builder's default that matches nothing is no news
    lines = [
        f"warning: nocrud_template_inputs line {g!r} matches no file"
        for g in keys.unmatched_globs
        if g in configured
    ]
    if not keys.schema.files:
        lines.append(
            "warning: no file matches the template inputs, so the template will never rebuild when your "
            "schema changes: list the files your builder reads in nocrud_template_inputs"
        )
    return lines


class ServerStats(TypedDict):
    embedded: bool
    version: str
    start_ms: float | None


class RequestStats(TypedDict):
    count: int
    delayed_ack: int


class WorkerStats(TypedDict, total=False):
    """What one process contributes to the summary and the run report (plain data: crosses xdist)."""

    worker: str
    server: ServerStats
    template: dict[str, Any]  # dataclasses.asdict(Template)
    handoff_ms: list[float]
    handoff_waits: int
    app_start_ms: float
    app_restarts: int
    template_rebuilds: int
    requests: RequestStats
    events: list[list[Any]]  # [what, started epoch s, seconds, ok]
    errors: dict[str, str]


def filler_budget(cpus: int, xdist_workers: str | None) -> int:
    """How many clone fillers a worker may grow to: the cores not taken by the other workers.

    Measured (bench/template_size.py, 113 MB template, 2 cores): one process, fillers growing to 2 cut
    the handoff p50 from 59 to 18 ms; at -n 2 extra fillers only competed with the tests (no gain).
    """
    workers = int(xdist_workers) if xdist_workers and xdist_workers.isdigit() else 1
    return max(1, min(MAX_FILLERS, cpus // max(1, workers)))


@dataclasses.dataclass
class Runtime:
    settings: Settings
    owner: ProcessId  # the run's controller process (xdist) or the single pytest process
    is_controller: bool
    worker: str = "main"
    progress: Callable[[str], None] = print
    template_setups: Callable[[], Sequence[SetupFunction]] = tuple  # the @template_setup functions
    _cache: dict[str, object] = dataclasses.field(default_factory=dict)
    _errors: dict[str, SetupFailed] = dataclasses.field(default_factory=dict)
    _cluster: EmbeddedCluster | None = None
    _pool: ClonePool | None = None
    _dropped_pool: ClonePool | None = None  # declared dead and dropped mid-run (its figures still count)
    _app: AppProcess | None = None
    _app_start_ms: float | None = None
    _warned_no_app_session: bool = False
    _app_restarts: int = 0
    _app_exits_in_a_row: int = 0  # exits with no test finished on a live app in between
    _app_exit_counted: int = 0  # the AppProcess.starts whose exit is counted already
    _template_rebuilds: int = 0
    _requests_seen: int = 0
    _requests_like_delayed_ack: int = 0
    #: ``(what, started epoch s, seconds, ok)`` of each shared resource's first acquisition: the
    #: run report draws them at the head of this worker's timeline lane.
    events: list[tuple[str, float, float, bool]] = dataclasses.field(default_factory=list)

    @property
    def home(self) -> Path:
        return self.settings.data_dir or default_home(self.settings.rootpath)

    def once(self, what: str, make: Callable[[], T]) -> T:
        """Build ``what`` on first use; on failure raise the full error once, then a short one."""
        if what in self._cache:
            return self._cache[what]  # type: ignore[return-value]
        if what in self._errors:
            raise SetupFailed(self._errors[what].brief, self._errors[what].brief)
        started, clock = time.time(), time.perf_counter()
        try:
            value = make()
        except SetupFailed:
            raise
        except Exception as exc:  # noqa: BLE001 - any setup failure becomes one readable report
            self.events.append((what, started, time.perf_counter() - clock, False))
            raise self._failed(what, exc) from None
        self.events.append((what, started, time.perf_counter() - clock, True))
        self._cache[what] = value
        return value

    def _failed(self, what: str, exc: BaseException) -> SetupFailed:
        """Remember that ``what`` failed (later tests get the brief line) and return the full report."""
        text = str(exc).strip() or type(exc).__name__
        if not isinstance(exc, (NocrudError, OSError)):
            text = f"{type(exc).__name__}: {text}"
        failure = SetupFailed(
            f"pytest-nocrud: {what} is not available:\n{text}",
            f"pytest-nocrud: {what} is not available ({text.splitlines()[0]}); full error in the "
            "first failing test of this worker.",
        )
        if isinstance(exc, BuildFailedEarlier):  # one line already, naming the worker with the full error
            failure = SetupFailed(f"pytest-nocrud: {what} is not available: {text}", f"pytest-nocrud: {text}")
        self._cache.pop(what, None)
        self._errors[what] = failure
        return failure

    def earlier_failure(self, fixturenames: Iterable[str]) -> str | None:
        """The brief message of a shared resource that already failed, if a test would need it.

        pytest re-raises a failed session fixture's error in every later test; checking before setup
        lets those tests say it in one line instead of repeating the full report.
        """
        names = [name for name in fixturenames if name.startswith("nocrud_")]
        for what, failure in self._errors.items():
            needed_by = NEEDED_BY.get(what)
            if names and (needed_by is None or needed_by.intersection(names)):
                return failure.brief
        return None

    # -- PostgreSQL ------------------------------------------------------------------------------

    def postgres(self) -> PostgresServer:
        return self.once("PostgreSQL", self._acquire_postgres)

    def _acquire_postgres(self) -> PostgresServer:
        if self.settings.dsn:
            return check_dsn(self.settings.dsn)
        self._cluster = EmbeddedCluster(self.home, bindir=self.settings.pg_bindir)
        server = self._cluster.acquire(self.owner)
        if self._cluster.disk_is_full(log=False):  # e.g. a killed run's databases: drop them first
            with admin.connect(server.admin, purpose="gc") as conn:
                collect_garbage(conn)
            self._cluster.keep_reserve()
        return server

    # -- template --------------------------------------------------------------------------------

    def builder(self) -> Builder:
        root = self.settings.rootpath
        spec = self.settings.builder
        if spec is None:
            if detect_django_project(root) is None:
                raise BuildError(
                    "no template builder configured. Set nocrud_builder in the ini file to one of:\n  "
                    + "\n  ".join(ACCEPTED_FORMS)
                )
            spec = "django"
        try:
            builder = parse_builder(
                spec,
                root=root,
                fixtures=self.settings.fixtures,
                sql_vars=dict(self.settings.sql_vars),
                incremental_command=self.settings.incremental_command,
            )
        except ValueError as exc:
            raise BuildError(f"nocrud_builder = {spec!r}: {exc}") from None
        app_env = self.settings.app_env
        builder.extra_env = lambda db: settings_env(db, app_env)  # the app's settings, for its tools too
        return builder

    def template(self) -> Template:
        return self.once("template", self._ensure_template)

    def _ensure_template(self) -> Template:
        server = self.postgres()
        builder = self.builder()
        setups = self.template_setups()
        extra = setup_inputs(setups, self.settings.rootpath)  # a setup change rebuilds the data layer
        keys = template_keys(self.settings, builder, server.major, extra_inputs=extra)
        for line in input_warnings(self.settings, keys):
            self.progress(line)
        use = self._cache.get("layers in use")
        if not isinstance(use, LayerUse):  # held for this process's life: GC never drops what we use
            use = self._cache["layers in use"] = LayerUse(server.admin)
        return ensure_template(TemplateRequest(
            server.admin,
            keys,
            builder,
            lock_dir=self.home / "locks",
            run_token=self.owner.token,
            rebuild=self.settings.rebuild,
            progress=self.progress,
            after_build=(lambda db: self._run_template_setups(setups, db)) if setups else None,
            use=use,
            require_objects=not self.settings.allow_empty_template,
            worker=self.worker,
        ))

    def _run_template_setups(self, setups: Sequence[SetupFunction], db: ConnInfo) -> None:
        """Build time: an app on the template being built (as a worker starts one), the setups, results."""
        self.progress(f"running {len(setups)} @template_setup function(s) against the app on {db.dbname} ...")
        log = self.app_log()
        offset = log.offset()
        app = AppProcess(self.app_spec(), db, log, registry=self._app_registry)
        app.start()
        try:
            results = run_setups(setups, app.url)
        except BuildError as exc:
            tail = indented(log.tail(offset, 15))
            app_log = f"\n  app log ({log.path}), last lines:\n{tail}" if tail else ""
            advice = "The template was not finalized; fix the function and run again."
            raise BuildError(f"{exc}{app_log}\n{advice}") from None
        finally:
            app.stop()  # its sessions end with it; ensure_template waits until none is left
        setup_store.save(db, results)

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

    # -- clone pool ------------------------------------------------------------------------------

    def pool(self) -> ClonePool:
        return self.once("clone pool", self._start_pool)

    def _start_pool(self) -> ClonePool:
        server, template = self.postgres(), self.template()
        with admin.connect(server.admin, purpose="gc") as conn:
            collect_garbage(conn)
            fsync_on = admin.fsync_enabled(conn)
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
        )
        if not self.app_per_test:  # Django's import time overlaps the first clone and handoff
            self._cache["django probe"] = self._django_probe(self._pool.info)
        return self._pool

    @property
    def cluster(self) -> EmbeddedCluster | None:
        """The embedded cluster this process uses (None with ``--nocrud-dsn`` or before first use)."""
        return self._cluster

    @property
    def has_pool(self) -> bool:
        return self._pool is not None

    # -- a test's database -------------------------------------------------------------------------

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
            return PoolError(f"{message}\n{self._cluster.disk_full_hint()}")
        return PoolError(message)

    def _server_stopped(self) -> ServerError | None:
        """After a database error: is the server itself gone? (one clear error instead of many)"""
        if self._cluster is not None:
            return self._cluster.stopped_error()
        return dsn_stopped_error(self.postgres().admin)

    def keep_database(self, nodeid: str) -> ConnInfo:
        """Keep the current test's database (a failed test's) under its own name; where it now lives."""
        name = kept_name(nodeid, salt=str(os.getpid()))
        if self._pool is None:
            raise PoolError("no database to keep: this worker has no clone pool")
        try:
            return self._pool.keep_current(name)
        except psycopg.Error as exc:
            raise PoolError(f"renaming {self._pool.stable} to {name} failed: {exc}") from None

    def release_database(self) -> None:
        """After a test: let the sessions on its database start ending (see ``ClonePool.release``)."""
        if self._pool is not None:
            self._pool.release()

    # -- app server ------------------------------------------------------------------------------

    def app_spec(self) -> AppSpec:
        settings = self.settings
        command, cwd = settings.app_command, settings.rootpath
        if command is None:
            manage_py = detect_django_project(settings.rootpath)
            if manage_py is None:
                raise AppStartError(
                    "no app command configured. Set nocrud_app_command in the ini file, e.g.\n"
                    "  nocrud_app_command = {python} -m uvicorn myapp:app --host {host} --port {port}"
                )
            command, cwd = DJANGO_APP_COMMAND, manage_py.parent
        return AppSpec(
            command=command,
            cwd=cwd,
            ready_path=settings.app_ready_path,
            start_timeout=settings.app_start_timeout,
            extra_env=settings.app_env,
        )

    def app_log(self) -> AppLog:
        return self.once(
            "app log", lambda: AppLog(self.home / "logs" / f"app-{self.owner.pid}-{self.worker}.log")
        )

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
        if isinstance(probe, DjangoProbe):
            try:
                probe.check(pool.info)  # before the app starts: its start-up may write (migrate, create_all)
            finally:
                probe.stop()
        with SessionWatch(self.postgres().admin, app_session_name(pool.stable)) as watch:
            app.start()
        self._app_start_ms = (time.perf_counter() - started) * 1000
        self._check_app_database(app, pool.stable, watch.databases)
        return app

    def _django_probe(self, db: ConnInfo) -> DjangoProbe | None:
        """For a Django project, a look at its effective DATABASES in the app's environment."""
        settings = self.settings
        if not settings.check_app_database:
            return None
        manage_py = detect_django_project(settings.rootpath)
        env = app_environment(db, 0, settings.app_env)
        if manage_py is None and "DJANGO_SETTINGS_MODULE" not in env:
            return None
        return DjangoProbe(manage_py.parent if manage_py else settings.rootpath, env)

    # -- does the app use the test database? (app_database.py) ----------------------------------

    def app_database_baseline(self, database: TestDatabase) -> Baseline | None:
        """Before a test's requests: the evidence to compare with after it (None once confirmed)."""
        if not self.settings.check_app_database:
            return None
        evidence = self._cache.get("app database evidence")
        if not isinstance(evidence, Evidence):
            evidence = self._cache["app database evidence"] = Evidence(self.postgres().admin)
        baseline = evidence.baseline(database.name)
        if baseline is not None:
            baseline.opened = database.opened
        return baseline

    def judge_app_database(self, baseline: Baseline, entries: Sequence[object], opened: int) -> None:
        """After the test: stop the run if the app wrote successfully without touching its database."""
        evidence = self._cache.get("app database evidence")
        if not isinstance(evidence, Evidence):
            return
        try:
            evidence.judge(baseline, successful_writes(entries), opened - baseline.opened)
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

    @property
    def app_per_test(self) -> bool:
        """``nocrud_app_scope = test``: every test starts its own app on its own clone."""
        return self.settings.app_scope == "test"

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

    # -- an app that exits mid-run -----------------------------------------------------------------

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

    @property
    def _app_registry(self) -> Path:
        return self.home / "apps" / self.owner.token

    def note_requests(self, durations_ms: Iterable[float | None]) -> None:
        """Count a test's requests, and those in the 40-50 ms band that Nagle + delayed ACK produce."""
        for ms in durations_ms:
            if ms is not None:
                self._requests_seen += 1
                self._requests_like_delayed_ack += DELAYED_ACK_BAND[0] <= ms < DELAYED_ACK_BAND[1]

    # -- end of run ------------------------------------------------------------------------------

    def stats(self) -> WorkerStats:
        """What this process contributes to the terminal summary (plain data: crosses xdist)."""
        out: WorkerStats = {"worker": self.worker}
        server = self._cache.get("PostgreSQL")
        if isinstance(server, PostgresServer):
            out["server"] = {
                "embedded": server.embedded,
                "version": server.version,
                "start_ms": server.started_ms,
            }
        template = self._cache.get("template")
        if isinstance(template, Template):
            out["template"] = dataclasses.asdict(template)
        pool = self._pool or self._dropped_pool
        if pool is not None:
            out["handoff_ms"] = list(pool.handoff_ms)
            out["handoff_waits"] = pool.waits
        if self._app_start_ms is not None:
            out["app_start_ms"] = self._app_start_ms
        if self._app_restarts:
            out["app_restarts"] = self._app_restarts
        if self._template_rebuilds:
            out["template_rebuilds"] = self._template_rebuilds
        if self._requests_seen:
            out["requests"] = {"count": self._requests_seen, "delayed_ack": self._requests_like_delayed_ack}
        out["events"] = [list(event) for event in self.events]
        if self._errors:
            out["errors"] = {what: str(failure) for what, failure in self._errors.items()}
        return out

    def close(self) -> None:
        """End of this process: drop its pool; the run's owner also gives the embedded server back."""
        use = self._cache.get("layers in use")
        if isinstance(use, LayerUse):  # GC may collect our layers once no process of ours runs
            use.close()
        probe = self._cache.pop("django probe", None)
        evidence = self._cache.pop("app database evidence", None)
        if isinstance(probe, DjangoProbe):
            probe.stop()  # started with the pool, never needed: no app was started
        if isinstance(evidence, Evidence):
            evidence.close()
        if self._app is not None:
            self._app.stop()
            self._app = None
        log = self._cache.get("app log")
        if isinstance(log, AppLog):
            log.close()
        if self._pool is not None:
            try:
                self._discard_pool()
            except (psycopg.Error, NocrudError) as exc:  # the end of a run never raises: say it once
                self.progress(
                    f"warning: could not drop this worker's databases ({errors.first_line(exc)}); "
                    "`nocrud gc` drops them"
                )
        if not self.is_controller:
            return
        stop_registered(self._app_registry)  # apps of workers that died without cleaning up
        tidy_leftovers(self.home, keep_pid=self.owner.pid)  # logs of ended runs, empty registries
        if self.settings.dsn:
            return
        if any(self.home.glob(f"pg*/leases/{self.owner.token}")):  # only if this run used the server
            cluster = self._cluster or EmbeddedCluster(self.home, bindir=self.settings.pg_bindir)
            cluster.release(self.owner)


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
