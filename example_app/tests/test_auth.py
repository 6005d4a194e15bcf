"""Authentication: Django session login with CSRF, ``/api/auth/me/``, logout.

``session_login(client, username, password)`` does the whole dance (GET the CSRF cookie, POST the
credentials with ``X-CSRFToken``, then keep sending the *current* token on every write, since login
rotates it) and returns the login response's JSON. ``AsUser(...)`` is the same thing as a value, for
``Flow(as_user=...)`` and ``nocrud_client_factory(as_user=...)``. The tests here also spell out the raw
requests where the protocol itself is what is being checked. The fixture users' sessions are baked into
the template (``conftest.py``), so logging them in is free; ``baked=False`` makes a real login where the
login is what is tested.
"""

from __future__ import annotations

import httpx
import pytest
from pitchdesk_api import create

from pytest_nocrud import AsUser, expect_status, session_login

pytestmark = pytest.mark.crud_flow

INVALID = {"detail": "invalid username or password"}


def raw_login(client: httpx.Client, username: str, password: str) -> httpx.Response:
    """One login attempt by hand: fetch the CSRF cookie, POST the credentials with it."""
    token = expect_status(client.get("/api/auth/csrf/"), 200).json()["csrfToken"]
    return client.post(
        "/api/auth/login/", json={"username": username, "password": password}, headers={"X-CSRFToken": token}
    )


@pytest.mark.parametrize(
    ("username", "user_id", "role", "is_staff"),
    [("admin", 1, "producer", True), ("producer", 2, "producer", False), ("viewer", 5, "viewer", False)],
)
def test_login_returns_the_user_and_me_agrees(nocrud_client: httpx.Client, username, user_id, role, is_staff):
    logged_in = session_login(nocrud_client, username, f"{username}-pass", baked=False)  # really log in
    me = {"id": user_id, "username": username, "role": role, "is_staff": is_staff}
    assert logged_in == {**me, "csrfToken": logged_in["csrfToken"]} and len(logged_in["csrfToken"]) == 64
    assert expect_status(nocrud_client.get("/api/auth/me/"), 200).json() == me


@pytest.mark.parametrize(("username", "password"), [("writer", "wrong-pass"), ("nobody", "nobody-pass")])
def test_bad_credentials(nocrud_client: httpx.Client, username: str, password: str):
    assert expect_status(raw_login(nocrud_client, username, password), 400).json() == INVALID
    expect_status(nocrud_client.get("/api/auth/me/"), 403)  # still anonymous


def test_login_requires_both_fields(nocrud_client: httpx.Client):
    token = nocrud_client.get("/api/auth/csrf/").json()["csrfToken"]
    response = nocrud_client.post(
        "/api/auth/login/", json={"username": "writer"}, headers={"X-CSRFToken": token}
    )
    assert expect_status(response, 400).json() == {"password": ["This field is required."]}


def test_login_itself_needs_csrf(nocrud_client: httpx.Client):
    response = nocrud_client.post("/api/auth/login/", json={"username": "writer", "password": "writer-pass"})
    assert expect_status(response, 403).json()["detail"].startswith("CSRF Failed")


def test_me_is_403_when_anonymous(nocrud_client: httpx.Client):
    assert expect_status(nocrud_client.get("/api/auth/me/"), 403).json() == {
        "detail": "Authentication credentials were not provided."
    }


def test_logout_ends_the_session(writer: httpx.Client):
    expect_status(writer.get("/api/auth/me/"), 200)
    logged_out = expect_status(writer.post("/api/auth/logout/"), 204)
    assert logged_out.content == b""
    expect_status(writer.get("/api/auth/me/"), 403)
    expect_status(writer.post("/api/auth/logout/"), 204)  # logging out twice is fine


def test_inactive_user_cannot_log_in(admin: httpx.Client, nocrud_client: httpx.Client):
    create(admin, "/api/users/", username="dormant", password="dormant-pass", is_active=False)
    assert expect_status(raw_login(nocrud_client, "dormant", "dormant-pass"), 400).json() == INVALID


def test_password_change_takes_effect(admin: httpx.Client, nocrud_client_factory):
    user = create(admin, "/api/users/", username="temp", password="first-pass")
    session_login(nocrud_client_factory(), "temp", "first-pass")
    expect_status(admin.patch(f"/api/users/{user['id']}/", json={"password": "second-pass"}), 200)
    fresh = nocrud_client_factory()
    assert expect_status(raw_login(fresh, "temp", "first-pass"), 400).json() == INVALID
    assert AsUser("temp", "second-pass")(fresh)["id"] == user["id"]


def test_health(nocrud_client: httpx.Client):
    assert expect_status(nocrud_client.get("/api/health/"), 200).json() == {"status": "ok"}
