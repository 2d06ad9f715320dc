"""The encrypted local cache: one SQLCipher 4 file per account, the only code that knows the key.

`Store` is the cache's one door: a named method for every read and write of folders, messages (raw
MIME zlib-compressed, summary columns, attachment rows, FTS5 index), sync cursors and per-folder sync
state, the outbox, failover state with its event log, and settings; no caller sees a connection.
It owns one keyed writer connection (WAL, temp storage in memory) behind its lock, and a small pool
of read-only connections so that other threads' reads never wait for a write (docs/architecture.md).
Writes run in `transaction()` (BEGIN IMMEDIATE, nested: savepoints; careful about transactions SQLite
rolled back itself and about failed COMMITs); a file that cannot be opened (wrong key, damaged,
newer schema) is never modified. sqlite-utils works inside: migrations, upserts, `rows_where` reads.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import sqlcipher3
import sqlcipher3.dbapi2

# sqlite-utils must see sqlcipher3's exception classes (FACTS.md): alias it before importing.
sys.modules.setdefault("pysqlite3", sqlcipher3)
sys.modules.setdefault("pysqlite3.dbapi2", sqlcipher3.dbapi2)
import sqlite_utils  # noqa: E402

from sync import schema  # noqa: E402
from sync.errors import (  # noqa: E402
    BadQuery,
    CacheCorrupt,
    CacheError,
    DiskFull,
    LifeboatError,
    MessageBad,
    WrongKey,
)
from sync.model import Folder, OutboxItem, OutboxState, RemoteItem, Route  # noqa: E402
from sync.private_files import private_database, private_dir  # noqa: E402

if TYPE_CHECKING:
    from sync.mime import Parsed
    from sync.plan import FolderSync

PAGE_SIZE = 4096  # SQLCipher 4's default page size
BODY_CAP = 200_000  # characters of body text indexed per message
# search() ranks (bm25) only the newest RANK_WINDOW matches: bounded work for very common words
RANK_WINDOW = 300
READERS = 4  # read-only connections per Store (health, outbox, sync, commands threads; the window's)
READER_CACHE_KB = -8192  # 8 MB of decrypted pages each (the writer keeps 32 MB)
LOCAL_PREFIX = "local:"
SUFFIXES = ("", "-wal", "-shm", "-journal")
FTS_COLUMNS = "rowid, subject, sender, to_addrs, cc_addrs, body"
# an I/O error while the file system has less than this left is taken for a full disk (SQLite reports
# ENOSPC as SQLITE_IOERR when it cannot create or grow the -wal / -shm files, SQLITE_FULL otherwise)
FULL_BELOW = 1024 * 1024
SQLITE_IOERR, SQLITE_FULL = 10, 13
FLAG_COLUMNS = (
    "has_attachments", "has_calendar", "is_signed", "is_encrypted", "parse_ok", "has_mime", "inline",
)

T = TypeVar("T")


def cache_path(home: Path, account: str) -> Path:
    """The cache file of one account under the data folder (one file per account)."""
    slug = "".join(c if c.isalnum() or c in "._@-" else "_" for c in account.strip().lower()) or "default"
    return Path(home) / "cache" / f"{slug.lstrip('.')}.lifeboat.db"


def _iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).isoformat(timespec="microseconds")


def _dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _now() -> datetime:
    return datetime.now(UTC)


def free_bytes(path: Path) -> int:
    """Bytes the file system holding `path` (or its nearest existing parent) has left for this user."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return int(shutil.disk_usage(path).free)
    except OSError:
        return 0


def size_text(n: int) -> str:
    """1536 -> "1.5 KB": a size for people (powers of 1024)."""
    value, unit = float(n), "bytes"
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            break
        value /= 1024
    return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"


def disk_full(path: Path, what: str = "") -> DiskFull:
    """The DiskFull for the cache at `path`: its folder and the free space now, then `what` failed."""
    folder, free = Path(path).parent, free_bytes(Path(path).parent)
    message = f"cannot write the cache in {folder}: the disk is full ({size_text(free)} free)"
    message += f"; {what}" if what else ""
    return DiskFull(message, folder=str(folder), free_bytes=free)


def _is_disk_full(exc: sqlcipher3.DatabaseError, path: Path) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    text = str(exc)
    if primary == SQLITE_FULL or "disk is full" in text:
        return True
    io_error = primary == SQLITE_IOERR or "disk I/O error" in text
    return io_error and free_bytes(Path(path).parent) < FULL_BELOW


def _translate(exc: sqlcipher3.DatabaseError, path: Path) -> LifeboatError:
    text = str(exc)
    if _is_disk_full(exc, path):
        return disk_full(path, "nothing of the write that failed was saved (SQLite rolled it back)")
    if "readonly" in text:
        return CacheError(f"cannot write {path}: it is read-only", fix="check the file's permissions")
    if isinstance(exc, sqlcipher3.OperationalError) and "locked" in text:
        return CacheError(
            f"{path} is busy (locked by another process)", fix="close the other Lifeboat and retry"
        )
    return CacheCorrupt(f"{path} is damaged ({text})")


def _guard(method: Callable[..., T]) -> Callable[..., T]:
    """Translate SQLCipher's damage errors (malformed, not a database, I/O) into sync.errors."""

    @wraps(method)
    def wrapper(self: Store, *args: Any, **kwargs: Any) -> T:
        try:
            return method(self, *args, **kwargs)
        except (sqlcipher3.IntegrityError, sqlcipher3.ProgrammingError, sqlcipher3.InterfaceError):
            raise
        except sqlcipher3.OperationalError as exc:
            text = str(exc)
            if any(w in text for w in ("disk", "locked", "readonly", "malformed", "not a database")):
                raise _translate(exc, self.path) from exc
            raise
        except sqlcipher3.DatabaseError as exc:
            raise _translate(exc, self.path) from exc

    return wrapper


def _addresses(items: Iterable[Any]) -> str:
    return ", ".join(str(a) for a in items)


