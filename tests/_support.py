"""Helpers for pytest-nocrud's own tests: where throwaway clusters live, which servers are running."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from pytest_nocrud.pg.procs import pids_whose_cmdline_has
from pytest_nocrud.pg.server import SHARED_MEMORY, EmbeddedCluster, roomy_tmpfs

# As root the server runs as the 'postgres' user, which cannot enter pytest's private tmp_path
# (/tmp/pytest-of-root is 0700), so clusters under test live in RAM like the default (much faster
# to create and clone), or below /var/tmp where there is no roomy tmpfs.
ON_DISK = Path("/var/tmp/pytest-nocrud-tests")
CLUSTERS_ROOT = SHARED_MEMORY / "pytest-nocrud-tests" if roomy_tmpfs(SHARED_MEMORY) else ON_DISK


def postgres_pids(data_dir: Path) -> list[int]:
    """Live postgres processes whose command line mentions ``data_dir`` (their postmaster)."""
    return pids_whose_cmdline_has("postgres", str(data_dir))


def new_cluster_dir() -> Path:
    path = CLUSTERS_ROOT / uuid.uuid4().hex[:12]
    CLUSTERS_ROOT.mkdir(parents=True, exist_ok=True)
    CLUSTERS_ROOT.chmod(0o755)
    return path


def discard_cluster_dir(path: Path) -> None:
    for cluster_dir in path.glob("pg*"):
        if (cluster_dir / "data" / "postmaster.pid").exists():
            EmbeddedCluster(path).stop()  # a failed test must not leave a server behind
    shutil.rmtree(path, ignore_errors=True)


# pytest prints untruncated messages in its short summary when these are set; inner runs must look the
# same on a laptop and in CI, or assertions that count a message in the output change meaning.
CI_MARKERS = ("CI", "BUILD_NUMBER")


def run_inner(pytester: pytest.Pytester, data_dir: Path, *args: str, **env: str) -> pytest.RunResult:
    """An inner pytest run in a subprocess, so the plugin's processes must end with it."""
    with pytest.MonkeyPatch.context() as patch:
        for name in CI_MARKERS:
            patch.delenv(name, raising=False)
        for name, value in env.items():
            patch.setenv(name, value)
        return pytester.runpytest_subprocess(
            "-p", "no:cacheprovider", f"--nocrud-data-dir={data_dir}", *args, timeout=300
        )


def popen_inner(pytester: pytest.Pytester, data_dir: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    """An inner run the test can signal: its own process group, like a terminal job getting Ctrl-C."""
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--nocrud-data-dir={data_dir}", *args],
        cwd=pytester.path,
        env={**{k: v for k, v in os.environ.items() if k not in CI_MARKERS}, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # killpg reaches the xdist workers too
        # A terminal's foreground job takes Ctrl-C; a job started in the background of a shell
        # without job control (CI runners, `cmd &`) inherits SIGINT *ignored*, and Python then
        # never installs its KeyboardInterrupt handler: the inner run would sleep through SIGINT.
        preexec_fn=_default_sigint,
    )


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
