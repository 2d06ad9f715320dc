"""The shell ticks: read the store, plan (sync.plan), call the ports, commit. `sync_once` lives here.

sync_once keeps "summaries first, then MIME": each delta page is committed with its cursor in one
transaction (Store.apply), then rows without MIME are filled through the source's $batch fetch. A
crash at any moment loses nothing and duplicates nothing (upserts by provider_id; cursors move only
with their page). FolderBad/MessageBad are reported and the rest goes on; Unreachable, AuthRequired
and Throttled end the tick (what was committed stays) and propagate to the caller.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sync import plan
from sync.errors import CursorExpired, FolderBad, MessageBad
from sync.ports import MailSource
from sync.store import Store

log = logging.getLogger(__name__)

FOLDER_REFRESH = timedelta(minutes=15)  # re-list the folder tree at most this often
MIME_CHUNK = 80  # messages fetched per round of $batch requests (4 batches of 20 in flight)
MIME_SCAN = 2000  # rows without MIME read from the store at a time
MAX_RESETS = 2  # expired cursors tolerated per folder per tick before it is reported as bad

Progress = Callable[[str, int, int | None], None]  # (phase, done, total or None)


@dataclass
class FolderReport:
    name: str
    pages: int = 0
    upserted: int = 0
    removed: int = 0
    resets: int = 0
    complete: bool = False
    error: str = ""


@dataclass
class SyncReport:
    folders: dict[str, FolderReport] = field(default_factory=dict)
    mime_fetched: int = 0
    mime_failed: int = 0
    errors: list[str] = field(default_factory=list)
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "mime_fetched": self.mime_fetched,
            "mime_failed": self.mime_failed,
            "errors": list(self.errors),
            "folders": {fid: vars(r) for fid, r in self.folders.items()},
        }


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _folder_state(store: Store, folder_id: str) -> plan.FolderSync:
    return plan.FolderSync.from_json(store.get_setting(f"sync.folder.{folder_id}"))


def _local_folders_of(store: Store, provider_ids: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for start in range(0, len(provider_ids), 500):
        chunk = list(provider_ids[start : start + 500])
        marks = ",".join("?" * len(chunk))
        rows = store.db.execute(
            f"SELECT provider_id, folder_id FROM messages WHERE provider_id IN ({marks})", chunk
        ).fetchall()
        out.update({str(r[0]): str(r[1]) for r in rows})
    return out


def refresh_folders(store: Store, source: MailSource, wanted: Sequence[str], now: datetime,
                    report: SyncReport, *, force: bool = False) -> list[str]:
    """The ids of the folders to sync: the stored list, or a fresh one from the provider when due."""
    stored = store.get_setting("sync.folders") or {}
    at = stored.get("at")
    if not force and at and now - datetime.fromisoformat(at) < FOLDER_REFRESH and stored.get("ids"):
        return list(stored["ids"])
    remote = source.folders()
    chosen, unknown = plan.select_folders(remote, wanted)
    for name in unknown:
        report.errors.append(f"folder {name!r} in the configuration does not exist in the mailbox")
    store.upsert_folders(chosen)
    ids = [f.provider_id for f in chosen]
    for row in store.folders():
        if not row["local"] and row["provider_id"] not in ids:
            gone = store.remove_folder(row["provider_id"])  # deleted remotely or no longer wanted
            store.set_setting(f"sync.folder.{row['provider_id']}", None)
            log.info("folder %s left the sync set (%d cached messages dropped)", row["name"], gone)
    store.set_setting("sync.folders", {"at": now.isoformat(), "ids": ids})
    return ids


def sync_folder(
    store: Store, source: MailSource, folder_id: str, name: str, cache_days: int, now: datetime,
    progress: Progress | None = None, max_pages: int | None = None,
) -> FolderReport:
    """Follow one folder's delta to the end of its round (or max_pages), committing page by page."""
    rep = FolderReport(name)
    state = _folder_state(store, folder_id)
    cursor = store.cursor(folder_id)
    actions, state = plan.plan_round_start(folder_id, cursor, state, now, cache_days)
    if actions:
        log.info("%s", "; ".join(str(a) for a in actions[:1]))
        store.apply(actions)
        cursor = None
    while max_pages is None or rep.pages < max_pages:
        try:
            page = source.changes(folder_id, cursor, state.window_start)
        except CursorExpired as exc:
            rep.resets += 1
            if rep.resets > MAX_RESETS:
                raise FolderBad(f"{name}: the provider keeps rejecting fresh cursors ({exc})") from exc
            actions, state = plan.start_baseline(folder_id, state, now, cache_days, "cursor expired")
            log.info("%s", actions[0])
            store.apply(actions)
            cursor = None
            continue
        mentioned = [i.provider_id for i in page.items] + list(page.removed)
        actions, state = plan.plan_page(folder_id, page, _local_folders_of(store, mentioned), state, now,
                                        cache_days)
        store.apply(actions)
        rep.pages += 1
        rep.upserted += sum(isinstance(a, plan.UpsertSummary) for a in actions)
        rep.removed += sum(isinstance(a, plan.RemoveMessage) for a in actions)
        cursor = page.cursor
        if progress:
            progress(f"summaries {name}", rep.upserted, None)
        if page.complete:
            rep.complete = True
            break
    return rep


