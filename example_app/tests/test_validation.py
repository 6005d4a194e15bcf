"""Validation errors: a bad request body is a 400 naming the field and saying what is wrong.

These are ordinary tests marked ``crud_flow`` (the whole module is, via ``pytestmark``): the mark gives
each test a fresh database and the live app, and the fixtures give logged-in clients (``conftest.py``).
One request per case is enough, so no step flow is needed; ``pytest.mark.parametrize`` makes each case
its own test with a readable id. ``field_errors(response)`` asserts the 400 and returns DRF's
``{"field": ["message", ...]}`` body.

Where a refused write could still leave a row behind, the test also checks that nothing was saved.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pitchdesk_api import (
    GENRE_CATEGORY_ID,
    PRODUCTION_ID,
    TONE_CATEGORY_ID,
    create,
    field_errors,
    ids,
)

from pytest_nocrud import expect_status

pytestmark = pytest.mark.crud_flow

REQUIRED = "This field is required."


@pytest.mark.parametrize(
    ("endpoint", "body", "missing"),
    [
        ("/api/universes/", {"description": "no name"}, ["name"]),
        ("/api/productions/", {"kind": "film"}, ["universe", "title"]),
        ("/api/actors/", {"birth_year": 1970}, ["name"]),
        ("/api/characters/", {"production": PRODUCTION_ID, "name": "Nobody"}, ["played_by"]),
        ("/api/episodes/", {"production": PRODUCTION_ID}, ["number", "title"]),
        ("/api/tags/", {"name": "Orphan"}, ["category"]),
    ],
    ids=["universe", "production", "actor", "character", "episode", "tag"],
)
def test_catalog_required_fields(
    producer: httpx.Client, endpoint: str, body: dict[str, Any], missing: list[str]
):
    errors = field_errors(producer.post(endpoint, json=body))
    assert errors == {field: [REQUIRED] for field in missing}


def test_pitch_requires_title_and_logline(writer: httpx.Client, pitch: dict):
    errors = field_errors(writer.post("/api/pitches/", json={"production": PRODUCTION_ID, "title": ""}))
    assert errors == {"title": ["This field may not be blank."], "logline": [REQUIRED]}
    assert ids(writer, "/api/pitches/") == [pitch["id"]], "only the template's pitch"


def test_comment_body_may_not_be_blank(writer: httpx.Client, pitch: dict):
    errors = field_errors(writer.post("/api/pitch-comments/", json={"pitch": pitch["id"], "body": ""}))
    assert errors == {"body": ["This field may not be blank."]}
    locked = writer.get(f"/api/pitches/{pitch['id']}/").json()["is_locked"]
    assert locked is False, "a rejected comment must not lock the pitch"


@pytest.mark.parametrize(
    ("endpoint", "body", "field"),
    [
        ("/api/productions/", {"universe": 999, "title": "Lost"}, "universe"),
        ("/api/characters/", {"production": PRODUCTION_ID, "name": "Ghost", "played_by": 999}, "played_by"),
        ("/api/tags/", {"category": 999, "name": "Nowhere"}, "category"),
    ],
    ids=["production.universe", "character.played_by", "tag.category"],
)
def test_unknown_foreign_key(producer: httpx.Client, endpoint: str, body: dict[str, Any], field: str):
    assert field_errors(producer.post(endpoint, json=body)) == {
        field: ['Invalid pk "999" - object does not exist.']
    }


def test_production_kind_is_a_choice(producer: httpx.Client):
    errors = field_errors(
        producer.post("/api/productions/", json={"universe": 1, "title": "X", "kind": "musical"})
    )
    assert errors == {"kind": ['"musical" is not a valid choice.']}


@pytest.mark.parametrize("number", [0, -1])
def test_episode_number_starts_at_one(producer: httpx.Client, number: int):
    body = {"production": PRODUCTION_ID, "number": number, "title": "Prologue"}
    assert field_errors(producer.post("/api/episodes/", json=body)) == {
        "number": ["Ensure this value is greater than or equal to 1."]
    }


def test_episode_number_unique_per_production(producer: httpx.Client):
    # Fixture episode 1 of production 1 exists; a second "episode 1" of it is a cross-field error.
    body = {"production": PRODUCTION_ID, "number": 1, "title": "Cast Off Again"}
    assert field_errors(producer.post("/api/episodes/", json=body)) == {
        "non_field_errors": ["The fields production, number must make a unique set."]
    }


def test_tag_name_unique_per_category(producer: httpx.Client):
    duplicate = producer.post("/api/tags/", json={"category": GENRE_CATEGORY_ID, "name": "Drama"})
    assert field_errors(duplicate) == {
        "non_field_errors": ["The fields category, name must make a unique set."]
    }
    # The same name in another category is fine.
    other = create(producer, "/api/tags/", category=TONE_CATEGORY_ID, name="Drama")
    assert other["category"] == TONE_CATEGORY_ID


@pytest.mark.parametrize("value", [0, 2])
def test_vote_value_is_plus_or_minus_one(writer: httpx.Client, value: Any, pitch: dict):
    errors = field_errors(writer.post("/api/votes/", json={"pitch": pitch["id"], "value": value}))
    assert errors == {"value": [f'"{value}" is not a valid choice.']}


def test_duplicate_username(admin: httpx.Client):
    errors = field_errors(admin.post("/api/users/", json={"username": "writer", "password": "x-pass"}))
    assert errors == {"username": ["A user with that username already exists."]}


def test_universe_name_is_unique(producer: httpx.Client):
    errors = field_errors(producer.post("/api/universes/", json={"name": "Northwind Saga"}))
    assert list(errors) == ["name"] and "already exists" in errors["name"][0]


def test_body_must_be_json(producer: httpx.Client):
    response = producer.post("/api/actors/", content="name=Form+Post", headers={"Content-Type": "text/plain"})
    assert expect_status(response, 415).json()["detail"].startswith("Unsupported media type")
    assert ids(producer, "/api/actors/") == [1, 2]


def test_list_filter_must_be_an_id(nocrud_client: httpx.Client):
    errors = field_errors(nocrud_client.get("/api/characters/?production=first"))
    assert list(errors) == ["production"]
