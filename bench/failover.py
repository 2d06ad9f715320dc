"""Benchmark: backup-route throughput (SmtpRoute, one burst connection, STARTTLS with a test CA).

Sends N messages (500; 100 with --short) to a local aiosmtpd relay and, when Postfix is installed and
we are root, to a private Postfix relay; prints JSON. Goal: >= 50 msg/s accepted by the relay.
Also: the durable outbox's throughput through engine.send_once, and real-time failover timings
(outage -> CONTINUITY, recovery -> NORMAL) with the default policy (--short: its times x 0.1).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# bench/sync.py would shadow the `sync` package: put the repository first instead of this folder.
sys.path[0:1] = [str(ROOT / "tests"), str(ROOT)]  # the real test servers live in tests/mailservers.py

from mailservers import POSTFIX_DOMAIN, FaultySmtp, PostfixRelay, make_tls  # noqa: E402

from sync.routes.smtp import SmtpRoute  # noqa: E402

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
                engine.queue_message(store, mime.build(
                    sender="ann@example.test", to=[f"bob@{POSTFIX_DOMAIN}"], subject=f"outbox {n}",
                    text="A typical short business mail body.\n" * 40), now)
            route = SmtpRoute("127.0.0.1", server.port, "none")
            start = time.perf_counter()
            report = engine.send_once(store, {Route.BACKUP: route}, Mode.CONTINUITY, now)
            seconds = time.perf_counter() - start
            route.close()
        assert len(report.sent) == count == len(server.received), report
    return result("aiosmtpd via engine.send_once (encrypted outbox)", count, seconds)


def failover_timings(scale: float) -> dict[str, object]:
    """Real time from a provider outage to CONTINUITY and from its end to NORMAL (reconcile included),
    with the default policy times multiplied by `scale`: the simulator as the provider (refusing
    connections), an aiosmtpd relay as the backup route and reference, the app's own worker loops."""
    import dataclasses
    import os
    import threading

    from desktop import worker
    from desktop.auth import MsalAuth
    from desktop.config import Config
    from simulator.server import Simulator
    from sync import engine, mime
    from sync.model import Mode, OutboxState
    from sync.store import Store

    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        os.environ.pop(name, None)
    os.environ["LIFEBOAT_INSECURE_TOKEN_CACHE"] = "1"  # tokens of a throwaway local simulator
    d = Config()
    policy = {k: getattr(d, k) * scale for k in (
        "probe_interval_seconds", "suspect_probe_interval_seconds", "failover_after_seconds",
        "recover_after_seconds")}
    with tempfile.TemporaryDirectory() as tmp, FaultySmtp() as relay:
        sim = Simulator(Path(tmp) / "sim", messages=5).start()
        stop = threading.Event()
        loops: list[worker.Loop] = []
        try:
            cfg = dataclasses.replace(
                d, client_id="bench", username=sim.user.upn, authority_url=sim.authority,
                graph_url=sim.graph_url, ca_file=str(sim.ca_path), data_dir=str(Path(tmp) / "home"),
                backup_smtp_host="127.0.0.1", backup_smtp_port=relay.port, backup_smtp_security="none",
                sync_interval_seconds=3600.0, **policy)
            auth = MsalAuth(cfg)
            auth.login_device_code(lambda text: None)
            with Store.open(Path(tmp) / "bench.db", os.urandom(32)) as store:
                c = worker.build(cfg, store, tokens=auth)
                c.start()
                loops = worker.start_loops(c, stop)
                time.sleep(2 * cfg.probe_interval_seconds)  # a few good probes first
                t0 = time.monotonic()
                sim.set_outage("refuse")
                while c.monitor.mode is not Mode.CONTINUITY:
                    time.sleep(0.05)
                to_continuity = time.monotonic() - t0
                out = mime.build(sender=cfg.username, to=[f"bob@{POSTFIX_DOMAIN}"], subject="during",
                                 text="sent during the outage\n")
                mid = engine.queue_message(store, out, c.now()).message_id
                while store.outbox_by_message_id(mid).state is not OutboxState.SENT:  # type: ignore[union-attr]
                    time.sleep(0.05)
                t1 = time.monotonic()
                sim.set_outage("normal")
                while c.monitor.refresh().mode is not Mode.NORMAL:
                    time.sleep(0.05)
                to_normal = time.monotonic() - t1
                summary = c.last_reconcile.summary if c.last_reconcile else ""
                worker.stop_loops(loops, stop)  # before the store closes
        finally:
            worker.stop_loops(loops, stop)
            sim.stop()
    p = cfg.probe_interval_seconds
    return {
        "policy_scale": scale,
        "policy": {k: round(v, 3) for k, v in policy.items()} | {"failures_to_enter": d.failures_to_enter,
                                                                 "successes_to_leave": d.successes_to_leave},
        "seconds_to_continuity": round(to_continuity, 2),
        "continuity_bound_s": round(cfg.failover_after_seconds + p, 2),
        "seconds_to_normal": round(to_normal, 2),
        "normal_bound_s": round(cfg.recover_after_seconds + p, 2),
        "meets_goal": to_continuity <= min(60.0, cfg.failover_after_seconds + p) + 1.0
        and to_normal <= min(60.0, cfg.recover_after_seconds + p) + 1.0,
        "reconcile": summary,
        "note": "bounds are the policy's minimum plus one probe interval (+1 s slack for probes and "
                "reconcile); --short scales the policy's times by 0.1",
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
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
