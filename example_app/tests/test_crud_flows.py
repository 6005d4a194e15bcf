"""CRUD flows: one declaration per REST resource.

``CrudFlow(...).as_test()`` turns a declaration into one pytest test whose steps are::

    login -> <prerequisites>.create -> create -> read -> list -> update -> delete -> gone

* ``create``  POST the payload: 201, the body echoes every field sent, and has an ``id``
* ``read``    GET it: 200, identical to what create returned
* ``list``    GET the collection: contains it
* ``update``  PATCH (or PUT with ``method="PUT"``: the full create payload plus the change): 200, echoed,
              and still there on a fresh GET
* ``delete``  DELETE: 2xx, then ``gone``: GET is 404

``requires`` creates what the resource points to, in earlier steps of the same flow, and fills in the id:
another ``CrudFlow`` (``requires=[UNIVERSE]`` fills ``"universe"``; prerequisites chain), or a function
``make(ctx)`` returning the object or its id (used below when someone *else* must create it).
``as_user`` logs the flow's client in first. ``read_only_fields`` are sent but not expected back as sent
(the server sets them); ``write_only_fields`` are never returned (passwords). ``checks={step: fn}`` and
``@FLOW.step`` add your own assertions. Run one with ``pytest -k actor_crud``; on failure the report
shows the step table, the failing request and response, and the app's log lines for the test.
"""

from __future__ import annotations

from typing import Any

from pitchdesk_api import ADMIN, PRODUCER, PRODUCTION_ID, WRITER, WRITER2, WRITER_ID, create_pitch

from pytest_nocrud import AsUser, CrudFlow, StepContext, expect_status

# --- users: staff only; the password is write-only, date_joined read-only ---------------------------

NEW_USER_PASSWORD = "casting-pass"


def _date_joined_is_server_set(ctx: StepContext, user: dict[str, Any]) -> None:
    assert user["date_joined"] != "2000-01-01T00:00:00Z", "date_joined sent by the client was stored"
    assert "password" not in user, "the password must never be returned"


USER = CrudFlow(
    "user",
    endpoint="/api/users/",
    as_user=ADMIN,
    create={
        "username": "casting",
        "email": "casting@pitchdesk.test",
        "role": "writer",
        "password": NEW_USER_PASSWORD,
        "date_joined": "2000-01-01T00:00:00Z",  # read-only: ignored by the server
    },
    update={"first_name": "Casey", "role": "producer"},
    write_only_fields=["password"],
    read_only_fields=["date_joined"],
    checks={"create": _date_joined_is_server_set},
)


@USER.step
def new_user_can_log_in(ctx: StepContext) -> None:
    """A custom step (runs after update, before delete): the write-only password was really stored."""
    client = ctx.fixtures["nocrud_client_factory"](as_user=AsUser("casting", NEW_USER_PASSWORD))
    assert expect_status(client.get("/api/auth/me/"), 200).json()["id"] == ctx["create"]["id"]


test_user_crud = USER.as_test(fixtures=["nocrud_client_factory"])

test_user_crud_put = CrudFlow(
    "user",
    name="user_crud_put",
    endpoint="/api/users/",
    as_user=ADMIN,
    create={"username": "showrunner", "email": "showrunner@pitchdesk.test"},
    update={"email": "boss@pitchdesk.test", "is_staff": True},
    method="PUT",
).as_test()

# --- the catalog: written by the producer ------------------------------------------------------------

UNIVERSE = CrudFlow(
    "universe",
    endpoint="/api/universes/",
    as_user=PRODUCER,
    create={"name": "Ember Reach", "description": "A volcanic archipelago."},
    update={"description": "Islands of ash and glass."},
)
test_universe_crud = UNIVERSE.as_test()

test_universe_crud_put = CrudFlow(
    "universe",
    name="universe_crud_put",
    endpoint="/api/universes/",
    as_user=PRODUCER,
    create={"name": "Glass Coast"},
    update={"name": "Glass Coast Revisited", "description": ""},
    method="PUT",
).as_test()

PRODUCTION = CrudFlow(
    "production",
    endpoint="/api/productions/",
    as_user=PRODUCER,
    requires=[UNIVERSE],  # step "universe.create" runs first; its id goes into "universe"
    create={"title": "Ember Reach: Ashfall", "kind": "film", "release_year": 2027},
    update={"kind": "series", "release_year": None},
)
test_production_crud = PRODUCTION.as_test()

ACTOR = CrudFlow(
    "actor",
    endpoint="/api/actors/",
    as_user=PRODUCER,
    create={"name": "Mira Okafor", "birth_year": 1991},
    update={"birth_year": 1990},
)
test_actor_crud = ACTOR.as_test()

test_actor_crud_put = CrudFlow(
    "actor",
    name="actor_crud_put",
    endpoint="/api/actors/",
    as_user=PRODUCER,
    create={"name": "Jonas Brandt"},
    update={"name": "Jonas K. Brandt", "birth_year": 1979},
    method="PUT",
).as_test()

