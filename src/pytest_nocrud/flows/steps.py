"""Flows: named sets of dependent steps that run as one pytest test (a small pgflow-style step API).

An API scenario ("sign up, log in, create a post, see it listed") is a chain of HTTP calls where later
calls need earlier results. Writing it as steps instead of one long test function buys three things:
a failure report that says *which* step broke and which requests it made, per-step retry with
exponential backoff for eventually-consistent endpoints, and per-step timeouts.

    flow = Flow("actor_signup")

    @flow.step
    def create(ctx):
        r = ctx.client.post("/api/actors/", json={"name": "Ann"})
        expect_status(r, 201)
        return r.json()

    @flow.step(depends_on=["create"], max_attempts=3, base_delay=0.2)
    def read(ctx):
        expect_status(ctx.client.get(f"/api/actors/{ctx['create']['id']}/"), 200)

    test_actor_signup = flow.as_test()

A step is a function of one :class:`StepContext`; its return value is its output, visible to the steps
that depend on it (directly or transitively) as ``ctx["name"]`` / ``ctx.outputs["name"]``. Steps run in
dependency order; ties keep definition order. A step whose dependency did not complete is ``skipped``.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import enum
import inspect
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any, TypeVar, overload

import httpx
import pytest

from pytest_nocrud.flows.auth import Login
from pytest_nocrud.flows.timeline import RequestLog, RequestRecord, describe_response, log_for, mark_expected

from ..errors import FlowDefinitionError, FlowFailed

__all__ = [
    "Flow",
    "FlowDefinitionError",
    "FlowFailed",
    "FlowResult",
    "Login",
    "Step",
    "StepContext",
    "StepResult",
    "StepStatus",
    "expect_status",
]

StepFn = Callable[["StepContext"], Any]
F = TypeVar("F", bound=StepFn)
Clock = Callable[[], float]
Sleep = Callable[[float], None]
DependsOn = str | Callable[..., Any] | Sequence[str | Callable[..., Any]]

LOGIN_STEP = "login"
_REQUESTS_PER_STEP = 8
_ERROR_CHARS = 1500




class StepStatus(str, enum.Enum):
    """How a step ended (pgflow's vocabulary, plus ``skipped`` for steps whose dependency broke)."""

    COMPLETED = "completed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    SKIPPED = "skipped"

    def __str__(self) -> str:
        return self.value


@dataclasses.dataclass(frozen=True)
class Step:
    """One declared step. ``timeout`` is per attempt, in seconds; ``None`` means no limit."""

    name: str
    fn: StepFn
    depends_on: tuple[str, ...] = ()
    max_attempts: int = 1
    base_delay: float = 0.5
    timeout: float | None = None

    def delay_before(self, attempt: int) -> float:
        """Backoff before ``attempt`` (2, 3, ...): base_delay, 2*base_delay, 4*base_delay, ..."""
        return float(self.base_delay * 2 ** (attempt - 2))


class StepContext:
    """What a step function gets: the client, dependency outputs, requested fixtures, attempt number."""

    def __init__(
        self,
        *,
        flow: str,
        step: str,
        attempt: int,
        client: httpx.Client,
        outputs: Mapping[str, Any],
        fixtures: Mapping[str, Any],
        log: RequestLog | None,
    ) -> None:
        self.flow = flow
        self.step = step
        self.attempt = attempt
        self.client = client
        self.outputs: Mapping[str, Any] = MappingProxyType(dict(outputs))
        self.fixtures: Mapping[str, Any] = MappingProxyType(dict(fixtures))
        self.log = log

    def __getitem__(self, name: str) -> Any:
        """Output of dependency ``name``; a clear error if it is not one (add it to ``depends_on``)."""
        try:
            return self.outputs[name]
        except KeyError:
            visible = ", ".join(sorted(self.outputs)) or "none"
            raise KeyError(
                f"step {self.step!r} asked for the output of {name!r}, which is not among its "
                f"dependencies (visible: {visible}); add it to depends_on"
            ) from None

    def __repr__(self) -> str:
        return f"<StepContext {self.flow}.{self.step} attempt={self.attempt}>"


@dataclasses.dataclass
class StepResult:
    """How one step went. ``duration_ms`` spans all attempts including backoff waits."""

    name: str
    status: StepStatus
    attempts: int = 0
    duration_ms: float = 0.0
    output: Any = None
    error: BaseException | None = None
    reason: str = ""
    delays: list[float] = dataclasses.field(default_factory=list)
    requests: list[RequestRecord] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status is StepStatus.COMPLETED


def _error_text(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}".rstrip()
    if len(text) > _ERROR_CHARS:
        text = text[:_ERROR_CHARS] + " ..."
    return text


def _indent(text: str, prefix: str) -> str:
    return "\n".join(prefix + line for line in text.splitlines())


@dataclasses.dataclass
class FlowResult:
    """All step results of one run, in execution order."""

    flow: str
    steps: list[StepResult]

    def __getitem__(self, name: str) -> StepResult:
        for result in self.steps:
            if result.name == name:
                return result
        raise KeyError(name)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.steps)

    @property
    def outputs(self) -> dict[str, Any]:
        return {r.name: r.output for r in self.steps if r.ok}

    @property
    def broken(self) -> list[StepResult]:
        """Steps that failed or timed out themselves (not the ones skipped because of them)."""
        return [r for r in self.steps if r.status in (StepStatus.FAILED, StepStatus.TIMED_OUT)]

    def table(self) -> str:
        """``step  status  attempts  ms  requests`` rows, each followed by the step's requests."""
        width = max([len("step")] + [len(r.name) for r in self.steps])
        lines = [f"  {'step':<{width}}  {'status':<9}  {'attempts':>8}  {'ms':>9}  requests"]
        for r in self.steps:
            ms = f"{r.duration_ms:.1f}" if r.status is not StepStatus.SKIPPED else "-"
            lines.append(
                f"  {r.name:<{width}}  {r.status.value:<9}  {r.attempts:>8}  {ms:>9}  {len(r.requests)}"
            )
            for record in r.requests[:_REQUESTS_PER_STEP]:
                lines.append(f"  {'':<{width}}    {record.line()}")
            if len(r.requests) > _REQUESTS_PER_STEP:
                lines.append(f"  {'':<{width}}    ... {len(r.requests) - _REQUESTS_PER_STEP} more")
        return "\n".join(lines)

    def report(self) -> str:
        """The failure message: summary line, step table, each broken step's error and failing request."""
        broken = self.broken
        skipped = sum(r.status is StepStatus.SKIPPED for r in self.steps)
        if broken:
            summary = ", ".join(f"{r.name} {r.status.value}" for r in broken)
        else:
            summary = "all steps completed" if not skipped else "nothing broke"
        head = f"flow {self.flow!r}: {summary}" + (f"; {skipped} skipped" if skipped else "")
        parts = [head, self.table()]
        for r in broken:
            parts.append(f"step {r.name!r} {r.status.value} after {r.attempts} attempt(s):")
            if r.reason:
                parts.append(_indent(r.reason, "  "))
            if r.error is not None:
                parts.append(_indent(_error_text(r.error), "  "))
            failing = next(
                (q for q in reversed(r.requests) if q.failed), r.requests[-1] if r.requests else None
            )
            if failing is not None:
                parts.append("  last request" + (" (failed):" if failing.failed else ":"))
                parts.append(_indent(failing.detail(), "    "))
        return "\n".join(parts)

    def raise_for_failure(self) -> None:
        """Raise :class:`FlowFailed` (an AssertionError) unless every step completed.

        The first broken step's exception is chained as ``__cause__`` so pytest shows its traceback
        (with assertion rewriting of the step's own ``assert``) above the report.
        """
        __tracebackhide__ = True
        if self.ok:
            return
        cause = next((r.error for r in self.broken if r.error is not None), None)
        raise FlowFailed(self.report()) from cause


