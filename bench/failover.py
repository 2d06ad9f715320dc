"""Benchmark: backup-route throughput (SmtpRoute, one burst connection, STARTTLS with a test CA).

Sends N messages (500; 100 with --short) to a local aiosmtpd relay and, when Postfix is installed and
we are root, to a private Postfix relay; prints JSON. Goal: >= 50 msg/s accepted by the relay.
Also: the durable outbox's throughput through engine.send_once, and real-time failover timings
(outage -> CONTINUITY, recovery -> NORMAL) with the default policy (--short: its times x 0.1), for a
whole-provider outage and for an Exchange-only outage (scope mail) in every mode; and, on a fake clock
against the real simulator's flaky mode, the false-failover count at 1 in 3 failing mail requests over
10 simulated minutes (goal 0) and the time to enter at 100% (goal <= 60 s).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the app's packages, and the real test servers in tests/mailservers.py

from sync.routes.smtp import SmtpRoute  # noqa: E402
from tests.mailservers import POSTFIX_DOMAIN, FaultySmtp, PostfixRelay, make_tls  # noqa: E402

GOAL = 50.0


def message(n: int) -> tuple[bytes, str]:
    msg = EmailMessage()
    mid = make_msgid(domain="bench.lifeboat.test")
    msg["From"] = "ann@example.test"
    msg["To"] = f"bob@{POSTFIX_DOMAIN}"
    msg["Subject"] = f"bench {n}"
    msg["Message-ID"] = mid
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg.set_content("A typical short business mail body.\n" * 40)  # about 1.5 kB
    return msg.as_bytes(), mid


def burst(route: SmtpRoute, count: int) -> float:
    msgs = [message(n)[0] for n in range(count)]
    start = time.perf_counter()
    for raw in msgs:
        route.send(raw, "ann@example.test", [f"bob@{POSTFIX_DOMAIN}"])
    elapsed = time.perf_counter() - start
    route.close()
    return elapsed


def result(relay: str, count: int, seconds: float, **extra: object) -> dict[str, object]:
    rate = count / seconds if seconds else 0.0
    return {"relay": relay, "messages": count, "seconds": round(seconds, 3), "msg_per_s": round(rate, 1),
            "goal_msg_per_s": GOAL, "meets_goal": rate >= GOAL, **extra}


def outbox_throughput(count: int) -> dict[str, object]:
    """The durable outbox in CONTINUITY: queue `count` messages, then engine.send_once to a local
    aiosmtpd relay (three commits per message: SENDING before the relay, SENT after)."""
    import os

    from sync import engine, mime
    from sync.model import Mode, Route
    from sync.store import Store

    with tempfile.TemporaryDirectory() as tmp, FaultySmtp() as server:
        with Store.open(Path(tmp) / "bench.db", os.urandom(32)) as store:
            now = datetime.now(UTC)
            for n in range(count):
                engine.queue(store, mime.build(
                    sender="ann@example.test", to=[f"bob@{POSTFIX_DOMAIN}"], subject=f"outbox {n}",
                    text="A typical short business mail body.\n" * 40), now)
            route = SmtpRoute("127.0.0.1", server.port, "none")
            start = time.perf_counter()
            report = engine.send_once(store, {Route.BACKUP: route}, Mode.CONTINUITY, now)
            seconds = time.perf_counter() - start
            route.close()
        assert len(report.sent) == count == len(server.received), report
    return result("aiosmtpd via engine.send_once (encrypted outbox)", count, seconds)


MAIL_MODES = ("refuse", "stop", "hang", "503", "slow", "truncate", "drop")
SLOW_MODES = ("hang", "slow")  # a probe waits out its read timeout


@contextlib.contextmanager
def app_under_test(scale: float) -> Iterator[tuple[Any, Any, Any, Any]]:
    """The simulator as the provider, an aiosmtpd relay as the backup route and reference, and the app's
    own worker loops on an encrypted store, with the default policy times multiplied by `scale`.
    Yields (sim, continuity, store, cfg)."""
    import dataclasses
    import os
    import threading

    from desktop import worker
    from desktop.auth import MsalAuth
    from desktop.config import Config
    from simulator.server import Simulator
    from sync.store import Store

    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        os.environ.pop(name, None)
    os.environ["LIFEBOAT_INSECURE_TOKEN_CACHE"] = "1"  # tokens of a throwaway local simulator
    d = Config()
    with tempfile.TemporaryDirectory() as tmp, FaultySmtp() as relay:
        sim = Simulator(Path(tmp) / "sim", messages=5).start()
        stop = threading.Event()
        loops: list[worker.Loop] = []
        try:
            cfg = dataclasses.replace(
                d, client_id="bench", username=sim.user.upn, authority_url=sim.authority,
                graph_url=sim.graph_url, ca_file=str(sim.ca_path), data_dir=str(Path(tmp) / "home"),
                backup_smtp_host="127.0.0.1", backup_smtp_port=relay.port, backup_smtp_security="none",
                sync_interval_seconds=3600.0, **{k: getattr(d, k) * scale for k in SCALED})
            auth = MsalAuth(cfg)
            auth.login_device_code(lambda text: None)
            with Store.open(Path(tmp) / "bench.db", os.urandom(32)) as store:
                c = worker.build(cfg, store, tokens=auth)
                c.start()
                loops = worker.start_loops(c, stop)
                try:
                    yield sim, c, store, cfg
                finally:
                    worker.stop_loops(loops, stop)  # before the store closes
        finally:
            worker.stop_loops(loops, stop)
            sim.stop()


SCALED = ("probe_interval_seconds", "suspect_probe_interval_seconds", "failover_after_seconds",
          "recover_after_seconds")


def cut_and_restore(sim: Any, c: Any, store: Any, cfg: Any, mode: str, scope: str) -> dict[str, object]:
    """Real time from an outage to CONTINUITY (then one mail sent through the backup route) and from
    its end to NORMAL (reconcile included)."""
    from sync import engine, mime
    from sync.model import Mode, OutboxState

    while c.monitor.refresh().mode is not Mode.NORMAL:
        time.sleep(0.05)
    time.sleep(2 * cfg.probe_interval_seconds)  # a few good probes first
    timeout = c.source.probe_timeout[1]
    t0 = time.monotonic()
    sim.set_outage(mode, scope=scope, delay=2 * timeout)  # slow: twice the probe's read timeout
    while c.monitor.mode is not Mode.CONTINUITY:
        time.sleep(0.05)
    to_continuity = time.monotonic() - t0
    out = mime.build(sender=cfg.username, to=[f"bob@{POSTFIX_DOMAIN}"], subject=f"during {mode}",
                     text="sent during the outage\n")
    mid = engine.queue(store, out, c.now()).message_id
    while store.outbox_by_message_id(mid).state is not OutboxState.SENT:
        time.sleep(0.05)
    t1 = time.monotonic()
    sim.set_outage("normal")
    while c.monitor.refresh().mode is not Mode.NORMAL:
        time.sleep(0.05)
    to_normal = time.monotonic() - t1
    p, s, enter, leave = (cfg.probe_interval_seconds, cfg.suspect_probe_interval_seconds,
                          cfg.failover_after_seconds, cfg.recover_after_seconds)
    # worst case: the outage starts just after a round; then N failed rounds spanning T seconds, each
    # round (hang/slow) waiting out the probe's read timeout; a failure counts from when its round began
    n = c.policy.failures_to_enter
    if mode in SLOW_MODES:
        gap = timeout + s
        enter_bound = p + max(n - 1, -(-enter // gap)) * gap + timeout
    else:
        enter_bound = p + max((n - 1) * s, enter) + s
    leave_bound = p + leave
    return {
        "mode": mode, "scope": scope,
        "seconds_to_continuity": round(to_continuity, 2), "continuity_bound_s": round(enter_bound, 2),
        "seconds_to_normal": round(to_normal, 2), "normal_bound_s": round(leave_bound, 2),
        "meets_goal": to_continuity <= min(60.0, enter_bound + 1.0)
        and to_normal <= min(60.0, leave_bound + 1.0),
        "reconcile": c.last_reconcile.summary if c.last_reconcile else "",
    }


def failover_timings(scale: float) -> dict[str, object]:
    """Real time from a provider outage (refusing connections, scope all) to CONTINUITY and from its end
    to NORMAL (reconcile included), with the default policy times multiplied by `scale`."""
    from desktop.config import Config

    d = Config()
    with app_under_test(scale) as (sim, c, store, cfg):
        run = cut_and_restore(sim, c, store, cfg, "refuse", "all")
    return {
        "policy_scale": scale,
        "policy": {k: round(getattr(cfg, k), 3) for k in SCALED} | {
            "failures_to_enter": d.failures_to_enter, "successes_to_leave": d.successes_to_leave,
            "probe_requests_per_round": c.policy.probe_requests},
        **{k: v for k, v in run.items() if k not in ("mode", "scope")},
        "note": "bounds are the policy's minimum plus one probe interval (+1 s slack for probes and "
                "reconcile); --short scales the policy's times by 0.1",
    }


def mail_outage_timings(scale: float) -> dict[str, object]:
    """The same for an Exchange-only outage (scope mail: `/me` and sign-in answer) in every mode, one
    after the other against the same app."""
    with app_under_test(scale) as (sim, c, store, cfg):
        runs = [cut_and_restore(sim, c, store, cfg, mode, "mail") for mode in MAIL_MODES]
    return {
        "policy_scale": scale, "goal_s": 60, "probe_read_timeout_s": c.source.probe_timeout[1],
        "runs": runs, "meets_goal": all(r["meets_goal"] for r in runs),
        "note": "slow = answers after twice the probe's read timeout; hang/slow bounds include the probe's "
                "read timeout per round (not scaled by --short)",
    }


def round_sig(x: float) -> float:
    return float(f"{x:.3g}")


def flaky_mail(minutes: float, seeds: int) -> dict[str, object]:
    """The real Monitor (default policy) on a fake clock against the real simulator's flaky mode (scope
    mail), so the HTTP is real and the time simulated: for `minutes` of policy time per seed, probe
    rounds at the monitor's own pace and, every 60 s, a folder listing through the governor whose
    failure is reported as passive evidence. Counts entries into CONTINUITY at 1 in 3 failing (goal 0),
    then the time to enter at 100% failing (goal <= 60 s). Also the exact false-entry chance over
    failover.step for one and for two requests per probe round."""
    import dataclasses
    import os
    from datetime import UTC, datetime, timedelta

    from desktop.auth import MsalAuth
    from desktop.config import Config
    from simulator.server import Simulator
    from sync.errors import Unreachable
    from sync.failover import Policy, entry_probability
    from sync.health import Monitor
    from sync.model import Mode
    from sync.sources.graph import GraphSource
    from sync.store import Store

    class Clock:
        def __init__(self) -> None:
            self.t = datetime(2026, 11, 28, 12, tzinfo=UTC)

        def now(self) -> datetime:
            return self.t

    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        os.environ.pop(name, None)
    os.environ["LIFEBOAT_INSECURE_TOKEN_CACHE"] = "1"
    policy = Policy()
    per_seed: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp, FaultySmtp() as relay:
        sim = Simulator(Path(tmp) / "sim", messages=5).start()
        try:
            cfg = dataclasses.replace(Config(), client_id="bench", username=sim.user.upn,
                                      authority_url=sim.authority, graph_url=sim.graph_url,
                                      ca_file=str(sim.ca_path), data_dir=str(Path(tmp) / "home"))
            auth = MsalAuth(cfg)
            auth.login_device_code(lambda text: None)
            source = GraphSource(cfg.graph_url, auth, ca_file=cfg.ca_file)
            refs = [SmtpRoute("127.0.0.1", relay.port, "none", timeout=10)]

            def monitor(n: int, clock: Clock) -> tuple[Monitor, Store]:
                store = Store.open(Path(tmp) / f"flaky-{n}.db", os.urandom(32))
                mon = Monitor(store, source, refs, policy, clock)
                mon.start()
                return mon, store

            for seed in range(seeds):
                clock = Clock()
                mon, store = monitor(seed, clock)
                sim.set_outage("flaky", scope="mail", fraction=1 / 3, seed=seed)
                end = clock.t + timedelta(minutes=minutes)
                next_sync, entries, suspects, rounds, last = clock.t, 0, 0, 0, Mode.NORMAL
                while clock.t < end:
                    if clock.t >= next_sync:
                        try:
                            source.folders()
                        except Unreachable as exc:
                            mon.report(exc)
                        next_sync = clock.t + timedelta(seconds=60)
                    clock.t += timedelta(seconds=mon.delay())
                    mon.tick()
                    rounds += 1
                    mode = mon.mode
                    entries += mode is Mode.CONTINUITY and last is not Mode.CONTINUITY
                    suspects += mode is Mode.SUSPECT and last is not Mode.SUSPECT
                    if mode is Mode.CONTINUITY:  # count it, then start over
                        mon.force("normal")
                        mon.reconcile_done("bench")
                        mon.force("auto")
                    last = mon.mode
                counts = sim.outage_json()
                per_seed.append({"seed": seed, "entries": entries, "suspect_episodes": suspects,
                                 "probe_rounds": rounds, "mail_requests_failed": counts["failed"],
                                 "mail_requests_ok": counts["passed"]})
                store.close()
            clock = Clock()
            mon, store = monitor(seeds, clock)
            for _ in range(4):  # a minute of good probes, then every mail request fails
                clock.t += timedelta(seconds=mon.delay())
                mon.tick()
            half = mon.delay() / 2
            clock.t += timedelta(seconds=half)  # the outage starts half way between two rounds
            sim.set_outage("flaky", scope="mail", fraction=1.0)
            began = clock.t
            clock.t += timedelta(seconds=half)
            mon.tick()
            while mon.mode is not Mode.CONTINUITY and clock.t - began < timedelta(minutes=5):
                clock.t += timedelta(seconds=mon.delay())
                mon.tick()
            full = (mon.state.since - began).total_seconds() if mon.mode is Mode.CONTINUITY else None
            store.close()
            source.close()
        finally:
            sim.stop()
    entries_total = sum(int(r["entries"]) for r in per_seed)  # type: ignore[call-overload]
    return {
        "fraction": round(1 / 3, 4), "simulated_minutes_per_seed": minutes, "seeds": per_seed,
        "entries": entries_total, "goal_entries": 0,
        "exact_false_entry_probability_10_min": {
            f"probe_requests_{n}": round_sig(entry_probability(dataclasses.replace(policy, probe_requests=n),
                                                               1 / 3, 600))
            for n in (2, 1)
        },
        "all_failing_seconds_to_continuity": full, "goal_s": 60,
        "meets_goal": entries_total == 0 and full is not None and full <= 60,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--short", action="store_true", help="100 messages instead of 500 (CI)")
    args = ap.parse_args()
    count = 100 if args.short else 500
    out: dict[str, object] = {"bench": "failover", "backup_route": []}
    runs: list[dict[str, object]] = out["backup_route"]  # type: ignore[assignment]
    with tempfile.TemporaryDirectory() as tmp:
        tls = make_tls(Path(tmp) / "tls")
        with FaultySmtp("starttls", tls) as server:
            route = SmtpRoute("localhost", server.port, "starttls", ca_file=str(tls.ca))
            seconds = burst(route, count)
            assert len(server.received) == count
            runs.append(result("aiosmtpd", count, seconds, connections=server.handler.connections))
        why = PostfixRelay.unavailable()
        if why:
            runs.append({"relay": "postfix", "skipped": why})
        else:
            relay = PostfixRelay(tls)
            try:
                relay.start()
                route = SmtpRoute("localhost", relay.port, "starttls", ca_file=str(tls.ca))
                seconds = burst(route, count)
                t0 = time.perf_counter()
                relay.wait_for(count, timeout=300)
                drained = seconds + time.perf_counter() - t0
                runs.append(result("postfix", count, seconds, delivered_to_maildir_s=round(drained, 3)))
            finally:
                relay.stop()
    out["outbox_backup"] = outbox_throughput(count)
    out["failover"] = failover_timings(0.1 if args.short else 1.0)
    out["failover_mail"] = mail_outage_timings(0.1 if args.short else 1.0)
    out["flaky_mail"] = flaky_mail(10.0, 2 if args.short else 5)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
