"""pytest entry point: options, marker, fixtures, xdist wiring. Wiring only; logic lives below."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import httpx
import pytest

from . import config as nocrud_config
from .app import AppProcess, app_environment
from .errors import NocrudError, UsageError
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
    nocrud_setup,
    nocrud_template,
)
from .flows.baked import BAKED
from .html import TestRecord, test_record
from .html import write as write_html
from .pg.builders import detect_django_project
from .pg.procs import ProcessId
from .redaction import Redact, redactor, scrub_report
from .report import baked_login_lines, summary_lines
from .runtime import Runtime
from .setups import discover

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
_HTML_KEY = "nocrud_html"
_BAKED_KEY = "nocrud_baked_logins"
_WORKER_STATS = pytest.StashKey[list[dict[str, Any]]]()
_HTML_RECORDS = pytest.StashKey[list[TestRecord]]()
_WORKER_BAKED = pytest.StashKey[list[dict[str, Any]]]()
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
        template_setups=lambda: discover(config.pluginmanager.get_plugins()),
    )
    config.stash[_REDACT] = redactor(settings, os.environ)
    _terminate_like_ctrl_c()
    config.stash[_WORKER_STATS] = []
    config.stash[_HTML_RECORDS] = []
    config.stash[_WORKER_BAKED] = []
    BAKED.clear()
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
    if report.when == "call" and REQUESTS in item.stash:
        runtime.note_requests(entry.ms for entry in item.stash[REQUESTS].entries)
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
        workeroutput[_BAKED_KEY] = BAKED.summary()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    per_process = [*config.stash[_WORKER_STATS], config.stash[RUNTIME].stats()]
    lines = summary_lines(per_process)
    if lines:
        lines += baked_login_lines([*config.stash[_WORKER_BAKED], BAKED.summary()])
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
        if output.get(_BAKED_KEY):
            node.config.stash[_WORKER_BAKED].append(output[_BAKED_KEY])


class _SchemaFetch:
    """``nocrud scaffold``'s session: start the app as a run would, GET its schema, run no test."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.url = ""
        self.schema: Any = None
        self.error = "pytest ended before its session started (see its output above)"

    def pytest_ignore_collect(self, collection_path: Path, config: pytest.Config) -> bool:
        return True  # the project's tests are not imported, let alone run

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        runtime = session.config.stash[RUNTIME]
        path = self.path or runtime.settings.openapi_path or "/openapi.json"
        try:
            app = runtime.app()
            self.url = app.url + path
            response = httpx.get(self.url, timeout=30.0)
        except (NocrudError, httpx.HTTPError) as exc:
            self.error = str(exc)
            return
        manage_py = detect_django_project(runtime.settings.rootpath)
        guessed = not (self.path or runtime.settings.openapi_path)
        if response.status_code != 200 and guessed and manage_py is not None and isinstance(app, AppProcess):
            self._from_drf_viewsets(runtime, app, manage_py)
            return
        if response.status_code != 200:
            self.error = (
                f"GET {path} answered {response.status_code}: set the schema path with --openapi PATH "
                "or the ini option nocrud_openapi_path"
            )
            return
        try:
            self.schema = response.json()
        except ValueError:
            self.error = f"GET {path} did not answer JSON (an OpenAPI document is JSON)"

    def _from_drf_viewsets(self, runtime: Runtime, app: AppProcess, manage_py: Path) -> None:
        """No schema served: describe the DRF router's viewsets from inside the project."""
        code = "from pytest_nocrud.drf_schema import dump; dump()"
        env = app_environment(app.db, app.port, runtime.settings.app_env)
        done = subprocess.run(
            [sys.executable, str(manage_py), "shell", "-c", code],
            cwd=manage_py.parent,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        line = next((ln for ln in done.stdout.splitlines() if ln.startswith(_DRF_MARK)), None)
        if done.returncode != 0 or line is None:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
            self.error = f"no schema served and describing the DRF viewsets failed:\n{tail}"
            return
        self.url = f"{app.url}/ (the Django REST framework router's viewsets)"
        self.schema = json.loads(line[len(_DRF_MARK) :])


_DRF_MARK = "NOCRUD-SCHEMA "


def fetch_schema(rootdir: Path, path: str | None) -> tuple[Any, str]:
    """The OpenAPI document of the project's app in ``rootdir``, and the URL it came from.

    Runs a pytest session there (so the project's ini settings, template and app command apply
    exactly as in a run) that collects nothing; the template is built or reused, one clone is handed
    out, the app is started, asked for its schema and stopped.
    """
    grabber = _SchemaFetch(path)
    quiet = ["-qq", "-p", "no:cacheprovider", "-W", "ignore::pytest.PytestAssertRewriteWarning"]
    pytest.main([str(rootdir), "-o", "addopts=", *quiet], plugins=[grabber])
    if grabber.schema is None:
        raise UsageError(f"cannot read the app's OpenAPI schema: {grabber.error}")
    return grabber.schema, grabber.url
