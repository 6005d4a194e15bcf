"""The template key: one hash over everything that shapes the template's schema.

Two checkouts with the same migration files produce the same key (so a template is shared across
worktrees, CI checkouts and machines using one server); touching, moving the project or listing files
in another order does not change it; changing one byte of an input does.

Input globs are lines RELATIVE to the project root (absolute patterns are rejected, because the key
must not depend on where the project lives; ``../shared/*.sql`` reaches outside the root and stays
relative). Syntax: ``*``, ``?`` and ``[...]`` match within one path segment, ``**`` matches any number
of directories (zero included), a line naming a directory means every file under it, a line starting
with ``!`` excludes matching files, blank lines and ``#`` comments are ignored. While walking, virtual
environments, VCS and cache directories (``.git``, ``.venv``, ``site-packages``, ``node_modules``,
``__pycache__``, ...) are skipped unless a pattern names them literally.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .names import BUILD_PREFIX, SCHEMA_PREFIX, TEMPLATE_PREFIX, schema_name, template_name

__all__ = [
    "BUILD_PREFIX",
    "SCHEMA_PREFIX",
    "TEMPLATE_FORMAT_VERSION",
    "TEMPLATE_PREFIX",
    "TemplateKey",
    "compute_key",
    "match_inputs",
    "schema_name",
    "template_name",
]

#: Bump whenever what a template database contains or how it is finalized changes, so that templates
#: built by an older plugin are never reused.
# 2: two layers (schema, data) and the nocrud.sql_files tracking table. 3: an sql: schema layer never
# runs a fixture file lying in its directory (layers of 2 may hold such a file's rows: rebuild them).
# 4: every layer is VACUUM (FREEZE)d before it is finalized, so a read-only test can hand its clone on.
TEMPLATE_FORMAT_VERSION = 4


SKIPPED_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        ".venv",
        "venv",
        "site-packages",
        "node_modules",
        "__pycache__",
        ".tox",
        ".nox",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".eggs",
    }
)

_CHUNK = 1 << 20


@dataclass(frozen=True)
class TemplateKey:
    """The key and what it was computed from (shown by status/diagnostics, used for warnings)."""

    key: str
    files: tuple[str, ...]  # matched inputs, relative posix paths, sorted
    unmatched_globs: tuple[str, ...] = ()  # include lines that matched no file: worth a warning
    root: Path = field(default=Path("."), compare=False)
    digests: tuple[str, ...] = field(default=(), compare=False)  # sha256 hex of each of ``files``

    @property
    def manifest(self) -> dict[str, str]:
        """``{relative path: sha256 hex}``: what an appended-migration build compares."""
        return dict(zip(self.files, self.digests, strict=True))

    @property
    def name(self) -> str:
        return template_name(self.key)

    @property
    def paths(self) -> list[Path]:
        return [self.root / f for f in self.files]




def compute_key(
    root: Path, input_globs: Sequence[str], builder_identity: str, server_major: int
) -> TemplateKey:
    """Hash the matched files (relative path + content), the builder identity, the server's major
    version and ``TEMPLATE_FORMAT_VERSION`` into a SHA-256 hex key.

    Every field is tagged and length-prefixed, so no two different inputs frame to the same bytes.
    Contents are hashed by streaming; the key never sees absolute paths, mtimes or listing order.
    """
    root = Path(root)
    files, unmatched = match_inputs(root, input_globs)
    h = hashlib.sha256()

    def frame(tag: bytes, data: bytes) -> None:
        h.update(tag + len(data).to_bytes(8, "big") + data)

    frame(b"nocrud-template-key", str(TEMPLATE_FORMAT_VERSION).encode())
    frame(b"builder", builder_identity.encode())
    frame(b"server-major", str(int(server_major)).encode())
    frame(b"file-count", str(len(files)).encode())
    digests = []
    for rel in files:
        digest = _file_digest(root / rel)
        digests.append(digest.hex())
        frame(b"path", rel.encode())
        frame(b"sha256", digest)
    return TemplateKey(
        key=h.hexdigest(),
        files=tuple(files),
        unmatched_globs=tuple(unmatched),
        root=root,
        digests=tuple(digests),
    )


def match_inputs(root: Path, input_globs: Sequence[str]) -> tuple[list[str], list[str]]:
    """``(files, unmatched include lines)``: the sorted relative posix paths selected by the lines."""
    includes: list[str] = []
    excludes: list[re.Pattern[str]] = []
    for raw in input_globs:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = _normalize(line[1:].strip() if negate else line)
        if negate:
            excludes.append(re.compile(_translate(pattern)))
        else:
            includes.append(pattern)
    found: set[str] = set()
    unmatched: list[str] = []
    for pattern in includes:
        hits = {rel for rel in _expand(root, pattern) if not any(x.fullmatch(rel) for x in excludes)}
        if not hits:
            unmatched.append(pattern)
        found |= hits
    return sorted(found), unmatched


def _normalize(pattern: str) -> str:
    if os.path.isabs(pattern) or pattern.startswith("~"):
        raise ValueError(
            f"template input glob {pattern!r} is absolute: write globs relative to the project root "
            "(the template key must not depend on where the project lives)"
        )
    parts = [p for p in pattern.replace(os.sep, "/").split("/") if p not in ("", ".")]
    return "/".join(parts) if parts else "."


def _has_magic(segment: str) -> bool:
    return any(c in segment for c in "*?[")


def _translate(pattern: str) -> str:
    """Glob (relative, ``/``-separated) -> regex over relative posix paths."""
    segments = pattern.split("/")
    out = []
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg == "**":
            out.append("(?:[^/]+/)*[^/]+" if last else "(?:[^/]+/)*")
        else:
            out.append(_translate_segment(seg) + ("" if last else "/"))
    return "".join(out)


def _translate_segment(seg: str) -> str:
    res, i, n = [], 0, len(seg)
    while i < n:
        c = seg[i]
        i += 1
        if c == "*":
            res.append("[^/]*")
        elif c == "?":
            res.append("[^/]")
        elif c == "[":
            j = i
            if j < n and seg[j] in "!^":
                j += 1
            if j < n and seg[j] == "]":
                j += 1
            while j < n and seg[j] != "]":
                j += 1
            if j >= n:
                res.append(re.escape(c))
            else:
                body = seg[i:j]
                i = j + 1
                if body[:1] in ("!", "^"):
                    body = "^" + body[1:]
                res.append("[" + body.replace("\\", "\\\\").replace("/", "") + "]")
        else:
            res.append(re.escape(c))
    return "".join(res)


def _expand(root: Path, pattern: str) -> Iterator[str]:
    """Relative posix paths (relative to ``root``) of the files matching ``pattern``."""
    segments = pattern.split("/")
    literal: list[str] = []
    for seg in segments:
        if _has_magic(seg):
            break
        literal.append(seg)
    rest = segments[len(literal) :]
    base = os.path.normpath(os.path.join(root, *literal)) if literal else os.path.normpath(root)
    if not rest:
        if os.path.isfile(base):
            yield _rel(base, root)
            return
        if not os.path.isdir(base):
            return
        rest = ["**"]
    regex = re.compile(_translate("/".join(rest)))
    max_depth = None if "**" in rest else len(rest) - 1
    for dirpath, dirnames, filenames in os.walk(base):
        reldir = os.path.relpath(dirpath, base)
        depth = 0 if reldir == "." else reldir.count(os.sep) + 1
        if max_depth is not None and depth >= max_depth:
            dirnames[:] = []
        else:
            dirnames[:] = [
                d
                for d in dirnames
                if d not in SKIPPED_DIRS and not os.path.exists(os.path.join(dirpath, d, "pyvenv.cfg"))
            ]
        if max_depth is not None and depth > max_depth:
            continue
        prefix = "" if reldir == "." else reldir.replace(os.sep, "/") + "/"
        for name in filenames:
            if regex.fullmatch(prefix + name):
                yield _rel(os.path.join(dirpath, name), root)


def _rel(path: str, root: Path) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


def _file_digest(path: Path) -> bytes:
    h = hashlib.sha256()
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.digest()
