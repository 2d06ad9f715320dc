"""The outbox lifecycle: every transition, the backoff schedule, start-up settlement and error triage."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync import errors, outbox
from sync.model import MessageCopy, OutboxItem, OutboxState, Route

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
S = OutboxState


@dataclasses.dataclass(frozen=True)
class Out:
    raw: bytes
    message_id: str
    sender: str
    recipients: tuple[str, ...]
    subject: str


def built(*, bcc_header: bool = False, message_id: str | None = None, date: bool = True) -> Out:
    msg = EmailMessage()
    mid = message_id or make_msgid(domain="example.test")
    msg["From"] = "Ann <ann@example.test>"
    msg["To"] = "bob@example.test"
    if bcc_header:
        msg["Bcc"] = "hidden@example.test"
    msg["Subject"] = "Quarterly numbers"
    msg["Message-ID"] = mid
    if date:
        msg["Date"] = format_datetime(T0)
    msg.set_content("hello\n")
    return Out(msg.as_bytes(), mid, "ann@example.test", ("bob@example.test", "hidden@example.test"),
               "Quarterly numbers")


def queued() -> OutboxItem:
    return outbox.new_item(built(), T0, item_id=7)


def test_new_item_keeps_identity_and_refuses_bad_mime():
    """Queueing keeps the stamped Message-ID and raw bytes; a missing id or Date, a Bcc header or no
    recipients are refused with MessageBad."""
    out = built()
    item = outbox.new_item(out, T0, item_id=1)
    assert (item.state, item.message_id, item.raw, item.attempts) == (S.QUEUED, out.message_id, out.raw, 0)
    assert item.recipients == ("bob@example.test", "hidden@example.test")
    with pytest.raises(errors.MessageBad, match="Bcc"):
        outbox.new_item(built(bcc_header=True), T0)
    with pytest.raises(errors.MessageBad, match="Date"):
        outbox.new_item(built(date=False), T0)
    with pytest.raises(errors.MessageBad, match="Message-ID"):
        outbox.new_item(dataclasses.replace(out, message_id="<other@x>"), T0)
    with pytest.raises(errors.MessageBad, match="no recipients"):
        outbox.new_item(dataclasses.replace(out, recipients=()), T0)


def test_happy_path_queued_sending_sent():
    """QUEUED -> SENDING (attempt counted, route noted) -> SENT with route and time; raw never changes."""
    item = queued()
    sending = outbox.begin_send(item, T0, Route.BACKUP)
    assert (sending.state, sending.attempts, sending.attempt_route) == (S.SENDING, 1, Route.BACKUP)
    done = outbox.sent(sending, Route.BACKUP, T0 + timedelta(seconds=1))
    assert (done.state, done.route, done.sent_at) == (S.SENT, Route.BACKUP, T0 + timedelta(seconds=1))
    assert (done.raw, done.message_id) == (item.raw, item.message_id)


@pytest.mark.parametrize(("fn", "state"), [
    (lambda i: outbox.sent(i, Route.PRIMARY, T0), S.QUEUED),
    (lambda i: outbox.failed(i, "x"), S.QUEUED),
    (lambda i: outbox.deferred(i, "x", T0, 0.5), S.QUEUED),
    (lambda i: outbox.begin_send(i, T0), S.SENDING),
    (lambda i: outbox.begin_send(i, T0), S.SENT),
    (lambda i: outbox.begin_send(i, T0), S.UNCERTAIN),
    (lambda i: outbox.begin_send(i, T0), S.FAILED),
    (lambda i: outbox.settle_uncertain(i, [SENT_COPY], T0), S.SENDING),
    (lambda i: outbox.user_decided(i, True), S.SENT),
])
def test_illegal_transitions_raise(fn, state):
    """The shell cannot skip SENDING, resend a SENT or UNCERTAIN item, or settle what is not uncertain."""
    with pytest.raises(ValueError, match="cannot"):
        fn(dataclasses.replace(queued(), state=state))


def test_deferred_backs_off_exponentially_with_cap_and_gives_up():
    """4xx/timeouts requeue with growing, capped waits; the jitter argument scales them; after the
    give-up age the item FAILS with the last server words."""
    b = outbox.Backoff(base=30, cap=600, give_up_after=timedelta(hours=1))
    item, waits = queued(), []
    now = T0
    for _ in range(7):
        item = outbox.begin_send(item, now)
        item = outbox.deferred(item, errors.SendDeferred("451 try later"), now, jitter=1.0, backoff=b)
        assert item.state is S.QUEUED and item.last_error == "451 try later"
        assert item.next_attempt_at is not None
        waits.append((item.next_attempt_at - now).total_seconds())
        now = item.next_attempt_at
    assert waits == [30, 60, 120, 240, 480, 600, 600]
    low = outbox.deferred(outbox.begin_send(queued(), T0), "x", T0, jitter=0.0, backoff=b)
    assert low.next_attempt_at == T0 + timedelta(seconds=15)
    late = outbox.begin_send(queued(), T0)
    gave_up = outbox.deferred(late, "451 still busy", T0 + timedelta(hours=2), 0.5, b)
    assert gave_up.state is S.FAILED and "451 still busy" in (gave_up.last_error or "")
    with pytest.raises(ValueError, match="jitter"):
        outbox.deferred(outbox.begin_send(queued(), T0), "x", T0, jitter=1.5)


def test_failed_keeps_the_server_words():
    """A 5xx ends in FAILED with the server's own text for the user."""
    err = errors.SendRejected("relay.example refused: 550 5.1.1 <bob@example.test>: user unknown")
    item = outbox.failed(outbox.begin_send(queued(), T0), err)
    assert item.state is S.FAILED and "550 5.1.1" in (item.last_error or "")


