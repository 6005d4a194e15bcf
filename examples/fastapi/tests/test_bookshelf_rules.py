"""One-request rules: authentication, permissions, validation, references, uniqueness."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from bookshelf_api import SEED_AUTHORS, create_author, create_book


@pytest.mark.crud_flow
def test_anonymous_writes_get_401_with_a_bearer_challenge(nocrud_client: httpx.Client) -> None:
    response = nocrud_client.post("/authors", json={"name": "X"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.crud_flow
def test_readers_may_not_write_the_catalogue(reader: httpx.Client) -> None:
    assert reader.post("/authors", json={"name": "X"}).status_code == 403
    assert len(reader.get("/authors").json()) == SEED_AUTHORS


@pytest.mark.crud_flow
def test_a_book_needs_a_title(editor: httpx.Client) -> None:
    response = editor.post("/books", json={"author_id": 1})
    assert response.status_code == 422
    assert [error["loc"] for error in response.json()["detail"]] == [["body", "title"]]


@pytest.mark.crud_flow
def test_a_book_needs_an_existing_author(editor: httpx.Client) -> None:
    response = editor.post("/books", json={"title": "Orphan", "author_id": 999})
    assert response.status_code == 400
    assert response.json() == {"detail": {"author_id": "author 999 does not exist"}}


@pytest.mark.crud_flow
def test_isbns_are_unique(editor: httpx.Client) -> None:
    author = create_author(editor)
    create_book(editor, author["id"], isbn="978-0-7653-8214-5")
    again = editor.post(
        "/books", json={"title": "Copy", "author_id": author["id"], "isbn": "978-0-7653-8214-5"}
    )
    assert again.status_code == 409


@pytest.mark.crud_flow
def test_api_writes_land_in_this_tests_database(editor: httpx.Client, nocrud_db: Any) -> None:
    create_author(editor, "Ann Leckie")
    with nocrud_db.connect() as conn:
        assert conn.execute("SELECT count(*) FROM authors").fetchone() == (SEED_AUTHORS + 1,)
