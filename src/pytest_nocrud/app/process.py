"""The app server process: free loopback port, environment, readiness, logs, teardown.

The app runs in its own process group so teardown can end it together with anything it spawned
(a shell, an autoreloader) -- TERM first, KILL after a grace period. Every process group started in a
run is also registered on disk under the run's owner, so the owner can end groups whose worker died
abruptly: no orphan app survives a run.

Its stdout and stderr go, line by line and prefixed ``[app:<port>]``, to a per-worker log file; a test
remembers the file offset when it starts, so a failure report can show just that test's lines.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Protocol
from urllib.parse import urlsplit

import httpx

from .. import placeholders
from ..errors import AppStartError, NocrudError
from ..pg.conninfo import ConnInfo
from ..pg.private import open_private, private_dir, touch_private
from ..pg.procs import (
    ProcessId,
    group_members,
    indented,
    interpreter_path,
    is_running,
    listening_ports,
    poll,
    wait_group_gone,
)

HOST = "127.0.0.1"  # loopback only, never a public interface
PORT_ATTEMPTS = 3
STOP_GRACE = 5.0
ELSEWHERE_GRACE = 2.0  # seconds an app may listen on other ports only before we call it misconfigured
_PORT_IN_USE = ("address already in use", "port is already in use", "eaddrinuse", "address in use")
# Answers at the ready path meaning "no such page": the setting is wrong (at "/", many APIs have none).
_NO_SUCH_PATH = frozenset({404, 405, 410})


@dataclasses.dataclass(frozen=True)
class AppSpec:
    """How to start the app, independent of which port or database it gets."""

    command: str  # with {port} {host} {python} placeholders
    cwd: Path
    ready_path: str = "/"
    start_timeout: float = 30.0
    extra_env: tuple[tuple[str, str], ...] = ()  # nocrud_app_env lines; placeholders filled per start


def free_port() -> int:
    """A port the OS considers free right now (another process may still take it: start() retries)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


# The file whose appearance lets a gated app go on (see AppProcess.start; django_runserver.py waits for it).
START_GATE_ENV = "NOCRUD_START_GATE"


def app_environment(db: ConnInfo, app_port: int, extra: Sequence[tuple[str, str]]) -> dict[str, str]:
    """The contract's app environment: ours + DATABASE_URL/PG* + the user's lines (placeholders filled)."""
    env = dict(os.environ)
    env["PATH"] = interpreter_path(env)  # the venv's tools, even when the venv is not activated
    env.update(db.env())
    env["PGAPPNAME"] = app_session_name(db.dbname)  # where it really connects: see pg/sessions.py
    env.update(settings_env(db, extra, app_port=app_port))
    return env


def settings_env(
    db: ConnInfo, extra: Sequence[tuple[str, str]], *, app_port: int | None = None
) -> dict[str, str]:
    """The ``nocrud_app_env`` lines for ``db``, placeholders filled: the app gets them, and so do build
    tools (a project whose settings read ``DB_NAME`` must migrate the template, not its default).
    ``{app_port}`` is empty for a build tool: no app runs then."""
    values = {
        "dbname": db.dbname,
        "host": db.host,
        "port": str(db.port),
        "user": db.user,
        "password": db.password,
        "dsn": db.dsn,
        "app_port": "" if app_port is None else str(app_port),
    }
    env = {}
    for name, template in extra:
        try:
            placeholders.check(template, placeholders.APP_ENV)
        except ValueError as exc:
            raise AppStartError(f"nocrud_app_env line {name}={template!r}: {exc}") from None
        env[name] = placeholders.fill(template, values)
    return env


def app_session_name(dbname: str) -> str:
    """The application_name of the app serving ``dbname``: unique per worker, within 63 bytes."""
    return f"nocrud-app {dbname}"[:63]


def render_command(command: str, port: int) -> str:
    try:
        placeholders.check(command, placeholders.APP_COMMAND)
    except ValueError as exc:
        raise AppStartError(f"nocrud_app_command {command!r}: {exc}") from None
    values = {"port": str(port), "host": HOST, "python": shlex.quote(sys.executable)}
    return placeholders.fill(command, values)


