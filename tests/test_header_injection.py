"""Header injection through double-encoded words (CVE-2024-6923), tried through the real CLI: a crafted
message imported with `lifeboat import-eml`, answered with `send --reply/--reply-all/--forward`, and
`lifeboat send` given such text directly. The queued bytes must read back with exactly the headers,
recipients, subject and file names the user saw or typed; no extra header, anywhere in the MIME tree.

Each value is an encoded word whose decoded text is itself an encoded word hiding CR LF and a header:
it looks harmless after one decode, and the stdlib's header classes decode it again when the value is
assigned (and, before 3.11.10 / 3.12.5, fold the line break out as a real header line).
"""

from __future__ import annotations

import base64
import email
import email.policy
import json
from email.message import EmailMessage
from pathlib import Path

import pytest

from sync.model import OutboxItem
from tests.cli_kit import make_home, outbox, run

USER = "adele.vance@contoso.test"
SUBJECT = "=?utf-8?q?Q3=0D=0ACc:_spy@evil.example?="  # what the user sees after one decode
NAME = "=?utf-8?q?Bob=0D=0AReply-To:_spy@evil.example?="
CAROL = "=?utf-8?q?Carol=0D=0ABcc:_spy@evil.example?="
FILE = "=?utf-8?q?plan.pdf=0D=0AX-Injected:_spy@evil.example?="
# the top-level headers a queued message may have; anything else was injected
ALLOWED = {"from", "to", "cc", "subject", "date", "message-id", "in-reply-to", "references", "mime-version",
           "content-type", "content-transfer-encoding"}
PART_ALLOWED = {"content-type", "content-transfer-encoding", "content-disposition", "mime-version"}


def b64(text: str) -> str:
    return "=?utf-8?b?" + base64.b64encode(text.encode()).decode() + "?="


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return make_home(tmp_path, monkeypatch, USER)


def queued(home: Path) -> list[OutboxItem]:
    return outbox(home, USER)


def crafted(tmp_path: Path) -> Path:
    """An incoming message whose subject, sender and recipient names and attachment name are each an
    encoded word that decodes to another encoded word hiding a header."""
    raw = (f"From: {b64(NAME)} <bob@relay.test>\r\n"
           f"To: {USER}, {b64(CAROL)} <carol@relay.test>\r\n"
           f"Subject: {b64(SUBJECT)}\r\n"
           "Message-ID: <evil-1@relay.test>\r\nDate: Fri, 27 Nov 2026 10:00:00 +0000\r\n"
           'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
           "--b\r\nContent-Type: text/plain\r\n\r\nSee the plan.\r\n"
           "--b\r\nContent-Type: application/pdf\r\n"
           f'Content-Disposition: attachment; filename="{b64(FILE)}"\r\n'
           "Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQ=\r\n--b--\r\n")
    path = tmp_path / "evil.eml"
    path.write_bytes(raw.encode())
    return path


def read(raw: bytes) -> EmailMessage:
    """The queued bytes as a recipient's parser reads them; fails on any header nobody chose."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    assert {k.lower() for k in msg} <= ALLOWED, [k for k in msg if k.lower() not in ALLOWED]
    assert len(msg.keys()) == len({k.lower() for k in msg}), "a header appears twice"
    for part in msg.walk():
        if part is not msg:
            assert {k.lower() for k in part} <= PART_ALLOWED, list(part.keys())
    for part in msg.walk():  # as written, the address is encoded text, or plain text in a file name
        for k, v in part.raw_items():  # that holds no encoded word (sync.filenames made it inert)
            if "spy@evil.example" in v:
                assert k.lower() == "content-disposition" and "=?" not in v, (k, v)
    return msg


def pairs(msg: EmailMessage, name: str) -> list[tuple[str, str]]:
    return [(a.display_name, a.addr_spec) for h in msg.get_all(name, []) for a in h.addresses]


def test_reply_reply_all_and_forward_of_a_double_encoded_message_add_no_header(home: Path, tmp_path: Path,
                                                                               capsys) -> None:
    """Tried: import a message whose subject, sender name, Cc name and attachment name each decode to an
    encoded word hiding `\\r\\nCc:`/`Reply-To:`/`Bcc:`/`X-Injected:`; then Reply, Reply all and Forward it
    with the CLI. Each queued message has only the headers compose writes, its recipients are exactly
    the ones shown, and its subject, names and file name read back exactly as `lifeboat show` shows them."""
    assert run(capsys, "import-eml", str(crafted(tmp_path)))[0] == 0
    code, out, _ = run(capsys, "search", "plan", "--json")
    number = str(json.loads(out)["results"][0]["id"])
    shown = json.loads(run(capsys, "show", number, "--json")[1])
    assert shown["subject"] == SUBJECT  # one decode, as the user sees it

    for argv in (["--reply", number], ["--reply-all", number], ["--forward", number, "--to", "f@relay.test"]):
        code, _, err = run(capsys, "send", *argv, "--body", "ok")
        assert code == 0, err
    reply, reply_all, forward = queued(home)

    msg = read(reply.raw)
    assert msg["Subject"] == f"Re: {SUBJECT}" and reply.subject == f"Re: {SUBJECT}"
    assert pairs(msg, "to") == [(NAME, "bob@relay.test")] and msg["Cc"] is None
    assert reply.recipients == ("bob@relay.test",)

    msg = read(reply_all.raw)
    assert pairs(msg, "to") == [(NAME, "bob@relay.test")]
    assert pairs(msg, "cc") == [(CAROL, "carol@relay.test")]
    assert reply_all.recipients == ("bob@relay.test", "carol@relay.test")

    msg = read(forward.raw)
    assert msg["Subject"] == f"Fw: {SUBJECT}" and pairs(msg, "to") == [("", "f@relay.test")]
    assert [p.get_filename() for p in msg.iter_attachments()] == [a["filename"] for a in shown["attachments"]]
    assert "=?" not in shown["attachments"][0]["filename"]  # the name shown is no encoded word any more
    assert forward.recipients == ("f@relay.test",)


@pytest.mark.parametrize("subject", [SUBJECT, b64(SUBJECT), "Re: " + b64(SUBJECT) + " and more " * 8])
def test_send_with_an_encoded_word_in_subject_name_and_file_sends_that_text(home: Path, tmp_path: Path,
                                                                           capsys, subject: str) -> None:
    """Tried: `lifeboat send` whose --subject, --to display name and attached file's name are text that is
    an encoded word (single or double, short or long enough to fold) hiding a header. The message is
    queued with exactly that text as subject, name and file name (a recipient decodes it once into what
    was typed) and no header the user did not write."""
    attachment = tmp_path / FILE
    attachment.write_bytes(b"%PDF-1.4")
    code, _, err = run(capsys, "send", "--to", f'"{b64(NAME)}" <bob@relay.test>', "--subject", subject,
                       "--body", "hi", "--attach", str(attachment))
    assert code == 0, err
    [item] = queued(home)
    msg = read(item.raw)
    assert msg["Subject"] == subject and pairs(msg, "to") == [(b64(NAME), "bob@relay.test")]
    assert [p.get_filename() for p in msg.iter_attachments()] == [FILE]
    assert item.recipients == ("bob@relay.test",)
