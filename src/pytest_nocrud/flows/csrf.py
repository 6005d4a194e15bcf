"""Django-style CSRF for test clients: read the CSRF cookie, send it back as ``X-CSRFToken``.

Its own module because both a login (``auth``) and a baked session put on a client (``baked``) need it,
and neither may import the other.
"""

from __future__ import annotations

import weakref

import httpx

__all__ = ["CSRF_COOKIE", "CSRF_HEADER", "SAFE_METHODS", "csrf_headers", "csrf_token", "install_csrf_header"]

CSRF_COOKIE = "csrftoken"
CSRF_HEADER = "X-CSRFToken"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_HOOK_MARKER = "_nocrud_csrf_hook"


def csrf_token(client: httpx.Client, cookie_name: str = CSRF_COOKIE) -> str | None:
    """The client's current CSRF cookie value, or ``None``."""
    try:
        return client.cookies.get(cookie_name)
    except httpx.CookieConflict:  # same name on several domains/paths: the newest one wins
        values = [c.value for c in client.cookies.jar if c.name == cookie_name and c.value]
        return values[-1] if values else None


def csrf_headers(client: httpx.Client, cookie_name: str = CSRF_COOKIE) -> dict[str, str]:
    """``{"X-CSRFToken": token}`` when the client holds a CSRF cookie, else ``{}`` (for one-off writes)."""
    token = csrf_token(client, cookie_name)
    return {CSRF_HEADER: token} if token else {}


def install_csrf_header(client: httpx.Client, cookie_name: str = CSRF_COOKIE) -> None:
    """Make every unsafe request of ``client`` carry ``X-CSRFToken`` from the *current* cookie.

    Idempotent. A header the caller set explicitly is left alone (so a test can send a wrong token).
    The hook runs before the request log's hook, so the log shows the header (masked) was sent.
    """
    hooks = client.event_hooks
    if any(getattr(h, _HOOK_MARKER, False) for h in hooks.get("request", [])):
        return
    ref = weakref.ref(client)

    def add_csrf(request: httpx.Request) -> None:
        owner = ref()
        if owner is None or request.method in SAFE_METHODS or CSRF_HEADER in request.headers:
            return
        token = csrf_token(owner, cookie_name)
        if token:
            request.headers[CSRF_HEADER] = token

    setattr(add_csrf, _HOOK_MARKER, True)  # noqa: B010
    client.event_hooks = {
        "request": [add_csrf, *hooks.get("request", [])],
        "response": hooks.get("response", []),
    }
