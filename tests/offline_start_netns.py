"""The offline-start scenario of issue 9 item 7, run INSIDE a private network and mount namespace.

Not a test module: tests/test_auth_offline_start.py runs `unshare -n -m python tests/offline_start_netns.py
WORKDIR` and asserts on the JSON this prints last. Here, and only here, login.microsoftonline.com
resolves to 127.0.0.1 (a hosts file bind-mounted over /etc/hosts) and the simulator listens on 127.0.0.1:443
with a certificate for that name from its local CA, so msal takes its real path for an Entra ID host
(tenant discovery; instance discovery for account aliases) while no packet can leave the namespace: it
has a loopback interface and no route.

Steps (each result goes into the printed JSON):
  A. the app through the real CLI: status before sign-in (msal asks instance discovery), device code
     sign-in, one sync, a wait of "3 days" (msal's saved http_cache and the token cache aged by shifting
     their stored times), then Microsoft unreachable (the simulator refuses connections) and the relay
     up: msal cannot be built; status, search and show work; a message sent is delivered through
     the backup relay by `lifeboat run --headless` in continuity mode.
  B. the refresh while online, with the old behaviour (discovery_refresh=None) beside the new one:
     sign in, 7 hours later a token is taken online, 20 hours after that the start is offline.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from desktop.auth import MsalAuth  # noqa: E402
from desktop.config import Config  # noqa: E402
from simulator.server import Simulator  # noqa: E402
from tests.mailservers import FaultySmtp  # noqa: E402

HOST = "login.microsoftonline.com"
DAY = 86400


def private_network(work: Path) -> dict[str, Any]:
    """Loopback up, HOST -> 127.0.0.1 for this namespace only; returns what the namespace looks like."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    hosts = work / "hosts"
    hosts.write_text(f"127.0.0.1 localhost\n127.0.0.1 {HOST}\n")
    subprocess.run(["mount", "--bind", str(hosts), "/etc/hosts"], check=True)
    routes = subprocess.run(["ip", "-4", "route", "show"], capture_output=True, text=True, check=True).stdout
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    return {"resolves_to": socket.gethostbyname(HOST), "routes": routes.strip(),
            "links": [line.split(":")[1].strip() for line in links.splitlines()]}


def age_http_cache(path: Path, seconds: int) -> dict[str, list[int]]:
    """Move every entry of msal's saved http_cache `seconds` into the past, as if msal had fetched it then.

    msal (individual_cache.py, _ExpiringMapping) stores `_index_` = (heap of [expires_at, created_at,
    key], {key: [expires_at, created_at]}) and compares them with int(time.time()); shifting both numbers
    is exactly the file msal would have written `seconds` earlier. Returns {key: [expires_at, created_at]}."""
    data = pickle.loads(path.read_bytes())  # the file the app under test wrote
    heap, stamps = data["_index_"]
    for entry in heap:
        entry[0] -= seconds
        entry[1] -= seconds
    for key in stamps:
        stamps[key] = [stamps[key][0] - seconds, stamps[key][1] - seconds]
    path.write_bytes(pickle.dumps(data))
    return {k: list(v) for k, v in stamps.items()}


def age_token_cache(path: Path, seconds: int) -> int:
    """The plaintext test token cache (LIFEBOAT_INSECURE_TOKEN_CACHE=1): access tokens issued `seconds`
    earlier (cached_at, expires_on, extended_expires_on, refresh_in moved back). Returns how many."""
    data = json.loads(path.read_text())
    n = 0
    for at in data.get("AccessToken", {}).values():
        for field in ("cached_at", "expires_on", "extended_expires_on", "refresh_on"):
            if field in at:
                at[field] = str(int(at[field]) - seconds)
        n += 1
    path.write_text(json.dumps(data))
    return n


def discovery_keys(path: Path) -> list[str]:
    data = pickle.loads(path.read_bytes())
    return sorted(k.split(" hash=")[0] for k in data["_index_"][1] if k.startswith("GET "))


