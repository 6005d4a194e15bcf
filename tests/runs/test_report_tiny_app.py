"""Endpoint coverage from a live app's OpenAPI schema, the coverage gate, bearer client labels, and the
report of a run whose template build failed -- through whole inner runs of a tiny stdlib app.

The app (``APP``) serves ``/openapi.json`` with four operations; the inner tests call two of them as
two bearer-token users. The template comes from a one-file ``sql:`` builder.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _browser import render
from _support import JSON_HANDLER, run_inner

APP = JSON_HANDLER + r"""
import http.server, json, sys

SCHEMA = {"openapi": "3.0.0", "info": {"title": "items", "version": "1"}, "paths": {
    "/items/": {"get": {}, "post": {}},
    "/items/{item_id}/": {"get": {}, "delete": {}},
}}


class Handler(JsonHandler):

    def do_GET(self):
        if self.path == "/ready":
            return self._send(200, "ready")
        if self.path == "/openapi.json":
            return self._send(200, SCHEMA)
        if self.path == "/items/":
            return self._send(200, [1])
        if self.path == "/items/1/":
            return self._send(200, {"id": 1})
        self._send(404, "no such item")


http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""

TESTS = """
from pytest_nocrud import AsBearer


def test_two_bearer_users(nocrud_client, nocrud_client_factory):
    alice = nocrud_client_factory(as_user=AsBearer("token-for-alice-00abc"))
    bob = nocrud_client_factory(as_user=AsBearer("token-for-bob-000f00"))
    assert alice.get("/items/1/").status_code == 200
    assert bob.get("/items/").status_code == 200
    assert nocrud_client.get("/items/99/").status_code == 404
"""

INI = """
[pytest]
nocrud_builder = sql:schema
nocrud_app_command = {python} -u app.py {port}
nocrud_app_ready_path = /ready
nocrud_openapi_path = /openapi.json
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makefile(".py", app=APP)
    pytester.makepyfile(test_items=TESTS)
    (pytester.path / "schema").mkdir()
    (pytester.path / "schema" / "001.sql").write_text("create table items (id serial primary key);\n")
    pytester.makeini(INI)
    return pytester


def test_openapi_coverage_gate_and_bearer_labels(project: pytest.Pytester, data_dir: Path) -> None:
    page, report = project.path / "run.html", project.path / "coverage.json"
    result = run_inner(
        project, data_dir, f"--nocrud-html={page}", f"--nocrud-coverage={report}",
        "--nocrud-coverage-fail-under=90",
    )  # fmt: skip
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED, "every test passed, but coverage is below 90 %"
    result.stdout.fnmatch_lines([
        "endpoints: 2 of 4 called (50%) (missing: POST /items/, DELETE /items/{item_id}/)",
        "FAILED: endpoint coverage 50.0% is below --nocrud-coverage-fail-under=90",
    ])  # fmt: skip
    data = json.loads(report.read_text())
    assert data["endpoints"] == [
        {"endpoint": "GET /items/", "calls": 1},
        {"endpoint": "POST /items/", "calls": 0},
        {"endpoint": "GET /items/{item_id}/", "calls": 2},
        {"endpoint": "DELETE /items/{item_id}/", "calls": 0},
    ]
    assert data["unmatched_requests"] == 0
    shown = render(page)
    assert shown.console == [], shown.console
    assert "<td>bearer …abc</td>" in shown.dom and "<td>bearer …f00</td>" in shown.dom
    assert "token-for" not in shown.dom, "only a token's last three characters are shown"
    assert "2 of 4 called" in shown.dom

    passing = run_inner(project, data_dir, "--nocrud-coverage-fail-under=50")
    assert passing.ret == pytest.ExitCode.OK, passing.stdout.str()

    wrong_path = run_inner(
        project, data_dir, "-o", "nocrud_openapi_path=/nope.json", "--nocrud-coverage-fail-under=10"
    )
    assert wrong_path.ret == pytest.ExitCode.TESTS_FAILED, "a gate that cannot measure must not pass"
    wrong_path.stdout.fnmatch_lines(
        [
            "endpoints: not measured (nocrud_openapi_path: GET http://127.0.0.1:*/nope.json answered 404;"
            " check the path)",
            "FAILED: endpoint coverage could not be measured, so it counts as below"
            " --nocrud-coverage-fail-under=10",
        ]
    )


def test_a_failed_template_build_is_the_first_thing_on_the_page(
    project: pytest.Pytester, data_dir: Path
) -> None:
    (project.path / "schema" / "001.sql").write_text("create tabel items (id serial primary key);\n")
    page = project.path / "run.html"
    result = run_inner(project, data_dir, f"--nocrud-html={page}")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ['SETUP FAILED: template: schema/001.sql, line 1: syntax error at or near "tabel"']
    )
    shown = render(page)
    assert shown.console == [], shown.console
    body = shown.dom[shown.dom.index("<body>") :]
    assert body.index('id="setup-failed"') < body.index('class="counts"'), "the banner comes first"
    assert "Setup failed: template build." in body and "tabel" in body, body[:3000]
    assert 'data-count="error">1 error<' in body
