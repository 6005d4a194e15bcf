"""What isolation costs when unchanged databases are handed on: isolated runs vs one shared database.

Two suites, each run the same way in three modes, alternating (A B C A B C ...) so drift hits all alike:

* ``reuse``   pytest-nocrud as shipped: a test that changed nothing keeps its database for the next one;
* ``clone``   ``-o nocrud_reuse_unchanged=false``: a fresh clone for every test (the behaviour before);
* ``shared``  one dirty database per worker for the whole run (bench/contenders/no_isolation), the bound.

Suites: ``example`` (example_app/, 111 flows, most of them write) and ``trivial`` (200 generated flows
against the example app: 160 reads -- lists, details, 403s -- and 40 creates with unique names, so all
pass in every mode). Fair bound: a test that fails in ``shared`` mode (it sees earlier tests' rows) is
deselected in *every* mode before the measured rounds, so each mode runs exactly the same passing tests.

Per run: wall seconds (pytest's own "in N s"), and PostgreSQL CPU seconds (the postmaster's own and
reaped children's utime+stime plus the live backends', from /proc, before and after) per test. One
embedded server is kept running for all runs (``nocrud server start`` on a bench data dir).

With ``--durable``, also the example suite at ``-n 2`` against a server like a CI service container
(cluster on disk under /var/tmp, fsync/synchronous_commit/full_page_writes on, through
``--nocrud-dsn``): ``reuse`` vs ``clone``, with the summary's handoff figures.

Usage: .venv/bin/python bench/reuse.py [--rounds 3] [--workers 1,2] [--durable] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import machine_line, update_section

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "example_app"
SHARED_CONFTEST = ROOT / "bench" / "contenders" / "no_isolation" / "conftest.py"
HEADING = "## Paying for a fresh database only when a test wrote (issue 22)"
MODES = ("reuse", "clone", "shared")
TICKS = os.sysconf("SC_CLK_TCK")

TRIVIAL = '''
"""200 trivial flows: reads (lists as a producer, an anonymous 403) and creates with unique names."""
import itertools
import pytest

READ_PATHS = ["/api/universes/", "/api/productions/", "/api/characters/", "/api/tags/", "/api/pitches/"]
_names = itertools.count()


@pytest.mark.parametrize("n", range(128))
def test_read(producer, n):
    assert producer.get(READ_PATHS[n % len(READ_PATHS)]).status_code == 200


@pytest.mark.parametrize("n", range(32))
def test_anonymous_is_refused(nocrud_client, n):
    assert nocrud_client.get("/api/auth/me/").status_code == 403


@pytest.mark.parametrize("n", range(40))
def test_create(producer, n):
    response = producer.post("/api/tag-categories/", json={"name": f"bench-{n}-{next(_names)}"})
    assert response.status_code == 201, response.text
'''


def log(message: str) -> None:
    print(f"[reuse-bench] {message}", file=sys.stderr, flush=True)


def postgres_cpu(data_dir: Path) -> float:
    """CPU seconds of the postmaster and every backend it ever had (reaped ones count in its cutime)."""
    pid_file = next(data_dir.glob("pg*/data/postmaster.pid"))
    postmaster = int(pid_file.read_text().split()[0])
    total = 0
    for pid in [postmaster, *_children(postmaster)]:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
        if pid == postmaster:
            total += int(fields[13]) + int(fields[14])  # cutime, cstime: the backends that exited
    return total / TICKS


def _children(parent: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            out.append(int(stat.parent.name))
    return out


def make_suite(work: Path, name: str, mode: str) -> Path:
    target = work / f"{name}-{mode}"
    shutil.copytree(EXAMPLE, target, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    if name == "trivial":
        for test in (target / "tests").glob("test_*.py"):
            test.unlink()
        (target / "tests" / "test_trivial.py").write_text(TRIVIAL)
    if mode == "shared":
        shutil.copy(SHARED_CONFTEST, target / "conftest.py")
    return target


def run(path: Path, mode: str, workers: int, data_dir: Path, deselect: list[str]) -> tuple[float, float, int, list[str]]:
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--nocrud-data-dir={data_dir}", "-rf"]
    args += ["-p", "no:xdist"] if workers == 1 else ["-n", str(workers)]
    if mode == "clone":
        args += ["-o", "nocrud_reuse_unchanged=false"]
    for nodeid in deselect:
        args += ["--deselect", nodeid]
    before = postgres_cpu(data_dir)
    proc = subprocess.run(args, cwd=path, capture_output=True, text=True)
    cpu = postgres_cpu(data_dir) - before
    out = proc.stdout
    wall = re.search(r" in ([0-9.]+)s", out)
    passed = re.search(r"(\d+) passed", out)
    failed = re.findall(r"^FAILED (\S+)", out, re.M)
    if wall is None or passed is None:
        raise SystemExit(f"no result from {path} ({mode}):\n{out[-3000:]}\n{proc.stderr[-2000:]}")
    return float(wall.group(1)), cpu, int(passed.group(1)), failed


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--suites", default="trivial,example")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--durable", action="store_true")
    opts = parser.parse_args()
    workers = [int(w) for w in opts.workers.split(",")]
    suites = opts.suites.split(",")
    work = Path(tempfile.mkdtemp(prefix="nocrud-bench-reuse-"))
    data_dir = Path(f"/tmp/nocrud-bench-reuse-pg-{os.getpid()}")  # the server's OS user must reach it
    nocrud = [str(Path(sys.executable).parent / "nocrud"), "server"]
    subprocess.run([*nocrud, "start", f"--data-dir={data_dir}"], check=True, cwd=EXAMPLE, capture_output=True)
    rows: list[str] = []
    try:
        for name in suites:
            paths = {mode: make_suite(work, name, mode) for mode in MODES}
            for n in workers:
                # Warm-up, and the fair bound: what fails with one shared database is left out everywhere.
                failing: list[str] = []
                for _ in range(2):  # which tests fail on a shared database depends on the order: union
                    failing += [f for f in run(paths["shared"], "shared", n, data_dir, failing)[3] if f not in failing]
                run(paths["reuse"], "reuse", n, data_dir, failing)
                log(f"{name} -n {n}: {len(failing)} tests fail with one shared database; deselected in all modes")
                results: dict[str, list[tuple[float, float, int]]] = {mode: [] for mode in MODES}
                for round_ in range(opts.rounds):
                    for mode in MODES:
                        for _attempt in range(4):
                            wall, cpu, passed, failed = run(paths[mode], mode, n, data_dir, failing)
                            if not failed or mode != "shared":
                                break
                            failing += failed  # one more order-dependent failure of the bound: out everywhere
                            log(f"{name} shared -n {n}: {failed} failed too; deselected from now on")
                        if failed:
                            raise SystemExit(f"{name} {mode} -n {n}: failed {failed}")
                        results[mode].append((wall, cpu, passed))
                        log(f"{name} -n {n} round {round_ + 1} {mode}: {wall:.2f} s, PostgreSQL {cpu:.2f} s CPU, {passed} passed")
                rows.append(render(name, n, results, len(failing)))
    finally:
        subprocess.run([*nocrud, "stop", f"--data-dir={data_dir}"], cwd=EXAMPLE, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(data_dir, ignore_errors=True)
    durable = durable_rows(work, opts.rounds) if opts.durable else []
    body = "\n".join(
        [
            f"`.venv/bin/python bench/reuse.py --rounds {opts.rounds} --workers {opts.workers} --suites {opts.suites}`",
            "",
            machine_line(),
            "",
            "Medians over the rounds; ratios are of medians against `shared` (one dirty database per worker,",
            "the bound). CPU is PostgreSQL's (all its processes) per test.",
            "",
            "| suite | workers | tests | shared wall | reuse wall | clone wall | reuse / shared | clone / shared "
            "| PG CPU/test shared | reuse | clone | reuse / clone CPU |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
            *rows,
            *durable,
        ]
    )
    print(body)
    if not opts.no_write:
        update_section(HEADING, body)
    return 0


def durable_rows(work: Path, rounds: int) -> list[str]:
    """The example suite at -n 2 on a disk-backed, fsync-on server: reuse vs clone."""
    sys.path.insert(0, str(ROOT / "tests"))
    from _support import start_password_server  # noqa: PLC0415 - the tests' own durable server

    server = start_password_server(durable_on_disk=True)
    path = make_suite(work, "example-durable", "reuse")
    lines = {"reuse": [], "clone": []}  # type: dict[str, list[tuple[float, str]]]
    try:
        for round_ in range(rounds):
            for mode in ("reuse", "clone"):
                args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2",
                        f"--nocrud-dsn={server.admin.dsn}"]  # fmt: skip
                if mode == "clone":
                    args += ["-o", "nocrud_reuse_unchanged=false"]
                out = subprocess.run(args, cwd=path, capture_output=True, text=True).stdout
                wall = re.search(r" in ([0-9.]+)s", out)
                handed = next((line for line in out.splitlines() if "databases handed out" in line), "?")
                lines[mode].append((float(wall.group(1)) if wall else float("nan"), handed))
                log(f"durable round {round_ + 1} {mode}: {lines[mode][-1][0]:.1f} s; {handed}")
    finally:
        server.stop()
    walls = {mode: statistics.median(w for w, _ in lines[mode]) for mode in lines}
    return [
        "",
        "Disk-backed server with fsync on (`--durable`; example suite, `-n 2`, via `--nocrud-dsn`):",
        "",
        f"- reuse: median {walls['reuse']:.1f} s; last run: `{lines['reuse'][-1][1]}`",
        f"- clone: median {walls['clone']:.1f} s; last run: `{lines['clone'][-1][1]}`",
        f"- clone / reuse wall: {walls['clone'] / walls['reuse']:.2f}x",
    ]


def render(name: str, workers: int, results: dict[str, list[tuple[float, float, int]]], left_out: int) -> str:
    wall = {mode: statistics.median(r[0] for r in results[mode]) for mode in MODES}
    tests = results["reuse"][0][2]
    cpu = {mode: statistics.median(r[1] for r in results[mode]) / tests * 1000 for mode in MODES}
    label = "-p no:xdist" if workers == 1 else f"-n {workers}"
    return (
        f"| {name} | {label} | {tests} ({left_out} left out) | {wall['shared']:.2f} s | {wall['reuse']:.2f} s "
        f"| {wall['clone']:.2f} s | {wall['reuse'] / wall['shared']:.2f}x | {wall['clone'] / wall['shared']:.2f}x "
        f"| {cpu['shared']:.1f} ms | {cpu['reuse']:.1f} ms | {cpu['clone']:.1f} ms "
        f"| {cpu['reuse'] / cpu['clone']:.2f} |"
    )


if __name__ == "__main__":
    raise SystemExit(main())
