"""``runserver`` tuned for being driven by a test harness over keep-alive connections.

Two changes to Django's development server, both about what happens between requests:

* It checks for unapplied migrations at startup on the main thread and never closes that connection
  (CONN_MAX_AGE only applies to request threads). An idle session left on the database would stand
  in the way of the harness renaming/dropping it between tests, so it is closed right away.
* Its handler writes a response in several small sends. On a keep-alive connection Nagle's algorithm
  then waits for the client's delayed ACK, costing ~40 ms per request; TCP_NODELAY removes that.
"""

from __future__ import annotations

import socket
from typing import Any

from django.core.management.commands.runserver import Command as RunserverCommand
from django.core.servers.basehttp import WSGIServer
from django.db import connections


class NoDelayWSGIServer(WSGIServer):
    def get_request(self) -> tuple[socket.socket, Any]:
        conn, address = super().get_request()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, address


class Command(RunserverCommand):
    server_cls = NoDelayWSGIServer

    def check_migrations(self) -> None:
        try:
            super().check_migrations()
        finally:
            connections.close_all()
