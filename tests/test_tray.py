"""The tray and notifications: a real GTK tray icon under Xvfb and a real dunst on a private D-Bus session."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time

import pytest

from desktop import tray as tray_mod
from tests.e2e import window_kit as kit

NEEDS = ("Xvfb", "dbus-daemon", "dunst", "trayer")
pytestmark = pytest.mark.skipif(any(shutil.which(n) is None for n in NEEDS),
                                reason="needs Xvfb, dbus-daemon, dunst and trayer (debian-packages.txt)")


class Dunst:
    """dunst -print on its own D-Bus session: every notification it receives is printed to stdout."""

    def __init__(self, display: str) -> None:
        self.bus = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--print-address=1"],
                                    stdout=subprocess.PIPE, text=True)
        assert self.bus.stdout is not None
        self.address = self.bus.stdout.readline().strip()
        env = {**os.environ, "DISPLAY": display, "DBUS_SESSION_BUS_ADDRESS": self.address}
        self.proc = subprocess.Popen(["dunst", "-print", "-config", "/dev/null"], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self._wait_on_bus()

    def _wait_on_bus(self) -> None:
        """Wait until dunst owns org.freedesktop.Notifications on the bus (it starts asynchronously)."""
        from jeepney import DBusAddress, new_method_call
        from jeepney.io.blocking import open_dbus_connection

        bus = DBusAddress("/org/freedesktop/DBus", bus_name="org.freedesktop.DBus",
                          interface="org.freedesktop.DBus")
        with open_dbus_connection(self.address) as conn:
            for _ in range(400):  # a safety net against hangs, not a performance limit
                msg = new_method_call(bus, "NameHasOwner", "s", ("org.freedesktop.Notifications",))
                if conn.send_and_get_reply(msg, timeout=5).body[0]:
                    return
                time.sleep(0.05)
        raise AssertionError("dunst never took the notification service name")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def summaries(self) -> list[str]:
        found = [ln for ln in self.lines if ln.strip().startswith("summary:")]
        return [ln.split(":", 1)[1].strip().strip("'") for ln in found]

    def wait_for(self, text: str) -> list[str]:
        for _ in range(600):  # a safety net against hangs, not a performance limit
            if any(text in s for s in self.summaries()):
                return self.summaries()
            time.sleep(0.05)
        raise AssertionError(f"dunst never showed {text!r}; it printed: {self.lines[-20:]}")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.bus.terminate()
        self.bus.wait(timeout=10)


@pytest.fixture
def session(monkeypatch):
    with kit.xvfb("640x480x24") as display:
        dunst = Dunst(display)
        monkeypatch.setenv("DISPLAY", display)
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", dunst.address)
        # a real XEmbed system tray for the icon to dock into
        panel = subprocess.Popen(["trayer", "--edge", "top", "--align", "right", "--widthtype", "pixel",
                                  "--width", "120", "--height", "32"], env={**os.environ, "DISPLAY": display},
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        dunst.display = display
        try:
            yield dunst
        finally:
            panel.terminate()
            panel.wait(timeout=10)
            dunst.close()


def wait_until(fn, what):
    for _ in range(400):
        if fn():
            return
        time.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


def test_notifier_reaches_dunst_without_a_tray(session):
    """Tried: DbusNotifier alone (no tray icon) on a session bus where dunst listens."""
    notifier = tray_mod.DbusNotifier()
    notifier.notify("Lifeboat test", "hello from the notifier")
    assert notifier.last_ok
    session.wait_for("Lifeboat test")
    assert any("hello from the notifier" in ln for ln in session.lines)


def test_notifier_without_a_bus_says_so(monkeypatch, caplog):
    """Tried: no D-Bus session at all; notify returns False and logs why instead of crashing."""
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus")
    notifier = tray_mod.DbusNotifier()
    notifier.notify("x", "y")
    assert notifier.last_ok is False
    assert "cannot show a desktop notification" in caplog.text


def test_mode_change_changes_icon_menu_and_notifies(session, monkeypatch):
    """Tried: a GTK tray icon goes normal -> continuity -> recovering -> normal, plus offline; the icon
    GTK shows changes colour, the menu offers the right switch, and dunst receives one notification each."""
    monkeypatch.setenv("PYSTRAY_BACKEND", "gtk")
    calls: list[tuple] = []
    tray = tray_mod.Tray(lambda: calls.append(("open",)), lambda: calls.append(("sync",)),
                         lambda m: calls.append(("force", m)), lambda p: calls.append(("pause", p)),
                         lambda: calls.append(("quit",)))
    tray.start()
    try:
        assert tray.backend.endswith("_gtk")
        status_icon = tray._icon._status_icon

        def centre_colour():
            pb = status_icon.get_pixbuf()
            if pb is None:
                return None
            n = pb.get_n_channels()
            px = pb.get_pixels()
            off = (pb.get_height() // 2) * pb.get_rowstride() + int(pb.get_width() * 0.34) * n
            return tuple(px[off:off + 3])

        wait_until(lambda: centre_colour() == tray_mod.LOOK["normal"][0], "normal icon shown")
        wait_until(status_icon.is_embedded, "icon docked in the system tray")

        def on_screen_colours():
            """Colours of the docked icon as the X server shows it (a screenshot of its spot)."""
            from PIL import ImageGrab

            area = status_icon.get_geometry()[2]
            box = (area.x, area.y, area.x + area.width, area.y + area.height)
            shot = ImageGrab.grab(bbox=box, xdisplay=session.display).convert("RGB")
            return {colour for _count, colour in shot.getcolors(100000)}

        wait_until(lambda: tray_mod.LOOK["normal"][0] in on_screen_colours(), "green icon on screen")
        labels = lambda: [i.text for i in tray._icon.menu.items if i.visible]  # noqa: E731
        assert "Switch to continuity" in labels() and "Back to normal" not in labels()

        assert tray.set_mode("continuity")
        session.wait_for("continuity mode")
        wait_until(lambda: centre_colour() == tray_mod.LOOK["continuity"][0], "amber icon shown")
        wait_until(lambda: tray_mod.LOOK["continuity"][0] in on_screen_colours(), "amber icon on screen")
        assert tray_mod.LOOK["normal"][0] not in on_screen_colours()
        assert "Back to normal" in labels() and "Switch to continuity" not in labels()
        assert "continuity" in status_icon.get_title().lower()

        assert not tray.set_mode("continuity"), "the same mode again is not a change"
        assert tray.set_mode("recovering")
        session.wait_for("Microsoft 365 is back")
        assert tray.set_mode("normal", detail="3 sent during the outage, copied to Sent Items.")
        session.wait_for("back to normal")
        assert any("3 sent during the outage" in ln for ln in session.lines)
        assert tray.set_mode("normal", ["offline"])
        session.wait_for("offline")
        wait_until(lambda: centre_colour() == tray_mod.LOOK["offline"][0], "grey icon shown")
        assert len([s for s in session.summaries() if s.startswith("Lifeboat")]) == 4

        for item in tray._icon.menu.items:
            wanted = ("Open Lifeboat", "Sync now", "Switch to continuity", "Pause sync")
            if item.visible and item.text in wanted:
                item(tray._icon)
        assert calls == [("open",), ("sync",), ("force", "continuity"), ("pause", True)]
        assert tray.paused
    finally:
        tray.stop()


def test_unknown_mode_is_refused():
    """Tried: a mode name the tray does not know; a clear ValueError naming the known ones."""
    with pytest.raises(ValueError, match="known: normal"):
        tray_mod.shown_state("panic")


def test_icons_differ_per_state():
    """Tried: draw every state's icon; each is distinct."""
    images = {s: tray_mod.icon_for(s).tobytes() for s in tray_mod.LOOK if s != "suspect"}
    assert len(set(images.values())) == len(images)


