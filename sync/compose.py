"""The one place that composes outgoing mail: a frozen `Draft` in, one `mime.Outgoing` out (pure).

Every sender (CLI `send`, the window, the demo, tests) describes what it wants as a `Draft` and hands it
to `sync.engine.queue`, the one door into the outbox, which calls `compose()` here:

- a new message, a reply, reply-all or forward: `prefill(kind, original, me)` gives the fields a form or
  the CLI starts from (recipients, "Re:"/"Fw:" subject, quoted text); `compose()` adds the context the
  user does not edit (In-Reply-To and References of a reply, the forwarded attachments) and builds the
  MIME with `sync.mime.build` (Message-ID and Date stamped once, no Bcc header, recipients = To+Cc+Bcc);
- an `.eml` as given (`Draft(eml=raw)`): its header lines are kept as written (Bcc and Resent-Bcc
  removed, Message-ID and Date added when missing; nothing refolded), its body bytes are kept, line ends
  become CRLF; the envelope is everyone its To/Cc/Bcc and Resent-To/Cc/Bcc name.

Header safety: `sync.mime.build` writes header values itself (never re-decoding an encoded word the user's
text holds, CVE-2024-6923) and reads the result back against what was asked; a decoded header value
holding CR or LF is refused; stored MIME is checked (one Message-ID equal to the stamped one, one Date, no
Bcc or Resent-Bcc). Raw MIME is edited in one way only (`_split` / `_join`: CRLF first, then the email
parser), which the routes use too: `strip_bcc` (the SMTP relay never gets a Bcc or Resent-Bcc header) and
`with_bcc` (Graph takes its recipients from the headers).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email import policy as email_policy
from email.message import Message
from email.parser import BytesHeaderParser
from email.utils import format_datetime, parseaddr
from typing import Literal

from sync import mime
from sync.errors import MessageBad

Kind = Literal["new", "reply", "reply_all", "forward"]
KINDS: tuple[str, ...] = ("new", "reply", "reply_all", "forward")
Attachment = tuple[str, str, bytes]  # filename, content type, bytes

_EOL = re.compile(rb"\r\n|\r|\n")
HIDDEN = ("bcc", "resent-bcc")  # recipients no header may name: envelope only
RECIPIENT_HEADERS = ("to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc")
_SAFETY_CHECKED = ("from", "to", "cc", "bcc", "subject", "reply-to", "sender", "message-id", "date",
                   "in-reply-to", "references", *(f"resent-{n}" for n in ("from", "sender", "to", "cc",
                                                                         "bcc", "date", "message-id")))


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
#
# Every edit of raw MIME (the .eml path, strip_bcc, with_bcc) goes through `_split`: line ends made CRLF
# first (a bare CR or LF is a line end to the email parser and to SMTP alike, so no later reader can see
# a line the parser did not), then the header section read by the email parser, which must read all of
# it as header lines. What is kept is written back as the parser read it; nothing is refolded.


def _canonical(raw: bytes) -> bytes:
    """raw with every line end (CRLF, bare CR, bare LF) made CRLF."""
    return _EOL.sub(b"\r\n", raw)


def _bare_cr_ends_headers(raw: bytes) -> bool:
    """True if the blank line that ends raw's headers is made with a bare CR (`\\r\\r`, `\\r\\n\\r`): a
    parser ends the headers there, a reader that splits on LF does not, so a header after it is shown
    to every recipient as body text."""
    start = 0
    for m in _EOL.finditer(raw):
        if m.start() == start:  # an empty line: the end of the headers
            before = raw[max(0, start - 2):start]
            return m.group() == b"\r" or (before.endswith(b"\r") and not before.endswith(b"\r\n"))
        start = m.end()
    return False


def _split(raw: bytes) -> tuple[Message, bytes]:
    """(headers as the email parser reads them, body bytes) of raw MIME, line ends made CRLF first.
    MessageBad if the parser does not read the whole header section as header lines."""
    raw = _canonical(raw)
    end = raw.find(b"\r\n\r\n")
    head, body = (raw, b"") if end < 0 else (raw[:end], raw[end + 4:])
    headers = BytesHeaderParser(policy=email_policy.default).parsebytes(head + b"\r\n\r\n")
    if headers.defects or (head.strip() and not headers.keys()):
        raise MessageBad("the header section has a line that is not a header (no name and colon, a "
                         "continuation first, or a name with a space before its colon)",
                         fix="fix or remove that line; a blank line ends the headers")
    return headers, body


def _join(headers: Message, body: bytes, add: Sequence[tuple[str, str]] = ()) -> bytes:
    """`add` (name, already folded value) first, then the headers as parsed, a blank line, the body."""
    lines = [f"{name}:{'' if value.startswith(chr(13)) else ' '}{value}\r\n"
             for name, value in [*add, *headers.raw_items()]]
    return "".join(lines).encode("ascii", "surrogateescape") + b"\r\n" + body


def _without_hidden(headers: Message) -> Message:
    """headers without any Bcc or Resent-Bcc (every copy of either; `del` removes all)."""
    del headers["Bcc"]
    del headers["Resent-Bcc"]
    return headers


def _headers(raw: bytes) -> Message:
    return _split(raw)[0]


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
    `message_id`, exactly one Date, and no Bcc or Resent-Bcc header."""
    try:
        headers = _headers(raw)
    except MessageBad as exc:
        return [str(exc)]
    problems = []
    ids = [str(v).strip() for v in headers.get_all("message-id", [])]
    if ids != [message_id]:
        problems.append(f"the MIME must carry exactly one Message-ID header equal to {message_id!r}")
    if len(headers.get_all("date", [])) != 1:
        problems.append("the MIME must carry exactly one Date header")
    for name in HIDDEN:
        if headers.get_all(name):
            problems.append(f"the MIME must not carry a {name.title()} header (those recipients go in the "
                            "envelope only)")
    return problems


