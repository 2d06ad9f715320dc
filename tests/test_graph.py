"""GraphSource: Microsoft's own payload examples (pure parsing), then real HTTPS against the simulator.

Every fault the issue names is exercised against the simulator in its own process: 429 with a
fractional Retry-After (also inside $batch), 503, a hang, truncated JSON, a dropped connection,
expired delta tokens (410 and 400 syncStateNotFound), and a revoked sign-in.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from sync.errors import AuthRequired, CursorExpired, MessageBad, Unreachable
from sync.governor import Governor
from sync.model import MessageCopy
from sync.sources import graph
from sync.sources.graph import GraphSource, changes_page
from tests import corpus
from tests.samples import sample
from tests.syncsim import SimProcess, SimTokens


def example(name: str) -> dict:
    """One of Microsoft's documented payloads from the corpus (the calling test skips without it)."""
    return json.loads((corpus.path("graph/docs-examples") / name).read_text())


# -- pure: Microsoft's documented payloads ------------------------------------------------------------


def test_delta_pages_from_microsoft_docs() -> None:
    """The three pages of the docs' delta example: nextLink pages are not complete, the deltaLink
    page is, and the cursor is the whole link URL."""
    p1 = changes_page(example("delta-messages-ex1-page1-nextLink.json"), "F")
    assert [i.provider_id for i in p1.items] == ["AAMkADNkNAAASq35xAAA=", "AQMkADNkNAAAVRMKAAAAA=="]
    assert not p1.complete and p1.cursor is not None and "$skiptoken=" in p1.cursor
    assert p1.items[0].sender == "Dana Swope <danas@contoso.com>" and p1.items[0].is_read is False
    p3 = changes_page(example("delta-messages-ex1-page3-deltaLink.json"), "F")
    assert p3.complete and p3.cursor is not None and "$deltatoken=" in p3.cursor


def test_delta_removed_and_string_booleans() -> None:
    """Round 2 of the docs' example: an @removed entry and isRead given as the string "true"."""
    page = changes_page(example("delta-messages-ex1-round2-removed-and-updated.json"), "F")
    assert page.removed == ("AAMkADk0MGFkODE3LWE4MmYtNDRhOS0Dh_6qB-pB2Sa2pUum19a6YAAKnLuxoAAA=",)
    assert page.items[0].is_read is True and page.complete


@pytest.mark.parametrize("payload", [{}, {"value": "x"}, {"value": [{"subject": "no id"}],
                                                           "@odata.deltaLink": "d"},
                                     {"value": []}])
def test_malformed_pages_are_unreachable_not_used(payload: dict) -> None:
    """A page without value, an entry without id, or a page with neither link (cut short) is refused."""
    with pytest.raises(Unreachable):
        changes_page(payload, "F")


def test_delta_pages_made_here() -> None:
    """Tried: pages shaped like the docs' (written here): a nextLink page is not complete; a deltaLink
    page with an @removed entry and isRead as the string "true" is, and its cursor is the whole URL."""
    item = {"id": "A1", "subject": "s", "isRead": "true",
            "from": {"emailAddress": {"name": "Dana", "address": "dana@contoso.com"}}}
    p1 = changes_page({"value": [item], "@odata.nextLink": "https://g/delta?$skiptoken=x"}, "F")
    assert [i.provider_id for i in p1.items] == ["A1"] and not p1.complete
    assert p1.cursor == "https://g/delta?$skiptoken=x" and p1.items[0].is_read is True
    assert p1.items[0].sender == "Dana <dana@contoso.com>"
    p2 = changes_page({"value": [{"id": "A2", "@removed": {"reason": "deleted"}}],
                       "@odata.deltaLink": "https://g/delta?$deltatoken=y"}, "F")
    assert p2.removed == ("A2",) and not p2.items and p2.complete and p2.cursor.endswith("$deltatoken=y")


