"""Suite wall time of the example flow catalogue under pytest-nocrud and the tools users would pick instead.

One entry point for the side-by-side benchmark (issue 6). Every contender runs the *same* flow files: each
gets its own copy of example_app/ (identical files) plus, where it needs one, a root conftest from
bench/contenders/ -- copies keep one contender's conftest from leaking into another's run.

* ``nocrud``            pytest-nocrud as shipped: one app per worker, a fresh database handed off per test.
* ``nocrud_test_scope`` noCRUD-style isolation: ``-o nocrud_app_scope=test``, clone + app start per flow.
* ``pytest_django``     pytest-django: per-worker migrated test database, ``live_server`` (a thread in the
                        test process), ``transactional_db`` flush after each test, fixture rows loaded per
                        test (see bench/contenders/pytest_django/conftest.py). ``--reuse-db`` off: the
                        default. ``pytest_django_reuse`` is the same with ``--reuse-db``.
* ``no_isolation``      the lower bound: pytest-nocrud's server, template and app per worker, but one dirty
                        database per worker for the whole run (bench/contenders/no_isolation/conftest.py).

Runs alternate A B C D A B C D ... (per worker count, per round) so machine drift hits every contender
alike; every raw run is recorded; medians and ratios of medians are reported. A phase-timing plugin
(bench/contenders/phase_timing.py) splits each run into per-test setup / call / teardown, which is where
an isolation strategy's cost shows. Then: cold vs warm template (builds counted from the progress lines),
the handoff microbenchmark (bench/handoff.py, if present), and scaling over ``--workers``.

Usage: .venv/bin/python bench/run.py [--workers 1,2] [--rounds 3] [--cold-rounds 3] [--no-write]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import psycopg
from common import RESULTS, update_section

from pytest_nocrud.pg import admin
from pytest_nocrud.pg.procs import ProcessId
from pytest_nocrud.pg.server import EmbeddedCluster, default_home

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "example_app"
CONTENDERS_DIR = ROOT / "bench" / "contenders"
HEADINGS = ("## Suite wall time", "## Cold vs warm", "## Scaling")
WORK_PREFIX = "nocrud-bench-suite-"
GOAL_SPEEDUP = 5.0
GOAL_OVERHEAD = 1.15
BUILD_LINE = re.compile(r"building template nocrud_tpl_\w+")
BUILT_LINE = re.compile(r"built template nocrud_tpl_\w+ in ([0-9.]+)s")
HANDOFF_LINE = re.compile(r"databases handed out: (\d+); handoff p50 ([0-9.]+) ms, p95 ([0-9.]+) ms")


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------- contenders


@dataclasses.dataclass(frozen=True)
class Contender:
    key: str
    label: str
    project: str  # which copy of example_app it runs in
    args: tuple[str, ...] = ()
    django_db: str = ""  # pytest-django: DATABASE_URL's database name (test DB = test_<name>_gw<n>)


CONTENDERS = {
    c.key: c
    for c in (
        Contender("nocrud", "pytest-nocrud (app per worker, handoff per test)", "nocrud"),
        Contender(
            "nocrud_test_scope",
            "noCRUD-style (clone + app start per flow)",
            "nocrud",
            ("-o", "nocrud_app_scope=test"),
        ),
        Contender(
            "pytest_django",
            "pytest-django (live_server, flush + loaddata per test)",
            "pytest_django",
            ("-p", "no:nocrud"),
            django_db="pitchdesk",
        ),
        Contender(
            "pytest_django_reuse",
            "pytest-django --reuse-db",
            "pytest_django",
            ("-p", "no:nocrud", "--reuse-db"),
            django_db="pitchdesk_reuse",  # its own kept test DB: a --reuse-db-less run would drop it
        ),
        Contender("no_isolation", "no isolation (one dirty DB per worker)", "no_isolation"),
    )
}
DEFAULT_CONTENDERS = ("nocrud", "nocrud_test_scope", "pytest_django", "no_isolation")


@dataclasses.dataclass
class Run:
    """One pytest invocation: what ran, how long it took end to end, and what its tests did."""

    contender: str
    workers: int
    round: int
    seconds: float
    rc: int
    outcomes: dict[str, int]
    phases: dict[str, float]  # summed seconds over tests: setup, call, teardown
    tests: int
    builds: int
    build_seconds: list[float]
    handoff_ms: tuple[float, float] | None  # the plugin's own p50, p95 of the wait for a fresh database

    @property
    def passed(self) -> int:
        return self.outcomes.get("passed", 0)

    @property
    def not_passed(self) -> int:
        return sum(n for k, n in self.outcomes.items() if k != "passed")


class Bench:
    """Owns the work directory, the project copies and the pytest-django server; cleans up all of it."""

    def __init__(self) -> None:
        # Where the plugin's default keeps clusters (RAM when /dev/shm is roomy, else a disk cache); the
        # pytest-django contender's server lives there too, so both get the same storage.
        base = default_home(Path("bench")).parent
        base.mkdir(parents=True, exist_ok=True)
        self.work = base / f"{WORK_PREFIX}{uuid.uuid4().hex[:12]}"
        self.work.mkdir(mode=0o755)
        self.home = self.work / "home"  # the nocrud contenders' embedded cluster (NOCRUD_DATA_DIR)
        self.home.mkdir(mode=0o755)
        self.owner = ProcessId.of(os.getpid())
        self.django_cluster: EmbeddedCluster | None = None
        self.django_admin = ""
        self.pg_version = "?"
        self.child: subprocess.Popen[bytes] | None = None
        self.seq = 0

    # -- set-up ---------------------------------------------------------------------------------

    def make_projects(self) -> None:
        """A copy of example_app per contender, with its conftest (and for pytest-django its ini)."""
        for project in {c.project for c in CONTENDERS.values()}:
            target = self.work / project
            shutil.copytree(EXAMPLE, target, ignore=shutil.ignore_patterns(".pytest_cache", "__pycache__"))
            extra = CONTENDERS_DIR / project
            if extra.is_dir():
                for path in extra.iterdir():
                    if path.is_file():
                        shutil.copy2(path, target / path.name)

    def start_django_server(self) -> None:
        """pytest-django has no server of its own: run one with the project's embedded cluster code."""
        home = self.work / "djhome"
        home.mkdir(mode=0o755)
        self.django_cluster = EmbeddedCluster(home)
        server = self.django_cluster.acquire(self.owner)
        self.django_admin = server.admin.dsn
        self.pg_version = server.version
        self._django_server = server

    # -- one pytest run ---------------------------------------------------------------------------

    def command(self, contender: Contender, workers: int, extra: Sequence[str] = ()) -> list[str]:
        return [
            sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-p", "phase_timing",
            "-n", str(workers), *contender.args, *extra,
        ]  # fmt: skip

    def environment(self, contender: Contender, data_dir: Path | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NOCRUD_", "PG", "DATABASE_URL"))}
        env["PYTHONPATH"] = str(CONTENDERS_DIR)
        if contender.django_db:
            env["DATABASE_URL"] = self._django_server.admin.with_db(contender.django_db).dsn
            env["PITCHDESK_FAST_PASSWORD_HASHER"] = "1"  # what nocrud_app_env sets for the nocrud runs
        else:
            env["NOCRUD_DATA_DIR"] = str(data_dir or self.home)
        return env

    def run(
        self,
        contender: Contender,
        workers: int,
        round_: int,
        extra: Sequence[str] = (),
        data_dir: Path | None = None,
    ) -> Run:
        self.seq += 1
        phases_path = self.work / f"phases-{self.seq}.json"
        out_path = self.work / f"out-{self.seq}.txt"
        env = self.environment(contender, data_dir)
        env["BENCH_PHASES_OUT"] = str(phases_path)
        cmd = self.command(contender, workers, extra)
        with open(out_path, "wb") as out:
            started = time.perf_counter()
            self.child = subprocess.Popen(
                cmd,
                cwd=self.work / contender.project,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # so an interrupted bench can end the whole run
            )
            rc = self.child.wait()
            seconds = time.perf_counter() - started
            self.child = None
        text = out_path.read_text(errors="replace")
        if rc not in (0, 1):  # 1 = some tests failed (expected without isolation); else a broken run
            tail = "\n".join(text.splitlines()[-40:])
            raise RuntimeError(f"{contender.key} -n {workers} exited {rc}:\n{shlex.join(cmd)}\n{tail}")
        rows: dict[str, dict[str, object]] = (
            json.loads(phases_path.read_text()) if phases_path.exists() else {}
        )
        outcomes: dict[str, int] = {}
        phases = {"setup": 0.0, "call": 0.0, "teardown": 0.0}
        for row in rows.values():
            outcome = str(row["outcome"])
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            for phase in phases:
                phases[phase] += float(row.get(phase, 0.0))  # type: ignore[arg-type]
        run = Run(
            contender=contender.key,
            workers=workers,
            round=round_,
            seconds=seconds,
            rc=rc,
            outcomes=outcomes,
            phases=phases,
            tests=len(rows),
            builds=len(BUILD_LINE.findall(text)),
            build_seconds=[float(s) for s in BUILT_LINE.findall(text)],
            handoff_ms=(float(m[2]), float(m[3])) if (m := HANDOFF_LINE.search(text)) else None,
        )
        log(f"round {round_} {contender.key} -n {workers}: {seconds:.2f}s {outcomes} builds={run.builds}")
        return run

    # -- tear-down -------------------------------------------------------------------------------

    def interrupt_child(self) -> None:
        """Ctrl-C the running pytest (it stops its apps and server), KILL it if it does not finish."""
        child = self.child
        if child is None or child.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGINT)
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()

    def close(self) -> list[int]:
        """Stop what we started and remove our files; return PIDs of servers that had to be killed."""
        self.interrupt_child()
        if self.django_cluster is not None:
            try:
                self.django_cluster.release(self.owner)
            except Exception as exc:  # noqa: BLE001 - keep cleaning up
                log(f"cleanup: releasing the pytest-django server failed: {exc}")
        survivors = []
        marker = str(self.work).encode() + b"/"
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if b"postgres" in cmdline and marker in cmdline:  # ours: its data dir is in our work dir
                survivors.append(int(proc.name))
        for pid in survivors:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.work, ignore_errors=True)
        return survivors


