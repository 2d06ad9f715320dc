"""The encrypted cache's behaviour: messages, search, outbox, failover state, settings, retention."""

from __future__ import annotations

import os
import zlib
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest

from sync import schema
from sync.errors import BadQuery, CacheError, MessageBad
from sync.model import Folder, OutboxState, RemoteItem, Route
from sync.store import Store, cache_path
from tests import corpus

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def eml(
    subject: str,
    body: str = "hello",
    *,
    sender: str = "Ann Smith <ann@example.org>",
    to: str = "bob@example.org",
    date: datetime | None = None,
    attachment: tuple[str, bytes] | None = None,
    html: str | None = None,
) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = (date or NOW).strftime("%a, %d %b %Y %H:%M:%S +0000")
    msg["Message-ID"] = f"<{abs(hash((subject, body)))}@example.org>"
    msg.set_content(body)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    if attachment is not None:
        msg.add_attachment(
            attachment[1], maintype="application", subtype="octet-stream", filename=attachment[0]
        )
    return msg.as_bytes()


@pytest.fixture
def store(tmp_path: Path):
    s = Store.open(cache_path(tmp_path, "ann@example.org"), os.urandom(32))
    s.upsert_folders([Folder("inbox-id", "Inbox", well_known="inbox"), Folder("sent-id", "Sent Items")])
    yield s
    s.close()


def test_cache_path_is_one_file_per_account(tmp_path: Path):
    """Different accounts get different files under <home>/cache; odd characters cannot escape it."""
    a = cache_path(tmp_path, "ann@example.org")
    b = cache_path(tmp_path, "bob@example.org")
    evil = cache_path(tmp_path, "../../etc/passwd")
    assert a != b and a.parent == b.parent == tmp_path / "cache"
    assert evil.parent == tmp_path / "cache" and "/" not in evil.name


def test_put_message_round_trips_raw_summary_and_attachments(store: Store):
    """Stores raw MIME compressed and gives it back byte-exact, with summary columns and attachment rows."""
    raw = eml("Quarterly report", "numbers inside", attachment=("report.pdf", b"%PDF-1.4 fake"))
    item = RemoteItem("p1", "inbox-id", received_at=NOW, is_read=False, change_key="ck1")
    mid = store.put_message("inbox-id", "p1", raw, item)
    assert store.raw(mid) == raw
    stored = store._sql_for_tests("SELECT raw FROM messages WHERE id = ?", (mid,))[0][0]
    assert stored != raw and zlib.decompress(stored) == raw
    m = store.message(mid)
    assert m is not None
    assert m["subject"] == "Quarterly report" and m["sender_email"] == "ann@example.org"
    assert m["folder"] == "Inbox" and m["is_read"] is False and m["change_key"] == "ck1"
    assert m["date"].startswith("2026-11-28T12:00:00") and m["has_mime"] is True
    assert [a["filename"] for a in m["attachments"]] == ["report.pdf"] and m["has_attachments"]
    parsed = store.parsed(mid)
    assert parsed is not None and "numbers inside" in parsed.text
    assert store.message(9999) is None and store.raw(9999) is None


def test_upsert_by_provider_id_replaces_index_entries(store: Store):
    """Storing the same provider_id twice keeps one row, and the search index forgets the old words."""
    first = store.put_message("inbox-id", "p1", eml("Aardvark", "old words"))
    second = store.put_message("inbox-id", "p1", eml("Platypus", "new words"))
    assert first == second
    assert store.status()["messages"] == 1
    assert store.search("aardvark") == []
    assert [r["id"] for r in store.search("platypus")] == [first]


