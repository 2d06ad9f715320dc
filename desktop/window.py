"""The main window: a pywebview window showing ui/static/index.html with the bridge as its js_api.

`open_window(bridge, title=...)` creates the window (call before `run()`); `run()` starts the GUI
loop and must own the main thread. On Linux the Qt backend is used (the `gui` extra); as root the
Chromium sandbox cannot start, so QTWEBENGINE_DISABLE_SANDBOX is set then. Closing the window hides
it (the app lives on in the tray); `show()` brings it back, `quit()` really ends the GUI loop.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

STATIC = Path(__file__).resolve().parents[1] / "ui" / "static"
INDEX = STATIC / "index.html"


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
        window.events.closing += self._on_closing

    def _on_closing(self) -> bool:
        if self._quitting:
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
    """Create the window for `bridge` (exposed to the page as window.pywebview.api)."""
    gui = _prepare_backend()
    import webview  # imported late: the environment above must be set first

    window = webview.create_window(
        title,
        url=str(INDEX),  # served by pywebview's loopback HTTP server (see run())
        js_api=bridge,
        width=width,
        height=height,
        min_size=(480, 360),
        hidden=hidden,
        text_select=True,
        background_color="#1e1e1e" if _prefers_dark() else "#ffffff",
    )
    attach = getattr(bridge, "_attach_window", None)
    if callable(attach):
        attach(window)
    return MainWindow(window, webview, gui, debug)


def _prefers_dark() -> bool:
    return os.environ.get("LIFEBOAT_THEME", "").lower() == "dark"
