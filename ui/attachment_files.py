"""Attachment bytes on disk: the private folder "Open" writes to, a saved copy, the Mark of the Web.

An opened attachment is a decrypted copy of cached mail, so `OpenedFolder` keeps it under the app's data
folder (never the system temp), in a folder only the user may enter (0700), each file 0600 in its own
0700 subfolder (equal names never clash), and `clear()` deletes them all: the app calls it when it
exits and when it starts (so a crash leaves them only until the next start). Names come from
sync.filenames.safe_filename; on Windows every written file gets the Mark of the Web
(sync.filenames.zone_identifier) so Windows treats it as downloaded.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path

from sync.errors import BadArgument, ConfigError
from sync.filenames import safe_filename, zone_identifier

log = logging.getLogger(__name__)
OPENED = "opened"  # the folder's name under the data folder


class OpenedFolder:
    """The private folder of opened attachments (`root`, created on first use)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _ready(self) -> Path:
        """The folder, made 0700 whatever the umask; refused if it is a link or someone else's."""
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = os.lstat(self.root)
            mine = not hasattr(os, "getuid") or info.st_uid == os.getuid()
            if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode) or not mine:
                raise ConfigError(f"the folder for opened attachments ({self.root}) is not a private folder "
                                  "of yours", fix=f"remove {self.root}; Lifeboat creates it again")
            if sys.platform != "win32" and stat.S_IMODE(info.st_mode) != 0o700:
                os.chmod(self.root, 0o700)
        except OSError as exc:
            raise ConfigError(f"the folder for opened attachments cannot be made ({exc.strerror})",
                              fix=f"check that {self.root.parent} is yours and has free space") from exc
        return self.root

    def write(self, name: str, data: bytes) -> Path:
        """Write `data` as `name` (made safe) in a new 0700 subfolder; the file is 0600."""
        folder = Path(tempfile.mkdtemp(dir=self._ready()))  # mkdtemp: 0700, a fresh unguessable name
        path = folder / safe_filename(name)
        try:
            _write_new(path, data)
        except OSError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise ConfigError(f"the attachment could not be written for opening ({exc.strerror})",
                              fix="free some disk space and try again, or save it instead") from exc
        return path

    def clear(self) -> int:
        """Delete every opened attachment (at start and at exit). Returns how many files were removed;
        a file a viewer still holds open (Windows) stays until the next start."""
        if not self.root.is_dir() or self.root.is_symlink():
            return 0
        removed = 0
        for entry in self.root.iterdir():
            files = [entry] if not entry.is_dir() or entry.is_symlink() else [p for p in entry.rglob("*")]
            count = sum(1 for p in files if not p.is_dir())
            try:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
                removed += count
            except OSError as exc:
                log.warning("opened attachments: one could not be deleted yet (%s)", exc.strerror)
        if removed:
            log.info("opened attachments: %d deleted", removed)
        return removed


def save(target: Path, name: str, data: bytes) -> Path:
    """Write a saved copy where the user chose (`target`, or `target`/`name` when it is a folder)."""
    path = target / safe_filename(name) if target.is_dir() else target
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise BadArgument(f"the attachment could not be saved there ({exc.strerror})",
                          fix="choose another folder") from exc
    mark_of_the_web(path)
    return path


def _write_new(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    mark_of_the_web(path)


def mark_of_the_web(path: Path) -> None:
    """On Windows, the `Zone.Identifier` stream that says "from the Internet" (untested off Windows)."""
    if sys.platform != "win32":
        return
    try:
        with open(f"{path}:Zone.Identifier", "w", encoding="ascii", newline="") as fh:
            fh.write(zone_identifier())
    except OSError as exc:  # e.g. FAT32 or a network share without streams: the file itself is fine
        log.warning("could not mark a written attachment as downloaded (%s)", exc.strerror)