def expect_status(response: httpx.Response, *expected: int) -> httpx.Response:
    """Assert the response status is one of ``expected``; the message shows the request and body."""
    __tracebackhide__ = True
    if response.status_code not in expected:
        wanted = " or ".join(map(str, expected))
        raise AssertionError(f"expected {wanted}, got {describe_response(response)}")
    mark_expected(response)
    return response


def _is_failure(error: BaseException) -> bool:
    """Exceptions that make a step ``failed``; anything else (skip, KeyboardInterrupt) propagates."""
    return isinstance(error, (Exception, pytest.fail.Exception))


@contextlib.contextmanager
def _capped_client_timeout(client: httpx.Client, seconds: float | None) -> Iterator[None]:
    """While a step with a timeout runs, no single request of an httpx client may outlast it."""
    if seconds is None or not isinstance(client, httpx.Client):
        yield
        return
    old = client.timeout

    def cap(value: float | None) -> float:
        return seconds if value is None else min(value, seconds)

    client.timeout = httpx.Timeout(
        connect=cap(old.connect), read=cap(old.read), write=cap(old.write), pool=cap(old.pool)
    )
    try:
        yield
    finally:
        client.timeout = old


def _identifier(name: str) -> str:
    ident = re.sub(r"\W+", "_", name).strip("_") or "flow"
    return ident if not ident[0].isdigit() else f"_{ident}"


