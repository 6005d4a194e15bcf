"""``--nocrud-perf=DIR``: every HTTP request of a run as one JSON line, and the baseline gate over it.

Layout: ``DIR/<run_id>/<worker>.ndjson`` (one file per xdist worker, so nobody shares a file). A line::

    {"run_id": "20261128T173600Z-4242", "git_sha": "4ac7862…", "ts": 1764351360.12,
     "test": "tests/test_x.py::test_y", "worker": "gw0", "method": "GET",
     "route": "/api/actors/{id}/", "path": "/api/actors/3/", "status": 200, "ms": 4.21}

``nocrud perf DIR`` summarizes one run per route; ``--set-baseline`` stores that summary;
``--baseline`` compares against it. Run ids start with a UTC timestamp, so the newest sorts last.

The baseline keeps each route's request times (``ms``, sorted; at most ``MAX_STORED_SAMPLES``), so the
gate can judge small samples and pool them:

- a route with at least ``min_samples`` requests on both sides is judged on its own; the others are pooled
  by path prefix (``GET /api/actors/{id}/`` and ``DELETE /api/actors/{id}/`` into ``/api/actors/*``), a pool
  still too small is merged into its parent's (``/api/*``); below the first path segment nothing is pooled;
- the *run-wide shift* (the median over the groups of now-p50 / baseline-p50; with at least
  ``SHIFT_MIN_GROUPS`` groups) is divided out when it is a slowdown: a loaded machine slows every route
  alike, a regression slows some routes more than the rest (``max_shift`` gates on the shift itself);
- a group fails when its ``metric``, net of that shift, grew by more than ``threshold`` percent and by more
  than ``min_delta_ms``, *and* a one-sided Mann-Whitney rank-sum test says its requests are slower than
  the baseline's at ``p < alpha / groups`` (Bonferroni: with many groups one of them is always unlucky).
  A group too small to ever reach that p (``1 / C(n+m, n)``) is left out, and the report says so.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import statistics
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypedDict

from ..errors import UsageError
from .record import TestRecord
from .routes import percentile

METRICS = ("p50", "p95", "p99", "mean")
DEFAULT_METRIC = "p50"
DEFAULT_THRESHOLD = 50.0  # percent, net of the run-wide shift; README "perf record and baseline gate"
DEFAULT_MIN_SAMPLES = 10  # per side, a route alone or a pool; 1 / C(20, 10) = 5e-6: can be significant
DEFAULT_MIN_DELTA_MS = 1.0
DEFAULT_ALPHA = 0.001  # family-wise: divided by the number of groups compared
SHIFT_MIN_GROUPS = 5  # fewer groups: no telling machine load from a change, so no shift is divided out
MAX_STORED_SAMPLES = 1000  # per route in a baseline: evenly spaced order statistics beyond that


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
    shard: str | None = None  # the run's shard label; each line carries it when set (``nocrud merge``)

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
                    **({"shard": self.shard} if self.shard else {}),
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


class RouteSummary(TypedDict):
    count: int
    p50: float
    p95: float
    p99: float
    mean: float
    ms: list[float]  # the request times, sorted (thinned to MAX_STORED_SAMPLES in a baseline)


Summary = dict[str, RouteSummary]  # "GET /api/actors/{id}/" -> figures and times


def _thin(ordered: list[float], most: int = MAX_STORED_SAMPLES) -> list[float]:
    """At most ``most`` evenly spaced order statistics of ``ordered`` (the min and max kept)."""
    if len(ordered) <= most:
        return ordered
    step = (len(ordered) - 1) / (most - 1)
    return [ordered[round(i * step)] for i in range(most)]


def summarize(rows: Iterable[Mapping[str, Any]]) -> Summary:
    """Per route: count, latency figures (ms) and the times themselves, over the requests answered."""
    timings: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        if row.get("ms") is not None and row.get("status") is not None:
            timings[f"{row['method']} {row['route']}"].append(float(row["ms"]))
    summary: Summary = {}
    for route, ms in sorted(timings.items()):
        ms.sort()
        summary[route] = {
            "count": len(ms),
            "p50": round(percentile(ms, 0.50), 3),
            "p95": round(percentile(ms, 0.95), 3),
            "p99": round(percentile(ms, 0.99), 3),
            "mean": round(sum(ms) / len(ms), 3),
            "ms": [round(v, 3) for v in ms],
        }
    return summary


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
    stored = {route: {**figures, "ms": _thin(figures["ms"])} for route, figures in summary.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"run_id": run_id, "routes": stored}, indent=1) + "\n", encoding="utf-8")


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
    for figures in routes.values():
        if not isinstance(figures, dict) or not isinstance(figures.get("ms"), list):
            raise UsageError(
                f"{path} keeps no request times (written before the gate judged small samples): "
                f"write it again with `nocrud perf DIR --set-baseline {path}`"
            )
    return routes


def parse_threshold(text: str, option: str = "--threshold") -> float:
    """``20%`` or ``20`` -> 20.0 (percent slower that still passes)."""
    try:
        value = float(text.strip().rstrip("%"))
    except ValueError:
        value = -1.0
    if value < 0:
        raise UsageError(f"{option} {text!r}: a percentage such as 20% (how much slower passes)")
    return value


# -- the gate ------------------------------------------------------------------------------------------


def figure(ms: list[float], metric: str) -> float:
    if metric == "mean":
        return sum(ms) / len(ms)
    return percentile(ms, {"p50": 0.50, "p95": 0.95, "p99": 0.99}[metric])


def _gaussian_binomial(n: int, m: int) -> list[int]:
    """Coefficients of the Gaussian binomial [n+m choose n]_q: how many of the C(n+m, n) orderings of two
    tie-free samples of sizes n and m give each value 0..n*m of the Mann-Whitney U."""
    poly = [1]
    for i in range(1, n + 1):
        grown = poly + [0] * (m + i)
        for j, c in enumerate(poly):  # times (1 - q^(m+i))
            grown[j + m + i] -= c
        for j in range(i, len(grown)):  # divided by (1 - q^i)
            grown[j] += grown[j - i]
        poly = grown[: n * m + 1]
    return poly + [0] * (n * m + 1 - len(poly))


def rank_sum_p(before: list[float], after: list[float]) -> float:
    """One-sided Mann-Whitney U test: the chance of ``after`` looking this much slower than ``before``
    if both came from one distribution. Exact for small samples, normal approximation beyond."""
    n, m = len(before), len(after)
    merged = sorted([(v, 0) for v in before] + [(v, 1) for v in after])
    rank_sum, ties, i = 0.0, 0.0, 0
    while i < len(merged):  # mid-ranks for ties
        j = i
        while j < len(merged) and merged[j][0] == merged[i][0]:
            j += 1
        mid = (i + j + 1) / 2
        rank_sum += mid * sum(1 for k in range(i, j) if merged[k][1] == 1)
        ties += (j - i) ** 3 - (j - i)
        i = j
    u = rank_sum - m * (m + 1) / 2  # pairs (before, after) with after slower; ties count 1/2
    if n * m <= 4000:
        counts = _gaussian_binomial(min(n, m), max(n, m))
        return sum(counts[math.ceil(u - 1e-9) :]) / math.comb(n + m, n)
    variance = n * m / 12 * ((n + m + 1) - ties / ((n + m) * (n + m - 1)))
    if variance <= 0:
        return 1.0
    z = (u - 0.5 - n * m / 2) / math.sqrt(variance)
    return 0.5 * math.erfc(z / math.sqrt(2))


@dataclasses.dataclass(frozen=True)
class Group:
    """A route judged on its own, or a pool of routes with too few requests each (``/api/actors/*``)."""

    name: str
    routes: tuple[str, ...]
    before: list[float]
    after: list[float]

    @property
    def pooled(self) -> bool:
        return self.name.endswith("*")


@dataclasses.dataclass(frozen=True)
class Regression:
    route: str  # a route, or a pool's name
    baseline: float
    current: float  # as measured
    shift: float  # the run-wide shift divided out (1.0: none)
    p: float
    members: tuple[tuple[str, float], ...] = ()  # a pool's routes with their own change (%)

    @property
    def percent(self) -> float:
        if self.baseline <= 0:
            return float("inf")
        return 100.0 * (self.current / self.shift / self.baseline - 1.0)


@dataclasses.dataclass(frozen=True)
class Settings:
    metric: str = DEFAULT_METRIC
    threshold: float = DEFAULT_THRESHOLD
    min_samples: int = DEFAULT_MIN_SAMPLES
    min_delta_ms: float = DEFAULT_MIN_DELTA_MS
    alpha: float = DEFAULT_ALPHA
    max_shift: float | None = None


@dataclasses.dataclass(frozen=True)
class Comparison:
    regressions: list[Regression]
    groups: list[Group]  # what was judged
    total: int  # routes of the current run
    too_few: list[str]  # in both runs, but too few requests even pooled (or to ever be significant)
    new: list[str]  # in the current run only
    shift: float  # the run-wide shift measured (median over groups of now/baseline p50)
    discounted: float  # the shift divided out: max(1, shift), or 1 with fewer than SHIFT_MIN_GROUPS
    settings: Settings

    @property
    def compared(self) -> int:
        return sum(len(group.routes) for group in self.groups)

    @property
    def shift_failed(self) -> bool:
        limit = self.settings.max_shift
        return limit is not None and self.shift > 1.0 + limit / 100.0

    @property
    def failed(self) -> bool:
        return bool(self.regressions) or self.shift_failed


def _prefix(route: str) -> tuple[str, ...]:
    """``GET /api/actors/{id}/`` -> ``("api", "actors")``: the path up to its first placeholder."""
    out: list[str] = []
    for part in route.split(" ", 1)[-1].split("/"):
        if part.startswith("{"):
            break
        if part:
            out.append(part)
    return tuple(out)


def _group(baseline: Summary, current: Summary, min_samples: int) -> tuple[list[Group], list[str]]:
    def times(routes: list[str]) -> tuple[list[float], list[float]]:
        before = sorted(v for r in routes for v in baseline[r]["ms"])
        return before, sorted(v for r in routes for v in current[r]["ms"])

    groups: list[Group] = []
    pools: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for route in sorted(baseline.keys() & current.keys()):
        before, after = times([route])
        if min(len(before), len(after)) >= min_samples:
            groups.append(Group(route, (route,), before, after))
        else:
            pools[_prefix(route)].append(route)
    left: list[str] = []
    while pools:  # deepest prefix first: a pool too small joins its parent's
        depth = max(len(key) for key in pools)
        for key in sorted(key for key in pools if len(key) == depth):
            routes = sorted(pools.pop(key))
            before, after = times(routes)
            if min(len(before), len(after)) >= min_samples:
                name = "/" + "".join(part + "/" for part in key) + "*"
                groups.append(Group(name, tuple(routes), before, after))
            elif depth > 1:
                pools[key[:-1]].extend(routes)
            else:
                left.extend(routes)
    return groups, left


def compare(baseline: Summary, current: Summary, settings: Settings | None = None) -> Comparison:
    """Routes (alone or pooled) that got slower than ``settings`` allow, net of the run-wide shift."""
    s = settings or Settings()
    if s.metric not in METRICS:
        raise UsageError(f"--metric {s.metric!r}: choose one of {', '.join(METRICS)}")
    if not 0 < s.alpha <= 1:
        raise UsageError(f"--alpha {s.alpha:g}: a probability in (0, 1]; 1 turns the rank-sum test off")
    groups, too_few = _group(baseline, current, max(1, s.min_samples))
    if s.alpha < 1:  # a group that could never be significant is not judged, whatever it shows
        level = s.alpha / max(1, len(groups))
        reachable = [g for g in groups if 1 / math.comb(len(g.before) + len(g.after), len(g.after)) < level]
        too_few += [r for g in groups if g not in reachable for r in g.routes]
        groups = reachable
    medians = [(figure(g.before, "p50"), figure(g.after, "p50")) for g in groups]
    ratios = [after / before for before, after in medians if before > 0]
    shift = statistics.median(ratios) if ratios else 1.0
    discounted = max(1.0, shift) if len(groups) >= SHIFT_MIN_GROUPS else 1.0
    level = s.alpha / max(1, len(groups))
    regressions = []
    for g in groups:
        old = figure(g.before, s.metric)
        net = [v / discounted for v in g.after]
        new = figure(net, s.metric)
        if new - old <= s.min_delta_ms or new <= old * (1.0 + s.threshold / 100.0):
            continue
        p = rank_sum_p(g.before, net)
        if s.alpha < 1 and p >= level:
            continue
        members: tuple[tuple[str, float], ...] = ()
        if g.pooled:
            members = tuple(
                sorted(
                    (
                        (r, 100.0 * (figure(current[r]["ms"], s.metric) / discounted / base - 1.0))
                        for r in g.routes
                        if (base := figure(baseline[r]["ms"], s.metric)) > 0
                    ),
                    key=lambda item: -item[1],
                )
            )
        regressions.append(Regression(g.name, old, figure(g.after, s.metric), discounted, p, members))
    return Comparison(
        regressions=regressions,
        groups=groups,
        total=len(current),
        too_few=sorted(too_few),
        new=sorted(current.keys() - baseline.keys()),
        shift=shift,
        discounted=discounted,
        settings=s,
    )


def comparison_report(result: Comparison) -> str:
    s = result.settings
    pools = [g for g in result.groups if g.pooled]
    alone = len(result.groups) - len(pools)
    head = (
        f"compared {result.compared} of {result.total} route(s) on {s.metric}: {alone} on their own, "
        f"{result.compared - alone} in {len(pools)} pool(s) by path prefix; "
        f"{len(result.too_few)} left out (too few requests even pooled)"
    )
    out = [head + (f"; {len(result.new)} not in the baseline" if result.new else "")]
    for g in pools:
        out.append(f"  pool {g.name} ({len(g.before)}/{len(g.after)} requests): {', '.join(g.routes)}")
    if result.too_few:
        out.append(f"  left out: {', '.join(result.too_few)}")
    level = f"rank-sum p < {s.alpha:g}/{len(result.groups)}" if s.alpha < 1 else "no rank-sum test"
    if result.discounted > 1.0:
        shift = f"run-wide shift x{result.shift:.2f} divided out"
    elif len(result.groups) < SHIFT_MIN_GROUPS:
        shift = f"run-wide shift not divided out (fewer than {SHIFT_MIN_GROUPS} groups)"
    else:
        shift = f"run-wide shift x{result.shift:.2f} (not a slowdown)"
    out.append(
        f"a group fails at +{s.threshold:g}% and +{s.min_delta_ms:g} ms on {s.metric}, {level}; {shift}"
    )
    if result.shift_failed:
        out.append(
            f"the whole run is x{result.shift:.2f} the baseline: more than --max-shift {s.max_shift:g}%"
        )
    if not result.regressions:
        out.append("no route got slower than the threshold")
        return "\n".join(out)
    width = max(len("route"), *(len(r.route) for r in result.regressions))
    out += [f"{len(result.regressions)} route(s) or pool(s) got slower:",
            f"{'route':<{width}}  {'baseline':>10}  {'now':>10}  {'change':>8}  {'p':>8}"]  # fmt: skip
    for r in sorted(result.regressions, key=lambda r: -r.percent):
        out.append(
            f"{r.route:<{width}}  {r.baseline:>8.2f}ms  {r.current:>8.2f}ms  {r.percent:>+7.0f}%  {r.p:>8.1g}"
        )
        if r.members:
            out.append("  of which " + ", ".join(f"{route} {pct:+.0f}%" for route, pct in r.members))
    if result.discounted > 1.0:
        out.append(f"(change: net of the run-wide shift x{result.discounted:.2f})")
    return "\n".join(out)
