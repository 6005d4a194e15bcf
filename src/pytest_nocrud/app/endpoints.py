"""Which endpoints the app has, asked of the app itself: its OpenAPI schema (``nocrud_openapi_path``,
fetched from the live app), or for Django its URLconf, introspected in a subprocess with the app's
settings (the test process never imports the app). DRF viewsets report the methods their actions
map to; a plain function view accepts any method (``*``). ``report.coverage`` measures against it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from ..config import Settings
from ..errors import NocrudError, UsageError
from ..pg.builders import detect_django_project
from ..report.coverage import Coverage, Endpoint, from_openapi, measure, write_json
from ..report.perf import git_sha
from ..report.record import TestRecord


def fetch_openapi(app_url: str, schema_path: str) -> list[Endpoint]:
    """GET the schema from the live app (JSON; YAML when PyYAML is installed)."""
    url = app_url.rstrip("/") + schema_path
    try:
        response = httpx.get(
            url, timeout=10.0, headers={"Accept": "application/json, application/vnd.oai.openapi"}
        )
    except httpx.HTTPError as exc:
        raise UsageError(f"nocrud_openapi_path: GET {url} failed ({exc})") from None
    if response.status_code != 200:
        raise UsageError(f"nocrud_openapi_path: GET {url} answered {response.status_code}; check the path")
    try:
        schema = response.json()
    except ValueError:
        schema = _yaml(response.text, url)
    return from_openapi(schema)


def _yaml(text: str, url: str) -> Any:
    try:
        import yaml  # type: ignore[import-untyped]  # optional: only for YAML schemas
    except ImportError:
        raise UsageError(f"{url} is not JSON; serve the schema as JSON or install PyYAML") from None
    return yaml.safe_load(text)


# -- Django URLconf ------------------------------------------------------------------------------------

# Runs in the app's directory with its settings; prints [[pieces, methods], ...] as JSON.
_DJANGO_SCRIPT = r"""
import json, os, sys
sys.path.insert(0, os.getcwd())
import django
django.setup()
from django.urls import URLResolver, get_resolver

def methods(callback):
    actions = getattr(callback, "actions", None)
    if actions:
        return sorted(m.upper() for m in actions)
    cls = getattr(callback, "view_class", None) or getattr(callback, "cls", None)
    if cls is not None:
        names = getattr(cls, "http_method_names", ())
        found = sorted(m.upper() for m in names if m not in ("options", "head", "trace") and hasattr(cls, m))
        return found or ["*"]
    return ["*"]

out = []
def walk(patterns, prefix):
    for p in patterns:
        pieces = prefix + [p.pattern.regex.pattern]
        if isinstance(p, URLResolver):
            walk(p.url_patterns, pieces)
        else:
            out.append([pieces, methods(p.callback)])
walk(get_resolver().url_patterns, [])
print("NOCRUD-URLS " + json.dumps(out))
"""


def django_settings_module(manage_py: Path) -> str | None:
    """``pitchdesk.settings`` from manage.py's ``setdefault("DJANGO_SETTINGS_MODULE", ...)``."""
    match = re.search(
        r"DJANGO_SETTINGS_MODULE['\"]\s*,\s*['\"]([\w.]+)['\"]", manage_py.read_text(encoding="utf-8")
    )
    return match.group(1) if match else None


def from_django(manage_py: Path, env: Mapping[str, str], python: str = sys.executable) -> list[Endpoint]:
    """The URLconf's endpoints, read by a subprocess that imports the app (never this process)."""
    environ = dict(env)
    module = environ.get("DJANGO_SETTINGS_MODULE") or django_settings_module(manage_py)
    if not module:
        raise UsageError(f"cannot tell the Django settings module of {manage_py}; set DJANGO_SETTINGS_MODULE")
    environ["DJANGO_SETTINGS_MODULE"] = module
    result = subprocess.run(
        [python, "-c", _DJANGO_SCRIPT],
        cwd=manage_py.parent, env=environ, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    line = next((ln for ln in result.stdout.splitlines() if ln.startswith("NOCRUD-URLS ")), None)
    if result.returncode != 0 or line is None:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-8:])
        raise UsageError(f"could not read the Django URLconf of {manage_py.parent}:\n{tail}")
    endpoints: list[Endpoint] = []
    for pieces, methods in json.loads(line[len("NOCRUD-URLS ") :]):
        joined = "".join(_strip_anchors(piece) for piece in pieces)
        if "(?P<format>" in joined:  # DRF's format-suffix twins (.json) of every route
            continue
        route = "/" + _pretty(joined)
        pattern = "/" + _unnamed(joined)
        endpoints.extend(Endpoint(method, route, pattern) for method in methods)
    return endpoints


