"""How a template's schema is built: ``django``, ``sql:<dir>``, ``command:<shell command>``,
``python:<module>:<function>``.

A builder turns an EXISTING empty database into the template's content and says which files shape
that content (its default key inputs). It knows nothing about locks, naming or finalizing -- that is
the template layer's job -- so a builder can be run by hand (``nocrud build``) or in tests.

Fixtures (``nocrud_fixtures``): for ``django`` they are ``loaddata`` arguments; for every other
builder they are SQL files (relative to the root) run after the build, in the given order. Their
order is part of the builder identity, their contents are key inputs.

Templates come in two layers (see ``template``): ``build_schema`` makes the schema layer (migrations),
``load_fixtures`` the data layer on a clone of it. ``appended`` says whether a schema layer built from
an older set of inputs can be brought up to date by running only the new files.
"""

from __future__ import annotations

import abc
import collections
import glob as globmod
import importlib
import importlib.util
import os
import re
import shlex
import signal
import subprocess
import sys
import sysconfig
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg

from ..errors import BuildError
from .conninfo import ConnInfo
from .procs import interpreter_path
from .sqlrunner import SqlFileError, display_path, is_sql_file, read_sql, run_sql_files, sql_files_in

__all__ = [
    "ACCEPTED_FORMS",
    "BuildError",
    "Builder",
    "CommandBuilder",
    "DjangoBuilder",
    "PythonBuilder",
    "SqlBuilder",
    "SqlFileError",
    "detect_django_project",
    "parse_builder",
]

Log = Callable[[str], None]

ACCEPTED_FORMS = (
    "django  (manage.py migrate [+ loaddata fixtures]; django:<path/to/manage.py> to pick one)",
    "sql:<dir>  (run every *.sql file under <dir>, sorted by path; or sql:<file>)",
    "command:<shell command>  (any tool; gets DATABASE_URL and PG* of the template database)",
    "python:<module>:<function>  (called with a psycopg connection; committed after it returns)",
)

#: Directories never searched for manage.py (key.py has its own list: builders stay below key).
_NOT_PROJECT_DIRS = frozenset({"venv", "site-packages", "node_modules", "__pycache__"})

#: Lines of a failing tool's output quoted in the error.
TAIL_LINES = 30


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


def parse_builder(
    spec: str,
    *,
    root: Path,
    fixtures: Sequence[str] = (),
    sql_vars: Mapping[str, str] | None = None,
    incremental_command: bool = False,
) -> Builder:
    """The builder for an ``nocrud_builder`` value. ``ValueError`` (listing the accepted forms) for a
    spec that cannot work; problems only a build can reveal are ``BuildError`` s later."""
    root = Path(root)
    spec = spec.strip()
    kind, sep, arg = spec.partition(":")
    kind, arg = kind.strip().lower(), arg.strip()
    fixtures = [f.strip() for f in fixtures if f.strip()]
    if kind == "django":
        return DjangoBuilder(root, manage_py=arg or None, fixtures=fixtures)
    if kind == "sql" and arg:
        builder = SqlBuilder(root, arg, fixtures=fixtures, sql_vars=sql_vars)
        if not builder.schema_dir.exists():
            raise ValueError(
                f"sql:{arg}: {builder.schema_dir} does not exist; sql: takes a directory of *.sql files "
                "or one .sql file, relative to the rootdir"
            )
        return builder
    if kind == "command" and arg:
        return CommandBuilder(
            root, arg, fixtures=fixtures, incremental=incremental_command, sql_vars=sql_vars
        )
    if kind == "python" and arg:
        module, _, function = arg.rpartition(":")
        if module.strip() and function.strip().isidentifier():
            return PythonBuilder(root, module.strip(), function.strip(), fixtures=fixtures, sql_vars=sql_vars)
    raise ValueError(
        f"invalid nocrud_builder {spec!r}; accepted forms:\n" + "\n".join("  " + f for f in ACCEPTED_FORMS)
    )


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


class _SqlFixturesMixin:
    root: Path
    fixtures: list[str]
    sql_vars: dict[str, str]

    def fixture_inputs(self) -> list[str]:
        return [_rel_glob(f, self.root) for f in self.fixtures]

    def preview_fixtures(self) -> list[tuple[str, str]]:
        return [(f, read_sql(self.root / f, self.sql_vars)) for f in self.fixtures]

    def load_fixtures(self, target: ConnInfo, log: Log) -> None:
        if not self.fixtures:
            return
        paths = [self.root / f for f in self.fixtures]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise BuildError("fixture file(s) not found: " + ", ".join(missing))
        _run_sql(target, paths, self.root, log, layer="data", base=self.root, sql_vars=self.sql_vars)


