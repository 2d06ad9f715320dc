"""Graph's size limits and large attachments: the 4 MB request limit, attachments POST, upload sessions.

Main types: `Sizes` (the switchable limits; see docs/graph-notes.md section 3 for which are documented
and which are the simulator's reading) and `Uploads` (createUploadSession and the ranged PUTs to the
pre-authenticated upload URL). Invariants: an attachment, however it arrives, becomes a MIME part of
the message (so `$value` and a later send carry it byte for byte); bytes of a session must arrive in
order; a finished or expired session answers 404. Nothing here does socket I/O.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, fields
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

from simulator import shape
from simulator.mailbox import Item, Mailbox

MB = 1024 * 1024
_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+)\s*$", re.I)
_URL = re.compile(r"^/api/v2\.0/Users\('[^']*'\)/Messages\('([^']+)'\)/AttachmentSessions\('([^']+)'\)$")


class SizeError(Exception):
    """An answer Graph gives to a request that breaks a size or upload rule (status, code, message)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


@dataclass
class Sizes:
    """Graph's size rules, switchable through the admin API (`POST /_sim/sizes`)."""

    max_request: int = 4 * MB  # request body limit (base64 MIME counts with its expansion)
    request_status: int = 413  # what an over-limit request answers: 413 (documented) or 400 (seen)
    attachment_post_max: int = 3 * MB  # POST .../attachments takes files under this
    session_min: int = 3 * MB  # createUploadSession refuses smaller files
    session_max: int = 150 * MB  # and larger ones
    chunk_max: int = 4 * MB  # bytes in one PUT ("up to 4 MB each time")
    chunk_multiple: int = 0  # 0: any size; 327680: multiples of 320 KiB except the last (OneDrive's rule)
    session_seconds: float = 900.0  # an upload session expires this long after its last fragment
    upload_bytes: int = 150 * MB  # upload volume per mailbox in upload_window seconds, then 429
    upload_window: float = 300.0
    upload_to_non_draft: bool = True  # createUploadSession / attachments POST on a non-draft message
    mime_on_folder_path: bool = False  # MIME create on /me/mailFolders/{id}/messages (Graph refuses it)
    mime_keeps_message_id: bool = True  # a MIME create keeps the Message-ID header of the MIME

    def configure(self, **kw: Any) -> None:
        names = {f.name: f for f in fields(self)}
        bad = set(kw) - set(names)
        if bad:
            raise ValueError(f"unknown size setting(s) {sorted(bad)}; known: {sorted(names)}")
        for key, value in kw.items():
            if value is None:
                continue
            kind = type(getattr(self, key))
            new = bool(value) if kind is bool else kind(value)
            if kind is not bool and new < 0:
                raise ValueError(f"{key} must not be negative")
            if key == "request_status" and new not in (400, 413):
                raise ValueError("request_status must be 413 or 400")
            setattr(self, key, new)

    def as_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def check_request(self, body: bytes) -> None:
        if len(body) > self.max_request:
            raise SizeError(self.request_status, "BadRequest", "The maximum request length supported is 4MB.")


def with_attachment(
    mime: bytes, name: str, content_type: str, data: bytes, *, inline: bool, content_id: str | None
) -> bytes:
    """The message with one more file part (multipart/mixed made if needed; CRLF line ends)."""
    msg = BytesParser(policy=policy.default).parsebytes(mime)
    assert isinstance(msg, EmailMessage)
    if msg.get_content_type() != "multipart/mixed":
        msg.make_mixed()
    maintype, _, subtype = (content_type or "application/octet-stream").partition("/")
    msg.add_attachment(
        data,
        maintype=maintype or "application",
        subtype=subtype or "octet-stream",
        filename=name,
        disposition="inline" if inline else "attachment",
        cid=f"<{content_id.strip('<>')}>" if content_id else None,
    )
    return msg.as_bytes(policy=policy.SMTP)


def attach(mb: Mailbox, item: Item, name: str, ctype: str, data: bytes, inline: bool,
           cid: str | None) -> Item:
    """Add the file to the stored message and return it (the new part is the message's last)."""
    mime = with_attachment(item.mime, name, ctype, data, inline=inline, content_id=cid)
    return mb.change(item.id, mime=mime)