def cli(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([sys.executable, "-m", "desktop.cli", *args], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
    if check and out.returncode != 0:
        raise SystemExit(f"lifeboat {' '.join(args)} -> {out.returncode}\n{out.stdout}\n{out.stderr}")
    return out


def scenario_app(work: Path, sim: Simulator, relay: FaultySmtp) -> dict[str, Any]:
    home = work / "app-home"
    config = work / "config.toml"
    config.write_text(
        "[account]\n"
        f'tenant = "{sim.user.tid}"\n'
        'client_id = "lifeboat-tests"\n'
        f'username = "{sim.user.upn}"\n'
        f'authority_url = "https://{HOST}/{{tenant}}"\n'
        f'graph_url = "{sim.graph_url}"\n'
        f'ca_file = "{sim.ca_path}"\n'
        '[sync]\nfolders = ["*"]\ncache_days = 3650\nsync_interval_seconds = 2\n'
        f'[backup]\nbackup_smtp_host = "127.0.0.1"\nbackup_smtp_port = {relay.port}\n'
        'backup_smtp_security = "none"\n'
        "[failover]\nprobe_interval_seconds = 1\nsuspect_probe_interval_seconds = 0.5\n"
        "failures_to_enter = 2\nfailover_after_seconds = 1\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")}
    env.update({"PYTHONPATH": str(ROOT), "LIFEBOAT_HOME": str(home), "LIFEBOAT_CONFIG": str(config),
                "LIFEBOAT_POLICY": str(work / "no-policy.toml"), "LIFEBOAT_DB_KEY": os.urandom(32).hex(),
                "LIFEBOAT_INSECURE_TOKEN_CACHE": "1"})
    out: dict[str, Any] = {}
    sim.add_message("inbox", b"From: Zoe <zoe@example.com>\r\nTo: " + sim.user.upn.encode() + b"\r\n"
                    b"Subject: Lighthouse keeper rota\r\nMessage-ID: <rota@example.com>\r\n"
                    b"Date: Fri, 27 Nov 2026 08:00:00 +0000\r\n\r\nYou have the night shift.\r\n")
    out["status_before"] = json.loads(cli(env, "status", "--json").stdout)["sign_in"]
    out["login"] = cli(env, "login", "--device-code").stdout.strip().splitlines()[-1]
    cli(env, "sync", "--once", "--quiet")
    out["login_requests"] = sorted({p for m, p in sim.request_log if m == "GET" and "/v1.0" not in p})
    http_cache = home / "msal_http_cache.bin"
    out["cached_discovery"] = discovery_keys(http_cache)
    fetched = age_http_cache(http_cache, 0)
    out["kept_seconds"] = sorted({expires - created for expires, created in fetched.values()})
    aged = age_http_cache(http_cache, 3 * DAY)
    out["aged_all_expired"] = all(expires < time.time() for expires, _ in aged.values())
    out["aged_access_tokens"] = age_token_cache(home / "msal_cache.bin", 3 * DAY)

    sim.set_outage("refuse")  # Microsoft unreachable from here (sign-in and Graph); the relay answers
    probe = ("import json\nfrom desktop.auth import MsalAuth\nfrom desktop.cli import load_config\n"
             "import argparse\ncfg = load_config(argparse.Namespace(config=None, home=None))\n"
             "try:\n    MsalAuth(cfg).app()\n    print(json.dumps({'app': 'built'}))\n"
             "except Exception as e:\n    print(json.dumps({'app': type(e).__name__, 'why': str(e)}))\n")
    out["msal_offline"] = json.loads(subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env,
                                                    capture_output=True, text=True, timeout=300).stdout)
    status = json.loads(cli(env, "status", "--json").stdout)
    out["status_offline"] = {"sign_in": status["sign_in"], "detail": status["sign_in_detail"],
                             "messages": status.get("messages")}
    found = json.loads(cli(env, "search", "lighthouse", "--json").stdout)
    out["search_subjects"] = [r["subject"] for r in found["results"]]
    if found["results"]:
        shown = json.loads(cli(env, "show", str(found["results"][0]["id"]), "--json").stdout)
        out["show"] = {"subject": shown["subject"], "text": shown.get("text", "").strip()}
    queued = json.loads(cli(env, "send", "--to", "bob@relay.test", "--subject", "Sent days later, offline",
                            "--body", "through the backup relay", "--json").stdout)
    run = subprocess.Popen([sys.executable, "-m", "desktop.cli", "run", "--headless"], cwd=ROOT, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300  # a safety net for a hang, not a performance limit
    while time.monotonic() < deadline and not relay.received and run.poll() is None:
        time.sleep(0.2)
    run.send_signal(signal.SIGINT)
    try:
        _, stderr = run.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        run.kill()
        _, stderr = run.communicate()
    out["run_exit"] = run.returncode
    out["run_traceback"] = "Traceback" in stderr
    out["relay_received"] = [r.message()["Message-ID"] for r in relay.received]
    out["queued_message_id"] = queued["message_id"]
    outbox = json.loads(cli(env, "outbox", "--json").stdout)
    out["outbox"] = [{"state": i["state"], "route": i.get("route")} for i in outbox["items"]]
    out["mode_after"] = json.loads(cli(env, "status", "--json").stdout)["failover"]["mode"]
    sim.set_outage("normal")
    return out


def scenario_refresh(work: Path, sim: Simulator) -> dict[str, Any]:
    """Old (no re-fetch) and new (re-fetch every 6 h) side by side: signed in at T, a token taken online
    at T+7h, started offline at T+27h (the last sign-in-authority contact 20 h before)."""
    os.environ.pop("REQUESTS_CA_BUNDLE", None)
    os.environ.pop("CURL_CA_BUNDLE", None)
    os.environ["LIFEBOAT_INSECURE_TOKEN_CACHE"] = "1"
    out: dict[str, Any] = {}
    for name, refresh in (("old", None), ("new", 6 * 3600.0)):
        home = work / f"refresh-{name}"
        cfg = Config(tenant=sim.user.tid, client_id="lifeboat-tests", authority_url=f"https://{HOST}/{{tenant}}",
                     graph_url=sim.graph_url, ca_file=str(sim.ca_path), data_dir=str(home))
        MsalAuth(cfg, discovery_refresh=refresh).login_device_code(lambda _t: None)
        age_http_cache(home / "msal_http_cache.bin", 7 * 3600)
        before = len(sim.request_log)
        auth = MsalAuth(cfg, discovery_refresh=refresh)
        auth.token()  # online, 7 h later (the access token is still cached)
        if auth.discovery_thread is not None:
            auth.discovery_thread.join(300)
        fetched = [p for m, p in list(sim.request_log)[before:] if m == "GET"]
        age_http_cache(home / "msal_http_cache.bin", 20 * 3600)
        age_token_cache(home / "msal_cache.bin", 27 * 3600)
        sim.set_outage("refuse")
        try:
            auth = MsalAuth(cfg, discovery_refresh=refresh)
            try:
                auth.app()
                built = "built"
            except Exception as exc:  # reported: the test asserts on it
                built = type(exc).__name__
            out[name] = {"refetched_at_7h": fetched, "offline_app": built, "account": auth.account(),
                         "state": auth.state()}
        finally:
            sim.set_outage("normal")
    return out


def main() -> None:
    work = Path(sys.argv[1])
    result: dict[str, Any] = {"namespace": private_network(work)}
    sim = Simulator(work / "sim", port=443, messages=6, seed=9, authority_host=HOST).start()
    try:
        with FaultySmtp() as relay:
            result["app"] = scenario_app(work, sim, relay)
        result["refresh"] = scenario_refresh(work, sim)
    finally:
        sim.stop()
        shutil.rmtree(work / "sim", ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
