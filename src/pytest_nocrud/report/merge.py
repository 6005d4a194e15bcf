"""``nocrud merge``: one report of a sharded run (pytest-split over CI jobs) from its shards' files.

Each shard job leaves its own ``--nocrud-html`` page (which embeds the run's data, ``rundata``), its
``--nocrud-perf`` record and its ``--nocrud-coverage`` JSON. Merging them:

- the **page** is rendered again from the shards' data: every test, one timeline with a lane group per
  shard, the counts, failures and tables over all of them (never HTML glued together);
- **coverage** is one measurement over the same endpoint list: calls per endpoint summed, so an endpoint
  counts as called when any shard called it; the fail-under gate judges the merged figure;
- the **perf record** is every shard's newest run concatenated into one new run (``DIR/<run_id>/``, one
  file per shard and worker), so ``nocrud perf DIR`` and its baseline gate read it as one run.

Inputs must belong to one run: shards that list different endpoints, or ran different commits of the
app, are refused with one ``ShardMismatch`` line. Shards are labelled by the label their run recorded
(``PYTEST_NOCRUD_SHARD``, else pytest-split's group as ``1/2``), else by where their files came from.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ShardMismatch, UsageError
from .coverage import Coverage
from .record import TestRecord
from .rundata import RunData, has_run_data, labels, read

__all__ = ["RunData", "Shard", "find", "merge_coverage", "merge_perf", "merge_runs", "read_shards"]

SHOWN = 5  # endpoints / tests named in one line


@dataclasses.dataclass(frozen=True)
class Inputs:
    """What the arguments hold, each file with the source name of the shard it came from."""

    pages: list[tuple[str, Path]]
    coverage: list[Path]
    perf_runs: list[tuple[str, Path]]  # a run directory (``DIR/<run_id>/``) with its *.ndjson files


def find(arguments: Sequence[Path], *, exclude: Iterable[Path] = ()) -> Inputs:
    """Pages, coverage files and perf runs in the arguments (files, or directories searched whole).

    A directory's files get its name as their source, or, when it holds several shards' pages (or perf
    records), the name of the subdirectory each came from. Of a perf directory only its newest run is
    taken, as ``nocrud perf`` does. ``exclude``: the merge's own outputs, never read as inputs.
    """
    skip = {p.resolve() for p in exclude}
    pages: list[tuple[str, Path]] = []
    coverage: list[Path] = []
    perf_runs: list[tuple[str, Path]] = []
    for argument in arguments:
        if not argument.exists():
            raise UsageError(f"{argument}: no such file or directory")
        if argument.is_file():
            kind = "page" if argument.suffix in (".html", ".htm") else _kind(argument)
            if kind == "page":  # one without run data is refused when read, saying why
                pages.append((argument.stem, argument))
            elif kind == "coverage":
                coverage.append(argument)
            elif kind == "perf":
                perf_runs.append((argument.parent.name, argument.parent))
            else:
                raise UsageError(
                    f"{argument} is not a --nocrud-html page, --nocrud-coverage JSON or --nocrud-perf record"
                )
            continue
        found = [
            p for p in sorted(argument.rglob("*")) if p.is_file() and not _inside(p.resolve(), skip)
        ]
        mine = [p for p in found if p.suffix == ".html" and _kind(p) == "page"]
        pages.extend((_source(argument, p, len(mine)), p) for p in mine)
        coverage.extend(p for p in found if p.suffix == ".json" and _kind(p) == "coverage")
        runs = _newest_runs({p.parent for p in found if p.suffix == ".ndjson"})
        perf_runs.extend((_source(argument, run, len(runs)), run) for run in runs)
    return Inputs(_unique(pages), _unique_paths(coverage), _unique(perf_runs))


def _inside(path: Path, roots: set[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def _kind(path: Path) -> str:
    """``page``, ``coverage``, ``perf`` or "" (not one of ours: a walk skips it)."""
    if path.suffix == ".ndjson":
        return "perf"
    if path.suffix not in (".html", ".htm", ".json"):
        return ""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""
    if path.suffix != ".json":
        return "page" if has_run_data(text) else ""
    try:
        data = json.loads(text)
    except ValueError:
        return ""
    looks = isinstance(data, dict) and isinstance(data.get("endpoints"), list) and "total" in data
    return "coverage" if looks else ""


def _source(argument: Path, path: Path, siblings: int) -> str:
    """The directory's name, or with several shards in it, the subdirectory the file came from."""
    relative = path.relative_to(argument)
    name = argument.resolve().name or "shard"
    if siblings <= 1 or len(relative.parts) < 2:
        return name
    return relative.parts[0]


