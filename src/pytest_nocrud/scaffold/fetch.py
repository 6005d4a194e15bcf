"""The app's OpenAPI document, for ``nocrud scaffold``: asked of the app a test run would start.

``read_schema`` gets the project's runtime from ``nocrud scaffold``, which reads the project through
pytest's collection (``project.at_collection``): the ini settings, template (setups included) and app
command apply exactly as in a run. It GETs the OpenAPI document, or, for Django without one, describes
the DRF router from inside the project (``drf.dump``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import httpx

from ..app.process import AppProcess, ExternalApp, app_environment
from ..errors import NocrudError, UsageError
from ..pg.builders import detect_django_project

_DRF_MARK = "NOCRUD-SCHEMA "


class _Settings(Protocol):
    @property
    def rootpath(self) -> Path: ...
    @property
    def openapi_path(self) -> str | None: ...
    @property
    def app_env(self) -> tuple[tuple[str, str], ...]: ...


class RunningProject(Protocol):
    """What scaffolding needs of the project's runtime (``runtime.Runtime`` is one)."""

    @property
    def settings(self) -> _Settings: ...

    def app(self) -> AppProcess | ExternalApp: ...


def read_schema(project: RunningProject, path: str | None) -> tuple[Any, str]:
    """``(OpenAPI document, the URL it came from)``; ``UsageError`` saying what to set otherwise."""
    settings = project.settings
    schema_path = path or settings.openapi_path or "/openapi.json"
    try:
        app = project.app()
        url = app.url + schema_path
        response = httpx.get(url, timeout=30.0)
    except (NocrudError, httpx.HTTPError) as exc:
        raise UsageError(f"cannot read the app's OpenAPI schema: {exc}") from None
    manage_py = detect_django_project(settings.rootpath)
    guessed = not (path or settings.openapi_path)
    if response.status_code != 200 and guessed and manage_py is not None and isinstance(app, AppProcess):
        return _from_drf_viewsets(app, manage_py, settings.app_env)
    if response.status_code != 200:
        raise UsageError(
            f"cannot read the app's OpenAPI schema: GET {schema_path} answered {response.status_code}: "
            "set the schema path with --openapi PATH or the ini option nocrud_openapi_path"
        )
    try:
        return response.json(), url
    except ValueError:
        raise UsageError(
            f"cannot read the app's OpenAPI schema: GET {schema_path} did not answer JSON "
            "(an OpenAPI document is JSON)"
        ) from None


def _from_drf_viewsets(
    app: AppProcess, manage_py: Path, app_env: Sequence[tuple[str, str]]
) -> tuple[Any, str]:
    """No schema served: describe the DRF router's viewsets from inside the project."""
    code = "from pytest_nocrud.scaffold.drf import dump; dump()"
    env = app_environment(app.db, app.port, app_env)
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
        raise UsageError(
            f"cannot read the app's OpenAPI schema: no schema served and describing the DRF viewsets "
            f"failed:\n{tail}"
        )
    return json.loads(line[len(_DRF_MARK) :]), f"{app.url}/ (the Django REST framework router's viewsets)"
