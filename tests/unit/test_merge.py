"""``nocrud merge`` over shards' files made here (no PostgreSQL, no app): pages rebuilt from their
embedded data, coverage as one measurement over one endpoint list, perf records joined into one run,
and mismatched shards refused with one line."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from pytest_nocrud import ShardMismatch, cli
from pytest_nocrud.report import coverage, html, merge, rundata
from pytest_nocrud.report import record as rec
from pytest_nocrud.report.perf import PerfRecorder

ENDPOINTS = ["GET /api/actors/", "POST /api/actors/", "GET /api/actors/{pk}/", "DELETE /api/actors/{pk}/"]


def record(nodeid: str, start: float, *, worker: str = "gw0", outcome: str = "passed",
           requests: tuple[tuple[str, str], ...] = ()) -> rec.TestRecord:  # fmt: skip
    return {
        "nodeid": nodeid,
        "worker": worker,
        "shard": "",
        "outcome": outcome,
        "phases": {"setup": [start, 0.01], "call": [start + 0.01, 0.05], "teardown": [start + 0.06, 0.01]},
        "handoff": [start, 0.001],
        "seconds": 0.07,
        "failure": "AssertionError: boom" if outcome == "failed" else "",
        "failed_request": "",
        "sections": [],
        "requests": [
            {"method": method, "path": path, "route": path, "status": 200, "client": "",
             "start": start + 0.02, "ms": 3.0, "expected": False}
            for method, path in requests
        ],  # fmt: skip
        "crud": [],
    }


def stats(worker: str, start: float) -> dict[str, Any]:
    return {
        "worker": worker,
        "server": {"version": "15.8", "embedded": True, "start_ms": 500.0},
        "events": [["PostgreSQL", start, 0.5, True], ["app", start + 0.5, 0.8, True]],
        "handoff_ms": [0.2, 0.3],
    }


def counts(called: dict[str, int]) -> coverage.Coverage:
    return coverage.Coverage({key: called.get(key, 0) for key in ENDPOINTS}, unmatched=1)


def write_shard(
    directory: Path,
    records: list[rec.TestRecord],
    called: dict[str, int],
    *,
    shard: str | None,
    git_sha: str | None = "abc123",
    endpoints: list[str] = ENDPOINTS,
) -> None:
    """What one shard job leaves: report/run.html, coverage.json, perf/<run>/gw0.ndjson."""
    measured = coverage.Coverage({key: called.get(key, 0) for key in endpoints}, unmatched=1)
    html.write(
        directory / "report" / "run.html",
        records,
        [stats("gw0", records[0]["phases"]["setup"][0] - 2)],
        started=records[0]["phases"]["setup"][0] - 2,
        finished=records[-1]["phases"]["teardown"][0] + 1,
        coverage=measured.as_json(),
        coverage_line=measured.line(),
        git_sha=git_sha,
        shard=shard,
    )
    coverage.write_json(directory / "coverage.json", measured, git_sha=git_sha)
    recorder = PerfRecorder(directory / "perf", "20260101T000000Z-1", "gw0", git_sha, shard)
    for test in records:
        recorder.add(test)


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    """Two shards' artifacts, as a CI merge job downloads them (one directory each)."""
    root = tmp_path / "artifacts"
    write_shard(
        root / "shard-1",
        [
            record("t.py::test_list", 100.0, requests=(("GET", "/api/actors/"),)),
            record("t.py::test_fails", 100.2, outcome="failed", requests=(("POST", "/api/actors/"),)),
        ],
        {"GET /api/actors/": 1, "POST /api/actors/": 1},
        shard="1/2",
    )
    write_shard(
        root / "shard-2",
        [record("t.py::test_detail", 100.1, requests=(("GET", "/api/actors/3/"), ("GET", "/api/actors/")))],
        {"GET /api/actors/{pk}/": 1, "GET /api/actors/": 1},
        shard="2/2",
    )
    return root


def test_a_page_embeds_the_data_it_shows_and_gives_it_back(tmp_path: Path) -> None:
    tricky = record("t.py::test_x[</script><b>]", 1.0, requests=(("GET", "/a?x=<&>"),))
    html.write(tmp_path / "p.html", [tricky], [stats("gw0", 0.5)], started=0.5, finished=2.0, shard="3/4",
               git_sha="f00", redact=lambda text: text.replace("<b>", "***"))  # fmt: skip
    page = (tmp_path / "p.html").read_text()
    assert page.count("</script>") == 2, "no text inside the data block can end it"
    data = rundata.read(tmp_path / "p.html")
    assert data.records[0]["nodeid"] == "t.py::test_x[</script>***]", "the embedded data is redacted too"
    assert data.records[0]["requests"][0]["path"] == "/a?x=<&>"
    assert (data.shard, data.git_sha, data.started, data.finished) == ("3/4", "f00", 0.5, 2.0)


