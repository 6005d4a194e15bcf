"""Build-once protocol for template databases (the pgtestdb / IntegreSQL idea).

Fast path: a *finalized* template for the key exists -> use it; no lock is taken. Slow path: take a
file lock (processes on this machine) and a PostgreSQL advisory lock (machines sharing the server), look
again, drop an unfinalized leftover of a build that died, create, build, finalize. Finalizing is the last
step, so a build killed at any point leaves nothing that looks usable.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import filelock
import psycopg

from ..errors import BuildError
from . import admin
from .builders import Builder
from .conninfo import ConnInfo
from .key import TEMPLATE_PREFIX, TemplateKey

KEEP_TEMPLATES = 3  # newest templates of other keys kept (branch switching stays warm)
Progress = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class Template:
    """What the ``nocrud_template`` fixture returns."""

    name: str
    key: str
    reused: bool
    build_seconds: float


def ensure_template(
    server: ConnInfo,
    key: TemplateKey,
    builder: Builder,
    *,
    lock_dir: Path,
    run_token: str,
    rebuild: bool = False,
    progress: Progress = lambda message: None,
    after_build: Callable[[ConnInfo], None] | None = None,
) -> Template:
    """Return a finalized template for ``key``, building it at most once per key (or per run if rebuild).

    ``after_build`` runs after the builder, before finalizing, with the database being built (e.g. to
    run ``@template_setup`` functions against an app on it); if it raises, nothing is finalized.
    """
    name = key.name
    with admin.connect(server) as conn:
        if _usable(conn, name, rebuild=rebuild, run_token=run_token):
            return _existing(conn, name, key, run_token)
    lock_dir.mkdir(parents=True, exist_ok=True)
    with (
        filelock.FileLock(str(lock_dir / f"{name}.lock")),
        admin.connect(server, purpose="build lock") as conn,
    ):
        with admin.advisory_lock(conn, name):
            if _usable(conn, name, rebuild=rebuild, run_token=run_token):  # someone built it meanwhile
                return _existing(conn, name, key, run_token)
            log_path = lock_dir / f"{name}.log"
            seconds = _build(conn, server, name, key, builder, run_token, progress, log_path, after_build)
        _drop_old_templates(conn, keep=name)
    return Template(name, key.key, reused=False, build_seconds=seconds)


def _existing(conn: admin.Conn, name: str, key: TemplateKey, run_token: str) -> Template:
    """A finalized template; one built by another worker of this run reports that build's time."""
    note = admin.note_of(conn, name)
    if note.get("run") != run_token:
        return Template(name, key.key, reused=True, build_seconds=0.0)
    return Template(name, key.key, reused=False, build_seconds=float(note.get("seconds", 0.0)))


def _usable(conn: admin.Conn, name: str, *, rebuild: bool, run_token: str) -> bool:
    if not admin.is_finalized(conn, name):
        return False
    # --nocrud-rebuild discards a template once per run: one built by this very run is fresh.
    return not rebuild or _built_by(conn, name, run_token)


def _built_by(conn: admin.Conn, name: str, run_token: str) -> bool:
    return admin.note_of(conn, name).get("run") == run_token


def _build(
    conn: admin.Conn,
    server: ConnInfo,
    name: str,
    key: TemplateKey,
    builder: Builder,
    run_token: str,
    progress: Progress,
    log_path: Path,
    after_build: Callable[[ConnInfo], None] | None = None,
) -> float:
    started = time.perf_counter()
    admin.drop(conn, name, maybe_template=True)  # an unfinalized leftover, or the one being rebuilt
    progress(f"building template {name} ({builder.identity}, {len(key.files)} input files) ...")
    admin.create(conn, name)
    try:
        with open(log_path, "w", encoding="utf-8") as build_log:
            builder.build(server.with_db(name), lambda line: print(line, file=build_log, flush=True))
        if after_build is not None:
            after_build(server.with_db(name))
        admin.terminate(conn, name, wait_ms=5000)  # a builder's stray session would block every clone
        seconds = time.perf_counter() - started
        admin.finalize(
            conn, name, {"key": key.key, "run": run_token, "built_at": time.time(), "seconds": seconds}
        )
    except BaseException:
        admin.drop(conn, name, maybe_template=True)  # never leave a half-built template behind
        raise
    progress(f"built template {name} in {seconds:.2f}s")
    return seconds


def _drop_old_templates(conn: admin.Conn, *, keep: str) -> None:
    """Keep the newest few templates of other keys; drop the rest (each is a full copy on disk)."""
    others = [n for n in admin.names_like(conn, TEMPLATE_PREFIX) if n != keep]
    by_age = sorted(others, key=lambda n: float(admin.note_of(conn, n).get("built_at", 0.0)), reverse=True)
    for old in by_age[KEEP_TEMPLATES:]:
        try:
            admin.drop(conn, old, maybe_template=True)
        except psycopg.Error:  # in use by a concurrent run of another branch: try next time
            continue


__all__ = ["BuildError", "Template", "ensure_template"]
