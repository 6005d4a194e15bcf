"""What a template rebuild costs with layers: full build vs seed-only change vs one appended migration.

A ``sql:`` project with a 40-file migration history where each file takes ~0.1 s (``pg_sleep``), and a
seed file; each round builds a fresh history in full (a changed first file: a new lineage), then changes
only the seed, then appends one migration. Then the example Django app: a full build and an appended
migration. Every figure is the wall time of ``ensure_template`` as a test run calls it (locks, clone,
build, finalize, rename, GC included), on the plugin's embedded server at its default location.

Goal (issue 13): seed-only and appended builds each <= 0.2 x the full build.

    .venv/bin/python bench/layers.py --rounds 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

from common import Stats, bench_home, machine_line, stats_table, update_section

from pytest_nocrud.pg.builders import Builder, detect_django_project, parse_builder
from pytest_nocrud.pg.conninfo import ConnInfo
from pytest_nocrud.pg.procs import ProcessId
from pytest_nocrud.pg.server import EmbeddedCluster
from pytest_nocrud.pg.template import Template, TemplateRequest, ensure_template, layer_keys

HISTORY = 40
EXAMPLE_APP = Path(__file__).resolve().parents[1] / "example_app"


def timed_build(server: ConnInfo, root: Path, builder: Builder, major: int) -> tuple[float, Template]:
    started = time.perf_counter()
    keys = layer_keys(root, builder.schema_inputs(), builder, major)
    request = TemplateRequest(server, keys, builder, lock_dir=root / ".locks", run_token=uuid.uuid4().hex)
    template = ensure_template(request)
    return time.perf_counter() - started, template


def sql_rounds(server: ConnInfo, major: int, rounds: int, work: Path) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"full": [], "seed": [], "appended": []}
    for r in range(rounds):
        root = work / f"sql{r}"
        (root / "db").mkdir(parents=True)
        for n in range(1, HISTORY + 1):
            first = f"-- history {uuid.uuid4().hex}\n" if n == 1 else ""
            (root / "db" / f"{n:03d}_m.sql").write_text(
                f"{first}SELECT pg_sleep(0.1);\nCREATE TABLE t_{n:03d} (id serial PRIMARY KEY, v text);\n"
            )
        (root / "seed.sql").write_text("INSERT INTO t_001 (v) VALUES ('a');\n")

        def builder(root: Path = root) -> Builder:
            return parse_builder("sql:db", root=root, fixtures=["seed.sql"])

        seconds, t = timed_build(server, root, builder(), major)
        assert t.schema_how.startswith("built in"), t.schema_how
        out["full"].append(seconds)
        (root / "seed.sql").write_text("INSERT INTO t_001 (v) VALUES ('b');\n")
        seconds, t = timed_build(server, root, builder(), major)
        assert t.schema_how == "reused", t.schema_how
        out["seed"].append(seconds)
        (root / "db" / f"{HISTORY + 1:03d}_m.sql").write_text(
            "SELECT pg_sleep(0.1);\nCREATE TABLE t_new (id int);\n"
        )
        seconds, t = timed_build(server, root, builder(), major)
        assert "+ 1 new file" in t.schema_how, t.schema_how
        out["appended"].append(seconds)
        print(f"sql round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in out.items()), flush=True)
    return out


def django_rounds(server: ConnInfo, major: int, rounds: int, work: Path) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"full": [], "appended": []}
    if detect_django_project(EXAMPLE_APP) is None:
        return out
    for r in range(rounds):
        app = work / f"django{r}"
        shutil.copytree(EXAMPLE_APP, app, ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3"))
        migrations = sorted(p for p in app.rglob("migrations/0*.py") if "site-packages" not in p.parts)
        last = migrations[-1]
        # A unique no-op migration first: every round starts a new key (a full build).
        (last.parent / "8000_round.py").write_text(migration(last, f"SELECT '{uuid.uuid4().hex}'"))
        seconds, t = timed_build(server, app, parse_builder("django", root=app), major)
        assert t.schema_how.startswith("built in"), t.schema_how
        out["full"].append(seconds)
        added = last.parent / "9000_appended.py"
        added.write_text(migration(last.parent / "8000_round.py", "CREATE TABLE appended_bench (id int)"))
        seconds, t = timed_build(server, app, parse_builder("django", root=app), major)
        assert "+ 1 new file" in t.schema_how, t.schema_how
        out["appended"].append(seconds)
        print(f"django round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in out.items()), flush=True)
    return out


def migration(previous: Path, statement: str) -> str:
    return textwrap.dedent(f"""
        from django.db import migrations

        class Migration(migrations.Migration):
            dependencies = [({previous.parent.parent.name!r}, {previous.stem!r})]
            operations = [migrations.RunSQL({statement!r})]
    """)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()
    home = bench_home("layers-")
    cluster = EmbeddedCluster(home)
    me = ProcessId.of(os.getpid())
    server = cluster.acquire(me)
    work = Path(tempfile.mkdtemp(prefix="nocrud-bench-layers-"))
    try:
        sql = sql_rounds(server.admin, server.major, args.rounds, work)
        django = django_rounds(server.admin, server.major, args.rounds, work)
    finally:
        cluster.release(me)
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    full, seed, appended = (Stats(tuple(sql[k])) for k in ("full", "seed", "appended"))
    rows = [
        (f"sql: full build, {HISTORY} files x ~0.1 s + seed", full),
        ("sql: seed-only change", seed),
        ("sql: one appended migration", appended),
    ]
    verdicts = [
        f"- seed-only / full = {seed.median / full.median:.3f} (goal <= 0.2): "
        f"**{'met' if seed.median <= 0.2 * full.median else 'missed'}**",
        f"- appended / full = {appended.median / full.median:.3f} (goal <= 0.2): "
        f"**{'met' if appended.median <= 0.2 * full.median else 'missed'}**",
    ]
    if django["full"]:
        dfull, dapp = Stats(tuple(django["full"])), Stats(tuple(django["appended"]))
        rows += [
            ("django example_app: full build", dfull),
            ("django example_app: one appended migration", dapp),
        ]
        verdicts.append(f"- django appended / full = {dapp.median / dfull.median:.3f}")
    body = "\n".join(
        [
            "Issue 13: a rebuild costs what changed. Goal: seed-only and appended builds each",
            "<= 0.2 x a full build.",
            "",
            machine_line(f"PostgreSQL {server.version}"),
            f"Command: `.venv/bin/python bench/layers.py --rounds {args.rounds}`",
            "",
            *verdicts,
            "",
            "Wall time of `ensure_template` (both layers: locks, clone, build, finalize, rename, GC).",
            "",
            stats_table(rows),
        ]
    )
    print(body)
    if not args.no_write:
        update_section("## Layered templates: full vs seed-only vs appended", body)


if __name__ == "__main__":
    sys.exit(main())
