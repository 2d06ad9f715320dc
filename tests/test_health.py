"""sync.health: the Monitor against the real simulator (outage switches, 429s, revoked sign-in) and real
reference probes (an aiosmtpd relay, closed ports, a DNS server that does not answer), with the policy's
seconds passed on a FakeClock. The state and event log live in a real encrypted store."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from sync import failover, health
from sync.errors import Throttled, Unreachable
from sync.failover import Notify, Policy, StartReconcile
from sync.health import Monitor
from sync.model import Mode, Route
from sync.routes.smtp import SmtpRoute
from sync.sources.references import DnsReference, HttpReference
from sync.store import Store
from tests.continuity_kit import START, FakeClock, Provider, relay_route, store_key
from tests.mailservers import FaultySmtp, free_port

pytestmark = pytest.mark.timeout(300)  # safety net against hangs only
ROOT = Path(__file__).resolve().parents[1]


class Inbox:
    """A Notifier that keeps what it was told (the tray's stand-in in a headless test)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def notify(self, title: str, body: str) -> None:
        self.seen.append((title, body))


def dead_references() -> list[health.Probe]:
    """References that really cannot be reached: closed ports and a DNS server that is not there."""
    closed = free_port()
    return [SmtpRoute("127.0.0.1", closed, "none", timeout=2),
            DnsReference("example.com", timeout=0.5, nameserver="127.0.0.1", port=closed),
            HttpReference(f"http://127.0.0.1:{closed}/", timeout=2)]


def run_for(mon: Monitor, clock: FakeClock, seconds: float, until: Mode | None = None) -> list[Mode]:
    """Tick at the monitor's own pace for `seconds` of fake time (or until a mode); the modes seen."""
    modes, end = [], clock.t.timestamp() + seconds
    while clock.t.timestamp() < end:
        clock.advance(mon.delay())
        mon.tick()
        modes.append(mon.mode)
        if mon.mode is until:
            break
    return modes


def test_outage_enters_continuity_by_policy_and_a_restart_resumes_it(store: Store, provider: Provider,
                                                                      relay: FaultySmtp) -> None:
    """Tried: the provider refusing connections while the relay answers, with the default policy. The
    monitor goes NORMAL -> SUSPECT -> CONTINUITY exactly when 3 failures span 30 s (not one probe
    earlier), notifies once, logs the timeline, and a new Monitor on the reopened cache resumes in
    CONTINUITY with the backup route."""
    clock, inbox = FakeClock(), Inbox()
    mon = Monitor(store, provider.source, [relay_route(relay)], Policy(), clock, inbox)
    mon.start()
    assert run_for(mon, clock, 60) == [Mode.NORMAL] * 4
    provider.sim.set_outage("refuse")
    outage_at = clock.now()
    modes = run_for(mon, clock, 300, until=Mode.CONTINUITY)
    assert modes[-1] is Mode.CONTINUITY and Mode.SUSPECT in modes
    state = mon.state
    first_failure = outage_at.timestamp() + Policy().probe_interval
    assert state.since.timestamp() - first_failure == Policy().failover_after
    assert (state.since - outage_at).total_seconds() <= Policy().failover_after + Policy().probe_interval
    assert [t for t, _ in inbox.seen] == ["Continuity mode"]
    kinds = [e["kind"] for e in store.events()]
    assert kinds.count("mode") == 2 and "started" in kinds
    with Store.open(store.path, store_key()) as again:
        resumed = Monitor(again, provider.source, [], Policy(), clock)
        resumed.start()
        assert resumed.mode is Mode.CONTINUITY and resumed.route() is Route.BACKUP
        assert health.mode_json(again, clock.now())["route"] == "backup"


def test_recovery_needs_successes_over_time_then_reconcile_ends_it(store: Store, provider: Provider,
                                                                   relay: FaultySmtp) -> None:
    """Tried: recovery after an outage. CONTINUITY holds through a single good probe followed by a failure
    (flapping), then moves to RECOVERING (with StartReconcile) only after 3 successes over 30 s; the
    reconcile's summary brings NORMAL and a notification carrying it."""
    clock, inbox = FakeClock(), Inbox()
    mon = Monitor(store, provider.source, [relay_route(relay)], Policy(), clock, inbox)
    mon.start()
    provider.sim.set_outage("refuse")
    run_for(mon, clock, 300, until=Mode.CONTINUITY)
    provider.sim.set_outage("normal")
    clock.advance(15)
    assert mon.tick() == [] or mon.mode is Mode.CONTINUITY
    provider.sim.set_outage("refuse")
    clock.advance(15)
    mon.tick()
    assert mon.mode is Mode.CONTINUITY and mon.state.successes == 0
    provider.sim.set_outage("normal")
    effects: list[failover.Effect] = []
    back_at = clock.now()
    while mon.mode is Mode.CONTINUITY:
        clock.advance(mon.delay())
        effects = mon.tick()
    assert mon.mode is Mode.RECOVERING and any(isinstance(e, StartReconcile) for e in effects)
    assert (clock.now() - back_at).total_seconds() <= Policy().recover_after + Policy().probe_interval
    mon.reconcile_done("2 sent during the outage, copied to Sent Items")
    assert mon.mode is Mode.NORMAL
    assert inbox.seen[-1] == ("Mail is back to normal", "2 sent during the outage, copied to Sent Items")


def test_offline_machine_never_fails_over(store: Store, provider: Provider) -> None:
    """Tried: the provider unreachable AND every reference unreachable for real (closed SMTP and HTTP ports,
    a DNS server that never answers) for 10 minutes of policy time: the mode stays NORMAL, the offline
    condition is set and announced once, and it clears when the provider answers again."""
    clock, inbox = FakeClock(), Inbox()
    mon = Monitor(store, provider.source, dead_references(), Policy(), clock, inbox, reference_timeout=5)
    mon.start()
    provider.sim.set_outage("refuse")
    assert set(run_for(mon, clock, 600)) == {Mode.NORMAL}
    assert mon.state.offline and [t for t, _ in inbox.seen] == ["This computer is offline"]
    provider.sim.set_outage("normal")
    run_for(mon, clock, 15)
    assert not mon.state.offline and mon.mode is Mode.NORMAL


def test_throttling_for_minutes_is_not_an_outage(store: Store, provider: Provider, relay: FaultySmtp) -> None:
    """Tried: every Graph request answered 429 (Retry-After) for 10 minutes of policy time, with the relay
    reachable: no SUSPECT, no CONTINUITY, no notification."""
    clock, inbox = FakeClock(), Inbox()
    mon = Monitor(store, provider.source, [relay_route(relay)], Policy(), clock, inbox)
    mon.start()
    provider.sim.throttle_next(10_000, retry_after=30)
    assert set(run_for(mon, clock, 600)) == {Mode.NORMAL}
    assert inbox.seen == [] and provider.sim.limits._forced > 0


def test_broken_sign_in_is_not_an_outage(store: Store, provider: Provider, relay: FaultySmtp) -> None:
    """Tried: the tenant revokes every token (Graph answers 401, the refresh is rejected) for 10 minutes:
    the mode stays NORMAL with sign_in_needed set and one "Sign-in needed" notification."""
    clock, inbox = FakeClock(), Inbox()
    mon = Monitor(store, provider.source, [relay_route(relay)], Policy(), clock, inbox)
    mon.start()
    provider.sim.revoke_tokens()
    provider.auth.invalidate()
    assert set(run_for(mon, clock, 600)) == {Mode.NORMAL}
    assert mon.state.sign_in_needed and [t for t, _ in inbox.seen] == ["Sign-in needed"]


def test_one_dropped_probe_in_three_never_fails_over(store: Store, provider: Provider,
                                                     relay: FaultySmtp) -> None:
    """Tried: every third probe's connection dropped by the simulator mid-response, for 10 minutes of policy
    time: the monitor may turn SUSPECT after a drop but always returns to NORMAL, never CONTINUITY."""
    clock = FakeClock()
    mon = Monitor(store, provider.source, [relay_route(relay)], Policy(), clock)
    mon.start()
    modes = []
    for n in range(61):  # 10 minutes of probes, ending on a good one
        provider.sim.set_outage("drop" if n % 3 == 2 else "normal")
        clock.advance(mon.delay())
        mon.tick()
        modes.append(mon.mode)
    assert Mode.SUSPECT in modes and Mode.CONTINUITY not in modes and modes[-1] is Mode.NORMAL


MAIL_MODES = ["refuse", "stop", "hang", "503", "slow", "truncate", "drop"]


@pytest.mark.parametrize("mode", MAIL_MODES)
def test_exchange_only_outage_enters_continuity_and_recovers(store: Store, provider: Provider,
                                                             relay: FaultySmtp, mode: str) -> None:
    """Tried: an Exchange-only outage (scope=mail: mail paths fail the mode's way, `/me` and sign-in
    answer; slow answers after 5 s, past the probe's 3 s read timeout) with the default policy on a fake
    clock. The old probe (`/me`) would have stayed green all along (checked here); the monitor probes the
    inbox, enters CONTINUITY after 3 failed rounds spanning 30 s, and once mail answers again it moves to
    RECOVERING after 3 good rounds spanning 30 s, each within 60 s of policy time."""
    clock = FakeClock()
    mon = Monitor(store, provider.source, [relay_route(relay)], Policy(), clock)
    mon.start()
    run_for(mon, clock, 30)
    provider.sim.set_outage(mode, scope="mail", delay=5.0)
    provider.source._send("GET", "/me?$select=id", what="old probe", timeout=(2, 3))  # /me: still up
    down_at = clock.now()
    assert run_for(mon, clock, 120, until=Mode.CONTINUITY)[-1] is Mode.CONTINUITY
    assert (clock.now() - down_at).total_seconds() <= 60
    assert "failed mail checks" in mon.state.reason
    provider.sim.set_outage("normal")
    back_at = clock.now()
    assert run_for(mon, clock, 120, until=Mode.RECOVERING)[-1] is Mode.RECOVERING
    assert (clock.now() - back_at).total_seconds() <= 60


def test_one_mail_request_in_three_failing_never_fails_over(store: Store, provider: Provider,
                                                            relay: FaultySmtp) -> None:
    """Tried: the simulator's flaky mode failing a seeded third of the mail requests (503) for 10 minutes
    of policy time, with the real probe rounds and, every 60 s, a folder listing through the governor
    whose failure is reported as passive evidence: no CONTINUITY, and the simulator did fail requests."""
    clock = FakeClock()
    mon = Monitor(store, provider.source, [relay_route(relay)], Policy(), clock)
    mon.start()
    provider.sim.set_outage("flaky", scope="mail", fraction=1 / 3, seed=9)
    modes, next_sync = [], clock.now()
    while (clock.now() - START).total_seconds() < 600:
        if clock.now() >= next_sync:
            try:
                provider.source.folders()
            except Unreachable as exc:
                mon.report(exc)
            next_sync = clock.advance(0) + timedelta(seconds=60)
        clock.advance(mon.delay())
        mon.tick()
        modes.append(mon.mode)
    assert Mode.CONTINUITY not in modes
    counts = provider.sim.outage_json()
    assert counts["failed"] > 20 and 0.2 < counts["failed"] / (counts["failed"] + counts["passed"]) < 0.5


def test_passive_evidence_speeds_detection_but_only_for_real_failures(store: Store, provider: Provider,
                                                                       relay: FaultySmtp) -> None:
    """Tried: a sync failure (Unreachable) reported while NORMAL: SUSPECT at once and the wake flag set for
    an immediate probe; a Throttled report changes nothing."""
    clock = FakeClock()
    mon = Monitor(store, provider.source, [relay_route(relay)], Policy(), clock)
    mon.start()
    assert mon.report(Throttled("429", retry_after=3)) == [] and mon.mode is Mode.NORMAL
    mon.report(Unreachable("sync: the connection to Graph failed"))
    assert mon.mode is Mode.SUSPECT and mon.wake.is_set()
    assert mon.delay() == Policy().suspect_probe_interval
    mon.tick()  # the provider is fine: back to NORMAL
    assert mon.mode is Mode.NORMAL and not mon.wake.is_set()


def test_forcing_and_machine_policy(store: Store, provider: Provider) -> None:
    """Tried: the user forcing continuity (CONTINUITY even though the provider answers, and probes do not
    undo it), then normal (RECOVERING to reconcile), then an admin policy forcing continuity, which a
    user's `auto` cannot undo. A bad choice is refused with the valid ones named."""
    clock = FakeClock()
    mon = Monitor(store, provider.source, [], Policy(), clock)
    mon.start()
    mon.force("continuity")
    run_for(mon, clock, 120)
    assert mon.mode is Mode.CONTINUITY and mon.state.forced_by == "user"
    effects = mon.force("normal")
    assert mon.mode is Mode.RECOVERING and any(isinstance(e, StartReconcile) for e in effects)
    with pytest.raises(ValueError, match="continuity, normal"):
        mon.force("sideways")
    admin = Monitor(store, provider.source, [], Policy(forced="continuity"), clock)
    admin.start()
    assert admin.mode is Mode.CONTINUITY and admin.state.forced_by == "admin"
    effects = admin.force("auto")
    assert admin.mode is Mode.CONTINUITY and any(isinstance(e, Notify) for e in effects)


def test_a_damaged_saved_state_is_reset_and_logged(store: Store, provider: Provider) -> None:
    """Tried: a saved failover state that is not JSON / names an unknown mode: the monitor starts in NORMAL,
    logs why, and overwrites the record with a good one."""
    clock = FakeClock()
    for bad in ("{not json", json.dumps({"mode": "panic", "since": clock.now().isoformat()})):
        store.save_mode("continuity", clock.now(), "x", bad)
        mon = Monitor(store, provider.source, [], Policy(), clock)
        mon.start()
        assert mon.mode is Mode.NORMAL
        assert store.events(1)[0]["kind"] == "started"
        assert any(e["kind"] == "state_reset" for e in store.events(5))
        assert json.loads(store.mode_state())["mode"] == "normal"


NETNS_SCRIPT = textwrap.dedent("""
    import json, sys
    from datetime import UTC, datetime, timedelta
    from sync.failover import Policy
    from sync.health import Monitor
    from sync.sources.references import DnsReference, HttpReference
    from sync.routes.smtp import SmtpRoute
    from sync.sources.graph import GraphSource
    from sync.store import Store

    class Clock:
        t = datetime(2026, 11, 28, 12, tzinfo=UTC)
        def now(self):
            return self.t

    class Token:  # nothing is reachable from this namespace, so the token is never checked
        def token(self):
            return "x"

    graph_url, relay_port, db, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    clock = Clock()
    refs = [SmtpRoute("127.0.0.1", relay_port, "none", timeout=2), DnsReference("example.com", timeout=1),
            HttpReference("http://example.com/", timeout=2)]
    with Store.open(db, bytes.fromhex(key)) as store:
        mon = Monitor(store, GraphSource(graph_url, Token()), refs, Policy(), clock, reference_timeout=5)
        mon.start()
        modes = set()
        while clock.t < datetime(2026, 11, 28, 12, 10, tzinfo=UTC):
            clock.t += timedelta(seconds=mon.delay())
            mon.tick()
            modes.add(mon.mode.value)
        print(json.dumps({"modes": sorted(modes), "offline": mon.state.offline}))
""")


def test_no_failover_in_a_network_namespace_without_network(tmp_path: Path, provider: Provider,
                                                            relay: FaultySmtp) -> None:
    """Tried: the monitor in its own network namespace (`unshare -n`: not even loopback is up), probing the
    simulator, the relay, the system's DNS and an HTTP URL for 10 minutes of policy time: it only ever
    says NORMAL (offline), while the same servers are up outside the namespace."""
    if not shutil.which("unshare") or subprocess.run(["unshare", "-n", "true"]).returncode != 0:
        pytest.skip("cannot create a network namespace here (unshare -n needs CAP_SYS_ADMIN)")
    key = os.urandom(32).hex()
    out = subprocess.run(
        ["unshare", "-n", sys.executable, "-c", NETNS_SCRIPT, provider.sim.graph_url, str(relay.port),
         str(tmp_path / "netns.db"), key],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"modes": ["normal"], "offline": True}
    provider.source.probe()  # outside the namespace the provider is up all along
