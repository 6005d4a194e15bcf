"""``--nocrud-perf=DIR``: every HTTP request of a run as one JSON line, and the baseline gate over it.

Layout: ``DIR/<run_id>/<worker>.ndjson`` (one file per xdist worker, so nobody shares a file). A line::

    {"run_id": "20261128T173600Z-4242", "git_sha": "4ac7862…", "ts": 1764351360.12,
     "test": "tests/test_x.py::test_y", "worker": "gw0", "method": "GET",
     "route": "/api/actors/{id}/", "path": "/api/actors/3/", "status": 200, "ms": 4.21}

``nocrud perf DIR`` summarizes one run per route; ``--set-baseline`` stores that summary;
``--baseline`` compares against it. Run ids start with a UTC timestamp, so the newest sorts last.

The gate must not cry wolf: a route is compared only when both sides have at least ``min_samples``
requests, the default statistic is the median (one slow request cannot move it), and a slowdown must
exceed both the relative threshold and an absolute floor (``min_delta_ms``: +40 % of 2 ms is noise).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .errors import UsageError
from .record import TestRecord
from .routes import percentile

METRICS = ("p50", "p95", "p99", "mean")
DEFAULT_METRIC = "p50"
DEFAULT_THRESHOLD = 25.0  # percent; see README "Perf record and baseline gate" for the measurement
DEFAULT_MIN_SAMPLES = 20
DEFAULT_MIN_DELTA_MS = 1.0


def new_run_id(pid: int | None = None) -> str:
    """``20261128T173600Z-4242``: sorts by start time; the pid keeps two runs of one second apart."""
    return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{pid if pid is not None else os.getpid()}"


def git_sha(directory: Path) -> str | None:
    """HEAD of the project's git checkout, or None (not a checkout, no git)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and sha else None


@dataclasses.dataclass
class PerfRecorder:
    """Appends each finished test's requests to this worker's file (written as the run goes)."""

    directory: Path
    run_id: str
    worker: str
    git_sha: str | None

    @property
    def path(self) -> Path:
        return self.directory / self.run_id / f"{self.worker}.ndjson"

    def add(self, record: TestRecord) -> None:
        lines = [
            json.dumps(
                {
                    "run_id": self.run_id,
                    "git_sha": self.git_sha,
                    "ts": round(request["start"], 6),
                    "test": record["nodeid"],
                    "worker": self.worker,
                    "method": request["method"],
                    "route": request["route"],
                    "path": request["path"],
                    "status": request["status"],
                    "ms": None if request["ms"] is None else round(request["ms"], 3),
                }
            )
            for request in record["requests"]
        ]
        if not lines:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as out:
            out.write("\n".join(lines) + "\n")


# -- reading and summarizing ---------------------------------------------------------------------------


def runs(directory: Path) -> list[str]:
    """Run ids under ``directory``, oldest first."""
    if not directory.is_dir():
        return []
    return sorted(p.name for p in directory.iterdir() if p.is_dir() and any(p.glob("*.ndjson")))


def load(directory: Path, run_id: str | None = None) -> tuple[str, list[dict[str, Any]]]:
    """``(run_id, requests)`` of ``run_id`` or of the newest run."""
    available = runs(directory)
    if not available:
        raise UsageError(f"no perf record under {directory}: run pytest with --nocrud-perf={directory} first")
    chosen = run_id or available[-1]
    if chosen not in available:
        raise UsageError(f"no run {chosen!r} under {directory}; runs there: {', '.join(available[-5:])}")
    rows: list[dict[str, Any]] = []
    for path in sorted((directory / chosen).glob("*.ndjson")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                rows.append(json.loads(line))
    return chosen, rows


Summary = dict[str, dict[str, float]]  # "GET /api/actors/{id}/" -> {"count", "p50", "p95", "p99", "mean"}


def summarize(rows: Iterable[Mapping[str, Any]]) -> Summary:
    """Per route: count and latency figures (ms) over the requests that got a response."""
    timings: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        if row.get("ms") is not None and row.get("status") is not None:
            timings[f"{row['method']} {row['route']}"].append(float(row["ms"]))
    return {
        route: {
            "count": len(ms),
            "p50": round(percentile(ms, 0.50), 3),
            "p95": round(percentile(ms, 0.95), 3),
            "p99": round(percentile(ms, 0.99), 3),
            "mean": round(sum(ms) / len(ms), 3),
        }
        for route, ms in sorted(timings.items())
    }


def summary_table(summary: Summary) -> str:
    width = max([len("route"), *(len(r) for r in summary)])
    lines = [f"{'route':<{width}}  {'count':>6}  {'p50':>8}  {'p95':>8}  {'p99':>8}  {'mean':>8}"]
    for route, figures in summary.items():
        lines.append(
            f"{route:<{width}}  {int(figures['count']):>6}  {figures['p50']:>8.2f}  {figures['p95']:>8.2f}  "
            f"{figures['p99']:>8.2f}  {figures['mean']:>8.2f}"
        )
    return "\n".join(lines)


def write_baseline(path: Path, summary: Summary, *, run_id: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"run_id": run_id, "routes": summary}, indent=2) + "\n", encoding="utf-8")


