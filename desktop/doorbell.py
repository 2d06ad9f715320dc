"""Single instance per user: a second launch rings the running app's doorbell (it opens its window) and exits.

`Doorbell(home).listen(on_ring)` in the running app accepts rings on a per-user local socket (a Unix
socket in the data folder; a named pipe on Windows) guarded by a random key in a file only the user can
read; `Doorbell(home).ring()` returns True when a running app answered. Nothing else crosses the socket.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Client, Listener
from pathlib import Path
from typing import Any

from sync.private_files import private_dir

log = logging.getLogger(__name__)
RING = "open"


class Doorbell:
    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self._listener: Any = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        if sys.platform == "win32":
            tag = hashlib.sha256(str(self.home.resolve()).encode()).hexdigest()[:16]
            return rf"\\.\pipe\lifeboat-{os.environ.get('USERNAME', 'user')}-{tag}"
        return str(self.home / "doorbell.sock")

    @property
    def _key_path(self) -> Path:
        return self.home / "doorbell.key"

    def ring(self, timeout: float = 5.0) -> bool:
        """Ask a running Lifeboat to open its window; False when none is listening."""
        try:
            key = self._key_path.read_bytes()
        except OSError:
            return False
        try:
            with Client(self.address, authkey=key) as conn:
                conn.send(RING)
                return bool(conn.poll(timeout) and conn.recv() == "ok")
        except (OSError, EOFError, ValueError) as exc:
            log.info("no running Lifeboat answered the doorbell (%s)", type(exc).__name__)
            return False
        except Exception as exc:  # AuthenticationError: a stale key from an earlier run
            log.info("the doorbell did not accept us (%s)", type(exc).__name__)
            return False

    def listen(self, on_ring: Callable[[], Any]) -> None:
        """Start answering rings in a daemon thread; `on_ring` runs on that thread (keep it short)."""
        private_dir(self.home)
        key = secrets.token_bytes(32)
        fd = os.open(self._key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key)
        if sys.platform != "win32":
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.address)  # a socket left by a crashed run (the caller holds the app lock)
        old = os.umask(0o077)
        try:
            self._listener = Listener(self.address, authkey=key)
        finally:
            os.umask(old)
        self._thread = threading.Thread(target=self._serve, args=(on_ring,), name="doorbell", daemon=True)
        self._thread.start()

    def _serve(self, on_ring: Callable[[], Any]) -> None:
        while self._listener is not None:
            try:
                conn = self._listener.accept()
            except OSError:
                return  # closed
            except Exception as exc:  # a caller without the key
                log.warning("refused a doorbell caller (%s)", type(exc).__name__)
                continue
            with conn:
                try:
                    if conn.poll(5) and conn.recv() == RING:
                        on_ring()
                        conn.send("ok")
                except (OSError, EOFError) as exc:
                    log.info("a doorbell caller went away (%s)", type(exc).__name__)

    def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with contextlib.suppress(OSError):
            self._key_path.unlink()
