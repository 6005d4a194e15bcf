"""``sql:<dir>`` / ``sql:<file>``: plain SQL migration files through the SQL runner."""

from __future__ import annotations

import glob as globmod
from collections.abc import Mapping, Sequence
from pathlib import Path

from ...errors import BuildError
from ..conninfo import ConnInfo
from ..sqlrunner import display_path, is_sql_file, read_sql, sql_files_in
from .base import Builder, Log, _only_additions, _schema_identity
from .sqlfixtures import _run_sql, _SqlFixturesMixin


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
