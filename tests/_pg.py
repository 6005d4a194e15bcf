"""A throwaway PostgreSQL cluster for the builder tests -- tiny and isolated so the project's own
``nocrud_postgres`` fixture can replace it later.

initdb/postgres refuse to run as root, so when we are root they run as the ``postgres`` OS user on a
data dir and socket dir that user owns (created directly under the system temp dir: pytest's
``tmp_path`` parents are 0700 root and not traversable by that user).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from pytest_nocrud.conninfo import ConnInfo

BINDIR = Path(os.environ.get("NOCRUD_TEST_PG_BINDIR", "/usr/lib/postgresql/15/bin"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def throwaway_postgres() -> Iterator[ConnInfo]:
    """Start a private cluster (Unix socket only, fsync off); yield the admin ConnInfo; stop it."""
    base = Path(tempfile.mkdtemp(prefix="nocrud-test-pg-"))
    data, sock = base / "data", base / "sock"
    data.mkdir()
    sock.mkdir()
    run_as: dict[str, Any] = {}
    if os.geteuid() == 0:
        for p in (base, data, sock):
            shutil.chown(p, "postgres", "postgres")
            os.chmod(p, 0o700)
        run_as = {"user": "postgres", "group": "postgres", "extra_groups": []}
    proc: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run(
            [str(BINDIR / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            **run_as,
        )
        port = _free_port()
        proc = subprocess.Popen(
            [
                str(BINDIR / "postgres"),
                "-D",
                str(data),
                "-k",
                str(sock),
                "-p",
                str(port),
                "-c",
                "listen_addresses=",
                "-c",
                "fsync=off",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **run_as,
        )
        info = ConnInfo(host=str(sock), port=port, user="postgres", dbname="postgres")
        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(info.dsn, connect_timeout=2).close()
                break
            except psycopg.OperationalError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield info
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGINT)  # fast shutdown; only the pid we started
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(base, ignore_errors=True)


def create_database(admin: ConnInfo, name: str) -> ConnInfo:
    """A fresh empty database (dropped first if a previous run left it)."""
    with psycopg.connect(admin.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return admin.with_db(name)
