"""The polling loop and the output quoting that the server, the app and serial mode share."""

from __future__ import annotations

import time

from pytest_nocrud.pg.procs import indented, poll


def test_poll_looks_once_more_after_the_deadline_then_stops() -> None:
    started = time.monotonic()
    rounds = list(poll(0.05, first=0.001, longest=0.01))
    assert rounds[-1] is False and all(rounds[:-1]) and len(rounds) >= 3
    assert 0.05 <= time.monotonic() - started < 1.0


def test_poll_stops_as_soon_as_the_caller_is_done() -> None:
    started, seen = time.monotonic(), []
    for in_time in poll(10.0):
        seen.append(in_time)
        if len(seen) == 2:
            break
    assert seen == [True, True] and time.monotonic() - started < 1.0


def test_indented_quotes_the_last_lines_and_says_when_there_is_none() -> None:
    output = "\n\nfirst\n  second\nthird\n\n"
    assert indented(output) == "    first\n      second\n    third"
    assert indented(output, last=2) == "      second\n    third"
    assert indented(output, prefix="  ") == "  first\n    second\n  third"
    assert indented("  \n", empty="(no output)") == "    (no output)"
    assert indented("") == ""
