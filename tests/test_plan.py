"""sync.plan: pure planning of delta pages into store actions, and Store.apply executing them."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync import plan
from sync.model import Changes, RemoteItem
from sync.plan import (
    FolderSync,
    MarkSeen,
    PruneOlderThan,
    RemoveMessage,
    RemoveUnseen,
    SaveFolderSync,
    SetCursor,
    StartBaseline,
    UpsertSummary,
)

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
F, G = "folder-A", "folder-B"


def item(pid: str, folder: str = F, days_ago: float = 1.0) -> RemoteItem:
    return RemoteItem(pid, folder, received_at=NOW - timedelta(days=days_ago), subject=f"s {pid}")


def kinds(actions: list[plan.Action]) -> list[str]:
    return [type(a).__name__ for a in actions]


def test_first_sync_starts_a_baseline_and_mid_round_page_keeps_it_open() -> None:
    """No cursor and never synced: a baseline starts; a nextLink page upserts, marks seen, sets cursor,
    and saves how many messages the round has listed (Graph's 5,000 cap is judged at the round's end)."""
    acts, state = plan.plan_round_start(F, None, FolderSync(), NOW, 30)
    assert kinds(acts) == ["StartBaseline", "SetCursor", "SaveFolderSync"]
    assert state.baselining and state.window_start == datetime(2026, 10, 29, tzinfo=UTC)
    assert "first sync" in str(acts[0])
    page = Changes((item("1"), item("2")), (), "https://g/next", complete=False)
    acts, new = plan.plan_page(F, page, {}, state, NOW, 30)
    assert kinds(acts) == ["UpsertSummary", "UpsertSummary", "MarkSeen", "SetCursor", "SaveFolderSync"]
    assert new == replace(state, listed=2)  # round not complete: only the count changes
    assert acts[-2] == SetCursor(F, "https://g/next")


def test_round_end_removes_unseen_prunes_and_records_success() -> None:
    """A deltaLink page during a baseline ends the round: RemoveUnseen, prune, state saved."""
    state = FolderSync(baselining=True, window_start=NOW - timedelta(days=30), baseline_at=NOW)
    acts, new = plan.plan_page(F, Changes((item("3"),), (), "https://g/delta", True), {}, state, NOW, 30)
    assert kinds(acts) == ["UpsertSummary", "MarkSeen", "SetCursor", "RemoveUnseen", "PruneOlderThan",
                           "SaveFolderSync"]
    assert not new.baselining and new.rounds == 1 and new.last_success_at == NOW
    assert isinstance(acts[-1], SaveFolderSync) and acts[-1].state == new


def test_incremental_page_removes_only_rows_still_in_this_folder() -> None:
    """@removed for an id that moved to another folder (already synced there) is not deleted."""
    state = FolderSync(window_start=NOW - timedelta(days=30), baseline_at=NOW, rounds=1)
    page = Changes((), ("here", "moved", "unknown"), "https://g/delta2", True)
    acts, _ = plan.plan_page(F, page, {"here": F, "moved": G}, state, NOW, 30)
    assert RemoveMessage(F, "here") in acts
    assert not any(isinstance(a, RemoveMessage) and a.provider_id in ("moved", "unknown") for a in acts)
    assert not any(isinstance(a, (MarkSeen, RemoveUnseen)) for a in acts)  # not a baseline


def test_last_mention_wins_and_duplicates_collapse() -> None:
    """The same id twice in a page upserts once; listed then removed in one page is a removal."""
    state = FolderSync(rounds=1)
    page = Changes((item("x"), item("x"), item("y")), ("y",), "c", True)
    acts, _ = plan.plan_page(F, page, {"y": F}, state, NOW, 30)
    ups = [a for a in acts if isinstance(a, UpsertSummary)]
    assert [a.item.provider_id for a in ups] == ["x"]
    assert RemoveMessage(F, "y") in acts


def test_items_older_than_the_window_are_not_cached() -> None:
    """An old message changed (e.g. read elsewhere) comes through delta; it stays out of the cache."""
    state = FolderSync(rounds=1)
    acts, _ = plan.plan_page(F, Changes((item("old", days_ago=45), item("new")), (), "c", True), {},
                             state, NOW, 30)
    assert [a.item.provider_id for a in acts if isinstance(a, UpsertSummary)] == ["new"]
    prune = next(a for a in acts if isinstance(a, PruneOlderThan))
    assert prune.before == datetime(2026, 10, 29, tzinfo=UTC)


def test_periodic_rebaseline_and_window_growth() -> None:
    """A cursor older than REBASELINE_EVERY, or a larger cache_days, starts a new baseline."""
    fresh = FolderSync(window_start=plan.window_start(NOW, 30), baseline_at=NOW - timedelta(days=1), rounds=3)
    assert plan.plan_round_start(F, "c", fresh, NOW, 30)[0] == []
    stale = FolderSync(window_start=plan.window_start(NOW, 30), baseline_at=NOW - timedelta(days=8), rounds=3)
    acts, st_ = plan.plan_round_start(F, "c", stale, NOW, 30)
    assert isinstance(acts[0], StartBaseline) and "periodic" in acts[0].reason and st_.baselining
    acts, _ = plan.plan_round_start(F, "c", fresh, NOW, 60)
    assert isinstance(acts[0], StartBaseline) and "grew" in acts[0].reason
    # a baseline already in progress (resumed after a crash) is continued, not restarted
    going = FolderSync(baselining=True, window_start=plan.window_start(NOW, 30), baseline_at=NOW)
    assert plan.plan_round_start(F, "https://g/next", going, NOW, 30)[0] == []


def test_action_strings_read_like_log_lines() -> None:
    """str() of every action is a short human line without message contents."""
    lines = [str(UpsertSummary(F, item("abc"))), str(RemoveMessage(F, "abc")), str(SetCursor(F, None)),
             str(StartBaseline(F, "cursor expired")), str(MarkSeen(F, ("a", "b"))), str(RemoveUnseen(F)),
             str(PruneOlderThan(F, NOW))]
    assert lines[0].startswith("upsert abc") and "s abc" not in lines[0]
    assert lines[2] == f"clear cursor of {F}" and "cursor expired" in lines[3] and "2 seen" in lines[4]


def test_folder_sync_json_round_trip_and_batches() -> None:
    """FolderSync survives JSON; $batch groups hold at most 20 ids."""
    s = FolderSync(True, NOW, NOW, NOW, 4)
    assert FolderSync.from_json(s.to_json()) == s and FolderSync.from_json(None) == FolderSync()
    assert [len(b) for b in plan.mime_batches([str(i) for i in range(45)])] == [20, 20, 5]
    with pytest.raises(ValueError):
        plan.mime_batches(["a"], 21)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from("abcdef"), st.booleans()), max_size=20),
    st.dictionaries(st.sampled_from("abcdef"), st.sampled_from([F, G]), max_size=6),
)
def test_plan_page_is_idempotent_and_never_removes_other_folders(ops: list[tuple[str, bool]],
                                                                  local: dict[str, str]) -> None:
    """Property: planning is deterministic; removals only target rows in this folder; every listed id
    that is not removed ends up upserted exactly once."""
    items = tuple(item(p) for p, removed in ops if not removed)
    removed = tuple(p for p, r in ops if r)
    page = Changes(items, removed, "c", True)
    state = FolderSync(rounds=1)
    a1, _ = plan.plan_page(F, page, local, state, NOW, 30)
    a2, _ = plan.plan_page(F, page, local, state, NOW, 30)
    assert a1 == a2
    for a in a1:
        if isinstance(a, RemoveMessage):
            assert local.get(a.provider_id) == F
    ups = [a.item.provider_id for a in a1 if isinstance(a, UpsertSummary)]
    assert len(ups) == len(set(ups))
    assert set(ups) == {i.provider_id for i in items} - set(removed)


# -- Store.apply against a real encrypted cache --------------------------------------------------


@pytest.fixture
def store(tmp_path: Path):
    from sync.store import Store

    s = Store.open(tmp_path / "cache.db", os.urandom(32))
    yield s
    s.close()


def test_store_apply_rebaseline_keeps_rows_until_the_round_completes(store) -> None:
    """Apply a baseline, then an expired-cursor re-baseline in two pages: rows still in the
    provider keep their MIME, a row gone from the provider is removed only at the round's end,
    and no row is duplicated."""
    from sync.model import Folder

    store.upsert_folders([Folder(F, "Inbox", well_known="inbox")])
    acts, state = plan.plan_round_start(F, None, FolderSync(), NOW, 30)
    store.apply(acts)
    acts, state = plan.plan_page(F, Changes((item("1"), item("2"), item("3")), (), "d1", True), {}, state,
                                 NOW, 30)
    store.apply(acts)
    store.put_message(F, "1", b"Subject: one\r\nMessage-ID: <1@x>\r\n\r\nbody one\r\n")
    assert store.cursor(F) == "d1" and len(store.missing_mime(F)) == 2
    assert store.folder_sync(F).rounds == 1 and store.folder_sync(F) == state

    acts, state = plan.start_baseline(F, state, NOW, 30, "cursor expired")
    store.apply(acts)
    assert store.cursor(F) is None
    acts, state = plan.plan_page(F, Changes((item("1"),), (), "next", False), {"1": F}, state, NOW, 30)
    store.apply(acts)
    ids = {m["provider_id"] for m in store.list_messages(F, limit=10)}
    assert ids == {"1", "2", "3"}  # mid-round: nothing deleted yet
    acts, state = plan.plan_page(F, Changes((item("2"),), (), "d2", True), {"2": F}, state, NOW, 30)
    store.apply(acts)
    rows = store.list_messages(F, limit=10)
    assert sorted(m["provider_id"] for m in rows) == ["1", "2"]
    assert next(m for m in rows if m["provider_id"] == "1")["has_mime"]  # MIME kept through the baseline
    assert store.cursor(F) == "d2"


def test_store_apply_is_one_transaction(store) -> None:
    """An action the store does not know aborts the whole page: items and cursor stay as they were."""
    bad = [UpsertSummary(F, item("z")), SetCursor(F, "never"), object()]
    with pytest.raises(TypeError):
        store.apply(bad)
    assert store.cursor(F) is None and store.message_by_provider_id("z") is None


def test_select_folders_by_well_known_name_path_and_star() -> None:
    """Well-known names, display paths (case-insensitive) and "*" (all but system folders and what
    lies under them) select folders; entries that match nothing are reported, not fatal."""
    from sync.model import Folder

    folders = [
        Folder("i", "Inbox", "root", "inbox"), Folder("s", "Sent Items", "root", "sentitems"),
        Folder("d", "Deleted Items", "root", "deleteditems"), Folder("x", "Old", "d"),
        Folder("p", "Projects", "i"), Folder("q", "2026", "p"),
        Folder("j", "Junk Email", "root", "junkemail"),
    ]
    assert plan.folder_paths(folders)["q"] == "Inbox/Projects/2026"
    chosen, unknown = plan.select_folders(folders, ["inbox", "inbox/projects/2026", "Nope"])
    assert [f.provider_id for f in chosen] == ["i", "q"] and unknown == ["Nope"]
    chosen, unknown = plan.select_folders(folders, ["*"])
    assert [f.provider_id for f in chosen] == ["i", "s", "p", "q"] and unknown == []
    assert [f.provider_id for f in plan.select_folders(folders, ["Projects"])[0]] == ["p"]


def test_a_capped_baseline_round_removes_nothing_and_asks_for_the_full_listing() -> None:
    """tried: a baseline whose delta listed `cap` messages (Graph lists at most 5,000 with $filter, in
    no set order) ends its round. Before issue 9 this round ended with RemoveUnseen, deleting every
    cached row the capped listing happened to leave out; now it ends with `filling` set and no
    RemoveUnseen, and only the last page of the complete /messages listing removes unseen rows."""
    state = FolderSync(baselining=True, window_start=NOW - timedelta(days=30), baseline_at=NOW)
    acts, state = plan.plan_page(F, Changes((item("1"), item("2")), (), "https://g/next", False), {}, state,
                                 NOW, 30, cap=3)
    acts, state = plan.plan_page(F, Changes((item("3"),), (), "https://g/delta", True), {}, state, NOW, 30,
                                 cap=3)
    assert "RemoveUnseen" not in kinds(acts) and state.filling and state.baselining and state.listed == 3
    assert acts[-1] == SaveFolderSync(F, state) and state.rounds == 0
    acts, state = plan.plan_fill_page(F, Changes((item("4"), item("1")), (), "https://g/list2", False), state,
                                      NOW, 30)
    assert kinds(acts) == ["UpsertSummary", "UpsertSummary", "MarkSeen", "SaveFolderSync"]
    assert state.fill_link == "https://g/list2" and state.filling
    acts, state = plan.plan_fill_page(F, Changes((item("5"),), (), None, True), state, NOW, 30)
    assert kinds(acts) == ["UpsertSummary", "MarkSeen", "RemoveUnseen", "PruneOlderThan", "SaveFolderSync"]
    assert not state.baselining and not state.filling and state.rounds == 1 and state.listed == 0


def test_a_baseline_under_the_cap_ends_as_before() -> None:
    """tried: a baseline that listed fewer than `cap` messages: RemoveUnseen at its end, no fill."""
    state = FolderSync(baselining=True, window_start=NOW - timedelta(days=30), baseline_at=NOW)
    acts, state = plan.plan_page(F, Changes((item("1"),), (), "https://g/delta", True), {}, state, NOW, 30,
                                 cap=2)
    assert "RemoveUnseen" in kinds(acts) and not state.filling and not state.baselining
