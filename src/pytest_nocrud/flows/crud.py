"""Declarative REST CRUD flows: one declaration per resource instead of six hand-written requests.

``CrudFlow("actor", endpoint="/api/actors/", create={...}, update={...})`` yields a :class:`Flow` with
the steps every REST resource should pass, each checking what a client relies on:

* ``create`` -- POST the payload: 201, the body echoes the input (minus read-/write-only fields), has an id
* ``read``   -- GET the item URL: 200, equal to what create returned
* ``list``   -- GET the collection (plain list or paginated ``{"results": [...], "next": ...}``): contains it
* ``update`` -- PATCH (or PUT) the changes: 200, echoed, and still there on a fresh GET
* ``delete`` -- DELETE: 2xx
* ``gone``   -- GET the detail URL again: 404

The item URL is found from what the app tells, never from another origin: ``detail_path`` when set
(it wins); else the create response's ``Location`` header or ``url``/``self`` field (same origin only,
not the collection itself); else the form this flow learned from an earlier redirect; else the app's
OpenAPI schema (``nocrud_openapi_path``, else ``/openapi.json``, read once per flow and app:
``/authors/`` -> ``/authors/{author_id}``); else ``endpoint + id``, slashed like the endpoint. A
redirect on the item (or collection) URL that only adds or drops the trailing slash on the same
origin is resolved with a GET and adopted for the rest of the flow and later items; writes are never
sent through a redirect. A guessed URL answering 404 gets one GET of its other slash form (Flask's
strict slashes). Anything else -- a redirect to another host, port or scheme included, which is never
followed -- fails the step with the ``detail_path`` to set.

Prerequisites (``requires``) are created by their own steps (``tag_category.create``) in the same flow,
and the created id is put into the payload field that references them (a list of prerequisites fills a
list of ids: many-to-many). Payload functions and prerequisite functions receive what they name:
``ctx`` (the step context) and prerequisites by field or resource name (their create outputs), so
prerequisites may depend on each other. Writes carry Django's CSRF header whenever the client holds a
``csrftoken`` cookie.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, TypeAlias, TypeVar, overload

import httpx

from pytest_nocrud.flows.auth import csrf_headers
from pytest_nocrud.flows.locate import (
    fetch_schema,
    item_path_in_schema,
    off_origin,
    only_slash_differs,
    origin_of,
    same_origin_path,
    schema_path,
    slash_variant,
    template_of,
)
from pytest_nocrud.flows.steps import (
    DependsOn,
    Flow,
    FlowDefinitionError,
    FlowResult,
    Login,
    StepContext,
    expect_status,
)
from pytest_nocrud.flows.timeline import mark_expected

__all__ = ["CRUD_STEPS", "Created", "CrudFlow"]

CRUD_STEPS = ("create", "read", "list", "update", "delete", "gone")
Payload = Mapping[str, Any] | Callable[..., Mapping[str, Any]]
Prerequisite: TypeAlias = "CrudFlow | Callable[..., Any]"
Requires: TypeAlias = "Sequence[CrudFlow] | Mapping[str, Prerequisite | Sequence[Prerequisite]]"
Check = Callable[[StepContext, Any], None]
F = TypeVar("F", bound=Callable[[StepContext], Any])
T = TypeVar("T")
_MISSING = object()
_MAX_PAGES = 100
_REDIRECTS = (301, 302, 303, 307, 308)
CTX = "ctx"
_FOUND = {  # how an item URL was found, as the hints say it
    "link": "from the create response's Location header or its url field",
    "learned": "the form the app redirected to earlier",
    "guess": "guessed: endpoint + id",
}


class Created(dict[str, Any]):
    """The object the create step got back (a plain dict to callers), remembering the payload ``sent``.

    PUT needs the full original payload; keeping it here means a random/generated payload is not
    regenerated differently.
    """

    sent: dict[str, Any]
    url: str  # where read/update/delete/gone find the item
    found: str  # how: "detail_path", "link", "learned", "schema" or "guess"
    verified: bool  # the app answered 2xx there


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def _same(sent: Any, got: Any) -> bool:
    """Equal, or the same number written differently (DRF renders decimals as strings: 10 vs "10.00")."""
    if sent == got:
        return True
    if isinstance(sent, (int, float)) or isinstance(got, (int, float)):
        a, b = _number(sent), _number(got)
        return a is not None and b is not None and a == b
    return False


def _mismatches(sent: Mapping[str, Any], got: Mapping[str, Any], skip: set[str]) -> list[str]:
    lines = []
    for key, value in sent.items():
        if key in skip:
            continue
        if key not in got:
            lines.append(f"  {key}: sent {value!r}, missing from the response")
        elif not _same(value, got[key]):
            lines.append(f"  {key}: sent {value!r}, got {got[key]!r}")
    return lines


def _json_object(response: httpx.Response) -> dict[str, Any]:
    __tracebackhide__ = True
    try:
        body = response.json()
    except ValueError:
        raise AssertionError(
            f"expected a JSON object: {response.request.method} {response.request.url.path}"
        ) from None
    if not isinstance(body, dict):
        raise AssertionError(f"expected a JSON object, got {type(body).__name__}: {body!r:.300}")
    return body


def _id_of(output: Any, id_field: str) -> Any:
    """The id a prerequisite step produced: ``output[id_field]`` for objects, else the output itself."""
    if isinstance(output, Mapping):
        if id_field not in output:
            raise AssertionError(f"prerequisite output has no {id_field!r} field: {dict(output)!r:.300}")
        return output[id_field]
    return output


@dataclasses.dataclass(frozen=True)
class _Prereq:
    """One step that creates something a payload refers to."""

    step: str
    id_field: str
    crud: CrudFlow | None
    make: Callable[..., Any] | None


@dataclasses.dataclass(frozen=True)
class _Requirement:
    """A payload field filled from prerequisites: one id, or a list of ids (``many``)."""

    field: str
    prereqs: tuple[_Prereq, ...]
    many: bool

    @property
    def steps(self) -> list[str]:
        return [p.step for p in self.prereqs]

    def value(self, ctx: StepContext) -> Any:
        ids = [_id_of(ctx[p.step], p.id_field) for p in self.prereqs]
        return ids if self.many else ids[0]

    def output(self, ctx: StepContext) -> Any:
        outputs = [ctx[p.step] for p in self.prereqs]
        return outputs if self.many else outputs[0]


def bind(
    fn: Callable[..., Any], available: Mapping[str, Callable[[StepContext], Any]], what: str
) -> tuple[Callable[[StepContext], Any], list[str]]:
    """Call ``fn`` with what its parameters name: ``ctx`` or an ``available`` name (a prerequisite).

    Returns the bound call and the names it uses. A one-parameter function whose parameter names
    nothing available gets the context (``lambda c: ...`` keeps working); other unknown parameters
    without a default are a definition error that lists what is available.
    """
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # builtins and C callables: the classic fn(ctx)
        return fn, []
    plain = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    wanted = [p for p in params if p.kind in plain]
    unknown = [p.name for p in wanted if p.name != CTX and p.name not in available and p.default is p.empty]
    if unknown:
        if len(params) == 1:
            return fn, []
        names = ", ".join([CTX, *available]) or CTX
        raise FlowDefinitionError(f"{what}: parameter(s) {unknown} name nothing known (available: {names})")
    used = [p.name for p in wanted if p.name == CTX or p.name in available]

    def call(ctx: StepContext) -> Any:
        __tracebackhide__ = True
        return fn(**{name: ctx if name == CTX else available[name](ctx) for name in used})

    return call, [name for name in used if name != CTX]


def _self_link(body: Mapping[str, Any], sent: Mapping[str, Any]) -> str | None:
    """The item's own link in its body: ``url``, ``self`` or HAL ``_links.self.href`` (not echoed input)."""
    for field in ("url", "self"):
        value = body.get(field)
        if isinstance(value, str) and value and field not in sent:
            return value
    links = body.get("_links")
    if isinstance(links, Mapping):
        own = links.get("self")
        href = own.get("href") if isinstance(own, Mapping) else None
        if isinstance(href, str) and href:
            return href
    return None


