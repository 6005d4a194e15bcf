"""schemathesis against the live FastAPI example, a fresh database per stateful scenario (issue 24).

Real runs of ``examples/fastapi/tests/test_bookshelf_fuzz.py`` (real uvicorn, real embedded PostgreSQL,
real Hypothesis and schemathesis): with ``BOOKSHELF_BREAK=erased_author`` the app fails only after a
sequence (delete an author, then create a book for them). With a fresh database per scenario the
stateful test finds it, and the derandomized run gives the same failing sequence 3 times of 3. With the
reset turned off (``BOOKSHELF_FUZZ_SHARED_DB=1``) what we observe is Hypothesis's complaint about the
world changing under it (``FlakyStrategyDefinition``: "Is your data generation depending on external
state?") instead of the bug. With the switch off the test passes.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("schemathesis")  # a dev dependency (the fuzz extra): always there in CI

BOOKSHELF = Path(__file__).resolve().parents[2] / "examples" / "fastapi"
SCENARIOS = "200"  # the bug needs three steps in the right order: enough scenarios to meet them


def fuzz(data_dir: Path, **env: str) -> str:
    """The example's stateful fuzz test, one process (no xdist); returns stdout + stderr."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "NOCRUD_", "BOOKSHELF_"))}
    environ.update(BOOKSHELF_FUZZ_SCENARIOS=SCENARIOS, **env)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist",
         f"--nocrud-data-dir={data_dir}", "tests/test_bookshelf_fuzz.py", "-k", "stateful"],
        cwd=BOOKSHELF, env=environ, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    return done.stdout + done.stderr


def failing_sequence(out: str) -> list[tuple[str, str, str]]:
    """``(method, path, status)`` of the requests on the failing scenario's database."""
    assert "nocrud requests since the last nocrud_db.reset()" in out, out
    section = out[out.index("nocrud requests since the last nocrud_db.reset()") :]
    section = section[: section.index("- app log")]
    rows = re.finditer(r"^\s+\d+\s+(\w+)\s+editor\s+(\S+)\s+(\S+)\s", section, re.M)
    return [(row[1], row[2], row[3]) for row in rows]


def test_a_fresh_database_per_scenario_finds_the_sequence_and_repeats_it(warm_data_dir: Path) -> None:
    sequences = []
    for _ in range(3):
        out = fuzz(warm_data_dir, BOOKSHELF_BREAK="erased_author")
        assert "1 failed" in out, out
        assert "ST101 Server error" in out, out
        sequences.append(failing_sequence(out))
    assert sequences[0] == sequences[1] == sequences[2], sequences
    steps = sequences[0]
    assert steps[-1][:1] == ("POST",) and steps[-1][1:] == ("/books", "500"), steps
    deleted = [path for method, path, status in steps if method == "DELETE" and status == "204"]
    assert deleted and deleted[0].startswith("/authors/"), steps  # the author went before the book came


def test_without_the_reset_hypothesis_sees_the_world_change_under_it(warm_data_dir: Path) -> None:
    out = fuzz(warm_data_dir, BOOKSHELF_BREAK="erased_author", BOOKSHELF_FUZZ_SHARED_DB="1")
    assert "1 failed" in out, out
    assert "FlakyStrategyDefinition" in out or "Flaky" in out, out
    assert "nocrud requests since the last nocrud_db.reset()" not in out, out  # one database throughout


def test_with_the_switch_off_the_fuzz_test_passes(warm_data_dir: Path) -> None:
    out = fuzz(warm_data_dir)
    assert re.search(r"^=+ 1 passed, 1 deselected", out, re.M), out
    assert re.search(r"databases handed out: \d+ \(.*; \d+ by nocrud_db.reset\(\)\)", out), out
