"""The real window (pywebview + Qt WebEngine under Xvfb): a script in the main page calls what is not the
page's API through pywebview's own call path, `_`-names and dunders included (issue 11, item 2)."""

from __future__ import annotations

import os
import shutil

import pytest

from sync import mime
from sync.model import Folder
from sync.store import Store
from tests.e2e import window_kit as kit

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("Xvfb") is None, reason="needs Xvfb (debian-packages.txt)"),
]

API = ["draft", "folders", "force", "message", "messages", "open_attachment", "open_link", "outbox", "pause",
       "pick_files", "prefetch", "save_attachment", "search", "send", "sign_in", "start", "status",
       "sync_now", "timeline"]


def test_the_page_reaches_the_api_and_nothing_else(tmp_path):
    """Tried: from the page, `_open_path('/usr/bin/xterm')`, `_open_url('file:///etc/passwd')`,
    `_save_attachment_to(id, 0, <a file outside any dialog>)`, `_picked.add('/etc/passwd')` (then any send
    would attach it), `_store.close()`, a bound method's `__self__`, `__init__` and `__setattr__`, each
    through pywebview's real bridge: nothing runs (nothing handed to the system, no file written, nothing
    picked, the store still open), while `status` through the same path answers (control)."""
    key = os.urandom(32)
    db = tmp_path / "cache.db"
    store = Store.open(db, key)
    store.upsert_folders([Folder("inbox", "Inbox", well_known="inbox")])
    out = mime.build(sender="a@example.com", to=["me@example.org"], subject="invoice", text="see",
                     attachments=[("invoice.pdf", "application/pdf", b"%PDF-1.4")])
    mid = store.put_message("inbox", "p-1", out.raw)
    store.close()
    planted = tmp_path / "planted.sh"
    attempts = [
        ["_open_path", ["/usr/bin/xterm"]],
        ["_open_url", ["file:///etc/passwd"]],
        ["_save_attachment_to", [mid, 0, str(planted)]],
        ["_picked.add", ["/etc/passwd"]],
        ["_store.close", []],
        ["start.__self__._open_path", ["/usr/bin/xterm"]],
        ["send.__self__._picked.add", ["/etc/passwd"]],
        ["__init__", [None]],
        ["__setattr__", ["start", "x"]],
    ]
    with kit.xvfb() as display:
        res = kit.run_child({"scenario": "api", "db": str(db), "me": "me@example.org", "attempts": attempts},
                            display, key.hex(), "window-api")
    steps = {s["name"]: s for s in res["steps"]}
    assert steps["api"]["names"] == API
    tried = steps["attempts"]
    assert tried["control"]["value"] and '"mode"' in tried["control"]["value"]  # the raw path works
    assert res["opened_urls"] == [] and not planted.exists() and tried["picked"] == []
    assert tried["status"] and set(tried["answers"]) == {"status"}  # store still open; no attempt answered
