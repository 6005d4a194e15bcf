"""Fixtures for the bookshelf flows: a client per seed user, logged in with a bearer token.

``nocrud_client`` (from the plugin) is the anonymous client; these are extra clients from
``nocrud_client_factory``. A fixture that is not requested costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from bookshelf_api import ADMIN, EDITOR, EDITOR2, READER

from pytest_nocrud import bake_login, template_setup

Factory = Callable[..., httpx.Client]


@template_setup
def logins(client: httpx.Client) -> dict[str, object]:
    """The editor's token is in the template: every database has it, a fresh one per fuzz case too
    (a token from a live login would be gone after ``nocrud_db.reset()``)."""
    return {"editor": bake_login(client, EDITOR, check="/me")}


@pytest.fixture
def admin(nocrud_client_factory: Factory) -> httpx.Client:
    return nocrud_client_factory(as_user=ADMIN)


@pytest.fixture
def editor(nocrud_client_factory: Factory) -> httpx.Client:
    return nocrud_client_factory(as_user=EDITOR)


@pytest.fixture
def editor2(nocrud_client_factory: Factory) -> httpx.Client:
    return nocrud_client_factory(as_user=EDITOR2)


@pytest.fixture
def reader(nocrud_client_factory: Factory) -> httpx.Client:
    return nocrud_client_factory(as_user=READER)
