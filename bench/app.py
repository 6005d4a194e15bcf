"""The live app's costs with the real example app (example_app/, Django runserver), warm template.

(a) App start per worker: ``AppProcess.start()`` -- spawn ``nocrud_app_command``, poll
    ``nocrud_app_ready_path`` until the first ready response -- exactly what a worker pays once. Measured
    with the plugin's own objects wired as ``Runtime.new_app`` wires them (cluster, template, pool).
(b) Per-test overhead of the handoff with a live app: whole pytest sessions of N no-op tests (one GET of
    ``/api/health/`` each), timed per test by pytest itself (junit XML: setup + call + teardown).
    *flow*: ``@pytest.mark.crud_flow`` + ``nocrud_client`` (fresh database per test, recorded client).
    *plain*: the same app via ``nocrud_app`` + a fresh ``httpx.Client`` per test, no fresh database.
    Sessions alternate (flow, plain, flow, ...) so drift in machine load hits both alike; the first
    tests of each session (app start, template check) are excluded as warm-up.

The data dir lives where the plugin's default keeps clusters (RAM when /dev/shm is roomy) and is
removed at the end; the script fails if any postgres or runserver process
it started is still alive then.

Usage: .venv/bin/python bench/app.py [--starts 12] [--tests 200] [--rounds 3] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from common import (
    RESULTS,
    Stats,
    bench_home,
    machine_line,
    raw_line,
    stats_table,
    update_section,
    wait_until_quiet,
)

from pytest_nocrud.app.process import AppLog, AppProcess, AppSpec
from pytest_nocrud.pg.builders import parse_builder
from pytest_nocrud.pg.key import compute_key
from pytest_nocrud.pg.pool import ClonePool, pool_prefix
from pytest_nocrud.pg.procs import ProcessId, is_running, pids_whose_cmdline_has
from pytest_nocrud.pg.server import EmbeddedCluster, PostgresServer
from pytest_nocrud.pg.template import Template, TemplateRequest, ensure_template

HEADING = "## App server"
COMMAND = ".venv/bin/python bench/app.py"
REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "example_app"
# What example_app/pytest.ini configures (the documented example users copy).
APP_COMMAND = "{python} manage.py runserver {host}:{port} --noreload --skip-checks"
READY_PATH = "/api/health/"
APP_ENV = (("PITCHDESK_FAST_PASSWORD_HASHER", "1"),)
FIXTURES = ("fixtures/users.json", "fixtures/catalog.json")
WARMUP = 5  # first tests of a session: app start, first handoff, imports
OWNER = ProcessId.of(os.getpid())

FLOW_TESTS = """
import pytest

@pytest.mark.crud_flow
@pytest.mark.parametrize("i", range({n}))
def test_health(nocrud_client, i):
    assert nocrud_client.get("/api/health/").status_code == 200
"""

PLAIN_TESTS = """
import httpx
import pytest

from pytest_nocrud.flows.timeline import shared_ssl_context

@pytest.mark.parametrize("i", range({n}))
def test_health(nocrud_app, i):
    # the same cached SSL context as nocrud_client, so only the fresh database differs
    with httpx.Client(base_url=nocrud_app.url, verify=shared_ssl_context()) as client:
        assert client.get("/api/health/").status_code == 200
"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def runserver_pids(home: Path) -> list[int]:
    """Live runserver processes started here: their environment points at ``home``'s server socket.

    (Other people's runs of the example app on this machine are not ours to judge.)
    """
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (proc / "environ").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "manage.py runserver" in cmdline and str(home) in environ and is_running(int(proc.name)):
            pids.append(int(proc.name))
    return pids


def postgres_pids(home: Path) -> list[int]:
    return pids_whose_cmdline_has("postgres", str(home))


def warm_template(server: PostgresServer, home: Path) -> Template:
    """Build (or reuse) the example's template the way a run does, so later runs find it warm."""
    builder = parse_builder("django", root=EXAMPLE, fixtures=FIXTURES)
    key = compute_key(EXAMPLE, tuple(builder.default_inputs()), builder.identity, server.major)
    request = TemplateRequest(server.admin, key, builder, lock_dir=home / "locks", run_token=OWNER.token)
    return ensure_template(request)