def test_startup_turns_sending_into_uncertain_only():
    """A crash while sending leaves SENDING rows; start-up marks exactly those UNCERTAIN."""
    base = queued()
    items = [dataclasses.replace(base, id=n, state=s) for n, s in enumerate(S)]
    after = outbox.on_startup(items)
    assert [i.state for i in after] == [S.UNCERTAIN if s is S.SENDING else s for s in S]
    assert outbox.due(after, T0) == [after[0]]  # only the QUEUED one: UNCERTAIN is never resent blindly


SENT_COPY = MessageCopy("AAMk-sent", "sent-id", is_draft=False, folder="sentitems")
DRAFT_COPY = MessageCopy("AAMk-draft", "drafts-id", is_draft=True, folder="drafts")


def test_settle_uncertain():
    """Tried: each lookup outcome on an UNCERTAIN primary attempt. A non-draft copy anywhere (Sent Items, or
    the Inbox copy of a message to oneself) -> SENT; only a draft (Drafts/Outbox) -> still UNCERTAIN, not
    asked, never requeued; no copy -> still UNCERTAIN and the user is asked (absence proves nothing);
    unknown -> still UNCERTAIN for the user; a backup-route attempt cannot be proven by a lookup either."""
    unc = outbox.on_startup([outbox.begin_send(queued(), T0, Route.PRIMARY)])[0]
    assert outbox.lookup_can_settle(unc)
    assert outbox.settle_uncertain(unc, [SENT_COPY], T0).state is S.SENT
    inbox_copy = MessageCopy("AAMk-in", "inbox-id", is_draft=False, folder="inbox")
    assert outbox.settle_uncertain(unc, [DRAFT_COPY, inbox_copy], T0).state is S.SENT
    waiting = outbox.settle_uncertain(unc, [DRAFT_COPY], T0)
    assert waiting.state is S.UNCERTAIN and not waiting.ask_user
    assert "drafts" in (waiting.last_error or "") and "will not send it again" in (waiting.last_error or "")
    absent = outbox.settle_uncertain(unc, [], T0)
    assert absent.state is S.UNCERTAIN and absent.ask_user
    assert "cannot find" in (absent.last_error or "")
    vanished = outbox.settle_uncertain(waiting, [], T0 + timedelta(minutes=5))
    assert vanished.state is S.UNCERTAIN and vanished.ask_user
    assert "took this message for sending" in (vanished.last_error or "")
    assert outbox.settle_uncertain(vanished, [SENT_COPY], T0).state is S.SENT  # a copy may still show up
    still = outbox.settle_uncertain(unc, None, T0)
    assert still.state is S.UNCERTAIN and "resend" in (still.last_error or "")
    assert not outbox.user_decided(vanished, resend=True).ask_user
    unc_backup = outbox.on_startup([outbox.begin_send(queued(), T0, Route.BACKUP)])[0]
    assert not outbox.lookup_can_settle(unc_backup)
    assert outbox.settle_uncertain(unc_backup, [], T0).state is S.UNCERTAIN
    assert outbox.user_decided(unc_backup, resend=True).state is S.QUEUED
    assert outbox.user_decided(unc_backup, resend=False).state is S.FAILED
    confirmed = outbox.confirmed_sent(unc_backup, T0)
    assert (confirmed.state, confirmed.route, confirmed.sent_at) == (S.SENT, Route.BACKUP, T0)
    with pytest.raises(ValueError, match="cannot confirm"):
        outbox.confirmed_sent(confirmed, T0)


def test_reconcile_counts_only_a_sent_copy_in_sent_items():
    """Tried: the copies reconcile may find. Only a non-draft copy in Sent Items (by well-known name or
    id) counts; the Inbox copy of a message to oneself and a draft in Sent Items do not; a draft still in
    the transport makes reconcile wait instead of copying."""
    inbox_copy = MessageCopy("AAMk-in", "inbox-id", is_draft=False, folder="inbox")
    draft_in_sent = MessageCopy("AAMk-d", "sent-id", is_draft=True, folder="sentitems")
    assert outbox.sent_copy_in([inbox_copy, draft_in_sent], "sentitems") is None
    assert outbox.sent_copy_in([inbox_copy, SENT_COPY], "sentitems") == SENT_COPY
    assert outbox.sent_copy_in([SENT_COPY], "sent-id") == SENT_COPY
    assert outbox.sent_copy_in([], "sentitems") is None
    assert outbox.reconcile_step([inbox_copy, SENT_COPY, DRAFT_COPY], "sentitems") == ("present", SENT_COPY)
    assert outbox.reconcile_step([inbox_copy, DRAFT_COPY], "sentitems") == ("wait", None)  # transport has it
    assert outbox.reconcile_step([inbox_copy], "sentitems") == ("copy", None)
    assert outbox.reconcile_step([], "sentitems") == ("copy", None)


