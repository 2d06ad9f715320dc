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
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sync import plan
from sync.errors import CursorExpired, FolderBad, MessageBad
from sync.ports import MailSource
from sync.store import Store

log = logging.getLogger(__name__)

FOLDER_REFRESH = timedelta(minutes=15)  # re-list the folder tree at most this often
MIME_CHUNK = 80  # messages per fetch_mime call: 4 $batch of 20, one after another (one in flight per mailbox)
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


# After a sync that stored this many messages, merge the FTS5 index (bench/store.py: search p95 over
# 100,000 messages drops from about 30 ms to under 20 ms).
COMPACT_AFTER = 1000


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _folder_state(store: Store, folder_id: str) -> plan.FolderSync:
    return store.folder_sync(folder_id)


def refresh_folders(store: Store, source: MailSource, wanted: Sequence[str], now: datetime,
                    report: SyncReport, *, force: bool = False) -> list[str]:
    """The ids of the folders to sync: the stored list, or a fresh one from the provider when due."""
    stored, at = store.sync_folders()
    if not force and at and now - at < FOLDER_REFRESH and stored:
        return stored
    remote = source.folders()
    chosen, unknown = plan.select_folders(remote, wanted)
    for name in unknown:
        report.errors.append(f"folder {name!r} in the configuration does not exist in the mailbox")
    store.upsert_folders(chosen)
    ids = [f.provider_id for f in chosen]
    for row in store.folders():
        if not row["local"] and row["provider_id"] not in ids:
            gone = store.remove_folder(row["provider_id"])  # deleted remotely or no longer wanted
            store.forget_folder_sync(row["provider_id"])
            log.info("folder …%s left the sync set (%d cached messages dropped)", row["provider_id"][-12:],
                     gone)
    store.set_sync_folders(ids, now)
    return ids


def _commit_page(store: Store, actions: Sequence[plan.Action], rep: FolderReport,
                 progress: Progress | None) -> None:
    """Apply one page's actions in one transaction, count them in the folder's report, say progress."""
    store.apply(actions)
    rep.pages += 1
    rep.upserted += sum(isinstance(a, plan.UpsertSummary) for a in actions)
    rep.removed += sum(isinstance(a, plan.RemoveMessage) for a in actions)
    if progress:
        progress(f"summaries {rep.name}", rep.upserted, None)


def sync_folder(
    store: Store, source: MailSource, folder_id: str, name: str, cache_days: int, now: datetime,
    progress: Progress | None = None, max_pages: int | None = None,
) -> FolderReport:
    """Follow one folder's delta to the end of its round (or max_pages), committing page by page.

    A baseline whose delta hit Graph's cap (plan.plan_page sets `filling`) goes on with a complete
    listing of the window (source.window_page, plan.plan_fill_page) before anything is removed.
    """
    rep = FolderReport(name)
    state = _folder_state(store, folder_id)
    cursor = store.cursor(folder_id)
    actions, state = plan.plan_round_start(folder_id, cursor, state, now, cache_days)
    if actions:
        log.info("%s", "; ".join(str(a) for a in actions[:1]))
        store.apply(actions)
        cursor = None
    cap = source.delta_cap
    while max_pages is None or rep.pages < max_pages:
        if state.filling:
            try:
                listed = source.window_page(folder_id, state.fill_link, state.window_start)
            except CursorExpired as exc:  # the listing's link went stale: list again from the start, once
                if state.fill_link is None:
                    raise FolderBad(f"{name}: the provider refuses to list the folder ({exc})") from exc
                state = replace(state, fill_link=None)
                continue
            actions, state = plan.plan_fill_page(folder_id, listed, state, now, cache_days)
            _commit_page(store, actions, rep, progress)
            if listed.complete:
                rep.complete = True
                break
            continue
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
        actions, state = plan.plan_page(folder_id, page, store.folders_of(mentioned), state, now,
                                        cache_days, cap)
        _commit_page(store, actions, rep, progress)
        cursor = page.cursor
        if page.complete and state.filling:
            log.info("folder …%s: the delta listed %d messages (Graph's cap): listing the window in full",
                     folder_id[-12:], state.listed)
            continue
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
    total = store.count_messages(with_mime=False)
    done = 0
    if progress and total:
        progress("messages", 0, total)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mime-prefetch") as pool:
        while True:
            rows = store.missing_mime_places(MIME_SCAN + len(failed))
            todo = [(p, f) for p, f in rows if p not in failed]
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
                            log.info("message …%s skipped: %s", pid[-8:], type(result).__name__)
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
    folders: Sequence[str] = ("*",),
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
    listed = 0  # summaries so far over all folders (the progress bar counts across folders)
    for folder_id in ids:
        name = names.get(folder_id, "?")
        step = None if progress is None else (
            lambda phase, done, total, base=listed: progress(phase, base + done, total))
        try:
            rep = sync_folder(store, source, folder_id, name, cache_days, now, step, max_pages)
        except FolderBad as exc:
            rep = FolderReport(name, error=str(exc))
            report.errors.append(str(exc))
            store.set_sync_folders([], None)  # re-list folders next time (it may be gone)
        report.folders[folder_id] = rep
        listed += rep.upserted
    fill_mime(store, source, report, progress)
    if report.mime_fetched >= COMPACT_AFTER:
        store.compact()  # a bulk load (the first sync): merge the search index so searches stay fast
    if cache_max_mb:
        store.prune(now, cache_days, cache_max_mb)
    report.finished_at = clock()
    if report.ok:
        store.set_setting("sync.last_success_at", report.finished_at.isoformat())
    store.set_setting("sync.last_report", report.to_json())
    return report


