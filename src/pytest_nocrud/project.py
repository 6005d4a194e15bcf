"""``nocrud build`` and ``nocrud preview``: the project's template as a test run sees it, without tests.

The settings come from pytest's own reading of the project's ini file (``pytest.Config``), so the
command can never disagree with a test run about the builder, inputs, fixtures or server.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from . import config as nocrud_config
from .pg.procs import ProcessId
from .pg.template import preview_template
from .runtime import Runtime, input_warnings, template_keys
from .serial import SerialRuntime

RULE = "-- " + "=" * 60


def project_runtime(root: Path, options: list[str]) -> Runtime:
    """A controller runtime for the project at ``root`` (its ini file, plugins and conftest read)."""
    root = root.absolute()
    previous = Path.cwd()
    os.chdir(root)  # pytest finds the ini file and rootdir from the invocation directory
    try:
        config = pytest.Config.fromdictargs({}, ["-p", "no:cacheprovider", *options, str(root)])
        settings = nocrud_config.resolve(config)
    finally:
        os.chdir(previous)
    runtime_class = SerialRuntime if settings.serial else Runtime
    return runtime_class(
        settings,
        owner=ProcessId.of(os.getpid()),
        is_controller=True,
        progress=lambda line: print(line, flush=True),
    )


def build_template(root: Path, options: list[str]) -> int:
    """Build or reuse the template; print what happened and the time."""
    started = time.perf_counter()
    runtime = project_runtime(root, options)
    try:
        template = runtime.template()
    finally:
        runtime.close()
    elapsed = time.perf_counter() - started
    if template.reused:
        print(f"template {template.name} (key {template.key[:12]}) reused [{elapsed:.2f}s in all]")
    else:  # the build's own progress lines said what was built
        print(f"nocrud build: {elapsed:.2f}s in all")
    return 0


def preview(root: Path, options: list[str]) -> int:
    """Print what a build would do and the SQL of every file it would run; create or change nothing."""
    runtime = project_runtime(root, options)
    try:
        server = runtime.postgres()
        builder = runtime.builder()
        keys = template_keys(runtime.settings, builder, server.major)
        for line in input_warnings(runtime.settings, keys):
            print(line, file=sys.stderr)
        plan = preview_template(server.admin, keys, builder)
    finally:
        runtime.close()
    print(f"-- schema layer {plan.schema}: {plan.schema_how}")
    print(f"-- data layer {plan.data}: {plan.data_how}")
    if not plan.files:
        print("-- nothing would run")
    for path, text in plan.files:
        print(f"\n{RULE}\n-- File: {path}\n{RULE}\n\n{text.rstrip()}")
    return 0