# ------------------------------------------------------------------------------------------ schedule


def suite(bench: Bench, keys: Sequence[str], workers: Sequence[int], rounds: int) -> list[Run]:
    """Every contender at every worker count, alternating A B C D per (round, workers)."""
    runs = []
    for round_ in range(1, rounds + 1):
        for n in workers:
            for key in keys:
                runs.append(bench.run(CONTENDERS[key], n, round_))
    return runs


def cold_warm(bench: Bench, workers: int, rounds: int) -> list[tuple[str, Run]]:
    """First-ever run (new data dir) / cold (--nocrud-rebuild) / warm, alternating."""
    nocrud = CONTENDERS["nocrud"]
    runs = []
    for round_ in range(1, rounds + 1):
        fresh = bench.work / f"fresh-home-{round_}"
        fresh.mkdir(mode=0o755)
        runs.append(
            ("first run (new data dir: initdb + build)", bench.run(nocrud, workers, round_, data_dir=fresh))
        )
        shutil.rmtree(fresh, ignore_errors=True)  # its server stopped with the run (last lease)
        runs.append(("cold (`--nocrud-rebuild`)", bench.run(nocrud, workers, round_, ["--nocrud-rebuild"])))
        runs.append(("warm", bench.run(nocrud, workers, round_)))
    return runs


