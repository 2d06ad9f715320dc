"""The primary send route: Microsoft Graph sendMail with the whole MIME (via GraphSource.send_mime).

`GraphRoute` is a SendRoute named "primary". Graph takes its recipients from the MIME headers, so
envelope recipients missing from To/Cc (the Bcc, which the outbox never keeps in the stored MIME)
are added as a Bcc header on the copy handed to Graph (sync.compose.with_bcc); Exchange delivers to them
and strips it.
Errors arrive from the source already translated into sync.errors, MaybeSent included (the source
knows which request handed the message over and whether it may have arrived); anything else that
escapes the source (a bug) leaves as SendDeferred, so the route raises nothing outside the tree.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from sync.compose import with_bcc
from sync.errors import LifeboatError, SendDeferred
from sync.model import Route

log = logging.getLogger(__name__)


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
        except LifeboatError:
            raise
        except Exception as exc:  # a bug before the hand-over (the source translates every transport error)
            log.error("the Graph route failed unexpectedly", exc_info=True)
            raise SendDeferred(f"the Graph route failed unexpectedly: {type(exc).__name__}") from exc

    def probe(self) -> None:
        self._source.probe()
