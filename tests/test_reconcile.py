"""engine.reconcile_once against the simulator: outage-sent mail lands in Sent Items exactly once, as a sent
(non-draft) item, however often reconcile runs; a provider that drops out mid-way loses nothing."""

from __future__ import annotations

import pytest

from sync import engine
from sync.errors import Unreachable
from sync.model import Mode, OutboxState, Route
from sync.store import Store
from tests.continuity_kit import START, Provider, queue, relay_route, sent_copies
from tests.mailservers import FaultySmtp

pytestmark = pytest.mark.timeout(180)  # safety net against hangs only


def outage_sends(store: Store, relay: FaultySmtp, n: int) -> list[str]:
    items = [queue(store, f"During the outage {i}", attachments=[("a.txt", "text/plain", b"hi")])
             for i in range(n)]
    report = engine.send_once(store, {Route.BACKUP: relay_route(relay)}, Mode.CONTINUITY, START)
    assert report.sent == [i.message_id for i in items]
    return report.sent


def test_reconcile_copies_each_once_as_sent_items_and_is_idempotent(store: Store, provider: Provider,
                                                                    relay: FaultySmtp) -> None:
    """Tried: three messages sent through the relay during an outage, then reconcile twice. Each is in Sent
    Items exactly once with isDraft false; the second run creates nothing and reports nothing copied;
    primary-route sends are never copied (the provider saved those itself)."""
    mids = outage_sends(store, relay, 3)
    normal = queue(store, "Sent normally")
    engine.send_once(store, {Route.PRIMARY: provider.route}, Mode.NORMAL, START)
    first = engine.reconcile_once(store, provider.source, START)
    assert first.copied == mids and first.present == [] and not first.failed
    assert first.summary == "3 sent during the outage, copied to Sent Items"
    for mid in mids:
        [copy] = sent_copies(provider, mid)
        assert copy["isDraft"] is False
    second = engine.reconcile_once(store, provider.source, START)
    assert second.copied == [] and second.present == []
    for mid in mids:
        assert len(sent_copies(provider, mid)) == 1
    assert len(sent_copies(provider, normal.message_id)) == 1
    backup = [i for i in store.outbox_list([OutboxState.SENT]) if i.route is Route.BACKUP]
    assert len(backup) == 3 and all(i.reconciled_at == START for i in backup)


def test_a_copy_already_there_is_not_duplicated(store: Store, provider: Provider, relay: FaultySmtp) -> None:
    """Tried: a crash after the copy was created but before it was marked (the copy exists, the row is not
    reconciled): reconcile finds it by Message-ID, creates no second copy, and marks the row."""
    [mid] = outage_sends(store, relay, 1)
    item = store.outbox_by_message_id(mid)
    assert item is not None
    provider.source.save_copy("sentitems", item.raw, START, mid)
    report = engine.reconcile_once(store, provider.source, START)
    assert report.present == [mid] and report.copied == []
    assert len(sent_copies(provider, mid)) == 1
    assert store.outbox_by_message_id(mid).reconciled_at is not None  # type: ignore[union-attr]


def test_provider_down_during_reconcile_keeps_the_rest_for_later(store: Store, provider: Provider,
                                                                 relay: FaultySmtp) -> None:
    """Tried: the provider refusing connections when reconcile starts: Unreachable propagates, nothing is
    marked reconciled; once it is back, one run copies everything, once."""
    mids = outage_sends(store, relay, 2)
    provider.sim.set_outage("refuse")
    with pytest.raises(Unreachable):
        engine.reconcile_once(store, provider.source, START)
    assert all(store.outbox_by_message_id(m).reconciled_at is None for m in mids)  # type: ignore[union-attr]
    provider.sim.set_outage("normal")
    assert engine.reconcile_once(store, provider.source, START).copied == mids
    assert [len(sent_copies(provider, m)) for m in mids] == [1, 1]


