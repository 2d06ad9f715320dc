"""The search language, turned into a safe FTS5 expression (pure: text in, text out).

What the user may type (the README's `lifeboat search` row; the window's search box is the same):

- words (`budget lunch`: every word must match), `"an exact phrase"`;
- `OR` and `NOT` in capitals between two terms (`AND` too; it is what a space means);
- `prefix*`: a word ending in `*` matches every word it begins;
- `field:word`, `field:"a phrase"` or `field:prefix*` for one of subject, sender, to_addrs, cc_addrs, body.

Anything else is searched for as words: every term leaves here as an FTS5 string ("..."), so
parentheses, colons, `NEAR(`, `^`, `-`, a lone `*` or an unclosed quote never reach FTS5 as syntax.
An operator with no term on one side is a word. A query with nothing searchable raises BadQuery.
"""

from __future__ import annotations

import re

from sync.errors import BadQuery

FIELDS = ("subject", "sender", "to_addrs", "cc_addrs", "body")
OPERATORS = ("OR", "NOT", "AND")
MAX_TERMS = 32  # terms kept per query: a pasted paragraph still costs bounded time

# a token: [field:] then "a phrase" (closing quote optional) or a run of non-space characters
_TOKEN = re.compile(r'(?:(?P<field>[A-Za-z_]+):)?(?:"(?P<phrase>[^"]*)"?|(?P<word>[^\s"]+))')
_SEARCHABLE = re.compile(r"[^\W_]", re.UNICODE)  # a letter or digit: what unicode61 keeps as a token
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _string(text: str) -> str:
    """An FTS5 string literal (a double quote inside is doubled)."""
    return '"' + text.replace('"', '""') + '"'


def to_fts5(text: str, *, prefix_last: bool = False) -> str:
    """The FTS5 expression for `text`. With prefix_last (search as you type) the last plain word also
    matches as a prefix. Raises BadQuery when nothing in `text` can be searched for."""
    text = _CONTROL.sub(" ", text)
    items: list[str] = []  # alternating terms and operators, ready to join
    last_plain = -1  # index in items of the last bare word (for prefix_last)
    pending_op: str | None = None
    for m in _TOKEN.finditer(text):
        field, phrase, word = m.group("field"), m.group("phrase"), m.group("word")
        if field is not None and field.lower() not in FIELDS:  # "foo:bar" is searched as words
            if phrase is not None:
                phrase = f"{field} {phrase}"
            else:
                word = m.group(0)
            field = None
        if field is None and phrase is None and word in OPERATORS and items and pending_op is None:
            pending_op = word  # an operator with no term before it (or right after another) is a word
            continue
        if len([i for i in items if i not in OPERATORS]) >= MAX_TERMS:
            break
        prefix = False
        if phrase is not None:
            body = phrase
        else:
            assert word is not None
            body = word.rstrip("*")
            prefix = body != word
        if not _SEARCHABLE.search(body):
            continue  # punctuation only: nothing for the tokenizer to match
        term = _string(body) + ("*" if prefix else "")
        if field is not None:
            term = f"{field.lower()}:{term}"
        if items:
            items.append(pending_op or "AND")
        pending_op = None
        items.append(term)
        if phrase is None and not prefix:
            last_plain = len(items) - 1
    if pending_op is not None and items:  # a trailing operator is a word too
        items.extend(["AND", _string(pending_op)])
        last_plain = len(items) - 1
    if not items:
        raise BadQuery(f"there is nothing to search for in {text.strip()!r}")
    if prefix_last and last_plain == len(items) - 1:
        items[-1] += "*"
    return " ".join(items)