def clone_cost(bench: Bench, reps: int = 5) -> list[tuple[str, float, float]]:
    """CREATE DATABASE ... TEMPLATE template1 (FILE_COPY) + DROP, on the bench's disk vs on tmpfs.

    A clone is a directory of ~300-400 new files; where creating a file is slow (some VM disks), the
    pool's refill -- not the handoff -- bounds the suite. Same template on both, so only the disk differs.
    """
    out = []
    disk = Path("/var/tmp")
    homes = [("data dir in the default location " + str(bench.work.parent), bench.home, False)]
    if bench.work.parent.parts[:2] != disk.parts[:2]:
        homes.append(("data dir on disk (/var/tmp)", disk / f"{WORK_PREFIX}{uuid.uuid4().hex[:12]}", True))
    for label, home, temporary in homes:
        home.mkdir(mode=0o755, exist_ok=True)
        cluster = EmbeddedCluster(home)
        try:
            server = cluster.acquire(bench.owner)
            creates, drops = [], []
            with psycopg.connect(server.admin.dsn, autocommit=True) as conn:
                for i in range(reps):
                    started = time.perf_counter()
                    admin.create(conn, f"bench_clone_{i}", template="template1", strategy="file_copy")
                    creates.append(time.perf_counter() - started)
                for i in range(reps):
                    started = time.perf_counter()
                    admin.drop(conn, f"bench_clone_{i}")
                    drops.append(time.perf_counter() - started)
            out.append((label, median(creates) * 1000, median(drops) * 1000))
        finally:
            cluster.release(bench.owner)
            if temporary:
                shutil.rmtree(home, ignore_errors=True)
    return out


