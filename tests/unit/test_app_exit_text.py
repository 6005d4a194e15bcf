"""How an app's exit and its restarts read: the exit status in words, the summary's counts."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_nocrud.app.process import describe_exit
from pytest_nocrud.report.summary import summary_lines

SERVER = {"embedded": True, "version": "15.18", "start_ms": 100.0}


@pytest.mark.parametrize(
    ("status", "words"),
    [
        (3, "exit code 3"),
        (0, "exit code 0"),
        (-9, "killed by signal SIGKILL"),
        (-15, "killed by signal SIGTERM"),
        (137, "exit code 137: killed by signal SIGKILL"),  # what a shell leader reports for its child
        (255, "exit code 255"),
    ],
)
def test_an_exit_status_in_words(status: int, words: str) -> None:
    assert describe_exit(status) == words


def worker(name: str, **extra: Any) -> dict[str, Any]:
    return {"worker": name, "server": SERVER, "app_start_ms": 400.0, **extra}


def test_the_startup_line_counts_app_restarts_per_worker() -> None:
    lines = summary_lines([worker("gw1", app_restarts=1), worker("gw0", app_restarts=2), worker("gw2")])
    apps = "app gw0 400 ms, gw1 400 ms, gw2 400 ms"
    assert f"startup: server 100 ms; {apps}; app restarts: 3 (gw0 2, gw1 1)" in lines


def test_no_restart_no_count() -> None:
    assert not any("restart" in line for line in summary_lines([worker("gw0")]))


def test_a_template_rebuilt_during_the_run_is_one_line() -> None:
    template = {"name": "nocrud_tpl_x", "key": "abcdef0123456789", "reused": False, "build_seconds": 0.5}
    noticed = worker("gw0", template=template, template_rebuilds=1)
    lines = summary_lines([noticed, worker("gw1", template=template)])
    assert lines[2] == "template rebuilt during the run: it disappeared from the server (gw0 noticed)"
