"""Protocols the core talks to: the capabilities adapters provide, nothing about how.

MailSource (a provider's mailbox), SendRoute (a way out for mail), Notifier, TokenProvider, Clock.
Adapters raise only sync.errors exceptions (LifeboatError and below): each translates every library
and protocol error at its own boundary, so callers catch nothing else (tests/test_adapter_errors.py
holds GraphSource, GraphRoute and SmtpRoute to it). Every request has an explicit timeout. A MailSource
may retry only through its sync.governor.Governor: bounded, counted, set by policy (a 429 after its
Retry-After; a 5xx or dropped connection a few times, never a request that is not idempotent). A
SendRoute never retries a message that may have been sent: it raises MaybeSent and the outbox looks
it up; it may reopen a connection that closed before the message started (SmtpRoute, once).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Protocol

from sync.model import Changes, Folder, MessageCopy


class MailSource(Protocol):
    delta_cap: int  # the most messages a filtered first round of changes() may list (Graph: 5,000)

    def folders(self) -> list[Folder]: ...

    def changes(self, folder_id: str, cursor: str | None, window_start: datetime | None) -> Changes:
        """One page of the folder's change feed. cursor=None starts a new baseline from window_start."""
        ...

    def window_page(self, folder_id: str, link: str | None, window_start: datetime | None) -> Changes:
        """One page of a complete (uncapped) listing of the folder's messages since window_start;
        link=None starts it, `cursor` of the answer continues it, `complete` ends it."""
        ...

    def fetch_mime(self, provider_ids: Sequence[str]) -> Mapping[str, bytes | Exception]:
        """Raw MIME per id; a per-item failure is returned as an exception, not raised."""
        ...

    def find_by_message_id(self, message_id: str) -> list[MessageCopy]:
        """Every copy of the message with that Message-ID anywhere in the mailbox (drafts included)."""
        ...

    def save_copy(self, folder_id: str, raw: bytes, sent_at: datetime, message_id: str,
                  recipients: Sequence[str] = (), on_created: Callable[[str], None] | None = None) -> str:
        """Create a non-draft sent copy of raw MIME in the folder (recipients not in To/Cc become its
        Bcc); returns its provider_id. When parts follow the creation in further requests, on_created(id)
        is called first, so an interrupted copy can be found and discarded. TooLarge: it can never fit."""
        ...

    def discard_copy(self, provider_id: str) -> None:
        """Delete a copy this source made (an incomplete one), for good."""
        ...

    def probe(self) -> None:
        """Return if the provider answers; raise Unreachable/AuthRequired/Throttled otherwise."""
        ...


class SendRoute(Protocol):
    name: str

    def send(self, raw: bytes, sender: str, recipients: Sequence[str]) -> None:
        """Hand the message over; raise SendRejected (permanent), SendDeferred (temporary), MaybeSent
        (handed over, answer lost: look it up before any resend) or another LifeboatError (Unreachable,
        AuthRequired, Throttled, MessageBad...), never anything outside sync.errors."""
        ...

    def probe(self) -> None: ...


class Notifier(Protocol):
    def notify(self, title: str, body: str) -> None: ...


class TokenProvider(Protocol):
    def token(self) -> str:
        """A current access token; raise AuthRequired (or Unreachable when sign-in is down)."""
        ...


class Clock(Protocol):
    def now(self) -> datetime: ...