def _newest_runs(run_dirs: set[Path]) -> list[Path]:
    """Per perf directory (the parent of its runs), its newest run: run ids sort by start time."""
    newest: dict[Path, Path] = {}
    for run in run_dirs:
        best = newest.get(run.parent)
        if best is None or run.name > best.name:
            newest[run.parent] = run
    return sorted(newest.values())


def _unique(items: list[tuple[str, Path]]) -> list[tuple[str, Path]]:
    seen: set[Path] = set()
    out = []
    for name, path in items:
        if path.resolve() not in seen:
            seen.add(path.resolve())
            out.append((name, path))
    return out


def _unique_paths(paths: list[Path]) -> list[Path]:
    return [path for _, path in _unique([("", p) for p in paths])]


# -- the page ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Shard:
    label: str
    source: Path
    run: RunData


def read_shards(pages: Sequence[tuple[str, Path]]) -> list[Shard]:
    """Each page's run data, labelled by the label its run recorded, else by its source; unique."""
    runs = [(source, path, read(path)) for source, path in pages]
    names = labels([run.shard or source for source, _, run in runs])
    return [Shard(name, path, run) for name, (_, path, run) in zip(names, runs, strict=True)]


def merge_runs(shards: Sequence[Shard]) -> RunData:
    """One run's data: every shard's tests and processes, each marked with its shard."""
    records: list[TestRecord] = []
    stats: list[dict[str, Any]] = []
    for shard in shards:
        for record in shard.run.records:
            marked: TestRecord = {**record, "shard": record.get("shard") or shard.label}
            records.append(marked)
        stats.extend({**s, "shard": s.get("shard") or shard.label} for s in shard.run.stats)
    starts = [s.run.started for s in shards if s.run.started is not None]
    ends = [s.run.finished for s in shards if s.run.finished is not None]
    coverages = [(str(s.source), s.run.coverage) for s in shards if s.run.coverage is not None]
    merged = None
    if coverages and len(coverages) == len(shards):
        merged = merge_coverage(coverages).as_json()
    shas = {s.run.git_sha for s in shards if s.run.git_sha}
    return RunData(
        records=records,
        stats=stats,
        started=min(starts) if starts else None,
        finished=max(ends) if ends else None,
        coverage=merged,
        git_sha=shas.pop() if len(shas) == 1 else None,
    )


def ran_twice(records: Sequence[TestRecord]) -> list[str]:
    """Tests that ran in more than one shard: the split was not a partition (or a test was rerun)."""
    shards: dict[str, set[str]] = {}
    for record in records:
        shards.setdefault(record["nodeid"], set()).add(str(record.get("shard", "")))
    return sorted(nodeid for nodeid, where in shards.items() if len(where) > 1)


# -- coverage ------------------------------------------------------------------------------------------


