"""The durable outbox's lifecycle, pure: transitions over sync.model.OutboxItem, retry schedule, triage.

QUEUED -> SENDING (committed before any server is contacted) -> SENT | QUEUED (temporary failure,
with a backoff) | FAILED (permanent, with the server's words). A SENDING item found at start-up is
UNCERTAIN and is settled by a Message-ID lookup or by the user, never by a blind resend. Every
transition checks its from-state (ValueError otherwise); the raw MIME and Message-ID never change.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol

from sync import errors
from sync.compose import header_problems
from sync.model import MessageCopy, OutboxItem, OutboxState, Route

S = OutboxState


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff: base * 2**(attempts-1), at most cap, scaled by jitter into [1/2, 1]."""

    base: float = 30.0  # seconds before the first retry
    cap: float = 1800.0  # never wait longer than this between attempts
    give_up_after: timedelta = timedelta(days=2)  # like an MTA's maximal queue lifetime

    def delay(self, attempts: int, jitter: float) -> float:
        if not 0.0 <= jitter <= 1.0:
            raise ValueError(f"jitter must be within [0, 1], not {jitter!r}")
        raw = self.base * 2 ** max(0, min(attempts - 1, 30))
        return min(self.cap, raw) * (0.5 + 0.5 * jitter)


class Outgoing(Protocol):
    """What sync.mime.build returns (duck-typed here)."""

    raw: bytes
    message_id: str
    sender: str
    recipients: tuple[str, ...]
    subject: str


def new_item(out: Outgoing, now: datetime, item_id: int = 0) -> OutboxItem:
    """A QUEUED item from built MIME. Its Message-ID and Date were stamped once, at build time; they are
    checked here and never change afterwards (so a retry, or the Sent Items lookup, sees the same message)."""
    problems = header_problems(out.raw, out.message_id)
    if not out.recipients:
        problems.append("the message has no recipients")
    if not out.sender:
        problems.append("the message has no sender")
    if problems:
        raise errors.MessageBad("cannot queue this message: " + "; ".join(problems))
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware UTC")
    return OutboxItem(
        id=item_id, message_id=out.message_id, state=S.QUEUED, raw=out.raw, sender=out.sender,
        recipients=tuple(out.recipients), subject=out.subject, created_at=now,
    )


def _require(item: OutboxItem, *allowed: OutboxState, action: str) -> None:
    if item.state not in allowed:
        names = " or ".join(a.value for a in allowed)
        raise ValueError(
            f"outbox item {item.id} ({item.message_id}) is {item.state.value}: "
            f"cannot {action} (needs {names})"
        )


def begin_send(item: OutboxItem, now: datetime, route: Route | None = None) -> OutboxItem:
    """QUEUED -> SENDING. Commit this before contacting any server. `route` is the route about to be
    tried (kept in attempt_route, so an UNCERTAIN item knows where it may have gone)."""
    _require(item, S.QUEUED, action="start sending")
    return dataclasses.replace(item, state=S.SENDING, attempts=item.attempts + 1,
                               attempt_route=route if route is not None else item.attempt_route)


def sent(item: OutboxItem, route: Route, now: datetime) -> OutboxItem:
    """SENDING -> SENT after the server accepted the message."""
    _require(item, S.SENDING, action="mark sent")
    return dataclasses.replace(
        item, state=S.SENT, route=route, sent_at=now, next_attempt_at=None, last_error=None
    )


def deferred(
    item: OutboxItem, error: BaseException | str, now: datetime, jitter: float, backoff: Backoff = Backoff()
) -> OutboxItem:
    """SENDING -> QUEUED with the next attempt after a capped, jittered exponential backoff; FAILED once the
    item is older than backoff.give_up_after. `jitter` in [0, 1] comes from the caller (no global RNG)."""
    _require(item, S.SENDING, action="defer")
    words = str(error) or type(error).__name__
    if now - item.created_at >= backoff.give_up_after:
        return failed(item, f"gave up after {item.attempts} attempts; last error: {words}")
    wait = timedelta(seconds=backoff.delay(item.attempts, jitter))
    return dataclasses.replace(item, state=S.QUEUED, next_attempt_at=now + wait, last_error=words)


