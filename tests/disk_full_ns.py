"""The full-disk scenarios of issue 11 item 10, run INSIDE a private mount namespace on a real tmpfs.

Not a test module: tests/test_disk_full.py runs `unshare -m python tests/disk_full_ns.py SCENARIO WORKDIR`
and asserts on the JSON this prints last. Here, and only here, WORKDIR/home is a small tmpfs (mounted in
this namespace, gone with it), so the data folder's disk really fills: SQLite gets ENOSPC from the
kernel, not a simulated error.

  import      the real CLI (`python -m desktop.cli`, a subprocess): import-eml of many messages into a
              cache on a 4 MB tmpfs; then status, search and doctor on the full disk; then the tmpfs is
              grown and the same import runs again. Also a cache whose disk another program filled
              while Lifeboat was not running (its -wal/-shm cannot even be created).
  continuity  the running engine: sync.continuity.Continuity with the real GraphSource and GraphRoute
              against the simulator, the real SmtpRoute against a local relay, and the headless
              notifier (desktop.worker.LogNotifier); a filler file leaves too little room for the sync,
              the ticks run, a message is queued and sent, then the filler is deleted.
"""

from __future__ import annotations

import email.utils
import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KEY = "5a" * 32
MB = 1024 * 1024


def mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)], check=True)