def read_coverage(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"cannot read {path} as coverage JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("endpoints"), list):
        raise UsageError(f"{path} is not --nocrud-coverage JSON (no 'endpoints' list)")
    return data


def _counts(source: str, data: Mapping[str, Any]) -> dict[str, int]:
    try:
        return {str(row["endpoint"]): int(row["calls"]) for row in data["endpoints"]}
    except (KeyError, TypeError, ValueError):
        raise UsageError(f"{source} is not --nocrud-coverage JSON (bad 'endpoints' rows)") from None


def merge_coverage(items: Sequence[tuple[str, Mapping[str, Any]]]) -> Coverage:
    """One coverage over the shards' files: the same endpoint list, the calls summed per endpoint.

    ``ShardMismatch`` when two files list different endpoints: the shards measured different apps (or
    versions of one), and a union of those would be a figure of neither.
    """
    if not items:
        raise UsageError("no coverage to merge")
    first_source, first = items[0]
    counts = _counts(first_source, first)
    unmatched = int(first.get("unmatched_requests", 0))
    for source, data in items[1:]:
        other = _counts(source, data)
        if other.keys() != counts.keys():
            raise ShardMismatch(
                f"{first_source} and {source} list different endpoints ({_difference(counts, other)}): "
                "merge shards of one run of one app version"
            )
        for endpoint, calls in other.items():
            counts[endpoint] += calls
        unmatched += int(data.get("unmatched_requests", 0))
    return Coverage(counts, unmatched)


def _difference(a: Mapping[str, int], b: Mapping[str, int]) -> str:
    parts = []
    for side, keys in (("first", sorted(a.keys() - b.keys())), ("second", sorted(b.keys() - a.keys()))):
        if keys:
            more = f", +{len(keys) - SHOWN} more" if len(keys) > SHOWN else ""
            parts.append(f"only in the {side}: {', '.join(keys[:SHOWN])}{more}")
    return "; ".join(parts)


# -- perf ----------------------------------------------------------------------------------------------


def read_perf(run: Path) -> list[dict[str, Any]]:
    """The rows of one run directory (or one ``.ndjson`` file)."""
    files = [run] if run.is_file() else sorted(run.glob("*.ndjson"))
    rows: list[dict[str, Any]] = []
    for path in files:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                raise UsageError(f"{path}:{number} is not a --nocrud-perf line (invalid JSON)") from None
            if not isinstance(row, dict):
                raise UsageError(f"{path}:{number} is not a --nocrud-perf line (not an object)")
            rows.append(row)
    return rows


def merge_perf(runs: Sequence[tuple[str, Path]], run_id: str) -> list[dict[str, Any]]:
    """Every shard's requests as one run ``run_id``; each row keeps its shard and its own run id."""
    names = labels([source for source, _ in runs])
    merged: list[dict[str, Any]] = []
    for name, (_, run) in zip(names, runs, strict=True):
        for row in read_perf(run):
            shard = row.get("shard") or name
            merged.append({**row, "run_id": run_id, "shard": shard, "shard_run_id": row.get("run_id")})
    return merged


def unused_run_id(directory: Path, run_id: str) -> str:
    """``run_id``, or with a suffix when a run of that id is already there (two merges in one second)."""
    candidate, number = run_id, 1
    while (directory / candidate).exists():
        number += 1
        candidate = f"{run_id}-{number}"
    return candidate


def write_perf(directory: Path, run_id: str, rows: Sequence[Mapping[str, Any]]) -> Path:
    """``directory/<run_id>/<shard>--<worker>.ndjson``; the run directory."""
    run = directory / run_id
    files: dict[str, list[str]] = {}
    for row in rows:
        name = f"{_file_part(str(row.get('shard', '')))}--{_file_part(str(row.get('worker', 'main')))}"
        files.setdefault(name, []).append(json.dumps(dict(row)))
    run.mkdir(parents=True, exist_ok=False)
    for name, lines in files.items():
        (run / f"{name}.ndjson").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return run


def _file_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "shard"


# -- versions ------------------------------------------------------------------------------------------


def check_one_version(versions: Iterable[tuple[str, str | None]]) -> None:
    """``ShardMismatch`` when the inputs name two git commits (inputs without one are not judged)."""
    seen: dict[str, str] = {}
    for source, sha in versions:
        if sha:
            seen.setdefault(sha, source)
    if len(seen) > 1:
        named = " vs ".join(f"git {sha[:12]} ({source})" for sha, source in seen.items())
        raise ShardMismatch(f"the shards ran different versions of the app: {named}; merge one commit's")