def failed(item: OutboxItem, error: BaseException | str) -> OutboxItem:
    """SENDING -> FAILED for good, keeping the server's words for the user."""
    _require(item, S.SENDING, action="mark failed")
    return dataclasses.replace(item, state=S.FAILED, next_attempt_at=None, last_error=str(error) or "failed")


def on_startup(items: Iterable[OutboxItem]) -> list[OutboxItem]:
    """Items found SENDING at start-up may or may not have gone out: they become UNCERTAIN."""
    return [
        dataclasses.replace(
            i, state=S.UNCERTAIN,
            last_error="Lifeboat stopped while sending this message; checking whether it went out",
        ) if i.state is S.SENDING else i
        for i in items
    ]


def lookup_can_settle(item: OutboxItem) -> bool:
    """A mailbox lookup proves something only for the primary route (a backup-relay send leaves no cloud
    copy until reconcile). For a backup attempt, ask the user instead."""
    return item.state is S.UNCERTAIN and item.attempt_route is not Route.BACKUP


IN_TRANSPORT = ("Microsoft 365 holds this message in {where} and has not sent it yet; Lifeboat keeps "
                "checking and will not send it again")
# Exchange's transport takes seconds, minutes under load ("Things to know about sendMail"); a draft of
# the message that is still a draft this long after it was first seen is stuck (a submission that
# failed, or a draft left by an interrupted large send), not in the transport: the user is asked.
STUCK_AFTER = timedelta(hours=1)
STUCK = ("Microsoft 365 has held this message in {where} for over an hour without sending it: it looks "
         "stuck. Check the draft in Outlook on the web, then mark it sent, resend it, or discard it")
GONE_AFTER_TRANSPORT = ("Microsoft 365 took this message for sending, and no copy of it is left in your "
                        "mailbox (a rule may delete sent copies): ask a recipient whether it arrived, then "
                        "mark it sent, or resend it")
NOT_FOUND = ("Lifeboat cannot find this message anywhere in your mailbox: it may never have reached "
             "Microsoft 365, or a rule deleted the sent copy. Ask a recipient whether it arrived, then mark "
             "it sent, resend it, or discard it")
NO_ANSWER = "Lifeboat could not tell whether this message went out: resend it, or discard it"


def evidence(copies: Sequence[MessageCopy]) -> Literal["sent", "in_transport", "absent"]:
    """What a whole-mailbox Message-ID lookup proves. Any non-draft copy, wherever it is (Sent Items,
    a folder the user moved it to, the Inbox copy of a message to oneself), was made by the transport:
    sent. Only draft copies (Drafts, Outbox): accepted, not sent yet. Nothing: no proof either way."""
    if any(not c.is_draft for c in copies):
        return "sent"
    return "in_transport" if copies else "absent"


def settle_uncertain(item: OutboxItem, copies: Sequence[MessageCopy] | None, now: datetime) -> OutboxItem:
    """Settle an UNCERTAIN primary-route attempt by what the lookup of its Message-ID found:
    sent -> SENT; in transport -> still UNCERTAIN (never resent: the transport will send it); absent ->
    still UNCERTAIN, and the user is asked (ask_user), because sendMail's copy can vanish after
    sending (a delete-after-send rule) and absence is no proof that it was not sent. `copies` None (the
    provider could not be asked), or a backup attempt, leaves the decision to the user as well."""
    _require(item, S.UNCERTAIN, action="settle")
    looked = dataclasses.replace(item, looked_up_at=now)
    if copies is None or not lookup_can_settle(item):
        return dataclasses.replace(looked, last_error=NO_ANSWER, ask_user=True)
    found = evidence(copies)
    looked = dataclasses.replace(looked, ask_user=False)
    if found == "sent":
        return dataclasses.replace(
            looked, state=S.SENT, route=Route.PRIMARY, sent_at=now, last_error=None, next_attempt_at=None,
        )
    if found == "in_transport":
        where = " and ".join(sorted({c.folder or "a folder" for c in copies}))
        since = looked.in_transport_since or now
        looked = dataclasses.replace(looked, in_transport_since=since)
        if now - since >= STUCK_AFTER:
            return dataclasses.replace(looked, last_error=STUCK.format(where=where), ask_user=True)
        return dataclasses.replace(looked, last_error=IN_TRANSPORT.format(where=where))
    gone = GONE_AFTER_TRANSPORT if looked.in_transport_since is not None else NOT_FOUND
    return dataclasses.replace(looked, last_error=gone, ask_user=True)


