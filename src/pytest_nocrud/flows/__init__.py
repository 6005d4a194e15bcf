"""The flow wing: what a test does against the live app -- steps, CRUD flows, logins, the recorded
client. It may import the root's ``errors`` and the standard HTTP stack (httpx); never ``pg/`` (a flow
knows the app's HTTP API, not its database) and nothing of the wiring (plugin, fixtures, runtime).
Users import these names from ``pytest_nocrud``."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    """``from pytest_nocrud.flows import Flow`` (0.1, when this was one module) still works, warned."""
    from .._moved import OLD_FLOWS_NAMES, warn_moved

    if name in OLD_FLOWS_NAMES:
        from . import steps

        warn_moved(f"pytest_nocrud.flows.{name}", f"pytest_nocrud.flows.steps.{name}")
        return getattr(steps, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
