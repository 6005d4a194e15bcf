"""Connection parameters of one PostgreSQL database, in every shape a consumer needs.

One value type passed down through the layers: psycopg gets ``.dsn``, subprocesses (builders, the app)
get ``.env()``, humans get ``.masked()`` -- which never shows the password.
"""

from __future__ import annotations

import dataclasses
from urllib.parse import quote, unquote, urlsplit

import psycopg.conninfo


@dataclasses.dataclass(frozen=True)
class ConnInfo:
    """Where one database lives. ``host`` may be a Unix socket directory (starts with ``/``)."""

    host: str
    port: int
    user: str
    dbname: str
    password: str = ""

    @classmethod
    def parse(cls, dsn: str) -> ConnInfo:
        """Read a libpq DSN (URL or ``key=value``); missing parts take libpq's defaults."""
        params = psycopg.conninfo.conninfo_to_dict(dsn)
        host = str(params.get("host") or "localhost")
        user = str(params.get("user") or "postgres")
        return cls(
            host=host,
            port=int(params.get("port") or 5432),
            user=user,
            dbname=str(params.get("dbname") or user),
            password=str(params.get("password") or ""),
        )

    def with_db(self, dbname: str) -> ConnInfo:
        return dataclasses.replace(self, dbname=dbname)

    @property
    def dsn(self) -> str:
        """A ``postgresql://`` URL that libpq, psycopg, Django and most ORMs accept."""
        auth = quote(self.user, safe="")
        if self.password:
            auth += ":" + quote(self.password, safe="")
        db = quote(self.dbname, safe="")
        if self.host.startswith("/"):
            return f"postgresql://{auth}@/{db}?host={quote(self.host, safe='/')}&port={self.port}"
        return f"postgresql://{auth}@{self.host}:{self.port}/{db}"

    def masked(self) -> str:
        """The DSN with the password replaced by ``***``: safe for logs and error messages."""
        if not self.password:
            return self.dsn
        return dataclasses.replace(self, password="***").dsn.replace("%2A%2A%2A", "***")

    def env(self) -> dict[str, str]:
        """``DATABASE_URL`` and ``PG*`` variables for a subprocess (the contract's app environment)."""
        return {
            "DATABASE_URL": self.dsn,
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGPASSWORD": self.password,
            "PGDATABASE": self.dbname,
        }

    def describe(self) -> str:
        """``host:port/dbname`` for error messages (no user, no password)."""
        return f"{self.host}:{self.port}/{self.dbname}"


def mask_password(dsn: str) -> str:
    """Mask the password of any DSN string, also one that does not parse as a ConnInfo."""
    try:
        return ConnInfo.parse(dsn).masked()
    except Exception:
        parts = urlsplit(dsn)
        if parts.password:
            return dsn.replace(":" + parts.password + "@", ":***@").replace(
                ":" + unquote(parts.password) + "@", ":***@"
            )
        return dsn
