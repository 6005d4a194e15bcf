"""The perf gate on real records: how much of the example suite it judges, and that it stays quiet.

Runs ``example_app`` ``--runs`` times back to back (``-n 2``, ``--nocrud-perf``, nothing changed between
runs), then judges every ordered pair of runs (baseline = one run, current = another) with the gate's
defaults, exactly as ``nocrud perf DIR --run B --baseline A.json`` does. Reported per pair: routes compared
of routes called, the run-wide shift, and the verdict -- an unchanged pair must pass.

Sensitivity on the same data: for each pair and each judged route, a copy of the current run gets +50 ms on
every request of that one route (what ``time.sleep(0.05)`` in its view does); the table says how often the
gate then fails naming the route (on its own or through its pool).

Usage: .venv/bin/python bench/perf_gate.py [--runs 4] [--record DIR ...] [--no-write]
(``--record DIR``: also judge the runs an earlier ``--nocrud-perf=DIR`` left there, as a set of its own)
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from common import bench_home, machine_line, update_section, wait_until_quiet

from pytest_nocrud.report import perf

ROOT = Path(__file__).resolve().parent.parent
HEADING = "## Perf gate: routes judged, back-to-back verdicts"
SLOWDOWN_MS = 50.0


def record_runs(record: Path, runs: int) -> None:
    home = bench_home("nocrud-bench-perf-")
    base = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--nocrud-data-dir={home}"]
    try:
        subprocess.run([*base, "-p", "no:xdist", "example_app", "-x"], cwd=ROOT, capture_output=True,
                       check=True, timeout=900)  # fmt: skip  # warm-up: template built, server up
        for n in range(runs):
            done = subprocess.run([*base, "-n", "2", "example_app", f"--nocrud-perf={record}"], cwd=ROOT,
                                  capture_output=True, text=True, timeout=900)  # fmt: skip
            print(f"run {n + 1}: {done.stdout.strip().splitlines()[-1]}", flush=True)
            if done.returncode != 0:
                raise SystemExit(done.stdout[-3000:])
    finally:
        subprocess.run([sys.executable, "-m", "pytest_nocrud.cli", "--data-dir", str(home), "server", "stop"],
                       capture_output=True)  # fmt: skip
        shutil.rmtree(home, ignore_errors=True)


def slowed(summary: perf.Summary, *routes: str) -> perf.Summary:
    out = dict(summary)
    for route in routes:
        out[route] = {**summary[route], "ms": [v + SLOWDOWN_MS for v in summary[route]["ms"]]}
    return out


def named(result: perf.Comparison, route: str) -> bool:
    return any(r.route == route or route in dict(r.members) for r in result.regressions)


VARIANTS = {  # the defaults, and what each of their parts buys (false alarms without it)
    "defaults": perf.Settings(),
    "`--threshold 25%`": perf.Settings(threshold=25.0),
    "`--alpha 1` (no rank-sum test)": perf.Settings(alpha=1.0),
    "`--threshold 25% --alpha 1`": perf.Settings(threshold=25.0, alpha=1.0),
}


def judge_set(label: str, record: Path, scratch: Path) -> list[str]:
    run_ids = perf.runs(record)
    summaries = {run: perf.summarize(perf.load(record, run)[1]) for run in run_ids}
    for run, summary in summaries.items():  # through the file, as the CLI reads it
        perf.write_baseline(scratch / f"{run}.json", summary, run_id=run)
    rows = ["| baseline run | current run | routes compared | of which pooled | run-wide shift | verdict |",
            "|---|---|---:|---:|---:|---|"]  # fmt: skip
    alarms = dict.fromkeys(VARIANTS, 0)
    caught_alone = caught_pooled = tried_alone = tried_pooled = pools = pools_caught = 0
    for before, after in itertools.permutations(run_ids, 2):
        baseline = perf.read_baseline(scratch / f"{before}.json")
        for name, settings in VARIANTS.items():
            alarms[name] += perf.compare(baseline, summaries[after], settings).failed
        result = perf.compare(baseline, summaries[after])
        pooled = sum(len(g.routes) for g in result.groups if g.pooled)
        verdict = "**FAIL** " + ", ".join(r.route for r in result.regressions) if result.failed else "pass"
        rows.append(f"| `{before}` | `{after}` | {result.compared} of {result.total} | {pooled} | "
                    f"x{result.shift:.2f} | {verdict} |")  # fmt: skip
        for group in result.groups:
            if group.pooled:  # the whole resource slowed: every route of the pool
                pools += 1
                hit_pool = perf.compare(baseline, slowed(summaries[after], *group.routes))
                pools_caught += any(r.route == group.name for r in hit_pool.regressions)
            for route in group.routes:
                hit = named(perf.compare(baseline, slowed(summaries[after], route)), route)
                if group.pooled:
                    tried_pooled, caught_pooled = tried_pooled + 1, caught_pooled + hit
                else:
                    tried_alone, caught_alone = tried_alone + 1, caught_alone + hit
    pairs = len(rows) - 2
    return [
        f"### {label}: {len(run_ids)} runs, {pairs} ordered pairs",
        "",
        *rows,
        "",
        "Unchanged pairs that failed the gate: "
        + "; ".join(f"{name} **{count} of {pairs}**" for name, count in alarms.items())
        + ".",
        "",
        f"Sensitivity, same pairs: +{SLOWDOWN_MS:g} ms on every request of one judged route of the "
        "current run, one route at a time: caught (the gate fails naming it) for "
        f"**{caught_alone} of {tried_alone}** routes judged on their own, "
        f"**{caught_pooled} of {tried_pooled}** routes judged inside a pool; "
        f"+{SLOWDOWN_MS:g} ms on every route of one pool (a resource-wide slowdown): caught for "
        f"**{pools_caught} of {pools}** pools.",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=4, help="fresh back-to-back runs to record (0: none)")
    parser.add_argument("--record", type=Path, action="append", default=[],
                        help="also judge the runs under this --nocrud-perf DIR (repeatable)")  # fmt: skip
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    idle = wait_until_quiet(120)
    scratch = Path(tempfile.mkdtemp(prefix="nocrud-perf-gate-"))
    sets = [(f"`--record {record}`", record) for record in args.record]
    if args.runs:
        record_runs(scratch / "perf", args.runs)
        sets.append((f"fresh (CPU idle before start {idle:.0%})", scratch / "perf"))
    s = perf.Settings()
    command = " ".join(["bench/perf_gate.py", f"--runs {args.runs}", *(f"--record {r}" for r in args.record)])
    body = [
        f"`.venv/bin/python {command}` — back-to-back runs of `pytest -n 2 example_app --nocrud-perf=DIR` "
        "with nothing changed, then the gate with its defaults "
        f"(`--metric {s.metric} --threshold {s.threshold:g}% --min-samples {s.min_samples} "
        f"--min-delta-ms {s.min_delta_ms:g} --alpha {s.alpha:g}`) on every ordered pair of runs of a set "
        "(what `nocrud perf DIR --run B --baseline A.json` prints). The sensitivity rows add a slowdown to "
        "a copy of the current run's times (what a `time.sleep(0.05)` in a view does); a route with 1–3 "
        "of a pool's 10–40 requests cannot move the pool's median, and 1 request of a route is no verdict "
        "on this machine.",
        "",
        machine_line(),
        "",
    ]
    for label, record in sets:
        body += judge_set(label, record, scratch)
    shutil.rmtree(scratch, ignore_errors=True)
    text = "\n".join(body)
    print(text)
    if not args.no_write:
        update_section(HEADING, text)


if __name__ == "__main__":
    main()
