"""A real headless Chromium for checking HTML reports: the DOM after scripts ran, and console messages.

Driven as a plain subprocess (no driver library): ``--dump-dom`` prints the DOM once the page has
loaded and its scripts have run; ``--enable-logging=stderr`` makes every console message (and every
uncaught exception) show up on stderr as ``INFO:CONSOLE… "message"``. Debian's ``chromium`` package
provides the binary; ``.ci/run`` installs it.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-extensions",
    "--enable-logging=stderr",
    "--v=0",
)
_CONSOLE = re.compile(r':CONSOLE[^\]]*\] "(.*)", source: (.*)$', re.MULTILINE)


@dataclasses.dataclass(frozen=True)
class Rendered:
    dom: str
    console: list[str]  # every console message / uncaught error, "message (source)"


def browser() -> str:
    """The Chromium binary, or skip with what to install."""
    for name in NAMES:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no headless Chromium on PATH: install Debian's 'chromium' package (.ci/run does)")


def render(page: Path, fragment: str = "") -> Rendered:
    """Load ``page`` (``#fragment`` optional) in a throwaway profile; the DOM after load, console lines."""
    with tempfile.TemporaryDirectory(prefix="nocrud-chromium-") as profile:
        result = subprocess.run(
            [
                browser(),
                *FLAGS,
                f"--user-data-dir={profile}",
                "--dump-dom",
                page.resolve().as_uri() + fragment,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert result.returncode == 0, result.stderr[-3000:]
    console = [f"{message} ({source})" for message, source in _CONSOLE.findall(result.stderr)]
    return Rendered(result.stdout, console)