def test_placeholder_then_mime(store: Store):
    """A summary-only placeholder is listed, searchable and reported missing until its MIME arrives."""
    item = RemoteItem("p9", "inbox-id", received_at=NOW, subject="Budget meeting", sender="Carl <carl@x.org>")
    mid = store.put_message("inbox-id", "p9", None, item)
    assert store.missing_mime() == ["p9"] and store.missing_mime("sent-id") == []
    assert store.raw(mid) is None and store.parsed(mid) is None
    assert [r["id"] for r in store.search("budget")] == [mid]
    assert store.put_message("inbox-id", "p9", eml("Budget meeting", "agenda attached"), item) == mid
    assert store.missing_mime() == []
    assert [r["id"] for r in store.search("agenda")] == [mid]
    # a later summary-only update (say, read on another device) keeps the MIME
    store.put_message("inbox-id", "p9", None, RemoteItem("p9", "inbox-id", received_at=NOW, is_read=True))
    assert store.raw(mid) is not None and store.message(mid)["is_read"] is True  # type: ignore[index]
    with pytest.raises(MessageBad):
        store.put_message("inbox-id", "p10", None, None)


def test_list_messages_newest_first_with_paging(store: Store):
    """A folder lists newest first, pages with offset/limit, and folders() counts messages and unread."""
    for i in range(5):
        item = RemoteItem(f"p{i}", "inbox-id", received_at=NOW + timedelta(hours=i), is_read=i % 2 == 0)
        store.put_message("inbox-id", f"p{i}", eml(f"message {i}"), item)
    page = store.list_messages("inbox-id", offset=1, limit=2)
    assert [r["provider_id"] for r in page] == ["p3", "p2"]
    inbox = next(f for f in store.folders() if f["provider_id"] == "inbox-id")
    assert inbox["count"] == 5 and inbox["unread"] == 2 and inbox["well_known"] == "inbox"
    plan = store._sql_for_tests(
        "EXPLAIN QUERY PLAN SELECT id FROM messages WHERE folder_id = ? ORDER BY date DESC, id DESC LIMIT 10",
        ("inbox-id",),
    )
    assert "messages_folder_date" in str(plan) and "TEMP B-TREE" not in str(plan)


def test_move_remove_and_local_folder(store: Store):
    """Moving changes the folder; removing drops the row, its attachments and its index entry."""
    mid = store.put_message("inbox-id", "p1", eml("Wombat", attachment=("a.bin", b"x")))
    store.move_message("p1", "sent-id")
    assert store.message(mid)["folder_id"] == "sent-id"  # type: ignore[index]
    assert store.remove_messages(["p1", "unknown"]) == 1
    assert store.message(mid) is None and store.search("wombat") == []
    assert store._sql_for_tests("SELECT count(*) FROM attachments") == [(0,)]
    local = store.local_folder("Imported")
    assert local == store.local_folder("Imported")
    assert any(f["provider_id"] == local and f["local"] for f in store.folders())


def test_search_fields_ranking_and_folder_filter(store: Store):
    """Search covers subject, from, to, cc and body (HTML reduced to text); column filters work."""
    a = store.put_message("inbox-id", "a", eml("Lunch", "see you at noon", sender="Zed <zed@corp.example>"))
    b = store.put_message(
        "sent-id",
        "b",
        eml("Plans", "plain part", to="quinn@corp.example", html="<p>The <b>ocelot</b> plan</p>"),
    )
    assert [r["id"] for r in store.search("zed")] == [a]
    assert [r["id"] for r in store.search("quinn")] == [b]
    assert [r["id"] for r in store.search("ocelot")] == [b]
    assert [r["id"] for r in store.search("subject:lunch")] == [a]
    assert [r["id"] for r in store.search('"see you"')] == [a]
    assert store.search("plans", folder_id="inbox-id") == []
    assert len(store.search("corp", limit=1)) == 1


@pytest.mark.parametrize("query", ["(", "   ", "*", '""', "-- ;", "( ) ^"])
def test_search_with_nothing_to_search_is_bad_query(store: Store, query: str):
    """Tried: queries holding no word at all (empty, punctuation, a lone *): BadQuery with a hint, not a
    sqlite error."""
    store.put_message("inbox-id", "p1", eml("anything"))
    with pytest.raises(BadQuery) as info:
        store.search(query)
    assert "phrase" in str(info.value)


