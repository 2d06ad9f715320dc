"""Plain data shared by the core: frozen dataclasses and enums, no I/O.

Folder, RemoteItem and Changes describe what a MailSource reports; Summary is what sync.mime
extracts from a message; OutboxItem is one queued message; Mode is the failover mode.
Times are timezone-aware UTC. `message_id` is always the RFC 5322 Message-ID (with angle
brackets); a provider's own item id is `provider_id`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Mode(StrEnum):
    NORMAL = "normal"
    SUSPECT = "suspect"
    CONTINUITY = "continuity"
    RECOVERING = "recovering"


class OutboxState(StrEnum):
    QUEUED = "queued"  # waiting (also after a temporary failure, with next_attempt_at)
    SENDING = "sending"  # committed before any server is contacted
    SENT = "sent"  # a server accepted it
    FAILED = "failed"  # permanent failure, with the server's words
    UNCERTAIN = "uncertain"  # found SENDING at start-up: settle by Message-ID lookup, never resend blindly


class Route(StrEnum):
    PRIMARY = "primary"  # the provider (Graph sendMail / EWS)
    BACKUP = "backup"  # the organisation's SMTP relay


@dataclass(frozen=True)
class Folder:
    provider_id: str
    name: str
    parent_id: str | None = None
    well_known: str | None = None  # "inbox", "sentitems", "drafts", "archive", ... or None
    total: int | None = None  # as reported by the provider, when known


@dataclass(frozen=True)
class MessageCopy:
    """One copy of a message found anywhere in the mailbox by its Message-ID. A draft copy is one the
    transport has not sent yet (sendMail parks it in Drafts or the Outbox); a non-draft one was sent."""

    provider_id: str
    folder_id: str
    is_draft: bool
    folder: str | None = None  # the folder's well-known name ("drafts", "sentitems", "inbox"...), if any


@dataclass(frozen=True)
class RemoteItem:
    """One message as listed by a source's change feed (summary only; MIME is fetched apart)."""

    provider_id: str
    folder_id: str
    received_at: datetime | None = None
    message_id: str | None = None
    subject: str | None = None
    sender: str | None = None
    is_read: bool | None = None
    change_key: str | None = None


@dataclass(frozen=True)
class Changes:
    """One page of a folder's change feed.

    `cursor` is what to store with this page's items (in the same transaction); `complete` is True
    when the cursor ends a round (a deltaLink), False when more pages follow in this round.
    """

    items: tuple[RemoteItem, ...] = ()
    removed: tuple[str, ...] = ()
    cursor: str | None = None
    complete: bool = True


@dataclass(frozen=True)
class Address:
    name: str
    email: str

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>" if self.name else self.email


@dataclass(frozen=True)
class AttachmentInfo:
    index: int  # position among the message's attachments (stable for the same raw bytes)
    filename: str
    content_type: str
    size: int
    content_id: str | None = None
    inline: bool = False


@dataclass(frozen=True)
class Summary:
    """What sync.mime extracts from raw MIME: enough to list, thread and search a message."""

    subject: str = ""
    sender: Address | None = None
    to: tuple[Address, ...] = ()
    cc: tuple[Address, ...] = ()
    date: datetime | None = None
    message_id: str | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    size: int = 0
    has_attachments: bool = False
    has_calendar: bool = False
    is_signed: bool = False  # S/MIME or PGP signature
    is_encrypted: bool = False  # S/MIME or PGP encryption
    attachments: tuple[AttachmentInfo, ...] = ()
    parse_ok: bool = True  # False: shown as raw text; the raw bytes are always kept
    problems: tuple[str, ...] = ()  # human-readable notes about defects met while parsing


@dataclass(frozen=True)
class OutboxItem:
    id: int
    message_id: str
    state: OutboxState
    raw: bytes  # the MIME as sent (no Bcc header)
    sender: str  # envelope sender
    recipients: tuple[str, ...]  # envelope recipients (To + Cc + Bcc)
    subject: str
    created_at: datetime
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str | None = None
    route: Route | None = None  # the route that accepted it (set with SENT)
    sent_at: datetime | None = None
    reconciled_at: datetime | None = None  # when its copy was confirmed in the cloud Sent Items
    # what settling an UNCERTAIN item and reconcile remember between ticks
    attempt_route: Route | None = None  # the route last tried (where an UNCERTAIN item may have gone)
    uncertain_since: datetime | None = None
    looked_up_at: datetime | None = None  # the last Message-ID lookup while UNCERTAIN
    ask_user: bool = False  # only the user can settle it
    in_transport_since: datetime | None = None  # first found as a draft in Exchange's transport
    transport_wait_since: datetime | None = None  # reconcile waits for an earlier attempt's own copy
    sent_copy_started: datetime | None = None  # reconcile began making the Sent Items copy
    sent_copy_partial: str | None = None  # that copy's provider id, created before its large files
    sent_copy_id: str | None = None  # the Sent Items copy reconcile made or found
    sent_copy_given_up: bool = False  # the copy can never be stored (too large)


# the OutboxItem fields a transition may change (the store writes them back together)
OUTBOX_MUTABLE = (
    "state", "attempts", "next_attempt_at", "last_error", "route", "sent_at", "reconciled_at",
    "attempt_route", "uncertain_since", "looked_up_at", "ask_user", "in_transport_since",
    "transport_wait_since", "sent_copy_started", "sent_copy_partial", "sent_copy_id", "sent_copy_given_up",
)
