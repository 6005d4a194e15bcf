"""Per-process state of one pytest run: settings, who owns the run, resources acquired lazily.

Fixtures ask the runtime for resources; the runtime acquires each one on first use (so
``--collect-only`` and runs without nocrud tests touch nothing) and remembers failures so the same
setup error is reported in full once per process and briefly afterwards.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from . import serial
from .app import AppLog, AppProcess, AppSpec, stop_registered
from .config import Settings
from .errors import AppStartError, BuildError, NocrudError, SetupFailed
from .pg import admin
from .pg.builders import ACCEPTED_FORMS, Builder, detect_django_project, parse_builder
from .pg.conninfo import ConnInfo
from .pg.key import compute_key
from .pg.pool import ClonePool, choose_strategy, collect_garbage, pool_prefix
from .pg.procs import ProcessId
from .pg.server import EmbeddedCluster, PostgresServer, check_dsn, default_home
from .pg.template import Template, ensure_template
from .serial import ExternalApp

T = TypeVar("T")


DJANGO_APP_COMMAND = "{python} manage.py runserver {host}:{port} --noreload"

# Which fixtures need which shared resource: a failed resource fails only the tests that need it.
NEEDED_BY: dict[str, frozenset[str] | None] = {
    "PostgreSQL": None,  # every nocrud_* fixture
    "template": frozenset({"nocrud_template", "nocrud_db", "nocrud_app", "nocrud_client",
                           "nocrud_client_factory"}),
    "clone pool": frozenset({"nocrud_db", "nocrud_app", "nocrud_client", "nocrud_client_factory"}),
    "app": frozenset({"nocrud_app", "nocrud_client", "nocrud_client_factory"}),
}  # fmt: skip


@dataclasses.dataclass
class Runtime:
    settings: Settings
    owner: ProcessId  # the run's controller process (xdist) or the single pytest process
    is_controller: bool
    worker: str = "main"
    progress: Callable[[str], None] = print
    _cache: dict[str, object] = dataclasses.field(default_factory=dict)
    _errors: dict[str, SetupFailed] = dataclasses.field(default_factory=dict)
    _cluster: EmbeddedCluster | None = None
    _pool: ClonePool | None = None
    _app: AppProcess | None = None
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
            text = str(exc).strip() or type(exc).__name__
            if not isinstance(exc, (NocrudError, OSError)):
                text = f"{type(exc).__name__}: {text}"
            failure = SetupFailed(
                f"pytest-nocrud: {what} is not available:\n{text}",
                f"pytest-nocrud: {what} is not available ({text.splitlines()[0]}); full error in the "
                "first failing test of this worker.",
            )
            self._errors[what] = failure
            self.events.append((what, started, time.perf_counter() - clock, False))
            raise failure from None
        self.events.append((what, started, time.perf_counter() - clock, True))
        self._cache[what] = value
        return value

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
        if self.settings.serial:
            db = self.serial_db
            return PostgresServer(admin=db, version=serial.server_version(db), embedded=False)
        if self.settings.dsn:
            return check_dsn(self.settings.dsn)
        self._cluster = EmbeddedCluster(self.home, bindir=self.settings.pg_bindir)
        return self._cluster.acquire(self.owner)

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
            return parse_builder(spec, root=root, fixtures=self.settings.fixtures)
        except ValueError as exc:
            raise BuildError(f"nocrud_builder = {spec!r}: {exc}") from None

    def template(self) -> Template:
        return self.once("template", self._ensure_template)

    def _ensure_template(self) -> Template:
        server = self.postgres()
        if self.settings.serial:  # provisions nothing: the "template" is the database in use
            return Template(self.serial_db.dbname, key="", reused=True, build_seconds=0.0)
        builder = self.builder()
        inputs = self.settings.template_inputs or tuple(builder.default_inputs())
        key = compute_key(self.settings.rootpath, inputs, builder.identity, server.major)
        for glob in key.unmatched_globs:
            self.progress(f"warning: nocrud_template_inputs line {glob!r} matches no file")
        return ensure_template(
            server.admin,
            key,
            builder,
            lock_dir=self.home / "locks",
            run_token=self.owner.token,
            rebuild=self.settings.rebuild,
            progress=self.progress,
        )

    # -- clone pool ------------------------------------------------------------------------------

    def pool(self) -> ClonePool:
        return self.once("clone pool", self._start_pool)

    def _start_pool(self) -> ClonePool:
        server, template = self.postgres(), self.template()
        with admin.connect(server.admin, purpose="gc") as conn:
            collect_garbage(conn)
            fsync_on = admin.fsync_enabled(conn)
        strategy = choose_strategy(self.settings.clone_strategy, server_major=server.major, fsync_on=fsync_on)
        self._pool = ClonePool(
            server.admin,
            template.name,
            prefix=pool_prefix(self.owner.token, self.worker),
            size=self.settings.pool_size,
            strategy=strategy,
        )
        return self._pool

    @property
    def has_pool(self) -> bool:
        return self._pool is not None

    def dsn_of(self, dbname: str) -> str:
        """DSN of another database on the server in use (e.g. a kept failed test's)."""
        return self.postgres().admin.with_db(dbname).dsn

    # -- a test's database -------------------------------------------------------------------------

    @property
    def serial_db(self) -> ConnInfo:
        return serial.database_from_env(self.settings.dsn, os.environ)

    def fresh_database(self) -> ConnInfo:
        """Before a test: a fresh clone under the stable name (serial mode: the reset command, if any)."""
        if self.settings.serial:
            self.postgres()
            if self.settings.serial_reset:
                serial.run_reset(self.settings.serial_reset, self.serial_db, self.settings.rootpath)
            return self.serial_db
        pool = self.pool()
        pool.handoff()
        return pool.info

    def keep_database(self, name: str) -> None:
        if self._pool is not None:
            self._pool.keep_current(name)

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
        app = AppProcess(self.app_spec(), pool.info, self.app_log(), registry=self._app_registry)
        app.start()
        return app

    def app(self) -> AppProcess | ExternalApp:
        """The worker's app (nocrud_app_scope = worker), started on first use; serial: NOCRUD_APP_URL."""
        if self.settings.serial:
            return ExternalApp(str(self.settings.app_url))
        self._app = self.once("app", self.new_app)
        return self._app

    @property
    def started_app_url(self) -> str | None:
        """The app this process started (serial: NOCRUD_APP_URL); None when none is up."""
        if self.settings.serial:
            return self.settings.app_url
        return self._app.url if self._app is not None else None

    @property
    def _app_registry(self) -> Path:
        return self.home / "apps" / self.owner.token

    # -- end of run ------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """What this process contributes to the terminal summary (plain data: crosses xdist)."""
        out: dict[str, Any] = {}
        server = self._cache.get("PostgreSQL")
        if isinstance(server, PostgresServer):
            out["server"] = {"embedded": server.embedded, "version": server.version}
        template = self._cache.get("template")
        if isinstance(template, Template):
            out["template"] = dataclasses.asdict(template)
        if self._pool is not None:
            out["handoff_ms"] = list(self._pool.handoff_ms)
        out["worker"] = self.worker
        out["events"] = [list(event) for event in self.events]
        if self._errors:
            out["errors"] = {what: str(failure) for what, failure in self._errors.items()}
        return out

    def close(self) -> None:
        """End of this process: drop its pool; the run's owner also gives the embedded server back."""
        if self._app is not None:
            self._app.stop()
            self._app = None
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.close()
        if not self.is_controller:
            return
        stop_registered(self._app_registry)  # apps of workers that died without cleaning up
        if self.settings.dsn:
            return
        if any(self.home.glob(f"pg*/leases/{self.owner.token}")):  # only if this run used the server
            cluster = self._cluster or EmbeddedCluster(self.home, bindir=self.settings.pg_bindir)
            cluster.release(self.owner)
