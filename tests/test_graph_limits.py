"""Graph's limits the simulator now enforces (issue 9, items 4, 5 and 8), against the client.

The simulator runs in its own process (tests/syncsim.py); the cache is a real SQLCipher file. Each
test first shows the simulator behaving like Microsoft 365 (so the old client would have failed),
then that the client copes.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from sync.engine import sync_once
from sync.errors import MessageBad, Unreachable
from sync.governor import Governor
from sync.sources.graph import GraphSource, decode_value
from sync.store import Store
from tests.syncsim import SimProcess, SimTokens, mime_b64

CAP = 50  # the simulator's delta cap in these tests (Graph's is 5,000)


SIMULATOR = {"messages": 60, "seed": 21}  # the mailbox of conftest's `sim` fixture


def make_source(sim: SimProcess, tokens: SimTokens, **kw: Any) -> GraphSource:
    gov = kw.pop("governor", None) or Governor(base_delay=0.05, max_delay=0.3)
    return GraphSource(sim.graph_url, tokens, ca_file=sim.ca_path, timeout=(3, 20), page_size=20,
                       governor=gov, **kw)


@pytest.fixture
def source(sim: SimProcess, tokens: SimTokens) -> Iterator[GraphSource]:
    s = make_source(sim, tokens, delta_cap=CAP)
    yield s
    sim.outage("normal")
    sim.admin("POST", "limits", {"on": False})
    sim.admin("POST", "delta", {"cap": 5000})
    sim.admin("POST", "batch", {"values": "base64"})
    sim.admin("POST", "unavailable", {"retry_after": None})
    s.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path / "cache.db", os.urandom(32))
    yield s
    s.close()


def cached_folder(store: Store, folder_id: str) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for row in store.message_places(folder_id):
        raw = store.raw(row["id"])
        out[row["provider_id"]] = hashlib.sha256(raw).hexdigest() if raw else None
    return out


def delta_round(source: GraphSource, folder_id: str, window: Any) -> list[str]:
    ids: list[str] = []
    cursor = None
    while True:
        page = source.changes(folder_id, cursor, window)
        ids += [i.provider_id for i in page.items]
        cursor = page.cursor
        if page.complete:
            return ids


def throttled(sim: SimProcess) -> dict[str, int]:
    return dict(sim.admin("GET", "requests")["throttled"])


# -- item 4: filtered delta lists at most 5,000 messages ------------------------------------------------


def test_a_folder_over_the_delta_cap_ends_fully_cached(
    sim: SimProcess, source: GraphSource, store: Store
) -> None:
    """tried: a folder of 130 messages inside the window with the simulator's cap at 50. The filtered
    delta round really lists only 50 (so the client before issue 9 cached 50 of 130 and called the
    folder synced); the client notices the cap and lists the window through /messages: all 130 cached,
    MIME included, each once."""
    from datetime import UTC, datetime, timedelta

    fid = sim.admin("POST", "bulk", {"folder": "Big", "count": 130, "days": 20, "seed": 4})["id"]
    sim.admin("POST", "delta", {"cap": CAP, "seed": 3})
    window = datetime.now(UTC) - timedelta(days=30)
    listed = delta_round(source, fid, window)
    assert len(listed) == CAP and len(set(listed)) == CAP  # the simulator caps like Graph
    report = sync_once(store, source, folders=("Big",), cache_days=30)
    assert report.ok, report.errors
    assert cached_folder(store, fid) == sim.state()[fid] and len(sim.state()[fid]) == 130


def test_a_rebaseline_over_the_cap_deletes_nothing_that_still_exists(
    sim: SimProcess, source: GraphSource, store: Store
) -> None:
    """tried: the folder over the cap is cached in full, one message is deleted at the provider, and
    every delta token expires (410), so the next sync re-baselines with a capped, shuffled round. Before
    issue 9, RemoveUnseen ran at the end of that round and deleted every cached message the 50 listed
    did not include (about 80 here); now exactly the one deleted message goes, nothing else."""
    fid = sim.admin("POST", "bulk", {"folder": "Big2", "count": 120, "days": 20, "seed": 5})["id"]
    sim.admin("POST", "delta", {"cap": CAP, "seed": 8})
    assert sync_once(store, source, folders=("Big2",), cache_days=30).ok
    assert len(cached_folder(store, fid)) == 120
    gone = sorted(sim.state()[fid])[7]
    sim.admin("DELETE", f"messages/{gone}")
    sim.admin("POST", "delta/expire", {"status": 410})
    sim.admin("POST", "delta", {"cap": CAP, "seed": 9})  # another arbitrary subset this time
    report = sync_once(store, source, folders=("Big2",), cache_days=30)
    assert report.ok, report.errors
    after = cached_folder(store, fid)
    assert after == sim.state()[fid] and len(after) == 119 and gone not in after


# -- item 5: $batch concurrency --------------------------------------------------------------------------


def test_two_overlapping_batches_draw_429_inside(sim: SimProcess, tokens: SimTokens) -> None:
    """tried: with limits on (4 concurrent requests per mailbox), two raw $batch requests of 20 $value
    GETs sent at the same moment. Outlook runs 4 requests of a batch at once and counts them toward
    the mailbox's 4, so the second batch's requests find no free slot: 429 with Retry-After inside the
    batch (the HTTP answer is 200), counted by the simulator as inner concurrency 429s."""
    ids = sorted(next(v for v in sim.state().values() if len(v) >= 20))[:20]
    sim.admin("POST", "limits", {"on": True, "concurrent": 4, "window_requests": 100000, "inner_delay": 0.3})
    before = throttled(sim)
    body = {"requests": [{"id": str(i), "method": "GET", "url": f"/me/messages/{p}/$value"}
                         for i, p in enumerate(ids)]}
    headers = {"Authorization": f"Bearer {tokens.token()}"}
    answers: list[dict[str, Any]] = []
    start = threading.Barrier(2)

    def post() -> None:
        start.wait()
        r = requests.post(f"{sim.graph_url}/$batch", json=body, headers=headers, verify=sim.ca_path,
                          timeout=60)
        assert r.status_code == 200
        answers.append(r.json())

    try:
        threads = [threading.Thread(target=post) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        sim.admin("POST", "limits", {"on": False})
    inner = [r for a in answers for r in a["responses"]]
    refused = [r for r in inner if r["status"] == 429]
    assert len(inner) == 40 and refused and all(float(r["headers"]["Retry-After"]) > 0 for r in refused)
    assert throttled(sim)["inner_concurrency"] - before["inner_concurrency"] == len(refused)


def test_depends_on_runs_in_order_and_a_failed_dependency_answers_424(
    sim: SimProcess, tokens: SimTokens
) -> None:
    """tried: a chain 1 <- 2 <- 3 where 1 asks for a message that does not exist: 1 answers 404, and
    2 and 3 answer 424 Failed Dependency; a separate request 4 answers 200."""
    pid = sorted(next(iter(sim.state().values())))[0]
    reqs = [{"id": "1", "method": "GET", "url": "/me/messages/AAMkADnothere=/$value"},
            {"id": "2", "method": "GET", "url": f"/me/messages/{pid}", "dependsOn": ["1"]},
            {"id": "3", "method": "GET", "url": f"/me/messages/{pid}", "dependsOn": ["2"]},
            {"id": "4", "method": "GET", "url": f"/me/messages/{pid}?$select=id"}]
    r = requests.post(f"{sim.graph_url}/$batch", json={"requests": reqs}, verify=sim.ca_path, timeout=60,
                      headers={"Authorization": f"Bearer {tokens.token()}"})
    status = {x["id"]: x["status"] for x in r.json()["responses"]}
    assert status == {"1": 404, "2": 424, "3": 424, "4": 200}


def test_the_mime_fetch_draws_no_429_from_its_own_concurrency(sim: SimProcess, source: GraphSource,
                                                               store: Store) -> None:
    """tried: limits on (4 concurrent, each wave of a batch running 50 ms) and a whole first sync of the
    mailbox. Before issue 9 fetch_mime sent 4 batches of 20 at once and drew 4-6 inner 429s per batch
    (the next test shows the simulator does that); now one batch is in flight and it takes all 4 of
    the governor's slots: no 429 at all, every message cached."""
    sim.admin("POST", "limits", {"on": True, "concurrent": 4, "window_requests": 100000, "inner_delay": 0.05})
    before = throttled(sim)
    report = sync_once(store, source, folders=("*",), cache_days=3650)
    assert report.ok and report.mime_fetched >= 60, report.errors
    assert throttled(sim) == before and source.governor.throttled == 0


