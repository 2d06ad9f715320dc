"""The Windows Event Log: fixed, documented event IDs for what a NOC watches across a fleet.

`EVENTS` is the table (id, level, name, meaning, what to do; docs/operations.md shows it and a test holds
the two equal). `Snapshot` is what the app shows (mode, conditions, backup relay, outbox items needing the
user); `records(before, after)` is the one pure mapping from a change to the events to write (a skipped
middle step, e.g. CONTINUITY -> NORMAL seen without RECOVERING, still logs "left continuity").
`EventLog(api)` writes them under the source "Lifeboat" in the Application log (the MSI registers it)
through desktop.win32's ReportEventW adapter; off Windows (or without the source) it only logs.
`Watch` keeps the last snapshot and writes what changed (the app's and `run --headless`'s watch loops).
Never user content: mode names, counts and fixed words only (no address, subject, path or server text).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Protocol

from sync.model import Mode

log = logging.getLogger(__name__)

SOURCE = "Lifeboat"


class Level(IntEnum):
    """ReportEventW's wType."""

    ERROR = 0x0001
    WARNING = 0x0002
    INFORMATION = 0x0004


@dataclass(frozen=True)
class EventId:
    id: int
    level: Level
    name: str
    meaning: str
    action: str


STARTED = EventId(1000, Level.INFORMATION, "started",
                  "Lifeboat started (the text gives the mode it resumed in).", "Nothing.")
CONTINUITY_ENTERED = EventId(
    1001, Level.WARNING, "continuity_entered",
    "Continuity mode: Microsoft 365 mail stopped answering while the reference (backup relay, DNS, URL) "
    "answers, or continuity was forced (by the user or by policy). New mail goes out through the backup "
    "relay.",
    "Many machines at once: check the Microsoft 365 service health. One machine: its network path to "
    "Microsoft 365.")
CONTINUITY_LEFT = EventId(
    1002, Level.INFORMATION, "continuity_left",
    "Continuity mode ended: Microsoft 365 answers again (or normal mode was forced); mail goes through "
    "Microsoft 365 and the mail sent during the outage is being copied to Sent Items.", "Nothing.")
BACK_TO_NORMAL = EventId(1003, Level.INFORMATION, "back_to_normal",
                         "Normal mode: the mail sent during the outage is in Sent Items.", "Nothing.")
SIGN_IN_NEEDED = EventId(
    1010, Level.WARNING, "sign_in_needed",
    "Microsoft 365 rejected the saved sign-in (expired, revoked, or a Conditional Access change).",
    "The user signs in again (tray: Sign in, or `lifeboat login`); many machines at once: check the app "
    "registration, consent and Conditional Access policies.")
SIGNED_IN = EventId(1011, Level.INFORMATION, "signed_in", "The sign-in works again.", "Nothing.")
RELAY_FAILING = EventId(
    1020, Level.ERROR, "relay_failing",
    "The backup relay did not take mail (unreachable, refused the sign-in, or deferred it); mail waits in "
    "the outbox and is tried again.",
    "Check the relay (host, port, TLS, the user's relay password) while Microsoft 365 is down.")
RELAY_OK = EventId(1021, Level.INFORMATION, "relay_ok", "The backup relay takes mail again.", "Nothing.")
NETWORK_BLOCKED = EventId(
    1030, Level.WARNING, "network_blocked",
    "The network in between refused Microsoft 365: a certificate this machine does not trust (TLS "
    "inspection) or a proxy refused the connection. Not counted as a provider outage.",
    "Deploy the inspection root to the Windows certificate store or policy `ca_file`; check the proxy "
    "settings and that the proxy lets Lifeboat through.")
NETWORK_OK = EventId(1031, Level.INFORMATION, "network_ok", "The network lets Microsoft 365 through again.",
                     "Nothing.")
OUTBOX_NEEDS_USER = EventId(
    1040, Level.WARNING, "outbox_needs_user",
    "Outbox items need the user: refused for good, or sent without an answer and not found in the mailbox "
    "(the text gives the count).",
    "The user looks at the outbox (`lifeboat outbox`) and resends, discards or confirms them.")
STOPPED = EventId(1090, Level.INFORMATION, "stopped",
                  "Lifeboat stopped in order (the text says why: Quit, sign-out, shutdown, an update).",
                  "Nothing; after an update Windows starts it again.")

EVENTS: tuple[EventId, ...] = (STARTED, CONTINUITY_ENTERED, CONTINUITY_LEFT, BACK_TO_NORMAL, SIGN_IN_NEEDED,
                               SIGNED_IN, RELAY_FAILING, RELAY_OK, NETWORK_BLOCKED, NETWORK_OK,
                               OUTBOX_NEEDS_USER, STOPPED)
MODES = tuple(m.value for m in Mode)  # the failover's modes (sync.model.Mode)


@dataclass(frozen=True)
class Record:
    event: EventId
    text: str


