"""``--nocrud-coverage[=PATH]``: which of the app's endpoints (method + route) the run called, how often.

The endpoint list comes from the app itself (``app.endpoints`` asks it: its OpenAPI schema, or for
Django its URLconf); this module only matches recorded requests against it and gives the verdict.
Each recorded request is matched against the endpoints' path patterns, so ``/api/actors/3/`` counts
for ``GET /api/actors/{pk}/``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .record import TestRecord
from .routes import path_only

HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
ANY_METHOD = "*"


@dataclasses.dataclass(frozen=True)
class Endpoint:
    method: str  # "GET", ..., or "*" (any)
    route: str  # "/api/actors/{pk}/"
    pattern: str  # regex the whole request path must match

    @property
    def key(self) -> str:
        return f"{self.method} {self.route}"

    def matches(self, method: str, path: str) -> bool:
        return (self.method in (ANY_METHOD, method)) and re.fullmatch(self.pattern, path) is not None


# -- OpenAPI -------------------------------------------------------------------------------------------


def from_openapi(schema: Mapping[str, Any]) -> list[Endpoint]:
    """Every ``paths`` entry x operation; ``{name}`` matches one path segment."""
    paths = schema.get("paths")
    if not isinstance(paths, Mapping):
        raise UsageError("the OpenAPI schema has no 'paths' object")
    prefix = ""
    servers = schema.get("servers")
    if isinstance(servers, list) and servers and isinstance(servers[0], Mapping):
        url = str(servers[0].get("url", ""))
        if "://" in url:  # absolute server URL: keep its path part
            url = "/" + url.split("://", 1)[1].partition("/")[2]
        prefix = url.rstrip("/") if url.startswith("/") else ""
    endpoints = []
    for route, operations in paths.items():
        if not isinstance(operations, Mapping):
            continue
        full = prefix + str(route)
        pattern = "".join(
            "[^/]+" if part.startswith("{") else re.escape(part)
            for part in re.split(r"(\{[^}/]+\})", full)
            if part
        )
        for method in operations:
            if method.upper() in HTTP_METHODS:
                endpoints.append(Endpoint(method.upper(), full, pattern))
    return endpoints


# -- measuring -----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Coverage:
    counts: dict[str, int]  # endpoint key -> calls
    unmatched: int  # requests that matched no endpoint (404 probes, typos)

    @property
    def called(self) -> list[str]:
        return [key for key, count in self.counts.items() if count]

    @property
    def missing(self) -> list[str]:
        return [key for key, count in self.counts.items() if not count]

    @property
    def percent(self) -> float:
        return 100.0 * len(self.called) / len(self.counts) if self.counts else 100.0

    def line(self, limit: int = 8) -> str:
        """``endpoints: 31 of 38 called (missing: GET /api/x/, ...)``."""
        text = f"endpoints: {len(self.called)} of {len(self.counts)} called ({self.percent:.0f}%)"
        missing = self.missing
        if missing:
            shown = ", ".join(missing[:limit]) + (
                f", +{len(missing) - limit} more" if len(missing) > limit else ""
            )
            text += f" (missing: {shown})"
        return text

    def as_json(self) -> dict[str, Any]:
        return {
            "called": len(self.called),
            "total": len(self.counts),
            "percent": round(self.percent, 1),
            "unmatched_requests": self.unmatched,
            "endpoints": [{"endpoint": key, "calls": count} for key, count in self.counts.items()],
        }


def measure(endpoints: Sequence[Endpoint], records: Iterable[TestRecord]) -> Coverage:
    unique = list({e.key: e for e in endpoints}.values())
    counts = {e.key: 0 for e in unique}
    unmatched = 0
    for record in records:
        for request in record["requests"]:
            path = path_only(str(request["path"]))
            hit = next(
                (e for e in unique if e.method == request["method"] and e.matches(request["method"], path)),
                None,
            )
            hit = hit or next((e for e in unique if e.matches(request["method"], path)), None)
            if hit is None:
                unmatched += 1
            else:
                counts[hit.key] += 1
    return Coverage(counts, unmatched)


def below_fail_under(result: Coverage | str, fail_under: float | None) -> bool:
    """A gate that could not measure fails too: a silent pass would hide a broken schema path."""
    if fail_under is None:
        return False
    return isinstance(result, str) or result.percent < fail_under


def summary_line(result: Coverage | str) -> str:
    """The summary's endpoints line, measured or not."""
    if isinstance(result, Coverage):
        return result.line()
    return f"endpoints: not measured ({result.splitlines()[0]})"


def gate_lines(result: Coverage | str, *, fail_under: float | None, json_path: Path | None) -> list[str]:
    """Where the JSON went, and the gate's verdict when it fails the run."""
    lines = []
    measured = "could not be measured, so it counts as"
    if isinstance(result, Coverage):
        measured = f"{result.percent:.1f}% is"
        if json_path is not None:
            lines.append(f"endpoint coverage JSON: {json_path}")
    if below_fail_under(result, fail_under):
        gate = f"--nocrud-coverage-fail-under={fail_under:g}"
        lines.append(f"FAILED: endpoint coverage {measured} below {gate}")
    return lines


def write_json(path: Path, coverage: Coverage, *, git_sha: str | None = None) -> None:
    """The JSON file; ``git_sha`` (the app's commit) lets ``nocrud merge`` refuse shards of two versions."""
    data = coverage.as_json()
    if git_sha is not None:
        data["git_sha"] = git_sha
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


