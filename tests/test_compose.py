"""sync/compose.py: a frozen Draft in, one Outgoing out; the .eml path; the routes' Bcc helpers."""

from __future__ import annotations

import base64
import dataclasses
import email
import email.policy
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest

from sync import compose, mime
from sync.errors import MessageBad

NOW = datetime(2026, 11, 29, 9, 30, tzinfo=UTC)
ME = "Adele Vance <adele.vance@contoso.test>"


def original(subject: str = "Lunch?", **headers: str) -> mime.Parsed:
    msg = EmailMessage()
    msg["From"] = "Bob <bob@relay.test>"
    msg["To"] = "adele.vance@contoso.test, carol@relay.test"
    msg["Cc"] = "dan@relay.test"
    msg["Subject"] = subject
    msg["Message-ID"] = "<lunch-1@relay.test>"
    msg["References"] = "<root@relay.test>"
    msg["Date"] = "Fri, 27 Nov 2026 10:00:00 +0000"
    for k, v in headers.items():
        msg[k] = v
    msg.set_content("Shall we?\n")
    msg.add_attachment(b"a,b\n", maintype="text", subtype="csv", filename="menu.csv")
    return mime.parse(msg.as_bytes())


def parse(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def test_new_message_has_identity_once_and_bcc_only_in_the_envelope() -> None:
    """Tried: a draft with To, Cc and Bcc: one Message-ID and Date (stamped at `now`), no Bcc header, the
    envelope recipients To+Cc+Bcc in order; the draft itself is frozen."""
    d = compose.Draft(sender=ME, to=("bob@relay.test",), cc=("carol@relay.test",),
                      bcc=("hidden@relay.test",), subject="Hi", text="hello\n")
    out = compose.compose(d, NOW)
    msg = parse(out.raw)
    assert msg.get_all("Message-ID") == [out.message_id] and len(msg.get_all("Date")) == 1
    assert out.date == NOW and msg["Bcc"] is None and b"hidden@relay.test" not in out.raw
    assert out.recipients == ("bob@relay.test", "carol@relay.test", "hidden@relay.test")
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.subject = "changed"  # type: ignore[misc]


def test_reply_all_prefill_then_compose_threads() -> None:
    """Tried: prefill a reply-all (recipients without me, "Re:", quote), edit it, compose: In-Reply-To and
    References come from the original, not from what the user edited."""
    d = compose.prefill("reply_all", original(), ME)
    assert d.to == ("Bob <bob@relay.test>",) and set(d.cc) == {"carol@relay.test", "dan@relay.test"}
    assert d.subject == "Re: Lunch?" and "> Shall we?" in d.text
    out = compose.compose(dataclasses.replace(d, text="Yes!\n" + d.text), NOW)
    msg = parse(out.raw)
    assert msg["In-Reply-To"] == "<lunch-1@relay.test>"
    assert msg["References"].split() == ["<root@relay.test>", "<lunch-1@relay.test>"]
    assert compose.forwarded(d) == []


def test_forward_carries_attachments_unless_told_not_to() -> None:
    """Tried: a forward keeps the original's attachment bytes plus the user's own; keep_attachments=False
    drops the original's."""
    d = dataclasses.replace(compose.prefill("forward", original(), ME), to=("friend@relay.test",),
                            attachments=(("notes.txt", "text/plain", b"mine\n"),))
    assert d.subject == "Fw: Lunch?" and "Forwarded message" in d.text
    names = [p.get_filename() for p in parse(compose.compose(d, NOW).raw).iter_attachments()]
    assert names == ["menu.csv", "notes.txt"]
    bare = dataclasses.replace(d, keep_attachments=False)
    names = [p.get_filename() for p in parse(compose.compose(bare, NOW).raw).iter_attachments()]
    assert names == ["notes.txt"]


def test_refuses_what_cannot_be_sent() -> None:
    """Tried: a reply without its original, an unknown kind, no sender, a line break in the subject:
    MessageBad each time. A replied-to subject whose encoded word decodes to CR/LF (CVE-2024-6923) starts
    the reply as one line (the break a space), so the reply is sent with that text and no extra header;
    put back into the subject by hand, the break is refused."""
    with pytest.raises(MessageBad):
        compose.compose(compose.Draft(sender=ME, to=("b@relay.test",), kind="reply"), NOW)
    with pytest.raises(MessageBad):
        compose.prefill("bounce", None, ME)
    with pytest.raises(MessageBad, match="sender"):
        compose.compose(compose.Draft(to=("b@relay.test",), subject="x"), NOW)
    with pytest.raises(MessageBad, match="line break"):
        compose.compose(compose.Draft(sender=ME, to=("b@relay.test",), subject="a\r\nBcc: x@y.test"), NOW)
    evil = mime.parse(b"From: b@relay.test\r\nTo: adele.vance@contoso.test\r\nMessage-ID: <m@relay.test>\r\n"
                      b"Subject: =?utf-8?q?a=0D=0ACc:_x@evil.test?=\r\n\r\nhi\r\n")
    assert "\n" in evil.summary.subject
    reply = compose.prefill("reply", evil, ME)
    msg = parse(compose.compose(reply, NOW).raw)
    assert msg["Subject"] == "Re: a  Cc: x@evil.test" and msg["Cc"] is None
    with pytest.raises(MessageBad, match="line break"):
        compose.compose(dataclasses.replace(reply, subject=evil.summary.subject), NOW)


def test_eml_is_stamped_once_and_keeps_its_body() -> None:
    """Tried: an .eml (LF line ends, a folded Bcc, no Message-ID or Date): the Bcc header goes, recipients
    include it, Message-ID and Date are added once, the body bytes survive (as CRLF lines); an .eml that
    already has both keeps them exactly."""
    raw = (b"From: Adele <adele.vance@contoso.test>\nTo: bob@relay.test\nBcc: hidden@relay.test,\n"
           b" other@relay.test\nSubject: =?utf-8?q?caf=C3=A9?=\nX-Keep: \xc3\xa9t\xc3\xa9\n"
           b"\nbody \xff\nBcc: stays\n")
    out = compose.compose(compose.Draft(eml=raw), NOW)
    assert out.recipients == ("bob@relay.test", "hidden@relay.test", "other@relay.test")
    assert out.raw.endswith(b"\r\n\r\nbody \xff\r\nBcc: stays\r\n")
    head = out.raw.split(b"\r\n\r\n")[0]
    assert b"Bcc" not in head and b"X-Keep: \xc3\xa9t\xc3\xa9" in head
    assert head.count(b"Message-ID: " + out.message_id.encode()) == 1 and head.count(b"Date: ") == 1
    assert out.subject == "café" and out.sender == "adele.vance@contoso.test"
    again = compose.compose(compose.Draft(eml=out.raw), datetime(2027, 1, 1, tzinfo=UTC))
    assert again.raw == out.raw and again.message_id == out.message_id


@pytest.mark.parametrize("raw,words", [
    (b"  \n", "empty"),
    (b"To: b@relay.test\r\n\r\nx\r\n", "no From"),
    (b"From: a@contoso.test\r\n\r\nx\r\n", "no recipients"),
    (b"From: a@contoso.test\r\nTo: b@relay.test\r\nSubject: =?utf-8?q?a=0D=0ACc:_x@evil.test?=\r\n\r\nx\r\n",
     "line break"),
    (b"From: a@contoso.test\r\nTo: b@relay.test\r\nMessage-ID: <1@x>\r\nMessage-ID: <2@x>\r\n\r\nx\r\n",
     "Message-ID"),
])
def test_eml_refusals(raw: bytes, words: str) -> None:
    """Tried: an empty file, no From, no recipients, an encoded line break, two Message-IDs: MessageBad."""
    with pytest.raises(MessageBad, match=words):
        compose.compose(compose.Draft(eml=raw), NOW)


def test_route_helpers_add_and_strip_bcc() -> None:
    """Tried: with_bcc names only the envelope recipients missing from To/Cc, in a header the email package
    reads back; strip_bcc removes it again (folded lines too) and leaves the body alone."""
    out = compose.compose(compose.Draft(sender=ME, to=("bob@relay.test",), bcc=("hidden@relay.test",),
                                        subject="s", text="Bcc: in the body\n"), NOW)
    assert compose.with_bcc(out.raw, ["bob@relay.test"]) == out.raw
    shown = compose.with_bcc(out.raw, out.recipients)
    assert parse(shown)["Bcc"] == "hidden@relay.test" and parse(shown)["To"] == "bob@relay.test"
    assert compose.strip_bcc(shown) == out.raw
    assert compose.strip_bcc(b"To: a\r\nBcc: x,\r\n y\r\nSubject: s\r\n\r\nBcc: body stays\r\n") == (
        b"To: a\r\nSubject: s\r\n\r\nBcc: body stays\r\n")


def test_route_helpers_read_headers_as_the_parser_does() -> None:
    """Tried: raw MIME with a bare CR before `Bcc:` and a folded `Resent-Bcc:` (invisible to a line regex
    anchored on LF): strip_bcc removes both and makes every line end CRLF; with_bcc removes both and
    adds one Bcc naming the hidden recipients; header_problems names a Resent-Bcc in stored MIME."""
    raw = (b"From: a@contoso.test\r\nTo: bob@relay.test\r\nSubject: s\rBcc: hidden@relay.test\r\n"
           b"Resent-Bcc: x@relay.test,\r\n y@relay.test\r\nMessage-ID: <1@contoso.test>\r\n\r\nBcc: body\r\n")
    stripped = compose.strip_bcc(raw)
    assert stripped == (b"From: a@contoso.test\r\nTo: bob@relay.test\r\nSubject: s\r\n"
                        b"Message-ID: <1@contoso.test>\r\n\r\nBcc: body\r\n")
    shown = parse(compose.with_bcc(raw, ["bob@relay.test", "hidden@relay.test"]))
    assert shown.get_all("Bcc") == ["hidden@relay.test"] and shown["Resent-Bcc"] is None
    assert any("Resent-Bcc" in p for p in compose.header_problems(raw, "<1@contoso.test>"))


def test_reply_to_a_subject_with_unicode_line_breaks_starts_sendable() -> None:
    """Tried: an incoming subject and sender name holding characters Python splits lines on (VT, FF, NEL,
    U+2028, encoded so the parser keeps them): the reply's prefill makes them spaces, so it composes, and
    a subject typed with one is refused as a line break (the stdlib reader would split it)."""
    name = base64.b64encode("Bob\u2028Smith".encode())
    evil = mime.parse(b"From: =?utf-8?b?" + name + b"?= <bob@relay.test>"
                      b"\r\nTo: adele.vance@contoso.test\r\nMessage-ID: <m@relay.test>\r\nSubject: =?utf-8?b?"
                      + base64.b64encode("a\x0bb\x85c\u2028d".encode()) + b"?=\r\n\r\nhi\r\n")
    d = compose.prefill("reply", evil, ME)
    assert d.subject == "Re: a b c d" and d.to == ("Bob Smith <bob@relay.test>",)
    msg = parse(compose.compose(d, NOW).raw)
    assert msg["Subject"] == "Re: a b c d" and msg["To"] == "Bob Smith <bob@relay.test>"
    with pytest.raises(MessageBad, match="line break"):
        compose.compose(dataclasses.replace(d, subject="a\u2028Cc: x@evil.test"), NOW)
