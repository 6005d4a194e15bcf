"""Per-test database reset: pytest-nocrud's handoff vs CREATE DATABASE ... TEMPLATE vs TRUNCATE + re-seed.

Everything runs against the real embedded server (server.EmbeddedCluster) and one template: 20 tables,
each with a primary key and two secondary indexes, seeded with ~10 MB of rows. Contenders run in
bursts of ``--burst`` consecutive tests, and every round runs every contender once in a rotated order
(A B C D, B C D A, ...), so machine drift hits all of them alike:

* handoff, quick tests: ``ClonePool.handoff()``, then a test body of three INSERTs (the pool cannot keep
  up: each test is faster than one clone).
* handoff, ~20 ms tests: the same, then ``threading.Event().wait(0.02)`` standing in for the app
  request/response time of a flow (the pool has that long to refill).
* CREATE DATABASE ... TEMPLATE per test, dropped after it (create + drop are both on the test's path).
* TRUNCATE of all 20 tables (RESTART IDENTITY) + re-running the seed's INSERT ... SELECT statements.

The figure per test is the time the test waited for its fresh database. Afterwards each statement of
the handoff's swap is timed on its own (``--profile`` reps), to say where handoff time goes.

Usage: .venv/bin/python bench/handoff.py [--rounds 20] [--burst 25] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import threading
import time
from collections.abc import Callable

import psycopg
from common import bench_home, machine_line, update_section
from psycopg import sql

from pytest_nocrud.pg import admin
from pytest_nocrud.pg.conninfo import ConnInfo
from pytest_nocrud.pg.pool import SESSION_GRACE_S, ClonePool, choose_strategy, pool_prefix, swap_statement
from pytest_nocrud.pg.procs import ProcessId
from pytest_nocrud.pg.server import EmbeddedCluster
from pytest_nocrud.report.summary import percentile

HEADING = "## Handoff"
TABLES = 20
ROWS_PER_TABLE = 1800  # ~10 MB of heap + indexes over 20 tables
GOAL_P50_MS, GOAL_P95_MS = 0.3, 2.0
SLOW_BODY_S = 0.02


def seed_sql(table: int) -> str:
    """The seed statement for table ``t<table>`` (numbers only: nothing to inject)."""
    return (
        f"INSERT INTO t{table} (name, qty, payload) "  # noqa: S608
        f"SELECT 'item-' || g, g % 97, repeat(md5(g::text), 3) FROM generate_series(1, {ROWS_PER_TABLE}) g"
    )


def build_template(server: ConnInfo, name: str) -> None:
    """20 tables, a PK and two indexes each, ~10 MB of seed rows; finalized like the plugin does."""
    with admin.connect(server) as conn:
        admin.create(conn, name)
        with psycopg.connect(server.with_db(name).dsn, autocommit=True) as db:
            for t in range(TABLES):
                db.execute(
                    f"CREATE TABLE t{t} (id bigserial PRIMARY KEY, name text NOT NULL, qty int NOT NULL, "
                    "payload text, created timestamptz NOT NULL DEFAULT now())"
                )
                db.execute(f"CREATE INDEX t{t}_name ON t{t} (name)")
                db.execute(f"CREATE INDEX t{t}_qty ON t{t} (qty, created)")
                db.execute(seed_sql(t))
            db.execute("VACUUM ANALYZE")
        admin.finalize(conn, name, {"bench": True})


def test_body(info: ConnInfo, *, wait: float = 0.0) -> None:
    """What a quick test does with its database: connect, three INSERTs, commit, close."""
    with psycopg.connect(info.dsn) as conn:
        for t in (0, 1, 2):
            conn.execute(f"INSERT INTO t{t} (name, qty) VALUES ('test', 1)")  # noqa: S608
    if wait:
        threading.Event().wait(wait)


class Contender:
    def __init__(self, label: str, reset: Callable[[], float], after: Callable[[], None]) -> None:
        self.label = label
        self.reset = reset  # returns the ms the test waited for its database
        self.after = after  # the test body (and per-test cleanup that is not on the waiting path)
        self.ms: list[float] = []
        self.kept_up = 0
        self.ready_ms: list[float] = []  # handoffs that found a clone ready (the pool kept up)

    def run(self, n: int) -> None:
        for _ in range(n):
            self.ms.append(self.reset())
            self.after()


def handoff_contender(label: str, pool: ClonePool, wait: float) -> Contender:
    contender: Contender

    def reset() -> float:
        with pool._cond:  # bench-only peek: was a clone ready before the test asked?
            ready = bool(pool._ready)
        waited = pool.handoff()
        if ready:
            contender.kept_up += 1
            contender.ready_ms.append(waited)
        return waited

    contender = Contender(label, reset, lambda: test_body(pool.info, wait=wait))
    return contender


def create_contender(server: ConnInfo, conn: admin.Conn, template: str, strategy: str | None) -> Contender:
    seq = iter(range(10**9))
    current: list[str] = []

    def reset() -> float:
        started = time.perf_counter()
        if current:
            admin.drop(conn, current.pop())
        name = f"bench_create_{next(seq)}"
        admin.create(conn, name, template=template, strategy=strategy)
        current.append(name)
        return (time.perf_counter() - started) * 1000

    contender = Contender(
        "CREATE DATABASE … TEMPLATE + DROP", reset, lambda: test_body(server.with_db(current[0]))
    )
    contender.cleanup = lambda: [admin.drop(conn, n) for n in current]  # type: ignore[attr-defined]
    return contender


def truncate_contender(server: ConnInfo, name: str) -> Contender:
    db = psycopg.connect(server.with_db(name).dsn, autocommit=True)
    tables = ", ".join(f"t{t}" for t in range(TABLES))

    def reset() -> float:
        started = time.perf_counter()
        with db.transaction():
            db.execute(f"TRUNCATE {tables} RESTART IDENTITY")
            for t in range(TABLES):
                db.execute(seed_sql(t))
        return (time.perf_counter() - started) * 1000

    contender = Contender("TRUNCATE 20 tables + re-seed", reset, lambda: test_body(server.with_db(name)))
    contender.cleanup = db.close  # type: ignore[attr-defined]
    return contender


def profile_swap(conn: admin.Conn, reps: int) -> dict[str, list[float]]:
    """Time each statement of the handoff's swap alone, and the one-round-trip batch the pool sends."""
    a, b, stable = "bench_swap_a", "bench_swap_b", "bench_swap_stable"
    for name in (a, b, stable):
        admin.drop(conn, name)
    admin.create(conn, stable)
    admin.create(conn, a)
    term = admin.end_sessions_statement(stable, grace_s=SESSION_GRACE_S)  # exactly what the pool sends
    out: dict[str, list[float]] = {
        k: [] for k in ("terminate query", "rename (each)", "swap batch", "SELECT 1")
    }

    def timed(key: str, statement: sql.Composable | str) -> None:
        started = time.perf_counter()
        conn.execute(statement)
        out[key].append((time.perf_counter() - started) * 1000)

    def rename(old: str, new: str) -> sql.Composed:
        return sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(old), sql.Identifier(new))

    for _ in range(reps):
        timed("SELECT 1", "SELECT 1")
        timed("terminate query", term)
        timed("rename (each)", rename(stable, b))  # dirty away
        timed("rename (each)", rename(a, stable))  # clone in
        timed("rename (each)", rename(b, a))  # back to the start state
        timed("swap batch", swap_statement(stable, a, b))
        conn.execute(rename(stable, a))
        conn.execute(rename(b, stable))
    for name in (a, b, stable):
        admin.drop(conn, name)
    return out


