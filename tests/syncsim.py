"""Test fixtures for sign-in and sync: the simulator in its own process, a real Secret Service, the CLI.

`SimProcess` runs `python -m simulator.cli` (so the provider does not share our GIL) and drives it
through its admin API over plain HTTP. `SecretService` starts a private D-Bus session bus with
gnome-keyring-daemon (a real keystore for msal-extensions' libsecret cache). `lifeboat(...)` runs the
real CLI as a subprocess with an isolated home, config and environment.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable


class SimAdmin:
    """What tests ask of a simulator through its admin API, whichever way `admin()` reaches it (the
    admin port of a SimProcess, or an InProcessSim's direct call)."""

    def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        raise NotImplementedError

    def state(self) -> dict[str, dict[str, str]]:
        """{folder id: {provider_id: sha256 of MIME}} as the simulator holds it."""
        return {k: v for k, v in self.admin("GET", "state")["state"].items() if v}

    def requests(self) -> int:
        return int(self.admin("GET", "requests")["count"])

    def outage(self, mode: str, **kw: Any) -> None:
        self.admin("POST", "outage", {"mode": mode, **kw})


class SimProcess(SimAdmin):
    def __init__(self, data: Path, messages: int = 50, seed: int = 7, token_lifetime: float = 3600.0) -> None:
        self.data = data
        cmd = [PY, "-m", "simulator.cli", "--port", "0", "--admin-port", "0", "--messages", str(messages),
               "--seed", str(seed), "--auto-approve", "--data", str(data), "--fresh",
               "--token-lifetime", str(token_lifetime)]
        self.log = data.parent / f"{data.name}-sim.log"
        with self.log.open("w") as out:  # a file, not a pipe: a chatty simulator can never block
            self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, text=True,
                                         env=clean_env())
        self.urls: dict[str, str] = {}
        deadline = time.monotonic() + 300  # safety net for a hang, not a performance limit
        while time.monotonic() < deadline and "Ctrl-C" not in self.log.read_text():
            if self.proc.poll() is not None:
                raise RuntimeError(f"the simulator exited early:\n{self.log.read_text()}")
            time.sleep(0.1)
        for line in self.log.read_text().splitlines():
            key, _, value = line.strip().partition(" ")
            if key in ("url", "graph_url", "authority", "oidc_authority", "admin_url", "ca_path"):
                self.urls[key] = value.strip()
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def __getattr__(self, name: str) -> str:
        urls = self.__dict__.get("urls", {})
        if name in urls:
            return urls[name]
        raise AttributeError(name)

    def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.urls['admin_url']}/{path.lstrip('/')}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with self._opener.open(req, timeout=120) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300]
            raise AssertionError(f"simulator admin {method} {path}: {exc.code} {detail!r}") from None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class SimTokens:
    """A TokenProvider that signs in once with msal's device flow against the simulator.

    In-process tests use the explicitly test-only plaintext token cache; the CLI tests use the real
    Secret Service (see SecretService).
    """

    def __init__(self, sim: SimProcess, home: Path) -> None:
        from desktop.auth import MsalAuth
        from desktop.config import Config

        os.environ["LIFEBOAT_INSECURE_TOKEN_CACHE"] = "1"
        cfg = Config(client_id="lifeboat-tests", authority_url=sim.authority, graph_url=sim.graph_url,
                     ca_file=sim.ca_path, data_dir=str(home))
        self.auth = MsalAuth(cfg)
        self.auth.login_device_code(lambda _text: None)

    def token(self) -> str:
        return self.auth.token()

    def invalidate(self) -> None:
        self.auth.invalidate()


