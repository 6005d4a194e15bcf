"""Which input changes a builder may apply on a clone of an older schema layer (no PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_nocrud.pg.builders import CommandBuilder, SqlBuilder

OLD = {"db/001_a.sql": "aa", "db/002_b.sql": "bb"}


@pytest.mark.parametrize(
    ("new", "expected"),
    [
        ({**OLD, "db/003_c.sql": "cc"}, ["db/003_c.sql"]),
        ({**OLD, "db/004_d.sql.j2": "dd", "db/003_c.sql": "cc"}, ["db/003_c.sql", "db/004_d.sql.j2"]),
        ({**OLD, "db/sub/001_x.sql": "xx"}, ["db/sub/001_x.sql"]),  # "sub/..." sorts after "002_b.sql"
        ({**OLD, "db/000_early.sql": "ee"}, None),  # would run before old files in a full build
        ({**OLD, "db/001_a.sql": "changed", "db/003_c.sql": "cc"}, None),
        ({"db/001_a.sql": "aa", "db/003_c.sql": "cc"}, None),  # an old file removed
        ({**OLD, "other/helper.py": "hh"}, None),  # a new input that is not a migration
        (OLD, None),  # nothing new: not an appended build
    ],
)
def test_sql_builder_appends_only_new_files_sorting_last(
    new: dict[str, str], expected: list[str] | None
) -> None:
    assert SqlBuilder(Path("."), "db").appended(OLD, new) == expected


def test_command_builder_appends_only_when_switched_on() -> None:
    new = {**OLD, "db/003_c.sql": "cc"}
    assert CommandBuilder(Path("."), "alembic upgrade head").appended(OLD, new) is None
    assert CommandBuilder(Path("."), "alembic upgrade head", incremental=True).appended(OLD, new) == [
        "db/003_c.sql"
    ]
    assert CommandBuilder(Path("."), "x", incremental=True).appended(OLD, {"db/001_a.sql": "edited"}) is None


def test_python_placeholder_leaves_shell_syntax_alone() -> None:
    command = CommandBuilder(Path("."), "{python} -m alembic upgrade ${REV:-head}").rendered_command()
    assert command.endswith(" -m alembic upgrade ${REV:-head}") and "{python}" not in command


def test_app_and_builder_find_the_interpreters_tools_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """``.venv/bin/pytest`` run from an IDE (venv not activated) must still find the venv's tools."""
    import sys

    from pytest_nocrud.app.process import app_environment
    from pytest_nocrud.pg.conninfo import ConnInfo

    here = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", f"/usr/bin:{here}:/bin")
    env = app_environment(ConnInfo(host="/tmp", port=5432, user="u", dbname="d"), 8000, [])
    assert env["PATH"].split(":") == [here, "/usr/bin", "/bin"]
