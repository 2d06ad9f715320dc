"""The Microsoft 365 simulator: OIDC sign-in with the real msal, Graph mail paths, delta, admin API, outages.

Every test starts its own simulator on free ports (HTTPS with a CA in tmp_path) and talks to it over real
sockets with requests/msal, trusting only that CA (REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE are removed).
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import msal
import pytest
import requests

from simulator.server import Simulator

ROOT = Path(__file__).resolve().parents[1]
PREFER = 'IdType="ImmutableId", odata.maxpagesize=7'


@pytest.fixture(autouse=True)
def _no_ca_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Simulator]:
    s = Simulator(tmp_path / "sim", messages=60, seed=3).start()
    yield s
    s.stop()


def msal_app(sim: Simulator, **kw: object) -> msal.PublicClientApplication:
    return msal.PublicClientApplication(
        "lifeboat-test", authority=sim.authority, instance_discovery=False, verify=str(sim.ca_path), **kw
    )


def sign_in(sim: Simulator) -> tuple[msal.PublicClientApplication, dict]:
    app = msal_app(sim)
    flow = app.initiate_device_flow(scopes=["Mail.ReadWrite", "Mail.Send"])
    assert "user_code" in flow, flow
    result = app.acquire_token_by_device_flow(flow)
    assert "access_token" in result, result
    return app, result


def graph(sim: Simulator) -> requests.Session:
    _, result = sign_in(sim)
    s = requests.Session()
    s.verify = str(sim.ca_path)
    s.headers.update({"Authorization": f"Bearer {result['access_token']}", "Prefer": PREFER})
    return s


def run_delta(s: requests.Session, url: str) -> tuple[dict[str, dict], set[str], str, int]:
    """Follow nextLinks to the deltaLink; return (items by id, removed ids, deltaLink, pages)."""
    items: dict[str, dict] = {}
    removed: set[str] = set()
    pages = 0
    while True:
        r = s.get(url, timeout=30)
        assert r.status_code == 200, r.text
        page = r.json()
        pages += 1
        for v in page["value"]:
            if "@removed" in v:
                removed.add(v["id"])
                items.pop(v["id"], None)
            else:
                items[v["id"]] = v
                removed.discard(v["id"])
        if "@odata.deltaLink" in page:
            return items, removed, page["@odata.deltaLink"], pages
        url = page["@odata.nextLink"]


def mime(subject: str, to: str = "someone@example.test",
         sender: str = "Tester <tester@example.test>") -> bytes:
    m = EmailMessage()
    m["From"] = sender
    m["To"] = to
    m["Subject"] = subject
    m["Message-ID"] = make_msgid(domain="test.lifeboat")
    m.set_content(f"Body of {subject}\n")
    return m.as_bytes()


# --- sign-in -----------------------------------------------------------------------------------------


def test_msal_device_flow_keeps_account_and_refreshes(sim: Simulator) -> None:
    """Real msal: device code sign-in (auto-approved), the account is kept, a forced refresh works."""
    app, result = sign_in(sim)
    assert result["id_token_claims"]["preferred_username"] == sim.user.upn
    accounts = app.get_accounts()
    assert [a["username"] for a in accounts] == [sim.user.upn]
    again = app.acquire_token_silent(["Mail.ReadWrite"], account=accounts[0], force_refresh=True)
    assert again and again["access_token"] != result["access_token"]
    me = requests.get(
        f"{sim.graph_url}/me",
        headers={"Authorization": "Bearer " + again["access_token"]},
        verify=str(sim.ca_path),
    )
    assert me.status_code == 200 and me.json()["userPrincipalName"] == sim.user.upn


def test_msal_oidc_authority_form_passes_issuer_validation(sim: Simulator) -> None:
    """msal's `oidc_authority=` form (which validates the discovery document's issuer) signs in too."""
    app = msal.PublicClientApplication(
        "lifeboat-oidc", oidc_authority=sim.oidc_authority, verify=str(sim.ca_path)
    )
    result = app.acquire_token_by_device_flow(app.initiate_device_flow(scopes=["Mail.Read"]))
    assert "access_token" in result, result
    assert app.get_accounts()


def test_device_flow_waits_for_admin_approval(tmp_path: Path) -> None:
    """Without --auto-approve msal keeps polling (authorization_pending) until the admin API approves."""
    with Simulator(tmp_path, messages=0, auto_approve=False) as s:
        app = msal_app(s)
        flow = app.initiate_device_flow(scopes=["Mail.Read"])
        out: dict = {}
        t = threading.Thread(target=lambda: out.update(app.acquire_token_by_device_flow(flow)), daemon=True)
        t.start()
        for _ in range(100):  # wait until msal has polled at least once
            if any("oauth2/v2.0/token" in p for _, p in s.request_log):
                break
            time.sleep(0.05)
        assert requests.get(f"{s.admin_url}/devicecode").json()["pending"] == [flow["user_code"]]
        assert "access_token" not in out
        r = requests.post(f"{s.admin_url}/devicecode/approve", json={"user_code": flow["user_code"]})
        assert r.json() == {"approved": 1}
        t.join(timeout=30)
        assert "access_token" in out, out
        # the verification page approves a code typed by a person
        flow2 = app.initiate_device_flow(scopes=["Mail.Read"])
        page = requests.post(
            flow2["verification_uri"], data={"user_code": flow2["user_code"]}, verify=str(s.ca_path)
        )
        assert "Approved" in page.text
        assert "access_token" in app.acquire_token_by_device_flow(flow2)


def test_expired_access_token_gets_401_then_silent_refresh(tmp_path: Path) -> None:
    """A token past its lifetime answers Graph's 401 InvalidAuthenticationToken; msal refreshes silently.
    Tried: the authority's clock moved 2 s past a 1 s lifetime (no sleep: a loaded machine cannot make
    the token expire early or late)."""
    with Simulator(tmp_path, messages=3, token_lifetime=1) as s:
        now = [time.time()]
        s.auth.clock = lambda: now[0]
        app, result = sign_in(s)
        r0 = requests.get(f"{s.graph_url}/me", headers={"Authorization": "Bearer " + result["access_token"]},
                          verify=str(s.ca_path))
        assert r0.status_code == 200  # within its lifetime however slow the machine is
        now[0] += 2
        r = requests.get(
            f"{s.graph_url}/me",
            headers={"Authorization": "Bearer " + result["access_token"]},
            verify=str(s.ca_path),
        )
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "InvalidAuthenticationToken"
        assert "expired" in r.json()["error"]["message"]
        fresh = app.acquire_token_silent(["Mail.ReadWrite"], account=app.get_accounts()[0])
        assert fresh and fresh["access_token"] != result["access_token"]
        r2 = requests.get(
            f"{s.graph_url}/me",
            headers={"Authorization": "Bearer " + fresh["access_token"]},
            verify=str(s.ca_path),
        )
        assert r2.status_code == 200


def test_revoked_tokens_need_a_new_sign_in(sim: Simulator) -> None:
    """After the admin revokes tokens, Graph rejects the old access token and refresh gives invalid_grant."""
    app, result = sign_in(sim)
    requests.post(f"{sim.admin_url}/tokens", json={"revoke": True}).raise_for_status()
    r = requests.get(
        f"{sim.graph_url}/me",
        headers={"Authorization": "Bearer " + result["access_token"]},
        verify=str(sim.ca_path),
    )
    assert r.status_code == 401
    out = app.acquire_token_silent_with_error(
        ["Mail.ReadWrite"], account=app.get_accounts()[0], force_refresh=True
    )
    assert out is not None and out.get("error") == "invalid_grant"


def test_graph_rejects_missing_and_forged_tokens(sim: Simulator) -> None:
    """No bearer, garbage, and a token signed by another key are all 401 with Graph's error shape."""
    v = str(sim.ca_path)
    assert requests.get(f"{sim.graph_url}/me", verify=v).status_code == 401
    r = requests.get(f"{sim.graph_url}/me", headers={"Authorization": "Bearer abc.def.ghi"}, verify=v)
    assert r.status_code == 401 and r.json()["error"]["code"] == "InvalidAuthenticationToken"
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(
        {
            "aud": "https://graph.microsoft.com",
            "iss": sim.auth.issuer,
            "exp": time.time() + 600,
            "iat": time.time(),
        },
        other,
        algorithm="RS256",
    )
    assert (
        requests.get(
            f"{sim.graph_url}/me", headers={"Authorization": f"Bearer {forged}"}, verify=v
        ).status_code
        == 401
    )


