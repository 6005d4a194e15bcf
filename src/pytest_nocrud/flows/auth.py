"""Logging a flow's client in: Django session + CSRF (JSON endpoints or a classic HTML login form),
bearer tokens (given, or fetched from an OAuth2 password-flow/JSON token endpoint), and extra clients for
other users.

Django's CSRF protection is the usual reason an API test "works in the browser but 403s in the test":
unsafe requests must echo the ``csrftoken`` cookie in ``X-CSRFToken``, and Django *rotates* that cookie
at login. So instead of copying the token once, :func:`install_csrf_header` adds a request hook that
reads the client's current cookie on every POST/PUT/PATCH/DELETE. :func:`session_login` uses it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from html.parser import HTMLParser
from typing import Any, Protocol

import httpx

from pytest_nocrud.flows.baked import BAKED
from pytest_nocrud.flows.csrf import CSRF_COOKIE, CSRF_HEADER, csrf_headers, csrf_token, install_csrf_header
from pytest_nocrud.flows.timeline import RequestLog, describe_response, log_for, make_client

#: Anything that logs a client in: AsUser, AsToken, AsBearer, or a function of the client.
#: Something that logs a client in (``AsUser`` is one); its return value is the ``login`` output.
Login = Callable[[httpx.Client], Any]


class ClientFactory(Protocol):
    """``nocrud_client_factory``: another client of the same app, logged in as ``as_user`` if given."""

    def __call__(self, as_user: Login | None = None, label: str | None = None) -> httpx.Client: ...

__all__ = [
    "AsBearer",
    "AsToken",
    "AsUser",
    "bearer_login",
    "csrf_headers",
    "csrf_token",
    "form_login",
    "install_csrf_header",
    "new_client",
    "session_login",
    "token_login",
]

def session_login(
    client: httpx.Client,
    username: str,
    password: str,
    *,
    csrf_path: str | None = "/api/auth/csrf/",
    login_path: str = "/api/auth/login/",
    form: bool = False,
    baked: bool = True,
) -> Any:
    """Session login: fetch the CSRF cookie, POST the credentials, keep CSRF on later writes.

    JSON endpoints (default): GET ``csrf_path``, POST ``{"username", "password"}`` as JSON to
    ``login_path``; returns the login response's JSON. ``csrf_path=None`` (an app without CSRF, like
    noCRUD's) skips the first request; a CSRF path that sets no cookie is tolerated the same way.
    ``form=True``: a classic HTML login form (Django's ``LoginView``) at ``login_path``; see
    :func:`form_login`. Raises AssertionError with the status and (masked) body when a step fails.
    A session a ``@template_setup`` baked for these credentials is reused without any request
    (``baked=False`` logs in live anyway, e.g. when the login itself is under test).
    """
    __tracebackhide__ = True
    if baked:
        spec = AsUser(username, password, csrf_path=csrf_path, login_path=login_path, form=form)
        reused, result = BAKED.apply(client, spec)
        if reused:
            return result
    if form:
        return form_login(client, username, password, path=login_path)
    headers: dict[str, str] = {}
    install_csrf_header(client)
    if csrf_path is not None:
        response = client.get(csrf_path)
        if response.status_code != 200:
            raise AssertionError(
                f"login as {username!r}: CSRF endpoint failed: {describe_response(response)}\n"
                "  (an app without a CSRF endpoint: pass csrf_path=None)"
            )
        token = csrf_token(client)
        if not token:
            body = response.json() if "json" in response.headers.get("content-type", "") else {}
            token = body.get("csrfToken") if isinstance(body, dict) else None
        if token:
            headers[CSRF_HEADER] = token
    response = client.post(login_path, json={"username": username, "password": password}, headers=headers)
    if response.status_code != 200:
        hint = ""
        if csrf_path is not None and not headers:
            hint = f"\n  (GET {csrf_path} set no {CSRF_COOKIE!r} cookie, so no CSRF token was sent)"
        raise AssertionError(f"login as {username!r} failed: {describe_response(response)}{hint}")
    return response.json() if response.content else None


class _Forms(HTMLParser):
    """The ``<form>`` elements of a page: action, method and their ``<input>`` fields."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append({"action": a.get("action", ""), "method": a.get("method", "get"), "inputs": []})
        elif tag == "input" and self.forms:
            self.forms[-1]["inputs"].append(a)


def _login_form(html: str) -> dict[str, Any] | None:
    """The form with a password field (else the first POST form) of a login page."""
    parser = _Forms()
    parser.feed(html)
    with_password = [f for f in parser.forms if any(i.get("type") == "password" for i in f["inputs"])]
    posts = [f for f in parser.forms if f["method"].lower() == "post"]
    found = with_password or posts
    return found[0] if found else None


def form_login(
    client: httpx.Client,
    username: str,
    password: str,
    *,
    path: str = "/accounts/login/",
    username_field: str | None = None,
    password_field: str | None = None,
) -> httpx.Response:
    """Log in through an HTML login form, as a browser does.

    GET the page at ``path``, take its form (the one with a password field), fill in the credentials
    -- into the form's text and password inputs unless ``username_field``/``password_field`` name
    them -- keep every hidden field (Django's ``csrfmiddlewaretoken``, ``next``), POST it to the form's
    action and follow the redirect. A login that answers without redirecting (the form shown again
    with an error) fails. Later writes carry ``X-CSRFToken``. Returns the last response.
    """
    __tracebackhide__ = True
    page = client.get(path)
    if page.status_code != 200:
        raise AssertionError(f"login as {username!r}: login page failed: {describe_response(page)}")
    form = _login_form(page.text)
    if form is None:
        raise AssertionError(f"login as {username!r}: GET {path} shows no login form")
    data: dict[str, str] = {}
    for field in form["inputs"]:
        name, kind = field.get("name"), field.get("type", "text").lower()
        if not name or kind in ("submit", "button", "image", "reset", "file"):
            continue
        if kind in ("checkbox", "radio") and "checked" not in field:
            continue
        if kind == "password" and password_field is None:
            password_field = name
        elif kind in ("text", "email") and username_field is None:
            username_field = name
        data[name] = field.get("value", "")
    if password_field is None or username_field is None:
        raise AssertionError(
            f"login as {username!r}: the form at {path} has no recognisable username/password inputs; "
            "pass username_field= and password_field="
        )
    data[username_field] = username
    data[password_field] = password
    action = str(page.request.url.join(form["action"] or path))
    install_csrf_header(client)
    response = client.post(
        action, data=data, headers={"Referer": str(page.request.url)}, follow_redirects=True
    )
    if not response.history or response.status_code >= 400:
        raise AssertionError(
            f"login as {username!r} through the form at {path} failed (no redirect after POST): "
            f"{describe_response(response)}"
        )
    return response


def _field(body: Any, path: str) -> Any:
    """``body["a"]["b"]`` for ``path="a.b"``; None when a part is missing."""
    for part in path.split("."):
        if not isinstance(body, Mapping) or part not in body:
            return None
        body = body[part]
    return body


def token_login(
    client: httpx.Client,
    path: str,
    data: Mapping[str, str] | None = None,
    *,
    json: Any = None,
    token_field: str = "access_token",
    scheme: str = "Bearer",
) -> Any:
    """Fetch a token and send it as ``Authorization: <scheme> <token>`` on every later request.

    ``data`` is sent form-encoded (an OAuth2 password-flow ``tokenUrl``: ``{"username": ...,
    "password": ...}``), ``json`` as a JSON body (an API's own login endpoint). ``token_field`` is the
    response field holding the token; a dotted path reaches into nested objects (``"data.token"``).
    Returns the response's JSON. Raises AssertionError when the endpoint refuses or has no token.
    """
    __tracebackhide__ = True
    response = client.post(path, data=data, json=json)
    if response.status_code not in (200, 201):
        raise AssertionError(f"token login at {path} failed: {describe_response(response, limit=200)}")
    try:
        body = response.json()
    except ValueError:
        body = None
    token = _field(body, token_field)
    if not isinstance(token, str) or not token:
        fields = sorted(body) if isinstance(body, Mapping) else type(body).__name__
        raise AssertionError(
            f"token login at {path}: the response has no {token_field!r} string (fields: {fields}); "
            "pass token_field="
        )
    bearer_login(client, token, scheme=scheme)
    return body


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
    csrf_path: str | None = "/api/auth/csrf/"
    login_path: str = "/api/auth/login/"
    form: bool = False

    def __call__(self, client: httpx.Client) -> Any:
        __tracebackhide__ = True
        return session_login(
            client,
            self.username,
            self.password,
            csrf_path=self.csrf_path,
            login_path=self.login_path,
            form=self.form,
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


@dataclasses.dataclass(frozen=True)
class AsToken:
    """Declarative token login for ``as_user=``: :func:`token_login` with a username and password.

    ``AsToken("editor", "editor-pass")`` posts the OAuth2 password-flow form to ``/token`` (FastAPI's
    usual ``tokenUrl``); ``json=True`` sends ``{"username", "password"}`` as JSON instead, for APIs with
    their own login endpoint (``AsToken("ann", "pw", path="/auth/login", json=True, token_field="token")``).
    The password is kept out of ``repr``.
    """

    username: str
    password: str = dataclasses.field(repr=False)
    path: str = "/token"
    token_field: str = "access_token"
    json: bool = False
    scheme: str = "Bearer"

    def __call__(self, client: httpx.Client) -> Any:
        __tracebackhide__ = True
        credentials = {"username": self.username, "password": self.password}
        if self.json:
            return token_login(
                client, self.path, json=credentials, token_field=self.token_field, scheme=self.scheme
            )
        form = {**credentials, "grant_type": "password"}
        return token_login(client, self.path, data=form, token_field=self.token_field, scheme=self.scheme)

    @property
    def label(self) -> str:
        return self.username


def login_label(as_user: Any) -> str:
    """What a logged-in client is called in request tables: ``.label``, else the function's name."""
    label = getattr(as_user, "label", None)
    if isinstance(label, str) and label:
        return label
    return str(getattr(as_user, "__name__", None) or type(as_user).__name__)


def new_client(
    base: str | httpx.Client,
    *,
    log: RequestLog | None = None,
    as_user: Login | None = None,
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
        label = login_label(as_user) if as_user is not None else "client"
    client = make_client(base_url, timeout=timeout, log=log, label=label)
    if as_user is not None:
        try:
            if not BAKED.apply(client, as_user)[0]:  # a session baked into the template, if any
                as_user(client)
        except BaseException:
            client.close()
            raise
    return client
