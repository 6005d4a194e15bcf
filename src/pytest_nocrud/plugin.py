"""pytest entry point: options, marker, fixtures, xdist wiring. Hooks only; logic lives below."""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest

from . import config as nocrud_config
from .app.setups import discover
from .errors import NocrudError
from .fixtures import (
    RUNTIME,
    _nocrud_test_context,
    nocrud_app,
    nocrud_client,
    nocrud_client_factory,
    nocrud_db,
    nocrud_fuzz,
    nocrud_openapi_schema,
    nocrud_postgres,
    nocrud_setup,
    nocrud_template,
)
from .flows.baked import BAKED
from .pg.procs import ProcessId
from .redaction import redactor, scrub_report
from .report.perf import PerfRecorder, git_sha, new_run_id
from .run import RunState, failure_repr, shard_label, terminal_writer, terminate_like_ctrl_c
from .runtime import Runtime
from .serial import SerialRuntime
from .state import state_of

__all__ = [
    "_nocrud_test_context",
    "nocrud_app",
    "nocrud_client",
    "nocrud_client_factory",
    "nocrud_db",
    "nocrud_fuzz",
    "nocrud_openapi_schema",
    "nocrud_postgres",
    "nocrud_setup",
    "nocrud_template",
]

_OWNER_KEY = "nocrud_owner"
_RUN_ID_KEY = "nocrud_run_id"
_RUN = pytest.StashKey[RunState]()


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
        progress=terminal_writer(config, worker),
        template_setups=lambda: discover(config.pluginmanager.get_plugins()),
    )
    terminate_like_ctrl_c()
    BAKED.clear()
    run_id = str(workerinput.get(_RUN_ID_KEY, "")) if workerinput else ""
    run_id = run_id or new_run_id(owner.pid)
    shard = shard_label(config, os.environ)
    perf = None
    if settings.perf is not None:
        perf = PerfRecorder(settings.perf, run_id, worker, git_sha(settings.rootpath), shard)
    config.stash[_RUN] = RunState(redactor(settings, os.environ), perf, shard)
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistHooks(owner, run_id), "nocrud-xdist")


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
    if report.when == "call" and report.failed:
        error = call.excinfo.value if call.excinfo is not None else None
        exited = runtime.app_exit_during_test(state.app, error, item.nodeid)
        if exited is not None:  # instead of the client's traceback: what happened to the app
            report.longrepr = failure_repr(item, exited)
    if report.when == "teardown":
        runtime.app_outlived_test(state.app)
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
    if report.when == "call" and state.kept is None:
        runtime.test_call_ended()
    run = item.config.stash[_RUN]
    record = state.add_report(report, call)
    if record is not None:
        run.add_record(record)
    scrub_report(report, run.redact)  # before the terminal, junitxml or xdist see it
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    runtime, run = config.stash[RUNTIME], config.stash[_RUN]
    run.fetch_endpoints(runtime)
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput.update(run.worker_output(runtime))
        return
    if run.measure_coverage(runtime) and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    controller = getattr(config, "workerinput", None) is None
    lines = config.stash[_RUN].summary(config.stash[RUNTIME], controller=controller)
    if lines:
        terminalreporter.section("pytest-nocrud", sep="-")
        for line in lines:
            terminalreporter.write_line(line)


def pytest_unconfigure(config: pytest.Config) -> None:
    runtime = config.stash.get(RUNTIME, None)
    if runtime is not None:
        runtime.close()


class _XdistHooks:
    """Controller side of xdist: name the run's owner for every worker; collect what they send."""

    def __init__(self, owner: ProcessId, run_id: str) -> None:
        self.owner = owner
        self.run_id = run_id

    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[_OWNER_KEY] = self.owner.token
        node.workerinput[_RUN_ID_KEY] = self.run_id

    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        node.config.stash[_RUN].add_worker_output(getattr(node, "workeroutput", {}))
