"""sync.commands and sync.continuity: the user's commands as data, one meaning per command whoever sends it
(CLI, window, tray, a headless run), and pause honoured by `lifeboat run --headless`. Real stores, the
real CLI, the window's real pipe reader and the simulator; a FakeClock for the failover seconds."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from desktop import cli, worker
from desktop import config as config_mod
from desktop.config import Config
from desktop.window import WindowProcess, _PipeQueue
from sync import continuity, failover
from sync.commands import Force, Pause, SignIn, SyncNow, WakeOutbox, from_json, to_json
from sync.continuity import Continuity, Outcome, handle, is_paused
from sync.health import Monitor
from sync.model import Mode
from sync.store import Store, cache_path
from tests.continuity_kit import FakeClock, Provider, store_key
from tests.waiting import wait
from ui.bridge import Bridge

pytestmark = pytest.mark.timeout(180)  # safety net against hangs only
USER = "adele.vance@contoso.test"


def monitor(store: Store, clock: FakeClock, **policy: Any) -> Monitor:
    policy_ = dataclasses.replace(failover.Policy.from_config(Config()), **policy)
    return Monitor(store, None, [], policy_, clock)


def test_commands_round_trip_through_json_and_nothing_else_is_a_command() -> None:
    """Tried: each command to JSON text and back (equal); then the shapes that are not commands: an unknown
    name, a missing or extra field, a field of the wrong type, a mode nobody offers, the old tuple form."""
    for command in (WakeOutbox(), SyncNow(), Force("continuity"), Force("normal"), Force("auto"),
                    Pause(True), Pause(False)):
        line = json.dumps(to_json(command))
        assert from_json(json.loads(line)) == command, line
    assert to_json(Force("normal")) == {"command": "force", "mode": "normal"}
    for bad in ({"command": "reboot"}, {"command": "force"}, {"command": "force", "mode": "off"},
                {"command": "sync_now", "mode": "normal"}, {"command": "pause", "paused": "yes"},
                ["force", "normal"], {"mode": "normal"}, None):
        with pytest.raises(ValueError):
            from_json(bad)
    with pytest.raises(ValueError):
        Force("off")


def test_sign_in_carries_a_window_handle_or_nothing_else() -> None:
    """Tried: the window's Sign in over the pipe: a handle (HWND) or null round-trips; a handle that is
    text, negative, a boolean, too large, or missing altogether (the page cannot name anything else) is not
    a command; `handle` leaves the persisted state alone (the desktop runs the sign-in)."""
    for command in (SignIn(), SignIn(0x1F0A2), SignIn(None)):
        assert from_json(json.loads(json.dumps(to_json(command)))) == command
    assert to_json(SignIn(7)) == {"command": "sign_in", "window": 7}
    for bad in ({"command": "sign_in"}, {"command": "sign_in", "window": "0x10"},
                {"command": "sign_in", "window": -1}, {"command": "sign_in", "window": True},
                {"command": "sign_in", "window": 2**64}, {"command": "sign_in", "window": 1, "user": "x"}):
        with pytest.raises(ValueError):
            from_json(bad)


def test_each_command_changes_what_it_says(store: Store) -> None:
    """Tried: each command through `handle` on a real cache: the wakes it asks for, the pause setting, and
    the failover state: continuity forced; back to normal (recovering, reconcile started, the probes decide
    again: a later outage fails over by itself); auto."""
    clock = FakeClock()
    mon = monitor(store, clock)
    mon.start()
    assert handle(WakeOutbox(), mon, store) == Outcome(wake_outbox=True)
    assert handle(SyncNow(), mon, store) == Outcome(wake_sync=True)
    assert handle(Pause(True), mon, store) == Outcome() and is_paused(store)
    assert handle(Pause(False), mon, store) == Outcome(wake_sync=True) and not is_paused(store)
    on = handle(Force("continuity"), mon, store)
    assert on.wake_outbox and not on.refused
    assert (mon.refresh().mode, mon.state.forced) == (Mode.CONTINUITY, "continuity")
    off = handle(Force("normal"), mon, store)
    assert any(isinstance(e, failover.StartReconcile) for e in off.effects) and off.wake_outbox
    state = mon.refresh()
    assert (state.mode, state.forced, state.forced_by) == (Mode.RECOVERING, "auto", "")
    mon.reconcile_done("nothing to copy")
    for _ in range(12):  # provider down, relay up: the probes decide, so continuity comes back
        mon.apply(failover.ProbeResult(clock.advance(5), failover.ProviderStatus.FAILED, True, "refused"))
    assert mon.refresh().mode is Mode.CONTINUITY and mon.state.forced == "auto"
    handle(Force("continuity"), mon, store)
    handle(Force("auto"), mon, store)
    # auto hands back to the probes, which have not seen the provider back: still continuity
    assert (mon.refresh().mode, mon.state.forced) == (Mode.CONTINUITY, "auto")


def test_machine_policy_refuses_back_to_normal(store: Store) -> None:
    """Tried: policy forces continuity; "back to normal" is refused (Outcome.refused, a notification), and
    is not turned into "auto" behind the policy's back: the mode and the admin's choice stay."""
    mon = monitor(store, FakeClock(), forced="continuity")
    mon.start()
    out = handle(Force("normal"), mon, store)
    assert out.refused and any(isinstance(e, failover.Notify) for e in out.effects)
    state = mon.refresh()
    assert (state.mode, state.forced, state.forced_by) == (Mode.CONTINUITY, "continuity", "admin")
    refusals = [e["detail"] for e in store.events(10) if e["kind"] == "user_forced"]
    assert refusals == ["refused normal: set by machine policy"]


@pytest.fixture
def homes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    config = tmp_path / "config.toml"
    config.write_text(f'[account]\nusername = "{USER}"\n')
    monkeypatch.setenv("LIFEBOAT_CONFIG", str(config))
    monkeypatch.setattr(config_mod, "MACHINE_POLICY", tmp_path / "policy.toml")  # the fixed place, in-process
    monkeypatch.setenv("LIFEBOAT_DB_KEY", os.urandom(32).hex())
    return tmp_path / "cli-home", tmp_path / "window-home"


def persisted(home: Path) -> tuple[Any, ...]:
    with Store.open(cache_path(home, USER), store_key()) as s:
        state = json.loads(s.mode_state() or "{}")
        forced = [e["detail"] for e in reversed(s.events(50)) if e["kind"] in ("user_forced", "mode")]
        return s.load_mode()[0], state.get("forced"), state.get("forced_by"), forced


def test_the_cli_and_the_window_mean_the_same(homes: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Tried: `lifeboat failover on`, `off`, `on`, `off` in one home; in another, the window's buttons
    (Bridge.force) written as JSON lines by the window child's pipe queue, read back by the app's
    WindowProcess reader onto its queue (after three lines that are not commands, dropped) and drained into
    the app's Continuity.handle. The persisted mode, forced choice and event log are the same."""
    cli_home, window_home = homes
    monkeypatch.setenv("LIFEBOAT_HOME", str(cli_home))
    for choice in ("on", "off", "on", "off"):
        assert cli.main(["failover", choice]) == 0, capsys.readouterr()

    pipe = io.StringIO()
    with Store.open(cache_path(window_home, USER), store_key()) as s:
        bridge = Bridge(s, _PipeQueue(pipe), me=USER)
        for mode in ("continuity", "normal", "continuity", "normal"):
            assert bridge.force(mode) == {"queued": "force", "mode": mode}
        app_queue: queue.Queue[Any] = queue.Queue()
        reader = WindowProcess(s.path, store_key(), app_queue, me=USER)
        junk = '{"command": "reboot"}\n{"command": ["force", "normal"]}\n{"command": "pause", "paused": 1}\n'
        lines = io.StringIO(junk + pipe.getvalue())
        reader._read(type("Proc", (), {"stdout": lines})())  # type: ignore[arg-type]
        assert app_queue.qsize() == 4  # the four buttons; what is not a command never reaches the app
        # the app's core with no source: commands touch only the persisted state
        c = Continuity(Config(username=USER), s, None, {}, [])  # type: ignore[arg-type]
        c.start()
        while not app_queue.empty():
            c.handle(app_queue.get_nowait())
        assert c.outbox_wake.is_set()
    got_cli, got_window = persisted(cli_home), persisted(window_home)
    assert got_cli == got_window
    assert got_cli[:3] == ("recovering", "auto", "")