def handoff_headline(timeout: float) -> str:
    """Re-run the handoff microbenchmark (its own script, its own section) and quote its headline."""
    script = ROOT / "bench" / "handoff.py"
    if not script.exists():
        return "bench/handoff.py does not exist yet: no handoff microbenchmark to re-run."
    command = [sys.executable, str(script), "--rounds", "5"]  # its default (20 rounds) takes > 5 min here
    log("running " + shlex.join(command[1:]))
    child = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        output, _ = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGINT)  # Ctrl-C: the script stops the servers it started
        try:
            child.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.communicate()
        return (
            f"`bench/handoff.py --rounds 5` did not finish within {timeout:.0f}s in this run; not re-run. "
            "Its last figures: [Handoff](#handoff)."
        )
    if child.returncode != 0:
        tail = "\n".join(output.splitlines()[-5:])
        return f"`bench/handoff.py` failed (exit {child.returncode}):\n\n```\n{tail}\n```"
    text = RESULTS.read_text()
    match = re.search(r"^(## Handoff[^\n]*)\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    if not match:
        return "`bench/handoff.py` ran but wrote no `## Handoff…` section to RESULTS.md."
    bullets = [line for line in match.group(2).splitlines() if line.startswith("- ")][:4]
    anchor = re.sub(r"[^a-z0-9 -]", "", match.group(1)[3:].lower()).replace(" ", "-")
    return (
        f"Re-run in this session (`python bench/handoff.py --rounds 5`); its full figures are in "
        f"[{match.group(1)[3:]}](#{anchor}). Headline:\n\n" + "\n".join(bullets or ["(no bullet lines)"])
    )


# ------------------------------------------------------------------------------------------- report


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def by(runs: Sequence[Run], key: str, workers: int) -> list[Run]:
    return [r for r in runs if r.contender == key and r.workers == workers]


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**NOT met**"


def load_avg() -> str:
    with contextlib.suppress(OSError):
        return " / ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "?"


def machine(pg_version: str) -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"Machine: `nproc` {cores}, `uname -sr` {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, PostgreSQL {pg_version} (embedded, fsync off), {when}"
    )


def outcome_text(run: Run) -> str:
    parts = [f"{n} {k}" for k, n in sorted(run.outcomes.items())]
    return ", ".join(parts) or "no tests"