def test_reconcile_with_a_slow_transport_creates_no_duplicate(store: Store, provider: Provider,
                                                              relay: FaultySmtp) -> None:
    """Tried: the tenant's transport holding sendMail in Drafts for an hour, and three messages sent through
    the relay during an outage: a plain one; one to oneself, whose received copy sits in the Inbox (it is
    not the sent record, so it does not count); and one whose earlier primary attempt Exchange still holds
    in Drafts. Reconcile copies the first two once each, sends nothing, and waits for the third (its own
    Sent Items copy is on the way); once the transport moves it, the next run finds it there and creates
    nothing. Every Message-ID ends with exactly one non-draft copy in Sent Items."""
    provider.sim.set_transport(sent_delay=3600)
    plain = queue(store, "Plain")
    to_me = queue(store, "To myself", to=[provider.sim.user.upn])
    held = queue(store, "Held by the transport")
    report = engine.send_once(store, {Route.BACKUP: relay_route(relay)}, Mode.CONTINUITY, START)
    assert report.sent == [plain.message_id, to_me.message_id, held.message_id]
    provider.sim.add_message("inbox", to_me.raw)  # the relay delivered it to the user's own mailbox
    provider.source.send_mime(held.raw)  # the earlier primary attempt, accepted and queued by Exchange
    first = engine.reconcile_once(store, provider.source, START)
    assert first.copied == [plain.message_id, to_me.message_id] and first.waiting == [held.message_id]
    assert "1 still with Microsoft 365's transport" in first.summary
    assert sent_copies(provider, held.message_id) == []
    assert store.outbox_by_message_id(held.message_id).reconciled_at is None  # type: ignore[union-attr]
    assert provider.sim.sent_items() == []  # creating copies sends nothing
    assert provider.sim.run_transport() == 1
    second = engine.reconcile_once(store, provider.source, START)
    assert second.present == [held.message_id] and second.copied == [] and second.waiting == []
    assert engine.reconcile_once(store, provider.source, START).copied == []
    for item in (plain, to_me, held):
        [copy] = sent_copies(provider, item.message_id)
        assert copy["isDraft"] is False
        assert store.outbox_by_message_id(item.message_id).reconciled_at is not None  # type: ignore[union-attr]


def test_a_stuck_draft_holds_reconcile_back_for_an_hour_at_most(store: Store, provider: Provider,
                                                                relay: FaultySmtp) -> None:
    """Tried: a draft with the outage-sent message's Message-ID that nothing will ever send (an earlier
    large send interrupted between creating its draft and sending it). Reconcile first waits, as for a
    draft in the transport; an hour later (outbox.STUCK_AFTER) it stops waiting, makes the one non-draft
    copy in Sent Items and says so in the timeline. The stuck draft is left for the user to see."""
    from datetime import timedelta

    from sync import outbox

    item = queue(store, "Stuck draft")
    assert engine.send_once(store, {Route.BACKUP: relay_route(relay)}, Mode.CONTINUITY, START).sent
    provider.sim.mailbox.add("drafts", item.raw, is_draft=True, is_read=True)
    first = engine.reconcile_once(store, provider.source, START)
    assert first.waiting == [item.message_id] and sent_copies(provider, item.message_id) == []
    almost = engine.reconcile_once(store, provider.source, START + outbox.STUCK_AFTER - timedelta(minutes=1))
    assert almost.waiting == [item.message_id]
    late = engine.reconcile_once(store, provider.source, START + outbox.STUCK_AFTER)
    assert late.copied == [item.message_id] and late.waiting == []
    [copy] = sent_copies(provider, item.message_id)
    assert copy["isDraft"] is False
    assert any("stayed a draft" in e["detail"] for e in store.events(limit=20))
    assert engine.reconcile_once(store, provider.source, START + 2 * outbox.STUCK_AFTER).copied == []
    drafts = [c for c in provider.source.find_by_message_id(item.message_id) if c.is_draft]
    assert len(drafts) == 1  # the stuck draft stays: Lifeboat deletes no draft it cannot vouch for
