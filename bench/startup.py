"""Embedded PostgreSQL start-up cost, measured with the plugin's real code (server.EmbeddedCluster).

Issue target: a project's first run (find binaries + initdb + start + ready) <= 1.0 s median, later runs
(start + ready on the kept data dir) <= 0.3 s median. The figures users actually feel are whole pytest
runs, so those are measured too, against a baseline run that does not touch PostgreSQL (pytest's own
start-up), and the difference is reported as nocrud's overhead.

Measurements alternate (cold, warm, cold, warm... / cold, warm, baseline, ...) so drift in machine load
hits every variant alike. Data directories live where the plugin's default puts them (next to
``server.default_home()``: RAM when /dev/shm is roomy, else a disk cache), named nocrud-bench-*. Every
server started here is stopped and every directory removed before exit, even on failure.

``--ide`` measures instead what an IDE's "run test" does (issue 22 item 5): one example_app test by
node id on a warm data dir and template (goal: ≤ 1.0 s on a quiet machine), the startup line's critical
path, and ``--collect-only`` of example_app (which must start no process and touch no database).

Usage: .venv/bin/python bench/startup.py [--cold 9] [--warm 15] [--runs 5] [--ide] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import psycopg
from common import (
    RESULTS,
    Stats,
    cpu_idle,
    machine_line,
    raw_line,
    stats_table,
    update_section,
    wait_until_quiet,
)

from pytest_nocrud.pg.procs import ProcessId
from pytest_nocrud.pg.server import EmbeddedCluster, default_home

HEADING = "## Embedded server start-up"
COMMAND = ".venv/bin/python bench/startup.py"
COLD_TARGET = 1.0
WARM_TARGET = 0.3
BENCH_PREFIX = "nocrud-bench-"
OWNER = ProcessId.of(os.getpid())

_homes: list[Path] = []  # directories not yet removed, for the final cleanup
_created: list[Path] = []  # every home ever made here: identifies our servers in /proc
_clusters: list[EmbeddedCluster] = []


def new_home() -> Path:
    base = default_home(Path("bench")).parent  # where real runs keep their clusters
    base.mkdir(parents=True, exist_ok=True)
    home = base / f"{BENCH_PREFIX}{uuid.uuid4().hex}"
    home.mkdir(mode=0o755)
    _homes.append(home)
    _created.append(home)
    return home


def remove_home(home: Path) -> None:
    """Delete and sync, so the deletion's disk work (journal, discard) is not billed to the next timing."""
    shutil.rmtree(home, ignore_errors=True)
    if home in _homes:
        _homes.remove(home)
    os.sync()


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ EmbeddedCluster level


def time_acquire(home: Path) -> tuple[float, float, EmbeddedCluster]:
    """(whole acquire incl. finding binaries, finding binaries + version alone, cluster)."""
    t0 = time.perf_counter()
    cluster = EmbeddedCluster(home)  # find_bindir + `postgres --version`: paid by every run
    t1 = time.perf_counter()
    _clusters.append(cluster)
    cluster.acquire(OWNER)
    return time.perf_counter() - t0, t1 - t0, cluster


def time_release(cluster: EmbeddedCluster) -> float:
    t0 = time.perf_counter()
    stopped = cluster.release(OWNER)
    elapsed = time.perf_counter() - t0
    if not stopped:
        raise RuntimeError(f"release did not stop the server of {cluster.root}")
    _clusters.remove(cluster)
    return elapsed


def time_bare_initdb(cluster: EmbeddedCluster, base: Path) -> float:
    """initdb alone with the plugin's flags on ``base``'s filesystem: attributes cold cost to the disk."""
    home = Path(base) / f"{BENCH_PREFIX}{uuid.uuid4().hex}"
    _homes.append(home)
    _created.append(home)
    cluster.run_as.own(home)
    args = [str(cluster.bindir / "initdb"), "-D", str(home / "data"), "-U", "postgres"]
    args += ["--auth-local=trust", "--auth-host=reject", "-E", "UTF8", "--locale=C", "--no-sync"]
    t0 = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True, cwd="/", **cluster.run_as.popen_kwargs())
    elapsed = time.perf_counter() - t0
    remove_home(home)
    return elapsed