def bench_start(home: Path, n: int) -> tuple[Stats, str]:
    """(a): N app starts on one worker's stable database; returns the stats and the server version."""
    cluster = EmbeddedCluster(home)
    server = cluster.acquire(OWNER)
    try:
        template = warm_template(server, home)
        log(f"template {template.name}: {'reused' if template.reused else 'built'}")
        pool = ClonePool(
            server.admin, template.name, prefix=pool_prefix(OWNER.token, "bench"), size=2, strategy=None
        )
        applog = AppLog(home / "logs" / "bench-app.log")
        spec = AppSpec(command=APP_COMMAND, cwd=EXAMPLE, ready_path=READY_PATH, extra_env=APP_ENV)
        samples = []
        try:
            for i in range(n):
                pool.handoff()  # as before a worker's first test: a fresh clone under the stable name
                app = AppProcess(spec, pool.info, applog)
                t0 = time.perf_counter()
                app.start()
                samples.append(time.perf_counter() - t0)
                app.stop()
                log(f"app start {i + 1}/{n}: {samples[-1] * 1000:.0f} ms")
        finally:
            applog.close()
            pool.close()
        return Stats(tuple(samples)), server.version
    finally:
        cluster.release(OWNER)


def run_session(home: Path, test_dir: Path, kind: str, n: int) -> list[float]:
    """(b): one pytest session of ``kind`` tests; per-test seconds (setup+call+teardown) after warm-up."""
    test_file = test_dir / f"test_{kind}.py"
    test_file.write_text((FLOW_TESTS if kind == "flow" else PLAIN_TESTS).format(n=n))
    junit = test_dir / f"{kind}.xml"
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider"]
    args += ["-c", str(EXAMPLE / "pytest.ini"), "--rootdir", str(EXAMPLE), f"--nocrud-data-dir={home}"]
    args += [f"--junitxml={junit}", "-o", "junit_duration_report=total", str(test_file)]
    done = subprocess.run(args, cwd=EXAMPLE, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} session failed:\n{done.stdout}\n{done.stderr}")
    cases = ET.parse(junit).getroot().iter("testcase")
    times = [float(case.get("time", "nan")) for case in cases]
    if len(times) != n:
        raise RuntimeError(f"{kind} session: expected {n} test cases, got {len(times)}")
    return times[WARMUP:]


def bench_handoff(home: Path, n: int, rounds: int) -> dict[str, Stats]:
    per_test: dict[str, list[float]] = {"flow": [], "plain": []}
    session_means: dict[str, list[float]] = {"flow": [], "plain": []}
    with tempfile.TemporaryDirectory(prefix="nocrud-bench-app-") as tmp:
        for r in range(rounds):
            for kind in ("flow", "plain") if r % 2 == 0 else ("plain", "flow"):
                times = run_session(home, Path(tmp), kind, n)
                per_test[kind] += times
                session_means[kind].append(sum(times) / len(times))
                log(f"round {r + 1}/{rounds} {kind}: mean {session_means[kind][-1] * 1000:.2f} ms/test")
    return {
        "flow": Stats(tuple(per_test["flow"])),
        "plain": Stats(tuple(per_test["plain"])),
        "flow_means": Stats(tuple(session_means["flow"])),
        "plain_means": Stats(tuple(session_means["plain"])),
    }


def mean(s: Stats) -> float:
    return sum(s.samples) / len(s.samples)


