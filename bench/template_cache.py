"""Time to first test on a cold runner: a full template build vs a restore from a warm template cache.

A cold runner is a brand-new cluster home: each sample pays initdb + server start (``acquire``) and then
``ensure_template`` as a test run calls it -- a full build of both layers, or, with
``nocrud_template_cache`` holding the archive for the key, the restore of the data layer (``pg_restore``
with the server's own binaries, finalize included). That is what stands between a cold CI job and its
first test (the app start and the first clone come on top, the same either way).

Projects: a generated ``sql:`` project with ``--files`` migration files (each a table with an index and
a foreign key to the previous one) and a seed file; the example Django app (``example_app``: migrate +
loaddata; its ``@template_setup`` functions are not run here, as they need the app); and the same
project with an app of ``--files`` generated migrations (a long Django migration history: Django's
migration framework, not the SQL, is what makes such a build slow).

    flock /tmp/nocrud-bench.lock .venv/bin/python bench/template_cache.py --rounds 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from common import Stats, bench_home, machine_line, stats_table, update_section

from pytest_nocrud.pg.binaries import dump_bindir
from pytest_nocrud.pg.builders import Builder, detect_django_project, parse_builder
from pytest_nocrud.pg.cache import DumpTools, TemplateCache
from pytest_nocrud.pg.procs import ProcessId
from pytest_nocrud.pg.server import EmbeddedCluster
from pytest_nocrud.pg.template import Template, TemplateRequest, ensure_template, layer_keys

EXAMPLE_APP = Path(__file__).resolve().parents[1] / "example_app"


def cold_start(root: Path, builder: Callable[[], Builder], cache_dir: Path | None) -> tuple[float, Template]:
    """A new cluster home, acquired, then the template: the seconds of both, and the template."""
    home = bench_home("cache-")
    started = time.perf_counter()
    cluster = EmbeddedCluster(home)
    me = ProcessId.of(os.getpid())
    server = cluster.acquire(me)
    try:
        made = builder()
        keys = layer_keys(root, made.schema_inputs(), made, server.major)
        cache = None
        if cache_dir is not None:
            bindir = dump_bindir(server.major, prefer=cluster.bindir)
            assert bindir is not None, "no pg_dump/pg_restore of the server's major"
            cache = TemplateCache(cache_dir, DumpTools(bindir, server.major))
        request = TemplateRequest(
            server.admin, keys, made, lock_dir=home / "locks", run_token=uuid.uuid4().hex,
            cache=(lambda: cache) if cache is not None else None,
        )  # fmt: skip
        template = ensure_template(request)
        return time.perf_counter() - started, template
    finally:
        cluster.release(me)
        shutil.rmtree(home, ignore_errors=True)


def sql_project(root: Path, files: int) -> None:
    (root / "db").mkdir(parents=True)
    for n in range(1, files + 1):
        ref = f", prev_id int REFERENCES t_{n - 1:04d} (id)" if n > 1 else ""
        (root / "db" / f"{n:04d}_m.sql").write_text(
            f"CREATE TABLE t_{n:04d} (id serial PRIMARY KEY, name text NOT NULL, created timestamptz "
            f"DEFAULT now(){ref});\nCREATE INDEX t_{n:04d}_name ON t_{n:04d} (name);\n"
        )
    (root / "seed.sql").write_text(
        "INSERT INTO t_0001 (name) SELECT 'row ' || g FROM generate_series(1, 1000) AS g;\n"
    )


def django_history(app: Path, migrations: int) -> None:
    """Add an app ``history`` with ``migrations`` generated migrations to a copy of the example project:
    every 4th creates a model with a foreign key to the previous one, the others add a field to the
    newest model -- the shape of a real project's long migration history (``models.py`` matches it)."""
    pkg = app / "history"
    (pkg / "migrations").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "migrations" / "__init__.py").write_text("")
    models: dict[str, list[str]] = {}
    for n in range(1, migrations + 1):
        previous = f"    dependencies = [('history', '{n - 1:04d}_step')]\n" if n > 1 else ""
        if n % 4 == 1:
            model = f"Ledger{len(models)}"
            fk = ""
            if models:
                prior = list(models)[-1]
                fk = f"('prior', models.ForeignKey(on_delete=models.CASCADE, to='history.{prior}')), "
            models[model] = ["prior"] if fk else []
            operation = (
                f"migrations.CreateModel(name='{model}', fields=[('id', models.BigAutoField("
                f"primary_key=True, serialize=False)), {fk}('name', models.CharField(max_length=80))])"
            )
        else:
            model = list(models)[-1]
            field = f"field_{n:04d}"
            models[model].append(field)
            operation = (
                f"migrations.AddField(model_name='{model.lower()}', name='{field}', "
                "field=models.CharField(default='', max_length=40))"
            )
        (pkg / "migrations" / f"{n:04d}_step.py").write_text(
            "from django.db import migrations, models\n\n\nclass Migration(migrations.Migration):\n"
            f"{previous}    operations = [{operation}]\n"
        )
    lines = ["from django.db import models", ""]
    names = list(models)
    for index, (model, fields) in enumerate(models.items()):
        lines += ["", f"class {model}(models.Model):", "    name = models.CharField(max_length=80)"]
        for field in fields:
            if field == "prior":
                lines.append(f"    prior = models.ForeignKey('{names[index - 1]}', on_delete=models.CASCADE)")
            else:
                lines.append(f"    {field} = models.CharField(default='', max_length=40)")
    (pkg / "models.py").write_text("\n".join(lines) + "\n")
    settings = app / "pitchdesk" / "settings.py"
    settings.write_text(settings.read_text() + "\nINSTALLED_APPS.append('history')\n")