def folder_status(store: Store) -> list[dict[str, Any]]:
    """Per-folder counts and sync state for `lifeboat status --json` (JSON-able)."""
    missing = store.missing_mime_counts()
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


# ============================================================================================
# The outbox and reconciliation ticks: queue, send_once, settle_uncertain_once, reconcile_once.
# Identity before side effects: the Message-ID is stamped at queue time and SENDING is committed
# before any server is contacted; a record is "done" only after the remote accepted it. Each
# durable step calls `checkpoint(name)` (a no-op by default; crash tests raise from it).
# ============================================================================================

import dataclasses  # noqa: E402
import random  # noqa: E402

from sync import failover, outbox  # noqa: E402
from sync.compose import Draft, check, compose  # noqa: E402
from sync.errors import (  # noqa: E402
    AuthRequired,
    LifeboatError,
    MaybeSent,
    SendRejected,
    Throttled,
    TooLarge,
    Unreachable,
)
from sync.mime import Outgoing  # noqa: E402
from sync.model import OUTBOX_MUTABLE, MessageCopy, Mode, OutboxItem, OutboxState, Route  # noqa: E402
from sync.ports import SendRoute  # noqa: E402

Checkpoint = Callable[[str], None]
SENT_FOLDER = "sentitems"  # Graph's well-known name for Sent Items
DEFAULT_BACKOFF = outbox.Backoff()


def no_checkpoint(name: str) -> None:
    return None


def queue(store: Store, message: Draft | Outgoing, now: datetime) -> OutboxItem:
    """The one door into the outbox. A Draft is composed here (sync.compose: Message-ID and Date stamped
    once, no Bcc header); built MIME is checked (one Message-ID, one Date, no Bcc header, a sender and
    recipients) and queued. MessageBad otherwise, and nothing is stored."""
    if isinstance(message, Draft):
        out = compose(message, now)  # checked there
    else:
        out = message
        check(out)  # MIME built elsewhere (tests, benchmarks): no header may decode to a line break
    item = outbox.new_item(out, now)  # type: ignore[arg-type]  # outbox.Outgoing's fields are settable
    return store.outbox_add(item.message_id, item.raw, item.sender, item.recipients, item.subject, now)


def save_item(store: Store, item: OutboxItem) -> OutboxItem:
    """Write every field an outbox transition may change (one transaction)."""
    return store.outbox_update(item.id, **{name: getattr(item, name) for name in OUTBOX_MUTABLE})


@dataclass
class SendReport:
    route: Route
    sent: list[str] = field(default_factory=list)  # Message-IDs the route accepted
    deferred: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    uncertain: list[str] = field(default_factory=list)  # handed over without an answer: looked up later
    waiting: int = 0  # due items left for a later tick
    error: LifeboatError | None = None  # the temporary failure that ended the tick, if any

    def __str__(self) -> str:
        return (f"send via {self.route.value}: {len(self.sent)} sent, {len(self.deferred)} deferred, "
                f"{len(self.failed)} failed, {self.waiting} waiting")


