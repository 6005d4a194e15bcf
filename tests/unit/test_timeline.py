"""Request timeline: masking, table rendering, and recording real HTTP exchanges.

The recording tests talk to a real (stdlib) HTTP server on loopback: they check what the httpx hooks
record, not any application's behaviour.
"""

from __future__ import annotations

import http.server
import json
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

try:
    import pytest_nocrud  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from pytest_nocrud.flows.steps import Flow, StepContext, expect_status
from pytest_nocrud.flows.timeline import (
    MASK,
    RequestLog,
    RequestRecord,
    format_table,
    log_for,
    make_client,
    mask_body,
)


def test_mask_body_masks_credentials_in_json_and_forms() -> None:
    body = {"username": "ann", "password": "pw1", "nested": [{"api_token": "t", "x": 1}], "newPassword": "p"}
    masked = json.loads(mask_body(json.dumps(body).encode(), "application/json"))
    assert masked == {
        "username": "ann",
        "password": MASK,
        "nested": [{"api_token": MASK, "x": 1}],
        "newPassword": MASK,
    }
    assert mask_body(b"username=ann&password=pw1", "application/x-www-form-urlencoded") == (
        "username=ann&password=***"
    )
    assert "pw1" not in mask_body(b"oops password: pw1, more", "text/plain")
    assert mask_body(b"\xff\xfe\x00", "application/octet-stream") == "<3 bytes of binary data>"
    assert mask_body(b"", "application/json") == ""


def test_mask_body_caps_length() -> None:
    text = mask_body(b"a" * 2000, "text/plain", limit=100)
    assert text.startswith("a" * 100) and text.endswith("... [1900 more chars]")


def test_format_table_columns_and_elision() -> None:
    rows = [RequestRecord("GET", f"/api/items/{i}/", started=0.0, status=200, ms=1.25) for i in range(10)]
    rows.append(RequestRecord("POST", "/api/items/", started=0.0))  # no response
    table = format_table(rows, max_rows=4)
    lines = table.splitlines()
    assert lines[0].split() == ["#", "method", "path", "status", "ms"]
    assert lines[1].split() == ["1", "GET", "/api/items/0/", "200", "1.2"]
    assert lines[3].split() == ["...", "(7", "more)"]
    assert lines[-1].split() == ["11", "POST", "/api/items/", "-", "-"]
    assert format_table([]) == "  (no requests)"


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def _reply(self, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path.startswith("/ok"):
            self._reply(200, {"path": self.path, "token": "server-secret"})
        else:
            self._reply(404, {"detail": "Not found."})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        received = json.loads(self.rfile.read(length) or b"{}")
        self._reply(201, {**received, "id": 1})


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_log_records_requests_masked(base_url: str) -> None:
    log = RequestLog()
    with make_client(base_url, log=log, headers={"Authorization": "Bearer abc"}) as client:
        assert log_for(client) is log
        client.post("/items/?x=1", json={"name": "n", "password": "hunter2"}, headers={"X-CSRFToken": "c"})
        mark = log.mark()
        client.get("/missing")
    first, second = log.entries
    assert (first.method, first.path, first.status) == ("POST", "/items/?x=1", 201)
    assert first.ms is not None and first.ms > 0
    assert "hunter2" not in first.request_excerpt and '"password": "***"' in first.request_excerpt
    assert '"password": "***"' in first.response_excerpt  # echoed back: masked there too
    assert first.request_headers["authorization"] == MASK
    assert first.request_headers["x-csrftoken"] == MASK
    assert "abc" not in repr(log.entries)
    assert log.since(mark) == [second]
    assert (second.status, second.failed) == (404, True)
    assert log.last_failure() is second
    assert "GET     /missing" in log.format_table()


def test_request_without_response_stays_in_the_log() -> None:
    with socket.socket() as sock:  # a port with nothing listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = RequestLog()
    with make_client(f"http://127.0.0.1:{port}", log=log, timeout=1.0) as client:
        with pytest.raises(httpx.TransportError):
            client.get("/api/")
    (entry,) = log.entries
    assert entry.status is None and entry.failed
    assert entry.line() == "GET /api/ -> no response"


def test_flow_steps_list_their_own_requests(base_url: str) -> None:
    flow = Flow("two_steps")

    @flow.step
    def first(ctx: StepContext) -> None:
        expect_status(ctx.client.get("/ok/1"), 200)
        expect_status(ctx.client.get("/ok/2"), 200)

    @flow.step(depends_on=["first"])
    def second(ctx: StepContext) -> None:
        expect_status(ctx.client.get("/nope"), 200)

    with make_client(base_url) as client:  # no log given: the flow attaches one
        result = flow.run(client)
    assert [q.path for q in result["first"].requests] == ["/ok/1", "/ok/2"]
    assert [(q.path, q.status) for q in result["second"].requests] == [("/nope", 404)]
    report = result.report()
    assert "expected 200, got GET /nope -> 404" in report
    assert "last request (failed):" in report and '{"detail": "Not found."}' in report
