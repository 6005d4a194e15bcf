"""Shared helpers for the benchmark scripts: summary statistics, the machine line, and RESULTS.md sections.

Each benchmark owns one ``## `` section of bench/RESULTS.md and rewrites only that section, so scripts
written by different people can update the file independently without clobbering each other.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
import platform
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from pytest_nocrud.pg.server import default_home

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
RESULTS_TITLE = "# pytest-nocrud benchmarks"


@dataclasses.dataclass(frozen=True)
class Stats:
    """Summary of repeated timings in seconds; the median is the headline (robust to one slow outlier)."""

    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def p90(self) -> float:
        """Nearest-rank 90th percentile: an observed value, meaningful for small N."""
        ordered = sorted(self.samples)
        return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)

    def minus(self, baseline: float) -> Stats:
        return Stats(tuple(s - baseline for s in self.samples))


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}"


def stats_table(rows: Sequence[tuple[str, Stats]]) -> str:
    """A markdown table in milliseconds: name, N, median, p90, min, max."""
    lines = [
        "| measurement | N | median ms | p90 ms | min ms | max ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, s in rows:
        lines.append(
            f"| {name} | {len(s.samples)} | {ms(s.median)} | {ms(s.p90)} | {ms(s.min)} | {ms(s.max)} |"
        )
    return "\n".join(lines)


def raw_line(name: str, s: Stats) -> str:
    return f"- {name}: " + ", ".join(ms(x) for x in s.samples) + " ms"


def machine_line(extra: str = "") -> str:
    """What the figures depend on, so a reader can tell whether they apply to their machine."""
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    parts = [
        f"`nproc` {cores}",
        f"{platform.system()} {platform.release()}",
        f"Python {platform.python_version()}",
    ]
    if extra:
        parts.append(extra)
    parts.append(today)
    return "Machine: " + ", ".join(parts)


def update_section(heading: str, body: str, path: Path = RESULTS) -> None:
    """Replace the text from ``heading`` up to the next ``## `` heading (or append it); keep the rest."""
    section = f"{heading}\n\n{body.strip()}\n"
    text = path.read_text() if path.exists() else f"{RESULTS_TITLE}\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == heading), None)
    if start is None:
        new = text.rstrip("\n") + "\n\n" + section
    else:
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
            len(lines),
        )
        rest = "".join(lines[end:])
        new = "".join(lines[:start]) + section + ("\n" + rest if rest else "")
    path.write_text(new)


def _cpu_times() -> tuple[int, int]:
    """(idle, total) jiffies over all CPUs from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return fields[3] + fields[4], sum(fields)


def cpu_idle(window: float = 1.0) -> float:
    """Fraction of CPU time idle over ``window`` seconds (1.0 where /proc/stat is missing)."""
    try:
        idle0, total0 = _cpu_times()
        time.sleep(window)
        idle1, total1 = _cpu_times()
    except OSError:
        return 1.0
    return (idle1 - idle0) / max(1, total1 - total0)


def wait_until_quiet(max_wait: float, idle: float = 0.9, log: Callable[[str], None] = print) -> float:
    """Wait (up to ``max_wait`` s) for a window where the CPUs are ``idle`` free; return the last idle.

    Timings on a shared 2-core machine are meaningless while another job runs there; starting in a quiet
    window (and reporting the idle fraction) keeps runs comparable.
    """
    deadline = time.monotonic() + max_wait
    while True:
        seen = cpu_idle(2.0)
        if seen >= idle or time.monotonic() >= deadline:
            return seen
        log(f"waiting for a quiet machine: CPU idle {seen:.0%} < {idle:.0%}")


def bench_home(prefix: str) -> Path:
    """A fresh cluster home where the plugin's default keeps clusters (RAM when /dev/shm is roomy).

    Benchmarks measure what users get, so they use the default location; the directory is theirs to
    remove at the end.
    """
    base = default_home(Path("bench")).parent
    base.mkdir(parents=True, exist_ok=True)
    home = base / f"{prefix}{uuid.uuid4().hex[:12]}"
    home.mkdir(mode=0o755)
    return home
