"""The cache at rest and under damage: no plaintext on disk, clear errors that never destroy the
file (wrong key, random bytes, truncation, newer schema), and survival of SIGKILL mid-import."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest

from sync import schema
from sync.errors import CacheCorrupt, CacheError, CacheTooNew, DiskFull, WrongKey
from sync.model import Folder, OutboxState, RemoteItem
from sync.store import Store, cache_path

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under folder (names relative)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def message(subject: str, body: str, *, sender: str = "Ann <ann@example.org>", attachment=None) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "Bob <bob@example.org>"
    msg["Subject"] = subject
    msg["Date"] = "Sat, 28 Nov 2026 12:00:00 +0000"
    msg["Message-ID"] = f"<{secrets.token_hex(8)}@example.org>"
    msg.set_content(body)
    msg.add_alternative(f"<html><body><p>{body}</p></body></html>", subtype="html")
    if attachment:
        msg.add_attachment(attachment[1], maintype="text", subtype="plain", filename=attachment[0])
    return msg.as_bytes()


def filled_cache(path: Path, key: bytes, count: int = 50) -> None:
    with Store.open(path, key) as s:
        s.upsert_folders([Folder("inbox", "Inbox")])
        with s.transaction():
            for i in range(count):
                s.put_message(
                    "inbox", f"p{i}", message(f"subject {i}", f"body {i} " + secrets.token_hex(1500))
                )


def test_no_plaintext_anywhere_under_the_data_folder(tmp_path: Path):
    """Writes a unique marker into every kind of stored text (subject, sender, bodies, attachment name
    and content, placeholder, outbox, events, settings, cursor, mode), then scans every byte of every
    file under the data folder (DB, -wal, -shm, ...) while the cache is open and after it is closed."""
    marker = "Zyxmarker" + secrets.token_hex(6)
    home = tmp_path / "home"
    path = cache_path(home, "ann@example.org")
    s = Store.open(path, os.urandom(32))
    s.upsert_folders([Folder("inbox", f"Inbox {marker}")])
    raw = message(
        f"Subject {marker}",
        f"the body says {marker} twice {marker}",
        sender=f"{marker} Person <{marker.lower()}@example.org>",
        attachment=(f"{marker}.txt", f"attached {marker}".encode()),
    )
    s.put_message("inbox", "p1", raw)
    for i in range(200):  # enough to spill pages through the WAL
        s.put_message("inbox", f"bulk{i}", message(f"bulk {i} {marker}", f"{marker} " * 50))
    s.put_message("inbox", "p2", None, RemoteItem("p2", "inbox", NOW, subject=f"placeholder {marker}"))
    s.outbox_add(f"<{marker}@example.org>", raw, f"{marker}@example.org", [f"{marker}@x.org"], marker)
    s.log_event("note", f"event {marker}", NOW)
    s.set_setting(marker, {"value": marker})
    s.set_cursor("inbox", f"https://graph.example/delta?token={marker}")
    s.save_mode("continuity", NOW, f"reason {marker}", state_json=marker)
    assert len(s.search(marker, limit=500)) == 202  # the marker really went in (and search reads it back)
    needles = {marker.encode(), marker.lower().encode(), marker.encode("utf-16-le"), marker[:12].encode()}

    def scan() -> list[str]:
        files = [p for p in home.rglob("*") if p.is_file()]
        assert any(p.name.endswith("-wal") for p in files) or not s._conn, "expected a WAL while open"
        return [f"{p.name} holds {n!r}" for p in files for n in needles if n in p.read_bytes()]

    assert scan() == []
    s.close()
    assert [p.name for p in home.rglob("*") if p.is_file()]  # the cache file is there
    assert [f"{p.name}" for p in home.rglob("*") if p.is_file() and marker.encode() in p.read_bytes()] == []


def test_wrong_key_is_refused_and_file_untouched(tmp_path: Path):
    """Opening with another key raises WrongKey naming the cause and the fix; the file stays
    byte-identical and still opens with the right key."""
    key, path = os.urandom(32), tmp_path / "c.db"
    filled_cache(path, key)
    before = snapshot(tmp_path)
    with pytest.raises(WrongKey) as info:
        Store.open(path, os.urandom(32))
    text = str(info.value)
    assert "cannot decrypt" in text and "key" in text and "move the file aside" in text
    assert snapshot(tmp_path) == before
    with Store.open(path, key) as s:
        assert s.status()["messages"] == 50 and s.check() == []


@pytest.mark.parametrize("key", [b"", b"short", os.urandom(31), "a" * 32])
def test_malformed_key_is_refused(tmp_path: Path, key):
    """A key that is not 32 raw bytes is refused before anything touches the disk."""
    with pytest.raises(WrongKey, match="32 raw bytes"):
        Store.open(tmp_path / "c.db", key)
    assert not (tmp_path / "c.db").exists()


@pytest.mark.parametrize(
    ("size", "error", "words"),
    [
        (8192, WrongKey, "not a Lifeboat cache"),
        (10_000, CacheCorrupt, "not a whole number of pages"),
        (7, CacheCorrupt, "truncated"),
    ],
)
def test_random_bytes_file(tmp_path: Path, size: int, error: type, words: str):
    """A file of random bytes is refused with a clear error (it cannot be told from a wrong key when
    its size is a whole number of pages, and the message says both) and is left untouched."""
    path = tmp_path / "c.db"
    path.write_bytes(os.urandom(size))
    before = snapshot(tmp_path)
    with pytest.raises(error) as info:
        Store.open(path, os.urandom(32))
    assert words in str(info.value) and "rebuilds it from the provider" in str(info.value)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("cut", ["mid-page", "page-boundary"])
def test_truncated_file(tmp_path: Path, cut: str):
    """A cache cut short (in the middle of a page, or exactly at a page boundary with page 1 intact)
    raises CacheCorrupt saying it was truncated, and is left as it was."""
    key, path = os.urandom(32), tmp_path / "c.db"
    filled_cache(path, key, count=120)
    data = path.read_bytes()
    assert len(data) > 40 * 4096
    keep = len(data) // 2 + (123 if cut == "mid-page" else 0)
    keep -= keep % 4096 if cut == "page-boundary" else 0
    path.write_bytes(data[:keep])
    before = snapshot(tmp_path)
    with pytest.raises(CacheCorrupt) as info:
        Store.open(path, key)
    assert "truncated" in str(info.value) and "move the file aside" in str(info.value)
    assert snapshot(tmp_path) == before


def test_cache_from_a_newer_schema(tmp_path: Path):
    """A cache whose schema version is above ours raises CacheTooNew (upgrade, or move it aside) and
    is not migrated, downgraded or otherwise changed."""
    key, path = os.urandom(32), tmp_path / "c.db"
    filled_cache(path, key, count=5)
    with Store.open(path, key) as s:
        s._sql_for_tests(f"PRAGMA user_version = {schema.VERSION + 1}")
    before = snapshot(tmp_path)
    with pytest.raises(CacheTooNew) as info:
        Store.open(path, key)
    assert "newer Lifeboat" in str(info.value) and "upgrade Lifeboat" in str(info.value)
    assert snapshot(tmp_path) == before


def test_a_folder_where_the_file_should_be(tmp_path: Path):
    """A directory at the cache path is reported as not a file."""
    path = tmp_path / "c.db"
    path.mkdir()
    (path / "x").write_text("x")
    with pytest.raises(CacheCorrupt, match="not a file"):
        Store.open(path, os.urandom(32))


def test_damaged_page_is_found_by_check(tmp_path: Path):
    """Flipping bytes inside a data page is reported by check() (cipher_integrity_check), not ignored."""
    key, path = os.urandom(32), tmp_path / "c.db"
    filled_cache(path, key, count=100)
    data = bytearray(path.read_bytes())
    offset = 20 * 4096 + 100
    data[offset : offset + 16] = bytes(b ^ 0xFF for b in data[offset : offset + 16])
    path.write_bytes(bytes(data))
    with Store.open(path, key) as s:
        problems = s.check()
    assert problems and any("20" in p or "21" in p or "HMAC" in p.upper() for p in problems), problems


def write_mailbox(folder: Path, count: int) -> dict[str, bytes]:
    folder.mkdir()
    out = {}
    for i in range(count):
        raw = message(f"kill test {i}", f"message number {i} " + "lorem ipsum dolor sit amet " * 10)
        (folder / f"{i:05}.eml").write_bytes(raw)
        out["eml:" + hashlib.sha256(raw).hexdigest()[:40]] = raw
    return out


@pytest.mark.slow
def test_sigkill_during_a_large_import_keeps_every_committed_message(tmp_path: Path):
    """Runs `lifeboat import-eml` on 1,000 files in a real process and SIGKILLs it right after a
    transaction commit was logged (so the next batch is in flight). The cache then opens, passes
    cipher_integrity_check and quick_check, and holds every committed message byte-exact and nothing
    half-written; a rerun completes the import."""
    from desktop.cli import IMPORT_BATCH

    sources = write_mailbox(tmp_path / "mail", 1000)
    home = tmp_path / "home"
    env = {**os.environ, "LIFEBOAT_DB_KEY": secrets.token_hex(32), "LIFEBOAT_HOME": str(home)}
    env.pop("LIFEBOAT_CONFIG", None)
    cmd = [sys.executable, "-m", "desktop.cli", "import-eml", str(tmp_path / "mail")]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    log = home / "logs" / "lifeboat.log"
    committed = 0
    deadline = time.monotonic() + 300  # a safety net against hangs, not a performance limit
    try:
        while committed < 3 * IMPORT_BATCH and proc.poll() is None and time.monotonic() < deadline:
            if log.exists():
                found = re.findall(r"committed \d+ messages \((\d+) in all\)", log.read_text())
                committed = int(found[-1]) if found else 0
            time.sleep(0.005)
        assert proc.poll() is None, "the import finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    logged = max(int(n) for n in re.findall(r"\((\d+) in all\)", log.read_text()))
    key = bytes.fromhex(env["LIFEBOAT_DB_KEY"])
    path = cache_path(home, "default")
    with Store.open(path, key) as s:
        assert s.check() == []
        rows = s._sql_for_tests("SELECT id, provider_id FROM messages")
        assert len(rows) >= logged and len(rows) % IMPORT_BATCH == 0  # whole transactions only
        for id_, provider_id in rows:
            assert s.raw(id_) == sources[provider_id]
        assert len(s.search("lorem")) == min(len(rows), 50)
    rerun = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    with Store.open(path, key) as s:
        assert s.status()["messages"] == 1000 and s.check() == []
        assert s.outbox_list([OutboxState.QUEUED]) == []


def _cap_pages(s: Store, spare: int) -> None:
    """Let the file grow by `spare` pages only: SQLite then answers SQLITE_FULL ("database or disk is
    full") exactly as on a full disk (PRAGMA max_page_count; per connection, not stored in the file)."""
    pages = s._sql_for_tests("PRAGMA page_count")[0][0]
    s._sql_for_tests(f"PRAGMA max_page_count = {pages + spare}")


def test_disk_full_mid_transaction_leaves_nothing_open_and_nothing_saved(tmp_path: Path):
    """Tried: a transaction of many writes (nested store calls: savepoints) runs out of space half
    way. SQLite rolls the whole transaction back itself (in_transaction turns false); the store must
    not try to roll back a savepoint or transaction that no longer exists (which used to replace the
    disk-full error with "no such savepoint"), must report a CacheError that names the full disk,
    keep none of the transaction's writes, and work again once space is back."""
    with Store.open(tmp_path / "c.db", os.urandom(32)) as s:
        s.set_setting("before", 1)
        _cap_pages(s, 20)
        with pytest.raises(CacheError, match="disk is full"), s.transaction():
            for i in range(100):  # ~400 KB of settings: far past 20 pages
                s.set_setting(f"k{i}", secrets.token_hex(2000))
        assert not s._conn.in_transaction
        assert s.get_setting("k0") is None and s.get_setting("before") == 1
        s._sql_for_tests("PRAGMA max_page_count = 1073741823")
        s.set_setting("after", 2)
        assert s.get_setting("after") == 2


def test_disk_full_is_its_own_error_and_keeps_the_cache(tmp_path: Path):
    """Tried (unit level; tests/test_disk_full.py fills a real tmpfs): the file may not grow while a
    transaction stores ~400 KB, and while one statement outside any transaction stores ~200 KB. Each is a
    DiskFull naming the cache's folder and the free space, whose fix keeps the cache (never CacheError's
    "move it aside or delete it": that would throw away imported mail and the outbox); the rows committed
    before stay and the file passes its integrity checks."""
    path = tmp_path / "cache" / "c.db"
    with Store.open(path, os.urandom(32)) as s:
        s.set_setting("before", 1)
        _cap_pages(s, 20)
        with pytest.raises(DiskFull) as in_transaction, s.transaction():
            for i in range(100):
                s.set_setting(f"k{i}", secrets.token_hex(2000))
        with pytest.raises(DiskFull) as alone:
            s.set_setting("big", secrets.token_hex(100_000))
        for exc in (in_transaction.value, alone.value):
            assert exc.folder == str(path.parent) and exc.free_bytes > 0
            assert str(exc).startswith(f"cannot write the cache in {path.parent}: the disk is full (")
            assert " free); " in str(exc) and "nothing of" in str(exc)
            assert "delete" not in exc.fix and "aside" not in exc.fix and "free some space" in exc.fix
        assert s.get_setting("before") == 1 and s.get_setting("k0") is None and s.get_setting("big") is None
        assert s.check() == []


def test_a_caller_that_swallows_disk_full_cannot_commit_a_rolled_back_transaction(tmp_path: Path):
    """Tried: the disk fills inside a transaction and the caller catches the error and carries on.
    SQLite has already rolled everything back, so leaving the block must not look like a commit: the
    store raises a CacheError saying nothing was saved (not a silent success, not "cannot commit - no
    transaction is active"), and the writes made before and after the failure are all absent."""
    with Store.open(tmp_path / "c.db", os.urandom(32)) as s:
        _cap_pages(s, 20)
        with pytest.raises(CacheError, match="rolled the transaction back"), s.transaction():
            s.set_setting("first", "small")
            with contextlib.suppress(CacheError):
                for i in range(100):
                    s.set_setting(f"k{i}", secrets.token_hex(2000))
        assert not s._conn.in_transaction
        assert s.get_setting("first") is None and s.get_setting("k0") is None


def test_a_failed_commit_is_rolled_back_and_reported(tmp_path: Path):
    """Tried: a COMMIT that SQLite refuses (a deferred foreign-key violation is checked at COMMIT and,
    per SQLite, leaves the transaction open). The store must roll back rather than leave the
    connection inside a transaction (every later write would then silently join it), and raise a
    CacheError that says the commit failed and nothing was saved; the next write works."""
    with Store.open(tmp_path / "c.db", os.urandom(32)) as s:
        with pytest.raises(CacheError, match=r"could not commit.*nothing of it was saved"), s.transaction():
            s.set_setting("lost", 1)
            s._sql_for_tests("PRAGMA defer_foreign_keys = ON")
            s._sql_for_tests("INSERT INTO attachments (message, idx, filename, content_type, size) "
                             "VALUES (999, 0, 'a.txt', 'text/plain', 1)")  # no message 999
        assert not s._conn.in_transaction
        assert s.get_setting("lost") is None
        assert s._sql_for_tests("SELECT count(*) FROM attachments") == [(0,)]
        s.set_setting("next", 2)
        assert s.get_setting("next") == 2
