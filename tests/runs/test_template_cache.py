"""``nocrud_template_cache``: a cold runner restores the template from an archive instead of building it.

Every test drives inner pytest runs (subprocesses) against real embedded servers and the servers' own
``pg_dump``/``pg_restore``. A "cold runner" is a second, brand-new data dir: nothing of the first
server is there but the cache directory. The inner project is a ``sql:`` schema + a seed file + a
``@template_setup`` against a tiny app, so an archive must carry the schema, the seed rows, the SQL
runner's tracking table and the setup's outputs.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from _support import JSON_HANDLER, discard_cluster_dir, new_cluster_dir, postgres_pids, run_inner

from pytest_nocrud.pg import admin
from pytest_nocrud.pg.cache import DUMP_FILES, LAYERS, Manifest, archive_name, sha256_of, write_archive
from pytest_nocrud.pg.names import BUILD_PREFIX
from pytest_nocrud.pg.procs import ProcessId
from pytest_nocrud.pg.server import EmbeddedCluster

SCHEMA = "CREATE TABLE item (id serial PRIMARY KEY, name text NOT NULL);\n"
SEED = "INSERT INTO item (name) VALUES ('seed-1'), ('seed-2');\n"

APP = JSON_HANDLER + r'''
import os, sys
import psycopg


class Handler(JsonHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self._send(200, {"ok": True})

    def do_POST(self):
        with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
            row = conn.execute("INSERT INTO item (name) VALUES ('from-setup') RETURNING id").fetchone()
        self._send(201, {"id": row[0]})


http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
'''

CONFTEST = """
from pytest_nocrud import expect_status, template_setup


@template_setup
def made_item(client):
    return expect_status(client.post("/items"), 201).json()
"""

TESTS = """
import os

def test_schema_seed_and_setup_outputs(nocrud_db, nocrud_setup, nocrud_template):
    with nocrud_db.connect() as conn:
        names = sorted(row[0] for row in conn.execute("SELECT name FROM item"))
        ran = sorted(row[0] for row in conn.execute("SELECT path FROM nocrud.sql_files"))
    assert names == ["from-setup", "seed-1", "seed-2"]
    assert ran == ["001_items.sql", "seed.sql"]
    assert nocrud_setup["made_item"]["id"] == 3
    expected = os.environ.get("EXPECT_RESTORED")
    if expected:  # every worker's fixture says how this run got the template
        assert nocrud_template.restored == (expected == "yes"), nocrud_template
        assert nocrud_template.reused == (expected == "reused"), nocrud_template

def test_writes_stay_in_own_database(nocrud_db):
    with nocrud_db.connect() as conn:
        conn.execute("INSERT INTO item (name) VALUES ('mine')")
        conn.commit()
        assert conn.execute("SELECT count(*) FROM item").fetchone() == (4,)
"""

TEMPLATE_LINE = re.compile(r"^template: (nocrud_tpl_[0-9a-f]{16}) \(key [0-9a-f]{12}\) (.*)$", re.MULTILINE)
CACHE_DIR = ".nocrud-cache"


@pytest.fixture
def project(pytester: pytest.Pytester) -> Path:
    """The inner project; returns its cache directory (not created yet: the first run makes it)."""
    (pytester.path / "db").mkdir()
    (pytester.path / "db" / "001_items.sql").write_text(SCHEMA)
    (pytester.path / "seed.sql").write_text(SEED)
    (pytester.path / "app.py").write_text(APP)
    pytester.makeini(
        "[pytest]\nnocrud_builder = sql:db\nnocrud_fixtures = seed.sql\n"
        "nocrud_app_command = {python} app.py {port}\n"
        f"nocrud_template_cache = {CACHE_DIR}\n"
    )
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_inner=TESTS)
    return pytester.path / CACHE_DIR


@pytest.fixture
def cold_data_dir() -> Iterator[Path]:
    """A second data dir nobody has used: a cold CI runner's."""
    path = new_cluster_dir()
    yield path
    discard_cluster_dir(path)


def template_line(output: str) -> tuple[str, str]:
    match = TEMPLATE_LINE.search(output)
    assert match, output
    return match.group(1), match.group(2)


def the_archive(cache: Path) -> Path:
    archives = sorted(cache.glob("nocrud-template-*.tar"))
    assert len(archives) == 1, sorted(cache.iterdir())
    return archives[0]


def leftovers(data_dir: Path) -> list[str]:
    """Build databases (half-built or half-restored layers) left on the server of ``data_dir``."""
    cluster = EmbeddedCluster(data_dir)
    me = ProcessId.of(os.getpid())
    server = cluster.acquire(me)
    try:
        with admin.connect(server.admin) as conn:
            return admin.names_like(conn, BUILD_PREFIX)
    finally:
        cluster.release(me)


def everything(result: pytest.RunResult) -> str:
    """stdout (the summary) and stderr (the progress lines) of an inner run."""
    return result.stdout.str() + "\n" + result.stderr.str()