def test_four_batches_at_once_would_draw_inner_429s(sim: SimProcess, source: GraphSource) -> None:
    """tried: the old client's way (4 batches of 20 in flight at once, as fetch_mime did before issue 9)
    against the same limits: the simulator answers inner 429s, as Graph does (the control for the test
    above)."""
    from concurrent.futures import ThreadPoolExecutor

    ids = sorted(p for v in sim.state().values() for p in v)[:80]
    sim.admin("POST", "limits", {"on": True, "concurrent": 4, "window_requests": 100000, "inner_delay": 0.05})
    before = throttled(sim)
    raw = Governor(max_in_flight=4)  # one slot per batch: the old rule
    old = make_source(sim, source._tokens, governor=raw)  # type: ignore[arg-type]
    old.governor.run = lambda attempt, retry=True, slots=1: Governor.run(raw, attempt)  # type: ignore[method-assign]
    try:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(old._mime_batch, [ids[i : i + 20] for i in range(0, 80, 20)]))
    finally:
        old.close()
    assert throttled(sim)["inner_concurrency"] > before["inner_concurrency"]


# -- item 8: Retry-After on 503, $value encodings, very large messages -------------------------------------


def test_503_honours_retry_after_when_present_else_backs_off(sim: SimProcess, tokens: SimTokens) -> None:
    """tried: a 503 outage whose answers carry Retry-After: 0.3, then one without it. With it, the
    governor waits exactly what the server said between attempts (not its own 0.4/0.8 s backoff);
    without it, the jittered exponential backoff applies. Before issue 9 both used the backoff."""
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(round(s, 2))
        time.sleep(s)

    src = make_source(sim, tokens, governor=Governor(max_attempts=3, base_delay=0.4, sleep=sleep,
                                                     jitter=lambda: 1.0))
    folder = next(iter(src.well_known_ids(["inbox"])))
    try:
        sim.admin("POST", "unavailable", {"retry_after": 0.3})
        sim.outage("503")
        with pytest.raises(Unreachable):
            src.changes(folder, None, None)
        assert len(slept) == 2 and all(0.2 <= s <= 0.3 for s in slept), slept
        slept.clear()
        sim.admin("POST", "unavailable", {"retry_after": None})
        with pytest.raises(Unreachable):
            src.changes(folder, None, None)
        assert slept == [0.4, 0.8]
    finally:
        sim.outage("normal")
        sim.admin("POST", "unavailable", {"retry_after": None})
        src.close()


