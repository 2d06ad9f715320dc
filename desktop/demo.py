"""`lifeboat demo --headless`: the whole continuity story against local stand-ins, as JSON lines.

Starts the simulator (the provider), a tiny in-process SMTP relay (aiosmtpd, keeps what it receives)
and the real app workers in a temp home, then plays: sign-in, sync, a normal send, an outage,
detection, a send through the backup relay, recovery, reconciliation into Sent Items. Each line is
{"t": seconds, "step": ...}. It never needs the internet; nothing outside its temp folder is touched.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from aiosmtpd.controller import Controller

DEMO_POLICY = {  # short, so the story takes well under two minutes
    "probe_interval_seconds": 2.0, "suspect_probe_interval_seconds": 1.0, "failures_to_enter": 3,
    "failover_after_seconds": 6.0, "successes_to_leave": 2, "recover_after_seconds": 4.0,
    "sync_interval_seconds": 10.0,
}
WAIT = 120.0  # safety net for each stage (a hang), not a performance target


class RelayHandler:
    """aiosmtpd handler that keeps every message it accepts."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.received.append((envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content)))
        return "250 2.0.0 queued by the demo relay"


class Story:
    def __init__(self, out: IO[str]) -> None:
        self.out, self.start = out, time.monotonic()

    def say(self, step: str, **fields: Any) -> None:
        line = {"t": round(time.monotonic() - self.start, 2), "step": step, **fields}
        print(json.dumps(line, default=str), file=self.out, flush=True)

    def notify(self, title: str, body: str) -> None:  # the Notifier of the headless app
        self.say("notify", title=title, body=body)

    def wait(self, what: str, done: Callable[[], bool]) -> float:
        began = time.monotonic()
        while not done():
            if time.monotonic() - began > WAIT:
                raise TimeoutError(f"the demo waited {WAIT:g} s for {what}")
            time.sleep(0.1)
        return round(time.monotonic() - began, 2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv: list[str] | None = None, out: IO[str] = sys.stdout) -> int:
    parser = argparse.ArgumentParser(prog="lifeboat demo", description=__doc__)
    parser.add_argument("--headless", action="store_true", help="no window (the only demo built so far)")
    parser.add_argument("--messages", type=int, default=40, help="messages in the simulated mailbox")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (its path is printed)")
    args = parser.parse_args(argv)
    story = Story(out)
    if not args.headless:
        story.say("note", text="the window demo is not built yet: playing the story headless")
    tmp = tempfile.TemporaryDirectory(prefix="lifeboat-demo-", ignore_cleanup_errors=True)
    try:
        return play(story, Path(tmp.name), args.messages)
    except Exception as exc:
        story.say("error", error=f"{type(exc).__name__}: {exc}")
        return 1
    finally:
        if args.keep:
            story.say("kept", home=tmp.name)
        else:
            tmp.cleanup()


