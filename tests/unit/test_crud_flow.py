"""Unit tests of CrudFlow's client-side logic: finding item URLs (Location, links, redirects, the
OpenAPI schema; FastAPI, Flask and DRF layouts; never another origin), binding payload and
prerequisite functions, many-to-many requires. The "server" is an httpx.MockTransport holding dicts in
memory -- enough to decide which URL the flow requests and what it sends; the real-app versions of
these behaviours run in examples/fastapi."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pytest_nocrud import CrudFlow, FlowDefinitionError, StepContext
from pytest_nocrud.flows.locate import item_path_in_schema, use_openapi_path


class Api:
    """One collection at ``endpoint``; items live at ``item`` (``{id}`` filled in).

    ``link`` says how create tells the client where the item is: "location", "url", "self", "hal" or
    None. ``slashes`` is how the framework answers a path that differs from a route only by the
    trailing slash: "starlette" (FastAPI: 307 either way), "flask" (strict slashes: 308 to the
    slashed route, 404 for an extra slash), "django" (APPEND_SLASH: 301 to the slashed route) or
    "none" (404). ``schema`` is served at ``/openapi.json``; ``elsewhere`` answers every item request
    with a 307 to that origin.
    """

    def __init__(
        self,
        endpoint: str = "/things",
        item: str = "/things/{id}",
        link: str | None = None,
        slashes: str = "starlette",
        schema: dict[str, Any] | None = None,
        elsewhere: str | None = None,
    ):
        self.endpoint, self.item, self.link, self.slashes = endpoint, item, link, slashes
        self.schema, self.elsewhere = schema, elsewhere
        self.rows: dict[int, dict[str, Any]] = {}
        self.last_id = 0
        self.sent: list[dict[str, Any]] = []
        self.requests: list[str] = []

    def client(self) -> httpx.Client:
        return httpx.Client(base_url="http://app.test", transport=httpx.MockTransport(self.handle))

    def _other_slash(self, path: str, route_has_slash: bool) -> httpx.Response:
        """The answer for ``path``, which misses a route only by its trailing slash."""
        fixed = path[:-1] if path.endswith("/") else path + "/"
        code = {"starlette": 307, "flask": 308, "django": 301}.get(self.slashes)
        if code is None or (self.slashes != "starlette" and not route_has_slash):
            return httpx.Response(404)
        return httpx.Response(code, headers={"Location": f"http://app.test{fixed}"})

    def handle(self, request: httpx.Request) -> httpx.Response:
        path, method = request.url.path, request.method
        self.requests.append(
            f"{method} {path}" if request.url.host == "app.test" else f"{method} {request.url}"
        )
        if path == "/openapi.json" and self.schema is not None:
            return httpx.Response(200, json=self.schema)
        if path != self.endpoint and path.rstrip("/") == self.endpoint.rstrip("/"):
            return self._other_slash(path, self.endpoint.endswith("/"))
        if path == self.endpoint and method == "POST":
            body = json.loads(request.content)
            self.sent.append(body)
            self.last_id += 1
            row = {"id": self.last_id, **body}
            self.rows[row["id"]] = row
            headers = {}
            where = self.item.format(id=row["id"])
            if self.link == "location":
                headers["Location"] = f"http://app.test{where}"
            elif self.link in ("url", "self"):
                row[self.link] = f"http://app.test{where}"
            elif self.link == "hal":
                row["_links"] = {"self": {"href": where}}
            return httpx.Response(201, json=row, headers=headers)
        if path == self.endpoint and method == "GET":
            return httpx.Response(200, json=list(self.rows.values()))
        pattern = "^" + re.escape(self.item).replace(re.escape("{id}"), r"(\d+)") + "$"
        match = re.match(pattern, path)
        if match is None:
            if re.match(pattern, path[:-1] if path.endswith("/") else path + "/") is not None:
                return self._other_slash(path, self.item.endswith("/"))
            return httpx.Response(404)
        if self.elsewhere is not None:
            return httpx.Response(307, headers={"Location": f"{self.elsewhere}{path}"})
        obj_id = int(match.group(1))
        if obj_id not in self.rows:
            return httpx.Response(404)
        if method == "GET":
            return httpx.Response(200, json=self.rows[obj_id])
        if method in ("PATCH", "PUT"):
            self.rows[obj_id].update(json.loads(request.content))
            return httpx.Response(200, json=self.rows[obj_id])
        if method == "DELETE":
            del self.rows[obj_id]
            return httpx.Response(204)
        return httpx.Response(405)

    def item_requests(self) -> list[str]:
        return [
            r
            for r in self.requests
            if r.split(" ", 1)[1].rstrip("/") not in ("/openapi.json", self.endpoint.rstrip("/"))
        ]


def _crud(api: Api, **kwargs: Any) -> CrudFlow:
    return CrudFlow("thing", endpoint=api.endpoint, create={"name": "a"}, update={"name": "b"}, **kwargs)


@pytest.mark.parametrize("link", ["location", "url", "self", "hal"])
def test_the_item_url_comes_from_the_create_response(link: str) -> None:
    api = Api(endpoint="/things/", item="/items/{id}", link=link)  # no guess could find it
    result = _crud(api).run(api.client())
    assert result.ok, result.report()
    assert "GET /items/1" in api.requests and "DELETE /items/1" in api.requests
    assert not any(r.endswith("/items/1/") for r in api.requests)


@pytest.mark.parametrize(("endpoint", "item"), [("/things", "/things/{id}"), ("/things/", "/things/{id}/")])
def test_without_a_link_the_item_is_endpoint_plus_id_slashed_like_the_endpoint(
    endpoint: str, item: str
) -> None:
    api = Api(endpoint=endpoint, item=item)
    result = _crud(api).run(api.client())
    assert result.ok, result.report()
    assert f"GET {item.format(id=1)}" in api.requests


def test_a_url_field_that_was_sent_is_data_not_the_items_link() -> None:
    api = Api()
    flow = CrudFlow("link", endpoint="/things", create={"url": "http://app.test/elsewhere"})
    assert flow.run(api.client()).ok
    assert "GET /things/1" in api.requests


def test_a_link_to_another_host_is_ignored() -> None:
    api = Api(link="url")
    api.item = "/things/{id}"
    flow = _crud(api)
    response = httpx.Response(201, request=httpx.Request("POST", "http://app.test/things"))
    assert flow.item_url(response, {"id": 4, "url": "https://cdn.example.com/4"}, {}) == "/things/4"


SCHEMA = {  # what FastAPI serves for a router at /things: collection "/things/", items without a slash
    "openapi": "3.1.0",
    "paths": {
        "/things/": {"get": {}, "post": {}},
        "/things/{thing_id}": {"get": {}, "patch": {}, "delete": {}},
        "/things/{thing_id}/parts": {"get": {}},
    },
}


@pytest.fixture
def schema_path() -> Iterator[None]:
    yield
    use_openapi_path(None)


def test_fastapi_items_without_a_slash_are_found_by_the_redirect_and_kept() -> None:
    api = Api(endpoint="/things/", item="/things/{id}")  # FastAPI router, no schema served
    flow = _crud(api)
    result = flow.run(api.client())
    assert result.ok, result.report()
    assert api.item_requests()[:2] == ["GET /things/1/", "GET /things/1"]  # resolved with the GET
    assert "PATCH /things/1" in api.requests and "DELETE /things/1" in api.requests
    assert not any(r.startswith(("PATCH", "DELETE")) and r.endswith("/") for r in api.requests)
    assert api.requests.count("GET /openapi.json") == 1  # looked for, not served
    api.requests.clear()
    assert flow.run(api.client()).ok  # later items use the adopted form: no redirect at all
    assert "GET /things/2" in api.requests and not any(r.endswith("/things/2/") for r in api.requests)
    assert "GET /openapi.json" not in api.requests  # tried once per flow and app


def test_a_write_that_is_redirected_is_resolved_with_a_get_not_resent_through_the_redirect() -> None:
    api = Api(endpoint="/things/", item="/things/{id}")
    result = _crud(api, steps=["create", "delete"]).run(api.client())
    assert result.ok, result.report()
    assert api.item_requests() == ["DELETE /things/1/", "GET /things/1", "DELETE /things/1"]


def test_the_openapi_schema_gives_the_item_path_before_any_redirect() -> None:
    api = Api(endpoint="/things/", item="/things/{id}", schema=SCHEMA)
    flow = _crud(api)
    for _ in range(2):
        result = flow.run(api.client())
        assert result.ok, result.report()
    assert api.requests.count("GET /openapi.json") == 1
    assert not any(r.endswith(("/things/1/", "/things/2/")) for r in api.requests)
    assert "GET /things/2" in api.requests


def test_nocrud_openapi_path_names_the_schema(schema_path: None) -> None:
    use_openapi_path("/api/schema")
    api = Api(endpoint="/things/", item="/things/{id}", slashes="none")  # no redirect to learn from
    served = {"/api/schema": SCHEMA}
    handle = api.handle
    api.handle = lambda r: httpx.Response(200, json=served[r.url.path]) if r.url.path in served else handle(r)
    result = _crud(api).run(api.client())
    assert result.ok, result.report()
    assert "GET /openapi.json" not in api.requests and "GET /things/1" in api.requests


def test_flask_strict_slashes_404_gets_one_look_at_the_other_slash_form() -> None:
    api = Api(endpoint="/things/", item="/things/{id}", slashes="flask")  # /things/1/ is a 404
    result = _crud(api).run(api.client())
    assert result.ok, result.report()
    assert api.item_requests()[:2] == ["GET /things/1/", "GET /things/1"]
    assert "DELETE /things/1" in api.requests and "DELETE /things/1/" not in api.requests


def test_flask_308_to_the_slashed_item_is_adopted() -> None:
    api = Api(endpoint="/things", item="/things/{id}/", slashes="flask")
    result = _crud(api).run(api.client())
    assert result.ok, result.report()
    assert api.item_requests()[:2] == ["GET /things/1", "GET /things/1/"]
    assert "PATCH /things/1/" in api.requests and "PATCH /things/1" not in api.requests


def test_drf_trailing_slash_items_are_the_guess() -> None:
    api = Api(endpoint="/things/", item="/things/{id}/", slashes="django")
    result = _crud(api).run(api.client())
    assert result.ok, result.report()
    assert api.item_requests()[0] == "GET /things/1/"
    assert not any(r.endswith("/things/1") for r in api.requests)


def test_a_collection_redirect_307_is_adopted_but_a_301_post_is_not_resent() -> None:
    api = Api(endpoint="/things", item="/things/{id}")  # declared "/things/" below: FastAPI 307s it
    result = CrudFlow("thing", endpoint="/things/", create={"name": "a"}).run(api.client())
    assert result.ok, result.report()
    assert api.requests[:2] == ["POST /things/", "POST /things"] and "GET /things" in api.requests
    assert len(api.rows) == 0 and len(api.sent) == 1  # created once, deleted
    django = Api(endpoint="/things/", item="/things/{id}/", slashes="django")
    failed = CrudFlow("thing", endpoint="/things", create={"name": "a"}).run(django.client())
    assert not failed.ok and django.sent == []
    message = str(failed["create"].error)
    assert "POST /things -> 301 redirect to http://app.test/things/" in message
    assert "endpoint='/things/'" in message


def test_a_location_that_names_the_collection_is_not_the_item() -> None:
    api = Api(endpoint="/things", item="/things/{id}")
    response = httpx.Response(
        201, headers={"Location": "/things"}, request=httpx.Request("POST", "http://app.test/things")
    )
    assert _crud(api).item_url(response, {"id": 3}, {}) == "/things/3"


def test_a_redirect_to_another_origin_is_never_followed() -> None:
    api = Api(endpoint="/things/", item="/things/{id}", elsewhere="http://app.test:8443")
    api.item = "/things/{id}/"  # the guess is right, but the app sends items off to another port
    result = _crud(api).run(api.client())
    assert not result.ok
    message = str(result["read"].error)
    assert "GET /things/1/ -> 307 redirect to http://app.test:8443/things/1/" in message
    assert "another origin than the app's (http://app.test:80)" in message
    assert "never follows a redirect to another scheme, host or port" in message
    assert not any("8443" in r for r in api.requests)  # nothing was sent there
    assert [s.name for s in result.steps if s.status.value == "completed"] == ["create", "list"]


def test_detail_path_wins_and_a_wrong_one_still_gets_the_hint() -> None:
    api = Api(endpoint="/things/", item="/things/{id}", link="location", schema=SCHEMA)
    wrong = _crud(api, detail_path="/things/{id}/").run(api.client())  # not adopted: it was declared
    assert not wrong.ok
    message = str(wrong["read"].error)
    assert "GET /things/1/ -> 307 redirect to http://app.test/things/1" in message
    assert "the item URL (detail_path='/things/{id}/')" in message
    assert "detail_path='/things/{id}'" in message
    assert "GET /openapi.json" not in api.requests
    fixed = _crud(api, detail_path="/things/{id}").run(api.client())
    assert fixed.ok, fixed.report()


def test_an_item_nowhere_to_be_found_names_detail_path() -> None:
    api = Api(endpoint="/things/", item="/items/{id}")  # no link, no schema: no way to know
    result = _crud(api).run(api.client())
    assert not result.ok
    message = str(result["read"].error)
    assert "GET /things/1/ -> 404, and GET /things/1 -> 404" in message
    assert "guessed: endpoint + id" in message
    assert "Tell CrudFlow 'thing' where items live: detail_path=" in message


def test_a_redirect_elsewhere_on_the_app_is_not_adopted() -> None:
    api = Api(endpoint="/things/", item="/things/{id}/")
    handle = api.handle
    api.handle = lambda r: (
        httpx.Response(302, headers={"Location": "/login?next=/things/1/"})
        if r.url.path == "/things/1/"
        else handle(r)
    )
    result = _crud(api).run(api.client())
    assert not result.ok
    assert "GET /things/1/ -> 302 redirect to /login?next=/things/1/" in str(result["read"].error)


@pytest.mark.parametrize(
    ("schema", "endpoint", "item"),
    [
        (SCHEMA, "/things", "/things/{id}"),
        (SCHEMA, "/things/", "/things/{id}"),
        ({"paths": {"/things/": {}, "/things/{pk}/": {"get": {}}}}, "/things/", "/things/{id}/"),
        (
            {"servers": [{"url": "https://x.test/api"}], "paths": {"/things/{id}": {}}},
            "/api/things/",
            "/api/things/{id}",
        ),
        ({"basePath": "/v2", "paths": {"/things/{id}": {}}}, "/v2/things", "/v2/things/{id}"),
        ({"paths": {"/thingsx/{id}": {}, "/things/{a}/{b}": {}}}, "/things/", None),
        ({"paths": []}, "/things/", None),
    ],
)
def test_the_schemas_item_path_for_a_collection(
    schema: dict[str, Any], endpoint: str, item: str | None
) -> None:
    assert item_path_in_schema(schema, endpoint) == item


def test_payload_functions_get_prerequisite_outputs_by_field_or_resource() -> None:
    api = Api()
    owner = CrudFlow("owner", endpoint="/things", create={"name": "Ann"})
    seen: dict[str, Any] = {}

    def payload(owner: dict[str, Any], owner_id: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        seen.update(owner=owner, owner_id=owner_id, step=ctx.step)
        return {"name": f"pet of {owner['name']}"}

    flow = CrudFlow("pet", endpoint="/things", create=payload, requires={"owner_id": owner}, steps=["create"])
    assert flow.run(api.client()).ok
    assert seen["owner"]["name"] == "Ann" and seen["owner_id"] is seen["owner"]
    assert seen["step"] == "create"
    assert api.sent[-1] == {"name": "pet of Ann", "owner_id": 1}


def test_one_parameter_functions_still_get_the_context() -> None:
    api = Api()
    flow = CrudFlow("thing", endpoint="/things", create=lambda c: {"name": c.step}, steps=["create"])
    assert flow.run(api.client()).ok
    assert api.sent == [{"name": "create"}]


def test_a_parameter_naming_nothing_is_a_definition_error() -> None:
    with pytest.raises(FlowDefinitionError, match=r"\['ownr'\] name nothing known \(available: ctx, owner\)"):
        CrudFlow("pet", endpoint="/things", create=lambda ctx, ownr: {}, requires={"owner": lambda ctx: 1})


def test_a_list_of_prerequisites_fills_a_list_of_ids() -> None:
    api = Api()
    tag = CrudFlow("tag", endpoint="/things", create={"name": "t"})
    flow = CrudFlow(
        "post",
        endpoint="/things",
        create={"name": "p"},
        requires={"tags": [tag, lambda ctx: 42]},
        steps=["create"],
    )
    result = flow.run(api.client())
    assert result.ok, result.report()
    assert [s.name for s in result.steps] == ["tag.create", "tags.1.create", "create"]
    assert api.sent[-1] == {"name": "p", "tags": [1, 42]}


def test_function_prerequisites_may_depend_on_each_other() -> None:
    """noCRUD's universe -> production chain without duplicating the universe step by hand."""
    api = Api()
    made: list[str] = []

    def universe(ctx: StepContext) -> dict[str, Any]:
        made.append("universe")
        return {"id": 7, "name": "Dune"}

    def production(ctx: StepContext, universe: dict[str, Any]) -> dict[str, Any]:
        made.append(f"production in {universe['name']}")
        return {"id": 9}

    flow = CrudFlow(
        "character",
        endpoint="/things",
        create={"name": "Paul"},
        requires={"production": production, "_universe": universe},  # declared out of order
        steps=["create"],
    )
    result = flow.run(api.client())
    assert result.ok, result.report()
    assert made == ["universe", "production in Dune"]
    assert result["production.create"].ok
    assert api.sent == [{"name": "Paul", "production": 9}]  # "_universe" is not sent
