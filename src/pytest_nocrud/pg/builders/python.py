"""``python:<module>:<function>``: a function of the project called with a psycopg connection."""

from __future__ import annotations

import glob as globmod
import importlib
import importlib.util
import os
import re
import sys
import sysconfig
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg

from ...errors import BuildError
from ..conninfo import ConnInfo
from ..sqlrunner import display_path
from .base import Builder, Log, _schema_identity
from .sqlfixtures import _SqlFixturesMixin


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
