"""The window's view model: store rows shaped for the page, and the caches that keep the window fast.

Main type: `View(store)`: `folders(fresh)` (counts cached between pages of one folder), `page(...)`
(a folder page, flat or in conversation order via sync.conversation, cached until the folder's count or
newest row changes), `body(...)` (sanitized bodies, a small LRU keyed by the message's version, images
and theme; a body being rendered is waited for, never rendered twice, and no render waits for another
message's, so a prefetch never holds up the open), `status()`, `outbox()`, `timeline()`, `message(...)`.
Shaping functions `folder(f)` and `row(r)`. It reads the store only; validation and errors stay in
ui.bridge. Invariant: no message content but the sanitized srcdoc (and safehtml's note) leaves this module.
"""

from __future__ import annotations

import collections
import json
import threading
from typing import Any

from sync.commands import SIGN_IN_SETTING
from sync.conversation import thread_key, thread_order
from sync.failover import route_for
from sync.filenames import safe_filename
from sync.model import Mode, OutboxState
from ui import safehtml

CACHED_BODIES = 16  # rendered bodies kept per window (reopening, theme, links, the prefetched next one)
MAX_CACHED_SRCDOC = 1_000_000  # characters: larger bodies are rendered on each open, never kept


def folder(f: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f["provider_id"],
        "name": f["name"],
        "well_known": f.get("well_known"),
        "count": f.get("count", 0),
        "unread": f.get("unread", 0),
        "local": f.get("local", False),
    }


def row(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": r["id"],
        "subject": r.get("subject") or "",
        "sender": r.get("sender") or r.get("sender_email") or "",
        "date": r.get("date"),
        "unread": r.get("is_read") is False,
        "attachments": bool(r.get("has_attachments")),
        "thread": thread_key(r.get("subject")),
    }


