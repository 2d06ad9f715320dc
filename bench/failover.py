"""Benchmark: backup-route throughput (SmtpRoute, one burst connection, STARTTLS with a test CA).

Sends N messages (500; 100 with --short) to a local aiosmtpd relay and, when Postfix is installed and
we are root, to a private Postfix relay; prints JSON. Goal: >= 50 msg/s accepted by the relay.
(Outage -> CONTINUITY timings with sync.failover are to be added here.)
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
sys.path.insert(0, str(ROOT / "tests"))  # the real test servers live in tests/mailservers.py

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
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
