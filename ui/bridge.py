"""The page's only door to Python: `Bridge`, given to pywebview as js_api.

Every public method validates its arguments, reads the store or enqueues a command, and returns plain
JSON (errors as {"error", "fix", "kind"}); it never calls the network. Mail HTML reaches the page only
as sanitized iframe srcdoc (ui.safehtml). All else is `_underscore`: pywebview exposes public names.
"""

from __future__ import annotations

import collections
import functools
import json
import mimetypes
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
import webbrowser
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from sync.errors import BadArgument, BadQuery, LifeboatError, MessageBad
from sync.failover import route_for
from sync.model import Mode, OutboxState
from ui import safehtml

MAX_PAGE = 500
MAX_QUERY = 500
MAX_FIELD = 10_000
MAX_BODY = 2_000_000
MAX_ATTACH_BYTES = 35 * 1024 * 1024
CACHED_BODIES = 16  # rendered bodies kept per window (reopening, theme, links, the prefetched next one)
MAX_CACHED_SRCDOC = 1_000_000  # characters: larger bodies are rendered on each open, never kept
MODES = ("normal", "continuity")
RUNNABLE = {  # attachments that would run code if "opened": they can be saved, not opened
    ".exe", ".com", ".bat", ".cmd", ".scr", ".pif", ".msi", ".msp", ".ps1", ".psm1", ".vbs", ".vbe", ".js",
    ".jse", ".wsf", ".wsh", ".hta", ".lnk", ".url", ".reg", ".cpl", ".jar", ".sh", ".bash", ".desktop",
    ".appimage", ".run", ".py", ".pyw", ".pl", ".rb", ".command", ".app", ".dll", ".sys", ".iso", ".img",
    ".vhd", ".vhdx", ".docm", ".xlsm", ".pptm", ".chm", ".library-ms", ".settingcontent-ms", ".appref-ms",
}
_REPLY_PREFIX = re.compile(r"^\s*((re|aw|sv|antw|vs|r|fw|fwd|wg|tr|rv)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)


def _api(method: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a LifeboatError into {"error", "fix", "kind"} so the page can show it (and loses nothing)."""

    @functools.wraps(method)
    def wrapper(self: Bridge, *args: Any, **kwargs: Any) -> Any:
        self._calls[method.__name__] += 1
        try:
            return method(self, *args, **kwargs)
        except LifeboatError as exc:
            message = exc.args[0] if exc.args else str(exc)
            return {"error": message, "fix": exc.fix, "kind": type(exc).__name__}

    return wrapper


def _int(value: Any, name: str, lo: int = 0, hi: int = 2**62) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise BadArgument(f"{name} must be a whole number from {lo} to {hi}, not {value!r}")
    return value


def _str(value: Any, name: str, limit: int = MAX_FIELD, *, empty: bool = True) -> str:
    if not isinstance(value, str) or len(value) > limit or (not empty and not value.strip()):
        what = "a non-empty text" if not empty else "a text"
        raise BadArgument(f"{name} must be {what} of at most {limit} characters")
    return value


def _addresses(value: Any, name: str) -> list[str]:
    """A list of addresses, or one string with commas/semicolons between them."""
    if isinstance(value, str):
        value = [v for v in re.split(r"[;,]\s*(?=[^,;]*@)", value) if v.strip()]
    if not isinstance(value, list) or len(value) > 500 or not all(isinstance(v, str) for v in value):
        raise BadArgument(f"{name} must be a list of addresses")
    return [_str(v, name, 1000).strip() for v in value if v.strip()]


def _thread_key(subject: str | None) -> str:
    return _REPLY_PREFIX.sub("", subject or "").strip().lower()


class Bridge:
    """The js_api object. `commands` is a queue.Queue-like object the engine's workers read."""

    def __init__(
        self,
        store: Any,
        commands: Any | None = None,
        *,
        me: str = "",
        open_url: Callable[[str], Any] | None = None,
        open_path: Callable[[str], Any] | None = None,
    ) -> None:
        self._store = store
        self._commands = commands if commands is not None else queue.Queue()
        self._me = me
        self._open_url = open_url or (lambda url: webbrowser.open(url, new=2))
        self._open_path = open_path or _open_with_system
        self._window: Any = None
        self._folders_cache: dict[str, dict[str, Any]] = {}
        self._picked: set[str] = set()
        self._thread_cache: tuple[Any, list[dict[str, Any]]] = (None, [])
        self._calls: collections.Counter[str] = collections.Counter()  # API calls made, by name
        # (id, stored_at, size, has_mime, show_images, dark) -> rendered body: a replaced MIME misses
        self._bodies: collections.OrderedDict[tuple[Any, ...], safehtml.Rendered] = collections.OrderedDict()
        self._bodies_lock = threading.Lock()
        self._tmp = Path(tempfile.mkdtemp(prefix="lifeboat-open-"))
        os.chmod(self._tmp, 0o700)

    def _known_folders(self, fresh: bool) -> dict[str, dict[str, Any]]:
        """Folders by id; counting 50,000 rows per page would be slow, so later pages reuse the counts."""
        if fresh or not self._folders_cache:
            self._folders_cache = {f["provider_id"]: f for f in self._store.folders()}
        return self._folders_cache

    def _attach_window(self, window: Any) -> None:
        self._window = window

    # ------------------------------------------------------------------ reading

    @_api
    def start(self, limit: Any = 200) -> dict[str, Any]:
        """What the page needs to be usable, in one call: status, folders and the inbox's first page."""
        limit = _int(limit, "limit", 1, MAX_PAGE)
        folders = self._known_folders(fresh=True)
        listed = [_folder(f) for f in folders.values()]
        inbox = next((f for f in listed if f["well_known"] == "inbox"), listed[0] if listed else None)
        first = None
        if inbox is not None:
            rows = self._store.list_messages(inbox["id"], 0, limit)
            items = [_row(r) for r in rows]
            first = {"folder": inbox["id"], "total": inbox["count"], "offset": 0, "items": items}
        return {"status": self._status(), "folders": listed, "first": first}

    @_api
    def status(self) -> dict[str, Any]:
        """The banner: mode, since, which route sends, conditions, outbox counts."""
        return self._status()

    def _status(self) -> dict[str, Any]:
        mode, since, reason = self._store.load_mode()
        try:
            state = json.loads(self._store.mode_state() or "{}")
        except ValueError:
            state = {}
        try:
            route = str(route_for(Mode(mode)))
        except ValueError:
            route = "primary"
        conditions = [c for c in ("offline", "sign_in_needed") if state.get(c)]
        shown = "sign_in_needed" if "sign_in_needed" in conditions else "offline" if conditions else mode
        outbox = {str(s): 0 for s in OutboxState}
        for item in self._store.outbox_list():
            outbox[str(item.state)] += 1
        return {
            "mode": mode,
            "shown": shown,
            "since": since.isoformat() if since else None,
            "reason": reason,
            "route": route,
            "conditions": conditions,
            "forced": state.get("forced", "auto"),
            "paused": bool(self._store.get_setting("sync_paused", False)),
            "me": self._me,
            "outbox": outbox,
        }

    @_api
    def folders(self) -> list[dict[str, Any]]:
        return [_folder(f) for f in self._store.folders()]

    @_api
    def messages(
        self, folder_id: Any, offset: Any = 0, limit: Any = 100, threaded: Any = False
    ) -> dict[str, Any]:
        """One page of a folder, newest first, with the folder's total for the virtual list.

        threaded=True groups conversations: each thread's newest message heads it (depth 0, with the
        thread's size), its older messages follow (depth 1); threads are ordered by their newest message.
        """
        folder_id = _str(folder_id, "folder_id", 1000, empty=False)
        offset = _int(offset, "offset")
        limit = _int(limit, "limit", 1, MAX_PAGE)
        if not isinstance(threaded, bool):
            raise BadArgument("threaded must be true or false")
        known = self._known_folders(fresh=offset == 0)
        if folder_id not in known:
            raise BadArgument(f"there is no folder {folder_id!r}", fix="reload the folder list")
        total = known[folder_id].get("count", 0)
        if threaded:
            rows = self._threads(folder_id, total)
            return {"total": len(rows), "offset": offset, "items": rows[offset:offset + limit]}
        rows = self._store.list_messages(folder_id, offset, limit)
        return {"total": total, "offset": offset, "items": [_row(r) for r in rows]}

    def _threads(self, folder_id: str, total: int) -> list[dict[str, Any]]:
        """The folder's rows in conversation order (cached until the folder's count or newest row changes)."""
        newest = self._store.list_messages(folder_id, 0, 1)
        stamp = (folder_id, total, newest[0]["id"] if newest else None)
        if self._thread_cache[0] != stamp:
            groups: dict[str, list[dict[str, Any]]] = {}
            for r in self._store.list_messages(folder_id, 0, max(total, 1)):
                row = _row(r)
                groups.setdefault(row["thread"] or f"#{row['id']}", []).append(row)
            flat: list[dict[str, Any]] = []
            for members in groups.values():  # dicts keep insertion order: newest thread first
                for depth, row in enumerate(members):
                    size = 0 if depth else len(members)
                    flat.append({**row, "depth": min(depth, 1), "thread_size": size})
            self._thread_cache = (stamp, flat)
        return self._thread_cache[1]

    @_api
    def search(self, query: Any, limit: Any = 50) -> dict[str, Any]:
        """Full-text search in the store's query language (the CLI's too); the last word also matches as
        a prefix so results come while typing. A query with nothing to search for yet finds nothing."""
        query = _str(query, "query", MAX_QUERY)
        limit = _int(limit, "limit", 1, MAX_PAGE)
        try:
            rows = self._store.search(query, limit, prefix_last=True)
        except BadQuery:
            return {"query": query, "items": []}
        return {"query": query, "items": [_row(r) for r in rows]}

    @_api
    def message(self, id: Any, show_images: Any = False, dark: Any = False) -> dict[str, Any]:
        """Headers, attachments and the sanitized body (an iframe srcdoc) of one message."""
        id = _int(id, "id", 1)
        if not isinstance(show_images, bool) or not isinstance(dark, bool):
            raise BadArgument("show_images and dark must be true or false")
        row = self._store.message(id)
        if row is None:
            raise MessageBad(f"there is no message {id} in the cache", fix="reload the message list")
        body = self._body(id, row, show_images, dark)
        return {
            "id": id,
            "subject": row.get("subject") or "",
            "sender": row.get("sender") or "",
            "to": row.get("to_addrs") or "",
            "cc": row.get("cc_addrs") or "",
            "date": row.get("date"),
            "folder": row.get("folder"),
            "message_id": row.get("message_id"),
            "signed": row.get("is_signed", False),
            "encrypted": row.get("is_encrypted", False),
            "problems": row.get("problems") or [],
            "attachments": [
                {k: a.get(k) for k in ("index", "filename", "content_type", "size", "inline")}
                for a in row.get("attachments", [])
                if not a.get("inline") and (a.get("content_id") or "").strip("<>") not in body.used_cids
            ],
            "srcdoc": body.srcdoc,
            "links": list(body.links),
            "blocked_images": body.blocked_images,
            "show_images": show_images,
        }

    @_api
    def prefetch(self, id: Any, dark: Any = False) -> dict[str, Any]:
        """Parse and render a message into the cache (the next one in the list while this one is read);
        returns only whether it is cached now: no content."""
        id = _int(id, "id", 1)
        if not isinstance(dark, bool):
            raise BadArgument("dark must be true or false")
        row = self._store.message(id)
        if row is None:
            raise MessageBad(f"there is no message {id} in the cache", fix="reload the message list")
        self._body(id, row, False, dark)
        return {"cached": id}

    def _body(self, id: int, row: dict[str, Any], show_images: bool, dark: bool) -> safehtml.Rendered:
        """The sanitized body, parsed and rendered once per (message version, images, theme)."""
        key = (id, row.get("stored_at"), row.get("size"), row.get("has_mime"), show_images, dark)
        with self._bodies_lock:
            if key in self._bodies:
                self._bodies.move_to_end(key)
                return self._bodies[key]
        parsed = self._store.parsed(id) if row.get("has_mime") else None
        if parsed is None:
            body = safehtml.render(None, "(only the summary of this message is cached so far)", dark=dark)
        else:
            body = safehtml.render(
                parsed.html, parsed.plain if parsed.plain is not None else parsed.text,
                inline=parsed.inline, show_remote=show_images, dark=dark,
            )
        if len(body.srcdoc) <= MAX_CACHED_SRCDOC:
            with self._bodies_lock:
                self._bodies[key] = body
                while len(self._bodies) > CACHED_BODIES:
                    self._bodies.popitem(last=False)
        return body

    @_api
    def outbox(self) -> list[dict[str, Any]]:
        return [
            {
                "id": item.id,
                "message_id": item.message_id,
                "state": str(item.state),
                "subject": item.subject,
                "recipients": list(item.recipients),
                "created_at": item.created_at.isoformat(),
                "attempts": item.attempts,
                "next_attempt_at": item.next_attempt_at.isoformat() if item.next_attempt_at else None,
                "last_error": item.last_error,
                "route": str(item.route) if item.route else None,
                "sent_at": item.sent_at.isoformat() if item.sent_at else None,
            }
            for item in reversed(self._store.outbox_list())
        ]

    @_api
    def timeline(self, limit: Any = 200) -> list[dict[str, Any]]:
        """The event log, newest first: the outage timeline."""
        limit = _int(limit, "limit", 1, 5000)
        return [{k: e.get(k) for k in ("id", "at", "kind", "detail")} for e in self._store.events(limit)]

    # ------------------------------------------------------------------ links and attachments

    @_api
    def open_link(self, id: Any, url: Any) -> dict[str, Any]:
        """Open a link in the system browser, only if it is an http(s)/mailto link of that message."""
        id = _int(id, "id", 1)
        url = _str(url, "url", 8000, empty=False)
        if not url.lower().startswith(("http://", "https://", "mailto:")):
            raise BadArgument(f"only http, https and mailto links are opened, not {url[:80]!r}")
        row = self._store.message(id)
        if row is None or not row.get("has_mime"):
            raise MessageBad(f"there is no cached message {id}")
        links = self._body(id, row, False, False).links  # the links message() listed (no image/theme effect)
        if url not in links:
            raise BadArgument("that link is not in this message", fix="use the links listed with the message")
        self._open_url(url)
        return {"opened": url}

    def _attachment(self, id: Any, index: Any) -> tuple[str, bytes]:
        id = _int(id, "id", 1)
        index = _int(index, "index", 0, 10_000)
        row = self._store.message(id)
        parsed = self._store.parsed(id)
        if row is None or parsed is None:
            raise MessageBad(f"there is no cached message {id}")
        infos = {a["index"]: a for a in row.get("attachments", [])}
        data = parsed.attachment(index)
        if index not in infos or data is None:
            raise MessageBad(f"message {id} has no attachment {index} that can be decoded")
        return _safe_filename(infos[index].get("filename") or f"attachment-{index}"), data

    @_api
    def open_attachment(self, id: Any, index: Any) -> dict[str, Any]:
        """Write the attachment to a private temp folder and open it with the system's viewer."""
        name, data = self._attachment(id, index)
        if Path(name).suffix.lower() in RUNNABLE:
            raise BadArgument(f"{name} could run a program, so Lifeboat does not open it",
                              fix="save it and check it first")
        folder = Path(tempfile.mkdtemp(dir=self._tmp))
        path = folder / name
        path.write_bytes(data)
        self._open_path(str(path))
        return {"opened": name}

    @_api
    def save_attachment(self, id: Any, index: Any) -> dict[str, Any]:
        """Save the attachment where the user chooses in a native save dialog (the page names no path)."""
        name, _ = self._attachment(id, index)
        if self._window is None:
            raise BadArgument("there is no window to ask where to save")
        import webview  # only here: the bridge has no GUI dependency otherwise

        chosen = self._window.create_file_dialog(webview.FileDialog.SAVE, save_filename=name)
        if not chosen:
            return {"saved": None}
        return self._save_attachment_to(id, index, chosen if isinstance(chosen, str) else chosen[0])

    def _save_attachment_to(self, id: Any, index: Any, target: str) -> dict[str, Any]:
        name, data = self._attachment(id, index)
        path = Path(target)
        if path.is_dir():
            path = path / name
        path.write_bytes(data)
        return {"saved": str(path)}

    # ------------------------------------------------------------------ writing

    @_api
    def draft(self, kind: Any, id: Any = None) -> dict[str, Any]:
        """Fields for the compose form: kind is new, reply, reply_all or forward (of message id)."""
        kind = _str(kind, "kind", 20)
        if kind not in ("new", "reply", "reply_all", "forward"):
            raise BadArgument(f"kind must be new, reply, reply_all or forward, not {kind!r}")
        from sync import compose  # here, not at import: keeps the window's start-up light

        if kind == "new":
            return {"kind": kind, "to": "", "cc": "", "bcc": "", "subject": "", "text": "", "attachments": []}
        id = _int(id, "id", 1)
        parsed = self._store.parsed(id)
        if parsed is None:
            raise MessageBad(f"message {id} is not cached with its body, so it cannot be quoted")
        d = compose.prefill(kind, parsed, self._me)
        atts = [{"filename": n, "content_type": t, "size": len(b)} for n, t, b in compose.forwarded(d)]
        return {"kind": kind, "of": id, "to": ", ".join(d.to), "cc": ", ".join(d.cc), "bcc": "",
                "subject": d.subject, "text": d.text, "attachments": atts}

    @_api
    def send(self, draft: Any) -> dict[str, Any]:
        """Build the MIME, put it in the outbox (state queued) and wake the outbox worker."""
        if not isinstance(draft, dict):
            raise BadArgument("send needs the compose form's fields")
        if not self._me:
            raise BadArgument("no sender address is configured", fix="set [account] username in the config")
        kind = _str(draft.get("kind", "new"), "kind", 20)
        to = _addresses(draft.get("to", []), "to")
        cc = _addresses(draft.get("cc", []), "cc")
        bcc = _addresses(draft.get("bcc", []), "bcc")
        subject = _str(draft.get("subject", ""), "subject", 998)
        text = _str(draft.get("text", ""), "text", MAX_BODY)
        from sync import compose, engine  # here, not at import: keeps the window's start-up light

        if kind not in ("new", "reply", "reply_all", "forward"):
            raise BadArgument(f"kind must be new, reply, reply_all or forward, not {kind!r}")
        original = None
        if kind != "new":
            of = _int(draft.get("of"), "of", 1)
            original = self._store.parsed(of)
            if original is None:
                raise MessageBad(f"message {of} is not cached, so the {kind} cannot refer to it")
        files = []
        for path in draft.get("files", []) or []:
            path = _str(path, "file", 4096, empty=False)
            if path not in self._picked:
                raise BadArgument(f"{path} was not chosen in the file dialog", fix="use Attach files…")
            files.append(_read_file(path))
        keep = draft.get("keep_attachments", True) is not False
        d = compose.Draft(sender=self._me, to=tuple(to), cc=tuple(cc), bcc=tuple(bcc), subject=subject,
                          text=text, attachments=tuple(files), kind=cast(compose.Kind, kind),
                          original=original, keep_attachments=keep)
        if sum(len(a[2]) for a in [*compose.forwarded(d), *files]) > MAX_ATTACH_BYTES:
            raise BadArgument("the attachments are larger than 35 MB", fix="send fewer or smaller files")
        item = engine.queue(self._store, d, datetime.now(UTC))
        self._commands.put(("wake_outbox",))
        return {"queued": item.id, "message_id": item.message_id}

    @_api
    def pick_files(self) -> list[str]:
        """Ask the user for files to attach (a native open dialog)."""
        if self._window is None:
            raise BadArgument("there is no window to pick files from")
        import webview

        chosen = list(self._window.create_file_dialog(webview.FileDialog.OPEN, allow_multiple=True) or [])
        self._picked.update(chosen)  # send() attaches only files the user picked here
        return chosen

    # ------------------------------------------------------------------ commands to the engine

    @_api
    def sync_now(self) -> dict[str, Any]:
        self._commands.put(("sync_now",))
        return {"queued": "sync_now"}

    @_api
    def force(self, mode: Any) -> dict[str, Any]:
        """Switch to continuity by hand, or back to normal (the engine decides what happens next)."""
        mode = _str(mode, "mode", 20)
        if mode not in MODES:
            raise BadArgument(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        self._commands.put(("force", mode))
        return {"queued": "force", "mode": mode}

    @_api
    def pause(self, paused: Any) -> dict[str, Any]:
        if not isinstance(paused, bool):
            raise BadArgument("paused must be true or false")
        self._commands.put(("pause", paused))
        return {"queued": "pause", "paused": paused}


def _folder(f: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f["provider_id"],
        "name": f["name"],
        "well_known": f.get("well_known"),
        "count": f.get("count", 0),
        "unread": f.get("unread", 0),
        "local": f.get("local", False),
    }


def _row(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": r["id"],
        "subject": r.get("subject") or "",
        "sender": r.get("sender") or r.get("sender_email") or "",
        "date": r.get("date"),
        "unread": r.get("is_read") is False,
        "attachments": bool(r.get("has_attachments")),
        "thread": _thread_key(r.get("subject")),
    }


def _safe_filename(name: str) -> str:
    name = re.sub(r"[\x00-\x1f/\\:*?\"<>|]", "_", name).strip(" .") or "attachment"
    return name[:150]


def _read_file(path: str) -> tuple[str, str, bytes]:
    p = Path(path)
    if not p.is_file():
        raise BadArgument(f"{path} is not a file that can be attached")
    ctype = mimetypes.guess_type(p.name)[0] or "application/octet-stream"
    return p.name, ctype, p.read_bytes()


def _open_with_system(path: str) -> None:
    if sys.platform == "win32":
        os.startfile(path)  # type: ignore[attr-defined]  # noqa: S606 (the system's viewer)
    elif sys.platform == "darwin":
        subprocess.Popen(["open", path])
    else:
        subprocess.Popen(["xdg-open", path])
