"""How to end the sessions on a database before renaming it: three ways, with a session really open.

``ALTER DATABASE ... RENAME`` refuses to run while another session is on the database and waits for it
in 100 ms sleeps. Each round opens a session on the database (left idle, as an app's pool or a test
leaves it), then times one of:

* ``terminate only``:  ``pg_terminate_backend(pid)`` and the rename in one round trip (the old handoff)
* ``terminate+timeout``: ``pg_terminate_backend(pid, 1000)`` (PostgreSQL 14+: waits for the backend to
  exit), then the rename
* ``terminate+poll`` (what the pool sends): terminate, then poll ``pg_stat_get_activity`` with
  ``pg_stat_clear_snapshot()`` until the sessions are gone, then the rename -- one round trip

Rounds alternate the three so machine drift hits all alike.

Usage: .venv/bin/python bench/handoff_wait.py [--rounds 30] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time

import psycopg
from common import bench_home, machine_line, update_section
from psycopg import sql

from pytest_nocrud.pg import admin
from pytest_nocrud.pg.pool import SESSION_GRACE_S
from pytest_nocrud.pg.procs import ProcessId
from pytest_nocrud.pg.server import EmbeddedCluster

HEADING = "## Ending sessions before the rename"


def statements(name: str, new: str) -> dict[str, sql.Composable]:
    rename = sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(name), sql.Identifier(new))
    where = sql.SQL(
        "FROM pg_stat_get_activity(NULL) WHERE datid = (SELECT oid FROM pg_database WHERE datname = {}); "
    ).format(sql.Literal(name))
    poll = admin.end_sessions_statement(name, grace_s=SESSION_GRACE_S)
    return {
        "terminate only": sql.SQL("SELECT count(pg_terminate_backend(pid)) ") + where + rename,
        "terminate+timeout": sql.SQL("SELECT count(pg_terminate_backend(pid, 1000)) ") + where + rename,
        "terminate+poll": poll + sql.SQL("; ") + rename,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    home = bench_home("nocrud-bench-wait-")
    cluster, me = EmbeddedCluster(home), ProcessId.of(os.getpid())
    server = cluster.acquire(me)
    times: dict[str, list[float]] = {}
    try:
        with admin.connect(server.admin) as conn:
            names = ["bench_wait_a", "bench_wait_b"]
            admin.create(conn, names[0])
            for _ in range(args.rounds):
                for method in ("terminate only", "terminate+timeout", "terminate+poll"):
                    session = psycopg.connect(server.admin.with_db(names[0]).dsn, autocommit=True)
                    session.execute("SELECT 1")  # an idle session, as a pool keeps it
                    started = time.perf_counter()
                    conn.execute(statements(names[0], names[1])[method])
                    times.setdefault(method, []).append((time.perf_counter() - started) * 1000)
                    session.close()
                    names.reverse()
            admin.drop(conn, names[0])
    finally:
        cluster.release(me)
        shutil.rmtree(home, ignore_errors=True)
    rows = ["| method | p50 ms | p90 ms | max ms |", "|---|---:|---:|---:|"]
    for method, ms in times.items():
        ms.sort()
        p50, p90 = statistics.median(ms), ms[int(len(ms) * 0.9)]
        rows.append(f"| {method} | {p50:.2f} | {p90:.2f} | {ms[-1]:.2f} |")
    body = "\n".join([
        f"`.venv/bin/python bench/handoff_wait.py --rounds {args.rounds}`: an idle session is open on the "
        "database each time; the time of the one round trip that ends it and renames the database.",
        "", *rows, "", machine_line(),
    ])  # fmt: skip
    print(body)
    if not args.no_write:
        update_section(HEADING, body)


if __name__ == "__main__":
    main()
