"""``--nocrud-html=PATH``: one self-contained page (no network) that shows what happened in a run.

From the top: a banner when a shared resource (server, template build, app) failed; counts, wall time,
server, template and workers; failures first, each with its failure text, failing request and the app
log lines of that test; a timeline with one lane per worker (server start, template, pool, app start,
then every test as a bar split into handoff / setup / call / teardown; hover shows the test and its
requests, click opens it below); slowest tests and endpoints; then every test's requests, coloured by
*unexpected* status only.

The page also embeds the run's data (``rundata``), so ``nocrud merge`` can render one page from several
shards' pages; there the timeline has one lane group per shard, each with its workers' lanes.
"""

from __future__ import annotations

import dataclasses
import html
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .record import TestRecord, status_class
from .routes import percentile
from .rundata import RunData, embed

EVENT_LABELS = {"PostgreSQL": "server", "template": "template", "clone pool": "pool", "app": "app start"}
PHASES = ("handoff", "setup", "call", "teardown")
SLOWEST = 10

_STYLE = """
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.3em;margin:0 0 .4em} h2{font-size:1.1em;margin:1.4em 0 .4em}
table{border-collapse:collapse;margin-bottom:1em}
td,th{padding:2px 8px;text-align:left;border-bottom:1px solid #eee;font-family:ui-monospace,monospace;
 font-size:13px;vertical-align:top}
th{background:#fafafa}
.passed,.xfailed{color:#217a21}.failed,.error{color:#b00020}.skipped,.xpassed{color:#8a6d00}
.banner{background:#b00020;color:#fff;padding:.6em 1em;margin-bottom:1em;border-radius:4px}
.banner pre{color:#fff;background:none;border:0}
.counts span{margin-right:1.2em;font-weight:600}
.meta td{border:0;padding:1px 8px 1px 0} .meta td:first-child{white-space:nowrap}
pre{white-space:pre-wrap;background:#fbf7f7;border:1px solid #eedada;padding:.5em;margin:.3em 0;
 font-size:12px;max-height:40em;overflow:auto}
pre.log{background:#f7f8fb;border-color:#dde}
details{margin:.3em 0} summary{cursor:pointer}
details.test{border-left:3px solid #ddd;padding-left:.5em}
details.test.failed,details.test.error{border-left-color:#b00020}
.timeline{position:relative;border:1px solid #ddd;padding:4px 0}
.lane{display:flex;align-items:center;height:24px;margin:2px 0}
.shard{border-top:1px solid #ccc;padding-top:2px}
.shard:first-child{border-top:0}
.shard .shard-name{font-size:12px;font-weight:600;padding-left:6px}
.lane .name{width:5em;flex:none;padding-left:6px;font-family:ui-monospace,monospace;font-size:12px}
.track{position:relative;flex:1;height:20px;background:#f6f6f6;margin-right:6px}
.track a,.track span.ev{position:absolute;display:flex;overflow:hidden;min-width:2px}
.track a{top:6px;height:14px} .track span.ev{top:0;height:5px}
.track a{outline:1px solid #fff}
.track a.failed,.track a.error{outline:2px solid #b00020;z-index:1}
.seg{height:100%}
.seg.handoff{background:#e6a23c}.seg.setup{background:#9db7e0}.seg.call{background:#3d6fc4}
.seg.teardown{background:#b9c4d4}
.ev{background:repeating-linear-gradient(45deg,#7a7a7a,#7a7a7a 3px,#a0a0a0 3px,#a0a0a0 6px)}
.ev.bad{background:#b00020}
.legend span{display:inline-block;margin-right:1em;font-size:12px}
.legend i{display:inline-block;width:12px;height:10px;margin-right:4px;vertical-align:middle}
tr.unexpected td{color:#b00020;font-weight:600} tr.expected td.status{color:#8a6d00}
.reqbar{position:relative;height:10px;background:#f3f3f3;min-width:200px}
.reqbar span{position:absolute;top:0;height:10px;background:#4a7bd0}
tr.unexpected .reqbar span{background:#d04a4a} tr.expected .reqbar span{background:#d9a441}
.crud td.completed{color:#217a21}.crud td.failed,.crud td.timed_out{color:#b00020}
.crud td.skipped{color:#999}
"""

