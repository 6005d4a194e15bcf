"""The PostgreSQL server in use: an embedded cluster this project owns, or an existing one (DSN).

Embedded cluster rules (written down in the README, "Embedded PostgreSQL"):

* One cluster per project and major version, kept between runs so templates survive (initdb once).
* One server per pytest run, shared by all xdist workers and by concurrent runs of the same project. Every
  run that uses it holds a *lease* (a file named after the run's controller process). A run that ends
  removes its lease and stops the server only when no live lease remains, so it never pulls the server
  from under another run. Leases of dead runs (kill -9) are ignored and pruned.
* ``nocrud server start`` holds a lease of its own (``leases/server-start``, naming the postmaster it
  started) until ``nocrud server stop``: neither a run's end nor ``nocrud status``/``gc`` stop that
  server. The hold ends by itself when that postmaster is gone (a reboot, a crash).
* Start/stop happen under one file lock, so they never interleave.
* The server listens on a Unix socket in a private 0700 directory only (no TCP) with trust auth there,
  and runs with fsync/synchronous_commit/full_page_writes off: test data is disposable.
* As root (PostgreSQL refuses to run as root) initdb and postgres run as the ``postgres`` OS user, else
  ``nobody``; data and socket directories belong to that user, mode 0700.
"""

from __future__ import annotations

import contextlib
import dataclasses
import grp
import hashlib
import os
import pwd
import re
import shutil
import signal
import stat as stat_module
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TypedDict

import filelock
import psycopg

from ..errors import ServerError, first_line
from .admin import running_version
from .binaries import find_bindir, major_of, server_version
from .conninfo import ConnInfo
from .private import FILE_MODE, open_private, private_dir, touch_private, write_private
from .procs import ProcessId, indented, is_running, poll, terminate

PORT = 5432  # only names the socket file inside our private directory; no TCP port is opened
SUPERUSER = "postgres"
HELD_LEASE = "server-start"  # the lease `nocrud server start` takes; holds the postmaster's ProcessId
START_TIMEOUT = 30.0
DSN_CONNECT_TIMEOUT = 5

SERVER_SETTINGS = {
    "listen_addresses": "",  # Unix socket only
    "unix_socket_permissions": "0700",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",  # workers x (app + pool + admin) connections under -n 16
    "max_prepared_transactions": "16",  # apps that use two-phase commit work too (PostgreSQL's default: off)
    "shared_buffers": "128MB",
    "log_min_messages": "warning",
    "log_min_error_statement": "panic",  # never log statement text (fixtures may contain secrets)
}


@dataclasses.dataclass(frozen=True)
class PostgresServer:
    """What the ``nocrud_postgres`` fixture returns."""

    admin: ConnInfo
    version: str
    embedded: bool
    started_ms: float | None = None  # this run started it (initdb included); None: it was running

    @property
    def dsn(self) -> str:
        """Admin DSN (superuser or a role that may CREATE DATABASE), maintenance database."""
        return self.admin.dsn

    @property
    def major(self) -> int:
        return major_of(self.version)


# --------------------------------------------------------------------------------------------- DSN mode


def check_dsn(dsn: str) -> PostgresServer:
    """Connect once with a short timeout; fail with one clear, password-free message."""
    admin = ConnInfo.parse(dsn)
    try:
        with psycopg.connect(dsn, connect_timeout=DSN_CONNECT_TIMEOUT, autocommit=True) as conn:
            version = running_version(conn)
            row = conn.execute(
                "SELECT rolsuper OR rolcreatedb FROM pg_roles WHERE rolname = current_user"
            ).fetchone()
    except psycopg.Error as exc:
        reason = first_line(exc)
        raise ServerError(
            f"cannot connect to PostgreSQL at {admin.describe()} as {admin.user!r} "
            f"(DSN {admin.redact(dsn)}): {admin.redact(reason)}\n"
            "Check that the server is running and reachable, and that --nocrud-dsn / NOCRUD_DSN / "
            "nocrud_dsn is right; unset it to use the embedded server."
        ) from None
    if not (row and row[0]):
        raise ServerError(
            f"role {admin.user!r} on {admin.describe()} may not CREATE DATABASE; pytest-nocrud needs it "
            "(ALTER ROLE ... CREATEDB, or use a superuser DSN)."
        )
    return PostgresServer(admin=admin, version=version, embedded=False)