def measure(
    name: str, root: Path, builder: Callable[[], Builder], rounds: int, work: Path
) -> dict[str, Stats]:
    cache_dir = work / f"cache-{name}"
    seconds, template = cold_start(root, builder, cache_dir)  # fills the cache (not a sample)
    assert template.how.startswith("built"), template.how
    archive = next(cache_dir.glob("*.tar"))
    print(f"{name}: archive {archive.stat().st_size / 1e6:.2f} MB, first build + write {seconds:.2f}s")
    full: list[float] = []
    restored: list[float] = []
    for r in range(rounds):  # alternating, so a drift in the machine's load hits both alike
        seconds, template = cold_start(root, builder, None)
        assert template.how.startswith("built"), template.how
        full.append(seconds)
        seconds, template = cold_start(root, builder, cache_dir)
        assert template.restored, template.how
        restored.append(seconds)
        print(f"{name} round {r + 1}: full build {full[-1]:.2f}s, restored {restored[-1]:.2f}s", flush=True)
    size = Stats((float(archive.stat().st_size),))
    return {"full": Stats(tuple(full)), "restored": Stats(tuple(restored)), "size": size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--files", type=int, default=240, help="migrations of the sql: project and of the Django history app"
    )
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nocrud-bench-cache-"))
    version = ""
    try:
        sql_root = work / "sql"
        sql_project(sql_root, args.files)
        results = {
            "sql": measure(
                "sql", sql_root, lambda: parse_builder("sql:db", root=sql_root, fixtures=["seed.sql"]),
                args.rounds, work,
            )
        }  # fmt: skip
        if detect_django_project(EXAMPLE_APP) is not None:
            app = work / "example_app"
            shutil.copytree(EXAMPLE_APP, app, ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3"))
            fixtures = ["fixtures/users.json", "fixtures/catalog.json"]  # example_app/pytest.ini's order
            results["django"] = measure(
                "django", app, lambda: parse_builder("django", root=app, fixtures=fixtures), args.rounds, work
            )
            big = work / "example_app_history"
            shutil.copytree(app, big)
            django_history(big, args.files)
            results["django_history"] = measure(
                "django_history", big, lambda: parse_builder("django", root=big, fixtures=fixtures),
                args.rounds, work,
            )  # fmt: skip
        cluster = EmbeddedCluster(bench_home("cache-version-"))
        version = cluster.version
        shutil.rmtree(cluster.root.parent, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    labels = {
        "sql": f"sql: {args.files} migration files + seed",
        "django": "django example_app (migrate + loaddata)",
        "django_history": f"django example_app + {args.files} generated migrations",
    }
    rows = []
    verdicts = []
    for name, figures in results.items():
        rows += [
            (f"{labels[name]}: full build", figures["full"]),
            (f"{labels[name]}: restored from cache", figures["restored"]),
        ]
        ratio = figures["restored"].median / figures["full"].median
        size = figures["size"].median / 1e6
        verdicts.append(f"- {labels[name]}: restored / full = {ratio:.2f} (archive {size:.2f} MB)")
    body = "\n".join(
        [
            "Issue 23 item 1: a cold runner (new cluster home) with a warm `nocrud_template_cache` restores",
            "the template instead of building it.",
            "",
            machine_line(f"PostgreSQL {version}"),
            f"Command: `flock /tmp/nocrud-bench.lock .venv/bin/python bench/template_cache.py --rounds "
            f"{args.rounds} --files {args.files}`",
            "",
            *verdicts,
            "",
            "Wall time from a new cluster home to a usable template: initdb + server start +",
            "`ensure_template` (a build of both layers, or the restore of the data layer from the archive;",
            "locks, finalize, rename, GC included). Full builds and restores alternate.",
            "",
            "Where the floor is: a restore replays the dump's DDL with `pg_restore`, so for a `sql:` project",
            "whose migrations are plain DDL on empty tables it costs what the build costs (each table comes",
            "back as ~10 statements: table, sequence, default, COPY, setval, key, index, foreign key). The",
            "cache pays where a build is more than its DDL: Django's migration framework, fixtures, setups.",
            "",
            stats_table(rows),
        ]
    )
    print(body)
    if not args.no_write:
        update_section("## Template cache: cold runner, full build vs restore", body)


if __name__ == "__main__":
    sys.exit(main())
