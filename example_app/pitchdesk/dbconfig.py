"""DATABASES["default"] from the environment.

The nocrud harness always sets both ``DATABASE_URL`` and the libpq ``PG*`` variables for the app; a
developer running the app by hand usually sets one of them. ``DATABASE_URL`` wins. Parsed with the
standard library only, so the example app needs nothing beyond Django, DRF and psycopg.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

DEFAULT_DBNAME = "pitchdesk"


def database_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """Return a Django database dict (ENGINE postgresql) from ``DATABASE_URL`` or ``PG*``."""
    url = env.get("DATABASE_URL", "").strip()
    params = _from_url(url) if url else _from_pg_env(env)
    return {
        "ENGINE": "django.db.backends.postgresql",
        # The test harness swaps the database under the running app between tests (renames a fresh
        # clone into this name after terminating the old one's connections). A persistent connection
        # would then be a dead one; 0 means a new connection per request, never a stale one.
        "CONN_MAX_AGE": 0,
        **params,
    }


def _from_pg_env(env: Mapping[str, str]) -> dict[str, Any]:
    """libpq-style variables; empty values are left empty so libpq applies its own defaults."""
    return {
        "NAME": env.get("PGDATABASE") or DEFAULT_DBNAME,
        "USER": env.get("PGUSER", ""),
        "PASSWORD": env.get("PGPASSWORD", ""),
        "HOST": env.get("PGHOST", ""),
        "PORT": env.get("PGPORT", ""),
        "OPTIONS": {},
    }


def _from_url(url: str) -> dict[str, Any]:
    """Parse ``postgresql://user:pass@host:port/db?opt=v``.

    Also accepts the libpq socket form ``postgresql://user@/db?host=/run/postgresql&port=5432`` (and a
    percent-encoded socket directory as host). Query parameters other than host/port/user/password/dbname
    are passed to psycopg as connection options (e.g. ``sslmode``, ``application_name``).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ImproperlyConfigured(f"DATABASE_URL must be a postgresql:// URL, got scheme {parts.scheme!r}")
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    host, port = _split_hostport(hostport)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    name = query.pop("dbname", "") or unquote(parts.path.lstrip("/"))
    settings = {
        "NAME": name or DEFAULT_DBNAME,
        "USER": query.pop("user", "") or unquote(user),
        "PASSWORD": query.pop("password", "") or unquote(password),
        "HOST": query.pop("host", "") or host,
        "PORT": query.pop("port", "") or port,
        "OPTIONS": query,
    }
    if settings["PORT"] and not str(settings["PORT"]).isdigit():
        raise ImproperlyConfigured(f"DATABASE_URL has a non-numeric port: {settings['PORT']!r}")
    return settings


def _split_hostport(hostport: str) -> tuple[str, str]:
    """Split ``host:port``, ``[v6]:port`` or a bare/encoded host; never lower-cases (socket paths)."""
    if hostport.startswith("["):
        host, _, rest = hostport[1:].partition("]")
        return host, rest.removeprefix(":")
    host, sep, port = hostport.rpartition(":")
    if not sep:
        host, port = hostport, ""
    return unquote(host), port
