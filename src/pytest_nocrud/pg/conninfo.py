"""Connection parameters of one PostgreSQL database, in every shape a consumer needs.

One value type passed down through the layers: psycopg gets ``.dsn``, subprocesses (builders, the app)
get ``.env()``, humans get ``.masked()`` -- which never shows the password -- and any text on its way
to a human or a file (an error, an app log excerpt, a report) goes through ``.redact()``: the one place
that knows how a password can appear in text. ``repr()`` and ``str()`` are masked too, so ``pytest -l``
and ``--tb=long`` never print it.
"""

from __future__ import annotations

import dataclasses
from urllib.parse import quote, quote_plus

import psycopg.conninfo

from ..errors import UsageError

MASK = "***"


@dataclasses.dataclass(frozen=True)
class ConnInfo:
    """Where one database lives. ``host`` may be a Unix socket directory (starts with ``/``)."""

    host: str
    port: int
    user: str
    dbname: str
    password: str = dataclasses.field(default="", repr=False)

    @classmethod
    def parse(cls, dsn: str) -> ConnInfo:
        """Read a libpq DSN (URL or ``key=value``); missing parts take libpq's defaults.

        ``UsageError`` (never echoing the DSN, which may hold a password) when it does not parse or
        names a port that is not one number from 1 to 65535 (e.g. ``host:5432:99``).
        """
        try:
            params = psycopg.conninfo.conninfo_to_dict(dsn)
        except psycopg.ProgrammingError:
            raise UsageError(
                "not a valid PostgreSQL DSN. Accepted: postgresql://user:password@host:5432/postgres "
                "or 'host=... port=... user=... dbname=...'."
            ) from None
        host = str(params.get("host") or "localhost")
        user = str(params.get("user") or "postgres")
        port_text = str(params.get("port") or 5432).strip()
        port = int(port_text) if port_text.isdigit() else 0
        if not 1 <= port <= 65535:
            raise UsageError(
                f"the DSN's port {port_text!r} is not a number from 1 to 65535 "
                "(one host and one port: postgresql://user:password@host:5432/dbname)."
            )
        return cls(
            host=host,
            port=port,
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
        return self.redact(self.dsn)

    def redact(self, text: str) -> str:
        """``text`` with every spelling of the password (literal, URL-quoted) replaced by ``***``.

        Literal replacement, not parsing: the password may turn up anywhere -- an app that echoes
        ``DATABASE_URL`` or ``PGPASSWORD``, a traceback's locals, an assertion message.
        """
        if not self.password:
            return text
        spellings = {self.password, quote(self.password, safe=""), quote_plus(self.password, safe="")}
        for spelling in sorted(spellings, key=len, reverse=True):
            text = text.replace(spelling, MASK)
        return text

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

    def __repr__(self) -> str:
        return f"ConnInfo({self.masked()!r})"
