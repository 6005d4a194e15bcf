"""Helpers for pytest-nocrud's own tests: where throwaway clusters live, which servers are running."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from pytest_nocrud.pg.binaries import find_bindir
from pytest_nocrud.pg.conninfo import ConnInfo
from pytest_nocrud.pg.procs import pids_whose_cmdline_has
from pytest_nocrud.pg.server import SHARED_MEMORY, EmbeddedCluster, _RunAs, roomy_tmpfs

# As root the server runs as the 'postgres' user, which cannot enter pytest's private tmp_path
# (/tmp/pytest-of-root is 0700), so clusters under test live in RAM like the default (much faster
# to create and clone), or below /var/tmp where there is no roomy tmpfs.
ON_DISK = Path("/var/tmp/pytest-nocrud-tests")
CLUSTERS_ROOT = SHARED_MEMORY / "pytest-nocrud-tests" if roomy_tmpfs(SHARED_MEMORY) else ON_DISK


def postgres_pids(data_dir: Path) -> list[int]:
    """Live postgres processes whose command line mentions ``data_dir`` (their postmaster)."""
    return pids_whose_cmdline_has("postgres", str(data_dir))


def new_cluster_dir(base: Path | None = None) -> Path:
    """A fresh directory name for a cluster: under CLUSTERS_ROOT (RAM when roomy), or ``base``."""
    root = base / "pytest-nocrud-tests" if base is not None else CLUSTERS_ROOT
    path = root / uuid.uuid4().hex[:12]
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    return path


def discard_cluster_dir(path: Path) -> None:
    for cluster_dir in path.glob("pg*"):
        if (cluster_dir / "data" / "postmaster.pid").exists():
            EmbeddedCluster(path).stop()  # a failed test must not leave a server behind
    shutil.rmtree(path, ignore_errors=True)


@contextmanager
def small_tmpfs(name: str, size_mb: int) -> Iterator[Path]:
    """A real file system of ``size_mb`` MiB (tmpfs, needs root; skips the test otherwise), for full-disk
    faults. On the way out: any server under ``<mount>/data`` stopped, unmounted, mount point removed."""
    mount_point = Path("/var/tmp") / f"nocrud-{name}-{os.getpid()}"
    mount_point.mkdir(exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "tmpfs", str(mount_point)],
        capture_output=True, text=True,
    )  # fmt: skip
    if mounted.returncode != 0:
        mount_point.rmdir()
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        discard_cluster_dir(mount_point / "data")
        subprocess.run(["umount", "--lazy", str(mount_point)], check=False)
        mount_point.rmdir()


# pytest prints untruncated messages in its short summary when these are set; inner runs must look the
# same on a laptop and in CI, or assertions that count a message in the output change meaning.
CI_MARKERS = ("CI", "BUILD_NUMBER")
#: Plugins of the fuzz extra that cost every inner run without being used by it: schemathesis' imports
#: schemathesis and Hypothesis at start, Hypothesis's imports Hypothesis in its terminal summary (each
#: 0.4-1.7 s measured on this VM, -X importtime). Hundreds of inner runs would pay it; the tests that
#: fuzz keep Hypothesis's (``blocked=FUZZ_RUN_BLOCKS``).
BLOCKED_PLUGINS = ("schemathesis", "hypothesispytest")
FUZZ_RUN_BLOCKS = ("schemathesis",)


def _blocks(names: tuple[str, ...]) -> list[str]:
    return [arg for name in names for arg in ("-p", f"no:{name}")]


def run_inner(
    pytester: pytest.Pytester,
    data_dir: Path,
    *args: str,
    blocked: tuple[str, ...] = BLOCKED_PLUGINS,
    **env: str,
) -> pytest.RunResult:
    """An inner pytest run in a subprocess, so the plugin's processes must end with it."""
    with pytest.MonkeyPatch.context() as patch:
        for name in CI_MARKERS:
            patch.delenv(name, raising=False)
        for name, value in env.items():
            patch.setenv(name, value)
        options = ("-p", "no:cacheprovider", *_blocks(blocked), f"--nocrud-data-dir={data_dir}")
        return pytester.runpytest_subprocess(*options, *args, timeout=300)


def popen_inner(pytester: pytest.Pytester, data_dir: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    """An inner run the test can signal: its own process group, like a terminal job getting Ctrl-C."""
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *_blocks(BLOCKED_PLUGINS),
         f"--nocrud-data-dir={data_dir}", *args],  # fmt: skip
        cwd=pytester.path,
        env={**{k: v for k, v in os.environ.items() if k not in CI_MARKERS}, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # killpg reaches the xdist workers too
        # A terminal's foreground job takes Ctrl-C; a job started in the background of a shell
        # without job control (CI runners, `cmd &`) inherits SIGINT *ignored*, and Python then
        # never installs its KeyboardInterrupt handler: the inner run would sleep through SIGINT.
        preexec_fn=_default_sigint,
    )


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# -- a server like a colleague's or CI's: TCP on loopback, password (scram-sha-256) required ------------


