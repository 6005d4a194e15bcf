"""The ``nocrud`` command: look at and tidy what pytest-nocrud keeps between runs.

``nocrud status``        server, templates and databases of this project
``nocrud gc [--failed]`` drop databases of dead runs (and kept failed-test databases with --failed)
``nocrud server start``  start the project's embedded server and print its DSN (e.g. to inspect a kept
                         failed-test database); ``nocrud server stop`` stops it unless a run uses it
``nocrud perf DIR``      per-route latency of a ``--nocrud-perf`` record; ``--set-baseline FILE`` stores
                         it, ``--baseline FILE --threshold 20% --metric p50`` gates on it (exit 1)

The project is the current directory (or ``--rootdir``); the server is ``--dsn``/``NOCRUD_DSN`` or the
project's embedded cluster (``--data-dir``/``NOCRUD_DATA_DIR``, else the default location).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from . import perf
from .errors import NocrudError
from .pg import admin
from .pg.key import TEMPLATE_PREFIX
from .pg.pool import OWNED_NAME, collect_garbage
from .pg.procs import ProcessId
from .pg.server import EmbeddedCluster, PostgresServer, check_dsn, default_home

FAILED_PREFIX = "nocrud_failed_"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nocrud", description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--rootdir", type=Path, default=Path.cwd(), help="project directory (default: .)")
    parser.add_argument("--dsn", default=os.environ.get("NOCRUD_DSN"), help="existing server's admin DSN")
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("NOCRUD_DATA_DIR"))
    parser.add_argument("--pg-bindir", default=os.environ.get("NOCRUD_PG_BINDIR"))
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("status", help="server, templates and databases of this project")
    gc = commands.add_parser("gc", help="drop databases of dead runs")
    gc.add_argument("--failed", action="store_true", help="also drop kept failed-test databases")
    server = commands.add_parser("server", help="start or stop the embedded server")
    server.add_argument("action", choices=["start", "stop"])
    gate = commands.add_parser("perf", help="summarize a --nocrud-perf record; compare with a baseline")
    gate.add_argument("directory", type=Path, help="the --nocrud-perf directory")
    gate.add_argument("--run", help="run id (default: the newest run)")
    gate.add_argument("--set-baseline", type=Path, metavar="FILE", help="write this run's summary as JSON")
    gate.add_argument(
        "--baseline", type=Path, metavar="FILE", help="compare with this baseline; exit 1 if slower"
    )
    gate.add_argument("--threshold", default=f"{perf.DEFAULT_THRESHOLD:g}%", help="how much slower passes")
    gate.add_argument("--metric", default=perf.DEFAULT_METRIC, choices=perf.METRICS)
    gate.add_argument("--min-samples", type=int, default=perf.DEFAULT_MIN_SAMPLES,
                      help="compare only routes with at least this many requests on both sides")  # fmt: skip
    gate.add_argument("--min-delta-ms", type=float, default=perf.DEFAULT_MIN_DELTA_MS,
                      help="ignore slowdowns smaller than this many milliseconds")  # fmt: skip
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "perf":  # reads files only: no server
            return _perf(args)
        if args.dsn:
            return _run(args, check_dsn(args.dsn), None)
        cluster = EmbeddedCluster(args.data_dir or default_home(args.rootdir), bindir=args.pg_bindir)
        if args.command == "server" and args.action == "stop":
            return _stop(cluster)
        me = ProcessId.of(os.getpid())
        server = cluster.acquire(me)
        try:
            return _run(args, server, cluster)
        finally:
            # "server start" leaves it running (our lease dies with us; the next run that ends stops it).
            if not (args.command == "server" and args.action == "start"):
                cluster.release(me)
            else:
                (cluster.leases / me.token).unlink(missing_ok=True)
    except NocrudError as exc:
        print(f"nocrud: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, server: PostgresServer, cluster: EmbeddedCluster | None) -> int:
    with admin.connect(server.admin, purpose="cli") as conn:
        if args.command == "status":
            _status(conn, server, cluster)
        elif args.command == "gc":
            dropped = collect_garbage(conn)
            if args.failed:
                for name in admin.names_like(conn, FAILED_PREFIX):
                    admin.drop(conn, name)
                    dropped.append(name)
            print(f"dropped {len(dropped)} database(s)" + "".join(f"\n  {name}" for name in dropped))
        else:
            print(server.dsn)
    return 0


def _status(conn: admin.Conn, server: PostgresServer, cluster: EmbeddedCluster | None) -> None:
    kind = f"embedded, data dir {cluster.data}" if cluster else "DSN"
    print(f"server: PostgreSQL {server.version} ({kind})")
    print(f"admin DSN: {server.admin.masked()}")
    for name in admin.names_like(conn, TEMPLATE_PREFIX):
        state = (
            "finalized"
            if admin.is_finalized(conn, name)
            else "UNFINALIZED (a build died; rebuilt on next use)"
        )
        print(f"template: {name} {state}")
    owned = [name for name in admin.names_like(conn, "nocrud_r") if OWNED_NAME.match(name)]
    print(f"pool databases: {len(owned)}")
    for name in admin.names_like(conn, FAILED_PREFIX):
        print(f"kept failed-test database: {server.admin.with_db(name).masked()}")


def _perf(args: argparse.Namespace) -> int:
    run_id, rows = perf.load(args.directory, args.run)
    summary = perf.summarize(rows)
    print(f"run {run_id}: {len(rows)} request(s), {len(summary)} route(s)")
    print(perf.summary_table(summary))
    if args.set_baseline:
        perf.write_baseline(args.set_baseline, summary, run_id=run_id)
        print(f"baseline written: {args.set_baseline}")
    if args.baseline:
        threshold = perf.parse_threshold(args.threshold)
        result = perf.compare(
            perf.read_baseline(args.baseline),
            summary,
            metric=args.metric,
            threshold=threshold,
            min_samples=args.min_samples,
            min_delta_ms=args.min_delta_ms,
        )
        report = perf.comparison_report(
            result, metric=args.metric, threshold=threshold, min_samples=args.min_samples
        )
        print(f"\n{report}")
        return 1 if result.regressions else 0
    return 0


def _stop(cluster: EmbeddedCluster) -> int:
    if cluster.release_if_unused():
        print("stopped")
        return 0
    print("not stopped: a pytest run is using the server", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
