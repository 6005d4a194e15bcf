"""SQL fixture files (``nocrud_fixtures`` of every builder but ``django``): one loader, shared."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import psycopg

from ...errors import BuildError
from ..conninfo import ConnInfo
from ..sqlrunner import read_sql, run_sql_files
from .base import Log, _rel_glob


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
