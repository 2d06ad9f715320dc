"""Conversations by subject: which messages of a folder belong together, and in what order. PURE.

Main functions: `thread_key(subject)` (the subject without reply/forward prefixes in the common
languages, lower-cased: "Re: AW: Lunch" and "lunch" are one conversation) and `thread_order(rows)`
(rows newest first -> each conversation's newest row heads it, depth 0 with the conversation's size,
its older rows follow at depth 1; conversations ordered by their newest row). Invariant: a row with
no subject is a conversation of its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

_REPLY_PREFIX = re.compile(r"^\s*((re|aw|sv|antw|vs|r|fw|fwd|wg|tr|rv)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)


def thread_key(subject: str | None) -> str:
    return _REPLY_PREFIX.sub("", subject or "").strip().lower()


def thread_order(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows (each with "id" and "thread", newest first) in conversation order, each with "depth" (0 for
    a conversation's head, 1 for the rest) and "thread_size" (the head's conversation size, else 0)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["thread"] or f"#{row['id']}", []).append(row)
    flat: list[dict[str, Any]] = []
    for members in groups.values():  # dicts keep insertion order: newest conversation first
        for depth, row in enumerate(members):
            flat.append({**row, "depth": min(depth, 1), "thread_size": 0 if depth else len(members)})
    return flat
