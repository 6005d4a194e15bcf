"""The example suite against a disk-backed server with fsync on, like a CI service container (issue 23).

A real cluster under /var/tmp (not RAM) with PostgreSQL's durable defaults (fsync, full_page_writes,
synchronous_commit on), reached through ``--nocrud-dsn`` over TCP with a password; the example_app
suite runs on it at ``-n 2``. Whether the pool kept up depends on the disk (figures: bench/reuse.py
--durable); what a test can assert is that the run is green, the summary says how the handoffs went
(and, if they waited, by how much and that fsync is what to change), and nothing is left on the server.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from _support import PasswordServer, start_password_server

from pytest_nocrud.pg import admin

EXAMPLE_APP = Path(__file__).resolve().parents[2] / "example_app"


@pytest.fixture
def durable_server() -> Iterator[PasswordServer]:
    server = start_password_server(durable_on_disk=True)
    try:
        yield server
    finally:
        server.stop()


def test_the_example_suite_on_a_disk_backed_fsync_on_server(
    durable_server: PasswordServer, tmp_path: Path
) -> None:
    with admin.connect(durable_server.admin) as conn:
        assert admin.fsync_enabled(conn), "the server under test must write through to disk"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "NOCRUD_", "PITCHDESK_"))}
    env["HOME"] = str(tmp_path)  # its own registry and logs
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "2",
         f"--nocrud-dsn={durable_server.admin.dsn}", f"--nocrud-data-dir={tmp_path / 'home'}"],
        cwd=EXAMPLE_APP, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert re.search(r"^server: PostgreSQL \d+\.\d+ \(DSN\)$", out, re.M), out
    handed = re.search(r"^databases handed out: (\d+) \((\d+) fresh clones?, (\d+) unchanged reused\); .*"
                       r"; (\d+) waited for a clone", out, re.M)  # fmt: skip
    assert handed, out
    total, waited = int(handed[1]), int(handed[4])
    note = re.search(r"^note: (\d+) of (\d+) handoffs \(\d+%\) waited for a clone.*fsync on", out, re.M)
    if waited >= 5 and waited * 10 >= total:  # the pool fell behind: the summary must say what to change
        assert note and int(note[1]) == waited, out
    else:
        assert note is None, out
    assert durable_server.admin.password not in out
    with admin.connect(durable_server.admin) as conn:
        left = [
            name
            for name in admin.names_like(conn, "nocrud_")
            if not name.startswith(("nocrud_tpl_", "nocrud_sch_"))
        ]
    assert left == [], left  # the pools' databases are gone; only the templates stay, for the next run
