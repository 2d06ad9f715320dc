"""The main window: pywebview showing ui/static/index.html with the bridge's page API (Qt on Linux).

The page gets `ui.jsapi.expose(bridge)` as js_api, never the bridge itself: pywebview lets a script call
any attribute it can reach by name, so the exposed object reaches the bridge's API and nothing else.

`open_window(bridge, title=...)` makes it in this process (then `run()` owns the main thread; closing
hides). `WindowProcess` runs it in a child process (closing frees Qt WebEngine's memory): the DB key
goes over a private pipe, never argv/env, and bridge commands come back as JSON lines onto the queue.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sync.commands import Command, from_json, to_json

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parents[1] / "ui" / "static"
INDEX = STATIC / "index.html"
APP_ID = "Lifeboat.Desktop"  # Windows' AppUserModelID of the app (desktop.app.APP_ID)


def _prepare_backend() -> str | None:
    """Environment the GUI backend needs, set before webview/Qt is imported. Returns the gui name."""
    if sys.platform.startswith("linux"):
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            os.environ.setdefault("QTWEBENGINE_DISABLE_SANDBOX", "1")
        # Qt must not drive GLib's default main context: the tray (pystray/GTK) runs that loop.
        os.environ.setdefault("QT_NO_GLIB", "1")
        os.environ.setdefault("QT_QPA_PLATFORM", "xcb")
        return "qt"
    return None


class MainWindow:
    """One pywebview window; methods are safe to call from any thread once `run()` has started."""

    def __init__(self, window: Any, webview: Any, gui: str | None, debug: bool) -> None:
        self.window = window
        self._webview = webview
        self._gui = gui
        self._debug = debug
        self._quitting = False
        self.hide_on_close = True
        window.events.closing += self._on_closing

    def _on_closing(self) -> bool:
        if self._quitting or not self.hide_on_close:
            return True
        self.window.hide()
        return False  # cancel: closing the window hides it; the tray's Quit ends the app

    def run(self, on_started: Callable[..., Any] | None = None, *args: Any) -> None:
        """Start the GUI loop in this (main) thread; `on_started(*args)` runs in a worker thread."""
        # http_server: the page is served from 127.0.0.1 (static files only) instead of file://, because
        # Qt WebEngine never lets file:// content load remote URLs, and "show images" needs exactly that.
        self._webview.start(on_started, args or None, gui=self._gui, debug=self._debug, private_mode=True,
                            http_server=True)

    def show(self) -> None:
        self.window.show()
        self.window.restore()

    def hide(self) -> None:
        self.window.hide()

    def quit(self) -> None:
        self._quitting = True
        self.window.destroy()

    def evaluate_js(self, script: str) -> Any:
        return self.window.evaluate_js(script)


def open_window(
    bridge: object,
    *,
    title: str = "Lifeboat",
    debug: bool = False,
    hidden: bool = False,
    width: int = 1280,
    height: int = 800,
) -> MainWindow:
    """Create the window for `bridge` (its page API is window.pywebview.api)."""
    gui = _prepare_backend()
    import webview  # imported late: the environment above must be set first

    from ui.jsapi import expose

    window = webview.create_window(
        title,
        url=str(INDEX),  # served by pywebview's loopback HTTP server (see run())
        js_api=expose(bridge),  # the API methods only: nothing else of the bridge is reachable
        width=width,
        height=height,
        min_size=(480, 360),
        hidden=hidden,
        text_select=True,
        background_color="#1e1e1e" if _prefers_dark() else "#ffffff",
    )
    attach = getattr(bridge, "_attach_window", None)
    if callable(attach):
        attach(window)  # the bridge (not the page) asks the window for native file dialogs
    return MainWindow(window, webview, gui, debug)


def _prefers_dark() -> bool:
    return os.environ.get("LIFEBOAT_THEME", "").lower() == "dark"


# ---------------------------------------------------------------------- the window in its own process


class WindowProcess:
    """The window as a child process of the app. Thread-safe; `show()` starts it or raises it."""

    def __init__(
        self,
        db_path: Path,
        key: bytes,
        commands: Any,
        *,
        me: str,
        title: str = "Lifeboat",
        debug: bool = False,
        on_event: Callable[[dict[str, Any]], Any] | None = None,
        demo_admin: str | None = None,
        opened: Path | None = None,
    ) -> None:
        self._db, self._key, self._commands = Path(db_path), key, commands
        self._opened = opened  # the private folder "Open" writes attachments to (ui.attachment_files)
        self._demo_admin = demo_admin  # `lifeboat demo` only: the simulator's admin URL (ui/demo.py)
        self._me, self._title, self._debug, self._on_event = me, title, debug, on_event
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()
        self._replies: dict[int, Any] = {}
        self._reply_ready = threading.Condition()
        self._seq = 0
        self.ready_at: float | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc else None

    def show(self) -> None:
        with self._lock:
            if self.running:
                self._send({"op": "show"})
                return
            self.ready_at = None
            env = dict(os.environ)
            env.pop("LIFEBOAT_DB_KEY", None)  # the child gets the key over its stdin only
            self._proc = subprocess.Popen(
                child_command(sys.executable),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                cwd=str(Path(__file__).resolve().parents[1]),
            )
            self._send({"db": str(self._db), "key": self._key.hex(), "me": self._me, "title": self._title,
                        "debug": self._debug, "demo_admin": self._demo_admin,
                        "opened": str(self._opened) if self._opened else None})
            threading.Thread(target=self._read, args=(self._proc,), name="window-pipe", daemon=True).start()

    def close(self, timeout: float = 30.0) -> None:
        """Close the window and wait for its process to end."""
        with self._lock:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                return
            self._send({"op": "quit"})
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.warning("the window process did not quit in %s s: stopping it", timeout)
            proc.terminate()
            proc.wait(timeout=10)

    def wait_ready(self, timeout: float = 60.0) -> bool:
        end = time.monotonic() + timeout
        while self.ready_at is None and self.running and time.monotonic() < end:
            time.sleep(0.01)
        return self.ready_at is not None

    def evaluate_js(self, script: str, timeout: float = 60.0) -> Any:
        """Run JavaScript in the window (for the app's own tests and benchmarks)."""
        with self._lock:
            self._seq += 1
            seq = self._seq
            self._send({"op": "eval", "seq": seq, "js": script})
        with self._reply_ready:
            if not self._reply_ready.wait_for(lambda: seq in self._replies or not self.running, timeout):
                raise TimeoutError(f"the window did not answer within {timeout} s")
            if seq not in self._replies:
                raise RuntimeError("the window process ended")
            ok, value = self._replies.pop(seq)
        if not ok:
            raise RuntimeError(f"JavaScript failed in the window: {value}")
        return value

    def _send(self, message: dict[str, Any]) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write(json.dumps(message) + "\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            log.warning("the window process is gone (%s)", type(exc).__name__)

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if "command" in msg:
                try:
                    self._commands.put(from_json(msg))
                except ValueError as exc:
                    log.warning("ignored a command from the window: %s", exc)
            elif "reply" in msg:
                with self._reply_ready:
                    self._replies[msg["reply"]] = (msg.get("ok", False), msg.get("value"))
                    self._reply_ready.notify_all()
            elif "event" in msg:
                if msg["event"] == "ready":
                    self.ready_at = time.time()
                if self._on_event:
                    self._on_event(msg)
        with self._reply_ready:
            self._reply_ready.notify_all()


class _PipeQueue:
    """The child's stand-in for the app's command queue: each command becomes one JSON line."""

    def __init__(self, out: Any) -> None:
        self._out = out
        self._lock = threading.Lock()

    def put(self, command: Command) -> None:
        self.send(to_json(command))

    def send(self, message: dict[str, Any]) -> None:
        with self._lock:
            self._out.write(json.dumps(message, default=str) + "\n")
            self._out.flush()


def child_command(executable: str) -> list[str]:
    """How the window child is started: `python -m desktop.window --child`, or, under the MSI's launcher
    (whose sys.executable is Lifeboat.exe, which takes Lifeboat's arguments, never Python's), the
    launcher's own `--window-child` (installer/payload/lifeboat_launcher.py)."""
    from desktop import win32

    if win32.installed(executable):
        return [executable, "--window-child"]
    return [executable, "-m", "desktop.window", "--child"]


def _child_main() -> None:
    """`python -m desktop.window --child`: read the settings from stdin, open the store, run the window."""
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything a library prints goes to stderr, never into the protocol
    sys.stdout = sys.stderr
    cfg = json.loads(sys.stdin.readline())
    from desktop import win32

    win32.set_app_id(APP_ID)  # the window's taskbar button groups under the Start-menu shortcut
    from sync.store import Store
    from ui.bridge import Bridge

    store = Store.open(Path(cfg["db"]), bytes.fromhex(cfg.pop("key")))
    out = _PipeQueue(protocol)
    opened = Path(cfg["opened"]) if cfg.get("opened") else None
    if cfg.get("demo_admin"):  # `lifeboat demo` only: the page also gets the demo panel's methods
        from ui.demo import DemoBridge

        bridge: Bridge = DemoBridge(store, out, me=cfg["me"], admin_url=cfg["demo_admin"], opened=opened)
    else:
        bridge = Bridge(store, out, me=cfg["me"], opened=opened)
    mw = open_window(bridge, title=cfg["title"], debug=bool(cfg.get("debug")))
    mw.hide_on_close = False  # closing the window ends this process (and frees its memory)

    def listen() -> None:
        for line in sys.stdin:
            msg = json.loads(line)
            if msg.get("op") == "show":
                mw.show()
            elif msg.get("op") == "quit":
                mw.quit()
                return
            elif msg.get("op") == "eval":
                try:
                    out.send({"reply": msg["seq"], "ok": True, "value": mw.evaluate_js(msg["js"])})
                except Exception as exc:
                    out.send({"reply": msg["seq"], "ok": False, "value": repr(exc)})
        mw.quit()  # the app went away: so does its window

    def started() -> None:
        threading.Thread(target=listen, name="window-stdin", daemon=True).start()
        for _ in range(6000):
            if mw.evaluate_js("!!(window.lifeboatUI && window.lifeboatUI.ready)"):
                out.send({"event": "ready"})
                import sync.mime  # noqa: F401  (warm-up, after "ready": the first message opened needs it)

                return
            time.sleep(0.01)

    mw.run(started)
    store.close()


if __name__ == "__main__" and "--child" in sys.argv:
    _child_main()
