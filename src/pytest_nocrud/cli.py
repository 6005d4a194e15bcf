"""The ``nocrud`` command: look at and tidy what pytest-nocrud keeps between runs.

``nocrud status``        server, templates and databases of this project
``nocrud gc [--failed]`` drop databases of dead runs (and kept failed-test databases with --failed);
                         remove app logs of ended runs
``nocrud server start``  start the project's embedded server and print its DSN (e.g. to inspect a kept
                         failed-test database); it stays up -- whatever runs or ``nocrud`` commands
                         come and go -- until ``nocrud server stop``, which stops it unless a run uses it
``nocrud scaffold``      start the app as a run would, read its OpenAPI schema, write a test file with
                         one CrudFlow per collection resource (never overwriting a file)
``nocrud build``         build (or reuse) the project's template exactly as a test run would, no tests;
                         ``--import DIR``: restore it from a template cache directory instead;
                         ``--export DIR``: then write its archive there
``nocrud preview``       what a build would do now (layers, SQL of each file), touching nothing
``nocrud key``           the template keys a test run will need (``schema <hex>``, ``template <hex>``),
                         for a CI cache key: the same on every machine and path; ``--short``: one line
``nocrud perf DIR``      per-route latency of a ``--nocrud-perf`` record; ``--set-baseline FILE`` stores
                         it, ``--baseline FILE`` gates on it (exit 1; small routes pooled by path prefix)
``nocrud merge SHARD...`` one report of a sharded run: the shards' HTML pages rendered again as one
                         (``--html``), their coverage merged (``--coverage``, ``--coverage-fail-under``),
                         their perf records joined into one run (``--perf``, ``--perf-baseline``)

The project is the current directory (or ``--rootdir``); the server is ``--dsn``/``NOCRUD_DSN`` or the
project's embedded cluster (``--data-dir``/``NOCRUD_DATA_DIR``, else the default location).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from .app.process import reap_orphaned_apps, tidy_leftovers
from .errors import NocrudError, UsageError
from .pg import admin
from .pg.names import FAILED_PREFIX, OWNED_NAME, RUN_PREFIX, SCHEMA_PREFIX, TEMPLATE_PREFIX
from .pg.pool import collect_garbage
from .pg.procs import ProcessId
from .pg.server import EmbeddedCluster, PostgresServer, check_dsn, default_home
from .pg.template import collect_layers, last_use
from .report import coverage as endpoint_coverage
from .report import merge as shards
from .report import perf
from .report.html import render_run, write_page
from .scaffold.render import render, resources_from_openapi


def _common_options(defaults: bool) -> argparse.ArgumentParser:
    """Options every command takes, before or after the subcommand (``nocrud status --rootdir X``).

    The subcommands' copies default to SUPPRESS so that an option given before the subcommand is not
    overwritten by the subcommand's default.
    """
    common = argparse.ArgumentParser(add_help=False)

    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    group = common.add_argument_group("common options (before or after the command)")
    group.add_argument("--rootdir", type=Path, default=default(Path.cwd()),
                       help="the project directory (default: the current directory)")  # fmt: skip
    group.add_argument("--dsn", default=default(os.environ.get("NOCRUD_DSN")),
                       help="an existing server's admin DSN (default: $NOCRUD_DSN, else the embedded "
                       "server)")  # fmt: skip
    group.add_argument("--data-dir", type=Path, default=default(os.environ.get("NOCRUD_DATA_DIR")),
                       help="the embedded cluster's directory (default: $NOCRUD_DATA_DIR, else "
                       "nocrud_data_dir, else the default location)")  # fmt: skip
    group.add_argument("--pg-bindir", default=default(os.environ.get("NOCRUD_PG_BINDIR")),
                       help="directory with initdb and postgres (default: $NOCRUD_PG_BINDIR, else "
                       "searched)")  # fmt: skip
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
    scaffold = commands.add_parser(
        "scaffold", parents=common, help="write CRUD flows from the app's OpenAPI schema"
    )
    scaffold.add_argument(
        "--openapi", metavar="PATH", help="schema path (default: nocrud_openapi_path, else /openapi.json)"
    )
    scaffold.add_argument("--out", type=Path, help="file to write (default: tests/test_crud_scaffold.py)")
    build = commands.add_parser(
        "build", parents=common, help="build (or reuse) the template as a test run would"
    )
    build.add_argument("--rebuild", action="store_true", help="discard the template and build it again")
    build.add_argument("--export", type=Path, metavar="DIR",
                       help="then write the template's archive into DIR (a template cache directory)")
    build.add_argument("--import", dest="import_dir", type=Path, metavar="DIR",
                       help="restore the template from DIR's archive instead of building it, if it has "
                       "a usable one (else build)")  # fmt: skip
    commands.add_parser("preview", parents=common, help="what a build would do now, and the SQL it would run")
    key = commands.add_parser(
        "key", parents=common, help="the template keys a test run will need (for a CI cache key)"
    )
    key.add_argument(
        "--short", action="store_true", help="print the template key alone (it covers the schema key)"
    )
    gate = commands.add_parser(
        "perf", parents=common, help="summarize a --nocrud-perf record; compare with a baseline",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )  # fmt: skip
    gate.add_argument("directory", type=Path, help="the --nocrud-perf directory")
    gate.add_argument("--run", help="run id (default: the newest run)")
    gate.add_argument("--set-baseline", type=Path, metavar="FILE", help="write this run's summary as JSON")
    gate.add_argument(
        "--baseline", type=Path, metavar="FILE", help="compare with this baseline; exit 1 if slower"
    )
    _gate_options(gate)
    joined = commands.add_parser(
        "merge", formatter_class=argparse.ArgumentDefaultsHelpFormatter,  # files only: no server options
        help="one report of a sharded run: the shards' HTML pages, coverage and perf records merged",
        description="Merge the --nocrud-html pages, --nocrud-coverage JSON files and --nocrud-perf records "
        "of a run's shards (e.g. pytest-split CI jobs) into one report.",
    )  # fmt: skip
    joined.add_argument("inputs", nargs="+", type=Path, metavar="SHARD",
                        help="a shard's files, or a directory searched for them (pages with run data, "
                             "coverage JSON, perf records: the newest run of each)")  # fmt: skip
    joined.add_argument("--html", type=Path, metavar="PATH", help="write the merged HTML page here")
    joined.add_argument("--coverage", type=Path, metavar="PATH", help="write the merged coverage JSON here")
    joined.add_argument("--coverage-fail-under", type=float, metavar="N",
                        help="exit 1 when the merged endpoint coverage is below N percent")  # fmt: skip
    joined.add_argument("--perf", type=Path, metavar="DIR",
                        help="write the merged perf record as a new run under DIR (read it with "
                             "`nocrud perf DIR`)")  # fmt: skip
    joined.add_argument("--perf-set-baseline", type=Path, metavar="FILE",
                        help="write the merged run's perf summary as a baseline")  # fmt: skip
    joined.add_argument("--perf-baseline", type=Path, metavar="FILE",
                        help="compare the merged perf record with this baseline; exit 1 if "
                             "slower")  # fmt: skip
    _gate_options(joined)
    return parser


def _gate_options(gate: argparse.ArgumentParser) -> None:
    """The perf gate's options, the same for ``nocrud perf`` and ``nocrud merge``."""
    gate.add_argument("--threshold", default=f"{perf.DEFAULT_THRESHOLD:g}%",
                      help="how much slower (net of the run-wide shift) passes")  # fmt: skip
    gate.add_argument("--metric", default=perf.DEFAULT_METRIC, choices=perf.METRICS,
                      help="the figure the threshold applies to")  # fmt: skip
    gate.add_argument("--min-samples", type=int, default=perf.DEFAULT_MIN_SAMPLES,
                      help="requests on both sides for a route to be judged on its own; routes "
                           "with fewer are pooled by path prefix (/api/actors/*)")  # fmt: skip
    gate.add_argument("--min-delta-ms", type=float, default=perf.DEFAULT_MIN_DELTA_MS,
                      help="ignore slowdowns smaller than this many milliseconds")  # fmt: skip
    gate.add_argument("--alpha", type=float, default=perf.DEFAULT_ALPHA,
                      help="a slowdown must also pass a one-sided rank-sum test at p < ALPHA / groups "
                           "(1: no test)")  # fmt: skip
    gate.add_argument("--max-shift", metavar="PCT", default=None,
                      help="also fail when the whole run is this much slower (the shift all routes "
                           "share, divided out before they are judged; unset: only reported)")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "perf":  # reads files only: no server
            return _perf(args)
        if args.command == "merge":  # reads files only: no server
            return _merge(args)
        if args.command == "scaffold":
            return _scaffold(args)
        if args.command == "key":
            from .project import print_keys

            return print_keys(args.rootdir, _pytest_args(args), short=args.short)
        if args.command in ("build", "preview"):
            from .project import build_template, preview

            if args.command == "build":
                return build_template(args.rootdir, _pytest_args(args), export=args.export)
            return preview(args.rootdir, _pytest_args(args))
        code = _status_of_project(args) if args.command == "status" else _main(args)
        sys.stdout.flush()  # a closed pipe shows here, where it is handled, not at interpreter exit
        return code
    except NocrudError as exc:
        print(f"nocrud: {one_prefix(str(exc))}", file=sys.stderr)
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
    if getattr(args, "import_dir", None):  # what a test run with that cache directory does
        out += ["-o", f"nocrud_template_cache={args.import_dir.absolute()}"]
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
            note = getattr(args, "project_note", None)
            _status(conn, server, cluster, {"": note} if note else None)
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


