"""The simulated mailbox: folders, messages stored as raw MIME, and a per-folder change log.

Main type: `Mailbox` (thread-safe through one lock). Invariants: every mutation appends to the change
log of each folder it touches under a global, strictly increasing sequence number; ids are opaque and
immutable (they survive moves); a move is a removal from one folder's log and an addition to another's.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import random
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WELL_KNOWN = {
    # well-known name: display name
    "inbox": "Inbox",
    "drafts": "Drafts",
    "sentitems": "Sent Items",
    "deleteditems": "Deleted Items",
    "archive": "Archive",
    "junkemail": "Junk Email",
    "outbox": "Outbox",
}
ROOT = "msgfolderroot"


class NotFound(KeyError):
    """A folder or message id that the mailbox does not hold (the message names it)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Folder:
    id: str
    name: str
    parent_id: str
    well_known: str | None = None
    hidden: bool = False


@dataclass
class Item:
    id: str
    folder_id: str
    mime: bytes
    received: dt.datetime
    created: dt.datetime
    modified: dt.datetime
    is_read: bool = False
    is_draft: bool = False
    change: int = 1
    categories: list[str] = field(default_factory=list)
    flag: str = "notFlagged"
    importance: str = "normal"
    sent: dt.datetime | None = None
    message_id_override: str | None = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.mime).hexdigest()

    @property
    def change_key(self) -> str:
        raw = hashlib.sha1(f"{self.id}:{self.change}".encode()).digest()[:18]  # noqa: S324 (not security)
        return "CQAAABYAAA" + base64.b64encode(raw).decode()