# --- folders, messages, delta ---------------------------------------------------------------------


def test_folders_list_children_and_folder_delta(sim: Simulator) -> None:
    """mailFolders lists the well-known folders; childFolders and mailFolders/delta see a new folder."""
    s = graph(sim)
    names = {f["displayName"] for f in s.get(f"{sim.graph_url}/me/mailFolders?$top=50").json()["value"]}
    assert {"Inbox", "Sent Items", "Drafts", "Deleted Items", "Archive"} <= names
    kids = s.get(f"{sim.graph_url}/me/mailFolders/inbox/childFolders").json()["value"]
    assert {k["displayName"] for k in kids} == {"Projects", "Newsletters"}
    items, _, link, _ = run_delta(s, f"{sim.graph_url}/me/mailFolders/delta")
    assert {f["displayName"] for f in items.values()} >= names
    new_id = sim.add_folder("Receipts", "inbox")
    items2, _, _, _ = run_delta(s, link)
    assert list(items2) == [new_id]


def test_message_delta_initial_then_resume_sees_every_kind_of_change(sim: Simulator) -> None:
    """First round pages through Inbox; after add/change/move-out/move-in/delete the deltaLink
    reports each of them."""
    s = graph(sim)
    inbox = sim.folder_id("inbox")
    base = f"{sim.graph_url}/me/mailFolders/{inbox}/messages/delta"
    items, removed, link, pages = run_delta(s, base)
    assert set(items) == set(sim.state()[inbox]) and not removed
    assert pages > 1  # maxpagesize=7 forces several pages
    ids = sorted(items)
    back = next(iter(sim.state()[sim.folder_id("archive")]))
    added = sim.add_message("inbox", mime("fresh"))
    sim.change(ids[0], is_read=True)
    sim.move(ids[1], "archive")
    sim.delete(ids[2])
    sim.move(back, "inbox")
    got, gone, _, _ = run_delta(s, link)
    assert set(got) == {added, ids[0], back}
    assert got[ids[0]]["isRead"] is True
    assert gone == {ids[1], ids[2]}
    assert back in sim.state()[inbox] and got[back]["parentFolderId"] == inbox


def test_ids_are_folder_bound_without_the_immutable_id_preference(sim: Simulator) -> None:
    """Without Prefer IdType="ImmutableId" a message's id changes when it moves and the old id stops
    working (as on Exchange); with it the id is stable."""
    s = graph(sim)
    plain = requests.Session()
    plain.verify = s.verify
    plain.headers["Authorization"] = s.headers["Authorization"]
    pid = next(iter(sim.state()[sim.folder_id("inbox")]))
    old_rest = plain.get(f"{sim.graph_url}/me/messages/{pid}").json()["id"]
    assert old_rest != pid
    assert plain.get(f"{sim.graph_url}/me/messages/{old_rest}").json()["id"] == old_rest
    sim.move(pid, "archive")
    assert plain.get(f"{sim.graph_url}/me/messages/{old_rest}").status_code == 404
    new_rest = plain.get(f"{sim.graph_url}/me/messages/{pid}").json()["id"]
    assert new_rest not in (old_rest, pid)
    assert s.get(f"{sim.graph_url}/me/messages/{pid}").json()["id"] == pid
    assert s.get(f"{sim.graph_url}/me/messages/{pid}").headers["Preference-Applied"].startswith("IdType=")


def test_delta_changes_between_pages_lose_nothing(sim: Simulator) -> None:
    """Deleting and adding messages in the middle of a round skips nothing: after the next round the
    client's copy equals the server's."""
    s = graph(sim)
    inbox = sim.folder_id("inbox")
    r = s.get(f"{sim.graph_url}/me/mailFolders/{inbox}/messages/delta").json()
    mine = {v["id"] for v in r["value"]}
    for mid in [m for m in sim.state()[inbox] if m not in mine][:3]:
        sim.delete(mid)
    sim.delete(next(iter(mine)))
    sim.add_message("inbox", mime("during round"))
    items, removed, link, _ = run_delta(s, r["@odata.nextLink"])
    mine |= set(items)
    mine -= removed
    items2, removed2, _, _ = run_delta(s, link)
    mine = (mine | set(items2)) - removed2
    assert mine == set(sim.state()[inbox])


