"""engine.send_once and the outbox around it, against real servers: the simulator's Graph sendMail as the
primary route and an aiosmtpd relay (with injected SMTP faults) as the backup route, over a real store."""

from __future__ import annotations

import email
import email.policy
import time
from collections.abc import Callable

import pytest

from simulator import shape
from sync import engine, mime
from sync.errors import MessageBad
from sync.model import Mode, OutboxItem, OutboxState, Route
from sync.routes.smtp import SmtpRoute
from sync.store import Store
from tests.continuity_kit import START, FakeClock, Provider, queue, relay_route, sent_copies, store_key
from tests.mailservers import FaultySmtp, make_tls

pytestmark = pytest.mark.timeout(180)  # safety net against hangs only


def received_mid(data: bytes) -> str:
    return str(email.message_from_bytes(data, policy=email.policy.default)["Message-ID"])


def test_continuity_sends_through_backup_with_bcc_only_in_envelope(store: Store, relay: FaultySmtp) -> None:
    """Tried: a message with To, Cc, Bcc and an attachment queued, then sent in CONTINUITY. The relay got it
    once, with the Bcc in the envelope but not in the headers, the attachment intact, and the outbox says
    SENT via backup with the Message-ID stamped at queue time."""
    item = queue(store, "Quarterly", cc=["carol@relay.test"], bcc=["dave@relay.test"],
                 attachments=[("q.pdf", "application/pdf", b"%PDF-1.4 data")])
    report = engine.send_once(store, {Route.BACKUP: relay_route(relay)}, Mode.CONTINUITY, START)
    assert report.sent == [item.message_id]
    [got] = relay.received
    assert sorted(got.rcpt_tos) == ["bob@relay.test", "carol@relay.test", "dave@relay.test"]
    msg = got.message()
    assert msg["Bcc"] is None and b"dave@relay.test" not in got.data
    assert msg["Message-ID"] == item.message_id
    [att] = list(msg.iter_attachments())
    assert att.get_filename() == "q.pdf" and att.get_content() == b"%PDF-1.4 data"
    done = store.outbox_get(item.id)
    assert done is not None and done.state is OutboxState.SENT and done.route is Route.BACKUP
    assert done.raw == item.raw and done.sent_at == START


def test_sending_is_committed_before_the_route_is_contacted(store: Store, relay: FaultySmtp) -> None:
    """Tried: reading the cache through a second connection at the 'sending' checkpoint (just before the
    relay is contacted): the row is already SENDING there, and the relay has nothing yet."""
    item = queue(store)
    seen = []

    def checkpoint(name: str) -> None:
        if name == "sending":
            with Store.open(store.path, store_key()) as other:
                row = other.outbox_get(item.id)
                seen.append((row.state if row else None, len(relay.received)))

    engine.send_once(store, {Route.BACKUP: relay_route(relay)}, Mode.CONTINUITY, START, checkpoint=checkpoint)
    assert seen == [(OutboxState.SENDING, 0)]
    assert len(relay.received) == 1


@pytest.mark.parametrize("fault,state,words", [
    ({"mail_reply": "451 4.3.2 try again later"}, OutboxState.QUEUED, "451 4.3.2 try again later"),
    ({"data_reply": "554 5.7.1 rejected as spam"}, OutboxState.FAILED, "554 5.7.1 rejected as spam"),
    ({"rcpt_replies": {"bob@relay.test": "550 5.1.1 no such user"}}, OutboxState.FAILED, "550 5.1.1 no such"),
    ({"drop_after_data": True}, OutboxState.QUEUED, "dropped the connection"),
])
def test_relay_faults_defer_or_fail_with_the_servers_words(store: Store, relay: FaultySmtp, fault: dict,
                                                           state: OutboxState, words: str) -> None:
    """Tried: 4xx at MAIL, 5xx after DATA, 5xx at RCPT and a connection dropped after DATA. Temporary ones
    leave the item QUEUED with a later next attempt; permanent ones FAILED; both keep the server's words."""
    for key, value in fault.items():
        setattr(relay.handler, key, value)
    item = queue(store)
    report = engine.send_once(store, {Route.BACKUP: relay_route(relay)}, Mode.CONTINUITY, START,
                              jitter=lambda: 0.0)
    after = store.outbox_get(item.id)
    assert after is not None and after.state is state and after.attempts == 1
    assert words in (after.last_error or "")
    if state is OutboxState.QUEUED:
        assert report.deferred == [item.message_id] and after.next_attempt_at is not None
        assert after.next_attempt_at > START
        # not due yet: the next tick leaves it alone; once due and the relay is fixed, it goes out
        assert engine.send_once(store, {Route.BACKUP: relay_route(relay)}, Mode.CONTINUITY, START).sent == []
        for key in fault:
            setattr(relay.handler, key, FaultySmtp().handler.__dict__[key])
        later = after.next_attempt_at
        assert engine.send_once(store, {Route.BACKUP: relay_route(relay)}, Mode.CONTINUITY,
                                later).sent == [item.message_id]
    else:
        assert report.failed == [item.message_id] and after.next_attempt_at is None