def _run_sql(
    target: ConnInfo,
    paths: Sequence[Path],
    root: Path,
    log: Log,
    *,
    layer: str,
    base: Path,
    sql_vars: Mapping[str, str],
) -> None:
    try:
        with psycopg.connect(target.dsn, autocommit=True) as conn:
            run_sql_files(conn, paths, root, log=log, layer=layer, base=base, sql_vars=sql_vars)
    except psycopg.OperationalError as e:
        raise BuildError(f"cannot connect to {target.masked()}: {target.redact(str(e))}") from e


class SqlBuilder(_SqlFixturesMixin, Builder):
    """``sql:<dir>``: every ``*.sql`` / ``*.sql.j2`` under ``<dir>`` (sorted by relative path), each
    file atomic, each recorded in ``nocrud.sql_files``; ``sql:<file>``: that one file.

    A file listed in ``nocrud_fixtures`` belongs to the data layer only, even when it lies under the
    schema directory: the schema layer never runs it (and its key never hashes it, see
    ``template.layer_keys``), so no file is read by two layers."""

    kind = "sql"

    def __init__(
        self,
        root: Path,
        directory: str,
        *,
        fixtures: Sequence[str] = (),
        sql_vars: Mapping[str, str] | None = None,
    ) -> None:
        self.root = Path(root)
        self.directory = Path(directory).as_posix().rstrip("/") or "."
        self.fixtures = list(fixtures)
        self.sql_vars = dict(sql_vars or {})
        var_part = ";".join(f"{k}={v}" for k, v in sorted(self.sql_vars.items()))
        self.schema_identity = _schema_identity(self.kind, self.directory) + (
            f" vars={var_part}" if var_part else ""
        )

    @property
    def schema_dir(self) -> Path:
        return (self.root / self.directory).absolute()

    @property
    def single_file(self) -> bool:
        return self.schema_dir.is_file()

    @property
    def base(self) -> Path:
        """What recorded paths are relative to: the directory, or a single file's parent."""
        return self.schema_dir.parent if self.single_file else self.schema_dir

    def schema_inputs(self) -> list[str]:
        escaped = globmod.escape(self.directory)
        if self.single_file:
            return [escaped]
        return [f"{escaped}/**/*.sql", f"{escaped}/**/*.sql.j2"]

    def required_inputs(self) -> list[str]:
        """What this builder reads whatever nocrud_template_inputs says: every file it runs."""
        return self.schema_inputs()

    def schema_files(self) -> list[Path]:
        path = self.schema_dir
        if path.is_file():
            if not is_sql_file(path.name):
                raise BuildError(f"sql builder: {path} is not a .sql or .sql.j2 file")
            return [path]
        if not path.is_dir():
            raise BuildError(f"sql builder: {path} does not exist (sql: takes a directory or a .sql file)")
        fixtures = {(self.root / f).resolve() for f in self.fixtures}
        files = [f for f in sql_files_in(path) if f.resolve() not in fixtures]
        if not files:
            raise BuildError(f"sql builder: no *.sql files under {path} (fixtures excepted)")
        return files

    def fixtures_in_schema_dir(self) -> list[str]:
        """Fixture files lying under the schema directory (run by the data layer only)."""
        if self.single_file:
            return []
        base = self.schema_dir.resolve()
        return [f for f in self.fixtures if (self.root / f).resolve().is_relative_to(base)]

    def build_schema(self, target: ConnInfo, log: Log, *, new_files: Sequence[str] | None = None) -> None:
        files = self.schema_files() if new_files is None else [self.root / f for f in new_files]
        log(f"sql: running {len(files)} file(s) from {self.directory}")
        for fixture in self.fixtures_in_schema_dir():
            log(f"sql: {fixture} is in nocrud_fixtures: the data layer loads it, the schema layer skips it")
        _run_sql(target, files, self.root, log, layer="schema", base=self.base, sql_vars=self.sql_vars)

    def preview_schema(self, server: ConnInfo, new_files: Sequence[str] | None) -> list[tuple[str, str]]:
        files = self.schema_files() if new_files is None else [self.root / f for f in new_files]
        return [(display_path(p, self.root), read_sql(p, self.sql_vars)) for p in files]

    def appended(self, old: Mapping[str, str], new: Mapping[str, str]) -> list[str] | None:
        """New files only, all of them SQL files of the schema directory sorting after every old one
        (the order a full build would run them in)."""
        if self.single_file:
            return None  # one file: any change is a new schema
        added = _only_additions(old, new)
        prefix = "" if self.directory == "." else self.directory + "/"
        if not added or not all(p.startswith(prefix) and is_sql_file(p) for p in added):
            return None
        old_sql = [p[len(prefix) :] for p in old if p.startswith(prefix) and is_sql_file(p)]
        new_sql = sorted(p[len(prefix) :] for p in added)
        if old_sql and new_sql[0] <= max(old_sql):
            return None
        return [prefix + p for p in new_sql]