def due_for(items: Sequence[OutboxItem], route: Route, now: datetime) -> list[OutboxItem]:
    """Due QUEUED items; a backoff earned on the other route does not hold an item back (a message
    deferred by the unreachable provider goes out through the backup relay as soon as failover says so)."""
    other = [
        i for i in items
        if i.state is OutboxState.QUEUED and i.attempt_route not in (None, route)
    ]
    return sorted({i.id: i for i in [*outbox.due(items, now), *other]}.values(),
                  key=lambda i: (i.created_at, i.id))


def send_once(
    store: Store,
    routes: Mapping[Route, SendRoute],
    mode: Mode,
    now: datetime,
    *,
    checkpoint: Checkpoint = no_checkpoint,
    jitter: Callable[[], float] = random.random,
    backoff: outbox.Backoff = DEFAULT_BACKOFF,
    limit: int | None = None,
) -> SendReport:
    """Send the due outbox items through the route the mode implies (backup exactly in CONTINUITY).

    SENDING is committed before the route is contacted; SENT (with the route) after it accepted;
    a temporary failure defers the item with backoff and ends the tick (the rest wait), a permanent
    one marks it FAILED with the server's words. A route that is not configured leaves items queued."""
    route = failover.route_for(mode)
    report = SendReport(route)
    todo = due_for(store.outbox_list([OutboxState.QUEUED]), route, now)
    if limit is not None:
        todo = todo[:limit]
    sender = routes.get(route)
    if sender is None:
        report.waiting = len(todo)
        if todo:
            log.warning("%d message(s) wait: no %s route is configured", len(todo), route.value)
        return report
    for n, item in enumerate(todo):
        item = save_item(store, outbox.begin_send(item, now, route))
        checkpoint("sending")
        try:
            sender.send(item.raw, item.sender, item.recipients)
        except LifeboatError as err:  # routes translate at their boundary (tests/test_adapter_errors.py)
            if isinstance(err, MaybeSent):  # handed over, no answer: look it up, never resend blindly
                save_item(store, mark_uncertain(item, f"{err}", now))
                report.uncertain.append(item.message_id)
                report.error = err
                report.waiting = len(todo) - n - 1
                checkpoint("uncertain")
                break
            if outbox.classify(err) == "permanent":
                save_item(store, outbox.failed(item, err))
                report.failed.append(item.message_id)
                checkpoint("failed")
                log.warning("outbox item %d failed for good via %s: %s", item.id, route.value,
                            type(err).__name__)  # its words (often the recipients) stay on the item
                continue
            save_item(store, outbox.deferred(item, err, now, jitter(), backoff))
            report.deferred.append(item.message_id)
            report.error = err
            report.waiting = len(todo) - n - 1
            checkpoint("deferred")
            log.info("outbox item %d deferred via %s: %s", item.id, route.value, type(err).__name__)
            break
        checkpoint("accepted")
        save_item(store, outbox.sent(item, route, now))
        report.sent.append(item.message_id)
        checkpoint("sent")
    return report


# A lookup right after an unanswered sendMail may run before Exchange finished creating the draft (step 1 of
# "Things to know about sendMail"); after this grace, a draft copy means "in the transport" and no copy at
# all goes to the user (absence is no proof: the transport may have sent it and a rule deleted the copy).
SETTLE_GRACE = timedelta(minutes=2)
RECHECK = timedelta(minutes=1)  # look an uncertain item up again at most this often


def mark_uncertain(item: OutboxItem, why: str, now: datetime) -> OutboxItem:
    """SENDING -> UNCERTAIN (outbox.on_startup's transition), remembering since when and why."""
    [new] = outbox.on_startup([item])
    return dataclasses.replace(new, last_error=why, uncertain_since=now)


def recover_outbox(store: Store, now: datetime) -> list[OutboxItem]:
    """At start-up: an item found SENDING may or may not have gone out; it becomes UNCERTAIN."""
    out = []
    for item in store.outbox_list([OutboxState.SENDING]):
        item = mark_uncertain(item, "Lifeboat stopped while sending this message; checking whether it "
                              "went out", now)
        with store.transaction():
            out.append(save_item(store, item))
            store.log_event("outbox", f"item {item.id} was being sent when Lifeboat stopped: uncertain", now)
    return out


