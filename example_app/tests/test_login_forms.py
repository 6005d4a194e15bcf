"""session_login against Django's stock HTML login form (LoginView at /accounts/login/).

``form=True``: GET the form, send its hidden ``csrfmiddlewaretoken`` with the credentials, follow the
redirect. The session cookie it ends with works for the JSON API too, writes included (CSRF header).
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from pytest_nocrud import AsUser, session_login

Factory = Callable[..., httpx.Client]


@pytest.mark.crud_flow
def test_session_login_through_the_html_form(nocrud_client: httpx.Client) -> None:
    landed = session_login(
        nocrud_client, "producer", "producer-pass", login_path="/accounts/login/", form=True
    )
    assert [r.status_code for r in landed.history] == [302]
    assert landed.json()["username"] == "producer"  # LOGIN_REDIRECT_URL is /api/auth/me/
    created = nocrud_client.post("/api/universes/", json={"name": "Form-made"})
    assert created.status_code == 201, created.text


@pytest.mark.crud_flow
def test_a_wrong_password_on_the_form_fails_clearly(nocrud_client: httpx.Client) -> None:
    with pytest.raises(AssertionError, match=r"form at /accounts/login/ failed \(no redirect after POST\)"):
        session_login(nocrud_client, "producer", "wrong", login_path="/accounts/login/", form=True)
    assert nocrud_client.get("/api/auth/me/").status_code == 403


@pytest.mark.crud_flow
def test_as_user_with_the_form(nocrud_client_factory: Factory) -> None:
    writer = nocrud_client_factory(
        as_user=AsUser("writer", "writer-pass", login_path="/accounts/login/", form=True)
    )
    assert writer.get("/api/auth/me/").json()["username"] == "writer"
