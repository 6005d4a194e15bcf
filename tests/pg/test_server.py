"""The embedded cluster's own rules, driven directly: stale state recovery, leases, binaries."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import psycopg
import pytest
from _support import postgres_pids

from pytest_nocrud.pg import binaries
from pytest_nocrud.pg.procs import ProcessId, wait_gone
from pytest_nocrud.pg.server import EmbeddedCluster, ServerError, check_dsn


def _query_ok(dsn: str) -> bool:
    with psycopg.connect(dsn) as conn:
        return conn.execute("select 1").fetchone() == (1,)


def test_data_and_socket_dirs_are_private(warm_data_dir: Path) -> None:
    cluster = EmbeddedCluster(warm_data_dir)
    me = ProcessId.of(os.getpid())
    cluster.acquire(me)
    try:
        for private in (cluster.data, cluster.socket_dir):
            assert private.stat().st_mode & 0o777 == 0o700
        cmdline = Path(f"/proc/{postgres_pids(warm_data_dir)[0]}/cmdline").read_bytes()
        assert b"listen_addresses=" + b"\0" in cmdline, "no TCP listener"
    finally:
        cluster.release(me)


def test_stale_postmaster_pid_after_kill_9_is_recovered(warm_data_dir: Path) -> None:
    cluster = EmbeddedCluster(warm_data_dir)
    me = ProcessId.of(os.getpid())
    cluster.acquire(me)
    postmaster = postgres_pids(warm_data_dir)[0]
    os.kill(postmaster, signal.SIGKILL)
    assert wait_gone(postmaster, 10)
    assert (cluster.data / "postmaster.pid").exists(), "kill -9 leaves the pid file behind"

    server = cluster.acquire(me)
    try:
        assert _query_ok(server.dsn)
    finally:
        assert cluster.release(me)
    assert postgres_pids(warm_data_dir) == []


def test_dead_runs_leases_do_not_keep_the_server_alive(warm_data_dir: Path) -> None:
    cluster = EmbeddedCluster(warm_data_dir)
    other_run = subprocess.Popen(["cat"], stdin=subprocess.PIPE)
    other, me = ProcessId.of(other_run.pid), ProcessId.of(os.getpid())
    cluster.acquire(other)
    server = cluster.acquire(me)

    assert cluster.release(me) is False, "another live run holds a lease"
    assert _query_ok(server.dsn)

    other_run.kill()
    other_run.wait()
    server = cluster.acquire(me)
    assert cluster.release(me) is True, "the only other lease belongs to a dead run"
    assert postgres_pids(warm_data_dir) == []


def test_interrupted_initdb_is_redone(data_dir: Path) -> None:
    cluster = EmbeddedCluster(data_dir)
    cluster.data.mkdir(parents=True)
    (cluster.data / "PG_VERSION").write_text("half-built")  # initdb died here: no initdb.done
    me = ProcessId.of(os.getpid())
    server = cluster.acquire(me)
    try:
        assert _query_ok(server.dsn)
    finally:
        cluster.release(me)


def test_root_server_user_cannot_reach_private_dir_is_explained(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root hands the server to another OS user")
    private = tmp_path / "cluster"  # below /tmp/pytest-of-root, which is 0700
    with pytest.raises(ServerError, match="cannot reach .* --nocrud-data-dir"):
        EmbeddedCluster(private).acquire(ProcessId.of(os.getpid()))
    assert postgres_pids(private) == []


def test_no_binaries_anywhere_lists_every_way_out(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(binaries, "_COMMON_PATTERNS", ())
    with pytest.raises(binaries.BinariesNotFound) as caught:
        binaries.find_bindir()
    message = str(caught.value)
    for way_out in (
        "apt-get install postgresql",
        "pytest-nocrud[postgres]",
        "--nocrud-dsn",
        "NOCRUD_PG_BINDIR",
    ):
        assert way_out in message


def test_binaries_need_both_programs(tmp_path: Path) -> None:
    (tmp_path / "initdb").write_text("#!/bin/sh\n")
    (tmp_path / "initdb").chmod(0o755)
    assert not binaries.is_server_bindir(tmp_path)
    found = binaries.find_bindir()
    assert binaries.is_server_bindir(found)


@pytest.mark.parametrize(("text", "major"), [("15.18", 15), ("16beta1", 16), ("9.6.24", 96)])
def test_major_version(text: str, major: int) -> None:
    assert binaries.major_of(text) == major


def test_check_dsn_refuses_a_role_without_createdb(warm_data_dir: Path) -> None:
    cluster = EmbeddedCluster(warm_data_dir)
    me = ProcessId.of(os.getpid())
    server = cluster.acquire(me)
    try:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute("DROP ROLE IF EXISTS plain_role")
            conn.execute("CREATE ROLE plain_role LOGIN")
        with pytest.raises(ServerError, match="may not CREATE DATABASE"):
            check_dsn(server.admin.with_db("postgres").dsn.replace("postgres@", "plain_role@", 1))
        assert check_dsn(server.dsn).version == server.version
    finally:
        cluster.release(me)


def test_a_cluster_dir_planted_by_another_user_in_a_shared_dir_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to create a directory owned by another user")
    from _support import CLUSTERS_ROOT

    planted = CLUSTERS_ROOT / f"planted-{os.getpid()}"
    planted.mkdir(parents=True)
    os.chown(planted, 65534, 65534)  # nobody's, as if another local user got there first
    try:
        with pytest.raises(ServerError, match="not a directory owned by you"):
            EmbeddedCluster(planted).acquire(ProcessId.of(os.getpid()))
        assert postgres_pids(planted) == []
    finally:
        import shutil

        shutil.rmtree(planted)


def test_default_home_is_per_project_and_in_ram_when_there_is_room(tmp_path: Path) -> None:
    from pytest_nocrud.pg.server import SHARED_MEMORY, default_home, roomy_tmpfs

    a, b = default_home(tmp_path / "a"), default_home(tmp_path / "b")
    assert a != b and a.name.startswith("a-") and b.name.startswith("b-")
    assert (a.parent.parent == SHARED_MEMORY) is roomy_tmpfs(SHARED_MEMORY)
