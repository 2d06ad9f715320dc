"""The one place that composes outgoing mail: a frozen `Draft` in, one `mime.Outgoing` out (pure).

Every sender (CLI `send`, the window, the demo, tests) describes what it wants as a `Draft` and hands it
to `sync.engine.queue`, the one door into the outbox, which calls `compose()` here:

- a new message, a reply, reply-all or forward: `prefill(kind, original, me)` gives the fields a form or
  the CLI starts from (recipients, "Re:"/"Fw:" subject, quoted text); `compose()` adds the context the
  user does not edit (In-Reply-To and References of a reply, the forwarded attachments) and builds the
  MIME with `sync.mime.build` (Message-ID and Date stamped once, no Bcc header, recipients = To+Cc+Bcc);
- an `.eml` as given (`Draft(eml=raw)`): its headers are re-emitted through the email package's policy
  (Bcc removed, Message-ID and Date added when missing), its body bytes are kept, line ends become CRLF.

Header safety: a decoded header value holding CR or LF (an encoded word that decodes to a line break,
CVE-2024-6923) is refused; the built MIME is read back and checked (one Message-ID equal to the stamped
one, one Date, no Bcc). The routes' Bcc handling lives here too: `strip_bcc` (the SMTP relay never
transmits a Bcc header) and `with_bcc` (Graph takes its recipients from the headers).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email import policy as email_policy
from email.message import Message
from email.parser import BytesHeaderParser
from email.utils import format_datetime, getaddresses, parseaddr
from typing import Literal

from sync import mime
from sync.errors import MessageBad

Kind = Literal["new", "reply", "reply_all", "forward"]
KINDS: tuple[str, ...] = ("new", "reply", "reply_all", "forward")
Attachment = tuple[str, str, bytes]  # filename, content type, bytes

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_EOL = re.compile(rb"\r?\n")
_BCC = re.compile(rb"(?im)^bcc[ \t]*:.*(?:\r?\n[ \t].*)*\r?\n")
_SAFETY_CHECKED = ("from", "to", "cc", "bcc", "subject", "reply-to", "sender", "message-id", "date",
                   "in-reply-to", "references")


@dataclass(frozen=True)
class Draft:
    """What a sender wants sent. `original` is the parsed message a reply or forward refers to."""

    sender: str = ""
    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    subject: str = ""
    text: str = ""
    html: str | None = None
    attachments: tuple[Attachment, ...] = ()
    kind: Kind = "new"
    original: mime.Parsed | None = field(default=None, repr=False, compare=False)
    keep_attachments: bool = True  # a forward carries the original's attachments
    eml: bytes | None = field(default=None, repr=False)  # a whole message as given (the fields above unused)
    message_id: str | None = None  # normally None: stamped by compose()
    date: datetime | None = None


def prefill(kind: str, original: mime.Parsed | None, me: str) -> Draft:
    """The fields a compose form (or `lifeboat send --reply/--forward`) starts from."""
    if kind not in KINDS:
        raise MessageBad(f"kind must be new, reply, reply_all or forward, not {kind!r}")
    if kind == "new":
        return Draft(sender=me)
    if original is None:
        raise MessageBad(f"a {kind} needs the original message (cached with its body)")
    if kind == "forward":
        f = mime.forward_fields(original)
        return Draft(sender=me, subject=f["subject"], text=f["text"], kind="forward", original=original)
    r = mime.reply_fields(original, reply_all=kind == "reply_all", me=me)
    return Draft(sender=me, to=tuple(r["to"]), cc=tuple(r["cc"]), subject=r["subject"], text=r["text"],
                 kind="reply_all" if kind == "reply_all" else "reply", original=original)


def forwarded(draft: Draft) -> list[Attachment]:
    """The original's attachments a forward carries (none for other kinds or keep_attachments=False)."""
    if draft.kind != "forward" or draft.original is None or not draft.keep_attachments:
        return []
    return list(mime.forward_fields(draft.original)["attachments"])


def compose(draft: Draft, now: datetime) -> mime.Outgoing:
    """The Outgoing for `draft`, stamped at `now` unless the draft carries its own Message-ID/Date.
    Raises MessageBad for anything that cannot be sent as given."""
    if draft.eml is not None:
        return _from_eml(draft.eml, now)
    if draft.kind not in KINDS:
        raise MessageBad(f"kind must be new, reply, reply_all or forward, not {draft.kind!r}")
    in_reply_to, references = None, []
    if draft.kind in ("reply", "reply_all"):
        if draft.original is None:
            raise MessageBad(f"a {draft.kind} needs the original message (cached with its body)")
        r = mime.reply_fields(draft.original, reply_all=draft.kind == "reply_all", me=draft.sender)
        in_reply_to, references = r["in_reply_to"], r["references"]
    elif draft.kind == "forward" and draft.original is None:
        raise MessageBad("a forward needs the original message (cached with its body)")
    if not draft.sender:
        raise MessageBad("no sender address", fix="set username in the [account] section of the config")
    out = mime.build(
        sender=draft.sender, to=list(draft.to), cc=list(draft.cc), bcc=list(draft.bcc),
        subject=draft.subject, text=draft.text, html=draft.html,
        attachments=[*forwarded(draft), *draft.attachments], in_reply_to=in_reply_to,
        references=references, message_id=draft.message_id, date=draft.date or now,
    )
    check(out)
    return out