def test_untrusted_tls_relay_defers(store: Store, tmp_path) -> None:
    """Tried: a STARTTLS relay whose certificate is signed by a CA we were not told to trust: the message
    is deferred (never sent in clear, never sent unverified) with a reason naming the certificate."""
    tls = make_tls(tmp_path / "tls")
    item = queue(store)
    with FaultySmtp("starttls", tls) as server:
        route = SmtpRoute("127.0.0.1", server.port, "starttls", timeout=10)
        engine.send_once(store, {Route.BACKUP: route}, Mode.CONTINUITY, START)
        assert server.received == []
    after = store.outbox_get(item.id)
    assert after is not None and after.state is OutboxState.QUEUED
    assert "certificate" in (after.last_error or "")


def test_reply_keeps_threading_headers_through_the_backup_route(store: Store, relay: FaultySmtp) -> None:
    """Tried: replying to a parsed message (reply-all) and sending the reply in CONTINUITY: In-Reply-To is the
    original's Message-ID and References ends with it, as received by the relay."""
    original = mime.build(sender="bob@relay.test", to=["adele.vance@contoso.test"], cc=["carol@relay.test"],
                          subject="Plans", text="What are the plans?\n",
                          references=["<root@relay.test>"], in_reply_to="<root@relay.test>")
    fields = mime.reply_fields(mime.parse(original.raw), reply_all=True, me="adele.vance@contoso.test")
    item = queue(store, **{**fields, "text": "Here they are." + fields["text"]})
    engine.send_once(store, {Route.BACKUP: relay_route(relay)}, Mode.CONTINUITY, START)
    [got] = relay.received
    msg = got.message()
    assert msg["In-Reply-To"] == original.message_id
    assert str(msg["References"]).split() == ["<root@relay.test>", original.message_id]
    assert msg["Subject"] == "Re: Plans" and received_mid(got.data) == item.message_id


def test_the_mode_picks_the_route_and_a_missing_route_waits(store: Store, relay: FaultySmtp) -> None:
    """Tried: NORMAL, SUSPECT and RECOVERING with only a backup route (nothing may go out: the primary is
    the route there), then CONTINUITY with no backup route configured (still queued, no attempt used)."""
    item = queue(store)
    for mode in (Mode.NORMAL, Mode.SUSPECT, Mode.RECOVERING):
        report = engine.send_once(store, {Route.BACKUP: relay_route(relay)}, mode, START)
        assert report.route is Route.PRIMARY and report.waiting == 1 and not report.sent
    assert engine.send_once(store, {}, Mode.CONTINUITY, START).waiting == 1
    after = store.outbox_get(item.id)
    assert after is not None and after.state is OutboxState.QUEUED and after.attempts == 0
    assert relay.received == []


def test_primary_route_sends_mime_through_graph_with_bcc_delivered(store: Store, provider) -> None:
    """Tried: a message with a Bcc sent in NORMAL through Graph sendMail (MIME): the tenant delivered it to
    To and Bcc (the Bcc travels in the copy handed to Graph only), and the stored MIME has no Bcc."""
    item = queue(store, "Via Graph", bcc=["dave@relay.test"])
    report = engine.send_once(store, {Route.PRIMARY: provider.route}, Mode.NORMAL, START)
    assert report.sent == [item.message_id]
    [out] = [s for s in provider.sim.sent_items() if s["message_id"] == item.message_id]
    assert sorted(out["to"]) == ["bob@relay.test", "dave@relay.test"]
    assert b"Bcc" not in item.raw
    after = store.outbox_get(item.id)
    assert after is not None and after.route is Route.PRIMARY and after.state is OutboxState.SENT