def test_autostart_entry_opt_in(tmp_path, monkeypatch):
    """Tried: enable then disable start-at-login on Linux; the XDG entry appears and goes."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    path = tray_mod.set_autostart(True, '"/opt/life boat/bin/lifeboat" app')
    assert path == tmp_path / "autostart" / "lifeboat.desktop"
    assert 'Exec="/opt/life boat/bin/lifeboat" app\n' in path.read_text()
    assert "Exec=lifeboat run\n" in tray_mod.set_autostart(True).read_text()
    with pytest.raises(ValueError):
        tray_mod.set_autostart(True, "lifeboat\nrm -rf ~")
    tray_mod.set_autostart(False)
    assert not path.exists()


def test_a_blocked_network_has_its_own_state_and_words():
    """Tried: the network_blocked condition (TLS inspection not trusted, a proxy refusing) in NORMAL and
    in CONTINUITY: the tray shows it over the mode, says it is not an outage and points to doctor; sign-in
    and offline still outrank it."""
    assert tray_mod.shown_state("normal", ["network_blocked"]) == "network_blocked"
    assert tray_mod.shown_state("continuity", ["network_blocked"]) == "network_blocked"
    assert tray_mod.shown_state("normal", ["network_blocked", "sign_in_needed"]) == "sign_in_needed"
    assert tray_mod.shown_state("normal", ["network_blocked", "offline"]) == "offline"
    _title, body = tray_mod.MESSAGES["network_blocked"]
    assert "not an outage" in body and "lifeboat doctor" in body
