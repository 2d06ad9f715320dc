"""403 is not always sign-in (issue 9, item 6): Graph's error code decides. Against the simulator: a From
the user may not use is refused for good (the outbox item FAILED with Graph's words), a folder the user may
not open is reported by the sync while the other folders sync, and neither sets sign_in_needed; 401 still
does. The mapping itself is checked on the codes Microsoft documents."""

from __future__ import annotations

import pytest

from sync import engine, health
from sync.errors import (
    AccessDenied,
    AuthRequired,
    FolderBad,
    MessageBad,
    SendDeferred,
    SendRejected,
    Unreachable,
)
from sync.failover import Policy
from sync.health import Monitor
from sync.model import Mode, OutboxState, Route
from sync.sources.graph import forbidden
from sync.store import Store
from tests.continuity_kit import START, FakeClock, Provider, queue, relay_route
from tests.mailservers import FaultySmtp

pytestmark = pytest.mark.timeout(300)  # safety net against hangs only


@pytest.mark.parametrize("code,challenge,bad,expected", [
    ("ErrorSendAsDenied", "", SendRejected, SendRejected),
    ("ErrorAccessDenied", "", FolderBad, AccessDenied),
    ("ErrorAccessDenied", "", Unreachable, AccessDenied),  # the probe: the provider answered
    ("ErrorAccessDenied", "", MessageBad, MessageBad),
    ("ErrorAccessDenied", "", SendRejected, SendDeferred),  # Mail.Send not granted: the message is fine
    ("Authorization_RequestDenied", "", FolderBad, AccessDenied),
    ("ErrorInsufficientPermissions", "", FolderBad, AccessDenied),
    ("", 'Bearer realm="", error="insufficient_claims", claims="eyJ..."', FolderBad, AuthRequired),
])
def test_a_403_is_decided_by_its_code(code: str, challenge: str, bad: type, expected: type) -> None:
    """Tried: the 403 codes Graph and Exchange document (sendMail's ErrorSendAsDenied, ErrorAccessDenied on a
    folder, item or the whole app, Authorization_RequestDenied) and a Conditional Access claims challenge.
    Only the claims challenge asks for a new sign-in; ErrorSendAsDenied fails the message for good."""
    err = forbidden("x: Graph answered 403", code, "Graph's words", challenge, bad)
    assert type(err) is expected
    assert "Graph's words" in str(err)
    if expected is not AuthRequired:
        assert "sign in again with" not in str(err)


def test_send_as_denied_fails_the_item_with_graphs_words(store: Store, provider: Provider) -> None:
    """Tried: a message whose From is not the user's address sent through Graph (the primary route): Graph
    answers 403 ErrorSendAsDenied; the item is FAILED at once with Graph's words and a fix that is not
    "sign in again", nothing was delivered, the sign-in still works, and the next message goes out."""
    item = queue(store, "As the boss", sender="CEO <ceo@contoso.test>")
    report = engine.send_once(store, {Route.PRIMARY: provider.route}, Mode.NORMAL, START)
    assert report.failed == [item.message_id] and report.error is None
    failed = store.outbox_get(item.id)
    assert failed is not None and failed.state is OutboxState.FAILED and failed.attempts == 1
    assert "ErrorSendAsDenied" in (failed.last_error or "")
    assert "does not have the right to send mail" in (failed.last_error or "")
    assert "lifeboat login" not in (failed.last_error or "")
    assert provider.sim.sent_items() == []
    provider.source.probe()
    ok = queue(store, "As myself")
    again = engine.send_once(store, {Route.PRIMARY: provider.route}, Mode.NORMAL, START)
    assert again.sent == [ok.message_id]


class FolderProbe:
    """A real probe of one folder over Graph (what a mail probe does), for the Monitor."""

    def __init__(self, p: Provider, folder: str) -> None:
        self.p, self.folder = p, folder

    def probe(self) -> None:
        self.p.source.list_messages(self.folder)


def test_a_denied_folder_is_reported_and_is_not_sign_in(store: Store, provider: Provider,
                                                        relay: FaultySmtp) -> None:
    """Tried: the Archive marked inaccessible in the tenant. The sync reports it (403 ErrorAccessDenied,
    FolderBad) and syncs every other folder; the failover monitor probing that very folder for 10 minutes
    of policy time stays NORMAL and never sets sign_in_needed. Then the tenant revokes the tokens: 401,
    and the same monitor sets sign_in_needed (the real sign-in case)."""
    archive = provider.sim.set_folder_access("archive", True)
    report = engine.sync_once(store, provider.source, folders=("*",), cache_days=3650)
    assert report.folders[archive].error and "403" in report.folders[archive].error
    assert "ErrorAccessDenied" in report.folders[archive].error
    assert report.errors == [report.folders[archive].error]
    inbox = provider.sim.folder_id("inbox")
    assert report.folders[inbox].complete and not report.folders[inbox].error
    cached = {r["provider_id"] for r in store.message_places(inbox)}
    assert cached == set(provider.sim.state()[inbox])
    with pytest.raises(AccessDenied):
        provider.source.list_messages(archive)
    probe = FolderProbe(provider, archive)
    assert health.provider_status(probe)[0] is health.ProviderStatus.OK
    clock = FakeClock()
    mon = Monitor(store, probe, [relay_route(relay)], Policy(), clock)  # type: ignore[arg-type]
    mon.start()
    for _ in range(40):
        clock.advance(mon.delay())
        mon.tick()
    assert mon.mode is Mode.NORMAL and not mon.state.sign_in_needed
    provider.sim.revoke_tokens()
    provider.auth.invalidate()
    clock.advance(mon.delay())
    mon.tick()
    assert mon.state.sign_in_needed
