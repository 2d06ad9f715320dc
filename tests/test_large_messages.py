"""Large messages against the simulator over HTTPS: Graph's 4 MB request limit, attachments POST and upload
sessions, the draft + upload + send route of the primary route, and the non-draft Sent Items copy of an
outage-sent message (Bcc, inline cid images, one Message-ID, a copy that can never fit is given up)."""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
from email.message import EmailMessage

import pytest
import requests

from sync import engine
from sync.model import Mode, OutboxItem, OutboxState, Route
from sync.store import Store
from tests.continuity_kit import START, Provider, queue, relay_route, sent_copies
from tests.mailservers import FaultySmtp

pytestmark = pytest.mark.timeout(300)  # safety net against hangs only

BIG = bytes(range(256)) * (4_500_000 // 256)  # 4.5 MB that any re-encoding would show


def graph(p: Provider, method: str, path: str, **kw: object) -> requests.Response:
    headers = {"Authorization": f"Bearer {p.auth.token()}", **kw.pop("headers", {})}  # type: ignore[dict-item]
    return requests.request(method, f"{p.cfg.graph_url}{path}", headers=headers, verify=p.cfg.ca_file,
                            timeout=60, **kw)  # type: ignore[arg-type]


def copy_ids(p: Provider, message_id: str) -> list[str]:
    """Immutable ids (as the client sees them) of the Sent Items entries with this Message-ID."""
    r = graph(p, "GET", "/me/mailFolders/sentitems/messages", headers={"Prefer": 'IdType="ImmutableId"'},
              params={"$filter": f"internetMessageId eq '{message_id}'", "$select": "id"})
    return [m["id"] for m in r.json()["value"]]


def attachment_of(mime: bytes, name: str) -> bytes:
    msg = email.message_from_bytes(mime, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    for part in msg.walk():
        if part.get_filename() == name:
            data = part.get_payload(decode=True)
            assert isinstance(data, bytes)
            return data
    raise AssertionError(f"no part named {name!r}")


def outage_send(store: Store, relay: FaultySmtp, item: OutboxItem) -> None:
    report = engine.send_once(store, {Route.BACKUP: relay_route(relay)}, Mode.CONTINUITY, START)
    assert report.sent == [item.message_id]


def with_inline_image(store: Store) -> OutboxItem:
    """An HTML message whose image is a multipart/related part referenced by cid, with a Bcc."""
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = "Adele <adele.vance@contoso.test>"
    msg["To"] = "bob@relay.test"
    msg["Subject"] = "Chart inside"
    msg["Date"] = "Sat, 28 Nov 2026 12:00:00 +0000"
    msg["Message-ID"] = "<inline-1@contoso.test>"
    msg.set_content("see the chart")
    msg.add_alternative('<p>see <img src="cid:chart1@contoso.test"></p>', subtype="html")
    html = msg.get_payload()[1]  # type: ignore[index]
    html.add_related(b"\x89PNG fake chart", maintype="image", subtype="png", cid="<chart1@contoso.test>")
    return store.outbox_add("<inline-1@contoso.test>", msg.as_bytes(), "adele.vance@contoso.test",
                            ("bob@relay.test", "dave@relay.test"), "Chart inside", START)


def test_a_request_over_4_mb_gets_413_so_the_old_client_failed(provider: Provider) -> None:
    """Tried: the old client's way, the whole 6 MB MIME (base64) to sendMail, and a JSON create carrying the
    4.5 MB file as contentBytes: the simulator answers 413 with Graph's words and sends nothing."""
    item_raw = queue_raw("Too big for one request")
    r = graph(provider, "POST", "/me/sendMail", data=base64.b64encode(item_raw),
              headers={"Content-Type": "text/plain"})
    assert r.status_code == 413
    assert r.json()["error"]["message"] == "The maximum request length supported is 4MB."
    body = {"subject": "x", "attachments": [{"@odata.type": "#microsoft.graph.fileAttachment", "name": "a",
                                             "contentBytes": base64.b64encode(BIG).decode()}]}
    assert graph(provider, "POST", "/me/messages", json=body).status_code == 413
    assert provider.sim.sent_items() == []


def queue_raw(subject: str) -> bytes:
    from sync import mime

    return mime.build(sender="adele.vance@contoso.test", to=["bob@relay.test"], subject=subject, text="hi",
                      attachments=[("big.bin", "application/octet-stream", BIG)]).raw


def test_large_message_goes_out_through_draft_and_upload_session(store: Store, provider: Provider) -> None:
    """Tried: a 6 MB message (4.5 MB attachment, a Bcc) sent in NORMAL through the primary route, with the
    simulator demanding fragments in multiples of 320 KiB. It went out once through a draft, an upload
    session (two ranged PUTs to the upload URL, which refuses an Authorization header) and /send; the
    tenant's sent MIME holds the file byte for byte, the stamped Message-ID and the Bcc recipient; no draft
    is left."""
    provider.sim.set_sizes(chunk_multiple=327680)
    item = queue(store, "Big one", bcc=["dave@relay.test"],
                 attachments=[("big.bin", "application/octet-stream", BIG)])
    assert len(item.raw) > 5_000_000
    report = engine.send_once(store, {Route.PRIMARY: provider.route}, Mode.NORMAL, START)
    assert report.sent == [item.message_id], report
    [out] = [s for s in provider.sim.sent_items() if s["message_id"] == item.message_id]
    sent = base64.b64decode(out["mime"])
    assert hashlib.sha256(attachment_of(sent, "big.bin")).digest() == hashlib.sha256(BIG).digest()
    assert sorted(out["to"]) == ["bob@relay.test", "dave@relay.test"]
    log = [p for _m, p in provider.sim.request_log]
    assert any(p.endswith("/attachments/createUploadSession") for p in log)
    assert sum(1 for p in log if p.startswith("/api/v2.0/")) == 2
    assert not any(p.endswith("/sendMail") for p in log)
    assert provider.sim.state()[provider.sim.folder_id("drafts")] == {}
    done = store.outbox_get(item.id)
    assert done is not None and done.state is OutboxState.SENT and done.route is Route.PRIMARY


def test_a_draft_that_lost_its_message_id_gets_it_back(store: Store, provider: Provider) -> None:
    """Tried: the simulator switched to stamp its own Message-ID on MIME creates (the docs do not say):
    the client puts the outbox's Message-ID back on the draft (PATCH, allowed on drafts) before sending,
    so the exactly-once lookup finds what went out."""
    provider.sim.set_sizes(mime_keeps_message_id=False)
    item = queue(store, "Big two", attachments=[("big.bin", "application/octet-stream", BIG)])
    report = engine.send_once(store, {Route.PRIMARY: provider.route}, Mode.NORMAL, START)
    assert report.sent == [item.message_id]
    assert [s["message_id"] for s in provider.sim.sent_items()] == [item.message_id]


def test_a_message_graph_can_never_take_fails_with_a_clear_reason(store: Store, provider: Provider) -> None:
    """Tried: upload sessions capped at 4 MB in the simulator (Graph's cap is 150 MB): the server refuses the
    session, the item is FAILED with Graph's words (SendRejected), nothing is sent and no draft is left."""
    provider.sim.set_sizes(session_max=4 * 1024 * 1024)
    item = queue(store, "Never", attachments=[("big.bin", "application/octet-stream", BIG)])
    report = engine.send_once(store, {Route.PRIMARY: provider.route}, Mode.NORMAL, START)
    assert report.failed == [item.message_id]
    failed = store.outbox_get(item.id)
    assert failed is not None and failed.state is OutboxState.FAILED
    assert "ErrorAttachmentSizeShouldNotBeGreaterThanMaximumSize" in (failed.last_error or "")
    assert provider.sim.sent_items() == []
    assert provider.sim.state()[provider.sim.folder_id("drafts")] == {}


def test_outage_sent_large_message_is_reconciled_with_its_attachment(store: Store, provider: Provider,
                                                                     relay: FaultySmtp) -> None:
    """Tried: the same 6 MB message sent through the relay during an outage, then reconcile: one non-draft
    copy in Sent Items whose MIME carries the 4.5 MB file byte for byte (uploaded to the created item by a
    session); a second reconcile creates nothing."""
    item = queue(store, "Outage big", attachments=[("big.bin", "application/octet-stream", BIG)])
    outage_send(store, relay, item)
    report = engine.reconcile_once(store, provider.source, START)
    assert report.copied == [item.message_id] and not report.failed and not report.given_up
    [copy] = sent_copies(provider, item.message_id)
    assert copy["isDraft"] is False
    value = graph(provider, "GET", f"/me/messages/{copy['id']}/$value").content
    assert attachment_of(value, "big.bin") == BIG
    assert engine.reconcile_once(store, provider.source, START).copied == []
    assert len(sent_copies(provider, item.message_id)) == 1
    done = store.outbox_get(item.id)
    assert done is not None and done.reconciled_at == START and done.sent_copy_partial is None


def test_an_interrupted_large_copy_is_redone_not_left_half_made(store: Store, provider: Provider,
                                                               relay: FaultySmtp) -> None:
    """Tried: a crash right after the copy was created, before its large file was uploaded (the checkpoint
    raises): the half-made copy is noted; the next reconcile deletes it and makes a whole one, so Sent Items
    holds exactly one copy, with the file."""
    item = queue(store, "Crashy", attachments=[("big.bin", "application/octet-stream", BIG)])
    outage_send(store, relay, item)

    def crash(name: str) -> None:
        if name == "copy_started":
            raise RuntimeError("crash")

    with pytest.raises(RuntimeError):
        engine.reconcile_once(store, provider.source, START, checkpoint=crash)
    [half] = copy_ids(provider, item.message_id)
    assert store.outbox_get(item.id).sent_copy_partial == half  # type: ignore[union-attr]
    assert engine.reconcile_once(store, provider.source, START).copied == [item.message_id]
    [whole] = copy_ids(provider, item.message_id)
    assert whole != half
    assert attachment_of(graph(provider, "GET", f"/me/messages/{whole}/$value").content, "big.bin") == BIG


def test_a_copy_that_can_never_fit_is_given_up_with_a_timeline_record(store: Store, provider: Provider,
                                                                      relay: FaultySmtp) -> None:
    """Tried: upload sessions capped at 4 MB, then reconcile of an outage-sent 4.5 MB file: Graph refuses the
    session for good, the half-made copy is deleted, the item is marked reconciled with 'gave up' in its
    last_error and a timeline event (what `lifeboat status --json` shows); the next run does nothing."""
    provider.sim.set_sizes(session_max=4 * 1024 * 1024)
    item = queue(store, "Never fits", attachments=[("big.bin", "application/octet-stream", BIG)])
    outage_send(store, relay, item)
    report = engine.reconcile_once(store, provider.source, START)
    assert list(report.given_up) == [item.message_id] and report.copied == []
    assert "can never be copied" in report.summary
    assert sent_copies(provider, item.message_id) == []
    after = store.outbox_get(item.id)
    assert after is not None and after.reconciled_at == START
    assert (after.last_error or "").startswith("gave up")
    [event] = [e for e in store.events() if e["kind"] == "reconcile"]
    assert item.message_id in event["detail"] and "never be stored in Sent Items" in event["detail"]
    again = engine.reconcile_once(store, provider.source, START)
    assert again.copied == [] and again.given_up == {}


def test_the_sent_copy_keeps_bcc_inline_images_and_one_message_id(store: Store, provider: Provider,
                                                                  relay: FaultySmtp) -> None:
    """Tried: an HTML message with a cid image in multipart/related and a Bcc (envelope only), sent through
    the relay, then reconciled: the copy lists the Bcc recipient, its image is an inline attachment with its
    contentId (so the copy renders), and its Message-ID is the stamped one."""
    item = with_inline_image(store)
    outage_send(store, relay, item)
    assert engine.reconcile_once(store, provider.source, START).copied == [item.message_id]
    [copy] = sent_copies(provider, item.message_id)
    got = graph(provider, "GET", f"/me/messages/{copy['id']}").json()
    assert [r["emailAddress"]["address"] for r in got["bccRecipients"]] == ["dave@relay.test"]
    assert got["internetMessageId"] == item.message_id and got["isDraft"] is False
    [att] = graph(provider, "GET", f"/me/messages/{copy['id']}/attachments").json()["value"]
    assert att["isInline"] is True and att["contentId"] == "chart1@contoso.test"
    assert base64.b64decode(att["contentBytes"]) == b"\x89PNG fake chart"
    assert 'src="cid:chart1@contoso.test"' in got["body"]["content"]


def test_mime_create_only_on_me_messages_and_upload_url_rules(provider: Provider) -> None:
    """Tried against the simulator alone: MIME on a folder's messages is refused as Graph does
    (UnableToDeserializePostBody) and accepted on /me/messages as a draft; createUploadSession under 3 MB
    is refused; the upload URL refuses an Authorization header, bytes out of order (416), a fragment over
    4 MB, and answers 404 once the session has expired."""
    mime_b64 = base64.b64encode(b"From: a@contoso.test\r\nTo: b@relay.test\r\nSubject: m\r\n\r\nhi\r\n")
    r = graph(provider, "POST", "/me/mailFolders/sentitems/messages", data=mime_b64,
              headers={"Content-Type": "text/plain"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "UnableToDeserializePostBody"
    draft = graph(provider, "POST", "/me/messages", data=mime_b64, headers={"Content-Type": "text/plain"})
    assert draft.status_code == 201 and draft.json()["isDraft"] is True
    base = f"/me/messages/{draft.json()['id']}/attachments/createUploadSession"
    small = graph(provider, "POST", base, json={"AttachmentItem": {"attachmentType": "file", "name": "s",
                                                                   "size": 1000}})
    assert small.json()["error"]["code"] == "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize"
    size = 5 * 1024 * 1024
    session = graph(provider, "POST", base, json={"AttachmentItem": {"attachmentType": "file", "name": "f",
                                                                     "size": size}}).json()
    url = session["uploadUrl"]
    assert session["nextExpectedRanges"] == ["0-"]

    def put(start: int, n: int, **headers: str) -> requests.Response:
        return requests.put(url, data=b"x" * n, verify=provider.cfg.ca_file, timeout=60, headers={
            "Content-Range": f"bytes {start}-{start + n - 1}/{size}", **headers})

    assert put(0, 1000, Authorization=f"Bearer {provider.auth.token()}").status_code == 401
    assert put(1000, 1000).status_code == 416
    assert put(0, 4 * 1024 * 1024 + 1).status_code == 413
    ok = put(0, 1000)
    assert ok.status_code == 200 and ok.json()["nextExpectedRanges"] == ["1000"]
    uploads = provider.sim.api.uploads
    later = uploads.clock() + 901  # the session's clock moved past its 900 s (no waiting)
    uploads.clock = lambda: later
    assert put(1000, 1000).status_code == 404


def test_a_413_from_sendmail_falls_back_to_the_draft_route(store: Store, provider: Provider) -> None:
    """Tried: a tenant whose request limit (3,000,000 bytes here) is below the client's own budget, and a
    2.4 MB message that the client thought would fit sendMail: Graph answers 413 (refused unread), and
    the client sends it through a draft with its files attached separately, once, files intact."""
    provider.sim.set_sizes(max_request=3_000_000)
    one, two = bytes(range(256)) * 3500, bytes(range(255, -1, -1)) * 3500
    item = queue(store, "Just over", attachments=[("one.bin", "application/octet-stream", one),
                                                  ("two.bin", "application/octet-stream", two)])
    report = engine.send_once(store, {Route.PRIMARY: provider.route}, Mode.NORMAL, START)
    assert report.sent == [item.message_id], report
    [out] = provider.sim.sent_items()
    sent = base64.b64decode(out["mime"])
    assert attachment_of(sent, "one.bin") == one and attachment_of(sent, "two.bin") == two
    log = [p for _m, p in provider.sim.request_log]
    assert any(p.endswith("/sendMail") for p in log) and any(p.endswith("/send") for p in log)


def test_the_upload_volume_limit_is_waited_out(store: Store, provider: Provider) -> None:
    """Tried: the upload volume limit of a mailbox (Graph: 150 MB per 5 minutes) set to 6 MB per 3 s, and two
    large messages in a row: the second upload's ranged PUT gets 429 with Retry-After, the client waits and
    goes on, and both go out whole."""
    provider.sim.set_sizes(upload_bytes=6_000_000, upload_window=3.0)
    first = queue(store, "First", attachments=[("big.bin", "application/octet-stream", BIG)])
    second = queue(store, "Second", attachments=[("big.bin", "application/octet-stream", BIG)])
    report = engine.send_once(store, {Route.PRIMARY: provider.route}, Mode.NORMAL, START)
    assert report.sent == [first.message_id, second.message_id], report
    assert provider.source.governor.throttled >= 1
    outs = provider.sim.sent_items()
    assert len(outs) == 2  # the loop below checks both messages, never an empty list
    for out in outs:
        assert attachment_of(base64.b64decode(out["mime"]), "big.bin") == BIG


def test_a_copy_whose_create_answer_was_lost_is_made_again_once(store: Store, provider: Provider,
                                                                relay: FaultySmtp) -> None:
    """Tried: the simulator cuts the answer to the create request of the copy (it made the item, the client
    never learned its id). Reconcile ends Unreachable; the next run finds a copy it cannot vouch for (it may
    lack its files), deletes it and makes a whole one: exactly one copy, with the file."""
    from sync.errors import Unreachable

    item = queue(store, "Lost answer", attachments=[("big.bin", "application/octet-stream", BIG)])
    outage_send(store, relay, item)

    def cut_answers(name: str) -> None:
        if name == "looked_up":
            provider.sim.set_outage("drop")

    with pytest.raises(Unreachable):
        engine.reconcile_once(store, provider.source, START, checkpoint=cut_answers)
    provider.sim.set_outage("normal")
    [lost] = copy_ids(provider, item.message_id)
    assert engine.reconcile_once(store, provider.source, START).copied == [item.message_id]
    [whole] = copy_ids(provider, item.message_id)
    assert whole != lost
    assert attachment_of(graph(provider, "GET", f"/me/messages/{whole}/$value").content, "big.bin") == BIG


@pytest.mark.parametrize("reading", ["decimal", "binary"])
def test_a_file_just_under_3_mib_fits_either_reading_of_mb(store: Store, provider: Provider,
                                                           reading: str) -> None:
    """Tried: a 3,000,000-byte file (3 MB decimal, under 3 MiB) against a tenant that reads "MB" as 10^6
    (4,000,000-byte requests, sessions from 3,000,000) and one that reads it as 2^20: its POST would pass
    the decimal request limit, so the client tries a session first, and POSTs when the binary tenant finds
    the file too small for one. Both send it whole."""
    if reading == "decimal":
        provider.sim.set_sizes(max_request=4_000_000, session_min=3_000_000)
    edge = bytes(range(256)) * (3_000_000 // 256) + b"x" * (3_000_000 % 256)
    item = queue(store, f"Edge {reading}", attachments=[("edge.bin", "application/octet-stream", edge)])
    assert engine.send_once(store, {Route.PRIMARY: provider.route}, Mode.NORMAL, START).sent == [
        item.message_id]
    [out] = provider.sim.sent_items()
    assert attachment_of(base64.b64decode(out["mime"]), "edge.bin") == edge
    log = [p for m, p in provider.sim.request_log if m in ("POST", "PUT")]
    assert any(p.endswith("/createUploadSession") for p in log)
    uploads = sum(1 for p in log if p.startswith("/api/v2.0/"))
    posts = sum(1 for p in log if p.endswith("/attachments"))
    assert (uploads, posts) == ((1, 0) if reading == "decimal" else (0, 1))