def one_prefix(message: str) -> str:
    """The message without the test run's own prefix: ``nocrud:`` already says who is speaking."""
    message = message.removeprefix("pytest-nocrud: ")
    head, sep, rest = message.partition(" is not available:\n")
    return rest if sep and "\n" not in head else message


def _status_of_project(args: argparse.Namespace) -> int:
    """``nocrud status``: the server and every layer on it, this project's marked -- read the way a test
    run reads the project (pytest's collection, so its template setups count), else without the marks."""
    from .project import at_collection
    from .runtime import Runtime

    def show(runtime: Runtime) -> str:
        server = runtime.postgres()
        try:
            mine = _project_layers(runtime, server)
        except (NocrudError, ValueError) as exc:
            mine = {"": f"this project: cannot tell its layers ({one_prefix(str(exc)).splitlines()[0]})"}
        out = io.StringIO()
        with admin.connect(server.admin, purpose="cli") as conn, contextlib.redirect_stdout(out):
            _status(conn, server, runtime.cluster, mine)
        return out.getvalue()

    try:
        text = at_collection(args.rootdir, _pytest_args(args), show)
    except UsageError as exc:  # pytest cannot read the project: the server's view alone
        args.project_note = f"this project: cannot tell its layers ({str(exc).splitlines()[0]})"
        return _main(args)
    print(text, end="")  # after pytest's run: a closed pipe is handled like any command's
    return 0


