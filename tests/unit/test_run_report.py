"""The run report's pure parts: routes, status colouring, CRUD matrix, perf gate, coverage matching."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from pytest_nocrud import cli
from pytest_nocrud.app.endpoints import _pretty, _unnamed
from pytest_nocrud.config import bare_optional
from pytest_nocrud.errors import UsageError
from pytest_nocrud.fixtures import client_label
from pytest_nocrud.flows.auth import AsBearer, AsUser
from pytest_nocrud.report import perf
from pytest_nocrud.report.coverage import Endpoint, from_openapi, measure
from pytest_nocrud.report.html import render
from pytest_nocrud.report.record import status_class
from pytest_nocrud.report.routes import route_of
from pytest_nocrud.report.summary import crud_matrix


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/api/actors/17/", "/api/actors/{id}/"),
        ("/api/actors/17/?page=2", "/api/actors/{id}/"),
        ("/api/tag-categories/", "/api/tag-categories/"),
        ("/o/3f2b1c4e-9a8b-4c2d-8e1f-0a1b2c3d4e5f/items/2", "/o/{id}/items/{id}"),
        ("/files/report-2024", "/files/report-2024"),
        ("/", "/"),
    ],
)
def test_route_replaces_ids_only(path: str, route: str) -> None:
    assert route_of(path) == route


def request(status: int | None, expected: bool = False) -> dict[str, Any]:
    return {"status": status, "expected": expected}


def test_only_unexpected_statuses_are_errors() -> None:
    assert status_class(request(200), "failed") == "ok"
    assert status_class(request(403), "passed") == "expected", "a passing test checked its 403"
    assert status_class(request(404, expected=True), "failed") == "expected", "expect_status(…, 404)"
    assert status_class(request(403), "failed") == "unexpected"
    assert status_class(request(500), "passed") == "unexpected", "a 5xx is never fine"
    assert status_class(request(None), "passed") == "unexpected", "no response"


def test_client_labels_tell_users_apart() -> None:
    assert client_label(AsUser("writer", "pw")) == "as writer"
    one = client_label(AsBearer("eyJhbGciOi.token-one-abc"))
    two = client_label(AsBearer("eyJhbGciOi.token-two-f00"))
    assert (one, two) == ("bearer …abc", "bearer …f00")
    assert client_label(AsBearer("short")) == "bearer", "a short token is not shown at all"
    assert client_label(AsBearer("eyJhbGciOi.token-two-f00", label="ops")) is None  # the caller's label wins


def crud_record(nodeid: str, resource: str, steps: dict[str, str], outcome: str = "passed") -> dict[str, Any]:
    return {
        "nodeid": nodeid,
        "outcome": outcome,
        "requests": [],
        "seconds": 0.1,
        "crud": [{"resource": resource, "steps": steps}],
    }


def test_crud_matrix_marks_failures() -> None:
    ok = dict.fromkeys(["C", "R", "L", "U", "D", "gone"], "completed")
    broken = {
        "C": "failed",
        "R": "skipped",
        "L": "skipped",
        "U": "skipped",
        "D": "skipped",
        "gone": "skipped",
    }
    lines = crud_matrix(
        [
            crud_record("t.py::test_actor", "actor", ok),
            crud_record("t.py::test_tag", "tag", broken, outcome="failed"),
            crud_record("t.py::test_bad_url", "review", broken),  # a passing test that wanted it to fail
        ]
    )
    assert lines[0] == "CRUD flows:"
    assert lines[1] == "  actor   C ✔ R ✔ L ✔ U ✔ D ✔ gone ✔"
    expected = "  review  C ✘ R - L - U - D - gone -  (failed as the test expected) (t.py::test_bad_url)"
    assert lines[2] == expected
    assert lines[3] == "  tag     C ✘ R - L - U - D - gone -  FAILED (t.py::test_tag)"


def rows(route: str, values: list[float], method: str = "GET") -> list[dict[str, Any]]:
    return [{"method": method, "route": route, "status": 200, "ms": v} for v in values]


def test_gate_flags_a_real_slowdown_and_names_both_figures() -> None:
    base = perf.summarize(rows("/a/{id}/", [10.0] * 30) + rows("/b/", [5.0] * 30))
    now = perf.summarize(rows("/a/{id}/", [20.0] * 30) + rows("/b/", [5.5] * 30))
    result = perf.compare(base, now, perf.Settings(threshold=20.0))
    assert [r.route for r in result.regressions] == ["GET /a/{id}/"], "+10 % on /b/ is within 20 %"
    text = perf.comparison_report(result)
    assert "GET /a/{id}/" in text and "10.00ms" in text and "20.00ms" in text and "+100%" in text
    assert text.splitlines()[0].startswith("compared 2 of 2 route(s) on p50: 2 on their own")


def test_gate_does_not_cry_wolf() -> None:
    base = perf.summarize(
        rows("/few/", [1.0] * 3) + rows("/tiny/", [1.0] * 50) + rows("/spiky/", [10.0] * 50)
    )
    spiky = [10.0] * 47 + [300.0] * 3  # three outliers: the p99 jumps, the median does not
    now = perf.summarize(rows("/few/", [9.0] * 3) + rows("/tiny/", [1.6] * 50) + rows("/spiky/", spiky))
    result = perf.compare(base, now, perf.Settings(threshold=20.0, min_samples=10, min_delta_ms=1.0))
    assert result.regressions == []
    assert result.too_few == ["GET /few/"], "3 samples are not enough to judge, and nothing to pool with"
    p99 = perf.Settings(metric="p99", threshold=20.0)
    assert perf.compare(base, now, p99).regressions == [], "3 slow requests of 50: not a significant shift"
    assert perf.compare(base, now, dataclasses.replace(p99, alpha=1.0)).regressions[0].route == "GET /spiky/"


def test_rank_sum_p_is_exact_for_small_samples() -> None:
    assert perf.rank_sum_p([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]) == pytest.approx(1 / 20)  # 1 of C(6, 3)
    assert perf.rank_sum_p([4.0, 5.0, 6.0], [1.0, 2.0, 3.0]) == 1.0
    assert perf.rank_sum_p([1.0, 3.0], [2.0, 4.0]) == pytest.approx(2 / 6)  # U=3 of 4: {3, 4} of C(4, 2)
    big = perf.rank_sum_p([float(v) for v in range(100)], [v + 50.0 for v in range(100)])
    assert 0 < big < 1e-15, "normal approximation beyond the exact table"


def test_small_routes_are_pooled_by_path_prefix_and_a_run_wide_shift_is_divided_out() -> None:
    base, now = [], []
    for name in ("a", "b", "c", "d", "e"):
        base += rows(f"/{name}/", [10.0 + i / 10 for i in range(12)])
        now += rows(f"/{name}/", [18.0 + i / 10 for i in range(12)])  # the whole run 1.8x: a loaded machine
    base += rows("/x/{id}/", [5.0, 5.1, 5.2], "DELETE") + rows(
        "/x/", [5.0 + i / 10 for i in range(8)], "POST"
    )
    now += rows("/x/{id}/", [9.0, 9.1, 9.2], "DELETE") + rows("/x/", [9.0 + i / 10 for i in range(8)], "POST")
    base += rows("/y/{id}/", [3.0] * 2)
    now += rows("/y/{id}/", [3.0] * 2) + rows("/z/", [1.0] * 30)
    result = perf.compare(perf.summarize(base), perf.summarize(now))
    assert not result.failed, perf.comparison_report(result)
    assert [g.name for g in result.groups if g.pooled] == ["/x/*"]
    assert result.too_few == ["GET /y/{id}/"] and result.new == ["GET /z/"]
    assert result.shift == pytest.approx(18.5 / 10.5)  # median over the groups
    text = perf.comparison_report(result).splitlines()
    assert text[0].startswith("compared 7 of 9 route(s) on p50: 5 on their own, 2 in 1 pool(s)")
    assert text[1] == "  pool /x/* (11/11 requests): DELETE /x/{id}/, POST /x/"
    assert "run-wide shift x1.76 divided out" in text[3]
    # The same run with /a/ three times as slow again: net of the shift it is the one that got slower.
    slower = [{**row, "ms": row["ms"] * 3} if row["route"] == "/a/" else row for row in now]
    result = perf.compare(perf.summarize(base), perf.summarize(slower))
    assert [r.route for r in result.regressions] == ["GET /a/"] and result.failed
    assert perf.compare(perf.summarize(base), perf.summarize(now), perf.Settings(max_shift=50.0)).failed


EXAMPLE = json.loads((Path(__file__).parent / "perf_example_pair.json").read_text())


def example(side: str, slow: tuple[str, ...] = ()) -> perf.Summary:
    """One of two recorded back-to-back runs of the example suite; ``slow`` routes get +50 ms a request."""
    return perf.summarize(
        {
            "method": route.split()[0],
            "route": route.split()[1],
            "status": 200,
            "ms": ms + 50.0 * (route in slow),
        }
        for route, times in EXAMPLE[side].items()
        for ms in times
    )


def test_gate_on_two_recorded_unchanged_example_runs_judges_most_routes_and_passes() -> None:
    for before, after in (("baseline", "current"), ("current", "baseline")):
        result = perf.compare(example(before), example(after))
        assert not result.failed, perf.comparison_report(result)
        assert result.compared >= result.total / 2, perf.comparison_report(result)
    assert perf.comparison_report(result).startswith("compared 64 of 68 route(s) on p50: 15 on their own")
    assert perf.compare(example("baseline"), example("current")).shift > 1.4, "a loaded second run"
    alone = [
        r for r, ms in EXAMPLE["current"].items() if min(len(ms), len(EXAMPLE["baseline"].get(r, []))) >= 20
    ]
    assert len(alone) == 1, "the gate's old rule (20 requests a side, no pooling) judged one route"


def test_gate_on_recorded_example_runs_fails_a_slowed_route_or_resource_naming_it() -> None:
    result = perf.compare(example("baseline"), example("current", slow=("GET /api/actors/{id}/",)))
    assert [r.route for r in result.regressions] == ["GET /api/actors/{id}/"]
    users = [r for r in EXAMPLE["current"] if r.split()[1].startswith("/api/users/")]
    result = perf.compare(example("baseline"), example("current", slow=tuple(users)))
    assert [r.route for r in result.regressions] == ["/api/users/*"]
    text = perf.comparison_report(result)
    assert "/api/users/*" in text and "of which" in text and "GET /api/users/{id}/" in text, text


def test_threshold_and_metric_are_validated() -> None:
    assert perf.parse_threshold("20%") == 20.0
    with pytest.raises(UsageError, match="percentage"):
        perf.parse_threshold("fast")
    with pytest.raises(UsageError, match="p50, p95, p99, mean"):
        perf.compare({}, {}, perf.Settings(metric="max"))
    with pytest.raises(UsageError, match="--alpha"):
        perf.compare({}, {}, perf.Settings(alpha=0.0))


def write_run(directory: Path, run_id: str, ms: float, count: int = 20) -> None:
    (directory / run_id).mkdir(parents=True)
    lines = [
        {
            "run_id": run_id,
            "git_sha": None,
            "ts": 0.0,
            "test": "t::x",
            "worker": "gw0",
            "method": "GET",
            "route": "/api/actors/{id}/",
            "path": f"/api/actors/{n}/",
            "status": 200,
            "ms": ms,
        }
        for n in range(count)
    ]
    (directory / run_id / "gw0.ndjson").write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_nocrud_perf_summarizes_sets_a_baseline_and_gates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record, baseline = tmp_path / "perf", tmp_path / "baseline.json"
    write_run(record, "20260101T000000Z-1", 10.0)
    assert cli.main(["perf", str(record), "--set-baseline", str(baseline)]) == 0
    saved = json.loads(baseline.read_text())["routes"]["GET /api/actors/{id}/"]
    assert saved == {"count": 20, "p50": 10.0, "p95": 10.0, "p99": 10.0, "mean": 10.0, "ms": [10.0] * 20}
    write_run(record, "20260102T000000Z-2", 14.0)  # newer: the default run
    capsys.readouterr()
    assert cli.main(["perf", str(record), "--baseline", str(baseline), "--threshold", "20%"]) == 1
    out = capsys.readouterr().out
    assert "run 20260102T000000Z-2" in out and "1 route(s) or pool(s) got slower" in out and "+40%" in out
    assert "compared 1 of 1 route(s) on p50: 1 on their own" in out
    assert cli.main(["perf", str(record), "--baseline", str(baseline), "--threshold", "50%"]) == 0
    assert cli.main(["perf", str(record), "--run", "20260101T000000Z-1", "--baseline", str(baseline)]) == 0
    assert cli.main(["perf", str(record), "--run", "nope"]) == 1
    assert "no run 'nope'" in capsys.readouterr().err
    old = json.loads(baseline.read_text())
    del old["routes"]["GET /api/actors/{id}/"]["ms"]  # a baseline from before the times were kept
    baseline.write_text(json.dumps(old))
    assert cli.main(["perf", str(record), "--baseline", str(baseline)]) == 1
    assert "keeps no request times" in capsys.readouterr().err


def test_openapi_endpoints_match_concrete_paths() -> None:
    schema = {
        "servers": [{"url": "http://localhost/v1"}],
        "paths": {
            "/items/": {"get": {}, "post": {}},
            "/items/{item_id}/": {"get": {}, "delete": {}, "parameters": []},
        },
    }
    endpoints = from_openapi(schema)
    assert [e.key for e in endpoints] == [
        "GET /v1/items/",
        "POST /v1/items/",
        "GET /v1/items/{item_id}/",
        "DELETE /v1/items/{item_id}/",
    ]
    records = [
        {
            "requests": [
                {"method": "GET", "path": "/v1/items/3/?x=1"},
                {"method": "GET", "path": "/v1/items/"},
                {"method": "GET", "path": "/v1/items/4/"},
                {"method": "GET", "path": "/nope"},
            ]
        }
    ]
    coverage = measure(endpoints, records)
    assert coverage.counts["GET /v1/items/{item_id}/"] == 2 and coverage.unmatched == 1
    assert coverage.line() == (
        "endpoints: 2 of 4 called (50%) (missing: POST /v1/items/, DELETE /v1/items/{item_id}/)"
    )


def test_django_patterns_become_readable_routes() -> None:
    regex = "api/actors/(?P<pk>[^/.]+)/"
    assert _pretty(regex) == "api/actors/{pk}/"
    assert _pretty(r"api/files/(?P<name>[a-z]+(?:\.txt)?)/") == "api/files/{name}/"
    endpoint = Endpoint("GET", "/" + _pretty(regex), "/" + _unnamed(regex))
    assert endpoint.matches("GET", "/api/actors/3/") and not endpoint.matches("GET", "/api/actors/3/x/")
    assert Endpoint("*", "/health/", "/health/").matches("DELETE", "/health/")


def test_page_puts_failures_first_and_draws_a_lane_per_worker() -> None:
    def record(nodeid: str, worker: str, outcome: str, start: float) -> dict[str, Any]:
        return {
            "nodeid": nodeid,
            "worker": worker,
            "outcome": outcome,
            "phases": {
                "setup": [start, 0.01],
                "call": [start + 0.01, 0.02],
                "teardown": [start + 0.03, 0.001],
            },
            "handoff": [start, 0.002],
            "seconds": 0.031,
            "failure": "AssertionError: boom" if outcome == "failed" else "",
            "failed_request": "",
            "sections": [["app log (x.log)", "[app:1] GET /x 500"]] if outcome == "failed" else [],
            "requests": [
                {
                    "method": "GET",
                    "path": "/x/1/",
                    "route": "/x/{id}/",
                    "status": 403,
                    "client": "as ann",
                    "start": start + 0.015,
                    "ms": 3.0,
                    "expected": False,
                }
            ],
            "crud": [],
        }

    page = render(
        [record("t.py::test_b", "gw1", "passed", 100.0), record("t.py::test_a", "gw0", "failed", 100.1)],
        [
            {"worker": "gw0", "events": [["app", 99.5, 0.4, True]]},
            {"worker": "gw1", "errors": {"template": "build failed:\nsyntax error at line 3"}},
        ],
        started=99.0,
        finished=101.0,
    )
    assert page.index("t.py::test_a") < page.index("t.py::test_b"), "failures first"
    assert "data-worker='gw0'" in page and "data-worker='gw1'" in page
    assert "data-event='app'" in page and "data-phase='handoff'" in page
    assert "AssertionError: boom" in page and "[app:1] GET /x 500" in page
    assert "<tr class='unexpected'>" in page and "<tr class='expected'>" in page
    assert "id='setup-failed'" in page and "syntax error at line 3" in page


def test_a_bare_coverage_flag_leaves_the_next_argument_alone() -> None:
    args = ["-n", "2", "--nocrud-coverage", "tests", "--nocrud-coverage=cov.json"]
    assert bare_optional(args) == ["-n", "2", "--nocrud-coverage=", "tests", "--nocrud-coverage=cov.json"]
