"""--nocrud-html: one page with every test's requests, gathered from all xdist workers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "example_app"


def test_html_timeline_gathers_every_workers_tests(data_dir: Path, tmp_path: Path) -> None:
    page = tmp_path / "report" / "timeline.html"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "2", f"--nocrud-data-dir={data_dir}",
         f"--nocrud-html={page}", "tests/test_readme_examples.py"],
        cwd=EXAMPLE, capture_output=True, text=True, env=os.environ.copy(),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"request timeline: {page}" in result.stdout
    text = page.read_text()
    for test in ("test_actor_crud", "test_two_users", "test_pitch_locks_after_comment", "test_tag_crud"):
        assert f"tests/test_readme_examples.py::{test}" in text
    assert "/api/actors/" in text and "PATCH" in text and "<td>201</td>" in text
    assert "gw0" in text and "gw1" in text, "both workers' tests are on the page"
    assert "writer-pass" not in text and "csrftoken" not in text.lower()
