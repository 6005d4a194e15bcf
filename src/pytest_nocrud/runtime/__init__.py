"""Per-process state of one pytest run: settings, who owns the run, resources acquired lazily.

Fixtures ask the runtime for resources; the runtime acquires each one on first use (so
``--collect-only`` and runs without nocrud tests touch nothing) and remembers failures so the same
setup error is reported in full once per process and briefly afterwards. Serial mode, which
provisions nothing, is the subclass ``serial.SerialRuntime``.

A thin owner over four parts, one concern each, stacked the way data flows (each part builds on the
ones below it): ``base`` (settings, once-only acquisition, remembered failures, how the app starts) ->
``server`` -> ``template`` -> ``pool`` -> ``app``. ``Runtime`` adds what crosses them all: the
worker's figures for the summary and the end of the process.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypedDict

import psycopg

from .. import errors
from ..app.database_check import DjangoProbe, Evidence
from ..app.process import AppLog, stop_registered, tidy_leftovers
from ..errors import NocrudError
from ..pg.server import EmbeddedCluster, PostgresServer
from ..pg.template import LayerUse, Template
from .app import DELAYED_ACK_BAND, AppPart
from .base import DJANGO_APP_COMMAND, NEEDED_BY, RuntimeBase
from .pool import filler_budget
from .template import input_warnings, template_keys

__all__ = [
    "DELAYED_ACK_BAND", "DJANGO_APP_COMMAND", "NEEDED_BY", "Runtime", "RuntimeBase", "WorkerStats",
    "filler_budget", "input_warnings", "template_keys",
]  # fmt: skip


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
    handoff_reused: int  # handoffs that kept an unchanged database (no clone)
    pool_background_s: float  # the fillers' seconds cloning and dropping
    reuse_off: str  # why unchanged databases were not reused
    handoff_waited_ms: float  # what the handoffs that waited for a clone took in all
    server_fsync: bool  # the server writes through to disk (fsync on): clones cost disk writes
    mid_test_resets: int  # handoffs asked for by nocrud_db.reset() (counted in handoff_ms too)
    app_start_ms: float
    app_restarts: int
    template_rebuilds: int
    requests: RequestStats
    events: list[list[Any]]  # [what, started epoch s, seconds, ok]
    errors: dict[str, str]



@dataclasses.dataclass
class Runtime(AppPart):
    """One process's runtime: every part, plus its figures and its end."""

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
            out["handoff_waited_ms"] = pool.waited_ms
            out["handoff_reused"] = pool.reused
            out["pool_background_s"] = pool.background_s
            if pool.reuse_off:
                out["reuse_off"] = pool.reuse_off
        if self._server_fsync is not None:
            out["server_fsync"] = self._server_fsync
        if self._mid_test_resets:
            out["mid_test_resets"] = self._mid_test_resets
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

