"""The house rules of the package, checked from its source: wings that do not lean on each other or on
the wiring, no import circle, a public API at the root, one exception root. A rule broken here is a
layering bug, not a style nit."""

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


WIRING = ("plugin", "fixtures", "runtime", "serial", "cli", "project", "run", "state")


def _ours(imported: set[str]) -> set[str]:
    return {i for i in imported if i.startswith("pytest_nocrud")}


def test_report_wing_reads_records_and_never_drives_postgres_or_apps() -> None:
    allowed = ("pytest_nocrud.report", "pytest_nocrud.errors", "pytest_nocrud.flows.timeline")
    for name, imported in wing_imports("report").items():
        stray = {i for i in _ours(imported) if not i.startswith(allowed)}
        assert not stray, f"report/{name} imports {sorted(stray)}"
        roots = {i.split(".")[0] for i in imported}
        assert not {"psycopg", "httpx", "pytest"} & roots, f"report/{name} talks to a server or app"


def test_app_and_scaffold_wings_never_import_the_wiring() -> None:
    wiring = tuple(f"pytest_nocrud.{w}" for w in WIRING)
    for wing in ("app", "scaffold", "pg", "flows", "report"):
        for name, imported in wing_imports(wing).items():
            stray = {i for i in _ours(imported) if i.startswith(wiring)}
            assert not stray, f"{wing}/{name} imports the wiring: {sorted(stray)}"
    for name, imported in wing_imports("app").items():
        upward = ("pytest_nocrud.report", "pytest_nocrud.scaffold")
        stray = {i for i in _ours(imported) if i.startswith(upward)}
        assert not stray or name == "endpoints.py", f"app/{name} imports {sorted(stray)}"


def test_the_root_holds_the_wiring_and_what_is_truly_shared() -> None:
    shared = {"__init__", "_moved", "config", "errors", "placeholders", "redaction"}
    modules = {path.stem for path in PACKAGE.glob("*.py")} | {"runtime"}  # runtime/: the owner and its parts
    assert (PACKAGE / "runtime" / "__init__.py").is_file()
    assert modules == shared | set(WIRING), sorted(modules ^ (shared | set(WIRING)))
    for wing in ("app", "flows", "pg", "report", "scaffold"):
        init = PACKAGE / wing / "__init__.py"
        assert ast.get_docstring(ast.parse(init.read_text())), f"{wing}/__init__.py says what the wing is for"


def _module_level_imports(path: Path) -> set[str]:
    """What ``path`` imports, at the top or inside a function (a deferred import hides a circle, it
    does not remove it)."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module != "__future__":
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.update(f"{base}.{alias.name}" for alias in node.names)
            found.add(base)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {i for i in found if i.startswith("pytest_nocrud")}


def test_no_import_circle() -> None:
    paths = {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): p
             for p in PACKAGE.rglob("*.py")}  # fmt: skip
    graph = {}
    for module, path in paths.items():
        targets = set()
        for name in _module_level_imports(path):
            while name and name not in paths:
                name = name.rpartition(".")[0]
            if name and name != module and not module.startswith(name + "."):  # a package's own init
                targets.add(name)
        graph[module] = targets
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                circle = trail[trail.index(nxt):] + [nxt] if nxt in trail else [node, nxt]
                raise AssertionError(f"import circle: {' -> '.join(circle)}")
            if nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


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