@dataclasses.dataclass
class PasswordServer:
    """A throwaway cluster listening on 127.0.0.1 that only accepts scram-sha-256 password logins.

    ``admin`` is its superuser DSN, password included. Stands in for a shared or remote server in
    tests of ``--nocrud-dsn``: what must never leak, and what several "machines" share.
    """

    admin: ConnInfo
    root: Path
    log_path: Path
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        shutil.rmtree(self.root, ignore_errors=True)


def start_password_server(password: str | None = None, *, durable_on_disk: bool = False) -> PasswordServer:
    """initdb + start a password-protected cluster on a free loopback port (as ``postgres`` when root).

    ``durable_on_disk``: like a CI service container -- the cluster on a disk (/var/tmp, not RAM) with
    PostgreSQL's durable defaults (fsync, synchronous_commit, full_page_writes on)."""
    password = password or f"s3cr3t-{uuid.uuid4().hex[:10]}@pw"  # '@' must be URL-quoted in a DSN
    bindir = find_bindir(None)
    run_as = _RunAs.for_current_process()
    root = new_cluster_dir(Path("/var/tmp") if durable_on_disk else None)
    run_as.own(root)
    pwfile = root / "pwfile"
    pwfile.write_text(password + "\n")
    if run_as.uid is not None and run_as.gid is not None:
        os.chown(pwfile, run_as.uid, run_as.gid)
    data, sock, log_path = root / "data", root / "sock", root / "postgres.log"
    run_as.own(sock)
    initdb = subprocess.run(
        [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth-local=trust",
         "--auth-host=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C", "--no-sync"],
        capture_output=True, text=True, cwd="/", **run_as.popen_kwargs(),
    )  # fmt: skip
    pwfile.unlink()
    if initdb.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"initdb failed:\n{initdb.stdout}{initdb.stderr}")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    settings = {"listen_addresses": "127.0.0.1", "fsync": "off", "synchronous_commit": "off",
                "full_page_writes": "off", "max_connections": "200"}  # fmt: skip
    if durable_on_disk:
        settings.update(fsync="on", synchronous_commit="on", full_page_writes="on")
    args = [str(bindir / "postgres"), "-D", str(data), "-k", str(sock), "-p", str(port)]
    for name, value in settings.items():
        args += ["-c", f"{name}={value}"]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd="/",
            start_new_session=True, **run_as.popen_kwargs(),
        )  # fmt: skip
    server = PasswordServer(
        ConnInfo(host="127.0.0.1", port=port, user="postgres", dbname="postgres", password=password),
        root, log_path, proc,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while True:  # polls the server coming up, bounded
        try:
            psycopg.connect(server.admin.dsn, connect_timeout=2).close()
            return server
        except psycopg.OperationalError:
            if proc.poll() is not None or time.monotonic() > deadline:
                log_text = log_path.read_text(errors="replace")
                server.stop()
                raise RuntimeError(f"password server did not start:\n{log_text}") from None
            time.sleep(0.05)


#: The start of the tests' tiny stdlib apps: a request handler that answers JSON. An app's source is
#: ``JSON_HANDLER + <its own code>``, with ``class Handler(JsonHandler)`` adding the routes.
JSON_HANDLER = r"""
import http.server, json


class JsonHandler(http.server.BaseHTTPRequestHandler):
    def _send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
"""


#: An app with one table, ``item(name text PRIMARY KEY)`` seeded with ``seed``, and a ``ticket``
#: sequence (``ITEMS_SCHEMA``): ``GET /items`` lists the names, ``POST /items`` adds one (500 once the
#: table holds ``ITEMS_LIMIT`` rows, when that is set), ``POST /tickets`` takes a ``nextval()``,
#: ``GET /forbidden`` answers 403 without touching the database.
ITEMS_APP = JSON_HANDLER + r'''
import json, os, sys
import http.server
import psycopg

DSN = os.environ["DATABASE_URL"]
LIMIT = int(os.environ.get("ITEMS_LIMIT") or 1_000_000)

class Handler(JsonHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/forbidden":
            return self._send(403, {"detail": "no"})
        if self.path == "/":
            return self._send(200, {"ok": True})
        with psycopg.connect(DSN) as conn:
            rows = conn.execute("SELECT name FROM item ORDER BY name").fetchall()
        self._send(200, [row[0] for row in rows])

    def do_POST(self):
        with psycopg.connect(DSN) as conn:
            if self.path == "/tickets":
                return self._send(201, {"number": conn.execute("SELECT nextval('ticket')").fetchone()[0]})
            name = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["name"]
            count = conn.execute("SELECT count(*) FROM item").fetchone()[0]
            if count >= LIMIT:  # a state-dependent bug, on when ITEMS_LIMIT is set
                return self._send(500, {"detail": f"table full at {count} items"})
            conn.execute("INSERT INTO item VALUES (%s)", [name])
        self._send(201, {"name": name})

http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
'''  # noqa: S608 - an app's source text, not a query

ITEMS_SCHEMA = (
    "CREATE TABLE item (name text PRIMARY KEY); INSERT INTO item VALUES ('seed'); CREATE SEQUENCE ticket;"
)