def _strip_anchors(regex: str) -> str:
    regex = regex.removeprefix("^")
    for tail in ("\\Z", "$"):
        regex = regex.removesuffix(tail)
    return regex


def _named_groups(regex: str) -> Iterable[tuple[int, int, str]]:
    """``(start, end, name)`` of each top-level ``(?P<name>...)`` group (balanced parentheses)."""
    for match in re.finditer(r"\(\?P<(\w+)>", regex):
        depth, index = 0, match.start()
        while index < len(regex):
            char = regex[index]
            if char == "\\":
                index += 2
                continue
            depth += {"(": 1, ")": -1}.get(char, 0)
            if depth == 0:
                yield match.start(), index + 1, match.group(1)
                break
            index += 1


def _replace_groups(regex: str, render: Any) -> str:
    out, last = [], 0
    for start, end, name in _named_groups(regex):
        if start < last:
            continue
        out.append(regex[last:start])
        out.append(render(name, regex[start:end]))
        last = end
    out.append(regex[last:])
    return "".join(out)


def _pretty(regex: str) -> str:
    text = _replace_groups(regex, lambda name, _: "{" + name + "}")
    return re.sub(r"\\(.)", r"\1", text)


def _unnamed(regex: str) -> str:
    return _replace_groups(regex, lambda name, group: "(?:" + group[len(f"(?P<{name}>") :])


def endpoint_list(settings: Settings, openapi_rows: Sequence[Mapping[str, str]]) -> list[Endpoint]:
    """The app's endpoints: the OpenAPI rows the workers fetched, or the Django URLconf.

    Raises ``UsageError`` saying why there is no list (a worker's fetch error, no app, no source).
    """
    if settings.openapi_path:
        errors = [row["error"] for row in openapi_rows if "error" in row]
        if errors:
            raise UsageError(errors[0])
        if not openapi_rows:
            raise UsageError("no app was started, so its OpenAPI schema could not be read")
        return [Endpoint(row["method"], row["route"], row["pattern"]) for row in openapi_rows]
    manage_py = detect_django_project(settings.rootpath)
    if manage_py is None:
        raise UsageError("set nocrud_openapi_path (or use a Django app) to know the app's endpoints")
    return from_django(manage_py, app_environment(settings.app_env))


def openapi_rows(app_url: str, schema_path: str) -> list[dict[str, str]]:
    """The live app's endpoints as plain rows a worker can send (or one ``{"error": ...}`` row)."""
    try:
        return [dataclasses.asdict(e) for e in fetch_openapi(app_url, schema_path)]
    except NocrudError as exc:
        return [{"error": str(exc)}]


def of_run(
    settings: Settings, rows: Sequence[Mapping[str, str]], records: Iterable[TestRecord]
) -> Coverage | str:
    """Coverage of the run (written as JSON if asked), or one line that says why it was not measured."""
    try:
        endpoints = endpoint_list(settings, rows)
    except NocrudError as exc:
        return str(exc)
    result = measure(endpoints, records)
    if settings.coverage_json is not None:
        write_json(settings.coverage_json, result, git_sha=git_sha(settings.rootpath))
    return result


def app_environment(extra: Sequence[tuple[str, str]]) -> dict[str, str]:
    """This process's environment plus the ini's ``nocrud_app_env`` lines that need no placeholder."""
    env = dict(os.environ)
    env.update({name: value for name, value in extra if "{" not in value})
    return env
