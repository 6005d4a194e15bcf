"""One test's nocrud state: what its fixtures learn and its report hooks show, under one stash key.

The fixtures fill it in (the request log, where the app log stood, the database handoff); the report
hooks read it (a failed test's requests and app log lines, the kept database) and turn it into the
test's record when its teardown is reported.
"""

from __future__ import annotations

import dataclasses

import pytest

from .app.database_check import Baseline
from .app.process import AppLog, AppProcess
from .flows.timeline import RequestLog, format_table
from .pg.conninfo import ConnInfo
from .report.record import TestRecord, TestTrace


@dataclasses.dataclass
class TestState:
    """What one test's fixtures hand to the report hooks."""

    __test__ = False  # not a test class, whatever pytest's name heuristics say

    trace: TestTrace  # its phases and database handoff, until the teardown report
    requests: RequestLog | None = None  # this test's HTTP requests, shown when it fails
    app: AppProcess | None = None  # the app this test talks to (an exit during the test is reported)
    app_log: AppLog | None = None  # the worker's app log, and its offset when the test started
    app_log_from: int = 0
    kept: ConnInfo | None = None  # a failed test's database, kept under another name
    app_db_baseline: Baseline | None = None  # until the app is seen on its database (app_database.py)
    app_db_from: int = 0  # the first request the baseline covers (a mid-test reset starts a new one)

    def failure_sections(self) -> list[tuple[str, str]]:
        """A failed test's HTTP requests and the app's log lines written during this test only."""
        sections = []
        if self.requests is not None and len(self.requests):
            sections.append(self._requests_section(self.requests))
        if self.app_log is not None:
            lines = self.app_log.since(self.app_log_from).rstrip()
            sections.append((f"app log ({self.app_log.path})", lines or "(no output during this test)"))
        return sections

    @staticmethod
    def _requests_section(log: RequestLog) -> tuple[str, str]:
        """All requests; after ``nocrud_db.reset()``, those on the last fresh database only -- what a
        Hypothesis or schemathesis failure replays last is the failing example."""
        resets = log.database_marks
        if not resets:
            return "nocrud requests", log.format_table()
        earlier = resets[-1]
        table = format_table(log.since(earlier), number_from=earlier + 1)
        title = f"nocrud requests since the last nocrud_db.reset() (database {len(resets) + 1} of this test)"
        if earlier:
            hidden = f"{earlier} earlier request(s) on {len(resets)} earlier database(s) not shown"
            table = f"  ({hidden})\n{table}"
        return title, table

    def add_report(self, report: pytest.TestReport, call: pytest.CallInfo[None]) -> TestRecord | None:
        """Add this phase to the trace; after teardown, the test's finished record."""
        xfail = hasattr(report, "wasxfail")
        self.trace.add_phase(report.when, report.outcome, call.start, call.duration, xfail=xfail)
        if report.failed:
            self.trace.add_failure(report.longreprtext, report.sections)
        if report.when != "teardown":
            return None
        log = self.requests
        return self.trace.finish(log.entries if log else [], log.flow_results if log else [])


_STATE = pytest.StashKey[TestState]()


def state_of(item: pytest.Item, worker: str) -> TestState:
    """The test's state, made on first use."""
    return item.stash.setdefault(_STATE, TestState(TestTrace(item.nodeid, worker)))
