"""Shared declarations for the pitchdesk flows: who can log in, and a few one-line request helpers.

Import what you need in a test module::

    from pitchdesk_api import WRITER, create_pitch

The users are the fixture rows every test starts with (see ``example_app/API.md``); ``AsUser`` keeps the
password out of reprs, test ids and reports. The helpers make a row in one request and assert the
status, so a test's own steps stay about the behaviour it checks. (Constants live here rather than in
``conftest.py`` because conftest files are not meant to be imported; ``conftest.py`` holds the fixtures.)
"""

from __future__ import annotations

from typing import Any

import httpx

from pytest_nocrud import AsUser, expect_status

# Fixture users (password = "<username>-pass").
ADMIN = AsUser("admin", "admin-pass")  # id 1, superuser: everything, incl. users and others' pitches
PRODUCER = AsUser("producer", "producer-pass")  # id 2: writes the whole catalog, not users
WRITER = AsUser("writer", "writer-pass")  # id 3: pitches, votes, comments (own rows only)
WRITER2 = AsUser("writer2", "writer2-pass")  # id 4: "someone else" for writer's pitches
VIEWER = AsUser("viewer", "viewer-pass")  # id 5: reads everything, writes nothing

WRITER_ID = 3
WRITER2_ID = 4

# Fixture catalog rows.
UNIVERSE_ID = 1  # "Northwind Saga"
PRODUCTION_ID = 1  # "Northwind: The Crossing", universe 1
ACTOR_PLAYING_ID = 1  # Ada Marlowe, plays character 1
ACTOR_FREE_ID = 2  # Tomas Reyes, plays nobody
GENRE_CATEGORY_ID = 1  # tags 1-3: Drama, Sci-Fi, Comedy
TONE_CATEGORY_ID = 2  # tags 4-5: Dark, Hopeful

NOT_LOGGED_IN = "Authentication credentials were not provided."
NO_PERMISSION = "You do not have permission to perform this action."
NOT_OWNER = "Only the owner (or staff) may modify this object."
PITCH_LOCKED = "pitch is locked: it has votes or comments"


def create(client: httpx.Client, endpoint: str, **fields: Any) -> dict[str, Any]:
    """POST ``fields`` to ``endpoint``; assert 201; return the created object."""
    __tracebackhide__ = True
    return expect_status(client.post(endpoint, json=fields), 201).json()


def create_pitch(client: httpx.Client, **fields: Any) -> dict[str, Any]:
    """A pitch owned by ``client``'s user, on the fixture production unless ``production=`` is given."""
    __tracebackhide__ = True
    body = {"production": PRODUCTION_ID, "title": "The Lighthouse Keeper", "logline": "A keeper hears ships."}
    return create(client, "/api/pitches/", **{**body, **fields})


def field_errors(response: httpx.Response) -> dict[str, list[str]]:
    """Assert a 400 and return DRF's ``{"field": ["message", ...]}`` body."""
    __tracebackhide__ = True
    return expect_status(response, 400).json()


def ids(client: httpx.Client, endpoint: str) -> list[int]:
    """The ids a list endpoint returns (lists are plain JSON arrays)."""
    __tracebackhide__ = True
    return [row["id"] for row in expect_status(client.get(endpoint), 200).json()]
