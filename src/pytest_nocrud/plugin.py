"""pytest entry point: options, marker, fixtures, xdist wiring. Wiring only; logic lives below."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Generator
from typing import Any

import pytest

from . import config as nocrud_config
from . import coverage as endpoint_coverage
from .errors import NocrudError
from .fixtures import (
    RUNTIME,
    _nocrud_test_context,
    nocrud_app,
    nocrud_client,
    nocrud_client_factory,
    nocrud_db,
    nocrud_postgres,
    nocrud_setup,
    nocrud_template,
)
from .flows.baked import BAKED, BakedSummary
from .html import write as write_html
from .perf import PerfRecorder, git_sha, new_run_id
from .pg.procs import ProcessId
from .record import TestRecord
from .redaction import Redact, redactor, scrub_report
from .report import baked_login_lines, summary_lines
from .runtime import Runtime, WorkerStats
from .serial import SerialRuntime
from .setups import discover
from .state import state_of

__all__ = [
    "_nocrud_test_context",
    "nocrud_app",
    "nocrud_client",
    "nocrud_client_factory",
    "nocrud_db",
    "nocrud_postgres",
    "nocrud_setup",
    "nocrud_template",
]

_OWNER_KEY = "nocrud_owner"
_STATS_KEY = "nocrud_stats"
_RECORDS_KEY = "nocrud_records"
_ENDPOINTS_KEY = "nocrud_endpoints"
_RUN_ID_KEY = "nocrud_run_id"
_BAKED_KEY = "nocrud_baked_logins"
_WORKER_STATS = pytest.StashKey[list[WorkerStats]]()
_RECORDS = pytest.StashKey[list[TestRecord]]()  # every finished test of the run (all workers, at the end)
_PERF = pytest.StashKey[PerfRecorder]()
_ENDPOINTS = pytest.StashKey[list[dict[str, str]]]()  # from the live app's OpenAPI schema
_STARTED = pytest.StashKey[float]()
_COVERAGE = pytest.StashKey[endpoint_coverage.Coverage | str]()  # the result, or why there is none
_WORKER_BAKED = pytest.StashKey[list[BakedSummary]]()
_REDACT = pytest.StashKey[Redact]()


def pytest_addoption(parser: pytest.Parser) -> None:
    nocrud_config.register(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(
    early_config: pytest.Config, parser: pytest.Parser, args: list[str]
) -> None:
    """``--nocrud-coverage tests/``: the bare flag must not swallow the test path as its PATH."""
    args[:] = nocrud_config.bare_optional(args)


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "crud_flow: end-to-end flow; gets a fresh database and the live app (pytest-nocrud)"
    )
    settings = nocrud_config.resolve(config)
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    if workerinput is not None and _OWNER_KEY in workerinput:
        owner, is_controller = ProcessId.parse(workerinput[_OWNER_KEY]), False
    else:
        owner, is_controller = ProcessId.of(os.getpid()), workerinput is None
    worker = str(workerinput.get("workerid", "main")) if workerinput else "main"
    runtime_class = SerialRuntime if settings.serial else Runtime  # chosen once, for the whole run
    config.stash[RUNTIME] = runtime_class(
        settings=settings,
        owner=owner,
        is_controller=is_controller,
        worker=worker,
        progress=_terminal_writer(config, worker),
        template_setups=lambda: discover(config.pluginmanager.get_plugins()),
    )
    config.stash[_REDACT] = redactor(settings, os.environ)
    _terminate_like_ctrl_c()
    config.stash[_WORKER_STATS] = []
    config.stash[_WORKER_BAKED] = []
    BAKED.clear()
    config.stash[_RECORDS] = []
    config.stash[_ENDPOINTS] = []
    config.stash[_STARTED] = time.time()
    run_id = str(workerinput.get(_RUN_ID_KEY, "")) if workerinput else ""
    run_id = run_id or new_run_id(owner.pid)
    if settings.perf is not None:
        config.stash[_PERF] = PerfRecorder(settings.perf, run_id, worker, git_sha(settings.rootpath))
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistHooks(owner, run_id), "nocrud-xdist")


def _terminate_like_ctrl_c() -> None:
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


def _terminal_writer(config: pytest.Config, worker: str) -> Callable[[str], None]:
    """Progress lines that reach the terminal even from inside a captured test or an xdist worker."""
    prefix = "[nocrud]" if worker == "main" else f"[nocrud {worker}]"

    def write(message: str) -> None:
        capman = config.pluginmanager.getplugin("capturemanager")
        suspended = capman.global_and_fixture_disabled() if capman else contextlib.nullcontext()
        with suspended:
            sys.stderr.write(f"\n{prefix} {message}\n")
            sys.stderr.flush()

    return write


def pytest_runtest_setup(item: pytest.Item) -> None:
    needs = list(getattr(item, "fixturenames", ()))
    if item.get_closest_marker("crud_flow") is not None:
        needs += ["nocrud_db", "nocrud_app"]
    brief = item.config.stash[RUNTIME].earlier_failure(needs)
    if brief:
        pytest.fail(brief, pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report: pytest.TestReport = yield
    runtime = item.config.stash[RUNTIME]
    state = state_of(item, runtime.worker)
    if report.failed:
        report.sections.extend(state.failure_sections())
    if report.when == "call" and state.requests is not None:
        runtime.note_requests(entry.ms for entry in state.requests.entries)
    if (
        report.when == "call"
        and report.failed
        and runtime.settings.keep_failed
        and "nocrud_db" in getattr(item, "fixturenames", ())
        and runtime.has_pool
    ):
        try:
            state.kept = runtime.keep_database(item.nodeid)
            report.sections.append(("nocrud", f"database kept for inspection: {state.kept.masked()}"))
        except NocrudError as exc:
            report.sections.append(("nocrud", f"database not kept: {exc}"))
    record = state.add_report(report, call)
    if record is not None:
        item.config.stash[_RECORDS].append(record)
        recorder = item.config.stash.get(_PERF, None)
        if recorder is not None:
            recorder.add(record)
    scrub_report(report, item.config.stash[_REDACT])  # before the terminal, junitxml or xdist see it
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    runtime = config.stash[RUNTIME]
    if runtime.settings.coverage and runtime.settings.openapi_path:
        _fetch_openapi(config, runtime)
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput[_STATS_KEY] = runtime.stats()
        workeroutput[_RECORDS_KEY] = config.stash[_RECORDS]
        workeroutput[_ENDPOINTS_KEY] = config.stash[_ENDPOINTS]
        workeroutput[_BAKED_KEY] = BAKED.summary()
        return
    if runtime.settings.coverage:
        result = _measure_coverage(config, runtime)
        config.stash[_COVERAGE] = result
        if _below_fail_under(result, runtime.settings.coverage_fail_under):
            if session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _below_fail_under(result: endpoint_coverage.Coverage | str, fail_under: float | None) -> bool:
    """A gate that could not measure fails too: a silent pass would hide a broken schema path."""
    if fail_under is None:
        return False
    return isinstance(result, str) or result.percent < fail_under


def _fetch_openapi(config: pytest.Config, runtime: Runtime) -> None:
    """Read the endpoint list from this process's live app, while it still runs."""
    url = runtime.started_app_url
    if url is None or config.stash[_ENDPOINTS]:
        return
    try:
        endpoints = endpoint_coverage.fetch_openapi(url, str(runtime.settings.openapi_path))
    except NocrudError as exc:
        config.stash[_ENDPOINTS].append({"error": str(exc)})
        return
    config.stash[_ENDPOINTS].extend(dataclasses.asdict(e) for e in endpoints)


