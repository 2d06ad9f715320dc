"""The primary send route: Microsoft Graph sendMail with the whole MIME (via GraphSource.send_mime).

`GraphRoute` is a SendRoute named "primary". Graph takes its recipients from the MIME headers, so
envelope recipients missing from To/Cc (the Bcc, which the outbox never keeps in the stored MIME)
are added as a Bcc header on the copy handed to Graph (sync.compose.with_bcc); Exchange delivers to them
and strips it.
Errors arrive from the source already translated into sync.errors; one whose request may have reached
Graph (no answer after it was sent) leaves as MaybeSent, so the outbox looks it up instead of resending,
unless the source marked it `not_sent` (a large message failing before its draft was sent: the draft is
deleted, nothing went out).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import requests
import urllib3.exceptions

from sync.compose import with_bcc
from sync.errors import SendDeferred, Unreachable
from sync.model import Route


class MaybeSent(SendDeferred):
    """The request went out but no answer came back: Graph may have accepted the message."""

    maybe_sent = True


def may_have_arrived(exc: BaseException) -> bool:
    """True if the failure happened after the request was handed to the server (a read timeout, a
    dropped or cut response); False if no connection was made (refused, connect timeout, TLS)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, requests.ConnectTimeout | requests.exceptions.SSLError):
            return False
        if isinstance(seen, requests.ReadTimeout | requests.exceptions.ChunkedEncodingError):
            return True
        if isinstance(seen, requests.ConnectionError):
            reason = getattr(seen.args[0], "reason", None) if seen.args else None
            return not isinstance(reason, urllib3.exceptions.NewConnectionError
                                  | urllib3.exceptions.ConnectTimeoutError)
        seen = seen.__cause__ or seen.__context__
    return False


class MimeSender(Protocol):
    def send_mime(self, raw: bytes) -> None: ...

    def probe(self) -> None: ...


class GraphRoute:
    name = Route.PRIMARY.value

    def __init__(self, source: MimeSender) -> None:
        self._source = source

    def send(self, raw: bytes, sender: str, recipients: Sequence[str]) -> None:
        try:
            self._source.send_mime(with_bcc(raw, recipients))
        except Unreachable as exc:
            if may_have_arrived(exc) and not getattr(exc, "not_sent", False):
                raise MaybeSent(f"{exc}; the message may have been accepted",
                                fix="Lifeboat looks it up in Sent Items before any resend") from exc
            raise

    def probe(self) -> None:
        self._source.probe()
