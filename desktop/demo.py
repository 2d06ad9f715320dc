"""`lifeboat demo`: the whole continuity story against local stand-ins (the simulator, an SMTP relay).

`--headless` plays it by itself as JSON lines {"t": seconds, "step": ...}: sign-in, sync, a normal send,
an Exchange-only outage (mail down, sign-in and `/me` up), detection, a backup send, recovery,
reconciliation into Sent Items. Without it, `gui()` runs
the real app (desktop.app) in demo mode: the window's demo panel cuts and restores the provider and the
user plays. It never needs the internet; nothing outside its temp folder is touched.
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
    """aiosmtpd handler that keeps every message it accepts (and tells `on_message`, if given)."""

    def __init__(self, on_message: Callable[[str, list[str], bytes], Any] | None = None) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []
        self.lock = threading.Lock()
        self.on_message = on_message

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.received.append((envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content)))
        if self.on_message is not None:
            self.on_message(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content))
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


def main(argv: list[str] | None = None, out: IO[str] = sys.stdout,
         on_started: Callable[[Any], Any] | None = None) -> int:
    """`on_started(app)` (tests only) runs once the window demo's app is up."""
    parser = argparse.ArgumentParser(prog="lifeboat demo", description=__doc__)
    parser.add_argument("--headless", action="store_true", help="no window: play the story by itself as JSON")
    parser.add_argument("--messages", type=int, default=40, help="messages in the simulated mailbox")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (its path is printed)")
    args = parser.parse_args(argv)
    if not args.headless:
        return gui(args.messages, out, on_started=on_started)
    story = Story(out)
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


def prepare(root: Path) -> None:
    """The demo's own environment: a temp home, a random cache key, simulator tokens in a plain file
    under that temp home (they only open the throwaway local simulator), no public CA overrides."""
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


def demo_config(root: Path, sim: Any, relay_port: int) -> Any:
    from desktop import config as config_mod

    return config_mod.load(root / "config.toml", root / "policy.toml", overrides={
        "client_id": "lifeboat-demo", "username": sim.user.upn, "authority_url": sim.authority,
        "graph_url": sim.graph_url, "ca_file": str(sim.ca_path), "backup_smtp_host": "127.0.0.1",
        "backup_smtp_port": relay_port, "backup_smtp_security": "none", "data_dir": str(root / "home"),
        **DEMO_POLICY,
    })


def still_up(sim: Any, auth: Any) -> dict[str, Any]:
    """During the demo's Exchange-only outage: what still answers (the user resource `/me`, served by the
    directory, and the sign-in authority), which is why probing `/me` would never have noticed."""
    import ssl
    import urllib.error
    import urllib.request

    tls = ssl.create_default_context(cafile=str(sim.ca_path))  # the simulator's CA, verified
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                         urllib.request.HTTPSHandler(context=tls))

    def status(url: str, headers: dict[str, str] | None = None) -> int | str:
        try:
            request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - the simulator's https URLs
            with opener.open(request, timeout=10) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except (OSError, ValueError) as exc:  # URLError, a reset, a timeout
            return type(exc).__name__

    bearer = {"Authorization": f"Bearer {auth.token()}"}
    return {"me": status(f"{sim.graph_url}/me?$select=id", headers=bearer),
            "sign_in": status(f"{sim.oidc_authority}/.well-known/openid-configuration")}


def play(story: Story, root: Path, messages: int) -> int:
    prepare(root)
    from desktop import worker
    from desktop.auth import MsalAuth
    from simulator.server import Simulator
    from sync import compose, engine
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
        cfg = demo_config(root, sim, relay_port)
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
                draft = compose.Draft(sender=cfg.username, to=("bob@partner.test",), subject=subject,
                                      text=f"{subject}\n", **kw)
                return engine.queue(store, draft, c.now()).message_id

            def sent(mid: str) -> bool:
                item = store.outbox_by_message_id(mid)
                return item is not None and item.state is OutboxState.SENT

            mid = queue("Before the outage")
            took = story.wait("the first send", lambda: sent(mid))
            story.say("sent", route=Route.PRIMARY.value, message_id=mid, seconds=took)

            sim.set_outage("refuse", scope="mail")  # Exchange Online down; Entra ID (sign-in, /me) up
            story.say("outage", provider="Exchange Online down: every mail request is reset", scope="mail",
                      **still_up(sim, auth))
            took = story.wait("continuity mode", lambda: c.monitor.mode is Mode.CONTINUITY)
            story.say("continuity", seconds_from_outage=took, reason=c.monitor.state.reason)

            mids = [queue("During the outage", bcc=("carol@partner.test",)),
                    queue("Report attached", attachments=(("report.txt", "text/plain", b"all fine\n"),))]
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


