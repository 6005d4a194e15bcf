"""The run's data as the HTML page carries it, so a page can be read back and rendered again.

Every ``--nocrud-html`` page embeds one ``<script type="application/json" id="nocrud-run-data">`` block:
the test records, the processes' stats, start and end, the endpoint coverage (when measured), the git
commit and the shard label. ``nocrud merge`` rebuilds one page from several shards' blocks instead of
gluing HTML together. The block holds the same (redacted) data the page shows, nothing more.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .record import TestRecord

FORMAT = "pytest-nocrud-run/1"
ELEMENT_ID = "nocrud-run-data"
_BLOCK = re.compile(
    rf"<script type=['\"]application/json['\"] id=['\"]{ELEMENT_ID}['\"]>(.*?)</script>", re.S
)


@dataclasses.dataclass
class RunData:
    """One run (or one merged report) as plain data."""

    records: list[TestRecord]
    stats: list[dict[str, Any]]
    started: float | None = None
    finished: float | None = None
    coverage: dict[str, Any] | None = None  # ``Coverage.as_json()`` of the run, when it was measured
    git_sha: str | None = None
    shard: str | None = None  # PYTEST_NOCRUD_SHARD, or pytest-split's "1/2"; None: not a shard

    def as_json(self) -> dict[str, Any]:
        return {"format": FORMAT, **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: str) -> RunData:
        if data.get("format") != FORMAT:
            raise UsageError(f"{source}: run data of format {data.get('format')!r}, expected {FORMAT!r}")
        try:
            return cls(
                records=list(data["records"]),
                stats=[dict(s) for s in data["stats"]],
                started=data.get("started"),
                finished=data.get("finished"),
                coverage=data.get("coverage"),
                git_sha=data.get("git_sha"),
                shard=data.get("shard"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"{source}: broken run data ({exc!r})") from None


def embed(data: Mapping[str, Any]) -> str:
    """The ``<script>`` block; ``<``, ``>`` and ``&`` escaped so no text in it can end the block."""
    text = json.dumps(data, separators=(",", ":"))
    text = text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
    return f"<script type='application/json' id='{ELEMENT_ID}'>{text}</script>"


def has_run_data(page: str) -> bool:
    return _BLOCK.search(page) is not None


def extract(page: str, source: str) -> RunData:
    """The run data of a page's text; ``UsageError`` when it has none (not a nocrud page, or too old)."""
    found = _BLOCK.search(page)
    if found is None:
        raise UsageError(
            f"{source} carries no run data: not a --nocrud-html page, or one written before "
            "`nocrud merge` existed (run the shard again)"
        )
    try:
        data = json.loads(found.group(1))
    except ValueError as exc:
        raise UsageError(f"{source}: broken run data ({exc})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{source}: broken run data (not a JSON object)")
    return RunData.from_json(data, source)


def read(path: Path) -> RunData:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    return extract(text, str(path))


def labels(names: Sequence[str]) -> list[str]:
    """The names made unique: a second ``shard`` becomes ``shard#2``."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return out
