"""The ``nocrud`` command: look at and tidy what pytest-nocrud keeps between runs.

``nocrud status``        server, templates and databases of this project
``nocrud gc [--failed]`` drop databases of dead runs (and kept failed-test databases with --failed);
                         remove app logs of ended runs
``nocrud server start``  start the project's embedded server and print its DSN (e.g. to inspect a kept
                         failed-test database); it stays up -- whatever runs or ``nocrud`` commands
                         come and go -- until ``nocrud server stop``, which stops it unless a run uses it
``nocrud scaffold``      start the app as a run would, read its OpenAPI schema, write a test file with
                         one CrudFlow per collection resource (never overwriting a file)
``nocrud build``         build (or reuse) the project's template exactly as a test run would, no tests
``nocrud preview``       what a build would do now (layers, SQL of each file), touching nothing
``nocrud perf DIR``      per-route latency of a ``--nocrud-perf`` record; ``--set-baseline FILE`` stores
                         it, ``--baseline FILE --threshold 20% --metric p50`` gates on it (exit 1)

The project is the current directory (or ``--rootdir``); the server is ``--dsn``/``NOCRUD_DSN`` or the
project's embedded cluster (``--data-dir``/``NOCRUD_DATA_DIR``, else the default location).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from . import perf
from .app import reap_orphaned_apps, tidy_leftovers
from .errors import NocrudError, UsageError
from .pg import admin
from .pg.names import FAILED_PREFIX, OWNED_NAME, RUN_PREFIX, SCHEMA_PREFIX, TEMPLATE_PREFIX
from .pg.pool import collect_garbage
from .pg.procs import ProcessId
from .pg.server import EmbeddedCluster, PostgresServer, check_dsn, default_home
from .pg.template import collect_layers
from .scaffold import render, resources_from_openapi


def _common_options(defaults: bool) -> argparse.ArgumentParser:
    """Options every command takes, before or after the subcommand (``nocrud status --rootdir X``).

    The subcommands' copies default to SUPPRESS so that an option given before the subcommand is not
    overwritten by the subcommand's default.
    """
    common = argparse.ArgumentParser(add_help=False)

    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    common.add_argument("--rootdir", type=Path, default=default(Path.cwd()), help="project directory (.)")
    common.add_argument("--dsn", default=default(os.environ.get("NOCRUD_DSN")), help="an existing server")
    common.add_argument("--data-dir", type=Path, default=default(os.environ.get("NOCRUD_DATA_DIR")))
    common.add_argument("--pg-bindir", default=default(os.environ.get("NOCRUD_PG_BINDIR")))
    return common


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nocrud",
        description=__doc__.splitlines()[0] if __doc__ else "",
        parents=[_common_options(defaults=True)],
    )
    common = [_common_options(defaults=False)]
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("status", parents=common, help="server, templates and databases of this project")
    gc = commands.add_parser("gc", parents=common, help="drop databases of dead runs, tidy their app logs")
    gc.add_argument("--failed", action="store_true", help="also drop kept failed-test databases")
    server = commands.add_parser("server", parents=common, help="start or stop the embedded server")
    server.add_argument("action", choices=["start", "stop"])
    scaffold = commands.add_parser("scaffold", help="write CRUD flows from the app's OpenAPI schema")
    scaffold.add_argument(
        "--openapi", metavar="PATH", help="schema path (default: nocrud_openapi_path, else /openapi.json)"
    )
    scaffold.add_argument("--out", type=Path, help="file to write (default: tests/test_crud_scaffold.py)")
    build = commands.add_parser("build", help="build (or reuse) the template as a test run would")
    build.add_argument("--rebuild", action="store_true", help="discard the template and build it again")
    commands.add_parser("preview", help="what a build would do now, and the SQL it would run")
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
        if args.command == "scaffold":
            return _scaffold(args)
        if args.command in ("build", "preview"):
            from .project import build_template, preview

            run = build_template if args.command == "build" else preview
            return run(args.rootdir, _pytest_args(args))
        code = _main(args)
        sys.stdout.flush()  # a closed pipe shows here, where it is handled, not at interpreter exit
        return code
    except NocrudError as exc:
        print(f"nocrud: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (``nocrud status | head``): not an error worth a traceback. Point stdout
        # at /dev/null so the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + signal.SIGPIPE


def _main(args: argparse.Namespace) -> int:
    home = args.data_dir or default_home(args.rootdir)
    if args.command == "gc":
        print(f"stopped {reap_orphaned_apps(home / 'apps')} app(s) of dead runs")
    if args.dsn:
        return _run(args, check_dsn(args.dsn), None, home)
    cluster = EmbeddedCluster(home, bindir=args.pg_bindir)
    if args.command == "server" and args.action == "stop":
        return _stop(cluster)
    me = ProcessId.of(os.getpid())
    # What goes without a server first: the disk may be too full to start it.
    tidied = len(tidy_leftovers(home)) if args.command == "gc" and cluster.disk_is_full() else 0
    server = cluster.acquire(me)  # a full disk: the cluster's reserve goes, so it can start
    try:
        if args.command == "gc" and cluster.disk_is_full():
            cluster.recover_from_full_disk(me)  # up and out of crash recovery: drops can run
        if args.command == "server":  # start: the server stays up until `nocrud server stop`
            cluster.hold()
        return _run(args, server, cluster, home, tidied=tidied)
    finally:
        cluster.release(me)


def _pytest_args(args: argparse.Namespace) -> list[str]:
    """The command's server options, spelled as a test run's options (same precedence rules)."""
    out = []
    for flag, value in (
        ("--nocrud-dsn", args.dsn),
        ("--nocrud-data-dir", args.data_dir),
        ("--nocrud-pg-bindir", args.pg_bindir),
    ):
        if value:
            out.append(f"{flag}={value}")
    if getattr(args, "rebuild", False):
        out.append("--nocrud-rebuild")
    return out


def _run(
    args: argparse.Namespace,
    server: PostgresServer,
    cluster: EmbeddedCluster | None,
    home: Path,
    *,
    tidied: int = 0,
) -> int:
    with admin.connect(server.admin, purpose="cli") as conn:
        if args.command == "status":
            _status(conn, server, cluster)
        elif args.command == "gc":
            dropped = collect_garbage(conn) + collect_layers(conn)
            if args.failed:
                for name in admin.names_like(conn, FAILED_PREFIX):
                    admin.drop(conn, name)
                    dropped.append(name)
            print(f"dropped {len(dropped)} database(s)" + "".join(f"\n  {name}" for name in dropped))
            if cluster is not None:
                conn.execute("CHECKPOINT")  # the dropped data's WAL is recycled now, not kept
                cluster.keep_reserve()
                print(f"{cluster.free_mib()} MiB free under {cluster.data}")
            tidied += len(tidy_leftovers(home))
            print(f"removed {tidied} app log file(s) and registries of ended runs")
        else:
            print(server.admin.masked())  # embedded: the whole DSN (no password there)
    return 0


def _status(conn: admin.Conn, server: PostgresServer, cluster: EmbeddedCluster | None) -> None:
    kind = f"embedded, data dir {cluster.data}" if cluster else "DSN"
    print(f"server: PostgreSQL {server.version} ({kind})")
    print(f"admin DSN: {server.admin.masked()}")
    for name in admin.names_like(conn, SCHEMA_PREFIX) + admin.names_like(conn, TEMPLATE_PREFIX):
        state = (
            "finalized"
            if admin.is_finalized(conn, name)
            else "UNFINALIZED (a build died; rebuilt on next use)"
        )
        kind = "schema layer" if name.startswith(SCHEMA_PREFIX) else "template"
        print(f"{kind}: {name} {state}")
    owned = [name for name in admin.names_like(conn, RUN_PREFIX) if OWNED_NAME.match(name)]
    print(f"pool databases: {len(owned)}")
    for name in admin.names_like(conn, FAILED_PREFIX):
        print(f"kept failed-test database: {server.admin.with_db(name).masked()}")


def _scaffold(args: argparse.Namespace) -> int:
    root = args.rootdir.resolve()
    out: Path = args.out or (root / "tests" if (root / "tests").is_dir() else root) / "test_crud_scaffold.py"
    if out.exists():
        raise UsageError(f"{out} exists; scaffold never overwrites a file: pass --out NEW_FILE or remove it")
    from .schema_fetch import fetch_schema  # imports pytest: only this command needs it

    document, url = fetch_schema(root, args.openapi)
    if not isinstance(document, dict):
        raise UsageError(f"{url} is not an OpenAPI document (a JSON object)")
    resources = resources_from_openapi(document)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("x") as file:  # "x": fail rather than overwrite, even if it appeared meanwhile
        file.write(render(resources, document=document, source=urlsplit(url).path))
    names = ", ".join(r.name for r in resources) or "none"
    print(f"wrote {out}: {len(resources)} CrudFlow(s) ({names}); fill in the TODO auth line, then run it")
    return 0


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
    print("not stopped now: a pytest run is using the server; it stops when that run ends", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
