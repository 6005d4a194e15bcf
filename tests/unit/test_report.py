"""The terminal summary block, from the plain data each process contributes (``Runtime.stats()``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pytest_nocrud.report.summary import percentile, phase_shares_line, summary_lines

if TYPE_CHECKING:  # imported at run time, pytest would try to collect the TypedDict as a test class
    from pytest_nocrud.report.record import TestRecord

SERVER = {"embedded": True, "version": "15.18", "start_ms": None}


def worker(name: str, **extra: Any) -> dict[str, Any]:
    return {"worker": name, "server": SERVER, **extra}


def test_nothing_to_say_when_no_process_touched_postgres() -> None:
    assert summary_lines([{"worker": "main"}]) == []


def test_says_where_setup_time_went() -> None:
    started = {**SERVER, "start_ms": 612.4}
    template = {"name": "nocrud_tpl_x", "key": "abcdef0123456789", "reused": False, "build_seconds": 1.5}
    lines = summary_lines(
        [
            worker("gw1", app_start_ms=431.0, handoff_ms=[1.0, 2.0, 9.0], handoff_waits=1),
            {**worker("gw0", app_start_ms=402.2, handoff_ms=[1.5], handoff_waits=0), "server": started,
             "template": template},
        ]
    )  # fmt: skip
    assert lines == [
        "server: PostgreSQL 15.18 (embedded)",
        "template: nocrud_tpl_x (key abcdef012345) built in 1.50s",
        "startup: server 612 ms; app gw0 402 ms, gw1 431 ms",
        "databases handed out: 4; handoff p50 1.50 ms, p95 9.00 ms, max 9.00 ms; 1 waited for a clone",
    ]


def test_a_server_that_was_running_is_said_so() -> None:
    assert summary_lines([worker("main")])[1] == "startup: server already running"


def test_most_requests_in_the_delayed_ack_band_are_named_once() -> None:
    slow = summary_lines([worker("gw0", requests={"count": 30, "delayed_ack": 20}),
                          worker("gw1", requests={"count": 10, "delayed_ack": 9})])  # fmt: skip
    assert [line for line in slow if "Nagle" in line] == [
        "note: 29 of 40 requests took 40-50 ms: the signature of Nagle's algorithm meeting delayed ACKs "
        "(an app server that writes responses in several small sends without TCP_NODELAY, e.g. Django's "
        "stock runserver). See README, 'Requests that take 40 ms'."
    ]
    fine = summary_lines([worker("gw0", requests={"count": 40, "delayed_ack": 5})])
    few = summary_lines([worker("gw0", requests={"count": 10, "delayed_ack": 10})])
    assert not any("Nagle" in line for line in fine + few)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 0.5), percentile(values, 0.95), percentile([7.0], 0.95)) == (50.0, 95.0, 7.0)


def test_a_pool_that_cannot_keep_up_is_named() -> None:
    behind = summary_lines([worker("gw0", handoff_ms=[30.0] * 40, handoff_waits=20)])
    assert any(line.startswith("note: 20 of 40 handoffs (50%) waited for a clone") for line in behind), behind
    assert any("a bigger template costs more per clone" in line for line in behind), behind
    fine = summary_lines([worker("gw0", handoff_ms=[1.0] * 100, handoff_waits=3)])
    assert not any("handoffs waited" in line for line in fine)


def test_a_pool_behind_a_disk_backed_server_says_by_how_much_and_to_turn_fsync_off() -> None:
    stats = [
        worker("gw0", handoff_ms=[300.0] * 30 + [2.0] * 30, handoff_waits=30, handoff_waited_ms=9000.0,
               server_fsync=True),
        worker("gw1", handoff_ms=[2.0] * 60, handoff_waits=0, handoff_waited_ms=0.0, server_fsync=True),
    ]  # fmt: skip
    notes = [line for line in summary_lines(stats) if line.startswith("note: ")]
    assert notes == [
        "note: 30 of 120 handoffs (25%) waited for a clone, 9.0 s in all: the server runs with fsync on, so "
        "every clone is written through to disk. For a test-only server (a CI service container) start it "
        "with -c fsync=off -c full_page_writes=off -c synchronous_commit=off, or its data dir on tmpfs. "
        "See README, 'When the pool cannot keep up'."
    ], notes


def test_filler_budget_leaves_the_other_workers_their_cores() -> None:
    from pytest_nocrud.runtime import filler_budget

    assert filler_budget(2, None) == 2  # one process on two cores: a second filler may clone
    assert filler_budget(2, "2") == 1  # -n 2 on two cores: no core to spare
    assert filler_budget(16, "2") == 4  # capped
    assert filler_budget(1, "garbage") == 1


def record(setup: float, call: float, teardown: float, handoff: float | None) -> TestRecord:
    return {
        "nodeid": "t.py::test", "worker": "gw0", "outcome": "passed",
        "phases": {"setup": [0.0, setup], "call": [0.0, call], "teardown": [0.0, teardown]},
        "handoff": None if handoff is None else [0.0, handoff], "seconds": setup + call + teardown,
        "failure": "", "failed_request": "", "sections": [], "requests": [], "crud": [],
    }  # fmt: skip


def test_phase_shares_are_summed_over_tests_with_the_handoff_taken_out_of_setup() -> None:
    records = [record(2.0, 6.0, 1.0, handoff=1.5), record(1.0, 10.0, 0.5, handoff=None)]
    line = "time: handoff wait 7% · setup 7% · call 78% · teardown 7% of 20.5 s (sum over tests)"
    assert phase_shares_line(records) == line
    assert line in summary_lines([worker("main")], records)
    # A handoff longer than its setup (clocks read apart) never makes setup negative.
    late = phase_shares_line([record(1.0, 1.0, 0.0, handoff=1.2)])
    assert late.startswith("time: handoff wait 50% · setup 0%"), late
    assert phase_shares_line([]) == ""
    assert phase_shares_line([record(0.0, 0.0, 0.0, handoff=None)]) == ""


def test_handoffs_say_how_many_kept_an_unchanged_database_and_the_pools_background_time() -> None:
    lines = summary_lines(
        [
            worker("gw0", handoff_ms=[1.0, 2.0, 3.0], handoff_reused=2, pool_background_s=0.5),
            worker("gw1", handoff_ms=[1.0, 9.0], handoff_waits=1, handoff_reused=0, pool_background_s=1.25),
        ]
    )
    assert (
        "databases handed out: 5 (3 fresh clones, 2 unchanged reused); handoff p50 2.00 ms, p95 9.00 ms, "
        "max 9.00 ms; 1 waited for a clone; pool background 1.8 s"
    ) in lines


def test_mid_test_resets_are_counted_among_the_handoffs() -> None:
    lines = summary_lines(
        [
            worker("gw0", handoff_ms=[1.0, 2.0, 3.0], handoff_reused=1, mid_test_resets=2),
            worker("gw1", handoff_ms=[1.0], handoff_reused=0, mid_test_resets=1),
        ]
    )
    head = "databases handed out: 4 (3 fresh clones, 1 unchanged reused; 3 by nocrud_db.reset())"
    assert any(line.startswith(head) for line in lines), lines


def test_the_reason_reuse_was_off_is_said() -> None:
    lines = summary_lines(
        [worker("main", handoff_ms=[1.0], handoff_reused=0, reuse_off="track_counts is off on the server")]
    )
    assert any("(1 fresh clone, 0 unchanged reused (reuse off: track_counts is off on the server))" in line
               for line in lines), lines  # fmt: skip


def test_the_html_header_counts_reused_databases() -> None:
    from pytest_nocrud.report.html import handoff_figures

    figures = handoff_figures([worker("gw0", handoff_ms=[1.0, 4.0], handoff_reused=1, pool_background_s=2.0)])
    assert figures is not None
    assert (figures.count, figures.split, figures.background) == (
        2, "1 fresh clone, 1 unchanged reused", "pool background 2.0 s"
    )  # fmt: skip


def test_the_startup_line_names_the_critical_path_with_each_steps_own_time() -> None:
    events = [
        ["template", 100.0, 0.30, True],  # waited for the server inside it
        ["PostgreSQL", 100.0, 0.10, True],
        ["clone pool", 100.3, 0.05, True],
        ["app", 100.35, 0.60, True],
    ]
    line = summary_lines([worker("main", events=events)])[1]
    expected = "critical path 0.95 s (template 200 ms, server 100 ms, pool 50 ms, app 600 ms)"
    assert line.endswith(expected), line
