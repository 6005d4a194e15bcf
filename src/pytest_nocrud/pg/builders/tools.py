"""Running a build tool (a migration command, ``manage.py``): the template database's environment,
its output streamed and masked, its own process group ended with its build."""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from ...errors import BuildError
from ..conninfo import ConnInfo
from ..procs import interpreter_path
from .base import Log

#: Lines of a failing tool's output quoted in the error.
TAIL_LINES = 30


# --- subprocess plumbing --------------------------------------------------------------------------

#: Called with the process group id of every build tool started in this process (the template layer
#: records it on the build database, so a later run can end the group of a builder that was killed).
_spawn_listeners: list[Callable[[int], None]] = []


@contextmanager
def watching_spawns(listener: Callable[[int], None]) -> Iterator[None]:
    """Tell ``listener`` the process group of each build tool started inside the block."""
    _spawn_listeners.append(listener)
    try:
        yield
    finally:
        _spawn_listeners.remove(listener)


def end_group(pgid: int) -> None:
    """SIGKILL a build tool's whole process group (a shell's children included), if still there."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _run_tool(
    cmd: str | list[str],
    *,
    shell: bool,
    cwd: Path,
    target: ConnInfo,
    log: Log,
    extra_env: Mapping[str, str] | None = None,
) -> tuple[int, list[str], str]:
    """Run a build tool with the target's env (plus ``extra_env``); stream its merged output to ``log``.
    Returns ``(exit code, last TAIL_LINES lines, whole output)``, the password masked everywhere."""
    env = {**os.environ, **target.env(), **(extra_env or {}), "PYTHONUNBUFFERED": "1"}
    env["PATH"] = interpreter_path(env)
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    chunks: list[str] = []
    started = time.perf_counter()
    try:
        proc = subprocess.Popen(
            cmd,
            shell=shell,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,  # its own process group: ended as a whole if the build is abandoned
        )
    except OSError as e:
        raise BuildError(f"cannot run {cmd if shell else ' '.join(cmd)}: {e}") from e
    assert proc.stdout is not None
    with proc:
        try:
            for listener in list(_spawn_listeners):
                listener(proc.pid)
            for raw in proc.stdout:
                line = target.redact(raw.rstrip("\n"))
                chunks.append(line)
                tail.append(line)
                log("  | " + line)
        except BaseException:  # Ctrl-C, SIGTERM, a failing listener: no tool may outlive its build
            end_group(proc.pid)
            raise
        proc.wait()
        end_group(proc.pid)  # a background child the tool left behind must not write on later
    log(f"  exit code {proc.returncode} after {time.perf_counter() - started:.1f} s")
    return proc.returncode, list(tail), "\n".join(chunks)


def _format_tail(tail: Sequence[str]) -> str:
    if not tail:
        return "(no output)"
    return f"last {len(tail)} line(s) of output:\n" + "\n".join("  | " + line for line in tail)


def _last_error_line(tail: Sequence[str]) -> str:
    """Django/Python's final ``SomeError: message`` line, else the last non-blank line."""
    lines = [line.strip() for line in tail if line.strip()]
    for line in reversed(lines):
        if re.match(r"^[\w.]+(Error|Exception|Warning|Exit|Interrupt)\b.*", line):
            return line
    return lines[-1] if lines else "(no output)"