class Flow:
    """A named set of steps run in dependency order against one client.

    ``max_attempts``, ``base_delay`` and ``timeout`` are defaults for steps that don't set their own.
    ``as_user`` (e.g. ``auth.AsUser("ann", "pw")``) adds a first step ``login`` that every other step
    depends on, so the whole flow runs logged in, and a broken login skips (not fails) the rest.
    """

    def __init__(
        self,
        name: str,
        *,
        as_user: Login | None = None,
        max_attempts: int = 1,
        base_delay: float = 0.5,
        timeout: float | None = None,
        description: str = "",
    ) -> None:
        self.name = name
        self.description = description
        self.as_user = as_user
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.timeout = timeout
        self._steps: dict[str, Step] = {}
        self._names_by_fn: dict[int, str] = {}
        if as_user is not None:
            login = as_user

            def login_step(ctx: StepContext) -> Any:
                return login(ctx.client)

            self.add_step(LOGIN_STEP, login_step)

    def __repr__(self) -> str:
        return f"<Flow {self.name!r} steps={list(self._steps)}>"

    # -- definition ------------------------------------------------------------------------------

    @property
    def steps(self) -> tuple[Step, ...]:
        """Declared steps, in definition order."""
        return tuple(self._steps.values())

    def _dep_name(self, dep: str | Callable[..., Any]) -> str:
        if isinstance(dep, str):
            return dep
        return self._names_by_fn.get(id(dep), getattr(dep, "__name__", repr(dep)))

    def add_step(
        self,
        name: str,
        fn: StepFn,
        *,
        depends_on: DependsOn = (),
        max_attempts: int | None = None,
        base_delay: float | None = None,
        timeout: float | None = None,
    ) -> Step:
        """Declare a step programmatically (what the decorator and ``CrudFlow`` use)."""
        if name in self._steps:
            raise FlowDefinitionError(f"flow {self.name!r} already has a step named {name!r}")
        raw = [depends_on] if isinstance(depends_on, str) or callable(depends_on) else list(depends_on)
        deps = [self._dep_name(d) for d in raw]
        if self.as_user is not None and name != LOGIN_STEP and LOGIN_STEP not in deps:
            deps.insert(0, LOGIN_STEP)
        step = Step(
            name=name,
            fn=fn,
            depends_on=tuple(dict.fromkeys(deps)),
            max_attempts=self.max_attempts if max_attempts is None else max_attempts,
            base_delay=self.base_delay if base_delay is None else base_delay,
            timeout=self.timeout if timeout is None else timeout,
        )
        if step.max_attempts < 1:
            raise FlowDefinitionError(f"step {name!r}: max_attempts must be >= 1, got {step.max_attempts}")
        if step.base_delay < 0:
            raise FlowDefinitionError(f"step {name!r}: base_delay must be >= 0, got {step.base_delay}")
        if step.timeout is not None and step.timeout <= 0:
            raise FlowDefinitionError(f"step {name!r}: timeout must be > 0 seconds, got {step.timeout}")
        self._steps[name] = step
        self._names_by_fn[id(fn)] = name
        return step

    @overload
    def step(self, fn: F) -> F: ...

    @overload
    def step(
        self,
        *,
        name: str | None = None,
        depends_on: DependsOn = (),
        max_attempts: int | None = None,
        base_delay: float | None = None,
        timeout: float | None = None,
    ) -> Callable[[F], F]: ...

    def step(
        self,
        fn: F | None = None,
        *,
        name: str | None = None,
        depends_on: DependsOn = (),
        max_attempts: int | None = None,
        base_delay: float | None = None,
        timeout: float | None = None,
    ) -> F | Callable[[F], F]:
        """Decorator declaring a step named after the function (or ``name``); returns it unchanged.

        ``depends_on`` takes step names or the decorated step functions themselves.
        """

        def register(f: F) -> F:
            self.add_step(
                name or f.__name__,
                f,
                depends_on=depends_on,
                max_attempts=max_attempts,
                base_delay=base_delay,
                timeout=timeout,
            )
            return f

        return register(fn) if fn is not None else register

    def order(self) -> list[Step]:
        """Steps in execution order: topological, ties broken by definition order.

        Raises :class:`FlowDefinitionError` for unknown dependencies and cycles (naming the cycle).
        """
        steps = self._steps
        for step in steps.values():
            for dep in step.depends_on:
                if dep not in steps:
                    known = ", ".join(steps) or "none"
                    raise FlowDefinitionError(
                        f"flow {self.name!r}: step {step.name!r} depends on unknown step {dep!r} "
                        f"(known: {known})"
                    )
        position = {name: i for i, name in enumerate(steps)}
        waiting = {name: set(step.depends_on) for name, step in steps.items()}
        done: list[Step] = []
        while waiting:
            ready = [name for name, deps in waiting.items() if not deps]
            if not ready:
                raise FlowDefinitionError(
                    f"flow {self.name!r} has a dependency cycle: {self._cycle(waiting)}"
                )
            name = min(ready, key=position.__getitem__)
            del waiting[name]
            for deps in waiting.values():
                deps.discard(name)
            done.append(steps[name])
        return done

    def _cycle(self, waiting: Mapping[str, set[str]]) -> str:
        # Every remaining step has an unfinished dependency, so walking them must revisit a step.
        path: list[str] = []
        node = min(waiting, key=list(self._steps).index)
        while node not in path:
            path.append(node)
            node = min(waiting[node], key=list(self._steps).index)
        return " -> ".join([*path[path.index(node) :], node])

    def describe(self) -> str:
        """One line for ``__doc__`` and ``--collect-only -v``: the flow name and its step order."""
        try:
            chain = " -> ".join(s.name for s in self.order())
        except FlowDefinitionError as exc:
            chain = f"<invalid: {exc}>"
        text = f"crud_flow {self.name!r}: {chain}"
        return f"{self.description}\n\n{text}" if self.description else text

    # -- running ---------------------------------------------------------------------------------

    def run(
        self,
        client: httpx.Client,
        *,
        fixtures: Mapping[str, Any] | None = None,
        log: RequestLog | None = None,
        clock: Clock = time.perf_counter,
        sleep: Sleep = time.sleep,
    ) -> FlowResult:
        """Run every step once in order and return the results; never raises for a step failure.

        ``log`` defaults to the one attached to ``client`` (``timeline.log_for``); an httpx client
        without one gets a fresh log attached, so step reports always list their requests.
        ``clock`` and ``sleep`` are injectable so backoff can be tested without waiting.
        """
        order = self.order()
        if log is None:
            log = log_for(client)
            if log is None and isinstance(client, httpx.Client):
                log = RequestLog()
                log.attach(client)
        fixtures = dict(fixtures or {})
        ancestors: dict[str, set[str]] = {}
        results: dict[str, StepResult] = {}
        for step in order:
            ancestors[step.name] = set(step.depends_on).union(*(ancestors[d] for d in step.depends_on))
            blocked = [d for d in step.depends_on if not results[d].ok]
            if blocked:
                why = ", ".join(f"{d!r} {results[d].status.value}" for d in blocked)
                results[step.name] = StepResult(step.name, StepStatus.SKIPPED, reason=f"dependency {why}")
                continue
            visible = {n: results[n].output for n in ancestors[step.name]}
            results[step.name] = self._run_step(step, client, visible, fixtures, log, clock, sleep)
        result = FlowResult(self.name, [results[s.name] for s in order])
        if log is not None:
            log.flow_results.append(result)
        return result

    def _run_step(
        self,
        step: Step,
        client: httpx.Client,
        visible: Mapping[str, Any],
        fixtures: Mapping[str, Any],
        log: RequestLog | None,
        clock: Clock,
        sleep: Sleep,
    ) -> StepResult:
        mark = log.mark() if log is not None else 0
        result = StepResult(step.name, StepStatus.FAILED)
        started = clock()
        for attempt in range(1, step.max_attempts + 1):
            if attempt > 1:
                delay = step.delay_before(attempt)
                result.delays.append(delay)
                sleep(delay)
            result.attempts = attempt
            ctx = StepContext(
                flow=self.name,
                step=step.name,
                attempt=attempt,
                client=client,
                outputs=visible,
                fixtures=fixtures,
                log=log,
            )
            attempt_started = clock()
            finished, output, error = _call(step, ctx)
            elapsed = clock() - attempt_started
            if not finished or (step.timeout is not None and elapsed > step.timeout):
                # Not retried: an abandoned attempt may still be running and would race the retry.
                result.status = StepStatus.TIMED_OUT
                result.error = error
                shown = step.timeout if not finished else elapsed
                result.reason = f"attempt {attempt} exceeded the {step.timeout:g} s timeout ({shown:.3f} s)"
                break
            if error is None:
                result.status = StepStatus.COMPLETED
                result.output = output
                result.error = None
                break
            result.error = error
        result.duration_ms = (clock() - started) * 1000.0
        if log is not None:
            result.requests = log.since(mark)
        return result

    # -- pytest ----------------------------------------------------------------------------------

    def as_test(
        self,
        *,
        fixtures: Sequence[str] = (),
        client_fixture: str = "nocrud_client",
        module: str | None = None,
    ) -> Callable[..., None]:
        """This flow as a pytest test function marked ``crud_flow``: ``test_x = flow.as_test()``.

        pytest collects it under the name it is assigned to. It requests ``client_fixture`` plus
        ``fixtures`` (available to steps as ``ctx.fixtures[name]``), runs the flow and raises
        :class:`FlowFailed` with the step table if any step did not complete. The definition is
        validated here, so a cycle or unknown dependency is an error at import/collection time.
        ``module`` is where the test reports itself from; it defaults to the calling module.
        """
        self.order()
        names = list(dict.fromkeys([client_fixture, *fixtures]))
        flow = self

        def flow_test(**kwargs: Any) -> None:
            __tracebackhide__ = True
            flow.run(kwargs[client_fixture], fixtures=kwargs).raise_for_failure()

        ident = f"test_{_identifier(self.name)}"
        flow_test.__name__ = ident
        flow_test.__qualname__ = ident
        flow_test.__doc__ = self.describe()
        # pytest reads the fixtures a test wants from its signature.
        params = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY) for n in names]
        setattr(flow_test, "__signature__", inspect.Signature(params))  # noqa: B010
        caller = module if module is not None else sys._getframe(1).f_globals.get("__name__")
        if isinstance(caller, str):
            flow_test.__module__ = caller
            # Undocumented pytest hook for "report this test at that object's location": point at the
            # first step written in the calling module instead of this file.
            own = [s.fn for s in self.order() if getattr(s.fn, "__module__", None) == caller]
            if own:
                setattr(flow_test, "place_as", own[0])  # noqa: B010
        setattr(flow_test, "_nocrud_flow", self)  # noqa: B010
        marked: Callable[..., None] = pytest.mark.crud_flow(flow_test)
        return marked


