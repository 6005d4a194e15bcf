"""Broken endpoints in the example app, seen through the failure report a flow author reads.

Runs two CRUD flows of ``example_app/tests`` as one inner pytest session (``-n 2``, real embedded
PostgreSQL, real Django app per worker) with the app deliberately broken through ``PITCHDESK_BREAK``
(the app inherits the inner pytest's environment), and checks that each test's report alone is enough
to find the bug: which step failed, which request (method and path), what came back (status, body
excerpt), and the app's own log lines for that test.

One inner run covers both breakages (one cold cluster instead of two, even when the outer run spreads
tests over xdist workers); its report is split per failed test so each check reads only its own test's
section. The cluster (``data_dir`` fixture) is stopped and removed afterwards.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

EXAMPLE_APP = Path(__file__).resolve().parents[2] / "example_app"


def run_examples(data_dir: Path, selection: str, broken: str) -> subprocess.CompletedProcess[str]:
    """The example suite's ``-k selection`` with ``PITCHDESK_BREAK=broken``; output is stdout+stderr."""
    env = {
        name: value
        for name, value in os.environ.items()
        # Not the outer run's: xdist worker identity, pytest options, plugin settings, breakage.
        if not name.startswith(("PYTEST_", "NOCRUD_", "PITCHDESK_"))
    }
    env["PITCHDESK_BREAK"] = broken
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-n",
            "2",
            "-k",
            selection,
            f"--nocrud-data-dir={data_dir}",
            "tests/test_crud_flows.py",
        ],
        cwd=EXAMPLE_APP,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=180,
        check=False,
    )


def failure_sections(output: str) -> dict[str, str]:
    """``{test name: its failure block}`` from pytest's ``____ test_x ____`` headers."""
    parts = re.split(r"^_{3,} (\S+) _{3,}$", output, flags=re.MULTILINE)
    sections = dict(zip(parts[1::2], parts[2::2], strict=True))
    return {
        name: re.split(r"^-+ pytest-nocrud -+$|^=+ short test summary", text, flags=re.MULTILINE)[0]
        for name, text in sections.items()
    }


def step_row(report: str, step: str, status: str) -> bool:
    """Whether the step table has ``step  status  attempts ...`` (columns separated by spaces)."""
    return re.search(rf"^\s+{re.escape(step)}\s+{status}\s+\d+\s", report, re.MULTILINE) is not None


def app_log(report: str) -> list[str]:
    return [line for line in report.splitlines() if line.startswith("[app:")]


def test_broken_endpoints_are_reported_by_step_request_response_and_app_log(data_dir: Path):
    run = run_examples(data_dir, "(actor_crud or tag_crud) and not put", "actor_update,tag_create")
    out = run.stdout
    assert run.returncode == 1, out
    assert "2 failed" in out and "passed" not in out, out
    sections = failure_sections(out)
    assert sorted(sections) == ["test_actor_crud", "test_tag_crud"], out

    # actor_update: PATCH answers 200 echoing the change, but a read-back GET shows the old value.
    actor = sections["test_actor_crud"]
    assert "flow 'actor_crud': update failed" in actor, actor
    assert step_row(actor, "update", "failed") and step_row(actor, "read", "completed"), actor
    assert "PATCH /api/actors/3/ answered 200 but a fresh GET shows:" in actor, actor
    assert "birth_year: sent 1990, got 1991" in actor, actor
    assert re.search(r"PATCH /api/actors/3/ -> 200 \(\d+\.\d ms\)", actor), actor
    assert 'response body: {"id": 3, "name": "Mira Okafor", "birth_year": 1991}' in actor, actor
    assert any('"PATCH /api/actors/3/ HTTP/1.1" 200' in line for line in app_log(actor)), actor
    assert not any("Traceback" in line for line in app_log(actor)), "another test's log leaked in"

    # tag_create: POST /api/tags/ raises in the view -> 500, traceback on the app's stderr.
    tag = sections["test_tag_crud"]
    assert "flow 'tag_crud': create failed; 5 skipped" in tag, tag
    assert step_row(tag, "tag_category.create", "completed") and step_row(tag, "create", "failed"), tag
    for later in ("read", "list", "update", "delete", "gone"):
        assert step_row(tag, later, "skipped"), (later, tag)
    assert "expected 201, got POST /api/tags/ -> 500" in tag, tag
    assert re.search(r'request body:\s+\{"name": "Coastal", "category": 3\}', tag), tag
    assert 'response body: {"error": "Server Error (500)"}' in tag, tag
    log = app_log(tag)
    assert any("Traceback (most recent call last):" in line for line in log), tag
    assert any("RuntimeError: PITCHDESK_BREAK=tag_create" in line for line in log), tag
    assert any('"POST /api/tags/ HTTP/1.1" 500' in line for line in log), tag
