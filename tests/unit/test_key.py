"""The template key changes exactly when something that shapes the schema changes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from pytest_nocrud.pg import key as keymod
from pytest_nocrud.pg.key import TEMPLATE_FORMAT_VERSION, compute_key, match_inputs, template_name

GLOBS = ["db/**/*.sql"]


def make_project(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(
        tmp_path / "proj",
        {
            "db/001_users.sql": "create table users(id int);\n",
            "db/002_posts.sql": "create table posts(id int);\n",
            "db/nested/003_idx.sql": "create index on posts(id);\n",
            "db/README.md": "not an input\n",
        },
    )


def key_of(root: Path, globs: list[str] = GLOBS, identity: str = "sql:db", major: int = 15) -> str:
    return compute_key(root, globs, identity, major).key


def test_key_shape_and_files(project: Path) -> None:
    tk = compute_key(project, GLOBS, "sql:db", 15)
    assert len(tk.key) == 64 and int(tk.key, 16) >= 0
    assert tk.files == ("db/001_users.sql", "db/002_posts.sql", "db/nested/003_idx.sql")
    assert tk.unmatched_globs == ()
    assert tk.name == template_name(tk.key) == "nocrud_tpl_" + tk.key[:16]
    assert tk.paths[0] == project / "db/001_users.sql"


def test_content_change_changes_key_and_reverting_restores_it(project: Path) -> None:
    before = key_of(project)
    f = project / "db/nested/003_idx.sql"
    f.write_text("create index on posts(id, id);\n")
    assert key_of(project) != before
    f.write_text("create index on posts(id);\n")
    assert key_of(project) == before


def test_mtime_touch_does_not_change_key(project: Path) -> None:
    before = key_of(project)
    for p in (project / "db").rglob("*.sql"):
        os.utime(p, (1_000_000_000, 1_000_000_000))
    assert key_of(project) == before


def test_other_absolute_root_same_content_same_key(project: Path, tmp_path: Path) -> None:
    clone = tmp_path / "somewhere" / "else" / "checkout"
    shutil.copytree(project, clone)
    assert key_of(clone) == key_of(project)


def test_discovery_order_and_glob_order_do_not_matter(project: Path, tmp_path: Path) -> None:
    # Same files created in reverse order (directory listing order differs), globs listed differently.
    files = {
        str(p.relative_to(project)): p.read_text()
        for p in sorted(project.rglob("*"), reverse=True)
        if p.is_file()
    }
    other = make_project(tmp_path / "reversed", files)
    assert key_of(other, ["db/nested/*.sql", "db/*.sql"]) == key_of(project, ["db/*.sql", "db/nested/*.sql"])
    # Overlapping globs count a file once.
    assert key_of(project, ["db/**/*.sql", "db/*.sql"]) == key_of(project)


def test_renaming_adding_or_removing_a_file_changes_key(project: Path) -> None:
    before = key_of(project)
    (project / "db/002_posts.sql").rename(project / "db/002_posts_v2.sql")
    renamed = key_of(project)
    assert renamed != before
    (project / "db/004_empty.sql").write_text("")
    assert key_of(project) not in (before, renamed)


def test_framing_path_content_boundary(tmp_path: Path) -> None:
    a = make_project(tmp_path / "a", {"x/ab": "c"})
    b = make_project(tmp_path / "b", {"x/a": "bc"})
    assert key_of(a, ["x/*"]) != key_of(b, ["x/*"])


def test_builder_identity_server_major_and_format_version(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = key_of(project)
    assert key_of(project, identity="sql:db2") != base
    assert key_of(project, identity="command:make schema") != base
    assert key_of(project, major=16) != base
    monkeypatch.setattr(keymod, "TEMPLATE_FORMAT_VERSION", TEMPLATE_FORMAT_VERSION + 1)
    assert key_of(project) != base


def test_unmatched_globs_are_reported_not_fatal(project: Path) -> None:
    tk = compute_key(project, ["db/*.sql", "migrations/**/*.py", "", "# comment"], "sql:db", 15)
    assert tk.files == ("db/001_users.sql", "db/002_posts.sql")
    assert tk.unmatched_globs == ("migrations/**/*.py",)
    empty = compute_key(project, [], "sql:db", 15)
    assert empty.files == () and empty.key != tk.key


def test_absolute_glob_rejected(project: Path) -> None:
    with pytest.raises(ValueError, match="relative to the project root"):
        compute_key(project, [str(project / "db/*.sql")], "sql:db", 15)


def test_glob_syntax(tmp_path: Path) -> None:
    root = make_project(
        tmp_path / "p",
        {
            "app/migrations/0001_initial.py": "1",
            "app/migrations/__init__.py": "",
            "app/sub/deep/migrations/0001_x.py": "2",
            "app/migrations/notes.txt": "n",
            ".venv/lib/site-packages/django/contrib/auth/migrations/0001_initial.py": "venv",
            "node_modules/x/migrations/0001.py": "js",
            "db/a1.sql": "a",
            "db/b2.sql": "b",
            "db/only_dir/x.sql": "x",
            "../shared/common.sql": "shared",
        },
    )
    files, _ = match_inputs(root, ["**/migrations/*.py"])
    assert files == [
        "app/migrations/0001_initial.py",
        "app/migrations/__init__.py",
        "app/sub/deep/migrations/0001_x.py",
    ]
    files, _ = match_inputs(root, ["**/migrations/*.py", "!**/__init__.py"])
    assert "app/migrations/__init__.py" not in files and len(files) == 2
    assert match_inputs(root, ["db/[a]?.sql"])[0] == ["db/a1.sql"]
    assert match_inputs(root, ["db/[!a]?.sql"])[0] == ["db/b2.sql"]
    assert match_inputs(root, ["db/*.sql"])[0] == ["db/a1.sql", "db/b2.sql"]  # * stays in one segment
    assert match_inputs(root, ["./db/only_dir"])[0] == ["db/only_dir/x.sql"]  # a directory: all below
    assert match_inputs(root, ["../shared/*.sql"])[0] == ["../shared/common.sql"]
    # A literal prefix may name a skipped directory on purpose.
    assert match_inputs(root, [".venv/lib/site-packages/**/migrations/*.py"])[0] == [
        ".venv/lib/site-packages/django/contrib/auth/migrations/0001_initial.py"
    ]


def test_every_one_of_many_files_feeds_the_key(tmp_path: Path) -> None:
    root = make_project(tmp_path / "big", {f"migrations/{i:04d}_m.sql": "x" * 2000 for i in range(500)})
    tk = compute_key(root, ["migrations/**/*.sql"], "sql:migrations", 15)
    assert list(tk.files) == [f"migrations/{i:04d}_m.sql" for i in range(500)]
    assert len(set(tk.digests)) == 1 and len(tk.digests) == 500  # same content, one digest each

    (root / "migrations" / "0499_m.sql").write_text("x" * 1999 + "y")
    assert compute_key(root, ["migrations/**/*.sql"], "sql:migrations", 15).key != tk.key