@dataclasses.dataclass(frozen=True)
class _Extra:
    name: str
    fn: Callable[[StepContext], Any]
    depends_on: DependsOn
    max_attempts: int
    base_delay: float
    timeout: float | None


class CrudFlow:
    """One REST resource's CRUD cycle as a flow.

    ``create``/``update`` are dicts or functions of the step context (use the latter for unique values).
    ``requires`` maps payload field -> prerequisite (another ``CrudFlow``, or a function that creates
    something and returns it or its id), or -> a list of them (the field gets a list of ids); a plain
    list uses each CrudFlow's resource name as the field; a field named ``_x`` is created but not sent.
    Functions (``create``, ``update``, prerequisites) get what their parameters name: ``ctx`` and other
    prerequisites' outputs by field or resource name. ``detail_path`` (``"/authors/{id}"``) overrides
    the item URL CrudFlow finds itself (see the module docs). ``read_only_fields`` (server-set) and
    ``write_only_fields`` (e.g. passwords) are not expected back. ``checks`` adds
    ``check(ctx, step_output)`` calls after a step's own checks.
    ``steps`` picks which of ``CRUD_STEPS`` to run (``gone`` needs ``delete``; ``update`` needs
    ``update=``). Extra steps added with :meth:`step` run before ``delete`` when their dependencies allow.
    """

    def __init__(
        self,
        resource: str,
        *,
        endpoint: str,
        create: Payload,
        update: Payload | None = None,
        id_field: str = "id",
        requires: Requires = (),
        method: str = "PATCH",
        read_only_fields: Sequence[str] = (),
        write_only_fields: Sequence[str] = (),
        checks: Mapping[str, Check] | None = None,
        as_user: Login | None = None,
        detail_path: str | None = None,
        steps: Sequence[str] = CRUD_STEPS,
        name: str | None = None,
        max_attempts: int = 1,
        base_delay: float = 0.5,
        timeout: float | None = None,
    ) -> None:
        self.resource = resource
        self.endpoint = endpoint
        self.create = create
        self.update = update
        self.id_field = id_field
        self.method = method.upper()
        if self.method not in ("PATCH", "PUT"):
            raise FlowDefinitionError(f"CrudFlow {resource!r}: method must be PATCH or PUT, got {method!r}")
        self.read_only_fields = frozenset(read_only_fields)
        self.write_only_fields = frozenset(write_only_fields)
        self.checks = dict(checks or {})
        self.as_user = as_user
        self.detail_path = detail_path
        self.name = name or f"{resource}_crud"
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.timeout = timeout
        unknown = [s for s in steps if s not in CRUD_STEPS]
        if unknown:
            raise FlowDefinitionError(
                f"CrudFlow {resource!r}: unknown steps {unknown}; choose from {CRUD_STEPS}"
            )
        chosen = [s for s in CRUD_STEPS if s in steps and (s != "update" or update is not None)]
        if "create" not in chosen:
            raise FlowDefinitionError(f"CrudFlow {resource!r}: every CRUD flow starts with 'create'")
        if "gone" in chosen and "delete" not in chosen:
            chosen.remove("gone")
        self.crud_steps = tuple(chosen)
        if isinstance(requires, Mapping):
            items = list(requires.items())
        else:
            items = [(r.resource, r) for r in requires]
        self.requires = self._requirements(items)
        self._create = self._payload_fn(create, "create")
        self._update = self._payload_fn(update, "update") if update is not None else None
        bad_checks = [s for s in self.checks if s not in self.crud_steps]
        if bad_checks:
            raise FlowDefinitionError(
                f"CrudFlow {resource!r}: checks for steps it does not run: {bad_checks} "
                f"(runs {self.crud_steps})"
            )
        self._extra: list[_Extra] = []
        self._flow: Flow | None = None
        # What this flow learned of each app (by origin), so later items need no second look:
        self._endpoints: dict[str, str] = {}  # the collection's slash form the app redirected to
        self._learned: dict[str, str] = {}  # the item template the app redirected to ("/a/{id}")
        self._schema_items: dict[str, str | None] = {}  # the schema's item template; None: none

    def __repr__(self) -> str:
        return f"<CrudFlow {self.resource!r} {self.endpoint}>"

    def _requirements(
        self, items: Sequence[tuple[str, Prerequisite | Sequence[Prerequisite]]]
    ) -> list[_Requirement]:
        """Payload fields and the prerequisite steps that fill them; functions see their siblings."""
        out: list[_Requirement] = []
        for field, spec in items:
            many = not isinstance(spec, CrudFlow) and not callable(spec)
            reqs: Sequence[Prerequisite] = list(spec) if many else [spec]  # type: ignore[list-item,arg-type]
            if many and not reqs:
                raise FlowDefinitionError(f"CrudFlow {self.resource!r}: requires[{field!r}] is an empty list")
            prereqs = []
            for i, req in enumerate(reqs):
                if isinstance(req, CrudFlow):
                    prereqs.append(_Prereq(f"{req.resource}.create", req.id_field, req, None))
                elif callable(req):
                    step = f"{field}.{i}.create" if many else f"{field}.create"
                    prereqs.append(_Prereq(step, "id", None, req))
                else:
                    raise FlowDefinitionError(
                        f"CrudFlow {self.resource!r}: requires[{field!r}] must be a CrudFlow, a function "
                        f"or a list of them, got {req!r}"
                    )
            out.append(_Requirement(field, tuple(prereqs), many))
        return out

    def _available(self) -> dict[str, Callable[[StepContext], Any]]:
        """Names payload/prerequisite functions may ask for: each requirement's field and resource."""
        names: dict[str, Callable[[StepContext], Any]] = {}
        for req in self.requires:
            names[req.field] = req.output
            names.setdefault(req.field.lstrip("_"), req.output)
            for prereq in req.prereqs:
                if prereq.crud is not None and not req.many:
                    names.setdefault(prereq.crud.resource, req.output)
        return names

    def _payload_fn(self, payload: Payload, what: str) -> Callable[[StepContext], Mapping[str, Any]]:
        if not callable(payload):
            fixed = payload
            return lambda ctx: fixed
        call, _ = bind(payload, self._available(), f"CrudFlow {self.resource!r} {what}=")
        return call

    def _prereq_fn(self, prereq: _Prereq) -> tuple[Callable[[StepContext], Any], list[str]]:
        """A function prerequisite bound to its siblings, and the steps it therefore depends on."""
        assert prereq.make is not None
        available = {k: v for k, v in self._available().items() if not self._is_own(k, prereq)}
        call, used = bind(prereq.make, available, f"CrudFlow {self.resource!r} prerequisite {prereq.step!r}")
        steps = [
            s
            for req in self.requires
            if req.field in used or req.field.lstrip("_") in used or self._names_crud(req, used)
            for s in req.steps
        ]
        return call, steps

    @staticmethod
    def _is_own(name: str, prereq: _Prereq) -> bool:
        own = prereq.step.split(".", 1)[0]
        return name in (own, own.lstrip("_"))

    @staticmethod
    def _names_crud(req: _Requirement, used: Sequence[str]) -> bool:
        return any(p.crud is not None and p.crud.resource in used for p in req.prereqs)

    # -- URLs and payloads -----------------------------------------------------------------------

    def detail_url(self, obj_id: Any, endpoint: str | None = None) -> str:
        """``detail_path.format(id=...)`` if given, else endpoint + id: ``/tags/7/`` for a ``/tags/``
        endpoint (DRF router style), ``/tags/7`` for ``/tags``."""
        if self.detail_path is not None:
            return self.detail_path.format(id=obj_id)
        endpoint = self.endpoint if endpoint is None else endpoint
        if endpoint.endswith("/"):
            return f"{endpoint}{obj_id}/"
        return f"{endpoint}/{obj_id}"

    def item_url(self, response: httpx.Response, body: Mapping[str, Any], sent: Mapping[str, Any]) -> str:
        """Where the created item lives: detail_path, Location header, self link, what this flow learned
        of the app (a redirect, its schema), else endpoint + id."""
        return self._locate(response, body, sent)[0]

    def _locate(
        self, response: httpx.Response, body: Mapping[str, Any], sent: Mapping[str, Any]
    ) -> tuple[str, str]:
        """``(url, how it was found)``; see :data:`_FOUND` for the ways."""
        obj_id = body[self.id_field]
        if self.detail_path is not None:
            return self.detail_url(obj_id), "detail_path"
        requested = response.request.url.raw_path.decode("ascii").partition("?")[0].rstrip("/")
        for link in (response.headers.get("location"), _self_link(body, sent)):
            if link:
                path = same_origin_path(response, link)
                if path is not None and path.partition("?")[0].rstrip("/") != requested:  # not the list
                    return path, "link"
        origin = origin_of(response.request.url)
        for how, known in (("learned", self._learned), ("schema", self._schema_items)):
            template = known.get(origin)
            if template is not None:
                return template.format(id=obj_id), how
        return self.detail_url(obj_id, self._endpoints.get(origin)), "guess"

    def _endpoint(self, client: httpx.Client) -> str:
        """The collection URL: as declared, or its slash form the app redirected to earlier."""
        return self._endpoints.get(origin_of(client.base_url), self.endpoint)

    def _item_in_schema(self, client: httpx.Client, obj_id: Any) -> str | None:
        """The item URL from the app's OpenAPI schema; the schema is read once per flow and app."""
        origin = origin_of(client.base_url)
        if origin not in self._schema_items:
            path, _ = schema_path()
            schema = fetch_schema(client, path)
            found = item_path_in_schema(schema, self._endpoint(client)) if schema is not None else None
            self._schema_items[origin] = found
        template = self._schema_items[origin]
        return None if template is None else template.format(id=obj_id)

    def payload(self, ctx: StepContext) -> dict[str, Any]:
        """The create payload with every prerequisite's id (or list of ids) filled into its field."""
        body = dict(self._create(ctx))
        for req in self.requires:
            if not req.field.startswith("_"):  # "_name": a prerequisite of prerequisites only
                body[req.field] = req.value(ctx)
        return body

    @property
    def _unchecked(self) -> set[str]:
        return set(self.read_only_fields | self.write_only_fields)

    # -- step bodies -----------------------------------------------------------------------------

    def _check(self, step: str, ctx: StepContext, output: T) -> T:
        check = self.checks.get(step)
        if check is not None:
            check(ctx, output)
        return output

    def _do_create(self, ctx: StepContext, *, find_item: bool = True) -> Created:
        __tracebackhide__ = True
        sent = self.payload(ctx)
        endpoint, response = self._collection(ctx, "POST", json=sent, headers=csrf_headers(ctx.client))
        expect_status(response, 201)
        body = _json_object(response)
        if self.id_field not in body:
            raise AssertionError(f"POST {endpoint}: response has no {self.id_field!r} field: {body!r:.300}")
        wrong = _mismatches(sent, body, self._unchecked)
        if wrong:
            raise AssertionError(f"POST {endpoint}: response does not echo the input:\n" + "\n".join(wrong))
        created = Created(body)
        created.sent = sent
        created.url, created.found = self._locate(response, body, sent)
        if created.found == "guess" and find_item:  # a prerequisite's item URL is never used
            from_schema = self._item_in_schema(ctx.client, body[self.id_field])
            if from_schema is not None:
                created.url, created.found = from_schema, "schema"
        created.verified = False
        return created

    def _create_prerequisite(self, ctx: StepContext) -> Created:
        __tracebackhide__ = True
        return self._do_create(ctx, find_item=False)

    def _collection(self, ctx: StepContext, method: str, **kwargs: Any) -> tuple[str, httpx.Response]:
        """A request to the collection; a redirect that only adds or drops the trailing slash is
        adopted (re-sent there, and used from now on) when the method survives it (307/308, or GET)."""
        __tracebackhide__ = True
        endpoint = self._endpoint(ctx.client)
        response: httpx.Response = ctx.client.request(method, endpoint, **kwargs)
        if response.status_code not in _REDIRECTS:
            return endpoint, response
        location = response.headers.get("location", "")
        where = f"{method} {endpoint} -> {response.status_code} redirect to {location or '?'}"
        elsewhere = off_origin(response)
        if elsewhere is not None:
            raise AssertionError(self._off_origin_message(where, response))
        target = same_origin_path(response, location) if location else None
        requested = response.request.url.raw_path.decode("ascii")
        if target is None or not only_slash_differs(requested, target):
            raise AssertionError(
                f"{where}: the collection is not at endpoint={self.endpoint!r}.\n"
                f"  Tell CrudFlow {self.resource!r} where it is: endpoint=..."
            )
        adopted = slash_variant(endpoint)
        if method != "GET" and response.status_code not in (307, 308):
            raise AssertionError(
                f"{where}: clients turn a {method} redirected by {response.status_code} into a GET, so "
                f"CrudFlow does not re-send it.\n  Tell CrudFlow {self.resource!r}: endpoint={adopted!r}"
            )
        mark_expected(response)
        retry: httpx.Response = ctx.client.request(method, adopted, **kwargs)
        if retry.status_code in _REDIRECTS:
            raise AssertionError(
                f"{where}, and {method} {adopted} -> {retry.status_code} redirect too: the collection "
                f"is not at endpoint={self.endpoint!r}.\n"
                f"  Tell CrudFlow {self.resource!r} where it is: endpoint=..."
            )
        self._endpoints[origin_of(ctx.client.base_url)] = adopted
        return adopted, retry

    def _url(self, ctx: StepContext) -> str:
        created = ctx["create"]
        url = getattr(created, "url", None)
        return url if isinstance(url, str) else self.detail_url(created[self.id_field])

    def _item(self, ctx: StepContext, method: str, *, gone: bool = False, **kwargs: Any) -> httpx.Response:
        """A request to the created item's URL, which the app may correct -- on its own origin only.

        A redirect that only adds or drops the trailing slash is resolved with a GET and adopted (for
        the rest of this flow and this flow's later items), then the request is sent there; writes are
        never sent through a redirect (301/302 turn them into GETs). A guessed URL that answers 404
        gets one GET of its other slash form. Anything else fails with the ``detail_path`` to set.
        """
        __tracebackhide__ = True
        created = ctx["create"]
        url = self._url(ctx)
        found = getattr(created, "found", "guess")
        response: httpx.Response = ctx.client.request(method, url, **kwargs)
        if response.status_code in _REDIRECTS:
            self._adoptable(response, url, found)
            variant = slash_variant(url)
            probe: httpx.Response = ctx.client.get(variant)
            if probe.status_code in _REDIRECTS:
                raise AssertionError(self._redirect_hint(probe, variant, "adopted from a redirect"))
            mark_expected(response)
            self._adopt(ctx, created, variant)
            response = probe if method == "GET" else ctx.client.request(method, variant, **kwargs)
            if response.status_code in _REDIRECTS:
                raise AssertionError(self._redirect_hint(response, variant, "adopted from a redirect"))
        elif response.status_code == 404 and not gone and found == "guess" and not self._verified(created):
            variant = slash_variant(url)
            probe = ctx.client.get(variant)
            if not 200 <= probe.status_code < 300:
                raise AssertionError(self._not_found_hint(response, probe, url, variant))
            mark_expected(response)
            self._adopt(ctx, created, variant)
            response = probe if method == "GET" else ctx.client.request(method, variant, **kwargs)
        if 200 <= response.status_code < 300 and isinstance(created, Created):
            created.verified = True
        return response

    @staticmethod
    def _verified(created: Any) -> bool:
        return bool(getattr(created, "verified", False))

    def _adoptable(self, response: httpx.Response, url: str, found: str) -> None:
        """Raise the reason a redirect of item ``url`` is not one to adopt; return if it is."""
        __tracebackhide__ = True
        location = response.headers.get("location", "")
        if off_origin(response) is not None:
            where = f"{response.request.method} {url} -> {response.status_code} redirect to {location}"
            raise AssertionError(self._off_origin_message(where, response))
        target = same_origin_path(response, location) if location else None
        requested = response.request.url.raw_path.decode("ascii")
        if found == "detail_path" or target is None or not only_slash_differs(requested, target):
            raise AssertionError(self._redirect_hint(response, url, self._how(found)))

    def _adopt(self, ctx: StepContext, created: Any, url: str) -> None:
        """Use ``url`` for this item from now on, and its shape for this flow's later items."""
        if isinstance(created, Created):
            created.url, created.found = url, "learned"
        template = template_of(url, created[self.id_field])
        if template is not None:
            self._learned[origin_of(ctx.client.base_url)] = template

    def _how(self, found: str) -> str:
        if found == "detail_path":
            return f"detail_path={self.detail_path!r}"
        if found == "schema":
            return f"from the app's schema at {schema_path()[0]}"
        return _FOUND.get(found, _FOUND["guess"])

    def _off_origin_message(self, where: str, response: httpx.Response) -> str:
        return (
            f"{where}: that is another origin than the app's ({origin_of(response.request.url)}); CrudFlow "
            f"never follows a redirect to another scheme, host or port.\n"
            f"  Tell CrudFlow {self.resource!r} where items live on the app: detail_path='/<items>/{{id}}'"
        )

    def _redirect_hint(self, response: httpx.Response, url: str, how: str) -> str:
        target = response.headers.get("location", "")
        path = same_origin_path(response, target) if target else None
        obj_id = str(response.request.url.path).rstrip("/").rsplit("/", 1)[-1]
        suggestion = path or "/<items>/{id}"
        if path and obj_id:
            head, sep, tail = path.rpartition(obj_id)
            suggestion = f"{head}{{id}}{tail}" if sep else path
        return (
            f"{response.request.method} {url} -> {response.status_code} redirect to {target or '?'}: "
            f"the item URL ({how}) is not where the app serves the item.\n"
            f"  Tell CrudFlow {self.resource!r} where items live: detail_path={suggestion!r}"
        )

    def _not_found_hint(self, response: httpx.Response, probe: httpx.Response, url: str, variant: str) -> str:
        return (
            f"{response.request.method} {url} -> 404, and GET {variant} -> {probe.status_code}: the item "
            f"URL ({self._how('guess')}) is not where the app serves the item"
            f" (the app's schema, if it serves one, has no item path for {self.endpoint!r}).\n"
            f"  Tell CrudFlow {self.resource!r} where items live: detail_path='/<items>/{{id}}'"
        )

    def _step_create(self, ctx: StepContext) -> Created:
        __tracebackhide__ = True
        return self._check("create", ctx, self._do_create(ctx))

    def _step_read(self, ctx: StepContext) -> dict[str, Any]:
        __tracebackhide__ = True
        created = dict(ctx["create"])
        response = self._item(ctx, "GET")
        url = self._url(ctx)
        body = _json_object(expect_status(response, 200))
        if body != created:
            keys = sorted(set(body) | set(created))
            diff = [
                f"  {k}: created {created.get(k, '<missing>')!r}, read {body.get(k, '<missing>')!r}"
                for k in keys
                if created.get(k, _MISSING) != body.get(k, _MISSING)
            ]
            raise AssertionError(f"GET {url} differs from what create returned:\n" + "\n".join(diff))
        return self._check("read", ctx, body)

    def _step_list(self, ctx: StepContext) -> list[Any]:
        __tracebackhide__ = True
        obj_id = self._created_id(ctx)
        items: list[Any] = []
        endpoint, response = self._collection(ctx, "GET")
        url: str | None = endpoint
        pages = 0
        while url is not None and pages < _MAX_PAGES:
            if pages:
                response = ctx.client.get(url)
            body = expect_status(response, 200).json()
            pages += 1
            if isinstance(body, list):
                items.extend(body)
                url = None
            elif isinstance(body, dict) and isinstance(body.get("results"), list):
                items.extend(body["results"])
                nxt = body.get("next")
                url = nxt if isinstance(nxt, str) and nxt else None
            else:
                raise AssertionError(
                    f"GET {endpoint}: expected a list or {{'results': [...]}}, got {body!r:.300}"
                )
        if not any(isinstance(i, dict) and i.get(self.id_field) == obj_id for i in items):
            ids = [i.get(self.id_field) for i in items if isinstance(i, dict)][:20]
            raise AssertionError(
                f"GET {endpoint}: created {self.id_field}={obj_id!r} not among {len(items)} listed "
                f"item(s) over {pages} page(s); first ids: {ids}"
            )
        return self._check("list", ctx, items)

    def _created_id(self, ctx: StepContext) -> Any:
        return ctx["create"][self.id_field]

    def _step_update(self, ctx: StepContext) -> dict[str, Any]:
        __tracebackhide__ = True
        assert self.update is not None
        created = ctx["create"]
        assert self._update is not None
        changes = dict(self._update(ctx))
        sent = {**getattr(created, "sent", {}), **changes} if self.method == "PUT" else changes
        response = self._item(ctx, self.method, json=sent, headers=csrf_headers(ctx.client))
        url = self._url(ctx)
        body = _json_object(expect_status(response, 200))
        wrong = _mismatches(changes, body, self._unchecked)
        if wrong:
            raise AssertionError(
                f"{self.method} {url}: response does not echo the change:\n" + "\n".join(wrong)
            )
        fresh = _json_object(expect_status(self._item(ctx, "GET"), 200))
        wrong = _mismatches(changes, fresh, self._unchecked)
        if wrong:
            raise AssertionError(
                f"{self.method} {url} answered 200 but a fresh GET shows:\n" + "\n".join(wrong)
            )
        return self._check("update", ctx, fresh)

    def _step_delete(self, ctx: StepContext) -> int:
        __tracebackhide__ = True
        response = self._item(ctx, "DELETE", headers=csrf_headers(ctx.client))
        expect_status(response, 200, 202, 204)
        return self._check("delete", ctx, int(response.status_code))

    def _step_gone(self, ctx: StepContext) -> int:
        __tracebackhide__ = True
        expect_status(self._item(ctx, "GET", gone=True), 404)
        return self._check("gone", ctx, 404)

    # -- flow ------------------------------------------------------------------------------------

    def _add_prerequisites(self, flow: Flow, seen: set[str]) -> None:
        for req in self.requires:
            for prereq in req.prereqs:
                if prereq.step in seen:
                    continue
                seen.add(prereq.step)
                if prereq.crud is not None:
                    crud = prereq.crud
                    crud._add_prerequisites(flow, seen)
                    fn: Callable[[StepContext], Any] = crud._create_prerequisite
                    depends_on = [s for r in crud.requires for s in r.steps]
                else:
                    fn, depends_on = self._prereq_fn(prereq)
                flow.add_step(
                    prereq.step,
                    fn,
                    depends_on=depends_on,
                    max_attempts=self.max_attempts,
                    base_delay=self.base_delay,
                    timeout=self.timeout,
                )

    @property
    def flow(self) -> Flow:
        """The generated :class:`Flow` (rebuilt when steps are added)."""
        if self._flow is not None:
            return self._flow
        flow = Flow(
            self.name, as_user=self.as_user, description=f"CRUD of {self.resource!r} at {self.endpoint}"
        )
        self._add_prerequisites(flow, set())
        bodies: dict[str, Callable[[StepContext], Any]] = {
            "create": self._step_create,
            "read": self._step_read,
            "list": self._step_list,
            "update": self._step_update,
            "delete": self._step_delete,
            "gone": self._step_gone,
        }
        deps: dict[str, list[str]] = {
            "create": [s for r in self.requires for s in r.steps],
            "gone": ["create", "delete"],
        }
        for name in self.crud_steps:
            if name == "delete":  # extra steps go before delete: they usually need the object to exist
                self._add_extra(flow)
            flow.add_step(
                name,
                bodies[name],
                depends_on=deps.get(name, ["create"]),
                max_attempts=self.max_attempts,
                base_delay=self.base_delay,
                timeout=self.timeout,
            )
        if "delete" not in self.crud_steps:
            self._add_extra(flow)
        flow.order()
        self._flow = flow
        return flow

    def _add_extra(self, flow: Flow) -> None:
        for extra in self._extra:
            flow.add_step(
                extra.name,
                extra.fn,
                depends_on=extra.depends_on,
                max_attempts=extra.max_attempts,
                base_delay=extra.base_delay,
                timeout=extra.timeout,
            )

    @overload
    def step(self, fn: F) -> F: ...

    @overload
    def step(
        self,
        *,
        name: str | None = None,
        depends_on: DependsOn = ("create",),
        max_attempts: int | None = None,
        base_delay: float | None = None,
        timeout: float | None = None,
    ) -> Callable[[F], F]: ...

    def step(
        self,
        fn: F | None = None,
        *,
        name: str | None = None,
        depends_on: DependsOn = ("create",),
        max_attempts: int | None = None,
        base_delay: float | None = None,
        timeout: float | None = None,
    ) -> F | Callable[[F], F]:
        """Add a custom step (default: depends on ``create``); same options as :meth:`Flow.step`."""

        def register(f: F) -> F:
            self._extra.append(
                _Extra(
                    name or f.__name__,
                    f,
                    depends_on,
                    self.max_attempts if max_attempts is None else max_attempts,
                    self.base_delay if base_delay is None else base_delay,
                    self.timeout if timeout is None else timeout,
                )
            )
            self._flow = None
            return f

        return register(fn) if fn is not None else register

    def run(self, client: httpx.Client, **kwargs: Any) -> FlowResult:
        """``Flow.run`` of the generated flow (same keyword arguments)."""
        return self.flow.run(client, **kwargs)

    def as_test(
        self, *, fixtures: Sequence[str] = (), client_fixture: str = "nocrud_client"
    ) -> Callable[..., None]:
        """``test_actor_crud = CrudFlow(...).as_test()``; see :meth:`Flow.as_test`."""
        caller = sys._getframe(1).f_globals.get("__name__")
        module = caller if isinstance(caller, str) else None
        return self.flow.as_test(fixtures=fixtures, client_fixture=client_fixture, module=module)