def test_retry_after_of_the_documented_429() -> None:
    """Tried: the Retry-After header of Microsoft's documented 429 response (from the corpus): 2.128."""
    http = (corpus.path("graph/docs-examples-2021") / "throttling__429-response.http").read_text()
    header = next(line for line in http.splitlines() if line.startswith("Retry-After"))
    assert graph._retry_after({"Retry-After": header.split(":", 1)[1].strip()}) == 2.128


def test_retry_after_is_fractional_and_batch_bodies_are_base64() -> None:
    """Retry-After "2.128" (the documented 429's value) parses; a $batch MIME body is base64; JSON is
    not MIME."""
    assert graph._retry_after({"Retry-After": "2.128"}) == 2.128
    assert graph._retry_after({"Retry-After": "soon"}) == 1.0
    raw = b"Subject: hi\r\n\r\nbody\r\n"
    assert graph.decode_value(base64.b64encode(raw).decode()) == raw
    assert graph.decode_value({"error": {}}) is None  # not MIME: the message is fetched on its own
    assert graph.decode_value("not base64!") is None


def test_sent_item_json_is_a_non_draft_with_extended_properties() -> None:
    """A generated multipart message with attachments becomes Graph JSON with PR_MESSAGE_FLAGS=1, the
    submit/delivery times, the Message-ID (once, as internetMessageId: not also String 0x1035), its
    recipients and its attachments."""
    raw = sample("attachments")
    body = graph.sent_item_json(raw, datetime(2026, 11, 28, 10, 0, tzinfo=UTC), "<abc@lifeboat.test>")
    props = {p["id"]: p["value"] for p in body["singleValueExtendedProperties"]}
    assert props["Integer 0x0E07"] == "1" and "String 0x1035" not in props
    assert body["internetMessageId"] == "<abc@lifeboat.test>"
    assert props["SystemTime 0x0039"] == "2026-11-28T10:00:00Z" == props["SystemTime 0x0E06"]
    assert body["toRecipients"] and body.get("attachments")
    assert all(base64.b64decode(a["contentBytes"]) is not None for a in body["attachments"])


# -- against the simulator --------------------------------------------------------------------------


SIMULATOR = {"messages": 60, "seed": 11}  # the mailbox of conftest's `sim` fixture


@pytest.fixture
def source(sim: SimProcess, tokens: SimTokens) -> Iterator[GraphSource]:
    gov = Governor(base_delay=0.05, max_delay=0.2)
    s = GraphSource(sim.graph_url, tokens, ca_file=sim.ca_path, timeout=(3, 5), page_size=25, governor=gov)
    yield s
    sim.outage("normal")
    sim.admin("POST", "limits", {"on": False})
    s.close()


def full_delta(source: GraphSource, folder_id: str, cursor: str | None = None) -> tuple[dict, str]:
    seen: dict[str, object] = {}
    while True:
        page = source.changes(folder_id, cursor, None)
        for item in page.items:
            seen[item.provider_id] = item
        for pid in page.removed:
            seen[pid] = None
        cursor = page.cursor
        if page.complete:
            assert cursor is not None
            return seen, cursor


def test_folders_delta_and_mime_match_the_simulator(sim: SimProcess, source: GraphSource) -> None:
    """Folders resolve their well-known names; a paged delta lists exactly the folder's messages;
    $batch MIME (more than 20 ids, so several batches in flight) hashes equal to the simulator's."""
    folders = source.folders()
    well = {f.well_known: f for f in folders if f.well_known}
    assert {"inbox", "sentitems", "drafts"} <= set(well)
    inbox = well["inbox"].provider_id
    seen, _ = full_delta(source, inbox)
    truth = sim.state()[inbox]
    assert set(seen) == set(truth)
    ids = sorted(truth)[:45]
    got = source.fetch_mime(ids)
    assert {pid: hashlib.sha256(raw).hexdigest() for pid, raw in got.items() if isinstance(raw, bytes)} == {
        pid: truth[pid] for pid in ids}
    missing = source.fetch_mime(["AAMkADnotthere="])
    assert isinstance(missing["AAMkADnotthere="], MessageBad)