class View:
    """The page's lists and bodies from one store, with the window's caches."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self._folders: dict[str, dict[str, Any]] = {}
        self._threads: tuple[Any, list[dict[str, Any]]] = (None, [])
        # (id, stored_at, size, has_mime, show_images, dark) -> rendered body: a replaced MIME misses
        self._bodies: collections.OrderedDict[tuple[Any, ...], safehtml.Rendered] = collections.OrderedDict()
        self._bodies_lock = threading.Lock()
        self._rendering: dict[tuple[Any, ...], threading.Event] = {}  # keys being rendered now (any thread)

    def folders(self, fresh: bool) -> dict[str, dict[str, Any]]:
        """Folders by id; counting 50,000 rows per page would be slow, so later pages reuse the counts."""
        if fresh or not self._folders:
            self._folders = {f["provider_id"]: f for f in self._store.folders()}
        return self._folders

    def start(self, limit: int) -> dict[str, Any]:
        """Status, folders and the inbox's first page (else the first folder's)."""
        listed = [folder(f) for f in self.folders(fresh=True).values()]
        inbox = next((f for f in listed if f["well_known"] == "inbox"), listed[0] if listed else None)
        first = None
        if inbox is not None:
            items = [row(r) for r in self._store.list_messages(inbox["id"], 0, limit)]
            first = {"folder": inbox["id"], "total": inbox["count"], "offset": 0, "items": items}
        return {"status": self.status(), "folders": listed, "first": first}

    def page(self, folder_id: str, offset: int, limit: int, threaded: bool) -> dict[str, Any] | None:
        """One page of a folder, newest first (None when there is no such folder)."""
        known = self.folders(fresh=offset == 0)
        if folder_id not in known:
            return None
        total = known[folder_id].get("count", 0)
        if threaded:
            rows = self._thread_rows(folder_id, total)
            return {"total": len(rows), "offset": offset, "items": rows[offset:offset + limit]}
        rows = self._store.list_messages(folder_id, offset, limit)
        return {"total": total, "offset": offset, "items": [row(r) for r in rows]}

    def _thread_rows(self, folder_id: str, total: int) -> list[dict[str, Any]]:
        """The folder's rows in conversation order (cached until the folder's count or newest row changes)."""
        newest = self._store.list_messages(folder_id, 0, 1)
        stamp = (folder_id, total, newest[0]["id"] if newest else None)
        if self._threads[0] != stamp:
            rows = (row(r) for r in self._store.list_messages(folder_id, 0, max(total, 1)))
            self._threads = (stamp, thread_order(rows))
        return self._threads[1]

    def status(self) -> dict[str, Any]:
        """The banner: mode, since, which route sends, conditions, outbox counts."""
        mode, since, reason = self._store.load_mode()
        try:
            state = json.loads(self._store.mode_state() or "{}")
        except ValueError:
            state = {}
        try:
            route = str(route_for(Mode(mode)))
        except ValueError:
            route = "primary"
        conditions = [c for c in ("offline", "sign_in_needed", "network_blocked") if state.get(c)]
        # what outranks the mode, in desktop.tray.shown_state's order
        shown = next((c for c in ("sign_in_needed", "offline", "network_blocked") if c in conditions), mode)
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
            "network_reason": str(state.get("network_reason", "")) if "network_blocked" in conditions else "",
            "forced": state.get("forced", "auto"),
            "paused": bool(self._store.get_setting("sync_paused", False)),
            "disk_full": self._store.get_setting("sync.disk_full"),  # sync waits for disk space (continuity)
            "sign_in": self._store.get_setting(SIGN_IN_SETTING),  # the last Sign in: state, reason, user
            "outbox": outbox,
        }

    def body(self, id: int, r: dict[str, Any], show_images: bool, dark: bool) -> safehtml.Rendered:
        """The sanitized body, parsed and rendered once per (message version, images, theme)."""
        key = (id, r.get("stored_at"), r.get("size"), r.get("has_mime"), show_images, dark)
        with self._bodies_lock:
            if key in self._bodies:
                self._bodies.move_to_end(key)
                return self._bodies[key]
            running = self._rendering.get(key)
            if running is None:
                self._rendering[key] = threading.Event()
        if running is not None:  # the same body is being rendered (the prefetch): wait for it, not twice
            running.wait()
            with self._bodies_lock:
                if key in self._bodies:
                    return self._bodies[key]
            return self._render(id, r, show_images, dark)  # too big to be kept, or that render failed
        try:
            rendered = self._render(id, r, show_images, dark)
            if len(rendered.srcdoc) <= MAX_CACHED_SRCDOC:
                with self._bodies_lock:
                    self._bodies[key] = rendered
                    while len(self._bodies) > CACHED_BODIES:
                        self._bodies.popitem(last=False)
            return rendered
        finally:
            with self._bodies_lock:
                self._rendering.pop(key).set()

    def _render(self, id: int, r: dict[str, Any], show_images: bool, dark: bool) -> safehtml.Rendered:
        parsed = self._store.parsed(id) if r.get("has_mime") else None
        if parsed is None:
            return safehtml.render(None, "(only the summary of this message is cached so far)", dark=dark)
        return safehtml.render(
            parsed.html, parsed.plain if parsed.plain is not None else parsed.text,
            inline=parsed.inline, show_remote=show_images, dark=dark,
        )

    def message(self, id: int, r: dict[str, Any], show_images: bool, dark: bool) -> dict[str, Any]:
        """Headers, attachments (not those shown inline) and the sanitized body of one message."""
        rendered = self.body(id, r, show_images, dark)
        return {
            "id": id,
            "subject": r.get("subject") or "",
            "sender": r.get("sender") or "",
            "to": r.get("to_addrs") or "",
            "cc": r.get("cc_addrs") or "",
            "date": r.get("date"),
            "folder": r.get("folder"),
            "message_id": r.get("message_id"),
            "signed": r.get("is_signed", False),
            "encrypted": r.get("is_encrypted", False),
            "problems": r.get("problems") or [],
            "attachments": [
                {**{k: a.get(k) for k in ("index", "content_type", "size", "inline")},
                 "filename": safe_filename(a.get("filename") or f"attachment-{a.get('index')}")}
                for a in r.get("attachments", [])
                if not a.get("inline") and (a.get("content_id") or "").strip("<>") not in rendered.used_cids
            ],
            "srcdoc": rendered.srcdoc,
            "links": list(rendered.links),
            "blocked_images": rendered.blocked_images,
            "note": rendered.note,  # why the body is shown as plain text (ui.safehtml's bounds), or None
            "show_images": show_images,
        }

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

    def timeline(self, limit: int) -> list[dict[str, Any]]:
        """The event log, newest first: the outage timeline."""
        return [{k: e.get(k) for k in ("id", "at", "kind", "detail")} for e in self._store.events(limit)]