class AppLog:
    """The per-worker log file and the thread that copies the app's output into it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        private_dir(path.parent, top=path.parent.parent)  # <data dir>/logs/: 0700, the log 0600
        self._file = open_private(path, "a", encoding="utf-8", errors="replace")
        self._lock = threading.Lock()

    def follow(
        self, stream: IO[str], prefix: str, redact: Callable[[str], str] = str
    ) -> threading.Thread:
        """Copy ``stream`` line by line, each through ``redact`` (an app may echo its DATABASE_URL)."""

        def copy() -> None:
            for line in stream:
                with self._lock:
                    if self._file.closed:  # the run ended; a straggler's last lines go nowhere
                        return
                    self._file.write(f"{prefix} {redact(line.rstrip())}\n")
                    self._file.flush()

        thread = threading.Thread(target=copy, name=f"nocrud-applog {prefix}", daemon=True)
        thread.start()
        return thread

    def offset(self) -> int:
        with self._lock:
            return self._file.tell()

    def since(self, offset: int, *, settle: float = 0.2) -> str:
        """Lines written after ``offset``; waits up to ``settle`` s for in-flight lines to land."""
        deadline = time.monotonic() + settle
        size = -1
        while time.monotonic() < deadline:
            current = self.path.stat().st_size
            if current == size:
                break
            size = current
            time.sleep(0.02)
        with open(self.path, encoding="utf-8", errors="replace") as reader:
            reader.seek(offset)
            return reader.read()

    def tail(self, offset: int, lines: int = 25) -> str:
        return "\n".join(self.since(offset, settle=0.05).splitlines()[-lines:])

    def close(self) -> None:
        with self._lock:
            self._file.close()


class LiveApp(Protocol):
    """What ``nocrud_app`` gives a test: an ``AppProcess`` it started, or serial mode's ``ExternalApp``."""

    @property
    def url(self) -> str: ...

    @property
    def port(self) -> int: ...

    @property
    def log_path(self) -> Path | None: ...


@dataclasses.dataclass(frozen=True)
class ExternalApp:
    """An app somebody else runs: what ``nocrud_app`` returns in serial mode (no log file)."""

    url: str
    log_path: Path | None = None

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (443 if parts.scheme == "https" else 80)