def ignored_lines(output: str) -> list[str]:
    """The refusal lines, without the progress prefix (``[nocrud gw0] ``)."""
    return [
        re.sub(r"^\[nocrud[^\]]*\] ", "", line)
        for line in output.splitlines()
        if "template cache archive" in line and "ignored" in line
    ]


# --------------------------------------------------------------------------------------------- tests


def test_first_run_fills_the_cache_and_a_cold_runner_restores_from_it(
    pytester: pytest.Pytester, data_dir: Path, cold_data_dir: Path, project: Path
) -> None:
    first = run_inner(pytester, data_dir, "-n", "2", EXPECT_RESTORED="no")
    first.assert_outcomes(passed=2)
    name, how = template_line(everything(first))
    assert how.startswith("built in")
    archive = the_archive(project)
    assert archive.name == archive_name(archive.name.removeprefix("nocrud-template-").removesuffix(".tar"))
    assert name.removeprefix("nocrud_tpl_") in archive.name, "the archive's name holds the key"
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert stat.S_IMODE(project.stat().st_mode) == 0o700
    assert [p.name for p in project.iterdir() if not p.name.endswith(".lock")] == [archive.name], (
        "no temp file may be left beside the archive"
    )

    cold = run_inner(pytester, cold_data_dir, "-n", "2", EXPECT_RESTORED="yes")
    cold.assert_outcomes(passed=2)
    out = everything(cold)
    assert template_line(out) == (name, template_line(out)[1])
    assert re.fullmatch(r"restored from cache in [0-9.]+s", template_line(out)[1]), out
    assert "building template layer" not in out, "a cold runner with a warm cache must build nothing"
    assert out.count("restoring template layer nocrud_tpl_") == 1, "one worker restores, once"
    assert "restoring template layer nocrud_sch_" not in out, "the schema layer is not needed to run"
    assert leftovers(cold_data_dir) == []

    warm = run_inner(pytester, cold_data_dir, "-p", "no:xdist", EXPECT_RESTORED="reused")  # it persists
    warm.assert_outcomes(passed=2)
    assert template_line(everything(warm)) == (name, "reused")
    assert postgres_pids(data_dir) == [] and postgres_pids(cold_data_dir) == []


def test_the_schema_layer_comes_from_the_cache_when_a_seed_change_or_an_appended_migration_needs_it(
    pytester: pytest.Pytester, data_dir: Path, cold_data_dir: Path, project: Path
) -> None:
    run_inner(pytester, data_dir, "-p", "no:xdist").assert_outcomes(passed=2)
    cold = run_inner(pytester, cold_data_dir, "-p", "no:xdist")
    cold.assert_outcomes(passed=2)
    assert template_line(everything(cold))[1].startswith("restored from cache")

    # A seed change: no archive for the new data key, but one holds its schema layer: no migration runs.
    (pytester.path / "seed.sql").write_text(SEED.replace("seed-2", "seed-3"))
    seeded = run_inner(pytester, cold_data_dir, "-p", "no:xdist", "-k", "writes")
    seeded.assert_outcomes(passed=1)
    out = everything(seeded)
    assert "building template layer nocrud_sch_" not in out, out
    assert re.search(r"\(schema layer nocrud_sch_[0-9a-f]+ restored from cache in [0-9.]+s\)", out), out

    # An appended file: the cached schema layer carries its file list, so the new file runs alone on it.
    (pytester.path / "db" / "002_index.sql").write_text("CREATE INDEX item_name ON item (name);\n")
    appended = run_inner(pytester, cold_data_dir, "-p", "no:xdist", "-k", "writes")
    appended.assert_outcomes(passed=1)
    assert "+ 1 new file" in template_line(everything(appended))[1], everything(appended)
    assert len(list(project.glob("nocrud-template-*.tar"))) == 3, "each new template was written back"


def test_a_corrupt_or_truncated_archive_is_one_line_and_the_template_is_built(
    pytester: pytest.Pytester, data_dir: Path, cold_data_dir: Path, project: Path
) -> None:
    run_inner(pytester, data_dir, "-p", "no:xdist").assert_outcomes(passed=2)
    archive = the_archive(project)
    data = bytearray(archive.read_bytes())
    with tarfile.open(archive) as tar:  # the middle of the data layer's dump, not the tar's padding
        member = tar.getmember(DUMP_FILES["template"])
        middle = member.offset_data + member.size // 2
    data[middle : middle + 8] = bytes(b ^ 0xFF for b in data[middle : middle + 8])
    archive.write_bytes(bytes(data))

    flipped = run_inner(pytester, cold_data_dir, "-n", "2")
    flipped.assert_outcomes(passed=2)
    out = everything(flipped)
    assert ignored_lines(out) == [
        f"pytest-nocrud: template cache archive {archive} ignored: checksum mismatch (template.dump); "
        "building instead"
    ], out
    assert template_line(out)[1].startswith("built in")
    assert leftovers(cold_data_dir) == []
    assert archive.read_bytes() != bytes(data), "the build replaces the bad archive with a good one"

    discard_cluster_dir(cold_data_dir)
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    truncated = run_inner(pytester, cold_data_dir, "-p", "no:xdist")
    truncated.assert_outcomes(passed=2)
    lines = ignored_lines(everything(truncated))
    assert len(lines) == 1 and "truncated or corrupt archive" in lines[0], everything(truncated)
    assert template_line(everything(truncated))[1].startswith("built in")