# ----------------------------------------------------------------------------------- reading headers


def _header_section(raw: bytes) -> tuple[bytes, bytes]:
    """(headers without the blank line, body) of raw MIME."""
    m = _HEADER_END.search(raw)
    if m is None:
        return raw, b""
    return raw[: m.start()], raw[m.end():]


def _headers(raw: bytes) -> Message:
    head, _ = _header_section(raw)
    return BytesHeaderParser(policy=email_policy.default).parsebytes(head + b"\r\n\r\n")


def _refuse_line_breaks(headers: Message) -> None:
    for name in _SAFETY_CHECKED:
        for value in headers.get_all(name, []):
            try:
                decoded = str(value)
            except Exception as exc:  # a header the email package cannot even decode
                raise MessageBad(f"the {name} header cannot be read: {type(exc).__name__}") from exc
            if "\r" in decoded or "\n" in decoded:
                raise MessageBad(f"the {name} header decodes to a line break",
                                 fix="remove line breaks (or encoded ones) from that header")


def header_problems(raw: bytes, message_id: str) -> list[str]:
    """What is wrong with stored outgoing MIME: it must carry exactly one Message-ID equal to
    `message_id`, exactly one Date, and no Bcc header."""
    headers = _headers(raw)
    problems = []
    ids = [str(v).strip() for v in headers.get_all("message-id", [])]
    if ids != [message_id]:
        problems.append(f"the MIME must carry exactly one Message-ID header equal to {message_id!r}")
    if len(headers.get_all("date", [])) != 1:
        problems.append("the MIME must carry exactly one Date header")
    if headers.get_all("bcc"):
        problems.append("the MIME must not carry a Bcc header (Bcc goes in the envelope recipients only)")
    return problems


def check(out: mime.Outgoing) -> None:
    """Read built MIME back: MessageBad if a header decodes to a line break or its identity is wrong."""
    _refuse_line_breaks(_headers(out.raw))
    problems = header_problems(out.raw, out.message_id)
    if problems:
        raise MessageBad("cannot queue this message: " + "; ".join(problems))


# ------------------------------------------------------------------------------------------- .eml


def _from_eml(raw: bytes, now: datetime) -> mime.Outgoing:
    """An .eml as given: recipients from To/Cc/Bcc, the Bcc header removed, Message-ID and Date added
    when missing (once: they are part of what is queued); the body bytes are kept."""
    if not raw.strip():
        raise MessageBad("the .eml file is empty")
    headers = _headers(raw)
    _refuse_line_breaks(headers)
    sender = parseaddr(str(headers.get("From", "")))[1]
    if not sender:
        raise MessageBad("the .eml file has no From address", fix="add a From: header")
    listed = [str(v) for k in ("to", "cc", "bcc") for v in headers.get_all(k, [])]
    recipients = tuple(dict.fromkeys(a for _, a in getaddresses(listed) if a))
    if not recipients:
        raise MessageBad("the .eml file has no recipients (To, Cc or Bcc)")
    del headers["Bcc"]
    message_id = str(headers.get("Message-ID", "")).strip()
    if not message_id:
        message_id = mime.make_message_id(sender.rpartition("@")[2])
        headers["Message-ID"] = message_id
    if headers.get("Date") is None:
        headers["Date"] = format_datetime(now)
    out = mime.Outgoing(raw=_emit(headers, _header_section(raw)[1]), message_id=message_id, date=now,
                        sender=sender, recipients=recipients, subject=str(headers.get("Subject", "")))
    check(out)
    return out


def _emit(headers: Message, body: bytes) -> bytes:
    """Header lines as the email package's SMTP policy folds them, a blank line, the body; CRLF line ends."""
    policy = email_policy.SMTP
    head = b"".join(policy.fold_binary(name, value) for name, value in headers.raw_items())
    return head + b"\r\n" + _EOL.sub(b"\r\n", body)


# ------------------------------------------------------------------------------------------ routes


def strip_bcc(raw: bytes) -> bytes:
    """Remove any Bcc header (with its folded lines) from the header section; the body is untouched."""
    m = _HEADER_END.search(raw)
    if m is None:
        return _BCC.sub(b"", raw)
    return _BCC.sub(b"", raw[: m.start() + 2]) + raw[m.start() + 2 :]


def with_bcc(raw: bytes, recipients: Sequence[str]) -> bytes:
    """raw with a Bcc header naming every recipient not already in To/Cc (raw itself if none): the copy
    handed to Graph, which takes its recipients from the headers (Exchange delivers and strips it)."""
    headers = _headers(raw)
    shown = {addr.lower() for _, addr in getaddresses([str(v) for k in ("to", "cc")
                                                       for v in headers.get_all(k, [])])}
    hidden = [r for r in dict.fromkeys(recipients) if r.lower() not in shown]
    if not hidden:
        return raw
    eol = "\r\n" if b"\r\n" in raw[:4096] else "\n"
    policy = email_policy.SMTP.clone(linesep=eol)
    line = policy.header_factory("Bcc", ", ".join(hidden)).fold(policy=policy)
    return line.encode("utf-8") + raw
