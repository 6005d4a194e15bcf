"""Layered templates driven through ``ensure_template`` against a live embedded server: which path a
build takes (reused, seed-only, appended, full), what ran, and what GC keeps.

Each schema file appends a row to an ``applied`` table, so "an old migration did not run again" is
counted in the layer itself rather than inferred from timings.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from _support import discard_cluster_dir, new_cluster_dir

from pytest_nocrud.pg import admin
from pytest_nocrud.pg.builders import Builder, detect_django_project, parse_builder
from pytest_nocrud.pg.conninfo import ConnInfo
from pytest_nocrud.pg.procs import ProcessId
from pytest_nocrud.pg.server import EmbeddedCluster
from pytest_nocrud.pg.template import (
    LayerUse,
    Template,
    TemplateRequest,
    collect_layers,
    ensure_template,
    layer_keys,
    preview_template,
)

EXAMPLE_APP = Path(__file__).resolve().parents[2] / "example_app"


@pytest.fixture(scope="module")
def server() -> Iterator[ConnInfo]:
    """A server of this module only: GC here must see no other module's layers."""
    path = new_cluster_dir()
    cluster = EmbeddedCluster(path)
    me = ProcessId.of(os.getpid())
    try:
        yield cluster.acquire(me).admin
    finally:
        cluster.release(me)
        discard_cluster_dir(path)


def migration(n: int, body: str = "") -> str:
    return f"CREATE TABLE IF NOT EXISTS applied (file text);\nINSERT INTO applied VALUES ('{n:03d}');\n{body}"


def build(server: ConnInfo, root: Path, builder: Builder, *, use: LayerUse | None = None) -> Template:
    keys = layer_keys(root, builder.schema_inputs(), builder, 15)
    return ensure_template(TemplateRequest(
        server, keys, builder, lock_dir=root / ".locks", run_token=uuid.uuid4().hex, use=use
    ))


def rows(server: ConnInfo, template: str, query: str) -> list[tuple[object, ...]]:
    """Rows of ``query`` in a throwaway clone of ``template`` (templates accept no connections)."""
    clone = "probe_" + uuid.uuid4().hex[:8]
    with admin.connect(server) as conn:
        admin.create(conn, clone, template=template)
        try:
            with psycopg.connect(server.with_db(clone).dsn) as db:
                return db.execute(query.encode()).fetchall()
        finally:
            admin.drop(conn, clone)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "db").mkdir()
    for n in (1, 2):
        (tmp_path / "db" / f"{n:03d}_m.sql").write_text(migration(n))
    (tmp_path / "seed.sql").write_text("CREATE TABLE seed (v text); INSERT INTO seed VALUES ('one');\n")
    return tmp_path


def sql_builder(root: Path) -> Builder:
    return parse_builder("sql:db", root=root, fixtures=["seed.sql"])


def test_seed_only_change_clones_the_schema_layer_and_runs_no_migration(
    server: ConnInfo, project: Path
) -> None:
    first = build(server, project, sql_builder(project))
    assert not first.reused and first.schema_how.startswith("built in ")
    assert build(server, project, sql_builder(project)).reused

    (project / "seed.sql").write_text("CREATE TABLE seed (v text); INSERT INTO seed VALUES ('two');\n")
    seeded = build(server, project, sql_builder(project))

    assert not seeded.reused and seeded.name != first.name
    assert (seeded.schema, seeded.schema_how) == (first.schema, "reused")
    assert f"(schema layer {first.schema} reused)" in seeded.how
    assert rows(server, seeded.name, "SELECT v FROM seed") == [("two",)]
    assert rows(server, seeded.name, "SELECT file FROM applied ORDER BY file") == [("001",), ("002",)]


def test_appended_migration_runs_only_the_new_file_and_is_tracked(server: ConnInfo, project: Path) -> None:
    first = build(server, project, sql_builder(project))
    (project / "db" / "003_m.sql").write_text(migration(3, "CREATE TABLE third (id int);\n"))

    appended = build(server, project, sql_builder(project))

    assert appended.schema != first.schema
    assert appended.schema_how.startswith(f"built from {first.schema} + 1 new file in ")
    assert rows(server, appended.name, "SELECT file FROM applied ORDER BY file") == [
        ("001",),
        ("002",),
        ("003",),
    ], "an old migration ran again"
    tracked = rows(server, appended.name, "SELECT layer, path, sha256 FROM nocrud.sql_files ORDER BY 1, 2")
    expected = [
        ("data", "seed.sql", hashlib.sha256((project / "seed.sql").read_bytes()).hexdigest()),
        *(
            (
                "schema",
                f"{n:03d}_m.sql",
                hashlib.sha256((project / "db" / f"{n:03d}_m.sql").read_bytes()).hexdigest(),
            )
            for n in (1, 2, 3)
        ),
    ]
    assert tracked == expected


@pytest.mark.parametrize(
    "change",
    ["edit an old file", "remove an old file", "add a file sorting before an old one"],
)
def test_anything_but_appending_is_a_full_build(server: ConnInfo, project: Path, change: str) -> None:
    build(server, project, sql_builder(project))
    if change == "edit an old file":
        (project / "db" / "001_m.sql").write_text(migration(1, "CREATE TABLE edited (id int);\n"))
    elif change == "remove an old file":
        (project / "db" / "002_m.sql").unlink()
    else:
        (project / "db" / "000_early.sql").write_text(migration(0))

    rebuilt = build(server, project, sql_builder(project))

    assert rebuilt.schema_how.startswith("built in "), rebuilt.schema_how


