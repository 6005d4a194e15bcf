"""The ``nocrud_db`` value: this test's fresh database, and connections that cannot outlive the test."""

from __future__ import annotations

import dataclasses
from typing import Any

import psycopg

from .conninfo import ConnInfo


@dataclasses.dataclass
class TestDatabase:
    """This test's database. Connections from ``connect()`` are closed before the next handoff."""

    __test__ = False  # not a test class, whatever pytest's name heuristics say

    info: ConnInfo
    _connections: list[psycopg.Connection[Any]] = dataclasses.field(default_factory=list, repr=False)
    opened: int = dataclasses.field(default=0, repr=False)  # connections made: not the app's sessions

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

    def close(self) -> None:
        for conn in self._connections:
            conn.close()
        self._connections.clear()
