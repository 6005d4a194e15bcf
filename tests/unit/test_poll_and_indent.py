"""The polling loop and the output quoting that the server, the app and serial mode share."""

from __future__ import annotations

import pytest

from pytest_nocrud.pg import procs
from pytest_nocrud.pg.procs import indented, poll


class FakeClock:
    """Stands in for ``time`` inside procs: sleeping only advances the clock (and is recorded)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(procs, "time", fake)
    return fake


def test_poll_looks_once_more_after_the_deadline_then_stops(clock: FakeClock) -> None:
    rounds = list(poll(0.05, first=0.001, longest=0.01))
    assert rounds[-1] is False and all(rounds[:-1]) and len(rounds) >= 3
    assert clock.sleeps[:4] == pytest.approx([0.001, 0.002, 0.004, 0.008]), "growing delays"
    assert max(clock.sleeps) == pytest.approx(0.01), "capped at longest"
    assert sum(clock.sleeps[:-1]) < 0.05 <= sum(clock.sleeps), "the last round comes right after the deadline"


def test_poll_stops_as_soon_as_the_caller_is_done(clock: FakeClock) -> None:
    seen: list[bool] = []
    for in_time in poll(10.0):
        seen.append(in_time)
        if len(seen) == 2:
            break
    assert seen == [True, True]
    assert clock.sleeps == [0.002], "one delay between the two rounds, none after the caller left"


def test_indented_quotes_the_last_lines_and_says_when_there_is_none() -> None:
    output = "\n\nfirst\n  second\nthird\n\n"
    assert indented(output) == "    first\n      second\n    third"
    assert indented(output, last=2) == "      second\n    third"
    assert indented(output, prefix="  ") == "  first\n    second\n  third"
    assert indented("  \n", empty="(no output)") == "    (no output)"
    assert indented("") == ""