def test_provider_outage_defers_then_backup_takes_it_without_waiting(store: Store, provider, relay) -> None:
    """Tried: the provider refusing connections while NORMAL (deferred, with backoff, ends the tick), then
    CONTINUITY: the same item goes out through the relay at once, ignoring the primary route's backoff."""
    first, second = queue(store, "One"), queue(store, "Two")
    provider.sim.set_outage("refuse")
    routes = {Route.PRIMARY: provider.route, Route.BACKUP: relay_route(relay)}
    report = engine.send_once(store, routes, Mode.NORMAL, START)
    assert report.deferred == [first.message_id] and report.waiting == 1 and report.error is not None
    assert store.outbox_get(first.id).next_attempt_at > START  # type: ignore[union-attr]
    report = engine.send_once(store, routes, Mode.CONTINUITY, START)
    assert report.sent == [first.message_id, second.message_id]
    assert [received_mid(r.data) for r in relay.received] == [first.message_id, second.message_id]


def test_uncertain_items_are_settled_by_lookup_or_left_to_the_user(store: Store, provider, relay) -> None:
    """Tried: three items left SENDING by a crash: one really sent through Graph, one never sent (primary
    attempt), one tried on the backup relay. At start-up all become UNCERTAIN; the whole-mailbox lookup
    settles the first as SENT; the second has no copy anywhere, which proves nothing (a rule may delete
    sent copies), so it stays UNCERTAIN and the user is asked, as for the backup one. The user then
    resends the lost one and confirms the backup one went out (SENT via backup, so reconcile copies it)."""
    clock = FakeClock()
    sent, lost, backup = queue(store, "sent"), queue(store, "lost"), queue(store, "backup")
    engine.send_once(store, {Route.PRIMARY: provider.route}, Mode.NORMAL, clock.now(), limit=1)
    for item, route in ((sent, Route.PRIMARY), (lost, Route.PRIMARY), (backup, Route.BACKUP)):
        current = store.outbox_get(item.id)
        assert current is not None
        store.outbox_update(item.id, state=OutboxState.SENDING, attempt_route=route)
    assert {i.id for i in engine.recover_outbox(store, clock.now())} == {sent.id, lost.id, backup.id}
    assert engine.settle_uncertain_once(store, provider.source, clock.now()).sent == []  # within the grace
    clock.advance(engine.SETTLE_GRACE.total_seconds())
    report = engine.settle_uncertain_once(store, provider.source, clock.now())
    assert report.sent == [sent.message_id] and report.in_transport == []
    assert report.ask_user == [lost.message_id, backup.message_id]
    assert store.outbox_get(lost.id).state is OutboxState.UNCERTAIN  # type: ignore[union-attr]
    assert "cannot find this message" in (store.outbox_get(lost.id).last_error or "")  # type: ignore[union-attr]
    assert engine.send_once(store, {Route.PRIMARY: provider.route}, Mode.NORMAL, clock.now()).sent == []
    assert engine.user_settles(store, lost.id, "resend", clock.now()).state is OutboxState.QUEUED
    assert engine.send_once(store, {Route.PRIMARY: provider.route}, Mode.NORMAL, clock.now()).sent == [
        lost.message_id]
    assert store.outbox_get(backup.id).state is OutboxState.UNCERTAIN  # type: ignore[union-attr]
    done = engine.user_settles(store, backup.id, "sent", clock.now())
    assert done.state is OutboxState.SENT and done.route is Route.BACKUP and done.reconciled_at is None
    with pytest.raises(MessageBad, match="only an uncertain item"):
        engine.user_settles(store, backup.id, "sent", clock.now())
    with pytest.raises(MessageBad, match="no outbox item 999"):
        engine.user_settles(store, 999, "resend", clock.now())


