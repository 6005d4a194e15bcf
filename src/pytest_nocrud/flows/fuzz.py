"""schemathesis on the live app: every generated case, and every stateful scenario, on a fresh database.

The ``fuzz`` extra (``pip install 'pytest-nocrud[fuzz]'``). schemathesis is imported here only, and
this module only when a test asks for ``nocrud_fuzz`` or ``nocrud_openapi_schema``: a project that does
not fuzz pays nothing. Cases go out through a recorded ``httpx`` client, so the failure report, the HTML
page and the perf record show them like any flow's requests.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import httpx

from ..errors import UsageError

if TYPE_CHECKING:  # pragma: no cover - names for the type checker only
    from schemathesis import Case
    from schemathesis.core.transport import Response
    from schemathesis.generation.stateful.state_machine import APIStateMachine
    from schemathesis.schemas import BaseSchema

Check = Callable[..., Any]


def _schemathesis() -> Any:
    try:
        import schemathesis
    except ImportError:
        raise UsageError(
            "nocrud_fuzz needs schemathesis: pip install 'pytest-nocrud[fuzz]' (Hypothesis and schemathesis)"
        ) from None
    return schemathesis


def load_schema(client: httpx.Client, openapi_path: str) -> BaseSchema:
    """The app's OpenAPI schema, read from the running app at ``openapi_path`` (``nocrud_openapi_path``)."""
    schemathesis = _schemathesis()
    response = client.get(openapi_path)
    if response.status_code != 200:
        raise UsageError(
            f"the app answered {response.status_code} at {openapi_path} instead of its OpenAPI schema; set "
            "nocrud_openapi_path to where it serves it (FastAPI: /openapi.json)"
        )
    schema: BaseSchema = schemathesis.openapi.from_dict(response.json())
    schema.config.update(base_url=str(client.base_url).rstrip("/"))
    return schema


def send(case: Case[Any], client: httpx.Client) -> httpx.Response:
    """Send one generated case through ``client`` (recorded: it shows in the failure report)."""
    kwargs = case.as_transport_kwargs(base_url=str(client.base_url).rstrip("/"))
    headers = dict(kwargs.get("headers") or {})
    cookies = kwargs.get("cookies") or {}
    if cookies:  # httpx deprecates per-request cookies: the same header by hand
        headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in cookies.items())
    own = {"user-agent", "connection", "accept-encoding"}  # the client's: its keep-alive stays
    if "authorization" in client.headers:  # a logged-in client: its login, not a generated token
        own.add("authorization")
    headers = {name: value for name, value in headers.items() if name.lower() not in own}
    body: dict[str, Any] = {}
    if "json" in kwargs:
        body["json"] = kwargs["json"]
    elif "data" in kwargs:
        data = kwargs["data"]
        body["content" if isinstance(data, (bytes, str)) else "data"] = data
    if kwargs.get("files"):
        body["files"] = kwargs["files"]
    return client.request(
        kwargs["method"], kwargs["url"], params=kwargs.get("params") or None, headers=headers, **body
    )


def as_response(response: httpx.Response) -> Response:
    """schemathesis' own view of an httpx response (its checks and links read it)."""
    from schemathesis.core.transport import Response

    return Response.from_httpx(response, verify=True)


class Fuzz:
    """What ``nocrud_fuzz`` gives a test: send cases on a fresh database each, run stateful scenarios.

    ``reset`` is ``nocrud_db.reset``; with ``fresh=False`` the cases share the test's one database (to
    compare: what an earlier case leaves behind then shapes the later ones).
    """

    def __init__(self, client: httpx.Client, reset: Callable[[], float], *, fresh: bool = True) -> None:
        self.client = client
        self.reset = reset
        self.fresh = fresh

    def call(
        self, case: Case[Any], *, client: httpx.Client | None = None, checks: Sequence[Check] | None = None
    ) -> httpx.Response:
        """A fresh database, then ``case`` through the recorded client, then schemathesis' checks
        (``checks``: e.g. ``[schemathesis.checks.not_a_server_error]``; None: the schema's configured
        checks). ``client``: another recorded client, e.g. a logged-in one from nocrud_client_factory."""
        __tracebackhide__ = True
        if self.fresh:
            self.reset()
        response = send(case, client or self.client)
        case.validate_response(response, checks=list(checks) if checks is not None else None)
        return response

    def run_cases(
        self,
        schema: BaseSchema,
        *,
        settings: Any = None,
        client: httpx.Client | None = None,
        checks: Sequence[Check] | None = None,
    ) -> int:
        """Every operation of ``schema``, as many generated cases as ``settings`` (a Hypothesis
        ``settings``) allows, each through :meth:`call`; returns the operations run. One Hypothesis test
        per operation (schemathesis' own strategy, Hypothesis' own shrinking), stopping at the first
        that fails -- what ``@schema.parametrize()`` does, from inside one test (its lazy
        ``from_fixture`` form does not run on pytest 9: schemathesis 4.32 reads a removed attribute)."""
        __tracebackhide__ = True
        from hypothesis import given

        operations = 0
        from schemathesis.core.result import Err

        for result in schema.get_all_operations():
            if isinstance(result, Err):  # an operation schemathesis cannot read: say which, stop
                raise result.err()
            operation = result.ok()

            def one(case: Case[Any]) -> None:
                __tracebackhide__ = True
                self.call(case, client=client, checks=checks)

            label = re.sub(r"\W+", "_", f"{operation.method}_{operation.path}").strip("_")
            one.__name__ = one.__qualname__ = label  # Hypothesis names the failing example by it
            test = given(case=operation.as_strategy())(one)
            (settings(test) if settings is not None else test)()
            operations += 1
        return operations

    def state_machine(
        self, schema: BaseSchema, *, client: httpx.Client | None = None, checks: Sequence[Check] | None = None
    ) -> type[APIStateMachine]:
        """``schema.as_state_machine()`` whose every scenario starts on a fresh database and whose every
        step goes through the recorded client; run it with ``.run(settings=...)``."""
        fuzz, via = self, client or self.client
        chosen = list(checks) if checks is not None else None
        base: type[APIStateMachine] = schema.as_state_machine()

        class OnAFreshDatabase(base):  # type: ignore[valid-type,misc]
            def setup(self) -> None:
                if fuzz.fresh:
                    fuzz.reset()

            def call(self, case: Case[Any], **kwargs: Any) -> Response:
                return as_response(send(case, via))

            def validate_response(
                self, response: Response, case: Case[Any], *args: Any, **kwargs: Any
            ) -> None:
                __tracebackhide__ = True
                if chosen is None:
                    super().validate_response(response, case, *args, **kwargs)
                else:
                    case.validate_response(response, checks=chosen, recorder=getattr(self, "recorder", None))

        OnAFreshDatabase.__name__ = OnAFreshDatabase.__qualname__ = f"{base.__name__}OnAFreshDatabase"
        return OnAFreshDatabase
