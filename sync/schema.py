"""The encrypted cache's schema as numbered migrations, and the code that applies them.

`MIGRATIONS[n - 1]` brings a cache from version n-1 to n: a tuple of SQL statements, or a function
of a sqlite-utils `Database` (which the store hands in: sqlite-utils creates tables and columns, and
nests its own `atomic()` blocks as savepoints inside ours). Each migration runs in one transaction
together with its row in `schema_migrations` and `PRAGMA user_version`, so a crash leaves the cache
at the old or the new version, never in between. A cache above `VERSION` is refused (CacheTooNew).
Old migrations are never edited: a change is a new, numbered migration that carries the data over.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sync.errors import CacheTooNew

# outbox columns that replaced the JSON bag `extra` (migration 3): name -> (type, NOT NULL default)
OUTBOX_STATE_COLUMNS: dict[str, tuple[type, int | None]] = {
    "attempt_route": (str, None),  # the route last tried (an UNCERTAIN item may have gone out there)
    "uncertain_since": (str, None),
    "looked_up_at": (str, None),  # the last Message-ID lookup while UNCERTAIN
    "ask_user": (int, 0),  # 1: only the user can settle it
    "in_transport_since": (str, None),  # first seen as a draft in Exchange's transport
    "transport_wait_since": (str, None),  # reconcile waits for an earlier attempt's own copy
    "sent_copy_started": (str, None),  # reconcile began making the Sent Items copy
    "sent_copy_partial": (str, None),  # that copy's id, created before its large files follow
    "sent_copy_id": (str, None),  # the Sent Items copy reconcile made or found
    "sent_copy_given_up": (int, 0),  # 1: the copy can never be stored (too large)
}
_BOOLEAN_KEYS = {"ask_user": "ask_user", "sent_copy_given_up": "sent_copy"}


def _typed_state(db: Any) -> None:
    """3: typed state out of JSON bags. The outbox's `extra` becomes columns; the settings
    `sync.folder.<id>` (plan.FolderSync as JSON) become rows of `folder_sync`, and `sync.folders`
    rows of `sync_folders`. Existing values are carried over; unknown `extra` keys are dropped."""
    outbox = db["outbox"]
    for name, (kind, default) in OUTBOX_STATE_COLUMNS.items():
        outbox.add_column(name, kind, not_null_default=default)
    copies = ", ".join(f"{name} = json_extract(extra, '$.{name}')"
                       for name in OUTBOX_STATE_COLUMNS if name not in _BOOLEAN_KEYS)
    db.execute(f"""UPDATE outbox SET {copies},
                   ask_user = coalesce(json_extract(extra, '$.ask_user'), '') NOT IN ('', '0'),
                   sent_copy_given_up = coalesce(json_extract(extra, '$.sent_copy') = 'given up', 0)""")
    db.execute("ALTER TABLE outbox DROP COLUMN extra")
    db["folder_sync"].create(
        {"folder_id": str, "baselining": int, "window_start": str, "baseline_at": str,
         "last_success_at": str, "rounds": int, "listed": int, "filling": int, "fill_link": str},
        pk="folder_id", not_null={"baselining", "rounds", "listed", "filling"},
        defaults={"baselining": 0, "rounds": 0, "listed": 0, "filling": 0},
    )
    # the setting's value is JSON of the JSON text FolderSync.to_json() made: unwrap it once
    state = "json_extract(value, '$')"
    db.execute(f"""INSERT INTO folder_sync (folder_id, baselining, window_start, baseline_at, last_success_at,
                     rounds, listed, filling, fill_link)
                   SELECT substr(key, 13),
                     coalesce(json_extract({state}, '$.baselining'), 0),
                     json_extract({state}, '$.window_start'), json_extract({state}, '$.baseline_at'),
                     json_extract({state}, '$.last_success_at'),
                     coalesce(json_extract({state}, '$.rounds'), 0),
                     coalesce(json_extract({state}, '$.listed'), 0),
                     coalesce(json_extract({state}, '$.filling'), 0), json_extract({state}, '$.fill_link')
                   FROM settings WHERE key LIKE 'sync.folder.%' AND json_valid({state})""")
    db["sync_folders"].create({"folder_id": str, "position": int, "listed_at": str}, pk="folder_id",
                              not_null={"position", "listed_at"})
    db.execute("""INSERT OR IGNORE INTO sync_folders (folder_id, position, listed_at)
                  SELECT j.value, j.key, json_extract(s.value, '$.at')
                  FROM settings s, json_each(s.value, '$.ids') j
                  WHERE s.key = 'sync.folders' AND json_extract(s.value, '$.at') IS NOT NULL""")
    db.execute("DELETE FROM settings WHERE key = 'sync.folders' OR key LIKE 'sync.folder.%'")


Migration = tuple[str, ...] | Callable[[Any], None]

MIGRATIONS: tuple[Migration, ...] = (
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
        # SQL, not sqlite-utils' enable_fts(): that always makes an external-content index
        # (content=<table>); ours is contentless (no second copy of the text) with contentless_delete
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
    _typed_state,
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


def migrate(conn: Any, path: object = "the cache", db: Any = None) -> int:
    """Apply every migration the cache lacks, each in its own transaction; returns the new version.

    `conn` must be in autocommit mode (isolation_level=None) so that BEGIN/COMMIT are ours; `db` is a
    sqlite-utils Database over it (needed by migrations that are functions).
    """
    version = check_version(conn, path)
    for number in range(version + 1, VERSION + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            if number == 1:
                conn.execute(
                    "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
                )
            step = MIGRATIONS[number - 1]
            if callable(step):
                step(db)
            else:
                for statement in step:
                    conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                (number, datetime.now(UTC).isoformat()),
            )
            conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # SQLite may have rolled back already (disk full)
                conn.execute("ROLLBACK")
            raise
    return VERSION
