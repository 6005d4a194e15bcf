"""What every builder is: the ``Builder`` interface the template layers drive, and the identity
and key-input helpers the builders share."""

from __future__ import annotations

import abc
import glob as globmod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ..conninfo import ConnInfo
from ..sqlrunner import display_path

Log = Callable[[str], None]


class Builder(abc.ABC):
    """Builds the schema into an empty database, then loads the fixtures. ``schema_identity`` feeds
    the schema layer's key, ``identity`` (schema + fixture list) the data layer's: they name the
    builder kind and its argument (never an absolute path)."""

    kind: str
    schema_identity: str
    fixtures: list[str]
    #: Extra environment for build tools, from the target database (the runtime sets it to the app's
    #: ``nocrud_app_env`` lines: a project whose settings read ``DB_NAME`` must migrate the template,
    #: not whatever ``DB_NAME`` defaults to).
    extra_env: Callable[[ConnInfo], Mapping[str, str]] | None = None

    def tool_env(self, target: ConnInfo) -> Mapping[str, str]:
        return self.extra_env(target) if self.extra_env is not None else {}

    @property
    def identity(self) -> str:
        return _identity(self.schema_identity, self.fixtures)

    def default_inputs(self) -> list[str]:
        """Glob lines (relative to the root) whose files shape the template, used when the user did
        not configure ``nocrud_template_inputs``."""
        return [*self.schema_inputs(), *self.fixture_inputs()]

    @abc.abstractmethod
    def schema_inputs(self) -> list[str]:
        """Default glob lines of the files that shape the schema layer (migrations)."""

    def required_inputs(self) -> list[str]:
        """Glob lines the schema key always includes, even when nocrud_template_inputs is set: the
        files this builder is known to read (a line the user forgot must not make a stale layer)."""
        return []

    @abc.abstractmethod
    def fixture_inputs(self) -> list[str]:
        """Glob lines of the fixture files (the data layer's own inputs)."""

    @abc.abstractmethod
    def build_schema(self, target: ConnInfo, log: Log, *, new_files: Sequence[str] | None = None) -> None:
        """Migrate ``target``: an empty database, or (``new_files`` given: root-relative inputs that
        ``appended`` accepted) a clone of an older schema layer that needs only those."""

    @abc.abstractmethod
    def load_fixtures(self, target: ConnInfo, log: Log) -> None:
        """Load the fixtures into ``target`` (a clone of the schema layer)."""

    def appended(self, old: Mapping[str, str], new: Mapping[str, str]) -> list[str] | None:
        """The files to run on a clone of a schema layer built from ``old`` inputs (``{path: sha256}``)
        to reach ``new``, or None when only a full build is right. Default: never incremental."""
        return None

    def preview_schema(self, server: ConnInfo, new_files: Sequence[str] | None) -> list[tuple[str, str]]:
        """``(relative path, SQL)`` of what ``build_schema`` would run, touching no database; a builder
        that cannot know its SQL says what it would run instead."""
        return [("(builder)", f"-- {self.schema_identity} runs here; its SQL cannot be shown in advance")]

    def preview_fixtures(self) -> list[tuple[str, str]]:
        """``(relative path, SQL)`` of what ``load_fixtures`` would run."""
        return [(f, f"-- loaded by {self.kind} (not SQL)") for f in self.fixtures]

    def build(self, target: ConnInfo, log: Log) -> None:
        """Schema and fixtures in one go (``nocrud build`` of a single database, tests)."""
        self.build_schema(target, log)
        self.load_fixtures(target, log)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.identity}>"


def _identity(schema_identity: str, fixtures: Sequence[str]) -> str:
    return schema_identity + (" fixtures=" + ",".join(fixtures) if fixtures else "")


def _schema_identity(kind: str, arg: str) -> str:
    return f"{kind}:{arg}" if arg else kind


def _only_additions(old: Mapping[str, str], new: Mapping[str, str]) -> list[str] | None:
    """The paths ``new`` adds to ``old`` when every old file is still there, byte for byte; else None."""
    if any(new.get(path) != digest for path, digest in old.items()):
        return None
    added = sorted(set(new) - set(old))
    return added or None


def _rel_glob(path: str, root: Path) -> str:
    """A fixture path as a literal key-input line relative to ``root``."""
    p = Path(path)
    rel = display_path(p, root) if p.is_absolute() else p.as_posix()
    return globmod.escape(rel)
