"""No isolation (the overhead lower bound): one shared, dirty database per worker for the whole run.

Copied next to the example flows by bench/run.py. It replaces pytest-nocrud's ``nocrud_db`` with one that
never hands off: the worker's first clone stays under the stable name, so every test sees the writes of
the tests before it. Everything else -- embedded server, template, app per worker, clients -- is the
plugin's own code, so the difference to the default run is exactly the per-test handoff. Flows that
assert exact fixture rows are expected to fail here; run.py reports pass/fail counts per contender.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pytest_nocrud.fixtures import runtime_of
from pytest_nocrud.pg.template import Template
from pytest_nocrud.pg.testdb import TestDatabase


@pytest.fixture
def nocrud_db(request: pytest.FixtureRequest, nocrud_template: Template) -> Iterator[TestDatabase]:
    """The worker's one database, handed over once (first test) and kept dirty for the rest of the run."""
    pool = runtime_of(request.config).pool()
    if not pool.has_stable:
        pool.handoff()
    database = TestDatabase(pool.info)
    yield database
    database.close()
