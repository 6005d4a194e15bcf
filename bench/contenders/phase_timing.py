"""pytest plugin (``-p phase_timing``) that records each test's setup/call/teardown seconds as JSON.

bench/run.py loads it into every contender, whatever plugins that contender uses, so the suite wall time
can be broken down the same way for all of them: an isolation strategy's cost shows up in *setup* (fresh
database, app start, fixture load) and *teardown* (flush, app stop), the flows' own work in *call*.
Reports arrive on the xdist controller, so only the controller writes the file (``BENCH_PHASES_OUT``).
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

_rows: dict[str, dict[str, Any]] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    row = _rows.setdefault(report.nodeid, {"outcome": "passed"})
    row[report.when] = round(report.duration, 6)
    if report.failed:
        row["outcome"] = "failed" if report.when == "call" else "error"
    elif report.skipped and row["outcome"] == "passed":
        row["outcome"] = "skipped"


def pytest_sessionfinish(session: pytest.Session) -> None:
    target = os.environ.get("BENCH_PHASES_OUT")
    if target and not hasattr(session.config, "workerinput"):  # the controller (or a plain run)
        with open(target, "w", encoding="utf-8") as out:
            json.dump(_rows, out)