@contextmanager
def signed_in(sim: SimProcess, home: Path) -> Iterator[SimTokens]:
    """SimTokens with the CA-bundle overrides lifted (they would beat verify=ca.pem) and the
    test-only token-cache switch cleared again afterwards."""
    saved = {k: os.environ.pop(k) for k in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE") if k in os.environ}
    try:
        yield SimTokens(sim, home)
    finally:
        os.environ.pop("LIFEBOAT_INSECURE_TOKEN_CACHE", None)
        os.environ.update(saved)



def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Our environment without the CA-bundle overrides (they would beat verify=ca.pem)."""
    env = {k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra or {})
    return env


class SecretService:
    """A private D-Bus session bus with an unlocked gnome-keyring (Secret Service) on it."""

    def __init__(self, home: Path) -> None:
        if not shutil.which("gnome-keyring-daemon") or not shutil.which("dbus-daemon"):
            raise RuntimeError("gnome-keyring-daemon and dbus-daemon are needed (debian-packages.txt)")
        home.mkdir(parents=True, exist_ok=True)
        self.bus = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--print-address=1"],
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.bus.stdout is not None
        address = self.bus.stdout.readline().strip()
        self.env = {"DBUS_SESSION_BUS_ADDRESS": address, "HOME": str(home),
                    "XDG_DATA_HOME": str(home / "share"), "XDG_RUNTIME_DIR": str(home / "run")}
        (home / "run").mkdir(mode=0o700, exist_ok=True)
        self.keyring = subprocess.Popen(
            ["gnome-keyring-daemon", "--foreground", "--unlock", "--components=secrets"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, **self.env},
        )
        assert self.keyring.stdin is not None
        self.keyring.stdin.write(b"test-keyring-password")
        self.keyring.stdin.close()
        time.sleep(0.5)  # let it claim org.freedesktop.secrets before the first client asks

    def stop(self) -> None:
        for p in (self.keyring, self.bus):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


def write_config(path: Path, sim: SimProcess, *, folders: str = '["*"]', cache_days: int = 3650,
                 interval: float = 1.0) -> Path:
    path.write_text(
        "[account]\n"
        'client_id = "lifeboat-tests"\n'
        'username = "adele.vance@contoso.test"\n'
        f'authority_url = "{sim.authority}"\n'
        f'graph_url = "{sim.graph_url}"\n'
        f'ca_file = "{sim.ca_path}"\n'
        "[sync]\n"
        f"folders = {folders}\n"
        f"cache_days = {cache_days}\n"
        f"sync_interval_seconds = {interval}\n"
    )
    return path


def lifeboat(args: list[str], env: dict[str, str], *, timeout: float = 600,
             check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the real CLI (`python -m desktop.cli`) with this environment."""
    proc = subprocess.run([PY, "-m", "desktop.cli", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"lifeboat {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def cache_state(home: Path, key_hex: str, account: str = "adele.vance@contoso.test") -> dict[str, Any]:
    """Read the cache the CLI wrote: {folder: {provider_id: sha256 or None}} and the row count."""
    from sync.store import Store, cache_path

    with Store.open(cache_path(home, account), bytes.fromhex(key_hex)) as store:
        rows = store.message_places()
        folders = {r["provider_id"] for r in store.folders()}
        out: dict[str, dict[str, str | None]] = {}
        for row in rows:
            raw = store.raw(row["id"])
            out.setdefault(row["folder_id"], {})[row["provider_id"]] = (
                hashlib.sha256(raw).hexdigest() if raw else None)
    return {"state": out, "rows": len(rows), "distinct": len({r["provider_id"] for r in rows}),
            "folders": folders}


def mime_b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def reply(subject: str, n: int) -> str:
    """A small reply in a thread (In-Reply-To set), as text for the admin API."""
    return (f"From: Adele Vance <adele.vance@contoso.test>\r\nTo: zoe@example.com\r\n"
            f"Subject: Re: {subject}\r\n"
            f"Message-ID: <r{n}.{subject}@contoso.test>\r\nIn-Reply-To: <{subject}@example.com>\r\n"
            f"Date: Sat, 28 Nov 2026 09:00:00 +0000\r\n\r\nreply {n}\r\n")
