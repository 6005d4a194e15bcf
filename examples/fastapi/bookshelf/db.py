"""The database: one pooled engine per process, a session per request.

DATABASE_URL is the only setting (pytest-nocrud sets it for the Alembic build and for the app). The
engine is an ordinary ``QueuePool`` engine with ``pool_pre_ping=True``: pytest-nocrud swaps the database
under a running app before every test and ends the sessions on the old one, and the pre-ping makes the
pool replace such a connection instead of handing a dead one to a request.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from sqlalchemy import create_engine
from sqlalchemy.orm import Session, sessionmaker


def database_url() -> str:
    """DATABASE_URL as SQLAlchemy wants it: ``postgresql://`` means psycopg 3 here, not psycopg2."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        raise RuntimeError("bookshelf: set DATABASE_URL (postgresql://user:pass@host:port/dbname)")
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


engine = create_engine(database_url(), pool_pre_ping=True, pool_size=5)
SessionLocal = sessionmaker(engine, expire_on_commit=False)


def get_session() -> Iterator[Session]:
    """FastAPI dependency: one session per request, closed (connection back to the pool) afterwards."""
    with SessionLocal() as session:
        yield session