def test_command_builder_appends_only_when_switched_on(server: ConnInfo, tmp_path: Path) -> None:
    """A tool that tracks what it applied (like Alembic): applies each file of versions/ once."""
    (tmp_path / "versions").mkdir()
    (tmp_path / "versions" / "001.sql").write_text(migration(1))
    (tmp_path / "apply.py").write_text(
        textwrap.dedent("""
        import os, pathlib, psycopg
        with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS done (name text)")
            done = {r[0] for r in conn.execute("SELECT name FROM done")}
            for path in sorted(pathlib.Path("versions").glob("*.sql")):
                if path.name not in done:
                    conn.execute(path.read_bytes())
                    conn.execute("INSERT INTO done VALUES (%s)", [path.name])
        """)
    )

    def builder(incremental: bool) -> Builder:
        return parse_builder("command:{python} apply.py", root=tmp_path, incremental_command=incremental)

    def command_build(incremental: bool) -> Template:
        b = builder(incremental)
        keys = layer_keys(tmp_path, ["apply.py", "versions/*.sql"], b, 15)
        request = TemplateRequest(server, keys, b, lock_dir=tmp_path / ".locks", run_token=uuid.uuid4().hex)
        return ensure_template(request)

    first = command_build(False)
    (tmp_path / "versions" / "002.sql").write_text(migration(2))
    assert command_build(False).schema_how.startswith("built in "), "off by default"
    (tmp_path / "versions" / "003.sql").write_text(migration(3))
    on = command_build(True)
    assert on.schema_how.startswith("built from nocrud_sch_") and "+ 1 new file" in on.schema_how
    assert first.schema not in on.schema_how
    assert rows(server, on.name, "SELECT file FROM applied ORDER BY file") == [("001",), ("002",), ("003",)]


@pytest.mark.skipif(
    not EXAMPLE_APP.is_dir() or detect_django_project(EXAMPLE_APP) is None, reason="example_app not present"
)
def test_django_appended_migration_migrates_only_the_new_one(server: ConnInfo, tmp_path: Path) -> None:
    app = tmp_path / "example_app"
    shutil.copytree(EXAMPLE_APP, app, ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3"))
    first = build(server, app, parse_builder("django", root=app))
    migrations = sorted(p for p in app.rglob("migrations/0*.py") if "site-packages" not in p.parts)
    last = migrations[-1]
    (last.parent / "9000_appended.py").write_text(
        textwrap.dedent(f"""
        from django.db import migrations

        class Migration(migrations.Migration):
            dependencies = [({last.parent.parent.name!r}, {last.stem!r})]
            operations = [migrations.RunSQL("CREATE TABLE appended_by_test (id int)")]
        """)
    )

    builder = parse_builder("django", root=app)
    plan = preview_template(server, layer_keys(app, builder.schema_inputs(), builder, 15), builder)
    assert plan.schema_how == f"would be built from {first.schema} + 1 new file"
    (path, text), *fixtures = plan.files
    assert path == (last.parent / "9000_appended.py").relative_to(app).as_posix()
    assert "CREATE TABLE appended_by_test (id int)" in text, "sqlmigrate of the new migration only"

    appended = build(server, app, parse_builder("django", root=app))

    assert appended.schema_how.startswith(f"built from {first.schema} + 1 new file in "), appended.schema_how
    assert rows(server, appended.name, "SELECT to_regclass('appended_by_test') IS NOT NULL") == [(True,)]


def test_gc_evicts_by_last_use_and_never_drops_a_layer_in_use(server: ConnInfo, tmp_path: Path) -> None:
    def variant(tag: str) -> Path:
        root = tmp_path / tag
        (root / "db").mkdir(parents=True)
        (root / "db" / "001.sql").write_text(f"CREATE TABLE t_{tag} (id int);\n")
        return root

    with admin.connect(server) as conn:
        collect_layers(conn, keep_count=0)  # start from nothing of earlier tests
    other_run = LayerUse(server)  # another live run, on its own connection, using "held"
    held_root = variant("held")
    held = build(server, held_root, parse_builder("sql:db", root=held_root), use=other_run)
    base_root = variant("base")
    base = build(server, base_root, parse_builder("sql:db", root=base_root))
    try:
        for i in range(1, 5):  # base -> X1 -> base -> X2 -> base -> X3 -> base -> X4 -> base
            root = variant(f"x{i}")
            build(server, root, parse_builder("sql:db", root=root))
            again = build(server, base_root, parse_builder("sql:db", root=base_root))
            assert again.reused and again.name == base.name, f"base was evicted after x{i}"
        with admin.connect(server) as conn:
            left = admin.names_like(conn, "nocrud_tpl_")
        assert held.name in left, "GC dropped a layer a live run uses"
        assert len(left) == 3 + 1 + 1  # three most recently used others + the newest + the one in use
    finally:
        other_run.close()
    with admin.connect(server) as conn:
        assert held.name in collect_layers(conn, keep_count=0), "unmarked, the oldest layer goes"
