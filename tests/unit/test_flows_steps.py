"""Unit tests of the flow step engine: ordering, data passing, retry/backoff, skip, timeout, reports.

Steps here are plain Python functions (no HTTP, client ``None``); time is a fake clock, so backoff is
checked exactly and nothing sleeps. The pytester test checks what users see: a flow made with
``as_test()`` is collected under its variable name and selected by ``-m crud_flow`` / ``-k``.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

import pytest

try:
    import pytest_nocrud  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from pytest_nocrud.flows.steps import (
    Flow,
    FlowDefinitionError,
    FlowFailed,
    FlowResult,
    StepContext,
    StepResult,
    StepStatus,
)
from pytest_nocrud.flows.timeline import RequestRecord

pytest_plugins = ["pytester"]


class FakeTime:
    """A clock that only moves when told to; ``sleep`` records the delay and advances the clock."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def run(flow: Flow, fake: FakeTime | None = None) -> FlowResult:
    fake = fake or FakeTime()
    return flow.run(None, clock=fake.clock, sleep=fake.sleep)


def statuses(result: FlowResult) -> dict[str, str]:
    return {r.name: r.status.value for r in result.steps}


# -- ordering and data -------------------------------------------------------------------------------


def test_steps_run_in_dependency_order_ties_keep_definition_order() -> None:
    flow = Flow("order")
    ran: list[str] = []

    # Defined "backwards": c needs a and b, b needs a; d is independent.
    flow.add_step("c", lambda ctx: ran.append("c"), depends_on=["a", "b"])
    flow.add_step("a", lambda ctx: ran.append("a"))
    flow.add_step("b", lambda ctx: ran.append("b"), depends_on="a")
    flow.add_step("d", lambda ctx: ran.append("d"))

    result = run(flow)

    assert ran == ["a", "b", "c", "d"]
    assert [s.name for s in flow.order()] == ran
    assert [r.name for r in result.steps] == ran
    assert result.ok


def test_outputs_reach_dependents_and_their_descendants_only() -> None:
    flow = Flow("data")
    seen: dict[str, Any] = {}

    @flow.step
    def create(ctx: StepContext) -> dict[str, int]:
        return {"id": 7}

    @flow.step(depends_on=[create])  # the function itself works as a reference
    def read(ctx: StepContext) -> str:
        seen["read"] = ctx["create"]["id"]
        return "read-output"

    @flow.step(depends_on=["read"])
    def later(ctx: StepContext) -> None:
        seen["later"] = dict(ctx.outputs)  # transitive: create is visible through read

    @flow.step
    def unrelated(ctx: StepContext) -> None:
        ctx["create"]  # not a dependency: a clear KeyError

    result = run(flow)

    assert seen["read"] == 7
    assert seen["later"] == {"create": {"id": 7}, "read": "read-output"}
    assert result["create"].output == {"id": 7}
    assert result.outputs["read"] == "read-output"
    assert result["unrelated"].status is StepStatus.FAILED
    message = str(result["unrelated"].error)
    assert "not among its dependencies" in message and "depends_on" in message


def test_steps_see_fixtures_client_and_attempt() -> None:
    flow = Flow("ctx")
    got: list[Any] = []
    flow.add_step("s", lambda ctx: got.extend([ctx.client, ctx.fixtures["nocrud_db"], ctx.attempt, ctx.step]))
    client = object()
    flow.run(client, fixtures={"nocrud_db": "db"}, clock=FakeTime().clock, sleep=FakeTime().sleep)
    assert got == [client, "db", 1, "s"]


# -- retry and backoff -------------------------------------------------------------------------------


def test_retry_backoff_doubles_from_base_delay() -> None:
    flow = Flow("retry")
    attempts: list[int] = []

    @flow.step(max_attempts=4, base_delay=0.25)
    def flaky(ctx: StepContext) -> str:
        attempts.append(ctx.attempt)
        if ctx.attempt < 4:
            raise AssertionError(f"not yet ({ctx.attempt})")
        return "ok"

    fake = FakeTime()
    result = run(flow, fake)

    step = result["flaky"]
    assert step.status is StepStatus.COMPLETED
    assert step.attempts == 4
    assert attempts == [1, 2, 3, 4]
    assert fake.sleeps == [0.25, 0.5, 1.0]
    assert step.delays == [0.25, 0.5, 1.0]
    assert step.output == "ok" and step.error is None
    assert step.duration_ms == pytest.approx(1750.0)  # the backoff waits, by the injected clock


