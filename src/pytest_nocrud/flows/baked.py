"""Baked logins: a session recorded once at template build time and reused by every test for free.

Inside a ``@template_setup`` function, ``bake_login(client, AsUser(...), check="/api/auth/me/")`` logs a
fresh client in (live, at build time) and records what the login left on it: cookies, headers, whether
CSRF is echoed, the login's return value. The server side of that session (e.g. Django's
``django_session`` row) is in the template, so every clone has it. In a test, ``AsUser(...)``,
``session_login`` and ``nocrud_client_factory(as_user=...)`` find the record by the login's *identity*
(a hash of all its fields, password included: a wrong password never matches) and put it on the
client: zero login requests.

Sessions expire (Django's default: two weeks; templates live longer). The first time a worker uses a
baked login it GETs ``check`` once; anything but 2xx marks that login rejected for the rest of the
worker, the client logs in live, and the terminal summary says so with a hint to rebuild.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import hashlib
import json
from collections.abc import Iterator, Mapping
from typing import Any, TypedDict

import httpx

from ..errors import NocrudError
from .csrf import install_csrf_header

__all__ = ["BAKED", "BakedLogin", "BakedLogins", "bake_login", "identity", "recording"]

_CSRF_HOOK = "_nocrud_csrf_hook"  # auth.install_csrf_header marks its hook with this attribute


def identity(auth: object) -> str:
    """A stable hash of a login spec (type and every field): the key of its baked session."""
    if not dataclasses.is_dataclass(auth) or isinstance(auth, type):
        raise NocrudError(
            f"cannot bake {auth!r}: bake_login takes a login spec such as AsUser(...) or AsBearer(...)"
        )
    fields = [(f.name, repr(getattr(auth, f.name))) for f in dataclasses.fields(auth)]
    return hashlib.sha256(json.dumps([type(auth).__qualname__, fields]).encode()).hexdigest()


def _label(auth: object) -> str:
    return str(getattr(auth, "label", None) or getattr(auth, "username", None) or type(auth).__name__)


@dataclasses.dataclass(frozen=True)
class BakedLogin:
    """What a login left on a client, as plain JSON data (it is stored in the template)."""

    identity: str
    label: str
    check: str  # GET path that answers 2xx only while the session is valid
    cookies: tuple[tuple[str, str, str, str], ...]  # (name, value, domain or "" for host-only, path)
    headers: tuple[tuple[str, str], ...]
    csrf: bool  # the client echoed the CSRF cookie in a header (session_login's hook)
    result: Any  # the login's return value (session_login: the login response's JSON)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BakedLogin:
        return cls(
            identity=str(data["identity"]),
            label=str(data["label"]),
            check=str(data["check"]),
            cookies=tuple((str(n), str(v), str(d), str(p)) for n, v, d, p in data["cookies"]),
            headers=tuple((str(k), str(v)) for k, v in data["headers"]),
            csrf=bool(data["csrf"]),
            result=data.get("result"),
        )


_RECORDER: contextvars.ContextVar[list[BakedLogin] | None] = contextvars.ContextVar(
    "nocrud_baked_recorder", default=None
)


@contextlib.contextmanager
def recording() -> Iterator[list[BakedLogin]]:
    """Collect the logins ``bake_login`` records while a ``@template_setup`` function runs."""
    recorded: list[BakedLogin] = []
    token = _RECORDER.set(recorded)
    try:
        yield recorded
    finally:
        _RECORDER.reset(token)


def bake_login(client: httpx.Client, auth: Any, *, check: str) -> Any:
    """Log ``auth`` in and bake the session into the template; ``client`` is left as it was.

    For ``@template_setup`` functions. ``check`` is a GET path that answers 2xx only when logged in
    (e.g. ``/api/auth/me/``): it is verified now, and once per worker before the baked session is
    trusted. Returns what the login returned (``session_login``: the login response's JSON).
    """
    __tracebackhide__ = True
    recorder = _RECORDER.get()
    if recorder is None:
        raise NocrudError("bake_login() bakes a session into the template: call it in a @template_setup")
    with _scratch(client):  # starts with no cookies: a new session, not a switch of an existing one
        before = dict(client.headers)
        result = auth(client)
        baked = _record(client, auth, check, before, result)
    recorder.append(baked)
    return baked.result


@contextlib.contextmanager
def _scratch(client: httpx.Client) -> Iterator[None]:
    """Run a login on ``client`` with empty cookies; restore its cookies, headers and hooks after."""
    cookies, headers = httpx.Cookies(client.cookies), httpx.Headers(client.headers)
    hooks = {name: list(hook_list) for name, hook_list in client.event_hooks.items()}
    client.cookies = httpx.Cookies()
    try:
        yield
    finally:
        client.cookies, client.headers, client.event_hooks = cookies, headers, hooks


def _record(client: httpx.Client, auth: Any, check: str, before: dict[str, str], result: Any) -> BakedLogin:
    __tracebackhide__ = True
    label = _label(auth)
    probe = client.get(check)
    if not probe.is_success:
        raise AssertionError(
            f"bake_login({label!r}): after logging in, GET {check} answered {probe.status_code}; "
            "check= must be a path that answers 2xx only when logged in"
        )
    try:
        result = json.loads(json.dumps(result))
    except (TypeError, ValueError):
        raise NocrudError(f"bake_login({label!r}): the login returned {result!r}, not JSON") from None
    cookies = tuple(
        (c.name, c.value or "", c.domain if c.domain_specified else "", c.path) for c in client.cookies.jar
    )
    headers = tuple((k, v) for k, v in client.headers.items() if before.get(k) != v)
    csrf = any(getattr(hook, _CSRF_HOOK, False) for hook in client.event_hooks["request"])
    return BakedLogin(identity(auth), label, check, cookies, headers, csrf, result)


def _cookie_domain(client: httpx.Client) -> str:
    """The domain the cookie jar gives host-only cookies of this client's host (as the server set them)."""
    host = client.base_url.host
    return host if "." in host else f"{host}.local"


class BakedLogins:
    """This process's baked sessions, and what became of them (for the terminal summary)."""

    def __init__(self) -> None:
        self._by_identity: dict[str, BakedLogin] = {}
        self._source: object = None
        self._verified: set[str] = set()
        self._rejected: set[str] = set()
        self.rejected: dict[str, str] = {}  # label -> why
        self.reused = 0

    def use(self, records: Mapping[str, Mapping[str, Any]]) -> None:
        """Take the template's baked sessions ({identity: record}); the same mapping again is a no-op."""
        if records is self._source:
            return
        self._source = records
        self._by_identity = {key: BakedLogin.from_json(data) for key, data in records.items()}
        self._verified.clear()

    def clear(self) -> None:
        """Forget everything (a new run in the same process starts from nothing)."""
        self._by_identity, self._source = {}, None
        self._verified.clear()
        self._rejected.clear()
        self.rejected.clear()
        self.reused = 0

    def __len__(self) -> int:
        return len(self._by_identity)

    def apply(self, client: httpx.Client, auth: object) -> tuple[bool, Any]:
        """``(True, login result)`` when a baked session for ``auth`` now sits on ``client``.

        ``(False, None)`` when there is none, it was rejected, or a template is being built (bake_login
        must log in for real). The first use per process is verified with one GET of its check path.
        """
        if _RECORDER.get() is not None or not self._by_identity or not dataclasses.is_dataclass(auth):
            return False, None
        baked = self._by_identity.get(identity(auth))
        if baked is None or baked.identity in self._rejected:
            return False, None
        self._put_on(client, baked)
        if baked.identity not in self._verified:
            probe = client.get(baked.check)
            if not probe.is_success:
                self._take_off(client, baked)
                self._rejected.add(baked.identity)
                self.rejected[baked.label] = f"GET {baked.check} -> {probe.status_code}"
                return False, None
            self._verified.add(baked.identity)
        self.reused += 1
        return True, baked.result

    def _put_on(self, client: httpx.Client, baked: BakedLogin) -> None:
        host_domain = _cookie_domain(client)
        for name, value, domain, path in baked.cookies:
            client.cookies.set(name, value, domain=domain or host_domain, path=path)
        client.headers.update(dict(baked.headers))
        if baked.csrf:
            install_csrf_header(client)

    def _take_off(self, client: httpx.Client, baked: BakedLogin) -> None:
        for name, *_ in baked.cookies:
            client.cookies.delete(name)
        for name, _ in baked.headers:
            client.headers.pop(name, None)

    def summary(self) -> BakedSummary:
        """Plain data for the terminal summary (crosses xdist)."""
        return {"available": len(self), "reused": self.reused, "rejected": dict(self.rejected)}


class BakedSummary(TypedDict):
    """One process's baked-login counts (plain data: crosses xdist)."""

    available: int
    reused: int
    rejected: dict[str, str]  # label -> why


#: The process's registry: the plugin fills it from the template; AsUser/session_login consult it.
BAKED = BakedLogins()