def check(out: mime.Outgoing) -> None:
    """Read built MIME back: MessageBad if a header decodes to a line break or its identity is wrong."""
    _refuse_line_breaks(_headers(out.raw))
    problems = header_problems(out.raw, out.message_id)
    if problems:
        raise MessageBad("cannot queue this message: " + "; ".join(problems))


def _addresses(headers: Message, names: Sequence[str]) -> list[str]:
    """The bare addresses the headers `names` list, as the email package parses them (groups included)."""
    found = []
    for name in names:
        for value in headers.get_all(name, []):
            found += [a.addr_spec for a in getattr(value, "addresses", ()) if a.username and a.domain]
    return found


# ------------------------------------------------------------------------------------------- .eml


def _from_eml(raw: bytes, now: datetime) -> mime.Outgoing:
    """An .eml as given: the envelope is everyone its To/Cc/Bcc and Resent-To/Cc/Bcc name; Bcc and
    Resent-Bcc headers removed; Message-ID and Date added when missing (once: they are part of what is
    queued). Every other header line is kept as written (nothing refolded or re-encoded), the body bytes
    are kept; line ends become CRLF."""
    if not raw.strip():
        raise MessageBad("the .eml file is empty")
    if _bare_cr_ends_headers(raw):
        raise MessageBad("the .eml file's headers end at a bare carriage return, so some of its header "
                         "lines would be sent as text in the body",
                         fix="save the file with ordinary line ends (LF or CRLF)")
    headers, body = _split(raw)
    _refuse_line_breaks(headers)
    sender = parseaddr(str(headers.get("From", "")))[1]
    if not sender:
        raise MessageBad("the .eml file has no From address", fix="add a From: header")
    recipients = tuple(dict.fromkeys(_addresses(headers, RECIPIENT_HEADERS)))
    if not recipients:
        raise MessageBad("the .eml file has no recipients (To, Cc or Bcc)")
    add = []
    message_id = str(headers.get("Message-ID", "")).strip()
    if not message_id:
        message_id = mime.make_message_id(sender.rpartition("@")[2])
        add.append(("Message-ID", message_id))
    if headers.get("Date") is None:
        add.append(("Date", format_datetime(now)))
    out = mime.Outgoing(raw=_join(_without_hidden(headers), body, add), message_id=message_id, date=now,
                        sender=sender, recipients=recipients, subject=str(headers.get("Subject", "")))
    check(out)
    return out


# ------------------------------------------------------------------------------------------ routes


def strip_bcc(raw: bytes) -> bytes:
    """raw without Bcc and Resent-Bcc headers (what the SMTP relay is given), line ends CRLF; the other
    header lines and the body are kept as they are."""
    headers, body = _split(raw)
    return _join(_without_hidden(headers), body)


def with_bcc(raw: bytes, recipients: Sequence[str]) -> bytes:
    """strip_bcc(raw) plus one Bcc header naming every recipient not already in To/Cc (none if there is
    none): the copy handed to Graph, which takes its recipients from the headers (Exchange delivers and
    strips it)."""
    headers, body = _split(raw)
    shown = {a.lower() for a in _addresses(headers, ("to", "cc"))}
    hidden = [r for r in dict.fromkeys(recipients) if r.lower() not in shown]
    add = [("Bcc", mime.address_list(hidden, "bcc"))] if hidden else []
    return _join(_without_hidden(headers), body, add)