class CommandBuilder(_SqlFixturesMixin, Builder):
    """``command:<shell command>``: any migration tool (alembic, sqitch, prisma, goose, ...), run in
    the root with the template database's ``DATABASE_URL``/``PG*`` in its environment."""

    kind = "command"

    def __init__(
        self,
        root: Path,
        command: str,
        *,
        fixtures: Sequence[str] = (),
        incremental: bool = False,
        sql_vars: Mapping[str, str] | None = None,
    ) -> None:
        self.root = Path(root)
        self.command = command
        self.fixtures = list(fixtures)
        self.incremental = incremental
        self.sql_vars = dict(sql_vars or {})
        self.schema_identity = _schema_identity(self.kind, command)

    def schema_inputs(self) -> list[str]:
        # We cannot know what a command reads: the user lists it in nocrud_template_inputs.
        return []

    def rendered_command(self) -> str:
        """The command with ``{python}`` (this interpreter, shell-quoted) filled in. Only that one
        placeholder is replaced, so shell syntax such as ``${VAR:-0}`` passes through untouched."""
        return self.command.replace("{python}", shlex.quote(sys.executable))

    def build_schema(self, target: ConnInfo, log: Log, *, new_files: Sequence[str] | None = None) -> None:
        command = self.rendered_command()
        log(
            f"command: {command}"
            + (f" (on a clone; {len(new_files)} new input file(s))" if new_files else "")
        )
        code, tail, _ = _run_tool(
            command, shell=True, cwd=self.root, target=target, log=log, extra_env=self.tool_env(target)
        )
        if code != 0:
            raise BuildError(
                f"builder command failed with exit code {code}: {command}\n"
                f"(cwd {self.root}, database {target.masked()})\n" + _format_tail(tail)
            )

    def preview_schema(self, server: ConnInfo, new_files: Sequence[str] | None) -> list[tuple[str, str]]:
        return [("(command)", f"-- runs in {self.root}: {self.rendered_command()}")]

    def appended(self, old: Mapping[str, str], new: Mapping[str, str]) -> list[str] | None:
        """Only with ``nocrud_incremental_command``: the tool (Alembic, ...) knows what it applied."""
        return _only_additions(old, new) if self.incremental else None


class PythonBuilder(_SqlFixturesMixin, Builder):
    """``python:<module>:<function>``: ``function(conn)`` with an open psycopg connection to the
    template database (not autocommit); committed after it returns. ``<module>`` may also be a
    ``.py`` path relative to the root."""

    kind = "python"

    def __init__(
        self,
        root: Path,
        module: str,
        function: str,
        *,
        fixtures: Sequence[str] = (),
        sql_vars: Mapping[str, str] | None = None,
    ) -> None:
        self.root = Path(root)
        self.module = module
        self.function = function
        self.fixtures = list(fixtures)
        self.sql_vars = dict(sql_vars or {})
        self.schema_identity = _schema_identity(self.kind, f"{module}:{function}")

    def _is_path(self) -> bool:
        return self.module.endswith(".py") or "/" in self.module

    def schema_inputs(self) -> list[str]:
        inputs: list[str] = []
        source: Path | None = None
        if self._is_path():
            source = self.root / self.module
        else:
            try:
                with _on_sys_path(self.root):
                    spec = importlib.util.find_spec(self.module)
            except (ImportError, ValueError):
                spec = None
            if spec is not None and spec.origin and spec.has_location:
                source = Path(spec.origin)
        if source is not None and source.is_file():
            rel = os.path.relpath(source.absolute(), self.root.absolute())
            if not rel.startswith(".."):
                inputs.insert(0, globmod.escape(Path(rel).as_posix()))
        return inputs

    def _load(self) -> Callable[[psycopg.Connection[Any]], object]:
        try:
            with _on_sys_path(self.root):
                module = self._import()
        except Exception as e:
            raise BuildError(f"python builder: cannot import {self.module}: {type(e).__name__}: {e}") from e
        fn = getattr(module, self.function, None)
        if not callable(fn):
            raise BuildError(f"python builder: {self.module} has no function {self.function!r}")
        return fn  # type: ignore[no-any-return]

    def _import(self) -> ModuleType:
        if not self._is_path():
            return importlib.import_module(self.module)
        path = (self.root / self.module).absolute()
        name = "_nocrud_builder_" + re.sub(r"\W", "_", self.module)
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"no Python module at {path}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    def _where(self, error: BaseException) -> str:
        """``  at <file>:<line> in <function>`` for the deepest frame of the user's code (not a
        library's, like psycopg's), with that line's source: where to look without a traceback."""
        frames = traceback.extract_tb(error.__traceback__)[1:]  # [0] is our call of the function
        libraries = {sysconfig.get_path(name) for name in ("stdlib", "purelib", "platlib")}
        own = [f for f in frames if not any(f.filename.startswith(lib) for lib in libraries if lib)]
        if not (own or frames):
            return ""
        frame = (own or frames)[-1]
        path = Path(frame.filename)
        shown = display_path(path, self.root.absolute()) if path.is_absolute() else frame.filename
        return f"  at {shown}:{frame.lineno} in {frame.name}: {(frame.line or '').strip()}"

    def build_schema(self, target: ConnInfo, log: Log, *, new_files: Sequence[str] | None = None) -> None:
        fn = self._load()
        log(f"python: {self.module}:{self.function}(conn)")
        try:
            conn = psycopg.connect(target.dsn, autocommit=False)
        except psycopg.OperationalError as e:
            raise BuildError(f"cannot connect to {target.masked()}: {target.redact(str(e))}") from e
        with conn:  # commits on success, rolls back on exception, closes
            try:
                with _on_sys_path(self.root):
                    fn(conn)
            except BuildError:
                raise
            except Exception as e:
                raise BuildError(
                    f"python builder {self.module}:{self.function} raised {type(e).__name__}: {e}\n"
                    + self._where(e)
                ) from e