test_character_crud = CrudFlow(
    "character",
    endpoint="/api/characters/",
    as_user=PRODUCER,
    # Two prerequisites; PRODUCTION brings its own (a universe), so the chain is four creates long.
    requires={"production": PRODUCTION, "played_by": ACTOR},
    create={"name": "Warden Iska"},
    update={"name": "High Warden Iska"},
).as_test()

test_episode_crud = CrudFlow(
    "episode",
    endpoint="/api/episodes/",
    as_user=PRODUCER,
    requires=[PRODUCTION],
    create={"number": 1, "title": "First Light"},
    update={"number": 2, "title": "Second Light"},
).as_test()

TAG_CATEGORY = CrudFlow(
    "tag_category",
    endpoint="/api/tag-categories/",
    as_user=PRODUCER,
    create={"name": "Setting"},
    update={"name": "Locale"},
)
test_tag_category_crud = TAG_CATEGORY.as_test()

test_tag_crud = CrudFlow(
    "tag",
    endpoint="/api/tags/",
    as_user=PRODUCER,
    requires={"category": TAG_CATEGORY},  # the payload field differs from the resource name
    create={"name": "Coastal"},
    update={"name": "Seaside"},
).as_test()

test_tag_crud_put = CrudFlow(
    "tag",
    name="tag_crud_put",
    endpoint="/api/tags/",
    as_user=PRODUCER,
    requires={"category": TAG_CATEGORY},
    create={"name": "Alpine"},
    update={"name": "Mountain"},
    method="PUT",
).as_test()

# --- pitches, votes and comments: written by writers, owned by whoever created them -------------------


def production_by_producer(ctx: StepContext) -> dict[str, Any]:
    """Prerequisite made by *another* user: writers may not create productions, producers may."""
    producer = ctx.fixtures["nocrud_client_factory"](as_user=PRODUCER)
    response = producer.post("/api/productions/", json={"universe": 1, "title": "Tidewater"})
    return expect_status(response, 201).json()


def _owned_by_writer(ctx: StepContext, pitch: dict[str, Any]) -> None:
    assert pitch["owner"] == ctx["login"]["id"] == WRITER_ID, "owner must be the logged-in user"
    assert pitch["is_locked"] is False


PITCH = CrudFlow(
    "pitch",
    endpoint="/api/pitches/",
    as_user=WRITER,
    requires={"production": production_by_producer},
    create={
        "title": "Salt and Signal",
        "logline": "A radio operator decodes messages from a drowned city.",
        "tags": [1, 4],  # a to-many relation is a list of ids
        "owner": 5,  # read-only: the server sets the logged-in user instead
    },
    update={"tags": [2], "title": "Salt & Signal"},
    read_only_fields=["owner"],
    checks={"create": _owned_by_writer},
)
test_pitch_crud = PITCH.as_test(fixtures=["nocrud_client_factory"])

test_pitch_crud_put = CrudFlow(
    "pitch",
    name="pitch_crud_put",
    endpoint="/api/pitches/",
    as_user=WRITER,
    requires={"production": lambda ctx: PRODUCTION_ID},  # or just point at a fixture row
    create={"title": "Low Tide", "logline": "The sea leaves and does not come back."},
    update={"logline": "The sea leaves for a year.", "tags": [3, 5]},
    method="PUT",
).as_test()


def pitch_by_writer(ctx: StepContext) -> dict[str, Any]:
    """The pitch to vote on belongs to ``writer``; the flow itself runs as ``writer2``."""
    return create_pitch(ctx.fixtures["nocrud_client_factory"](as_user=WRITER))


def _vote_unlocked_the_pitch(ctx: StepContext, _status: int) -> None:
    pitch = expect_status(ctx.client.get(f"/api/pitches/{ctx['pitch.create']['id']}/"), 200).json()
    assert pitch["is_locked"] is False, "deleting the only vote must unlock the pitch"


VOTE = CrudFlow(
    "vote",
    endpoint="/api/votes/",
    as_user=WRITER2,
    requires={"pitch": pitch_by_writer},
    create={"value": 1},
    update={"value": -1},  # changing one's vote
    checks={"gone": _vote_unlocked_the_pitch},
)


@VOTE.step
def pitch_is_locked(ctx: StepContext) -> None:
    assert ctx["create"]["user"] == ctx["login"]["id"], "a vote belongs to the voter"
    pitch = expect_status(ctx.client.get(f"/api/pitches/{ctx['pitch.create']['id']}/"), 200).json()
    assert pitch["is_locked"] is True, "a voted pitch must report is_locked"


test_vote_crud = VOTE.as_test(fixtures=["nocrud_client_factory"])

test_pitch_comment_crud = CrudFlow(
    "pitch_comment",
    endpoint="/api/pitch-comments/",
    as_user=WRITER,
    requires={"pitch": PITCH},  # the PITCH declaration above, with its own producer-made production
    create={"body": "Love the radio angle."},
    update={"body": "Love the radio angle; tighten act two."},
    read_only_fields=["author"],
).as_test(fixtures=["nocrud_client_factory"])