def test_delta_select_and_received_filter_are_baked_into_the_token(sim: Simulator) -> None:
    """$select limits properties and $filter=receivedDateTime ge limits items, on every page and round."""
    s = graph(sim)
    inbox = sim.folder_id("inbox")
    all_items, _, _, _ = run_delta(s, f"{sim.graph_url}/me/mailFolders/{inbox}/messages/delta")
    dates = sorted(v["receivedDateTime"] for v in all_items.values())
    cut = dates[len(dates) // 2]
    url = (
        f"{sim.graph_url}/me/mailFolders/{inbox}/messages/delta"
        f"?$select=subject,isRead&$filter=receivedDateTime ge {cut}"
    )
    items, _, link, _ = run_delta(s, url)
    assert set(items) == {k for k, v in all_items.items() if v["receivedDateTime"] >= cut}
    for v in items.values():
        assert set(v) <= {"id", "subject", "isRead", "@odata.type", "@odata.etag"}
    old = next(k for k, v in all_items.items() if v["receivedDateTime"] < cut)
    sim.change(old, is_read=True)
    new = sim.add_message("inbox", mime("new one"))
    items2, _, _, _ = run_delta(s, link)
    assert set(items2) == {new} and set(items2[new]) <= {
        "id",
        "subject",
        "isRead",
        "@odata.type",
        "@odata.etag",
    }
    bad = s.get(f"{sim.graph_url}/me/mailFolders/{inbox}/messages/delta?$filter=subject eq 'x'")
    assert bad.status_code == 400 and "receivedDateTime" in bad.json()["error"]["message"]


@pytest.mark.parametrize("status", [410, 400])
def test_expired_delta_tokens(sim: Simulator, status: int) -> None:
    """After expire_delta_tokens both deltaLinks and mid-round nextLinks fail with syncStateNotFound."""
    s = graph(sim)
    inbox = sim.folder_id("inbox")
    first = s.get(f"{sim.graph_url}/me/mailFolders/{inbox}/messages/delta").json()
    _, _, link, _ = run_delta(s, f"{sim.graph_url}/me/mailFolders/{inbox}/messages/delta")
    r = requests.post(f"{sim.admin_url}/delta/expire", json={"status": status})
    assert r.status_code == 200
    for url in (link, first["@odata.nextLink"]):
        r = s.get(url)
        assert r.status_code == status
        assert r.json()["error"]["code"] == "syncStateNotFound"
    items, _, _, _ = run_delta(s, f"{sim.graph_url}/me/mailFolders/{inbox}/messages/delta")
    assert set(items) == set(sim.state()[inbox])
    assert (
        s.get(f"{sim.graph_url}/me/mailFolders/{inbox}/messages/delta?$deltatoken=garbage").status_code == 400
    )


def test_value_is_the_stored_mime_and_attachments_match_it(sim: Simulator) -> None:
    """$value returns the exact stored bytes; attachments list and get decode to the MIME parts."""
    s = graph(sim)
    state = {pid: sha for folder in sim.state().values() for pid, sha in folder.items()}
    pid = next(iter(state))
    raw = s.get(f"{sim.graph_url}/me/messages/{pid}/$value").content
    assert hashlib.sha256(raw).hexdigest() == state[pid]
    listing = s.get(f"{sim.graph_url}/me/messages?$top=500&$select=hasAttachments").json()["value"]
    with_att = [m["id"] for m in listing if m["hasAttachments"]]
    assert with_att
    atts = s.get(f"{sim.graph_url}/me/messages/{with_att[0]}/attachments").json()["value"]
    assert atts
    one = s.get(f"{sim.graph_url}/me/messages/{with_att[0]}/attachments/{atts[0]['id']}").json()
    if one["@odata.type"] == "#microsoft.graph.fileAttachment":
        data = base64.b64decode(one["contentBytes"])
        assert len(data) == one["size"]
        assert (
            s.get(f"{sim.graph_url}/me/messages/{with_att[0]}/attachments/{atts[0]['id']}/$value").content
            == data
        )
    assert (
        s.get(f"{sim.graph_url}/me/messages/AAMkADnope/$value").json()["error"]["code"] == "ErrorItemNotFound"
    )


def test_send_mail_json_and_mime(sim: Simulator) -> None:
    """sendMail with JSON and with base64 MIME: 202, recorded as sent, copy in Sent Items;
    bad input is a 400."""
    sim.set_transport(sent_delay=0)  # simulator set to deliver at once (the delay has its own tests)
    s = graph(sim)
    sent_folder = sim.folder_id("sentitems")
    before = set(sim.state()[sent_folder])
    msg = {
        "subject": "Hello",
        "body": {"contentType": "html", "content": "<p>Hi <b>there</b></p>"},
        "toRecipients": [{"emailAddress": {"address": "bob@example.test"}}],
    }
    assert s.post(f"{sim.graph_url}/me/sendMail", json={"message": msg}).status_code == 202
    raw = mime("Via MIME", sender=f"Adele <{sim.user.upn}>")
    r = s.post(
        f"{sim.graph_url}/me/sendMail", data=base64.b64encode(raw), headers={"Content-Type": "text/plain"}
    )
    assert r.status_code == 202
    sent = sim.sent_items()
    assert [x["subject"] for x in sent] == ["Hello", "Via MIME"]
    assert base64.b64decode(sent[1]["mime"]) == raw
    assert len(set(sim.state()[sent_folder]) - before) == 2
    bad = s.post(
        f"{sim.graph_url}/me/sendMail", data=b"!!not base64!!", headers={"Content-Type": "text/plain"}
    )
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "ErrorMimeContentInvalidBase64String"
    junk = {"subject": "x", "toRecipients": [{"emailAddress": {"address": "not an address"}}]}
    r = s.post(f"{sim.graph_url}/me/sendMail", json={"message": junk})
    assert r.status_code == 400 and "not an email address" in r.json()["error"]["message"]
    none = s.post(f"{sim.graph_url}/me/sendMail", json={"message": {"subject": "x"}})
    assert none.status_code == 400 and "recipients" in none.json()["error"]["message"]
    assert (
        s.post(
            f"{sim.graph_url}/me/sendMail", data=b"{", headers={"Content-Type": "application/json"}
        ).status_code
        == 400
    )
    assert len(sim.sent_items()) == 2


def test_create_in_sent_items_json_is_sent_item_mime_is_draft(sim: Simulator) -> None:
    """JSON with PR_MESSAGE_FLAGS=1 makes a non-draft sent item findable by internetMessageId; MIME is
    refused on a folder's messages as Graph does (UnableToDeserializePostBody) and makes a draft on
    /me/messages."""
    s = graph(sim)
    mid = make_msgid(domain="outage.lifeboat")
    body = {
        "subject": "Sent during the outage",
        "body": {"contentType": "text", "content": "hello"},
        "toRecipients": [{"emailAddress": {"address": "carol@example.test"}}],
        "singleValueExtendedProperties": [
            {"id": "Integer 0x0E07", "value": "1"},
            {"id": "SystemTime 0x0039", "value": "2026-11-01T10:00:00Z"},
            {"id": "SystemTime 0x0E06", "value": "2026-11-01T10:00:00Z"},
            {"id": "String 0x1035", "value": mid},
        ],
    }
    r = s.post(f"{sim.graph_url}/me/mailFolders/sentitems/messages", json=body)
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["isDraft"] is False and made["internetMessageId"] == mid
    assert made["sentDateTime"] == "2026-11-01T10:00:00Z"
    found = s.get(
        f"{sim.graph_url}/me/mailFolders/sentitems/messages",
        params={"$filter": f"internetMessageId eq '{mid}'"},
    )
    assert [m["id"] for m in found.json()["value"]] == [made["id"]]
    also = s.get(f"{sim.graph_url}/me/messages", params={"$filter": f"internetMessageId eq '{mid}'"}).json()[
        "value"
    ]
    assert [m["id"] for m in also] == [made["id"]]
    r2 = s.post(
        f"{sim.graph_url}/me/mailFolders/sentitems/messages",
        data=base64.b64encode(mime("as mime")),
        headers={"Content-Type": "text/plain"},
    )
    assert r2.status_code == 400 and r2.json()["error"]["code"] == "UnableToDeserializePostBody"
    r3 = s.post(f"{sim.graph_url}/me/messages", data=base64.b64encode(mime("as mime")),
                headers={"Content-Type": "text/plain"})
    assert r3.status_code == 201 and r3.json()["isDraft"] is True
    assert r3.json()["parentFolderId"] == sim.folder_id("drafts")
    assert sim.sent_items() == []  # creating a copy sends nothing
    bad = dict(body, singleValueExtendedProperties=[{"id": "Integer 0x0E07", "value": "one"}])
    assert s.post(f"{sim.graph_url}/me/mailFolders/sentitems/messages", json=bad).status_code == 400


def test_batch_answers_each_request_and_caps_at_20(sim: Simulator) -> None:
    """$batch runs inner requests with their own statuses; more than 20 is a 400."""
    s = graph(sim)
    pid = next(iter(sim.state()[sim.folder_id("inbox")]))
    reqs = [
        {"id": "1", "method": "GET", "url": "/me/mailFolders/inbox"},
        {
            "id": "2",
            "method": "GET",
            "url": f"/me/messages/{pid}?$select=subject",
            "headers": {"Prefer": 'IdType="ImmutableId"'},  # inner requests carry their own headers
        },
        {"id": "3", "method": "GET", "url": "/me/messages/AAMkADmissing"},
        {"id": "4", "method": "GET", "url": f"/me/messages/{pid}/$value"},
    ]
    out = s.post(f"{sim.graph_url}/$batch", json={"requests": reqs}).json()["responses"]
    by = {r["id"]: r for r in out}
    assert [by[i]["status"] for i in "1234"] == [200, 200, 404, 200]
    assert by["2"]["body"]["id"] == pid
    assert (
        hashlib.sha256(base64.b64decode(by["4"]["body"])).hexdigest()
        == sim.state()[sim.folder_id("inbox")][pid]
    )
    many = [{"id": str(i), "method": "GET", "url": "/me"} for i in range(21)]
    r = s.post(f"{sim.graph_url}/$batch", json={"requests": many})
    assert r.status_code == 400 and "20" in r.json()["error"]["message"]


def test_patch_move_and_draft_send(sim: Simulator) -> None:
    """PATCH isRead, POST move, DELETE (to Deleted Items), permanentDelete, and sending a draft (it lands
    in Sent Items and is recorded)."""
    sim.set_transport(sent_delay=0)  # simulator set to deliver at once (the delay has its own tests)
    s = graph(sim)
    pid = next(iter(sim.state()[sim.folder_id("inbox")]))
    assert s.patch(f"{sim.graph_url}/me/messages/{pid}", json={"isRead": True}).json()["isRead"] is True
    assert s.patch(f"{sim.graph_url}/me/messages/{pid}", json={"subject": "x"}).status_code == 400
    moved = s.post(f"{sim.graph_url}/me/messages/{pid}/move", json={"destinationId": "archive"}).json()
    assert moved["id"] == pid and moved["parentFolderId"] == sim.folder_id("archive")
    assert s.delete(f"{sim.graph_url}/me/messages/{pid}").status_code == 204
    assert pid in sim.state()[sim.folder_id("deleteditems")]  # DELETE moves to Deleted Items first
    assert s.post(f"{sim.graph_url}/me/messages/{pid}/permanentDelete").status_code == 204
    assert all(pid not in f for f in sim.state().values())
    draft = s.post(
        f"{sim.graph_url}/me/messages",
        json={"subject": "draft", "toRecipients": [{"emailAddress": {"address": "d@example.test"}}]},
    ).json()
    assert draft["isDraft"] is True and draft["parentFolderId"] == sim.folder_id("drafts")
    assert s.post(f"{sim.graph_url}/me/messages/{draft['id']}/send").status_code == 202
    assert draft["id"] in sim.state()[sim.folder_id("sentitems")]
    assert [x["subject"] for x in sim.sent_items()] == ["draft"]


def lookup(s: requests.Session, sim: Simulator, message_id: str) -> list[dict]:
    """Every copy of a Message-ID in the whole mailbox, as the client looks it up."""
    r = s.get(f"{sim.graph_url}/me/messages", params={
        "$filter": f"internetMessageId eq '{message_id}'", "$select": "id,parentFolderId,isDraft"})
    assert r.status_code == 200, r.text
    return list(r.json()["value"])


class SimClock:
    """The simulator's transport clock, driven by the test (seconds pass without waiting)."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.mark.parametrize("how", ["mime", "json", "draft"])
def test_send_waits_in_drafts_then_reaches_sent_items(sim: Simulator, how: str) -> None:
    """Tried: sendMail with MIME, with JSON, and POST /messages/{id}/send of a draft, with the default
    transport delay on a test-driven clock. Right after the 202 the message is in Drafts with isDraft true
    and nothing was delivered; 1 s later still; once the delay (3 s) has passed, the next request finds it
    in Sent Items with isDraft false (same immutable id) and delivered once."""
    clock = SimClock()
    sim.api.clock = clock
    s = graph(sim)
    mid = make_msgid(domain="transport.lifeboat")
    if how == "mime":
        raw = mime("queued", sender=f"Adele <{sim.user.upn}>").replace(
            b"Message-ID: <", b"X-Old: <", 1).replace(b"Subject:", f"Message-ID: {mid}\nSubject:".encode(), 1)
        r = s.post(f"{sim.graph_url}/me/sendMail", data=base64.b64encode(raw),
                   headers={"Content-Type": "text/plain"})
    else:
        msg = {"subject": "queued", "internetMessageId": mid,
               "toRecipients": [{"emailAddress": {"address": "bob@example.test"}}]}
        if how == "json":
            r = s.post(f"{sim.graph_url}/me/sendMail", json={"message": msg})
        else:
            draft = s.post(f"{sim.graph_url}/me/messages", json=msg).json()
            r = s.post(f"{sim.graph_url}/me/messages/{draft['id']}/send")
    assert r.status_code == 202, r.text
    [queued] = lookup(s, sim, mid)
    assert queued["isDraft"] is True and queued["parentFolderId"] == sim.folder_id("drafts")
    assert sim.sent_items() == [] and sim.transport()["pending"] == 1
    clock.t += 1
    assert lookup(s, sim, mid) == [queued]
    clock.t += 2.5
    [sent] = lookup(s, sim, mid)
    assert sent["id"] == queued["id"] and sent["isDraft"] is False
    assert sent["parentFolderId"] == sim.folder_id("sentitems")
    assert [x["message_id"] for x in sim.sent_items()] == [mid] and sim.transport()["pending"] == 0


def test_drop_rule_and_minutes_of_delay_through_the_admin_api(sim: Simulator) -> None:
    """Tried: the admin API set to a 10-minute delay with the "drop" rule (delete after send). The message
    waits in Drafts for 9 minutes; at 10 it is delivered and no copy is left anywhere in the mailbox.
    A message to oneself leaves its received copy in the Inbox (non-draft). Bad settings are 400s; flush
    takes what is queued at once."""
    clock = SimClock()
    sim.api.clock = clock
    a, s = sim.admin_url, graph(sim)
    r = requests.post(f"{a}/transport", json={"sent_delay": 600, "sent_copy": "drop"})
    assert r.json() == {"sent_delay": 600.0, "sent_copy": "drop", "pending": 0, "flushed": 0}
    mid_s = make_msgid(domain="transport.lifeboat")
    msg = {"subject": "to me", "internetMessageId": mid_s,
           "toRecipients": [{"emailAddress": {"address": sim.user.upn}}]}
    assert s.post(f"{sim.graph_url}/me/sendMail", json={"message": msg}).status_code == 202
    clock.t += 540
    assert [c["isDraft"] for c in lookup(s, sim, mid_s)] == [True]
    clock.t += 60
    [received] = lookup(s, sim, mid_s)
    assert received["isDraft"] is False and received["parentFolderId"] == sim.folder_id("inbox")
    assert [x["subject"] for x in sim.sent_items()] == ["to me"]
    assert requests.get(f"{a}/transport").json()["pending"] == 0
    assert requests.post(f"{a}/transport", json={"sent_copy": "lose"}).status_code == 400
    assert requests.post(f"{a}/transport", json={"sent_delay": -1}).status_code == 400
    requests.post(f"{a}/transport", json={"sent_delay": 3600, "sent_copy": "keep"})
    msg = {"subject": "flushed", "toRecipients": [{"emailAddress": {"address": "bob@example.test"}}]}
    assert s.post(f"{sim.graph_url}/me/sendMail", json={"message": msg}).status_code == 202
    assert requests.post(f"{a}/transport", json={"flush": True}).json()["flushed"] == 1
    assert [x["subject"] for x in sim.sent_items()] == ["to me", "flushed"]


def test_a_from_that_is_not_the_user_is_send_as_denied(sim: Simulator) -> None:
    """Tried: sendMail (JSON and MIME) and a draft send with a From that is not the user's address: 403
    ErrorSendAsDenied at submission, nothing delivered, nothing left in Drafts by sendMail (the draft of a
    draft send stays). Once the admin API grants that address (Send As), the same send is accepted."""
    sim.set_transport(sent_delay=0)  # simulator set to deliver at once: only the refusal matters here
    s = graph(sim)
    drafts = sim.folder_id("drafts")
    before = dict(sim.state()[drafts])
    msg = {"subject": "as the boss", "from": {"emailAddress": {"address": "ceo@contoso.test"}},
           "toRecipients": [{"emailAddress": {"address": "bob@example.test"}}]}
    r = s.post(f"{sim.graph_url}/me/sendMail", json={"message": msg})
    assert r.status_code == 403 and r.json()["error"]["code"] == "ErrorSendAsDenied"
    assert "Cannot submit message" in r.json()["error"]["message"]
    raw = mime("as someone", sender="Someone <someone@example.test>")
    r = s.post(f"{sim.graph_url}/me/sendMail", data=base64.b64encode(raw),
               headers={"Content-Type": "text/plain"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "ErrorSendAsDenied"
    assert sim.state()[drafts] == before and sim.sent_items() == []
    draft = s.post(f"{sim.graph_url}/me/messages", json=msg).json()
    r = s.post(f"{sim.graph_url}/me/messages/{draft['id']}/send")
    assert r.status_code == 403 and r.json()["error"]["code"] == "ErrorSendAsDenied"
    assert draft["id"] in sim.state()[drafts] and sim.sent_items() == []
    granted = requests.post(f"{sim.admin_url}/send_as", json={"addresses": ["CEO@contoso.test"]})
    assert granted.json() == {"send_as": ["ceo@contoso.test"]}
    assert s.post(f"{sim.graph_url}/me/sendMail", json={"message": msg}).status_code == 202
    assert [x["subject"] for x in sim.sent_items()] == ["as the boss"]


def test_a_denied_folder_answers_403_access_denied(sim: Simulator) -> None:
    """Tried: the Archive marked inaccessible through the admin API: its folder GET, delta, message list, a
    message in it (GET and $value) answer 403 ErrorAccessDenied; /me/messages leaves its messages out;
    other folders answer; allowed again, it answers 200."""
    s = graph(sim)
    pid = sim.add_message("archive", mime("archived"))
    r = requests.post(f"{sim.admin_url}/folders/archive/access", json={"denied": True})
    assert r.json() == {"folder": sim.folder_id("archive"), "denied": True}
    g = sim.graph_url
    for url in (f"{g}/me/mailFolders/archive", f"{g}/me/mailFolders/archive/messages/delta",
                f"{g}/me/mailFolders/archive/messages", f"{g}/me/messages/{pid}",
                f"{g}/me/messages/{pid}/$value"):
        r = s.get(url)
        assert r.status_code == 403 and r.json()["error"]["code"] == "ErrorAccessDenied", url
    listed = s.get(f"{g}/me/messages", params={"$top": 1000, "$select": "id"}).json()["value"]
    assert pid not in {m["id"] for m in listed} and listed
    assert s.get(f"{g}/me/mailFolders/inbox/messages/delta").status_code == 200
    requests.post(f"{sim.admin_url}/folders/archive/access", json={"denied": False})
    assert s.get(f"{g}/me/messages/{pid}").status_code == 200


# --- limits --------------------------------------------------------------------------------------------


def test_rate_window_and_forced_throttling_answer_429_with_fractional_retry_after(sim: Simulator) -> None:
    """With limits on, requests past the window get 429 + Retry-After; forced 429s carry e.g. 2.128; $batch
    inner requests are throttled one by one."""
    s = graph(sim)
    sim.set_limits(True, window_requests=3, window_seconds=600)
    codes = [s.get(f"{sim.graph_url}/me").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    r = s.get(f"{sim.graph_url}/me")
    assert r.json()["error"]["code"] == "TooManyRequests" and float(r.headers["Retry-After"]) > 0
    sim.set_limits(False)
    sim.throttle_next(1, 2.128)
    r = s.get(f"{sim.graph_url}/me")
    assert r.status_code == 429 and r.headers["Retry-After"] == "2.128"
    assert s.get(f"{sim.graph_url}/me").status_code == 200
    sim.set_limits(True, window_requests=3, window_seconds=600)
    reqs = [{"id": str(i), "method": "GET", "url": "/me"} for i in range(4)]
    out = s.post(f"{sim.graph_url}/$batch", json={"requests": reqs}).json()["responses"]
    assert sorted(r["status"] for r in out) == [200, 200, 429, 429]  # outer POST used one slot


def test_concurrency_limit_is_four_per_mailbox(sim: Simulator) -> None:
    """With limits on and slow answers, 8 requests released together: at most 4 are served at once,
    the others get 429 at once (connections are opened beforehand so all 8 arrive together)."""
    s = graph(sim)
    sessions = []
    for _ in range(8):
        x = requests.Session()
        x.verify, x.headers = s.verify, s.headers
        assert x.get(f"{sim.graph_url}/me", timeout=60).status_code == 200  # TLS done, connection kept
        sessions.append(x)
    sim.set_limits(True)
    sim.set_outage("slow", delay=2.0, scope="graph")
    gate = threading.Barrier(8)
    codes: list[int] = []

    def one(x: requests.Session) -> None:
        gate.wait(timeout=60)
        codes.append(x.get(f"{sim.graph_url}/me", timeout=60).status_code)

    threads = [threading.Thread(target=one, args=(x,)) for x in sessions]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(codes) == 8 and 1 <= codes.count(200) <= 4 and codes.count(429) >= 4, codes


# --- outages ---------------------------------------------------------------------------------------


def test_refuse_closes_the_listener_and_normal_reopens_it(sim: Simulator) -> None:
    """'refuse': connects get ECONNREFUSED, a kept-alive connection is cut, the admin port still answers."""
    s = graph(sim)
    assert s.get(f"{sim.graph_url}/me").status_code == 200
    requests.post(f"{sim.admin_url}/outage", json={"mode": "refuse"}).raise_for_status()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", sim.port), timeout=5).close()
    with pytest.raises(requests.ConnectionError):
        s.get(f"{sim.graph_url}/me", timeout=10)
    assert requests.get(f"{sim.admin_url}/state").json()["outage"] == "refuse"
    requests.post(f"{sim.admin_url}/outage", json={"mode": "normal"}).raise_for_status()
    assert s.get(f"{sim.graph_url}/me", timeout=10).status_code == 200


def test_stop_listening_drops_open_connections(sim: Simulator) -> None:
    """'stop': the listener closes and open keep-alive connections are shut at once."""
    s = graph(sim)
    raw = socket.create_connection(("127.0.0.1", sim.port), timeout=10)
    import ssl

    ctx = ssl.create_default_context(cafile=str(sim.ca_path))
    tls = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    sim.set_outage("stop")
    tls.settimeout(10)
    assert tls.recv(1) == b""  # the server closed it
    tls.close()
    with pytest.raises(requests.ConnectionError):
        s.get(f"{sim.graph_url}/me", timeout=10)
    sim.set_outage("normal")
    assert s.get(f"{sim.graph_url}/me", timeout=10).status_code == 200


def test_hang_accepts_and_never_answers(sim: Simulator) -> None:
    """'hang': the TCP connect succeeds but no answer comes (the client's read timeout fires)."""
    s = graph(sim)
    sim.set_outage("hang")
    socket.create_connection(("127.0.0.1", sim.port), timeout=5).close()  # accepted
    with pytest.raises(requests.exceptions.Timeout):
        requests.get(f"{sim.graph_url}/me", verify=str(sim.ca_path), timeout=1.0)
    assert requests.get(f"{sim.admin_url}/state").status_code == 200
    sim.set_outage("normal")
    assert s.get(f"{sim.graph_url}/me", timeout=10).status_code == 200


def test_503_slow_truncate_and_drop(sim: Simulator) -> None:
    """503 answers Graph's error; slow delays; truncate sends cut JSON; drop cuts the body mid-way."""
    s = graph(sim)
    sim.set_outage("503")
    r = s.get(f"{sim.graph_url}/me")
    assert r.status_code == 503 and r.json()["error"]["code"] == "serviceNotAvailable"
    sim.set_outage("slow", delay=0.5)
    t0 = time.monotonic()
    assert s.get(f"{sim.graph_url}/me").status_code == 200
    assert time.monotonic() - t0 >= 0.5
    sim.set_outage("truncate")
    r = s.get(f"{sim.graph_url}/me/mailFolders")
    assert r.status_code == 200
    with pytest.raises(ValueError):
        json.loads(r.content)
    sim.set_outage("drop")
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.ConnectionError)):
        s.get(f"{sim.graph_url}/me/mailFolders", timeout=10).content  # noqa: B018
    sim.set_outage("normal")
    assert s.get(f"{sim.graph_url}/me/mailFolders", timeout=10).json()["value"]


