"""The PostgreSQL part: the embedded cluster or the ``--nocrud-dsn`` server, acquired on first use."""

from __future__ import annotations

from ..errors import (
    ServerError,
)
from ..pg import admin
from ..pg.pool import collect_garbage
from ..pg.server import EmbeddedCluster, PostgresServer, check_dsn, dsn_stopped_error
from .base import RuntimeBase


class ServerPart(RuntimeBase):
    """The server in use, and whether it is still up after a database error."""

    def postgres(self) -> PostgresServer:
        return self.once("PostgreSQL", self._acquire_postgres)

    def _acquire_postgres(self) -> PostgresServer:
        if self.settings.dsn:
            return check_dsn(self.settings.dsn)
        self._cluster = EmbeddedCluster(self.home, bindir=self.settings.pg_bindir)
        server = self._cluster.acquire(self.owner)
        if self._cluster.disk_is_full(log=False):  # e.g. a killed run's databases: drop them first
            with admin.connect(server.admin, purpose="gc") as conn:
                collect_garbage(conn)
            self._cluster.keep_reserve()
        return server

    @property
    def cluster(self) -> EmbeddedCluster | None:
        """The embedded cluster this process uses (None with ``--nocrud-dsn`` or before first use)."""
        return self._cluster

    def _server_stopped(self) -> ServerError | None:
        """After a database error: is the server itself gone? (one clear error instead of many)"""
        if self._cluster is not None:
            return self._cluster.stopped_error()
        return dsn_stopped_error(self.postgres().admin)
