"""The run report of a real example run, looked at in a real headless Chromium; its perf record and
endpoint coverage (Django URLconf) from the same run.

One inner run (``-n 2``, embedded PostgreSQL, one Django app per worker) of the README examples with
``PITCHDESK_BREAK=tag_create`` so ``test_tag_crud`` fails on a 500: the page must show that failure
with its text and app log first, a timeline lane per worker, the anonymous 403 of a passing test as
expected (not red), users told apart, and no console errors.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from _browser import render

from pytest_nocrud import cli

EXAMPLE = Path(__file__).resolve().parents[2] / "example_app"


def run_examples(data_dir: Path, out: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "NOCRUD_", "PITCHDESK_"))}
    env["PITCHDESK_BREAK"] = "tag_create"
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-n",
            "2",
            f"--nocrud-data-dir={data_dir}",
            f"--nocrud-html={out / 'report' / 'run.html'}",
            f"--nocrud-perf={out / 'perf'}",
            f"--nocrud-coverage={out / 'coverage.json'}",
            "tests/test_readme_examples.py",
        ],
        cwd=EXAMPLE,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def details_of(dom: str, test: str) -> str:
    """The ``<details>`` block of one test on the page."""
    found = re.search(
        rf"<details [^>]*><summary>[^<]*<span[^>]*>\w+</span> [^<]*::{test} \(.*?</details>", dom, re.S
    )
    assert found, f"{test} is not on the page"
    return found.group(0)


def test_run_report_perf_record_and_coverage_of_an_example_run(data_dir: Path, tmp_path: Path) -> None:
    result = run_examples(data_dir, tmp_path)
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    last = result.stdout.strip().splitlines()[-1]
    assert "1 failed" in last, out
    passed = int(re.findall(r"(\d+) passed", last)[0])

    # -- terminal summary block
    page = tmp_path / "report" / "run.html"
    assert f"HTML report: {page}" in out, out
    startup = (
        r"^startup: server (\d+ ms|already running); app gw\d \d+ ms, gw\d \d+ ms;"
        r" critical path [\d.]+ s \([^)]*\)$"
    )
    assert re.search(startup, out, re.MULTILINE), out
    assert re.search(
        r"^  tag +C ✘ R - L - U - D - gone -  FAILED \(tests/test_readme_examples.py::test_tag_crud\)$",
        out,
        re.MULTILINE,
    ), out
    assert re.search(r"^  actor +C ✔ R ✔ L ✔ U ✔ D ✔ gone ✔$", out, re.MULTILINE), out
    assert re.search(
        r"^slowest tests:\n(  +[\d.]+s  tests/test_readme_examples.py::\S+ .*\n){5}", out, re.MULTILINE
    ), out

    # -- the page, as a browser renders it
    shown = render(page)
    assert shown.console == [], shown.console
    dom = shown.dom
    assert f'data-count="passed">{passed} passed<' in dom and 'data-count="failed">1 failed<' in dom
    failures = dom[dom.index('id="failures"') : dom.index('id="timeline-head"')]
    assert "test_readme_examples.py::test_tag_crud" in failures
    assert '<details class="test failed" id="t0" open="">' in failures, "the failure is open, first"
    assert "expected 201, got POST /api/tags/ -&gt; 500" in failures, "the failure text"
    assert "RuntimeError: PITCHDESK_BREAK=tag_create" in failures, "the app log lines of that test"
    lanes = re.findall(r'<div class="lane" data-worker="(gw\d)">', dom)
    assert sorted(lanes) == ["gw0", "gw1"], lanes
    for phase in ("handoff", "setup", "call", "teardown"):
        assert f'data-phase="{phase}"' in dom, phase
    assert 'data-event="app"' in dom and 'data-event="template"' in dom
    assert dom.count("data-test=") == passed + 1, "every test is a bar on its worker's lane"
    two_users = details_of(dom, "test_two_users")
    assert "<td>as writer2</td>" in two_users and "<td>nocrud_client</td>" in two_users, two_users
    two_voters = details_of(dom, "test_one_vote_per_user")
    assert "<td>as writer</td>" in two_voters and "<td>as writer2</td>" in two_voters, two_voters
    anonymous = details_of(dom, "test_anonymous_cannot_create_actors")
    assert '<tr class="expected">' in anonymous and "unexpected" not in anonymous, "its 403 was the point"
    assert 'id="slowest-tests"' in dom and 'id="slowest-endpoints"' in dom and "POST /api/tags/" in dom
    assert "writer-pass" not in dom and "csrftoken" not in dom.lower()
    # Clicking a bar links to #tN; the page's script opens that test's details.
    opened = render(page, "#t5").dom
    assert re.search(r'<details class="test \w+" id="t5" open="">', opened), "the linked test opens"

    # -- perf record: one file per worker, one line per request
    runs = list((tmp_path / "perf").iterdir())
    assert len(runs) == 1 and sorted(p.name for p in runs[0].iterdir()) == ["gw0.ndjson", "gw1.ndjson"]
    lines = [json.loads(line) for f in runs[0].iterdir() for line in f.read_text().splitlines()]
    assert set(lines[0]) == {
        "run_id",
        "git_sha",
        "ts",
        "test",
        "worker",
        "method",
        "route",
        "path",
        "status",
        "ms",
    }
    assert {line["run_id"] for line in lines} == {runs[0].name}
    assert any(line["route"] == "/api/actors/{id}/" and line["path"] != line["route"] for line in lines)
    assert any(line["status"] == 500 and line["route"] == "/api/tags/" for line in lines)
    baseline = tmp_path / "baseline.json"
    assert cli.main(["perf", str(tmp_path / "perf"), "--set-baseline", str(baseline)]) == 0
    assert "GET /api/actors/{id}/" in json.loads(baseline.read_text())["routes"]
    assert cli.main(["perf", str(tmp_path / "perf"), "--baseline", str(baseline), "--min-samples", "1"]) == 0

    # -- endpoint coverage from the Django URLconf
    coverage = json.loads((tmp_path / "coverage.json").read_text())
    calls = {row["endpoint"]: row["calls"] for row in coverage["endpoints"]}
    assert calls["POST /api/actors/"] >= 2 and calls["GET /api/actors/{pk}/"] >= 1, calls
    assert calls["DELETE /api/users/{pk}/"] == 0, "the README examples never delete a user"
    assert "* /api/health/" in calls, "a plain function view takes any method"
    assert calls["POST /api/auth/login/"] == 0, "logins are baked into the template (@template_setup)"
    line = f"endpoints: {coverage['called']} of {coverage['total']} called"
    assert line in out and "missing: " in out, out


def test_the_browser_check_sees_console_errors(tmp_path: Path) -> None:
    """The 'no console errors' assertion above can fail: a broken script is reported."""
    page = tmp_path / "broken.html"
    page.write_text("<!doctype html><p>x</p><script>console.error('boom'); notDefined();</script>")
    console = render(page).console
    assert any("boom" in line for line in console), console
    assert any("notDefined is not defined" in line for line in console), console
