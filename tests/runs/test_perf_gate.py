"""The perf gate on real records of a tiny app: an unchanged rerun passes, a really slowed route fails it.

The app (stdlib ``http.server``) answers eight routes, each after a 2 ms pause (so the threshold, not
only the 1 ms floor, is what an unchanged rerun must stay under); with ``SLOW_ROUTE=/items/`` in its
environment it pauses 50 ms more on that route. The inner test calls the routes round-robin (so machine
load falls on all of them alike), 12 times each; ``/rare/`` and ``/rare/1/`` only 6 times each, fewer
than the gate's 10 for a route on its own, so it pools them (``/rare/*``). No assertion here is on how
long anything took: only on the gate's verdict over what was recorded.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _support import run_inner

from pytest_nocrud import cli

APP = r"""
import http.server, json, os, sys, time

SLOW = os.environ.get("SLOW_ROUTE")


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        route = self.path.split("?")[0]
        time.sleep(0.002 + (0.05 if route == SLOW else 0.0))
        data = json.dumps({"path": route}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""

TESTS = """
import pytest

OFTEN = ["/items/", "/items/7/", "/users/", "/users/3/", "/tags/", "/tags/5/"]


@pytest.mark.crud_flow
def test_calls(nocrud_client):
    for round_ in range(12):
        for path in OFTEN + (["/rare/", "/rare/1/"] if round_ % 2 == 0 else []):
            assert nocrud_client.get(path).status_code == 200
"""

INI = """
[pytest]
nocrud_builder = sql:schema
nocrud_app_command = {python} -u app.py {port}
nocrud_app_ready_path = /ready
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makefile(".py", app=APP)
    pytester.makepyfile(test_calls=TESTS)
    (pytester.path / "schema").mkdir()
    (pytester.path / "schema" / "001.sql").write_text("create table items (id serial primary key);\n")
    pytester.makeini(INI)
    return pytester


def test_gate_passes_an_unchanged_rerun_and_fails_a_slowed_route(
    project: pytest.Pytester, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record, baseline = project.path / "perf", project.path / "baseline.json"

    def run(**env: str) -> str:
        result = run_inner(project, data_dir, f"--nocrud-perf={record}", **env)
        result.assert_outcomes(passed=1)
        return sorted(p.name for p in record.iterdir())[-1]  # the newest run id

    first = run()
    assert cli.main(["perf", str(record), "--set-baseline", str(baseline)]) == 0
    stored = json.loads(baseline.read_text())["routes"]
    assert len(stored["GET /items/"]["ms"]) == 12, "the baseline keeps each request's time"

    again = run()
    capsys.readouterr()
    assert cli.main(["perf", str(record), "--baseline", str(baseline)]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert "compared 8 of 8 route(s) on p50: 6 on their own, 2 in 1 pool(s)" in out, out
    assert "  pool /rare/* (12/12 requests): GET /rare/, GET /rare/{id}/" in out
    assert "no route got slower than the threshold" in out

    slowed = run(SLOW_ROUTE="/items/")
    assert cli.main(["perf", str(record), "--baseline", str(baseline)]) == 1
    out = capsys.readouterr().out
    assert "1 route(s) or pool(s) got slower:" in out, out
    table = out[out.index("got slower:") :].splitlines()[2:]
    rows = [line for line in table if line.startswith("GET ")]
    assert len(rows) == 1 and rows[0].startswith("GET /items/ "), table

    # Older runs of the record can still be judged: the rerun, and the baseline's own run.
    assert cli.main(["perf", str(record), "--run", again, "--baseline", str(baseline)]) == 0
    assert cli.main(["perf", str(record), "--run", first, "--baseline", str(baseline)]) == 0
    assert slowed not in (first, again)
