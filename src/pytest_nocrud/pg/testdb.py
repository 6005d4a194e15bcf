"""The ``nocrud_db`` value: this test's fresh database, and connections that cannot outlive the test."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import psycopg

from ..errors import UsageError
from .conninfo import ConnInfo


@dataclasses.dataclass
class TestDatabase:
    """This test's database. Connections from ``connect()`` are closed before the next handoff."""

    __test__ = False  # not a test class, whatever pytest's name heuristics say

    info: ConnInfo
    _connections: list[psycopg.Connection[Any]] = dataclasses.field(default_factory=list, repr=False)
    opened: int = dataclasses.field(default=0, repr=False)  # connections made: not the app's sessions
    # What reset() asks for: the runtime's handoff (the fixture sets it; None outside a test).
    _fresh: Callable[[], ConnInfo] | None = dataclasses.field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.info.dbname

    @property
    def dsn(self) -> str:
        return self.info.dsn

    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        """A psycopg connection to this test's database (closed for you at the end of the test)."""
        conn = psycopg.connect(self.dsn, **kwargs)
        self.opened += 1
        self._connections.append(conn)
        return conn

    def reset(self) -> float:
        """Swap a fresh database under the running app, mid-test; returns the milliseconds it took.

        The same handoff as between two tests (the app keeps running on the same database name; its
        sessions are ended), so each generated example (Hypothesis, schemathesis) or state-machine run
        starts from the template's state. Connections from ``connect()`` are closed first, as at the
        end of a test: open new ones after the reset.
        """
        if self._fresh is None:
            raise UsageError("nocrud_db.reset() works only while its test runs")
        started = time.perf_counter()
        self.close()
        self.info = self._fresh()
        return (time.perf_counter() - started) * 1000

    def close(self) -> None:
        for conn in self._connections:
            conn.close()
        self._connections.clear()