def test_retries_exhausted_keep_last_error() -> None:
    flow = Flow("retry", max_attempts=3, base_delay=1.5)  # flow-level defaults
    flow.add_step("always", lambda ctx: (_ for _ in ()).throw(ValueError(f"attempt {ctx.attempt}")))

    fake = FakeTime()
    step = run(flow, fake)["always"]

    assert step.status is StepStatus.FAILED
    assert step.attempts == 3
    assert fake.sleeps == [1.5, 3.0]
    assert str(step.error) == "attempt 3"


def test_first_attempt_success_does_not_sleep() -> None:
    flow = Flow("once")
    flow.add_step("fine", lambda ctx: 1, max_attempts=5, base_delay=9.0)
    fake = FakeTime()
    assert run(flow, fake)["fine"].attempts == 1
    assert fake.sleeps == []


def test_pytest_fail_in_a_step_is_a_step_failure() -> None:
    flow = Flow("fail")
    flow.add_step("s", lambda ctx: pytest.fail("nope"))
    step = run(flow)["s"]
    assert step.status is StepStatus.FAILED and "nope" in str(step.error)


# -- skip ----------------------------------------------------------------------------------------------


def test_failed_dependency_skips_dependents_transitively_but_not_others() -> None:
    flow = Flow("skip")
    ran: list[str] = []

    def broken(ctx: StepContext) -> None:
        raise RuntimeError("broken")

    flow.add_step("a", broken)
    flow.add_step("b", lambda ctx: ran.append("b"), depends_on="a")
    flow.add_step("c", lambda ctx: ran.append("c"), depends_on="b")
    flow.add_step("d", lambda ctx: ran.append("d"))

    result = run(flow)

    assert statuses(result) == {"a": "failed", "b": "skipped", "c": "skipped", "d": "completed"}
    assert ran == ["d"]
    assert result["b"].reason == "dependency 'a' failed"
    assert result["c"].reason == "dependency 'b' skipped"
    assert result["b"].attempts == 0
    assert [r.name for r in result.broken] == ["a"]
    assert not result.ok


def test_login_step_comes_first_and_its_failure_skips_everything() -> None:
    def login(client: Any) -> dict[str, str]:
        raise AssertionError("login as 'ann' failed: POST /api/auth/login/ -> 400")

    flow = Flow("as_user", as_user=login)
    flow.add_step("create", lambda ctx: None)
    flow.add_step("read", lambda ctx: None, depends_on="create")

    assert [s.name for s in flow.order()] == ["login", "create", "read"]
    assert flow.steps[1].depends_on == ("login",)
    result = run(flow)
    assert statuses(result) == {"login": "failed", "create": "skipped", "read": "skipped"}


def test_login_output_is_visible_to_steps() -> None:
    flow = Flow("as_user", as_user=lambda client: {"username": "ann"})
    seen: list[Any] = []
    flow.add_step("whoami", lambda ctx: seen.append(ctx["login"]["username"]))
    assert run(flow).ok and seen == ["ann"]


# -- timeout -------------------------------------------------------------------------------------------


def test_step_slower_than_its_timeout_is_timed_out_and_not_retried() -> None:
    fake = FakeTime()
    flow = Flow("slow")
    calls: list[int] = []

    def slow(ctx: StepContext) -> str:
        calls.append(ctx.attempt)
        fake.now += 3.0  # "takes" 3 s by the flow's clock
        return "late"

    flow.add_step("slow", slow, timeout=2.0, max_attempts=3, base_delay=0.1)
    flow.add_step("after", lambda ctx: None, depends_on="slow")

    result = run(flow, fake)

    step = result["slow"]
    assert step.status is StepStatus.TIMED_OUT
    assert calls == [1] and fake.sleeps == []
    assert "2 s timeout" in step.reason
    assert result["after"].status is StepStatus.SKIPPED
    assert result["after"].reason == "dependency 'slow' timed_out"


def test_timeout_stops_waiting_for_a_hung_step() -> None:
    release = threading.Event()
    returned: list[bool] = []

    def hang(ctx: StepContext) -> None:
        returned.append(release.wait(10))  # bounded: a broken timeout fails the test, not hangs it

    flow = Flow("hung")
    flow.add_step("hang", hang, timeout=0.05)
    flow.add_step("independent", lambda ctx: "ran")
    try:
        result = flow.run(None)
        assert returned == [], "the run waited for the hung step instead of giving up on it"
    finally:
        release.set()
    assert result["hang"].status is StepStatus.TIMED_OUT
    assert result["hang"].attempts == 1
    assert result["independent"].output == "ran"


