"""Baked logins and @template_setup plumbing, client side: recording, reuse, rejection, discovery.

The app here is an ``httpx.MockTransport`` handler with a Django-like session login (csrf cookie, login
sets ``sessionid``, ``/me`` answers 200 only with a known session): the logic under test is what the
client does with cookies and headers, not a server.
"""

from __future__ import annotations

import copy
import json
import types
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pytest_nocrud import AsBearer, AsUser, NocrudError, UsageError, bake_login, session_login
from pytest_nocrud.app.setups import discover, frozen, template_setup
from pytest_nocrud.flows.baked import BAKED, identity, recording
from pytest_nocrud.flows.timeline import RequestLog

WRITER = AsUser("writer", "writer-pass")


class App:
    """Session login as Django does it, recording the paths it was asked for."""

    def __init__(self) -> None:
        self.sessions: dict[str, str] = {}
        self.paths: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        cookies = dict(
            part.strip().split("=", 1) for part in request.headers.get("cookie", "").split(";") if "=" in part
        )
        if request.url.path == "/api/auth/csrf/":
            return httpx.Response(200, json={}, headers={"set-cookie": "csrftoken=tok; Path=/"})
        if request.url.path == "/api/auth/login/":
            body = json.loads(request.content)
            if request.headers.get("x-csrftoken") != cookies.get("csrftoken"):
                return httpx.Response(403)
            if body["password"] != f"{body['username']}-pass":
                return httpx.Response(400)
            if self.sessions.get(cookies.get("sessionid", ""), body["username"]) != body["username"]:
                del self.sessions[cookies["sessionid"]]  # Django flushes another user's session at login
            key = f"s{len(self.paths)}"
            self.sessions[key] = body["username"]
            session = {"set-cookie": f"sessionid={key}; Path=/"}
            return httpx.Response(200, json={"username": body["username"]}, headers=session)
        user = self.sessions.get(cookies.get("sessionid", ""))
        if request.url.path == "/me":
            return httpx.Response(200, json={"username": user}) if user else httpx.Response(403)
        if request.method == "POST":  # any write: logged in and CSRF echoed
            ok = user and request.headers.get("x-csrftoken") == cookies.get("csrftoken")
            return httpx.Response(201 if ok else 403)
        return httpx.Response(404)


@pytest.fixture
def app() -> App:
    return App()


@pytest.fixture
def client(app: App) -> Iterator[httpx.Client]:
    log = RequestLog()
    with httpx.Client(base_url="http://127.0.0.1:8000", transport=httpx.MockTransport(app)) as made:
        log.attach(made)
        yield made


@pytest.fixture(autouse=True)
def empty_registry() -> Iterator[None]:
    BAKED.clear()
    yield
    BAKED.clear()


def bake(client: httpx.Client, *logins: AsUser) -> None:
    """What a template build does: record, then hand the records to this process's registry."""
    with recording() as recorded:
        for login in logins:
            assert bake_login(client, login, check="/me") == {"username": login.username}
    BAKED.use({r.identity: json.loads(json.dumps(r.to_json())) for r in recorded})


def mock_client(app: App) -> httpx.Client:
    return httpx.Client(base_url="http://127.0.0.1:8000", transport=httpx.MockTransport(app))


def test_identity_covers_every_field_so_a_wrong_password_never_matches() -> None:
    assert identity(WRITER) == identity(AsUser("writer", "writer-pass"))
    assert identity(WRITER) != identity(AsUser("writer", "wrong"))
    assert identity(WRITER) != identity(AsUser("writer", "writer-pass", login_path="/other/"))
    assert identity(AsBearer("t")) != identity(AsBearer("u"))
    with pytest.raises(NocrudError, match="login spec"):
        identity(lambda client: None)


def test_bake_login_outside_a_template_build_is_an_error(client: httpx.Client) -> None:
    with pytest.raises(NocrudError, match="@template_setup"):
        bake_login(client, WRITER, check="/me")


def test_bake_login_refuses_a_check_path_that_does_not_prove_the_login(client: httpx.Client) -> None:
    with recording(), pytest.raises(AssertionError, match="GET /nowhere answered 404"):
        bake_login(client, WRITER, check="/nowhere")


