"""Several machines, one server: two project copies share a password-protected server over TCP.

Each "machine" is a copy of the same small project with its own HOME, TMPDIR and ``--nocrud-data-dir``
(so its lock dir, app registry and logs are its own): no file lock is shared, only what lives on the
server -- the advisory locks -- can coordinate the two. The server is a throwaway cluster listening on
127.0.0.1 with scram-sha-256 authentication, like a colleague's or a CI service's.

The builder appends a line per schema build to a counter file both machines share (by absolute path),
and the runs' progress lines name every layer they build, so "built once" is counted, not inferred.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _support import CI_MARKERS, PasswordServer, start_password_server

from pytest_nocrud.pg import admin
from pytest_nocrud.pg.pool import OWNED_NAME

INI = """
[pytest]
nocrud_builder = python:builder_mod:build
nocrud_fixtures = seed.sql
nocrud_template_inputs =
    builder_mod.py
    schema/*.sql
"""

BUILDER = '''
import os, pathlib, time

WAITING = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"

def build(conn):
    """Record the build in the counter both machines share, then migrate.

    With NOCRUD_TEST_RACE, first wait (bounded) until a session waits for an advisory lock: the other
    machine, stopped by the layer's build lock (this machine's other worker waits on the file lock).
    """
    waiters = 0
    deadline = time.monotonic() + (60 if os.environ.get("NOCRUD_TEST_RACE") else 0)
    while not waiters and time.monotonic() < deadline:
        waiters = conn.execute(WAITING).fetchone()[0]
        time.sleep(0.02)
    with open(os.environ["NOCRUD_TEST_COUNTER"], "a") as counter:
        counter.write(f"{os.environ['MACHINE']} pid={os.getpid()} waiters={waiters}\\n")
    here = pathlib.Path(__file__).parent
    for path in sorted((here / "schema").glob("*.sql")):
        conn.execute(path.read_bytes())
'''

SCHEMA = "CREATE TABLE item (id serial PRIMARY KEY, name text NOT NULL);\n"
SEED = "INSERT INTO item (name) VALUES ('seed-1'), ('seed-2');\n"

ISOLATION_TESTS = """
import os
import pytest

@pytest.mark.parametrize("i", range(6))
def test_sees_only_own_writes(nocrud_db, i):
    mine = f"{os.environ['MACHINE']}-{i}"
    with nocrud_db.connect() as conn:
        conn.execute("INSERT INTO item (name) VALUES (%s)", [mine])
        conn.commit()
        names = sorted(row[0] for row in conn.execute("SELECT name FROM item"))
    assert names == sorted(["seed-1", "seed-2", mine])
"""

# Collected first (file name), so it is the first test of the worker that gets it: its database is
# the only one of that worker, and the worker's ready clones stay put while it blocks.
BLOCKS = """
import os, pathlib, time

def test_blocks_until_released(nocrud_db):
    with nocrud_db.connect() as conn:
        conn.execute("INSERT INTO item (name) VALUES ('before the other machine')")
        conn.commit()
    pathlib.Path(os.environ["STARTED"]).write_text(nocrud_db.name + "\\n")
    release = pathlib.Path(os.environ["RELEASE"])
    deadline = time.monotonic() + 120
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # the outer test releases us once the other machine is done
    with nocrud_db.connect() as conn:  # still our database, with our row
        rows = conn.execute("SELECT count(*) FROM item WHERE name = 'before the other machine'")
        assert rows.fetchone() == (1,)
"""

BUILDING = re.compile(r"building template layer (nocrud_(?:sch|tpl)_[0-9a-f]+)")
SUMMARY = re.compile(r"template: (nocrud_tpl_[0-9a-f]+) \(key [0-9a-f]+\) (built|reused)")
RUN_TIMEOUT = 180


@dataclasses.dataclass
class Machine:
    """One project copy with its own HOME, TMPDIR and data dir, pointed at the shared server."""

    name: str
    root: Path
    dsn: str
    counter: Path

    @property
    def project(self) -> Path:
        return self.root / "project"

    @property
    def data_dir(self) -> Path:
        return self.root / "tmp" / "nocrud"

    def env(self, **extra: str) -> dict[str, str]:
        inherited = {
            k: v for k, v in os.environ.items() if k not in CI_MARKERS and not k.startswith("NOCRUD_")
        }
        return {
            **inherited,
            "HOME": str(self.root / "home"),
            "TMPDIR": str(self.root / "tmp"),
            "MACHINE": self.name,
            "NOCRUD_TEST_COUNTER": str(self.counter),
            **extra,
        }

    def pytest(self, *args: str, **env: str) -> subprocess.Popen[str]:
        """An inner run in its own process group with a default SIGINT (like popen_inner)."""
        command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                   f"--nocrud-data-dir={self.data_dir}", f"--nocrud-dsn={self.dsn}", *args]  # fmt: skip
        return self._popen(command, env)

    def nocrud(self, *args: str) -> subprocess.Popen[str]:
        command = [sys.executable, "-m", "pytest_nocrud.cli", *args, "--dsn", self.dsn,
                   "--data-dir", str(self.data_dir)]  # fmt: skip
        return self._popen(command, {})

    def _popen(self, command: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
        return subprocess.Popen(
            command,
            cwd=self.project,
            env=self.env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # killpg reaches its xdist workers too
            preexec_fn=_default_sigint,  # see popen_inner: a background job inherits SIGINT ignored
        )


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def finish(proc: subprocess.Popen[str]) -> str:
    """The output of a process that must end on its own within RUN_TIMEOUT; its group is killed if not."""
    try:
        return proc.communicate(timeout=RUN_TIMEOUT)[0]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output = proc.communicate(timeout=30)[0]
        pytest.fail(f"{proc.args!r} did not end within {RUN_TIMEOUT} s:\n{output}")


def passed(output: str) -> int:
    match = re.search(r"(\d+) passed", output)
    return int(match.group(1)) if match else 0


def wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 120.0) -> str:
    """The text the inner run writes to ``path`` (a line); fail with its output if it exits first."""
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text().endswith("\n")):
        if proc.poll() is not None:
            pytest.fail(f"inner run exited early:\n{finish(proc)}")
        assert time.monotonic() < deadline, "inner run never reached its blocking test"
        threading.Event().wait(0.02)  # polling for another process's marker
    return path.read_text().strip()


def databases(server: PasswordServer, prefix: str) -> set[str]:
    with admin.connect(server.admin) as conn:
        return set(admin.names_like(conn, prefix))


def layers(server: PasswordServer) -> set[str]:
    return databases(server, "nocrud_tpl_") | databases(server, "nocrud_sch_")


@pytest.fixture
def server() -> Iterator[PasswordServer]:
    """A server of this test's own (exact counts of what is left on it), password required over TCP."""
    started = start_password_server()
    yield started
    started.stop()


@pytest.fixture
def machines(tmp_path: Path, server: PasswordServer) -> Iterator[tuple[Machine, Machine]]:
    counter = tmp_path / "builds.txt"
    counter.touch()
    pair = []
    for name in ("a", "b"):
        machine = Machine(name, tmp_path / name, server.admin.dsn, counter)
        for folder in (machine.project / "schema", machine.root / "home", machine.data_dir):
            folder.mkdir(parents=True)
        (machine.project / "pytest.ini").write_text(INI)
        (machine.project / "builder_mod.py").write_text(BUILDER)
        (machine.project / "schema" / "001_items.sql").write_text(SCHEMA)
        (machine.project / "seed.sql").write_text(SEED)
        (machine.project / "test_isolation.py").write_text(ISOLATION_TESTS)
        pair.append(machine)
    yield pair[0], pair[1]
    for machine in pair:
        shutil.rmtree(machine.root, ignore_errors=True)


def test_two_machines_build_the_template_once_and_leave_only_it(
    server: PasswordServer, machines: tuple[Machine, Machine]
) -> None:
    a, b = machines
    runs = [a.pytest("-n", "2", NOCRUD_TEST_RACE="1"), b.pytest("-n", "2", NOCRUD_TEST_RACE="1")]
    outputs = [finish(proc) for proc in runs]  # both at once, on one key

    assert [proc.returncode for proc in runs] == [0, 0], "\n\n".join(outputs)
    assert [passed(output) for output in outputs] == [6, 6], outputs
    built = [name for output in outputs for name in BUILDING.findall(output)]
    assert sorted(n[:11] for n in built) == ["nocrud_sch_", "nocrud_tpl_"], (built, outputs)
    (record,) = a.counter.read_text().splitlines()  # the builder ran once, on either machine
    assert not record.endswith("waiters=0"), f"the other machine never waited for the build lock: {record}"
    summaries = [SUMMARY.search(output) for output in outputs]
    assert all(summaries), outputs
    assert {s.group(1) for s in summaries if s} == {n for n in built if n.startswith("nocrud_tpl_")}
    assert sorted(s.group(2) for s in summaries if s) == ["built", "reused"], "one machine built it"
    # Each layer's build log lies on the machine that built it: one log per layer in all. (Which
    # machine builds which layer is a race: one may build the schema layer, the other the data layer.)
    build_logs = sorted(log.name for m in machines for log in (m.data_dir / "locks").glob("*.log"))
    assert build_logs == sorted(f"{name}.log" for name in built), build_logs

    assert databases(server, "nocrud_r") == set(), "pool databases left after both runs"
    assert layers(server) == set(built), "both layers stay for the next run"
    assert databases(server, "nocrud_bld_") == set()


def test_one_machines_gc_never_touches_a_live_run_of_another(
    server: PasswordServer, machines: tuple[Machine, Machine], tmp_path: Path
) -> None:
    a, b = machines
    (a.project / "test_a_block.py").write_text(BLOCKS)
    started, release = tmp_path / "started", tmp_path / "release"
    live = a.pytest("-n", "2", STARTED=str(started), RELEASE=str(release))
    try:
        stable = wait_for(started, live)
        prefix = OWNED_NAME.match(stable)
        assert prefix and prefix.group(1) == stable, stable
        # The blocked worker's database and ready clones (a dirty one may be dropped by its own filler).
        in_use = {n for n in databases(server, stable) if not re.search(r"_d\d+$", n)}
        a_layers = layers(server)
        assert stable in in_use and len(a_layers) == 2

        b_layers = []
        schema = b.project / "schema" / "001_items.sql"
        for i in range(5):  # five new keys: GC (keep the 3 most recently used) evicts A's and older
            schema.write_text(SCHEMA + f"CREATE TABLE b_{i} (id int);\n")
            run = b.pytest("-p", "no:xdist")
            output = finish(run)
            assert run.returncode == 0 and passed(output) == 6, output
            b_layers.append(set(BUILDING.findall(output)))
            assert len(b_layers[-1]) == 2, output
        gc = b.nocrud("gc")
        gc_output = finish(gc)
        assert gc.returncode == 0, gc_output

        left = databases(server, "nocrud_")
        assert in_use <= left, f"B dropped A's pool databases: {sorted(in_use - left)}\n{gc_output}"
        assert a_layers <= left, f"B dropped A's template in use: {sorted(a_layers - left)}\n{gc_output}"
        # B's first layers were used after A's and are gone, so A's survived only by being marked.
        assert not (b_layers[0] | b_layers[1]) & left, "GC must still evict what no run uses"
        assert b_layers[4] <= left
        dropped_by_gc = set(re.findall(r"^  (nocrud_\w+)$", gc_output, re.MULTILINE))
        assert not dropped_by_gc & (in_use | a_layers), gc_output
    finally:
        release.touch()
        output = finish(live)
    assert live.returncode == 0 and passed(output) == 7, output
    assert set(BUILDING.findall(output)) == a_layers, "A built its layers once, before B's runs"
    assert len(a.counter.read_text().splitlines()) == 1 + 5
    assert databases(server, "nocrud_r") == set()
