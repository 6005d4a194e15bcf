"""The terminal summary block: server, template, startup, handoffs, endpoints, phase shares, slowest tests,
CRUD matrix.

Built from every process's ``Runtime.stats()`` and the run's test records, so it reads the same under
xdist as in one process. Empty when nocrud did nothing (no server was used).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .html import app_starts, handoff_figures
from .record import TestRecord
from .routes import percentile

__all__ = ["baked_login_lines", "percentile", "phase_shares_line", "summary_lines"]

SLOWEST = 5
CRUD_LETTERS = ("C", "R", "L", "U", "D", "gone")
MARKS = {"completed": "✔", "failed": "✘", "timed_out": "⏱", "skipped": "-"}


def summary_lines(
    per_process: Sequence[Mapping[str, Any]],
    records: Sequence[TestRecord] = (),
    *,
    coverage_line: str | None = None,
) -> list[str]:
    """One short block; empty when nocrud did nothing."""
    server = next((s["server"] for s in per_process if "server" in s), None)
    if server is None:
        return _setup_errors(per_process)
    kind = "embedded" if server["embedded"] else "DSN"
    lines = [f"server: PostgreSQL {server['version']} ({kind})"]
    templates = [s["template"] for s in per_process if "template" in s]
    if templates:
        built = [t for t in templates if not t["reused"]]
        first = (built or templates)[0]
        how = f"built in {first['build_seconds']:.2f}s" if built else "reused"
        if built and first.get("restored"):  # from nocrud_template_cache: nothing was built
            how = f"restored from cache in {first['build_seconds']:.2f}s"
        elif built and first.get("schema"):  # which path the build took: the schema layer's story
            how += f" (schema layer {first['schema']} {first.get('schema_how', 'reused')})"
        if not first["key"]:  # serial mode: no template, the tests ran on the database as it was
            lines.append(f"database: {first['name']} (serial mode: used as is, nothing provisioned)")
        else:
            lines.append(f"template: {first['name']} (key {first['key'][:12]}) {how}")
            lines.extend(template_rebuild_lines(per_process))
    startup = _startup(server, per_process)
    if startup:
        lines.append(startup)
    handoffs = handoff_figures(per_process)
    if handoffs:
        head = f"databases handed out: {handoffs.count}" + (f" ({handoffs.split})" if handoffs.split else "")
        tail = [part for part in (handoffs.waits, handoffs.background) if part]
        lines.append("; ".join([head, f"handoff {handoffs.spread}", *tail]))
        lines.extend(pool_note(per_process, handoffs.count))
    if coverage_line:
        lines.append(coverage_line)
    lines.extend(_setup_errors(per_process))
    lines.extend(delayed_ack_note(per_process))
    shares = phase_shares_line(records)
    if shares:
        lines.append(shares)
    lines.extend(_slowest(records))
    lines.extend(crud_matrix(records))
    return lines


def _startup(server: Mapping[str, Any], per_process: Sequence[Mapping[str, Any]]) -> str:
    parts = []
    servers = [s["server"] for s in per_process if "server" in s]
    started = [s["start_ms"] for s in servers if s.get("start_ms") is not None]
    if started:  # whichever process started it (the others found it running)
        parts.append(f"server {started[0]:.0f} ms")
    elif "start_ms" in server:
        parts.append("server already running")
    apps = [f"{worker} {ms:.0f} ms" for worker, ms in app_starts(per_process)]
    if apps:
        parts.append("app " + ", ".join(apps))
    restarts = sorted((str(s.get("worker", "main")), int(s["app_restarts"])) for s in per_process
                      if s.get("app_restarts"))  # fmt: skip
    if restarts:  # an app that exited mid-run, restarted for the next test
        total = sum(count for _, count in restarts)
        each = ", ".join(f"{worker} {count}" for worker, count in restarts)
        parts.append(f"app restarts: {total} ({each})")
    path = critical_path(per_process)
    if path:
        parts.append(path)
    return f"startup: {'; '.join(parts)}" if parts else ""


STEP_NAMES = {"PostgreSQL": "server", "template": "template", "clone pool": "pool", "app": "app"}


def critical_path(per_process: Sequence[Mapping[str, Any]]) -> str:
    """``critical path 1.02 s (server 60 ms, template 12 ms, pool 25 ms, app 920 ms)``: from the first
    resource a process asked for to its app answering, each step's own time (a step that waited for
    another, e.g. the template for the server, is counted without it). The slowest process's path."""
    best: tuple[float, str] | None = None
    for process in per_process:
        events = [(str(e[0]), float(e[1]), float(e[2])) for e in process.get("events", ()) if e[3]]
        events = [e for e in events if e[0] in STEP_NAMES]
        if not events:
            continue
        begin = min(start for _, start, _ in events)
        end = max(start + seconds for _, start, seconds in events)
        own = []
        for name, start, seconds in sorted(events, key=lambda e: e[1]):
            inside = sum(s2 for n2, b2, s2 in events
                         if n2 != name and b2 >= start and b2 + s2 <= start + seconds)  # fmt: skip
            own.append(f"{STEP_NAMES[name]} {max(0.0, seconds - inside) * 1000:.0f} ms")
        if best is None or end - begin > best[0]:
            best = (end - begin, f"critical path {end - begin:.2f} s ({', '.join(own)})")
    return best[1] if best else ""


