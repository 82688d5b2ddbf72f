"""Files and directories only their owner may use: the data directory, the SQLite database and
the keyring.

Modes are given explicitly to what is created here, never through the umask, which is global to
the process (and so to whatever embeds piigate). A path that exists already keeps its mode:
:func:`exposed` tells the caller, who warns, since the operator may have chosen it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final

__all__ = ["PRIVATE_DIRECTORY", "PRIVATE_FILE", "exposed", "private_directory", "private_file"]

PRIVATE_DIRECTORY: Final = 0o700
PRIVATE_FILE: Final = 0o600
# Read or write for group or others. (Search alone lets nobody list a directory.)
_SHARED: Final = 0o066


def private_directory(path: Path) -> None:
    """Create ``path`` and whichever of its parents are missing, each with mode 0700."""
    missing = []
    for directory in (path, *path.parents):
        if directory.is_dir():
            break
        missing.append(directory)
    for directory in reversed(missing):
        try:
            os.mkdir(directory, PRIVATE_DIRECTORY)
        except FileExistsError:
            if not directory.is_dir():
                raise  # a file where the directory should be
            continue  # another process made it meanwhile
        # mkdir's mode is filtered by the umask; make sure it is exactly 0700.
        os.chmod(directory, PRIVATE_DIRECTORY)


def private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600, unless it exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, PRIVATE_FILE)  # the mode given to open is filtered by the umask too
    finally:
        os.close(fd)


def exposed(paths: Iterable[Path]) -> Iterator[tuple[Path, int]]:
    """Each of ``paths`` that exists and that group or others may read or write, with its
    permission bits."""
    for path in paths:
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except OSError:
            continue
        if mode & _SHARED:
            yield path, mode