def test_outage_scoped_to_graph_keeps_sign_in_working(sim: Simulator) -> None:
    """scope=graph: Graph answers 503 while the OIDC endpoints keep working (and vice versa for login)."""
    s = graph(sim)
    sim.set_outage("503", scope="graph")
    assert s.get(f"{sim.graph_url}/me").status_code == 503
    sign_in(sim)
    sim.set_outage("503", scope="login")
    assert s.get(f"{sim.graph_url}/me").status_code == 200
    r = requests.get(f"{sim.oidc_authority}/.well-known/openid-configuration", verify=str(sim.ca_path))
    assert r.status_code == 503


# --- admin API, persistence, CLI ----------------------------------------------------------------------


def test_admin_api_changes_the_mailbox_and_rejects_bad_input(sim: Simulator) -> None:
    """Admin HTTP: add (base64 MIME), change, move, delete, folders; bad input is a 400/404 with a reason."""
    a = sim.admin_url
    raw = mime("admin add")
    pid = requests.post(
        f"{a}/messages", json={"folder": "inbox", "mime_b64": base64.b64encode(raw).decode()}
    ).json()["id"]
    st = requests.get(f"{a}/state").json()
    inbox = sim.folder_id("inbox")
    assert st["state"][inbox][pid] == hashlib.sha256(raw).hexdigest()
    assert requests.patch(f"{a}/messages/{pid}", json={"isRead": True}).status_code == 200
    assert sim.mailbox.item(pid).is_read
    assert requests.post(f"{a}/messages/{pid}/move", json={"folder": "Inbox/Projects"}).status_code == 200
    assert pid in sim.state()[sim.folder_id("Inbox/Projects")]
    assert requests.delete(f"{a}/messages/{pid}").status_code == 200
    assert all(pid not in f for f in sim.state().values())
    assert requests.delete(f"{a}/messages/{pid}").status_code == 404
    r = requests.post(f"{a}/messages", json={"folder": "nowhere", "mime": "Subject: x\n\nhi"})
    assert r.status_code == 404 and "nowhere" in r.json()["error"]
    assert requests.post(f"{a}/messages", json={"folder": "inbox", "mime_b64": "%%%"}).status_code == 400
    assert requests.post(f"{a}/outage", json={"mode": "meltdown"}).status_code == 400
    assert requests.post(f"{a}/messages", data=b"[1]").status_code == 400
    assert requests.get(f"{a}/nothing").status_code == 404
    assert requests.get(f"{a}/requests").json()["count"] == sim.requests_count