def test_a_foreign_archive_is_ignored(
    pytester: pytest.Pytester, data_dir: Path, cold_data_dir: Path, project: Path
) -> None:
    run_inner(pytester, data_dir, "-p", "no:xdist").assert_outcomes(passed=2)
    old = the_archive(project)
    (pytester.path / "seed.sql").write_text(SEED.replace("seed-2", "seed-3"))  # another data key
    key = subprocess.run(
        [str(Path(sys.executable).parent / "nocrud"), "key", "--short", "--data-dir", str(cold_data_dir)],
        cwd=pytester.path, capture_output=True, text=True, timeout=120,
    ).stdout.strip()  # fmt: skip
    foreign = project / archive_name(key)
    old.rename(foreign)  # the old template's archive under the new key's name

    result = run_inner(pytester, cold_data_dir, "-p", "no:xdist", "-k", "writes")
    result.assert_outcomes(passed=1)
    lines = ignored_lines(everything(result))
    assert len(lines) == 1 and "ignored: key mismatch (it holds template key" in lines[0], lines
    assert template_line(everything(result))[1].startswith("built in")
    manifest = json.loads(subprocess.run(
        ["tar", "-xOf", str(foreign), "manifest.json"], capture_output=True, check=True
    ).stdout)  # fmt: skip
    assert manifest["key"] == key, "the build wrote the right archive over the foreign one"


def test_a_restore_that_fails_midway_leaves_no_database_and_builds(
    pytester: pytest.Pytester, data_dir: Path, cold_data_dir: Path, project: Path, tmp_path: Path
) -> None:
    run_inner(pytester, data_dir, "-p", "no:xdist").assert_outcomes(passed=2)
    archive = the_archive(project)
    manifest = Manifest.from_json(subprocess.run(
        ["tar", "-xOf", str(archive), "manifest.json"], capture_output=True, check=True
    ).stdout)  # fmt: skip
    subprocess.run(["tar", "-xf", str(archive), "-C", str(tmp_path)], check=True)
    dumps = {layer: tmp_path / DUMP_FILES[layer] for layer in LAYERS}
    dumps["template"].write_bytes(b"not a dump at all, but its checksum is right\n" * 100)
    sums = {DUMP_FILES[layer]: sha256_of(path) for layer, path in dumps.items()}
    write_archive(archive, Manifest(**{**manifest.__dict__, "sha256": sums}), dumps)

    result = run_inner(pytester, cold_data_dir, "-p", "no:xdist")
    result.assert_outcomes(passed=2)
    lines = ignored_lines(everything(result))
    assert len(lines) == 1 and "ignored: pg_restore failed on nocrud_bld_t" in lines[0], lines
    out = everything(result)
    assert "template: " in out and "(schema layer nocrud_sch_" in template_line(out)[1]
    assert "restored from cache in" in template_line(out)[1].split("schema layer")[1], (
        "the restored schema layer stays: only the data layer is built"
    )
    assert leftovers(cold_data_dir) == [], "a half-restored layer must be dropped"


NOCRUD = str(Path(sys.executable).parent / "nocrud")


def test_nocrud_build_export_then_import_on_a_fresh_data_dir(
    pytester: pytest.Pytester, data_dir: Path, cold_data_dir: Path, project: Path, tmp_path: Path
) -> None:
    exported = tmp_path / "ci-cache"

    def nocrud(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [NOCRUD, *map(str, args)], cwd=pytester.path, capture_output=True, text=True, timeout=300
        )

    export = nocrud("build", "--data-dir", data_dir, "--export", exported)
    assert export.returncode == 0, export.stdout + export.stderr
    archive = the_archive(exported)
    assert f"template cache: wrote {archive}" in export.stdout

    again = nocrud("build", "--data-dir", data_dir, "--export", exported)  # reused and kept as it is
    assert again.returncode == 0 and "reused" in again.stdout, again.stdout + again.stderr

    imported = nocrud("build", "--data-dir", cold_data_dir, "--import", exported)
    assert imported.returncode == 0, imported.stdout + imported.stderr
    assert "restored from cache in" in imported.stdout and "building" not in imported.stdout

    run = run_inner(pytester, cold_data_dir, "-p", "no:xdist")
    run.assert_outcomes(passed=2)
    assert template_line(everything(run))[1] == "reused"

    # The imported runner has no schema layer of its own: its export is the verified archive, copied.
    forwarded = tmp_path / "next-cache"
    again = nocrud("build", "--data-dir", cold_data_dir, "--import", exported, "--export", forwarded)
    assert again.returncode == 0, again.stdout + again.stderr
    assert the_archive(forwarded).read_bytes() == archive.read_bytes()