def sent_copy_in(copies: Sequence[MessageCopy], folder: str) -> MessageCopy | None:
    """The non-draft copy in `folder` (a well-known name like "sentitems", or a folder id), if any.
    Reconcile counts only this one: the Inbox copy of a message to oneself is the received copy, not
    the sent record, and a draft is not a sent item."""
    return next((c for c in copies if not c.is_draft and folder in (c.folder, c.folder_id)), None)


def reconcile_step(copies: Sequence[MessageCopy], folder: str, waiting_for: timedelta = timedelta(0)
                   ) -> tuple[Literal["present", "wait", "copy"], MessageCopy | None]:
    """What reconcile does for a backup-sent message, given every copy of its Message-ID: "present" (with
    that copy) if a sent copy is in Sent Items; "wait" if Exchange's transport still holds a draft of it
    (an earlier primary attempt that was accepted: its own Sent Items copy is on the way, and a second
    one would be a duplicate), unless reconcile has waited `waiting_for` >= STUCK_AFTER for it (a stuck
    draft brings no copy: the outage-sent message must not stay out of Sent Items for good); otherwise
    "copy"."""
    found = sent_copy_in(copies, folder)
    if found is not None:
        return "present", found
    if any(c.is_draft for c in copies) and waiting_for < STUCK_AFTER:
        return "wait", None
    return "copy", None


def confirmed_sent(item: OutboxItem, now: datetime) -> OutboxItem:
    """UNCERTAIN -> SENT because the user says it went out (through the route it was being tried on)."""
    _require(item, S.UNCERTAIN, action="confirm as sent")
    route = item.attempt_route or Route.PRIMARY
    return dataclasses.replace(
        item, state=S.SENT, route=route, sent_at=now, next_attempt_at=None,
        last_error="marked as sent by the user",
    )


def user_decided(item: OutboxItem, resend: bool) -> OutboxItem:
    """The user settles an UNCERTAIN (or FAILED) item: resend it (QUEUED) or leave it FAILED."""
    _require(item, S.UNCERTAIN, S.FAILED, action="apply your choice")
    if resend:
        return dataclasses.replace(item, state=S.QUEUED, next_attempt_at=None, ask_user=False,
                                   in_transport_since=None, looked_up_at=None)
    return dataclasses.replace(item, state=S.FAILED, last_error=item.last_error or "not resent (your choice)")


def due(items: Sequence[OutboxItem], now: datetime) -> list[OutboxItem]:
    """QUEUED items whose next attempt time has come, oldest first."""
    ready = [
        i for i in items if i.state is S.QUEUED and (i.next_attempt_at is None or i.next_attempt_at <= now)
    ]
    return sorted(ready, key=lambda i: (i.created_at, i.id))


def classify(exc: BaseException) -> Literal["temporary", "permanent"]:
    """Permanent: the server refused this message for good (5xx), or the message itself is unusable.
    Everything else (4xx, timeouts, outages, throttling, sign-in, unknown errors) is retried later."""
    if isinstance(exc, errors.SendRejected | errors.MessageBad):
        return "permanent"
    return "temporary"