def test_snapshot_survives_restart(tmp_path: Path) -> None:
    """stop() saves the mailbox and refresh tokens in the data dir; a new simulator there (same port)
    serves the same state and CA, and an old refresh token still works."""
    with Simulator(tmp_path, messages=25, seed=9) as s1:
        s1.add_message("inbox", mime("kept"))
        state, ca = s1.state(), s1.ca_path.read_bytes()
        app, _ = sign_in(s1)
    port = s1.port
    with Simulator(tmp_path, port=port, messages=5, seed=9) as s2:
        assert s2.state() == state and s2.ca_path.read_bytes() == ca
        graph(s2).get(f"{s2.graph_url}/me").raise_for_status()
        # msal's refresh token from before the restart still works
        again = app.acquire_token_silent(
            ["Mail.ReadWrite"], account=app.get_accounts()[0], force_refresh=True
        )
        assert again and "access_token" in again


def test_cli_prints_urls_and_stops_on_sigint(tmp_path: Path) -> None:
    """`python -m simulator.cli` prints the URLs and CA path, serves discovery, and exits 0 on Ctrl-C."""
    import signal

    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "simulator.cli",
            "--port",
            "0",
            "--messages",
            "5",
            "--auto-approve",
            "--data",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        lines = {}
        assert p.stdout is not None
        for line in p.stdout:
            if line.startswith("Ctrl-C"):
                break
            k, _, v = line.partition(" ")
            lines[k] = v.strip()
        assert Path(lines["ca_path"]) == tmp_path / "ca.pem"
        r = requests.get(
            lines["oidc_authority"] + "/.well-known/openid-configuration", verify=lines["ca_path"], timeout=10
        )
        assert r.json()["issuer"] == lines["oidc_authority"]
        p.send_signal(signal.SIGINT)  # the CLI handles it from before its "Ctrl-C" line: no race
        assert p.wait(timeout=600) == 0  # a safety net against a hang, not a time limit
    finally:
        if p.poll() is None:
            p.kill()
    (tmp_path / "mailbox.json").write_text("{not json")
    broken = subprocess.run(
        [sys.executable, "-m", "simulator.cli", "--port", "0", "--data", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert broken.returncode == 2 and "mailbox.json" in broken.stderr and "delete it" in broken.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = subprocess.run(
            [
                sys.executable,
                "-m",
                "simulator.cli",
                "--port",
                str(busy.getsockname()[1]),
                "--fresh",
                "--messages",
                "1",
                "--data",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
        )
    assert taken.returncode == 2 and "--port" in taken.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "simulator.cli", "--messages", "-1"], capture_output=True, text=True, cwd=ROOT
    )
    assert bad.returncode == 2 and "--messages" in bad.stderr


# --- generator ---------------------------------------------------------------------------------------


def test_generator_is_seeded_and_varied() -> None:
    """Same seed and anchor give the same bytes; the mailbox has threads, attachments, HTML, plain text,
    several charsets and (with the corpus) real corpus messages."""
    import datetime as dt

    from simulator import shape
    from simulator.generator import populate
    from simulator.mailbox import Mailbox
    from tests import corpus

    anchor = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)

    def build(seed: int) -> Mailbox:
        mb = Mailbox(seed)
        populate(mb, 200, seed=seed, anchor=anchor, corpus=corpus.ASSETS / "mime-public")
        return mb

    a, b = build(4), build(4)
    c = Mailbox(5)
    populate(c, 20, seed=5, anchor=anchor)
    assert a.state() == b.state()
    assert a.state() != c.state()
    raws = [i.mime for i in a.items.values()]
    charsets = {
        m.decode("latin-1").split("charset=")[1].split()[0].strip('";').lower()
        for m in raws
        if b"charset=" in m
    }
    assert len(charsets) >= 6, charsets
    assert sum(b"In-Reply-To:" in m for m in raws) >= 20
    assert sum(b"text/html" in m for m in raws) >= 50
    assert sum(b"Content-Type: text/plain" in m and b"multipart" not in m for m in raws) >= 10
    assert sum(shape.message_json(a, i)["hasAttachments"] for i in a.items.values()) >= 20
    if corpus.PRESENT:  # the corpus is mixed in when found (tests/test_corpus.py guards that it is)
        real = {p.read_bytes() for p in corpus.files("mime-public")}
        assert sum(m in real for m in raws) >= 5
    sent = a.state()[a.folder("sentitems").id]
    assert sent and all(
        shape.summarize(a.items[i].mime).sender[0]["emailAddress"]["address"] == "adele@contoso.test"
        for i in sent
    )


