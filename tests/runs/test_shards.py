"""The README's sharded-CI recipe, for real: the example suite split over two pytest-split shards, each a
run of its own (its own embedded server, app, HTML page, perf record and coverage file, at the same
time, as two CI jobs would be), then ``nocrud merge`` over their files.

The merged coverage must be exactly an unsplit run's (the same endpoints called), the merged page must
hold every test of both shards in two shard lane groups, and the merged perf record must be one run that
``nocrud perf`` reads, with every request of both shards.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from _browser import render
from _support import discard_cluster_dir, new_cluster_dir

from pytest_nocrud import cli

EXAMPLE = Path(__file__).resolve().parents[2] / "example_app"
SUITE = "tests/test_readme_examples.py"


def example_command(out: Path, data_dir: Path, *split: str) -> list[str]:
    return [
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
        f"--nocrud-data-dir={data_dir}",
        f"--nocrud-html={out / 'report' / 'run.html'}",
        f"--nocrud-perf={out / 'perf'}",
        f"--nocrud-coverage={out / 'coverage.json'}",
        *split,
        SUITE,
    ]  # fmt: skip


def environment() -> dict[str, str]:
    """No break switch (a plain run passes), nothing of the outer run's settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "NOCRUD_", "PITCHDESK_"))}


@pytest.fixture
def data_dirs() -> Iterator[list[Path]]:
    """Three embedded clusters: one per shard (as on two CI machines) and one for the unsplit run."""
    paths = [new_cluster_dir() for _ in range(3)]
    yield paths
    for path in paths:
        discard_cluster_dir(path)


def passed_of(output: str) -> int:
    found = re.findall(r"(\d+) passed", output.strip().splitlines()[-1])
    assert found, output
    return int(found[0])


def called(coverage: Path) -> set[str]:
    data = json.loads(coverage.read_text())
    return {row["endpoint"] for row in data["endpoints"] if row["calls"]}


def test_two_pytest_split_shards_merge_into_the_unsplit_report(tmp_path: Path, data_dirs: list[Path]) -> None:
    shards = [tmp_path / "artifacts" / f"shard-{group}" for group in (1, 2)]
    jobs = [
        subprocess.Popen(
            example_command(out, data_dir, "--splits", "2", "--group", str(group)),
            cwd=EXAMPLE, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        for group, (out, data_dir) in enumerate(zip(shards, data_dirs, strict=False), 1)
    ]
    outputs = [job.communicate(timeout=300)[0] for job in jobs]
    for job, output in zip(jobs, outputs, strict=True):
        assert job.returncode == 0, output
        assert "[pytest-split] Running group" in output, output
    shard_passed = [passed_of(output) for output in outputs]
    assert all(shard_passed), "each shard ran some of the tests"

    whole = tmp_path / "whole"
    unsplit = subprocess.run(
        example_command(whole, data_dirs[2]),
        cwd=EXAMPLE, env=environment(), capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert unsplit.returncode == 0, unsplit.stdout + unsplit.stderr
    assert sum(shard_passed) == passed_of(unsplit.stdout), "the shards together ran the whole suite"
    # Each shard alone covers less than the whole run: that is why a gate needs the merged figure.
    assert all(called(out / "coverage.json") < called(whole / "coverage.json") for out in shards)

    merged = tmp_path / "merged"
    code = cli.main(
        [
            "merge",
            "--html", str(merged / "run.html"),
            "--coverage", str(merged / "coverage.json"),
            "--perf", str(merged / "perf"),
            "--coverage-fail-under", "1",
            str(tmp_path / "artifacts"),
        ]
    )  # fmt: skip
    assert code == 0

    # -- coverage: the same endpoints called as the unsplit run, over the same endpoint list
    assert called(merged / "coverage.json") == called(whole / "coverage.json")
    endpoints = {row["endpoint"] for row in json.loads((whole / "coverage.json").read_text())["endpoints"]}
    assert {row["endpoint"] for row in json.loads((merged / "coverage.json").read_text())["endpoints"]} == (
        endpoints
    )

    # -- the page: two shard lane groups (labelled by pytest-split's group), every test once
    page = (merged / "run.html").read_text()
    groups = re.findall(r"<div class='shard' data-shard='([^']*)'>", page)
    assert groups == ["1/2", "2/2"], groups
    assert page.count("data-test=") == sum(shard_passed)
    whole_page = (whole / "report" / "run.html").read_text()
    bars = r"data-test='([^']*)'"
    assert set(re.findall(bars, page)) == set(re.findall(bars, whole_page)), "the same tests"
    assert f"data-count='passed'>{sum(shard_passed)} passed<" in page
    shown = render(merged / "run.html")
    assert shown.console == [], shown.console
    assert re.findall(r'<div class="shard" data-shard="([^"]*)">', shown.dom) == ["1/2", "2/2"]

    # -- perf: one new run with both shards' requests, read by `nocrud perf`
    runs = list((merged / "perf").iterdir())
    assert len(runs) == 1
    rows = [json.loads(line) for f in runs[0].iterdir() for line in f.read_text().splitlines()]
    shard_rows = sum(
        len(f.read_text().splitlines()) for out in shards for f in (out / "perf").glob("*/*.ndjson")
    )
    assert len(rows) == shard_rows and {row["shard"] for row in rows} == {"1/2", "2/2"}
    assert {row["run_id"] for row in rows} == {runs[0].name}
    assert cli.main(["perf", str(merged / "perf")]) == 0

    # -- the gate judges the merged figure: above it is exit 1 and one line
    percent = json.loads((merged / "coverage.json").read_text())["percent"]
    if percent < 100:
        gate = ["merge", "--coverage-fail-under", str(min(100.0, percent + 1)), str(tmp_path / "artifacts")]
        assert cli.main(gate) == 1
