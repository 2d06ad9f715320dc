"""Hostile and real-world HTML in the real window: no script runs, no bridge call, no request to any host.

Every vector in ../shared/assets/xss/ (DOMPurify's and html5lib's sanitizer tests, the
PayloadsAllTheThings lists, the SVG vectors, cure53's HTTPLeaks page) and every HTML message of
../shared/assets/mime-public is stored in a real encrypted cache and opened in the reading pane of
one window session. Hosts in the vectors are pointed at a local HTTP server that counts hits. The
child records every JavaScript dialog, console message and request the page or its frames made.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from datetime import UTC, datetime

import pytest

from sync import mime
from sync.model import Folder
from sync.store import Store
from tests import corpus
from tests.e2e import window_kit as kit
from tests.xss_own import OWN_VECTORS

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("Xvfb") is None, reason="needs Xvfb (debian-packages.txt)"),
    corpus.needs_corpus,
]

XSS = kit.ASSETS / "xss"
CHUNK = 20  # vectors per message (each message is one render in the window)
_HOST = re.compile(r"(?i)(?:https?:)?//(?!127\.0\.0\.1)[a-z0-9-]+(?:\.[a-z0-9-]+)+(?::\d+)?")
ALLOWED_CALLS = {"start", "status", "folders", "messages", "message"}


def vectors(base: str) -> list[tuple[str, str]]:
    """(source, html) for every vector, with every host name pointed at the counting server."""
    out: list[tuple[str, str]] = []
    for entry in json.loads((XSS / "DOMPurify__expect.json").read_text()):
        out.append(("DOMPurify: " + entry.get("title", "")[:60], entry["payload"]))
    for entry in json.loads((XSS / "html5lib-python__sanitizer-tests1.json").read_text()):
        out.append(("html5lib: " + entry["name"], entry["input"]))
    for path in sorted((XSS / "payloadsallthethings").iterdir()):
        text = path.read_text(encoding="utf-8", errors="replace")
        if path.suffix == ".svg":
            out.append((path.name, text))
        elif "event_handlers" in path.name:
            for name in filter(None, (w.strip() for w in text.splitlines())):
                out.append((f"{path.name}: {name}", (
                    f'<img src=x {name}="alert(1)"><svg {name}="alert(1)"></svg><body {name}="alert(1)">'
                    f'<details open {name}="alert(1)"><summary>s</summary></details>'
                    f'<div style="animation:spin 1s" {name}="alert(1)">{name}</div>')))
        else:
            lines = enumerate(text.splitlines(), 1)
            out.extend((f"{path.name}:{n}", line) for n, line in lines if line.strip())
    out.append(("cure53-HTTPLeaks", (XSS / "cure53-HTTPLeaks__leak.html").read_text()))
    out += [(f"own {kind} {n}", html) for n, (kind, html) in enumerate(OWN_VECTORS)]
    return [(src, _HOST.sub(base, html)) for src, html in out]


def html_corpus() -> list[str]:
    names = []
    for entry in json.loads((kit.ASSETS / "manifest.json").read_text()):
        if entry["file"].startswith("mime-public/") and "html" in entry.get("tags", []):
            names.append(entry["file"].split("/", 1)[1])
    return sorted(names)


def test_every_vector_and_html_message_renders_inert(tmp_path):
    """Tried: ~1,300 XSS/leak vectors and every public HTML message; then 'show images' on one (control)."""
    counter = kit.Counter()
    key = os.urandom(32)
    db = tmp_path / "cache.db"
    store = Store.open(db, key)
    store.upsert_folders([Folder("inbox", "Inbox", well_known="inbox")])
    ids: list[int] = []
    all_vectors = vectors(counter.base)
    assert len(all_vectors) > 1000
    with store.transaction():
        for start in range(0, len(all_vectors), CHUNK):
            chunk = all_vectors[start:start + CHUNK]
            body = "\n<hr>\n".join(f"<!-- {src} -->\n{html}" for src, html in chunk)
            raw = kit.html_message(start, f"vectors {start}", body)
            ids.append(store.put_message("inbox", f"xss-{start}", raw))
        corpus = html_corpus()
        assert len(corpus) >= 50
        for name in corpus:
            raw = (kit.ASSETS / "mime-public" / name).read_bytes()
            ids.append(store.put_message("inbox", "p-" + name, raw))
        control = mime.build(sender="c@example.com", to=["me@example.org"], subject="control", text="x",
                             html=f'<p>remote image: <img src="{counter.base}/control.gif"></p>')
        control_id = store.put_message("inbox", "control", control.raw)
    store.close()
    try:
        with kit.xvfb() as display:
            res = kit.run_child({"scenario": "render", "db": str(db), "me": "me@example.org", "ids": ids,
                                 "control_id": control_id, "counter_url": counter.base + "/__count"},
                                display, key.hex(), "window-xss")
        steps = {s["name"]: s for s in res["steps"]}
        rendered = steps["rendered"]
        assert rendered["loaded"] == len(ids), "every message must have rendered"
        assert rendered["hits_before_control"] == 0, counter.hits[:20]
        assert [a[-1].strip('"') for a in rendered["alerts"]] == ["hook-check"], rendered["alerts"]
        assert rendered["requests"] == [], rendered["requests"][:20]
        assert set(rendered["calls"]) <= ALLOWED_CALLS, rendered["calls"]
        assert rendered["calls"]["message"] == len(ids)
        assert rendered["errors"] == []
        # the control: after the user chooses "show images", the remote image is fetched
        assert steps["control"]["hits"] >= 1 and any("control.gif" in h for h in counter.hits)
        assert any("control.gif" in u for u in steps["control"]["requests"])
        assert all("control.gif" in h for h in counter.hits), counter.hits
    finally:
        counter.close()


def test_hostile_nesting_opens_as_text_with_a_note_and_prefetch_does_not_hold_up_reading(tmp_path):
    """Tried: 200 KB of nested <div>s (quadratic to clean) as the second message of the list; the user
    reads down with "j": the first opens and prefetches the hostile one, which then opens as its text
    part with the note; the third opens after it as usual."""
    key = os.urandom(32)
    db = tmp_path / "cache.db"
    store = Store.open(db, key)
    store.upsert_folders([Folder("inbox", "Inbox", well_known="inbox")])
    bodies = [("first", "<p>first <b>message</b></p>"), ("nested", "<div>" * 40_000 + "deep"),
              ("third", "<p>third <i>message</i></p>")]
    for n, (subject, html) in enumerate(bodies):
        out = mime.build(sender="s@example.com", to=["me@example.org"], subject=subject,
                         text=f"the text part of {subject}", html=html,
                         date=datetime(2026, 1, 3 - n, tzinfo=UTC))
        store.put_message("inbox", subject, out.raw)
    store.close()
    with kit.xvfb() as display:
        res = kit.run_child({"scenario": "read_down", "db": str(db), "me": "me@example.org", "count": 3},
                            display, key.hex(), "window-nesting")
    read = [s for s in res["steps"] if s["name"] == "read"]
    assert [r["subject"] for r in read] == ["first", "nested", "third"]
    first, nested, third = read
    assert "nested too deeply" in nested["notes"] and "the text part of nested" in nested["srcdoc"]
    assert "<div>" not in nested["srcdoc"].split("<body>")[1]
    assert "nested" not in first["notes"] and "<b>message</b>" in first["srcdoc"]
    assert "nested" not in third["notes"] and "<i>message</i>" in third["srcdoc"]
    calls = next(s for s in res["steps"] if s["name"] == "calls")
    assert calls["calls"].get("prefetch", 0) >= 1 and calls["errors"] == []
