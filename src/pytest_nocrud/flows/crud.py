"""Declarative REST CRUD flows: one declaration per resource instead of six hand-written requests.

``CrudFlow("actor", endpoint="/api/actors/", create={...}, update={...})`` yields a :class:`Flow` with
the steps every REST resource should pass, each checking what a client relies on:

* ``create`` -- POST the payload: 201, the body echoes the input (minus read-/write-only fields), has an id
* ``read``   -- GET the detail URL: 200, equal to what create returned
* ``list``   -- GET the collection (plain list or paginated ``{"results": [...], "next": ...}``): contains it
* ``update`` -- PATCH (or PUT) the changes: 200, echoed, and still there on a fresh GET
* ``delete`` -- DELETE: 2xx
* ``gone``   -- GET the detail URL again: 404

Prerequisites (``requires``) are created by their own steps (``tag_category.create``) in the same flow,
and the created id is put into the payload field that references them. Writes carry Django's CSRF header
whenever the client holds a ``csrftoken`` cookie.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar, overload

import httpx

from pytest_nocrud.flows.auth import csrf_headers
from pytest_nocrud.flows.steps import (
    DependsOn,
    Flow,
    FlowDefinitionError,
    FlowResult,
    Login,
    StepContext,
    expect_status,
)

__all__ = ["CRUD_STEPS", "Created", "CrudFlow"]

CRUD_STEPS = ("create", "read", "list", "update", "delete", "gone")
Payload = Mapping[str, Any] | Callable[[StepContext], Mapping[str, Any]]
Check = Callable[[StepContext, Any], None]
F = TypeVar("F", bound=Callable[[StepContext], Any])
T = TypeVar("T")
_MISSING = object()
_MAX_PAGES = 100


class Created(dict[str, Any]):
    """The object the create step got back (a plain dict to callers), remembering the payload ``sent``.

    PUT needs the full original payload; keeping it here means a random/generated payload is not
    regenerated differently.
    """

    sent: dict[str, Any]


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
class _Requirement:
    field: str
    step: str
    id_field: str
    crud: CrudFlow | None
    make: Callable[[StepContext], Any] | None


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
    ``requires`` maps payload field -> prerequisite (another ``CrudFlow``, or a function of the context
    that creates something and returns it or its id); a plain list uses each CrudFlow's resource name as
    the field. ``read_only_fields`` (server-set) and ``write_only_fields`` (e.g. passwords) are not
    expected back. ``checks`` adds ``check(ctx, step_output)`` calls after a step's own checks.
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
        requires: Sequence[CrudFlow] | Mapping[str, CrudFlow | Callable[[StepContext], Any]] = (),
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
        self.requires = [self._requirement(field, req) for field, req in items]
        bad_checks = [s for s in self.checks if s not in self.crud_steps]
        if bad_checks:
            raise FlowDefinitionError(
                f"CrudFlow {resource!r}: checks for steps it does not run: {bad_checks} "
                f"(runs {self.crud_steps})"
            )
        self._extra: list[_Extra] = []
        self._flow: Flow | None = None

    def __repr__(self) -> str:
        return f"<CrudFlow {self.resource!r} {self.endpoint}>"

    @staticmethod
    def _requirement(field: str, req: CrudFlow | Callable[[StepContext], Any]) -> _Requirement:
        if isinstance(req, CrudFlow):
            return _Requirement(field, f"{req.resource}.create", req.id_field, req, None)
        return _Requirement(field, f"{field}.create", "id", None, req)

    # -- URLs and payloads -----------------------------------------------------------------------

    def detail_url(self, obj_id: Any) -> str:
        """``detail_path.format(id=...)`` if given, else ``<endpoint><id>/`` (DRF router style)."""
        if self.detail_path is not None:
            return self.detail_path.format(id=obj_id)
        if self.endpoint.endswith("/"):
            return f"{self.endpoint}{obj_id}/"
        return f"{self.endpoint}/{obj_id}"

    def payload(self, ctx: StepContext) -> dict[str, Any]:
        """The create payload with every prerequisite's id filled into its field."""
        body = dict(self.create(ctx) if callable(self.create) else self.create)
        for req in self.requires:
            body[req.field] = _id_of(ctx[req.step], req.id_field)
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

    def _do_create(self, ctx: StepContext) -> Created:
        __tracebackhide__ = True
        sent = self.payload(ctx)
        response = ctx.client.post(self.endpoint, json=sent, headers=csrf_headers(ctx.client))
        expect_status(response, 201)
        body = _json_object(response)
        if self.id_field not in body:
            raise AssertionError(
                f"POST {self.endpoint}: response has no {self.id_field!r} field: {body!r:.300}"
            )
        wrong = _mismatches(sent, body, self._unchecked)
        if wrong:
            raise AssertionError(
                f"POST {self.endpoint}: response does not echo the input:\n" + "\n".join(wrong)
            )
        created = Created(body)
        created.sent = sent
        return created

    def _created_id(self, ctx: StepContext) -> Any:
        return ctx["create"][self.id_field]

    def _step_create(self, ctx: StepContext) -> Created:
        __tracebackhide__ = True
        return self._check("create", ctx, self._do_create(ctx))

    def _step_read(self, ctx: StepContext) -> dict[str, Any]:
        __tracebackhide__ = True
        created = dict(ctx["create"])
        url = self.detail_url(created[self.id_field])
        body = _json_object(expect_status(ctx.client.get(url), 200))
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
        url: str | None = self.endpoint
        pages = 0
        while url is not None and pages < _MAX_PAGES:
            body = expect_status(ctx.client.get(url), 200).json()
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
                    f"GET {self.endpoint}: expected a list or {{'results': [...]}}, got {body!r:.300}"
                )
        if not any(isinstance(i, dict) and i.get(self.id_field) == obj_id for i in items):
            ids = [i.get(self.id_field) for i in items if isinstance(i, dict)][:20]
            raise AssertionError(
                f"GET {self.endpoint}: created {self.id_field}={obj_id!r} not among {len(items)} listed "
                f"item(s) over {pages} page(s); first ids: {ids}"
            )
        return self._check("list", ctx, items)

    def _step_update(self, ctx: StepContext) -> dict[str, Any]:
        __tracebackhide__ = True
        assert self.update is not None
        created = ctx["create"]
        changes = dict(self.update(ctx) if callable(self.update) else self.update)
        sent = {**getattr(created, "sent", {}), **changes} if self.method == "PUT" else changes
        url = self.detail_url(created[self.id_field])
        response = ctx.client.request(self.method, url, json=sent, headers=csrf_headers(ctx.client))
        body = _json_object(expect_status(response, 200))
        wrong = _mismatches(changes, body, self._unchecked)
        if wrong:
            raise AssertionError(
                f"{self.method} {url}: response does not echo the change:\n" + "\n".join(wrong)
            )
        fresh = _json_object(expect_status(ctx.client.get(url), 200))
        wrong = _mismatches(changes, fresh, self._unchecked)
        if wrong:
            raise AssertionError(
                f"{self.method} {url} answered 200 but a fresh GET shows:\n" + "\n".join(wrong)
            )
        return self._check("update", ctx, fresh)

    def _step_delete(self, ctx: StepContext) -> int:
        __tracebackhide__ = True
        url = self.detail_url(self._created_id(ctx))
        response = ctx.client.delete(url, headers=csrf_headers(ctx.client))
        expect_status(response, 200, 202, 204)
        return self._check("delete", ctx, int(response.status_code))

    def _step_gone(self, ctx: StepContext) -> int:
        __tracebackhide__ = True
        url = self.detail_url(self._created_id(ctx))
        expect_status(ctx.client.get(url), 404)
        return self._check("gone", ctx, 404)

    # -- flow ------------------------------------------------------------------------------------

    def _add_prerequisites(self, flow: Flow, seen: set[str]) -> None:
        for req in self.requires:
            if req.step in seen:
                continue
            seen.add(req.step)
            if req.crud is not None:
                prereq = req.crud
                prereq._add_prerequisites(flow, seen)
                fn: Callable[[StepContext], Any] = prereq._do_create
                depends_on = [r.step for r in prereq.requires]
            else:
                assert req.make is not None
                fn, depends_on = req.make, []
            flow.add_step(
                req.step,
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
            "create": [r.step for r in self.requires],
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

    def run(self, client: Any, **kwargs: Any) -> FlowResult:
        """``Flow.run`` of the generated flow (same keyword arguments)."""
        return self.flow.run(client, **kwargs)

    def as_test(
        self, *, fixtures: Sequence[str] = (), client_fixture: str = "nocrud_client"
    ) -> Callable[..., None]:
        """``test_actor_crud = CrudFlow(...).as_test()``; see :meth:`Flow.as_test`."""
        caller = sys._getframe(1).f_globals.get("__name__")
        module = caller if isinstance(caller, str) else None
        return self.flow.as_test(fixtures=fixtures, client_fixture=client_fixture, module=module)
