"""`run_headless` wired to the servicing and Event Log fakes of the Windows API, against the simulator:
Restart Manager's WM_ENDSESSION stops the real workers in order before it is answered, and the Event Log
gets the start, the continuity switch (forced from another process, as `lifeboat failover on` does) and
the stop with its reason."""

from __future__ import annotations

import dataclasses
import threading

from desktop import worker
from desktop.eventlog import EventLog, Watch
from desktop.servicing import ENDSESSION_CLOSEAPP, WM_ENDSESSION, WM_QUERYENDSESSION
from sync import failover
from sync.commands import Force
from sync.continuity import handle
from sync.health import Monitor
from sync.store import Store, cache_path
from tests.continuity_kit import Provider, queue, relay_route, store_key
from tests.mailservers import FaultySmtp
from tests.waiting import wait
from tests.winfakes import FakeEventLogApi, FakeSessionApi


def test_restart_manager_stops_run_headless_in_order_and_the_event_log_follows(provider: Provider) -> None:
    """Tried: `run --headless` against the simulator; continuity forced from another connection (the CLI's
    way); then Restart Manager's WM_QUERYENDSESSION and WM_ENDSESSION(TRUE, ENDSESSION_CLOSEAPP) sent to the
    session window. The answer comes only after run_headless has returned 0 (loops stopped, store closed:
    the cache opens again and its lock is free); the Event Log got 1000, 1001, and 1090 naming Restart
    Manager. (The restart registration needs a `run` command line: tests/test_servicing.py.)"""
    cfg = dataclasses.replace(provider.cfg, sync_interval_seconds=0.2)
    session, events = FakeSessionApi(), FakeEventLogApi()
    code: list[int] = []
    stop = threading.Event()
    run = threading.Thread(target=lambda: code.append(worker.run_headless(
        cfg, stop=stop, tokens=provider.auth, session_api=session, event_log=worker_log(events))))
    run.start()
    try:
        wait("the session window", lambda: session.on_message is not None)
        wait("the start event", lambda: 1000 in events.ids)
        with Store.open(cache_path(cfg.home, cfg.username), store_key()) as s:
            handle(Force("continuity"), Monitor(s, None, [], failover.Policy.from_config(cfg)), s)
        wait("the continuity event", lambda: 1001 in events.ids)
        assert session.send(WM_QUERYENDSESSION, 0, ENDSESSION_CLOSEAPP) == 1
        assert code == [] and not stop.is_set()
        assert session.send(WM_ENDSESSION, 1, ENDSESSION_CLOSEAPP) == 0
        with worker.single_instance(cfg.home):  # answered only once the store was closed and the lock freed
            assert events.ids[-1] == 1090
    finally:
        stop.set()
        run.join(60)
    assert code == [0]
    assert events.ids[-1] == 1090 and "Restart Manager" in events.reports[-1][3][0]
    assert events.closed
    with worker.single_instance(cfg.home), Store.open(cache_path(cfg.home, cfg.username), store_key()) as s:
        assert s.check() == []


def worker_log(api: FakeEventLogApi) -> EventLog:
    return EventLog(api)


def test_a_relay_that_refuses_in_continuity_is_one_error_event_and_its_recovery_one_more(
        provider: Provider, relay: FaultySmtp, store: Store) -> None:
    """Tried: in continuity mode, the real backup relay (aiosmtpd) answering 451 to MAIL FROM for two
    outbox ticks, then accepting: the Event Log gets 1020 (Error) once, then 1021 once the relay takes the
    message; the message text never reaches the event (only the mode)."""
    from sync.continuity import Continuity
    from sync.model import Route

    c = Continuity(provider.cfg, store, provider.source,
                   {Route.PRIMARY: provider.route, Route.BACKUP: relay_route(relay)}, [])
    c.start()
    c.handle(Force("continuity"))
    api = FakeEventLogApi()
    watch = Watch(EventLog(api))
    watch.observe(worker.snapshot(c))
    queue(store, "Quarterly merger plan")
    relay.handler.mail_reply = "451 4.3.2 try later"
    for _ in range(2):
        c.outbox_tick()
        watch.observe(worker.snapshot(c))
    assert api.ids == [1000, 1001, 1020]
    relay.handler.mail_reply = None
    store.outbox_update(store.outbox_list()[0].id, next_attempt_at=None)  # due again now, not after backoff
    c.outbox_tick()
    watch.observe(worker.snapshot(c))
    assert len(relay.handler.received) == 1
    assert api.ids == [1000, 1001, 1020, 1021]
    assert "merger" not in api.texts()
