"""The window in its own process (desktop.window.WindowProcess), as the app runs it, under Xvfb."""

from __future__ import annotations

import os
import queue
import shutil
import time
from pathlib import Path

import pytest

from desktop.window import WindowProcess
from sync.commands import Force, SyncNow, WakeOutbox
from sync.model import Folder
from sync.store import Store
from tests.e2e import window_kit as kit
from tests.samples import sample

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("Xvfb") is None, reason="needs Xvfb (debian-packages.txt)"),
]


def test_window_process_commands_key_and_close(tmp_path, monkeypatch):
    """Tried: start the window process, click Sync now and the mode switch, send a new message from the
    compose form; the app's queue gets the commands, the store the outbox row; the key is in neither the
    child's command line nor its environment; closing ends the process."""
    key = os.urandom(32)
    db = tmp_path / "cache.db"
    store = Store.open(db, key)
    store.upsert_folders([Folder("inbox", "Inbox", well_known="inbox")])
    store.put_message("inbox", "p1", sample("attachments"))
    commands: queue.Queue = queue.Queue()
    with kit.xvfb() as display:
        monkeypatch.setenv("DISPLAY", display)
        monkeypatch.setenv("QTWEBENGINE_DISABLE_SANDBOX", "1")
        monkeypatch.setenv("LIFEBOAT_DB_KEY", key.hex())  # must not leak into the child
        wp = WindowProcess(db, key, commands, me="Me <me@example.org>", title="Lifeboat (process test)")
        wp.show()
        try:
            assert wp.wait_ready(timeout=120)
            pid = wp.pid
            assert pid
            assert key.hex() not in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            assert key.hex().encode() not in Path(f"/proc/{pid}/environ").read_bytes()
            wp.evaluate_js("document.getElementById('btn-sync').click()")
            wp.evaluate_js("document.getElementById('btn-force').click()")
            wp.evaluate_js("document.getElementById('btn-new').click()")
            for _ in range(600):
                if wp.evaluate_js("document.getElementById('compose').open"):
                    break
                time.sleep(0.05)
            wp.evaluate_js("document.getElementById('c-to').value = 'Friend <friend@example.com>';"
                           " document.getElementById('c-subject').value = 'From the window process';"
                           " document.getElementById('c-text').value = 'Hello';"
                           " document.getElementById('c-send').click()")
            got = [commands.get(timeout=60) for _ in range(3)]
            assert got == [SyncNow(), Force("continuity"), WakeOutbox()]  # sync.commands values, off the pipe
            [item] = store.outbox_list()
            assert item.subject == "From the window process" and item.recipients == ("friend@example.com",)
            wp.show()  # a second show() raises the running window instead of starting another
            assert wp.pid == pid
        finally:
            wp.close()
        assert not wp.running
    store.close()
