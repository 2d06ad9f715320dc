"""Servicing while running: one orderly way out for every stop request, and a restart after an upgrade.

`Shutdown(stop)` is the one way out. The tray's Quit, SIGINT/SIGTERM/SIGHUP (Linux: systemd, logout,
`kill`), and on Windows the session-end and Restart Manager messages (WM_QUERYENDSESSION, WM_ENDSESSION,
WM_CLOSE: Intune/SCCM upgrades while the app runs) all call `request(reason)`; the app then stops its
loops (a tick in progress ends first), ends the window child, closes the routes and the store, and calls
`finished()`. `answer(msg, wparam, lparam)` is the pure decision per Windows message; `SessionWatch` runs
it on a hidden top-level window (message-only windows get no broadcasts) on its own thread through the
desktop.win32 adapter (tests pass a fake). `restart_command_line(argv)` is what RegisterApplicationRestart
gets, so Restart Manager starts the app again (in the tray) after the upgrade. Exit code: 0 for all.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

log = logging.getLogger(__name__)

# Windows messages and flags (winuser.h)
WM_DESTROY = 0x0002
WM_CLOSE = 0x0010
WM_QUERYENDSESSION = 0x0011
WM_ENDSESSION = 0x0016
WM_APP = 0x8000
WM_APP_EXIT = WM_APP + 1  # ours: the app has stopped, end the message loop
ENDSESSION_CLOSEAPP = 0x00000001  # Restart Manager: an installer needs the files this app holds
ENDSESSION_CRITICAL = 0x40000000
ENDSESSION_LOGOFF = 0x80000000
# RegisterApplicationRestart flags (winbase.h): come back after an update only, never after a crash, a
# hang or a reboot (at sign-in the Run key starts the app; a second start would only ring the doorbell)
RESTART_NO_CRASH, RESTART_NO_HANG, RESTART_NO_REBOOT = 1, 2, 8
RESTART_FLAGS = RESTART_NO_CRASH | RESTART_NO_HANG | RESTART_NO_REBOOT
RESTART_MAX_CMD_LINE = 1024  # characters, the exe's name not counted (Windows adds it)
FINISH_WAIT = 25.0  # seconds a WM_ENDSESSION/WM_CLOSE waits for the orderly stop (Restart Manager forces
# unresponsive apps after 30 s); a send in progress has a 20 s timeout, the window child 30 s at most
SESSION_CLASS = "LifeboatSession"


class Action(Enum):
    DEFAULT = "default"  # not ours: DefWindowProc
    NONE = "none"  # answer, do nothing else
    STOP = "stop"  # stop the app in order and answer only once it has stopped (its state is saved)
    DESTROY = "destroy"  # end the message loop (the app has stopped)


@dataclass(frozen=True)
class Answer:
    action: Action
    result: int = 0  # what the window procedure returns (ignored for DEFAULT)
    reason: str = ""


def answer(msg: int, wparam: int, lparam: int) -> Answer:
    """What to do with one Windows message (pure). WM_QUERYENDSESSION: yes, we can close (the state is
    saved continuously; Microsoft: do not close yet, another app may refuse). WM_ENDSESSION with wParam
    TRUE: the session or Restart Manager really ends us: stop, answering only once stopped (after the
    answer Windows may end the process at any moment); FALSE: cancelled, go on. WM_CLOSE: Restart Manager
    (for an app still running after WM_ENDSESSION) or `taskkill` without /F: stop the same way; never
    DefWindowProc, which would only destroy the hidden window and leave the app running."""
    if msg == WM_QUERYENDSESSION:
        return Answer(Action.NONE, 1)
    if msg == WM_ENDSESSION:
        if not wparam:
            return Answer(Action.NONE, 0, "session end cancelled")
        return Answer(Action.STOP, 0, session_reason(lparam))
    if msg == WM_CLOSE:
        return Answer(Action.STOP, 0, "asked to close (WM_CLOSE)")
    if msg == WM_APP_EXIT:
        return Answer(Action.DESTROY, 0)
    return Answer(Action.DEFAULT)


def session_reason(lparam: int) -> str:
    if lparam & ENDSESSION_CLOSEAPP:
        return "Restart Manager (an installer is updating Lifeboat)"
    if lparam & ENDSESSION_LOGOFF:
        return "the user is signing out"
    if lparam & ENDSESSION_CRITICAL:
        return "Windows is shutting down (critical)"
    return "Windows is shutting down"


def restart_command_line(args: Sequence[str]) -> str | None:
    """The command line Restart Manager starts the app with after an upgrade (pure): the arguments this
    process was started with, after the executable (for `Lifeboat.exe run` that is `run`; Windows puts
    the executable in front), in the tray only (`--minimized`: an upgrade
    must not pop the window up). None when it cannot be registered (too long, or no `run` command)."""
    rest = list(args)
    if "run" not in rest:
        return None
    if "--minimized" not in rest and "--headless" not in rest:
        rest.append("--minimized")
    line = subprocess.list2cmdline(rest)
    if len(line) >= RESTART_MAX_CMD_LINE:
        log.warning("servicing: the restart command line is too long (%d characters): not registered",
                    len(line))
        return None
    return line


class Shutdown:
    """The one way out. `request` may be called from any thread (and from a signal handler)."""

    def __init__(self, stop: threading.Event | None = None) -> None:
        self.stop = stop or threading.Event()
        self.reason = ""
        self._finished = threading.Event()
        self._saved: dict[int, Any] = {}

    def request(self, reason: str) -> None:
        if not self.stop.is_set():
            self.reason = reason
            log.info("stopping: %s", reason)
        self.stop.set()

    def finished(self) -> None:
        """The app has stopped: loops ended, window child gone, store closed."""
        self._finished.set()

    def wait_finished(self, timeout: float) -> bool:
        return self._finished.wait(timeout)

    # ---- POSIX signals (and Ctrl+C / Ctrl+Break, which Restart Manager sends console apps) ----------

    def install_signals(self) -> None:
        """SIGINT, SIGTERM, SIGHUP (the terminal or the session went away) and SIGBREAK end the app in
        order. Only the main thread may install handlers; elsewhere (tests) this does nothing."""
        if threading.current_thread() is not threading.main_thread():
            return
        for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK"):
            sig = getattr(signal, name, None)
            if sig is None:
                continue
            self._saved[int(sig)] = signal.signal(sig, self._on_signal)

    def restore_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        self._saved.clear()

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.request(f"signal {signal.Signals(signum).name}")


class SessionApi(Protocol):
    """The Windows calls SessionWatch needs (desktop.win32.SessionApi; a fake in tests)."""

    def create_window(self, class_name: str, on_message: Callable[[int, int, int, int], int]) -> int: ...
    def pump(self) -> None: ...
    def default(self, hwnd: int, msg: int, wparam: int, lparam: int) -> int: ...
    def post(self, hwnd: int, msg: int) -> None: ...
    def destroy(self, hwnd: int) -> None: ...
    def block_shutdown(self, hwnd: int, reason: str) -> None: ...
    def register_restart(self, command_line: str, flags: int) -> int: ...


class SessionWatch:
    """The hidden top-level window that hears session end and Restart Manager, on its own thread."""

    def __init__(self, shutdown: Shutdown, api: SessionApi, *, wait: float = FINISH_WAIT) -> None:
        self.shutdown, self.api, self.wait = shutdown, api, wait
        self.hwnd = 0
        self.answered: list[tuple[int, Answer]] = []  # (message, answer), for the log and tests
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, args: Sequence[str] | None = None) -> SessionWatch:
        """Create the window (its thread pumps its messages) and register for restart with `args`
        (default: Lifeboat's own arguments, sys.argv[1:]: the launcher `Lifeboat.exe` runs Python with
        `-I -c ...` and puts the user's arguments in sys.argv, and Windows puts the executable in front)."""
        self._thread = threading.Thread(target=self._run, name="lifeboat-session", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        line = restart_command_line(list(args) if args is not None else sys.argv[1:])
        if line is not None:
            result = self.api.register_restart(line, RESTART_FLAGS)
            if result != 0:
                log.warning("servicing: RegisterApplicationRestart failed (HRESULT 0x%08x)",
                            result & 0xFFFFFFFF)
        return self

    def _run(self) -> None:
        try:
            self.hwnd = self.api.create_window(SESSION_CLASS, self._on_message)
        except Exception as exc:  # no window: signals and the tray's Quit still stop the app in order
            log.warning("servicing: no session window (%s)", type(exc).__name__)
            return
        finally:
            self._ready.set()
        self.api.pump()

    def _on_message(self, hwnd: int, msg: int, wparam: int, lparam: int) -> int:
        reply = answer(msg, wparam, lparam)
        if reply.action is Action.DEFAULT:
            return self.api.default(hwnd, msg, wparam, lparam)
        self.answered.append((msg, reply))
        if reply.action is Action.STOP:
            try:
                self.api.block_shutdown(hwnd, "Lifeboat is saving its state")
            except Exception as exc:  # only the reason Windows shows; the stop goes on regardless
                log.info("servicing: no shutdown reason shown (%s)", type(exc).__name__)
            self.shutdown.request(reply.reason)
            if not self.shutdown.wait_finished(self.wait):
                log.warning("servicing: the app did not stop within %.0f s", self.wait)
        elif reply.action is Action.DESTROY:
            self.api.destroy(hwnd)
        return reply.result

    def close(self) -> None:
        """End the message loop (after `Shutdown.finished()`)."""
        if self.hwnd:
            self.api.post(self.hwnd, WM_APP_EXIT)
        if self._thread is not None:
            self._thread.join(5)


def watch_session(shutdown: Shutdown, api: SessionApi | None = None) -> SessionWatch | None:
    """On Windows (or with an `api`, in tests): the session window and the restart registration."""
    if api is None:
        if sys.platform != "win32":
            return None
        from desktop import win32

        api = win32.session_api()
    return SessionWatch(shutdown, api).start()