@dataclass
class SettleReport:
    sent: list[str] = field(default_factory=list)  # a non-draft copy was found: it went out
    in_transport: list[str] = field(default_factory=list)  # only in Drafts/Outbox: the transport has it
    ask_user: list[str] = field(default_factory=list)  # cannot be proven either way: the user decides


def settle_uncertain_once(
    store: Store, source: MailSource, now: datetime, *, checkpoint: Checkpoint = no_checkpoint,
) -> SettleReport:
    """Settle UNCERTAIN items (older than SETTLE_GRACE, at most once per RECHECK) by looking their
    Message-ID up across the whole mailbox (outbox.settle_uncertain decides). Only a primary-route attempt
    can be settled that way (a backup-relay send leaves no cloud copy until reconcile): those stay
    UNCERTAIN for the user (`lifeboat outbox --resend ID | --discard ID | --sent ID`), as do items with no
    copy anywhere. If the provider cannot be asked, everything stays as it is; nothing is ever resent
    without the user's word."""
    report = SettleReport()
    for item in store.outbox_list([OutboxState.UNCERTAIN]):
        if not outbox.lookup_can_settle(item):
            report.ask_user.append(item.message_id)
            continue
        since, looked = item.uncertain_since, item.looked_up_at
        if since and now - since < SETTLE_GRACE:
            continue  # too early: Exchange may still be creating the draft
        if looked and now - looked < RECHECK:
            if item.ask_user:
                report.ask_user.append(item.message_id)
            continue
        try:
            copies: list[MessageCopy] | None = source.find_by_message_id(item.message_id)
        except (Unreachable, AuthRequired, Throttled) as exc:
            log.info("cannot settle uncertain items now: %s", type(exc).__name__)
            copies = None
        new = save_item(store, outbox.settle_uncertain(item, copies, now))
        checkpoint("settled")
        if copies is None:
            report.ask_user.append(item.message_id)
            break
        if new.state is OutboxState.SENT:
            report.sent.append(item.message_id)
        elif new.ask_user:
            report.ask_user.append(item.message_id)
        else:
            report.in_transport.append(item.message_id)
    return report


USER_CHOICES = ("resend", "discard", "sent")


def user_settles(store: Store, item_id: int, choice: str, now: datetime) -> OutboxItem:
    """The user's word on an UNCERTAIN (or FAILED) item: resend it, discard it, or confirm it went out
    (then it counts as sent through the route it was tried on, and reconcile copies a backup send)."""
    item = store.outbox_get(item_id)
    if item is None:
        raise MessageBad(f"there is no outbox item {item_id}", fix="list them with `lifeboat outbox`")
    if choice not in USER_CHOICES:
        raise MessageBad(f"unknown choice {choice!r}: use one of {', '.join(USER_CHOICES)}")
    if choice == "sent":
        if item.state is not OutboxState.UNCERTAIN:
            raise MessageBad(f"outbox item {item_id} is {item.state.value}; only an uncertain item can be "
                             "confirmed as sent")
        route = item.attempt_route or Route.PRIMARY
        new = outbox.sent(dataclasses.replace(item, state=OutboxState.SENDING), route, now)
    else:
        try:
            new = outbox.user_decided(item, resend=choice == "resend")
        except ValueError as exc:
            raise MessageBad(str(exc)) from exc
    with store.transaction():
        saved = save_item(store, new)
        store.log_event("outbox", f"item {item_id}: the user chose {choice}", now)
    return saved


@dataclass
class ReconcileReport:
    copied: list[str] = field(default_factory=list)  # sent copies created in Sent Items
    present: list[str] = field(default_factory=list)  # already there (no copy made)
    waiting: list[str] = field(default_factory=list)  # Exchange's transport holds a draft: its copy comes
    failed: dict[str, str] = field(default_factory=dict)  # Message-ID -> why (retried next time)
    given_up: dict[str, str] = field(default_factory=dict)  # Message-ID -> why it can never be copied

    @property
    def summary(self) -> str:
        n = len(self.copied) + len(self.present)
        text = f"{n} sent during the outage, copied to Sent Items" if n else "nothing sent during the outage"
        if self.waiting:
            text += f"; {len(self.waiting)} still with Microsoft 365's transport"
        text += f"; {len(self.failed)} could not be copied yet" if self.failed else ""
        never = f"; {len(self.given_up)} can never be copied (see the timeline)" if self.given_up else ""
        return text + never