def test_uncertain_primary_item_waits_while_the_provider_is_down(store: Store, provider) -> None:
    """Tried: settling an UNCERTAIN primary attempt while the provider refuses connections: nothing changes
    (it is not resent blindly), and the user is asked."""
    item = queue(store)
    store.outbox_update(item.id, state=OutboxState.SENDING, attempt_route=Route.PRIMARY)
    engine.recover_outbox(store, START)
    provider.sim.set_outage("refuse")
    report = engine.settle_uncertain_once(store, provider.source, START + engine.SETTLE_GRACE)
    assert report.ask_user == [item.message_id]
    assert store.outbox_get(item.id).state is OutboxState.UNCERTAIN  # type: ignore[union-attr]


def test_bad_messages_are_refused_at_queue_time(store: Store) -> None:
    """Tried: queuing MIME with a Bcc header, and one Message-ID twice: both MessageBad, nothing stored."""
    out = mime.build(sender="a@contoso.test", to=["b@relay.test"], subject="x", text="x")
    engine.queue(store, out, START)
    with pytest.raises(MessageBad, match="already in the outbox"):
        engine.queue(store, out, START)
    bad = mime.build(sender="a@contoso.test", to=["b@relay.test"], subject="y", text="y")
    bad = type(bad)(**{**bad.__dict__, "raw": b"Bcc: c@relay.test\r\n" + bad.raw})
    with pytest.raises(MessageBad, match="Bcc"):
        engine.queue(store, bad, START)
    assert len(store.outbox_list()) == 1


def test_no_answer_from_graph_after_the_request_is_looked_up_not_resent(store: Store, provider,
                                                                        monkeypatch) -> None:
    """Tried: Graph holding the sendMail request without answering (the simulator's hang outage; a 2 s
    read timeout): the item becomes UNCERTAIN, not deferred (it may have been accepted). After the grace
    period, with the provider back, the lookup finds no copy anywhere: it stays UNCERTAIN and the user is
    asked (never resent by itself); the user resends it and it goes out once.
    (A refused first connection is a plain deferral: see the provider-outage test above.)"""
    import sync.sources.graph as graph_mod

    monkeypatch.setattr(graph_mod, "SEND_TIMEOUT", (3.0, 2.0))
    clock = FakeClock()
    item = queue(store, "Held")
    provider.sim.set_outage("hang", scope="graph")
    report = engine.send_once(store, {Route.PRIMARY: provider.route}, Mode.NORMAL, clock.now())
    provider.sim.set_outage("normal")
    assert report.uncertain == [item.message_id] and report.deferred == []
    held = store.outbox_get(item.id)
    assert held is not None and held.state is OutboxState.UNCERTAIN and "may have been accepted" in (
        held.last_error or "")
    clock.advance(engine.SETTLE_GRACE.total_seconds())
    assert engine.settle_uncertain_once(store, provider.source, clock.now()).ask_user == [item.message_id]
    clock.advance(3600)
    assert engine.settle_uncertain_once(store, provider.source, clock.now()).ask_user == [item.message_id]
    assert engine.send_once(store, {Route.PRIMARY: provider.route}, Mode.NORMAL, clock.now()).sent == []
    engine.user_settles(store, item.id, "resend", clock.now())
    assert engine.send_once(store, {Route.PRIMARY: provider.route}, Mode.NORMAL, clock.now()).sent == [
        item.message_id]
    assert [s["message_id"] for s in provider.sim.sent_items()].count(item.message_id) == 1


