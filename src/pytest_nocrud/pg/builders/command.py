"""``command:<shell command>``: any migration tool (alembic, sqitch, goose, ...)."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from ...errors import BuildError
from ..conninfo import ConnInfo
from .base import Builder, Log, _only_additions, _schema_identity
from .sqlfixtures import _SqlFixturesMixin
from .tools import _format_tail, _run_tool


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