def dsn_stopped_error(admin: ConnInfo) -> ServerError | None:
    """Why an existing server stopped answering mid-run; None if it answers."""
    try:
        with psycopg.connect(admin.dsn, connect_timeout=DSN_CONNECT_TIMEOUT, autocommit=True) as conn:
            conn.execute("SELECT 1")
        return None
    except psycopg.Error as exc:
        reason = first_line(exc)
        return ServerError(
            f"the PostgreSQL server stopped answering during the run ({admin.describe()}): "
            f"{admin.redact(reason)}\n"
            "Check that it is running, then run again."
        )


# ------------------------------------------------------------------------------------ embedded cluster


SHARED_MEMORY = Path("/dev/shm")
DISK_NEARLY_FULL = 16 * 2**20  # less free than one clone of a small template
WAL_SEGMENT = 16 * 2**20  # PostgreSQL's default; the cluster's own size is read from pg_wal
RESERVE_NAME = "space-reserve"
MIN_SHARED_MEMORY_FREE = 2 * 1024**3  # Docker's 64 MB /dev/shm would fill up after a few clones


def default_home(rootpath: Path) -> Path:
    """Where a project's cluster lives unless configured: a cache dir keyed by the project's path.

    RAM (tmpfs) when the machine has enough of it: creating and dropping a database there is ~15x
    faster than on an ext4 disk (bench/RESULTS.md), and the cluster is a cache anyway -- fsync is off,
    so it would not survive a crash. It is kept between runs and rebuilt after a reboot. Otherwise a
    disk cache; as root not under root's private home, because the server runs as another OS user
    who must reach the data directory.
    """
    if roomy_tmpfs(SHARED_MEMORY):
        base = SHARED_MEMORY / f"pytest-nocrud-{os.geteuid()}"
    elif os.geteuid() == 0:
        base = Path("/var/tmp/pytest-nocrud-root")
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pytest-nocrud"
    digest = hashlib.sha256(str(rootpath.resolve()).encode()).hexdigest()[:10]
    slug = re.sub(r"[^A-Za-z0-9_.-]", "_", rootpath.resolve().name)[:30] or "project"
    return base / f"{slug}-{digest}"


def roomy_tmpfs(path: Path) -> bool:
    try:
        stat = os.statvfs(path)
    except OSError:
        return False
    return os.access(path, os.W_OK | os.X_OK) and stat.f_bavail * stat.f_frsize >= MIN_SHARED_MEMORY_FREE


def _check_owned_chain(path: Path, server_uid: int | None = None) -> None:
    """Refuse a cluster directory someone else planted in a shared place like /dev/shm or /tmp.

    Below the nearest world-writable (sticky) ancestor every directory must be a real directory owned
    by us (or by the server's OS user, to whom root hands the ones it must enter), or another local
    user could have swapped in their own files or symlinks. Paths with no world-writable ancestor (a
    home directory) are private already.
    """
    below_shared: list[tuple[Path, os.stat_result]] = []
    for current in (path, *path.parents):
        info = current.lstat()
        if info.st_mode & stat_module.S_IWOTH and stat_module.S_ISDIR(info.st_mode):
            break
        below_shared.append((current, info))
    else:
        return
    for current, info in below_shared:
        if stat_module.S_ISLNK(info.st_mode) or info.st_uid not in (os.geteuid(), server_uid):
            raise ServerError(
                f"{current} is not a directory owned by you (uid {os.geteuid()}); refusing to keep a "
                "PostgreSQL cluster under it. Remove it, or set --nocrud-data-dir / NOCRUD_DATA_DIR."
            )


class _IdentityKwargs(TypedDict, total=False):
    user: int
    group: int
    extra_groups: list[int]


