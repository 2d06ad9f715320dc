"""The tray icon (pystray) and desktop notifications: the mode at a glance, a menu, a word on each change.

`Tray(on_open, on_sync_now, on_force, on_pause, on_quit, on_sign_in=...)` runs the icon in its own thread
(its menu offers "Sign in" while sign-in is needed); `set_mode`
redraws icon, tooltip and menu and notifies when the shown state changes: over D-Bus on Linux
(`DbusNotifier`, which needs no tray), through the shell on Windows. `set_autostart`: XDG, opt-in.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

log = logging.getLogger(__name__)

# shown state -> (colour, tooltip label); "shown" folds the conditions into the mode (see `shown_state`)
LOOK = {
    "normal": ((30, 125, 50), "Normal"),
    "suspect": ((30, 125, 50), "Checking the connection"),
    "continuity": ((214, 130, 0), "Continuity mode"),
    "recovering": ((11, 87, 208), "Recovering"),
    "offline": ((110, 110, 110), "Offline"),
    "sign_in_needed": ((179, 38, 30), "Sign-in needed"),
    "network_blocked": ((120, 60, 160), "The network blocks Microsoft 365"),
}
MESSAGES = {
    "normal": ("Lifeboat: back to normal", "Mail goes through Microsoft 365 again."),
    "continuity": (
        "Lifeboat: continuity mode",
        "Microsoft 365 cannot be reached. Your recent mail is here, and new mail goes out through "
        "the backup route.",
    ),
    "recovering": (
        "Lifeboat: Microsoft 365 is back",
        "Putting the mail sent during the outage into Sent Items.",
    ),
    "offline": ("Lifeboat: this computer is offline",
                "New mail waits in the outbox until the network is back."),
    "sign_in_needed": ("Lifeboat: sign-in needed",
                       "Microsoft 365 needs you to sign in: choose Sign in in the tray menu or the window."),
    "network_blocked": ("Lifeboat: the network blocks Microsoft 365",
                        "A certificate this computer does not trust, or a proxy that refuses: not an "
                        "outage. Run `lifeboat doctor` or ask IT."),
}


def shown_state(mode: str, conditions: Iterable[str] = ()) -> str:
    """What the user sees: sign-in trouble, being offline and a blocked network outrank the mode."""
    conds = set(conditions)
    if "sign_in_needed" in conds:
        return "sign_in_needed"
    if "offline" in conds:
        return "offline"
    if "network_blocked" in conds:
        return "network_blocked"
    if mode not in LOOK:
        raise ValueError(f"unknown mode {mode!r} (known: {', '.join(LOOK)})")
    return mode


def icon_for(state: str, size: int = 64) -> Image.Image:
    """A round badge in the state's colour with a white glyph (a lifebuoy ring; a bar when paused-ish)."""
    colour, _ = LOOK[state]
    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    d.ellipse((2, 2, size - 3, size - 3), fill=(*colour, 255))
    r_out, r_in = size * 0.32, size * 0.16
    c = size / 2
    white = (255, 255, 255, 255)
    d.ellipse((c - r_out, c - r_out, c + r_out, c + r_out), outline=white, width=max(2, size // 9))
    if state in ("offline", "sign_in_needed", "network_blocked"):
        d.line((c - r_out, c + r_out, c + r_out, c - r_out), fill=white, width=max(2, size // 12))
    elif state == "continuity":
        d.ellipse((c - r_in / 2, c - r_in / 2, c + r_in / 2, c + r_in / 2), fill=white)
    return img


class DbusNotifier:
    """Desktop notifications over the D-Bus session bus (any freedesktop notification daemon)."""

    def __init__(self, app_name: str = "Lifeboat", timeout_ms: int = 8000) -> None:
        self.app_name = app_name
        self.timeout_ms = timeout_ms
        self._last_id = 0
        self.last_ok = False  # whether the last notification reached a notification service

    def notify(self, title: str, body: str) -> None:
        """Show a notification (sync.ports.Notifier); without a notification service it logs why."""
        self.last_ok = self._send(title, body)

    def _send(self, title: str, body: str) -> bool:
        try:
            from jeepney import DBusAddress, new_method_call
            from jeepney.io.blocking import open_dbus_connection

            addr = DBusAddress("/org/freedesktop/Notifications", bus_name="org.freedesktop.Notifications",
                               interface="org.freedesktop.Notifications")
            msg = new_method_call(addr, "Notify", "susssasa{sv}i",
                                  (self.app_name, self._last_id, "", title, body, [], {}, self.timeout_ms))
            with open_dbus_connection(bus="SESSION") as conn:
                reply = conn.send_and_get_reply(msg, timeout=5)
            if reply.header.message_type.name == "error":
                log.warning("the notification service refused a notification: %s", reply.body)
                return False
            self._last_id = int(reply.body[0])
            return True
        except Exception as exc:  # no session bus, no daemon: the tray still shows the mode
            log.warning("cannot show a desktop notification (%s)", type(exc).__name__)
            return False


class Tray:
    """The tray icon. Callbacks run on the tray's thread: keep them short (enqueue work)."""

    def __init__(
        self,
        on_open: Callable[[], Any],
        on_sync_now: Callable[[], Any],
        on_force: Callable[[str], Any],
        on_pause: Callable[[bool], Any],
        on_quit: Callable[[], Any],
        *,
        notifier: Any | None = None,
        on_sign_in: Callable[[], Any] | None = None,
    ) -> None:
        self._on_open, self._on_sync_now, self._on_force = on_open, on_sync_now, on_force
        self._on_sign_in = on_sign_in
        self._on_pause, self._on_quit = on_pause, on_quit
        self.mode = "normal"
        self.state = "normal"
        self.paused = False
        self._lock = threading.Lock()
        self._icon: Any = None
        self._thread: threading.Thread | None = None
        self._notifier = notifier if notifier is not None else default_notifier(self)
        self.notified: list[tuple[str, str]] = []  # what was announced (for the status window and tests)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Show the icon (its loop runs in a daemon thread; on macOS it would need the main thread)."""
        import pystray  # imported late: on Linux it needs a display at import time

        self._icon = pystray.Icon("lifeboat", icon_for(self.state), self._title(), menu=self._menu(pystray))
        self._thread = threading.Thread(target=self._icon.run, name="tray", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._icon is not None:
            self._icon.stop()
        if self._thread is not None:
            self._thread.join(timeout=10)

    @property
    def backend(self) -> str:
        return type(self._icon).__module__ if self._icon is not None else ""

    # ------------------------------------------------------------------ state

    def set_mode(self, mode: str, conditions: Iterable[str] = (), detail: str = "", *,
                 notify: bool = True) -> bool:
        """Show the mode; returns True when the shown state changed (and, with `notify`, a notification
        was raised; the app passes notify=False because the failover engine words its own)."""
        state = shown_state(str(mode), conditions)
        with self._lock:
            changed = state != self.state
            self.mode, self.state = str(mode), state
        if self._icon is not None:
            self._icon.icon = icon_for(state)
            self._icon.title = self._title()
            self._icon.update_menu()
        if changed and notify and state in MESSAGES:
            title, body = MESSAGES[state]
            self.notify(title, f"{body} {detail}".strip())
        return changed

    def notify(self, title: str, body: str) -> None:
        self.notified.append((title, body))
        self._notifier.notify(title, body)

    def _title(self) -> str:
        return f"Lifeboat: {LOOK[self.state][1]}" + (" (sync paused)" if self.paused else "")

    # ------------------------------------------------------------------ menu

    def _menu(self, pystray: Any) -> Any:
        item, menu = pystray.MenuItem, pystray.Menu
        in_continuity = lambda _item: self.mode in ("continuity", "recovering")  # noqa: E731
        needs_sign_in = lambda _item: self.state == "sign_in_needed" and self._on_sign_in is not None  # noqa: E731
        return menu(
            item("Open Lifeboat", lambda: self._on_open(), default=True),
            item("Sign in", lambda: self._on_sign_in and self._on_sign_in(), visible=needs_sign_in),
            item("Sync now", lambda: self._on_sync_now()),
            item("Switch to continuity", lambda: self._on_force("continuity"),
                 visible=lambda i: not in_continuity(i)),
            item("Back to normal", lambda: self._on_force("normal"), visible=in_continuity),
            item("Pause sync", self._toggle_pause, checked=lambda _i: self.paused),
            menu.SEPARATOR,
            item("Quit", lambda: self._on_quit()),
        )

    def _toggle_pause(self) -> None:
        self.paused = not self.paused
        self._on_pause(self.paused)
        if self._icon is not None:
            self._icon.title = self._title()


class _PystrayNotifier:
    """Windows: notifications through the shell, via the tray icon (pystray's win32 backend)."""

    def __init__(self, tray: Tray) -> None:
        self._tray = tray

    def notify(self, title: str, body: str) -> None:
        icon = self._tray._icon
        if icon is None or not getattr(icon, "HAS_NOTIFICATION", False):
            log.warning("no tray icon to show the notification %r", title)
            return
        icon.notify(body, title)


def default_notifier(tray: Tray | None = None) -> Any:
    """D-Bus on Linux (works without a tray); the shell through the tray icon on Windows."""
    if sys.platform == "win32" and tray is not None:
        return _PystrayNotifier(tray)
    return DbusNotifier()


# ---------------------------------------------------------------------- start at login (Linux, opt-in)

DESKTOP_ENTRY = """[Desktop Entry]
Type=Application
Name=Lifeboat
Comment=Email continuity for Microsoft 365
Exec={command}
Terminal=false
X-GNOME-Autostart-enabled=true
"""


def autostart_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "autostart" / "lifeboat.desktop"


def set_autostart(enabled: bool, command: str = "lifeboat run") -> Path:
    """Write (or remove) the XDG autostart entry running `command` at login (Exec= syntax: quote a
    path with spaces in double quotes). Windows uses the Run key the installer writes."""
    if "\n" in command or not command.strip():
        raise ValueError("the autostart command must be one non-empty line")
    path = autostart_path()
    if enabled:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(DESKTOP_ENTRY.format(command=command.strip()), encoding="utf-8")
    else:
        path.unlink(missing_ok=True)
    return path
