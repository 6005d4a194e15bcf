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

One module per builder (``django``, ``sql``, ``command``, ``python``) behind one small ``base``;
``sqlfixtures`` is the SQL-fixture loading the non-Django builders share, ``tools`` the running of a
build tool. This package imports only ``pg/`` and ``errors``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from ...errors import BuildError
from ..sqlrunner import SqlFileError
from .base import Builder, Log
from .command import CommandBuilder
from .django import DjangoBuilder, detect_django_project
from .python import PythonBuilder
from .sql import SqlBuilder
from .tools import end_group, watching_spawns

__all__ = [
    "ACCEPTED_FORMS",
    "Log",
    "end_group",
    "watching_spawns",
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

ACCEPTED_FORMS = (
    "django  (manage.py migrate [+ loaddata fixtures]; django:<path/to/manage.py> to pick one)",
    "sql:<dir>  (run every *.sql file under <dir>, sorted by path; or sql:<file>)",
    "command:<shell command>  (any tool; gets DATABASE_URL and PG* of the template database)",
    "python:<module>:<function>  (called with a psycopg connection; committed after it returns)",
)


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


