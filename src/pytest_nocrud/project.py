"""``nocrud build``, ``preview`` and ``key``: the project's template as a test run sees it, without tests.

Both run pytest itself, in this process, as far as collection (``--collect-only``): the ini file,
plugins, conftest files and test modules are read exactly as a test run reads them -- the
``@template_setup`` functions of every conftest included -- so the command can never disagree with a
test run about the builder, inputs, fixtures, template setups or server, and the template it builds is
the one the tests then reuse. No test runs.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from .errors import NocrudError, UsageError
from .pg.binaries import find_bindir, major_of, server_version
from .pg.server import check_dsn
from .pg.template import LayerKeys, Preview, Template, preview_template
from .runtime import Runtime, input_warnings
from .serial import SerialRuntime

RULE = "-- " + "=" * 60
T = TypeVar("T")


class _AtCollection:
    """A plugin that calls ``action`` with the run's runtime once collection is done (tests never run)."""

    def __init__(self, action: Callable[[Runtime], T]) -> None:
        self.action = action
        self.result: object = None
        self.error: BaseException | None = None
        self.called = False

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        from .fixtures import runtime_of

        runtime = runtime_of(session.config)
        capture = session.config.pluginmanager.getplugin("capturemanager")

        def progress(line: str) -> None:
            with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
                print(line, flush=True)

        runtime.progress = progress
        self.called = True
        try:
            with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
                self.result = self.action(runtime)
        except (NocrudError, pytest.UsageError) as exc:
            self.error = exc


@contextlib.contextmanager
def _cwd(path: Path) -> Iterator[None]:
    previous = Path.cwd()
    os.chdir(path)  # pytest finds the ini file, rootdir and testpaths from the invocation directory
    try:
        yield
    finally:
        os.chdir(previous)


def at_collection(root: Path, options: list[str], action: Callable[[Runtime], T]) -> T:
    """Run pytest's collection for the project at ``root`` and ``action(runtime)`` at its end."""
    plugin = _AtCollection(action)
    args = ["-p", "no:cacheprovider", "-p", "no:terminal", "-p", "no:warnings", "--collect-only", *options]
    if importlib.util.find_spec("xdist") is not None:
        args += ["-n", "0"]  # collect here, whatever -n the ini's addopts asks for
    with _cwd(root.absolute()):
        code = pytest.main(args, plugins=[plugin])
    if plugin.error is not None:
        raise plugin.error
    if not plugin.called:
        raise UsageError(f"pytest could not read the project at {root} (exit code {int(code)}); run "
                         "`pytest --collect-only` there to see why")
    return plugin.result  # type: ignore[return-value]


def build_template(root: Path, options: list[str], *, export: Path | None = None) -> int:
    """Build, restore or reuse the template; print what happened and the time. ``export``: then write
    its archive into that directory (kept as it is if it already holds a usable one)."""
    started = time.perf_counter()

    def action(runtime: Runtime) -> Template:
        template = _template(runtime)
        if export is not None:
            runtime.export_template(export.absolute())
        return template

    template = at_collection(root, options, action)
    elapsed = time.perf_counter() - started
    if template.reused:
        print(f"template {template.name} (key {template.key[:12]}) reused [{elapsed:.2f}s in all]")
    else:  # the build's own progress lines said what was built
        print(f"nocrud build: {elapsed:.2f}s in all")
    return 0


def _template(runtime: Runtime) -> Template:
    if isinstance(runtime, SerialRuntime):
        raise UsageError("serial mode provisions no template: drop --nocrud-serial to build one")
    return runtime.template()


def preview(root: Path, options: list[str]) -> int:
    """Print what a build would do and the SQL of every file it would run; create or change nothing."""
    plan, warnings = at_collection(root, options, _plan)
    for line in warnings:
        print(line, file=sys.stderr)
    print(f"-- schema layer {plan.schema}: {plan.schema_how}")
    print(f"-- data layer {plan.data}: {plan.data_how}")
    if not plan.files:
        print("-- nothing would run")
    for path, text in plan.files:
        print(f"\n{RULE}\n-- File: {path}\n{RULE}\n\n{text.rstrip()}")
    return 0


def _plan(runtime: Runtime) -> tuple[Preview, list[str]]:
    server = runtime.postgres()
    keys = runtime.layer_keys(server.major)
    return preview_template(server.admin, keys, runtime.builder()), input_warnings(runtime.settings, keys)


def print_keys(root: Path, options: list[str], *, short: bool = False) -> int:
    """``nocrud key``: the layer keys a test run would use now, for a CI cache key.

    ``schema <hex>`` and ``template <hex>``, one per line; ``short``: the template key alone (it hashes
    the schema key, so it changes whenever either layer would). The keys never see absolute paths or
    mtimes, so copies of a project at different paths or on other machines print the same.
    """
    keys, warnings = at_collection(root, options, _keys)
    for line in warnings:
        print(line, file=sys.stderr)
    if short:
        print(keys.data.key)
    else:
        print(f"schema {keys.schema.key}\ntemplate {keys.data.key}")
    return 0


def _keys(runtime: Runtime) -> tuple[LayerKeys, list[str]]:
    if isinstance(runtime, SerialRuntime):
        raise UsageError("serial mode provisions no template, so it has no key: drop --nocrud-serial")
    settings = runtime.settings
    if settings.dsn:  # the server's own major: one query, no database created
        major = check_dsn(settings.dsn).major
    else:  # the embedded server's major from its binaries: no server started
        major = major_of(server_version(find_bindir(settings.pg_bindir)))
    keys = runtime.layer_keys(major)
    return keys, input_warnings(settings, keys)