def render_suite(
    runs: Sequence[Run],
    keys: Sequence[str],
    workers: Sequence[int],
    header: str,
    handoff: str,
    clones: Sequence[tuple[str, float, float]],
) -> str:
    lines = [header, ""]
    lines += [
        "Each contender runs the same flow files (a copy of `example_app/` per contender, plus its conftest "
        "from `bench/contenders/`), warm: template built and test databases migrated before the first "
        "timed run (except pytest-django without `--reuse-db`, which migrates per worker in every run, as "
        "its users get by default). Wall time = the whole `python -m pytest -p no:cacheprovider -q -n N` "
        "process, start to exit. "
        f"`-n auto` is {os.cpu_count()} here.",
        "",
    ]
    for key in keys:
        c = CONTENDERS[key]
        lines.append(f"- `{key}`: {c.label}; extra args `{shlex.join(c.args) or '(none)'}`")
    lines.append("")
    # headline table
    lines += [
        "| contender | -n | N | median s | min s | max s | x pytest-nocrud | tests (last run) |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for n in workers:
        base = median([r.seconds for r in by(runs, "nocrud", n)])
        for key in keys:
            rs = by(runs, key, n)
            if not rs:
                continue
            secs = [r.seconds for r in rs]
            lines.append(
                f"| {key} | {n} | {len(rs)} | {median(secs):.2f} | {min(secs):.2f} | {max(secs):.2f} | "
                f"{median(secs) / base:.2f} | {outcome_text(rs[-1])} |"
            )
    # goals
    lines += ["", "### Goals (ratios of medians, same run)", ""]
    for n in workers:
        base = median([r.seconds for r in by(runs, "nocrud", n)])
        for key, goal in (("nocrud_test_scope", "noCRUD-style"), ("pytest_django", "pytest-django")):
            rs = by(runs, key, n)
            if rs:
                ratio = median([r.seconds for r in rs]) / base
                paired = [o.seconds / b.seconds for o, b in zip(rs, by(runs, "nocrud", n), strict=False)]
                lines.append(
                    f"- `-n {n}`: pytest-nocrud is {ratio:.2f}x faster than {goal} "
                    f"(goal >= {GOAL_SPEEDUP:.0f}x): "
                    f"{verdict(ratio >= GOAL_SPEEDUP)}; per-round ratios "
                    + ", ".join(f"{p:.2f}" for p in paired)
                )
        rs = by(runs, "no_isolation", n)
        if rs:
            ratio = base / median([r.seconds for r in rs])
            paired = [b.seconds / o.seconds for o, b in zip(rs, by(runs, "nocrud", n), strict=False)]
            lines.append(
                f"- `-n {n}`: pytest-nocrud takes {ratio:.3f}x the no-isolation lower bound "
                f"(goal <= {GOAL_OVERHEAD}x): {verdict(ratio <= GOAL_OVERHEAD)}; per-round ratios "
                + ", ".join(f"{p:.3f}" for p in paired)
            )
    # where the time goes
    lines += [
        "",
        "### Where the time goes (per test, medians over runs)",
        "",
        "From `bench/contenders/phase_timing.py`: pytest's own setup / call / teardown durations of each "
        "test, averaged per test within a run; *outside tests* = wall - (sum of phases) / workers: "
        "interpreter and xdist start, collection, session teardown (server stop, app stop, DB drop). "
        "*handoff*: the plugin's own summary line (time a test waited for its fresh database).",
        "",
        "| contender | -n | setup ms | call ms | teardown ms | outside tests s | handoff p50 / p95 ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for n in workers:
        for key in keys:
            rs = [r for r in by(runs, key, n) if r.tests]
            if not rs:
                continue
            per = {
                p: median([r.phases[p] / r.tests * 1000 for r in rs]) for p in ("setup", "call", "teardown")
            }
            outside = median([r.seconds - sum(r.phases.values()) / n for r in rs])
            waits = [r.handoff_ms for r in rs if r.handoff_ms]
            wait = (
                f"{median([w[0] for w in waits]):.2f} / {median([w[1] for w in waits]):.2f}" if waits else "-"
            )
            lines.append(
                f"| {key} | {n} | {per['setup']:.1f} | {per['call']:.1f} | {per['teardown']:.1f} "
                f"| {outside:.2f} | {wait} |"
            )
    lines += [
        "",
        "### What one clone costs on this machine's disk",
        "",
        "The pool makes one clone and drops one database per test in the background; a handoff only "
        "waits when the pool is empty, i.e. when a clone takes longer than a test. `CREATE DATABASE … "
        "TEMPLATE template1 STRATEGY FILE_COPY` + `DROP DATABASE`, 5 each, median ms, measured after the "
        "suite on the bench's own cluster and on a throwaway one on tmpfs. These are idle figures: during "
        "the suite, next to the tests' own writes, clones take longer (a handoff p50 above a few ms means "
        "the pool ran dry, i.e. a clone took longer than a test).",
        "",
        "| where | create ms | drop ms |",
        "|---|---:|---:|",
        *(f"| {label} | {c:.1f} | {d:.1f} |" for label, c, d in clones),
        "",
        "### Handoff microbenchmark",
        "",
        handoff,
    ]
    # raw
    lines += ["", "### Raw runs (s, in run order)", ""]
    for n in workers:
        for key in keys:
            rs = by(runs, key, n)
            if rs:
                lines.append(
                    f"- {key} -n {n}: "
                    + ", ".join(f"{r.seconds:.2f}" for r in rs)
                    + " (outcomes: "
                    + "; ".join(outcome_text(r) for r in rs)
                    + ")"
                )
    return "\n".join(lines)


def render_cold_warm(runs: Sequence[tuple[str, Run]], workers: int, header: str) -> str:
    lines = [
        header,
        "",
        f"pytest-nocrud default, `-n {workers}`. Template builds are counted from the progress lines "
        "(`building template …`, printed by whichever worker builds). Goal: exactly one build per key on a "
        "cold run, none on a warm one.",
        "",
        "| run | N | median s | min s | max s | builds per run | build s (median) |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    kinds = list(dict.fromkeys(kind for kind, _ in runs))
    for kind in kinds:
        rs = [r for k, r in runs if k == kind]
        secs = [r.seconds for r in rs]
        builds = [b for r in rs for b in r.build_seconds]
        lines.append(
            f"| {kind} | {len(rs)} | {median(secs):.2f} | {min(secs):.2f} | {max(secs):.2f} | "
            f"{', '.join(str(r.builds) for r in rs)} | {median(builds) if builds else 0:.2f} |"
        )
    cold = [r for k, r in runs if k != "warm"]
    warm = [r for k, r in runs if k == "warm"]
    lines += [
        "",
        f"- one build per cold run: {verdict(all(r.builds == 1 for r in cold))} "
        f"(builds: {', '.join(str(r.builds) for r in cold)})",
        f"- no build on a warm run: {verdict(all(r.builds == 0 for r in warm))} "
        f"(builds: {', '.join(str(r.builds) for r in warm)})",
    ]
    if warm and cold:
        w = median([r.seconds for r in warm])
        c = median([r.seconds for k, r in runs if k.startswith("cold")])
        lines.append(f"- a cold run costs {c - w:.2f}s more than a warm one ({c / w:.2f}x)")
    lines += ["", "Raw (s, in run order): " + "; ".join(f"{k} {r.seconds:.2f}" for k, r in runs)]
    return "\n".join(lines)


def render_scaling(runs: Sequence[Run], keys: Sequence[str], workers: Sequence[int], header: str) -> str:
    lines = [
        header,
        "",
        "Median suite wall time (s) by worker count, from the runs above; speed-up = time at the first "
        "worker count / time at n. Pass `--workers 1,2,4,8` on a bigger box.",
        "",
        "| contender | "
        + " | ".join(f"-n {n}" for n in workers)
        + " | speed-up at -n "
        + str(workers[-1])
        + " |",
        "|---|" + "---:|" * (len(workers) + 1),
    ]
    for key in keys:
        meds = [median([r.seconds for r in by(runs, key, n)]) for n in workers]
        lines.append(f"| {key} | " + " | ".join(f"{m:.2f}" for m in meds) + f" | {meds[0] / meds[-1]:.2f}x |")
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------- main


def wait_for_quiet_load(limit: float, max_wait: float) -> str:
    """Wait (up to max_wait s) until the 1-minute load average is below ``limit``; say how it went."""
    deadline = time.monotonic() + max_wait
    while True:
        one = float(Path("/proc/loadavg").read_text().split()[0])
        if one < limit:
            return f"load average {load_avg()} at start"
        if time.monotonic() >= deadline:
            return f"**machine not quiet**: load average {load_avg()} at start (waited {max_wait:.0f}s)"
        log(f"waiting for load average < {limit} (now {one})")
        time.sleep(15)


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM behaves like Ctrl-C, so cleanup runs either way."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cores = len(os.sched_getaffinity(0))
    parser.add_argument(
        "--workers",
        default=",".join(str(n) for n in range(1, cores + 1)),
        help="comma-separated -n values (default 1..nproc)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the suite comparison")
    parser.add_argument("--cold-rounds", type=int, default=2, help="rounds of first/cold/warm")
    parser.add_argument(
        "--contenders",
        default=",".join(DEFAULT_CONTENDERS),
        help=f"comma-separated, from: {', '.join(CONTENDERS)}",
    )
    parser.add_argument("--quiet-load", type=float, default=1.0, help="start when 1-min load is below")
    parser.add_argument("--quiet-wait", type=float, default=900, help="max s to wait for that")
    parser.add_argument("--no-handoff", action="store_true", help="skip bench/handoff.py")
    parser.add_argument("--no-write", action="store_true", help=f"print only; leave {RESULTS.name} alone")
    args = parser.parse_args()  # fmt: skip
    workers = [int(n) for n in args.workers.split(",")]
    keys = [k for k in args.contenders.split(",") if k]
    unknown = [k for k in keys if k not in CONTENDERS]
    if unknown or "nocrud" not in keys:
        parser.error(f"unknown contenders {unknown} (nocrud is required: ratios are against it)")
    command = "python bench/run.py " + shlex.join(sys.argv[1:])

    quiet = wait_for_quiet_load(args.quiet_load, args.quiet_wait)
    bench = Bench()
    try:
        with terminate_as_interrupt():
            log(f"work dir {bench.work}")
            bench.make_projects()
            bench.start_django_server()
            log("warm-up: build the template, create the --reuse-db test databases (not timed)")
            bench.run(CONTENDERS["nocrud"], max(workers), 0)
            if "pytest_django_reuse" in keys:
                bench.run(CONTENDERS["pytest_django_reuse"], max(workers), 0)
            started = time.monotonic()
            runs = suite(bench, keys, workers, args.rounds)
            cw = cold_warm(bench, max(workers), args.cold_rounds)
            clones = clone_cost(bench)
            elapsed = time.monotonic() - started
            after = load_avg()
            header = (
                f"{machine(bench.pg_version)}  \n"
                f"Command: `{command}` ({elapsed / 60:.1f} min; {quiet}, {after} at the end)  \n"
                f"Reproduce one contender by hand: in a copy of `example_app/` with the contender's files "
                f"from `bench/contenders/`: `NOCRUD_DATA_DIR=<dir> PYTHONPATH=bench/contenders "
                f"python -m pytest -p no:cacheprovider -q -p phase_timing -n 2 <extra args>`"
            )
    except KeyboardInterrupt:
        log("interrupted: cleaned up")
        bench.close()
        return 130
    survivors = bench.close()
    if survivors:
        log(f"BUG: postgres processes survived their release and were killed: {survivors}")
    handoff = "skipped (`--no-handoff`)." if args.no_handoff else handoff_headline(300)
    suite_body = render_suite(runs, keys, workers, header, handoff, clones)
    cold_body = render_cold_warm(cw, max(workers), header.split("  \n")[0])
    scaling_body = render_scaling(runs, keys, workers, header.split("  \n")[0])
    for heading, body in zip(HEADINGS, (suite_body, cold_body, scaling_body), strict=True):
        print(f"{heading}\n\n{body}\n")
        if not args.no_write:
            update_section(heading, body)
    if not args.no_write:
        log(f"updated {RESULTS}")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
