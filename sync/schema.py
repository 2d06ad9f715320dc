"""The encrypted cache's schema as numbered migrations, and the code that applies them.

`MIGRATIONS[n - 1]` brings a cache from version n-1 to n. Each migration runs in one transaction
together with its row in `schema_migrations` and `PRAGMA user_version`, so a crash leaves the cache
at the old or the new version, never in between. A cache above `VERSION` is refused (CacheTooNew).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sync.errors import CacheTooNew

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: the first schema
    (
        """CREATE TABLE folders (
            provider_id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            parent_id TEXT,
            well_known TEXT,
            total INTEGER,
            local INTEGER NOT NULL DEFAULT 0      -- 1: exists only here (never pruned, never synced)
        )""",
        """CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            provider_id TEXT NOT NULL UNIQUE,
            folder_id TEXT NOT NULL,
            message_id TEXT,                      -- RFC 5322 Message-ID
            subject TEXT NOT NULL DEFAULT '',
            sender TEXT NOT NULL DEFAULT '',      -- "Name <email>"
            sender_email TEXT NOT NULL DEFAULT '',
            to_addrs TEXT NOT NULL DEFAULT '',    -- comma-separated "Name <email>"
            cc_addrs TEXT NOT NULL DEFAULT '',
            date TEXT,                            -- received time (else the Date header), ISO UTC
            sent_date TEXT,                       -- the Date header, ISO UTC
            in_reply_to TEXT,
            refs TEXT NOT NULL DEFAULT '',        -- References, space-separated
            size INTEGER NOT NULL DEFAULT 0,      -- raw MIME bytes (uncompressed)
            is_read INTEGER,
            has_attachments INTEGER NOT NULL DEFAULT 0,
            has_calendar INTEGER NOT NULL DEFAULT 0,
            is_signed INTEGER NOT NULL DEFAULT 0,
            is_encrypted INTEGER NOT NULL DEFAULT 0,
            parse_ok INTEGER NOT NULL DEFAULT 1,
            problems TEXT NOT NULL DEFAULT '',    -- newline-separated parser notes
            change_key TEXT,
            raw BLOB,                             -- zlib-compressed MIME; NULL: summary-only placeholder
            stored_at TEXT NOT NULL
        )""",
        "CREATE INDEX messages_folder_date ON messages (folder_id, date DESC, id DESC)",
        "CREATE INDEX messages_date ON messages (date)",
        "CREATE INDEX messages_message_id ON messages (message_id)",
        "CREATE INDEX messages_missing ON messages (folder_id, id) WHERE raw IS NULL",
        """CREATE TABLE attachments (
            message INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
            idx INTEGER NOT NULL,
            filename TEXT NOT NULL,
            content_type TEXT NOT NULL,
            size INTEGER NOT NULL,
            content_id TEXT,
            inline INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (message, idx)
        )""",
        """CREATE VIRTUAL TABLE messages_fts USING fts5 (
            subject, sender, to_addrs, cc_addrs, body,
            content='', contentless_delete=1, tokenize='unicode61 remove_diacritics 2'
        )""",
        """CREATE TABLE cursors (
            folder_id TEXT PRIMARY KEY,
            cursor TEXT,
            updated_at TEXT NOT NULL
        )""",
        """CREATE TABLE outbox (
            id INTEGER PRIMARY KEY,
            message_id TEXT NOT NULL UNIQUE,
            state TEXT NOT NULL,
            raw BLOB NOT NULL,
            sender TEXT NOT NULL,
            recipients TEXT NOT NULL,             -- JSON list
            subject TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT,
            last_error TEXT,
            route TEXT,
            sent_at TEXT,
            reconciled_at TEXT,
            extra TEXT NOT NULL DEFAULT '{}'      -- JSON object of strings
        )""",
        "CREATE INDEX outbox_state ON outbox (state)",
        """CREATE TABLE failover (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            mode TEXT NOT NULL,
            since TEXT,
            reason TEXT NOT NULL DEFAULT '',
            state_json TEXT NOT NULL DEFAULT ''
        )""",
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            kind TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT ''
        )""",
        """CREATE TABLE settings (
            key TEXT PRIMARY KEY,
            value TEXT
        )""",
    ),
    # 2: rows the provider listed during a folder's re-baseline round (sync.plan MarkSeen/RemoveUnseen)
    (
        """CREATE TABLE baseline_seen (
            folder_id TEXT NOT NULL,
            provider_id TEXT NOT NULL,
            PRIMARY KEY (folder_id, provider_id)
        ) WITHOUT ROWID""",
    ),
)

VERSION = len(MIGRATIONS)


def current_version(conn: Any) -> int:
    """The version recorded in the cache (0 for a new, empty file)."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def check_version(conn: Any, path: object) -> int:
    version = current_version(conn)
    if version > VERSION:
        raise CacheTooNew(
            f"{path} was written by a newer Lifeboat (cache schema {version}; this version knows "
            f"up to {VERSION})"
        )
    return version


def migrate(conn: Any, path: object = "the cache") -> int:
    """Apply every migration the cache lacks, each in its own transaction; returns the new version.

    `conn` must be in autocommit mode (isolation_level=None) so that BEGIN/COMMIT are ours.
    """
    version = check_version(conn, path)
    for number in range(version + 1, VERSION + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            if number == 1:
                conn.execute(
                    "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
                )
            for statement in MIGRATIONS[number - 1]:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                (number, datetime.now(UTC).isoformat()),
            )
            conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return VERSION
