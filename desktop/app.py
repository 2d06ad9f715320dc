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
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from desktop import keys, worker
from desktop.config import Config
from desktop.doorbell import Doorbell
from desktop.window import WindowProcess
from sync import failover
from sync.errors import ConfigError
from sync.store import Store, cache_path

log = logging.getLogger(__name__)
WATCH_INTERVAL = 0.5  # seconds between looks at the persisted mode (the tray follows it)


@dataclass(frozen=True)
class DemoMode:
    """What `lifeboat demo` adds: the simulator's admin URL for the window's demo panel."""

    admin_url: str


class App:
    """One running app. `run()` blocks the calling thread until `quit()` (tray Quit, SIGINT, SIGTERM)."""

    def __init__(self, cfg: Config, *, demo: DemoMode | None = None, tokens: Any = None,
                 key: bytes | None = None, show_window: bool = True,
                 on_started: Callable[[App], Any] | None = None) -> None:
        self.cfg, self.demo, self.tokens, self.show_window = cfg, demo, tokens, show_window
        self.account = cfg.username or "default"
        self.key = key if key is not None else keys.db_key(self.account)
        self.on_started = on_started
        self.commands: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self.stopping = threading.Event()
        self.continuity: worker.Continuity | None = None
        self.tray: Any = None
        self.window: WindowProcess | None = None
        self.doorbell = Doorbell(cfg.home)
        self.notifier: Any = None
        self.shown: tuple[str, tuple[str, ...]] | None = None  # what the tray shows now

    # ------------------------------------------------------------------ actions (any thread)

    def open_window(self) -> None:
        """Start the window, or raise it when it is already open."""
        if self.window is not None and not self.stopping.is_set():
            self.window.show()

    def quit(self) -> None:
        self.stopping.set()

    # ------------------------------------------------------------------ lifecycle

    def run(self) -> int:
        with worker.single_instance(self.cfg.home), \
                Store.open(cache_path(self.cfg.home, self.account), self.key) as store:
            self._start_tray()
            try:
                c = worker.build(self.cfg, store, notifier=self.notifier, tokens=self.tokens)
                self.continuity = c
                c.start()
            except BaseException:  # e.g. no backup relay password: no icon may outlive the error
                if self.tray is not None:
                    self.tray.stop()
                raise
            loops = self._start_loops(c, store)
            self.window = WindowProcess(store.path, self.key, self.commands, me=self.cfg.username,
                                        title="Lifeboat (demo)" if self.demo else "Lifeboat",
                                        demo_admin=self.demo.admin_url if self.demo else None)
            commands = threading.Thread(target=self._drain, args=(c, store), name="lifeboat-commands",
                                        daemon=True)
            commands.start()
            self.doorbell.listen(self.open_window)
            if threading.current_thread() is threading.main_thread():
                for sig in (signal.SIGINT, signal.SIGTERM):
                    signal.signal(sig, lambda *_: self.quit())
            try:
                if self.show_window:
                    self.window.show()
                log.info("app: running (%s)", "demo" if self.demo else "normal")
                if self.on_started is not None:
                    self.on_started(self)
                while not self.stopping.wait(WATCH_INTERVAL):
                    self._watch(c)
            finally:
                self.stopping.set()
                self._stop(c, loops, commands)
        return 0

    def _start_tray(self) -> None:
        """The tray icon, or (without a system tray or display) desktop notifications alone, said so."""
        from desktop import tray as tray_mod

        try:
            self.tray = tray_mod.Tray(self.open_window, lambda: self.commands.put(("sync_now",)),
                                      lambda mode: self.commands.put(("force", mode)),
                                      lambda paused: self.commands.put(("pause", paused)), self.quit)
            self.tray.start()
            self.notifier = self.tray
            log.info("app: tray icon started (%s)", self.tray.backend)
        except Exception as exc:  # no display, no tray backend: the window and notifications still work
            log.warning("app: no tray icon (%s: %s); notifications go straight to the desktop and the "
                        "window stays the way in (`lifeboat run` again opens it)", type(exc).__name__, exc)
            self.tray = None
            self.notifier = tray_mod.default_notifier()

    def _start_loops(self, c: worker.Continuity, store: Store) -> list[worker.Loop]:
        """The three loops of worker.start_loops; the sync loop skips its tick while sync is paused."""

        def sync_tick() -> float:
            if store.get_setting("sync_paused", False):
                return self.cfg.sync_interval_seconds
            return c.sync_tick()

        loops = [
            worker.Loop("health", c.health_tick, self.stopping, c.monitor.wake),
            worker.Loop("outbox", c.outbox_tick, self.stopping, c.outbox_wake),
            worker.Loop("sync", sync_tick, self.stopping, c.sync_wake),
        ]
        for loop in loops:
            loop.start()
        return loops

    def _drain(self, c: worker.Continuity, store: Store) -> None:
        """Commands from the window and the tray, applied to the workers (one at a time, in order)."""
        while not self.stopping.is_set():
            try:
                command = self.commands.get(timeout=WATCH_INTERVAL)
            except queue.Empty:
                continue
            try:
                self.apply(command, c, store)
            except Exception:  # a bad command must not end the app
                log.exception("app: command %r failed", command[0])

    def apply(self, command: tuple[Any, ...], c: worker.Continuity, store: Store) -> None:
        name = command[0]
        log.info("app: command %s", name)
        if name == "wake_outbox":
            c.outbox_wake.set()
        elif name == "sync_now":
            c.sync_wake.set()
        elif name == "force":
            mode = str(command[1])
            effects = c.monitor.force(mode)
            if mode == "normal" and c.monitor.state.forced_by != "admin":
                # "Back to normal" in the window or tray leaves continuity (reconciling) and hands the
                # decision back to the probes, so a later outage still fails over by itself
                effects += c.monitor.force("auto")
            if any(isinstance(e, failover.StartReconcile) for e in effects):
                c.outbox_wake.set()
            c.outbox_wake.set()  # the route may have changed
            self._watch(c)
        elif name == "pause":
            paused = bool(command[1])
            store.set_setting("sync_paused", paused)
            if self.tray is not None:
                self.tray.paused = paused
            if not paused:
                c.sync_wake.set()
        else:
            log.warning("app: unknown command %r", name)

    def _watch(self, c: worker.Continuity) -> None:
        """Make the tray show the persisted mode (a CLI `lifeboat failover` may also change it)."""
        state = c.monitor.refresh()
        conditions = tuple(n for n in ("offline", "sign_in_needed") if getattr(state, n))
        shown = (state.mode.value, conditions)
        if shown == self.shown:
            return
        self.shown = shown
        log.info("app: mode %s %s", state.mode.value, ",".join(conditions))
        if self.tray is not None:
            # the failover engine already raised the notification with its reason: redraw only
            self.tray.set_mode(state.mode.value, conditions, notify=False)

    def _stop(self, c: worker.Continuity, loops: list[worker.Loop], commands: threading.Thread) -> None:
        log.info("app: quitting")
        if self.window is not None:
            self.window.close()
        self.doorbell.close()
        if self.tray is not None:
            self.tray.stop()
        worker.stop_loops(loops, self.stopping)
        commands.join(timeout=10)
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
            show_window: bool = True, on_started: Callable[[App], Any] | None = None) -> int:
    """`lifeboat run`: ring a running app's doorbell (it opens its window) or be the app until Quit."""
    if Doorbell(cfg.home).ring():
        print("Lifeboat is already running: its window is open now.", file=sys.stderr)
        return 0
    require_display("lifeboat demo --headless" if demo else "lifeboat run --headless")
    return App(cfg, demo=demo, tokens=tokens, key=key, show_window=show_window, on_started=on_started).run()
