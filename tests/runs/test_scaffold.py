"""``nocrud scaffold`` against both examples: generate, fill in the TODO auth line, run it green.

The example is copied to a temporary directory (the scaffold writes into the project), then
``nocrud scaffold`` starts its app exactly as a run would (Alembic template, clone, uvicorn), reads
``/openapi.json`` and writes ``tests/test_crud_scaffold.py``; an inner pytest run of only that file
must pass. The Django example serves no schema, so its DRF router viewsets are described instead.
Real embedded PostgreSQL, real app, real HTTP.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fastapi"
EXAMPLE_APP = Path(__file__).resolve().parents[2] / "example_app"


def _run(args: list[str], cwd: Path, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "NOCRUD_"))}
    env["NOCRUD_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=240,
        check=False,
    )


def test_scaffold_writes_crud_flows_that_pass(tmp_path: Path, data_dir: Path) -> None:
    project = tmp_path / "bookshelf"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("__pycache__", "test_crud_scaffold.py"))
    scaffold = [*"-m pytest_nocrud.cli".split(), "--rootdir", str(project), "scaffold"]

    made = _run(scaffold, project, data_dir)
    assert made.returncode == 0, made.stdout
    assert "wrote" in made.stdout and "4 CrudFlow(s) (author, book, tag, review)" in made.stdout
    generated = project / "tests" / "test_crud_scaffold.py"
    source = generated.read_text()
    assert 'requires={"author_id": AUTHOR}' in source  # the foreign key, from the field name
    assert 'requires={"book_id": BOOK}' in source
    assert 'detail_path="/reviews/{id}"' in source  # items are not where CrudFlow would guess
    assert '"rating": 1' in source  # within the schema's bounds (1-5)
    assert "# TODO auth" in source and "AS_USER = None" in source

    again = _run(scaffold, project, data_dir)
    assert again.returncode == 1
    assert "never overwrites" in again.stdout
    assert generated.read_text() == source

    # What a user does next: fill in the login, run the file.
    generated.write_text(source.replace("AS_USER = None", 'AS_USER = AsToken("editor", "editor-pass")'))
    ran = _run(["-m", "pytest", "-p", "no:cacheprovider", "tests/test_crud_scaffold.py"], project, data_dir)
    assert ran.returncode == 0, ran.stdout
    assert "4 passed" in ran.stdout


def test_scaffold_describes_drf_viewsets_when_django_serves_no_schema(tmp_path: Path, data_dir: Path) -> None:
    """The Django example serves no OpenAPI schema: the router's viewsets and serializers stand in."""
    project = tmp_path / "pitchdesk"
    shutil.copytree(EXAMPLE_APP, project, ignore=shutil.ignore_patterns("__pycache__"))
    made = _run([*"-m pytest_nocrud.cli".split(), "--rootdir", str(project), "scaffold"], project, data_dir)
    assert made.returncode == 0, made.stdout
    assert "11 CrudFlow(s)" in made.stdout
    generated = project / "tests" / "test_crud_scaffold.py"
    source = generated.read_text()
    assert 'requires={"category": TAG_CATEGORY}' in source  # from the serializer's related field's model
    assert 'requires={"production": PRODUCTION, "played_by": ACTOR}' in source
    assert '#   AS_USER = AsUser("username", "password")' in source

    generated.write_text(source.replace("AS_USER = None", 'AS_USER = AsUser("admin", "admin-pass")'))
    ran = _run(["-m", "pytest", "-p", "no:cacheprovider", "tests/test_crud_scaffold.py"], project, data_dir)
    assert ran.returncode == 0, ran.stdout
    assert "11 passed" in ran.stdout
