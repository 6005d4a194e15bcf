"""``.sql.j2`` render errors name the file's path and the template line, with the line's text."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_nocrud.errors import BuildError
from pytest_nocrud.pg.sqlrunner import read_sql

pytest.importorskip("jinja2")


def test_an_undefined_name_names_the_path_and_line(tmp_path: Path) -> None:
    path = tmp_path / "db" / "003_grants.sql.j2"
    path.parent.mkdir()
    path.write_text("CREATE TABLE a (id int);\n-- the role\nCREATE ROLE {{ APP_ROLE }};\n")
    with pytest.raises(BuildError) as error:
        read_sql(path, {})
    message = str(error.value)
    assert message.startswith(f"{path}, line 3: cannot render template: 'APP_ROLE' is undefined"), message
    assert "3 | CREATE ROLE {{ APP_ROLE }};" in message
    assert read_sql(path, {"APP_ROLE": "app"}).endswith("CREATE ROLE app;\n")


def test_a_syntax_error_names_the_path_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.sql.j2"
    path.write_text("SELECT 1;\n{% if %}\n")
    expected = rf"^{path}, line 2: cannot render template: .*\n    2 \| {{% if %}}"
    with pytest.raises(BuildError, match=expected):
        read_sql(path, {})
