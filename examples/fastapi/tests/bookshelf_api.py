"""Shared declarations for the bookshelf flows: who can log in, and one-request helpers.

The users are the seed rows every test starts with (migrations/versions/0002_seed.py); every password
is ``<username>-pass``. ``AsToken`` logs a client in through ``POST /token`` (OAuth2 password flow) and
sends the bearer token on every later request; the password stays out of reprs and reports.
"""

from __future__ import annotations

from typing import Any

import httpx

from pytest_nocrud import AsToken, expect_status

ADMIN = AsToken("admin", "admin-pass")  # id 1: everything
EDITOR = AsToken("editor", "editor-pass")  # id 2: writes authors, books, tags
EDITOR2 = AsToken("editor2", "editor2-pass")  # id 3: another editor
READER = AsToken("reader", "reader-pass")  # id 4: reads, writes only own reviews

READER_ID = 4
SEED_AUTHORS = 2
SEED_BOOK_ID = 1  # "The Dispossessed", by author 1, tags 1 and 2, reviewed by the reader


def create_author(client: httpx.Client, name: str = "N. K. Jemisin", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = expect_status(client.post("/authors", json={"name": name, **extra}), 201).json()
    return body


def create_book(
    client: httpx.Client, author_id: int, title: str = "The Fifth Season", **extra: Any
) -> dict[str, Any]:
    response = client.post("/books", json={"title": title, "author_id": author_id, **extra})
    body: dict[str, Any] = expect_status(response, 201).json()
    return body