def fill_mime(store: Store, source: MailSource, report: SyncReport, progress: Progress | None = None,
              chunk: int = MIME_CHUNK) -> None:
    """Fetch MIME for every row that lacks it; one transaction per chunk of `chunk` messages.

    The next chunk is fetched while the current one is parsed and stored (network and parsing
    overlap). A MessageBad (e.g. deleted meanwhile) skips that message for this tick; throttling or
    an unreachable provider ends the phase, keeping what was committed.
    """
    failed: set[str] = set()
    total = int(store.db.execute("SELECT count(*) FROM messages WHERE raw IS NULL").fetchone()[0])
    done = 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mime-prefetch") as pool:
        while True:
            rows = store.db.execute(
                "SELECT provider_id, folder_id FROM messages WHERE raw IS NULL ORDER BY id LIMIT ?",
                [MIME_SCAN + len(failed)],
            ).fetchall()
            todo = [(str(p), str(f)) for p, f in rows if p not in failed]
            if not todo:
                return
            chunks = [todo[i : i + chunk] for i in range(0, len(todo), chunk)]
            pending: Future[Mapping[str, bytes | Exception]] = pool.submit(
                source.fetch_mime, [p for p, _ in chunks[0]])
            for n, part in enumerate(chunks):
                got = pending.result()
                if n + 1 < len(chunks):
                    pending = pool.submit(source.fetch_mime, [p for p, _ in chunks[n + 1]])
                problem: Exception | None = None
                with store.transaction():
                    for pid, folder_id in part:
                        result = got.get(pid)
                        if isinstance(result, bytes):
                            store.put_message(folder_id, pid, result)
                            report.mime_fetched += 1
                            done += 1
                            continue
                        failed.add(pid)
                        report.mime_failed += 1
                        if isinstance(result, Exception) and not isinstance(result, MessageBad):
                            problem = problem or result
                        else:
                            log.info("message …%s skipped: %s", pid[-8:], result)
                if progress:
                    progress("messages", done, total)
                if problem is not None:  # throttled or unreachable: the committed part stays
                    if n + 1 < len(chunks):
                        pending.cancel()
                    raise problem


def sync_once(
    store: Store,
    source: MailSource,
    *,
    folders: Sequence[str] = ("inbox", "sentitems", "drafts", "archive"),
    cache_days: int = 30,
    cache_max_mb: int | None = None,
    clock: Callable[[], datetime] = _utcnow,
    progress: Progress | None = None,
    max_pages: int | None = None,
    refresh: bool = False,
) -> SyncReport:
    """One sync tick: folders (when due), every folder's delta, then missing MIME, then retention."""
    now = clock()
    report = SyncReport(started_at=now)
    ids = refresh_folders(store, source, folders, now, report, force=refresh)
    names = {r["provider_id"]: r["name"] for r in store.folders()}
    for folder_id in ids:
        name = names.get(folder_id, "?")
        try:
            rep = sync_folder(store, source, folder_id, name, cache_days, now, progress, max_pages)
        except FolderBad as exc:
            rep = FolderReport(name, error=str(exc))
            report.errors.append(str(exc))
            store.set_setting("sync.folders", None)  # re-list folders next time (it may be gone)
        report.folders[folder_id] = rep
    fill_mime(store, source, report, progress)
    if cache_max_mb:
        store.prune(now, cache_days, cache_max_mb)
    report.finished_at = clock()
    if report.ok:
        store.set_setting("sync.last_success_at", report.finished_at.isoformat())
    store.set_setting("sync.last_report", report.to_json())
    return report


def folder_status(store: Store) -> list[dict[str, Any]]:
    """Per-folder counts and sync state for `lifeboat status --json` (JSON-able)."""
    missing = dict(store.db.execute(
        "SELECT folder_id, count(*) FROM messages WHERE raw IS NULL GROUP BY folder_id").fetchall())
    out = []
    for row in store.folders():
        st = _folder_state(store, row["provider_id"])
        out.append({
            "id": row["provider_id"],
            "name": row["name"],
            "well_known": row["well_known"],
            "local": row["local"],
            "messages": row["count"],
            "unread": row["unread"],
            "missing_mime": int(missing.get(row["provider_id"], 0)),
            "remote_total": row["total"],
            "last_success_at": st.last_success_at.isoformat() if st.last_success_at else None,
            "baselining": st.baselining,
            "window_start": st.window_start.isoformat() if st.window_start else None,
        })
    return out

