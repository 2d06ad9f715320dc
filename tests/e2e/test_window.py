"""The real window (pywebview + Qt WebEngine under Xvfb) over a real encrypted store.

One window session: list (virtualised, 3,000 messages), open a message, search as you type, reply with
the keyboard, see the reply queued in the outbox, the timeline, dark theme and a 200%-zoom-sized
viewport. Screenshots land in tests/artifacts/window-main/.
"""

from __future__ import annotations

import email
import email.policy
import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sync import mime
from sync.model import Folder
from sync.store import Store
from tests import corpus
from tests.e2e import window_kit as kit

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("Xvfb") is None, reason="needs Xvfb (debian-packages.txt)"),
]

ME = "Me Myself <me@example.org>"
REAL = ["hunnysoft__m1005.txt.eml", "spamscope__mail_test_8.eml", "cpython__msg_02.txt.eml",
        "mailcore2-summary__965-email-rendering.eml", "dovecot-thirdparty__019.eml"]


def fill(db: Path, key: bytes) -> dict[str, int]:
    store = Store.open(db, key)
    store.upsert_folders([Folder("inbox", "Inbox", well_known="inbox"), Folder("sent", "Sent Items",
                                                                                well_known="sentitems")])
    ids = {}
    for name in REAL:
        ids[name] = store.put_message("inbox", "p-" + name, (corpus.path("mime-public") / name).read_bytes())
    base = datetime(2025, 1, 1, tzinfo=UTC)
    with store.transaction():
        for n in range(3000):
            out = mime.build(sender=f"Filler {n} <f{n}@example.com>", to=["me@example.org"],
                             subject=f"Weekly report {n}", text=f"Numbers for week {n}.",
                             date=base + timedelta(hours=n))
            store.put_message("inbox", f"filler-{n}", out.raw)
    with store.transaction():  # one conversation, newest of all, so it heads the list
        for n, subject in enumerate(["Lunch on Friday?", "Re: Lunch on Friday?", "RE: Re: Lunch on Friday?"]):
            out = mime.build(sender=f"Colleague {n} <c{n}@example.com>", to=["me@example.org"],
                             subject=subject, text="Pizza?", date=datetime(2026, 11, 27, 12 + n, tzinfo=UTC))
            store.put_message("inbox", f"lunch-{n}", out.raw)
    store.save_mode("continuity", datetime(2026, 11, 28, 9, 30, tzinfo=UTC), "provider unreachable",
                    '{"offline": false, "sign_in_needed": false}')
    store.log_event("mode", "normal -> continuity: provider unreachable for 45 s",
                    datetime(2026, 11, 28, 9, 30, tzinfo=UTC))
    store.close()
    return ids


def test_window_read_search_reply_outbox(tmp_path):
    """Tried: drive the real window like a user (click, keys, typing) from launch to a queued reply."""
    key = os.urandom(32)
    db = tmp_path / "cache.db"
    ids = fill(db, key)
    with kit.xvfb() as display:
        res = kit.run_child({"scenario": "main", "db": str(db), "me": ME, "search_word": "Hasen",
                             "link_id": ids["spamscope__mail_test_8.eml"],
                             "attachment_id": ids["hunnysoft__m1005.txt.eml"]},
                            display, key.hex(), "window-main")
    steps = {s["name"]: s for s in res["steps"]}

    ready = steps["ready"]
    assert ready["total"] == 3008
    assert 0 < ready["rows"] < 100, "the list must be virtual: only visible rows exist"
    assert "Continuity mode" in ready["banner"] and "backup route" in ready["banner"]
    assert any("Inbox" in f for f in ready["folders"])
    assert steps["scrolled"]["id1000"] and steps["scrolled"]["rows"] < 100
    assert steps["threads"]["first"] == [["RE: Re: Lunch on Friday?", "3"], ["↳ Re: Lunch on Friday?", ""],
                                         ["↳ Lunch on Friday?", ""]]

    assert steps["opened"]["sandbox"] == "" and steps["opened"]["subject"]
    assert ids["hunnysoft__m1005.txt.eml"] in steps["search"]["ids"]
    assert steps["compose"]["subject"].startswith("Re:") and steps["compose"]["quoted"]

    store = Store.open(db, key)
    try:
        [item] = store.outbox_list()
        original = store.message(steps["search"]["ids"][0])
        assert item.state == "queued"
        msg = email.message_from_bytes(item.raw, policy=email.policy.default)
        assert msg["In-Reply-To"] == original["message_id"]
        assert "Answered from the end-to-end test." in msg.get_body(("plain",)).get_content()
    finally:
        store.close()
    assert steps["outbox"]["rows"] == [["queued", item.message_id, item.subject]]
    assert {"command": "wake_outbox"} in res["commands"]  # a sync.commands value, as JSON
    assert steps["timeline"]["items"] == 1
    assert steps["dark"]["theme"] == "dark" and steps["dark"]["bg"] != "rgb(255, 255, 255)"
    assert steps["zoom200"]["overflow"] <= 0 and steps["zoom200"]["banner_visible"]
    assert steps["aria"]["unlabeled"] == []
    link, attachment = steps["links"]["opened"]
    assert link == steps["links"]["shown"] and link.startswith("http")
    assert Path(attachment).name == "redball.png" and Path(attachment).read_bytes().startswith(b"\x89PNG")
    assert not res["alerts"]
    csp_errors = [c for c in res["console"] if "Content Security Policy" in c[1] and "srcdoc" not in c[2]]
    assert not csp_errors, f"the app page itself broke its CSP: {csp_errors}"
    for shot in res["shots"]:
        assert Path(shot).stat().st_size > 10_000
