"""Multi-step flows across users: who may change what, and what a delete takes with it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from bookshelf_api import EDITOR, EDITOR2, READER, SEED_BOOK_ID, create_author, create_book

from pytest_nocrud import Flow, StepContext, expect_status

# -- a review's life: the reader reviews a new book; nobody else may edit the review -----------------

review_rights = Flow("review_rights", as_user=READER)


@review_rights.step
def book(ctx: StepContext) -> dict[str, Any]:
    editor = ctx.fixtures["nocrud_client_factory"](as_user=EDITOR)
    return create_book(editor, create_author(editor)["id"])


@review_rights.step(depends_on=[book])
def review(ctx: StepContext) -> dict[str, Any]:
    response = ctx.client.post(
        "/reviews/", json={"book_id": ctx["book"]["id"], "rating": 4, "body": "Rocks."}
    )
    body: dict[str, Any] = expect_status(response, 201).json()
    return body


@review_rights.step(depends_on=[review])
def another_user_may_not_edit_it(ctx: StepContext) -> None:
    other = ctx.fixtures["nocrud_client_factory"](as_user=EDITOR2)
    expect_status(other.patch(f"/reviews/{ctx['review']['id']}", json={"rating": 1}), 403)


@review_rights.step(depends_on=[review])
def the_reader_may_not_edit_the_book(ctx: StepContext) -> None:
    expect_status(ctx.client.patch(f"/books/{ctx['book']['id']}", json={"title": "Mine"}), 403)


@review_rights.step(depends_on=[another_user_may_not_edit_it, the_reader_may_not_edit_the_book])
def the_author_edits_it(ctx: StepContext) -> None:
    url = f"/reviews/{ctx['review']['id']}"
    expect_status(ctx.client.patch(url, json={"rating": 2}), 200)
    assert ctx.client.get(url).json()["rating"] == 2


test_review_rights = review_rights.as_test(fixtures=["nocrud_client_factory"])

# -- cascade: deleting an author deletes their books and those books' reviews ------------------------

cascade = Flow("author_delete_cascades", as_user=EDITOR, max_attempts=1)


@cascade.step
def books_of_seed_author(ctx: StepContext) -> list[int]:
    return [b["id"] for b in expect_status(ctx.client.get("/books", params={"author_id": 1}), 200).json()]


@cascade.step(depends_on=[books_of_seed_author])
def delete_author(ctx: StepContext) -> None:
    assert ctx["books_of_seed_author"] == [SEED_BOOK_ID]
    expect_status(ctx.client.delete("/authors/1"), 204)


@cascade.step(depends_on=[delete_author])
def books_and_reviews_are_gone(ctx: StepContext) -> None:
    expect_status(ctx.client.get(f"/books/{SEED_BOOK_ID}"), 404)
    assert ctx.client.get("/reviews/", params={"book_id": SEED_BOOK_ID}).json() == []


test_author_delete_cascades = cascade.as_test()


@pytest.mark.crud_flow
def test_the_cascade_did_not_leak_into_this_test(nocrud_client: httpx.Client) -> None:
    """Every test starts from the seed, whatever an earlier test deleted (run with -p no:randomly)."""
    assert expect_status(nocrud_client.get(f"/books/{SEED_BOOK_ID}"), 200).json()["author_id"] == 1
