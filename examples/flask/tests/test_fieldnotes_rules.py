"""One-request rules: authentication, permissions, validation, references, uniqueness, URLs."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from fieldnotes_api import SEED_PROJECT_ID, create_note, create_project

from pytest_nocrud import AsBearer, expect_status

# -- authentication ------------------------------------------------------------------------------------


@pytest.mark.crud_flow
def test_health_needs_no_token(nocrud_client: httpx.Client) -> None:
    assert expect_status(nocrud_client.get("/health"), 200).json() == {"status": "ok"}


@pytest.mark.crud_flow
@pytest.mark.parametrize("path", ["/me", "/projects/", "/notes/1", "/tags/"])
def test_everything_else_needs_a_bearer_token(nocrud_client: httpx.Client, path: str) -> None:
    response = nocrud_client.get(path)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == {"error": "a bearer token is required"}


@pytest.mark.crud_flow
def test_an_unknown_token_is_refused(nocrud_client_factory: Callable[..., httpx.Client]) -> None:
    client = nocrud_client_factory(as_user=AsBearer("mallory-token", label="mallory"))
    assert client.get("/me").status_code == 401
    assert client.get("/me").json() == {"error": "invalid or revoked token"}


# -- permissions ---------------------------------------------------------------------------------------


@pytest.mark.crud_flow
def test_viewers_only_read(victor: httpx.Client) -> None:
    assert expect_status(victor.get("/projects/"), 200).json()[0]["id"] == SEED_PROJECT_ID
    for method, path in [
        ("POST", "/projects/"),
        ("PATCH", f"/projects/{SEED_PROJECT_ID}"),
        ("POST", "/notes/"),
        ("POST", "/tags/"),
        ("DELETE", "/notes/1"),
    ]:
        response = victor.request(method, path, json={"name": "x"})
        assert response.status_code == 403, f"{method} {path}"
        assert response.json() == {"error": "viewers may only read"}


@pytest.mark.crud_flow
def test_only_the_owner_changes_a_project(carol: httpx.Client, alice: httpx.Client) -> None:
    url = f"/projects/{SEED_PROJECT_ID}"  # bob's
    response = carol.patch(url, json={"name": "Carol's now"})
    assert response.status_code == 403
    assert response.json() == {"error": "only the project's owner or an admin may do this"}
    assert carol.delete(url).status_code == 403
    assert expect_status(alice.patch(url, json={"status": "archived"}), 200).json()["status"] == "archived"


@pytest.mark.crud_flow
def test_only_the_author_edits_a_note(bob: httpx.Client, carol: httpx.Client) -> None:
    assert bob.patch("/notes/2", json={"title": "Bob's now"}).status_code == 403  # carol's note
    assert expect_status(carol.patch("/notes/2", json={"pinned": True}), 200).json()["pinned"] is True


@pytest.mark.crud_flow
def test_a_project_owner_may_delete_any_note_in_it(bob: httpx.Client, carol: httpx.Client) -> None:
    assert carol.delete("/notes/1").status_code == 403  # bob's note in bob's project
    expect_status(bob.delete("/notes/2"), 204)  # carol's note, but in bob's project
    expect_status(bob.get("/notes/2"), 404)
    pond = create_project(carol, "Carol's pond")
    frogspawn = create_note(bob, pond["id"], "Frogspawn")
    expect_status(carol.delete(f"/notes/{frogspawn['id']}"), 204)  # and the other way round


@pytest.mark.crud_flow
def test_only_an_admin_deletes_tags(bob: httpx.Client, alice: httpx.Client) -> None:
    response = bob.delete("/tags/2")
    assert response.status_code == 403
    assert response.json() == {"error": "only an admin may delete tags"}
    expect_status(alice.delete("/tags/2"), 204)
    assert [t["name"] for t in alice.get("/tags/").json()] == ["todo"]
    assert alice.get("/notes/2").json()["tag_ids"] == [1]  # the note lost the tag, not the other way


# -- validation, references, uniqueness ----------------------------------------------------------------


@pytest.mark.crud_flow
def test_invalid_bodies_name_their_fields(bob: httpx.Client) -> None:
    response = bob.post("/projects/", json={"description": 7, "status": "done", "colour": "red"})
    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid request body",
        "fields": {
            "colour": "unknown field",
            "name": "required",
            "description": "must be str",
            "status": "must be one of active, archived",
        },
    }
    assert bob.post("/projects/", content=b"not json").json()["fields"] == {"body": "must be a JSON object"}
    assert bob.patch(f"/projects/{SEED_PROJECT_ID}", json={}).json()["fields"] == {
        "body": "nothing to change"
    }
    note = bob.post("/notes/", json={"project_id": True, "title": " ", "tag_ids": "1"})
    assert note.json()["fields"] == {
        "project_id": "must be int",
        "title": "must not be blank",
        "tag_ids": "must be a list of int",
    }


@pytest.mark.crud_flow
def test_references_must_exist(bob: httpx.Client) -> None:
    response = bob.post("/notes/", json={"project_id": 999, "title": "Lost", "tag_ids": [1, 998, 999]})
    assert response.status_code == 400
    assert response.json()["fields"] == {
        "project_id": "project 999 does not exist",
        "tag_ids": "unknown tags [998, 999]",
    }


@pytest.mark.crud_flow
def test_names_are_unique(bob: httpx.Client, carol: httpx.Client) -> None:
    response = carol.post("/projects/", json={"name": "Field survey"})  # the seed project's name
    assert response.status_code == 409
    assert response.json() == {"error": "already exists", "fields": {"name": "already taken"}}
    assert bob.patch("/tags/1", json={"name": "idea"}).status_code == 409
    # the failed statement rolled back its transaction only: the next request works
    assert expect_status(bob.get("/tags/1"), 200).json()["name"] == "todo"


# -- Flask's URL conventions ---------------------------------------------------------------------------


@pytest.mark.crud_flow
def test_flask_slash_conventions(bob: httpx.Client) -> None:
    """strict_slashes: the collection without its slash redirects (308, body kept); an item with a
    trailing slash is simply not found (CrudFlow then tries the form without it)."""
    redirected = bob.get("/projects")
    assert redirected.status_code == 308
    assert redirected.headers["location"].endswith("/projects/")
    assert bob.get(f"/projects/{SEED_PROJECT_ID}/").status_code == 404
    assert bob.get(f"/projects/{SEED_PROJECT_ID}").status_code == 200
    assert bob.get("/projects/abc").status_code == 404  # <int:...> converters refuse non-numbers