def test_decode_value_accepts_base64_and_clear_7bit_mime_only() -> None:
    """tried: the encodings a $batch may use for a $value (Microsoft does not document it): base64,
    a plain 7-bit MIME string, 8-bit text (its bytes cannot be trusted), broken base64, not a string."""
    raw = b"From: a@b\r\nSubject: x\r\n\r\nhi\r\n"
    assert decode_value(base64.b64encode(raw).decode()) == raw
    assert decode_value(raw.decode()) == raw
    assert decode_value("From: a@b\r\nSubject: caf\u00e9\r\n\r\nhi") is None
    assert decode_value("SGVsbG8gV29ybGQ=!") is None and decode_value({"a": 1}) is None
    assert decode_value("") is None


def test_a_plain_string_value_in_batch_is_used_or_fetched_alone(sim: SimProcess, source: GraphSource) -> None:
    """tried: the simulator answering a $value inside $batch as a plain string (switch "text"). A 7-bit
    message is taken from the batch; an 8-bit one (Latin-1 bytes) comes back as a lossy string, so it
    is fetched on its own: both end with the simulator's exact bytes. Before issue 9 both were
    skipped as 'not valid base64'."""
    ascii_id = sim.admin("POST", "messages", {"folder": "inbox", "mime": "From: a@example.com\r\nSubject: "
                                              "seven\r\nMessage-ID: <seven@t>\r\n\r\nplain\r\n"})["id"]
    eight = b"From: a@example.com\r\nSubject: eight\r\nMessage-ID: <eight@t>\r\nContent-Type: text/plain; " \
            b"charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\ncaf\xe9\r\n"
    eight_id = sim.admin("POST", "messages", {"folder": "inbox", "mime_b64": mime_b64(eight)})["id"]
    sim.admin("POST", "batch", {"values": "text"})
    got = source.fetch_mime([ascii_id, eight_id])
    truth = {p: h for v in sim.state().values() for p, h in v.items()}
    assert {p: hashlib.sha256(got[p]).hexdigest() for p in got if isinstance(got[p], bytes)} == {
        ascii_id: truth[ascii_id], eight_id: truth[eight_id]}
    assert source.fetched_alone == 1


def test_very_large_messages_are_fetched_alone_and_bounded(sim: SimProcess, source: GraphSource) -> None:
    """tried: a 1.5 MB message among small ones. One size-filtered listing (PidTagMessageSize,
    `Integer 0x0E08`) names it; it is fetched by its own GET (seen in the simulator's request log),
    the small ones by $batch; and with a bound below its size, fetch_one refuses it (MessageBad)."""
    big = b"From: a@example.com\r\nSubject: big\r\nMessage-ID: <big@t>\r\n\r\n" + b"x" * 76 + b"\r\n"
    big = big + (b"y" * 76 + b"\r\n") * 20000
    big_id = sim.admin("POST", "messages", {"folder": "inbox", "mime_b64": mime_b64(big)})["id"]
    small = sorted(next(iter(sim.state().values())))[:5]
    got = source.fetch_mime([*small, big_id])
    assert got[big_id] == big and all(isinstance(got[p], bytes) for p in small)
    recent = [tuple(x) for x in sim.admin("GET", "requests")["recent"]]
    assert ("GET", f"/v1.0/me/messages/{big_id}/$value") in recent and ("GET", "/v1.0/me/messages") in recent
    assert source.fetched_alone == 1
    with pytest.raises(MessageBad):
        source.fetch_one(big_id, max_bytes=1 << 20)
