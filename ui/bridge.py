"""The page's only door to Python: `Bridge`, whose `_api` methods the page calls through ui.jsapi.

Every `_api` method validates its arguments, reads the store or enqueues a command, and returns plain
JSON (errors as {"error", "fix", "kind"}); it never calls the network. Mail HTML reaches the page only
as sanitized iframe srcdoc (ui.safehtml). What the lists and bodies look like, and their caches, is
ui.view; commands go out as sync.commands values. pywebview never sees this object: it gets
`ui.jsapi.expose(bridge)`, which reaches the `_api` methods and nothing else. Attachments are named by
sync.filenames; "Open" hands only allow-listed types to the system (from ui.attachment_files' private
folder) and saves the rest.
"""

from __future__ import annotations

import collections
import functools
import mimetypes
import os
import queue
import re
import subprocess
import sys
import webbrowser
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from sync.commands import Force, Pause, SignIn, SyncNow, WakeOutbox
from sync.errors import BadArgument, BadQuery, ConfigError, LifeboatError, MessageBad
from sync.filenames import opens_safely, safe_filename
from ui import attachment_files
from ui.attachment_files import OpenedFolder
from ui.jsapi import API_MARK
from ui.view import View
from ui.view import folder as _folder
from ui.view import row as _row

MAX_PAGE = 500
MAX_QUERY = 500
MAX_FIELD = 10_000
MAX_BODY = 2_000_000
MAX_ATTACH_BYTES = 35 * 1024 * 1024
MODES = ("normal", "continuity")


def _api(method: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a method as the page's (ui.jsapi exposes only these) and turn a LifeboatError into
    {"error", "fix", "kind"} so the page can show it (and loses nothing)."""

    @functools.wraps(method)
    def wrapper(self: Bridge, *args: Any, **kwargs: Any) -> Any:
        self._calls[method.__name__] += 1
        try:
            return method(self, *args, **kwargs)
        except LifeboatError as exc:
            message = exc.args[0] if exc.args else str(exc)
            return {"error": message, "fix": exc.fix, "kind": type(exc).__name__}

    setattr(wrapper, API_MARK, True)
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
        opened: Path | None = None,
    ) -> None:
        self._store = store
        self._commands = commands if commands is not None else queue.Queue()
        self._me = me
        self._open_url = open_url or (lambda url: webbrowser.open(url, new=2))
        self._open_path = open_path or _open_with_system
        self._window: Any = None
        self._view = View(store)  # the lists, bodies and their caches (ui.view)
        self._picked: set[str] = set()  # files the user chose in the dialog: the only ones send() attaches
        self._calls: collections.Counter[str] = collections.Counter()  # API calls made, by name
        # opened attachments: a private folder under the data folder (None: "Open" only saves)
        self._private = OpenedFolder(opened) if opened is not None else None

    def _attach_window(self, window: Any) -> None:
        self._window = window

    # ------------------------------------------------------------------ reading

    @_api
    def start(self, limit: Any = 200) -> dict[str, Any]:
        """What the page needs to be usable, in one call: status, folders and the inbox's first page."""
        limit = _int(limit, "limit", 1, MAX_PAGE)
        started = self._view.start(limit)
        started["status"]["me"] = self._me
        return started

    @_api
    def status(self) -> dict[str, Any]:
        """The banner: mode, since, which route sends, conditions, outbox counts."""
        return self._status()

    def _status(self) -> dict[str, Any]:
        return {**self._view.status(), "me": self._me}

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
        page = self._view.page(folder_id, offset, limit, threaded)
        if page is None:
            raise BadArgument(f"there is no folder {folder_id!r}", fix="reload the folder list")
        return page

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
        return self._view.message(id, row, show_images, dark)

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
        self._view.body(id, row, False, dark)
        return {"cached": id}

    @_api
    def outbox(self) -> list[dict[str, Any]]:
        return self._view.outbox()

    @_api
    def timeline(self, limit: Any = 200) -> list[dict[str, Any]]:
        """The event log, newest first: the outage timeline."""
        return self._view.timeline(_int(limit, "limit", 1, 5000))

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
        links = self._view.body(id, row, False, False).links  # message()'s links (no image/theme effect)
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
        return safe_filename(infos[index].get("filename") or f"attachment-{index}"), data

    @_api
    def open_attachment(self, id: Any, index: Any) -> dict[str, Any]:
        """Open a document, image or text attachment with the system's viewer (from the private folder);
        any other type is saved where the user chooses instead, and the answer says why."""
        name, data = self._attachment(id, index)
        if not opens_safely(name):
            saved = self._save_with_dialog(name, data)
            return {"opened": None, "saved": saved,
                    "why": f"{name} is not a document, image or text file, so Lifeboat saves it instead "
                           "of opening it (it could run a program)"}
        if self._private is None:
            raise ConfigError("there is no private folder for opened attachments", fix="save it instead")
        path = self._private.write(name, data)
        self._open_path(str(path))
        return {"opened": name}

    @_api
    def save_attachment(self, id: Any, index: Any) -> dict[str, Any]:
        """Save the attachment where the user chooses in a native save dialog (the page names no path)."""
        name, data = self._attachment(id, index)
        return {"saved": self._save_with_dialog(name, data)}

    def _save_with_dialog(self, name: str, data: bytes) -> str | None:
        if self._window is None:
            raise BadArgument("there is no window to ask where to save")
        import webview  # only here: the bridge has no GUI dependency otherwise

        chosen = self._window.create_file_dialog(webview.FileDialog.SAVE, save_filename=name)
        if not chosen:
            return None
        target = Path(chosen if isinstance(chosen, str) else chosen[0])
        return str(attachment_files.save(target, name, data))

    def _save_attachment_to(self, id: Any, index: Any, target: str) -> dict[str, Any]:
        name, data = self._attachment(id, index)
        return {"saved": str(attachment_files.save(Path(target), name, data))}

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
        self._commands.put(WakeOutbox())
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
        self._commands.put(SyncNow())
        return {"queued": "sync_now"}

    @_api
    def force(self, mode: Any) -> dict[str, Any]:
        """Switch to continuity by hand, or back to normal (sync.continuity.handle says what that means)."""
        mode = _str(mode, "mode", 20)
        if mode not in MODES:
            raise BadArgument(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        self._commands.put(Force(mode))
        return {"queued": "force", "mode": mode}

    @_api
    def sign_in(self) -> dict[str, Any]:
        """Sign in on this computer: the app runs it off the UI (the Windows account through WAM, parented
        to this window, else the system browser); the banner shows how it went (status()["sign_in"])."""
        self._commands.put(SignIn(window=self._native_handle()))
        return {"queued": "sign_in"}

    def _native_handle(self) -> int | None:
        """This window's HWND on Windows (pywebview's WinForms form), for WAM to parent its dialog to;
        None elsewhere (no broker there) or when there is no window."""
        native = getattr(self._window, "native", None)
        handle = getattr(native, "Handle", None)
        if handle is None:
            return None
        try:
            value = int(handle.ToInt64())
        except Exception:  # not a .NET IntPtr: no handle to give
            return None
        return value if 0 < value < 2**64 else None

    @_api
    def pause(self, paused: Any) -> dict[str, Any]:
        if not isinstance(paused, bool):
            raise BadArgument("paused must be true or false")
        self._commands.put(Pause(paused))
        return {"queued": "pause", "paused": paused}



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