@dataclasses.dataclass(frozen=True)
class _RunAs:
    """The OS account the server runs as (None fields: the current user)."""

    user: str | None = None
    uid: int | None = None
    gid: int | None = None

    @classmethod
    def for_current_process(cls) -> _RunAs:
        if os.geteuid() != 0:
            return cls()
        for name in ("postgres", "nobody"):
            try:
                entry = pwd.getpwnam(name)
            except KeyError:
                continue
            return cls(user=name, uid=entry.pw_uid, gid=entry.pw_gid)
        raise ServerError(
            "running as root, and PostgreSQL refuses to run as root; neither a 'postgres' nor a "
            "'nobody' OS user exists to run it as. Create one (useradd --system postgres), run pytest "
            "as a normal user, or set --nocrud-dsn to an existing server."
        )

    def popen_kwargs(self) -> _IdentityKwargs:
        if self.uid is None or self.gid is None:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def own(self, path: Path) -> None:
        """Make ``path`` a private (0700) directory of the server's user."""
        path.mkdir(parents=True, exist_ok=True)
        if self.uid is not None and self.gid is not None:
            os.chown(path, self.uid, self.gid)
        path.chmod(0o700)

    def hand_over(self, path: Path) -> None:
        """As root, give the server's OS user a directory of ours it must enter on its way to the data
        and socket directories, instead of opening it to everybody. One that others may enter
        already (a data dir the user made 0755) stays as it is."""
        if self.uid is None or self.gid is None:
            return
        info = path.stat()
        if info.st_uid == os.geteuid() and not info.st_mode & 0o077:
            os.chown(path, self.uid, self.gid)

    @property
    def group_name(self) -> str:
        return grp.getgrgid(self.gid).gr_name if self.gid is not None else ""


