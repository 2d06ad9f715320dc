"""Graph JSON shapes derived from raw MIME (message, attachment, mailFolder), and MIME built from JSON.

Main functions: `message_json`, `attachments`, `folder_json`, `mime_from_json`. Invariants: never
raise on broken MIME (fields fall back to empty values); property names and types follow the Graph
v1.0 CSDL; nothing here does I/O.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import email.errors
import email.header
import email.utils
import hashlib
import html
import re
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from functools import lru_cache
from typing import Any

from simulator.mailbox import Folder, Item, Mailbox, iso

GRAPH = "https://graph.microsoft.com/v1.0"


@dataclass(frozen=True)
class Part:
    """One attachment of a message, as Graph lists it."""

    index: int
    name: str
    content_type: str
    data: bytes
    is_inline: bool
    content_id: str | None
    is_item: bool


@dataclass(frozen=True)
class Summary:
    subject: str
    sender: list[dict[str, Any]]
    to: list[dict[str, Any]]
    cc: list[dict[str, Any]]
    bcc: list[dict[str, Any]]
    reply_to: list[dict[str, Any]]
    message_id: str
    sent: dt.datetime | None
    body_type: str
    body: str
    preview: str
    parts: tuple[Part, ...]
    conversation: str
    headers: tuple[tuple[str, str], ...]
    importance: str


def _decode(raw: Any) -> str:
    """A header value with RFC 2047 words decoded; undecodable parts are kept as they are."""
    text = str(raw)
    if "=?" in text:
        with contextlib.suppress(ValueError, LookupError, UnicodeError, email.errors.HeaderParseError):
            text = str(email.header.make_header(email.header.decode_header(text)))
    return re.sub(r"\s+", " ", text).strip()


def _header(msg: Message, name: str) -> str:
    v = msg.get(name)
    return "" if v is None else _decode(v)


def _recipients(msg: Message, name: str) -> list[dict[str, Any]]:
    values = [str(v) for v in msg.get_all(name, failobj=[])]
    out = []
    for disp, addr in email.utils.getaddresses(values):
        disp, addr = _decode(disp), addr.strip()
        if addr or disp:
            out.append({"emailAddress": {"name": disp or addr, "address": addr}})
    return out


def _text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:
        return payload.decode("utf-8", errors="replace")


def _strip_html(text: str) -> str:
    text = re.sub(r"(?is)<(script|style|head)\b.*?</\1\s*>", " ", text)
    return html.unescape(re.sub(r"<[^>]+>", " ", text))


def _parts(msg: Message) -> tuple[str, str, tuple[Part, ...]]:
    plain = html_body = None
    found: list[Part] = []
    for part in msg.walk():
        ctype = part.get_content_type()
        if part.is_multipart():
            continue
        disp = (part.get_content_disposition() or "").lower()
        try:
            filename = part.get_filename()
            filename = _decode(filename) if filename else None
        except (ValueError, LookupError, UnicodeError):
            filename = None
        is_body_text = ctype in ("text/plain", "text/html") and disp != "attachment" and not filename
        if is_body_text:
            if ctype == "text/plain" and plain is None:
                plain = _text(part)
            elif ctype == "text/html" and html_body is None:
                html_body = _text(part)
            continue
        if part is msg:
            continue
        cid = part.get("Content-ID")
        is_item = ctype == "message/rfc822"
        if is_item:
            inner = part.get_payload()
            inner_msg = inner[0] if isinstance(inner, list) and inner else None
            data = inner_msg.as_bytes() if isinstance(inner_msg, Message) else b""
            name = (
                filename
                or (_header(inner_msg, "subject") if isinstance(inner_msg, Message) else "")
                or "message"
            )
        else:
            raw = part.get_payload(decode=True)
            data = raw if isinstance(raw, bytes) else b""
            name = filename or f"attachment{len(found) + 1}"
        found.append(
            Part(
                len(found),
                name,
                ctype,
                data,
                disp == "inline" and cid is not None,
                str(cid).strip("<> ") if cid else None,
                is_item,
            )
        )
    if html_body is not None:
        return "html", html_body, tuple(found)
    return "text", plain or "", tuple(found)


def parse(mime: bytes) -> Message:
    """compat32 parsing: an order of magnitude faster than policy.default and never fails on headers."""
    return BytesParser(policy=policy.compat32).parsebytes(mime)


@lru_cache(maxsize=65536)  # a mailbox of tens of thousands: listing must not re-parse MIME
def summarize(mime: bytes) -> Summary:
    """Everything Graph shows of a message that comes from its MIME (cached by content)."""
    msg = parse(mime)
    try:
        body_type, body, parts = _parts(msg)
    except Exception:
        body_type, body, parts = "text", "", ()
    sent = None
    try:
        date = email.utils.parsedate_to_datetime(_header(msg, "date"))
        sent = date if date.tzinfo else date.replace(tzinfo=dt.UTC)
    except (TypeError, ValueError, IndexError):
        sent = None
    preview_src = _strip_html(body) if body_type == "html" else body
    refs = (
        (_header(msg, "references").split() or [""])[0]
        or _header(msg, "in-reply-to")
        or _header(msg, "message-id")
    )
    conv = "AAQkAD" + base64.urlsafe_b64encode(hashlib.sha256(refs.encode()).digest()[:24]).decode()
    prio = _header(msg, "importance").lower() or {"1": "high", "2": "high", "4": "low", "5": "low"}.get(
        _header(msg, "x-priority")[:1], "normal"
    )
    headers = tuple((k, str(v)) for k, v in msg.items())
    sender = _recipients(msg, "from")
    return Summary(
        subject=_header(msg, "subject"),
        sender=sender[:1],
        to=_recipients(msg, "to"),
        cc=_recipients(msg, "cc"),
        bcc=_recipients(msg, "bcc"),
        reply_to=_recipients(msg, "reply-to"),
        message_id=_header(msg, "message-id"),
        sent=sent,
        body_type=body_type,
        body=body,
        preview=re.sub(r"\s+", " ", preview_src).strip()[:255],
        parts=parts,
        conversation=conv,
        headers=headers,
        importance=prio if prio in ("low", "normal", "high") else "normal",
    )


def message_json(
    mb: Mailbox, item: Item, select: list[str] | None = None, *, immutable: bool = True
) -> dict[str, Any]:
    """The Graph `message` resource for one item; `select` limits properties as `$select` does."""
    s = summarize(item.mime)
    sent = item.sent or s.sent or item.received
    full: dict[str, Any] = {
        "@odata.type": "#microsoft.graph.message",
        "@odata.etag": f'W/"{item.change_key}"',
        "id": mb.external_id(item.id, item.folder_id, immutable),
        "createdDateTime": iso(item.created),
        "lastModifiedDateTime": iso(item.modified),
        "changeKey": item.change_key,
        "categories": list(item.categories),
        "receivedDateTime": iso(item.received),
        "sentDateTime": iso(sent),
        "hasAttachments": any(not p.is_inline for p in s.parts),
        "internetMessageId": item.message_id_override or s.message_id,
        "subject": s.subject,
        "bodyPreview": s.preview,
        "importance": item.importance if item.importance != "normal" else s.importance,
        "parentFolderId": item.folder_id,
        "conversationId": s.conversation,
        "isDeliveryReceiptRequested": False,
        "isReadReceiptRequested": False,
        "isRead": item.is_read,
        "isDraft": item.is_draft,
        "webLink": f"https://outlook.office365.com/owa/?ItemID={item.id}&exvsurl=1&viewmodel=ReadMessageItem",
        "inferenceClassification": "focused",
        "body": {"contentType": s.body_type, "content": s.body},
        "sender": s.sender[0] if s.sender else None,
        "from": s.sender[0] if s.sender else None,
        "toRecipients": s.to,
        "ccRecipients": s.cc,
        "bccRecipients": s.bcc,
        "replyTo": s.reply_to,
        "flag": {"flagStatus": item.flag},
    }
    if select:
        wanted = {p.strip() for p in select if p.strip()}
        out = {k: v for k, v in full.items() if k.startswith("@odata") or k == "id" or k in wanted}
        if "internetMessageHeaders" in wanted:
            out["internetMessageHeaders"] = [{"name": k, "value": _decode(v)} for k, v in s.headers]
        if "uniqueBody" in wanted:
            out["uniqueBody"] = full["body"]
        return out
    return full


def attachment_id(item: Item, part: Part) -> str:
    return f"{item.id[:-4]}BEgAQ{part.index:04d}AAA="


def attachment_json(item: Item, part: Part, with_content: bool = True) -> dict[str, Any]:
    base: dict[str, Any] = {
        "@odata.type": "#microsoft.graph.itemAttachment"
        if part.is_item
        else "#microsoft.graph.fileAttachment",
        "id": attachment_id(item, part),
        "lastModifiedDateTime": iso(item.modified),
        "name": part.name,
        "contentType": part.content_type,
        "size": len(part.data),
        "isInline": part.is_inline,
    }
    if not part.is_item:
        base["contentId"] = part.content_id
        base["contentLocation"] = None
        if with_content:
            base["contentBytes"] = base64.b64encode(part.data).decode()
    return base


def attachments(item: Item) -> tuple[Part, ...]:
    return summarize(item.mime).parts


def folder_json(mb: Mailbox, f: Folder) -> dict[str, Any]:
    items = mb.in_folder(f.id)
    return {
        "id": f.id,
        "displayName": f.name,
        "parentFolderId": f.parent_id,
        "childFolderCount": len(mb.children(f.id)),
        "unreadItemCount": sum(1 for i in items if not i.is_read),
        "totalItemCount": len(items),
        "isHidden": f.hidden,
    }


def user_json(upn: str, name: str, oid: str) -> dict[str, Any]:
    given, _, surname = name.partition(" ")
    return {
        "@odata.context": f"{GRAPH}/$metadata#users/$entity",
        "businessPhones": [],
        "displayName": name,
        "givenName": given,
        "jobTitle": None,
        "mail": upn,
        "mobilePhone": None,
        "officeLocation": None,
        "preferredLanguage": "en-US",
        "surname": surname,
        "userPrincipalName": upn,
        "id": oid,
    }


def _addr_header(recips: Any, field_name: str) -> str:
    if recips is None:
        return ""
    if not isinstance(recips, list):
        raise ValueError(f"{field_name} must be a list of recipients")
    out = []
    for r in recips:
        ea = r.get("emailAddress") if isinstance(r, dict) else None
        if not isinstance(ea, dict) or not ea.get("address"):
            raise ValueError(f"each of {field_name} needs emailAddress.address")
        if "@" not in str(ea["address"]) or any(c in str(ea["address"]) for c in " <>,;\r\n"):
            raise ValueError(f"{field_name}: {ea['address']!r} is not an email address")
        out.append(email.utils.formataddr((ea.get("name") or "", ea["address"])))
    return ", ".join(out)


def mime_from_json(
    msg: dict[str, Any], sender: str, *, message_id: str | None = None, date: dt.datetime | None = None
) -> bytes:
    """Build RFC 5322 bytes from a Graph `message` JSON object (what Exchange does on sendMail)."""
    if not isinstance(msg, dict):
        raise ValueError("the message must be a JSON object")
    m = EmailMessage()
    frm = msg.get("from") or {"emailAddress": {"address": sender}}
    m["From"] = _addr_header([frm], "from")
    for key, header in (
        ("toRecipients", "To"),
        ("ccRecipients", "Cc"),
        ("bccRecipients", "Bcc"),
        ("replyTo", "Reply-To"),
    ):
        value = _addr_header(msg.get(key), key)
        if value:
            m[header] = value
    m["Subject"] = str(msg.get("subject") or "")
    m["Date"] = email.utils.format_datetime(date or dt.datetime.now(dt.UTC))
    m["Message-ID"] = (
        message_id or msg.get("internetMessageId") or email.utils.make_msgid(domain="sim.lifeboat.test")
    )
    body = msg.get("body") or {}
    if not isinstance(body, dict):
        raise ValueError("body must be an object with contentType and content")
    content = str(body.get("content") or "")
    if str(body.get("contentType", "text")).lower() == "html":
        m.set_content(_strip_html(content))
        m.add_alternative(content, subtype="html")
    else:
        m.set_content(content)
    for att in msg.get("attachments") or []:
        if not isinstance(att, dict) or "contentBytes" not in att:
            raise ValueError("attachments must be fileAttachment objects with contentBytes")
        try:
            data = base64.b64decode(att["contentBytes"], validate=True)
        except ValueError as e:
            raise ValueError(f"attachment {att.get('name')!r}: contentBytes is not base64") from e
        maintype, _, subtype = str(att.get("contentType") or "application/octet-stream").partition("/")
        cid = att.get("contentId")
        m.add_attachment(
            data,
            maintype=maintype,
            subtype=subtype or "octet-stream",
            filename=str(att.get("name") or "attachment"),
            disposition="inline" if att.get("isInline") else "attachment",
            cid=f"<{str(cid).strip('<>')}>" if cid else None,
        )
    return m.as_bytes(policy=policy.SMTP)
