"""The template cache: a finalized template's two layers as one archive file, restored on a runner
that lacks them instead of built (a cold CI runner with a warm ``actions/cache``).

An archive ``nocrud-template-<data key>.tar`` (0600) holds ``manifest.json`` and one ``pg_dump``
custom-format file per layer (``schema.dump``, ``template.dump``). The manifest names the data and
schema keys, the PostgreSQL major, the template format version, the cache format version, the
sha256 of each dump file and each layer's note (what the layer's COMMENT holds: the schema layer's file
manifest, which appended-migration builds compare). An archive is used only if all of them match
what this run needs; anything else -- another key, another major, a truncated file, one flipped
byte -- is refused with one line (``CacheRefused``) and the template is built as usual.

This module only reads and writes archives and runs the tools; ``template`` decides when, under the
layer's build locks, and finalizes a restored layer exactly like a built one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import filelock

from ..errors import NocrudError
from .conninfo import ConnInfo
from .key import TEMPLATE_FORMAT_VERSION
from .private import DIR_MODE, FILE_MODE

#: Bump whenever the archive's layout or the manifest's fields change.
CACHE_FORMAT_VERSION = 1
MANIFEST = "manifest.json"
LAYERS = ("schema", "template")  # the archive's layers, restored in this order
DUMP_FILES = {layer: f"{layer}.dump" for layer in LAYERS}
#: Note fields that describe one server's history of a layer, not the layer: never carried over.
LOCAL_NOTE_FIELDS = ("run", "used_at", "built_at", "seconds", "how", "restored", "owner", "host", "groups")
_CHUNK = 1 << 20
PARALLEL_FROM_BYTES = 8 << 20  # smaller dumps restore faster in one job than with -j's extra sessions


class CacheRefused(NocrudError):
    """An archive this run cannot use; the message is the one-line reason."""


def archive_name(key: str) -> str:
    """The archive of the template with data key ``key`` (the full key: names never collide)."""
    return f"nocrud-template-{key}.tar"


@dataclasses.dataclass(frozen=True)
class Manifest:
    """What an archive holds and what it was made for."""

    key: str  # the data layer's key
    schema_key: str
    pg_major: int
    template_format: int
    sha256: Mapping[str, str]  # archive member -> sha256 hex
    notes: Mapping[str, Mapping[str, Any]]  # "schema" / "template" -> the layer's note
    cache_format: int = CACHE_FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(
            {
                "cache_format": self.cache_format,
                "key": self.key,
                "schema_key": self.schema_key,
                "pg_major": self.pg_major,
                "template_format": self.template_format,
                "sha256": dict(self.sha256),
                "notes": {layer: dict(note) for layer, note in self.notes.items()},
            },
            indent=1,
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        """Parse a manifest; ``CacheRefused`` if it is not one (bad JSON, a field missing or mistyped)."""
        try:
            raw = json.loads(text)
        except (ValueError, UnicodeDecodeError):
            raise CacheRefused("manifest is not valid JSON") from None
        if not isinstance(raw, dict):
            raise CacheRefused("manifest is not a JSON object")
        try:
            sha256, notes = raw["sha256"], raw["notes"]
            manifest = cls(
                key=_text(raw["key"]),
                schema_key=_text(raw["schema_key"]),
                pg_major=_number(raw["pg_major"]),
                template_format=_number(raw["template_format"]),
                cache_format=_number(raw["cache_format"]),
                sha256={_text(k): _text(v) for k, v in sha256.items()},
                notes={_text(k): dict(v) for k, v in notes.items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CacheRefused(f"manifest is malformed ({type(exc).__name__}: {exc})") from None
        return manifest


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _number(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"expected a whole number, got {type(value).__name__}")
    return value


def check_manifest(manifest: Manifest, *, key: str, schema_key: str, pg_major: int) -> None:
    """``CacheRefused`` (one line: the first thing that does not match) unless the archive was made
    for exactly this template: same cache and template format, same PostgreSQL major, same keys."""
    check_formats(manifest, pg_major=pg_major)
    if manifest.key != key:
        raise CacheRefused(
            f"key mismatch (it holds template key {manifest.key[:12]}, this run needs {key[:12]})"
        )
    if manifest.schema_key != schema_key:
        raise CacheRefused(
            f"schema key mismatch (it holds {manifest.schema_key[:12]}, this run needs {schema_key[:12]})"
        )


def check_formats(manifest: Manifest, *, pg_major: int) -> None:
    """``CacheRefused`` unless this plugin and server can restore the archive's layers at all: same
    cache and template format, same PostgreSQL major, a dump and a note for every layer."""
    if manifest.cache_format != CACHE_FORMAT_VERSION:
        raise CacheRefused(
            f"cache format {manifest.cache_format}, this plugin reads format {CACHE_FORMAT_VERSION}"
        )
    if manifest.template_format != TEMPLATE_FORMAT_VERSION:
        raise CacheRefused(
            f"template format version {manifest.template_format}, this plugin builds version "
            f"{TEMPLATE_FORMAT_VERSION}"
        )
    if manifest.pg_major != pg_major:
        raise CacheRefused(f"made by PostgreSQL {manifest.pg_major}, this server is PostgreSQL {pg_major}")
    if set(manifest.sha256) != set(DUMP_FILES.values()) or set(manifest.notes) != set(LAYERS):
        expected = sorted(DUMP_FILES.values())
        raise CacheRefused(f"manifest lists {sorted(manifest.sha256)}, expected {expected}")
    if not all(len(digest) == 64 for digest in manifest.sha256.values()):
        raise CacheRefused("manifest holds a malformed sha256")


def portable_note(note: Mapping[str, Any]) -> dict[str, Any]:
    """A layer's note without what only this server's history says (runs, uses, timings)."""
    return {name: value for name, value in note.items() if name not in LOCAL_NOTE_FIELDS}


# ------------------------------------------------------------------------------------------- the tools


@dataclasses.dataclass(frozen=True)
class DumpTools:
    """``pg_dump`` and ``pg_restore`` of the server's major."""

    bindir: Path
    major: int

    def _run(self, tool: str, args: list[str], server: ConnInfo) -> None:
        """Run a tool against ``server``'s database; the password travels in the environment only."""
        env = {**os.environ, **server.env(), "PGAPPNAME": f"pytest-nocrud {tool}"}
        env.pop("DATABASE_URL", None)
        if not server.password:
            env.pop("PGPASSWORD", None)
        done = subprocess.run(
            [str(self.bindir / tool), *args], capture_output=True, text=True, env=env, cwd="/", timeout=3600
        )
        if done.returncode != 0:
            lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
            reason = server.redact(lines[0] if lines else f"exit code {done.returncode}")
            raise CacheRefused(f"{tool} failed on {server.dbname}: {reason}")

    def dump(self, db: ConnInfo, path: Path) -> None:
        """A custom-format dump of the whole database (compressed; restorable in parallel)."""
        self._run("pg_dump", ["--format=custom", f"--file={path}", "--no-password", db.dbname], db)
        path.chmod(FILE_MODE)

    def restore(self, db: ConnInfo, path: Path) -> None:
        """Restore a dump into the (empty) database ``db``; the first error stops it."""
        jobs = min(4, os.cpu_count() or 1) if path.stat().st_size >= PARALLEL_FROM_BYTES else 1
        self._run(
            "pg_restore",
            ["--exit-on-error", "--no-owner", "--no-password", f"--jobs={jobs}", f"--dbname={db.dbname}",
             str(path)],
            db,
        )  # fmt: skip