def test_window_filter_and_incremental_round(sim: SimProcess, source: GraphSource) -> None:
    """A window in the future lists nothing; after a full round, a new message arrives as one
    incremental page and a deletion as @removed."""
    inbox_id = next(f["id"] for f in sim.admin("GET", "state")["folders"] if f["wellKnownName"] == "inbox")
    page = source.changes(inbox_id, None, datetime(2100, 1, 1, tzinfo=UTC))
    assert page.items == ()
    _, cursor = full_delta(source, inbox_id)
    new_id = sim.admin("POST", "messages", {"folder": "inbox", "mime": "Subject: fresh\r\nMessage-ID: "
                                            "<fresh@t>\r\n\r\nhello\r\n"})["id"]
    seen, cursor = full_delta(source, inbox_id, cursor)
    assert set(seen) == {new_id}
    sim.admin("DELETE", f"messages/{new_id}")
    seen, _ = full_delta(source, inbox_id, cursor)
    assert seen == {new_id: None}


def test_throttling_is_honoured_and_retried(sim: SimProcess, source: GraphSource) -> None:
    """The next 3 requests get 429 with Retry-After 0.2: the governor waits and the call succeeds."""
    sim.admin("POST", "throttle", {"count": 3, "retry_after": 0.2})
    folders = source.folders()
    assert folders and source.governor.throttled >= 3


def test_throttling_inside_batch_retries_only_those_items(sim: SimProcess, source: GraphSource) -> None:
    """Limits with a tiny window: inner $batch requests get their own 429s; every MIME still arrives."""
    truth = next(iter(sim.state().values()))
    ids = sorted(truth)[:20]
    limits = {"on": True, "window_requests": 12, "window_seconds": 0.5, "retry_after": 0.1}
    sim.admin("POST", "limits", limits)
    got = source.fetch_mime(ids)
    assert all(isinstance(got[p], bytes) for p in ids), {p: got[p] for p in ids}
    assert source.governor.throttled > 0


@pytest.mark.parametrize("mode", ["503", "truncate", "drop", "refuse"])
def test_outages_become_unreachable(sim: SimProcess, source: GraphSource, mode: str) -> None:
    """503, a truncated JSON body, a connection dropped mid-body, a refused connection: each ends as
    Unreachable after the governor's bounded retries (no half page is ever returned)."""
    inbox = source.well_known_ids(["inbox"])
    folder = next(iter(inbox))
    sim.outage(mode)
    with pytest.raises(Unreachable):
        source.changes(folder, None, None)
    sim.outage("normal")
    assert source.changes(folder, None, None).items  # and it recovers


def test_a_hang_times_out(sim: SimProcess, source: GraphSource) -> None:
    """The server accepts and never answers: the read timeout turns it into Unreachable."""
    folder = next(iter(source.well_known_ids(["inbox"])))
    source.timeout = (2, 2)
    sim.outage("hang")
    try:
        with pytest.raises(Unreachable):
            source.changes(folder, None, None)
        with pytest.raises(Unreachable):
            source.probe()
    finally:
        sim.outage("normal")


@pytest.mark.parametrize("status", [410, 400])
def test_expired_delta_tokens(sim: SimProcess, source: GraphSource, status: int) -> None:
    """An expired deltaLink answers 410 Gone or 400 syncStateNotFound: both are CursorExpired."""
    folder = next(iter(source.well_known_ids(["inbox"])))
    _, cursor = full_delta(source, folder)
    sim.admin("POST", "delta/expire", {"status": status})
    with pytest.raises(CursorExpired):
        source.changes(folder, cursor, None)