@pytest.mark.parametrize("query,hit", [
    ('"unterminated', True), ("AND", True), ("foo:bar", True), ("a NOT", True), ("NEAR(", True),
    ("unterminated OR nowhere", True), ("unterminated NOT foo", False), ("subject:unterm*", True),
    ("body:unterminated", False), ('subject:"foo bar"', True), ("subject:(near", True), ("zzz", False),
])
def test_search_language_turns_fts5_syntax_into_words(store: Store, query: str, hit: bool):
    """Tried: FTS5 syntax in ordinary text (an unclosed quote, a bare AND, an unknown field, a trailing NOT,
    NEAR() and the language's own OR, NOT, prefix* and field:word: the query runs (no BadQuery, no sqlite
    error) and finds the message exactly when its words say so."""
    mid = store.put_message("inbox-id", "p1", eml("unterminated AND foo bar a NOT near", body="hello"))
    assert [r["id"] for r in store.search(query)] == ([mid] if hit else [])


def test_transaction_rolls_back_everything_and_nests(store: Store):
    """An error inside transaction() undoes all its writes; a failing nested block undoes only itself."""
    with pytest.raises(RuntimeError), store.transaction():
        store.put_message("inbox-id", "p1", eml("one"))
        store.set_cursor("inbox-id", "cursor-1")
        raise RuntimeError("boom")
    assert store.status()["messages"] == 0 and store.cursor("inbox-id") is None
    with store.transaction():
        store.put_message("inbox-id", "p2", eml("two"))
        with pytest.raises(RuntimeError), store.transaction():
            store.put_message("inbox-id", "p3", eml("three"))
            raise RuntimeError("inner")
        store.set_cursor("inbox-id", "cursor-2")
    assert [r["provider_id"] for r in store.list_messages("inbox-id")] == ["p2"]
    assert store.cursor("inbox-id") == "cursor-2"


def test_outbox_lifecycle(store: Store):
    """Outbox rows mirror OutboxItem; a Message-ID is queued once; updates convert enums, times and
    flags, and the typed settle/reconcile fields (once a JSON bag) round-trip."""
    item = store.outbox_add("<m1@x>", b"raw mime", "ann@example.org", ["b@x", "c@x"], "Hi", NOW)
    assert item.state is OutboxState.QUEUED and item.recipients == ("b@x", "c@x") and item.created_at == NOW
    with pytest.raises(MessageBad):
        store.outbox_add("<m1@x>", b"again", "ann@example.org", ["b@x"])
    with pytest.raises(MessageBad):
        store.outbox_add("<m2@x>", b"raw", "ann@example.org", [])
    sent = store.outbox_update(
        item.id, state=OutboxState.SENT, route=Route.BACKUP, sent_at=NOW, attempts=1, last_error=None
    )
    assert sent.state is OutboxState.SENT and sent.route is Route.BACKUP and sent.sent_at == NOW
    assert sent.raw == b"raw mime" and sent.attempt_route is None and not sent.ask_user
    typed = store.outbox_update(item.id, attempt_route=Route.BACKUP, uncertain_since=NOW, ask_user=True,
                                sent_copy_partial="AAMk1", sent_copy_given_up=True)
    assert (typed.attempt_route, typed.uncertain_since, typed.ask_user, typed.sent_copy_partial,
            typed.sent_copy_given_up, typed.looked_up_at) == (Route.BACKUP, NOW, True, "AAMk1", True, None)
    with pytest.raises(TypeError, match="unknown field"):
        store.outbox_update(item.id, extra={"k": "v"})
    store.outbox_add("<m3@x>", b"r", "a@x", ["b@x"])
    assert [o.message_id for o in store.outbox_list([OutboxState.QUEUED])] == ["<m3@x>"]
    assert len(store.outbox_list()) == 2 and store.outbox_get(999) is None
    assert store.outbox_by_message_id("<m3@x>") is not None
    with pytest.raises(TypeError):
        store.outbox_update(item.id, colour="blue")
    with pytest.raises(MessageBad):
        store.outbox_update(999, attempts=2)


