"""``nocrud scaffold``'s pytest session: start the project's app exactly as a run would, read its schema.

A pytest session that collects nothing, with one plugin object (``_SchemaFetch``) that asks the runtime
for the app at session start -- so the project's ini settings, template and app command apply as in a
test run -- and GETs its OpenAPI document (or, for Django without one, describes the DRF router).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from .app import AppProcess, app_environment
from .errors import NocrudError, UsageError
from .fixtures import RUNTIME
from .pg.builders import detect_django_project
from .runtime import Runtime


class _SchemaFetch:
    """``nocrud scaffold``'s session: start the app as a run would, GET its schema, run no test."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.url = ""
        self.schema: Any = None
        self.error = "pytest ended before its session started (see its output above)"

    def pytest_ignore_collect(self, collection_path: Path, config: pytest.Config) -> bool:
        return True  # the project's tests are not imported, let alone run

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        runtime = session.config.stash[RUNTIME]
        path = self.path or runtime.settings.openapi_path or "/openapi.json"
        try:
            app = runtime.app()
            self.url = app.url + path
            response = httpx.get(self.url, timeout=30.0)
        except (NocrudError, httpx.HTTPError) as exc:
            self.error = str(exc)
            return
        manage_py = detect_django_project(runtime.settings.rootpath)
        guessed = not (self.path or runtime.settings.openapi_path)
        if response.status_code != 200 and guessed and manage_py is not None and isinstance(app, AppProcess):
            self._from_drf_viewsets(runtime, app, manage_py)
            return
        if response.status_code != 200:
            self.error = (
                f"GET {path} answered {response.status_code}: set the schema path with --openapi PATH "
                "or the ini option nocrud_openapi_path"
            )
            return
        try:
            self.schema = response.json()
        except ValueError:
            self.error = f"GET {path} did not answer JSON (an OpenAPI document is JSON)"

    def _from_drf_viewsets(self, runtime: Runtime, app: AppProcess, manage_py: Path) -> None:
        """No schema served: describe the DRF router's viewsets from inside the project."""
        code = "from pytest_nocrud.drf_schema import dump; dump()"
        env = app_environment(app.db, app.port, runtime.settings.app_env)
        done = subprocess.run(
            [sys.executable, str(manage_py), "shell", "-c", code],
            cwd=manage_py.parent,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        line = next((ln for ln in done.stdout.splitlines() if ln.startswith(_DRF_MARK)), None)
        if done.returncode != 0 or line is None:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
            self.error = f"no schema served and describing the DRF viewsets failed:\n{tail}"
            return
        self.url = f"{app.url}/ (the Django REST framework router's viewsets)"
        self.schema = json.loads(line[len(_DRF_MARK) :])


_DRF_MARK = "NOCRUD-SCHEMA "


def fetch_schema(rootdir: Path, path: str | None) -> tuple[Any, str]:
    """The OpenAPI document of the project's app in ``rootdir``, and the URL it came from.

    Runs a pytest session there (so the project's ini settings, template and app command apply
    exactly as in a run) that collects nothing; the template is built or reused, one clone is handed
    out, the app is started, asked for its schema and stopped.
    """
    grabber = _SchemaFetch(path)
    quiet = ["-qq", "-p", "no:cacheprovider", "-W", "ignore::pytest.PytestAssertRewriteWarning"]
    pytest.main([str(rootdir), "-o", "addopts=", *quiet], plugins=[grabber])
    if grabber.schema is None:
        raise UsageError(f"cannot read the app's OpenAPI schema: {grabber.error}")
    return grabber.schema, grabber.url
