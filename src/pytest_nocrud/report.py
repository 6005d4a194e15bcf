"""The terminal summary block: server, template, databases handed out, handoff latency."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (no interpolation: every reported figure was really measured)."""
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1))
    return ordered[index]


def summary_lines(per_process: Sequence[dict[str, Any]]) -> list[str]:
    """One short block from every process's ``Runtime.stats()``: where the setup time went."""
    servers = [s["server"] for s in per_process if "server" in s]
    if not servers:
        return []
    server = servers[0]
    started = [s["start_ms"] for s in servers if s.get("start_ms") is not None]
    if not server["embedded"]:
        how = "DSN"
    elif started:
        how = f"embedded, started in {started[0]:.0f} ms"
    else:
        how = "embedded, already running"
    lines = [f"server: PostgreSQL {server['version']} ({how})"]
    templates = [s["template"] for s in per_process if "template" in s]
    if templates:
        built = [t for t in templates if not t["reused"]]
        first = (built or templates)[0]
        how = f"built in {first['build_seconds']:.2f}s" if built else "reused"
        if built and first.get("schema"):  # which path the build took: the schema layer's story
            how += f" (schema layer {first['schema']} {first.get('schema_how', 'reused')})"
        if not first["key"]:  # serial mode: no template, the tests ran on the database as it was
            lines.append(f"database: {first['name']} (serial mode: used as is, nothing provisioned)")
        else:
            lines.append(f"template: {first['name']} (key {first['key'][:12]}) {how}")
    apps = sorted((s["worker"], s["app_start_ms"]) for s in per_process if "app_start_ms" in s)
    if apps:
        lines.append("app start: " + ", ".join(f"{worker} {ms:.0f} ms" for worker, ms in apps))
    handoffs = [ms for s in per_process for ms in s.get("handoff_ms", [])]
    if handoffs:
        waits = sum(s.get("handoff_waits", 0) for s in per_process)
        lines.append(
            f"databases handed out: {len(handoffs)}; handoff p50 {percentile(handoffs, 0.5):.2f} ms, "
            f"p95 {percentile(handoffs, 0.95):.2f} ms, max {max(handoffs):.2f} ms; "
            f"{waits} waited for a clone"
        )
    lines.extend(delayed_ack_note(per_process))
    return lines


def delayed_ack_note(per_process: Sequence[dict[str, Any]]) -> list[str]:
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


def baked_login_lines(per_process: Sequence[dict[str, Any]]) -> list[str]:
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
