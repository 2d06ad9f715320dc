"""GraphSource: the Microsoft Graph mail adapter (implements sync.ports.MailSource), over requests.

One requests.Session per source (given, e.g. the tests' in-process transport to the simulator, or a
new one over HTTPS); every request carries a fresh `client-request-id`, explicit connect/read timeouts,
`Prefer: IdType="ImmutableId"`, and goes through the mailbox's Governor (4 in flight, Retry-After,
bounded jittered retries). Every failure leaves as a sync.errors exception, translated here
(`transport_error` for requests' exceptions, `_send_once` for Graph's answers): a truncated or dropped
response is Unreachable (Retryable), so a page is never half-used, and a lost answer to the request that
hands a message over is MaybeSent. Tokens, message bodies and cursors are never logged.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import email.utils
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any
from urllib.parse import quote, urlsplit

import requests
import urllib3.exceptions

from sync.errors import (
    AccessDenied,
    AuthRequired,
    CursorExpired,
    FolderBad,
    LifeboatError,
    MaybeSent,
    MessageBad,
    RequestTooLarge,
    Retryable,
    SendDeferred,
    SendRejected,
    Throttled,
    TooLarge,
    Unreachable,
)
from sync.governor import Governor
from sync.model import Changes, Folder, MessageCopy, RemoteItem
from sync.plan import SYSTEM_FOLDERS
from sync.ports import TokenProvider
from sync.sources import graph_parts, network
from sync.sources.graph_parts import FilePart

log = logging.getLogger(__name__)

# Well-known folder names Graph resolves in /me/mailFolders/{name}. The first group is what a user
# reads; the rest are system folders that "*" (all user folders) never includes.
WELL_KNOWN = ("inbox", "sentitems", "drafts", "archive")
SYSTEM = tuple(sorted(SYSTEM_FOLDERS - {"msgfolderroot"}))
SUMMARY_FIELDS = "id,receivedDateTime,internetMessageId,subject,from,isRead,parentFolderId,changeKey"
CURSOR_GONE = {"syncstatenotfound", "resyncrequired", "syncstateinvalid"}
BATCH_MAX = 20
MIN_BUDGET = 256 * 1024  # after a 413, requests are made smaller down to this, then given up
SEND_TIMEOUT = (5.0, 120.0)
# "Applying $filter in a delta query returns only up to 5,000 messages" (Get incremental changes to
# messages in a folder): a filtered first round that listed this many may have left messages out.
DELTA_CAP = 5000
LIST_PAGE = 500  # messages per page when a capped folder's window is listed through /messages
# Messages whose PidTagMessageSize (`Integer 0x0E08`) is above this are fetched one by one, never in
# a $batch, so a batch of 20 answers at most about 20 MB (base64: 27 MB) of JSON.
LARGE_MESSAGE = 1 << 20
MAX_MESSAGE = 200 << 20  # a single message is streamed up to this size (Exchange Online allows 150 MB)
LARGE_TTL = 300.0  # seconds a listing of the large messages is trusted
LARGE_FILTER = ("singleValueExtendedProperties/any(ep: ep/id eq 'Integer 0x0E08' and "
                "cast(ep/value, Edm.Int32) gt {size})")


def connected(exc: requests.RequestException) -> bool:
    """False if no connection was made (refused, no route, connect timeout, TLS), so the request never
    left; True if it failed after the request was handed over (a read timeout, a dropped or cut answer)."""
    if isinstance(exc, requests.ConnectTimeout | requests.exceptions.SSLError
                  | requests.exceptions.ProxyError):
        return False  # a ProxyError: the proxy or its CONNECT tunnel failed before our request went in
    if isinstance(exc, requests.ReadTimeout | requests.exceptions.ChunkedEncodingError
                  | requests.exceptions.ContentDecodingError):
        return True
    if isinstance(exc, requests.ConnectionError):
        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        return not isinstance(reason, urllib3.exceptions.NewConnectionError
                              | urllib3.exceptions.ConnectTimeoutError)
    return False


def transport_error(exc: requests.RequestException, what: str, url: str, *, peer: str = "Graph",
                    rid: str = "", sends: bool = False) -> LifeboatError:
    """What a request that got no (whole) answer means, as sync.errors (pure). A failed TLS check or a
    timeout is Unreachable; a refused, failed or dropped connection Retryable (worth a new connection);
    a certificate the system does not trust or a proxy that refuses is NetworkBlocked (never an outage).
    With `sends` (the request hands a message over), one that may have arrived is MaybeSent instead."""
    tag = f" (request {rid})" if rid else ""
    refused = network.blocked(exc, what, urlsplit(url).netloc)
    if refused is not None:  # our side's network said no (TLS inspection, a proxy): not an outage, not sent
        return refused
    if sends and connected(exc):
        return MaybeSent(f"{what}: no answer from {peer} after the request went out{tag}; the message "
                         "may have been accepted")
    if isinstance(exc, requests.exceptions.SSLError):
        return Unreachable(f"{what}: TLS with {urlsplit(url).netloc} failed{tag}")
    if isinstance(exc, requests.Timeout):
        return Unreachable(f"{what}: {peer} did not answer in time{tag}")
    if isinstance(exc, requests.ConnectionError | requests.exceptions.ChunkedEncodingError
                  | requests.exceptions.ContentDecodingError):
        return Retryable(f"{what}: the connection to {peer} failed or dropped{tag}")
    return Unreachable(f"{what}: the request to {peer} failed: {type(exc).__name__}{tag}")


def _error_code(resp: requests.Response) -> tuple[str, str]:
    try:
        err = resp.json().get("error", {})
        return str(err.get("code", "")), str(err.get("message", ""))[:300]
    except (ValueError, AttributeError):
        return "", ""


def forbidden(detail: str, code: str, message: str, challenge: str,
              bad: type[LifeboatError]) -> LifeboatError:
    """What a 403 means, decided by Graph's error code (pure). Only a Conditional Access claims
    challenge asks for a new sign-in; ErrorSendAsDenied is permanent for the message; anything else
    (ErrorAccessDenied on a folder or item, or a permission the app was never granted:
    ErrorAccessDenied, Authorization_RequestDenied...) is permanent for that folder or item and says
    what IT can do. 401 (handled by the caller) and msal's invalid_grant are the sign-in cases."""
    text = f"{detail}: {message}" if message else detail
    if "insufficient_claims" in challenge.lower():
        return AuthRequired(text, fix="sign in again with `lifeboat login` (your organisation's "
                                      "Conditional Access asks for it)")
    if code.lower() == "errorsendasdenied":
        return SendRejected(text, fix="send from your own address, or ask IT to give you Send As or "
                                      "Send on Behalf rights on the address you used")
    if issubclass(bad, SendRejected | SendDeferred):
        # the message is fine; the app may not send (Mail.Send not granted): retried, not failed
        return SendDeferred(text, fix=AccessDenied.fix)
    if issubclass(bad, MessageBad):
        return MessageBad(text, fix=AccessDenied.fix)
    return AccessDenied(text)


