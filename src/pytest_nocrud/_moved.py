"""Old import paths that keep working for one release, with a ``DeprecationWarning`` naming the new one.

0.2.0 moved the modules behind the public API into wings (``flows/``, ``pg/``, ...). Everything a user
needs is importable from ``pytest_nocrud`` itself; test files written against 0.1 that import a module
path (``from pytest_nocrud.crud import CrudFlow``) still run, and are told where the name lives now.
``MOVED`` maps each old module path to the new one; the finder below serves the old path as an alias of
the new module (the same module object: no second copy of its state). Removed in 0.3.0.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

REMOVED_IN = "0.3.0"

MOVED: dict[str, str] = {
    "pytest_nocrud.auth": "pytest_nocrud.flows.auth",
    "pytest_nocrud.crud": "pytest_nocrud.flows.crud",
    "pytest_nocrud.timeline": "pytest_nocrud.flows.timeline",
    "pytest_nocrud.admin": "pytest_nocrud.pg.admin",
    "pytest_nocrud.binaries": "pytest_nocrud.pg.binaries",
    "pytest_nocrud.builders": "pytest_nocrud.pg.builders",
    "pytest_nocrud.conninfo": "pytest_nocrud.pg.conninfo",
    "pytest_nocrud.key": "pytest_nocrud.pg.key",
    "pytest_nocrud.pool": "pytest_nocrud.pg.pool",
    "pytest_nocrud.procs": "pytest_nocrud.pg.procs",
    "pytest_nocrud.server": "pytest_nocrud.pg.server",
    "pytest_nocrud.sqlrunner": "pytest_nocrud.pg.sqlrunner",
    "pytest_nocrud.template": "pytest_nocrud.pg.template",
    "pytest_nocrud.testdb": "pytest_nocrud.pg.testdb",
    # 0.2.0, the house of wings: app/, report/, scaffold/
    "pytest_nocrud.setups": "pytest_nocrud.app.setups",
    "pytest_nocrud.html": "pytest_nocrud.report.html",
    "pytest_nocrud.perf": "pytest_nocrud.report.perf",
    "pytest_nocrud.coverage": "pytest_nocrud.report.coverage",
    "pytest_nocrud.record": "pytest_nocrud.report.record",
    "pytest_nocrud.routes": "pytest_nocrud.report.routes",
    "pytest_nocrud.drf_schema": "pytest_nocrud.scaffold.drf",
}

#: Names the 0.1 module ``pytest_nocrud.flows`` had; that path is now the ``flows/`` package.
OLD_FLOWS_NAMES = frozenset({"Flow", "FlowResult", "StepContext", "expect_status", "Step"})


def warn_moved(old: str, new: str, *, stacklevel: int = 3) -> None:
    warnings.warn(
        f"{old} moved to {new} in pytest-nocrud 0.2.0 and the old path goes away in {REMOVED_IN}; "
        "import from pytest_nocrud instead (e.g. `from pytest_nocrud import CrudFlow, AsUser`)",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


class _Alias(importlib.abc.Loader):
    def __init__(self, new: str) -> None:
        self.new = new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        warn_moved(spec.name, self.new, stacklevel=8)  # through importlib's frames to the import line
        return importlib.import_module(self.new)

    def exec_module(self, module: ModuleType) -> None:
        pass  # the new module is already executed


class MovedFinder(importlib.abc.MetaPathFinder):
    """Finds only the old paths in ``MOVED``; every other import goes on as usual."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        new = MOVED.get(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _Alias(new))


#: Paths that were modules in 0.1 and are packages now: (the module their old names live in, which names).
OLD_MODULES_NOW_PACKAGES: dict[str, tuple[str, frozenset[str] | None]] = {
    "pytest_nocrud.flows": ("pytest_nocrud.flows.steps", OLD_FLOWS_NAMES),
    "pytest_nocrud.app": ("pytest_nocrud.app.process", None),  # None: whatever app.py had
}


def _old_names_of(package: str, module: str, names: frozenset[str] | None) -> Callable[[str], Any]:
    def old_name(name: str) -> Any:
        """``from pytest_nocrud.flows import Flow`` (0.1, when that path was one module), warned."""
        if not name.startswith("__") and (names is None or name in names):
            target = importlib.import_module(module)
            if hasattr(target, name):
                warn_moved(f"{package}.{name}", f"{module}.{name}")
                return getattr(target, name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return old_name


def install() -> None:
    if not any(isinstance(finder, MovedFinder) for finder in sys.meta_path):
        sys.meta_path.append(MovedFinder())  # last: a real module of that name always wins
    for package, (module, names) in OLD_MODULES_NOW_PACKAGES.items():
        # a module-level __getattr__ serves the old names
        setattr(importlib.import_module(package), "__getattr__", _old_names_of(package, module, names))  # noqa: B010
