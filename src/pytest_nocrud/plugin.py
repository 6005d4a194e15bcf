"""pytest entry point: options, marker, fixtures, xdist wiring. Wiring only; logic lives below."""

from __future__ import annotations

import os
from typing import Any

import pytest

from . import config as nocrud_config
from .fixtures import RUNTIME, nocrud_postgres
from .procs import ProcessId
from .runtime import Runtime

__all__ = ["nocrud_postgres"]

_OWNER_KEY = "nocrud_owner"


def pytest_addoption(parser: pytest.Parser) -> None:
    nocrud_config.register(parser)


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "crud_flow: end-to-end flow; gets a fresh database and the live app (pytest-nocrud)"
    )
    settings = nocrud_config.resolve(config)
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    if workerinput is not None and _OWNER_KEY in workerinput:
        owner, is_controller = ProcessId.parse(workerinput[_OWNER_KEY]), False
    else:
        owner, is_controller = ProcessId.of(os.getpid()), workerinput is None
    if settings.serial and config.getoption("numprocesses", default=None):
        raise pytest.UsageError("--nocrud-serial runs flows one at a time: drop -n/--numprocesses.")
    config.stash[RUNTIME] = Runtime(settings=settings, owner=owner, is_controller=is_controller)
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistHooks(owner), "nocrud-xdist")


def pytest_runtest_setup(item: pytest.Item) -> None:
    brief = item.config.stash[RUNTIME].earlier_failure(getattr(item, "fixturenames", ()))
    if brief:
        pytest.fail(brief, pytrace=False)


def pytest_unconfigure(config: pytest.Config) -> None:
    runtime = config.stash.get(RUNTIME, None)
    if runtime is not None:
        runtime.close()


class _XdistHooks:
    """Tell every xdist worker which process owns the run (leases name the controller)."""

    def __init__(self, owner: ProcessId) -> None:
        self.owner = owner

    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[_OWNER_KEY] = self.owner.token