@dataclass(frozen=True)
class Snapshot:
    """What the Event Log follows: the failover state's mode and conditions (`network_blocked`: TLS
    inspection not trusted or a proxy refusing); `needs_user`: outbox items that need the user, seen in
    this run."""

    mode: str = "normal"
    sign_in_needed: bool = False
    network_blocked: bool = False
    relay_failing: bool = False
    needs_user: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r} (known: {', '.join(MODES)})")

    @classmethod
    def of(cls, state: Any, *, relay_failing: bool = False, needs_user: int = 0) -> Snapshot:
        """From a sync.failover.State (duck-typed)."""
        return cls(mode=str(getattr(state.mode, "value", state.mode)),
                   sign_in_needed=bool(state.sign_in_needed),
                   network_blocked=bool(state.network_blocked),
                   relay_failing=relay_failing, needs_user=needs_user)


def _switch(before: bool, after: bool, on: EventId, off: EventId, text_on: str,
            text_off: str) -> list[Record]:
    if after and not before:
        return [Record(on, text_on)]
    if before and not after:
        return [Record(off, text_off)]
    return []


def records(before: Snapshot | None, after: Snapshot) -> list[Record]:
    """The events for one change (pure). `before=None`: the app just started (STARTED, then whatever is
    already wrong, as if coming from a clean normal state)."""
    out: list[Record] = []
    if before is None:
        out.append(Record(STARTED, f"Lifeboat started in {after.mode} mode."))
        before = Snapshot(needs_user=after.needs_user)  # items from earlier runs are not news
    cont_before = before.mode == "continuity"
    cont_after = after.mode == "continuity"
    if cont_after and not cont_before:
        out.append(Record(CONTINUITY_ENTERED, "Lifeboat entered continuity mode (was "
                          f"{before.mode}): new mail goes out through the backup relay."))
    if cont_before and not cont_after:
        out.append(Record(CONTINUITY_LEFT, f"Lifeboat left continuity mode (now {after.mode})."))
    if after.mode == "normal" and before.mode in ("continuity", "recovering"):
        out.append(Record(BACK_TO_NORMAL, "Lifeboat is back in normal mode."))
    out += _switch(before.sign_in_needed, after.sign_in_needed, SIGN_IN_NEEDED, SIGNED_IN,
                   "Microsoft 365 rejected the saved sign-in: the user must sign in again.",
                   "The sign-in works again.")
    out += _switch(before.relay_failing, after.relay_failing, RELAY_FAILING, RELAY_OK,
                   f"The backup relay did not take mail (mode {after.mode}); the outbox tries again.",
                   "The backup relay takes mail again.")
    out += _switch(before.network_blocked, after.network_blocked, NETWORK_BLOCKED, NETWORK_OK,
                   "The network refused Microsoft 365 (certificate not trusted or proxy refused); "
                   "not an outage.",
                   "The network lets Microsoft 365 through again.")
    if after.needs_user > before.needs_user:
        more = after.needs_user - before.needs_user
        out.append(Record(OUTBOX_NEEDS_USER,
                          f"{more} more outbox item(s) need the user ({after.needs_user} in this run)."))
    return out


class EventLogApi(Protocol):
    """desktop.win32's ReportEventW adapter (a recording fake in tests)."""

    def open(self, source: str) -> int: ...
    def report(self, handle: int, event_type: int, event_id: int, strings: Sequence[str]) -> None: ...
    def close(self, handle: int) -> None: ...


class EventLog:
    """Writes records under SOURCE. Without an api (not Windows) or when Windows refuses (the source is
    not registered: an install without the MSI), it logs the event id instead: never raises."""

    def __init__(self, api: EventLogApi | None = None) -> None:
        self.api = api
        self.handle: int | None = None
        if api is not None:
            try:
                self.handle = api.open(SOURCE)
            except OSError as exc:
                log.warning("eventlog: cannot open the source %s (%s): events go to the log file only",
                            SOURCE, type(exc).__name__)

    @classmethod
    def for_platform(cls) -> EventLog:
        from desktop import win32

        return cls(win32.event_log_api())

    def write(self, record: Record) -> None:
        log.info("event %d (%s)", record.event.id, record.event.name)
        if self.api is None or self.handle is None:
            return
        try:
            # one insertion string: the MSI's EventMessageFile maps every id to "%1"
            self.api.report(self.handle, int(record.event.level), record.event.id, [record.text])
        except OSError as exc:
            log.warning("eventlog: event %d not written (%s)", record.event.id, type(exc).__name__)

    def close(self) -> None:
        if self.api is not None and self.handle is not None:
            self.api.close(self.handle)
            self.handle = None


class Watch:
    """The last snapshot written; `observe` writes what changed since (any thread, one at a time)."""

    def __init__(self, log_: EventLog) -> None:
        self.log = log_
        self.last: Snapshot | None = None

    def observe(self, snapshot: Snapshot) -> list[Record]:
        out = records(self.last, snapshot)
        self.last = snapshot
        for record in out:
            self.log.write(record)
        return out

    def stopped(self, reason: str) -> None:
        self.log.write(Record(STOPPED, f"Lifeboat stopped: {reason}."))
        self.log.close()
