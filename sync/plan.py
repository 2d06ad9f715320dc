"""PURE sync planning: one page of a folder's change feed + a local snapshot -> store actions.

Main entry points: `plan_round_start(...)`, `plan_page(...)` and, for a folder whose filtered delta
hit Graph's 5,000-message cap, `plan_fill_page(...)`; `FolderSync` is a folder's durable
sync state. Actions are small frozen dataclasses whose str() reads like a log line; the store
executes a page's actions (items + cursor) in one transaction. Upserts by provider_id are
idempotent, so replaying a page after a crash changes nothing. No I/O, no clock: time is an argument.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta

from sync.model import Changes, Folder, RemoteItem

# How often a folder's delta is re-baselined to move its `receivedDateTime ge` window forward (the
# date is frozen into Graph's delta token) and to heal any drift.
REBASELINE_EVERY = timedelta(days=7)
# Graph's filtered message delta lists at most this many messages in a round (docs/graph-notes.md, 4).
DELTA_CAP = 5000
# Well-known system folders that "*" (every user folder) leaves out, with everything under them.
SYSTEM_FOLDERS = frozenset({
    "deleteditems", "junkemail", "outbox", "conversationhistory", "syncissues", "clutter", "scheduled",
    "searchfolders", "recoverableitemsdeletions", "msgfolderroot",
})


@dataclass(frozen=True)
class UpsertSummary:
    folder_id: str
    item: RemoteItem

    def __str__(self) -> str:
        return f"upsert {self.item.provider_id[-12:]} in {self.folder_id[-12:]}"


@dataclass(frozen=True)
class RemoveMessage:
    folder_id: str
    provider_id: str

    def __str__(self) -> str:
        return f"remove {self.provider_id[-12:]} from {self.folder_id[-12:]}"


@dataclass(frozen=True)
class SetCursor:
    folder_id: str
    cursor: str | None

    def __str__(self) -> str:
        what = "clear" if self.cursor is None else "set"
        return f"{what} cursor of {self.folder_id[-12:]}"


@dataclass(frozen=True)
class StartBaseline:
    """Forget the cursor and mark the folder's rows unseen; rows stay until the round completes."""

    folder_id: str
    reason: str

    def __str__(self) -> str:
        return f"start baseline of {self.folder_id[-12:]}: {self.reason}"


@dataclass(frozen=True)
class MarkSeen:
    """During a baseline round: these rows were listed by the provider (keep them at the end)."""

    folder_id: str
    provider_ids: tuple[str, ...]

    def __str__(self) -> str:
        return f"mark {len(self.provider_ids)} seen in {self.folder_id[-12:]}"


@dataclass(frozen=True)
class RemoveUnseen:
    """The baseline round completed: rows of the folder the provider did not list are gone."""

    folder_id: str

    def __str__(self) -> str:
        return f"remove rows of {self.folder_id[-12:]} not seen in the baseline"


@dataclass(frozen=True)
class PruneOlderThan:
    folder_id: str
    before: datetime

    def __str__(self) -> str:
        return f"prune {self.folder_id[-12:]} older than {self.before.isoformat()}"


@dataclass(frozen=True)
class SaveFolderSync:
    folder_id: str
    state: FolderSync

    def __str__(self) -> str:
        return f"save sync state of {self.folder_id[-12:]}"


Action = (
    UpsertSummary | RemoveMessage | SetCursor | StartBaseline | MarkSeen | RemoveUnseen | PruneOlderThan
    | SaveFolderSync
)


@dataclass(frozen=True)
class FolderSync:
    """A folder's durable sync state (kept beside its cursor)."""

    baselining: bool = False  # a baseline round is in progress (rows may be marked unseen)
    window_start: datetime | None = None  # the `receivedDateTime ge` date frozen into the cursor
    baseline_at: datetime | None = None  # when the current/last baseline round started
    last_success_at: datetime | None = None  # when a round last completed
    rounds: int = 0  # completed rounds (0: never synced)
    listed: int = 0  # messages the baseline round's delta has listed so far
    filling: bool = False  # that delta hit the cap: the window is being listed through /messages
    fill_link: str | None = None  # the next page of that listing (None: from the start)

    def to_json(self) -> str:
        d = asdict(self)
        for k in ("window_start", "baseline_at", "last_success_at"):
            d[k] = d[k].isoformat() if d[k] else None
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> FolderSync:
        if not text:
            return cls()
        d = json.loads(text)
        for k in ("window_start", "baseline_at", "last_success_at"):
            d[k] = datetime.fromisoformat(d[k]) if d.get(k) else None
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def window_start(now: datetime, cache_days: int) -> datetime:
    """The oldest receivedDateTime kept, rounded down to the day (so cursors stay comparable)."""
    start = now - timedelta(days=cache_days)
    return start.replace(hour=0, minute=0, second=0, microsecond=0)


