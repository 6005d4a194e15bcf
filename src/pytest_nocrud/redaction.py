"""Keep the password of ``nocrud_dsn`` (serial mode: of the database in use) out of every report.

``ConnInfo.redact`` knows how a password looks in text; this module applies it to what pytest builds
from a test: the traceback with its source lines, locals (``-l``) and assertion messages, the captured
output and our own sections (app log lines, the kept database's DSN), the short summary. Both the
terminal and ``--junitxml`` print from that report, so scrubbing it once covers both.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from . import serial
from .config import Settings
from .pg.conninfo import ConnInfo

Redact = Callable[[str], str]


def redactor(settings: Settings, environ: Mapping[str, str]) -> Redact:
    """The redaction for this run: the password of the DSN in use, if it has one."""
    holders: list[ConnInfo] = []
    if settings.dsn:
        holders.append(ConnInfo.parse(settings.dsn))
    if settings.serial:
        try:
            holders.append(serial.database_from_env(settings.dsn, environ))
        except Exception:  # noqa: BLE001 - a bad PG* value is reported where it is used
            pass
    holders = [holder for holder in holders if holder.password]
    if not holders:
        return unchanged

    def redact(text: str) -> str:
        for holder in holders:
            text = holder.redact(text)
        return text

    return redact


def unchanged(text: str) -> str:
    """The redaction of a run without a password (the embedded server's trust auth)."""
    return text


def scrub_report(report: pytest.TestReport, redact: Redact) -> None:
    """Redact every string of ``report`` in place: sections, user properties and the long repr."""
    if redact is unchanged:
        return
    report.sections = [(title, redact(text)) for title, text in report.sections]
    report.user_properties = [(name, _scrub(value, redact, set())) for name, value in report.user_properties]
    longrepr = report.longrepr
    if longrepr is None:
        return
    report.longrepr = _scrub(longrepr, redact, set())
    # A repr class we cannot walk (another plugin's): fall back to its text, redacted.
    if not isinstance(report.longrepr, (str, tuple)):
        text = str(report.longrepr)
        if redact(text) != text:
            report.longrepr = redact(text)


def _scrub(value: Any, redact: Redact, seen: set[int]) -> Any:
    if isinstance(value, str):
        return redact(value)
    if id(value) in seen:
        return value
    seen.add(id(value))
    if isinstance(value, list):
        value[:] = [_scrub(item, redact, seen) for item in value]
    elif isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(_scrub(item, redact, seen) for item in value)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            # pytest's repr classes are dataclasses, some frozen: set through object.__setattr__
            object.__setattr__(value, field.name, _scrub(getattr(value, field.name), redact, seen))
    return value
