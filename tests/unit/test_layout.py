"""The house rules of the package, checked from its source: two wings that do not lean on each other,
a public API at the root, one exception root. A rule broken here is a layering bug, not a style nit."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest_nocrud
from pytest_nocrud import errors

PACKAGE = Path(pytest_nocrud.__file__).parent


def imports_of(path: Path) -> set[str]:
    """Absolute names of everything ``path`` imports (relative imports resolved)."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def wing_imports(wing: str) -> dict[str, set[str]]:
    return {path.name: imports_of(path) for path in sorted((PACKAGE / wing).glob("*.py"))}


def test_pg_wing_imports_only_itself_and_errors() -> None:
    for name, imported in wing_imports("pg").items():
        ours = {i for i in imported if i.startswith("pytest_nocrud")}
        stray = {i for i in ours if not i.startswith(("pytest_nocrud.pg", "pytest_nocrud.errors"))}
        assert not stray, f"pg/{name} imports {sorted(stray)}"
        roots = {i.split(".")[0] for i in imported}
        assert not {"pytest", "httpx"} & roots, f"pg/{name} imports pytest/httpx"


def test_flows_wing_never_imports_pg_or_the_plugin() -> None:
    for name, imported in wing_imports("flows").items():
        ours = {i for i in imported if i.startswith("pytest_nocrud")}
        stray = {i for i in ours if not i.startswith(("pytest_nocrud.flows", "pytest_nocrud.errors"))}
        assert not stray, f"flows/{name} imports {sorted(stray)}"


def test_only_plugin_and_fixtures_define_hooks_and_fixtures() -> None:
    for path in PACKAGE.rglob("*.py"):
        if path.name in {"plugin.py", "fixtures.py"}:
            continue
        text = path.read_text()
        assert "@pytest.fixture" not in text and "@pytest.hookimpl" not in text, path.name


def test_plugin_module_holds_hooks_only() -> None:
    """Logic that creeps into plugin.py hides from the modules that own it (run.py, state.py, ...)."""
    tree = ast.parse((PACKAGE / "plugin.py").read_text())
    functions = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    classes = [n.name for n in tree.body if isinstance(n, ast.ClassDef)]
    assert functions and all(name.startswith("pytest_") for name in functions), functions
    assert classes == ["_XdistHooks"], classes


def test_every_error_class_derives_from_nocrud_error() -> None:
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            is_class = isinstance(node, ast.ClassDef)
            if is_class and node.name.endswith(("Error", "Failed", "NotFound", "Taken")):
                module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
                cls = getattr(__import__(module, fromlist=[node.name]), node.name)
                assert issubclass(cls, errors.NocrudError), f"{module}.{node.name}"


def test_public_api_is_importable_from_the_root() -> None:
    for name in pytest_nocrud.__all__:
        assert hasattr(pytest_nocrud, name), name
    classes = inspect.getmembers(errors, inspect.isclass)
    public_errors = {n for n, obj in classes if obj.__module__ == errors.__name__}
    assert public_errors - {"SetupFailed"} <= set(pytest_nocrud.__all__)