class Mailbox:
    """One user's mailbox in memory, with an optional JSON snapshot."""

    def __init__(self, seed: int = 0) -> None:
        self.lock = threading.RLock()
        self._rng = random.Random(seed)
        self.folders: dict[str, Folder] = {}
        self.items: dict[str, Item] = {}
        self.seq = 0
        self.logs: dict[str, list[tuple[int, str, str]]] = {}
        self.folder_log: list[tuple[int, str, str]] = []
        self.epoch = 0
        self._aliases: dict[str, tuple[str, str]] = {}
        root = Folder(self.new_id("AQMkAD"), "Top of Information Store", "", ROOT, hidden=True)
        self.folders[root.id] = root
        self.logs[root.id] = []
        for wk, name in WELL_KNOWN.items():
            self.add_folder(name, root.id, well_known=wk)

    # --- ids and lookups ------------------------------------------------------------------------
    def new_id(self, prefix: str = "AAMkAD") -> str:
        raw = self._rng.getrandbits(8 * 42).to_bytes(42, "big")
        return prefix + base64.urlsafe_b64encode(raw).decode().rstrip("=") + "AAA="

    def _next(self) -> int:
        self.seq += 1
        return self.seq

    @property
    def root_id(self) -> str:
        return next(f.id for f in self.folders.values() if f.well_known == ROOT)

    def folder(self, ref: str) -> Folder:
        """A folder by id, well-known name (`inbox`, `sentitems`...) or display path (`Inbox/Projects`)."""
        with self.lock:
            if ref in self.folders:
                return self.folders[ref]
            low = ref.lower()
            for f in self.folders.values():
                if f.well_known == low:
                    return f
            for f in self.folders.values():
                if f.well_known != ROOT and self.path(f.id).lower() == low:
                    return f
        raise NotFound(f"no mail folder {ref!r} in this mailbox")

    def path(self, folder_id: str) -> str:
        parts = []
        f = self.folders[folder_id]
        while f.well_known != ROOT:
            parts.append(f.name)
            f = self.folders[f.parent_id]
        return "/".join(reversed(parts))

    def item(self, item_id: str) -> Item:
        """A message by immutable id, or by the folder-bound id Graph gives without `IdType="ImmutableId"`
        (such an id stops working once the message moves, as on Exchange)."""
        with self.lock:
            found = self.items.get(item_id)
            if found is None and item_id in self._aliases:
                iid, fid = self._aliases[item_id]
                found = self.items.get(iid)
                if found is not None and found.folder_id != fid:
                    found = None
            if found is None:
                raise NotFound(f"no message with id {item_id!r} in this mailbox")
            return found

    def external_id(self, item_id: str, folder_id: str, immutable: bool) -> str:
        """The id a client sees: immutable, or (without the ImmutableId preference) bound to the folder."""
        if immutable:
            return item_id
        digest = hashlib.sha256(f"{item_id}|{folder_id}".encode()).digest()[:42]
        rest = "AAMkAG" + base64.urlsafe_b64encode(digest).decode().rstrip("=") + "AAA="
        with self.lock:
            self._aliases[rest] = (item_id, folder_id)
        return rest

    def children(self, folder_id: str) -> list[Folder]:
        with self.lock:
            return sorted(
                (f for f in self.folders.values() if f.parent_id == folder_id), key=lambda f: f.name
            )

    def in_folder(self, folder_id: str) -> list[Item]:
        with self.lock:
            return [i for i in self.items.values() if i.folder_id == folder_id]

    # --- mutations ------------------------------------------------------------------------------
    def add_folder(self, name: str, parent: str | None = None, *, well_known: str | None = None) -> Folder:
        with self.lock:
            parent_id = self.folder(parent).id if parent else self.root_id
            if any(
                f.parent_id == parent_id and f.name.lower() == name.lower() for f in self.folders.values()
            ):
                raise ValueError(f"a folder named {name!r} already exists there")
            f = Folder(self.new_id("AQMkAD"), name, parent_id, well_known)
            self.folders[f.id] = f
            self.logs[f.id] = []
            self.folder_log.append((self._next(), f.id, "upsert"))
            return f

    def add(
        self,
        folder: str,
        mime: bytes,
        *,
        received: dt.datetime | None = None,
        is_read: bool = False,
        is_draft: bool = False,
        sent: dt.datetime | None = None,
        item_id: str | None = None,
    ) -> Item:
        if not isinstance(mime, bytes | bytearray) or not mime.strip():
            raise ValueError("a message needs non-empty raw MIME bytes")
        with self.lock:
            f = self.folder(folder)
            now = utcnow()
            created = min(now, received) if received else now
            item = Item(
                item_id or self.new_id(),
                f.id,
                bytes(mime),
                received or now,
                created,
                created,
                is_read=is_read,
                is_draft=is_draft,
                sent=sent,
            )
            self.items[item.id] = item
            self.logs[f.id].append((self._next(), item.id, "upsert"))
            return item

    def change(self, item_id: str, **fields: Any) -> Item:
        """Change a message's properties (is_read, flag, categories, importance, mime...) in place."""
        allowed = {"is_read", "flag", "categories", "importance", "mime", "is_draft", "received", "sent"}
        bad = set(fields) - allowed
        if bad:
            raise ValueError(f"cannot change {sorted(bad)}; changeable: {sorted(allowed)}")
        with self.lock:
            item = self.item(item_id)
            for k, v in fields.items():
                setattr(item, k, v)
            item.change += 1
            item.modified = utcnow()
            self.logs[item.folder_id].append((self._next(), item.id, "upsert"))
            return item

    def move(self, item_id: str, folder: str) -> Item:
        with self.lock:
            item = self.item(item_id)
            dest = self.folder(folder)
            if dest.id == item.folder_id:
                return item
            self.logs[item.folder_id].append((self._next(), item.id, "remove"))
            item.folder_id = dest.id
            item.change += 1
            item.modified = utcnow()
            self.logs[dest.id].append((self._next(), item.id, "upsert"))
            return item

    def delete(self, item_id: str) -> None:
        with self.lock:
            item = self.item(item_id)
            del self.items[item_id]
            self.logs[item.folder_id].append((self._next(), item.id, "remove"))

    def expire_cursors(self) -> None:
        """Make every delta token handed out so far invalid (the next use gets 410/syncStateNotFound)."""
        with self.lock:
            self.epoch += 1

    # --- change log -------------------------------------------------------------------------------
    def changes(self, folder_id: str, since: int, upto: int) -> list[tuple[str, str]]:
        """(id, "upsert"|"remove") for every message with an event in (since, upto], by last event.

        The list is stable while later events happen, so paging over it never skips an item. With
        since == 0 (a first round) messages whose last event up to `upto` was a removal are left out.
        """
        with self.lock:
            last: dict[str, tuple[int, str]] = {}
            for seq, iid, kind in self.logs.get(folder_id, []):
                if since < seq <= upto:
                    last[iid] = (seq, kind)
        ordered = sorted(last.items(), key=lambda kv: kv[1][0])
        return [(iid, kind) for iid, (_, kind) in ordered if not (since == 0 and kind == "remove")]

    def folder_changes(self, since: int, upto: int) -> list[tuple[str, str]]:
        with self.lock:
            last: dict[str, tuple[int, str]] = {}
            for seq, fid, kind in self.folder_log:
                if since < seq <= upto:
                    last[fid] = (seq, kind)
        return [(fid, kind) for fid, (_, kind) in sorted(last.items(), key=lambda kv: kv[1][0])]

    # --- views for tests ------------------------------------------------------------------------
    def state(self) -> dict[str, dict[str, str]]:
        """{folder_id: {provider_id: sha256 of MIME}} for every folder (empty ones included)."""
        with self.lock:
            out: dict[str, dict[str, str]] = {fid: {} for fid in self.folders}
            for item in self.items.values():
                out[item.folder_id][item.id] = item.sha256
            return out

    def folder_list(self) -> list[dict[str, Any]]:
        with self.lock:
            return [
                {
                    "id": f.id,
                    "displayName": f.name,
                    "parentFolderId": f.parent_id,
                    "wellKnownName": f.well_known,
                    "path": self.path(f.id),
                }
                for f in self.folders.values()
            ]

    # --- snapshot -------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        with self.lock:
            data = {
                "version": 1,
                "seq": self.seq,
                "epoch": self.epoch,
                "folders": [vars(f) for f in self.folders.values()],
                "items": [
                    {
                        **{k: v for k, v in vars(i).items() if k != "mime"},
                        "mime": base64.b64encode(i.mime).decode(),
                        "received": iso(i.received),
                        "created": iso(i.created),
                        "modified": iso(i.modified),
                        "sent": iso(i.sent) if i.sent else None,
                    }
                    for i in self.items.values()
                ],
                "logs": self.logs,
                "folder_log": self.folder_log,
            }
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data), encoding="utf-8")
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path, seed: int = 0) -> Mailbox:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ValueError(
                f"cannot read the mailbox snapshot {path}: {e}; delete it to start afresh"
            ) from e
        if data.get("version") != 1:
            raise ValueError(f"{path} is a snapshot of an unknown version; delete it to start afresh")
        mb = cls.__new__(cls)
        mb.lock = threading.RLock()
        mb._rng = random.Random(seed)
        mb.seq, mb.epoch = data["seq"], data["epoch"]
        mb._aliases = {}
        mb.folders = {f["id"]: Folder(**f) for f in data["folders"]}
        mb.items = {}
        for raw in data["items"]:
            raw = dict(raw)
            raw["mime"] = base64.b64decode(raw["mime"])
            for k in ("received", "created", "modified", "sent"):
                if raw.get(k):
                    raw[k] = dt.datetime.fromisoformat(raw[k].replace("Z", "+00:00"))
            mb.items[raw["id"]] = Item(**raw)
        mb.logs = {k: [tuple(e) for e in v] for k, v in data["logs"].items()}  # type: ignore[misc]
        mb.folder_log = [tuple(e) for e in data["folder_log"]]  # type: ignore[misc]
        mb._rng.seed(f"{seed}:{mb.seq}")
        return mb
