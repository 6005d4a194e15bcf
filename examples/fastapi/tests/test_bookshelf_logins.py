"""The login helpers against this app's three login shapes: OAuth2 password flow, JSON token, cookie."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from pytest_nocrud import AsToken, AsUser, expect_status, token_login
from pytest_nocrud.flows.timeline import log_for

Factory = Callable[..., httpx.Client]


@pytest.mark.crud_flow
def test_token_login_speaks_the_oauth2_password_flow(nocrud_client: httpx.Client) -> None:
    body = token_login(nocrud_client, "/token", data={"username": "editor", "password": "editor-pass"})
    assert body["token_type"] == "bearer"
    assert nocrud_client.headers["authorization"] == f"Bearer {body['access_token']}"
    assert nocrud_client.get("/me").json()["username"] == "editor"
    assert nocrud_client.post("/authors", json={"name": "Martha Wells"}).status_code == 201


@pytest.mark.crud_flow
def test_token_login_reads_a_json_login_endpoints_own_field(nocrud_client: httpx.Client) -> None:
    body = token_login(
        nocrud_client,
        "/auth/login",
        json={"username": "reader", "password": "reader-pass"},
        token_field="token",
    )
    assert body["user"]["role"] == "reader"
    assert nocrud_client.get("/me").json()["username"] == "reader"


@pytest.mark.crud_flow
def test_token_login_failures_say_what_went_wrong(nocrud_client: httpx.Client) -> None:
    with pytest.raises(AssertionError, match=r"POST /token -> 401"):
        token_login(nocrud_client, "/token", data={"username": "editor", "password": "wrong"})
    with pytest.raises(AssertionError, match=r"no 'access_token' string \(fields: \['token', 'user'\]\)"):
        token_login(nocrud_client, "/auth/login", json={"username": "editor", "password": "editor-pass"})
    assert "authorization" not in nocrud_client.headers


@pytest.mark.crud_flow
def test_as_token_with_a_json_endpoint(nocrud_client_factory: Factory) -> None:
    client = nocrud_client_factory(
        as_user=AsToken("editor2", "editor2-pass", path="/auth/login", json=True, token_field="token")
    )
    assert client.get("/me").json()["username"] == "editor2"
    assert "editor2-pass" not in repr(AsToken("editor2", "editor2-pass"))


@pytest.mark.crud_flow
def test_as_user_without_a_csrf_endpoint(nocrud_client_factory: Factory) -> None:
    """A cookie-session API with no CSRF endpoint (like noCRUD's app): csrf_path=None."""
    client = nocrud_client_factory(
        as_user=AsUser("editor", "editor-pass", csrf_path=None, login_path="/session/login")
    )
    assert expect_status(client.post("/authors", json={"name": "Ted Chiang"}), 201).json()["id"] > 2


@pytest.mark.crud_flow
def test_as_user_when_the_csrf_path_sets_no_cookie(nocrud_client_factory: Factory) -> None:
    """noCRUD's port pointed csrf_path at an ordinary endpoint; no cookie is no longer an error."""
    client = nocrud_client_factory(
        as_user=AsUser("reader", "reader-pass", csrf_path="/health", login_path="/session/login")
    )
    assert client.get("/me").json()["username"] == "reader"


@pytest.mark.crud_flow
def test_client_factory_takes_a_login_function(nocrud_client_factory: Factory) -> None:
    """as_user= accepts what Flow accepts: any function of the client, labelled by its name."""

    def editor_via_form(client: httpx.Client) -> None:
        token_login(client, "/token", data={"username": "editor", "password": "editor-pass"})

    client = nocrud_client_factory(as_user=editor_via_form)
    assert client.get("/me").json()["username"] == "editor"
    log = log_for(client)
    assert log is not None
    assert {record.client for record in log.since(0)} == {"editor_via_form"}