class DjangoBuilder(Builder):
    """``django``: ``manage.py migrate --noinput`` then ``loaddata <fixtures>``, as subprocesses of
    this interpreter with the template database in ``DATABASE_URL``/``PG*``."""

    kind = "django"

    def __init__(self, root: Path, *, manage_py: str | None = None, fixtures: Sequence[str] = ()) -> None:
        self.root = Path(root)
        self.fixtures = list(fixtures)
        if manage_py:
            path = self.root / manage_py
            if path.is_dir():
                path = path / "manage.py"
            if not path.is_file():
                raise ValueError(f"nocrud_builder django: {path} is not a manage.py file")
        else:
            found = _manage_py_candidates(self.root)
            if len(found) != 1:
                what = "several: " + ", ".join(map(str, found)) if found else "none"
                raise ValueError(
                    f"nocrud_builder django: need exactly one manage.py in {self.root} or one level "
                    f"below, found {what}; name it with django:<path/to/manage.py>"
                )
            path = found[0]
        self.manage_py = path.absolute()
        self.project_dir = self.manage_py.parent
        rel = display_path(self.manage_py, self.root.absolute())
        self.schema_identity = _schema_identity(self.kind, "" if rel == "manage.py" else rel)

    def _prefix(self) -> str:
        rel_dir = display_path(self.project_dir, self.root.absolute())
        return "" if rel_dir == "." else globmod.escape(rel_dir) + "/"

    def schema_inputs(self) -> list[str]:
        return [self._prefix() + "**/migrations/*.py"]

    def appended(self, old: Mapping[str, str], new: Mapping[str, str]) -> list[str] | None:
        """``migrate`` applies only unapplied migrations: any purely added input files will do."""
        return _only_additions(old, new)

    def preview_schema(self, server: ConnInfo, new_files: Sequence[str] | None) -> list[tuple[str, str]]:
        """``sqlmigrate`` of each migration that would run, in plan order. Django reads (never writes)
        the maintenance database to load the migration graph."""
        plan = self._manage(server, "showmigrations", "--plan")
        names = re.findall(r"^\[[ X]\]\s+(\S+)\.(\S+)$", plan, re.MULTILINE)
        files = {
            (p.parent.parent.name, p.stem): p
            for p in self.project_dir.glob("**/migrations/*.py")
            if not _NOT_PROJECT_DIRS.intersection(p.parts)
        }
        if new_files is not None:
            wanted = {(Path(f).parent.parent.name, Path(f).stem) for f in new_files}
            names = [(app, name) for app, name in names if (app, name) in wanted]
        out = []
        for app, name in names:
            source = files.get((app, name))  # a project migration; else an installed app's
            shown = display_path(source, self.root.absolute()) if source else f"{app}.{name}"
            out.append((shown, self._manage(server, "sqlmigrate", app, name)))
        return out

    def _manage(self, server: ConnInfo, *args: str) -> str:
        cmd = [sys.executable, str(self.manage_py), *args]
        code, tail, output = _run_tool(
            cmd, shell=False, cwd=self.project_dir, target=server, log=lambda _: None,
            extra_env=self.tool_env(server),
        )  # fmt: skip
        if code != 0:
            raise BuildError(f"django {' '.join(args)} failed (exit code {code}):\n" + _format_tail(tail))
        return output

    def fixture_file(self, fixture: str) -> Path | None:
        """The file a ``nocrud_fixtures`` line names: relative to the rootdir (like every path
        setting) or, as always accepted, to manage.py's directory; None for a fixture name that
        Django looks up itself (each app's ``fixtures/``, ``FIXTURE_DIRS``)."""
        for base in (self.root, self.project_dir):
            path = base / fixture
            if path.is_file():
                return path.absolute()
        return None

    def fixture_inputs(self) -> list[str]:
        prefix = self._prefix()
        inputs: list[str] = []
        for fixture in self.fixtures:
            file = self.fixture_file(fixture)
            if file is not None:  # exactly the file loaddata gets
                inputs.append(_rel_glob(str(file), self.root.absolute()))
            else:  # a Django fixture name: found in some app's fixtures/ dir, maybe without extension
                inputs.append(prefix + "**/fixtures/" + globmod.escape(fixture) + "*")
        return inputs

    def build_schema(self, target: ConnInfo, log: Log, *, new_files: Sequence[str] | None = None) -> None:
        migrate = [sys.executable, str(self.manage_py), "migrate", "--noinput"]
        log("django: manage.py migrate --noinput" + (" (unapplied migrations only)" if new_files else ""))
        code, tail, output = _run_tool(
            migrate, shell=False, cwd=self.project_dir, target=target, log=log,
            extra_env=self.tool_env(target),
        )  # fmt: skip
        if code != 0:
            applied = re.findall(r"Applying (\S+?)\.\.\.( OK)?", output)
            failing = next((name for name, ok in reversed(applied) if not ok), None)
            where = f" while applying migration {failing}" if failing else ""
            raise BuildError(
                f"django migrate failed{where} (exit code {code}): {_last_error_line(tail)}\n"
                f"(cwd {self.project_dir}, database {target.masked()})\n" + _format_tail(tail)
            )

    def load_fixtures(self, target: ConnInfo, log: Log) -> None:
        if self.fixtures:
            args = [str(self.fixture_file(f) or f) for f in self.fixtures]  # files by absolute path
            loaddata = [sys.executable, str(self.manage_py), "loaddata", *args]
            log("django: manage.py loaddata " + " ".join(args))
            code, tail, _ = _run_tool(
                loaddata, shell=False, cwd=self.project_dir, target=target, log=log,
                extra_env=self.tool_env(target),
            )  # fmt: skip
            if code != 0:
                names = [f for f in self.fixtures if self.fixture_file(f) is None]
                where = (
                    f"\nloaddata ran in {self.project_dir}. Not a file relative to the rootdir "
                    f"({self.root.absolute()}) or to that directory, so passed on for Django to look up in "
                    f"each app's fixtures/ and FIXTURE_DIRS: {', '.join(names)}. Check nocrud_fixtures."
                    if names
                    else f"\nloaddata ran in {self.project_dir}."
                )
                raise BuildError(
                    f"django loaddata {' '.join(self.fixtures)} failed (exit code {code}): "
                    f"{_last_error_line(tail)}{where}\n" + _format_tail(tail)
                )


def detect_django_project(root: Path) -> Path | None:
    """The project's ``manage.py`` (in ``root`` or one directory below), or None when there is none or
    the choice is ambiguous -- so config can default ``nocrud_builder`` to ``django``."""
    found = _manage_py_candidates(Path(root))
    return found[0] if len(found) == 1 else None


def _manage_py_candidates(root: Path) -> list[Path]:
    if (root / "manage.py").is_file():
        return [root / "manage.py"]
    try:
        subdirs = sorted(p for p in root.iterdir() if p.is_dir())
    except OSError:
        return []
    return [
        d / "manage.py"
        for d in subdirs
        if not d.name.startswith(".") and d.name not in _NOT_PROJECT_DIRS and (d / "manage.py").is_file()
    ]


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


@contextmanager
def _on_sys_path(root: Path) -> Iterator[None]:
    entry = str(Path(root).absolute())
    added = entry not in sys.path
    if added:
        sys.path.insert(0, entry)
    try:
        yield
    finally:
        if added:
            try:
                sys.path.remove(entry)
            except ValueError:
                pass
