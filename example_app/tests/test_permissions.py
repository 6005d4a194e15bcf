"""Permission denials: who may not write what, and that a refused write changes nothing.

The pitchdesk rules (``API.md``): catalog GETs are public; writes need a Django model permission
(producers have them all, writers only pitches/votes/comments, viewers none); only staff write users;
pitches, votes and comments are changed only by their owner or staff; a logged-in write needs the CSRF
header. "Not logged in" is 403 (session auth sends no ``WWW-Authenticate``, so never 401).

``nocrud_client`` is the anonymous client; ``writer``, ``viewer``... are logged-in clients from
``conftest.py``. Parametrized tests cover every resource at one request each.
"""

from __future__ import annotations

import httpx
import pytest
from pitchdesk_api import (
    NO_PERMISSION,
    NOT_LOGGED_IN,
    NOT_OWNER,
    PRODUCTION_ID,
    create,
    create_pitch,
    ids,
)

from pytest_nocrud import expect_status

pytestmark = pytest.mark.crud_flow

# A valid create body per resource, so a 403 can only come from the permission check.
VALID = {
    "universes": {"name": "Frostmark"},
    "productions": {"universe": 1, "title": "Frostmark: Thaw"},
    "actors": {"name": "Lena Vos"},
    "characters": {"production": PRODUCTION_ID, "name": "Bosun Pell", "played_by": 2},
    "episodes": {"production": PRODUCTION_ID, "number": 2, "title": "Fog Bank"},
    "tag-categories": {"name": "Audience"},
    "tags": {"category": 1, "name": "Thriller"},
}
CATALOG = list(VALID)


def denied(response: httpx.Response, detail: str) -> None:
    __tracebackhide__ = True
    assert expect_status(response, 403).json() == {"detail": detail}


@pytest.mark.parametrize("resource", [*CATALOG, "pitches", "votes", "pitch-comments"])
def test_anonymous_cannot_create(nocrud_client: httpx.Client, resource: str):
    before = ids(nocrud_client, f"/api/{resource}/")  # reading is public
    denied(nocrud_client.post(f"/api/{resource}/", json=VALID.get(resource, {})), NOT_LOGGED_IN)
    assert ids(nocrud_client, f"/api/{resource}/") == before


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_anonymous_cannot_change_or_delete(nocrud_client: httpx.Client, method: str):
    body = None if method == "DELETE" else {"name": "Renamed"}
    denied(nocrud_client.request(method, "/api/actors/1/", json=body), NOT_LOGGED_IN)
    assert nocrud_client.get("/api/actors/1/").json()["name"] == "Ada Marlowe"


def test_anonymous_cannot_list_users(nocrud_client: httpx.Client):
    denied(nocrud_client.get("/api/users/"), NOT_LOGGED_IN)


@pytest.mark.parametrize("method", ["POST", "PATCH", "DELETE"])
def test_viewer_cannot_write(viewer: httpx.Client, method: str):
    url = "/api/actors/" if method == "POST" else "/api/actors/2/"
    body = None if method == "DELETE" else {"name": "Viewer Was Here"}
    denied(viewer.request(method, url, json=body), NO_PERMISSION)
    assert [a["name"] for a in viewer.get("/api/actors/").json()] == ["Ada Marlowe", "Tomas Reyes"]


def test_viewer_invalid_write_is_403_not_400(viewer: httpx.Client):
    # Permission is checked before the body: an invalid body from someone who may not write is a 403.
    denied(viewer.post("/api/actors/", json={}), NO_PERMISSION)


@pytest.mark.parametrize("resource", CATALOG)
def test_writer_cannot_write_catalog(writer: httpx.Client, resource: str):
    denied(writer.post(f"/api/{resource}/", json=VALID[resource]), NO_PERMISSION)


def test_non_staff_cannot_write_users(producer: httpx.Client):
    assert len(ids(producer, "/api/users/")) == 5  # any logged-in user may read users
    denied(producer.post("/api/users/", json={"username": "intruder"}), NO_PERMISSION)
    denied(producer.patch("/api/users/2/", json={"is_staff": True}), NO_PERMISSION)
    assert producer.get("/api/users/2/").json()["is_staff"] is False


def test_only_the_owner_edits_a_pitch(writer: httpx.Client, writer2: httpx.Client, producer: httpx.Client):
    pitch = create_pitch(writer, title="Mine")
    url = f"/api/pitches/{pitch['id']}/"
    denied(writer2.patch(url, json={"title": "Stolen"}), NOT_OWNER)
    denied(writer2.delete(url), NOT_OWNER)
    # The producer has the model permission (change_pitch) but is neither owner nor staff.
    denied(producer.patch(url, json={"title": "Produced"}), NOT_OWNER)
    assert writer.get(url).json()["title"] == "Mine"


def test_staff_may_edit_someone_elses_pitch(admin: httpx.Client, pitch: dict):
    edited = expect_status(admin.patch(f"/api/pitches/{pitch['id']}/", json={"title": "Notes"}), 200).json()
    assert edited["title"] == "Notes" and edited["owner"] == pitch["owner"]


def test_only_the_voter_changes_a_vote(writer: httpx.Client, writer2: httpx.Client, pitch: dict):
    vote = create(writer2, "/api/votes/", pitch=pitch["id"], value=1)
    denied(writer.patch(f"/api/votes/{vote['id']}/", json={"value": -1}), NOT_OWNER)
    denied(writer.delete(f"/api/votes/{vote['id']}/"), NOT_OWNER)
    assert writer.get(f"/api/votes/{vote['id']}/").json()["value"] == 1


@pytest.mark.parametrize("token", ["missing", "from-before-login"])
def test_logged_in_write_needs_a_current_csrf_token(nocrud_client: httpx.Client, token: str):
    # Log in by hand, following API.md's recipe: session_login would add the header to every write.
    nocrud_client.get("/api/auth/csrf/")
    before_login = nocrud_client.cookies["csrftoken"]
    login = nocrud_client.post(
        "/api/auth/login/",
        json={"username": "producer", "password": "producer-pass"},
        headers={"X-CSRFToken": before_login},
    )
    expect_status(login, 200)
    headers = {} if token == "missing" else {"X-CSRFToken": before_login}  # login rotated the token
    response = nocrud_client.post("/api/actors/", json={"name": "No Token"}, headers=headers)
    assert expect_status(response, 403).json()["detail"].startswith("CSRF Failed")
    # The same request with the token from the login response goes through.
    ok = nocrud_client.post(
        "/api/actors/", json={"name": "Token"}, headers={"X-CSRFToken": login.json()["csrfToken"]}
    )
    expect_status(ok, 201)