# --- Exchange-only outages (scope "mail") -------------------------------------------------------------

MAIL_MODES = ["refuse", "stop", "hang", "503", "slow", "truncate", "drop"]


def mail_request_fails(s: requests.Session, mode: str, method: str, url: str, **kw: object) -> None:
    """One request to a mail path meets the outage the `mode` way (the read timeout of 1 s stands for
    the client's patience: hang never answers, slow answers after 3 s)."""
    if mode in ("refuse", "stop", "drop"):
        with pytest.raises((requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
            s.request(method, url, timeout=(5, 10), **kw).content  # noqa: B018
    elif mode in ("hang", "slow"):
        with pytest.raises(requests.exceptions.Timeout):
            s.request(method, url, timeout=(5, 1.0), **kw)
    elif mode == "503":
        r = s.request(method, url, timeout=(5, 10), **kw)
        assert r.status_code == 503 and r.json()["error"]["code"] == "serviceNotAvailable"
    else:  # truncate: a 200 whose JSON is cut in half
        r = s.request(method, url, timeout=(5, 10), **kw)
        assert r.status_code == 200
        with pytest.raises(ValueError):
            json.loads(r.content)


@pytest.mark.parametrize("mode", MAIL_MODES)
def test_mail_outage_fails_mail_paths_while_me_and_sign_in_answer(sim: Simulator, mode: str) -> None:
    """Tried: scope=mail (Exchange Online down, Entra ID up) in every outage mode. The user resource
    (`/me`, `/users/{upn}`) and the whole sign-in (discovery + device flow + token) answer normally, while
    mailFolders, messages, `$batch` (and sendMail, where the mode drops the request before it is
    processed) fail the mode's way. The listener stays open (refuse/stop act per request on the shared
    port), the admin port reports the scope, and switching back to normal restores mail."""
    s = graph(sim)
    g = sim.graph_url
    sim.set_outage(mode, scope="mail", delay=3.0)
    assert requests.get(f"{sim.admin_url}/outage").json() == {
        "outage": mode, "mode": mode, "scope": "mail", "delay": 3.0}
    assert s.get(f"{g}/me?$select=id", timeout=(5, 10)).json()["id"] == sim.user.oid
    assert s.get(f"{g}/users/{sim.user.upn}", timeout=(5, 10)).status_code == 200
    socket.create_connection(("127.0.0.1", sim.port), timeout=5).close()  # the port still accepts
    sign_in(sim)  # sign-in is not Exchange: it still works
    batch = {"requests": [{"id": "1", "method": "GET", "url": "/me/mailFolders/inbox?$select=id"}]}
    for method, url, kw in [
        ("GET", f"{g}/me/mailFolders/inbox?$select=id", {}),
        ("GET", f"{g}/me/messages?$top=2", {}),
        ("GET", f"{g}/users/{sim.user.upn}/mailFolders", {}),
        ("POST", f"{g}/$batch", {"json": batch}),
    ]:
        mail_request_fails(s, mode, method, url, **kw)
    if mode in ("refuse", "stop", "hang", "503"):  # these never reach the mailbox: nothing is sent
        mail_request_fails(s, mode, "POST", f"{g}/me/sendMail", json={"message": {"subject": "x"}})
        assert sim.sent_items() == []
    sim.set_outage("normal")
    assert s.get(f"{g}/me/mailFolders/inbox?$select=id", timeout=(5, 10)).json()["id"]


def test_flaky_mail_fails_a_seeded_fraction_of_mail_requests(sim: Simulator) -> None:
    """Tried: the flaky mode at 1/3 (scope mail) over 150 mail requests and 30 `/me` requests: about a
    third of the mail requests fail (503 by default), `/me` never does, the admin API counts them, and the
    same seed gives the same sequence. With kind=drop the failures are dropped connections instead; a
    bad fraction or kind is a 400."""
    s = graph(sim)
    url = f"{sim.graph_url}/me/mailFolders/inbox?$select=id"

    def pattern(n: int, **kw: object) -> list[int]:
        requests.post(f"{sim.admin_url}/outage", json={"mode": "flaky", "scope": "mail", **kw}
                      ).raise_for_status()
        out = []
        for _ in range(n):
            try:
                out.append(s.get(url, timeout=(5, 10)).status_code)
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
                out.append(0)
        return out

    first = pattern(150, seed=3)
    assert set(first) == {200, 503} and 0.22 <= first.count(503) / 150 <= 0.45
    state = requests.get(f"{sim.admin_url}/outage").json()
    assert state["fraction"] == pytest.approx(1 / 3) and state["kind"] == "503"
    assert (state["failed"], state["passed"]) == (first.count(503), first.count(200))
    assert all(s.get(f"{sim.graph_url}/me", timeout=(5, 10)).status_code == 200 for _ in range(30))
    assert requests.get(f"{sim.admin_url}/outage").json()["failed"] == first.count(503)  # /me not drawn
    assert pattern(150, seed=3) == first  # seeded: the same draws again
    dropped = pattern(60, seed=4, fraction=0.5, kind="drop")
    assert set(dropped) == {0, 200}
    assert pattern(20, fraction=1.0) == [503] * 20
    a = sim.admin_url
    assert requests.post(f"{a}/outage", json={"mode": "flaky", "fraction": 1.5}).status_code == 400
    assert requests.post(f"{a}/outage", json={"mode": "flaky", "kind": "flaky"}).status_code == 400
    assert requests.post(f"{a}/outage", json={"mode": "503", "scope": "exchange"}).status_code == 400
    sim.set_outage("normal")


def test_listener_modes_act_per_request_for_scopes_graph_and_login(sim: Simulator) -> None:
    """Tried: refuse/stop/hang scoped to login, then to graph: only that side's requests are reset,
    closed or held (the other side, on the same port, answers), and path_kind sorts the paths."""
    from simulator.server import path_kind

    assert [path_kind(p) for p in ("/v1.0/me?$select=id", "/v1.0/users/x", "/v1.0/users", "/v1.0/$batch",
                                   "/v1.0/me/mailFolders/inbox", "/v1.0/users/x/messages", "/t/v2.0/x")] == [
        "directory", "directory", "directory", "mail", "mail", "mail", "login"]
    s = graph(sim)
    discovery = f"{sim.oidc_authority}/.well-known/openid-configuration"
    for mode in ("refuse", "stop", "hang"):
        sim.set_outage(mode, scope="login")
        assert s.get(f"{sim.graph_url}/me/mailFolders", timeout=(5, 10)).status_code == 200
        with pytest.raises(requests.RequestException):
            requests.get(discovery, verify=str(sim.ca_path), timeout=(5, 1.0))
        sim.set_outage(mode, scope="graph")
        assert requests.get(discovery, verify=str(sim.ca_path), timeout=(5, 10)).status_code == 200
        with pytest.raises(requests.RequestException):
            s.get(f"{sim.graph_url}/me", timeout=(5, 1.0))
    sim.set_outage("normal")
    assert s.get(f"{sim.graph_url}/me", timeout=(5, 10)).status_code == 200