def reconcile_once(
    store: Store, source: MailSource, now: datetime, *, checkpoint: Checkpoint = no_checkpoint,
    sent_folder: str = SENT_FOLDER,
) -> ReconcileReport:
    """For every message sent through the backup route and not yet reconciled: look its Message-ID up
    in the whole mailbox and create the non-draft sent copy in Sent Items only if no non-draft copy is
    there (outbox.reconcile_step: a copy elsewhere, like the Inbox copy of a message to oneself, is the
    received one, not the sent record; a draft still in Exchange's transport will bring its own Sent
    Items copy, so that item waits for a later run); then mark it reconciled.
    Idempotent: a second run (or a run after a crash at any step) creates nothing new. Making a copy is
    noted first (`sent_copy_started`; `sent_copy_partial` = its id once created, before large files
    follow): a copy found after an interrupted attempt may lack files, so it is deleted and made again.
    A copy that can never fit (TooLarge) is given up: marked reconciled, with a timeline event and
    last_error saying why. Unreachable/AuthRequired/Throttled end the run (what
    was done stays); one bad message is skipped."""
    report = ReconcileReport()
    todo = [i for i in store.outbox_list([OutboxState.SENT])
            if i.route is Route.BACKUP and i.reconciled_at is None]
    for item in todo:
        try:
            copies = source.find_by_message_id(item.message_id)
            checkpoint("looked_up")
            waiting_since = item.transport_wait_since
            waited = now - waiting_since if waiting_since else timedelta(0)
            step, found = outbox.reconcile_step(copies, sent_folder, waited)
            if step == "wait":
                report.waiting.append(item.message_id)
                since = waiting_since or now
                store.outbox_update(item.id, last_error="Microsoft 365 still holds an earlier attempt of "
                                    "this message in Drafts; its Sent Items copy will count",
                                    transport_wait_since=since)
                continue
            if waiting_since and found is None:
                store.log_event("reconcile", f"item {item.id} ({item.message_id}): an earlier attempt stayed "
                                f"a draft for {waited} without being sent; copying the outage-sent message",
                                now)
            provider_id = found.provider_id if found is not None else None
            started = item.sent_copy_started or item.sent_copy_partial
            if provider_id is not None and started:  # ours, from an interrupted attempt: maybe half-made
                source.discard_copy(provider_id)
                provider_id = None
            if provider_id is None:
                store.outbox_update(item.id, sent_copy_started=now)

                def noted(pid: str, item: OutboxItem = item) -> None:
                    store.outbox_update(item.id, sent_copy_partial=pid)
                    checkpoint("copy_started")

                provider_id = source.save_copy(sent_folder, item.raw, item.sent_at or now, item.message_id,
                                               item.recipients, on_created=noted)
                report.copied.append(item.message_id)
                checkpoint("copied")
            else:
                report.present.append(item.message_id)
        except TooLarge as exc:
            why = f"its copy can never be stored in Sent Items: {exc}"
            with store.transaction():
                store.outbox_update(item.id, reconciled_at=now, last_error=f"gave up: {why}",
                                    sent_copy_given_up=True)
                store.log_event("reconcile", f"item {item.id} ({item.message_id}): gave up, {why}", now)
            report.given_up[item.message_id] = str(exc)
            log.warning("outbox item %d: its copy can never be stored in Sent Items", item.id)
            continue
        except (MessageBad, SendRejected, FolderBad) as exc:
            report.failed[item.message_id] = str(exc)
            store.outbox_update(item.id, last_error=f"could not copy to Sent Items: {exc}")
            continue
        store.outbox_update(item.id, reconciled_at=now, last_error=None, sent_copy_partial=None,
                            sent_copy_started=None, transport_wait_since=None, sent_copy_id=provider_id)
        checkpoint("reconciled")
    return report
