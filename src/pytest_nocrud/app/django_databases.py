"""Print where a Django project's ``DATABASES`` really connect, in the app's environment.

Run as a script (``python django_databases.py`` in the directory of ``manage.py``, with the app's
environment), not with ``-m``, so the project is imported the way its own ``manage.py`` imports it and
never imports pytest. It goes through ``manage.py shell -c`` (the project's settings module, whatever
``manage.py`` sets), or ``django.setup()`` when there is no ``manage.py`` but ``DJANGO_SETTINGS_MODULE``.
For each alias it prints what the backend would pass to libpq, with libpq's own environment fallbacks
(``PGHOST``...) filled in -- so ``HOST = os.environ.get("DB_HOST", "dev.example.com")`` shows
``dev.example.com`` -- on one line: ``NOCRUD-DATABASES <json>``. No connection is opened and no password
is printed.
"""

from __future__ import annotations

import os
import runpy
import sys

MARKER = "NOCRUD-DATABASES "

_REPORT = r"""
import json, os
from django.db import connections

def _where(alias):
    conn = connections[alias]
    engine = conn.settings_dict.get("ENGINE", "")
    if conn.vendor != "postgresql":
        return {"alias": alias, "engine": engine, "dbname": str(conn.settings_dict.get("NAME") or "")}
    params = conn.get_connection_params()
    dbname = params.get("dbname") or params.get("database") or os.environ.get("PGDATABASE") or ""
    user = params.get("user") or os.environ.get("PGUSER") or ""
    return {
        "alias": alias,
        "engine": engine,
        "dbname": str(dbname or user),
        "host": str(params.get("host") or os.environ.get("PGHOST") or ""),
        "port": str(params.get("port") or os.environ.get("PGPORT") or "5432"),
        "user": str(user),
        "service": str(params.get("service") or ""),
    }

print("NOCRUD-DATABASES " + json.dumps([_where(alias) for alias in connections]), flush=True)
"""


def main() -> None:
    sys.path[0] = os.getcwd()  # the project, as for manage.py; not this package's directory
    if os.path.isfile("manage.py"):
        sys.argv = ["manage.py", "shell", "-c", _REPORT]
        runpy.run_path("manage.py", run_name="__main__")
        return
    import django  # type: ignore[import-untyped]

    django.setup()
    exec(_REPORT, {})  # noqa: S102 - our own constant code, as manage.py shell -c would run it


if __name__ == "__main__":
    main()
