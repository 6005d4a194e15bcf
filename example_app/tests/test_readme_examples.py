"""The examples shown in README.md, kept runnable: if one breaks, the README is wrong."""

import pytest

from pytest_nocrud import AsUser, CrudFlow, Flow, expect_status, session_login

# One declaration: create -> read -> list -> update -> delete -> gone, logged in as a producer.
test_actor_crud = CrudFlow(
    "actor",
    endpoint="/api/actors/",
    create={"name": "Ada Lovelace"},
    update={"name": "Ada King"},
    as_user=AsUser("producer", "producer-pass"),
).as_test()


@pytest.mark.crud_flow
def test_anonymous_cannot_create_actors(nocrud_client):
    assert nocrud_client.post("/api/actors/", json={"name": "X"}).status_code == 403


@pytest.mark.crud_flow
def test_api_writes_land_in_this_tests_database(nocrud_client, nocrud_db):
    session_login(nocrud_client, "producer", "producer-pass")
    assert nocrud_client.post("/api/universes/", json={"name": "Dune"}).status_code == 201
    with nocrud_db.connect() as conn:  # closed for you before the next test's handoff
        assert conn.execute("SELECT count(*) FROM catalog_universe").fetchone() == (2,)


def test_two_users(nocrud_client, nocrud_client_factory):
    other = nocrud_client_factory(as_user=AsUser("writer2", "writer2-pass"))
    assert other.get("/api/auth/me/").json()["username"] == "writer2"
    assert nocrud_client.get("/api/auth/me/").status_code == 403  # the first client is anonymous


pitch_lock = Flow("pitch_lock", as_user=AsUser("writer", "writer-pass"))


@pitch_lock.step
def pitch(ctx):
    body = {"production": 1, "title": "Northwind: Ashore", "logline": "They land."}
    return expect_status(ctx.client.post("/api/pitches/", json=body), 201).json()


@pitch_lock.step(depends_on=["pitch"], max_attempts=3, base_delay=0.1, timeout=5)
def comment(ctx):
    body = {"pitch": ctx["pitch"]["id"], "body": "Love it"}
    expect_status(ctx.client.post("/api/pitch-comments/", json=body), 201)


@pitch_lock.step(depends_on=["pitch", "comment"])
def edit_is_refused(ctx):
    expect_status(ctx.client.patch(f"/api/pitches/{ctx['pitch']['id']}/", json={"title": "New"}), 409)


test_pitch_locks_after_comment = pitch_lock.as_test()

category = CrudFlow("tag_category", endpoint="/api/tag-categories/", create={"name": "Mood"})

test_tag_crud = CrudFlow(
    "tag",
    endpoint="/api/tags/",
    create={"name": "Noir"},
    update={"name": "Neo-noir"},
    requires={"category": category},  # created first; its id goes into the payload
    method="PUT",  # default PATCH
    read_only_fields=["id"],
    as_user=AsUser("producer", "producer-pass"),
).as_test()


# -- README "Flow recipes" -------------------------------------------------------------------------


@pytest.mark.crud_flow
def test_universe_needs_a_name(nocrud_client):
    session_login(nocrud_client, "producer", "producer-pass")
    response = nocrud_client.post("/api/universes/", json={"description": "no name"})
    assert response.status_code == 400
    assert response.json() == {"name": ["This field is required."]}


@pytest.mark.crud_flow
def test_viewer_may_not_create_actors(nocrud_client):
    session_login(nocrud_client, "viewer", "viewer-pass")
    assert nocrud_client.post("/api/actors/", json={"name": "X"}).status_code == 403
    assert len(nocrud_client.get("/api/actors/").json()) == 2  # nothing was saved


@pytest.mark.crud_flow
def test_one_vote_per_user(nocrud_client_factory):
    writer = nocrud_client_factory(as_user=AsUser("writer", "writer-pass"))
    pitch = writer.post("/api/pitches/", json={"production": 1, "title": "T", "logline": "L"}).json()
    voter = nocrud_client_factory(as_user=AsUser("writer2", "writer2-pass"))
    assert voter.post("/api/votes/", json={"pitch": pitch["id"], "value": 1}).status_code == 201
    again = voter.post("/api/votes/", json={"pitch": pitch["id"], "value": -1})
    assert again.status_code == 400
    assert again.json() == {"non_field_errors": ["You have already voted on this pitch."]}


@pytest.mark.crud_flow
def test_deleting_a_production_deletes_its_episodes(nocrud_client):
    session_login(nocrud_client, "producer", "producer-pass")
    assert nocrud_client.delete("/api/productions/1/").status_code == 204
    assert nocrud_client.get("/api/episodes/1/").status_code == 404


# README "@template_setup": the pitch comes from tests/conftest.py's prerequisites, the login is baked.
def test_viewer_may_not_edit_the_pitch(nocrud_client_factory, nocrud_setup):
    pitch = nocrud_setup["prerequisites"]["pitch"]
    viewer = nocrud_client_factory(as_user=AsUser("viewer", "viewer-pass"))
    assert viewer.patch(f"/api/pitches/{pitch['id']}/", json={"title": "X"}).status_code == 403