def fmt(values: list[float]) -> str:
    return f"{percentile(values, 0.5):.2f} | {percentile(values, 0.95):.2f} | {statistics.fmean(values):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--burst", type=int, default=25)
    parser.add_argument("--pool-size", type=int, default=2)
    parser.add_argument("--profile", type=int, default=200)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    home = bench_home("nocrud-bench-handoff-")
    cluster = EmbeddedCluster(home)
    owner = ProcessId.of(os.getpid())
    load_before = os.getloadavg()
    try:
        server = cluster.acquire(owner)
        info = server.admin
        template = "bench_tpl"
        started = time.perf_counter()
        build_template(info, template)
        print(f"template built in {time.perf_counter() - started:.1f}s")
        with admin.connect(info, purpose="bench") as conn:
            size_mb = int(conn.execute("SELECT pg_database_size(%s)", [template]).fetchone()[0]) / 2**20  # type: ignore[index]
            strategy = choose_strategy("auto", server_major=server.major, fsync_on=admin.fsync_enabled(conn))
            admin.create(conn, "bench_truncate", template=template, strategy=strategy)
            quick_pool = ClonePool(info, template, prefix=pool_prefix(f"bench-{os.getpid()}", "quick"),
                                   size=args.pool_size, strategy=strategy)  # fmt: skip
            slow_pool = ClonePool(info, template, prefix=pool_prefix(f"bench-{os.getpid()}", "slow"),
                                  size=args.pool_size, strategy=strategy)  # fmt: skip
            contenders = [
                handoff_contender("nocrud handoff, quick tests (3 INSERTs)", quick_pool, 0.0),
                handoff_contender(
                    "nocrud handoff, ~20 ms tests (3 INSERTs + 20 ms wait)", slow_pool, SLOW_BODY_S
                ),
                create_contender(info, conn, template, strategy),
                truncate_contender(info, "bench_truncate"),
            ]
            try:
                for contender in contenders[:2]:  # pools start full, as they do after a run's first test
                    contender.run(1)
                    contender.ms.clear()
                    contender.kept_up = 0
                    contender.ready_ms.clear()
                for r in range(args.rounds):
                    order = contenders[r % 4 :] + contenders[: r % 4]
                    for contender in order:
                        contender.run(args.burst)
                    print(f"round {r + 1}/{args.rounds}: " + ", ".join(
                        f"{c.label.split(',')[0][:14]} p50 {percentile(c.ms, 0.5):.2f}" for c in contenders
                    ))  # fmt: skip
            finally:
                quick_pool.close()
                slow_pool.close()
                for contender in contenders[2:]:
                    contender.cleanup()  # type: ignore[attr-defined]
                admin.drop(conn, "bench_truncate")
            profile = profile_swap(conn, args.profile)
            pg_version = server.version
    finally:
        cluster.release(owner)
        shutil.rmtree(home, ignore_errors=True)
    load_after = os.getloadavg()

    base = contenders[0]
    rows = ["| contender | N | p50 ms | p95 ms | mean ms | p50 ratio to (a) | mean ratio to (a) |",
            "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    labels = ["(a)", "(a')", "(b)", "(c)"]
    for tag, c in zip(labels, contenders, strict=True):
        ratio_p50 = percentile(c.ms, 0.5) / percentile(base.ms, 0.5)
        ratio_mean = statistics.fmean(c.ms) / statistics.fmean(base.ms)
        rows.append(f"| {tag} {c.label} | {len(c.ms)} | {fmt(c.ms)} | "
                    f"{ratio_p50:.1f}× | {ratio_mean:.1f}× |")  # fmt: skip
    ready_lines = [
        f"- {tag}: a clone was ready at {c.kept_up} of {len(c.ms)} handoffs "
        f"({100 * c.kept_up / len(c.ms):.0f}%); those handoffs alone: p50 | p95 | mean ms = "
        + (fmt(c.ready_ms) if c.ready_ms else "n/a")
        for tag, c in zip(labels[:2], contenders[:2], strict=True)
    ]
    prof_rows = ["| statement | N | p50 ms | p95 ms | mean ms |", "|---|---:|---:|---:|---:|"]
    prof_rows += [f"| {k} | {len(v)} | {fmt(v)} |" for k, v in profile.items()]
    kept = contenders[1].ready_ms or contenders[1].ms
    p50, p95 = percentile(kept, 0.5), percentile(kept, 0.95)
    met = p50 <= GOAL_P50_MS and p95 <= GOAL_P95_MS
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    body = f"""
{machine_line(f"PostgreSQL {pg_version} (embedded, fsync off, clone strategy {strategy or 'default'})")};
`nproc` {nproc}, `uname -sr` {platform.system()} {platform.release()}; load average
{load_before[0]:.1f} at start, {load_after[0]:.1f} at end (the machine is shared: other test runs were
going on).

Command: `.venv/bin/python bench/handoff.py --rounds {args.rounds} --burst {args.burst}` (pool size
{args.pool_size}). Template: {TABLES} tables, each a bigserial primary key + 2 secondary indexes,
{ROWS_PER_TABLE} seed rows per table; database size {size_mb:.1f} MB (~{size_mb - 7.5:.0f} MB of seed
data and indexes over an empty database's 7.5 MB). Contenders ran in bursts of {args.burst}
consecutive tests, {args.rounds} rounds, order rotated each round. Figures are the time a test waited
for its fresh database.

{chr(10).join(rows)}

- (a)/(a') `ClonePool.handoff()`; the test body is 3 INSERTs in their own connection; in (a') it is
  followed by `threading.Event().wait(0.02)` (standing in for an app round trip: no CPU used, so the
  pool's filler can work meanwhile).
- (b) the previous test's database dropped, then `CREATE DATABASE … TEMPLATE … STRATEGY {strategy}`.
- (c) `TRUNCATE` of all {TABLES} tables `RESTART IDENTITY` + the seed's `INSERT … SELECT` statements,
  in one transaction.
{chr(10).join(ready_lines)}

Goal (handoff p50 ≤ {GOAL_P50_MS} ms, p95 ≤ {GOAL_P95_MS} ms while the pool keeps up: (a')'s
handoffs that found a clone ready):
p50 {p50:.2f} ms, p95 {p95:.2f} ms -> **{"met" if met else "not met"}**.

Where a handoff's time goes (each statement alone on the admin connection, {args.profile} reps; "swap
batch" is the one round trip `handoff()` sends: terminate + 2 renames):

{chr(10).join(prof_rows)}
"""
    print(body)
    if not args.no_write:
        update_section(HEADING, body)


if __name__ == "__main__":
    main()