def template_rebuild_lines(per_process: Sequence[Mapping[str, Any]]) -> list[str]:
    """A template dropped during the run (and rebuilt by it): worth a line, it cost a build."""
    rebuilds = sum(int(s.get("template_rebuilds", 0)) for s in per_process)
    if not rebuilds:
        return []
    workers = sorted(str(s.get("worker", "main")) for s in per_process if s.get("template_rebuilds"))
    return [f"template rebuilt during the run: it disappeared from the server ({', '.join(workers)} noticed)"]


def _setup_errors(per_process: Sequence[Mapping[str, Any]]) -> list[str]:
    seen: dict[str, str] = {}
    for process in per_process:
        for what, text in process.get("errors", {}).items():
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            # The first line is "pytest-nocrud: X is not available:"; the cause comes next.
            seen.setdefault(what, lines[1] if len(lines) > 1 else (lines or [what])[0])
    return [f"SETUP FAILED: {what}: {line}" for what, line in seen.items()]


def phase_shares_line(records: Sequence[TestRecord]) -> str:
    """``time: handoff wait 3% · setup 12% · call 80% · teardown 5% of 41.2 s (sum over tests)``.

    The shares of the tests' summed phase time (not the wall: under xdist the tests overlap). The
    handoff (waiting for a fresh database) happens inside setup: it is shown on its own and taken out
    of setup. Empty when no test recorded a phase.
    """
    totals = dict.fromkeys(("handoff wait", "setup", "call", "teardown"), 0.0)
    for record in records:
        phases = record.get("phases", {})
        setup = phases["setup"][1] if "setup" in phases else 0.0
        span = record.get("handoff")
        handoff = min(span[1], setup) if span else 0.0
        totals["handoff wait"] += handoff
        totals["setup"] += setup - handoff
        totals["call"] += phases["call"][1] if "call" in phases else 0.0
        totals["teardown"] += phases["teardown"][1] if "teardown" in phases else 0.0
    whole = sum(totals.values())
    if whole <= 0:
        return ""
    shares = " · ".join(f"{name} {100 * seconds / whole:.0f}%" for name, seconds in totals.items())
    return f"time: {shares} of {whole:.1f} s (sum over tests)"


def _slowest(records: Sequence[TestRecord]) -> list[str]:
    slow = sorted((r for r in records if r["requests"] or r.get("handoff")), key=lambda r: -r["seconds"])
    if not slow:
        return []
    return ["slowest tests:"] + [
        f"  {r['seconds']:7.2f}s  {r['nodeid']} ({r['outcome']}, {len(r['requests'])} requests)"
        for r in slow[:SLOWEST]
    ]


