"""The seed (db/seed.sql) is in every test's database, and the SQL runner says what built it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fieldnotes_api import SEED_NOTE_IDS, SEED_PROJECT_ID, SEED_TAGS

from pytest_nocrud import expect_status


@pytest.mark.crud_flow
def test_the_seed_rows_are_there(nocrud_db: Any) -> None:
    with nocrud_db.connect() as conn:
        users = conn.execute("SELECT id, username, role FROM users ORDER BY id").fetchall()
        tokens = conn.execute("SELECT count(*) FROM api_tokens").fetchone()
        projects = conn.execute("SELECT id, name, owner_id FROM projects").fetchall()
        notes = conn.execute("SELECT id, project_id, author_id FROM notes ORDER BY id").fetchall()
    assert users == [
        (1, "alice", "admin"),
        (2, "bob", "member"),
        (3, "carol", "member"),
        (4, "victor", "viewer"),
    ]
    assert tokens == (4,)  # stored hashed: never the token itself
    assert projects == [(SEED_PROJECT_ID, "Field survey", 2)]
    assert notes == [(1, 1, 2), (2, 1, 3)]


@pytest.mark.crud_flow
def test_the_seed_through_the_api(bob: httpx.Client) -> None:
    assert expect_status(bob.get("/me"), 200).json() == {"id": 2, "username": "bob", "role": "member"}
    notes = expect_status(bob.get("/notes/", params={"project_id": SEED_PROJECT_ID}), 200).json()
    assert [n["id"] for n in notes] == SEED_NOTE_IDS
    assert [n["tag_ids"] for n in notes] == [[1], [1, 2]]
    assert [t["name"] for t in bob.get("/tags/").json()] == SEED_TAGS
    assert [n["title"] for n in bob.get("/notes/", params={"tag": "idea"}).json()] == ["Gear"]


@pytest.mark.crud_flow
def test_new_rows_get_ids_past_the_seed(bob: httpx.Client) -> None:
    """seed.sql sets every identity past its explicit ids, so the first insert does not collide."""
    assert expect_status(bob.post("/tags/", json={"name": "new"}), 201).json()["id"] == len(SEED_TAGS) + 1


@pytest.mark.crud_flow
def test_the_sql_runner_recorded_what_built_the_template(nocrud_db: Any) -> None:
    with nocrud_db.connect() as conn:
        rows = conn.execute("SELECT path, layer FROM nocrud.sql_files ORDER BY applied_at, path").fetchall()
    assert rows[:3] == [
        ("001_users.sql", "schema"),
        ("002_projects.sql", "schema"),
        ("003_notes_and_tags.sql", "schema"),
    ]
    assert [layer for _, layer in rows[3:]] == ["data"]
    assert rows[3][0].endswith("seed.sql")
