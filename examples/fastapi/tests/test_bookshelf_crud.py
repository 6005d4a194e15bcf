"""CRUD flows: one declaration per resource, whatever URL style the resource uses.

``CrudFlow`` finds each created item's URL itself, from what the app tells: the ``Location`` header
(authors), the item's own ``url`` field (tags), the app's OpenAPI schema (reviews: collection
``/reviews/``, items ``/reviews/{review_id}`` without the slash), else endpoint + id -- ``/books/7`` for
the ``/books`` endpoint. A redirect that only adds or drops the trailing slash is adopted; nothing here
needs ``detail_path`` (a wrong one still fails with the fix: ``test_a_wrong_item_url_names_detail_path``).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from bookshelf_api import EDITOR, READER, READER_ID, create_author, create_book

from pytest_nocrud import CrudFlow, StepContext
from pytest_nocrud.flows.locate import use_openapi_path
from pytest_nocrud.flows.timeline import log_for

AUTHOR = CrudFlow(
    "author",
    endpoint="/authors",  # POST answers with Location: /authors/<id>
    create={"name": "Ursula Vernon", "birth_year": 1977, "country": "US"},
    update={"name": "T. Kingfisher"},
    as_user=EDITOR,
)
test_author_crud = AUTHOR.as_test()

test_author_crud_slashed = CrudFlow(
    "author",
    name="author_crud_slashed",
    endpoint="/authors/",  # the app's route is /authors: FastAPI answers 307, CrudFlow adopts /authors
    create={"name": "Martha Wells", "country": "US"},
    update={"name": "Martha Wells", "birth_year": 1964},
    as_user=EDITOR,
).as_test()

test_author_crud_put = CrudFlow(
    "author",
    name="author_crud_put",
    endpoint="/authors",
    create={"name": "Iain Banks", "country": "UK"},
    update={"name": "Iain M. Banks", "birth_year": 1954},
    method="PUT",  # the full create payload plus the change
    as_user=EDITOR,
).as_test()

TAG = CrudFlow(
    "tag",
    endpoint="/tags/",  # router style; every tag carries its own "url"
    create={"name": "solarpunk"},
    update={"name": "hopepunk"},
    as_user=EDITOR,
)
test_tag_crud = TAG.as_test()


def _title(author: dict[str, Any]) -> dict[str, Any]:
    """A payload built from a prerequisite's output (named by its resource)."""
    return {
        "title": f"Collected Stories of {author['name']}",
        "genre": "fiction",
        "isbn": "978-1-56619-909-4",
    }


BOOK = CrudFlow(
    "book",
    endpoint="/books",  # no Location, no url field: /books/<id>
    create=_title,
    update={"genre": "science-fiction", "published": "2016-05-03"},
    requires={"author_id": AUTHOR, "tag_ids": [TAG]},  # a foreign key, and a many-to-many list of ids
    as_user=EDITOR,
)
test_book_crud = BOOK.as_test()


def _book_id_is_listed_by_author(ctx: StepContext, book: dict[str, Any]) -> None:
    by_author = ctx.client.get("/books", params={"author_id": ctx["author.create"]["id"]}).json()
    assert [b["id"] for b in by_author] == [book["id"]]


test_book_crud_filters = CrudFlow(
    "book",
    name="book_listed_by_author",
    endpoint="/books",
    create={"title": "Parable of the Sower"},
    requires={"author_id": AUTHOR},
    steps=["create", "read"],
    checks={"read": _book_id_is_listed_by_author},
    as_user=EDITOR,
).as_test()


# -- reviews: written by the reader, about a book an editor made --------------------------------------


def author_by_editor(ctx: StepContext) -> dict[str, Any]:
    """Prerequisites made by someone else: the reader may not create authors or books."""
    return create_author(ctx.fixtures["editor"], "Becky Chambers")


def book_by_editor(ctx: StepContext, author: dict[str, Any]) -> dict[str, Any]:
    """Depends on the prerequisite above (named by its field): the steps chain in order."""
    return create_book(ctx.fixtures["editor"], author["id"], "A Psalm for the Wild-Built")


REVIEW = CrudFlow(
    "review",
    endpoint="/reviews/",  # items are /reviews/{review_id}: the app's /openapi.json says so
    create=lambda book_id: {"rating": 4, "body": f"On {book_id['title']}"},  # the prerequisite's output
    update={"rating": 5},
    # "_author" is created (and passed to book_by_editor) but not sent: reviews have no author field.
    requires={"_author": author_by_editor, "book_id": book_by_editor},
    as_user=READER,
    checks={"create": lambda ctx, review: _owned_by_reader(review)},
)


def _owned_by_reader(review: dict[str, Any]) -> None:
    assert review["user_id"] == READER_ID


test_review_crud = REVIEW.as_test(fixtures=["editor"])


@pytest.mark.crud_flow
def test_a_wrong_item_url_names_detail_path(nocrud_client: httpx.Client) -> None:
    """A declared detail_path wins even when the app redirects it; the failure says what to set."""
    wrong = CrudFlow(
        "review",
        endpoint="/reviews/",
        detail_path="/reviews/{id}/",  # the app serves /reviews/{id}
        create={"book_id": 1, "rating": 3},
        as_user=READER,
        steps=["create", "read"],
    )
    result = wrong.run(nocrud_client)
    assert not result.ok
    report = result.report()
    assert "307 redirect" in report
    assert "the item URL (detail_path='/reviews/{id}/')" in report
    assert "detail_path='/reviews/{id}'" in report


@pytest.mark.crud_flow
def test_without_a_schema_the_slash_redirect_is_adopted(nocrud_client: httpx.Client) -> None:
    """An app that serves no schema: the guessed /reviews/<id>/ is redirected (307) to /reviews/<id>;
    CrudFlow resolves it with a GET and sends the PATCH and DELETE to /reviews/<id> only."""
    use_openapi_path("/no-schema-here")  # what an app without /openapi.json looks like
    try:
        result = CrudFlow(
            "review",
            endpoint="/reviews/",
            create={"book_id": 1, "rating": 3},
            update={"rating": 4},
            as_user=READER,
        ).run(nocrud_client)
    finally:
        use_openapi_path(None)
    assert result.ok, result.report()
    item = f"/reviews/{result['create'].output['id']}"
    log = log_for(nocrud_client)
    assert log is not None
    sent = [(r.method, r.path, r.status) for r in log.entries if r.path.startswith(item)]
    assert sent == [
        ("GET", f"{item}/", 307),  # the guess, resolved with the GET ...
        ("GET", item, 200),  # ... and adopted
        ("PATCH", item, 200),
        ("GET", item, 200),
        ("DELETE", item, 204),
        ("GET", item, 404),
    ]
