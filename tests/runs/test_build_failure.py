"""A template build that fails runs once per run: the other xdist workers fail at once with its reason.

The inner project's ``command:`` builder appends a line to a counter file and exits 1, so how many
times the failing build ran is counted, not inferred from timings.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from _support import postgres_pids, run_inner

FAIL = """
import os, sys
with open(os.environ["COUNTER"], "a") as counter:
    counter.write(f"{os.getpid()}\\n")
print("migration 0042 failed: relation \\"users\\" already exists", file=sys.stderr)
sys.exit(1)
"""

TESTS = """
import pytest

@pytest.mark.parametrize("n", range(4))
def test_needs_the_template(nocrud_db, n):
    pass
"""


def test_a_failed_build_fails_the_other_workers_of_the_run_without_building_again(
    pytester: pytest.Pytester, data_dir: Path
) -> None:
    pytester.makeini("[pytest]\nnocrud_builder = command:{python} fail.py\nnocrud_template_inputs = fail.py")
    pytester.makepyfile(fail=FAIL, test_inner=TESTS)
    counter = pytester.path / "builds.txt"

    result = run_inner(pytester, data_dir, "-n", "2", COUNTER=str(counter))

    out = result.stdout.str()
    result.assert_outcomes(errors=4)
    assert len(counter.read_text().splitlines()) == 1, out  # built once, not once per worker
    assert out.count("builder command failed with exit code 1") >= 4, out  # every error says why
    assert "gw0" in out and "gw1" in out, out
    # The worker that waited for the lock names the one that built, with the same reason.
    assert "failed earlier in this run (worker gw" in out, out
    assert "see the first failing test of worker gw" in out, out
    assert "Traceback" not in out, out
    records = list((data_dir / "locks").glob("*.failed.*"))
    assert records and all(stat.S_IMODE(r.stat().st_mode) == 0o600 for r in records)
    assert postgres_pids(data_dir) == []

    again = run_inner(pytester, data_dir, "-n", "2", COUNTER=str(counter))

    again.assert_outcomes(errors=4)
    assert len(counter.read_text().splitlines()) == 2, "a later run builds again (the fix may be in)"