def test_lookup_save_copy_and_send(sim: SimProcess, source: GraphSource) -> None:
    """Tried: save_copy, then a whole-mailbox lookup of its Message-ID (one non-draft copy in Sent Items);
    then send_mime with the simulator's transport holding messages for an hour: the lookup finds the
    message in Drafts as a draft and nothing was delivered yet; once the transport takes it (flush) it is
    a non-draft copy in Sent Items and in the tenant's outgoing log."""
    names = source.well_known_ids(["sentitems", "drafts"])
    sent = next(fid for fid, name in names.items() if name == "sentitems")
    raw = (b"From: Adele <adele.vance@contoso.test>\r\nTo: bob@example.com\r\nSubject: outage copy\r\n"
           b"Message-ID: <copy-1@lifeboat.test>\r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\n\r\nhello\r\n")
    assert source.find_by_message_id("<copy-1@lifeboat.test>") == []
    pid = source.save_copy(sent, raw, datetime(2026, 11, 28, 10, 0, tzinfo=UTC), "<copy-1@lifeboat.test>")
    assert source.find_by_message_id("<copy-1@lifeboat.test>") == [
        MessageCopy(pid, sent, is_draft=False, folder="sentitems")]
    item = source._get_json(f"/me/messages/{pid}?$select=isDraft,parentFolderId", what="t")
    assert item["isDraft"] is False and item["parentFolderId"] == sent
    sim.admin("POST", "transport", {"sent_delay": 3600})
    try:
        source.send_mime(raw.replace(b"copy-1", b"send-1"))
        [queued] = source.find_by_message_id("<send-1@lifeboat.test>")
        assert queued.is_draft and queued.folder == "drafts"
        outgoing = sim.admin("GET", "sent")
        assert not any(b"<send-1@lifeboat.test>" in base64.b64decode(o["mime"]) for o in outgoing)
        assert sim.admin("POST", "transport", {"flush": True})["flushed"] == 1
    finally:
        sim.admin("POST", "transport", {"sent_delay": 3})
    [done] = source.find_by_message_id("<send-1@lifeboat.test>")
    assert (done.provider_id, done.is_draft, done.folder) == (queued.provider_id, False, "sentitems")
    outgoing = sim.admin("GET", "sent")
    assert any(b"<send-1@lifeboat.test>" in base64.b64decode(o["mime"]) for o in outgoing)


def test_revoked_sign_in_is_auth_required(sim: SimProcess, tokens: SimTokens, source: GraphSource) -> None:
    """Tokens revoked by the tenant: Graph answers 401 and the refresh fails -> AuthRequired, and
    the sign-in state reads sign_in_needed (never a traceback)."""
    sim.admin("POST", "tokens", {"revoke": True})
    with pytest.raises(AuthRequired):
        source.probe()
    tokens.auth.invalidate()
    assert tokens.auth.state() == "sign_in_needed"
    time.sleep(1.2)  # the simulator also rejects tokens issued within 1 s of a revocation
    tokens.auth.login_device_code(lambda _t: None)  # sign in again for later tests
    source.probe()


@pytest.mark.parametrize("mode", ["refuse", "stop", "hang", "503", "slow", "truncate", "drop"])
def test_probe_touches_mail_so_an_exchange_only_outage_fails_it(sim: SimProcess, source: GraphSource,
                                                                mode: str) -> None:
    """Tried: the simulator (own process) with mail down and the directory up (scope=mail), in each mode
    (slow: 4 s, past the probe's read timeout). The old probe, `GET /me?$select=id`, stays green (it
    would never have failed over); the new probe (`/me/mailFolders/inbox?$select=id`) raises Unreachable
    in every mode, a mail sync request does too, and both work again once mail is back."""
    source.probe_timeout = (2.0, 2.0)
    source.probe()
    sim.outage(mode, scope="mail", delay=4.0)
    try:
        old = source._send("GET", "/me?$select=id", what="old probe", bad=Unreachable, timeout=(2.0, 2.0))
        assert old.json()["id"]  # the directory answers: the old probe would say "all is well"
        with pytest.raises(Unreachable):
            source.probe()
        if mode not in ("hang", "slow"):  # (those only wait out the governor's read timeouts)
            with pytest.raises(Unreachable):
                source.folders()
    finally:
        sim.outage("normal")
    source.probe()
    assert source.folders()