def wait_until(cond: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 120  # safety net for a hang only
    while not cond():
        assert time.monotonic() < deadline, f"waited too long for {what}"
        time.sleep(0.05)


def copies_in_tenant(p: Provider, message_id: str) -> list[str]:
    """The simulator's own view: ids of the messages with this Message-ID, in any folder."""
    with p.sim.mailbox.lock:
        items = list(p.sim.mailbox.items.values())
    return [i.id for i in items if shape.summarize(i.mime).message_id == message_id]


def accepted_without_answer(store: Store, p: Provider, monkeypatch: pytest.MonkeyPatch, clock: FakeClock,
                            subject: str) -> OutboxItem:
    """A primary-route send that Graph accepts after the client gave up waiting (the simulator's slow
    outage holds the request 2.5 s; the client's read timeout is 1 s): MaybeSent, so UNCERTAIN."""
    import sync.sources.graph as graph_mod

    monkeypatch.setattr(graph_mod, "SEND_TIMEOUT", (3.0, 1.0))
    item = queue(store, subject)
    p.sim.set_outage("slow", delay=2.5, scope="graph")
    report = engine.send_once(store, {Route.PRIMARY: p.route}, Mode.NORMAL, clock.now())
    assert report.uncertain == [item.message_id]
    wait_until(lambda: bool(copies_in_tenant(p, item.message_id)) or bool(p.sim.sent_items()),
               "Graph to process the held sendMail")
    p.sim.set_outage("normal")
    return item


def test_a_copy_still_in_drafts_after_the_grace_stays_uncertain_and_is_never_resent(
        store: Store, provider: Provider, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tried: a sendMail Graph accepted without answering, with the tenant's transport holding messages in
    Drafts for an hour. After the old 2-minute grace, and again 30 minutes later, the lookup finds only the
    draft copy in Drafts: the item stays UNCERTAIN (the user is not asked, nothing is resent, nothing was
    delivered). Once the transport moves it to Sent Items, the next lookup settles it as SENT: delivered
    once, one non-draft copy in Sent Items."""
    provider.sim.set_transport(sent_delay=3600)
    clock = FakeClock()
    item = accepted_without_answer(store, provider, monkeypatch, clock, "Held in Drafts")
    for wait in (engine.SETTLE_GRACE.total_seconds(), 30 * 60):
        clock.advance(wait)
        report = engine.settle_uncertain_once(store, provider.source, clock.now())
        assert report.in_transport == [item.message_id] and report.ask_user == [] and report.sent == []
        held = store.outbox_get(item.id)
        assert held is not None and held.state is OutboxState.UNCERTAIN
        assert "drafts" in (held.last_error or "") and "will not send it again" in (held.last_error or "")
        assert engine.send_once(store, {Route.PRIMARY: provider.route}, Mode.NORMAL, clock.now()).sent == []
    assert provider.sim.sent_items() == [] and len(copies_in_tenant(provider, item.message_id)) == 1
    assert provider.sim.run_transport() == 1  # the transport takes it at last
    clock.advance(engine.RECHECK.total_seconds())
    assert engine.settle_uncertain_once(store, provider.source, clock.now()).sent == [item.message_id]
    done = store.outbox_get(item.id)
    assert done is not None and done.state is OutboxState.SENT and done.route is Route.PRIMARY
    assert [s["message_id"] for s in provider.sim.sent_items()] == [item.message_id]
    [copy] = sent_copies(provider, item.message_id)
    assert copy["isDraft"] is False


@pytest.mark.parametrize("delay", [0, 3600])
def test_a_delete_after_send_rule_is_never_resent_blindly(
        store: Store, provider: Provider, monkeypatch: pytest.MonkeyPatch, delay: int) -> None:
    """Tried: the transport rule that deletes sent copies ("drop"), fast (gone before the first lookup) and
    slow (seen in Drafts first, then gone). Either way no copy is left to find: the item stays UNCERTAIN
    and the user is asked, with words that say why; hours later it still has not been resent (delivered
    once). The user, having asked a recipient, marks it sent."""
    provider.sim.set_transport(sent_delay=delay, sent_copy="drop")
    clock = FakeClock()
    item = accepted_without_answer(store, provider, monkeypatch, clock, "Dropped copy")
    clock.advance(engine.SETTLE_GRACE.total_seconds())
    report = engine.settle_uncertain_once(store, provider.source, clock.now())
    if delay:
        assert report.in_transport == [item.message_id]
        provider.sim.run_transport()
        clock.advance(engine.RECHECK.total_seconds())
        report = engine.settle_uncertain_once(store, provider.source, clock.now())
    assert report.ask_user == [item.message_id] and report.sent == []
    words = store.outbox_get(item.id).last_error or ""  # type: ignore[union-attr]
    assert ("took this message for sending" if delay else "cannot find this message") in words
    for _ in range(3):
        clock.advance(3600)
        assert engine.settle_uncertain_once(store, provider.source, clock.now()).ask_user == [item.message_id]
        assert engine.send_once(store, {Route.PRIMARY: provider.route}, Mode.NORMAL, clock.now()).sent == []
    assert [s["message_id"] for s in provider.sim.sent_items()] == [item.message_id]
    assert copies_in_tenant(provider, item.message_id) == []
    done = engine.user_settles(store, item.id, "sent", clock.now())
    assert done.state is OutboxState.SENT and done.route is Route.PRIMARY
