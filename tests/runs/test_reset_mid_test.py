"""``nocrud_db.reset()``: a fresh database under the running app between generated examples.

Real Hypothesis, a real app (``_support.ITEMS_APP``) and real clones. Every example and every
state-machine run posts names and expects to find the seed alone first; with ``NO_RESET=1`` the same
tests skip the reset call, and what earlier examples left behind makes them fail. With
``ITEMS_LIMIT=3`` the app has a state-dependent bug (500 once the table holds 3 rows): with a reset per
example Hypothesis shrinks it to the same minimal example every time, and the failure shows that
example's requests only.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from _support import FUZZ_RUN_BLOCKS, ITEMS_APP, ITEMS_SCHEMA, run_inner

pytest.importorskip("hypothesis")  # a dev dependency (the fuzz extra): always there in CI

TESTS = """
import os
from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

NAMES = st.text(alphabet="abcdefgh", min_size=1, max_size=4)
EXAMPLES = settings(
    max_examples=12, derandomize=True, database=None, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def fresh(nocrud_db):
    if os.environ.get("NO_RESET") != "1":
        nocrud_db.reset()
        with Path("resets.txt").open("a") as f:
            f.write("reset\\n")


@EXAMPLES
@given(names=st.lists(NAMES, min_size=1, max_size=3, unique=True))
def test_each_example_starts_from_the_seed(nocrud_db, nocrud_client, names):
    fresh(nocrud_db)
    assert nocrud_client.get("/items").json() == ["seed"]
    for name in names:
        response = nocrud_client.post("/items", json={"name": name})
        assert response.status_code == 201, response.text
    assert nocrud_client.get("/items").json() == sorted(["seed", *names])


def test_each_state_machine_run_starts_from_the_seed(nocrud_db, nocrud_client):
    class Items(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            fresh(nocrud_db)
            self.names = {"seed"}

        @rule(name=NAMES)
        def add(self, name):
            if name not in self.names:
                assert nocrud_client.post("/items", json={"name": name}).status_code == 201
                self.names.add(name)

        @invariant()
        def listed(self):
            assert nocrud_client.get("/items").json() == sorted(self.names)

    run_state_machine_as_test(Items, settings=settings(EXAMPLES, max_examples=6, stateful_step_count=4))


def test_a_reset_closes_the_tests_own_connections(nocrud_db):
    conn = nocrud_db.connect(autocommit=True)
    conn.execute("INSERT INTO item VALUES ('mine')")
    nocrud_db.reset()
    assert conn.closed
    with nocrud_db.connect() as again:
        assert [row[0] for row in again.execute("SELECT name FROM item")] == ["seed"]
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    (pytester.path / "app.py").write_text(ITEMS_APP)
    (pytester.mkdir("schema") / "001.sql").write_text(ITEMS_SCHEMA)
    pytester.makeini("[pytest]\nnocrud_builder = sql:schema\nnocrud_app_command = {python} app.py {port}\n")
    pytester.makepyfile(test_examples=TESTS)
    return pytester


def test_every_example_and_state_machine_run_gets_a_fresh_database(
    project: pytest.Pytester, data_dir: Path
) -> None:
    result = run_inner(project, data_dir, "-p", "no:xdist", blocked=FUZZ_RUN_BLOCKS)

    out = result.stdout.str()
    result.assert_outcomes(passed=3)
    resets = len((project.path / "resets.txt").read_text().splitlines()) + 1  # + the connections test's
    assert resets >= 12 + 6, out
    assert re.search(rf"^databases handed out: \d+ \(.*; {resets} by nocrud_db.reset\(\)\)", out, re.M), out


def test_without_the_reset_examples_see_what_earlier_ones_left(
    project: pytest.Pytester, data_dir: Path
) -> None:
    result = run_inner(
        project, data_dir, "-p", "no:xdist", "-k", "seed", blocked=FUZZ_RUN_BLOCKS, NO_RESET="1"
    )

    out = result.stdout.str()
    result.assert_outcomes(failed=2)
    assert not (project.path / "resets.txt").exists()
    # the second example finds the first one's names in the table
    assert re.search(r"assert \[.*'seed'.*\] == \['seed'\]|assert \['seed', .*\] == ", out), out


@pytest.mark.parametrize("run", [1, 2, 3])
def test_a_state_dependent_bug_shrinks_to_the_same_example_and_shows_its_requests(
    project: pytest.Pytester, data_dir: Path, run: int
) -> None:
    ini = "nocrud_app_env=ITEMS_LIMIT=3"
    result = run_inner(
        project, data_dir, "-p", "no:xdist", "-k", "test_each_example", "-o", ini, blocked=FUZZ_RUN_BLOCKS
    )

    out = result.stdout.str()
    result.assert_outcomes(failed=1)
    falsified = r"(Falsifying example|Failing test case): test_each_example_starts_from_the_seed\("
    assert re.search(falsified, out), out
    assert "names = ['a', 'b', 'c']" in out, out  # the minimal example: seed + 2 rows, the third POST refused
    section = out[out.index("nocrud requests since the last nocrud_db.reset()") :]
    rows = [line.split() for line in section.splitlines()[1:] if re.match(r"^\s+\d+\s+(GET|POST)", line)]
    assert [(row[1], row[2], row[3]) for row in rows[:4]] == [
        ("GET", "/items", "200"),
        ("POST", "/items", "201"),
        ("POST", "/items", "201"),
        ("POST", "/items", "500"),
    ], section
    assert "earlier database(s) not shown" in section
