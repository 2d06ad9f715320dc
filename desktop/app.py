"""The desktop app's composition root: store, workers, tray, doorbell and window wired by hand.

Main type: `App` (`run_app(cfg)` is `lifeboat run`). The window is a child process (desktop.window), so
this process's main thread just waits for Quit while the tray, the loops, the doorbell and a command
thread run beside it. Invariants: closing the window keeps the tray and the workers; one app per data
folder (a second launch rings the doorbell and exits); Quit stops everything before the store closes.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from desktop import eventlog, keys, servicing, win32, worker
from desktop.config import Config
from desktop.doorbell import Doorbell
from desktop.window import APP_ID as WINDOW_APP_ID
from desktop.window import WindowProcess
from sync import commands
from sync.errors import ConfigError
from sync.store import Store, cache_path
from ui.attachment_files import OPENED, OpenedFolder

log = logging.getLogger(__name__)
WATCH_INTERVAL = 0.5  # seconds between looks at the persisted mode (the tray follows it)
# The app's own AppUserModelID (Windows): the tray's notifications (toasts) and the window's taskbar button
# carry it. The MSI's Start-menu shortcut must carry the same System.AppUserModel.ID. Never changes.
APP_ID = WINDOW_APP_ID


@dataclass(frozen=True)
class DemoMode:
    """What `lifeboat demo` adds: the simulator's admin URL for the window's demo panel."""

    admin_url: str


class App:
    """One running app. `run()` blocks the calling thread until `quit()` (tray Quit), SIGINT, SIGTERM,
    SIGHUP, or Windows' session end / Restart Manager (desktop.servicing); each ends the same way."""

    def __init__(self, cfg: Config, *, demo: DemoMode | None = None, tokens: Any = None,
                 key: bytes | None = None, show_window: bool = True,
                 on_started: Callable[[App], Any] | None = None, session_api: Any = None,
                 event_log: eventlog.EventLog | None = None) -> None:
        self.cfg, self.demo, self.tokens, self.show_window = cfg, demo, tokens, show_window
        self.account = cfg.username or "default"
        self.key = key if key is not None else keys.db_key(self.account)
        self.on_started = on_started
        self.commands: queue.Queue[commands.Command] = queue.Queue()
        self.stopping = threading.Event()
        self.shutdown = servicing.Shutdown(self.stopping)  # the one way out (Quit, signals, session end)
        self.session_api = session_api  # Windows' session messages (a fake in tests)
        self.session: servicing.SessionWatch | None = None
        self.events = eventlog.Watch(event_log if event_log is not None else eventlog.EventLog.for_platform())
        self.continuity: worker.Continuity | None = None
        self.tray: Any = None
        self.window: WindowProcess | None = None
        self.doorbell = Doorbell(cfg.home)
        self.opened = OpenedFolder(cfg.home / OPENED)  # decrypted copies "Open" wrote: gone at exit/start
        self.notifier: Any = None
        self.shown: tuple[str, tuple[str, ...]] | None = None  # what the tray shows now
        self.sign_in: Any = None  # desktop.signin.SignInRunner: "Sign in" from the tray or the window

    # ------------------------------------------------------------------ actions (any thread)

    def open_window(self) -> None:
        """Start the window, or raise it when it is already open."""
        if self.window is not None and not self.stopping.is_set():
            self.window.show()

    def quit(self) -> None:
        self.shutdown.request("Quit")

    # ------------------------------------------------------------------ lifecycle

    def run(self) -> int:
        self.shutdown.install_signals()  # first: a SIGTERM during start-up also ends in order
        win32.set_app_id(APP_ID)  # before the tray icon: its notifications show as Lifeboat's toasts
        try:
            with worker.single_instance(self.cfg.home), \
                    Store.open(cache_path(self.cfg.home, self.account), self.key) as store:
                self._run(store)
            self.events.stopped(self.shutdown.reason or "stopped")
        finally:
            self.stopping.set()
            self.shutdown.finished()  # the store is closed: a waiting WM_ENDSESSION may answer now
            if self.session is not None:
                self.session.close()
            self.shutdown.restore_signals()
        return 0

    def _run(self, store: Store) -> None:
        self.opened.clear()  # left by a run that crashed (this is the only app of this data folder)
        self._start_tray()
        try:
            tokens = self.tokens if self.tokens is not None else worker.default_tokens(self.cfg)
            c = worker.build(self.cfg, store, notifier=self.notifier, tokens=tokens)
            self.continuity = c
            self.sign_in = self._sign_in_runner(tokens, store, c)
            c.start()
        except BaseException:  # e.g. no backup relay password: no icon may outlive the error
            if self.tray is not None:
                self.tray.stop()
            raise
        loops = worker.start_loops(c, self.stopping)
        self.window = WindowProcess(store.path, self.key, self.commands, me=self.cfg.username,
                                    title="Lifeboat (demo)" if self.demo else "Lifeboat",
                                    demo_admin=self.demo.admin_url if self.demo else None,
                                    opened=self.opened.root)
        drainer = threading.Thread(target=self._drain, args=(c,), name="lifeboat-commands",
                                   daemon=True)
        drainer.start()
        try:
            self.doorbell.listen(self.open_window)
            self.session = servicing.watch_session(self.shutdown, self.session_api)
            if self.show_window and not self.stopping.is_set():
                self.window.show()
            log.info("app: running (%s)", "demo" if self.demo else "normal")
            if self.on_started is not None:
                self.on_started(self)
            self._watch(c)
            while not self.stopping.wait(WATCH_INTERVAL):
                self._watch(c)
        finally:
            self.stopping.set()
            self._stop(c, loops, drainer)

    def _start_tray(self) -> None:
        """The tray icon, or (without a system tray or display) desktop notifications alone, said so."""
        from desktop import tray as tray_mod

        try:
            put = self.commands.put
            self.tray = tray_mod.Tray(self.open_window, lambda: put(commands.SyncNow()),
                                      lambda mode: put(commands.Force(mode)),
                                      lambda paused: put(commands.Pause(paused)), self.quit,
                                      on_sign_in=lambda: put(commands.SignIn()))
            self.tray.start()
            self.notifier = self.tray
            log.info("app: tray icon started (%s)", self.tray.backend)
        except Exception as exc:  # no display, no tray backend: the window and notifications still work
            log.warning("app: no tray icon (%s: %s); notifications go straight to the desktop and the "
                        "window stays the way in (`lifeboat run` again opens it)", type(exc).__name__, exc)
            self.tray = None
            self.notifier = tray_mod.default_notifier()

    def _drain(self, c: worker.Continuity) -> None:
        """Commands from the window and the tray, applied to the workers (one at a time, in order)."""
        while not self.stopping.is_set():
            try:
                command = self.commands.get(timeout=WATCH_INTERVAL)
            except queue.Empty:
                continue
            try:
                self.apply(command, c)
            except Exception:  # a bad command must not end the app
                log.exception("app: command %r failed", command)

    def _sign_in_runner(self, tokens: Any, store: Store, c: worker.Continuity) -> Any:
        """Sign in from the tray or the window (desktop.signin); when it is done the probes look again
        at once, so the sign-in condition clears without waiting for the next probe."""
        from desktop.signin import SignInRunner

        def done() -> None:
            c.monitor.wake.set()
            c.sync_wake.set()

        return SignInRunner(tokens, store, notify=lambda title, body: self.notifier.notify(title, body),
                            on_done=done)

    def apply(self, command: commands.Command, c: worker.Continuity) -> None:
        """The core decides what the command means (sync.continuity.handle); the app only redraws.
        SignIn is the desktop's: the sign-in runs in its own thread (WAM or the browser may wait long)."""
        if isinstance(command, commands.SignIn):
            if self.sign_in is not None and not self.sign_in.start(command.window):
                log.info("app: a sign-in is already running")
            return
        c.handle(command)
        if isinstance(command, commands.Pause) and self.tray is not None:
            self.tray.paused = command.paused
        if isinstance(command, commands.Force):
            self._watch(c)

    def _watch(self, c: worker.Continuity) -> None:
        """Make the tray show the persisted mode (a CLI `lifeboat failover` may also change it), and write
        what changed to the Event Log."""
        worker.observe(self.events, c)
        state = c.monitor.refresh()
        conditions = tuple(n for n in ("offline", "sign_in_needed", "network_blocked") if getattr(state, n))
        shown = (state.mode.value, conditions)
        if shown == self.shown:
            return
        self.shown = shown
        log.info("app: mode %s %s", state.mode.value, ",".join(conditions))
        if self.tray is not None:
            # the failover engine already raised the notification with its reason: redraw only
            self.tray.set_mode(state.mode.value, conditions, notify=False)

    def _stop(self, c: worker.Continuity, loops: list[worker.Loop], drainer: threading.Thread) -> None:
        log.info("app: quitting")
        if self.window is not None:
            self.window.close()
        self.opened.clear()
        self.doorbell.close()
        if self.tray is not None:
            self.tray.stop()
        worker.stop_loops(loops, self.stopping)
        drainer.join(timeout=10)
        for route in c.routes.values():
            close = getattr(route, "close", None)
            if close is not None:
                close()


def require_display(headless_hint: str = "lifeboat run --headless") -> None:
    """On Linux the window and the tray need an X11 or Wayland display: say so before starting anything."""
    display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    if sys.platform.startswith("linux") and not display:
        raise ConfigError("there is no display here (DISPLAY is not set), so no window or tray can show",
                          fix=f"run `{headless_hint}` instead")


def run_app(cfg: Config, *, demo: DemoMode | None = None, tokens: Any = None, key: bytes | None = None,
            show_window: bool = True, on_started: Callable[[App], Any] | None = None,
            session_api: Any = None) -> int:
    """`lifeboat run`: ring a running app's doorbell (it opens its window) or be the app until Quit."""
    if Doorbell(cfg.home).ring():
        print("Lifeboat is already running: its window is open now.", file=sys.stderr)
        return 0
    require_display("lifeboat demo --headless" if demo else "lifeboat run --headless")
    return App(cfg, demo=demo, tokens=tokens, key=key, show_window=show_window, on_started=on_started,
               session_api=session_api).run()
