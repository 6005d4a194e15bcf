"""Cascade deletes: deleting a parent removes everything below it, and a guarded delete is refused.

A cascade test builds a small tree through the API, deletes the root, and checks every descendant is
gone both ways a client could see it: its detail URL is a 404 *and* it is missing from the list. The
fixture rows (``API.md``) are the control group: they must survive. Because each test gets a fresh
copy of the template database, deleting things is safe: no other test ever sees it.

The production cascade is a step ``Flow``, so a failure says whether the tree could not be built or
which kind of row survived the delete.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pitchdesk_api import PRODUCER, PRODUCTION_ID, WRITER, WRITER2, create, create_pitch, ids

from pytest_nocrud import Flow, StepContext, expect_status

pytestmark = pytest.mark.crud_flow


def assert_gone(client: httpx.Client, rows: dict[str, int]) -> None:
    """Every ``{endpoint: id}`` answers 404 and is absent from its list."""
    __tracebackhide__ = True
    for endpoint, row_id in rows.items():
        expect_status(client.get(f"/api/{endpoint}/{row_id}/"), 404)
        assert row_id not in ids(client, f"/api/{endpoint}/"), f"{endpoint} {row_id} still listed"


production_cascade = Flow("delete_production_cascades", as_user=PRODUCER)


@production_cascade.step
def build_tree(ctx: StepContext) -> dict[str, Any]:
    """A production with a character, an episode, and a pitch that has a vote and a comment."""
    producer = ctx.client
    production = create(producer, "/api/productions/", universe=1, title="Driftglass")
    p = production["id"]
    writer = ctx.fixtures["nocrud_client_factory"](as_user=WRITER)
    writer2 = ctx.fixtures["nocrud_client_factory"](as_user=WRITER2)
    pitch = create_pitch(writer, production=p)
    return {
        "productions": p,
        "characters": create(producer, "/api/characters/", production=p, name="Oona", played_by=2)["id"],
        "episodes": create(producer, "/api/episodes/", production=p, number=1, title="Pilot")["id"],
        "pitches": pitch["id"],
        "votes": create(writer2, "/api/votes/", pitch=pitch["id"], value=1)["id"],
        "pitch-comments": create(writer2, "/api/pitch-comments/", pitch=pitch["id"], body="Yes!")["id"],
    }


@production_cascade.step(depends_on=build_tree)
def delete_production(ctx: StepContext) -> None:
    expect_status(ctx.client.delete(f"/api/productions/{ctx['build_tree']['productions']}/"), 204)


@production_cascade.step(depends_on=[build_tree, delete_production])
def descendants_gone(ctx: StepContext) -> None:
    assert_gone(ctx.client, ctx["build_tree"])


@production_cascade.step(depends_on=delete_production)
def other_production_untouched(ctx: StepContext) -> None:
    assert ids(ctx.client, f"/api/characters/?production={PRODUCTION_ID}") == [1]
    assert ids(ctx.client, f"/api/episodes/?production={PRODUCTION_ID}") == [1]


test_delete_production_cascades = production_cascade.as_test(fixtures=["nocrud_client_factory"])


def test_delete_universe_cascades_to_productions(producer: httpx.Client):
    universe = create(producer, "/api/universes/", name="Cinder Vale")
    production = create(producer, "/api/productions/", universe=universe["id"], title="Cinder Vale: Embers")
    episode = create(producer, "/api/episodes/", production=production["id"], number=1, title="Spark")
    expect_status(producer.delete(f"/api/universes/{universe['id']}/"), 204)
    assert_gone(
        producer, {"universes": universe["id"], "productions": production["id"], "episodes": episode["id"]}
    )
    assert ids(producer, "/api/productions/") == [PRODUCTION_ID]


def test_delete_tag_category_removes_its_tags_from_pitches(producer: httpx.Client, writer: httpx.Client):
    category = create(producer, "/api/tag-categories/", name="Format")
    tag = create(producer, "/api/tags/", category=category["id"], name="Anthology")
    pitch = create_pitch(writer, tags=[1, tag["id"]])
    expect_status(producer.delete(f"/api/tag-categories/{category['id']}/"), 204)
    assert_gone(producer, {"tag-categories": category["id"], "tags": tag["id"]})
    assert writer.get(f"/api/pitches/{pitch['id']}/").json()["tags"] == [1]
    assert ids(producer, "/api/tags/") == [1, 2, 3, 4, 5]


def test_actor_who_plays_a_character_cannot_be_deleted(producer: httpx.Client):
    refused = producer.delete("/api/actors/1/")  # plays fixture character 1
    assert expect_status(refused, 409).json() == {
        "detail": "actor still plays characters; delete or recast them first"
    }
    expect_status(producer.get("/api/actors/1/"), 200)
    # Recast the character; then the actor can go.
    expect_status(producer.patch("/api/characters/1/", json={"played_by": 2}), 200)
    expect_status(producer.delete("/api/actors/1/"), 204)
    assert ids(producer, "/api/actors/") == [2]


def test_delete_user_cascades_to_their_pitches_votes_and_comments(
    admin: httpx.Client, writer: httpx.Client, writer2: httpx.Client
):
    own_pitch = create_pitch(writer2)
    others_pitch = create_pitch(writer)
    vote = create(writer2, "/api/votes/", pitch=others_pitch["id"], value=1)
    comment = create(writer2, "/api/pitch-comments/", pitch=others_pitch["id"], body="Hm.")
    expect_status(admin.delete("/api/users/4/"), 204)  # writer2
    assert_gone(admin, {"pitches": own_pitch["id"], "votes": vote["id"], "pitch-comments": comment["id"]})
    # writer's pitch stays, and is unlocked now that its only vote and comment are gone.
    assert writer.get(f"/api/pitches/{others_pitch['id']}/").json()["is_locked"] is False
