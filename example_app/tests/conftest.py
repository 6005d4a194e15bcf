"""Fixtures for the pitchdesk flows: a logged-in client per fixture user, and a pitch to work on.

``nocrud_client`` (from the plugin) is the anonymous client. Each fixture below is an *extra* client
from ``nocrud_client_factory``, logged in with its own session cookie and CSRF token, so one test can act
as several users at once::

    def test_someone_elses_pitch(writer2, pitch):
        assert writer2.patch(f"/api/pitches/{pitch['id']}/", json={"title": "Mine"}).status_code == 403

All clients of a test share its request log: a failure lists every request in order, labelled by user.
A fixture that is not requested costs nothing, so ask only for the users a test needs.

Logging in and making the same pitch are the same in every test, so they happen once, while the
template is built (``@template_setup``): every user's session is baked into the template, and so is one
unlocked pitch of ``writer``. The client fixtures therefore make no login request at all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import httpx
import pytest
from pitchdesk_api import ADMIN, PRODUCER, VIEWER, WRITER, WRITER2, create_pitch

from pytest_nocrud import bake_login, session_login, template_setup

Factory = Callable[..., httpx.Client]
USERS = (ADMIN, PRODUCER, WRITER, WRITER2, VIEWER)


@template_setup
def logins(client: httpx.Client) -> dict[str, Any]:
    """Every fixture user logged in once; ``AsUser`` and ``session_login`` reuse these sessions."""
    return {user.username: bake_login(client, user, check="/api/auth/me/") for user in USERS}


@template_setup
def prerequisites(client: httpx.Client) -> dict[str, Any]:
    """Rows many tests start from, made through the API as a user would."""
    session_login(client, WRITER.username, WRITER.password)
    return {"pitch": create_pitch(client)}


@pytest.fixture
def pitch(nocrud_setup: Mapping[str, Any]) -> dict[str, Any]:
    """An unlocked pitch owned by ``writer`` ("The Lighthouse Keeper" on the fixture production)."""
    return nocrud_setup["prerequisites"]["pitch"]


@pytest.fixture
def admin(nocrud_client_factory: Factory) -> httpx.Client:
    return nocrud_client_factory(as_user=ADMIN)


@pytest.fixture
def producer(nocrud_client_factory: Factory) -> httpx.Client:
    return nocrud_client_factory(as_user=PRODUCER)


@pytest.fixture
def writer(nocrud_client_factory: Factory) -> httpx.Client:
    return nocrud_client_factory(as_user=WRITER)


@pytest.fixture
def writer2(nocrud_client_factory: Factory) -> httpx.Client:
    return nocrud_client_factory(as_user=WRITER2)


@pytest.fixture
def viewer(nocrud_client_factory: Factory) -> httpx.Client:
    return nocrud_client_factory(as_user=VIEWER)