def _call(step: Step, ctx: StepContext) -> tuple[bool, Any, BaseException | None]:
    """Run one attempt: ``(finished, output, error)``; ``finished`` is False when it timed out.

    With a timeout the step runs in a daemon worker thread and we stop *waiting* at the deadline.
    Python cannot kill a thread: the abandoned attempt keeps running until it returns by itself.
    What bounds it is the httpx client: while the step runs, its per-request timeouts are capped at the
    step timeout, so a request hanging on a slow app ends with ``httpx.TimeoutException`` soon after.
    A step that finishes but took longer than its timeout (by ``clock``) is also ``timed_out``.
    """
    __tracebackhide__ = True
    if step.timeout is None:
        try:
            return True, step.fn(ctx), None
        except BaseException as error:
            if not _is_failure(error):
                raise
            return True, None, error
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["output"] = step.fn(ctx)
        except BaseException as error:  # handed to the flow's thread below
            box["error"] = error

    context = contextvars.copy_context()
    worker = threading.Thread(
        target=context.run, args=(target,), name=f"nocrud-step-{ctx.flow}.{step.name}", daemon=True
    )
    with _capped_client_timeout(ctx.client, step.timeout):
        worker.start()
        worker.join(step.timeout)
    if worker.is_alive():
        return False, None, None
    raised: BaseException | None = box.get("error")
    if raised is not None and not _is_failure(raised):
        raise raised
    return True, box.get("output"), raised
