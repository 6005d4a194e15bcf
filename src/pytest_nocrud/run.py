"""One pytest run as the plugin's hooks see it: what it collects across processes, and its summary.

Each process keeps a ``RunState`` (one config stash key): the finished tests' records, and on the
controller what the xdist workers sent at their end (their stats, records, endpoint rows, baked-login
counts). At the end the controller measures endpoint coverage over all of it and writes the summary,
the HTML report and the perf record's location. Also here: the progress writer and the SIGTERM
handling the run installs at configure.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from .app import endpoints as app_endpoints
from .flows.baked import BAKED, BakedSummary
from .redaction import Redact
from .report import coverage as endpoint_coverage
from .report.html import write as write_html
from .report.perf import PerfRecorder, git_sha
from .report.record import TestRecord
from .report.summary import baked_login_lines, summary_lines
from .runtime import Runtime, WorkerStats

# Keys of what a worker sends the controller (xdist's workeroutput).
_STATS_KEY = "nocrud_stats"
_RECORDS_KEY = "nocrud_records"
_ENDPOINTS_KEY = "nocrud_endpoints"
_BAKED_KEY = "nocrud_baked_logins"


@dataclasses.dataclass
class RunState:
    """What one process of the run collects; the controller's also holds every worker's."""

    redact: Redact
    perf: PerfRecorder | None = None
    shard: str | None = None  # this run's shard label (``shard_label``), kept in the HTML page's data
    started: float = dataclasses.field(default_factory=time.time)
    records: list[TestRecord] = dataclasses.field(default_factory=list)  # every finished test
    endpoints: list[dict[str, str]] = dataclasses.field(default_factory=list)  # the app's OpenAPI rows
    worker_stats: list[WorkerStats] = dataclasses.field(default_factory=list)
    worker_baked: list[BakedSummary] = dataclasses.field(default_factory=list)
    coverage: endpoint_coverage.Coverage | str | None = None  # the result, or why there is none

    def add_record(self, record: TestRecord) -> None:
        self.records.append(record)
        if self.perf is not None:
            self.perf.add(record)

    def fetch_endpoints(self, runtime: Runtime) -> None:
        """Read the endpoint list from this process's live app, while it still runs."""
        settings = runtime.settings
        url = runtime.started_app_url
        if settings.coverage and settings.openapi_path and url is not None and not self.endpoints:
            self.endpoints.extend(app_endpoints.openapi_rows(url, settings.openapi_path))

    def worker_output(self, runtime: Runtime) -> dict[str, Any]:
        """What a worker sends the controller at its end (plain data)."""
        return {
            _STATS_KEY: runtime.stats(),
            _RECORDS_KEY: self.records,
            _ENDPOINTS_KEY: self.endpoints,
            _BAKED_KEY: BAKED.summary(),
        }

    def add_worker_output(self, output: dict[str, Any]) -> None:
        if output.get(_STATS_KEY):
            self.worker_stats.append(output[_STATS_KEY])
        self.records.extend(output.get(_RECORDS_KEY, ()))
        self.endpoints.extend(output.get(_ENDPOINTS_KEY, ()))
        if output.get(_BAKED_KEY):
            self.worker_baked.append(output[_BAKED_KEY])

    def measure_coverage(self, runtime: Runtime) -> bool:
        """Measure endpoint coverage if asked; True when it fails the run's gate."""
        settings = runtime.settings
        if not settings.coverage:
            return False
        self.coverage = app_endpoints.of_run(settings, self.endpoints, self.records)
        return endpoint_coverage.below_fail_under(self.coverage, settings.coverage_fail_under)

    def summary(self, runtime: Runtime, *, controller: bool) -> list[str]:
        """The terminal summary's lines; the controller also writes the HTML report."""
        settings = runtime.settings
        per_process = [*self.worker_stats, runtime.stats()]
        coverage_line = None if self.coverage is None else endpoint_coverage.summary_line(self.coverage)
        lines = summary_lines(per_process, self.records, coverage_line=coverage_line)
        if lines:
            lines += baked_login_lines([*self.worker_baked, BAKED.summary()])
        if self.coverage is not None:
            lines += endpoint_coverage.gate_lines(
                self.coverage, fail_under=settings.coverage_fail_under, json_path=settings.coverage_json
            )
        if settings.html is not None and controller:
            measured = self.coverage if isinstance(self.coverage, endpoint_coverage.Coverage) else None
            write_html(
                settings.html,
                self.records,
                per_process,
                started=self.started,
                finished=time.time(),
                coverage_line=coverage_line,
                coverage=measured.as_json() if measured is not None else None,
                git_sha=self.perf.git_sha if self.perf is not None else git_sha(settings.rootpath),
                shard=self.shard,
                redact=self.redact,
            )
            lines.append(f"HTML report: {settings.html}")
        if self.perf is not None:
            lines.append(f"perf record: {self.perf.path.parent} (summarize: nocrud perf {settings.perf})")
        return lines


SHARD_ENV = "PYTEST_NOCRUD_SHARD"


def shard_label(config: pytest.Config, environ: Mapping[str, str]) -> str | None:
    """The run's shard label: ``$PYTEST_NOCRUD_SHARD``, else pytest-split's group (``1/2``), else None."""
    label = environ.get(SHARD_ENV, "").strip()
    if label:
        return label
    splits = getattr(config.option, "splits", None)
    group = getattr(config.option, "group", None)
    if isinstance(splits, int) and isinstance(group, int) and splits > 1:
        return f"{group}/{splits}"
    return None


def failure_repr(item: pytest.Item, message: str) -> Any:
    """What ``pytest.fail(message, pytrace=False)`` reports: the message alone (short summary too)."""
    try:
        pytest.fail(message, pytrace=False)
    except pytest.fail.Exception:
        return item.repr_failure(pytest.ExceptionInfo.from_current())


def terminate_like_ctrl_c() -> None:
    """Treat SIGTERM (a CI job being cancelled, ``kill``) like Ctrl-C, so teardown still runs.

    By default SIGTERM ends Python on the spot: no fixture teardown, no unconfigure, so the app
    servers and the embedded PostgreSQL -- in sessions of their own -- would outlive the run. Only
    installed when nobody else handles SIGTERM, and only in the main thread.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def terminal_writer(config: pytest.Config, worker: str) -> Callable[[str], None]:
    """Progress lines that reach the terminal even from inside a captured test or an xdist worker."""
    prefix = "[nocrud]" if worker == "main" else f"[nocrud {worker}]"

    def write(message: str) -> None:
        capman = config.pluginmanager.getplugin("capturemanager")
        suspended = capman.global_and_fixture_disabled() if capman else contextlib.nullcontext()
        with suspended:
            sys.stderr.write(f"\n{prefix} {message}\n")
            sys.stderr.flush()

    return write