def _retry_after(headers: Mapping[str, str] | None, default: float = 1.0) -> float:
    value = (headers or {}).get("Retry-After") or (headers or {}).get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else default  # may be fractional: "2.128"
    except ValueError:
        return default


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t.astimezone(UTC) if t.tzinfo else t.replace(tzinfo=UTC)


def _address(value: Any) -> str | None:
    ea = (value or {}).get("emailAddress") or {}
    addr, name = ea.get("address") or "", ea.get("name") or ""
    if not addr and not name:
        return None
    return f"{name} <{addr}>" if name and addr and name != addr else (addr or name)


def remote_item(data: Mapping[str, Any], folder_id: str) -> RemoteItem:
    """A RemoteItem from a Graph message resource (delta or list)."""
    is_read = data.get("isRead")
    if isinstance(is_read, str):  # seen in Microsoft's own examples: "true"
        is_read = is_read.lower() == "true"
    return RemoteItem(
        provider_id=str(data["id"]),
        folder_id=str(data.get("parentFolderId") or folder_id),
        received_at=_parse_time(data.get("receivedDateTime")),
        message_id=data.get("internetMessageId"),
        subject=data.get("subject"),
        sender=_address(data.get("from") or data.get("sender")),
        is_read=is_read if isinstance(is_read, bool) else None,
        change_key=data.get("changeKey") or data.get("@odata.etag"),
    )


def changes_page(payload: Mapping[str, Any], folder_id: str) -> Changes:
    """A Changes page from a delta response body (pure; raises Unreachable on a malformed page)."""
    if not isinstance(payload, Mapping) or not isinstance(payload.get("value"), list):
        raise Retryable("Graph returned a delta page without a `value` list (truncated or malformed)")
    items: list[RemoteItem] = []
    removed: list[str] = []
    for entry in payload["value"]:
        if not isinstance(entry, Mapping) or "id" not in entry:
            raise Retryable("Graph returned a delta entry without an id (malformed page)")
        if "@removed" in entry:
            removed.append(str(entry["id"]))
        else:
            items.append(remote_item(entry, folder_id))
    next_link, delta_link = payload.get("@odata.nextLink"), payload.get("@odata.deltaLink")
    if not next_link and not delta_link:
        raise Retryable("Graph returned a delta page with neither nextLink nor deltaLink (truncated?)")
    return Changes(tuple(items), tuple(removed), str(next_link or delta_link), complete=not next_link)


def listing(payload: Any, what: str) -> tuple[list[Mapping[str, Any]], str | None]:
    """(entries with an id, the next page's link) of a Graph collection page (pure); Retryable when the
    answer is not one (cut short or malformed: never half-used)."""
    if not isinstance(payload, Mapping) or not isinstance(payload.get("value"), list):
        raise Retryable(f"{what}: Graph returned a page without a `value` list (truncated or malformed)")
    nxt = payload.get("@odata.nextLink")
    return [v for v in payload["value"] if isinstance(v, Mapping) and "id" in v], str(nxt) if nxt else None


_HEADER_LINE = re.compile(r"^[!-9;-~]+:")


def decode_value(body: Any) -> bytes | None:
    """A message's `$value` from inside a $batch answer, or None when it must be fetched on its own.

    Microsoft does not document this encoding for message MIME (docs/graph-notes.md, section 8):
    binary bodies come base64-encoded, and a text/* body may come as a plain string. Accepted: valid
    base64, or a plain string that is clearly MIME (a header line first) and 7-bit (so its bytes are
    exact). Anything else (broken base64, 8-bit text whose original bytes a JSON string may not carry)
    is None: fetch it alone.
    """
    if not isinstance(body, str) or not body:
        return None
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        pass
    if body.isascii() and _HEADER_LINE.match(body):
        return body.encode("ascii")
    return None