def test_a_draft_that_stays_a_draft_is_stuck_not_in_the_transport():
    """Tried: a draft of the message found again and again for longer than STUCK_AFTER (a submission that
    failed, or a draft left by an interrupted large send: Exchange's transport takes minutes, not hours).
    Settle then asks the user (still never resends by itself); reconcile stops waiting and makes the
    outage-sent copy. Under STUCK_AFTER both keep waiting, as before."""
    unc = outbox.on_startup([outbox.begin_send(queued(), T0, Route.PRIMARY)])[0]
    first = outbox.settle_uncertain(unc, [DRAFT_COPY], T0)
    later = outbox.settle_uncertain(first, [DRAFT_COPY], T0 + outbox.STUCK_AFTER - timedelta(minutes=1))
    assert later.state is S.UNCERTAIN and not later.ask_user
    stuck = outbox.settle_uncertain(later, [DRAFT_COPY], T0 + outbox.STUCK_AFTER)
    assert stuck.state is S.UNCERTAIN and stuck.ask_user and "stuck" in (stuck.last_error or "")
    assert stuck not in outbox.due([stuck], T0 + timedelta(days=1))  # asked, not resent
    short = outbox.STUCK_AFTER - timedelta(seconds=1)
    assert outbox.reconcile_step([DRAFT_COPY], "sentitems", short) == ("wait", None)
    assert outbox.reconcile_step([DRAFT_COPY], "sentitems", outbox.STUCK_AFTER) == ("copy", None)
    assert outbox.reconcile_step([DRAFT_COPY, SENT_COPY], "sentitems", outbox.STUCK_AFTER) == (
        "present", SENT_COPY)


def test_due_orders_and_filters():
    """due() returns QUEUED items whose time has come, oldest first, and nothing else."""
    base = queued()
    items = [
        dataclasses.replace(base, id=1, created_at=T0 + timedelta(seconds=5)),
        dataclasses.replace(base, id=2, created_at=T0),
        dataclasses.replace(base, id=3, next_attempt_at=T0 + timedelta(minutes=1)),
        dataclasses.replace(base, id=4, state=S.FAILED),
        dataclasses.replace(base, id=5, next_attempt_at=T0 - timedelta(minutes=1),
                            created_at=T0 + timedelta(1)),
    ]
    assert [i.id for i in outbox.due(items, T0)] == [2, 1, 5]
    assert [i.id for i in outbox.due(items, T0 + timedelta(minutes=2))] == [2, 3, 1, 5]


def test_classify():
    """5xx and unusable messages are permanent; 4xx, timeouts, outages, throttling, sign-in: temporary."""
    assert outbox.classify(errors.SendRejected("550")) == "permanent"
    assert outbox.classify(errors.MessageBad("bad")) == "permanent"
    for exc in (errors.SendDeferred("451"), errors.Unreachable("down"), errors.Offline("no net"),
                errors.Throttled("429"), errors.AuthRequired("token"), TimeoutError(), OSError("reset")):
        assert outbox.classify(exc) == "temporary"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["ok", "4xx", "5xx", "crash"]), st.floats(0, 1)), max_size=20))
def test_any_history_keeps_identity_and_never_skips_sending(history):
    """Random send outcomes (including crashes) never change the Message-ID or raw bytes, never reach SENT
    without passing SENDING, and a SENT or FAILED item is never sent again."""
    item, now = queued(), T0
    original = item
    for outcome, jitter in history:
        if item.state in (S.SENT, S.FAILED):
            with pytest.raises(ValueError):
                outbox.begin_send(item, now)
            break
        if item.state is S.UNCERTAIN:
            item = outbox.settle_uncertain(item, [SENT_COPY] if jitter > 0.5 else [DRAFT_COPY], now)
            if item.state is S.UNCERTAIN:
                break  # still with the transport: never resent
            continue
        if not outbox.due([item], now):
            now = item.next_attempt_at or now
        item = outbox.begin_send(item, now, Route.PRIMARY)
        assert item.state is S.SENDING
        if outcome == "ok":
            item = outbox.sent(item, Route.PRIMARY, now)
        elif outcome == "4xx":
            item = outbox.deferred(item, "451", now, jitter)
            assert item.next_attempt_at is not None and item.next_attempt_at > now
        elif outcome == "5xx":
            item = outbox.failed(item, "550")
        else:
            item = outbox.on_startup([item])[0]
        assert (item.message_id, item.raw) == (original.message_id, original.raw)
