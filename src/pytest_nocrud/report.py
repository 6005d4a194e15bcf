"""The terminal summary block: server, template, databases handed out, handoff latency."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (no interpolation: every reported figure was really measured)."""
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


def summary_lines(per_process: Sequence[dict[str, Any]]) -> list[str]:
    """One short block from every process's ``Runtime.stats()``; empty when nocrud did nothing."""
    server = next((s["server"] for s in per_process if "server" in s), None)
    if server is None:
        return []
    kind = "embedded" if server["embedded"] else "DSN"
    lines = [f"server: PostgreSQL {server['version']} ({kind})"]
    templates = [s["template"] for s in per_process if "template" in s]
    if templates:
        built = [t for t in templates if not t["reused"]]
        first = (built or templates)[0]
        how = f"built in {first['build_seconds']:.2f}s" if built else "reused"
        if built and first.get("schema"):  # which path the build took: the schema layer's story
            how += f" (schema layer {first['schema']} {first.get('schema_how', 'reused')})"
        lines.append(f"template: {first['name']} (key {first['key'][:12]}) {how}")
    handoffs = [ms for s in per_process for ms in s.get("handoff_ms", [])]
    if handoffs:
        lines.append(
            f"databases handed out: {len(handoffs)}; handoff p50 {percentile(handoffs, 0.5):.2f} ms, "
            f"p95 {percentile(handoffs, 0.95):.2f} ms"
        )
    return lines