def play(story: Story, root: Path, messages: int) -> int:
    # The demo's own environment: a temp home, a random cache key, simulator tokens in a plain file
    # under that temp home (they only open the throwaway local simulator), no public CA overrides.
    os.environ["LIFEBOAT_HOME"] = str(root / "home")
    os.environ["LIFEBOAT_DB_KEY"] = secrets.token_hex(32)
    os.environ["LIFEBOAT_INSECURE_TOKEN_CACHE"] = "1"  # noqa: S105 - a switch, not a password
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        os.environ.pop(name, None)
    import logging

    (root / "logs").mkdir(parents=True, exist_ok=True)
    handler_ = logging.FileHandler(root / "logs" / "demo.log", encoding="utf-8")
    handler_.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler_)
    logging.getLogger().setLevel(logging.INFO)
    from desktop import config as config_mod
    from desktop import worker
    from desktop.auth import MsalAuth
    from simulator.server import Simulator
    from sync import engine, mime
    from sync.model import Mode, OutboxState, Route
    from sync.store import Store, cache_path

    story.say("start", home=str(root), note="temp home, random cache key; nothing leaves this machine")
    sim = Simulator(root / "sim", messages=messages, seed=11).start()
    handler = RelayHandler()
    relay_port = free_port()
    relay = Controller(handler, hostname="127.0.0.1", port=relay_port)
    relay.start()
    story.say("servers", provider=sim.graph_url, backup_relay=f"127.0.0.1:{relay_port}")
    loops: list[worker.Loop] = []
    stop = threading.Event()
    try:
        cfg = config_mod.load(root / "config.toml", root / "policy.toml", overrides={
            "client_id": "lifeboat-demo", "username": sim.user.upn, "authority_url": sim.authority,
            "graph_url": sim.graph_url, "ca_file": str(sim.ca_path), "backup_smtp_host": "127.0.0.1",
            "backup_smtp_port": relay_port, "backup_smtp_security": "none", "data_dir": str(root / "home"),
            **DEMO_POLICY,
        })
        auth = MsalAuth(cfg)
        user = auth.login_device_code(lambda text: story.say("sign-in", prompt=text))
        story.say("signed-in", user=user)
        key = bytes.fromhex(os.environ["LIFEBOAT_DB_KEY"])
        with Store.open(cache_path(cfg.home, cfg.username), key) as store:
            c = worker.build(cfg, store, notifier=story, tokens=auth)
            began = time.monotonic()
            report = engine.sync_once(store, c.source, folders=cfg.folders, cache_days=cfg.cache_days)
            story.say("synced", messages=store.status()["messages"], folders=len(report.folders),
                      seconds=round(time.monotonic() - began, 2))
            c.start()
            loops = worker.start_loops(c, stop)

            def queue(subject: str, **kw: Any) -> str:
                out = mime.build(sender=cfg.username, to=["bob@partner.test"], subject=subject,
                                 text=f"{subject}\n", **kw)
                return engine.queue_message(store, out, c.now()).message_id

            def sent(mid: str) -> bool:
                item = store.outbox_by_message_id(mid)
                return item is not None and item.state is OutboxState.SENT

            mid = queue("Before the outage")
            took = story.wait("the first send", lambda: sent(mid))
            story.say("sent", route=Route.PRIMARY.value, message_id=mid, seconds=took)

            sim.set_outage("refuse")
            story.say("outage", provider="refusing connections")
            took = story.wait("continuity mode", lambda: c.monitor.mode is Mode.CONTINUITY)
            story.say("continuity", seconds_from_outage=took, reason=c.monitor.state.reason)

            mids = [queue("During the outage", bcc=["carol@partner.test"]),
                    queue("Report attached", attachments=[("report.txt", "text/plain", b"all fine\n")])]
            took = story.wait("the backup sends", lambda: all(sent(m) for m in mids))
            with handler.lock:
                got = len(handler.received)
            story.say("sent", route=Route.BACKUP.value, message_ids=mids, seconds=took, relay_received=got)

            sim.set_outage("normal")
            story.say("recovery", provider="answering again")
            took = story.wait("normal mode", lambda: c.monitor.refresh().mode is Mode.NORMAL)
            summary = c.last_reconcile.summary if c.last_reconcile else ""
            story.say("normal", seconds_from_recovery=took, reconcile=summary)

            listed = [i.message_id for i in c.source.list_messages("sentitems")]  # type: ignore[attr-defined]
            found = {m: listed.count(m) for m in mids}
            story.say("verified", copies_in_sent_items=found, once_each=all(n == 1 for n in found.values()))
            timeline = [{"at": e["at"], "kind": e["kind"], "detail": e["detail"]}
                        for e in reversed(store.events(50)) if e["kind"] in ("mode", "notify", "offline")]
            story.say("timeline", events=timeline)
            worker.stop_loops(loops, stop)
            loops = []
        ok = all(n == 1 for n in found.values())
        story.say("done", ok=ok)
        return 0 if ok else 1
    finally:
        if loops:
            worker.stop_loops(loops, stop)
        relay.stop()
        sim.stop()