@dataclass
class _Session:
    id: str
    token: str
    item_id: str
    name: str
    content_type: str
    size: int
    inline: bool
    content_id: str | None
    expires: float
    data: bytearray


class Uploads:
    """Upload sessions of one mailbox: create (Graph side) and PUT byte ranges (upload URL side)."""

    def __init__(self, mb: Mailbox, sizes: Sizes, base_url: str, oid: str) -> None:
        self.mb, self.sizes, self.base_url, self.oid = mb, sizes, base_url.rstrip("/"), oid
        self._sessions: dict[str, _Session] = {}
        self._volume: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()
        self.clock = time.monotonic

    # --- the Graph side ------------------------------------------------------------------------
    def post_attachment(self, item: Item, data: dict[str, Any]) -> dict[str, Any]:
        """POST /me/messages/{id}/attachments with a fileAttachment; the attachment's JSON."""
        self._check_target(item)
        kind = str(data.get("@odata.type", "")).lower()
        if kind not in ("#microsoft.graph.fileattachment", "microsoft.graph.fileattachment"):
            raise SizeError(400, "ErrorInvalidRequest", "Only fileAttachment is simulated.")
        try:
            raw = base64.b64decode(str(data.get("contentBytes", "")), validate=True)
        except (ValueError, binascii.Error):
            raise SizeError(400, "ErrorInvalidRequest", "contentBytes is not base64.") from None
        if len(raw) >= self.sizes.attachment_post_max:
            raise SizeError(
                413,
                "ErrorAttachmentSizeShouldNotBeGreaterThanMaximumSize",
                "Attachments of 3 MB or more must be uploaded through createUploadSession.",
            )
        name = str(data.get("name") or "attachment")
        cid = data.get("contentId")
        changed = attach(self.mb, item, name, str(data.get("contentType") or "application/octet-stream"), raw,
                         bool(data.get("isInline")), str(cid) if cid else None)
        part = shape.attachments(changed)[-1]
        return shape.attachment_json(changed, part)

    def create(self, item: Item, body: dict[str, Any]) -> dict[str, Any]:
        """POST .../attachments/createUploadSession: the uploadSession JSON."""
        self._check_target(item)
        spec = next((v for k, v in body.items() if k.lower() == "attachmentitem"), None)
        if not isinstance(spec, dict):
            raise SizeError(400, "ErrorInvalidRequest", "createUploadSession needs an AttachmentItem object.")
        if str(spec.get("attachmentType", "")).lower() != "file":
            raise SizeError(
                405,
                "ErrorAttachmentSessionIsSupportedOnlyForFileAttachments",
                "Unsupported Attachment type specified. Only File attachments can be uploaded using an "
                "Upload Session.",
            )
        name, size = spec.get("name"), spec.get("size")
        if not isinstance(name, str) or not name or not isinstance(size, int) or isinstance(size, bool):
            raise SizeError(400, "ErrorInvalidRequest", "AttachmentItem needs a name and an integer size.")
        if size < self.sizes.session_min:
            raise SizeError(
                400,
                "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize",
                "Attachment size should not be less than 3 MB; POST it to the attachments collection.",
            )
        if size > self.sizes.session_max:
            raise SizeError(
                400,
                "ErrorAttachmentSizeShouldNotBeGreaterThanMaximumSize",
                f"Attachment size should not be greater than {self.sizes.session_max // MB} MB.",
            )
        cid = spec.get("contentId")
        s = _Session(
            id=self.mb.new_id("AAMkADAS"),
            token=secrets.token_urlsafe(24),
            item_id=item.id,
            name=name,
            content_type=str(spec.get("contentType") or "application/octet-stream"),
            size=size,
            inline=bool(spec.get("isInline")),
            content_id=str(cid) if cid else None,
            expires=self.clock() + self.sizes.session_seconds,
            data=bytearray(),
        )
        with self._lock:
            self._sessions[s.id] = s
        return {
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#microsoft.graph.uploadSession",
            "uploadUrl": f"{self.base_url}/api/v2.0/Users('{self.oid}')/Messages('{item.id}')"
            f"/AttachmentSessions('{s.id}')?authtoken={s.token}",
            "expirationDateTime": self._expiry(s),
            "nextExpectedRanges": ["0-"],
        }

    def _check_target(self, item: Item) -> None:
        if not item.is_draft and not self.sizes.upload_to_non_draft:
            raise SizeError(
                400, "ErrorInvalidOperation", "Attachments can be added to a draft only (simulator switch)."
            )

    # --- the upload URL side ---------------------------------------------------------------------
    def put(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes
            ) -> tuple[int, dict[str, Any] | None, dict[str, str]]:
        """A PUT (or DELETE) on an upload URL: (status, JSON body or None, headers)."""
        m = _URL.match(path)
        with self._lock:
            s = self._sessions.get(m.group(2)) if m else None
            now = self.clock()
            token = query.get("authtoken", "")
            if s is not None and (now > s.expires or not secrets.compare_digest(token, s.token)
                                  or m is None or m.group(1) != s.item_id):
                if now > s.expires:
                    self._sessions.pop(s.id, None)
                s = None
            if s is None:
                raise SizeError(404, "ErrorItemNotFound", "The upload session does not exist or has expired.")
            if "authorization" in headers:
                raise SizeError(
                    401,
                    "InvalidAuthenticationToken",
                    "The upload URL is pre-authenticated: send no Authorization header to it.",
                )
            if method == "DELETE":
                self._sessions.pop(s.id, None)
                return 204, None, {}
            if method != "PUT":
                raise SizeError(405, "ErrorInvalidRequest", "An upload URL takes PUT (and DELETE).")
            self._check_range(s, headers.get("content-range", ""), body)
            self._count_volume(len(body), now)
            s.data.extend(body)
            s.expires = now + self.sizes.session_seconds  # each fragment extends the session
            if len(s.data) < s.size:
                return 200, {"expirationDateTime": self._expiry(s),
                             "nextExpectedRanges": [str(len(s.data))]}, {}
            self._sessions.pop(s.id, None)
        item = self.mb.item(s.item_id)
        changed = attach(self.mb, item, s.name, s.content_type, bytes(s.data), s.inline, s.content_id)
        att = shape.attachment_id(changed, shape.attachments(changed)[-1])
        where = f"{self.base_url}/api/v2.0/Users('{self.oid}')/Messages('{item.id}')/Attachments('{att}')"
        return 201, None, {"Location": where}

    def _check_range(self, s: _Session, value: str, body: bytes) -> None:
        m = _RANGE.match(value)
        if not m:
            raise SizeError(400, "ErrorInvalidRequest", "Content-Range needs bytes {start}-{end}/{total}.")
        start, end, total = (int(g) for g in m.groups())
        if total != s.size:
            raise SizeError(400, "ErrorInvalidRequest", f"The total {total} is not the session's {s.size}.")
        if start != len(s.data):
            raise SizeError(
                416,
                "ErrorInvalidRange",
                f"Bytes must be uploaded in order; the next expected range starts at {len(s.data)}.",
            )
        if end < start or end >= s.size or end - start + 1 != len(body):
            raise SizeError(400, "ErrorInvalidRequest", "The Content-Range does not match the bytes sent.")
        if len(body) > self.sizes.chunk_max:
            raise SizeError(413, "BadRequest", f"A fragment may carry at most {self.sizes.chunk_max} bytes.")
        multiple = self.sizes.chunk_multiple
        if multiple and end + 1 < s.size and len(body) % multiple:
            raise SizeError(400, "ErrorInvalidRequest", f"Fragments must be multiples of {multiple} bytes "
                                                        "except the last.")

    def _count_volume(self, n: int, now: float) -> None:
        while self._volume and now - self._volume[0][0] >= self.sizes.upload_window:
            self._volume.popleft()
        used = sum(b for _, b in self._volume)
        if used + n > self.sizes.upload_bytes:
            wait = self.sizes.upload_window - (now - self._volume[0][0]) if self._volume else 1.0
            raise SizeError(
                429,
                "ApplicationThrottled",
                "The mailbox's upload volume limit was reached; retry later.",
                {"Retry-After": f"{max(0.001, wait):.3f}"},
            )
        self._volume.append((now, n))

    def _expiry(self, s: _Session) -> str:
        left = s.expires - self.clock()
        at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=left)
        return at.strftime("%Y-%m-%dT%H:%M:%S.%f0Z")