def read_baseline(path: Path) -> Summary:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(
            f"no baseline at {path}: write one with `nocrud perf DIR --set-baseline {path}`"
        ) from None
    except ValueError as exc:
        raise UsageError(f"{path} is not a perf baseline (invalid JSON: {exc})") from None
    routes = data.get("routes") if isinstance(data, dict) else None
    if not isinstance(routes, dict):
        raise UsageError(f'{path} is not a perf baseline: expected {{"routes": {{...}}}}')
    return routes


def parse_threshold(text: str) -> float:
    """``20%`` or ``20`` -> 20.0 (percent slower that still passes)."""
    try:
        value = float(text.strip().rstrip("%"))
    except ValueError:
        value = -1.0
    if value < 0:
        raise UsageError(f"--threshold {text!r}: a percentage such as 20% (how much slower passes)")
    return value


@dataclasses.dataclass(frozen=True)
class Regression:
    route: str
    baseline: float
    current: float

    @property
    def percent(self) -> float:
        return 100.0 * (self.current / self.baseline - 1.0) if self.baseline > 0 else float("inf")


@dataclasses.dataclass(frozen=True)
class Comparison:
    regressions: list[Regression]
    compared: int
    too_few: list[str]  # routes left out: fewer than min_samples on either side


def compare(
    baseline: Summary,
    current: Summary,
    *,
    metric: str = DEFAULT_METRIC,
    threshold: float = DEFAULT_THRESHOLD,
    min_samples: int = DEFAULT_MIN_SAMPLES,
    min_delta_ms: float = DEFAULT_MIN_DELTA_MS,
) -> Comparison:
    """Routes whose ``metric`` grew by more than ``threshold`` percent and ``min_delta_ms``."""
    if metric not in METRICS:
        raise UsageError(f"--metric {metric!r}: choose one of {', '.join(METRICS)}")
    regressions, too_few, compared = [], [], 0
    for route in sorted(baseline.keys() & current.keys()):
        before, after = baseline[route], current[route]
        if min(int(before.get("count", 0)), int(after.get("count", 0))) < min_samples:
            too_few.append(route)
            continue
        compared += 1
        old, new = float(before[metric]), float(after[metric])
        if new - old > min_delta_ms and new > old * (1.0 + threshold / 100.0):
            regressions.append(Regression(route, old, new))
    return Comparison(regressions, compared, too_few)


def comparison_report(result: Comparison, *, metric: str, threshold: float, min_samples: int) -> str:
    head = (
        f"compared {result.compared} route(s) on {metric} (threshold {threshold:g}%, at least {min_samples} "
        f"requests each side; {len(result.too_few)} route(s) with fewer left out)"
    )
    if not result.regressions:
        return f"{head}\nno route got slower than the threshold"
    width = max(len("route"), *(len(r.route) for r in result.regressions))
    lines = [head, f"{len(result.regressions)} route(s) got slower:",
             f"{'route':<{width}}  {'baseline':>10}  {'now':>10}  {'change':>8}"]  # fmt: skip
    for r in sorted(result.regressions, key=lambda r: -r.percent):
        lines.append(f"{r.route:<{width}}  {r.baseline:>8.2f}ms  {r.current:>8.2f}ms  {r.percent:>+7.0f}%")
    return "\n".join(lines)
