"""The ``nocrud`` command: look at and tidy what pytest-nocrud keeps between runs.

``nocrud status``        server, templates and databases of this project
``nocrud gc [--failed]`` drop databases of dead runs (and kept failed-test databases with --failed)
``nocrud server start``  start the project's embedded server and print its DSN (e.g. to inspect a kept
                         failed-test database); ``nocrud server stop`` stops it unless a run uses it
``nocrud build``         build (or reuse) the project's template exactly as a test run would, no tests
``nocrud preview``       what a build would do now (layers, SQL of each file), touching nothing

The project is the current directory (or ``--rootdir``); the server is ``--dsn``/``NOCRUD_DSN`` or the
project's embedded cluster (``--data-dir``/``NOCRUD_DATA_DIR``, else the default location).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .errors import NocrudError
from .pg import admin
from .pg.key import SCHEMA_PREFIX, TEMPLATE_PREFIX
from .pg.pool import OWNED_NAME, collect_garbage
from .pg.procs import ProcessId
from .pg.server import EmbeddedCluster, PostgresServer, check_dsn, default_home
from .pg.template import collect_layers

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
    build = commands.add_parser("build", help="build (or reuse) the template as a test run would")
    build.add_argument("--rebuild", action="store_true", help="discard the template and build it again")
    commands.add_parser("preview", help="what a build would do now, and the SQL it would run")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command in ("build", "preview"):
            from .project import build_template, preview

            run = build_template if args.command == "build" else preview
            return run(args.rootdir, _pytest_args(args))
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


def _run(args: argparse.Namespace, server: PostgresServer, cluster: EmbeddedCluster | None) -> int:
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
        else:
            print(server.dsn)
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
    owned = [name for name in admin.names_like(conn, "nocrud_r") if OWNED_NAME.match(name)]
    print(f"pool databases: {len(owned)}")
    for name in admin.names_like(conn, FAILED_PREFIX):
        print(f"kept failed-test database: {server.admin.with_db(name).masked()}")


def _stop(cluster: EmbeddedCluster) -> int:
    if cluster.release_if_unused():
        print("stopped")
        return 0
    print("not stopped: a pytest run is using the server", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
