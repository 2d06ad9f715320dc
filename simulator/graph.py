"""The Graph v1.0 mail subset: routes a request (method, path, query, headers, body) to a response.

Main type: `GraphApi`, a pure function of the `Mailbox` plus an admission gate for throttling; it does
no socket I/O (the server does), so `$batch` can call it recursively. Invariants: delta tokens encode a
position in a folder's change log and the mailbox epoch (older epochs answer 410 syncStateNotFound);
every error answers Graph's error shape with a message a person can act on.
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import datetime as dt
import email.utils
import hashlib
import json
import random
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from simulator import shape
from simulator.attachments import SizeError, Sizes, Uploads
from simulator.mailbox import Item, Mailbox, NotFound, iso, utcnow

JSON_TYPE = (
    "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
)
DEFAULT_PAGE = 10
MAX_PAGE = 1000
BATCH_MAX = 20
DEFAULT_SENT_DELAY = 3.0  # seconds from sendMail's 202 to the copy in Sent Items (minutes under load)
SENT_COPY = ("keep", "drop")
# "Applying $filter in a delta query returns only up to 5,000 messages" (Get incremental changes to
# messages in a folder); without $orderby=receivedDateTime desc "the return order isn't guaranteed".
DELTA_FILTER_CAP = 5000
BATCH_VALUE_MODES = ("base64", "text")
# whether the request being answered asked for Prefer: IdType="ImmutableId" (per thread/request)
_IMMUTABLE: contextvars.ContextVar[bool] = contextvars.ContextVar("immutable", default=False)


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class Submitted:
    """A message handed to the transport: it sits in Drafts until `due` (the GraphApi clock)."""

    item_id: str
    due: float
    save: bool  # saveToSentItems


class GraphError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    rid = str(uuid.uuid4())
    body = {
        "error": {
            "code": code,
            "message": message,
            "innerError": {"date": now, "request-id": rid, "client-request-id": rid},
        }
    }
    return Response(
        status,
        json.dumps(body).encode(),
        {"Content-Type": "application/json", "request-id": rid, **(headers or {})},
    )


def json_response(status: int, obj: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(status, json.dumps(obj).encode(), {"Content-Type": JSON_TYPE, **(headers or {})})


def _encode_token(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    mac = hashlib.sha256(b"lifeboat-sim" + raw).digest()[:6]
    return base64.urlsafe_b64encode(mac + raw).decode().rstrip("=")


def _decode_token(token: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        mac, body = raw[:6], raw[6:]
        if hashlib.sha256(b"lifeboat-sim" + body).digest()[:6] != mac:
            raise ValueError("checksum")
        data = json.loads(body)
        if not isinstance(data, dict):
            raise ValueError("shape")
        return data
    except (ValueError, binascii.Error):
        raise GraphError(
            400,
            "BadRequest",
            "The delta or skip token is malformed; start a new delta round without a token.",
        ) from None


_DATE_FILTER = re.compile(r"^\s*receivedDateTime\s+ge\s+(\S+)\s*$", re.I)
# singleValueExtendedProperties/any(ep: ep/id eq 'Integer 0x0E08' and cast(ep/value, Edm.Int32) gt N)
_SIZE_FILTER = re.compile(
    r"^\s*singleValueExtendedProperties/any\(\s*(\w+)\s*:\s*\1/id\s+eq\s+'Integer\s+0x0E08'\s+and\s+"
    r"cast\(\s*\1/value\s*,\s*'?Edm\.Int(?:32|64)'?\s*\)\s+(gt|ge|lt|le|eq|ne)\s+(\d+)\s*\)\s*$",
    re.I,
)
_SIZE_EXPAND = re.compile(
    r"^\s*singleValueExtendedProperties\(\s*\$filter=id\s+eq\s+'Integer\s+0x0E08'\s*\)\s*$", re.I
)
_COMPARE: dict[str, Callable[[int, int], bool]] = {
    "gt": lambda a, b: a > b, "ge": lambda a, b: a >= b, "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b, "eq": lambda a, b: a == b, "ne": lambda a, b: a != b,
}
_MID_FILTER = re.compile(r"^\s*internetMessageId\s+eq\s+'((?:[^']|'')*)'\s*$", re.I)


def _parse_date(text: str) -> dt.datetime:
    try:
        t = dt.datetime.fromisoformat(text.strip("'").replace("Z", "+00:00"))
    except ValueError:
        raise GraphError(
            400, "BadRequest", f"Invalid filter date {text!r}; use ISO 8601 like 2026-01-01T00:00:00Z."
        ) from None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def _prefer(headers: dict[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in headers.get("prefer", "").split(","):
        k, _, v = part.strip().partition("=")
        if k:
            out[k.strip().lower()] = v.strip().strip('"')
    return out


class GraphApi:
    """Answers Graph requests for one mailbox; `gate()` returns a Retry-After (seconds) when throttled."""

    def __init__(
        self,
        mailbox: Mailbox,
        *,
        base_url: str,
        user_upn: str,
        user_name: str,
        user_oid: str,
        gate: Callable[[], float | None] | None = None,
    ) -> None:
        self.mb = mailbox
        self.base_url = base_url.rstrip("/")
        self.upn, self.user_name, self.oid = user_upn, user_name, user_oid
        self.gate = gate or (lambda: None)
        self.expired_status = 410
        self.outgoing: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        # The transport (see `run_transport`): sendMail and draft send leave the message in Drafts
        # (isDraft true); `sent_delay` seconds later the transport delivers it and moves it to Sent Items
        # (`sent_copy` "keep") or deletes it (`sent_copy` "drop", a delete-after-send rule).
        self.sent_delay = DEFAULT_SENT_DELAY
        self.sent_copy = "keep"
        self.clock: Callable[[], float] = time.monotonic
        self._queue: list[Submitted] = []
        # addresses the user may send as besides their own (Send As / Send on Behalf granted by IT)
        self.send_as: set[str] = set()
        # folders the user may not open: their paths answer 403 ErrorAccessDenied
        self.denied: set[str] = set()
        self.sizes = Sizes()
        self.uploads = Uploads(mailbox, self.sizes, base_url, user_oid)
        self.delta_cap: int | None = DELTA_FILTER_CAP  # None: filtered delta lists everything
        self.delta_seed = 1  # seeds the order of a filtered first round without $orderby
        self._rounds: dict[str, list[str]] = {}  # listing of each filtered first round (by round id)
        # how a text/* body (a message's $value) comes back inside $batch: base64 or a plain string
        self.batch_values = "base64"
        # Outlook's per-mailbox concurrency as seen by the requests inside a $batch (see _batch)
        self.slots: Any = None  # object with acquire(n) -> granted, release(n), inner_delay
        self.inner_throttled = {"concurrency": 0, "window": 0}  # 429s answered inside $batch

    @property
    def graph_url(self) -> str:
        return f"{self.base_url}/v1.0"

    @staticmethod
    def _size_prop(item: Item, q: dict[str, str]) -> dict[str, Any]:
        """`$expand=singleValueExtendedProperties($filter=id eq 'Integer 0x0E08')`: PidTagMessageSize."""
        if not _SIZE_EXPAND.match(q.get("$expand", "")):
            return {}
        return {"singleValueExtendedProperties": [{"id": "Integer 0x0e08", "value": str(len(item.mime))}]}

    def _msg(self, item: Item, select: list[str] | None = None) -> dict[str, Any]:
        return shape.message_json(self.mb, item, select, immutable=_IMMUTABLE.get())

    # --- entry point ------------------------------------------------------------------------------
    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Response:
        """`target` is the path after /v1.0 with its query string; header names are lower-case."""
        self.run_transport()
        parts = urlsplit(target)
        query = {k.lower(): v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        prefer = _prefer(headers)
        ctx = _IMMUTABLE.set(prefer.get("idtype", "").lower() == "immutableid")
        try:
            self.sizes.check_request(body)  # Graph refuses a request body over 4 MB before reading it
            resp = self._route(method.upper(), unquote(parts.path), query, headers, body, prefer)
        except (GraphError, SizeError) as e:
            return error_response(e.status, e.code, e.message, e.headers)
        except NotFound as e:
            return error_response(
                404, "ErrorItemNotFound", f"The specified object was not found in the store. {e}"
            )
        except ValueError as e:
            return error_response(400, "ErrorInvalidRequest", str(e))
        finally:
            _IMMUTABLE.reset(ctx)
        applied = []
        if "idtype" in prefer:
            applied.append(f'IdType="{prefer["idtype"]}"')
        if "odata.maxpagesize" in prefer:
            applied.append(f"odata.maxpagesize={prefer['odata.maxpagesize']}")
        if applied and resp.status < 400:
            resp.headers["Preference-Applied"] = ", ".join(applied)
        return resp

    def _segments(self, path: str) -> list[str]:
        # mailFolders('X') -> mailFolders / X ; drop empty parts
        path = re.sub(r"\('([^']*)'\)", r"/\1", path)
        segs = [s for s in path.split("/") if s]
        if segs[:1] and segs[0].lower() == "me":
            return segs[1:]
        if len(segs) >= 2 and segs[0].lower() == "users":
            if segs[1].lower() not in (self.upn.lower(), self.oid):
                raise GraphError(404, "ErrorInvalidUser", f"The requested user '{segs[1]}' is invalid.")
            return segs[2:]
        if segs[:1] == ["$batch"]:
            return segs
        raise GraphError(
            400,
            "BadRequest",
            f"Resource not found for the segment '{segs[0] if segs else ''}'. "
            "The simulator serves /me/..., /users/{upn}/... and /$batch.",
        )

    def _route(
        self,
        method: str,
        path: str,
        q: dict[str, str],
        headers: dict[str, str],
        body: bytes,
        prefer: dict[str, str],
    ) -> Response:
        segs = self._segments(path)
        low = [s.lower() for s in segs]
        # collapse childFolders chains: mailFolders/A/childFolders/B/... -> mailFolders/B/...
        while len(low) >= 4 and low[0] == "mailfolders" and low[2] == "childfolders":
            segs, low = ["mailFolders", *segs[3:]], ["mailfolders", *low[3:]]
        if low == ["$batch"] and method == "POST":
            return self._batch(body)
        if not low:
            if method != "GET":
                raise GraphError(405, "BadRequest", "Only GET is supported on /me.")
            return json_response(200, shape.user_json(self.upn, self.user_name, self.oid))
        head = low[0]
        if head == "sendmail" and method == "POST" and len(low) == 1:
            return self._send_mail(headers, body)
        if head == "mailfolders":
            return self._folders(method, segs[1:], low[1:], q, headers, body, prefer)
        if head == "messages":
            return self._messages(method, None, segs[1:], low[1:], q, headers, body, prefer)
        raise GraphError(400, "BadRequest", f"Resource not found for the segment '{segs[0]}'.")

    # --- folders ------------------------------------------------------------------------------------
    def _folders(
        self,
        method: str,
        segs: list[str],
        low: list[str],
        q: dict[str, str],
        headers: dict[str, str],
        body: bytes,
        prefer: dict[str, str],
    ) -> Response:
        mb = self.mb
        if not low:
            if method == "GET":
                return self._folder_page(mb.children(mb.root_id), q, "mailFolders")
            if method == "POST":
                return self._create_folder(None, body)
        elif low == ["delta"] and method == "GET":
            return self._folder_delta(q, prefer)
        else:
            folder = mb.folder(segs[0])
            self._check_access(folder.id)
            rest, rest_low = segs[1:], low[1:]
            if not rest and method == "GET":
                return json_response(
                    200,
                    {
                        "@odata.context": f"{self.graph_url}/$metadata#users('{self.oid}')/"
                        "mailFolders/$entity",
                        **shape.folder_json(mb, folder),
                    },
                )
            if rest_low == ["childfolders"]:
                if method == "GET":
                    return self._folder_page(
                        mb.children(folder.id), q, f"mailFolders('{folder.id}')/childFolders"
                    )
                if method == "POST":
                    return self._create_folder(folder.id, body)
            if rest_low[:1] == ["messages"]:
                return self._messages(method, folder.id, rest[1:], rest_low[1:], q, headers, body, prefer)
        raise GraphError(405, "BadRequest", f"{method} is not supported on this mailFolders path.")

    def _check_access(self, folder_id: str) -> None:
        if folder_id in self.denied:  # what Exchange answers for a folder the user may not open
            raise GraphError(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")

    def _create_folder(self, parent: str | None, body: bytes) -> Response:
        data = self._json_body(body)
        name = data.get("displayName")
        if not isinstance(name, str) or not name.strip():
            raise GraphError(400, "ErrorInvalidRequest", "displayName is required to create a folder.")
        try:
            f = self.mb.add_folder(name.strip(), parent)
        except ValueError as e:
            raise GraphError(409, "ErrorFolderExists", str(e)) from None
        return json_response(201, shape.folder_json(self.mb, f))

    def _folder_page(self, folders: list[Any], q: dict[str, str], ctx: str) -> Response:
        top, skip = self._int(q, "$top", 10), self._int(q, "$skip", 0)
        if q.get("includehiddenfolders", "").lower() != "true":
            folders = [f for f in folders if not f.hidden]
        page = folders[skip : skip + top]
        out: dict[str, Any] = {
            "@odata.context": f"{self.graph_url}/$metadata#users('{self.oid}')/{ctx}",
            "value": [shape.folder_json(self.mb, f) for f in page],
        }
        if skip + top < len(folders):
            out["@odata.nextLink"] = f"{self.graph_url}/me/{ctx}?$top={top}&$skip={skip + top}"
        return json_response(200, out)

    def _folder_delta(self, q: dict[str, str], prefer: dict[str, str]) -> Response:
        mb = self.mb
        size = self._page_size(prefer)
        if "$deltatoken" in q or "$skiptoken" in q:
            tok = _decode_token(q.get("$deltatoken") or q["$skiptoken"])
            self._check_epoch(tok, "mailFolders/delta")
            since, upto, offset = tok["a"], tok.get("b"), tok.get("o", 0)
        else:
            since, upto, offset = 0, None, 0
        with mb.lock:
            if upto is None:
                upto = mb.seq
            changes = mb.folder_changes(since, upto)
            page = changes[offset : offset + size]
            value = []
            for fid, _ in page:
                f = mb.folders.get(fid)
                if f is None or f.hidden:
                    if f is None:
                        value.append({"id": fid, "@removed": {"reason": "deleted"}})
                    continue
                value.append(shape.folder_json(mb, f))
        out: dict[str, Any] = {
            "@odata.context": f"{self.graph_url}/$metadata#Collection(mailFolder)",
            "value": value,
        }
        if offset + size < len(changes):
            link = _encode_token({"a": since, "b": upto, "o": offset + size, "e": mb.epoch})
            out["@odata.nextLink"] = f"{self.graph_url}/me/mailFolders/delta?$skiptoken={link}"
        else:
            link = _encode_token({"a": upto, "e": mb.epoch})
            out["@odata.deltaLink"] = f"{self.graph_url}/me/mailFolders/delta?$deltatoken={link}"
        return json_response(200, out)

    # --- messages -------------------------------------------------------------------------------
    def _messages(
        self,
        method: str,
        folder_id: str | None,
        segs: list[str],
        low: list[str],
        q: dict[str, str],
        headers: dict[str, str],
        body: bytes,
        prefer: dict[str, str],
    ) -> Response:
        if not low:
            if method == "GET":
                return self._list(folder_id, q, prefer)
            if method == "POST":
                return self._create(folder_id, headers, body)
            raise GraphError(405, "BadRequest", f"{method} is not supported on a messages collection.")
        if low == ["delta"] and method == "GET":
            if folder_id is None:
                raise GraphError(
                    400, "BadRequest", "Message delta is per folder: use /me/mailFolders/{id}/messages/delta."
                )
            return self._delta(folder_id, q, prefer)
        item = self.mb.item(segs[0])
        if folder_id is not None and item.folder_id != folder_id:
            raise NotFound(f"message {segs[0]!r} is not in folder {folder_id!r}")
        self._check_access(item.folder_id)
        rest = low[1:]
        if not rest:
            if method == "GET":
                sel = q["$select"].split(",") if q.get("$select") else None
                return json_response(
                    200,
                    {
                        "@odata.context": f"{self.graph_url}/$metadata#users('{self.oid}')/messages/$entity",
                        **self._msg(item, sel),
                        **self._size_prop(item, q),
                    },
                )
            if method == "PATCH":
                return self._patch(item, body)
            if method == "DELETE":  # like Exchange: to Deleted Items, and gone from there
                if item.folder_id == self.mb.folder("deleteditems").id:
                    self.mb.delete(item.id)
                else:
                    self.mb.move(item.id, "deleteditems")
                return Response(204)
        if rest == ["permanentdelete"] and method == "POST":
            self.mb.delete(item.id)
            return Response(204)
        if rest == ["$value"] and method == "GET":
            return Response(200, item.mime, {"Content-Type": "text/plain"})
        if rest == ["move"] and method == "POST":
            dest = self._json_body(body).get("destinationId")
            if not isinstance(dest, str):
                raise GraphError(
                    400, "ErrorInvalidRequest", "move needs a destinationId (a folder id or well-known name)."
                )
            moved = self.mb.move(item.id, self.mb.folder(dest).id)
            return json_response(201, self._msg(moved))
        if rest == ["send"] and method == "POST":
            if not item.is_draft or self._queued(item.id):
                raise GraphError(400, "ErrorInvalidOperation", "Only a draft can be sent.")
            self._check_submission(item.mime)  # refused before anything is queued: the draft stays
            self._submit(item, save=True)
            return Response(202)
        if rest[:1] == ["attachments"] and method == "GET":
            return self._attachments(item, segs[2:], rest[1:])
        if rest == ["attachments"] and method == "POST":
            return json_response(201, self.uploads.post_attachment(item, self._json_body(body)))
        if rest == ["attachments", "createuploadsession"] and method == "POST":
            return json_response(201, self.uploads.create(item, self._json_body(body)))
        raise GraphError(405, "BadRequest", f"{method} is not supported on this message path.")

    def _attachments(self, item: Item, segs: list[str], low: list[str]) -> Response:
        parts = shape.attachments(item)
        if not low:
            return json_response(
                200,
                {
                    "@odata.context": f"{self.graph_url}/$metadata#users('{self.oid}')/messages('{item.id}')"
                    "/attachments",
                    "value": [shape.attachment_json(item, p) for p in parts],
                },
            )
        match = [p for p in parts if shape.attachment_id(item, p) == segs[0]]
        if not match:
            raise NotFound(f"no attachment {segs[0]!r} on message {item.id!r}")
        if low[1:] == ["$value"]:
            return Response(200, match[0].data, {"Content-Type": match[0].content_type})
        if low[1:]:
            raise GraphError(400, "BadRequest", "Unsupported attachment path.")
        return json_response(200, shape.attachment_json(item, match[0]))

    def _list(self, folder_id: str | None, q: dict[str, str], prefer: dict[str, str]) -> Response:
        default = self._page_size(prefer) if "odata.maxpagesize" in prefer else 10
        top, skip = min(self._int(q, "$top", default), MAX_PAGE), self._int(q, "$skip", 0)
        with self.mb.lock:
            items = (
                self.mb.in_folder(folder_id)
                if folder_id
                else [
                    i
                    for i in self.mb.items.values()
                    if not self.mb.folders[i.folder_id].hidden and i.folder_id not in self.denied
                ]
            )
        flt = q.get("$filter", "").strip()
        if flt:
            items = self._filter(items, flt, allow_mid=True)
        order = q.get("$orderby", "receivedDateTime desc").strip().lower()
        items.sort(key=lambda i: (i.received, i.id), reverse=not order.endswith(" asc"))
        sel = q["$select"].split(",") if q.get("$select") else None
        page = items[skip : skip + top]
        where = f"mailFolders('{folder_id}')/messages" if folder_id else "messages"
        out: dict[str, Any] = {
            "@odata.context": f"{self.graph_url}/$metadata#users('{self.oid}')/{where}",
            "value": [{**self._msg(i, sel), **self._size_prop(i, q)} for i in page],
        }
        if skip + top < len(items):
            extra = "".join(
                f"&{k}={quote(v)}" for k, v in q.items() if k in ("$filter", "$select", "$orderby", "$expand")
            )
            out["@odata.nextLink"] = f"{self.graph_url}/me/{where}?$top={top}&$skip={skip + top}{extra}"
        return json_response(200, out)

    def _filter(self, items: list[Item], flt: str, *, allow_mid: bool) -> list[Item]:
        m = _SIZE_FILTER.match(flt)
        if m:  # PidTagMessageSize: the simulator reports the size of the raw MIME
            op, limit = _COMPARE[m.group(2).lower()], int(m.group(3))
            return [i for i in items if op(len(i.mime), limit)]
        m = _DATE_FILTER.match(flt)
        if m:
            since = _parse_date(m.group(1))
            return [i for i in items if i.received >= since]
        m = _MID_FILTER.match(flt)
        if m and allow_mid:
            mid = m.group(1).replace("''", "'")
            return [i for i in items if (i.message_id_override or shape.summarize(i.mime).message_id) == mid]
        allowed = "receivedDateTime ge <date>" + (" or internetMessageId eq '<id>'" if allow_mid else "")
        raise GraphError(
            400, "ErrorInvalidUrlQueryFilter", f"The simulator supports only $filter={allowed}; got {flt!r}."
        )

    def _delta(self, folder_id: str, q: dict[str, str], prefer: dict[str, str]) -> Response:
        mb = self.mb
        size = self._page_size(prefer)
        rid: str | None = None
        by_date = False
        if "$deltatoken" in q or "$skiptoken" in q:
            tok = _decode_token(q.get("$deltatoken") or q["$skiptoken"])
            self._check_epoch(tok, f"mailFolders/{folder_id}/messages/delta")
            if tok.get("f") != folder_id:
                raise GraphError(400, "BadRequest", "This delta token belongs to another folder.")
            since, upto, offset = tok["a"], tok.get("b"), tok.get("o", 0)
            flt, sel, rid = tok.get("flt"), tok.get("sel"), tok.get("r")
        else:
            since, upto, offset = 0, None, 0
            flt_text = q.get("$filter", "").strip()
            flt = None
            if flt_text:
                m = _DATE_FILTER.match(flt_text)
                if not m:
                    raise GraphError(
                        400,
                        "ErrorInvalidUrlQueryFilter",
                        f"Message delta supports only $filter=receivedDateTime ge <date>; got {flt_text!r}.",
                    )
                flt = iso(_parse_date(m.group(1)))
            order = q.get("$orderby", "").strip()
            if order and order.lower().split() != ["receiveddatetime", "desc"]:
                raise GraphError(
                    400, "BadRequest",
                    f"Message delta supports only $orderby=receivedDateTime desc; got {order!r}.",
                )
            by_date = bool(order)
            sel = q["$select"].split(",") if q.get("$select") else None
        since_dt = _parse_date(flt) if flt else None
        with mb.lock:
            if upto is None:
                upto = mb.seq
            if since == 0 and since_dt is not None and rid is None:
                rid = self._first_round(folder_id, upto, since_dt, by_date)
            if rid is not None:
                listing = self._rounds.get(rid)
                if listing is None:  # e.g. the simulator restarted in the middle of a round
                    raise GraphError(
                        self.expired_status, "syncStateNotFound",
                        "The sync state generation is not found. Start a new delta round.",
                    )
                changes = [(iid, "upsert") for iid in listing]
            else:
                changes = mb.changes(folder_id, since, upto)
            page = changes[offset : offset + size]
            value = []
            for iid, _kind in page:
                item = mb.items.get(iid)
                if item is None or item.folder_id != folder_id:
                    value.append(
                        {
                            "@odata.type": "#microsoft.graph.message",
                            "id": mb.external_id(iid, folder_id, _IMMUTABLE.get()),
                            "@removed": {"reason": "deleted"},
                        }
                    )
                elif since_dt is None or item.received >= since_dt:
                    value.append(self._msg(item, sel))
        base = f"{self.graph_url}/me/mailFolders('{folder_id}')/messages/delta"
        out: dict[str, Any] = {"@odata.context": f"{self.graph_url}/$metadata#Collection(message)"}
        if offset + size < len(changes):
            link = _encode_token(
                {
                    "f": folder_id,
                    "a": since,
                    "b": upto,
                    "o": offset + size,
                    "e": mb.epoch,
                    "flt": flt,
                    "sel": sel,
                    **({"r": rid} if rid else {}),
                }
            )
            out["@odata.nextLink"] = f"{base}?$skiptoken={link}"
        else:
            link = _encode_token({"f": folder_id, "a": upto, "e": mb.epoch, "flt": flt, "sel": sel})
            out["@odata.deltaLink"] = f"{base}?$deltatoken={link}"
        out["value"] = value
        return json_response(200, out)

    def _first_round(self, folder_id: str, upto: int, since: dt.datetime, by_date: bool) -> str:
        """Fix the listing of a filtered first round: at most `delta_cap` messages, shuffled unless
        $orderby=receivedDateTime desc was asked for. Later (incremental) rounds are not capped: Microsoft
        documents no cap for them (docs/graph-notes.md section 4)."""
        mb = self.mb
        found = [mb.items.get(iid) for iid, kind in mb.changes(folder_id, 0, upto) if kind == "upsert"]
        items = [i for i in found if i is not None and i.folder_id == folder_id and i.received >= since]
        if by_date:
            items.sort(key=lambda i: (i.received, i.id), reverse=True)
        else:
            random.Random(f"{self.delta_seed}:{folder_id}:{upto}").shuffle(items)
        if self.delta_cap is not None:
            items = items[: self.delta_cap]
        rid = uuid.uuid4().hex[:12]
        with self._lock:
            self._rounds[rid] = [i.id for i in items]
            while len(self._rounds) > 256:  # rounds abandoned half-way
                self._rounds.pop(next(iter(self._rounds)))
        return rid

    def _check_epoch(self, tok: dict[str, Any], what: str) -> None:
        if tok.get("e") != self.mb.epoch:
            hdrs = {"Location": f"{self.graph_url}/me/{what}"} if self.expired_status == 410 else {}
            raise GraphError(
                self.expired_status,
                "syncStateNotFound",
                "The sync state generation is not found. The delta token is expired and data "
                "must be synchronized again.",
                hdrs,
            )

    # --- writing ------------------------------------------------------------------------------------
    def _create(self, folder_id: str | None, headers: dict[str, str], body: bytes) -> Response:
        folder = folder_id or self.mb.folder("drafts").id
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "text/plain":
            if folder_id is not None and not self.sizes.mime_on_folder_path:
                # Graph takes MIME on /me/messages only; a folder's messages want JSON
                raise GraphError(400, "UnableToDeserializePostBody", "were unable to deserialize ")
            mime = self._b64_mime(body)
            if not self.sizes.mime_keeps_message_id:  # Exchange stamps its own Message-ID
                mime = _set_message_id(mime, email.utils.make_msgid(domain="sim.prod.outlook.test"))
            item = self.mb.add(folder, mime, is_draft=True, is_read=True)
            return json_response(201, self._msg(item))
        data = self._json_body(body)
        props = self._extended(data.get("singleValueExtendedProperties"))
        flags = props.get("integer 0x0e07")
        is_draft = True
        is_read = True
        if flags is not None:
            try:
                n = int(flags)
            except ValueError:
                raise GraphError(
                    400,
                    "ErrorInvalidExtendedPropertyValue",
                    f"Integer 0x0E07 must be an integer, got {flags!r}.",
                ) from None
            is_draft = bool(n & 0x8)
            is_read = bool(n & 0x1)
        sent = self._systime(props.get("systemtime 0x0039"), "SystemTime 0x0039")
        received = self._systime(props.get("systemtime 0x0e06"), "SystemTime 0x0E06")
        mid = data.get("internetMessageId") or props.get("string 0x1035")
        mime = shape.mime_from_json(data, self.upn, message_id=mid, date=sent)
        item = self.mb.add(
            folder, mime, is_draft=is_draft, is_read=is_read, sent=sent, received=received or sent
        )
        return json_response(
            201,
            {
                "@odata.context": f"{self.graph_url}/$metadata#users('{self.oid}')/messages/$entity",
                **self._msg(item),
            },
        )

    @staticmethod
    def _extended(props: Any) -> dict[str, str]:
        if props is None:
            return {}
        if not isinstance(props, list):
            raise GraphError(400, "ErrorInvalidRequest", "singleValueExtendedProperties must be a list.")
        out = {}
        for p in props:
            if not isinstance(p, dict) or not isinstance(p.get("id"), str) or "value" not in p:
                raise GraphError(
                    400, "ErrorInvalidRequest", "Each extended property needs an id and a value."
                )
            out[re.sub(r"\s+", " ", p["id"].strip().lower())] = str(p["value"])
        return out

    @staticmethod
    def _systime(value: str | None, name: str) -> dt.datetime | None:
        if value is None:
            return None
        try:
            t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise GraphError(
                400, "ErrorInvalidExtendedPropertyValue", f"{name} must be an ISO 8601 time, got {value!r}."
            ) from None
        return t if t.tzinfo else t.replace(tzinfo=dt.UTC)

    def _patch(self, item: Item, body: bytes) -> Response:
        data = self._json_body(body)
        fields: dict[str, Any] = {}
        for key, value in data.items():
            if key == "isRead" and isinstance(value, bool):
                fields["is_read"] = value
            elif key == "categories" and isinstance(value, list):
                fields["categories"] = [str(c) for c in value]
            elif (
                key == "flag"
                and isinstance(value, dict)
                and value.get("flagStatus") in ("notFlagged", "complete", "flagged")
            ):
                fields["flag"] = value["flagStatus"]
            elif key == "importance" and value in ("low", "normal", "high"):
                fields["importance"] = value
            elif key == "internetMessageId" and isinstance(value, str) and _MSGID.fullmatch(value):
                if not item.is_draft:  # "Updatable only if isDraft = true" (the message resource)
                    raise GraphError(
                        400,
                        "ErrorInvalidPropertyUpdateSentMessage",
                        "internetMessageId can be updated on a draft only.",
                    )
                fields["mime"] = _set_message_id(item.mime, value)
            else:
                raise GraphError(
                    400,
                    "ErrorInvalidProperty",
                    f"The simulator cannot set {key}={value!r}; it "
                    "updates isRead, categories, flag.flagStatus, importance, a draft's internetMessageId.",
                )
        changed = self.mb.change(item.id, **fields) if fields else item
        return json_response(200, self._msg(changed))

    def _send_mail(self, headers: dict[str, str], body: bytes) -> Response:
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "text/plain":
            mime = self._b64_mime(body)
            self._check_submission(mime)
            self._submit(self.mb.add("drafts", mime, is_draft=True, is_read=True), save=True)
            return Response(202)
        data = self._json_body(body)
        msg = data.get("message")
        if not isinstance(msg, dict):
            raise GraphError(400, "ErrorInvalidRequest", "sendMail needs a 'message' object.")
        if not msg.get("toRecipients") and not msg.get("ccRecipients") and not msg.get("bccRecipients"):
            raise GraphError(
                400,
                "ErrorInvalidRecipients",
                "At least one recipient is not valid., A message "
                "can't be sent because it contains no recipients.",
            )
        mime = shape.mime_from_json(msg, self.upn)
        self._check_submission(mime)
        save = data.get("saveToSentItems", True) is not False
        self._submit(self.mb.add("drafts", mime, is_draft=True, is_read=True), save=save)
        return Response(202)

    # --- the transport ------------------------------------------------------------------------------
    # "Things to know about sendMail" (Microsoft Learn): step 1 creates the message in the sender's
    # Drafts and answers 202; after the answer, transport picks it up, moves it to Sent Items (or
    # deletes it, depending on message properties and rules), then routes and delivers it.
    def _submit(self, item: Item, *, save: bool) -> None:
        """Step 1 done (the draft exists and was checked): queue it for the transport."""
        with self._lock:
            self._queue.append(Submitted(item.id, self.clock() + self.sent_delay, save))
        self.run_transport()

    def _check_submission(self, mime: bytes) -> None:
        """What Exchange refuses at submission (before the 202): no recipients, a From not allowed."""
        s = shape.summarize(mime)
        if not (s.to or s.cc or s.bcc):
            raise GraphError(400, "ErrorInvalidRecipients", "The message has no recipients.")
        if not s.sender:
            return  # no From: Exchange sends as the mailbox owner
        addr = str(s.sender[0]["emailAddress"].get("address") or "").lower()
        if addr and addr != self.upn.lower() and addr not in self.send_as:
            raise GraphError(
                403,
                "ErrorSendAsDenied",
                "The user account which was used to submit this request does not have the right to "
                "send mail on behalf of the specified sending account. Cannot submit message.",
            )

    def run_transport(self, *, flush: bool = False) -> int:
        """Let the transport take every submitted message whose time has come (all of them with
        flush); returns how many it took. Called on every request and admin call (no thread)."""
        with self._lock:
            now = self.clock()
            due = [q for q in self._queue if flush or q.due <= now]
            self._queue = [q for q in self._queue if not (flush or q.due <= now)]
        for q in due:
            try:
                item = self.mb.item(q.item_id)
            except NotFound:
                continue  # the draft was deleted before the transport took it: nothing goes out
            self._deliver(item, save=q.save and self.sent_copy == "keep")
        return len(due)

    def _queued(self, item_id: str) -> bool:
        with self._lock:
            return any(q.item_id == item_id for q in self._queue)

    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def _deliver(self, item: Item, *, save: bool) -> None:
        """The transport takes the draft: Sent Items (non-draft) or deleted, then delivery."""
        mime = item.mime
        s = shape.summarize(mime)
        rcpts = [r["emailAddress"]["address"] for r in (*s.to, *s.cc, *s.bcc)]
        now = utcnow()
        if save:
            self.mb.move(item.id, "sentitems")
            self.mb.change(item.id, is_draft=False, is_read=True, sent=now)
        else:
            self.mb.delete(item.id)
        with self._lock:
            self.outgoing.append(
                {
                    "message_id": s.message_id,
                    "subject": s.subject,
                    "to": rcpts,
                    "sent": iso(now),
                    "sha256": hashlib.sha256(mime).hexdigest(),
                    "mime": base64.b64encode(mime).decode(),
                }
            )
        if any(r.lower() == self.upn.lower() for r in rcpts):
            self.mb.add("inbox", mime, received=now)

    # --- batch ------------------------------------------------------------------------------------
    def _batch(self, body: bytes) -> Response:
        """Up to 20 requests. Like Graph, they go to Outlook in waves of at most 4 at a time, and each
        needs one of the mailbox's concurrent-request slots while it runs (`self.slots`): a request
        that finds none free (another batch or request holds them) answers 429 inside the batch.
        A request with `dependsOn` waits for those requests and answers 424 if one of them failed."""
        data = self._json_body(body)
        reqs = data.get("requests")
        if not isinstance(reqs, list) or not reqs:
            raise GraphError(400, "BadRequest", "A $batch body needs a non-empty 'requests' list.")
        if len(reqs) > BATCH_MAX:
            raise GraphError(
                400, "BadRequest", f"A $batch takes at most {BATCH_MAX} requests; got {len(reqs)}."
            )
        ids = [r.get("id") if isinstance(r, dict) else None for r in reqs]
        if any(not isinstance(i, str) or not i for i in ids) or len(set(ids)) != len(ids):
            raise GraphError(400, "BadRequest", "Each $batch request needs a unique string 'id'.")
        for r in reqs:
            if not isinstance(r.get("url"), str) or not r["url"]:
                raise GraphError(400, "BadRequest", f"$batch request {r['id']!r} has no url.")
            deps = r.get("dependsOn", [])
            if not isinstance(deps, list) or any(d not in ids or d == r["id"] for d in deps):
                raise GraphError(400, "BadRequest", f"$batch request {r['id']!r} has an invalid dependsOn.")
        waves: list[list[dict[str, Any]]] = [[]]
        for r in reqs:  # a request joins the current wave unless it is full or depends on a member
            if len(waves[-1]) >= 4 or set(r.get("dependsOn", [])) & {w["id"] for w in waves[-1]}:
                waves.append([])
            waves[-1].append(r)
        done: dict[str, dict[str, Any]] = {}
        for wave in waves:
            granted = self.slots.acquire(len(wave)) if self.slots is not None else len(wave)
            try:
                for k, r in enumerate(wave):
                    if any(done[d]["status"] >= 400 for d in r.get("dependsOn", []) if d in done):
                        resp = error_response(424, "FailedDependency", "A request it depends on failed.")
                    elif k >= granted:
                        with self._lock:
                            self.inner_throttled["concurrency"] += 1
                        wait = float(getattr(self.slots, "retry_after", 1.0))
                        resp = throttled_response(max(0.5, wait / 2))
                        resp.headers["x-ms-throttle-reason"] = "MailboxConcurrency"  # simulator's label
                    else:
                        resp = self._inner(r)
                    done[r["id"]] = self._entry(r["id"], resp)
                on = bool(getattr(self.slots, "on", False))  # the wave's run time is part of the limits model
                delay = float(getattr(self.slots, "inner_delay", 0.0) or 0.0) if on else 0.0
                if granted and delay:
                    time.sleep(delay)  # the wave's requests run (in parallel) this long, holding their slots
            finally:
                if self.slots is not None and granted:
                    self.slots.release(granted)
        return json_response(200, {"responses": [done[r["id"]] for r in reqs]})

    def _inner(self, r: dict[str, Any]) -> Response:
        method, url = str(r.get("method", "GET")).upper(), str(r["url"])
        hdrs = {str(k).lower(): str(v) for k, v in (r.get("headers") or {}).items()}
        inner_body = r.get("body")
        raw = b""
        if inner_body is not None:
            if hdrs.get("content-type", "application/json").startswith("application/json"):
                raw = json.dumps(inner_body).encode()
                hdrs.setdefault("content-type", "application/json")
            else:
                raw = str(inner_body).encode()
        retry = self.gate()
        if retry is not None:
            with self._lock:
                self.inner_throttled["window"] += 1
            return throttled_response(retry)
        return self.handle(method, "/" + url.lstrip("/"), hdrs, raw)

    def _entry(self, rid: str, resp: Response) -> dict[str, Any]:
        ctype = resp.headers.get("Content-Type", "")
        if not resp.body:
            rbody: Any = None
        elif ctype.startswith("application/json"):
            rbody = json.loads(resp.body)
        elif ctype.startswith("text/") and self.batch_values == "text":  # a plain (JSON) string
            rbody = resp.body.decode("utf-8", "replace")
        else:
            rbody = base64.b64encode(resp.body).decode()
        entry: dict[str, Any] = {"id": rid, "status": resp.status, "headers": resp.headers}
        if rbody is not None:
            entry["body"] = rbody
        return entry

    # --- small helpers ------------------------------------------------------------------------------
    @staticmethod
    def _json_body(body: bytes) -> dict[str, Any]:
        try:
            data = json.loads(body or b"{}")
        except ValueError as e:
            raise GraphError(400, "BadRequest", f"The request body is not valid JSON: {e}.") from None
        if not isinstance(data, dict):
            raise GraphError(400, "BadRequest", "The request body must be a JSON object.")
        return data

    @staticmethod
    def _b64_mime(body: bytes) -> bytes:
        try:
            mime = base64.b64decode(body.strip(), validate=True)
        except (ValueError, binascii.Error):
            raise GraphError(
                400,
                "ErrorMimeContentInvalidBase64String",
                "MIME content must be base64-encoded when the Content-Type is text/plain.",
            ) from None
        if not mime.strip() or b":" not in mime.split(b"\n", 1)[0]:
            raise GraphError(400, "ErrorMimeContentInvalid", "The decoded body is not an RFC 5322 message.")
        return mime

    @staticmethod
    def _int(q: dict[str, str], key: str, default: int) -> int:
        if key not in q:
            return default
        try:
            n = int(q[key])
        except ValueError:
            raise GraphError(400, "BadRequest", f"{key} must be a whole number, got {q[key]!r}.") from None
        if n < 0:
            raise GraphError(400, "BadRequest", f"{key} must not be negative.")
        return n

    @staticmethod
    def _page_size(prefer: dict[str, str]) -> int:
        raw = prefer.get("odata.maxpagesize")
        if raw is None:
            return DEFAULT_PAGE
        try:
            return max(1, min(MAX_PAGE, int(raw)))
        except ValueError:
            raise GraphError(400, "BadRequest", f"odata.maxpagesize must be a number, got {raw!r}.") from None


_MSGID = re.compile(r"<[^<>\s@]+@[^<>\s@]+>")


def _set_message_id(mime: bytes, message_id: str) -> bytes:
    """mime with its Message-ID header replaced (or added at the top)."""
    head, sep, rest = mime.partition(b"\r\n\r\n") if b"\r\n\r\n" in mime else mime.partition(b"\n\n")
    eol = b"\r\n" if sep == b"\r\n\r\n" else b"\n"
    lines = head.split(eol)
    out: list[bytes] = []
    skipping = False
    for line in lines:
        if skipping and line[:1] in (b" ", b"\t"):
            continue
        skipping = line.lower().startswith(b"message-id:")
        if not skipping:
            out.append(line)
    out.insert(0, b"Message-ID: " + message_id.encode("ascii"))
    return eol.join(out) + sep + rest


def throttled_response(retry_after: float) -> Response:
    value = f"{retry_after:.3f}".rstrip("0").rstrip(".") or "0"
    resp = error_response(429, "TooManyRequests", "Please retry again later.", {"Retry-After": value})
    return resp


def format_http_date(t: dt.datetime) -> str:
    return email.utils.format_datetime(t, usegmt=True)