def test_mode_events_settings_and_cursors_survive_reopen(tmp_path: Path):
    """Failover mode, event log, settings and cursors are persisted and read back after reopening."""
    key, path = os.urandom(32), tmp_path / "c.db"
    with Store.open(path, key) as s:
        assert s.load_mode() == ("normal", None, "")
        s.save_mode("continuity", NOW, "provider down", state_json='{"failures": 3}')
        s.log_event("mode", "normal -> continuity", NOW)
        s.log_event("sent", "1 via backup", NOW + timedelta(minutes=1))
        s.set_setting("window", {"w": 800, "h": 600})
        s.set_cursor("inbox-id", "https://graph/delta?token=abc")
    with Store.open(path, key) as s:
        assert s.load_mode() == ("continuity", NOW, "provider down")
        assert s.mode_state() == '{"failures": 3}'
        assert [e["kind"] for e in s.events()] == ["sent", "mode"]
        assert s.get_setting("window") == {"w": 800, "h": 600} and s.get_setting("nope", 5) == 5
        s.set_setting("window", None)
        assert s.get_setting("window") is None
        assert s.cursor("inbox-id") == "https://graph/delta?token=abc"
        s.set_cursor("inbox-id", None)
        assert s.cursor("inbox-id") is None


def test_migrations_are_recorded_and_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Each migration is recorded with the version; a failing migration leaves the old version intact."""
    key, path = os.urandom(32), tmp_path / "c.db"
    with Store.open(path, key) as s:
        rows = s._sql_for_tests("SELECT version FROM schema_migrations")
        assert rows == [(v,) for v in range(1, schema.VERSION + 1)]
        assert s._sql_for_tests("PRAGMA user_version")[0][0] == schema.VERSION
        assert s._sql_for_tests("PRAGMA journal_mode")[0][0] == "wal"
        assert s._sql_for_tests("PRAGMA temp_store")[0][0] == 2  # MEMORY
        s.put_message("inbox-id", "p1", eml("kept"))
    bad = (*schema.MIGRATIONS, ("CREATE TABLE extra (x)", "THIS IS NOT SQL"))
    monkeypatch.setattr(schema, "MIGRATIONS", bad)
    monkeypatch.setattr(schema, "VERSION", len(bad))
    with pytest.raises(Exception, match="syntax error"):
        Store.open(path, key)
    monkeypatch.undo()
    with Store.open(path, key) as s:
        assert s._sql_for_tests("PRAGMA user_version")[0][0] == schema.VERSION
        assert s._sql_for_tests("SELECT count(*) FROM sqlite_master WHERE name = 'extra'") == [(0,)]
        assert s.status()["messages"] == 1


def test_prune_by_age_and_size_keeps_outbox_and_local_folders(tmp_path: Path):
    """Retention drops old cached mail first, then the oldest until the size fits; outbox and
    local (imported) messages are never dropped."""
    with Store.open(tmp_path / "c.db", os.urandom(32)) as s:
        s.upsert_folders([Folder("inbox-id", "Inbox")])
        local = s.local_folder("Imported")
        s.put_message(
            local, "old-local", eml("imported long ago"), RemoteItem("x", local, NOW - timedelta(days=400))
        )
        s.outbox_add("<q@x>", os.urandom(50_000), "a@x", ["b@x"], created_at=NOW - timedelta(days=400))
        for i in range(300):
            body = os.urandom(6000).hex()  # incompressible: about 12 kB per message
            item = RemoteItem(f"p{i}", "inbox-id", received_at=NOW - timedelta(days=60) + timedelta(hours=i))
            s.put_message("inbox-id", f"p{i}", eml(f"m{i}", body), item)
        # message i arrived at NOW - 60 days + i hours
        removed_by_age = s.prune(NOW, days=55, max_mb=1000)
        assert removed_by_age == 5 * 24  # hours 0..119 are older than 55 days
        assert s.status()["messages"] == 300 - 120 + 1
        removed_by_size = s.prune(NOW, days=3650, max_mb=1)
        assert removed_by_size > 0
        left = [r["provider_id"] for r in s.list_messages("inbox-id", limit=1000)]
        assert left and all(int(p[1:]) > 120 + removed_by_size - 1 for p in left)  # the oldest went first
        assert Path(s.path).stat().st_size <= 1.5 * 1024 * 1024
        assert s.message_by_provider_id("old-local") is not None
        assert len(s.outbox_list()) == 1
        assert s.check() == []


def test_status_and_check(store: Store):
    """status() is JSON-able and counts things; check() is empty on a healthy cache."""
    import json

    store.put_message("inbox-id", "p1", eml("a", date=NOW - timedelta(days=2)), RemoteItem("p1", "inbox-id"))
    store.put_message("inbox-id", "p2", None, RemoteItem("p2", "inbox-id", received_at=NOW))
    store.outbox_add("<o@x>", b"r", "a@x", ["b@x"])
    st = json.loads(json.dumps(store.status()))
    assert st["messages"] == 2 and st["messages_with_mime"] == 1 and st["folders"] == 2
    assert st["oldest"].startswith("2026-11-26") and st["newest"].startswith("2026-11-28")
    assert st["outbox"]["queued"] == 1 and st["size_bytes"] > 0 and st["schema_version"] == schema.VERSION
    assert store.check() == []
    assert store.count_messages() == 2 and store.count_messages(with_mime=False) == 1


@corpus.needs_corpus
def test_real_corpus_stores_every_message_byte_exact(tmp_path: Path):
    """Every public third-party MIME sample (malformed ones included) is stored and read back exactly."""
    files = sorted(corpus.path("mime-public").rglob("*.eml"))
    assert len(files) > 100
    with Store.open(tmp_path / "c.db", os.urandom(32)) as s:
        folder = s.local_folder("Imported")
        ids = {}
        with s.transaction():
            for f in files:
                ids[f] = s.put_message(folder, f.name + str(len(ids)), f.read_bytes())
        for f, mid in ids.items():
            assert s.raw(mid) == f.read_bytes(), f
        assert s.status()["messages"] == len(files)
        assert s.check() == []


def test_migration_3_moves_json_bags_into_columns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Tried: a cache made with schema 2 (outbox state in the JSON column `extra`, each folder's
    FolderSync and the folder list as JSON settings, written exactly as the previous code wrote them)
    opened by this version: migration 3 carries every value into typed columns and tables, drops the
    bag and the settings, leaves other settings and rows alone, and is recorded as version 3."""
    import json

    from sync import plan

    key, path = os.urandom(32), tmp_path / "c.db"
    monkeypatch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:2])
    monkeypatch.setattr(schema, "VERSION", 2)
    state = plan.FolderSync(baselining=True, window_start=NOW - timedelta(days=30), baseline_at=NOW,
                            last_success_at=None, rounds=4, listed=120, filling=True, fill_link="https://x/next")
    old_rows = [  # (message_id, state, route, extra) as the schema-2 code stored them
        ("<a@x>", "uncertain", None, {"attempt_route": "backup", "uncertain_since": NOW.isoformat(),
                                      "looked_up_at": NOW.isoformat(), "ask_user": "1",
                                      "in_transport_since": NOW.isoformat()}),
        ("<b@x>", "sent", "backup", {"attempt_route": "backup", "sent_copy_id": "AAMkcopy",
                                     "sent_copy": "given up", "transport_wait_since": NOW.isoformat()}),
        ("<c@x>", "sent", "backup", {"sent_copy_started": NOW.isoformat(), "sent_copy_partial": "AAMkhalf"}),
        ("<d@x>", "queued", None, {}),
    ]
    with Store.open(path, key) as s:
        assert s._sql_for_tests("PRAGMA user_version") == [(2,)]
        for mid, st, route, extra in old_rows:
            s._sql_for_tests("INSERT INTO outbox (message_id, state, raw, sender, recipients, created_at, "
                             "route, extra) VALUES (?, ?, x'00', 'a@x', '[\"b@x\"]', ?, ?, ?)",
                             (mid, st, NOW.isoformat(), route, json.dumps(extra, sort_keys=True)))
        settings = (("sync.folder.AAMk/inbox=", state.to_json()),
                    ("sync.folder.f2", plan.FolderSync().to_json()),
                    ("sync.folders", {"at": NOW.isoformat(), "ids": ["AAMk/inbox=", "f2"]}),
                    ("sync_paused", True))
        for k, v in settings:
            s._sql_for_tests("INSERT INTO settings (key, value) VALUES (?, ?)", (k, json.dumps(v)))
    monkeypatch.undo()
    with Store.open(path, key) as s:
        assert s._sql_for_tests("SELECT max(version) FROM schema_migrations") == [(schema.VERSION,)]
        assert not [c for c in s._sql_for_tests("PRAGMA table_info(outbox)") if c[1] == "extra"]
        a, b, c, d = (s.outbox_by_message_id(m) for m, *_ in old_rows)
        assert a is not None and b is not None and c is not None and d is not None
        assert (a.attempt_route, a.uncertain_since, a.looked_up_at, a.ask_user, a.in_transport_since) == (
            Route.BACKUP, NOW, NOW, True, NOW)
        assert (b.sent_copy_id, b.sent_copy_given_up, b.transport_wait_since, b.ask_user) == (
            "AAMkcopy", True, NOW, False)
        assert (c.sent_copy_started, c.sent_copy_partial, c.sent_copy_given_up) == (NOW, "AAMkhalf", False)
        assert d.attempt_route is None and not d.ask_user and d.sent_copy_id is None
        assert s.folder_sync("AAMk/inbox=") == state
        assert s.folder_sync("f2") == plan.FolderSync() and s.folder_sync("never") == plan.FolderSync()
        assert s.sync_folders() == (["AAMk/inbox=", "f2"], NOW)
        assert s._sql_for_tests("SELECT key FROM settings") == [("sync_paused",)]
        assert s.get_setting("sync_paused") is True


