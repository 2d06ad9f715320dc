"""The one exception tree the rest of Lifeboat sees; adapters translate library errors into it.

    LifeboatError
    ├── MessageBad        one message cannot be used (others go on)
    │   └── TooLarge      over a size limit the provider never lifts (e.g. a 150 MB attachment)
    ├── FolderBad         one folder cannot be synced (others go on)
    │   └── AccessDenied  403 that is not sign-in: this folder or item is not ours to open, or the app
    │                     lacks a permission IT must grant; permanent for that request, not an outage
    ├── Unreachable       the provider or a relay did not answer (timeout, refused, 5xx, hang)
    │   └── Offline       this machine has no network at all
    ├── AuthRequired      the provider answered but rejected our sign-in
    ├── Throttled         429: slow down (retry_after seconds); never an outage
    ├── CursorExpired     a delta/sync cursor is no longer valid: re-baseline the folder
    ├── SendRejected      a server refused a message for good (5xx): FAILED with its words
    ├── SendDeferred      a server refused for now (4xx, timeout): retry later
    ├── CacheError        the encrypted cache cannot be used
    │   ├── WrongKey      the key does not open the file
    │   ├── KeyMissing    no key in the keystore or LIFEBOAT_DB_KEY
    │   ├── CacheCorrupt  not a database, truncated, or failing its integrity check
    │   └── CacheTooNew   written by a newer Lifeboat (schema version above ours)
    ├── BadQuery          a search query the full-text index cannot understand
    └── ConfigError       configuration or policy is invalid

Every error carries a message a person can act on; `fix` says what to do about it.
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


class AuthRequired(LifeboatError):
    fix = "sign in again with `lifeboat login`"


class Throttled(LifeboatError):
    def __init__(self, message: str, *, retry_after: float = 1.0, fix: str | None = None) -> None:
        super().__init__(message, fix=fix)
        self.retry_after = retry_after


class CursorExpired(LifeboatError):
    pass


class SendRejected(LifeboatError):
    pass


class SendDeferred(LifeboatError):
    pass


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


class BadQuery(LifeboatError):
    fix = 'use plain words, "an exact phrase", OR, NOT, or a trailing * for a prefix'


class ConfigError(LifeboatError):
    pass