class Lines(io.StringIO):
    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.getvalue().splitlines() if line.strip()]


@pytest.fixture
def headless(provider: Provider) -> Iterator[tuple[Config, threading.Event, Lines, list[int]]]:
    cfg = dataclasses.replace(provider.cfg, sync_interval_seconds=0.2)
    stop, out, code = threading.Event(), Lines(), []
    with Store.open(cache_path(cfg.home, cfg.username), store_key()) as s:  # paused before the run starts
        handle(Pause(True), Monitor(s, None, [], failover.Policy.from_config(cfg)), s)
    run = threading.Thread(target=lambda: code.append(worker.run_headless(cfg, stop=stop, out=out,
                                                                           tokens=provider.auth)))
    run.start()
    try:
        yield cfg, stop, out, code
    finally:
        stop.set()
        run.join(60)


def test_run_headless_honours_pause(headless: tuple[Config, threading.Event, Lines, list[int]],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Tried: the sync paused (as the window or the tray leaves it), then `lifeboat run --headless` against
    the simulator: its sync loop ticks several times (counted by a spy around the real `is_paused`) and
    fetches nothing (no folder in the cache); resuming from another connection (as the window would) lets
    a later tick sync the mailbox (its folders arrive)."""
    cfg, stop, out, code = headless
    seen: list[bool] = []
    real = continuity.is_paused
    monkeypatch.setattr(continuity, "is_paused", lambda store: seen.append(real(store)) or seen[-1])
    wait("the running line", lambda: any(line.get("running") for line in out.lines()))
    wait("three paused sync ticks", lambda: seen.count(True) >= 3)
    with Store.open(cache_path(cfg.home, cfg.username), store_key()) as s:
        assert s.status()["messages"] == 0 and s.folders() == []
        handle(Pause(False), Monitor(s, None, [], failover.Policy.from_config(cfg)), s)
        wait("a sync tick after resuming", lambda: False in seen)
        wait("the mailbox's folders in the cache", lambda: s.status()["folders"] > 0)
    stop.set()
    wait("run --headless to end", lambda: code == [0])