def test_readers_do_not_wait_for_a_writer_and_see_only_commits(store: Store):
    """Tried: one thread holds a write transaction open (as the sync thread does while it stores a
    chunk); another thread (health/outbox) reads meanwhile. The reader must finish while the writer
    still holds its transaction (a read-only pooled connection, WAL), must not see the uncommitted
    write, and sees it once committed; the writer reads its own uncommitted writes."""
    import threading

    store.set_setting("mode", "committed")
    inside, release, read = threading.Event(), threading.Event(), threading.Event()
    seen: list[object] = []

    def writer() -> None:
        with store.transaction():
            store.set_setting("mode", "uncommitted")
            seen.append(("writer sees", store.get_setting("mode")))
            inside.set()
            release.wait(60)  # safety net only: the reader sets it

    thread = threading.Thread(target=writer)
    thread.start()
    assert inside.wait(60)

    def reader() -> None:
        seen.append(("reader sees", store.get_setting("mode")))
        read.set()

    threading.Thread(target=reader).start()
    finished_while_writer_held_it = read.wait(60)
    release.set()
    thread.join(60)
    assert finished_while_writer_held_it and not thread.is_alive()
    assert seen == [("writer sees", "uncommitted"), ("reader sees", "committed")]
    assert store.get_setting("mode") == "uncommitted"  # committed now


def test_a_closed_store_refuses_reads(tmp_path: Path):
    """Tried: reading after close() (the pool's read connections are closed with the writer): a
    CacheError, not a crash or a read through a stale connection."""
    s = Store.open(tmp_path / "c.db", os.urandom(32))
    s.set_setting("k", 1)
    assert s.get_setting("k") == 1  # opens a pooled reader
    s.close()
    with pytest.raises(CacheError, match="closed"):
        s.get_setting("k")