def _project_layers(runtime: object, server: PostgresServer) -> dict[str, str]:
    """``{layer name: what it is to this project}`` for the keys a test run would use now."""
    from .runtime import Runtime

    assert isinstance(runtime, Runtime)
    keys = runtime.layer_keys(server.major)
    return {keys.schema_name: "this project's schema layer", keys.name: "this project's template"}


def _ago(epoch: float) -> str:
    seconds = max(0.0, time.time() - epoch)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return "just now"


def _status(
    conn: admin.Conn,
    server: PostgresServer,
    cluster: EmbeddedCluster | None,
    mine: dict[str, str] | None = None,
) -> None:
    mine = mine or {}
    kind = f"embedded, data dir {cluster.data}" if cluster else "DSN"
    print(f"server: PostgreSQL {server.version} ({kind})")
    if server.embedded and server.started_ms is not None:
        print("  it was not running: started for this command, and stopped again after it")
    print(f"admin DSN: {server.admin.masked()}")
    if "" in mine:
        print(mine[""])
    for name in admin.names_like(conn, SCHEMA_PREFIX) + admin.names_like(conn, TEMPLATE_PREFIX):
        state = (
            "finalized"
            if admin.is_finalized(conn, name)
            else "UNFINALIZED (a build died; rebuilt on next use)"
        )
        kind = "schema layer" if name.startswith(SCHEMA_PREFIX) else "template"
        note = admin.note_of(conn, name)
        used = last_use(note)
        row = conn.execute("SELECT pg_database_size(%s)", [name]).fetchone()
        size = f"{int(row[0]) / 1e6:.1f} MB" if row else "?"
        marker = f"  <- {mine[name]}" if name in mine else ""
        print(f"{kind}: {name} {state}, {size}, last used {_ago(used) if used else 'never'}{marker}")
    owned = [name for name in admin.names_like(conn, RUN_PREFIX) if OWNED_NAME.match(name)]
    print(f"pool databases: {len(owned)}")
    for name in admin.names_like(conn, FAILED_PREFIX):
        print(f"kept failed-test database: {server.admin.with_db(name).masked()}")


def _scaffold(args: argparse.Namespace) -> int:
    root = args.rootdir.resolve()
    out: Path = args.out or (root / "tests" if (root / "tests").is_dir() else root) / "test_crud_scaffold.py"
    if out.exists():
        raise UsageError(f"{out} exists; scaffold never overwrites a file: pass --out NEW_FILE or remove it")
    from .project import at_collection  # imports pytest: only these commands need it
    from .scaffold.fetch import read_schema

    document, url = at_collection(
        root, _pytest_args(args), lambda runtime: read_schema(runtime, args.openapi)
    )
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
        result = perf.compare(perf.read_baseline(args.baseline), summary, _gate_settings(args))
        print(f"\n{perf.comparison_report(result)}")
        return 1 if result.failed else 0
    return 0


def _gate_settings(args: argparse.Namespace) -> perf.Settings:
    return perf.Settings(
        metric=args.metric,
        threshold=perf.parse_threshold(args.threshold),
        min_samples=args.min_samples,
        min_delta_ms=args.min_delta_ms,
        alpha=args.alpha,
        max_shift=None if args.max_shift is None else perf.parse_threshold(args.max_shift, "--max-shift"),
    )