# ----------------------------------------------------------------------------------- the cache directory


def make_private_dirs(path: Path) -> Path:
    """``mkdir -p``, every directory created here 0700 (existing ones are left as they are)."""
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=DIR_MODE)
            directory.chmod(DIR_MODE)  # mkdir's mode went through the umask
    return path


@dataclasses.dataclass(frozen=True)
class TemplateCache:
    """Where this run's archives live and the tools that make and read them."""

    directory: Path
    tools: DumpTools

    def archive(self, key: str) -> Path:
        return self.directory / archive_name(key)

    @contextlib.contextmanager
    def locked(self, key: str) -> Iterator[None]:
        """The archive's file lock: one writer at a time (xdist workers, parallel runs)."""
        make_private_dirs(self.directory)
        with filelock.FileLock(str(self.directory / f".{archive_name(key)}.lock"), mode=FILE_MODE):
            yield

    @contextlib.contextmanager
    def workdir(self) -> Iterator[Path]:
        """A private scratch directory beside the archives (same file system: the rename is atomic)."""
        make_private_dirs(self.directory)
        path = Path(tempfile.mkdtemp(prefix=".nocrud-tmp-", dir=self.directory))  # 0700
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def _atomic(destination: Path) -> Iterator[io.BufferedWriter]:
    """A file that appears under ``destination`` whole or not at all: a temp file beside it (0600),
    fsync'd, then renamed over the name."""
    fd, partial_name = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent)
    partial = Path(partial_name)
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), FILE_MODE)
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, destination)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def write_archive(destination: Path, manifest: Manifest, dumps: Mapping[str, Path]) -> None:
    """Write the archive atomically."""
    with _atomic(destination) as file, tarfile.open(fileobj=file, mode="w", format=tarfile.PAX_FORMAT) as tar:
        data = manifest.to_json().encode()
        info = tarfile.TarInfo(MANIFEST)
        info.size, info.mode = len(data), FILE_MODE
        tar.addfile(info, io.BytesIO(data))
        for layer in LAYERS:
            member = DUMP_FILES[layer]
            info = tarfile.TarInfo(member)
            info.size, info.mode = dumps[layer].stat().st_size, FILE_MODE
            with open(dumps[layer], "rb") as dump:
                tar.addfile(info, dump)


