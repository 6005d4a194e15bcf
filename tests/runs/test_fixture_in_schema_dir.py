"""A seed file listed in ``nocrud_fixtures`` that lies inside the ``sql:`` directory is the data layer's,
never the schema layer's: it runs once, is recorded as ``data``, and moving it between folders or back
never reuses a layer built from other files."""

from __future__ import annotations

from pathlib import Path

import pytest
from _support import run_inner

SCHEMA = "CREATE TABLE author (id int PRIMARY KEY, name text NOT NULL);\n"
SEED = "INSERT INTO author VALUES (1, 'Ada'), (2, 'Grace');\n"

TESTS = """
def test_seed_ran_once_as_data(nocrud_db):
    with nocrud_db.connect() as conn:
        assert conn.execute("SELECT count(*) FROM author").fetchone() == (2,)
        layers = dict(conn.execute("SELECT path, layer FROM nocrud.sql_files").fetchall())
    print("LAYERS", sorted(layers.items()))
    assert layers.get("001_schema.sql") == "schema", layers
    assert sorted(layer for layer in layers.values()) == ["data", "schema"], layers
"""


def _write(pytester: pytest.Pytester, seed_at: str) -> None:
    for old in ("db/seed.sql", "seed/seed.sql"):
        (pytester.path / old).unlink(missing_ok=True)
    (pytester.path / "db").mkdir(exist_ok=True)
    (pytester.path / "db" / "001_schema.sql").write_text(SCHEMA)
    (pytester.path / seed_at).parent.mkdir(exist_ok=True)
    (pytester.path / seed_at).write_text(SEED)
    pytester.makeini(f"[pytest]\nnocrud_builder = sql:db\nnocrud_fixtures = {seed_at}\n")


def _template_line(result: pytest.RunResult) -> str:
    return next(line for line in result.stdout.lines if line.startswith("template: "))


def test_a_seed_inside_the_sql_dir_runs_once_and_moving_it_changes_only_the_data_layer(
    pytester: pytest.Pytester, data_dir: Path
) -> None:
    pytester.makepyfile(test_inner=TESTS)
    _write(pytester, "db/seed.sql")  # the README's sample: sql:db with db/seed.sql as the fixture
    first = run_inner(pytester, data_dir, "-p", "no:xdist", "-s")
    first.assert_outcomes(passed=1)
    inside = _template_line(first)
    assert "built" in inside

    _write(pytester, "seed/seed.sql")  # move: same schema layer (same files ran), a new data layer
    moved = run_inner(pytester, data_dir, "-p", "no:xdist", "-s")
    moved.assert_outcomes(passed=1)
    assert "schema layer nocrud_sch_" in _template_line(moved) and "reused)" in _template_line(moved)
    assert _template_line(moved).split()[1] != inside.split()[1], "the data layer must be a new one"

    _write(pytester, "db/seed.sql")  # revert: exactly the first run's layers again
    back = run_inner(pytester, data_dir, "-p", "no:xdist", "-s")
    back.assert_outcomes(passed=1)
    assert _template_line(back).split()[1] == inside.split()[1]
    assert "reused" in _template_line(back)


def test_a_missing_sql_path_is_one_usage_error_at_start_up(pytester: pytest.Pytester, data_dir: Path) -> None:
    pytester.makepyfile(test_inner="def test_x(nocrud_db):\n    pass\n")
    pytester.makeini("[pytest]\nnocrud_builder = sql:no_such_dir\n")
    result = run_inner(pytester, data_dir, "-p", "no:xdist")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "no_such_dir does not exist" in err and "directory of *.sql files or one .sql file" in err, err
    assert "warning" not in result.stdout.str() + err


def test_sql_takes_a_single_file(pytester: pytest.Pytester, data_dir: Path) -> None:
    pytester.makepyfile(
        test_inner="def test_x(nocrud_db):\n    with nocrud_db.connect() as c:\n"
        "        assert c.execute('SELECT count(*) FROM author').fetchone() == (0,)\n"
    )
    (pytester.path / "schema.sql").write_text(SCHEMA)
    pytester.makeini("[pytest]\nnocrud_builder = sql:schema.sql\n")
    first = run_inner(pytester, data_dir, "-p", "no:xdist")
    first.assert_outcomes(passed=1)
    assert "warning" not in first.stdout.str()

    (pytester.path / "schema.sql").write_text(SCHEMA + "CREATE TABLE book (id int);\n")
    changed = run_inner(pytester, data_dir, "-p", "no:xdist")
    changed.assert_outcomes(passed=1)
    assert "built" in _template_line(changed) and "reused)" not in _template_line(changed)
