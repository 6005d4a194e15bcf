"""Fixtures for the fieldnotes flows: a client per seed user, sending that user's bearer token.

``nocrud_client`` (from the plugin) is the anonymous client; these are extra clients from
``nocrud_client_factory``. A fixture that is not requested costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from fieldnotes_api import ALICE, BOB, CAROL, VICTOR

Factory = Callable[..., httpx.Client]


@pytest.fixture
def alice(nocrud_client_factory: Factory) -> httpx.Client:
    return nocrud_client_factory(as_user=ALICE)


@pytest.fixture
def bob(nocrud_client_factory: Factory) -> httpx.Client:
    return nocrud_client_factory(as_user=BOB)


@pytest.fixture
def carol(nocrud_client_factory: Factory) -> httpx.Client:
    return nocrud_client_factory(as_user=CAROL)


@pytest.fixture
def victor(nocrud_client_factory: Factory) -> httpx.Client:
    return nocrud_client_factory(as_user=VICTOR)