def copy_archive(source: Path, destination: Path) -> None:
    """Copy an archive atomically."""
    with _atomic(destination) as out, open(source, "rb") as src:
        shutil.copyfileobj(src, out, _CHUNK)


def read_archive(
    path: Path,
    workdir: Path,
    *,
    key: str,
    schema_key: str,
    pg_major: int,
    layers: Sequence[str] = LAYERS,
) -> tuple[Manifest, dict[str, Path]]:
    """Check the archive's manifest, extract the dumps of ``layers`` into ``workdir`` and check their
    sha256. ``(manifest, {layer: dump file})``; ``CacheRefused`` with the reason otherwise."""
    return _read(path, workdir, layers, lambda found: check_manifest(
        found, key=key, schema_key=schema_key, pg_major=pg_major
    ))  # fmt: skip


def read_layer(path: Path, workdir: Path, manifest: Manifest, layer: str) -> Path:
    """The dump of one ``layer`` of an archive whose ``manifest`` was read before (``manifests``),
    extracted into ``workdir``; ``CacheRefused`` if the archive changed since or a checksum fails."""

    def same(found: Manifest) -> None:
        if found != manifest:
            raise CacheRefused("it changed while it was read")

    return _read(path, workdir, (layer,), same)[1][layer]


def manifests(directory: Path, *, pg_major: int) -> Iterator[tuple[Path, Manifest]]:
    """Every archive in ``directory`` that this plugin and server could restore, with its manifest
    (only the manifest is read: the dumps are checked when a layer is extracted). Archives that are
    unreadable or of another format or major are passed over: they are only candidates here."""
    for path in sorted(directory.glob(archive_name("*"))):
        try:
            with tarfile.open(path, mode="r:") as tar:
                manifest = Manifest.from_json(_member(tar, MANIFEST).read())
            check_formats(manifest, pg_major=pg_major)
        except (CacheRefused, tarfile.TarError, EOFError, OSError, ValueError):
            continue
        yield path, manifest


def _read(
    path: Path, workdir: Path, layers: Sequence[str], check: Callable[[Manifest], None]
) -> tuple[Manifest, dict[str, Path]]:
    try:
        with tarfile.open(path, mode="r:") as tar:
            manifest = Manifest.from_json(_member(tar, MANIFEST).read())
            check(manifest)
            dumps = {}
            for layer in layers:
                member = DUMP_FILES[layer]
                target = workdir / member
                digest = hashlib.sha256()
                source = _member(tar, member)
                with open(target, "wb", opener=_private_opener) as out:
                    while chunk := source.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                if digest.hexdigest() != manifest.sha256[member]:
                    raise CacheRefused(f"checksum mismatch ({member})")
                dumps[layer] = target
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:  # zlib / struct errors are ValueErrors
        raise CacheRefused(f"truncated or corrupt archive ({type(exc).__name__}: {exc})") from None
    return manifest, dumps


def verified(path: Path, *, key: str, schema_key: str, pg_major: int) -> bool:
    """Whether ``path`` is an archive this template's runs could use (full check, checksums included)."""
    if not path.is_file():
        return False
    with tempfile.TemporaryDirectory(prefix=".nocrud-check-", dir=path.parent) as scratch:
        try:
            read_archive(path, Path(scratch), key=key, schema_key=schema_key, pg_major=pg_major)
        except CacheRefused:
            return False
    return True


def _member(tar: tarfile.TarFile, name: str) -> io.BufferedReader:
    try:
        info = tar.getmember(name)
    except KeyError:
        raise CacheRefused(f"truncated or corrupt archive ({name} missing)") from None
    source = tar.extractfile(info) if info.isfile() else None
    if source is None:
        raise CacheRefused(f"truncated or corrupt archive ({name} is not a file)")
    return source  # type: ignore[return-value]


def _private_opener(path: str, flags: int) -> int:
    return os.open(path, flags, FILE_MODE)


__all__ = [
    "CACHE_FORMAT_VERSION",
    "CacheRefused",
    "DumpTools",
    "Manifest",
    "TemplateCache",
    "archive_name",
    "check_formats",
    "check_manifest",
    "copy_archive",
    "portable_note",
    "manifests",
    "read_archive",
    "read_layer",
    "verified",
    "write_archive",
]