def _measure_coverage(config: pytest.Config, runtime: Runtime) -> endpoint_coverage.Coverage | str:
    """Coverage of the run, or one line that says why it could not be measured."""
    records = config.stash[_RECORDS]
    settings = runtime.settings
    rows: list[dict[str, str]] = config.stash[_ENDPOINTS]
    try:
        endpoints = endpoint_coverage.endpoint_list(settings, rows)
    except NocrudError as exc:
        return str(exc)
    result = endpoint_coverage.measure(endpoints, records)
    if settings.coverage_json is not None:
        endpoint_coverage.write_json(settings.coverage_json, result)
    return result


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    runtime = config.stash[RUNTIME]
    per_process = [*config.stash[_WORKER_STATS], runtime.stats()]
    records: list[TestRecord] = config.stash[_RECORDS]
    settings = runtime.settings
    coverage = config.stash.get(_COVERAGE, None)
    coverage_line = None
    if isinstance(coverage, endpoint_coverage.Coverage):
        coverage_line = coverage.line()
    elif coverage is not None:
        coverage_line = f"endpoints: not measured ({coverage.splitlines()[0]})"
    lines = summary_lines(per_process, records, coverage_line=coverage_line)
    if lines:
        lines += baked_login_lines([*config.stash[_WORKER_BAKED], BAKED.summary()])
    measured = "could not be measured, so it counts as"
    if isinstance(coverage, endpoint_coverage.Coverage):
        measured = f"{coverage.percent:.1f}% is"
        if settings.coverage_json is not None:
            lines.append(f"endpoint coverage JSON: {settings.coverage_json}")
    if coverage is not None and _below_fail_under(coverage, settings.coverage_fail_under):
        lines.append(
            f"FAILED: endpoint coverage {measured} below "
            f"--nocrud-coverage-fail-under={settings.coverage_fail_under:g}"
        )
    if settings.html is not None and getattr(config, "workerinput", None) is None:
        write_html(
            settings.html,
            records,
            per_process,
            started=config.stash[_STARTED],
            finished=time.time(),
            coverage_line=coverage_line,
            redact=config.stash[_REDACT],
        )
        lines.append(f"HTML report: {settings.html}")
    recorder = config.stash.get(_PERF, None)
    if recorder is not None:
        lines.append(f"perf record: {recorder.path.parent} (summarize: nocrud perf {settings.perf})")
    if lines:
        terminalreporter.section("pytest-nocrud", sep="-")
        for line in lines:
            terminalreporter.write_line(line)


def pytest_unconfigure(config: pytest.Config) -> None:
    runtime = config.stash.get(RUNTIME, None)
    if runtime is not None:
        runtime.close()


class _XdistHooks:
    """Controller side of xdist: name the run's owner for every worker; collect their stats."""

    def __init__(self, owner: ProcessId, run_id: str) -> None:
        self.owner = owner
        self.run_id = run_id

    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[_OWNER_KEY] = self.owner.token
        node.workerinput[_RUN_ID_KEY] = self.run_id

    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        output = getattr(node, "workeroutput", {})
        if output.get(_STATS_KEY):
            node.config.stash[_WORKER_STATS].append(output[_STATS_KEY])
        node.config.stash[_RECORDS].extend(output.get(_RECORDS_KEY, ()))
        node.config.stash[_ENDPOINTS].extend(output.get(_ENDPOINTS_KEY, ()))
        if output.get(_BAKED_KEY):
            node.config.stash[_WORKER_BAKED].append(output[_BAKED_KEY])