class EmbeddedCluster:
    """A persistent cluster under ``home/pg<major>``; see the module docstring for the rules."""

    def __init__(self, home: Path, *, bindir: str | None = None) -> None:
        self.bindir = find_bindir(bindir)
        self.version = server_version(self.bindir)
        self.major = major_of(self.version)
        self.root = home / f"pg{self.major}"
        self.data = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self.leases = self.root / "leases"
        self._initialized_marker = self.root / "initdb.done"
        self._lock = filelock.FileLock(str(self.root / "server.lock"), timeout=120, mode=FILE_MODE)
        self.socket_dir = self._choose_socket_dir()
        self.run_as = _RunAs.for_current_process()

    def _choose_socket_dir(self) -> Path:
        preferred = self.root / "sock"
        # Unix socket paths are limited to ~107 bytes; deep homes fall back to a short private path.
        if len(str(preferred / f".s.PGSQL.{PORT}")) < 100:
            return preferred
        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"nocrud-sock-{digest}"

    @property
    def admin(self) -> ConnInfo:
        return ConnInfo(host=str(self.socket_dir), port=PORT, user=SUPERUSER, dbname="postgres")

    # -- leases ---------------------------------------------------------------------------------------

    def _live_leases(self) -> list[Path]:
        live = []
        for lease in self.leases.glob("*"):
            try:
                holder = lease.read_text().strip() if lease.name == HELD_LEASE else lease.name
                alive = ProcessId.parse(holder).alive()
            except (OSError, ValueError):
                alive = False
            if alive:
                live.append(lease)
            else:
                lease.unlink(missing_ok=True)
        return live

    # -- lifecycle ------------------------------------------------------------------------------------

    def acquire(self, owner: ProcessId) -> PostgresServer:
        """Make sure the server runs and record that run ``owner`` uses it."""
        private_dir(self.root, top=self.root.parent)
        _check_owned_chain(self.root, self.run_as.uid)
        for on_the_way in (self.root.parent, self.root):  # the data dir, then pg<major>
            self.run_as.hand_over(on_the_way)
        with self._lock:
            private_dir(self.leases, top=self.root)
            # The lease goes first: if we are interrupted while starting, the owner's release still
            # finds it and stops what we started.
            touch_private(self.leases / owner.token)
            started = time.perf_counter()
            initialized = self._initialized_marker.exists()
            if not initialized:
                self._initdb()
            needs_start = self._ensure_running() or not initialized
            started_ms = (time.perf_counter() - started) * 1000 if needs_start else None
        return PostgresServer(admin=self.admin, version=self.version, embedded=True, started_ms=started_ms)

    def _ensure_running(self) -> bool:
        """Start the server if it is not running (True if this call started it). When it cannot start
        because the disk is full, give up the reserve and try once more; still full: one error that
        says so, where, and what to do."""
        try:
            if self._running_pid() is not None:
                return False
            self._start()
        except ServerError:
            if not self.disk_is_full():
                raise
            if self.free_reserve():
                try:
                    if self._running_pid() is None:
                        self._start()
                    return True  # up: the caller drops what filled the disk, then keeps the reserve
                except ServerError:
                    if not self.disk_is_full():
                        raise
            raise self._cannot_start_disk_full() from None
        self.keep_reserve()
        return True

    def _cannot_start_disk_full(self) -> ServerError:
        try:
            usage = shutil.disk_usage(self.data)
            space = f"{usage.free / 2**20:.0f} MiB free of {usage.total / 2**20:.0f} MiB"
        except OSError:
            space = "free space unknown"
        return ServerError(
            f"PostgreSQL cannot start: disk full under its data dir {self.data} ({space}).\n"
            f"Last lines of the server log ({self.log_path}):\n{self._log_tail()}\n"
            "Free space on that file system and run again. If nothing else there can go, remove the "
            f"cluster ({self.root}: pytest-nocrud makes a new one and rebuilds the templates), or put it "
            "elsewhere with --nocrud-data-dir=DIR (or NOCRUD_DATA_DIR)."
        )

    def release(self, owner: ProcessId) -> bool:
        """Drop ``owner``'s lease; stop the server if no live run uses it. True if it was stopped."""
        lease = self.leases / owner.token
        if not lease.exists():
            return False  # this run never used the server: touch nothing
        with self._lock:
            lease.unlink(missing_ok=True)
            if self._live_leases():
                return False
            self.stop()
            return True

    def hold(self) -> None:
        """Keep the running server up until ``release_if_unused`` (``nocrud server start``)."""
        with self._lock:
            pid = self._running_pid()
            if pid is None:
                raise ServerError(f"the server of {self.data} is not running; nothing to hold")
            self.leases.mkdir(mode=0o700, exist_ok=True)
            write_private(self.leases / HELD_LEASE, ProcessId.of(pid).token + "\n")

    def release_if_unused(self) -> bool:
        """End ``nocrud server start``'s hold; stop the server unless a live run holds a lease
        (``nocrud server stop``). True if stopped; otherwise the last run using it stops it."""
        if not self.root.is_dir():
            return True
        with self._lock:
            self.leases.mkdir(mode=0o700, exist_ok=True)
            (self.leases / HELD_LEASE).unlink(missing_ok=True)
            if self._live_leases():
                return False
            self.stop()
            return True

    # -- the space reserve ----------------------------------------------------------------------------
    #
    # A server whose WAL write hits a full disk PANICs; its crash recovery then needs room for one more
    # WAL segment, which a full disk does not have: it cannot start again, and nothing can drop the
    # databases that filled the disk -- every later run fails. So the cluster keeps a reserve file
    # (one WAL segment + 1 MiB, allocated) beside the data dir, and gives it up when the disk is full:
    # the server recovers, the full disk's databases are dropped, and the reserve is taken back.

    @property
    def reserve_path(self) -> Path:
        return self.root / RESERVE_NAME

    def _reserve_bytes(self) -> int:
        wal = self.data / "pg_wal"
        try:
            sizes = (f.stat().st_size for f in wal.iterdir() if re.fullmatch(r"[0-9A-F]{24}", f.name))
            segment = next(sizes, WAL_SEGMENT)
        except OSError:
            segment = WAL_SEGMENT
        return max(segment, WAL_SEGMENT // 16) + 2**20

    def keep_reserve(self) -> bool:
        """Allocate the reserve if it is missing, the file system is at least six times its size (a
        small disk is not made smaller by a quarter) and has room for it twice over. True if a reserve
        is in place."""
        path = self.reserve_path
        size = self._reserve_bytes()
        try:
            if path.exists():
                return True
            usage = shutil.disk_usage(self.root)
            if usage.total < 6 * size or usage.free < 2 * size:
                return False
            partial = path.with_name(RESERVE_NAME + ".tmp")
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.posix_fallocate(fd, 0, size)
            finally:
                os.close(fd)
            os.replace(partial, path)
            return True
        except OSError:
            path.with_name(RESERVE_NAME + ".tmp").unlink(missing_ok=True)
            return False

    def free_reserve(self) -> int:
        """Give the reserve's space back to the file system (the disk is full); the bytes freed."""
        try:
            size = self.reserve_path.stat().st_size
            self.reserve_path.unlink()
            return size
        except OSError:
            return 0

    def recover_from_full_disk(self, owner: ProcessId) -> None:
        """The disk is full: give up the reserve, and have the server up and accepting connections
        again (a server that PANICked on a WAL write is in crash recovery, or stopped because its
        recovery found no room), so that what filled the disk can be dropped. Raises ServerError
        (disk full, where, what to do) if it still cannot run."""
        self.free_reserve()
        self.acquire(owner)
        for in_time in poll(START_TIMEOUT, longest=0.05):
            try:
                psycopg.connect(self.admin.dsn, connect_timeout=DSN_CONNECT_TIMEOUT).close()
                return
            except psycopg.OperationalError:  # "the database system is in recovery mode"
                pid = self._postmaster_pid()
                if pid is None or not is_running(pid):  # its recovery failed: start it afresh
                    self.acquire(owner)
            if not in_time:
                raise self._cannot_start_disk_full()

    def free_mib(self) -> int:
        """Free space on the data dir's file system, in MiB (-1 when unknown)."""
        try:
            return shutil.disk_usage(self.data).free // 2**20
        except OSError:
            return -1

    def disk_is_full(self, *, log: bool = True) -> bool:
        """The data dir's file system has (almost) no room, or (``log``) the server just said so in its
        log."""
        try:
            if shutil.disk_usage(self.data).free < DISK_NEARLY_FULL:
                return True
        except OSError:
            pass
        return log and "No space left on device" in self._log_tail(lines=20)

    def disk_full_hint(self) -> str:
        """What to say when PostgreSQL reports 'No space left on device' for our data dir."""
        try:
            usage = shutil.disk_usage(self.data)
            space = f"{usage.free / 2**20:.0f} MiB free of {usage.total / 2**20:.0f} MiB"
        except OSError:
            space = "free space unknown"
        return (
            f"The file system under the data dir is full: {self.data} ({space}).\n"
            f"Last lines of the server log ({self.log_path}):\n{self._log_tail()}\n"
            "Free space there (old clusters: 'nocrud gc'), or put the cluster elsewhere with "
            "--nocrud-data-dir=DIR (or NOCRUD_DATA_DIR)."
        )

    def _log_tail(self, lines: int = 8) -> str:
        """The log's last lines that tell something (routine checkpoint chatter dropped)."""
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            text = []
        telling = [line for line in text if "LOG:  checkpoint " not in line]
        return indented("\n".join(telling), last=lines, empty="(empty)")

    def stopped_error(self) -> ServerError | None:
        """Why the server a run was using is gone (killed, crashed), with its log's tail; None if up."""
        pid = self._postmaster_pid()
        if pid is not None and is_running(pid) and _is_postgres(pid):
            return None
        return ServerError(
            f"the PostgreSQL server stopped during the run (embedded, data dir {self.data}).\n"
            f"Last lines of its log ({self.log_path}):\n{self._log_tail()}\n"
            "Run again: a new server starts. If it keeps stopping, the log says why (killed? out of "
            "memory? disk full?)."
        )

    def stop(self) -> None:
        """Fast shutdown (SIGINT), escalating to SIGKILL; a no-op when not running."""
        pid = self._postmaster_pid()
        if pid is not None and is_running(pid):
            terminate(pid, first=signal.SIGINT, grace=15.0)
        _reap_children()

    # -- internals ------------------------------------------------------------------------------------

    def _initdb(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self.data)  # a half-built cluster from an interrupted initdb
        if self.run_as.user:
            self._check_reachable()
        self.run_as.own(self.data)
        args = [
            str(self.bindir / "initdb"),
            "-D", str(self.data),
            "-U", SUPERUSER,
            "--auth-local=trust",
            "--auth-host=reject",
            "-E", "UTF8",
            "--locale=C",
            "--no-sync",
        ]  # fmt: skip
        if self.major >= 14:
            args.append("--no-instructions")
        result = subprocess.run(
            args,
            capture_output=True,
            text=True,
            cwd="/",
            **self.run_as.popen_kwargs(),
        )
        if result.returncode != 0:
            shutil.rmtree(self.data, ignore_errors=True)
            raise ServerError(
                f"initdb failed (exit {result.returncode}) for {self.data}:\n"
                + indented(result.stdout + result.stderr, last=20)
            )
        write_private(self._initialized_marker, f"{self.major}\n")

    def _check_reachable(self) -> None:
        """As root, the server's OS user must be able to enter our directory: say so clearly."""
        probe = subprocess.run(
            ["test", "-x", str(self.root)],
            cwd="/",
            **self.run_as.popen_kwargs(),
        )
        if probe.returncode != 0:
            raise ServerError(
                f"the PostgreSQL server runs as OS user {self.run_as.user!r} (it refuses root) and "
                f"cannot reach {self.root}: a parent directory is private. Choose a data directory "
                "that user can reach: --nocrud-data-dir=/var/tmp/nocrud (or NOCRUD_DATA_DIR)."
            )

    def _postmaster_pid(self) -> int | None:
        try:
            first = (self.data / "postmaster.pid").read_text().split("\n", 1)[0]
            return int(first)
        except (OSError, ValueError):
            return None

    def _pid_file_status(self) -> str:
        try:
            lines = (self.data / "postmaster.pid").read_text().splitlines()
        except OSError:
            return ""
        return lines[7].strip() if len(lines) > 7 else ""

    def _running_pid(self) -> int | None:
        """PID of a live postmaster for our data dir; clears a stale pid file left by a killed run."""
        pid = self._postmaster_pid()
        if pid is None:
            return None
        if is_running(pid) and _is_postgres(pid):
            if self._pid_file_status() != "ready":
                self._wait_ready(pid, proc=None)
            return pid
        # Stale: the postmaster died without cleaning up (kill -9, reboot, OOM).
        (self.data / "postmaster.pid").unlink(missing_ok=True)
        for stale in self.socket_dir.glob(".s.PGSQL.*"):
            stale.unlink(missing_ok=True)
        return None

    def _start(self) -> None:
        self.run_as.own(self.socket_dir)
        args = [str(self.bindir / "postgres"), "-D", str(self.data), "-k", str(self.socket_dir)]
        args += ["-p", str(PORT)]
        for name, value in SERVER_SETTINGS.items():
            args += ["-c", f"{name}={value}"]
        with open_private(self.log_path, "ab") as log:
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd="/",
                start_new_session=True,  # Ctrl-C in the terminal must not reach a shared server
                **self.run_as.popen_kwargs(),
            )
        _CHILDREN.append(proc)
        self._wait_ready(proc.pid, proc=proc)

    def _wait_ready(self, pid: int, proc: subprocess.Popen[bytes] | None) -> None:
        """Poll the pid file's status line (what pg_ctl -w does) until 'ready'."""
        for in_time in poll(START_TIMEOUT, longest=0.02):
            if self._pid_file_status() == "ready":
                return
            exited = proc.poll() is not None if proc else not is_running(pid)
            if exited:
                raise ServerError(
                    f"PostgreSQL exited during start-up; last lines of {self.log_path}:\n"
                    + indented(self.log_path.read_text(errors="replace"), last=20)
                )
            if not in_time:
                terminate(pid, first=signal.SIGQUIT, grace=5.0)
                raise ServerError(
                    f"PostgreSQL did not become ready within {START_TIMEOUT:.0f}s; see {self.log_path}"
                )


_CHILDREN: list[subprocess.Popen[bytes]] = []


def _reap_children() -> None:
    """Collect exit statuses of servers this process started, so none lingers as a zombie."""
    for proc in list(_CHILDREN):
        if proc.poll() is not None:
            _CHILDREN.remove(proc)


def _is_postgres(pid: int) -> bool:
    try:
        return b"postgres" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc: trust the live pid
