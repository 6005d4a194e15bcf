"""Django's ``runserver``, fixed for being driven by a test harness: the default app command for Django.

Run as a script (``python django_runserver.py HOST:PORT`` in the directory of ``manage.py``), not
with ``-m``, so the app process does not import pytest through this package. It runs the project's own
``manage.py runserver`` -- its settings, its ``runserver`` subclass if it has one -- with two fixes:

* Django writes a response in several small sends. On a keep-alive connection Nagle's algorithm then
  holds the last one until the client's delayed ACK: ~40 ms per request (measured on noCRUD's app:
  52.0 vs 11.2 ms per GET, 44.2 vs 2.5 ms per POST). TCP_NODELAY on accepted sockets removes that.
* ``runserver`` checks for unapplied migrations on its main thread and never closes that connection;
  an idle session left on the test database would have to be ended at the first handoff.

It waits, once booted and before its first database access, for the plugin's check of the settings
(``NOCRUD_START_GATE``), so the two overlap. And one check: settings whose ``DATABASES`` ignore
``DATABASE_URL``/``PG*`` (``DB_NAME`` with the developer's database as default) would send every
test's writes there; the app refuses to start instead, naming both databases.
"""

from __future__ import annotations

import os
import runpy
import socket
import sys
import time
from typing import Any


def _patch_django() -> None:
    from django.core.management.commands import runserver  # type: ignore[import-untyped]
    from django.core.servers import basehttp  # type: ignore[import-untyped]

    accept = basehttp.WSGIServer.get_request

    def get_request(self: Any) -> tuple[socket.socket, Any]:
        conn, address = accept(self)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, address

    basehttp.WSGIServer.get_request = get_request

    check_migrations = runserver.Command.check_migrations

    def check_and_close(self: Any) -> None:
        from django.core.management.base import CommandError  # type: ignore[import-untyped]
        from django.db import connections  # type: ignore[import-untyped]

        _wait_for_the_gate(CommandError)

        configured = connections["default"].settings_dict.get("NAME")
        expected = os.environ.get("PGDATABASE")
        if expected and configured != expected:
            raise CommandError(
                f"pytest-nocrud: DATABASES['default'] names database {configured!r}, not the test "
                f"database {expected!r} given in DATABASE_URL/PGDATABASE; the tests would write there. "
                "Make the settings read DATABASE_URL or PG*, or map your own variables in "
                "nocrud_app_env (e.g. DB_NAME={dbname})."
            )
        try:
            check_migrations(self)
        finally:
            connections.close_all()

    runserver.Command.check_migrations = check_and_close


GATE_TIMEOUT = 120.0


def _wait_for_the_gate(error: type[Exception]) -> None:
    """Booted (imports, settings, system checks), nothing touched a database yet: wait here until the
    plugin's check of the settings passed (``NOCRUD_START_GATE`` names a file it creates then), so
    Django's start-up overlaps that check instead of following it. Stopped by the plugin otherwise."""
    gate = os.environ.get("NOCRUD_START_GATE")
    if not gate:
        return
    deadline = time.monotonic() + GATE_TIMEOUT
    while not os.path.exists(gate):
        if time.monotonic() > deadline:
            raise error(f"pytest-nocrud: the start gate {gate} never opened")
        time.sleep(0.002)


def main(argv: list[str]) -> None:
    """``django_runserver.py ADDRPORT [runserver options]``: run ./manage.py runserver, patched."""
    sys.path[0] = os.getcwd()  # the project, as for manage.py; not this package's dir (its html.py!)
    _patch_django()
    sys.argv = ["manage.py", "runserver", *argv, "--noreload"]
    runpy.run_path("manage.py", run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