def plan_round_start(
    folder_id: str, cursor: str | None, state: FolderSync, now: datetime, cache_days: int,
) -> tuple[list[Action], FolderSync]:
    """Before asking for a page: start a baseline when there is no cursor or the window drifted."""
    start = window_start(now, cache_days)
    reason = ""
    if cursor is None and not state.baselining:
        reason = "first sync" if state.rounds == 0 else "no cursor"
    elif cursor is not None and not state.baselining and state.baseline_at is not None and (
        now - state.baseline_at >= REBASELINE_EVERY
    ):
        reason = "periodic re-baseline (moves the cache window forward)"
    elif cursor is not None and state.window_start is not None and start < state.window_start:
        reason = "the cache window grew"
    if not reason:
        return [], state
    return start_baseline(folder_id, state, now, cache_days, reason)


def start_baseline(
    folder_id: str, state: FolderSync, now: datetime, cache_days: int, reason: str,
) -> tuple[list[Action], FolderSync]:
    """Drop the cursor and begin a fresh baseline round; nothing is deleted until it completes."""
    new = replace(state, baselining=True, window_start=window_start(now, cache_days), baseline_at=now,
                  listed=0, filling=False, fill_link=None)
    return [StartBaseline(folder_id, reason), SetCursor(folder_id, None), SaveFolderSync(folder_id, new)], new


def plan_page(
    folder_id: str,
    page: Changes,
    local: Mapping[str, str],
    state: FolderSync,
    now: datetime,
    cache_days: int,
    cap: int = DELTA_CAP,
) -> tuple[list[Action], FolderSync]:
    """Actions for one page: upserts, removals, the cursor, and (at a round's end) the cleanup.

    A baseline round whose delta listed `cap` messages or more may have been cut short by Graph
    (filtered delta lists at most 5,000, in no set order): it ends WITHOUT RemoveUnseen and with
    `filling` set, and plan_fill_page finishes the baseline from a complete listing of the window.

    `local` maps the provider_ids this page mentions to the folder each now sits in locally. A
    removal is applied only if the row is still in this folder (a move to another folder may have
    been synced first; the row then belongs to that folder). The same id may appear twice in a
    round and even twice in a page: the last mention wins.
    """
    actions: list[Action] = []
    keep_from = window_start(now, cache_days)
    latest: dict[str, RemoteItem | None] = {}
    for listed in page.items:
        latest[listed.provider_id] = listed
    for pid in page.removed:
        latest.pop(pid, None)
        latest[pid] = None
    where = dict(local)
    for pid, item in latest.items():
        if item is None:
            if where.get(pid) == folder_id:
                actions.append(RemoveMessage(folder_id, pid))
                where.pop(pid)
            continue
        if item.received_at is not None and item.received_at < keep_from:
            continue  # outside the cache window (an old item changed): not cached
        actions.append(UpsertSummary(folder_id, item))
        where[pid] = folder_id
    seen = tuple(a.item.provider_id for a in actions if isinstance(a, UpsertSummary))
    if state.baselining and seen:
        actions.append(MarkSeen(folder_id, seen))
    actions.append(SetCursor(folder_id, page.cursor))
    new = state
    if state.baselining and not state.filling:
        new = replace(new, listed=state.listed + len(page.items))
    if page.complete:
        actions.append(PruneOlderThan(folder_id, keep_from))
        if state.baselining and not state.filling and new.listed >= cap:
            new = replace(new, filling=True, fill_link=None)  # capped: unseen rows stay until the fill ends
        elif state.baselining and state.filling:
            pass  # a capped baseline still being filled: its end decides about unseen rows
        else:
            if state.baselining:
                actions.insert(-1, RemoveUnseen(folder_id))
            new = replace(new, baselining=False, last_success_at=now, rounds=state.rounds + 1, listed=0)
    if new != state:
        actions.append(SaveFolderSync(folder_id, new))
    return actions, new