# ---------------------------------------------------------------------- the window demo

GUIDE = """\
Lifeboat demo: the app runs against a local Microsoft 365 simulator and a local backup relay.
  1. The window shows the cached mailbox. The DEMO strip under the banner drives the simulator.
  2. Click "Cut the provider": its mail goes down (Exchange Online), sign-in stays up. Within about
     {enter:.0f} s the banner (and the tray icon) turn to "Continuity mode" and a desktop notification
     says so.
  3. Click "New message" and send something: it leaves through the backup relay (this terminal prints
     it) and the Outbox shows it as sent via backup.
  4. Click "Restore the provider". After about {leave:.0f} s Lifeboat recovers, copies the outage mail into
     Sent Items, and the banner reads "Normal" again ("Timeline" shows the whole story).
Closing the window keeps the app in the tray; "Open Lifeboat" there (or `lifeboat demo` again) reopens
it; "Quit" in the tray menu or Ctrl-C here ends the demo and deletes its temp folder ({root}).
"""


def demo_root() -> Path:
    """One demo per user at a time: a fixed folder under the temp dir, so a second `lifeboat demo`
    finds the first one's doorbell. Refused when someone else owns it or it is a link."""
    from sync.errors import ConfigError

    uid = os.getuid() if hasattr(os, "getuid") else 0
    root = Path(tempfile.gettempdir()) / f"lifeboat-demo-{uid}"
    if root.is_symlink() or (root.exists() and hasattr(os, "getuid") and root.stat().st_uid != uid):
        raise ConfigError(f"{root} is not this user's own folder, so the demo will not use it",
                          fix="remove it, or set TMPDIR to another folder")
    return root


def gui(messages: int, out: IO[str] = sys.stdout, on_started: Callable[[Any], Any] | None = None) -> int:
    """`lifeboat demo`: the simulator, the relay and the real app (window, tray, workers) in demo mode."""
    import shutil

    from desktop.app import DemoMode, require_display, run_app
    from desktop.doorbell import Doorbell

    def say(text: str) -> None:
        print(text, file=out, flush=True)

    root = demo_root()
    if Doorbell(root / "home").ring():
        say("lifeboat demo: the demo is already running: its window is open now.")
        return 0
    require_display("lifeboat demo --headless")
    shutil.rmtree(root, ignore_errors=True)  # a crashed demo's leftovers (the doorbell said none runs)
    root.mkdir(mode=0o700, parents=True)
    try:
        prepare(root)
        from desktop.auth import MsalAuth
        from simulator.server import Simulator
        from sync import engine
        from sync.store import Store, cache_path

        sim = Simulator(root / "sim", messages=messages, seed=11).start()

        def relayed(sender: str, rcpts: list[str], raw: bytes) -> None:
            import email

            subject = email.message_from_bytes(raw).get("Subject", "")
            say(f"backup relay: accepted {subject!r} from {sender} for {len(rcpts)} recipient(s)")

        relay_port = free_port()
        relay = Controller(RelayHandler(relayed), hostname="127.0.0.1", port=relay_port)
        relay.start()
        try:
            cfg = demo_config(root, sim, relay_port)
            auth = MsalAuth(cfg)
            auth.login_device_code(lambda text: None)  # the simulator approves device codes by itself
            key = bytes.fromhex(os.environ["LIFEBOAT_DB_KEY"])
            with Store.open(cache_path(cfg.home, cfg.username), key) as store:  # mail in the window at once
                from sync.sources.graph import GraphSource

                source = GraphSource(cfg.graph_url, auth, ca_file=cfg.ca_file)
                engine.sync_once(store, source, folders=cfg.folders, cache_days=cfg.cache_days)
            say(GUIDE.format(enter=DEMO_POLICY["failover_after_seconds"] + 2,
                             leave=DEMO_POLICY["recover_after_seconds"] + 2, root=root))
            say(f"provider (simulator): {sim.graph_url}   backup relay: 127.0.0.1:{relay_port}   "
                f"signed in as {cfg.username}")
            return run_app(cfg, demo=DemoMode(admin_url=sim.admin_url), tokens=auth, key=key,
                           on_started=on_started)
        finally:
            relay.stop()
            sim.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
