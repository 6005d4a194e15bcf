"""Where a REST item lives, from what the app itself tells -- and only ever on the app's own origin.

Pure helpers for :mod:`pytest_nocrud.flows.crud`: links resolved against the request (same scheme,
host and port, else ignored), redirects that differ from the request only by the trailing slash (the
only ones CrudFlow adopts: FastAPI/Starlette's 307, Flask's 308, Django's ``APPEND_SLASH`` 301), item
templates such as ``/authors/{id}``, and the item path an OpenAPI (or Swagger 2) schema gives for a
collection: ``/authors/`` -> ``/authors/{author_id}``.

The schema path comes from ``nocrud_openapi_path`` (the plugin passes it in with
:func:`use_openapi_path`); without it ``/openapi.json`` is tried, once per flow and app.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from pytest_nocrud.flows.timeline import mark_expected

__all__ = [
    "GUESSED_SCHEMA_PATH",
    "fetch_schema",
    "item_path_in_schema",
    "off_origin",
    "only_slash_differs",
    "origin_of",
    "same_origin_path",
    "schema_path",
    "slash_variant",
    "template_of",
    "use_openapi_path",
]

GUESSED_SCHEMA_PATH = "/openapi.json"
_schema_path: str | None = None


def use_openapi_path(path: str | None) -> None:
    """The app's schema path (``nocrud_openapi_path``); None: try ``/openapi.json``."""
    global _schema_path
    _schema_path = path or None


def schema_path() -> tuple[str, bool]:
    """The schema path to read and whether it was configured (else it is the guess)."""
    return (_schema_path, True) if _schema_path else (GUESSED_SCHEMA_PATH, False)


def origin_of(url: httpx.URL) -> str:
    """``scheme://host:port``: what must match for CrudFlow to use a link or adopt a redirect."""
    return f"{url.scheme}://{url.host}:{url.port or {'http': 80, 'https': 443}.get(url.scheme, '')}"


def same_origin_path(response: httpx.Response, link: str) -> str | None:
    """``link`` resolved against the request, as a path (+ query) when it points at the same app."""
    target = response.request.url.join(link)
    if origin_of(target) != origin_of(response.request.url):
        return None
    return target.raw_path.decode("ascii")


def off_origin(response: httpx.Response) -> str | None:
    """The redirect's target when it leaves the app's origin (another scheme, host or port), else None."""
    location = response.headers.get("location")
    if not location:
        return None
    target = response.request.url.join(location)
    return str(target) if origin_of(target) != origin_of(response.request.url) else None


def _split(path: str) -> tuple[str, str]:
    head, _, query = path.partition("?")
    return head, query


def only_slash_differs(requested: str, target: str) -> bool:
    """``/authors/2/`` vs ``/authors/2`` (same query): the one redirect CrudFlow may adopt."""
    (a, qa), (b, qb) = _split(requested), _split(target)
    return a != b and a.rstrip("/") == b.rstrip("/") and bool(a.rstrip("/")) and qa == qb


def slash_variant(path: str) -> str:
    """The same path with the trailing slash toggled (query kept): ``/a/2`` <-> ``/a/2/``."""
    head, query = _split(path)
    head = head[:-1] if head.endswith("/") else head + "/"
    return f"{head}?{query}" if query else head


def template_of(path: str, obj_id: Any) -> str | None:
    """``/authors/2`` for id 2 -> ``/authors/{id}`` (a ``str.format`` template); None if the id is no
    path segment."""
    head, query = _split(path)
    segments = head.split("/")
    wanted = str(obj_id)
    for i in range(len(segments) - 1, -1, -1):
        if segments[i] == wanted:
            escaped = [s.replace("{", "{{").replace("}", "}}") for s in segments]
            escaped[i] = "{id}"
            out = "/".join(escaped)
            return out + ("?" + query.replace("{", "{{").replace("}", "}}") if query else "")
    return None


def fetch_schema(client: httpx.Client, path: str) -> Mapping[str, Any] | None:
    """The app's OpenAPI/Swagger document at ``path``, or None (any failure: not served, not JSON,
    a redirect -- never followed). The request is logged like any other, and not painted an error."""
    try:
        response = client.get(path, headers={"Accept": "application/json, application/vnd.oai.openapi"})
    except httpx.HTTPError:
        return None
    mark_expected(response)
    if response.status_code != 200:
        return None
    try:
        document = response.json()
    except ValueError:
        return None
    if not isinstance(document, dict) or not isinstance(document.get("paths"), dict):
        return None
    return document


def _base_paths(schema: Mapping[str, Any]) -> list[str]:
    """Path prefixes the schema's paths are relative to: OpenAPI 3 ``servers``, Swagger 2 ``basePath``."""
    bases: list[str] = []
    servers = schema.get("servers")
    if isinstance(servers, list):
        for server in servers:
            url = server.get("url") if isinstance(server, Mapping) else None
            if isinstance(url, str):
                bases.append(urlsplit(url).path.rstrip("/"))
    base_path = schema.get("basePath")
    if isinstance(base_path, str):
        bases.append(base_path.rstrip("/"))
    return [b for b in dict.fromkeys(bases) if b]


def item_path_in_schema(schema: Mapping[str, Any], endpoint: str) -> str | None:
    """The item template the schema gives for collection ``endpoint``: ``/authors/{author_id}`` for
    ``/authors/`` or ``/authors`` -> ``/authors/{id}``. Exactly one path parameter after the collection;
    paths that answer GET win; None when the schema has no such path."""
    paths = schema.get("paths")
    if not isinstance(paths, Mapping):
        return None
    collection = _split(endpoint)[0].rstrip("/")
    tries = [("", collection)]
    for base in _base_paths(schema):
        if collection.startswith(base + "/"):
            tries.append((base, collection[len(base) :]))
    for prefix, relative in tries:
        pattern = re.compile(re.escape(relative) + r"/\{([^/{}]+)\}/?")
        found = sorted(
            (not (isinstance(ops, Mapping) and "get" in ops), path)
            for path, ops in paths.items()
            if isinstance(path, str) and pattern.fullmatch(path)
        )
        if found:
            path = found[0][1]
            head = path[: path.index("{")]
            tail = path[path.index("}") + 1 :]
            return prefix + head.replace("{", "{{").replace("}", "}}") + "{id}" + tail
    return None
