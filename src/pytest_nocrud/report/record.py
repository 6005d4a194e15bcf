"""What a run remembers about each test, as plain data that can cross from an xdist worker.

A ``TestTrace`` collects one test's phases (setup/call/teardown with wall-clock start and duration),
its database handoff, its outcome and failure text; ``finish`` turns it into a JSON-able ``TestRecord``
with the test's requests and flow results. The HTML report, the terminal summary and the perf record
all read these records, so every view of the run tells the same story.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any, TypedDict

from ..flows.timeline import RequestRecord
from .routes import route_of


class RequestRow(TypedDict):
    """One HTTP request of a test; ``start`` in epoch seconds."""

    method: str
    path: str
    route: str  # the path with ids as placeholders (routes.route_of)
    status: int | None  # None: no response
    client: str
    start: float
    ms: float | None
    expected: bool


class CrudRow(TypedDict):
    resource: str
    steps: dict[str, str]  # C/R/L/U/D/gone -> step status


class TestRecord(TypedDict):
    """One finished test, as every view of the run reads it (plain data: crosses xdist)."""

    nodeid: str
    worker: str
    shard: str  # "" in one run's report; the shard's label in a merged one (``nocrud merge``)
    outcome: str
    phases: dict[str, list[float]]  # when -> [epoch start, seconds]
    handoff: list[float] | None
    seconds: float
    failure: str
    failed_request: str
    sections: list[list[str]]
    requests: list[RequestRow]
    crud: list[CrudRow]

FAILURE_CHARS = 20_000  # a failure text longer than this is cut (the terminal has it whole)

#: pytest's outcome per phase -> the report's word. A failing setup/teardown is an *error*.
_CRUD_LETTERS = {"create": "C", "read": "R", "list": "L", "update": "U", "delete": "D", "gone": "gone"}


@dataclasses.dataclass
class TestTrace:
    nodeid: str
    worker: str
    phases: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    outcome: str = "passed"
    failure: str = ""
    sections: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    handoff: tuple[float, float] | None = None  # (epoch start, seconds)

    def add_phase(
        self, when: str, outcome: str, start: float, seconds: float, *, xfail: bool = False
    ) -> None:
        """One phase's report; the first failure decides the test's outcome."""
        self.phases[when] = (start, seconds)
        if self.outcome not in ("passed", "xpassed"):
            return
        if outcome == "failed":
            self.outcome = "failed" if when == "call" else "error"
        elif outcome == "skipped":
            self.outcome = "xfailed" if xfail else "skipped"
        elif when == "call" and xfail:
            self.outcome = "xpassed"

    def add_failure(self, text: str, sections: Sequence[tuple[str, str]]) -> None:
        if not self.failure:
            self.failure = text if len(text) <= FAILURE_CHARS else text[:FAILURE_CHARS] + "\n[... cut]"
        self.sections.extend((title, body) for title, body in sections if title.startswith(("app log",)))

    def finish(self, requests: Sequence[RequestRecord], flow_results: Sequence[Any] = ()) -> TestRecord:
        """The JSON-able record. Request times become epoch seconds (the log keeps a monotonic clock)."""
        shift = time.time() - time.perf_counter()
        failed_request = next((r for r in reversed(requests) if r.failed and not r.expected), None)
        return {
            "nodeid": self.nodeid,
            "worker": self.worker,
            "shard": "",
            "outcome": self.outcome,
            "phases": {when: list(span) for when, span in self.phases.items()},
            "handoff": list(self.handoff) if self.handoff else None,
            "seconds": sum(seconds for _, seconds in self.phases.values()),
            "failure": self.failure,
            "failed_request": failed_request.detail() if failed_request and self.failure else "",
            "sections": [list(section) for section in self.sections],
            "requests": [
                {
                    "method": r.method,
                    "path": r.path,
                    "route": route_of(r.path),
                    "status": r.status,
                    "client": r.client,
                    "start": r.started + shift,
                    "ms": r.ms,
                    "expected": r.expected,
                }
                for r in requests
            ],
            "crud": [row for result in flow_results if (row := crud_row(result))],
        }


def crud_row(result: Any) -> CrudRow | None:
    """``{"resource": "actor", "steps": {"C": "completed", ...}}`` for a CRUD flow's result, else None.

    A flow counts as CRUD when it has a ``create`` step and another CRUD step (what ``CrudFlow``
    generates); the resource is its name without the ``_crud`` suffix ``CrudFlow`` gives it.
    """
    steps = {step.name: step.status.value for step in getattr(result, "steps", ())}
    if "create" not in steps or len(_CRUD_LETTERS.keys() & steps.keys()) < 2:
        return None
    name = str(getattr(result, "flow", "?"))
    resource = name[: -len("_crud")] if name.endswith("_crud") else name
    return {
        "resource": resource,
        "steps": {letter: steps[step] for step, letter in _CRUD_LETTERS.items() if step in steps},
    }


def status_class(request: RequestRow, outcome: str) -> str:
    """``ok``, ``expected`` (an error status the test accepted) or ``unexpected``.

    No response and 5xx are always unexpected. A 4xx is expected when the test asserted it
    (``expect_status``) or when the test passed anyway: a passing test that got a 403 was checking it.
    """
    status = request["status"]
    if status is not None and status < 400:
        return "ok"
    if request.get("expected"):
        return "expected"
    if status is not None and status < 500 and outcome in ("passed", "xfailed", "xpassed"):
        return "expected"
    return "unexpected"