def free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def words(rng: random.Random, n: int) -> str:
    """n pseudo-words of random letters: text that neither compresses nor shares index terms much."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    return " ".join("".join(rng.choice(letters) for _ in range(rng.randint(4, 10))) for _ in range(n))


def message(n: int, rng: random.Random, to: str = "bob@example.org", body_words: int = 1200) -> bytes:
    when = email.utils.format_datetime(email.utils.localtime())
    return (f"From: Ann <ann@example.org>\r\nTo: {to}\r\nSubject: report number{n} of the quarter\r\n"
            f"Date: {when}\r\nMessage-ID: <disk.{n}@example.org>\r\n\r\n"
            f"marker{n}\r\n{words(rng, body_words)}\r\n").encode()


# ---- import ------------------------------------------------------------------------------------------


def cli(home: Path, *argv: str) -> dict[str, Any]:
    env = {**os.environ, "LIFEBOAT_DB_KEY": KEY, "LIFEBOAT_HOME": str(home),
           "LIFEBOAT_CONFIG": str(home.parent / "no-config.toml"),
           "LIFEBOAT_POLICY": str(home.parent / "no-policy.toml")}
    out = subprocess.run([sys.executable, "-m", "desktop.cli", *argv], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    return {"rc": out.returncode, "stdout": out.stdout, "stderr": out.stderr}


def scenario_import(work: Path) -> dict[str, Any]:
    rng = random.Random(11)
    mail = work / "mail"
    mail.mkdir()
    for n in range(400):
        (mail / f"m{n:04}.eml").write_bytes(message(n, rng))
    home = work / "home"
    mount_tmpfs(home, "4m")
    result: dict[str, Any] = {"messages": 400, "tmpfs_bytes": 4 * MB, "home": str(home)}
    result["import"] = cli(home, "import-eml", str(mail))
    result["free_after"] = free(home)
    result["status"] = cli(home, "status", "--json")
    result["search_first"] = cli(home, "search", "marker0", "--json")
    result["search_last"] = cli(home, "search", "marker399", "--json")
    result["doctor"] = cli(home, "doctor", "--json")
    subprocess.run(["mount", "-o", "remount,size=64m", str(home)], check=True)  # space comes back
    result["again"] = cli(home, "import-eml", str(mail))
    result["status_again"] = cli(home, "status", "--json")
    result["search_last_again"] = cli(home, "search", "marker399", "--json")

    # a disk another program filled while Lifeboat was not running
    home2 = work / "home2"
    mount_tmpfs(home2, "1m")
    result["created"] = cli(home2, "import-eml", str(mail / "m0000.eml"))
    db = home2 / "cache" / "default.lifeboat.db"
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    shutil.rmtree(home2 / "logs")  # a fresh log file: its first line cannot be written either
    with (home2 / "filler").open("wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError:
            pass
    result["prefilled_free"] = free(home2)
    result["prefilled"] = cli(home2, "import-eml", str(mail))
    result["prefilled_unchanged"] = hashlib.sha256(db.read_bytes()).hexdigest() == before
    result["prefilled_companions"] = sorted(p.name for p in db.parent.iterdir())
    return result


# ---- continuity --------------------------------------------------------------------------------------


def scenario_continuity(work: Path) -> dict[str, Any]:
    import dataclasses

    from desktop.worker import LogNotifier
    from simulator.server import Simulator
    from sync import compose, engine
    from sync.commands import Force
    from sync.continuity import DISK_SETTING, Continuity
    from sync.model import Mode, OutboxState, Route
    from sync.store import Store, cache_path
    from tests.continuity_kit import FakeClock, relay_route, sign_in, sim_config
    from tests.mailservers import FaultySmtp
    from ui.view import View

    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        os.environ.pop(name, None)
    os.environ["LIFEBOAT_INSECURE_TOKEN_CACHE"] = "1"  # tokens of a throwaway simulator
    home = work / "home"
    mount_tmpfs(home, "16m")
    rng = random.Random(7)
    sim = Simulator(work / "sim", messages=3, seed=5).start()
    sim.set_transport(sent_delay=0)
    # tokens live 60 s: every token() renews it (msal renews within 5 minutes of expiry), and the
    # simulator rotates the refresh token each time, revoking the old one, so the token cache is written
    # on the full disk too, and a refresh token that is not kept is refused at the next renewal
    sim.set_token_lifetime(60)
    total = 120
    for n in range(total):
        sim.add_message("inbox", message(n, rng, to=sim.user.upn))
    result: dict[str, Any] = {"remote_inbox": total}
    notes = io.StringIO()
    try:
        with FaultySmtp() as relay:
            cfg = dataclasses.replace(sim_config(sim, home), folders=("Inbox",), sync_interval_seconds=60)
            auth = sign_in(cfg)
            from sync.routes.graph import GraphRoute
            from sync.sources.graph import GraphSource

            source = GraphSource(cfg.graph_url, auth, ca_file=cfg.ca_file, probe_timeout=(2.0, 3.0))
            backup = relay_route(relay)
            with Store.open(cache_path(home, "default"), bytes.fromhex(KEY)) as store:
                clock = FakeClock()
                c = Continuity(cfg, store, source, {Route.PRIMARY: GraphRoute(source), Route.BACKUP: backup},
                               [backup], clock=clock, notifier=LogNotifier(notes), reference_timeout=3)
                c.resume_free = 2 * MB
                c.start()
                # another program fills the disk but ~700 KB: the summaries fit, the bodies do not
                filler = home / "filler.bin"
                filler.write_bytes(b"\0" * max(0, free(home) - 700 * 1024))
                result["free_before_sync"] = free(home)

                def tick(name: str) -> dict[str, Any]:
                    try:
                        return {"delay": getattr(c, name)(), "raised": None}
                    except Exception as exc:  # the very thing under test: a tick must not raise
                        return {"delay": None, "raised": f"{type(exc).__name__}: {exc}"}

                result["sync1"] = tick("sync_tick")
                result["cached_with_mime_after_sync1"] = store.count_messages(with_mime=True)
                result["free_after_sync1"] = free(home)
                result["setting"] = store.get_setting(DISK_SETTING)
                result["banner"] = View(store).status()
                result["status_cli"] = cli(home, "status", "--json")
                result["notes_after_pause"] = notes.getvalue().splitlines()
                result["sync2"] = tick("sync_tick")  # still full: waits, says nothing new, does not raise
                result["health"] = tick("health_tick")
                result["notes_after_sync2"] = len(notes.getvalue().splitlines())

                # the outbox keeps working on the full disk: queue, then send through the primary route
                draft = compose.Draft(sender=cfg.username, to=("carol@example.org",),
                                      subject="sent while the disk is full", text="hello\n")
                try:
                    item = engine.queue(store, draft, clock.now())
                    result["queued"] = {"id": item.id, "message_id": item.message_id}
                except Exception as exc:
                    result["queued"] = {"error": f"{type(exc).__name__}: {exc}"}
                result["outbox1"] = tick("outbox_tick")
                sent = {x.message_id: x for x in store.outbox_list([OutboxState.SENT])}
                result["sent_primary"] = {m: str(x.route) for m, x in sent.items()}
                result["provider_sent"] = [x["message_id"] for x in sim.sent_items()]

                # ... and through the backup route in continuity mode
                c.handle(Force("continuity"))
                result["mode"] = c.monitor.refresh().mode.value
                draft2 = dataclasses.replace(draft, subject="sent through the relay on a full disk")
                try:
                    item2 = engine.queue(store, draft2, clock.now())
                    result["queued2"] = {"id": item2.id, "message_id": item2.message_id}
                except Exception as exc:
                    result["queued2"] = {"error": f"{type(exc).__name__}: {exc}"}
                result["outbox2"] = tick("outbox_tick")
                result["relay_received"] = len(relay.received)
                result["sync_in_continuity"] = tick("sync_tick")
                c.handle(Force("normal"))
                c.outbox_tick()  # RECOVERING: reconcile the relay-sent message into Sent Items
                result["mode_after"] = c.monitor.refresh().mode.value
                result["free_before_resume"] = free(home)

                filler.unlink()  # space comes back
                result["free_after_delete"] = free(home)
                result["lockfile_while_full"] = (home / "msal_cache.bin.lockfile").exists()
                result["sync3"] = tick("sync_tick")
                result["sign_in_after"] = [auth.state(), auth.last_error]
                result["lockfile_after"] = (home / "msal_cache.bin.lockfile").exists()
                from desktop.auth import MsalAuth

                restarted = MsalAuth(cfg)  # a restart: only what was saved in the token cache file
                result["sign_in_restarted"] = [restarted.state(), restarted.last_error]
                result["setting_after"] = store.get_setting(DISK_SETTING)
                result["banner_after"] = View(store).status().get("disk_full")
                result["notes"] = notes.getvalue().splitlines()
                result["cached_with_mime"] = store.count_messages(with_mime=True)
                result["cached"] = store.count_messages()
                result["search_last"] = len(store.search(f"marker{total - 1}"))
                result["check"] = store.check()
                result["outbox_states"] = {str(i.state): str(i.route) for i in store.outbox_list()}
                result["mode_final"] = Mode(c.monitor.refresh().mode).value
            source.close()
    finally:
        sim.stop()
    return result


def main() -> int:
    scenario, work = sys.argv[1], Path(sys.argv[2])
    run = {"import": scenario_import, "continuity": scenario_continuity}[scenario]
    print(json.dumps(run(work), default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