def test_merge_rebuilds_one_page_with_a_lane_group_per_shard(artifacts: Path, tmp_path: Path) -> None:
    out = tmp_path / "merged.html"
    assert cli.main(["merge", "--html", str(out), str(artifacts)]) == 0
    page = out.read_text()
    assert re.findall(r"<div class='shard' data-shard='([^']*)'>", page) == ["1/2", "2/2"]
    assert page.count("data-test=") == 3
    assert "data-count='passed'>2 passed<" in page and "data-count='failed'>1 failed<" in page
    assert "Failures (1)" in page and "shard 1/2 gw0" in page
    assert "2 shards, one lane per worker in each" in page
    assert "<td>endpoints</td><td>3 of 4 called (75%)" in page, "the pages' own coverage, merged"
    again = rundata.read(out)
    assert {r["shard"] for r in again.records} == {"1/2", "2/2"}
    assert again.started == 98.0, "the earliest shard's start"


def test_a_merged_page_can_be_merged_again_keeping_its_shards(artifacts: Path, tmp_path: Path) -> None:
    first = tmp_path / "first.html"
    shards = [str(artifacts / "shard-1"), str(artifacts / "shard-2")]
    assert cli.main(["merge", "--html", str(first), *shards]) == 0
    second = tmp_path / "second.html"
    assert cli.main(["merge", "--html", str(second), str(first)]) == 0
    assert re.findall(r"data-shard='([^']*)'>", second.read_text()) == ["1/2", "2/2"]


def test_shards_without_a_label_are_named_by_their_directory(tmp_path: Path) -> None:
    for name, start in (("linux-a", 1.0), ("linux-b", 2.0)):
        test = record(f"t.py::test_{name}", start, requests=(("GET", "/api/actors/"),))
        write_shard(tmp_path / "in" / name, [test], {}, shard=None)
    found = merge.find([tmp_path / "in"])
    assert sorted(source for source, _ in found.pages) == ["linux-a", "linux-b"]
    assert sorted(source for source, _ in found.perf_runs) == ["linux-a", "linux-b"]
    assert len(found.coverage) == 2
    one = merge.find([tmp_path / "in" / "linux-a"])
    assert [source for source, _ in one.pages] == ["linux-a"], "a shard's own directory names it"
    pages = [("run", tmp_path / "in" / name / "report" / "run.html") for name in ("linux-a", "linux-b")]
    shards = merge.read_shards(pages)
    assert [s.label for s in shards] == ["run", "run#2"], "labels stay apart"