def test_step_with_timeout_that_finishes_in_time_completes() -> None:
    flow = Flow("quick")
    flow.add_step("quick", lambda ctx: threading.current_thread().name, timeout=30)
    result = run(flow)
    assert result["quick"].status is StepStatus.COMPLETED
    assert result["quick"].output.startswith("nocrud-step-")  # ran in a worker thread


# -- definition errors -----------------------------------------------------------------------------


def test_cycle_is_reported_with_its_path() -> None:
    flow = Flow("loop")
    flow.add_step("start", lambda ctx: None)
    flow.add_step("a", lambda ctx: None, depends_on=["start", "c"])
    flow.add_step("b", lambda ctx: None, depends_on="a")
    flow.add_step("c", lambda ctx: None, depends_on="b")
    with pytest.raises(FlowDefinitionError, match=r"dependency cycle: a -> c -> b -> a"):
        flow.order()
    with pytest.raises(FlowDefinitionError, match="cycle"):
        flow.as_test()  # at collection time, not when the test runs
    with pytest.raises(FlowDefinitionError, match="cycle"):
        flow.run(None)


def test_self_dependency_is_a_cycle() -> None:
    flow = Flow("self")
    flow.add_step("a", lambda ctx: None, depends_on="a")
    with pytest.raises(FlowDefinitionError, match="a -> a"):
        flow.order()


def test_unknown_dependency_names_the_known_steps() -> None:
    flow = Flow("typo")
    flow.add_step("create", lambda ctx: None)
    flow.add_step("read", lambda ctx: None, depends_on="craete")
    with pytest.raises(FlowDefinitionError) as info:
        flow.as_test()
    assert "step 'read' depends on unknown step 'craete'" in str(info.value)
    assert "known: create, read" in str(info.value)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"base_delay": -1.0}, "base_delay"),
        ({"timeout": 0.0}, "timeout"),
    ],
)
def test_bad_step_options_are_rejected(options: dict[str, Any], match: str) -> None:
    with pytest.raises(FlowDefinitionError, match=match):
        Flow("bad").add_step("s", lambda ctx: None, **options)


def test_duplicate_step_name_is_rejected() -> None:
    flow = Flow("dup")
    flow.add_step("s", lambda ctx: None)
    with pytest.raises(FlowDefinitionError, match="already has a step named 's'"):
        flow.add_step("s", lambda ctx: None)


# -- failure report ------------------------------------------------------------------------------------


def test_failure_message_has_step_table_error_and_failing_request() -> None:
    ok = RequestRecord("POST", "/api/actors/", started=0.0, status=201, ms=12.34)
    bad = RequestRecord(
        "PATCH",
        "/api/actors/7/",
        started=0.0,
        status=400,
        ms=5.0,
        request_excerpt='{"name": ""}',
        response_excerpt='{"name": ["This field may not be blank."]}',
    )
    error = AssertionError("expected 200, got PATCH /api/actors/7/ -> 400")
    result = FlowResult(
        "actor_crud",
        [
            StepResult("create", StepStatus.COMPLETED, attempts=1, duration_ms=13.0, requests=[ok]),
            StepResult(
                "update", StepStatus.FAILED, attempts=2, duration_ms=520.5, error=error, requests=[bad]
            ),
            StepResult("delete", StepStatus.SKIPPED, reason="dependency 'update' failed"),
        ],
    )

    with pytest.raises(FlowFailed) as info:
        result.raise_for_failure()

    message = str(info.value)
    lines = message.splitlines()
    assert lines[0] == "flow 'actor_crud': update failed; 1 skipped"
    assert lines[1].split() == ["step", "status", "attempts", "ms", "requests"]
    assert lines[2].split() == ["create", "completed", "1", "13.0", "1"]
    assert "POST /api/actors/ -> 201 (12.3 ms)" in lines[3]
    assert lines[4].split() == ["update", "failed", "2", "520.5", "1"]
    assert lines[6].split() == ["delete", "skipped", "0", "-", "0"]
    assert "step 'update' failed after 2 attempt(s):" in message
    assert "AssertionError: expected 200, got PATCH /api/actors/7/ -> 400" in message
    assert "last request (failed):" in message
    assert "PATCH /api/actors/7/ -> 400 (5.0 ms)" in message
    assert 'request body:  {"name": ""}' in message
    assert "This field may not be blank." in message
    assert info.value.__cause__ is error  # pytest shows the step's own traceback above the report
    assert isinstance(info.value, AssertionError)


