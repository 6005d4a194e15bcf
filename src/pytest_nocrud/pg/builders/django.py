"""``django``: ``manage.py migrate`` and ``loaddata``, and finding the project's ``manage.py``."""

from __future__ import annotations

import glob as globmod
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from ...errors import BuildError
from ..conninfo import ConnInfo
from ..sqlrunner import display_path
from .base import Builder, Log, _only_additions, _rel_glob, _schema_identity
from .tools import _format_tail, _last_error_line, _run_tool

#: Directories never searched for manage.py (key.py has its own list: builders stay below key).
_NOT_PROJECT_DIRS = frozenset({"venv", "site-packages", "node_modules", "__pycache__"})

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