def test_coverage_is_the_union_of_called_endpoints_and_the_gate_judges_it(
    artifacts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cov.json"
    assert cli.main(["merge", "--coverage", str(out), "--coverage-fail-under", "75", str(artifacts)]) == 0
    data = json.loads(out.read_text())
    assert (data["called"], data["total"], data["percent"], data["unmatched_requests"]) == (3, 4, 75.0, 2)
    assert {row["endpoint"]: row["calls"] for row in data["endpoints"]} == {
        "GET /api/actors/": 2, "POST /api/actors/": 1,
        "GET /api/actors/{pk}/": 1, "DELETE /api/actors/{pk}/": 0,
    }  # fmt: skip
    assert data["git_sha"] == "abc123"
    capsys.readouterr()
    assert cli.main(["merge", "--coverage-fail-under", "80", str(artifacts)]) == 1
    failed = [line for line in capsys.readouterr().out.splitlines() if "FAILED" in line]
    assert failed == ["FAILED: merged endpoint coverage 75.0% is below --coverage-fail-under=80"]


def test_each_shard_alone_would_fail_the_gate_the_merge_passes(artifacts: Path) -> None:
    for shard in ("shard-1", "shard-2"):
        data = merge.read_coverage(artifacts / shard / "coverage.json")
        assert merge.merge_coverage([(shard, data)]).percent == 50.0
    both = [(str(p), merge.read_coverage(p)) for p in sorted(artifacts.glob("*/coverage.json"))]
    assert merge.merge_coverage(both).percent == 75.0


def test_different_endpoint_lists_are_refused_in_one_line(
    artifacts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_shard(tmp_path / "other", [record("t.py::test_z", 1.0)], {}, shard="3/3",
                endpoints=[*ENDPOINTS, "GET /api/tags/"])  # fmt: skip
    files = (artifacts / "shard-1" / "coverage.json", tmp_path / "other" / "coverage.json")
    with pytest.raises(ShardMismatch, match=r"different endpoints \(only in the second: GET /api/tags/\)"):
        merge.merge_coverage([(str(p), merge.read_coverage(p)) for p in files])
    capsys.readouterr()
    args = ["merge", "--coverage", str(tmp_path / "c.json"), str(artifacts), str(tmp_path / "other")]
    assert cli.main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nocrud: ") and "different endpoints" in err[0], err
    assert not (tmp_path / "c.json").exists(), "nothing is written from a mismatch"


def test_different_app_versions_are_refused(
    artifacts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_shard(tmp_path / "new", [record("t.py::test_z", 1.0)], {}, shard="3/3", git_sha="def456")
    args = ["merge", "--html", str(tmp_path / "m.html"), str(artifacts), str(tmp_path / "new")]
    assert cli.main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "different versions of the app: git abc123" in err[0] and "def456" in err[0], err
    assert not (tmp_path / "m.html").exists()


def test_perf_records_join_into_one_run_the_perf_gate_reads(artifacts: Path, tmp_path: Path) -> None:
    out = tmp_path / "perf"
    baseline = tmp_path / "baseline.json"
    assert cli.main(["merge", "--perf", str(out), "--perf-set-baseline", str(baseline), str(artifacts)]) == 0
    (run,) = out.iterdir()
    assert sorted(p.name for p in run.iterdir()) == ["1_2--gw0.ndjson", "2_2--gw0.ndjson"]
    rows = [json.loads(line) for p in run.iterdir() for line in p.read_text().splitlines()]
    assert len(rows) == 4 and {r["run_id"] for r in rows} == {run.name}
    assert {r["shard"] for r in rows} == {"1/2", "2/2"}
    assert {r["shard_run_id"] for r in rows} == {"20260101T000000Z-1"}
    assert json.loads(baseline.read_text())["routes"]["GET /api/actors/"]["count"] == 2
    assert cli.main(["perf", str(out), "--baseline", str(baseline), "--min-samples", "1"]) == 0
    assert cli.main(["merge", "--perf-baseline", str(baseline), "--min-samples", "1", str(artifacts)]) == 0


def test_the_merge_never_reads_its_own_outputs(artifacts: Path) -> None:
    inside = artifacts / "merged"
    args = ["merge", "--html", str(inside / "run.html"), "--perf", str(inside / "perf"), str(artifacts)]
    assert cli.main(args) == 0
    assert cli.main(args) == 0
    assert len(rundata.read(inside / "run.html").records) == 3, "the first merge is not a third shard"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--html", "x.html"], "--html: no --nocrud-html page with run data among"),
        (["--coverage-fail-under", "50"], "--coverage: no --nocrud-coverage JSON (nor a page"),
    ],
)
def test_an_output_without_inputs_of_its_kind_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    (tmp_path / "perf" / "r1").mkdir(parents=True)
    row = {"method": "GET", "route": "/", "ms": 1, "status": 200}
    (tmp_path / "perf" / "r1" / "gw0.ndjson").write_text(json.dumps(row) + "\n")
    assert cli.main(["merge", *args, str(tmp_path)]) == 1
    assert message in capsys.readouterr().err


def test_a_page_without_run_data_says_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "old.html").write_text("<html><body>a page of another tool</body></html>")
    assert cli.main(["merge", "--html", str(tmp_path / "m.html"), str(tmp_path / "old.html")]) == 1
    assert "carries no run data" in capsys.readouterr().err


class FakeConfig:
    def __init__(self, splits: int | None, group: int | None) -> None:
        self.option = type("Option", (), {"splits": splits, "group": group})()


def test_a_run_is_labelled_by_its_env_else_by_its_pytest_split_group() -> None:
    from pytest_nocrud.run import shard_label

    assert shard_label(FakeConfig(2, 1), {"PYTEST_NOCRUD_SHARD": " linux-py312 "}) == "linux-py312"
    assert shard_label(FakeConfig(2, 1), {}) == "1/2"
    assert shard_label(FakeConfig(None, None), {}) is None


def test_shard_groups_sort_by_their_number() -> None:
    tests = [record(f"t.py::test_{n}", float(n)) for n in range(3)]
    shards = [merge.Shard(label, Path(f"{label}.html"), rundata.RunData([test], [stats("gw0", 0.0)]))
              for label, test in zip(("10/12", "2/12", "1/12"), tests, strict=True)]  # fmt: skip
    page = html.render_run(merge.merge_runs(shards))
    assert re.findall(r"data-shard='([^']*)'>", page) == ["1/12", "2/12", "10/12"]


def test_merge_offers_no_server_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as parsed:
        cli.main(["merge", "--help"])
    assert parsed.value.code == 0
    shown = capsys.readouterr().out
    assert "--coverage-fail-under" in shown
    assert "--dsn" not in shown and "--data-dir" not in shown and "--pg-bindir" not in shown
