"""The runtime's foundation: who owns the run, its settings, the lazily acquired resources and
the failures remembered so that each is reported in full once and in one line afterwards; how the app
is started (its spec, log and registry), which every part above needs."""

from __future__ import annotations

import dataclasses
import shlex
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

from ..app.database_check import DjangoProbe
from ..app.process import (
    AppLog,
    AppProcess,
    AppSpec,
    app_environment,
)
from ..app.setups import SetupFunction
from ..config import Settings
from ..errors import (
    AppStartError,
    NocrudError,
    SetupFailed,
)
from ..pg.builders import detect_django_project
from ..pg.conninfo import ConnInfo
from ..pg.pool import ClonePool
from ..pg.procs import ProcessId
from ..pg.server import EmbeddedCluster, default_home
from ..pg.template import (
    BuildFailedEarlier,
)

T = TypeVar("T")


# Django's runserver with TCP_NODELAY (40 ms less per request) and no idle session from its start-up.
_DJANGO_RUNSERVER = shlex.quote(str(Path(__file__).parents[1] / "app" / "django_runserver.py"))


DJANGO_APP_COMMAND = "{python} " + _DJANGO_RUNSERVER.replace("{", "{{").replace("}", "}}") + " {host}:{port}"


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



@dataclasses.dataclass
class RuntimeBase:
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
    _mid_test_resets: int = 0  # fresh databases swapped in by nocrud_db.reset()
    _server_fsync: bool | None = None  # the server's fsync setting, read when the pool starts
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

    @property
    def _app_registry(self) -> Path:
        return self.home / "apps" / self.owner.token

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

    @property
    def app_per_test(self) -> bool:
        """``nocrud_app_scope = test``: every test starts its own app on its own clone."""
        return self.settings.app_scope == "test"
