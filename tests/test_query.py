"""The search language (sync/query.py): what the user types becomes an FTS5 expression FTS5 accepts."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync.errors import BadQuery
from sync.model import Folder
from sync.query import FIELDS, to_fts5
from sync.store import Store, cache_path


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    home: Path = tmp_path_factory.mktemp("query")
    s = Store.open(cache_path(home, "ann@example.org"), os.urandom(32))
    s.upsert_folders([Folder("inbox-id", "Inbox", well_known="inbox")])
    msg = EmailMessage()
    msg["From"] = "Zoë Quinn <zoe@corp.example>"
    msg["To"] = "bob@example.org"
    msg["Subject"] = "Budget review (draft) NEAR the end: OR not"
    msg["Message-ID"] = "<q1@corp.example>"
    msg.set_content("The quarterly budget, café receipts and the ocelot plan.\n")
    s.put_message("inbox-id", "q1", msg.as_bytes())
    yield s
    s.close()


@pytest.mark.parametrize("text,expected", [
    ("budget", '"budget"'),
    ("budget ocelot", '"budget" AND "ocelot"'),
    ('"quarterly budget"', '"quarterly budget"'),
    ("budget OR llama", '"budget" OR "llama"'),
    ("budget NOT llama", '"budget" NOT "llama"'),
    ("quart*", '"quart"*'),
    ("subject:budget", 'subject:"budget"'),
    ('Sender:"zoë quinn"', 'sender:"zoë quinn"'),
    ("to_addrs:bob*", 'to_addrs:"bob"*'),
    ("foo:bar", '"foo:bar"'),  # not a field: the words
    ('"unclosed', '"unclosed"'),
    ("OR budget", '"OR" AND "budget"'),  # an operator with nothing before it is a word
    ("budget OR", '"budget" AND "OR"'),
    ("budget OR OR x", '"budget" OR "OR" AND "x"'),
    ('say "hi"', '"say" AND "hi"'),
    ('a"b', '"a" AND "b"'),
])
def test_the_language(text: str, expected: str) -> None:
    """Tried: each construct the README documents, and the ordinary text that would be FTS5 syntax."""
    assert to_fts5(text) == expected


def test_prefix_last_is_for_a_trailing_bare_word_only() -> None:
    """Tried: search as you type: the last bare word becomes a prefix; a phrase or prefix at the end stays."""
    assert to_fts5("budget rev", prefix_last=True) == '"budget" AND "rev"*'
    assert to_fts5('budget "the end"', prefix_last=True) == '"budget" AND "the end"'
    assert to_fts5("budget rev*", prefix_last=True) == '"budget" AND "rev"*'


@pytest.mark.parametrize("query,hit", [
    ("budget", True), ("BUDGET", True), ("cafe", True), ("subject:budget", True), ("body:review", False),
    ("sender:zoe", True), ("to_addrs:bob", True), ("cc_addrs:bob", False), ("quart*", True),
    ('"budget review"', True), ('"review budget"', False), ("ocelot NOT llama", True),
    ("llama OR ocelot", True), ("budget NOT ocelot", False), ("(draft)", True), ("NEAR", True),
    ("end: OR", True), ("subject:(draft", True), ("^budget", True), ("-ocelot", True),
])
def test_queries_find_what_they_say(store: Store, query: str, hit: bool) -> None:
    """Tried: the language against a real cache: the one message is found exactly when the query says so."""
    assert bool(store.search(query)) is hit


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(
    st.text(max_size=60),
    st.lists(st.sampled_from(['"', "*", "(", ")", ":", "^", "-", "+", "OR", "NOT", "AND", "NEAR", "{", "}",
                              ",", *[f"{f}:" for f in FIELDS], "budget", "x", " ", "\x00", "é", "'"]),
             max_size=12).map("".join),
), prefix=st.booleans())
def test_any_text_is_a_query_fts5_accepts(store: Store, text: str, prefix: bool) -> None:
    """Tried: arbitrary text and dense mixes of FTS5 syntax: the store either runs the query, or (only
    when the text holds no letter or digit outside a `field:` prefix) raises the parser's BadQuery; never
    a syntax error from FTS5 (the store reports those as "cannot search for")."""
    try:
        store.search(text, prefix_last=prefix)
    except BadQuery as exc:
        assert "nothing to search for" in str(exc) or not text.strip(), str(exc)
        bare = re.sub(r"(?i)(?<![A-Za-z_])(?:" + "|".join(FIELDS) + r"):", " ", text)
        assert not re.search(r"[^\W_]", bare), f"refused {text!r}"
