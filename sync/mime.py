"""MIME in and out: parse any message for display and search, build outgoing mail.

`parse(raw) -> Parsed` never raises: defects become `Summary.problems`, and a message whose headers
are unusable gets `parse_ok=False` and is shown as raw text. The raw bytes are always kept.
`build(...) -> Outgoing` stamps Message-ID and Date once (given values are kept exactly) and never
writes a Bcc header. Built on the stdlib `email` package (policy.default, compat32 fallbacks).
"""

from __future__ import annotations

import codecs
import html as html_lib
import logging
import mimetypes
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy as email_policy
from email.header import Header
from email.headerregistry import Address as HeaderAddress
from email.headerregistry import BaseHeader, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import format_datetime, getaddresses, parsedate_to_datetime
from html.parser import HTMLParser
from typing import Any
from urllib.parse import quote

from sync.errors import MessageBad
from sync.filenames import safe_filename
from sync.model import Address, AttachmentInfo, Summary

log = logging.getLogger(__name__)

TEXT_CAP = 200_000  # characters of search text kept per message
HEADER_CAP = 64_000  # characters of one header value decoded; the rest is dropped (noted in problems)
PROBLEM_CAP = 50  # problems recorded per message

_SIGNATURE_TYPES = {
    "application/pkcs7-signature",
    "application/x-pkcs7-signature",
    "application/pgp-signature",
}
_SMIME_TYPES = {"application/pkcs7-mime", "application/x-pkcs7-mime"}
_CALENDAR_TYPES = {"text/calendar", "application/ics", "text/x-vcalendar"}
_TNEF_TYPES = {"application/ms-tnef", "application/vnd.ms-tnef"}
# Charset names seen in the wild that Python does not know (or knows under another name).
_CHARSET_ALIASES = {
    "ks_c_5601-1987": "cp949",
    "ks_c_5601": "cp949",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "iso-8859-8-i": "iso-8859-8",
    "x-sjis": "shift_jis",
    "x-euc-jp": "euc_jp",
    "x-mac-roman": "mac_roman",
    "unicode-1-1-utf-7": "utf-7",
    "x-user-defined": "cp1252",
    "ansi_x3.4-1968": "ascii",
    "iso-8859-1": "cp1252",  # what senders mean in practice (Outlook/web), a superset for printables
    "us-ascii": "cp1252",  # 8-bit bytes under us-ascii are almost always Windows-1252 or UTF-8
}
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_EW_GAP = re.compile(r"(=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=)\s+(?==\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=)")
_MSGID = re.compile(r"<[^<>\s]+>")
_MSGID_OK = re.compile(r"<[!-;=?-~]+>")  # printable ASCII without <, >
_REPLY_PREFIX = re.compile(r"^\s*((re|aw|sv|antw|vs|r)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)
_FWD_PREFIX = re.compile(r"^\s*((fw|fwd|wg|tr|rv)\s*:\s*)+", re.IGNORECASE)


# --------------------------------------------------------------------------------------------- parse


@dataclass
class Parsed:
    """One parsed message: its summary, search text, bodies and lazy access to attachment bytes."""

    summary: Summary
    text: str  # subject-free body text for full-text search (capped at TEXT_CAP)
    html: str | None  # the main HTML body, decoded but NOT sanitized
    plain: str | None  # the main text body (or the raw message when parse_ok is False)
    raw: bytes
    reply_to: tuple[Address, ...] = ()
    _blobs: list[Callable[[], bytes]] = field(default_factory=list, repr=False, compare=False)
    _inline: dict[str, tuple[str, Callable[[], bytes]]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def attachment(self, index: int) -> bytes | None:
        """Decoded bytes of attachment `index` (as in summary.attachments), None if there is none."""
        if not 0 <= index < len(self._blobs):
            return None
        try:
            return self._blobs[index]()
        except Exception as exc:  # a payload that decoded once should decode again; never raise
            log.warning("attachment %d could not be decoded: %s", index, type(exc).__name__)
            return None

    def inline(self, content_id: str) -> tuple[str, bytes] | None:
        """(content type, bytes) of the part a `cid:` URL names, with or without angle brackets."""
        key = _cid_key(content_id)
        found = self._inline.get(key)
        if found is None:
            return None
        try:
            return found[0], found[1]()
        except Exception as exc:
            log.warning("inline part could not be decoded: %s", type(exc).__name__)
            return None


class _TolerantHeaders(HeaderRegistry):
    """The stdlib's header classes, except that a value they cannot parse never raises.

    Python's parser builds header objects while it parses (the feed parser asks each part's Content-Type
    for its type), and some broken values make the stdlib raise there (IndexError for a parameter cut
    short, e.g. `name*` at the end of the value), which would leave the whole message unreadable. A
    value that fails is retried with only the parameters that parse on their own (a multipart keeps its
    boundary), and else kept as unstructured text.
    """

    _plain = HeaderRegistry(default_class=UnstructuredHeader, use_default_map=False)

    def __call__(self, name: str, value: str) -> BaseHeader:
        try:
            return super().__call__(name, value)
        except Exception as exc:
            log.debug("a %s header the stdlib cannot parse (%s): repaired", name, type(exc).__name__)
        first, *params = value.split(";")
        kept = first
        for param in params:
            if self._parses(name, f"{kept};{param}"):
                kept = f"{kept};{param}"
        return super().__call__(name, kept) if self._parses(name, kept) else self._plain(name, value)

    def _parses(self, name: str, value: str) -> bool:
        try:
            super().__call__(name, value)
        except Exception as exc:
            log.debug("dropped a part of a %s header (%s)", name, type(exc).__name__)
            return False
        return True


# Incoming mail is parsed with this policy: policy.default with header values that never raise.
INCOMING = email_policy.default.clone(header_factory=_TolerantHeaders())


def parse(raw: bytes) -> Parsed:
    """Parse raw RFC 5322 bytes; never raises (problems are recorded in the summary)."""
    try:
        return _Parser(bytes(raw)).run()
    except Exception as exc:  # the last line of defence: show the message as raw text
        log.warning("message could not be parsed: %s", type(exc).__name__)
        return _raw_only(bytes(raw) if isinstance(raw, bytes | bytearray) else b"", exc)


def _raw_only(raw: bytes, exc: BaseException | None, problems: Sequence[str] = ()) -> Parsed:
    notes = list(problems)
    if exc is not None:
        notes.append(f"could not parse the message ({type(exc).__name__}: {str(exc)[:200]}); shown raw")
    text = decode_bytes(raw, "utf-8")[0]
    summary = Summary(size=len(raw), parse_ok=False, problems=tuple(notes[:PROBLEM_CAP]))
    return Parsed(summary=summary, text=text[:TEXT_CAP], html=None, plain=text, raw=raw)


class _Parser:
    def __init__(self, raw: bytes, nesting: int = 0) -> None:
        self.raw = raw
        self.nesting = nesting  # how deep in attached messages this parser is (their text is indexed)
        self.problems: list[str] = []
        self.attachments: list[AttachmentInfo] = []
        self.blobs: list[Callable[[], bytes]] = []
        self.inline: dict[str, tuple[str, Callable[[], bytes]]] = {}
        self.texts: list[str] = []
        self.text_len = 0
        self.plain: str | None = None
        self.html: str | None = None
        self.signed = False
        self.encrypted = False
        self.calendar = False
        self.hint: str | None = None  # the body's charset, tried for raw 8-bit bytes in headers

    def note(self, problem: str) -> None:
        if problem not in self.problems and len(self.problems) < PROBLEM_CAP:
            self.problems.append(problem)

    def run(self) -> Parsed:
        data = self.raw
        if not data.strip():
            return _raw_only(data, None, ["the message is empty"])
        if data.startswith(b"\xd0\xcf\x11\xe0"):
            return _raw_only(self.raw, None, ["this is an Outlook .msg file (OLE), not MIME; shown raw"])
        if b"\x00" in data:
            self.note("the message contains NUL bytes (removed for display)")
            data = data.replace(b"\x00", b"")
        data = self.tidy_headers(data)
        msg = BytesParser(policy=INCOMING).parsebytes(data)
        if not msg.keys():
            return _raw_only(self.raw, None, ["no usable header lines; shown as raw text"])
        self.collect_defects(msg)
        self.hint = _body_charset(msg)
        summary_fields = self.headers(msg)
        self.walk(msg, depth=0)
        summary = Summary(
            **summary_fields,
            size=len(self.raw),
            has_attachments=any(not a.inline for a in self.attachments),
            has_calendar=self.calendar,
            is_signed=self.signed,
            is_encrypted=self.encrypted,
            attachments=tuple(self.attachments),
            parse_ok=True,
            problems=tuple(self.problems),
        )
        text = "\n".join(self.texts)[:TEXT_CAP]
        return Parsed(
            summary=summary,
            text=text,
            html=self.html,
            plain=self.plain,
            raw=self.raw,
            reply_to=self.addresses(msg, "reply-to"),
            _blobs=self.blobs,
            _inline=self.inline,
        )

    def tidy_headers(self, data: bytes) -> bytes:
        """Undo what trips the stdlib parser: blank lines before the headers, `Name :` (RFC 5322 4.5)."""
        stripped = re.sub(rb"\A([ \t]*\r?\n)+", b"", data)
        if stripped is not data and len(stripped) != len(data):
            self.note("blank lines before the headers (ignored)")
        end = re.search(rb"\r?\n\r?\n", stripped)
        cut = end.start() if end else len(stripped)
        head, rest = stripped[:cut], stripped[cut:]
        fixed = re.sub(rb"(?m)^([!-9;-~]+)[ \t]+:", rb"\1:", head)
        if fixed != head:
            self.note("header names followed by spaces before the colon (obsolete syntax, accepted)")
        return fixed + rest

    # ---- headers

    def header(self, msg: Message, name: str) -> str | None:
        """The decoded value of the first `name` header, or None; never raises."""
        raw = _raw_header(msg, name)
        if raw is None:
            return None
        return self.decode_header_value(name, self.cap(name, raw))

    def cap(self, name: str, raw: str) -> str:
        if len(raw) > HEADER_CAP:
            self.note(
                f"the {name.title()} header has {len(raw)} characters; only the first {HEADER_CAP} are used"
            )
        return raw[:HEADER_CAP]

    def decode_header_value(self, name: str, raw: str) -> str:
        has_8bit = _has_surrogates(raw)
        if not has_8bit:
            try:
                value = str(email_policy.default.header_fetch_parse(name, raw))
                if "\ufffd" not in value and not _has_surrogates(value) and not _ENCODED_WORD.search(value):
                    return value
            except Exception as exc:
                self.note(f"the {name.title()} header needed the lenient decoder ({type(exc).__name__})")
        else:
            self.note(f"the {name.title()} header has raw 8-bit bytes (decoded as UTF-8 or Windows-1252)")
        return decode_words(unfold(raw), self.hint)

    def addresses(self, msg: Message, name: str) -> tuple[Address, ...]:
        raw = _raw_header(msg, name)
        if raw is None:
            return ()
        if len(raw) > HEADER_CAP:  # cut at an address boundary
            raw = self.cap(name, raw).rsplit(",", 1)[0]
        if not _has_surrogates(raw) and len(raw) < 8000:  # the stdlib parser is slow on long lists
            try:
                parsed = email_policy.default.header_fetch_parse(name, raw)
                found = []
                for a in getattr(parsed, "addresses", ()):
                    name_part = a.display_name or ""
                    email = a.addr_spec or ""
                    if "\ufffd" in name_part or _ENCODED_WORD.search(name_part):
                        raise ValueError("undecoded display name")
                    if email or name_part:
                        found.append(Address(name_part, email))
                if found or not raw.strip() or re.search(r":\s*;", raw):  # `undisclosed-recipients:;`
                    return tuple(found)
            except Exception as exc:  # fall through to the lenient path
                log.debug("lenient address parsing for %s: %s", name, type(exc).__name__)
        out = []
        for name_part, email in getaddresses([unfold(raw)]):
            if name_part or email:
                out.append(Address(decode_words(name_part, self.hint), decode_words(email, self.hint)))
        if raw.strip() and not out:
            self.note(f"the {name.title()} header has no address that can be read")
        return tuple(out)

    def headers(self, msg: Message) -> dict[str, Any]:
        subject = self.header(msg, "subject") or ""
        senders = self.addresses(msg, "from") or self.addresses(msg, "sender")
        message_id = _first_msgid(self.header(msg, "message-id"))
        in_reply_to = _first_msgid(self.header(msg, "in-reply-to"))
        refs = tuple(dict.fromkeys(_MSGID.findall(self.header(msg, "references") or "")))
        return {
            "subject": subject.strip(),
            "sender": senders[0] if senders else None,
            "to": self.addresses(msg, "to"),
            "cc": self.addresses(msg, "cc"),
            "date": self.date(msg),
            "message_id": message_id,
            "in_reply_to": in_reply_to,
            "references": refs,
        }

    def date(self, msg: Message) -> datetime | None:
        raw = _raw_header(msg, "date")
        if raw is None:
            return None
        try:
            when = parsedate_to_datetime(unfold(raw)[:200].encode("ascii", "replace").decode())
        except (TypeError, ValueError, IndexError, OverflowError):
            self.note(f"the Date header cannot be read: {unfold(raw)[:80]!r}")
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        try:
            return when.astimezone(UTC)
        except (OverflowError, ValueError):
            self.note("the Date header is out of range")
            return None

    def collect_defects(self, msg: Message) -> None:
        for part in _walk_all(msg):
            for defect in getattr(part, "defects", ()):
                described = _describe_defect(defect)
                if described:
                    self.note(described)

    # ---- body

    def walk(self, part: Message, depth: int) -> None:
        if depth > 60:
            self.note("MIME nesting deeper than 60 levels; deeper parts are skipped")
            return
        ctype = _content_type(part)
        if ctype == "multipart/signed":
            self.signed = True
        if ctype == "multipart/encrypted":
            self.encrypted = True
        if ctype == "message/rfc822" or (
            ctype.startswith("message/") and isinstance(part.get_payload(), list)
        ):
            self.add_attachment(part)
            if ctype == "message/rfc822" and self.nesting < 3 and self.text_len < TEXT_CAP:
                self.texts_append(_Parser(self.blobs[-1](), self.nesting + 1).run().text)  # searchable
            return
        if part.is_multipart() or ctype.startswith("multipart/"):
            payload = part.get_payload()
            if not isinstance(payload, list):  # no usable boundary: guess it from the body, else text
                recovered = _recover_multipart(part, ctype)
                if recovered is None:
                    self.add_text(_part_text(self, part, ctype="text/plain"), "text/plain", is_main=True)
                    return
                self.note("a multipart part had no usable boundary; recovered it from the body")
                payload = recovered.get_payload()
            children = [p for p in payload if isinstance(p, Message)]
            if ctype == "multipart/encrypted":
                for child in children:  # show the encrypted blob as an attachment, never as text
                    self.add_attachment(child, force=True)
                return
            for child in children:
                self.walk(child, depth + 1)
            return
        if ctype in _SIGNATURE_TYPES:
            self.signed = True
            return
        if ctype in _SMIME_TYPES:
            smime_type = str(part.get_param("smime-type") or "").lower()
            if smime_type == "signed-data" or (self.filename(part) or "").lower().endswith(".p7s"):
                self.signed = True
                inner = _smime_signed_content(_part_bytes(part)())
                if inner is not None:  # opaque signing (Outlook): show what was signed
                    self.walk(inner, depth + 1)
                    return
                self.note("an S/MIME signed part could not be opened; kept as an attachment")
            else:
                self.encrypted = True
            self.add_attachment(part, force=True)
            return
        if ctype == "application/pgp-encrypted":
            self.encrypted = True
            return
        filename = self.filename(part)
        if ctype in _CALENDAR_TYPES or (filename or "").lower().endswith((".ics", ".vcs")):
            self.calendar = True
        if ctype in _TNEF_TYPES or (filename or "").lower() == "winmail.dat":
            self.add_tnef(part)
            return
        disposition = (part.get_content_disposition() or "").lower()
        is_text = ctype.startswith("text/") and ctype not in _CALENDAR_TYPES
        if is_text and disposition != "attachment" and not filename:  # a body part
            shown = ctype if ctype == "text/html" else "text/plain"
            self.add_text(_part_text(self, part, ctype=ctype), shown, is_main=True)
            return
        self.add_attachment(part)
        if ctype.startswith("text/") and ctype != "text/html":  # text attachments are searchable too
            self.texts_append(_part_text(self, part, ctype=ctype))

    def filename(self, part: Message) -> str | None:
        name: str | None
        try:
            name = part.get_filename()
        except Exception:
            name = None
        if name is None:
            raw = _raw_param(part, "filename") or _raw_param(part, "name")
            name = decode_words(raw, self.hint) if raw else None
        elif _has_surrogates(name) or (_ENCODED_WORD.search(name) and name == (
                _raw_param(part, "filename") or _raw_param(part, "name"))):  # not decoded yet: decode once
            name = decode_words(name, self.hint)
        return (safe_filename(name, default="") or None) if name is not None else None

    def texts_append(self, text: str) -> None:
        if text and self.text_len < TEXT_CAP:
            self.texts.append(text)
            self.text_len += len(text) + 1

    def add_text(self, text: str, ctype: str, *, is_main: bool) -> None:
        if ctype == "text/html":
            if self.html is None:
                self.html = text
            reduced = html_to_text(text)
            if self.plain is None or reduced.strip() not in (self.plain or "").strip():
                self.texts_append(reduced)
            return
        stripped = _strip_pgp_armor(self, text)
        if self.plain is None:
            self.plain = text
        elif is_main:  # several inline text parts (e.g. text, image, text): show them all
            self.plain += "\n\n" + text
        self.texts_append(stripped)

    def add_attachment(self, part: Message, *, force: bool = False) -> None:
        ctype = _content_type(part)
        filename = self.filename(part)
        if ctype.startswith("message/") and not filename:
            inner = part.get_payload()
            sub = inner[0] if isinstance(inner, list) and inner else None
            subject = ""
            if isinstance(sub, Message):
                subject = self.header(sub, "subject") or ""
            named = safe_filename(subject, default="")
            filename = safe_filename(named + ".eml") if named else "message.eml"
        if not filename:
            ext = mimetypes.guess_extension(ctype) or ".bin"
            filename = f"attachment-{len(self.attachments) + 1}{ext}"
        blob = _part_bytes(part)
        try:
            size = len(blob())
        except Exception as exc:
            self.note(f"attachment {filename!r} cannot be decoded ({type(exc).__name__}); kept as stored")
            blob = _constant(_serialize(part))
            size = len(blob())
        cid = _cid_key(part.get("content-id", "") or "") or None
        disposition = (part.get_content_disposition() or "").lower()
        is_inline = bool(cid) and disposition != "attachment" and ctype.startswith("image/") and not force
        self.attachments.append(
            AttachmentInfo(
                index=len(self.attachments),
                filename=filename,
                content_type=ctype,
                size=size,
                content_id=f"<{cid}>" if cid else None,
                inline=is_inline,
            )
        )
        self.blobs.append(blob)
        if cid:
            self.inline.setdefault(cid, (ctype, blob))

    def add_tnef(self, part: Message) -> None:
        """List what is inside a winmail.dat; if it cannot be read, keep it as one attachment."""
        try:
            from tnefparse import TNEF  # type: ignore[import-untyped]

            data = _part_bytes(part)()
            tnef = TNEF(data)
            files = list(tnef.attachments)
        except Exception as exc:
            self.note(f"the TNEF (winmail.dat) part could not be read ({str(exc)[:80]}); kept as is")
            self.add_attachment(part, force=True)
            return
        for item in files:
            try:
                name = item.long_filename() or item.name or "attachment"
                if isinstance(name, bytes):
                    name = decode_bytes(name, "cp1252")[0]
                name = str(name).replace("\x00", "").strip() or "attachment"
                content = bytes(item.data or b"")
            except Exception as exc:
                self.note(f"an attachment inside TNEF could not be read ({type(exc).__name__})")
                continue
            ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
            info = AttachmentInfo(len(self.attachments), filename=name, content_type=ctype, size=len(content))
            self.attachments.append(info)
            self.blobs.append(_constant(content))
        try:
            body_html = tnef.htmlbody
            body = tnef.body
        except Exception:
            body_html = body = None
        if isinstance(body_html, bytes):
            body_html = decode_bytes(body_html, "cp1252")[0]
        if isinstance(body, bytes):
            body = decode_bytes(body, "cp1252")[0]
        if body_html and self.html is None:
            self.add_text(str(body_html), "text/html", is_main=True)
        if body and str(body).strip():
            self.add_text(str(body), "text/plain", is_main=False)
        if not files and not body_html and not body:
            self.note("the TNEF (winmail.dat) part holds no attachments or body that Lifeboat can show")


# --------------------------------------------------------------------------------------------- pieces


def decode_bytes(data: bytes, charset: str | None) -> tuple[str, bool]:
    """Decode `data` in `charset` with fallbacks (UTF-8, then Windows-1252); (text, exact?)."""
    name = _codec(charset)
    if name is not None:
        try:
            return data.decode(name), True
        except (UnicodeError, LookupError, ValueError):
            pass
    try:
        return data.decode("utf-8"), name is None and charset is None
    except UnicodeDecodeError:
        pass
    if name is not None and name not in ("utf-8", "ascii", "cp1252"):  # e.g. one bad byte in EUC-KR
        try:
            return data.decode(name, "replace"), False
        except (UnicodeError, LookupError, ValueError):
            pass
    return data.decode("cp1252", "replace"), False


def _codec(charset: str | None) -> str | None:
    if not charset:
        return None
    cs = charset.strip().strip('"').lower().split("*", 1)[0]
    cs = _CHARSET_ALIASES.get(cs, cs)
    try:
        name = codecs.lookup(cs).name
    except (LookupError, UnicodeError, ValueError):  # unknown, or not even text (raw 8-bit bytes)
        return None
    return None if name in ("rot-13", "base64", "hex", "zlib", "bz2", "uu", "quopri") else name


def unfold(value: str) -> str:
    return re.sub(r"\r?\n[ \t]*", " ", value).strip()


def decode_words(value: str, hint: str | None = None) -> str:
    """Decode RFC 2047 encoded words and stray 8-bit bytes leniently, in any charset Python knows.

    `value` may carry raw bytes as surrogate escapes (as the stdlib parser leaves them); bytes outside
    encoded words are tried as UTF-8, then as `hint` (the message's body charset), then Windows-1252.
    """
    value = _EW_GAP.sub(r"\1", value)
    out: list[str] = []
    pos = 0
    for m in _ENCODED_WORD.finditer(value):
        out.append(_decode_8bit(value[pos : m.start()], hint))
        out.append(_decode_word(m))
        pos = m.end()
    out.append(_decode_8bit(value[pos:], hint))
    return "".join(out)


def _decode_8bit(segment: str, hint: str | None) -> str:
    if not _has_surrogates(segment):
        return segment
    data = segment.encode("utf-8", "surrogateescape")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return decode_bytes(data, hint or "cp1252")[0]


def _decode_word(m: re.Match[str]) -> str:
    charset, enc, text = m.group(1), m.group(2).lower(), m.group(3)
    raw = text.encode("utf-8", "surrogateescape")
    try:
        if enc == "b":
            data = _b64(raw.decode("ascii", "ignore"))
        else:
            data = re.sub(
                rb"=([0-9A-Fa-f]{2})", lambda h: bytes([int(h.group(1), 16)]), raw.replace(b"_", b" ")
            )
    except ValueError:
        return m.group(0)
    return decode_bytes(data, charset)[0]


def _b64(text: str) -> bytes:
    import base64
    import binascii

    clean = re.sub(r"[^A-Za-z0-9+/]", "", text)
    clean += "=" * (-len(clean) % 4)
    try:
        return base64.b64decode(clean)
    except binascii.Error as exc:
        raise ValueError(str(exc)) from exc


class _TextReducer(HTMLParser):
    _BLOCK = frozenset(
        {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "table", "blockquote", "pre"}
        | {"hr", "section", "article", "header", "footer", "ul", "ol", "dt", "dd", "title"}
    )
    _SKIP = frozenset({"script", "style", "head", "template", "noscript", "object", "iframe"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0
        self.size = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self.skip += 1
        elif tag in self._BLOCK:
            self.out.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self.skip = max(0, self.skip - 1)
        elif tag in self._BLOCK:
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skip and self.size < TEXT_CAP:
            self.out.append(data)
            self.size += len(data)


def html_to_text(markup: str) -> str:
    """Reduce HTML to plain text for search: no tags, no scripts or styles, entities decoded."""
    reducer = _TextReducer()
    try:
        reducer.feed(markup[: TEXT_CAP * 5])
        reducer.close()
        text = "".join(reducer.out)
    except Exception:  # html.parser is lenient, but keep a floor
        text = html_lib.unescape(re.sub(r"<[^>]*>", " ", markup))
    text = re.sub(r"[ \t\r\f\v\xa0]+", " ", text)
    text = re.sub(r"\n\s*\n\s*", "\n\n", text)
    return text.strip()[:TEXT_CAP]


def _strip_pgp_armor(parser: _Parser, text: str) -> str:
    if "-----BEGIN PGP MESSAGE-----" in text:
        parser.encrypted = True
        return re.sub(r"-----BEGIN PGP MESSAGE-----.*?(-----END PGP MESSAGE-----|\Z)", "", text, flags=re.S)
    if "-----BEGIN PGP SIGNED MESSAGE-----" in text:
        parser.signed = True
        text = re.sub(
            r"-----BEGIN PGP SIGNATURE-----.*?(-----END PGP SIGNATURE-----|\Z)", "", text, flags=re.S
        )
        return re.sub(r"-----BEGIN PGP SIGNED MESSAGE-----\r?\n(Hash:[^\n]*\n)*", "", text)
    return text


def _constant(content: bytes) -> Callable[[], bytes]:
    return lambda: content


def _has_surrogates(value: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in value)


def _smime_signed_content(der: bytes) -> Message | None:
    """The MIME entity inside an opaque S/MIME signed-data blob (the signature is NOT verified)."""
    try:
        from asn1crypto import cms  # type: ignore[import-untyped]

        info = cms.ContentInfo.load(der)
        if info["content_type"].native != "signed_data":
            return None
        content = info["content"]["encap_content_info"]["content"].native
    except Exception as exc:
        log.debug("S/MIME signed-data not readable: %s", type(exc).__name__)
        return None
    if not isinstance(content, bytes):
        return None
    return BytesParser(policy=INCOMING).parsebytes(content)


def _recover_multipart(part: Message, ctype: str) -> Message | None:
    """Re-parse a multipart whose boundary is missing or wrong, using the first `--token` line."""
    body = part.get_payload(decode=True)
    if not isinstance(body, bytes):
        return None
    m = re.search(rb"(?m)^--([!-~]{1,70}?)[ \t]*\r?$", body)
    if m is None or b'"' in m.group(1):
        return None
    head = b"Content-Type: " + ctype.encode() + b'; boundary="' + m.group(1) + b'"\r\n\r\n'
    try:
        again = BytesParser(policy=INCOMING).parsebytes(head + body)
    except Exception:
        return None
    payload = again.get_payload()
    if isinstance(payload, list) and payload:
        return again
    return None


def _body_charset(msg: Message) -> str | None:
    for part in _walk_all(msg):
        charset = str(part.get_param("charset") or "").strip().lower()
        if charset not in ("", "us-ascii", "ascii", "utf-8", "utf8") and _codec(charset):
            return charset
    return None


def _walk_all(msg: Message) -> Iterator[Message]:
    stack = [msg]
    seen = 0
    while stack and seen < 5000:
        part = stack.pop()
        seen += 1
        yield part
        payload = part.get_payload()
        if isinstance(payload, list):
            stack.extend(p for p in reversed(payload) if isinstance(p, Message))


_DEFECTS = {
    "StartBoundaryNotFoundDefect": "a multipart's boundary never occurs in its body",
    "CloseBoundaryNotFoundDefect": "a multipart is not closed (the message may be cut short)",
    "MissingHeaderBodySeparatorDefect": "a header line is malformed; the rest is read as body",
    "NoBoundaryInMultipartDefect": "a multipart declares no boundary",
    "InvalidMultipartContentTransferEncodingDefect": "a multipart has a transfer encoding it may not have",
    "InvalidBase64PaddingDefect": "damaged base64 (bad padding); decoded as far as possible",
    "InvalidBase64CharactersDefect": "damaged base64 (stray characters); decoded as far as possible",
    "InvalidBase64LengthDefect": "damaged base64 (bad length); decoded as far as possible",
    "MultipartInvariantViolationDefect": "",  # always accompanies one of the above
    "FirstHeaderLineIsContinuationDefect": "",  # handled by _Parser.tidy_headers
}


def _describe_defect(defect: Exception) -> str:
    known = _DEFECTS.get(type(defect).__name__)
    if known is not None:
        return known
    kind = re.sub(r"(?<!^)(?=[A-Z])", " ", type(defect).__name__.removesuffix("Defect")).lower()
    detail = str(defect).strip()
    return f"{kind}: {detail[:160]}" if detail and detail.lower() != kind else kind


def _raw_header(msg: Message, name: str) -> str | None:
    for key, value in msg.raw_items() if hasattr(msg, "raw_items") else msg.items():
        if key.lower() == name:
            return str(value)
    return None


def _raw_param(part: Message, param: str) -> str | None:
    for header in ("content-disposition", "content-type"):
        raw = _raw_header(part, header)
        if raw is None:
            continue
        m = re.search(rf'(?i)\b{param}\s*=\s*("([^"]*)"|[^;\s]+)', unfold(raw))
        if m:
            return m.group(2) if m.group(2) is not None else m.group(1)
    return None


def _content_type(part: Message) -> str:
    try:
        return part.get_content_type().lower()
    except Exception:
        return "application/octet-stream"


def _part_bytes(part: Message) -> Callable[[], bytes]:
    def get() -> bytes:
        payload = part.get_payload()
        if isinstance(payload, list):  # an attached message: its own bytes; else the whole entity
            inner = payload[0] if payload and _content_type(part).startswith("message/") else part
            entity = inner if isinstance(inner, Message) else part
            return _serialize(entity)
        data = part.get_payload(decode=True)
        return data if isinstance(data, bytes) else b""

    return get


def _serialize(entity: Message) -> bytes:
    """An entity's bytes as the stdlib writes them; lenient fallbacks for damaged trees."""
    for policy in (email_policy.default.clone(linesep="\r\n"), email_policy.compat32):
        try:
            return entity.as_bytes(policy=policy)
        except Exception as exc:
            log.debug("serialising a part failed: %s", type(exc).__name__)
    try:
        return entity.as_string(policy=email_policy.compat32).encode("utf-8", "surrogateescape")
    except Exception:
        return b""


def _part_text(parser: _Parser, part: Message, *, ctype: str) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        payload = str(part.get_payload()).encode("utf-8", "surrogateescape")
    try:
        charset = part.get_content_charset()
    except Exception:
        charset = None
    if ctype == "text/html" and not charset:
        m = re.search(rb"""<meta[^>]+charset=["']?([A-Za-z0-9_.:-]+)""", payload[:4096], re.I)
        charset = m.group(1).decode("ascii") if m else None
    text, exact = decode_bytes(payload, charset)
    if charset and not exact:
        parser.note(f"a {ctype} part is not valid {charset}; decoded with a fallback")
    if "\x00" in text:
        text = text.replace("\x00", "")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _cid_key(content_id: str) -> str:
    cid = content_id.strip()
    if cid.lower().startswith("cid:"):
        cid = cid[4:]
    return cid.strip().strip("<>").strip()


def _first_msgid(value: str | None) -> str | None:
    if not value:
        return None
    m = _MSGID.search(value)
    if m:
        return m.group(0)
    bare = value.strip().split()[0] if value.strip() else ""
    return f"<{bare}>" if bare else None


# --------------------------------------------------------------------------------------------- build


@dataclass(frozen=True)
class Outgoing:
    raw: bytes  # RFC 5322 with CRLF line ends, no Bcc header
    message_id: str
    date: datetime
    sender: str
    recipients: tuple[str, ...]  # bare addresses of To + Cc + Bcc, in that order, without repeats
    subject: str


def make_message_id(domain: str) -> str:
    """A fresh Message-ID `<uuid@domain>`."""
    domain = (domain or "").strip()
    if not domain or re.search(r"[\s<>@()\[\]\\,;:\"]", domain):
        raise MessageBad(f"cannot make a Message-ID for domain {domain!r}", fix="give a plain domain name")
    return f"<{uuid.uuid4().hex}@{domain}>"


def build(
    *,
    sender: str,
    to: Sequence[str],
    cc: Sequence[str] = (),
    bcc: Sequence[str] = (),
    subject: str,
    text: str,
    html: str | None = None,
    attachments: Sequence[tuple[str, str, bytes]] = (),
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    message_id: str | None = None,
    date: datetime | None = None,
) -> Outgoing:
    """Build an outgoing message. `attachments` are (filename, content type, bytes).

    Raises MessageBad for anything that cannot be sent as given (bad address, newline in the
    subject, naive date, malformed Message-ID).
    """
    if isinstance(to, str) or isinstance(cc, str) or isinstance(bcc, str):
        raise MessageBad("to, cc and bcc must be lists of addresses, not one string")
    from_addr = _address(sender, "sender")
    to_addrs = [_address(a, "to") for a in to]
    cc_addrs = [_address(a, "cc") for a in cc]
    bcc_addrs = [_address(a, "bcc") for a in bcc]
    if not (to_addrs or cc_addrs or bcc_addrs):
        raise MessageBad("the message has no recipients", fix="add at least one To, Cc or Bcc address")
    if _LINE_BREAK.search(subject):
        raise MessageBad("the subject contains a line break", fix="remove line breaks from the subject")
    for given in (subject, *(name for name, _, _ in attachments if isinstance(name, str))):
        if _has_surrogates(given):
            raise MessageBad(f"{given!r} holds bytes that are not text", fix="retype it as UTF-8 text")
    if date is None:
        date = datetime.now(UTC)
    elif date.tzinfo is None or date.utcoffset() is None:
        raise MessageBad("the date has no time zone", fix="pass a timezone-aware (UTC) datetime")
    if message_id is None:
        message_id = make_message_id(from_addr.domain or "localhost")
    _check_msgid(message_id, "message_id")
    if in_reply_to is not None:
        _check_msgid(in_reply_to, "in_reply_to")
    for ref in references:
        _check_msgid(ref, "references")

    fields: list[tuple[str, str]] = [("From", _wire_addresses([from_addr], "From"))]
    if to_addrs:
        fields.append(("To", _wire_addresses(to_addrs, "To")))
    if cc_addrs:
        fields.append(("Cc", _wire_addresses(cc_addrs, "Cc")))
    fields += [("Subject", wire_text(subject, "Subject")), ("Date", format_datetime(date)),
               ("Message-ID", message_id)]
    if in_reply_to:
        fields.append(("In-Reply-To", in_reply_to))
    if references:
        fields.append(("References", _fold("References", list(references))))
    for name, _, _ in attachments:
        if not isinstance(name, str) or re.search(r"[\x00-\x1f\x7f\x85\u2028\u2029]", name):
            raise MessageBad(f"the attachment name {name!r} contains control characters",
                             fix="rename the file")
    # a reader strips a file name's outer whitespace: strip it here, so what is checked is what is read
    attachments = [(name.strip() or "attachment", ctype, data) for name, ctype, data in attachments]
    names = [name for name, _, _ in attachments]

    msg = EmailMessage(policy=_BUILD_POLICY)
    try:
        for name, value in fields:  # written as given: the generator never refolds or re-decodes them
            msg.set_raw(name, value)
        msg.set_content(text)
        if html is not None:
            msg.add_alternative(html, subtype="html")
        for filename, content_type, data in attachments:
            maintype, _, subtype = (content_type or "application/octet-stream").partition("/")
            if not subtype or not maintype:
                raise MessageBad(f"attachment {filename!r} has a bad content type {content_type!r}")
            msg.add_attachment(bytes(data), maintype=maintype, subtype=subtype)
            part = list(msg.iter_attachments())[-1]
            del part["Content-Disposition"]
            part.set_raw("Content-Disposition", "attachment; " + wire_filename(filename))
        raw = msg.as_bytes()
    except MessageBad:
        raise
    except (ValueError, TypeError, IndexError) as exc:
        raise MessageBad(f"the message cannot be built: {exc}") from exc
    read_back(raw, {"from": [from_addr], "to": to_addrs, "cc": cc_addrs}, subject, names,
              [name for name, _ in fields])
    recipients = tuple(dict.fromkeys(a.addr_spec for a in [*to_addrs, *cc_addrs, *bcc_addrs]))
    return Outgoing(
        raw=raw,
        message_id=message_id,
        date=date,
        sender=from_addr.addr_spec,
        recipients=recipients,
        subject=subject,
    )


# ------------------------------------------------------------------------------ headers on the wire
#
# The header values of outgoing mail are written here, not by the email package's header classes: those
# parse an assigned string as if it came off the wire, so text holding an encoded word (`=?utf-8?q?...?=`,
# which incoming mail supplies as a subject, display name or file name that decodes to one) is decoded
# once more and, before CPython 3.11.10/3.12.5 (CVE-2024-6923), folded out as a real line break. Here
# text is printable ASCII words written as they are, or else RFC 2047 encoded words (RFC 2231 for file
# names) of exactly that text, so a reader decodes it once into what the user saw; `_BUILD_POLICY` never
# refolds a value set raw, and `read_back` parses the result to prove it.

_BUILD_POLICY = email_policy.SMTP.clone(refold_source="none")
_LINE_BREAK = re.compile("[\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")  # str.splitlines() splits on each
_PLAIN = re.compile(r"[!-~]{1,70}(?: [!-~]{1,70})*")  # printable ASCII words, one space apart
_ATOMS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?: [A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_FILENAME_SAFE = re.compile(r"[A-Za-z0-9!#$&+.^_`|~-]+")  # RFC 2231 attribute-char, no % ' *


def _plain(text: str) -> bool:
    """True if `text` can be written as it is: printable ASCII words, nothing a reader would decode."""
    return bool(_PLAIN.fullmatch(text)) and "=?" not in text


def _encoded_words(text: str) -> list[str]:
    """`text` as UTF-8 RFC 2047 encoded words, short enough to fold between them."""
    return Header(text, "utf-8", maxlinelen=60).encode(linesep=" ").split()


def _fold(name: str, tokens: Sequence[str]) -> str:
    """Tokens joined by one space, or by CRLF + space where the line would pass 78 characters."""
    lines, line = [], len(name) + 2
    out = ""
    for token in tokens:
        if out and line + 1 + len(token) > 78:
            lines.append(out)
            out, line = token, 1 + len(token)
        else:
            out = f"{out} {token}" if out else token
            line += (1 if out != token else 0) + len(token)
    lines.append(out)
    return "\r\n ".join(lines)


def wire_text(text: str, name: str) -> str:
    """An unstructured header value (Subject) that decodes to exactly `text`."""
    if not text:
        return ""
    return _fold(name, text.split(" ") if _plain(text) else _encoded_words(text))


def _quotable(display_name: str) -> bool:
    """True if a display name can be written as a quoted string: printable ASCII, no encoded word."""
    return display_name.isascii() and display_name.isprintable() and "=?" not in display_name


def _phrase_tokens(display_name: str) -> list[str]:
    if len(display_name) > 200:
        raise MessageBad(f"the display name {display_name[:40]!r}... is longer than 200 characters")
    if _ATOMS.fullmatch(display_name) and "=?" not in display_name:
        return display_name.split(" ")
    if _quotable(display_name):
        return ['"' + display_name.replace("\\", "\\\\").replace('"', '\\"') + '"']
    # One encoded word: the stdlib keeps the space between two encoded words of a phrase (RFC 2047 drops
    # it), so a split name would read back differently here and at the recipient. Readers accept an
    # encoded word past RFC 2047's 75 characters.
    return Header(display_name, "utf-8", maxlinelen=10_000).encode().split()


def _wire_addresses(addresses: Sequence[HeaderAddress], name: str) -> str:
    tokens: list[str] = []
    for i, a in enumerate(addresses):
        comma = "," if i < len(addresses) - 1 else ""
        if a.display_name:
            tokens += [*_phrase_tokens(a.display_name), f"<{a.addr_spec}>{comma}"]
        else:
            tokens.append(a.addr_spec + comma)
    return _fold(name, tokens)


def address_list(addresses: Sequence[str], role: str) -> str:
    """The folded value of an address header naming `addresses` (for compose.with_bcc)."""
    return _wire_addresses([_address(a, role) for a in addresses], role.title())


def wire_filename(filename: str) -> str:
    """The filename parameter of a Content-Disposition that decodes to exactly `filename`: a token or a
    quoted string when it is plain ASCII, else RFC 2231 percent-encoded UTF-8 (so an encoded word in it
    is never there for a reader to decode)."""
    if _FILENAME_SAFE.fullmatch(filename) and "=?" not in filename:
        return f"filename={filename}"
    if _plain(filename) and not re.search(r'["\\]', filename):
        return f'filename="{filename}"'
    return "filename*=utf-8''" + quote(filename, safe="")


def read_back(raw: bytes, addresses: dict[str, Sequence[HeaderAddress]], subject: str,
              filenames: Sequence[str], names: Sequence[str]) -> None:
    """Parse built MIME and compare it with what was asked for: the same header names (plus the MIME
    ones) each once, the same addresses in From/To/Cc, the same subject and attachment names. A message
    that reads back otherwise is never queued (MessageBad)."""
    msg = BytesParser(policy=email_policy.default).parsebytes(raw)
    problems = []
    top = [k.lower() for k in msg if k.lower() not in ("mime-version", "content-type",
                                                              "content-transfer-encoding")]
    if sorted(top) != sorted(n.lower() for n in names):
        problems.append("its header names differ")
    for key, expected in addresses.items():
        got = [(a.display_name, a.addr_spec) for h in msg.get_all(key, []) for a in h.addresses]
        if got != [(a.display_name, a.addr_spec) for a in expected]:
            problems.append(f"its {key.title()} differs")
    if str(msg.get("subject", "")) != subject:
        problems.append("its Subject differs")
    if [p.get_filename() for p in msg.iter_attachments()] != list(filenames):  # type: ignore[attr-defined]
        problems.append("its attachment names differ")
    if problems:
        raise MessageBad("the message does not read back as written: " + "; ".join(problems),
                         fix="remove unusual characters from the subject, names or file names")


def _address(value: str, role: str) -> HeaderAddress:
    if not isinstance(value, str) or _LINE_BREAK.search(value) or _has_surrogates(value):
        raise MessageBad(f"the {role} address {value!r} is not valid")
    pairs = getaddresses([value])
    if len(pairs) != 1 or not pairs[0][1]:
        raise MessageBad(f"the {role} address {value!r} is not one e-mail address", fix="use name@domain")
    name, addr = pairs[0]
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain or "." not in domain.strip("."):
        raise MessageBad(f"the {role} address {value!r} is not valid", fix="use name@domain")
    if "\t" in name:  # a phrase's tab reads back as a space
        raise MessageBad(f"the {role} address {value!r} has a tab in its name", fix="use a space")
    if not _quotable(name):
        name = " ".join(name.split())  # readers collapse the spaces of an encoded name: so do we, first
    try:
        return HeaderAddress(display_name=name, addr_spec=addr)
    except (ValueError, IndexError) as exc:
        raise MessageBad(f"the {role} address {value!r} is not valid: {exc}") from exc


def _check_msgid(value: str, role: str) -> None:
    if not isinstance(value, str) or not _MSGID_OK.fullmatch(value):
        raise MessageBad(f"{role} {value!r} is not a Message-ID", fix="use the form <id@domain>")


# --------------------------------------------------------------------------------------------- reply


def reply_fields(original: Parsed, *, reply_all: bool, me: str) -> dict[str, Any]:
    """Fields for build() answering `original`: to, cc, subject, in_reply_to, references, text."""
    s = original.summary
    mine = {a.lower() for _, a in getaddresses([me]) if a}
    targets = [a for a in (original.reply_to or ((s.sender,) if s.sender else ())) if a.email]
    if targets and all(a.email.lower() in mine for a in targets):  # my own message: answer its recipients
        targets = list(s.to)
    to: list[Address] = []
    cc: list[Address] = []
    seen = set(mine)
    for group, into in ((targets, to), ((*s.to, *s.cc) if reply_all else (), cc)):
        for a in group:
            if a.email and a.email.lower() not in seen:
                seen.add(a.email.lower())
                into.append(a)
    parent = s.message_id if s.message_id and _MSGID_OK.fullmatch(s.message_id) else None
    references = [r for r in s.references if _MSGID_OK.fullmatch(r)]
    if parent and parent not in references:
        references.append(parent)
    if len(references) > 21:  # RFC 5322 3.6.4 allows trimming: keep the first and the latest
        references = [references[0], *references[-20:]]
    subject = one_line(s.subject if _REPLY_PREFIX.match(s.subject or "") else f"Re: {s.subject}".rstrip())
    who = str(s.sender) if s.sender else "someone"
    when = s.date.strftime("%Y-%m-%d %H:%M UTC") if s.date else "an unknown date"
    quoted = "\n".join("> " + line if line else ">" for line in _body_for_quote(original).splitlines())
    return {
        "to": [_format_address(a) for a in to],
        "cc": [_format_address(a) for a in cc],
        "subject": subject,
        "in_reply_to": parent,
        "references": references,
        "text": f"\n\nOn {when}, {who} wrote:\n{quoted}\n",
    }


def _format_address(a: Address) -> str:
    """`Name <email>` that getaddresses() reads back as the same pair (quotes names with specials)."""
    name = one_line(a.name).replace("\t", " ")
    if not name:
        return a.email
    if re.search(r'[()<>\[\]:;@\\,."]', name):
        quoted = name.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{quoted}" <{a.email}>'
    return f"{name} <{a.email}>"


def one_line(text: str) -> str:
    """text with every character Python reads as a line break (CR, LF, VT, FF, FS, GS, RS, NEL, U+2028,
    U+2029) made a space: what a reply or forward of such a message starts from, and can send."""
    return _LINE_BREAK.sub(" ", text)


def forward_fields(original: Parsed) -> dict[str, Any]:
    """Fields for build() forwarding `original`: subject, text, attachments (name, type, bytes)."""
    s = original.summary
    subject = one_line(s.subject if _FWD_PREFIX.match(s.subject or "") else f"Fw: {s.subject}".rstrip())
    lines = ["", "", "-------- Forwarded message --------"]
    if s.sender:
        lines.append(f"From: {s.sender}")
    if s.date:
        lines.append(f"Date: {s.date.strftime('%Y-%m-%d %H:%M UTC')}")
    lines.append(f"Subject: {s.subject}")
    if s.to:
        lines.append("To: " + ", ".join(str(a) for a in s.to))
    if s.cc:
        lines.append("Cc: " + ", ".join(str(a) for a in s.cc))
    lines += ["", _body_for_quote(original)]
    files = []
    for info in s.attachments:
        data = original.attachment(info.index)
        if data is not None and not info.inline:
            files.append((info.filename, info.content_type, data))
    return {"subject": subject, "text": "\n".join(lines) + "\n", "attachments": files}


def _body_for_quote(original: Parsed) -> str:
    if original.plain is not None:
        return original.plain.strip("\n")
    if original.html is not None:
        return html_to_text(original.html)
    return original.text
