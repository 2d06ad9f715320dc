"""Sign in from the tray or the window: one interactive sign-in at a time, off the UI threads.

Main type: `SignInRunner(tokens, store, notify=..., on_done=...)`; `start(window)` runs
`tokens.login_interactive(window)` (desktop.auth: the Windows account through WAM with that window's
handle, else the system browser) in a worker thread and returns at once. Its progress and result are
kept in the store setting sync.commands.SIGN_IN_SETTING ({"state": "running" | "signed_in" | "failed",
"reason", "user", "at"}), which the window's banner reads, and announced with a notification. The log
gets the outcome's kind, never the user or the reason's text.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sync.commands import SIGN_IN_SETTING
from sync.errors import ConfigError, LifeboatError

log = logging.getLogger(__name__)
RUNNING, SIGNED_IN, FAILED = "running", "signed_in", "failed"


class SignInRunner:
    """Runs the sign-in the user asked for (tray or window) in a thread and records how it went."""

    def __init__(self, tokens: Any, store: Any, *, notify: Callable[[str, str], Any],
                 on_done: Callable[[], Any] = lambda: None) -> None:
        self._tokens, self._store, self._notify, self._on_done = tokens, store, notify, on_done
        self._lock = threading.Lock()
        self.thread: threading.Thread | None = None  # the latest sign-in (tests join it)

    def start(self, window: int | None = None) -> bool:
        """Begin a sign-in (False when one is already running: the user clicked twice)."""
        with self._lock:
            if self.thread is not None and self.thread.is_alive():
                return False
            self._record(RUNNING)
            self.thread = threading.Thread(target=self._run, args=(window,), name="lifeboat-sign-in",
                                           daemon=True)
            self.thread.start()
        return True

    def _run(self, window: int | None) -> None:
        login = getattr(self._tokens, "login_interactive", None)
        try:
            if login is None:
                raise ConfigError("this account's sign-in cannot be done from the tray or the window",
                                  fix="run `lifeboat login`")
            user = str(login(window))
        except LifeboatError as exc:
            log.warning("sign-in from the desktop failed: %s", type(exc).__name__)
            self._record(FAILED, reason=str(exc))
            self._notify("Lifeboat: sign-in failed", str(exc))
        except Exception as exc:  # a bug: said plainly, the app goes on
            log.exception("sign-in from the desktop crashed")
            self._record(FAILED, reason=f"unexpected error ({type(exc).__name__}); details are in the log")
            self._notify("Lifeboat: sign-in failed", "An unexpected error; details are in the log.")
        else:
            log.info("sign-in from the desktop succeeded")
            self._record(SIGNED_IN, user=user)
            self._notify("Lifeboat: signed in", f"Signed in as {user}.")
        finally:
            self._on_done()

    def _record(self, state: str, *, reason: str = "", user: str = "") -> None:
        try:
            self._store.set_setting(SIGN_IN_SETTING, {"state": state, "reason": reason[:600], "user": user,
                                                      "at": datetime.now(UTC).isoformat()})
        except LifeboatError as exc:  # a full disk: the notification still tells the user
            log.warning("could not record the sign-in's state: %s", type(exc).__name__)