def _merge(args: argparse.Namespace) -> int:
    """``nocrud merge``: read every input first (and refuse a mismatch), then write, then gate."""
    outputs = [path for path in (args.html, args.coverage, args.perf) if path is not None]
    found = shards.find(args.inputs, exclude=outputs)
    wanted = {
        "--html": (args.html, found.pages, "--nocrud-html page with run data"),
        "--perf": (args.perf or args.perf_baseline or args.perf_set_baseline, found.perf_runs,
                   "--nocrud-perf record"),
    }  # fmt: skip
    for option, (asked, inputs, what) in wanted.items():
        if asked is not None and asked is not False and not inputs:
            raise UsageError(f"{option}: no {what} among {', '.join(map(str, args.inputs))}")
    if not (found.pages or found.coverage or found.perf_runs):
        raise UsageError(f"nothing to merge in {', '.join(map(str, args.inputs))}")
    pages = shards.read_shards(found.pages)
    covers = [(str(path), shards.read_coverage(path)) for path in found.coverage]
    run_id = perf.new_run_id() if args.perf is None else shards.unused_run_id(args.perf, perf.new_run_id())
    rows = shards.merge_perf(found.perf_runs, run_id)
    shards.check_one_version(
        [(str(s.source), s.run.git_sha) for s in pages]
        + [(source, data.get("git_sha")) for source, data in covers]
        + [(f"{row.get('shard')} perf record", row.get("git_sha")) for row in rows]
    )
    run = shards.merge_runs(pages) if pages else None
    measured = shards.merge_coverage(covers) if covers else None
    if measured is None and run is not None and run.coverage is not None:
        measured = shards.merge_coverage([("the pages", run.coverage)])
    if run is not None and measured is not None:
        run.coverage = measured.as_json()
    if (args.coverage is not None or args.coverage_fail_under is not None) and measured is None:
        where = ", ".join(map(str, args.inputs))
        raise UsageError(f"--coverage: no --nocrud-coverage JSON (nor a page that measured it) in {where}")
    labels = sorted({s.label for s in pages} | {str(row["shard"]) for row in rows})
    print(f"merged {len(labels)} shard(s): {', '.join(labels)}" if labels else "merged coverage only")
    if run is not None:
        print(f"tests: {len(run.records)} ({_outcomes(run)})")
        twice = shards.ran_twice(run.records)
        if twice:
            named = ", ".join(twice[: shards.SHOWN]) + (f", +{len(twice) - shards.SHOWN} more" if
                                                         len(twice) > shards.SHOWN else "")  # fmt: skip
            print(f"note: {len(twice)} test(s) ran in more than one shard: {named}")
    if measured is not None:
        print(measured.line())
    code = 0
    if args.html is not None and run is not None:
        line = endpoint_coverage.summary_line(measured) if measured is not None else None
        write_page(args.html, render_run(run, coverage_line=line))
        print(f"HTML report: {args.html}")
    if args.coverage is not None and measured is not None:
        git = {str(data["git_sha"]) for _, data in covers if data.get("git_sha")}
        endpoint_coverage.write_json(args.coverage, measured, git_sha=git.pop() if git else None)
        print(f"endpoint coverage JSON: {args.coverage}")
    if args.perf is not None:
        written = shards.write_perf(args.perf, run_id, rows)
        print(f"perf record: {written} (summarize: nocrud perf {args.perf})")
    summary = perf.summarize(rows)
    if args.perf_set_baseline is not None:
        perf.write_baseline(args.perf_set_baseline, summary, run_id=run_id)
        print(f"baseline written: {args.perf_set_baseline}")
    if args.perf_baseline is not None:
        result = perf.compare(perf.read_baseline(args.perf_baseline), summary, _gate_settings(args))
        print(f"\n{perf.comparison_report(result)}")
        code = 1 if result.failed else code
    if args.coverage_fail_under is not None and measured is not None:
        if measured.percent < args.coverage_fail_under:
            print(
                f"FAILED: merged endpoint coverage {measured.percent:.1f}% is below "
                f"--coverage-fail-under={args.coverage_fail_under:g}"
            )
            code = 1
    return code


def _outcomes(run: shards.RunData) -> str:
    counts = collections.Counter(record["outcome"] for record in run.records)
    return ", ".join(f"{count} {outcome}" for outcome, count in sorted(counts.items()))


def _stop(cluster: EmbeddedCluster) -> int:
    if cluster.release_if_unused():
        print("stopped")
        return 0
    print("not stopped now: a pytest run is using the server; it stops when that run ends", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
