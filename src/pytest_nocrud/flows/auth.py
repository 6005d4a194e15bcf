"""Logging a flow's client in: Django session + CSRF, bearer tokens, and extra clients for other users.

Django's CSRF protection is the usual reason an API test "works in the browser but 403s in the test":
unsafe requests must echo the ``csrftoken`` cookie in ``X-CSRFToken``, and Django *rotates* that cookie
at login. So instead of copying the token once, :func:`install_csrf_header` adds a request hook that
reads the client's current cookie on every POST/PUT/PATCH/DELETE. :func:`session_login` uses it.
"""

from __future__ import annotations

import dataclasses
import weakref
from typing import Any

import httpx

from pytest_nocrud.flows.baked import BAKED
from pytest_nocrud.flows.timeline import RequestLog, describe_response, log_for, make_client

__all__ = [
    "AsBearer",
    "AsUser",
    "bearer_login",
    "csrf_headers",
    "csrf_token",
    "install_csrf_header",
    "new_client",
    "session_login",
]

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


def session_login(
    client: httpx.Client,
    username: str,
    password: str,
    *,
    csrf_path: str = "/api/auth/csrf/",
    login_path: str = "/api/auth/login/",
    baked: bool = True,
) -> Any:
    """Django session login: fetch the CSRF cookie, POST the credentials, keep CSRF on later writes.

    Returns the login response's JSON (the example app answers ``{id, username, role, is_staff}``).
    Raises AssertionError with the status and (masked) body if either request does not return 200.
    A session a ``@template_setup`` baked for these credentials is reused without any request
    (``baked=False`` logs in live anyway, e.g. when the login itself is under test).
    """
    __tracebackhide__ = True
    if baked:
        spec = AsUser(username, password, csrf_path=csrf_path, login_path=login_path)
        reused, result = BAKED.apply(client, spec)
        if reused:
            return result
    response = client.get(csrf_path)
    if response.status_code != 200:
        raise AssertionError(f"login as {username!r}: CSRF endpoint failed: {describe_response(response)}")
    token = csrf_token(client)
    if not token:
        body = response.json() if "json" in response.headers.get("content-type", "") else {}
        token = body.get("csrfToken") if isinstance(body, dict) else None
    if not token:
        raise AssertionError(f"login as {username!r}: GET {csrf_path} set no {CSRF_COOKIE!r} cookie")
    install_csrf_header(client)
    response = client.post(
        login_path, json={"username": username, "password": password}, headers={CSRF_HEADER: token}
    )
    if response.status_code != 200:
        raise AssertionError(f"login as {username!r} failed: {describe_response(response)}")
    return response.json() if response.content else None


def bearer_login(client: httpx.Client, token: str, *, scheme: str = "Bearer") -> None:
    """Send ``Authorization: <scheme> <token>`` on every later request of ``client``."""
    client.headers["Authorization"] = f"{scheme} {token}"


@dataclasses.dataclass(frozen=True)
class AsUser:
    """Declarative session login for ``Flow(as_user=...)`` / ``CrudFlow(as_user=...)``.

    Calling it with a client logs that client in (see :func:`session_login`). The password is kept out
    of ``repr`` so it never appears in test ids or reports.
    """

    username: str
    password: str = dataclasses.field(repr=False)
    csrf_path: str = "/api/auth/csrf/"
    login_path: str = "/api/auth/login/"

    def __call__(self, client: httpx.Client) -> Any:
        __tracebackhide__ = True
        return session_login(
            client, self.username, self.password, csrf_path=self.csrf_path, login_path=self.login_path
        )

    @property
    def label(self) -> str:
        return self.username


@dataclasses.dataclass(frozen=True)
class AsBearer:
    """Declarative token auth for ``as_user=``: sets the Authorization header, makes no request."""

    token: str = dataclasses.field(repr=False)
    scheme: str = "Bearer"
    label: str = "bearer"

    def __call__(self, client: httpx.Client) -> None:
        bearer_login(client, self.token, scheme=self.scheme)


def new_client(
    base: str | httpx.Client,
    *,
    log: RequestLog | None = None,
    as_user: AsUser | AsBearer | None = None,
    label: str | None = None,
    timeout: float = 10.0,
) -> httpx.Client:
    """Another independent client (own cookies, own session) for a multi-user flow.

    ``base`` is the app URL or an existing client; given a client, the new one reports to the same
    request log (unless ``log`` is passed), so the failure table shows both users' requests in order,
    labelled by user. With ``as_user`` the client is logged in before it is returned. The caller closes it
    (the plugin's ``nocrud_client_factory`` fixture closes the clients it made at teardown).
    """
    if isinstance(base, httpx.Client):
        base_url = str(base.base_url)
        timeout = base.timeout.read if base.timeout.read is not None else timeout
        log = log if log is not None else log_for(base)
    else:
        base_url = base
    if label is None:
        label = as_user.label if as_user is not None else "client"
    client = make_client(base_url, timeout=timeout, log=log, label=label)
    if as_user is not None:
        try:
            if not BAKED.apply(client, as_user)[0]:  # a session baked into the template, if any
                as_user(client)
        except BaseException:
            client.close()
            raise
    return client
