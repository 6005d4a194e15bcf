"""A test that swaps fresh databases mid-test (``nocrud_db.reset()``) shows, when it fails, the requests
on its last database: what Hypothesis or schemathesis replayed last is the failing example."""

from __future__ import annotations

import httpx

from pytest_nocrud.flows.timeline import RequestLog, make_client
from pytest_nocrud.report.record import TestTrace as Trace
from pytest_nocrud.state import TestState


def _client(log: RequestLog) -> httpx.Client:
    client = make_client("http://app.test", log=log)
    client._transport = httpx.MockTransport(
        lambda request: httpx.Response(500 if "boom" in request.url.path else 200)
    )
    return client


def test_failure_shows_the_requests_since_the_last_reset_numbered_as_in_the_whole_log() -> None:
    log = RequestLog()
    with _client(log) as client:
        client.get("/ok/1")
        log.new_database()
        client.get("/ok/2")
        client.post("/ok/3")
        log.new_database()
        client.delete("/authors/1/ok")
        client.post("/books/boom")
    state = TestState(Trace("t.py::test_x", "main"), requests=log)

    (title, table), *_ = state.failure_sections()

    assert title == "nocrud requests since the last nocrud_db.reset() (database 3 of this test)"
    assert "(3 earlier request(s) on 2 earlier database(s) not shown)" in table
    assert "/ok/2" not in table and "/ok/1" not in table
    rows = [line.split() for line in table.splitlines()[2:]]
    assert [row[:3] for row in rows] == [["4", "DELETE", "/authors/1/ok"], ["5", "POST", "/books/boom"]]
    assert rows[1][3] == "500"


def test_without_a_reset_the_whole_log_is_shown() -> None:
    log = RequestLog()
    with _client(log) as client:
        client.get("/ok/1")
        client.get("/ok/2")
    (title, table), *_ = TestState(Trace("t.py::test_x", "main"), requests=log).failure_sections()
    assert title == "nocrud requests"
    assert "/ok/1" in table and "/ok/2" in table