class GraphSource:
    """MailSource over Microsoft Graph v1.0 for the signed-in user (`/me`)."""

    def __init__(
        self,
        graph_url: str,
        tokens: TokenProvider,
        *,
        ca_file: str | None = None,
        proxy: str | None = None,
        pac_url: str | None = None,
        timeout: tuple[float, float] = (5.0, 30.0),
        probe_timeout: tuple[float, float] = (3.0, 5.0),
        page_size: int = 200,
        governor: Governor | None = None,
        delta_cap: int = DELTA_CAP,
        large_message: int = LARGE_MESSAGE,
        session: requests.Session | None = None,
    ) -> None:
        """session: the transport every request goes through, owned by the source from then on (closed
        by close()); default sync.sources.network.session: TLS verified against the system's certificate
        store plus ca_file, through `proxy` (else the PAC file at pac_url, else the system's), no retries
        of its own. Tests pass the simulator's in-process one."""
        network.check_ca_file(ca_file)
        self.base = graph_url.rstrip("/")
        self._tokens = tokens
        # per request as before, for a session given by the caller; network.session's adapter adds it to
        # the system's store (never certifi's list alone)
        self._verify: str | bool = ca_file or True
        self.timeout = timeout
        self.probe_timeout = probe_timeout
        self.page_size = page_size
        self.governor = governor or Governor()
        self.requests_sent = 0  # HTTP requests sent (counting each $batch once)
        self.requests_ok = 0  # of those, answered 2xx
        self.inner_ok = 0  # requests inside $batch answered 2xx (Graph counts each against its limits)
        self._well_known: dict[str, str] | None = None
        self.request_budget = graph_parts.REQUEST_BUDGET  # larger requests go through drafts and uploads
        self.attachment_max = graph_parts.ATTACHMENT_MAX  # the largest file an upload session takes
        self.delta_cap = delta_cap  # a filtered first delta round lists at most this many (Graph: 5,000)
        self.large_message = large_message  # bytes above which a message is fetched on its own
        self.fetched_alone = 0  # messages fetched outside $batch (large, or an unclear $batch body)
        self._large: set[str] | None = None
        self._large_at = 0.0
        if session is None:
            session = network.session(ca_file, proxy, pac_url=pac_url,
                                      pool_maxsize=self.governor.max_in_flight + 2)
        self._session = session
        self._session.headers["User-Agent"] = "Lifeboat/0.1 (email continuity)"

    def close(self) -> None:
        self._session.close()

    # -- one HTTP exchange, translated -------------------------------------------------------

    def _url(self, path_or_url: str) -> str:
        if path_or_url.startswith(("https://", "http://")):
            if not path_or_url.startswith(self.base + "/") and urlsplit(path_or_url).netloc != urlsplit(
                self.base
            ).netloc:
                raise FolderBad("a stored Graph link points to another host; it will not be followed")
            return path_or_url
        return self.base + path_or_url

    def _send(self, method: str, path_or_url: str, **kwargs: Any) -> requests.Response:
        """`_send_once`, but a rejected token is renewed once and the request tried again."""
        try:
            return self._send_once(method, path_or_url, **kwargs)
        except AuthRequired:
            invalidate = getattr(self._tokens, "invalidate", None)
            if invalidate is None:
                raise
            invalidate()  # the token may have been revoked early: renew it once and try again
            return self._send_once(method, path_or_url, **kwargs)

    def _send_once(
        self,
        method: str,
        path_or_url: str,
        *,
        what: str,
        bad: type[LifeboatError] = FolderBad,
        timeout: tuple[float, float] | None = None,
        headers: Mapping[str, str] | None = None,
        fresh: bool = False,
        sends: bool = False,
        **kwargs: Any,
    ) -> requests.Response:
        """Send once; return a 2xx response whose body has been read in full, or raise sync.errors.
        sends: the request hands a message over (sendMail, a draft's /send): a lost answer is MaybeSent."""
        url = self._url(path_or_url)
        rid = str(uuid.uuid4())
        hdrs = {
            "Authorization": f"Bearer {self._tokens.token()}",
            "client-request-id": rid,
            "return-client-request-id": "true",
            "Prefer": 'IdType="ImmutableId"',
            **(headers or {}),
        }
        if fresh:  # a retry after a 5xx or a drop: do not reuse a pooled connection
            hdrs["Connection"] = "close"
            self._session.get_adapter(url).close()
        self.requests_sent += 1
        try:
            resp = self._session.request(
                method, url, headers=hdrs, timeout=timeout or self.timeout, verify=self._verify,
                allow_redirects=False, **kwargs,
            )
        except requests.RequestException as exc:
            raise transport_error(exc, what, url, rid=rid, sends=sends) from exc
        log.debug("graph %s %s -> %s (client-request-id %s)", method, urlsplit(url).path[-60:],
                  resp.status_code, rid)
        status = resp.status_code
        if status < 300:
            self.requests_ok += 1
            return resp
        code, message = _error_code(resp)
        detail = f"{what}: Graph answered {status} {code or resp.reason} (request {rid})"
        if status == 413 or (status == 400 and "maximum request length" in message.lower()):
            raise RequestTooLarge(f"{detail}: {message}" if message else detail)
        if status == 429:
            raise Throttled(detail, retry_after=_retry_after(resp.headers))
        if status == 401:
            raise AuthRequired(detail)
        if status == 410 or code.lower() in CURSOR_GONE:
            raise CursorExpired(detail)
        if status == 403:
            raise forbidden(detail, code, message, resp.headers.get("WWW-Authenticate", ""), bad)
        if status >= 500:  # 503/504: the server may say when to come back
            told = _retry_after(resp.headers, -1.0) if status in (503, 504) else -1.0
            raise Retryable(detail, retry_after=told if told >= 0 else None)
        raise bad(f"{detail}: {message}" if message else detail)

    def _json(self, resp: requests.Response, what: str) -> Any:
        try:
            return resp.json()
        except ValueError as exc:  # truncated or not JSON: never use half a page
            raise Retryable(f"{what}: Graph sent an incomplete or invalid JSON body") from exc

    def _get_json(self, path: str, *, what: str, bad: type[LifeboatError] = FolderBad,
                  headers: Mapping[str, str] | None = None) -> Any:
        def attempt(n: int) -> Any:
            return self._json(self._send("GET", path, what=what, bad=bad, headers=headers, fresh=n > 1), what)

        return self.governor.run(attempt)

    # -- MailSource -------------------------------------------------------------------------

    def probe(self) -> None:
        """One cheap request to a mail endpoint, short timeout, no retries: the inbox folder's id.
        Not `/me`: the user resource is served by the directory (Entra ID), which keeps answering
        while Exchange Online (mail) is down. A 200 whose body is not the folder (cut short) fails."""
        resp = self._send("GET", "/me/mailFolders/inbox?$select=id", what="probe", bad=Unreachable,
                          timeout=self.probe_timeout)
        body = self._json(resp, "probe")
        if not isinstance(body, dict) or not body.get("id"):
            raise Unreachable("probe: Graph answered the inbox request without the folder's id")

    def me(self) -> str:
        """The signed-in user's name (`GET /me`, answered by the directory) for `lifeboat doctor`: proves
        Graph accepts the token. Unreachable / AuthRequired / AccessDenied say what is wrong."""
        resp = self._send("GET", "/me?$select=userPrincipalName,mail", what="read the signed-in user",
                          bad=Unreachable, timeout=self.probe_timeout)
        body = self._json(resp, "read the signed-in user")
        if not isinstance(body, dict):
            raise Unreachable("Graph answered /me without the user")
        return str(body.get("userPrincipalName") or body.get("mail") or "")

    def well_known_ids(self, names: Iterable[str] = WELL_KNOWN + SYSTEM) -> dict[str, str]:
        """{folder id: well-known name} for the names this mailbox has, in one $batch."""
        names = list(names)
        out: dict[str, str] = {}
        for group in [names[i : i + BATCH_MAX] for i in range(0, len(names), BATCH_MAX)]:
            reqs = [{"id": str(i), "method": "GET", "url": f"/me/mailFolders/{n}?$select=id"}
                    for i, n in enumerate(group)]
            for rid, (status, _h, body) in self._batch(reqs, what="resolve well-known folders").items():
                if status == 200 and isinstance(body, Mapping) and body.get("id"):
                    out[str(body["id"])] = group[int(rid)]
        return out

    def folders(self) -> list[Folder]:
        """Every mail folder (search folders excluded), parents before children."""
        well_known = self.well_known_ids()
        out: list[Folder] = []
        pending: list[str | None] = [None]
        while pending:
            parent = pending.pop(0)
            path: str | None = (
                "/me/mailFolders?$top=100" if parent is None
                else f"/me/mailFolders/{quote(parent, safe='=')}/childFolders?$top=100"
            )
            while path:
                entries, path = listing(self._get_json(path, what="list folders", bad=Unreachable),
                                        "list folders")
                for f in entries:
                    if "mailSearchFolder" in str(f.get("@odata.type", "")):
                        continue
                    fid = str(f["id"])
                    out.append(Folder(fid, str(f.get("displayName", "")), f.get("parentFolderId"),
                                      well_known.get(fid), f.get("totalItemCount")))
                    if f.get("childFolderCount"):
                        pending.append(fid)
        return out

    def changes(self, folder_id: str, cursor: str | None, window_start: datetime | None) -> Changes:
        if cursor:
            path = cursor  # query options are baked into the token: never repeat them
        else:
            path = f"/me/mailFolders/{quote(folder_id, safe='=')}/messages/delta?$select={SUMMARY_FIELDS}"
            if window_start is not None:
                stamp = window_start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                # documented for delta: $orderby=receivedDateTime desc (a capped round then lists the newest)
                path += f"&$filter=receivedDateTime+ge+{stamp}&$orderby=receivedDateTime+desc"
        prefer = f'IdType="ImmutableId", odata.maxpagesize={self.page_size}'
        payload = self._get_json(path, what=f"delta of folder …{folder_id[-8:]}", headers={"Prefer": prefer})
        return changes_page(payload, folder_id)

    def window_page(self, folder_id: str, link: str | None, window_start: datetime | None) -> Changes:
        """One page of the folder's messages received since window_start through plain paging
        (`/messages`, not delta: it has no 5,000 cap), newest first. `cursor` is the next page's link."""
        if link:
            path = link
        else:
            path = (f"/me/mailFolders/{quote(folder_id, safe='=')}/messages?$select={SUMMARY_FIELDS}"
                    f"&$orderby=receivedDateTime+desc&$top={LIST_PAGE}")
            if window_start is not None:
                stamp = window_start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                path += f"&$filter=receivedDateTime+ge+{stamp}"
        what = f"list folder …{folder_id[-8:]}"
        entries, nxt = listing(self._get_json(path, what=what), what)
        return Changes(tuple(remote_item(m, folder_id) for m in entries), (), nxt, complete=not nxt)

    def _batch(
        self, requests_: list[dict[str, Any]], *, what: str
    ) -> dict[str, tuple[int, dict[str, str], Any]]:
        """POST one $batch (<= 20 requests); {request id: (status, headers, body)} for every request."""
        if len(requests_) > BATCH_MAX:
            raise ValueError("a Graph $batch holds at most 20 requests")

        def attempt(n: int) -> Any:
            resp = self._send("POST", "/$batch", what=what, bad=Unreachable, fresh=n > 1,
                              json={"requests": requests_})
            return self._json(resp, what)

        # Outlook runs 4 requests of a batch at once and counts them toward the mailbox's 4 concurrent
        # requests: a batch takes every slot of the governor (one batch in flight per mailbox).
        payload = self.governor.run(attempt, slots=self.governor.max_in_flight)
        responses = payload.get("responses") if isinstance(payload, Mapping) else None
        if not isinstance(responses, list):
            raise Retryable(f"{what}: Graph sent a $batch answer without `responses`")
        out = {}
        for r in responses:
            status = str(r.get("status", 0)) if isinstance(r, Mapping) and "id" in r else ""
            if status.isdigit():  # anything else counts as missing (a malformed answer)
                headers = r.get("headers")
                out[str(r["id"])] = (int(status), dict(headers) if isinstance(headers, Mapping) else {},
                                     r.get("body"))
        missing = {str(q["id"]) for q in requests_} - set(out)
        if missing:
            raise Retryable(f"{what}: the $batch answer lacks {len(missing)} of its responses (truncated?)")
        return out

    def _mime_batch(self, ids: Sequence[str]) -> dict[str, bytes | Exception]:
        """Fetch up to 20 MIME bodies in one $batch, retrying per-item 429s and 5xx a few times."""
        result: dict[str, bytes | Exception] = {}
        todo = list(ids)
        stalled = 0  # rounds in a row that fetched nothing: bounded, while slow progress goes on
        waited = 0.0
        alone: list[str] = []  # answered, but the body is not clearly the MIME: fetched on its own
        while todo:
            reqs = [{"id": str(i), "method": "GET", "url": f"/me/messages/{quote(pid, safe='=')}/$value",
                     "headers": {"Prefer": 'IdType="ImmutableId"'}} for i, pid in enumerate(todo)]
            answers = self._batch(reqs, what=f"fetch {len(todo)} messages")
            retry: list[str] = []
            wait = 0.0
            for i, pid in enumerate(todo):
                status, headers, body = answers[str(i)]
                if 200 <= status < 300:
                    self.inner_ok += 1
                    raw = decode_value(body)
                    if raw is None:
                        alone.append(pid)
                    else:
                        result[pid] = raw
                elif status == 429 or status >= 500:
                    retry.append(pid)
                    if status == 429:
                        self.governor.throttled += 1
                        wait = max(wait, _retry_after(headers))
                    result[pid] = (Throttled(f"message …{pid[-8:]}: still throttled",
                                             retry_after=_retry_after(headers)) if status == 429
                                   else Unreachable(f"message …{pid[-8:]}: Graph answered {status}"))
                elif status == 401:
                    raise AuthRequired("fetch messages: Graph answered 401 inside $batch")
                else:
                    msg = (body or {}).get("error", {}).get("code", "") if isinstance(body, Mapping) else ""
                    result[pid] = MessageBad(f"message …{pid[-8:]}: Graph answered {status} {msg}".rstrip())
            stalled = stalled + 1 if len(retry) == len(todo) else 0
            waited = waited + wait if stalled else 0.0  # time throttled since the last progress
            if not retry:
                break
            if wait:  # throttled: bounded by time waited without progress (the governor's 429 budget)
                if waited > self.governor.max_retry_after:
                    break
                self.governor.throttle_pause(wait)
            else:  # 5xx inside the batch: a few attempts
                if stalled >= self.governor.max_attempts:
                    break
                self.governor.pause(self.governor.backoff(stalled or 1))
            todo = retry
        for pid in alone:
            result[pid] = self._fetch_alone(pid)
        return result

    def _fetch_alone(self, provider_id: str) -> bytes | Exception:
        self.fetched_alone += 1
        try:
            return self.fetch_one(provider_id)
        except (MessageBad, FolderBad, Unreachable, Throttled) as exc:  # per item, like fetch_mime's
            return exc

    def large_ids(self) -> set[str]:
        """Ids of the mailbox's messages whose PidTagMessageSize is above `large_message`, from one
        size-filtered listing (message delta cannot $expand extended properties: see
        docs/graph-notes.md, section 8), reused for LARGE_TTL seconds."""
        now = time.monotonic()
        if self._large is not None and now - self._large_at < LARGE_TTL:
            return self._large
        flt = quote(LARGE_FILTER.format(size=self.large_message), safe="")
        path: str | None = f"/me/messages?$select=id&$top=1000&$filter={flt}"
        found: set[str] = set()
        try:
            while path:
                entries, path = listing(self._get_json(path, what="list large messages"),
                                        "list large messages")
                found.update(str(m["id"]) for m in entries)
        except FolderBad as exc:  # the filter was refused: batch everything rather than fetch nothing
            log.warning("large messages cannot be listed (%s); all messages go through $batch",
                        type(exc).__name__)
        self._large, self._large_at = found, now
        return found

    def fetch_mime(self, provider_ids: Sequence[str]) -> dict[str, bytes | Exception]:
        """Raw MIME per id: $batch of 20, ONE batch at a time (Graph allows one batch in flight per
        mailbox); messages above `large_message` bytes are fetched one by one (fetch_one, streamed)."""
        large = self.large_ids() if provider_ids else set()
        small = [p for p in provider_ids if p not in large]
        out: dict[str, bytes | Exception] = {}
        for i in range(0, len(small), BATCH_MAX):
            out.update(self._mime_batch(small[i : i + BATCH_MAX]))
        for pid in provider_ids:
            if pid in large:
                out[pid] = self._fetch_alone(pid)
        return out

    def fetch_one(self, provider_id: str, max_bytes: int = MAX_MESSAGE) -> bytes:
        """GET one message's MIME ($value) outside $batch, streamed; MessageBad above max_bytes."""
        what = f"fetch message …{provider_id[-8:]}"

        def attempt(n: int) -> bytes:
            resp = self._send("GET", f"/me/messages/{quote(provider_id, safe='=')}/$value",
                              what=what, bad=MessageBad, fresh=n > 1, stream=True)
            try:
                too_big = MessageBad(f"{what}: larger than {max_bytes >> 20} MB; not cached")
                length = resp.headers.get("Content-Length") or ""
                if length.isdigit() and int(length) > max_bytes:
                    raise too_big
                buf = bytearray()
                for chunk in resp.iter_content(1 << 16):
                    buf += chunk
                    if len(buf) > max_bytes:
                        raise too_big
                return bytes(buf)
            except requests.RequestException as exc:  # a read timeout, a drop or a cut body mid-stream
                raise Retryable(f"{what}: the connection dropped while reading the message") from exc
            finally:
                resp.close()

        return self.governor.run(attempt)

    def list_messages(self, folder_id: str) -> list[RemoteItem]:
        """Every message of a folder by plain paging (`/messages`, no delta): for comparisons only."""
        out: list[RemoteItem] = []
        path: str | None = (f"/me/mailFolders/{quote(folder_id, safe='=')}/messages"
                            f"?$select={SUMMARY_FIELDS}&$top=100")
        while path:
            entries, path = listing(self._get_json(path, what="list messages"), "list messages")
            out.extend(remote_item(m, folder_id) for m in entries)
        return out

    def find_by_message_id(self, message_id: str) -> list[MessageCopy]:
        """Every copy of the Message-ID in the whole mailbox (`/me/messages` covers every folder,
        Deleted Items included), with its folder and whether it is still a draft: sendMail parks a
        message in Drafts until the transport sends it and moves it to Sent Items (or elsewhere)."""
        literal = message_id.replace("'", "''")
        params = {"$filter": f"internetMessageId eq '{literal}'", "$select": "id,parentFolderId,isDraft"}

        def attempt(n: int) -> Any:
            return self._json(self._send("GET", "/me/messages", what="look a message up", params=params,
                                         fresh=n > 1), "look a message up")

        hits, _ = listing(self.governor.run(attempt), "look a message up")
        names = self._folder_names() if hits else {}
        return [
            MessageCopy(str(h["id"]), str(h.get("parentFolderId") or ""),
                        # unknown counts as a draft: never claim "sent" without Graph saying so
                        is_draft=h.get("isDraft") not in (False, "false", "False"),
                        folder=names.get(str(h.get("parentFolderId") or "")))
            for h in hits if h.get("id")
        ]

    def _folder_names(self) -> dict[str, str]:
        """{folder id: well-known name}, resolved once per source (folder ids do not change)."""
        if self._well_known is None:
            self._well_known = self.well_known_ids()
        return self._well_known

    def save_copy(self, folder_id: str, raw: bytes, sent_at: datetime, message_id: str,
                  recipients: Sequence[str] = (), on_created: Callable[[str], None] | None = None) -> str:
        """Create a NON-draft sent item from raw MIME (JSON + extended properties; see FACTS.md).

        Files that do not fit the create request (4 MB) follow on the created item: under 3 MB by
        `POST .../attachments`, larger through upload sessions; on_created(id) is called before them.
        TooLarge (give up) when a file is over 150 MB or Graph refuses one for good (the half-made copy
        is deleted). A create answered 413 (Graph's limit lower than ours) is tried again with fewer
        files inside. Not retried on 5xx or a drop (the copy may exist): the caller looks it up first.
        """
        outcome = "a copy of it can never be stored in Sent Items"
        path = f"/me/mailFolders/{quote(folder_id, safe='=')}/messages"
        budget = self.request_budget
        while True:
            body, files = sent_item_parts(raw, sent_at, message_id, recipients, budget)
            self._check_fits(body, files, TooLarge, outcome)
            try:
                created = self._post(path, what="save a sent copy", bad=MessageBad, json=body)
                break
            except RequestTooLarge as exc:  # refused unread: nothing was created
                if budget < MIN_BUDGET:
                    raise TooLarge(f"Graph refuses even a small create request ({exc}): {outcome}") from exc
                budget //= 2
        if not isinstance(created, Mapping) or not created.get("id"):
            raise Unreachable("save a sent copy: Graph's answer lacks the new item's id")
        pid = str(created["id"])
        if files:
            if on_created is not None:
                on_created(pid)
            try:
                for f in files:
                    self._attach(pid, f, MessageBad)
            except (MessageBad, SendRejected) as exc:  # refused for good: it will never fit this way
                self.discard_copy(pid, quiet=True)
                raise TooLarge(f"Graph refused a file of the sent copy for good ({exc}); the copy "
                               "can never be stored in Sent Items this way") from exc
        return pid

    def discard_copy(self, provider_id: str, *, quiet: bool = False) -> None:
        """Delete an item we made (a half-made copy or draft) for good; gone already is fine."""
        path = f"/me/messages/{quote(provider_id, safe='=')}/permanentDelete"
        try:
            self.governor.run(lambda n: self._send("POST", path, what="delete an incomplete copy",
                                                   bad=MessageBad, fresh=n > 1))
        except MessageBad:
            return  # not found: already gone
        except LifeboatError:
            if not quiet:
                raise
            log.info("an incomplete item …%s could not be deleted now", provider_id[-8:])

    def _check_fits(self, body: Mapping[str, Any] | bytes, files: Sequence[FilePart],
                    error: type[LifeboatError], outcome: str) -> None:
        size = len(body) if isinstance(body, bytes) else len(json.dumps(body))
        if size > self.request_budget:
            raise error(f"the message's text is over Graph's 4 MB request limit: {outcome}")
        for f in files:
            if len(f.data) > self.attachment_max:
                raise error(f"the attachment {f.name!r} is {len(f.data) / 2**20:.0f} MB, over the "
                            f"{self.attachment_max / 2**20:.0f} MB Microsoft 365 takes: {outcome}")

    def _post(self, path: str, *, what: str, bad: type[LifeboatError], **kwargs: Any) -> Any:
        """POST once (not idempotent: only a 429 is tried again) and return the JSON answer (or None)."""
        resp = self.governor.run(lambda n: self._send("POST", path, what=what, bad=bad,
                                                      timeout=SEND_TIMEOUT, **kwargs), retry=False)
        return self._json(resp, what) if resp.content else None

    def _attach(self, message_id: str, f: FilePart, bad: type[LifeboatError]) -> None:
        """Attach one file to a message: a POST under 3 MB, else an upload session in 320 KiB multiples.

        Just under 3 MiB a POST's base64 may pass a 4,000,000-byte limit: such a file tries a session
        first and POSTs only if Graph finds it too small for one ("3 MB" is not defined either way)."""
        base = f"/me/messages/{quote(message_id, safe='=')}/attachments"
        what = f"attach {f.name!r}"
        if len(f.data) < graph_parts.SESSION_MIN and f.request_size <= self.request_budget:
            self._post(base, what=what, bad=bad, json=f.graph_json())
            return
        try:
            session = self._post(base + "/createUploadSession", what=f"start uploading {f.name!r}",
                                 bad=bad, json={"AttachmentItem": f.item_json()})
        except (SendRejected, MessageBad) as exc:
            if len(f.data) >= graph_parts.SESSION_MIN or "LessThanMinimumSize" not in str(exc):
                raise
            self._post(base, what=what, bad=bad, json=f.graph_json())
            return
        url = session.get("uploadUrl") if isinstance(session, Mapping) else None
        if not isinstance(url, str) or not url.startswith("https://"):
            raise Unreachable(f"upload {f.name!r}: Graph's answer lacks an https uploadUrl")
        total = len(f.data)
        for start in range(0, total, graph_parts.CHUNK):
            chunk = f.data[start : start + graph_parts.CHUNK]

            def put(n: int, start: int = start, chunk: bytes = chunk) -> None:
                self._put_range(url, start, chunk, total, bad, f.name)

            self.governor.run(put, retry=False)

    def _put_range(self, url: str, start: int, chunk: bytes, total: int, bad: type[LifeboatError],
                   name: str) -> None:
        """PUT one byte range to a pre-authenticated upload URL: no Authorization header, ever."""
        what = f"upload {name!r}"
        headers = {"Content-Type": "application/octet-stream",
                   "Content-Range": f"bytes {start}-{start + len(chunk) - 1}/{total}"}
        self.requests_sent += 1
        try:
            resp = self._session.put(url, data=chunk, headers=headers, timeout=SEND_TIMEOUT,
                                     verify=self._verify, allow_redirects=False)
        except requests.RequestException as exc:
            raise transport_error(exc, what, url, peer="the upload URL") from exc
        if resp.status_code < 300:
            self.requests_ok += 1
            return
        code, message = _error_code(resp)
        detail = f"{what}: the upload URL answered {resp.status_code} {code or resp.reason}: {message}"
        if resp.status_code == 429:
            raise Throttled(detail, retry_after=_retry_after(resp.headers))
        if resp.status_code >= 500:
            raise Retryable(detail)
        raise bad(detail)

    def send_mime(self, raw: bytes) -> None:
        """POST /me/sendMail with the whole MIME base64-encoded; 202 means accepted (not delivered).

        A message whose request would pass Graph's 4 MB limit (or that Graph answers 413) goes the
        documented way instead: a MIME draft without its large files, the files attached to it (upload
        sessions from 3 MB), then `POST /me/messages/{id}/send`. Never retried except after a 429
        (sending is not idempotent). 4xx other than 401/403/429 raise SendRejected with Graph's words.
        """
        data = base64.b64encode(raw)
        budget = self.request_budget
        if len(data) <= budget:
            def attempt(n: int) -> None:
                try:
                    self._send("POST", "/me/sendMail", what="send", bad=SendRejected, data=data,
                               headers={"Content-Type": "text/plain"}, timeout=SEND_TIMEOUT, sends=True)
                except FolderBad as exc:  # pragma: no cover - bad=SendRejected above
                    raise SendRejected(str(exc)) from exc

            try:
                self.governor.run(attempt, retry=False)
                return
            except RequestTooLarge:  # refused unread: nothing was sent; take the large-message route
                log.info("sendMail found the message too large: sending it through a draft")
                budget = max(MIN_BUDGET, len(data) // 2)  # Graph's limit is below ours: aim lower
        self._send_through_draft(raw, budget)

    def _send_through_draft(self, raw: bytes, budget: int) -> None:
        """Draft (MIME without its large files) + attachments + send. A failure before the send deletes
        the draft (nothing went out) and is never MaybeSent; the send itself is the only step whose lost
        answer may mean "sent" (MaybeSent, and the draft stays for the lookup to find)."""
        small, files = graph_parts.split_mime(raw, budget)
        outcome = "it can never be sent through Microsoft 365 (the backup route may take it)"
        self._check_fits(base64.b64encode(small), files, SendRejected, outcome)
        message_id = str(graph_parts.parse(small).get("Message-ID", "")).strip()
        draft_id: str | None = None
        try:
            if message_id:
                self._drop_drafts(message_id)
            created = self._post("/me/messages", what="create a draft", bad=SendRejected,
                                 data=base64.b64encode(small), headers={"Content-Type": "text/plain"})
            if not isinstance(created, Mapping) or not created.get("id"):
                raise Unreachable("create a draft: Graph's answer lacks the draft's id")
            draft_id = str(created["id"])
            path = f"/me/messages/{quote(draft_id, safe='=')}"
            if message_id and created.get("internetMessageId") != message_id:
                # the outbox finds the message by the Message-ID it stamped ("updatable only if isDraft")
                fix = {"internetMessageId": message_id}
                self.governor.run(lambda n: self._send("PATCH", path, what="keep the Message-ID",
                                                       bad=SendRejected, json=fix, fresh=n > 1))
            for f in files:
                self._attach(draft_id, f, SendRejected)
        except LifeboatError:
            if draft_id is not None:
                self.discard_copy(draft_id, quiet=True)
            raise
        send = f"/me/messages/{quote(draft_id, safe='=')}/send"
        try:
            self._post(send, what="send a draft", bad=SendRejected, sends=True)
        except (SendRejected, Throttled):  # answered, and not sent: the draft must not linger
            self.discard_copy(draft_id, quiet=True)
            raise

    def _drop_drafts(self, message_id: str) -> None:
        """Delete drafts of this Message-ID left by an earlier attempt that failed before its send."""
        literal = message_id.replace("'", "''")
        params = {"$filter": f"internetMessageId eq '{literal}'", "$select": "id,isDraft"}
        page = self.governor.run(lambda n: self._json(self._send(
            "GET", "/me/mailFolders/drafts/messages", what="look for an earlier draft", params=params,
            fresh=n > 1), "look for an earlier draft"))
        for hit in listing(page, "look for an earlier draft")[0]:
            if hit.get("isDraft") is True and hit.get("id"):
                self.discard_copy(str(hit["id"]))


def _header_values(msg: EmailMessage, header: str) -> list[str]:
    """The header's values unparsed (a header the email package cannot parse must not stop a copy)."""
    return [str(v) for k, v in msg.raw_items() if k.lower() == header.lower()]


def _recipients(msg: EmailMessage, header: str) -> list[dict[str, Any]]:
    return [{"emailAddress": {"name": name, "address": addr}}
            for name, addr in email.utils.getaddresses(_header_values(msg, header)) if addr]


def _subject(msg: EmailMessage) -> str:
    try:
        return str(msg.get("Subject", ""))
    except (AttributeError, ValueError, TypeError, LookupError):
        return " ".join(_header_values(msg, "Subject"))


def sent_item_json(raw: bytes, sent_at: datetime, message_id: str, recipients: Sequence[str] = ()
                   ) -> dict[str, Any]:
    """The JSON that makes Graph create a sent (not draft) copy of raw MIME, every file inside (pure)."""
    return sent_item_parts(raw, sent_at, message_id, recipients)[0]


def sent_item_parts(raw: bytes, sent_at: datetime, message_id: str, recipients: Sequence[str] = (),
                    budget: int | None = None) -> tuple[dict[str, Any], list[FilePart]]:
    """(create JSON of a sent copy, the files left out of it to attach afterwards) (pure).

    Recipients (the envelope) not in To/Cc become bccRecipients; inline parts of multipart/related
    keep isInline and contentId so the copy renders; the Message-ID is set once, as internetMessageId.
    With a budget, files go inside the JSON smallest first while it stays under budget and each is
    under 3 MB; the others are returned, largest first.
    """
    msg = graph_parts.parse(raw)
    part = graph_parts.body_part(msg)
    content, ctype = "", "text"
    if part is not None:
        try:
            content = str(part.get_content())
        except (LookupError, ValueError):  # unknown charset or broken encoding: keep what we can
            payload = part.get_payload(decode=True)
            content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
        ctype = "html" if part.get_content_type() == "text/html" else "text"
    stamp = sent_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    to, cc = _recipients(msg, "To"), _recipients(msg, "Cc")
    shown = {r["emailAddress"]["address"].lower() for r in (*to, *cc)}
    bcc = [{"emailAddress": {"name": "", "address": a}} for a in dict.fromkeys(recipients)
           if a.lower() not in shown]
    sender = email.utils.getaddresses(_header_values(msg, "From"))
    out: dict[str, Any] = {
        "subject": _subject(msg),
        "body": {"contentType": ctype, "content": content},
        "toRecipients": to,
        "ccRecipients": cc,
        # The Message-ID once: internetMessageId is Graph's own property for PR_INTERNET_MESSAGE_ID
        # (0x1035); setting the extended property as well writes the same property twice.
        "internetMessageId": message_id,
        "isRead": True,
        "singleValueExtendedProperties": [
            {"id": "Integer 0x0E07", "value": "1"},  # PR_MESSAGE_FLAGS: read, not unsent
            {"id": "SystemTime 0x0039", "value": stamp},  # PR_CLIENT_SUBMIT_TIME
            {"id": "SystemTime 0x0E06", "value": stamp},  # PR_MESSAGE_DELIVERY_TIME
        ],
    }
    if bcc:
        out["bccRecipients"] = bcc
    if sender and sender[0][1]:
        out["from"] = {"emailAddress": {"name": sender[0][0], "address": sender[0][1]}}
    files = graph_parts.leaf_parts(msg)
    inside: set[int] = set(range(len(files)))
    if budget is not None:
        inside, size = set(), len(json.dumps(out))
        for i in sorted(range(len(files)), key=lambda i: len(files[i].data)):
            if len(files[i].data) < graph_parts.SESSION_MIN and size + files[i].request_size <= budget:
                inside.add(i)
                size += files[i].request_size
    if inside:
        out["attachments"] = [files[i].graph_json() for i in sorted(inside)]
    rest = sorted((files[i] for i in range(len(files)) if i not in inside), key=lambda f: -len(f.data))
    return out, rest