def server_version(home: Path) -> str:
    """The version the running server reports (not just the binary's), for the machine line."""
    cluster = EmbeddedCluster(home)
    _clusters.append(cluster)
    server = cluster.acquire(OWNER)
    try:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else server.version
    finally:
        time_release(cluster)


def bench_cluster(n_cold: int, n_warm: int) -> tuple[dict[str, Stats], str]:
    warm_home = new_home()
    version = server_version(warm_home)  # also: initdb the warm home once, beforehand
    cold, cold_find, warm, warm_find, stop, disk, shm = [], [], [], [], [], [], []
    probe = EmbeddedCluster(warm_home)  # only for its binaries and OS user
    tmpfs = Path("/dev/shm")
    for i in range(max(n_cold, n_warm)):
        if i < n_cold:
            home = new_home()
            total, find, cluster = time_acquire(home)
            time_release(cluster)
            remove_home(home)
            cold.append(total)
            cold_find.append(find)
            disk.append(time_bare_initdb(probe, Path("/var/tmp")))
            if tmpfs.is_dir():
                shm.append(time_bare_initdb(probe, tmpfs))
            log(f"cold acquire #{i + 1}: {total * 1000:.0f} ms (bare initdb {disk[-1] * 1000:.0f} ms)")
        if i < n_warm:
            total, find, cluster = time_acquire(warm_home)
            stop.append(time_release(cluster))
            warm.append(total)
            warm_find.append(find)
            log(f"warm acquire #{i + 1}: {total * 1000:.0f} ms, release {stop[-1] * 1000:.0f} ms")
    remove_home(warm_home)
    tmpfs_row = {"reference: bare initdb on /dev/shm (tmpfs)": Stats(tuple(shm))} if shm else {}
    return {
        "cold acquire (find binaries + initdb + start + ready)": Stats(tuple(cold)),
        "warm acquire (find binaries + start + ready)": Stats(tuple(warm)),
        "release (fast shutdown, wait until gone)": Stats(tuple(stop)),
        "of which: find binaries + `postgres --version` (cold)": Stats(tuple(cold_find)),
        "of which: find binaries + `postgres --version` (warm)": Stats(tuple(warm_find)),
        "reference: bare initdb on /var/tmp (the data dir's disk)": Stats(tuple(disk)),
        **tmpfs_row,
    }, version


# ------------------------------------------------------------------------------------ whole pytest run

TEST_DB = """
def test_server(nocrud_postgres):
    assert nocrud_postgres.embedded
"""

TEST_PLAIN = """
def test_plain():
    assert True
"""