def plan_fill_page(
    folder_id: str,
    page: Changes,
    state: FolderSync,
    now: datetime,
    cache_days: int,
) -> tuple[list[Action], FolderSync]:
    """One page of the complete listing of a capped folder's window (newest first, no cap).

    Upserts and marks seen what it lists; the last page ends the baseline: only then are rows that
    neither the delta nor this listing named removed (they are gone from the folder or the window).
    The delta cursor is left alone; the listing's own next link is kept in the folder's state.
    """
    keep_from = window_start(now, cache_days)
    actions: list[Action] = []
    for item in page.items:
        if item.received_at is not None and item.received_at < keep_from:
            continue
        actions.append(UpsertSummary(folder_id, item))
    seen = tuple(dict.fromkeys(a.item.provider_id for a in actions if isinstance(a, UpsertSummary)))
    if seen:
        actions.append(MarkSeen(folder_id, seen))
    if page.complete:
        actions += [RemoveUnseen(folder_id), PruneOlderThan(folder_id, keep_from)]
        new = replace(state, baselining=False, filling=False, fill_link=None, listed=0, last_success_at=now,
                      rounds=state.rounds + 1)
    else:
        new = replace(state, fill_link=page.cursor)
    actions.append(SaveFolderSync(folder_id, new))
    return actions, new


def mime_batches(provider_ids: Sequence[str], size: int = 20) -> list[tuple[str, ...]]:
    """Split ids into $batch-sized groups (Graph takes at most 20 requests per batch)."""
    if not 1 <= size <= 20:
        raise ValueError("a Graph $batch holds 1 to 20 requests")
    return [tuple(provider_ids[i : i + size]) for i in range(0, len(provider_ids), size)]


def folder_paths(folders: Sequence[Folder]) -> dict[str, str]:
    """{provider_id: "Parent/Child"} (a parent missing from the list is the mailbox root)."""
    by_id = {f.provider_id: f for f in folders}
    paths: dict[str, str] = {}

    def path(f: Folder, depth: int = 0) -> str:
        if f.provider_id not in paths:
            parent = by_id.get(f.parent_id or "")
            above = path(parent, depth + 1) if parent and depth < 50 else ""
            paths[f.provider_id] = f"{above}/{f.name}" if above else f.name
        return paths[f.provider_id]

    for f in folders:
        path(f)
    return paths


def select_folders(folders: Sequence[Folder], wanted: Sequence[str]) -> tuple[list[Folder], list[str]]:
    """The folders to sync and the wanted entries that matched nothing.

    Entries: a well-known name ("inbox", "sentitems", "drafts", "archive", ...), a display name or
    path ("Projects/2026", case-insensitive), or "*" for every folder outside the system folders
    (Deleted Items, Junk Email, Outbox, Conversation History, Sync Issues...) and their subfolders.
    """
    paths = folder_paths(folders)
    by_id = {f.provider_id: f for f in folders}

    def under_system(f: Folder) -> bool:
        seen = 0
        cur: Folder | None = f
        while cur is not None and seen < 50:
            if cur.well_known in SYSTEM_FOLDERS:
                return True
            cur = by_id.get(cur.parent_id or "")
            seen += 1
        return False

    chosen: dict[str, Folder] = {}
    unknown: list[str] = []
    for entry in wanted:
        key = entry.strip().strip("/").lower()
        if key == "*":
            hits = [f for f in folders if not under_system(f)]
        else:
            hits = [f for f in folders if f.well_known == key or paths[f.provider_id].lower() == key]
            if not hits:
                hits = [f for f in folders if f.name.lower() == key]
        if not hits and key != "*":
            unknown.append(entry)
        for f in hits:
            chosen.setdefault(f.provider_id, f)
    return [f for f in folders if f.provider_id in chosen], unknown