class Store:
    """One open cache. Use `Store.open(path, key)`; close it (or use `with`)."""

    def __init__(self, conn: sqlcipher3.Connection, path: Path, key: bytes | None = None) -> None:
        self._conn = conn  # the writer: every write, and reads inside a transaction
        self.path = path
        self._key = key
        self._lock = threading.RLock()  # held by the writer's user (a transaction, a maintenance step)
        self._depth = 0
        self._owner: int | None = None  # the thread inside transaction()
        self._utils: sqlite_utils.Database | None = None
        self._pool_lock = threading.Lock()
        self._idle: list[sqlite_utils.Database] = []  # read connections not in use
        self._readers = 0  # read connections open (idle or in use)

    # ------------------------------------------------------------------ opening and closing

    @classmethod
    def open(cls, path: Path, key: bytes) -> Store:
        """Open (or create) the cache at `path` with a raw 32-byte key.

        Raises WrongKey, CacheCorrupt or CacheTooNew, and then leaves the file exactly as it was.
        """
        if not isinstance(key, bytes | bytearray) or len(key) != 32:
            raise WrongKey(
                f"the key for {path} must be 32 raw bytes", fix="check LIFEBOAT_DB_KEY (64 hex characters)"
            )
        return cls._open(Path(path), bytes(key))

    @classmethod
    def _open_unencrypted(cls, path: Path) -> Store:
        """Plain SQLite with the same schema: ONLY for benchmarks that measure the cost of encryption."""
        return cls._open(Path(path), None)

    @classmethod
    def _open(cls, path: Path, key: bytes | None) -> Store:
        private_dir(path.parent)
        existed = path.exists() and path.stat().st_size > 0
        if existed and not path.is_file():
            raise CacheCorrupt(f"{path} is not a file")
        if not path.exists() or path.is_file():
            private_database(path)  # 0600 before SQLite opens it: its -wal and -shm get the same mode
        conn = sqlcipher3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
        try:
            conn.execute("PRAGMA cipher_log_level = NONE")  # errors reach the caller as exceptions
            if key is not None:
                conn.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
            cls._verify(conn, path, existed)
            if schema.check_version(conn, path) == 0:
                conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # before any table: prune() can shrink
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")  # WAL: durable across process crashes
            conn.execute("PRAGMA temp_store = MEMORY")
            conn.execute("PRAGMA cache_size = -32768")  # 32 MB of decrypted pages: fewer re-decryptions
            conn.execute("PRAGMA foreign_keys = ON")
            schema.migrate(conn, path, sqlite_utils.Database(conn, execute_plugins=False))
        except sqlcipher3.DatabaseError as exc:
            conn.close()
            raise _translate(exc, path) from exc
        except BaseException:
            conn.close()
            raise
        return cls(conn, path, key)

    @staticmethod
    def _verify(conn: sqlcipher3.Connection, path: Path, existed: bool) -> None:
        """Read the schema (this is where a wrong key shows) and look for truncation; writes nothing."""
        size = path.stat().st_size if existed else 0
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlcipher3.DatabaseError as exc:
            if "not a database" not in str(exc):
                raise
            if size % PAGE_SIZE:
                raise CacheCorrupt(
                    f"{path} is damaged: its size ({size} bytes) is not a whole number of pages, so it "
                    "was truncated or is not a Lifeboat cache"
                ) from exc
            raise WrongKey(
                f"cannot decrypt {path}: the key does not open it (the key in the keystore or "
                "LIFEBOAT_DB_KEY was replaced, or the file is damaged or not a Lifeboat cache)"
            ) from exc
        if not existed:
            return
        wal = Path(f"{path}-wal")
        if wal.exists() and wal.stat().st_size > 0:
            return  # pages may live in the WAL until the next checkpoint
        pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
        page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        if size < pages * page_size:
            raise CacheCorrupt(
                f"{path} is damaged: it holds {size} bytes but its header promises {pages * page_size} "
                "(the file was truncated)"
            )

    def close(self) -> None:
        with self._lock:
            with self._pool_lock:
                idle, self._idle, self._readers = self._idle, [], READERS + 1  # no new readers
            for db in idle:  # readers first, so the writer's close can checkpoint and drop the WAL
                db.conn.close()
            if self._conn is not None:
                self._conn.close()
                self._conn = None  # type: ignore[assignment]

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def _db(self) -> sqlite_utils.Database:
        """sqlite-utils over the keyed connection: used inside the store only (hold the lock)."""
        if self._utils is None:
            self._utils = sqlite_utils.Database(self._conn, execute_plugins=False)
        return self._utils

    # ------------------------------------------------------------------ plumbing

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction (BEGIN IMMEDIATE ... COMMIT); nested calls become SAVEPOINTs.

        As careful as Python's sqlite3 / sqlite-utils' `atomic()`: an error rolls back (the savepoint
        only, when nested); a transaction SQLite already rolled back on its own (SQLITE_FULL, I/O
        errors: `in_transaction` is then false) is not rolled back twice and is never reported as
        committed (CacheError); a failed COMMIT is rolled back, so no transaction stays open, and
        raised as a CacheError that says nothing was saved.
        """
        with self._lock:
            conn = self._conn
            if conn is None:
                raise CacheError(f"{self.path} is closed")
            if self._depth:
                yield from self._savepoint(conn)
                return
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlcipher3.DatabaseError as exc:
                raise _translate(exc, self.path) from exc
            self._depth, self._owner = 1, threading.get_ident()
            try:
                yield
            except BaseException:
                self._rollback(conn)
                raise
            else:
                self._commit(conn)
            finally:
                self._depth, self._owner = 0, None

    def _savepoint(self, conn: sqlcipher3.Connection) -> Iterator[None]:
        name = f"sp{self._depth}"
        conn.execute(f"SAVEPOINT {name}")
        self._depth += 1
        try:
            yield
        except BaseException:
            if conn.in_transaction:  # else SQLite has rolled the whole transaction back already
                conn.execute(f"ROLLBACK TO {name}")
                conn.execute(f"RELEASE {name}")
            raise
        else:
            if not conn.in_transaction:
                if free_bytes(self.path.parent) < FULL_BELOW:
                    raise disk_full(self.path, "SQLite rolled the transaction back; nothing of it was saved")
                raise CacheError(f"cannot write {self.path}: SQLite rolled the transaction back "
                                 "(nothing of it was saved)")
            conn.execute(f"RELEASE {name}")
        finally:
            self._depth -= 1

    def _rollback(self, conn: sqlcipher3.Connection) -> None:
        if not conn.in_transaction:
            return  # SQLite rolled back on its own (disk full, I/O error): nothing left to undo
        with suppress(sqlcipher3.DatabaseError):  # the first error is the one to report
            conn.execute("ROLLBACK")

    def _commit(self, conn: sqlcipher3.Connection) -> None:
        if not conn.in_transaction:
            if free_bytes(self.path.parent) < FULL_BELOW:
                raise disk_full(self.path, "SQLite rolled the transaction back; nothing of it was saved")
            raise CacheError(
                f"cannot write {self.path}: SQLite rolled the transaction back (disk full or I/O "
                "error); nothing of it was saved", fix="free some disk space and retry")
        try:
            conn.execute("COMMIT")
        except sqlcipher3.DatabaseError as exc:
            self._rollback(conn)  # a failed COMMIT may leave the transaction open (SQLite's docs)
            known = _translate(exc, self.path)
            if isinstance(known, DiskFull):
                raise disk_full(self.path, "the commit failed and was rolled back; nothing of it was "
                                "saved") from exc
            raise CacheError(
                f"could not commit to {self.path} ({exc}); the transaction was rolled back, nothing of "
                "it was saved", fix=known.fix if type(known) is CacheError else "retry; if it fails "
                "again run `lifeboat doctor`") from exc

    # ------------------------------------------------------------------ reading

    @contextmanager
    def _read(self) -> Iterator[sqlite_utils.Database]:
        """sqlite-utils over a connection to read with. Inside its own transaction a thread reads
        through the writer (it must see what it wrote); any other reader takes one of at most READERS
        read-only connections (WAL: they read the last commit and never wait for the writer), and
        only when all are busy (or one cannot be opened) waits for the writer's lock."""
        if self._depth and self._owner == threading.get_ident():
            with self._lock:
                yield self._db
            return
        reader = self._take_reader()
        if reader is None:
            with self._lock:
                if self._conn is None:
                    raise CacheError(f"{self.path} is closed")
                yield self._db
            return
        try:
            yield reader
        finally:
            with self._pool_lock:
                if self._readers <= READERS:
                    self._idle.append(reader)
                    reader = None
            if reader is not None:  # the store was closed meanwhile
                reader.conn.close()

    def _take_reader(self) -> sqlite_utils.Database | None:
        with self._pool_lock:
            if self._idle:
                return self._idle.pop()
            if self._readers >= READERS:
                return None
            self._readers += 1
        try:
            conn = sqlcipher3.connect(str(self.path), isolation_level=None, check_same_thread=False,
                                      timeout=30)
            try:
                conn.execute("PRAGMA cipher_log_level = NONE")
                if self._key is not None:
                    conn.execute(f"PRAGMA key = \"x'{self._key.hex()}'\"")
                conn.execute("PRAGMA query_only = ON")
                conn.execute("PRAGMA temp_store = MEMORY")
                conn.execute(f"PRAGMA cache_size = {READER_CACHE_KB}")
                return sqlite_utils.Database(conn, execute_plugins=False)
            except BaseException:
                conn.close()
                raise
        except sqlcipher3.DatabaseError:
            with self._pool_lock:
                self._readers -= 1
            return None  # the caller reads through the writer, whose errors say what is wrong

    def _rows(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        with self._read() as db:
            cur = db.execute(sql, tuple(params))
            names = [d[0] for d in cur.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def _value(self, sql: str, params: Iterable[Any] = ()) -> Any:
        with self._read() as db:
            row = db.execute(sql, tuple(params)).fetchone()
        return None if row is None else row[0]

    # ------------------------------------------------------------------ folders

    @_guard
    def upsert_folders(self, folders: Iterable[Folder]) -> None:
        rows = [{"provider_id": f.provider_id, "name": f.name, "parent_id": f.parent_id,
                 "well_known": f.well_known, "total": f.total} for f in folders]
        with self.transaction():
            self._db.table("folders").upsert_all(rows, pk="provider_id")  # `local` stays as it is

    @_guard
    def folders(self) -> list[dict[str, Any]]:
        rows = self._rows(
            """SELECT f.provider_id, f.name, f.parent_id, f.well_known, f.total, f.local,
                      count(m.id) AS count, coalesce(sum(m.is_read = 0), 0) AS unread
               FROM folders f LEFT JOIN messages m ON m.folder_id = f.provider_id
               GROUP BY f.provider_id ORDER BY f.local, f.name"""
        )
        for row in rows:
            row["local"] = bool(row["local"])
        return rows

    @_guard
    def local_folder(self, name: str) -> str:
        """The provider_id of a folder that lives only in this cache (created if missing)."""
        provider_id = LOCAL_PREFIX + name
        with self.transaction():
            self._conn.execute(
                "INSERT INTO folders (provider_id, name, local) VALUES (?, ?, 1) ON CONFLICT DO NOTHING",
                (provider_id, name),
            )
        return provider_id

    @_guard
    def remove_folder(self, provider_id: str) -> int:
        """Forget a folder and its cached messages; returns how many messages went."""
        with self.transaction():
            found = self._conn.execute("SELECT id FROM messages WHERE folder_id = ?", (provider_id,))
            ids = [r[0] for r in found]
            self._delete_ids(ids)
            self._conn.execute("DELETE FROM folders WHERE provider_id = ?", (provider_id,))
            self._conn.execute("DELETE FROM cursors WHERE folder_id = ?", (provider_id,))
        return len(ids)

    # ------------------------------------------------------------------ messages

    @_guard
    def put_message(
        self, folder_id: str, provider_id: str, raw: bytes | None, item: RemoteItem | None = None
    ) -> int:
        """Upsert one message by provider_id; returns its local id.

        With raw MIME: parse it, keep it compressed, fill the summary, attachments and search index.
        Without (raw=None): a summary-only placeholder from `item` (an existing raw copy is kept).
        """
        if raw is None:
            if item is None:
                raise MessageBad(f"message {provider_id}: neither raw MIME nor a summary was given")
            with self.transaction():
                return self._put_placeholder(folder_id, provider_id, item)
        from sync import mime

        parsed = mime.parse(raw)  # outside the write lock: parsing is the slow part
        with self.transaction():
            return self._put_parsed(folder_id, provider_id, raw, parsed, item)

    def _put_parsed(
        self, folder_id: str, provider_id: str, raw: bytes, parsed: Parsed, item: RemoteItem | None
    ) -> int:
        s = parsed.summary
        now = _now()
        received = item.received_at if item is not None else None
        fallback_sender = (item.sender if item is not None else None) or ""
        row = (
            provider_id,
            folder_id,
            s.message_id or (item.message_id if item else None),
            s.subject or "",
            str(s.sender) if s.sender else fallback_sender,
            s.sender.email if s.sender else parseaddr(fallback_sender)[1],
            _addresses(s.to),
            _addresses(s.cc),
            _iso(received or s.date or now),
            _iso(s.date),
            s.in_reply_to,
            " ".join(s.references),
            len(raw),
            None if item is None or item.is_read is None else int(item.is_read),
            int(s.has_attachments),
            int(s.has_calendar),
            int(s.is_signed),
            int(s.is_encrypted),
            int(s.parse_ok),
            "\n".join(s.problems),
            item.change_key if item else None,
            zlib.compress(raw, 6),
            _iso(now),
        )
        message = self._conn.execute(
            """INSERT INTO messages (provider_id, folder_id, message_id, subject, sender, sender_email,
                 to_addrs, cc_addrs, date, sent_date, in_reply_to, refs, size, is_read, has_attachments,
                 has_calendar, is_signed, is_encrypted, parse_ok, problems, change_key, raw, stored_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (provider_id) DO UPDATE SET folder_id = excluded.folder_id,
                 message_id = excluded.message_id, subject = excluded.subject, sender = excluded.sender,
                 sender_email = excluded.sender_email, to_addrs = excluded.to_addrs,
                 cc_addrs = excluded.cc_addrs,
                 date = CASE WHEN ?24 IS NOT NULL THEN excluded.date
                             ELSE coalesce(messages.date, excluded.date) END,
                 sent_date = excluded.sent_date, in_reply_to = excluded.in_reply_to, refs = excluded.refs,
                 size = excluded.size, is_read = coalesce(excluded.is_read, messages.is_read),
                 has_attachments = excluded.has_attachments, has_calendar = excluded.has_calendar,
                 is_signed = excluded.is_signed, is_encrypted = excluded.is_encrypted,
                 parse_ok = excluded.parse_ok, problems = excluded.problems,
                 change_key = coalesce(excluded.change_key, messages.change_key), raw = excluded.raw,
                 stored_at = excluded.stored_at
               RETURNING id""",
            (*row, 1 if received else None),
        ).fetchone()[0]
        self._conn.execute("DELETE FROM messages_fts WHERE rowid = ?", (message,))
        self._conn.execute(
            f"INSERT INTO messages_fts ({FTS_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
            (message, row[3], row[4], row[6], row[7], parsed.text[:BODY_CAP]),
        )
        self._conn.execute("DELETE FROM attachments WHERE message = ?", (message,))
        self._conn.executemany(
            """INSERT INTO attachments (message, idx, filename, content_type, size, content_id, inline)
               VALUES (?, ?, ?, ?, ?, ?, ?)""",
            [
                (message, a.index, a.filename, a.content_type, a.size, a.content_id, int(a.inline))
                for a in s.attachments
            ],
        )
        return int(message)

    def _put_placeholder(self, folder_id: str, provider_id: str, item: RemoteItem) -> int:
        found = self._conn.execute(
            "SELECT id, raw IS NOT NULL FROM messages WHERE provider_id = ?", (provider_id,)
        ).fetchone()
        if found and found[1]:  # the full copy stays; only what the feed knows better changes
            self._conn.execute(
                """UPDATE messages SET folder_id = ?, is_read = coalesce(?, is_read),
                     change_key = coalesce(?, change_key), date = coalesce(?, date) WHERE id = ?""",
                (folder_id, None if item.is_read is None else int(item.is_read), item.change_key,
                 _iso(item.received_at), found[0]),
            )
            return int(found[0])
        sender = item.sender or ""
        values = (
            folder_id, item.message_id, item.subject or "", sender, parseaddr(sender)[1],
            _iso(item.received_at or _now()), None if item.is_read is None else int(item.is_read),
            item.change_key,
        )
        if found:
            message = int(found[0])
            self._conn.execute(
                """UPDATE messages SET folder_id = ?, message_id = ?, subject = ?, sender = ?,
                     sender_email = ?, date = ?, is_read = ?, change_key = ? WHERE id = ?""",
                (*values, message),
            )
            self._conn.execute("DELETE FROM messages_fts WHERE rowid = ?", (message,))
        else:
            message = int(
                self._conn.execute(
                    """INSERT INTO messages (folder_id, message_id, subject, sender, sender_email, date,
                         is_read, change_key, provider_id, stored_at)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id""",
                    (*values, provider_id, _iso(_now())),
                ).fetchone()[0]
            )
        self._conn.execute(
            f"INSERT INTO messages_fts ({FTS_COLUMNS}) VALUES (?, ?, ?, '', '', '')",
            (message, item.subject or "", sender),
        )
        return message

    @_guard
    def missing_mime(self, folder_id: str | None = None, limit: int = 100) -> list[str]:
        """provider_ids of placeholders whose raw MIME has not been fetched yet."""
        if folder_id is None:
            sql, params = "SELECT provider_id FROM messages WHERE raw IS NULL ORDER BY id LIMIT ?", (limit,)
        else:
            sql = "SELECT provider_id FROM messages WHERE raw IS NULL AND folder_id = ? ORDER BY id LIMIT ?"
            params = (folder_id, limit)  # type: ignore[assignment]
        with self._read() as db:
            return [r[0] for r in db.execute(sql, params)]

    @_guard
    def missing_mime_places(self, limit: int = 100) -> list[tuple[str, str]]:
        """(provider_id, folder_id) of the oldest placeholders whose raw MIME has not been fetched."""
        with self._read() as db:
            rows = db["messages"].rows_where(
                "raw IS NULL", select="provider_id, folder_id", order_by="id", limit=limit)
            return [(str(r["provider_id"]), str(r["folder_id"])) for r in rows]

    @_guard
    def missing_mime_counts(self) -> dict[str, int]:
        """How many placeholders (raw MIME not fetched yet) each folder holds (folders with none left out)."""
        with self._read() as db:
            return {str(r["folder_id"]): int(r["n"]) for r in db.query(
                "SELECT folder_id, count(*) AS n FROM messages WHERE raw IS NULL GROUP BY folder_id")}

    @_guard
    def message_places(self, folder_id: str | None = None) -> list[dict[str, Any]]:
        """Every cached message (of one folder): {id, provider_id, folder_id, date, has_mime}, by id."""
        where, params = ("folder_id = ?", [folder_id]) if folder_id is not None else (None, [])
        with self._read() as db:
            return [{**r, "has_mime": bool(r["has_mime"])} for r in db["messages"].rows_where(
                where, params, select="id, provider_id, folder_id, date, raw IS NOT NULL AS has_mime",
                order_by="id")]

    @_guard
    def count_messages(self, folder_id: str | None = None, *, with_mime: bool | None = None) -> int:
        """Messages cached (in one folder); with_mime True/False: only those with/without raw MIME."""
        where, params = [], []
        if folder_id is not None:
            where.append("folder_id = ?")
            params.append(folder_id)
        if with_mime is not None:
            where.append("raw IS NOT NULL" if with_mime else "raw IS NULL")
        with self._read() as db:
            return int(db["messages"].count_where(" AND ".join(where) or "1", params))

    @_guard
    def folders_of(self, provider_ids: Iterable[str]) -> dict[str, str]:
        """provider_id -> the folder it is cached in, for those of `provider_ids` that are cached."""
        wanted = list(provider_ids)
        out: dict[str, str] = {}
        with self._read() as db:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = db["messages"].rows_where(
                    f"provider_id IN ({marks})", chunk, select="provider_id, folder_id")
                out.update({str(r["provider_id"]): str(r["folder_id"]) for r in rows})
        return out

    def _delete_ids(self, ids: list[int]) -> None:
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            self._conn.execute(f"DELETE FROM messages_fts WHERE rowid IN ({marks})", chunk)
            self._conn.execute(f"DELETE FROM messages WHERE id IN ({marks})", chunk)

    @_guard
    def remove_messages(self, provider_ids: Iterable[str]) -> int:
        """Forget messages by provider_id (unknown ids are ignored); returns how many went."""
        wanted = list(provider_ids)
        with self.transaction():
            ids: list[int] = []
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                found = self._conn.execute(f"SELECT id FROM messages WHERE provider_id IN ({marks})", chunk)
                ids += [r[0] for r in found]
            self._delete_ids(ids)
        return len(ids)

    @_guard
    def move_message(self, provider_id: str, folder_id: str) -> None:
        with self.transaction():
            self._conn.execute(
                "UPDATE messages SET folder_id = ? WHERE provider_id = ?", (folder_id, provider_id)
            )

    @_guard
    def set_read(self, provider_id: str, is_read: bool) -> None:
        with self.transaction():
            self._conn.execute(
                "UPDATE messages SET is_read = ? WHERE provider_id = ?", (int(is_read), provider_id)
            )

    _LIST_COLUMNS = (
        "m.id, m.provider_id, m.folder_id, m.message_id, m.subject, m.sender, m.sender_email, m.date, "
        "m.is_read, m.has_attachments, m.size, m.raw IS NOT NULL AS has_mime"
    )

    @staticmethod
    def _clean(row: dict[str, Any]) -> dict[str, Any]:
        for name in ("is_read",):
            if name in row and row[name] is not None:
                row[name] = bool(row[name])
        for name in FLAG_COLUMNS:
            if name in row:
                row[name] = bool(row[name])
        if "problems" in row:
            row["problems"] = [p for p in row["problems"].split("\n") if p]
        return row

    @_guard
    def message(self, id: int) -> dict[str, Any] | None:
        """Summary columns, folder name, flags and the attachments list of one message (no body)."""
        rows = self._rows(
            """SELECT m.id, m.provider_id, m.folder_id, f.name AS folder, m.message_id, m.subject, m.sender,
                      m.sender_email, m.to_addrs, m.cc_addrs, m.date, m.sent_date, m.in_reply_to, m.refs,
                      m.size, m.is_read, m.has_attachments, m.has_calendar, m.is_signed, m.is_encrypted,
                      m.parse_ok, m.problems, m.change_key, m.stored_at, m.raw IS NOT NULL AS has_mime
               FROM messages m LEFT JOIN folders f ON f.provider_id = m.folder_id WHERE m.id = ?""",
            (id,),
        )
        if not rows:
            return None
        row = self._clean(rows[0])
        row["attachments"] = [
            self._clean(a)
            for a in self._rows(
                """SELECT idx AS "index", filename, content_type, size, content_id, inline
                   FROM attachments WHERE message = ? ORDER BY idx""",
                (id,),
            )
        ]
        return row

    @_guard
    def message_by_provider_id(self, provider_id: str) -> dict[str, Any] | None:
        found = self._value("SELECT id FROM messages WHERE provider_id = ?", (provider_id,))
        return None if found is None else self.message(int(found))

    @_guard
    def raw(self, id: int) -> bytes | None:
        blob = self._value("SELECT raw FROM messages WHERE id = ?", (id,))
        return None if blob is None else zlib.decompress(blob)

    def parsed(self, id: int) -> Parsed | None:
        raw = self.raw(id)
        if raw is None:
            return None
        from sync import mime

        return mime.parse(raw)

    @_guard
    def list_messages(self, folder_id: str, offset: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        """One page of a folder, newest first."""
        return [
            self._clean(r)
            for r in self._rows(
                f"""SELECT {self._LIST_COLUMNS} FROM messages m WHERE m.folder_id = ?
                    ORDER BY m.date DESC, m.id DESC LIMIT ? OFFSET ?""",
                (folder_id, limit, offset),
            )
        ]

    @_guard
    def search(self, query: str, limit: int = 50, folder_id: str | None = None, *,
               prefix_last: bool = False) -> list[dict[str, Any]]:
        """A query in the search language (sync.query: words, phrases, OR, NOT, prefix*, field:word) over
        subject, sender, to, cc and body text: the best (bm25) of the newest RANK_WINDOW matches first,
        so a very common word costs bounded time. prefix_last: the last word also matches as a prefix
        (search as you type). BadQuery only when the query holds nothing to search for."""
        from sync.query import to_fts5

        if not query.strip():
            raise BadQuery("the search query is empty")
        fts = to_fts5(query, prefix_last=prefix_last)
        where, params = "1", []
        if folder_id is not None:
            where, params = "m.folder_id = ?", [folder_id]
        try:
            return [
                self._clean(r)
                for r in self._rows(
                    f"""SELECT {self._LIST_COLUMNS}
                        FROM (SELECT messages_fts.rowid AS rowid, messages_fts.rank AS rank
                              FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid
                              WHERE messages_fts MATCH ? AND {where}
                              ORDER BY messages_fts.rowid DESC LIMIT ?) AS f
                        JOIN messages m ON m.id = f.rowid
                        ORDER BY f.rank, m.id DESC LIMIT ?""",
                    (fts, *params, RANK_WINDOW, limit),
                )
            ]
        except sqlcipher3.OperationalError as exc:
            text = str(exc)
            if any(word in text for word in ("locked", "disk", "malformed", "not a database")):
                raise  # not the query's fault: _guard translates it
            raise BadQuery(f"cannot search for {query!r}: {text}") from exc

    # ------------------------------------------------------------------ sync plans

    @_guard
    def apply(self, actions: Iterable[Any]) -> None:
        """Execute sync.plan actions in ONE transaction (a page's items together with its cursor)."""
        from sync import plan

        with self.transaction():
            for a in actions:
                if isinstance(a, plan.UpsertSummary):
                    self._put_placeholder(a.folder_id, a.item.provider_id, a.item)
                elif isinstance(a, plan.RemoveMessage):  # only if it still sits in that folder
                    found = self._conn.execute(
                        "SELECT id FROM messages WHERE provider_id = ? AND folder_id = ?",
                        (a.provider_id, a.folder_id))
                    self._delete_ids([r[0] for r in found])
                elif isinstance(a, plan.SetCursor):
                    self.set_cursor(a.folder_id, a.cursor)
                elif isinstance(a, plan.StartBaseline):
                    self._conn.execute("DELETE FROM baseline_seen WHERE folder_id = ?", (a.folder_id,))
                elif isinstance(a, plan.MarkSeen):
                    self._conn.executemany("INSERT OR IGNORE INTO baseline_seen VALUES (?, ?)",
                                          [(a.folder_id, p) for p in a.provider_ids])
                elif isinstance(a, plan.RemoveUnseen):
                    found = self._conn.execute(
                        """SELECT id FROM messages WHERE folder_id = ?1 AND provider_id NOT IN
                           (SELECT provider_id FROM baseline_seen WHERE folder_id = ?1)""", (a.folder_id,))
                    self._delete_ids([r[0] for r in found])
                    self._conn.execute("DELETE FROM baseline_seen WHERE folder_id = ?", (a.folder_id,))
                elif isinstance(a, plan.PruneOlderThan):
                    found = self._conn.execute("SELECT id FROM messages WHERE folder_id = ? AND date < ?",
                                              (a.folder_id, _iso(a.before)))
                    self._delete_ids([r[0] for r in found])
                elif isinstance(a, plan.SaveFolderSync):
                    self.save_folder_sync(a.folder_id, a.state)
                else:
                    raise TypeError(f"Store.apply does not know {type(a).__name__}")

    # ------------------------------------------------------------------ cursors

    @_guard
    def cursor(self, folder_id: str) -> str | None:
        value = self._value("SELECT cursor FROM cursors WHERE folder_id = ?", (folder_id,))
        return None if value is None else str(value)

    @_guard
    def cursors(self) -> dict[str, str | None]:
        """Every folder's sync cursor (None: the folder re-baselines)."""
        with self._read() as db:
            return {str(r["folder_id"]): r["cursor"] for r in db["cursors"].rows_where(
                select="folder_id, cursor")}

    @_guard
    def set_cursor(self, folder_id: str, cursor: str | None) -> None:
        with self.transaction():
            self._conn.execute(
                """INSERT INTO cursors (folder_id, cursor, updated_at) VALUES (?, ?, ?)
                   ON CONFLICT (folder_id) DO UPDATE SET cursor = excluded.cursor,
                     updated_at = excluded.updated_at""",
                (folder_id, cursor, _iso(_now())),
            )

    # ------------------------------------------------------------------ folder sync state

    _FOLDER_SYNC_TIMES = ("window_start", "baseline_at", "last_success_at")
    _FOLDER_SYNC_FLAGS = ("baselining", "filling")

    @_guard
    def folder_sync(self, folder_id: str) -> FolderSync:
        """A folder's durable sync state (a fresh FolderSync for a folder never synced)."""
        from sync.plan import FolderSync

        with self._read() as db:
            rows = list(db["folder_sync"].rows_where("folder_id = ?", [folder_id]))
        if not rows:
            return FolderSync()
        row = rows[0]
        del row["folder_id"]
        for name in self._FOLDER_SYNC_TIMES:
            row[name] = _dt(row[name])
        for name in self._FOLDER_SYNC_FLAGS:
            row[name] = bool(row[name])
        return FolderSync(**row)

    @_guard
    def save_folder_sync(self, folder_id: str, state: FolderSync) -> None:
        row: dict[str, Any] = {"folder_id": folder_id, **dataclasses.asdict(state)}
        for name in self._FOLDER_SYNC_TIMES:
            row[name] = _iso(row[name])
        for name in self._FOLDER_SYNC_FLAGS:
            row[name] = int(row[name])
        with self.transaction():
            self._db.table("folder_sync").upsert(row, pk="folder_id")

    @_guard
    def forget_folder_sync(self, folder_id: str) -> None:
        with self.transaction():
            self._conn.execute("DELETE FROM folder_sync WHERE folder_id = ?", (folder_id,))

    @_guard
    def sync_folders(self) -> tuple[list[str], datetime | None]:
        """The folders chosen for sync, in order, and when that list was made (([], None): never)."""
        with self._read() as db:
            rows = list(db["sync_folders"].rows_where(order_by="position"))
        return [r["folder_id"] for r in rows], (_dt(rows[0]["listed_at"]) if rows else None)

    @_guard
    def set_sync_folders(self, folder_ids: Iterable[str], listed_at: datetime | None) -> None:
        """Replace the list of folders to sync (listed_at None, or no ids: forget it)."""
        ids = list(dict.fromkeys(folder_ids))
        with self.transaction():
            self._conn.execute("DELETE FROM sync_folders")
            if listed_at is not None:
                at = _iso(listed_at)
                self._db.table("sync_folders").insert_all(
                    [{"folder_id": f, "position": n, "listed_at": at} for n, f in enumerate(ids)])

    # ------------------------------------------------------------------ outbox

    _OUTBOX_COLUMNS = (
        "id", "message_id", "state", "raw", "sender", "recipients", "subject", "created_at", "attempts",
        "next_attempt_at", "last_error", "route", "sent_at", "reconciled_at", *schema.OUTBOX_STATE_COLUMNS,
    )
    _OUTBOX_FIELDS = frozenset(_OUTBOX_COLUMNS) - {"id"}
    _OUTBOX_TIMES = frozenset(("created_at", "next_attempt_at", "sent_at", "reconciled_at", "uncertain_since",
                               "looked_up_at", "in_transport_since", "transport_wait_since",
                               "sent_copy_started"))
    _OUTBOX_FLAGS = frozenset(("ask_user", "sent_copy_given_up"))

    @classmethod
    def _outbox_value(cls, name: str, value: Any) -> Any:
        if name in cls._OUTBOX_FLAGS:
            return int(bool(value))
        if value is None:
            return None
        if name in cls._OUTBOX_TIMES:
            return _iso(value)
        if name in ("state", "route", "attempt_route"):
            return str(value)
        if name == "recipients":
            return json.dumps(list(value))
        if name == "raw":
            return bytes(value)
        return value

    @classmethod
    def _outbox_item(cls, row: tuple[Any, ...]) -> OutboxItem:
        r = dict(zip(cls._OUTBOX_COLUMNS, row, strict=True))
        for name in cls._OUTBOX_TIMES:
            r[name] = _dt(r[name])
        for name in cls._OUTBOX_FLAGS:
            r[name] = bool(r[name])
        for name in ("route", "attempt_route"):
            r[name] = Route(r[name]) if r[name] else None
        r["state"] = OutboxState(r["state"])
        r["raw"] = bytes(r["raw"])
        r["recipients"] = tuple(json.loads(r["recipients"]))
        return OutboxItem(**r)

    _OUTBOX_SELECT = f"SELECT {', '.join(_OUTBOX_COLUMNS)} FROM outbox"

    @_guard
    def outbox_add(
        self,
        message_id: str,
        raw: bytes,
        sender: str,
        recipients: Iterable[str],
        subject: str = "",
        created_at: datetime | None = None,
        *,
        state: OutboxState = OutboxState.QUEUED,
    ) -> OutboxItem:
        """Queue a message (its Message-ID is its identity: queuing the same one twice is refused)."""
        recipients = tuple(recipients)
        if not recipients:
            raise MessageBad(f"message {message_id} has no recipients")
        with self.transaction():
            try:
                new_id = self._conn.execute(
                    """INSERT INTO outbox (message_id, state, raw, sender, recipients, subject,
                         created_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id""",
                    (message_id, str(state), bytes(raw), sender, json.dumps(list(recipients)), subject,
                     _iso(created_at or _now())),
                ).fetchone()[0]
            except sqlcipher3.IntegrityError as exc:
                raise MessageBad(f"message {message_id} is already in the outbox") from exc
        item = self.outbox_get(new_id)
        assert item is not None
        return item

    @_guard
    def outbox_get(self, id: int) -> OutboxItem | None:
        with self._read() as db:
            row = db.execute(f"{self._OUTBOX_SELECT} WHERE id = ?", (id,)).fetchone()
        return None if row is None else self._outbox_item(row)

    @_guard
    def outbox_by_message_id(self, message_id: str) -> OutboxItem | None:
        with self._read() as db:
            row = db.execute(f"{self._OUTBOX_SELECT} WHERE message_id = ?", (message_id,)).fetchone()
        return None if row is None else self._outbox_item(row)

    @_guard
    def outbox_list(self, states: Iterable[OutboxState] | None = None) -> list[OutboxItem]:
        with self._read() as db:
            if states is None:
                rows = db.execute(f"{self._OUTBOX_SELECT} ORDER BY id").fetchall()
            else:
                wanted = [str(s) for s in states]
                marks = ",".join("?" * len(wanted))
                sql = f"{self._OUTBOX_SELECT} WHERE state IN ({marks}) ORDER BY id"
                rows = db.execute(sql, wanted).fetchall()
        return [self._outbox_item(r) for r in rows]

    @_guard
    def outbox_update(self, id: int, **fields: Any) -> OutboxItem:
        """Change some columns of one outbox row (names as in sync.model.OutboxItem)."""
        unknown = set(fields) - self._OUTBOX_FIELDS
        if unknown:
            raise TypeError(f"outbox_update: unknown field(s) {', '.join(sorted(unknown))}")
        with self.transaction():
            if fields:
                assignments = ", ".join(f"{name} = ?" for name in fields)
                values = [self._outbox_value(name, value) for name, value in fields.items()]
                self._conn.execute(f"UPDATE outbox SET {assignments} WHERE id = ?", (*values, id))
            item = self.outbox_get(id)
        if item is None:
            raise MessageBad(f"there is no outbox item {id}")
        return item

    # ------------------------------------------------------------------ failover state and events

    @_guard
    def load_mode(self) -> tuple[str, datetime | None, str]:
        """(mode, since, reason); ("normal", None, "") for a new cache."""
        with self._read() as db:
            row = db.execute("SELECT mode, since, reason FROM failover WHERE id = 1").fetchone()
        return ("normal", None, "") if row is None else (row[0], _dt(row[1]), row[2])

    @_guard
    def mode_state(self) -> str:
        """The state_json saved with the mode ("" when none)."""
        return str(self._value("SELECT state_json FROM failover WHERE id = 1") or "")

    @_guard
    def save_mode(self, mode: str, since: datetime, reason: str, state_json: str = "") -> None:
        with self.transaction():
            self._conn.execute(
                """INSERT INTO failover (id, mode, since, reason, state_json) VALUES (1, ?, ?, ?, ?)
                   ON CONFLICT (id) DO UPDATE SET mode = excluded.mode, since = excluded.since,
                     reason = excluded.reason, state_json = excluded.state_json""",
                (str(mode), _iso(since), reason, state_json),
            )

    @_guard
    def log_event(self, kind: str, detail: str, at: datetime) -> None:
        with self.transaction():
            self._conn.execute(
                "INSERT INTO events (at, kind, detail) VALUES (?, ?, ?)", (_iso(at), kind, detail)
            )

    @_guard
    def events(self, limit: int = 200) -> list[dict[str, Any]]:
        """The newest events first: {id, at, kind, detail}."""
        return self._rows("SELECT id, at, kind, detail FROM events ORDER BY id DESC LIMIT ?", (limit,))

    # ------------------------------------------------------------------ settings

    @_guard
    def get_setting(self, key: str, default: Any = None) -> Any:
        value = self._value("SELECT value FROM settings WHERE key = ?", (key,))
        return default if value is None else json.loads(value)

    @_guard
    def set_setting(self, key: str, value: Any) -> None:
        """Store a JSON-able value; None removes the setting."""
        with self.transaction():
            if value is None:
                self._conn.execute("DELETE FROM settings WHERE key = ?", (key,))
            else:
                self._conn.execute(
                    """INSERT INTO settings (key, value) VALUES (?, ?)
                       ON CONFLICT (key) DO UPDATE SET value = excluded.value""",
                    (key, json.dumps(value)),
                )

    # ------------------------------------------------------------------ status, retention, checks

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in (Path(f"{self.path}{s}") for s in SUFFIXES) if p.exists())

    @_guard
    def status(self) -> dict[str, Any]:
        """A JSON-able picture of the cache (see docs: `lifeboat status --json`)."""
        with self._read() as db:
            messages, with_mime, raw_bytes, oldest, newest = db.execute(
                "SELECT count(*), count(raw), coalesce(sum(size), 0), min(date), max(date) FROM messages"
            ).fetchone()
            folders = db.execute("SELECT count(*) FROM folders").fetchone()[0]
            outbox = dict(db.execute("SELECT state, count(*) FROM outbox GROUP BY state").fetchall())
        return {
            "path": str(self.path),
            "size_bytes": self.size_bytes(),
            "schema_version": schema.VERSION,
            "messages": messages,
            "messages_with_mime": with_mime,
            "raw_bytes": raw_bytes,
            "folders": folders,
            "oldest": oldest,
            "newest": newest,
            "outbox": {str(s): int(outbox.get(str(s), 0)) for s in OutboxState},
        }

    def _used_bytes(self) -> int:
        pages = int(self._conn.execute("PRAGMA page_count").fetchone()[0])
        free = int(self._conn.execute("PRAGMA freelist_count").fetchone()[0])
        return (pages - free) * int(self._conn.execute("PRAGMA page_size").fetchone()[0])

    @_guard
    def prune(self, now: datetime, days: int, max_mb: int) -> int:
        """Retention: drop cached messages older than `days`, then the oldest until the cache fits
        in `max_mb`. Never touches the outbox or local folders (e.g. "Imported"). Returns the count."""
        cutoff = _iso(now - timedelta(days=days))
        keep = "folder_id NOT IN (SELECT provider_id FROM folders WHERE local = 1)"
        removed = 0
        with self.transaction():
            old = self._conn.execute(f"SELECT id FROM messages WHERE date < ? AND {keep}", (cutoff,))
            ids = [r[0] for r in old]
            self._delete_ids(ids)
            removed += len(ids)
        limit = max_mb * 1024 * 1024
        for _ in range(50):
            with self._lock:
                self._conn.execute("PRAGMA incremental_vacuum").fetchall()  # each row frees one page
                excess = self._used_bytes() - limit
            if excess <= 0:
                break
            with self.transaction():
                # spread the bytes in use over the messages in proportion to their compressed size
                count, stored = self._conn.execute(
                    "SELECT count(*), coalesce(sum(length(raw)), 0) + 512 * count(*) FROM messages"
                ).fetchone()
                if not count:
                    break
                scale = (excess + limit) / stored
                ids, freed = [], 0.0
                for id_, footprint in self._conn.execute(
                    f"SELECT id, coalesce(length(raw), 0) + 512 FROM messages WHERE {keep} ORDER BY date, id"
                ):
                    ids.append(id_)
                    freed += footprint * scale
                    if freed >= excess:
                        break
                if not ids:
                    break
                self._delete_ids(ids)
                removed += len(ids)
                # contentless FTS5 keeps tombstones until its segments merge: merge now to free pages
                self._conn.execute("INSERT INTO messages_fts (messages_fts) VALUES ('optimize')")
        with self._lock:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return removed

    @_guard
    def compact(self) -> int:
        """Merge the search index, give free pages back to the file system and empty the WAL (after an
        initial sync, an import or a prune); returns the cache's size in bytes afterwards."""
        with self.transaction():
            self._conn.execute("INSERT INTO messages_fts (messages_fts) VALUES ('optimize')")
        with self._lock:
            self._conn.execute("PRAGMA incremental_vacuum").fetchall()
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return self.size_bytes()

    @_guard
    def checkpoint(self) -> None:
        """Copy the WAL into the file and empty it (benchmarks measure the file alone after this)."""
        with self._lock:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    @_guard
    def cipher_version(self) -> str:
        """SQLCipher's version ("" for the plain SQLite of `_open_unencrypted`)."""
        return str(self._value("PRAGMA cipher_version") or "")

    def _sql_for_tests(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        """TESTS ONLY: run one statement under the store's lock and return its rows, so a test can
        inspect (or deliberately damage) the file. The app reads and writes through named methods."""
        with self._lock:
            return [tuple(r) for r in self._conn.execute(sql, tuple(params)).fetchall()]

    @_guard
    def check(self) -> list[str]:
        """Problems found by `PRAGMA cipher_integrity_check` and `quick_check` ([] when all is well)."""
        problems: list[str] = []
        with self._lock:
            try:
                problems += [str(r[0]) for r in self._conn.execute("PRAGMA cipher_integrity_check")]
            except sqlcipher3.DatabaseError as exc:
                problems.append(f"cipher_integrity_check failed: {exc}")
            try:
                rows = [str(r[0]) for r in self._conn.execute("PRAGMA quick_check")]
                problems += [r for r in rows if r != "ok"]
            except sqlcipher3.DatabaseError as exc:
                problems.append(f"quick_check failed: {exc}")
        return problems


def cache_files(path: Path) -> list[Path]:
    """The cache file and its companions (-wal, -shm, -journal) that exist."""
    return [p for p in (Path(f"{path}{s}") for s in SUFFIXES) if p.exists()]


def environment_ok() -> bool:
    """True when this SQLCipher build has FTS5 (checked once by `lifeboat doctor`)."""
    conn = sqlcipher3.connect(":memory:")
    try:
        conn.execute("CREATE VIRTUAL TABLE t USING fts5 (a)")
        return True
    except sqlcipher3.DatabaseError:
        return False
    finally:
        conn.close()

