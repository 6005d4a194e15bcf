"""A real app and a real run: tests that changed nothing hand their database on, the others do not.

The app (``_support.ITEMS_APP``) reads and writes its table through ``DATABASE_URL``, answers 403
without touching the database, and hands out ticket numbers from a sequence (``nextval()`` alone, no
row written). In a fixed order (no xdist), each test checks what it sees, so a database handed on
after a write or a ``nextval()`` would fail the next test -- and the summary counts the reuses.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from _support import ITEMS_APP, ITEMS_SCHEMA, run_inner

TESTS = """
import pytest

SEED = ["seed"]

def test_1_reads(nocrud_client):
    assert nocrud_client.get("/items").json() == SEED

def test_2_writes(nocrud_client):
    assert nocrud_client.post("/items", json={"name": "new"}).status_code == 201
    assert nocrud_client.get("/items").json() == ["new", "seed"]

def test_3_reads_after_a_write(nocrud_client):
    assert nocrud_client.get("/items").json() == SEED

def test_4_is_forbidden(nocrud_client):
    assert nocrud_client.get("/forbidden").status_code == 403

def test_5_takes_a_ticket(nocrud_client):
    assert nocrud_client.post("/tickets").json() == {"number": 1}

def test_6_takes_the_same_ticket(nocrud_client):
    assert nocrud_client.post("/tickets").json() == {"number": 1}

def test_7_reads(nocrud_client):
    assert nocrud_client.get("/items").json() == SEED
"""

INI = """
[pytest]
nocrud_builder = sql:schema
nocrud_app_command = {python} app.py {port}
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    (pytester.path / "app.py").write_text(ITEMS_APP)
    pytester.makepyfile(test_order=TESTS)
    (pytester.mkdir("schema") / "001.sql").write_text(ITEMS_SCHEMA)
    pytester.makeini(INI)
    return pytester


def handed_out(out: str) -> tuple[int, int, int]:
    match = re.search(r"databases handed out: (\d+) \((\d+) fresh clones?, (\d+) unchanged reused", out)
    assert match, out
    total, clones, reused = (int(group) for group in match.groups())
    return total, clones, reused


def test_only_the_tests_after_an_unchanged_database_keep_it(project: pytest.Pytester, data_dir: Path) -> None:
    result = run_inner(project, data_dir, "-p", "no:xdist")

    result.assert_outcomes(passed=7)
    total, clones, reused = handed_out(result.stdout.str())
    # The first database is handed out for the app's start, and test 1 keeps it; after test 1 (read),
    # 3 (read) and 4 (403) the database is handed on too; after 2 (insert), 5 and 6 (nextval alone)
    # the next test gets a fresh clone.
    assert (total, clones, reused) == (8, 4, 4), result.stdout.str()


def test_reuse_off_gives_every_test_a_fresh_clone(project: pytest.Pytester, data_dir: Path) -> None:
    result = run_inner(project, data_dir, "-p", "no:xdist", "-o", "nocrud_reuse_unchanged=false")

    result.assert_outcomes(passed=7)
    out = result.stdout.str()
    total, clones, reused = handed_out(out)
    assert (reused, clones) == (0, total)
    assert "reuse off: nocrud_reuse_unchanged = false" in out
