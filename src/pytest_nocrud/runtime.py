"""Per-process state of one pytest run: settings, who owns the run, resources acquired lazily.

Fixtures ask the runtime for resources; the runtime acquires each one on first use (so
``--collect-only`` and runs without nocrud tests touch nothing) and remembers failures so the same
setup error is reported in full once per process and briefly afterwards.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from .config import Settings
from .procs import ProcessId
from .server import EmbeddedCluster, PostgresServer, ServerError, check_dsn, default_home

T = TypeVar("T")


class SetupFailed(Exception):
    """A shared resource could not be set up; ``brief`` is shown after the first full report."""

    def __init__(self, message: str, brief: str) -> None:
        super().__init__(message)
        self.brief = brief


@dataclasses.dataclass
class Runtime:
    settings: Settings
    owner: ProcessId  # the run's controller process (xdist) or the single pytest process
    is_controller: bool
    _cache: dict[str, object] = dataclasses.field(default_factory=dict)
    _errors: dict[str, SetupFailed] = dataclasses.field(default_factory=dict)
    _cluster: EmbeddedCluster | None = None

    @property
    def home(self) -> Path:
        return self.settings.data_dir or default_home(self.settings.rootpath)

    def once(self, what: str, make: Callable[[], T]) -> T:
        """Build ``what`` on first use; on failure raise the full error once, then a short one."""
        if what in self._cache:
            return self._cache[what]  # type: ignore[return-value]
        if what in self._errors:
            raise SetupFailed(self._errors[what].brief, self._errors[what].brief)
        try:
            value = make()
        except (ServerError, RuntimeError, OSError) as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            failure = SetupFailed(
                f"pytest-nocrud: {what} is not available:\n{exc}",
                f"pytest-nocrud: {what} is not available ({first_line}); full error in the first "
                "failing test of this worker.",
            )
            self._errors[what] = failure
            raise failure from None
        self._cache[what] = value
        return value

    def earlier_failure(self, fixturenames: Iterable[str]) -> str | None:
        """The brief message of a shared resource that already failed, if a test would need it.

        pytest re-raises a failed session fixture's error in every later test; checking before setup
        lets those tests say it in one line instead of repeating the full report.
        """
        if not self._errors or not any(name.startswith("nocrud_") for name in fixturenames):
            return None
        return next(iter(self._errors.values())).brief

    def postgres(self) -> PostgresServer:
        return self.once("PostgreSQL", self._acquire_postgres)

    def _acquire_postgres(self) -> PostgresServer:
        if self.settings.dsn:
            return check_dsn(self.settings.dsn)
        self._cluster = EmbeddedCluster(self.home, bindir=self.settings.pg_bindir)
        return self._cluster.acquire(self.owner)

    def close(self) -> None:
        """End of the run (controller / single process): give the embedded server back."""
        if not self.is_controller or self.settings.dsn:
            return
        if any(self.home.glob(f"pg*/leases/{self.owner.token}")):  # only if this run used the server
            cluster = self._cluster or EmbeddedCluster(self.home, bindir=self.settings.pg_bindir)
            cluster.release(self.owner)
