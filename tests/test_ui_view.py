"""ui.view over a real SQLCipher store: what the window gets for hostile bodies (issue 11, items 3 and 11),
and how a body being rendered (a prefetch) is shared, never rendered twice, and never holds up another."""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

import pytest

from sync import mime
from sync.model import Folder
from sync.store import Store
from ui.view import View


@pytest.fixture
def store(tmp_path):
    s = Store.open(tmp_path / "cache.db", os.urandom(32))
    s.upsert_folders([Folder("inbox", "Inbox", well_known="inbox")])
    yield s
    s.close()


def put(store: Store, n: int, html: str | None, text: str = "the text part") -> tuple[int, dict[str, Any]]:
    out = mime.build(sender="Sender <s@example.com>", to=["me@example.org"], subject=f"message {n}",
                     text=text, html=html)
    id = store.put_message("inbox", f"p-{n}", out.raw)
    row = store.message(id)
    assert row is not None
    return id, row


def test_hostile_nesting_opens_as_its_text_with_the_note(store):
    """Tried: a 200 KB body of 40,000 nested <div>s (quadratic to clean): the message opens with its
    text part and a note saying why; the next message opens normally."""
    id, row = put(store, 1, "<div>" * 40_000 + "deep")
    shown = View(store).message(id, row, False, False)
    assert shown["note"] and "nested too deeply" in shown["note"]
    assert "the text part" in shown["srcdoc"] and "<div>" not in shown["srcdoc"].split("<body>")[1]
    id2, row2 = put(store, 2, "<p>ordinary</p>")
    assert View(store).message(id2, row2, False, False)["note"] is None


def test_hidden_links_and_forged_markers_through_the_view(store):
    """Tried: <base>/<link>/<area> URLs and the old link-marker pattern in the text of a stored message:
    it opens, lists only its real link, as number 1, and shows the text as written."""
    forged = 'href="https://lb-link.invalid/7"'
    id, row = put(store, 1, '<base href="https://base.example/"><link rel="stylesheet" href="https://link.example/">'
                            '<map name="m"><area href="https://area.example/"></map>'
                            f'<a href="https://real.example/">real</a><p>{forged}</p>')
    shown = View(store).message(id, row, False, False)
    assert shown["links"] == ["https://real.example/"]
    assert 'data-link="1"' in shown["srcdoc"] and forged in shown["srcdoc"]


class GatedStore:
    """The real store, but reading message `gated` waits until `release` is set (a render in progress
    that the test holds open); counts reads of each message."""

    def __init__(self, store: Store, gated: int) -> None:
        self._store, self.gated = store, gated
        self.started, self.release = threading.Event(), threading.Event()
        self.reads: dict[int, int] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def parsed(self, id: int) -> Any:
        self.reads[id] = self.reads.get(id, 0) + 1
        if id == self.gated:
            self.started.set()
            self.release.wait()
        return self._store.parsed(id)


def _waiting(thread: threading.Thread) -> bool:
    """Whether `thread` is (or within a minute gets) blocked in a threading wait (a hang guard only)."""
    end = time.monotonic() + 60
    while time.monotonic() < end:
        frame = sys._current_frames().get(thread.ident or 0)
        while frame is not None:
            if frame.f_code.co_name == "wait" and frame.f_code.co_filename.endswith("threading.py"):
                return True
            frame = frame.f_back
        time.sleep(0.01)
    return False


def test_a_prefetch_in_progress_neither_blocks_another_open_nor_renders_twice(store):
    """Tried: the next message is being prefetched (held mid-render) when the user opens another one,
    then the prefetched one: the other opens at once; the prefetched one waits for that render and is
    not rendered a second time."""
    slow, _ = put(store, 1, "<p>next</p>")
    other, other_row = put(store, 2, "<p>other</p>")
    gated = GatedStore(store, slow)
    view = View(gated)
    slow_row = store.message(slow)
    got: dict[str, Any] = {}
    prefetch = threading.Thread(
        target=lambda: got.setdefault("prefetch", view.body(slow, slow_row, False, False)))
    prefetch.start()
    assert gated.started.wait(60)
    assert "other" in view.message(other, other_row, False, False)["srcdoc"]  # not held up by the prefetch
    opener = threading.Thread(
        target=lambda: got.setdefault("open", view.message(slow, slow_row, False, False)))
    opener.start()
    assert _waiting(opener)  # on the render in progress (today's code: on a second read of its own)
    gated.release.set()
    prefetch.join(60)
    opener.join(60)
    assert not prefetch.is_alive() and not opener.is_alive()
    assert got["open"]["srcdoc"] == got["prefetch"].srcdoc
    assert gated.reads[slow] == 1, "the prefetched body was rendered twice"


def test_the_banner_shows_a_blocked_network_with_its_reason(store):
    """Tried: a persisted failover state with the network_blocked condition (a proxy asking for
    authentication) in NORMAL mode: the window's status says so and why, the mode stays normal; sign-in
    trouble still outranks it."""
    import dataclasses
    import json
    from datetime import UTC, datetime

    from sync.failover import State

    state = dataclasses.replace(State.initial(datetime(2026, 11, 29, tzinfo=UTC)), network_blocked=True,
                                network_reason="proxy authentication required (407)")
    store.save_mode(state.mode.value, state.since, state.reason, json.dumps(state.to_json()))
    status = View(store).status()
    assert status["mode"] == "normal" and status["shown"] == "network_blocked"
    assert status["conditions"] == ["network_blocked"]
    assert status["network_reason"] == "proxy authentication required (407)"
    state = dataclasses.replace(state, sign_in_needed=True)
    store.save_mode(state.mode.value, state.since, state.reason, json.dumps(state.to_json()))
    assert View(store).status()["shown"] == "sign_in_needed"