def crud_matrix(records: Sequence[TestRecord]) -> list[str]:
    """``actor  C ✔ R ✔ L ✔ U ✔ D ✔ gone ✔`` per CRUD flow run, failed ones marked ``✘ FAILED``."""
    rows = [(record, row) for record in records for row in record.get("crud", ())]
    if not rows:
        return []
    width = max(len(row["resource"]) for _, row in rows)
    runs_of: dict[str, int] = {}
    for _, row in rows:
        runs_of[row["resource"]] = runs_of.get(row["resource"], 0) + 1
    lines = ["CRUD flows:"]
    for record, row in sorted(rows, key=lambda pair: pair[1]["resource"]):
        cells = " ".join(f"{letter} {MARKS.get(row['steps'][letter], '?')}" for letter in CRUD_LETTERS
                         if letter in row["steps"])  # fmt: skip
        broken = any(status in ("failed", "timed_out") for status in row["steps"].values())
        where = f" ({record['nodeid']})" if broken or runs_of[row["resource"]] > 1 else ""
        # A flow a passing test ran to see it fail (e.g. to check the error message) is no failure.
        mark = ""
        if broken:
            mark = "  FAILED" if record["outcome"] != "passed" else "  (failed as the test expected)"
        lines.append(f"  {row['resource']:<{width}}  {cells}" + mark + where)
    return lines


def pool_note(per_process: Sequence[Mapping[str, Any]], handoffs: int) -> list[str]:
    """Say so when the clone pool could not keep up -- tests then pay a whole CREATE DATABASE each --
    by how much, and what to change: a server that writes each clone to disk wants fsync off (a
    throwaway test server loses nothing by it), else the template's size is what costs."""
    waits = sum(int(s.get("handoff_waits", 0)) for s in per_process)
    if waits < 5 or waits * 10 < handoffs:
        return []
    waited_s = sum(float(s.get("handoff_waited_ms", 0.0)) for s in per_process) / 1000
    how_much = f"{waits} of {handoffs} handoffs ({waits * 100 // handoffs}%) waited for a clone"
    if waited_s:
        how_much += f", {waited_s:.1f} s in all"
    if any(s.get("server_fsync") for s in per_process):
        advice = (
            "the server runs with fsync on, so every clone is written through to disk. For a test-only "
            "server (a CI service container) start it with -c fsync=off -c full_page_writes=off -c "
            "synchronous_commit=off, or its data dir on tmpfs"
        )
    else:
        advice = "cloning the template takes longer than a test; a bigger template costs more per clone"
    return [f"note: {how_much}: {advice}. See README, 'When the pool cannot keep up'."]


def delayed_ack_note(per_process: Sequence[Mapping[str, Any]]) -> list[str]:
    """Name the ~40 ms-per-request symptom once: most requests in the delayed-ACK band."""
    count = sum(s.get("requests", {}).get("count", 0) for s in per_process)
    slow = sum(s.get("requests", {}).get("delayed_ack", 0) for s in per_process)
    if count < 20 or slow * 2 < count:
        return []
    return [
        f"note: {slow} of {count} requests took 40-50 ms: the signature of Nagle's algorithm meeting "
        "delayed ACKs (an app server that writes responses in several small sends without "
        "TCP_NODELAY, e.g. Django's stock runserver). See README, 'Requests that take 40 ms'."
    ]


def baked_login_lines(per_process: Sequence[Mapping[str, Any]]) -> list[str]:
    """How the template's baked logins fared: reused for free, or rejected and replaced by live logins."""
    reused = sum(int(s.get("reused", 0)) for s in per_process)
    rejected: dict[str, str] = {}
    for s in per_process:
        rejected.update(s.get("rejected", {}))
    if not reused and not rejected:
        return []
    lines = [f"baked logins reused: {reused} (no login requests)"]
    for label, why in sorted(rejected.items()):
        lines.append(
            f"baked login {label!r} was rejected by the app ({why}): those tests logged in live. "
            "The template's sessions have probably expired: rebuild it with --nocrud-rebuild"
        )
    return lines
