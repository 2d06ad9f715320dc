"""The Event Log: the one mapping from what the app shows to fixed event IDs, and the writer against a
recording fake of ReportEventW (tests/winfakes.py); the table in docs/operations.md must match the code."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from desktop import eventlog
from desktop.eventlog import EVENTS, EventLog, Level, Snapshot, Watch, records
from sync.failover import State
from sync.model import Mode
from tests.winfakes import FakeEventLogApi

DOCS = Path(__file__).resolve().parents[1] / "docs" / "operations.md"
T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def ids(before: Snapshot | None, after: Snapshot) -> list[int]:
    return [r.event.id for r in records(before, after)]


def test_every_mode_change_maps_to_its_fixed_event_ids() -> None:
    """Tried: each transition, including ones the 0.5 s watch may see with the middle step skipped
    (CONTINUITY -> NORMAL without RECOVERING): entering continuity is 1001, leaving it 1002, the end of the
    recovery 1003; a flicker to SUSPECT writes nothing (one failed probe is not news for a NOC)."""
    n, s, c, r = (Snapshot(mode=m) for m in ("normal", "suspect", "continuity", "recovering"))
    assert ids(n, s) == [] and ids(s, n) == []
    assert ids(s, c) == [1001]
    assert ids(n, c) == [1001]
    assert ids(c, r) == [1002]
    assert ids(r, n) == [1003]
    assert ids(c, n) == [1002, 1003]
    assert ids(c, c) == []


def test_conditions_write_once_when_they_start_and_once_when_they_end() -> None:
    """Tried: sign-in needed, a failing backup relay and the network condition (certificate not trusted /
    proxy refused) switching on and off, and repeated looks at the same state: one event per edge."""
    base = Snapshot(mode="continuity")
    for field, on, off in (("sign_in_needed", 1010, 1011), ("relay_failing", 1020, 1021),
                           ("network_blocked", 1030, 1031)):
        bad = Snapshot(mode="continuity", **{field: True})
        assert ids(base, bad) == [on], field
        assert ids(bad, bad) == [], field
        assert ids(bad, base) == [off], field


def test_start_says_the_mode_and_what_is_already_wrong_but_not_old_outbox_items() -> None:
    """Tried: a start (no earlier snapshot) in continuity mode with sign-in needed and 3 outbox items that
    needed the user before this run: 1000, 1001, 1010; no 1040 for the old items; 2 new ones later give
    one 1040 with the count."""
    start = Snapshot(mode="continuity", sign_in_needed=True, needs_user=3)
    assert ids(None, start) == [1000, 1001, 1010]
    later = Snapshot(mode="continuity", sign_in_needed=True, needs_user=5)
    [rec] = records(start, later)
    assert rec.event.id == 1040 and "2 more" in rec.text and rec.event.level is Level.WARNING


def test_no_user_content_reaches_the_event_log() -> None:
    """Tried: a failover state whose reason carries an address, a server's words and a path (as a failed
    request's text would): every event text has only fixed words, mode names and counts."""
    secret = "adele.vance@contoso.test 550 5.7.1 C:\\Users\\adele\\report.pdf Subject: merger"
    state = State(mode=Mode.CONTINUITY, since=T0, reason=f"provider failed: {secret}", sign_in_needed=True)
    api = FakeEventLogApi()
    watch = Watch(EventLog(api))
    watch.observe(Snapshot.of(state, relay_failing=True, needs_user=1))
    watch.observe(Snapshot(mode="normal"))
    watch.stopped("signal SIGTERM")
    assert api.ids == [1000, 1001, 1010, 1020, 1002, 1003, 1011, 1021, 1090]
    text = api.texts()
    for word in ("adele", "contoso", "550", "report", "merger", "Users"):
        assert word not in text
    assert all(len(r[3]) == 1 for r in api.reports)  # one insertion string: the message file shows "%1"


def test_the_writer_uses_the_lifeboat_source_and_the_fixed_levels() -> None:
    """Tried: the calls reaching ReportEventW: source "Lifeboat" opened once, each event with its table
    level (1001 Warning, 1020 Error, 1000 Information) and id, the handle closed at the end."""
    api = FakeEventLogApi()
    log = EventLog(api)
    for rec in records(None, Snapshot(mode="continuity", relay_failing=True)):
        log.write(rec)
    log.close()
    assert api.opened == ["Lifeboat"]
    assert [(r[1], r[2]) for r in api.reports] == [(4, 1000), (2, 1001), (1, 1020)]
    assert api.closed == [42]


def test_an_unregistered_source_or_a_refused_write_never_stops_the_app(
        caplog: pytest.LogCaptureFixture) -> None:
    """Tried: the source not registered (an install without the MSI: RegisterEventSourceW fails) and
    ReportEventW refusing: nothing raises, the log says which event id could not be written."""
    log = EventLog(FakeEventLogApi(refuse_open=True))
    log.write(records(None, Snapshot())[0])
    log.close()
    refusing = FakeEventLogApi(refuse_report=True)
    EventLog(refusing).write(records(None, Snapshot())[0])
    assert "event 1000 not written" in caplog.text and "cannot open the source" in caplog.text


def test_an_unknown_mode_is_refused() -> None:
    """Tried: a snapshot with a mode the table does not know (a damaged or future state): ValueError."""
    with pytest.raises(ValueError, match="unknown mode"):
        Snapshot(mode="sinking")


def test_the_operations_guide_lists_exactly_these_event_ids_and_levels() -> None:
    """Tried: the documented table against the code: same ids, same levels, nothing missing or extra."""
    text = DOCS.read_text(encoding="utf-8")
    rows = re.findall(r"^\|\s*(\d{4})\s*\|\s*(Information|Warning|Error)\s*\|", text, re.M)
    assert sorted((int(i), lvl) for i, lvl in rows) == sorted((e.id, e.level.name.title()) for e in EVENTS)
    assert len({e.id for e in EVENTS}) == len(EVENTS)
    assert f"Provider[@Name='{eventlog.SOURCE}']" in text
