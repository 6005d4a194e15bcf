"""schemathesis on the live bookshelf app: every generated case, and every stateful scenario, on a
fresh database (``nocrud_fuzz``, the ``fuzz`` extra).

With ``BOOKSHELF_BREAK=erased_author`` the app has a state-dependent bug (see bookshelf/main.py) that
the stateful test finds as a sequence: delete an author, then create a book for them. Without the
switch both tests pass. Knobs for comparing (tests/runs/test_bookshelf_fuzz.py uses them):
``BOOKSHELF_FUZZ_SHARED_DB=1`` turns the reset off (the cases share the test's one database),
``BOOKSHELF_FUZZ_EXAMPLES`` / ``BOOKSHELF_FUZZ_SCENARIOS`` set how many cases / scenarios.

The editor's token is baked into the template (conftest.py): a token from a live login would be gone
with the database it was written to.
"""

from __future__ import annotations

import os

import httpx
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from pytest_nocrud.flows.fuzz import Fuzz

FRESH = os.environ.get("BOOKSHELF_FUZZ_SHARED_DB") != "1"
CASES = settings(
    max_examples=int(os.environ.get("BOOKSHELF_FUZZ_EXAMPLES", "15")),
    deadline=None,
    database=None,  # no example database: a run is what its seed makes it
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SCENARIOS = settings(
    CASES, max_examples=int(os.environ.get("BOOKSHELF_FUZZ_SCENARIOS", "40")), stateful_step_count=6
)
CATALOGUE = "^/(authors|books)"  # the operations fuzzed: authors and books, as the editor


def test_every_case_on_a_fresh_database(
    nocrud_openapi_schema, nocrud_fuzz: Fuzz, editor: httpx.Client
) -> None:
    nocrud_fuzz.fresh = FRESH
    catalogue = nocrud_openapi_schema.include(path_regex=CATALOGUE)
    operations = nocrud_fuzz.run_cases(catalogue, settings=CASES, client=editor, checks=[not_a_server_error])
    assert operations == 11


def test_stateful_scenarios_on_a_fresh_database(
    nocrud_openapi_schema, nocrud_fuzz: Fuzz, editor: httpx.Client
) -> None:
    nocrud_fuzz.fresh = FRESH
    catalogue = nocrud_openapi_schema.include(path_regex=CATALOGUE)
    workflow = nocrud_fuzz.state_machine(catalogue, client=editor, checks=[not_a_server_error])
    workflow.run(settings=SCENARIOS)