def pytest_run(project: Path, test_file: str, data_dir: Path) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOCRUD_")}
    env["NOCRUD_DATA_DIR"] = str(data_dir)
    args = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", test_file]
    t0 = time.perf_counter()
    result = subprocess.run(args, cwd=project, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return elapsed


def bench_pytest(n_runs: int) -> dict[str, Stats]:
    project = new_home()
    (project / "pytest.ini").write_text("[pytest]\n")  # isolate from this repo's pytest config
    (project / "test_db.py").write_text(TEST_DB)
    (project / "test_plain.py").write_text(TEST_PLAIN)
    warm_dir = new_home()
    pytest_run(project, "test_db.py", warm_dir)  # initdb the warm data dir once, beforehand
    cold, warm, base = [], [], []
    for i in range(n_runs):
        cold_dir = new_home()
        cold.append(pytest_run(project, "test_db.py", cold_dir))
        remove_home(cold_dir)
        warm.append(pytest_run(project, "test_db.py", warm_dir))
        base.append(pytest_run(project, "test_plain.py", warm_dir))
        log(f"pytest run #{i + 1}: cold {cold[-1]:.2f} s, warm {warm[-1]:.2f} s, baseline {base[-1]:.2f} s")
    remove_home(warm_dir)
    remove_home(project)
    baseline = Stats(tuple(base)).median
    return {
        "pytest run, first (initdb + start + stop)": Stats(tuple(cold)),
        "pytest run, later (start + stop)": Stats(tuple(warm)),
        "pytest run, baseline (no nocrud fixture)": Stats(tuple(base)),
        "nocrud overhead, first run (run - baseline median)": Stats(tuple(cold)).minus(baseline),
        "nocrud overhead, later run (run - baseline median)": Stats(tuple(warm)).minus(baseline),
    }


# ---------------------------------------------------------------------------------------------- report


def verdict(name: str, value: float, target: float) -> str:
    ok = "met" if value <= target else "NOT met"
    return f"{name} median {value * 1000:.0f} ms vs target ≤ {target * 1000:.0f} ms: **{ok}**"


def load() -> str:
    return "load " + "/".join(f"{x:.2f}" for x in os.getloadavg())


def render(cluster: dict[str, Stats], runs: dict[str, Stats], version: str, loads: str) -> str:
    cold = cluster["cold acquire (find binaries + initdb + start + ready)"].median
    warm = cluster["warm acquire (find binaries + start + ready)"].median
    raw = "\n".join(raw_line(name, s) for name, s in [*cluster.items(), *runs.items()])
    return "\n\n".join(
        [
            "Issue target: a project's first run (initdb + start) ≤ 1.0 s median, later runs (start) "
            "≤ 0.3 s median on the project's 2-core machine.",
            machine_line(f"PostgreSQL {version} (fsync off)")
            + f"  \nOther load on the machine (load = 1/5/15-min averages) {loads}  \nCommand: `{COMMAND}`",
            f"- {verdict('first run (cold acquire)', cold, COLD_TARGET)}\n"
            f"- {verdict('later run (warm acquire)', warm, WARM_TARGET)}",
            "### `EmbeddedCluster(home).acquire()` / `.release()`",
            textwrap.dedent(
                """\
                *cold*: a fresh home each time (what a project's very first run pays); *warm*: one home,
                initdb'd beforehand, started and stopped each time (every later run). Both include
                constructing `EmbeddedCluster` (binary search + `postgres --version`), as a run does.
                Cold and warm alternate. The *reference* rows run `initdb` alone with the plugin's
                flags, on the data dir's disk and on tmpfs, right after each cold acquire: they show how
                much of the cold figure is the disk's file-creation cost rather than the plugin's."""
            ),
            stats_table(list(cluster.items())),
            "### Whole `python -m pytest -p no:cacheprovider -q` run of one test",
            textwrap.dedent(
                """\
                One test using `nocrud_postgres` with a fresh data dir (first) or a kept one (later),
                against one test using no nocrud fixture (baseline: interpreter + pytest + plugin
                import). The run includes stopping the server at the end. Variants alternate."""
            ),
            stats_table(list(runs.items())),
            "### Raw figures (ms, in measurement order)",
            raw,
        ]
    )


# --------------------------------------------------------------------------------------------- cleanup


def cleanup() -> list[int]:
    """Stop every server we started, remove our dirs; return PIDs of postgres processes that survived."""
    for cluster in list(_clusters):
        try:
            cluster.stop()
        except Exception as exc:  # keep cleaning the rest
            log(f"cleanup: stopping {cluster.root} failed: {exc}")
    for home in list(_homes):
        remove_home(home)
    survivors = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"postgres" in cmdline and any(bytes(home) + b"/" in cmdline for home in _created):
            survivors.append(int(proc.name))
    for pid in survivors:  # ours by construction: its data dir is one of our homes
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return survivors


IDE_HEADING = "## The single test from the IDE (issue 22 item 5)"
IDE_TEST = "tests/test_auth.py::test_me_is_403_when_anonymous"
IDE_TARGET = 1.0


def bench_ide(n_runs: int) -> str:
    example = Path(__file__).resolve().parent.parent / "example_app"
    data_dir = new_home()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOCRUD_")}
    env["NOCRUD_DATA_DIR"] = str(data_dir)
    # The dev venv has the fuzz extra: schemathesis' pytest plugin imports it and Hypothesis at start,
    # Hypothesis's imports Hypothesis in its terminal summary (~0.4-1.7 s each): not our plugin's cost.
    base = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "-q",
            "-p", "no:schemathesis", "-p", "no:hypothesispytest"]  # fmt: skip
    subprocess.run([*base, IDE_TEST], cwd=example, env=env, capture_output=True, check=True)  # warm up
    single, collect, paths = [], [], []
    for i in range(n_runs):
        t0 = time.perf_counter()
        out = subprocess.run([*base, IDE_TEST], cwd=example, env=env, capture_output=True, text=True).stdout
        single.append(time.perf_counter() - t0)
        paths.append(next((line for line in out.splitlines() if line.startswith("startup:")), "?"))
        empty = new_home()
        env_c = {**env, "NOCRUD_DATA_DIR": str(empty / "never")}
        t0 = time.perf_counter()
        subprocess.run([*base, "--collect-only"], cwd=example, env=env_c, capture_output=True, check=True)
        collect.append(time.perf_counter() - t0)
        if (empty / "never").exists():
            raise SystemExit("--collect-only created the data dir: it touched PostgreSQL")
        remove_home(empty)
        log(f"ide run #{i + 1}: single test {single[-1]:.2f} s, collect-only {collect[-1]:.2f} s; {paths[-1]}")
    remove_home(data_dir)
    one = Stats(tuple(single))
    return "\n\n".join(
        [
            machine_line() + f"  \nCommand: `{COMMAND} --ide --runs {n_runs}`; {load()}",
            f"- {verdict('single test by node id (warm)', one.median, IDE_TARGET)}",
            stats_table([("`pytest -p no:xdist " + IDE_TEST + "` (warm)", one),
                         ("`pytest --collect-only` of example_app (no process, no database)", Stats(tuple(collect)))]),
            "The startup line of the last run: `" + paths[-1] + "`",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cold", type=int, default=9, help="cold acquire repetitions")
    parser.add_argument("--warm", type=int, default=15, help="warm acquire repetitions")
    parser.add_argument("--runs", type=int, default=5, help="whole pytest runs per variant")
    parser.add_argument("--quiet-wait", type=float, default=300, help="max s to wait for idle CPUs")
    parser.add_argument("--no-write", action="store_true", help=f"print only; leave {RESULTS.name} alone")
    parser.add_argument("--ide", action="store_true", help="the single example test from an IDE instead")
    args = parser.parse_args()
    if args.ide:
        try:
            body = bench_ide(args.runs)
        finally:
            cleanup()
        print(f"{IDE_HEADING}\n\n{body}")
        if not args.no_write:
            update_section(IDE_HEADING, body)
        return 0
    os.sync()  # flush earlier work's dirty pages now, not during the first cold initdbs
    idle = wait_until_quiet(args.quiet_wait, log=log)
    loads = f"before: CPU idle {idle:.0%}, {load()}"
    try:
        cluster, version = bench_cluster(args.cold, args.warm)
        runs = bench_pytest(args.runs)
    finally:
        survivors = cleanup()
    if survivors:
        log(f"BUG: postgres processes survived their release and were killed: {survivors}")
        return 1
    body = render(cluster, runs, version, f"{loads}; after: CPU idle {cpu_idle():.0%}, {load()}")
    print(f"{HEADING}\n\n{body}")
    if not args.no_write:
        update_section(HEADING, body)
        log(f"updated {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