class AppProcess:
    """One running app. ``start()`` returns once it answers HTTP on ``ready_path``."""

    def __init__(self, spec: AppSpec, db: ConnInfo, log: AppLog, registry: Path | None = None) -> None:
        self.spec = spec
        self.db = db
        self.log = log
        self.registry = registry
        self.port = 0
        self.starts = 0  # processes started so far (a restart after an exit is one more)
        self.log_start = 0  # the log file's offset when the current process started
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.log.path

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def exit_status(self) -> int | None:
        """The running process's exit status once it has exited by itself; None while it runs."""
        return self._proc.poll() if self._proc is not None else None

    def wait_exit(self, timeout: float) -> int | None:
        """The exit status, waiting up to ``timeout`` s for it (a broken connection comes a moment
        before the exit: with ``shell=True`` the shell leader exits after the app it waits for)."""
        if self._proc is None:
            return None
        with contextlib.suppress(subprocess.TimeoutExpired):
            return self._proc.wait(timeout=timeout) if timeout > 0 else self._proc.poll()
        return None

    def restart(self) -> None:
        """Start again after an exit: on the same port when the app can bind it again (clients built
        from ``url`` keep working), else on a free one."""
        port = self.port
        self.stop()  # collect the exit and end whatever is left in its process group
        try:
            self._start_once(port)
        except _PortTaken:
            self.start()

    def start(self, gate: Callable[[], None] | None = None) -> None:
        """Start on a free port; a port taken between choosing and binding is retried, boundedly.

        ``gate`` (a check that may raise) runs while the app boots: the app is told to wait, before it
        touches a database, until the gate passed (``START_GATE_ENV``: only the Django default command
        knows it). If the gate raises, the app is stopped before it opened any connection."""
        ports: list[int] = []
        for _ in range(PORT_ATTEMPTS):
            try:
                self._start_once(free_port(), gate)
                return
            except _PortTaken as taken:
                ports.append(self.port)
                last = taken
        # Losing the race for a fresh port three times is unlikely; an app that ignores {port} and
        # binds a fixed, busy one is not: say so instead of blaming a race.
        raise AppStartError(
            f"the app reported 'address already in use' on {PORT_ATTEMPTS} attempts "
            f"(ports {', '.join(map(str, ports))}). Does nocrud_app_command pass {{port}} to the app?\n"
            f"  command: {last.command}\n  last log lines ({self.log.path}):\n{_quoted(last.tail)}"
        )

    def _start_once(self, port: int, gate: Callable[[], None] | None = None) -> None:
        self.port = port
        command = render_command(self.spec.command, port)
        env = app_environment(self.db, port, self.spec.extra_env)
        gate_file = self.log.path.parent / f"gate-{os.getpid()}-{port}"
        if gate is not None:
            gate_file.unlink(missing_ok=True)
            env[START_GATE_ENV] = str(gate_file)
        offset = self.log_start = self.log.offset()
        self.starts += 1
        self._proc = subprocess.Popen(
            command,
            shell=True,
            cwd=self.spec.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            bufsize=1,
            start_new_session=True,  # own process group: Ctrl-C goes through us, teardown kills the group
        )
        self._register()
        assert self._proc.stdout is not None
        self._reader = self.log.follow(self._proc.stdout, f"[app:{port}]", self.db.redact)
        try:
            if gate is not None:
                gate()
                touch_private(gate_file)  # the app goes on
            self._wait_ready(command, offset)
        except BaseException:
            self.stop()
            raise
        finally:
            gate_file.unlink(missing_ok=True)

    def _wait_ready(self, command: str, offset: int) -> None:
        assert self._proc is not None
        url = self.url + self.spec.ready_path
        look_elsewhere_from = time.monotonic() + 0.5  # /proc scans only for an app that is slow to bind
        elsewhere_since: float | None = None
        with httpx.Client(timeout=httpx.Timeout(2.0, connect=0.5)) as probe:
            for in_time in poll(self.spec.start_timeout, first=0.01, longest=0.1, factor=1.5):
                code = self._proc.poll()
                if code is not None:
                    if self._reader:
                        self._reader.join(timeout=2)
                    tail = self.log.tail(offset)
                    if any(marker in tail.lower() for marker in _PORT_IN_USE):
                        raise _PortTaken(command, tail)
                    raise AppStartError(
                        f"the app exited with code {code} during start-up.\n  command: {command}\n"
                        f"  last log lines ({self.log.path}):\n{_quoted(tail)}"
                    )
                try:
                    response = probe.get(url)
                    if response.status_code in _NO_SUCH_PATH and self.spec.ready_path != "/":
                        raise AppStartError(self._wrong_ready_path(response, command, offset))
                    if response.status_code < 500:
                        return
                    last = f"HTTP {response.status_code}, its body begins:\n{_quoted(_head(response.text))}"
                    elsewhere_since = None
                except httpx.HTTPError as exc:
                    last = f"none ({type(exc).__name__})"
                    if time.monotonic() >= look_elsewhere_from:
                        elsewhere_since = self._check_listening_elsewhere(command, offset, elsewhere_since)
                if not in_time:
                    raise AppStartError(
                        f"the app did not answer GET {self.spec.ready_path} with a status below 500 within "
                        f"{self.spec.start_timeout:.0f}s. Last answer: {self.db.redact(last)}\nCheck "
                        f"nocrud_app_ready_path and nocrud_app_start_timeout.\n  command: {command}\n"
                        f"  last log lines ({self.log.path}):\n{_quoted(self.log.tail(offset))}"
                    )

    def _wrong_ready_path(self, response: httpx.Response, command: str, offset: int) -> str:
        """A ready path the app has no page for would never tell when the app is ready: say so at once."""
        path = self.spec.ready_path
        status = f"HTTP {response.status_code} {response.reason_phrase}".rstrip()
        first = self.db.redact(_head(response.text, lines=1))
        return (
            f"the app answered GET {path} with {status}: nocrud_app_ready_path = {path} is not a page of "
            f"the app (its body begins: {first}).\nSet nocrud_app_ready_path to a path the app serves, "
            "ideally a health view that queries the database (e.g. /health), or to / to count any answer "
            f"below 500 as ready.\n  command: {command}\n"
            f"  last log lines ({self.log.path}):\n{_quoted(self.log.tail(offset))}"
        )

    def _check_listening_elsewhere(self, command: str, offset: int, since: float | None) -> float | None:
        """An app that listens, but not on its port, for ELSEWHERE_GRACE s will never answer: say so.

        Returns when that was first seen (None while it is not the case). The grace tolerates an app
        that opens a helper port first and binds its own a moment later.
        """
        assert self._proc is not None
        ports = listening_ports(group_members(self._proc.pid))
        if not ports or self.port in ports:
            return None
        now = time.monotonic()
        if since is None or now - since < ELSEWHERE_GRACE:
            return since if since is not None else now
        raise AppStartError(
            f"the app listens on port {', '.join(map(str, sorted(ports)))}, not on port {self.port} it was "
            f"given, so it can never answer. Pass {{port}} in nocrud_app_command to the app's own port "
            f"option (e.g. --port {{port}}), or read {{app_port}} via nocrud_app_env.\n"
            f"  command: {command}\n  last log lines ({self.log.path}):\n{_quoted(self.log.tail(offset))}"
        )

    def stop(self) -> None:
        """TERM the whole process group, KILL after a grace period; collect the exit status."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        stop_group(proc.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=STOP_GRACE)
        if self._reader:
            self._reader.join(timeout=2)
        if proc.stdout:
            proc.stdout.close()
        self._unregister(proc.pid)

    def _register(self) -> None:
        """Record the app (pid + start time) under its run, so a later run can end it if we die."""
        if self.registry is not None and self._proc is not None:
            private_dir(self.registry, top=self.registry.parent.parent)  # <data dir>/apps/<run>/
            touch_private(self.registry / ProcessId.of(self._proc.pid).token)

    def _unregister(self, pid: int) -> None:
        if self.registry is not None:
            for entry in self.registry.glob(f"{pid}-*"):
                entry.unlink(missing_ok=True)


class _PortTaken(NocrudError):
    """The app exited saying its port was in use: worth another try on another port."""

    def __init__(self, command: str, tail: str) -> None:
        super().__init__(command, tail)
        self.command = command
        self.tail = tail


def stop_group(pgid: int) -> None:
    """End a process group: SIGTERM, then SIGKILL whatever is left after the grace period.

    Waits for every member, not just the leader: with ``shell=True`` the leader is a shell that dies
    at once on TERM while the app is still running its own shutdown.
    """
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if not wait_group_gone(pgid, STOP_GRACE):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        wait_group_gone(pgid, 2.0)


def stop_registered(registry: Path) -> int:
    """End app groups whose worker died without stopping them (the run owner calls this last)."""
    stopped = 0
    for entry in registry.glob("*") if registry.is_dir() else []:
        with contextlib.suppress(ValueError):
            app = ProcessId.parse(entry.name)
            # Skip a recycled pid (running, other start time): that is someone else's process now.
            # A leader that is gone may have left members in its group; the group id stays ours.
            if app.alive() or not is_running(app.pid):
                stop_group(app.pid)
                stopped += 1
        entry.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        registry.rmdir()
    return stopped


def reap_orphaned_apps(apps_root: Path) -> int:
    """End the apps of runs whose controller is dead (``kill -9``): next run and ``nocrud gc`` call this.

    Each run records its apps under ``apps_root/<run owner token>/``; a live owner's apps are its own.
    """
    stopped = 0
    for registry in apps_root.iterdir() if apps_root.is_dir() else []:
        with contextlib.suppress(ValueError):
            if not ProcessId.parse(registry.name).alive():
                stopped += stop_registered(registry)
    return stopped


LOG_NAME = re.compile(r"app-(\d+)-.*\.log")  # a worker's app log (runtime.py): app-<owner pid>-<worker>.log


def tidy_leftovers(home: Path, keep_pid: int | None = None) -> list[Path]:
    """Remove app logs of runs that ended and empty app registries of dead runs; return what went.

    Called at the end of every run (``keep_pid``: that run, whose logs stay for inspection until the
    next run ends) and by ``nocrud gc``. Logs of live runs and registries still naming an app stay.
    """
    removed: list[Path] = []
    logs = home / "logs"
    for log in sorted(logs.glob("app-*.log")) if logs.is_dir() else []:
        match = LOG_NAME.fullmatch(log.name)
        if match is None:
            continue
        pid = int(match.group(1))
        if pid != keep_pid and not is_running(pid):
            log.unlink(missing_ok=True)
            removed.append(log)
    apps = home / "apps"
    for registry in sorted(apps.iterdir()) if apps.is_dir() else []:
        try:
            alive = ProcessId.parse(registry.name).alive()
        except ValueError:
            alive = False
        if not alive and registry.is_dir() and not any(registry.iterdir()):
            with contextlib.suppress(OSError):
                registry.rmdir()
                removed.append(registry)
    return removed


def describe_exit(code: int) -> str:
    """``exit code 3``, ``killed by signal SIGKILL``; a shell leader reports a child's signal N as
    exit code 128 + N: ``exit code 137: killed by signal SIGKILL``."""
    if code < 0:
        return f"killed by signal {_signal_name(-code)}"
    if 128 < code <= 128 + 64:
        return f"exit code {code}: killed by signal {_signal_name(code - 128)}"
    return f"exit code {code}"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _head(body: str, lines: int = 5, width: int = 200) -> str:
    """The first lines of a response body, each cut to ``width`` characters."""
    return "\n".join(line[:width] for line in body.strip().splitlines()[:lines]) or "(empty)"


def _quoted(text: str) -> str:
    return indented(text, empty="(no output)")
