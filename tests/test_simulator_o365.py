"""Faithfulness: the unmodified python-o365 library signs in (msal, auth-code flow with PKCE) against the
simulator, lists folders and messages, reads MIME and sends a message.

Pointing o365 at a custom host: its Protocol class takes the Graph base URL (a subclass with
`_protocol_url`), but its Connection always builds the msal client for login.microsoftonline.com, so the
test hands it a msal PublicClientApplication for the simulator's authority (`account.con._msal_client`,
sharing o365's own token backend). That one assignment is the only change; no o365 code is patched.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import msal
import pytest
import requests
from O365 import Account, MSGraphProtocol
from O365.utils.token import MemoryTokenBackend

from simulator.server import Simulator


@pytest.fixture(autouse=True)
def _no_ca_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


def test_o365_signs_in_lists_reads_mime_and_sends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """o365's own authenticate() (console consent) gets its redirect from the simulator's /authorize;
    then folders, Inbox messages, $value and sendMail go through o365 and match the simulator's state."""
    with Simulator(tmp_path, messages=40, seed=11) as sim:
        sim.set_transport(sent_delay=0)  # simulator set to deliver at once: the send is checked right after
        ca = str(sim.ca_path)

        class SimGraph(MSGraphProtocol):
            _protocol_url = sim.url + "/"

        backend = MemoryTokenBackend()
        account = Account(
            ("lifeboat-o365-test",),
            auth_flow_type="public",
            protocol=SimGraph(),
            token_backend=backend,
            verify_ssl=ca,
            tenant_id=sim.user.tid,
            requests_delay=0,
            default_headers={"Prefer": 'IdType="ImmutableId"'},  # o365's documented way to get immutable ids
        )
        account.con._msal_client = msal.PublicClientApplication(
            "lifeboat-o365-test",
            authority=sim.authority,
            instance_discovery=False,
            verify=ca,
            token_cache=backend,
        )

        def consent(prompt: str = "") -> str:
            url = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(sim.url))
            r = requests.get(url, verify=ca, allow_redirects=False, timeout=30)
            assert r.status_code == 302
            return r.headers["Location"]

        monkeypatch.setattr("builtins.input", consent)
        assert account.authenticate(requested_scopes=["Mail.ReadWrite", "Mail.Send"])
        assert account.is_authenticated
        assert account.con.username == sim.user.upn

        mailbox = account.mailbox()
        names = {f.name for f in mailbox.get_folders(limit=50)}
        assert {"Inbox", "Sent Items", "Drafts", "Archive"} <= names

        inbox_state = sim.state()[sim.folder_id("inbox")]
        messages = list(mailbox.inbox_folder().get_messages(limit=500, batch=7))
        assert {m.object_id for m in messages} == set(inbox_state)
        first = messages[0]
        assert hashlib.sha256(first.get_mime_content()).hexdigest() == inbox_state[first.object_id]

        new = mailbox.new_message()
        new.to.add("bob@example.test")
        new.subject = "Sent through o365"
        new.body = "<p>Hello from <b>o365</b></p>"
        assert new.send()
        sent = sim.sent_items()
        assert [s["subject"] for s in sent] == ["Sent through o365"] and sent[0]["to"] == ["bob@example.test"]
        sent_subjects = {m.subject for m in mailbox.sent_folder().get_messages(limit=500)}
        assert "Sent through o365" in sent_subjects
