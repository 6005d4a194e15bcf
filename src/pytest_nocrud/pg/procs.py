"""Process identity that survives PID reuse: (pid, start time).

Leases on the shared embedded server name the pytest run that holds them. A bare PID is not enough:
after a crash the PID may be reused by an unrelated process and the lease would look alive forever.
On Linux the kernel's process start time (``/proc/<pid>/stat`` field 22) disambiguates.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after its last ')'.
    return raw[raw.rindex(")") + 2 :].split()


def start_time(pid: int) -> str:
    """Kernel start time of ``pid`` ('' where /proc is unavailable, e.g. macOS)."""
    fields = _stat_fields(pid)
    return fields[19] if fields else ""


def is_running(pid: int) -> bool:
    """True for a live process; a zombie (exited, not yet reaped) counts as gone."""
    if pid <= 0:
        return False
    fields = _stat_fields(pid)
    if fields is not None:
        return fields[0] not in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not Path("/proc").is_dir()


@dataclasses.dataclass(frozen=True)
class ProcessId:
    pid: int
    started: str

    @classmethod
    def of(cls, pid: int) -> ProcessId:
        return cls(pid, start_time(pid))

    @classmethod
    def parse(cls, token: str) -> ProcessId:
        pid, _, started = token.partition("-")
        return cls(int(pid), started)

    @property
    def token(self) -> str:
        return f"{self.pid}-{self.started}"

    def alive(self) -> bool:
        return is_running(self.pid) and (not self.started or start_time(self.pid) == self.started)


def pids_whose_cmdline_has(*needles: str) -> list[int]:
    """Live processes whose command line contains every needle (e.g. "postgres" and a data dir).

    Used to prove nothing outlived a run, and by benchmarks to clean up; Linux /proc only.
    """
    pids = []
    proc_root = Path("/proc")
    for entry in proc_root.iterdir() if proc_root.is_dir() else []:
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if all(needle in cmdline for needle in needles) and is_running(int(entry.name)):
            pids.append(int(entry.name))
    return pids


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group ``pgid``; Linux /proc only (else [pgid] if alive)."""
    proc_root = Path("/proc")
    if not proc_root.is_dir():
        return [pgid] if is_running(pgid) else []
    members = []
    for entry in proc_root.iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
                members.append(int(entry.name))
    return members


def poll(
    timeout: float, *, first: float = 0.002, longest: float = 0.05, factor: float = 2.0
) -> Iterator[bool]:
    """The rounds of a polling loop, with a short delay between them that grows up to ``longest``.

    Each round yields whether time is left; the round after the deadline yields False and is the
    last, so the loop body looks once more, then gives up::

        for in_time in poll(30):
            if ready(): return
            if not in_time: raise TimeoutError
    """
    deadline = time.monotonic() + timeout
    delay = first
    while True:
        in_time = time.monotonic() < deadline
        yield in_time
        if not in_time:
            return
        time.sleep(delay)
        delay = min(delay * factor, longest)


def _poll_until(done: Callable[[], bool], timeout: float) -> bool:
    """Poll ``done`` with a short, growing delay; True if it held within ``timeout`` seconds."""
    for in_time in poll(timeout):
        if done():
            return True
        if not in_time:
            return False
    return False  # pragma: no cover - poll() always ends on a round that is not in time


def indented(text: str, prefix: str = "    ", *, last: int | None = None, empty: str = "") -> str:
    """``text`` (its ``last`` lines only, if given) with every line indented: a process's output
    quoted inside an error message. ``empty`` stands in when there is no line at all."""
    lines = text.rstrip().lstrip("\n").splitlines()
    if last is not None:
        lines = lines[-last:]
    return "\n".join(prefix + line for line in lines) or (prefix + empty if empty else "")


def wait_group_gone(pgid: int, timeout: float) -> bool:
    """Wait until no live process is left in group ``pgid``; True if that happened in time."""
    return _poll_until(lambda: not group_members(pgid), timeout)


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait until ``pid`` is gone (or a zombie); True if it went within ``timeout`` seconds."""
    return _poll_until(lambda: not is_running(pid), timeout)


def terminate(pid: int, *, first: signal.Signals, grace: float) -> None:
    """Send ``first``; escalate to SIGKILL if the process is still there after ``grace`` seconds."""
    try:
        os.kill(pid, first)
    except ProcessLookupError:
        return
    if not wait_gone(pid, grace):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        wait_gone(pid, 5.0)


def listening_ports(pids: list[int]) -> set[int]:
    """TCP ports the processes ``pids`` listen on (IPv4 and IPv6); Linux /proc only, else empty.

    A socket's inode links an open file descriptor (``/proc/<pid>/fd/* -> socket:[inode]``) to its
    row in ``/proc/net/tcp``: how we can tell an app that binds its own port from one that is slow.
    """
    inodes: set[str] = set()
    for pid in pids:
        fd_dir = Path(f"/proc/{pid}/fd")
        try:
            entries = list(fd_dir.iterdir())
        except OSError:
            continue
        for entry in entries:
            try:
                target = os.readlink(entry)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            listening = len(fields) > 9 and fields[3] == "0A"  # TCP_LISTEN
            if listening and fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def interpreter_path(environ: Mapping[str, str]) -> str:
    """``PATH`` with the running interpreter's directory first: ``.venv/bin/pytest`` started from an
    IDE, without an activated venv, still finds the venv's ``alembic``/``django-admin``."""
    here = str(Path(sys.executable).parent)
    rest = [p for p in environ.get("PATH", os.defpath).split(os.pathsep) if p and p != here]
    return os.pathsep.join([here, *rest])