# Opens the <details> a timeline bar links to (anchors alone do not open a closed <details>).
_SCRIPT = """
function nocrudOpen(){var id=decodeURIComponent(location.hash.slice(1));if(!id){return;}
var el=document.getElementById(id);if(el&&el.tagName==='DETAILS'){el.open=true;}}
window.addEventListener('hashchange',nocrudOpen);nocrudOpen();
"""

Ids = Mapping[tuple[str, str], str]  # (shard, node id) -> the test's anchor on the page

_ORDER = {"failed": 0, "error": 1, "xpassed": 2, "passed": 3, "xfailed": 4, "skipped": 5}


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def render(
    records: Sequence[TestRecord],
    stats: Sequence[Mapping[str, Any]] = (),
    *,
    started: float | None = None,
    finished: float | None = None,
    coverage_line: str | None = None,
    title: str = "pytest-nocrud run report",
    data: RunData | None = None,
) -> str:
    """The whole page. ``stats`` are the processes' ``Runtime.stats()``; times are epoch seconds.
    ``data``: the run data the page embeds (``rundata``), so it can be read back."""
    tests = sorted(records, key=lambda r: (_ORDER.get(r["outcome"], 9), r["nodeid"], r.get("shard", "")))
    ids = {_key(test): f"t{number}" for number, test in enumerate(tests)}
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{esc(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        _banner(stats, tests),
        _header(tests, stats, started, finished, coverage_line),
        _failures(tests, ids),
        _timeline(tests, stats, ids, started, finished),
        _crud_matrix(tests),
        _slowest_tests(tests, ids),
        _slowest_endpoints(tests),
        "<h2>All tests</h2>",
        *(
            _test_details(test, ids[_key(test)])
            for test in tests
            if test["outcome"] not in ("failed", "error")
        ),
        embed(data.as_json()) if data is not None else "",
        f"<script>{_SCRIPT}</script></body></html>",
    ]
    return "".join(parts)


def render_run(data: RunData, *, coverage_line: str | None = None, title: str | None = None) -> str:
    """The page of a run's data (one run, or shards merged), with that data embedded."""
    shards = {str(r.get("shard", "")) for r in data.records} | {str(s.get("shard", "")) for s in data.stats}
    shards.discard("")
    default = f"pytest-nocrud run report ({len(shards)} shards)" if shards else "pytest-nocrud run report"
    return render(
        data.records,
        data.stats,
        started=data.started,
        finished=data.finished,
        coverage_line=coverage_line,
        title=title or default,
        data=data,
    )


def write(
    path: Path,
    records: Sequence[TestRecord],
    stats: Sequence[Mapping[str, Any]] = (),
    *,
    redact: Callable[[str], str] = str,
    started: float | None = None,
    finished: float | None = None,
    coverage_line: str | None = None,
    coverage: Mapping[str, Any] | None = None,
    git_sha: str | None = None,
    shard: str | None = None,
) -> None:
    """Write the page; ``redact`` masks the DSN's password (a request path, test id, failure text or
    setup error may hold it), applied to the plain data before HTML escaping changes the text (and
    before it is embedded). ``coverage`` is ``Coverage.as_json()``; ``shard`` the run's shard label."""
    data = RunData(
        records=_redacted(list(records), redact),
        stats=_redacted(list(stats), redact),
        started=started,
        finished=finished,
        coverage=_redacted(dict(coverage), redact) if coverage is not None else None,
        git_sha=git_sha,
        shard=redact(shard) if shard else None,
    )
    line = redact(coverage_line) if coverage_line else coverage_line
    write_page(path, render_run(data, coverage_line=line))


def write_page(path: Path, page: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")


def _key(test: TestRecord) -> tuple[str, str]:
    """A test's identity on the page: its node id, within its shard (a merged page has several runs)."""
    return str(test.get("shard", "")), test["nodeid"]


def where(test: TestRecord) -> str:
    """``gw0``, or ``shard 1/2 gw0`` on a merged page."""
    shard = test.get("shard", "")
    return f"shard {shard} {test['worker']}" if shard else test["worker"]


def _redacted(value: Any, redact: Callable[[str], str]) -> Any:
    """A copy of plain data with every string redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _redacted(item, redact) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redacted(item, redact) for item in value]
    return value


# -- header ------------------------------------------------------------------------------------------


def _banner(stats: Sequence[Mapping[str, Any]], tests: Sequence[TestRecord]) -> str:
    errors: dict[str, str] = {}
    for process in stats:
        for what, text in process.get("errors", {}).items():
            errors.setdefault(what, text)
    if not errors:
        return ""
    hit = sum(1 for t in tests if t["outcome"] in ("failed", "error"))
    body = "".join(f"<pre>{esc(text)}</pre>" for text in errors.values())
    names = ", ".join(esc("template build" if what == "template" else what) for what in errors)
    return (
        f"<div class='banner' id='setup-failed'><strong>Setup failed: {names}.</strong> "
        f"{hit} test(s) could not run as intended.{body}</div>"
    )


def _header(
    tests: Sequence[TestRecord],
    stats: Sequence[Mapping[str, Any]],
    started: float | None,
    finished: float | None,
    coverage_line: str | None,
) -> str:
    counts: dict[str, int] = defaultdict(int)
    for test in tests:
        counts[test["outcome"]] += 1
    requests = sum(len(t["requests"]) for t in tests)
    shown = [
        "passed",
        "failed",
        "error",
        "skipped",
        *sorted(set(counts) - {"passed", "failed", "error", "skipped"}),
    ]
    count_html = "".join(f"<span class='{o}' data-count='{o}'>{counts[o]} {o}</span>" for o in shown)
    rows: list[tuple[str, str]] = []
    if started is not None and finished is not None:
        wall = f"{finished - started:.2f} s"
        rows.append(
            ("wall time", f"{wall} (started {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(started))})")
        )
    rows.append(("tests / requests", f"{len(tests)} tests, {requests} requests"))
    server = next((s["server"] for s in stats if "server" in s), None)
    if server:
        text = f"PostgreSQL {server['version']} ({'embedded' if server['embedded'] else 'DSN'})"
        if server.get("start_ms") is not None:
            text += f", started in {server['start_ms']:.0f} ms"
        elif "start_ms" in server:
            text += ", already running"
        rows.append(("server", text))
    template = template_text(stats)
    if template:
        rows.append(("template", template))
    shards = shard_figures(tests, stats)
    if shards:
        rows.append(("shards", shards))
    workers = sorted({_lane(s) for s in stats if "server" in s or s.get("events")})
    worker_parts = [f"{worker}: app {ms:.0f} ms" for worker, ms in app_starts(stats)]
    if workers:
        rows.append(("workers", f"{len(workers)} ({', '.join(worker_parts or workers)})"))
    handoffs = handoff_figures(stats)
    if handoffs:
        head = f"{handoffs.count} ({handoffs.split})" if handoffs.split else str(handoffs.count)
        tail = [part for part in (handoffs.waits, handoffs.background) if part]
        rows.append(("handoffs", "; ".join([head, handoffs.spread, *tail])))
    if coverage_line:
        rows.append(("endpoints", coverage_line.removeprefix("endpoints: ")))
    table = "".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in rows)
    return f"<p class='counts'>{count_html}</p><table class='meta'>{table}</table>"


def template_text(stats: Sequence[Mapping[str, Any]]) -> str:
    """``nocrud_tpl_… built in 3.20 s`` / ``… reused`` (+ the template's layer path when known)."""
    templates = [s["template"] for s in stats if "template" in s]
    if not templates:
        return ""
    built = [t for t in templates if not t.get("reused")]
    first = (built or templates)[0]
    how = f"built in {first.get('build_seconds', 0.0):.2f} s" if built else "reused"
    if built and first.get("restored"):
        how = f"restored from cache in {first.get('build_seconds', 0.0):.2f} s"
    text = f"{first.get('name', '?')} {how}"
    if first.get("path"):
        text += f" ({first['path']})"
    return text


@dataclasses.dataclass(frozen=True)
class HandoffFigures:
    """All processes' handoffs, as the summary line and the HTML header say them."""

    count: int
    spread: str  # p50 … ms, p95 … ms, max … ms
    split: str  # "12 fresh clones, 8 unchanged reused" (+ why reuse was off)
    waits: str  # "3 waited for a clone" ("" when no process reports waits)
    background: str  # "pool background 4.2 s" ("" when unknown)


def handoff_figures(stats: Sequence[Mapping[str, Any]]) -> HandoffFigures | None:
    """How many handoffs, how fast, how many reused an unchanged database, how many waited, and the
    pool's background seconds (cloning, dropping)."""
    handoffs = [ms for s in stats for ms in s.get("handoff_ms", [])]
    if not handoffs:
        return None
    spread = (
        f"p50 {percentile(handoffs, 0.5):.2f} ms, p95 {percentile(handoffs, 0.95):.2f} ms, "
        f"max {max(handoffs):.2f} ms"
    )
    split = ""
    if any("handoff_reused" in s for s in stats):
        reused = sum(int(s.get("handoff_reused", 0)) for s in stats)
        clones = len(handoffs) - reused
        split = f"{clones} fresh clone{'' if clones == 1 else 's'}, {reused} unchanged reused"
        resets = sum(int(s.get("mid_test_resets", 0)) for s in stats)
        if resets:  # included in the count: a reset is a handoff
            split += f"; {resets} by nocrud_db.reset()"
        off = sorted({str(s["reuse_off"]) for s in stats if s.get("reuse_off")})
        if off:
            split += f" (reuse off: {'; '.join(off)})"
    waits = ""
    if any("handoff_waits" in s for s in stats):
        waits = f"{sum(int(s.get('handoff_waits', 0)) for s in stats)} waited for a clone"
    background = ""
    if any("pool_background_s" in s for s in stats):
        background = f"pool background {sum(float(s.get('pool_background_s', 0.0)) for s in stats):.1f} s"
    return HandoffFigures(len(handoffs), spread, split, waits, background)


def shard_figures(tests: Sequence[TestRecord], stats: Sequence[Mapping[str, Any]]) -> str:
    """``2 (1/2: 23 tests, 1 failed; 2/2: 22 tests)`` on a merged page; "" on one run's."""
    shards = sorted(
        ({str(t.get("shard", "")) for t in tests} | {str(s.get("shard", "")) for s in stats}) - {""},
        key=_worker_order,
    )
    if not shards:
        return ""
    parts = []
    for shard in shards:
        mine = [t for t in tests if t.get("shard", "") == shard]
        failed = sum(1 for t in mine if t["outcome"] in ("failed", "error"))
        parts.append(f"{shard}: {len(mine)} tests" + (f", {failed} failed" if failed else ""))
    return f"{len(shards)} ({'; '.join(parts)})"


def _lane(process: Mapping[str, Any]) -> str:
    """A process's lane name: its worker, after its shard on a merged page."""
    worker = str(process.get("worker", "main"))
    shard = str(process.get("shard", ""))
    return f"{shard} {worker}" if shard else worker


def app_starts(stats: Sequence[Mapping[str, Any]]) -> list[tuple[str, float]]:
    """``(worker, ms)`` of each process that started an app, by worker name (after its shard's)."""
    starts = []
    for process in sorted(stats, key=lambda s: (str(s.get("shard", "")), str(s.get("worker", "")))):
        ms = app_start_ms(process)
        if ms is not None:
            starts.append((_lane(process), ms))
    return starts


def app_start_ms(process: Mapping[str, Any]) -> float | None:
    if process.get("app_start_ms") is not None:
        return float(process["app_start_ms"])
    for what, _, seconds, ok in process.get("events", ()):
        if what == "app" and ok:
            return float(seconds) * 1000.0
    return None


# -- failures ----------------------------------------------------------------------------------------


def _failures(tests: Sequence[TestRecord], ids: Ids) -> str:
    failed = [t for t in tests if t["outcome"] in ("failed", "error")]
    if not failed:
        return "<h2 id='failures'>Failures</h2><p>none</p>"
    return f"<h2 id='failures'>Failures ({len(failed)})</h2>" + "".join(
        _test_details(test, ids[_key(test)], opened=True) for test in failed
    )


def _test_details(test: TestRecord, anchor: str, *, opened: bool = False) -> str:
    outcome = esc(test["outcome"])
    requests = test["requests"]
    head = (
        f"<summary><span class='{outcome}'>{outcome}</span> {esc(test['nodeid'])} "
        f"({test['seconds'] * 1000:.0f} ms, {len(requests)} requests, {esc(where(test))})</summary>"
    )
    body = []
    if test.get("failure"):
        body.append(f"<pre class='failure'>{esc(test['failure'])}</pre>")
    if test.get("failed_request"):
        body.append(f"<p>Failing request:</p><pre class='failure'>{esc(test['failed_request'])}</pre>")
    for title, text in test.get("sections", ()):
        body.append(f"<p>{esc(title)}:</p><pre class='log'>{esc(text)}</pre>")
    if requests:
        body.append(_request_table(test))
    css = f"test {outcome}"
    return f"<details class='{css}' id='{anchor}'{' open' if opened else ''}>{head}{''.join(body)}</details>"


def _request_table(test: TestRecord) -> str:
    requests = test["requests"]
    first = min(r["start"] for r in requests)
    span = max((r["start"] - first) * 1000.0 + (r["ms"] or 0.0) for r in requests) or 1.0
    rows = ["<table class='requests'><tr><th>#</th><th>client</th><th>method</th><th>path</th>"
            "<th>status</th><th>ms</th><th>timeline</th></tr>"]  # fmt: skip
    for number, request in enumerate(requests, 1):
        ms = request["ms"] or 0.0
        left = 100.0 * (request["start"] - first) * 1000.0 / span
        width = max(0.5, 100.0 * ms / span)
        status = request["status"]
        kind = status_class(request, test["outcome"])
        rows.append(
            f"<tr class='{kind}'><td>{number}</td><td>{esc(request['client'] or 'nocrud_client')}</td>"
            f"<td>{esc(request['method'])}</td><td>{esc(request['path'])}</td>"
            f"<td class='status'>{'-' if status is None else status}</td><td>{ms:.1f}</td>"
            f"<td><div class='reqbar'><span style='left:{left:.2f}%;width:{width:.2f}%'></span></div>"
            "</td></tr>"
        )
    rows.append("</table>")
    return "".join(rows)


# -- timeline ----------------------------------------------------------------------------------------


def _timeline(
    tests: Sequence[TestRecord],
    stats: Sequence[Mapping[str, Any]],
    ids: Ids,
    started: float | None,
    finished: float | None,
) -> str:
    lanes: dict[tuple[str, str], list[str]] = defaultdict(list)  # (shard, worker) -> bars
    spans: list[tuple[float, float]] = []
    events_by_worker: dict[tuple[str, str], list[tuple[str, float, float, bool]]] = defaultdict(list)
    for process in stats:
        worker = (str(process.get("shard", "")), str(process.get("worker", "main")))
        for what, start, seconds, ok in process.get("events", ()):
            if what in EVENT_LABELS:
                events_by_worker[worker].append((what, float(start), float(seconds), bool(ok)))
                spans.append((float(start), float(start) + float(seconds)))
    test_spans = {_key(t): _test_span(t) for t in tests}
    spans.extend(span for span in test_spans.values() if span)
    if not spans:
        return ""
    t0 = min([s for s, _ in spans] + ([started] if started else []))
    t1 = max([e for _, e in spans] + ([finished] if finished else []))
    total = max(t1 - t0, 1e-6)

    def pos(start: float, end: float) -> str:
        return (
            f"left:{100.0 * (start - t0) / total:.3f}%;width:{max(0.0, 100.0 * (end - start) / total):.3f}%"
        )

    for worker, events in events_by_worker.items():
        for what, start, seconds, ok in events:
            label = EVENT_LABELS[what]
            if what == "template":
                label = "template (reused)" if _template_reused(stats, worker) else "template build"
            title = f"{label}: {seconds * 1000:.0f} ms" + ("" if ok else " (FAILED)")
            lanes[worker].append(
                f"<span class='ev{'' if ok else ' bad'}' data-event='{esc(what)}' title='{esc(title)}' "
                f"style='{pos(start, start + seconds)}'></span>"
            )
    for test in tests:
        span = test_spans[_key(test)]
        if span is None:
            continue
        start, end = span
        duration = max(end - start, 1e-9)
        segments = []
        for phase, (_, seconds) in _segments(test):
            width = 100.0 * seconds / duration
            segments.append(
                f"<span class='seg {phase}' style='width:{width:.2f}%' data-phase='{phase}'></span>"
            )
        lanes[(str(test.get("shard", "")), test["worker"])].append(
            f"<a href='#{ids[_key(test)]}' class='{esc(test['outcome'])}' title='{esc(_hover(test))}' "
            f"style='{pos(start, end)}' data-test='{esc(test['nodeid'])}'>{''.join(segments)}</a>"
        )
    groups: dict[str, list[str]] = defaultdict(list)
    for (shard, name), items in sorted(
        lanes.items(), key=lambda kv: (_worker_order(kv[0][0]), _worker_order(kv[0][1]))
    ):
        groups[shard].append(
            f"<div class='lane' data-worker='{esc(name)}'><span class='name'>{esc(name)}</span>"
            f"<div class='track'>{''.join(items)}</div></div>"
        )
    sharded = set(groups) != {""}
    rows = [
        f"<div class='shard' data-shard='{esc(shard)}'><div class='shard-name'>shard {esc(shard)}</div>"
        f"{''.join(shard_lanes)}</div>"
        if sharded
        else "".join(shard_lanes)
        for shard, shard_lanes in groups.items()
    ]
    legend = (
        "".join(f"<span><i class='seg {p}'></i>{p}</span>" for p in PHASES)
        + "<span><i class='ev'></i>server / template / pool / app start (thin bar above)</span>"
    )
    how = f"{len(groups)} shards, one lane per worker in each" if sharded else "one lane per worker"
    return (
        f"<h2 id='timeline-head'>Timeline ({total:.2f} s, {how})</h2>"
        f"<div class='legend'>{legend}</div><div class='timeline' id='timeline'>{''.join(rows)}</div>"
    )


def _worker_order(worker: str) -> tuple[int, str]:
    """``gw2`` before ``gw10``; shard ``2/12`` before ``10/12`` (by the first number in the name)."""
    number = re.search(r"\d+", worker)
    return (int(number.group(0)) if number else -1, worker)


def _template_reused(stats: Sequence[Mapping[str, Any]], lane: tuple[str, str]) -> bool:
    for process in stats:
        here = (str(process.get("shard", "")), str(process.get("worker", "main")))
        if here == lane and "template" in process:
            return bool(process["template"].get("reused"))
    return False


def _segments(test: TestRecord) -> list[tuple[str, tuple[float, float]]]:
    """handoff / setup (without the handoff) / call / teardown, in order, as (start, seconds)."""
    phases = test["phases"]
    out: list[tuple[str, tuple[float, float]]] = []
    handoff = test.get("handoff")
    if "setup" in phases:
        start, seconds = phases["setup"]
        if handoff:
            out.append(("handoff", (handoff[0], handoff[1])))
            seconds = max(0.0, seconds - handoff[1])
        out.append(("setup", (start, seconds)))
    for phase in ("call", "teardown"):
        if phase in phases:
            out.append((phase, (phases[phase][0], phases[phase][1])))
    return out


def _test_span(test: TestRecord) -> tuple[float, float] | None:
    phases = test["phases"].values()
    if not phases:
        return None
    start = min(s for s, _ in phases)
    return start, start + sum(seconds for _, seconds in phases)


def _hover(test: TestRecord) -> str:
    lines = [f"{test['nodeid']} ({test['outcome']})"]
    phases = dict(_segments(test))
    lines.append("  ".join(f"{p} {phases[p][1] * 1000:.1f} ms" for p in PHASES if p in phases))
    for request in test["requests"][:12]:
        status = "-" if request["status"] is None else request["status"]
        lines.append(f"{request['method']} {request['path']} -> {status} ({(request['ms'] or 0):.1f} ms)")
    if len(test["requests"]) > 12:
        lines.append(f"... {len(test['requests']) - 12} more requests")
    return "\n".join(lines)


# -- tables ------------------------------------------------------------------------------------------


def _slowest_tests(tests: Sequence[TestRecord], ids: Ids) -> str:
    slow = sorted(tests, key=lambda t: -t["seconds"])[:SLOWEST]
    if not slow:
        return ""
    rows = "".join(
        f"<tr><td><a href='#{ids[_key(t)]}'>{esc(t['nodeid'])}</a></td><td class='{esc(t['outcome'])}'>"
        f"{esc(t['outcome'])}</td><td>{t['seconds'] * 1000:.0f}</td>"
        + "".join(f"<td>{seconds * 1000:.1f}</td>" for seconds in _phase_ms(t))
        + f"<td>{len(t['requests'])}</td><td>{esc(where(t))}</td></tr>"
        for t in slow
    )
    return (
        "<h2>Slowest tests</h2><table id='slowest-tests'><tr><th>test</th><th>outcome</th><th>ms</th>"
        "<th>handoff</th><th>setup</th><th>call</th><th>teardown</th><th>requests</th><th>worker</th></tr>"
        f"{rows}</table>"
    )


def _phase_ms(test: TestRecord) -> list[float]:
    phases = dict(_segments(test))
    return [phases[p][1] if p in phases else 0.0 for p in PHASES]


def endpoint_timings(tests: Iterable[TestRecord]) -> dict[str, list[float]]:
    """``{"GET /api/actors/{id}/": [ms, ...]}`` over every answered request."""
    timings: dict[str, list[float]] = defaultdict(list)
    for test in tests:
        for request in test["requests"]:
            if request["ms"] is not None:
                timings[f"{request['method']} {request['route']}"].append(float(request["ms"]))
    return timings


def _slowest_endpoints(tests: Sequence[TestRecord]) -> str:
    timings = endpoint_timings(tests)
    if not timings:
        return ""
    ranked = sorted(timings.items(), key=lambda kv: -percentile(kv[1], 0.95))[:SLOWEST]
    rows = "".join(
        f"<tr><td>{esc(route)}</td><td>{len(ms)}</td><td>{percentile(ms, 0.5):.1f}</td>"
        f"<td>{percentile(ms, 0.95):.1f}</td><td>{max(ms):.1f}</td><td>{sum(ms):.0f}</td></tr>"
        for route, ms in ranked
    )
    return (
        "<h2>Slowest endpoints (by p95)</h2><table id='slowest-endpoints'><tr><th>endpoint</th><th>count</th>"
        f"<th>p50 ms</th><th>p95 ms</th><th>max ms</th><th>total ms</th></tr>{rows}</table>"
    )


def _crud_matrix(tests: Sequence[TestRecord]) -> str:
    rows = [(t, row) for t in tests for row in t.get("crud", ())]
    if not rows:
        return ""
    letters = ["C", "R", "L", "U", "D", "gone"]
    body = "".join(
        f"<tr><td>{esc(row['resource'])}</td>"
        + "".join(
            f"<td class='{esc(row['steps'].get(letter, ''))}'>{letter} {_mark(row['steps'].get(letter))}</td>"
            for letter in letters
        )
        + f"<td>{esc(test['nodeid'])}</td></tr>"
        for test, row in rows
    )
    return f"<h2>CRUD flows</h2><table class='crud' id='crud-matrix'>{body}</table>"


def _mark(status: str | None) -> str:
    return {"completed": "✔", "failed": "✘", "timed_out": "⏱", "skipped": "–"}.get(status or "", "·")
