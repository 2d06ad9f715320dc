"""The one exception tree the rest of Lifeboat sees; adapters translate library errors into it.

    LifeboatError
    ├── MessageBad          one message cannot be used (others go on)
    │   └── TooLarge        over a size limit the provider never lifts (e.g. a 150 MB attachment)
    ├── FolderBad           one folder cannot be synced (others go on)
    │   └── AccessDenied    403 that is not sign-in: this folder or item is not ours to open, or the app
    │                       lacks a permission IT must grant; permanent for that request, not an outage
    ├── Unreachable         the provider or a relay did not answer (timeout, refused, 5xx, hang)
    │   ├── Offline         this machine has no network at all
    │   ├── NetworkBlocked  the network on our side refuses (a certificate the system does not trust:
    │   │                   TLS inspection; a proxy answering 407/403): never a provider outage, the
    │   │                   failover raises its `network_blocked` condition instead; `reason` is short
    │   └── Retryable       worth one more try on a new connection (5xx, a dropped connection, a cut
    │                       answer); `retry_after` is the server's Retry-After, None when it gave none
    ├── AuthRequired        the provider answered but rejected our sign-in
    ├── Throttled           429: slow down (retry_after seconds); never an outage
    ├── CursorExpired       a delta/sync cursor is no longer valid: re-baseline the folder
    ├── SendRejected        a server refused a message for good (5xx): FAILED with its words
    │   └── RequestTooLarge Graph refused a request body over its limit (413) unread: nothing was done
    ├── SendDeferred        a server refused for now (4xx, timeout): retry later
    │   └── MaybeSent       the message was handed over and the answer was lost (read timeout, dropped
    │                       or cut response): it may have been accepted, so look it up, never resend
    ├── CacheError          the encrypted cache cannot be used
    │   ├── WrongKey        the key does not open the file
    │   ├── KeyMissing      no key in the keystore or LIFEBOAT_DB_KEY
    │   ├── CacheCorrupt    not a database, truncated, or failing its integrity check
    │   ├── CacheTooNew     written by a newer Lifeboat (schema version above ours)
    │   └── DiskFull        the disk holding the cache has no room: the write was rolled back, what was
    │                       committed before stays (`folder`, `free_bytes` say where and how much)
    ├── BadQuery            a search query the full-text index cannot understand
    ├── BadArgument         a caller (the window's page, the demo) passed something not accepted
    └── ConfigError         configuration or policy is invalid

Every error carries a message a person can act on; `fix` says what to do about it.

Adapters (sync/sources, sync/routes, desktop/auth.py) translate at their boundary: nothing else leaves
them (tests/test_adapter_errors.py drives them through every outage and error answer). A send route
raises MaybeSent only for the step that hands the message over (Graph's sendMail or a draft's /send)
when its request may have arrived; any other failure of a send means nothing went out (a large
message's draft, attachments or earlier steps included), so it is retried or failed, never looked up.
"""

from __future__ import annotations


class LifeboatError(Exception):
    fix: str = ""

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        super().__init__(message)
        if fix is not None:
            self.fix = fix

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base} ({self.fix})" if self.fix else base


class MessageBad(LifeboatError):
    pass


class TooLarge(MessageBad):
    """The provider can never take this message as it is (a documented size limit): give up, say why."""


class FolderBad(LifeboatError):
    pass


class AccessDenied(FolderBad):
    fix = ("ask IT to check that Lifeboat was granted Mail.ReadWrite and Mail.Send and that you may open "
           "this folder; signing in again does not change it")


class Unreachable(LifeboatError):
    pass


class Offline(Unreachable):
    pass


class NetworkBlocked(Unreachable):
    """The request never reached Microsoft because the network between (TLS inspection with a root the
    system does not trust, a proxy that wants authentication or refuses) said no. It is Unreachable so
    every caller defers its work as for no answer, but the failover never counts it as an outage
    (sync.health): the relay may answer while every Graph request is blocked, and the whole fleet would
    fail over. `reason` is the short form shown in the tray and `lifeboat status`."""

    def __init__(self, message: str, *, reason: str = "", fix: str | None = None) -> None:
        super().__init__(message, fix=fix)
        self.reason = reason or message


class Retryable(Unreachable):
    """Unreachable that the Governor may retry on a new connection (5xx, a dropped connection, a cut
    answer); `retry_after` is the server's Retry-After (a 503/504 may carry one), None when it gave none."""

    def __init__(self, message: str, *, retry_after: float | None = None, fix: str | None = None) -> None:
        super().__init__(message, fix=fix)
        self.retry_after = retry_after


class AuthRequired(LifeboatError):
    fix = "sign in again: Sign in in the tray or the window, or `lifeboat login`"


class Throttled(LifeboatError):
    def __init__(self, message: str, *, retry_after: float = 1.0, fix: str | None = None) -> None:
        super().__init__(message, fix=fix)
        self.retry_after = retry_after


class CursorExpired(LifeboatError):
    pass


class SendRejected(LifeboatError):
    pass


class RequestTooLarge(SendRejected):
    """Graph refused a request body over its 4 MB limit (413, or 400 "maximum request length") before
    reading it: nothing was created or sent, so a smaller request (or the large-message way) may follow."""


class SendDeferred(LifeboatError):
    pass


class MaybeSent(SendDeferred):
    """The request that hands a message over went out but no answer came back: the provider may have
    accepted it. The outbox makes the item UNCERTAIN and looks it up before any resend."""

    fix = "Lifeboat looks it up in Sent Items before any resend"


REBUILD_FIX = (
    "the cache is only a copy: move the file aside (or delete it) and Lifeboat rebuilds it from the "
    "provider on the next sync"
)


class CacheError(LifeboatError):
    fix = REBUILD_FIX


class WrongKey(CacheError):
    pass


class KeyMissing(CacheError):
    fix = (
        "run Lifeboat in a desktop session with a keystore (Windows Credential Manager, macOS "
        "Keychain, or Secret Service on Linux), or set LIFEBOAT_DB_KEY to 64 hex characters"
    )


class CacheCorrupt(CacheError):
    pass


class CacheTooNew(CacheError):
    fix = "upgrade Lifeboat, or move the cache aside so this version rebuilds it from the provider"


class DiskFull(CacheError):
    """The disk holding the cache is full. SQLite rolled the failed transaction back; everything
    committed before it is intact, so the cache must NOT be moved aside (unlike CacheError's fix).
    `folder` is the cache's folder, `free_bytes` what the file system had left when it failed."""

    fix = ("free some space on that disk (or move the data folder to a larger one); what was stored "
           "stays, and Lifeboat carries on where it stopped")

    def __init__(self, message: str, *, folder: str = "", free_bytes: int = 0,
                 fix: str | None = None) -> None:
        super().__init__(message, fix=fix)
        self.folder, self.free_bytes = folder, free_bytes


class BadQuery(LifeboatError):
    fix = 'use plain words, "an exact phrase", OR, NOT, or a trailing * for a prefix'


class BadArgument(LifeboatError):
    """A caller passed something Lifeboat does not accept (the window's page through the bridge)."""


class ConfigError(LifeboatError):
    pass
