"""Folders and files only their owner can read: 0700 folders and 0600 files, whatever the umask.

Lifeboat's data folder, its cache and logs folders, the cache database (SQLite gives its -wal and -shm
the database file's mode) and the log files are created through these helpers, so another local user
can read none of them even under a umask of 022. A folder or file left loose by an older version is
tightened when it is next used. On Windows the modes mean nothing: the per-user profile
(%LOCALAPPDATA%) is already readable by its owner (and SYSTEM and administrators) alone.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600
POSIX = sys.platform != "win32"


def private_dir(path: Path) -> Path:
    """Make `path` (and any missing parent) a folder only its owner can enter; tighten it if it exists."""
    path = Path(path)
    missing = []
    here = path
    while not here.exists() and here != here.parent:
        missing.append(here)
        here = here.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # made meanwhile by another thread or process
            folder.mkdir(mode=DIR_MODE)
        _tighten(folder, DIR_MODE)
    if not missing:
        _tighten(path, DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """Create `path` empty (0600) if it does not exist, else tighten it to 0600; its folder must exist."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        _tighten(path, FILE_MODE)
    else:
        os.close(fd)
        _tighten(path, FILE_MODE)  # the umask may have taken bits off: set exactly 0600
    return path


def private_database(path: Path) -> Path:
    """The database file 0600 before SQLite opens it (SQLite gives the -wal and -shm it creates the
    database's mode), and any -wal, -shm or -journal an older version left loose tightened."""
    private_file(path)
    for suffix in ("-wal", "-shm", "-journal"):
        extra = Path(f"{path}{suffix}")
        if extra.exists():
            _tighten(extra, FILE_MODE)
    return path


def opener(path: str, flags: int) -> int:
    """An `open(..., opener=opener)` that creates files 0600 (for the log files)."""
    return os.open(path, flags, FILE_MODE)


def _tighten(path: Path, mode: int) -> None:
    """chmod to `mode` when group or others have any access (only our own regular files and folders)."""
    if not POSIX:
        return
    st = os.lstat(path)
    wanted = stat.S_ISDIR if mode == DIR_MODE else stat.S_ISREG
    if not wanted(st.st_mode) or st.st_uid != os.getuid():
        return  # not ours to change: a link the user pointed us through, another user's, not a folder
    if stat.S_IMODE(st.st_mode) != mode:
        with contextlib.suppress(PermissionError):  # a file system without modes (vfat, some shares)
            os.chmod(path, mode)
