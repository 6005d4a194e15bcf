"""Fixtures for the pitchdesk flows: a logged-in client per fixture user.

``nocrud_client`` (from the plugin) is the anonymous client. Each fixture below is an *extra* client
from ``nocrud_client_factory``, logged in with its own session cookie and CSRF token, so one test can act
as several users at once::

    def test_someone_elses_pitch(writer, writer2):
        pitch = create_pitch(writer)
        assert writer2.patch(f"/api/pitches/{pitch['id']}/", json={"title": "Mine"}).status_code == 403

All clients of a test share its request log: a failure lists every request in order, labelled by user.
A fixture that is not requested costs nothing, so ask only for the users a test needs.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from pitchdesk_api import ADMIN, PRODUCER, VIEWER, WRITER, WRITER2

Factory = Callable[..., httpx.Client]


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