def report(
    start: Stats, handoff: dict[str, Stats], version: str, idle: float, args: argparse.Namespace
) -> str:
    flow, plain = handoff["flow"], handoff["plain"]
    diff_mean, diff_median = mean(flow) - mean(plain), flow.median - plain.median
    command = f"{COMMAND} --starts {args.starts} --tests {args.tests} --rounds {args.rounds}"
    uname = f"{os.uname().sysname} {os.uname().release}"
    extra = f"`uname -sr` {uname}, PostgreSQL {version} (embedded, fsync off), CPU idle before {idle:.0%}"
    return f"""
The live app with the real example app (`example_app/`, `manage.py runserver --noreload --skip-checks`,
warm template), measured with the plugin's own code.

{machine_line(extra)}
Command: `{command}`

- **app start per worker** (spawn runserver → first ready answer on `{READY_PATH}`): median
  {start.median * 1000:.0f} ms, p90 {start.p90 * 1000:.0f} ms (N = {len(start.samples)})
- **per-test overhead of the handoff with a live app**: {ms2(diff_mean)} ms mean,
  {ms2(diff_median)} ms median per test (flow {ms2(mean(flow))} ms vs plain {ms2(mean(plain))} ms mean;
  ratio flow/plain {mean(flow) / mean(plain):.2f}× mean, {flow.median / plain.median:.2f}× median)

### (a) `AppProcess.start()`

Wired as `Runtime.new_app` does it: a fresh clone handed off under the worker's stable name, then the app
started on it and stopped again; N starts in one process (Python's own imports are warm after the first,
Django's are not: each start is a new `runserver` process).

{stats_table([("app start (spawn → first ready response)", start)])}

### (b) Per-test time, fresh database + live app vs live app alone

{args.rounds} rounds of two pytest sessions (`-p no:xdist`), alternating which goes first; each session
runs {args.tests} parametrized no-op tests (one `GET {READY_PATH}`); the first {WARMUP} of each session
are excluded (app start, imports). Per-test time is pytest's own (junit XML, setup + call + teardown).
*flow*: `@pytest.mark.crud_flow` + `nocrud_client` (handoff of a fresh database before every test, request
recording). *plain*: `nocrud_app` + a new `httpx.Client` per test, same app, no fresh database. Both
create one `httpx.Client` per test with the same shared SSL context, so the difference is the fresh
database (handoff, and in a tight loop of no-op tests, waiting for the background pool to clone the
next one) plus request recording.

| measurement | N | mean ms | median ms | p90 ms | min ms | max ms |
|---|---:|---:|---:|---:|---:|---:|
{_row("flow (crud_flow + nocrud_client)", flow)}
{_row("plain (nocrud_app + httpx)", plain)}
| difference (flow − plain) | | {ms2(diff_mean)} | {ms2(diff_median)} | | | |

Session means (ms/test, in order): flow {", ".join(ms2(x) for x in handoff["flow_means"].samples)};
plain {", ".join(ms2(x) for x in handoff["plain_means"].samples)}.

### Raw figures (ms, in measurement order)

{raw_line("app start", start)}
"""


def ms2(seconds: float) -> str:
    """Milliseconds with two decimals: per-test differences are small."""
    return f"{seconds * 1000:.2f}"


def _row(name: str, s: Stats) -> str:
    cells = [sum(s.samples) / len(s.samples), s.median, s.p90, s.min, s.max]
    return f"| {name} | {len(s.samples)} | " + " | ".join(f"{x * 1000:.2f}" for x in cells) + " |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=12, help="app starts for (a)")
    parser.add_argument("--tests", type=int, default=200, help="tests per session for (b)")
    parser.add_argument("--rounds", type=int, default=3, help="flow/plain session pairs for (b)")
    parser.add_argument("--quiet-wait", type=float, default=60, help="s to wait for an idle machine")
    parser.add_argument("--no-write", action="store_true", help=f"print only, leave {RESULTS.name} alone")
    args = parser.parse_args()
    if args.tests <= WARMUP:
        parser.error(f"--tests must exceed the {WARMUP} warm-up tests")

    home = bench_home("nocrud-bench-app-")
    try:
        idle = wait_until_quiet(args.quiet_wait, log=log)
        start, version = bench_start(home, args.starts)
        handoff = bench_handoff(home, args.tests, args.rounds)
    finally:
        left_pg, left_apps = postgres_pids(home), runserver_pids(home)
        if left_pg:
            EmbeddedCluster(home).stop()
        shutil.rmtree(home, ignore_errors=True)
    if left_pg or left_apps:
        log(f"processes left at the end: postgres {left_pg}, runserver {left_apps}")
        return 1
    body = report(start, handoff, version, idle, args)
    print(body)
    if not args.no_write:
        update_section(HEADING, body)
        log(f"wrote {HEADING!r} to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