def test_a_baked_session_logs_in_with_no_login_request_and_keeps_csrf(app: App, client: httpx.Client) -> None:
    client.cookies.set("theirs", "kept")
    bake(client, WRITER, AsUser("writer2", "writer2-pass"))
    assert dict(client.cookies) == {"theirs": "kept"}, "the setup's own client is left as it was"
    assert len(app.sessions) == 2, "two separate sessions: the second login did not replace the first"
    app.paths.clear()
    with mock_client(app) as fresh:
        assert session_login(fresh, "writer", "writer-pass") == {"username": "writer"}
        assert fresh.post("/api/things/").status_code == 201, "the CSRF header goes with the baked cookie"
    with mock_client(app) as other:
        WRITER(other)  # what Flow(as_user=...) and nocrud_client_factory(as_user=...) do
        assert other.get("/me").json() == {"username": "writer"}
    assert "/api/auth/login/" not in app.paths and "/api/auth/csrf/" not in app.paths
    assert app.paths.count("/me") == 2, "one verification for the process, then the test's own GET"
    assert BAKED.summary() == {"available": 2, "reused": 2, "rejected": {}}


def test_only_baked_credentials_are_reused(app: App, client: httpx.Client) -> None:
    bake(client, WRITER)
    app.paths.clear()
    with mock_client(app) as fresh, pytest.raises(AssertionError, match="failed"):
        session_login(fresh, "writer", "wrong-pass")
    with mock_client(app) as fresh:
        session_login(fresh, "writer", "writer-pass", baked=False)
    assert app.paths.count("/api/auth/login/") == 2


def test_a_rejected_session_is_tried_once_then_every_login_is_live(app: App, client: httpx.Client) -> None:
    bake(client, WRITER)
    app.sessions.clear()  # the server forgot them: expired
    app.paths.clear()
    for _ in range(3):
        with mock_client(app) as other:
            WRITER(other)
            assert other.get("/me").json() == {"username": "writer"}
    assert app.paths.count("/api/auth/login/") == 3
    assert app.paths.count("/me") == 1 + 3, "one failed verification, then each test's own GET"
    assert BAKED.summary()["rejected"] == {"writer": "GET /me -> 403"}
    assert BAKED.summary()["reused"] == 0


def test_template_setups_are_found_in_conftests_in_a_stable_order(tmp_path: Path) -> None:
    def module(path: str, **functions: object) -> types.ModuleType:
        made = types.ModuleType("conftest")
        made.__file__ = str(tmp_path / path)
        vars(made).update(functions)
        return made

    @template_setup
    def zeta(client: httpx.Client) -> None: ...

    @template_setup
    def alpha(client: httpx.Client) -> None: ...

    def not_a_setup(client: httpx.Client) -> None: ...

    plugins = [
        module("b/conftest.py", alpha=alpha),
        module("a/conftest.py", zeta=zeta, alpha=alpha, helper=not_a_setup),
        module("a/helpers.py", other=zeta),  # not a conftest
        object(),
    ]
    assert [s.name for s in discover(plugins)] == ["alpha", "zeta"]

    @template_setup  # type: ignore[no-redef]
    def alpha(client: httpx.Client) -> None: ...

    with pytest.raises(UsageError, match="two @template_setup functions are named 'alpha'"):
        discover([*plugins, module("c/conftest.py", alpha=alpha)])


def test_setup_outputs_are_read_only_json() -> None:
    outputs = frozen({"pitch": {"id": 1, "tags": [1, 2]}})
    assert outputs == {"pitch": {"id": 1, "tags": (1, 2)}}
    assert json.loads(json.dumps(outputs)) == {"pitch": {"id": 1, "tags": [1, 2]}}
    with pytest.raises(TypeError, match="read-only"):
        outputs["pitch"]["id"] = 2
    with pytest.raises(TypeError, match="read-only"):
        outputs.update(other=1)
    mine = copy.deepcopy(outputs["pitch"])
    mine["id"] = 2
    assert outputs["pitch"]["id"] == 1
