"""engine.sync_once against the simulator (own process) into a real encrypted cache.

Each test compares the cache with the simulator's mailbox (same folders, same ids, same MIME
sha256) and checks that no row is duplicated, after changes, expired cursors, outages in the
middle of a sync, and throttling.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sync import plan
from sync.engine import folder_status, sync_once
from sync.errors import Unreachable
from sync.governor import Governor
from sync.sources.graph import GraphSource
from sync.store import Store
from tests.syncsim import SimProcess, SimTokens

MIME = (b"From: Zoe <zoe@example.com>\r\nTo: adele.vance@contoso.test\r\nSubject: %s\r\n"
        b"Message-ID: <%s@example.com>\r\nDate: Sat, 28 Nov 2026 09:00:00 +0000\r\n\r\nbody %s\r\n")


SIMULATOR = {"messages": 150, "seed": 11}  # the mailbox of conftest's `sim` fixture


@pytest.fixture
def source(sim: SimProcess, tokens: SimTokens) -> Iterator[GraphSource]:
    s = GraphSource(sim.graph_url, tokens, ca_file=sim.ca_path, timeout=(3, 10), page_size=20,
                    governor=Governor(base_delay=0.05, max_delay=0.3))
    yield s
    sim.outage("normal")
    sim.admin("POST", "limits", {"on": False})
    s.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path / "cache.db", os.urandom(32))
    yield s
    s.close()


def cached(store: Store) -> dict[str, dict[str, str | None]]:
    out: dict[str, dict[str, str | None]] = {}
    for pid, fid, raw in store.db.execute("SELECT provider_id, folder_id, raw FROM messages").fetchall():
        out.setdefault(fid, {})[pid] = hashlib.sha256(zlib.decompress(raw)).hexdigest() if raw else None
    return out


def assert_equal(store: Store, sim: SimProcess) -> None:
    rows, distinct = store.db.execute("SELECT count(*), count(DISTINCT provider_id) FROM messages").fetchone()
    assert rows == distinct  # no duplicate rows
    assert cached(store) == sim.state()


def sync(store: Store, source: GraphSource, **kw: object) -> object:
    return sync_once(store, source, folders=("*",), cache_days=3650, **kw)  # type: ignore[arg-type]


def test_first_sync_equals_the_mailbox_and_a_quiet_sync_costs_one_request_per_folder(
    sim: SimProcess, source: GraphSource, store: Store
) -> None:
    """First sync: same folders, ids and MIME hashes. A second sync with no change sends exactly one
    request per synced folder (the folder tree is re-listed only every 15 minutes)."""
    report = sync(store, source)
    assert report.ok and report.mime_fetched == sum(len(v) for v in sim.state().values())  # type: ignore[attr-defined]
    assert_equal(store, sim)
    before = sim.requests()
    report = sync(store, source)
    assert sim.requests() - before == len(report.folders)  # type: ignore[attr-defined]
    status = {f["name"]: f for f in folder_status(store)}
    assert status["Inbox"]["messages"] == len(sim.state()[status["Inbox"]["id"]])
    assert status["Inbox"]["last_success_at"] and status["Inbox"]["missing_mime"] == 0


def test_adds_moves_deletes_and_read_changes_between_syncs(
    sim: SimProcess, source: GraphSource, store: Store
) -> None:
    """New mail, a move Inbox -> Archive (immutable id kept), a deletion and a read flag change
    all arrive; the moved message keeps its id and MIME and is not fetched twice."""
    sync(store, source)
    state = sim.state()
    listed = sim.admin("GET", "state")["folders"]
    folders = {f["wellKnownName"]: f["id"] for f in listed if f["wellKnownName"]}
    inbox = sorted(state[folders["inbox"]])
    new = sim.admin("POST", "messages", {"folder": "inbox", "mime": (MIME % ((b"n1",) * 3)).decode()})["id"]
    sim.admin("POST", f"messages/{inbox[0]}/move", {"folder": "archive"})
    sim.admin("DELETE", f"messages/{inbox[1]}")
    sim.admin("PATCH", f"messages/{inbox[2]}", {"isRead": True})
    report = sync(store, source)
    assert report.mime_fetched == 1  # type: ignore[attr-defined]
    assert_equal(store, sim)
    moved = store.message_by_provider_id(inbox[0])
    assert moved is not None and moved["folder_id"] == folders["archive"]
    assert store.message_by_provider_id(new) is not None and store.message_by_provider_id(inbox[1]) is None
    assert store.message_by_provider_id(inbox[2])["is_read"]  # type: ignore[index]


@pytest.mark.parametrize("status", [410, 400])
def test_expired_cursor_mid_round_rebaselines_without_loss_or_duplicates(
    sim: SimProcess, source: GraphSource, store: Store, status: int
) -> None:
    """One page per folder, then every delta token expires while mail is added and deleted: the next
    sync re-baselines each folder, keeps what is still there (MIME included), drops what is gone."""
    sync(store, source)  # a complete cache first
    sim.admin("POST", "messages", {"folder": "inbox", "mime": (MIME % (b"e1", b"e1", b"e1")).decode()})
    sync(store, source, max_pages=1)  # stop each folder's round after one page
    inbox = next(f["id"] for f in sim.admin("GET", "state")["folders"] if f["wellKnownName"] == "inbox")
    sim.admin("DELETE", f"messages/{sorted(sim.state()[inbox])[-1]}")
    sim.admin("POST", "delta/expire", {"status": status})
    sim.admin("POST", "messages", {"folder": "inbox", "mime": (MIME % (b"e2", b"e2", b"e2")).decode()})
    report = sync(store, source)
    assert any(r.resets for r in report.folders.values())  # type: ignore[attr-defined]
    assert report.mime_fetched == 1  # type: ignore[attr-defined]  # e2 only: e1 came with the partial sync
    assert_equal(store, sim)
    assert store.db.execute("SELECT count(*) FROM baseline_seen").fetchone()[0] == 0


@pytest.mark.parametrize("mode", ["drop", "truncate", "503", "hang"])
def test_outage_in_the_middle_of_a_sync_loses_nothing(
    sim: SimProcess, source: GraphSource, store: Store, mode: str
) -> None:
    """Part of a first sync commits, then the provider drops connections / truncates bodies /
    answers 503 / hangs (accepts, never answers): the sync raises Unreachable, every cursor stays
    with its committed page, and the next sync after the outage ends equal to the mailbox."""
    sync(store, source, max_pages=1)
    cursors = dict(store.db.execute("SELECT folder_id, cursor FROM cursors").fetchall())
    rows = store.db.execute("SELECT count(*) FROM messages").fetchone()[0]
    sim.outage(mode)
    with pytest.raises(Unreachable):
        sync(store, source)
    assert dict(store.db.execute("SELECT folder_id, cursor FROM cursors").fetchall()) == cursors
    assert store.db.execute("SELECT count(*) FROM messages").fetchone()[0] == rows
    sim.outage("normal")
    sync(store, source)
    assert_equal(store, sim)


def test_outage_during_mime_fill_keeps_the_committed_part(
    sim: SimProcess, source: GraphSource, store: Store
) -> None:
    """Summaries are in, the provider starts refusing during the MIME phase: the sync raises,
    summaries stay, and the next sync fetches only what is missing."""
    calls = {"n": 0}
    real = source.fetch_mime

    def flaky(ids):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:
            sim.outage("refuse")
        return real(ids)

    source.fetch_mime = flaky  # type: ignore[method-assign]
    with pytest.raises(Unreachable):
        sync(store, source)
    have = store.db.execute("SELECT count(raw) FROM messages").fetchone()[0]
    assert 0 < have < sum(len(v) for v in sim.state().values())
    sim.outage("normal")
    report = sync(store, source)
    total = sum(len(v) for v in sim.state().values())
    assert report.mime_fetched == total - have  # type: ignore[attr-defined]
    assert_equal(store, sim)


def test_sync_under_graph_limits_is_complete(sim: SimProcess, source: GraphSource, store: Store) -> None:
    """Graph's limits on with a small window: requests get 429 with Retry-After; the governor waits
    them out and the cache still ends equal."""
    limits = {"on": True, "window_requests": 60, "window_seconds": 1.0, "retry_after": 0.2}
    sim.admin("POST", "limits", limits)
    sync(store, source)
    assert source.governor.throttled > 0
    assert_equal(store, sim)


def test_a_smaller_window_prunes_older_mail(sim: SimProcess, source: GraphSource, store: Store) -> None:
    """cache_days shrinks to 2: after the next round exactly the messages received since the new
    window start stay cached (the older ones are pruned locally)."""
    sync(store, source)
    before = dict(store.db.execute("SELECT provider_id, date FROM messages").fetchall())
    start = plan.window_start(datetime.now(UTC), 2)
    sync_once(store, source, folders=("*",), cache_days=2)
    after = {r[0] for r in store.db.execute("SELECT provider_id FROM messages").fetchall()}
    assert after == {p for p, d in before.items() if datetime.fromisoformat(d) >= start}


def test_a_vanished_folder_is_reported_and_the_rest_syncs(
    sim: SimProcess, source: GraphSource, store: Store
) -> None:
    """A folder id the provider no longer knows (deleted between listing and delta): FolderBad is
    reported for it, every other folder syncs, and the next sync re-lists the folder tree."""
    from datetime import UTC, datetime

    from sync.model import Folder

    sync(store, source)
    store.upsert_folders([Folder("AAMkADgoneAAA=", "Gone")])
    ids = store.get_setting("sync.folders")["ids"] + ["AAMkADgoneAAA="]
    store.set_setting("sync.folders", {"at": datetime.now(UTC).isoformat(), "ids": ids})
    report = sync(store, source)
    assert len(report.errors) == 1 and "404" in report.errors[0]  # type: ignore[attr-defined]
    assert report.folders["AAMkADgoneAAA="].error  # type: ignore[attr-defined]
    assert store.get_setting("sync.folders") is None
    assert sync(store, source).ok  # type: ignore[attr-defined]
    assert "AAMkADgoneAAA=" not in {f["provider_id"] for f in store.folders()}
    assert_equal(store, sim)


def test_stored_links_to_another_host_are_not_followed(source: GraphSource) -> None:
    """A cursor pointing at another host would carry our bearer token there: refused, no request."""
    from sync.errors import FolderBad

    sent = source.requests_sent
    with pytest.raises(FolderBad, match="another host"):
        source.changes("F", "https://evil.example/v1.0/me/mailFolders/F/messages/delta?$deltatoken=x", None)
    assert source.requests_sent == sent
