"""Protocols the core talks to: the capabilities adapters provide, nothing about how.

MailSource (a provider's mailbox), SendRoute (a way out for mail), Notifier, TokenProvider, Clock.
Adapters raise only sync.errors exceptions, with explicit timeouts (no hidden retry loops).
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
        """Hand the message over; raise SendRejected (permanent) or SendDeferred (temporary)."""
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