def test_run_failure_message_from_real_run_and_timeout_reason() -> None:
    fake = FakeTime()
    flow = Flow("mixed")

    def boom(ctx: StepContext) -> None:
        raise ValueError("boom")

    def slow(ctx: StepContext) -> None:
        fake.now += 1.0

    flow.add_step("boom", boom)
    flow.add_step("slow", slow, timeout=0.5)
    result = run(flow, fake)
    report = result.report()
    assert report.splitlines()[0] == "flow 'mixed': boom failed, slow timed_out"
    assert "ValueError: boom" in report
    assert "attempt 1 exceeded the 0.5 s timeout" in report
    FlowResult("fine", [StepResult("s", StepStatus.COMPLETED, 1)]).raise_for_failure()  # no raise


# -- as_test -------------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::pytest.PytestUnknownMarkWarning")  # the plugin registers it
def test_as_test_function_shape() -> None:
    flow = Flow("actor signup", description="Sign up and see yourself.")

    @flow.step
    def create(ctx: StepContext) -> None:
        pass

    test = flow.as_test(fixtures=["nocrud_db"])
    import inspect

    assert test.__name__ == "test_actor_signup"
    assert list(inspect.signature(test).parameters) == ["nocrud_client", "nocrud_db"]
    assert [m.name for m in test.pytestmark] == ["crud_flow"]  # type: ignore[attr-defined]
    assert test.__doc__ is not None and "Sign up" in test.__doc__ and "create" in test.__doc__
    assert test.__module__ == __name__
    test(nocrud_client=None, nocrud_db=None)  # all steps complete: returns quietly


INNER_CONFTEST = """
import pytest

def pytest_configure(config):
    config.addinivalue_line("markers", "crud_flow: end-to-end API flow (registered by the real plugin)")

@pytest.fixture
def nocrud_client():
    return None  # the inner steps do no HTTP
"""

INNER_TESTS = """
from pytest_nocrud.flows.steps import Flow

signup = Flow("actor_signup")

@signup.step
def create(ctx):
    return {"id": 1}

@signup.step(depends_on=["create"])
def read(ctx):
    assert ctx["create"]["id"] == 1

test_actor_signup = signup.as_test()

broken = Flow("broken_flow")

@broken.step
def explode(ctx):
    assert 1 + 1 == 3, "arithmetic is broken"

@broken.step(depends_on=["explode"])
def after(ctx):
    pass

test_broken = broken.as_test()

def test_plain():
    pass
"""


def test_as_test_is_collected_by_name_and_selected_by_marker_and_keyword(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(INNER_CONFTEST)
    pytester.makepyfile(test_inner=INNER_TESTS)

    collected = pytester.runpytest("-p", "no:nocrud", "--collect-only", "-q")
    collected.stdout.fnmatch_lines(
        ["test_inner.py::test_actor_signup", "test_inner.py::test_broken", "test_inner.py::test_plain"]
    )

    by_marker = pytester.runpytest("-p", "no:nocrud", "--collect-only", "-q", "-m", "crud_flow")
    by_marker.stdout.fnmatch_lines(["test_inner.py::test_actor_signup", "test_inner.py::test_broken"])
    by_marker.stdout.no_fnmatch_line("*test_plain*")

    by_keyword = pytester.runpytest("-p", "no:nocrud", "-k", "actor", "-q")
    by_keyword.assert_outcomes(passed=1, deselected=2)

    tree = pytester.runpytest("-p", "no:nocrud", "--collect-only", "-m", "crud_flow")
    tree.stdout.fnmatch_lines(["*<Function test_actor_signup>*"])

    failing = pytester.runpytest("-p", "no:nocrud", "-k", "broken")
    failing.assert_outcomes(failed=1, deselected=2)
    failing.stdout.fnmatch_lines(
        [
            "*arithmetic is broken*",  # the step's own assertion, via the chained cause
            "*FlowFailed: flow 'broken_flow': explode failed; 1 skipped*",
            "*step*status*attempts*ms*requests*",
            "*explode*failed*1*",
            "*after*skipped*0*",
        ]
    )
