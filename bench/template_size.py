"""What a growing template costs: clone time, pool keep-up and RAM for ~10 MB, ~100 MB and ~1 GB.

Each size gets a throwaway project whose ``python:`` builder generates seed data on the server
(``generate_series``), and a suite of 100 tests that each take ~20 ms (the workload a quick API flow
has). Reported per size: the template's size, ``CREATE DATABASE ... TEMPLATE`` time for FILE_COPY and
WAL_LOG (3 each, median), and from whole runs at ``-p no:xdist`` and ``-n 2``: handoffs that waited for
a clone (per 100 tests), handoff p50/p95, wall time, and the cluster's size on disk (RAM when it lives
in /dev/shm) at the end of the run.

Usage: .venv/bin/python bench/template_size.py [--sizes 10,100,1000] [--pool-size 2] [--no-write]
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
import time
from pathlib import Path

import psycopg
from common import bench_home, machine_line, update_section, wait_until_quiet

from pytest_nocrud.pg import admin
from pytest_nocrud.pg.procs import ProcessId
from pytest_nocrud.pg.server import EmbeddedCluster

HEADING = "## Template size: clone time, pool keep-up, RAM"
HANDOFF = re.compile(
    r"databases handed out: (\d+); handoff p50 ([0-9.]+) ms, p95 ([0-9.]+) ms, max ([0-9.]+) ms; "
    r"(\d+) waited for a clone"
)
BUILDER = '''
def build(conn):
    conn.execute("CREATE TABLE item (id bigint primary key, label text not null)")
    conn.execute(
        "INSERT INTO item SELECT g, repeat(md5(g::text), 6) FROM generate_series(1, %s) g", [{rows}]
    )
'''
TESTS = '''
import time
import pytest

@pytest.mark.parametrize("n", range(100))
def test_quick_flow(nocrud_db, n):
    time.sleep(0.02)  # the benchmark's workload: a ~20 ms API flow
'''
ROW_BYTES = 250  # ~200 chars of text + tuple overhead + index entry, measured on PostgreSQL 15


def project(root: Path, megabytes: int, pool_size: int) -> Path:
    path = root / f"size{megabytes}"
    path.mkdir()
    (path / "seedgen.py").write_text(BUILDER.format(rows=megabytes * 2**20 // ROW_BYTES))
    (path / "test_quick.py").write_text(TESTS)
    (path / "pytest.ini").write_text(
        f"[pytest]\nnocrud_builder = python:seedgen:build\nnocrud_pool_size = {pool_size}\n"
    )
    return path


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def clone_ms(home: Path, template: str) -> dict[str, float]:
    cluster = EmbeddedCluster(home)
    me = ProcessId.of(os.getpid())
    server = cluster.acquire(me)
    out = {}
    try:
        with admin.connect(server.admin) as conn:
            for strategy in ("file_copy", "wal_log"):
                times = []
                for _ in range(3):
                    started = time.perf_counter()
                    admin.create(conn, "bench_clone", template=template, strategy=strategy)
                    times.append((time.perf_counter() - started) * 1000)
                    admin.drop(conn, "bench_clone")
                out[strategy] = statistics.median(times)
            out["template_mb"] = conn.execute(
                "SELECT pg_database_size(%s) / 1048576.0", [template]
            ).fetchone()[0]  # type: ignore[index]
    finally:
        cluster.release(me)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--pool-size", type=int, default=2)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    idle = wait_until_quiet(300)
    rows = [
        "| template | FILE_COPY clone ms | WAL_LOG clone ms | mode | waited / 100 tests "
        "| handoff p50 / p95 ms | wall s | cluster size MB |",
        "|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    raw = []
    with tempfile.TemporaryDirectory(prefix="nocrud-bench-size-") as tmp:
        for megabytes in (int(s) for s in args.sizes.split(",")):
            path = project(Path(tmp), megabytes, args.pool_size)
            home = bench_home("nocrud-bench-size-")
            try:
                for mode in (["-p", "no:xdist"], ["-n", "2"]):
                    started = time.perf_counter()
                    done = subprocess.run(
                        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                         f"--nocrud-data-dir={home}", *mode], cwd=path, capture_output=True, text=True,
                    )  # fmt: skip
                    wall = time.perf_counter() - started
                    match = HANDOFF.search(done.stdout)
                    if done.returncode != 0 or not match:
                        raise SystemExit(done.stdout[-3000:] + done.stderr[-2000:])
                    handed, p50, p95, _, waits = match.groups()
                    size_mb = du(home) / 2**20
                    template = re.search(r"nocrud_tpl_\w+", done.stdout).group(0)  # type: ignore[union-attr]
                    clones = clone_ms(home, template)
                    line = (f"| {clones['template_mb']:.0f} MB | {clones['file_copy']:.0f} | "
                            f"{clones['wal_log']:.0f} | `{' '.join(mode)}` | {waits} | "
                            f"{p50} / {p95} | {wall:.1f} | {size_mb:.0f} |")  # fmt: skip
                    print(line, flush=True)
                    rows.append(line)
                    raw.append(f"- {megabytes} MB `{' '.join(mode)}`: {done.stdout.strip().splitlines()[-2]}")
            finally:
                subprocess.run([sys.executable, "-m", "pytest_nocrud.cli", "--data-dir", str(home), "server",
                                "stop"], capture_output=True)  # fmt: skip
                shutil.rmtree(home, ignore_errors=True)
    body = "\n".join([
        f"`.venv/bin/python bench/template_size.py --sizes {args.sizes} --pool-size {args.pool_size}`: "
        "100 tests of ~20 ms each per run (1 run per mode and size; the first run of a size builds the "
        "template); clone times after the runs, 3 each, median.",
        "",
        *rows,
        "",
        machine_line(f"CPU idle before start {idle:.0%}; psycopg {psycopg.__version__}"),
        "",
        *raw,
    ])  # fmt: skip
    print(body)
    if not args.no_write:
        update_section(HEADING, body)


if __name__ == "__main__":
    main()
