"""``--nocrud-html=PATH``: one self-contained HTML page with every test's HTTP timeline.

Each test contributes a plain-data record (so it can travel from an xdist worker to the controller);
the controller writes the page once at the end. Bars are positioned relative to the test's first
request, so a slow step or a long gap between requests stands out at a glance.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .flows.timeline import RequestRecord

TestRecord = dict[str, Any]  # {"nodeid", "outcome", "seconds", "worker", "requests": [...]}


def test_record(
    nodeid: str, outcome: str, seconds: float, worker: str, requests: Sequence[RequestRecord]
) -> TestRecord:
    """A JSON-able summary of one test's requests (paths and timings only; no bodies, no headers)."""
    start = min((r.started for r in requests), default=0.0)
    return {
        "nodeid": nodeid,
        "outcome": outcome,
        "seconds": seconds,
        "worker": worker,
        "requests": [
            {
                "method": r.method,
                "path": r.path,
                "status": r.status,
                "client": r.client,
                "offset_ms": (r.started - start) * 1000.0,
                "ms": r.ms,
            }
            for r in requests
        ],
    }


_STYLE = """
body{font:14px system-ui,sans-serif;margin:2em;color:#222}
h1{font-size:1.3em} table{border-collapse:collapse;width:100%;margin-bottom:1.5em}
td,th{padding:2px 6px;text-align:left;border-bottom:1px solid #eee;font-family:ui-monospace,monospace}
.passed{color:#217a21}.failed{color:#b00020}.skipped{color:#8a6d00}
.bar{position:relative;height:12px;background:#f3f3f3;min-width:300px}
.bar span{position:absolute;top:0;height:12px;background:#4a7bd0}
.bar span.err{background:#d04a4a}
details{margin:.3em 0} summary{cursor:pointer}
"""


def render(records: Sequence[TestRecord], *, title: str = "pytest-nocrud request timeline") -> str:
    tests = sorted(records, key=lambda r: r["nodeid"])
    total = sum(len(t["requests"]) for t in tests)
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>",
        f"<p>{len(tests)} tests, {total} requests, written {html.escape(time.strftime('%Y-%m-%d %H:%M:%S'))}"
        "</p>",
    ]
    for test in tests:
        parts.append(_render_test(test))
    parts.append("</body></html>")
    return "".join(parts)


def _render_test(test: TestRecord) -> str:
    requests = test["requests"]
    span = max((r["offset_ms"] + (r["ms"] or 0.0) for r in requests), default=0.0) or 1.0
    outcome = html.escape(test["outcome"])
    worker = html.escape(test["worker"])
    head = (
        f"<summary><span class='{outcome}'>{outcome}</span> {html.escape(test['nodeid'])} "
        f"({test['seconds'] * 1000:.0f} ms, {len(requests)} requests, {worker})</summary>"
    )
    rows = ["<table><tr><th>#</th><th>client</th><th>method</th><th>path</th><th>status</th><th>ms</th>"
            "<th>timeline</th></tr>"]  # fmt: skip
    for number, request in enumerate(requests, 1):
        ms = request["ms"] or 0.0
        left = 100.0 * request["offset_ms"] / span
        width = max(0.5, 100.0 * ms / span)
        status = request["status"]
        css = "err" if status is None or status >= 400 else ""
        rows.append(
            f"<tr><td>{number}</td><td>{html.escape(request['client'] or '')}</td>"
            f"<td>{html.escape(request['method'])}</td><td>{html.escape(request['path'])}</td>"
            f"<td>{'-' if status is None else status}</td><td>{ms:.1f}</td>"
            f"<td><div class='bar'><span class='{css}' style='left:{left:.2f}%;width:{width:.2f}%'>"
            "</span></div></td></tr>"
        )
    rows.append("</table>")
    opened = " open" if test["outcome"] == "failed" else ""
    return f"<details{opened}>{head}{''.join(rows)}</details>"


def write(path: Path, records: Sequence[TestRecord], redact: Callable[[str], str] = str) -> None:
    """Write the page; ``redact`` masks the DSN's password (a request path or test id may hold it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render([_redacted(record, redact) for record in records]), encoding="utf-8")


def _redacted(value: Any, redact: Callable[[str], str]) -> Any:
    """A copy of a plain-data record with every string redacted (before HTML escaping changes them)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _redacted(item, redact) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redacted(item, redact) for item in value]
    return value
