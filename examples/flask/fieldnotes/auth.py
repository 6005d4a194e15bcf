"""Bearer tokens: ``Authorization: Bearer <token>``, looked up by SHA-256 in ``api_tokens``.

Roles: ``viewer`` reads; ``member`` also writes projects, notes and tags, and changes what they own;
``admin`` changes anything. Tokens live in the database, so one revoked in a test is back in the next
test's fresh database.
"""

from __future__ import annotations

import hashlib
from typing import Any

from flask import abort, g, request
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import Unauthorized

from . import db


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _presented_token() -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _unauthorized(why: str) -> Unauthorized:
    return Unauthorized(why, www_authenticate=WWWAuthenticate("Bearer"))


def authenticate() -> None:
    """``before_request`` of the API: every endpoint needs a valid token (``/health`` is outside)."""
    token = _presented_token()
    if token is None:
        raise _unauthorized("a bearer token is required")
    user = db.one(
        "SELECT u.id, u.username, u.role FROM api_tokens t JOIN users u ON u.id = t.user_id"
        " WHERE t.token_sha256 = %s",
        token_hash(token),
    )
    if user is None:
        raise _unauthorized("invalid or revoked token")
    g.user = user
    g.token_sha256 = token_hash(token)
    if request.method not in ("GET", "HEAD", "OPTIONS") and user["role"] == "viewer":
        abort(403, "viewers may only read")


def current_user() -> dict[str, Any]:
    user: dict[str, Any] = g.user
    return user


def require_owner(owner_id: int, who: str) -> None:
    """Only the user ``owner_id`` (``who``: "the note's author") or an admin may go on."""
    user = current_user()
    if user["id"] != owner_id and user["role"] != "admin":
        abort(403, f"only {who} or an admin may do this")


def require_admin(action: str) -> None:
    if current_user()["role"] != "admin":
        abort(403, f"only an admin may {action}")
