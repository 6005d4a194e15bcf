"""Unit tests of CrudFlow's client-side logic: finding item URLs, binding payload and prerequisite
functions, many-to-many requires. The "server" is an httpx.MockTransport holding dicts in memory --
enough to decide which URL the flow requests and what it sends; the real-app versions of these
behaviours run in examples/fastapi."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from pytest_nocrud import CrudFlow, FlowDefinitionError, StepContext


class Api:
    """One collection at ``endpoint``; items live at ``item`` (``{id}`` filled in).

    ``link`` says how create tells the client where the item is: "location", "url", "self", "hal" or
    None. A request for ``item`` plus or minus a trailing slash is answered 307 to the real one, like
    FastAPI/Starlette does.
    """

    def __init__(self, endpoint: str = "/things", item: str = "/things/{id}", link: str | None = None):
        self.endpoint, self.item, self.link = endpoint, item, link
        self.rows: dict[int, dict[str, Any]] = {}
        self.sent: list[dict[str, Any]] = []
        self.requests: list[str] = []

    def client(self) -> httpx.Client:
        return httpx.Client(base_url="http://app.test", transport=httpx.MockTransport(self.handle))

    def handle(self, request: httpx.Request) -> httpx.Response:
        path, method = request.url.path, request.method
        self.requests.append(f"{method} {path}")
        if path == self.endpoint and method == "POST":
            body = json.loads(request.content)
            self.sent.append(body)
            row = {"id": len(self.rows) + 1, **body}
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
            other = re.match(pattern, path[:-1] if path.endswith("/") else path + "/")
            if other is not None:
                return httpx.Response(307, headers={"Location": f"http://app.test{other.group(0)}"})
            return httpx.Response(404)
        obj_id = int(match.group(1))
        if obj_id not in self.rows:
            return httpx.Response(404)
        if method == "GET":
            return httpx.Response(200, json=self.rows[obj_id])
        if method == "PATCH":
            self.rows[obj_id].update(json.loads(request.content))
            return httpx.Response(200, json=self.rows[obj_id])
        if method == "DELETE":
            del self.rows[obj_id]
            return httpx.Response(204)
        return httpx.Response(405)


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


def test_a_redirected_item_url_fails_with_the_detail_path_to_set() -> None:
    api = Api(endpoint="/things/", item="/things/{id}")  # FastAPI router style
    result = _crud(api).run(api.client())
    assert not result.ok
    assert result["read"].status.value == "failed"
    message = str(result["read"].error)
    assert "GET /things/1/ -> 307 redirect to http://app.test/things/1" in message
    assert "detail_path='/things/{id}'" in message
    fixed = _crud(api, detail_path="/things/{id}").run(api.client())
    assert fixed.ok, fixed.report()


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
