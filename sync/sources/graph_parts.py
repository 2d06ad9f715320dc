"""Pure helpers for Graph's size limits: which parts of a message must travel apart from its request.

Graph refuses a request body over 4 MB (base64 MIME and base64 contentBytes count with their
expansion by a third), takes files under 3 MB through `POST .../attachments`, and files from 3 MB to
150 MB only through an upload session (docs/graph-notes.md section 3). `split_mime` cuts the largest
file parts out of a MIME message until the rest fits one request; `leaf_parts` lists every file part
of a message, inline `multipart/related` images included. Nothing here does I/O.
"""

from __future__ import annotations

import base64
import email
import email.policy
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage, Message

MIB = 1024 * 1024
# Microsoft writes "4 MB" and "3 MB" without saying 10^6 or 2^20: read them the safe way round.
REQUEST_BUDGET = 4_000_000 - 64 * 1024  # bytes of request body we allow ourselves (headroom for JSON)
SESSION_MIN = 3 * MIB  # files this large go through an upload session (createUploadSession refuses less)
ATTACHMENT_MAX = 150 * MIB  # the largest file an upload session takes ("up to 150 MB")
CHUNK = 10 * 320 * 1024  # bytes per PUT: under 4 MB and a multiple of 320 KiB (3,276,800)


@dataclass(frozen=True)
class FilePart:
    """One file of a message, as Graph's fileAttachment / attachmentItem describe it."""

    name: str
    content_type: str
    data: bytes
    inline: bool
    content_id: str | None

    def graph_json(self) -> dict[str, object]:
        """A #microsoft.graph.fileAttachment with contentBytes (for small files)."""
        out: dict[str, object] = {
            "@odata.type": "#microsoft.graph.fileAttachment",
            "name": self.name,
            "contentType": self.content_type,
            "contentBytes": base64.b64encode(self.data).decode("ascii"),
            "isInline": self.inline,
        }
        if self.content_id:
            out["contentId"] = self.content_id
        return out

    def item_json(self) -> dict[str, object]:
        """The AttachmentItem of createUploadSession."""
        out: dict[str, object] = {"attachmentType": "file", "name": self.name, "size": len(self.data),
                                  "contentType": self.content_type, "isInline": self.inline}
        if self.content_id:
            out["contentId"] = self.content_id
        return out

    @property
    def request_size(self) -> int:
        """About what the file costs inside a JSON request (base64 plus its envelope)."""
        return (len(self.data) + 2) // 3 * 4 + len(self.name) * 2 + 256


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def body_part(msg: EmailMessage) -> EmailMessage | None:
    part = msg.get_body(("html", "plain"))
    return part if isinstance(part, EmailMessage) else None


def _is_file(part: Message, body: Message | None) -> bool:
    if part.is_multipart() or part is body:
        return False
    # text without a file name or an attachment disposition is the body, or its other alternative
    return not (part.get_content_type() in ("text/plain", "text/html")
                and part.get_content_disposition() != "attachment" and not part.get_filename())


def _files(msg: Message) -> Iterator[tuple[Message, Message]]:
    """(parent, part) for every file part, in MIME order."""
    body = body_part(msg) if isinstance(msg, EmailMessage) else None
    stack: list[Message] = [msg]
    while stack:
        parent = stack.pop(0)
        if not parent.is_multipart():
            if parent is msg and _is_file(msg, body):  # a message that is one file
                yield msg, msg
            continue
        for part in parent.get_payload():
            if not isinstance(part, Message):
                continue
            if part.is_multipart():
                stack.append(part)
            elif _is_file(part, body):
                yield parent, part


def file_part(part: Message) -> FilePart:
    data = part.get_payload(decode=True)
    cid = part.get("Content-ID")
    disposition = part.get_content_disposition()
    inline = disposition == "inline" or (disposition is None and cid is not None)
    name = part.get_filename() or ("image" if part.get_content_maintype() == "image" else "attachment")
    return FilePart(name=str(name), content_type=part.get_content_type(),
                    data=data if isinstance(data, bytes) else b"", inline=inline,
                    content_id=str(cid).strip().strip("<>") if cid else None)


def leaf_parts(msg: EmailMessage) -> list[FilePart]:
    """Every file of the message (attachments and inline images), in MIME order."""
    return [file_part(part) for _, part in _files(msg)]


def split_mime(raw: bytes, budget: int = REQUEST_BUDGET) -> tuple[bytes, list[FilePart]]:
    """(MIME that fits one request as base64, the file parts cut out of it, largest first).

    raw itself (and no parts) when it already fits. Headers (Message-ID, Bcc, threading) are kept."""
    if b64_size(len(raw)) <= budget:
        return raw, []
    # compat32 regenerates headers as they came (policy.default re-parses, and fails on some)
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    files = sorted(_files(msg), key=lambda pp: -len(pp[1].get_payload(decode=True) or b""))
    removed: list[FilePart] = []
    out = raw
    for parent, part in files:
        removed.append(file_part(part))
        payload = parent.get_payload()
        if parent is part or not isinstance(payload, list):
            break  # the whole message is one file: nothing is left to cut
        payload.remove(part)
        out = msg.as_bytes(policy=email.policy.compat32.clone(linesep="\r\n"))
        if b64_size(len(out)) <= budget:
            break
    return out, removed


def b64_size(n: int) -> int:
    return (n + 2) // 3 * 4
