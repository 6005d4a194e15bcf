"""pytest entry point: options, marker, fixtures, xdist wiring. Wiring only; logic lives below."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Generator
from typing import Any

import pytest

from . import config as nocrud_config
from .fixtures import (
    APP_LOG_FROM,
    KEEP_AS,
    REQUESTS,
    RUNTIME,
    _nocrud_test_context,
    nocrud_app,
    nocrud_client,
    nocrud_client_factory,
    nocrud_db,
    nocrud_postgres,
    nocrud_template,
)
from .html import TestRecord, test_record
from .html import write as write_html
from .pg.procs import ProcessId
from .redaction import Redact, redactor, scrub_report
from .report import summary_lines
from .runtime import Runtime

__all__ = [
    "_nocrud_test_context",
    "nocrud_app",
    "nocrud_client",
    "nocrud_client_factory",
    "nocrud_db",
    "nocrud_postgres",
    "nocrud_template",
]

_OWNER_KEY = "nocrud_owner"
_STATS_KEY = "nocrud_stats"
_HTML_KEY = "nocrud_html"
_WORKER_STATS = pytest.StashKey[list[dict[str, Any]]]()
_HTML_RECORDS = pytest.StashKey[list[TestRecord]]()
_REDACT = pytest.StashKey[Redact]()


def pytest_addoption(parser: pytest.Parser) -> None:
    nocrud_config.register(parser)


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
    config.stash[RUNTIME] = Runtime(
        settings=settings,
        owner=owner,
        is_controller=is_controller,
        worker=worker,
        progress=_terminal_writer(config, worker),
    )
    config.stash[_REDACT] = redactor(settings, os.environ)
    _terminate_like_ctrl_c()
    config.stash[_WORKER_STATS] = []
    config.stash[_HTML_RECORDS] = []
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistHooks(owner), "nocrud-xdist")


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
    if report.failed:
        _attach_diagnostics(item, report)
    if report.when == "call" and runtime.settings.html and REQUESTS in item.stash:
        record = test_record(
            item.nodeid, report.outcome, report.duration, runtime.worker, item.stash[REQUESTS].entries
        )
        item.config.stash[_HTML_RECORDS].append(record)
    if (
        report.when == "call"
        and report.failed
        and runtime.settings.keep_failed
        and "nocrud_db" in getattr(item, "fixturenames", ())
        and runtime.has_pool
    ):
        name = _kept_name(item.nodeid)
        item.stash[KEEP_AS] = name  # nocrud_db's teardown renames the database to this name
        kept = runtime.postgres().admin.with_db(name).masked()
        report.sections.append(("nocrud", f"database kept for inspection: {kept}"))
    scrub_report(report, item.config.stash[_REDACT])  # before the terminal, junitxml or xdist see it
    return report


def _attach_diagnostics(item: pytest.Item, report: pytest.TestReport) -> None:
    """A failed test's HTTP requests and the app's log lines written during this test only."""
    requests = item.stash.get(REQUESTS, None)
    if requests is not None and len(requests):
        report.sections.append(("nocrud requests", requests.format_table()))
    log_from = item.stash.get(APP_LOG_FROM, None)
    if log_from is not None:
        log, offset = log_from
        lines = log.since(offset).rstrip()
        report.sections.append((f"app log ({log.path})", lines or "(no output during this test)"))


def _kept_name(nodeid: str) -> str:
    """``nocrud_failed_<test>_<hash>``: recognisable, unique per test id, within 63 bytes."""
    test = re.sub(r"[^A-Za-z0-9]+", "_", nodeid.rsplit("::", 1)[-1]).strip("_")[:32]
    digest = hashlib.sha256(f"{nodeid}:{os.getpid()}".encode()).hexdigest()[:8]
    return f"nocrud_failed_{test}_{digest}"


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput[_STATS_KEY] = session.config.stash[RUNTIME].stats()
        workeroutput[_HTML_KEY] = session.config.stash[_HTML_RECORDS]


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    per_process = [*config.stash[_WORKER_STATS], config.stash[RUNTIME].stats()]
    lines = summary_lines(per_process)
    html_path = config.stash[RUNTIME].settings.html
    if html_path is not None and getattr(config, "workerinput", None) is None:
        records: list[TestRecord] = config.stash[_HTML_RECORDS]
        write_html(html_path, records, redact=config.stash[_REDACT])
        lines.append(f"request timeline: {html_path}")
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

    def __init__(self, owner: ProcessId) -> None:
        self.owner = owner

    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[_OWNER_KEY] = self.owner.token

    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        output = getattr(node, "workeroutput", {})
        if output.get(_STATS_KEY):
            node.config.stash[_WORKER_STATS].append(output[_STATS_KEY])
        node.config.stash[_HTML_RECORDS].extend(output.get(_HTML_KEY, ()))
