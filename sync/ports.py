"""Protocols the core talks to: the capabilities adapters provide, nothing about how.

MailSource (a provider's mailbox), SendRoute (a way out for mail), Notifier, TokenProvider, Clock.
Adapters raise only sync.errors exceptions, with explicit timeouts (no hidden retry loops).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol

from sync.model import Changes, Folder


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

    def find_by_message_id(self, folder_id: str, message_id: str) -> str | None:
        """The provider_id of a message with that Message-ID in the folder, or None."""
        ...

    def save_copy(self, folder_id: str, raw: bytes, sent_at: datetime, message_id: str) -> str:
        """Create a non-draft sent copy of raw MIME in the folder; returns its provider_id."""
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
