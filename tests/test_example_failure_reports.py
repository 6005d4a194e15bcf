"""A broken endpoint in the example app, seen through the failure report a flow author reads.

Runs a subset of ``example_app/tests`` as an inner pytest session (``-n 2``, real embedded PostgreSQL,
real Django app) with the app deliberately broken through ``PITCHDESK_BREAK`` (the app inherits the
inner pytest's environment), and checks that the report alone is enough to find the bug: which step
failed, which request (method and path), what came back (status, body excerpt), and the app's own log
lines for that test.

Both runs share one throwaway cluster (the second is warm), stopped and removed at the end.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from _support import discard_cluster_dir, new_cluster_dir, postgres_pids

EXAMPLE_APP = Path(__file__).resolve().parents[1] / "example_app"


@pytest.fixture(scope="module")
def cluster_dir() -> Iterator[Path]:
    path = new_cluster_dir()
    yield path
    discard_cluster_dir(path)
    assert postgres_pids(path) == []


def run_examples(cluster_dir: Path, selection: str, broken: str) -> subprocess.CompletedProcess[str]:
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
            f"--nocrud-data-dir={cluster_dir}",
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


def step_row(output: str, step: str, status: str) -> bool:
    """Whether the step table has ``step  status  attempts ...`` (columns separated by spaces)."""
    return re.search(rf"^\s+{re.escape(step)}\s+{status}\s+\d+\s", output, re.MULTILINE) is not None


def test_update_that_does_not_persist(cluster_dir: Path):
    # actor_update: PATCH answers 200 echoing the change, but a read-back GET shows the old value.
    run = run_examples(cluster_dir, "actor_crud and not put", "actor_update")
    out = run.stdout
    assert run.returncode == 1, out
    assert "1 failed" in out and "passed" not in out, out
    # The step, and that the others were fine.
    assert "flow 'actor_crud': update failed" in out, out
    assert step_row(out, "update", "failed") and step_row(out, "read", "completed"), out
    # The request, and what the read-back showed.
    assert "PATCH /api/actors/3/ answered 200 but a fresh GET shows:" in out, out
    assert "birth_year: sent 1990, got 1991" in out, out
    assert re.search(r"PATCH /api/actors/3/ -> 200 \(\d+\.\d ms\)", out), out
    assert 'response body: {"id": 3, "name": "Mira Okafor", "birth_year": 1991}' in out, out
    # The app's log lines for this test: its own access log of the PATCH.
    app_lines = [line for line in out.splitlines() if line.startswith("[app:")]
    assert any('"PATCH /api/actors/3/ HTTP/1.1" 200' in line for line in app_lines), out


def test_create_that_crashes(cluster_dir: Path):
    # tag_create: POST /api/tags/ raises in the view -> 500, traceback on the app's stderr.
    run = run_examples(cluster_dir, "tag_crud and not put", "tag_create")
    out = run.stdout
    assert run.returncode == 1, out
    assert "1 failed" in out and "passed" not in out, out
    assert "flow 'tag_crud': create failed; 5 skipped" in out, out
    assert step_row(out, "tag_category.create", "completed"), out
    assert step_row(out, "create", "failed"), out
    for later in ("read", "list", "update", "delete", "gone"):
        assert step_row(out, later, "skipped"), (later, out)
    # The failing request with its body, and the response.
    assert "expected 201, got POST /api/tags/ -> 500" in out, out
    assert re.search(r"request body:\s+\{\"name\": \"Coastal\", \"category\": 3\}", out), out
    assert 'response body: {"error": "Server Error (500)"}' in out, out
    # The app's traceback, from its log.
    app_lines = [line for line in out.splitlines() if line.startswith("[app:")]
    assert any("Traceback (most recent call last):" in line for line in app_lines), out
    assert any("RuntimeError: PITCHDESK_BREAK=tag_create" in line for line in app_lines), out
    assert any('"POST /api/tags/ HTTP/1.1" 500' in line for line in app_lines), out
