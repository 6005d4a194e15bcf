"""What the plugin creates under its data dir is its user's alone: directories 0700, files 0600.

App logs hold the app's own output and build logs the build tools' (passwords are masked, the rest is
not), so nothing there is readable by group or others. The umask belongs to the user and their tools
and is left alone: every directory and file made here says its mode. As root, the directories that
the server's OS user must enter are handed to that user (``server._RunAs.hand_over``), never opened to
everybody.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import IO, Any

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path, *, top: Path) -> Path:
    """Make sure ``path`` is a directory. Each missing one from ``top`` (the data dir) down to it is
    created 0700; missing ones above ``top`` are created as ``mkdir -p`` does. ``path`` itself is the
    plugin's, so if an older version made it 0755 it is tightened; ``top`` and the ones between are
    left as they are if they exist (a data dir the user made)."""
    if path.is_dir():
        info = path.stat()
        if info.st_uid == os.geteuid() and info.st_mode & 0o077:
            path.chmod(DIR_MODE)
        return path
    chain = [top]
    for part in path.relative_to(top).parts:
        chain.append(chain[-1] / part)
    top.parent.mkdir(parents=True, exist_ok=True)
    for directory in chain:
        try:
            directory.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue
        directory.chmod(DIR_MODE)  # mkdir's mode went through the umask
    return path


def _opener(path: str, flags: int) -> int:
    fd = os.open(path, flags, FILE_MODE)
    with contextlib.suppress(OSError):  # a file of an older version (0644) is ours to tighten
        os.fchmod(fd, FILE_MODE)
    return fd


def open_private(path: Path, mode: str, **kwargs: Any) -> IO[Any]:
    """``open(path, mode, ...)``, the file 0600 (created so, or tightened if it was not)."""
    return open(path, mode, opener=_opener, **kwargs)  # noqa: SIM115 - the caller closes it


def write_private(path: Path, text: str) -> None:
    """``path.write_text(text)``, the file 0600."""
    with open_private(path, "w", encoding="utf-8") as file:
        file.write(text)


def touch_private(path: Path) -> None:
    """Create ``path`` (0600) if it is missing, like ``touch``."""
    os.close(_opener(str(path), os.O_WRONLY | os.O_CREAT))
