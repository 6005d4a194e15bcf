"""The handoff as real suites see it: the plugin's own p50/p95/max from whole runs of the example suites.

``bench/handoff.py`` times the swap with nothing else going on; in a real suite the app (or the test)
still holds a session when the handoff runs, a pooled app reconnects at once, and the pool's filler
competes for the same two cores. This runs each example suite -- example_app (Django, a connection per
request) and examples/fastapi (SQLAlchemy with a pooled engine and ``pool_pre_ping``) -- at
``-p no:xdist`` and ``-n 2``, ``--rounds`` times, alternating, on a warm template, and reports the
summary line the plugin prints: handoff p50/p95/max, handoffs that waited for a clone, and wall time.

Usage: .venv/bin/python bench/suites.py [--rounds 3] [--no-write]
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from common import bench_home, machine_line, update_section, wait_until_quiet

ROOT = Path(__file__).resolve().parent.parent
SUITES = {
    "example_app (Django)": ROOT / "example_app",
    "examples/fastapi (pooled)": ROOT / "examples" / "fastapi",
}
MODES = {"-p no:xdist": ["-p", "no:xdist"], "-n 2": ["-n", "2"]}
HANDOFF = re.compile(
    r"databases handed out: (\d+); handoff p50 ([0-9.]+) ms, p95 ([0-9.]+) ms, max ([0-9.]+) ms; "
    r"(\d+) waited for a clone"
)
PASSED = re.compile(r"(\d+) passed")
HEADING = "## Handoff in real suites"
GOAL_P95_MS = 2.0


@dataclass
class Run:
    suite: str
    mode: str
    handed: int
    p50: float
    p95: float
    max: float
    waits: int
    wall: float


def run_once(suite: str, path: Path, mode: str, home: Path) -> Run:
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--nocrud-data-dir={home}",
               *MODES[mode]]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, cwd=path, capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - started
    match = HANDOFF.search(done.stdout)
    if done.returncode != 0 or match is None:
        raise SystemExit(f"{suite} {mode} failed:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")
    handed, p50, p95, mx, waits = match.groups()
    return Run(suite, mode, int(handed), float(p50), float(p95), float(mx), int(waits), wall)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    suites = {name: path for name, path in SUITES.items() if (path / "pytest.ini").exists()}
    idle = wait_until_quiet(300)
    home = bench_home("nocrud-bench-suites-")
    runs: list[Run] = []
    try:
        for name, path in suites.items():  # warm-up: build the templates, start the server once
            run_once(name, path, "-p no:xdist", home)
        for round_ in range(args.rounds):
            for name, path in suites.items():
                for mode in MODES:
                    run = run_once(name, path, mode, home)
                    runs.append(run)
                    print(f"round {round_ + 1}: {name} {mode}: p50 {run.p50} p95 {run.p95} max {run.max} "
                          f"waits {run.waits} wall {run.wall:.2f}s", flush=True)  # fmt: skip
    finally:
        subprocess.run([sys.executable, "-m", "pytest_nocrud.cli", "--data-dir", str(home), "server", "stop"],
                       capture_output=True)  # fmt: skip
        shutil.rmtree(home, ignore_errors=True)
    rows = ["| suite | mode | handoffs | p50 ms | p95 ms | max ms | waited for a clone | wall s |",
            "|---|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name in suites:
        for mode in MODES:
            mine = [r for r in runs if r.suite == name and r.mode == mode]

            def med(attr: str, mine: list[Run] = mine) -> float:
                return statistics.median(getattr(r, attr) for r in mine)

            rows.append(f"| {name} | `{mode}` | {mine[0].handed} | {med('p50'):.2f} | {med('p95'):.2f} | "
                        f"{med('max'):.2f} | {med('waits'):.0f} | {med('wall'):.2f} |")  # fmt: skip
    body = "\n".join([
        f"`.venv/bin/python bench/suites.py --rounds {args.rounds}` — medians over {args.rounds} rounds "
        "of the plugin's own summary line (p50/p95/max over all the handoffs of a run), warm template, "
        f"suites alternating. Goal: handoff p95 ≤ {GOAL_P95_MS} ms.",
        "",
        *rows,
        "",
        machine_line(f"CPU idle before start {idle:.0%}"),
        "",
        "Raw runs:",
        *(f"- {r.suite} `{r.mode}`: p50 {r.p50} / p95 {r.p95} / max {r.max} ms, {r.waits} waits, "
          f"{r.wall:.2f} s" for r in runs),
    ])  # fmt: skip
    print(body)
    if not args.no_write:
        update_section(HEADING, body)


if __name__ == "__main__":
    main()
