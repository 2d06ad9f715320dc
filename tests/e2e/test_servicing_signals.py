"""Servicing while running, the Linux side: `lifeboat run` stopped by SIGTERM or SIGHUP (systemd, sign-out,
a closed terminal) in the middle of its work ends the same orderly way as Quit (desktop.servicing): exit 0,
the store closed intact, the outbox state kept, and no child process left. Real processes: the simulator,
`lifeboat login`, `lifeboat send`, `lifeboat run --headless` and (under Xvfb) the GUI app with its window
child."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.syncsim import PY, REPO, SimProcess, clean_env, lifeboat, write_config
from tests.waiting import wait

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]  # a safety net against hangs only
USER = "adele.vance@contoso.test"


class Home:
    """An isolated Lifeboat home signed in to the simulator (no backup relay: the outbox uses Graph)."""

    def __init__(self, root: Path, sim: SimProcess) -> None:
        self.root, self.sim, self.key = root, sim, os.urandom(32).hex()
        config = write_config(root / "config.toml", sim, interval=0.5)
        self.env = clean_env({"LIFEBOAT_HOME": str(root / "home"), "LIFEBOAT_CONFIG": str(config),
                              "LIFEBOAT_POLICY": str(root / "no-policy.toml"), "LIFEBOAT_DB_KEY": self.key,
                              "LIFEBOAT_INSECURE_TOKEN_CACHE": "1"})
        lifeboat(["login", "--device-code"], self.env, timeout=300)

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen([PY, "-m", "desktop.cli", "run", *args], cwd=REPO, env=env or self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def send(self, subject: str) -> str:
        out = lifeboat(["send", "--to", "megan@contoso.test", "--subject", subject, "--body", "hello",
                        "--json"], self.env, timeout=300).stdout
        return str(json.loads(out)["message_id"])

    def outbox(self) -> list[dict[str, Any]]:
        return list(json.loads(lifeboat(["outbox", "--json"], self.env, timeout=300).stdout)["items"])

    def check(self) -> list[str]:
        from sync.store import Store, cache_path

        with Store.open(cache_path(self.root / "home", USER), bytes.fromhex(self.key)) as store:
            return store.check()

    def delivered(self, message_id: str) -> int:
        sent = self.sim.admin("GET", "sent")
        return sum(message_id.encode() in base64.b64decode(o["mime"]) for o in sent)


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        text = (task / "children").read_text() if (task / "children").exists() else ""
        out += [int(c) for c in text.split()]
    return out


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimProcess]:
    s = SimProcess(tmp_path / "sim", messages=300, seed=12)
    s.admin("POST", "transport", {"sent_delay": 0})
    yield s
    s.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_headless_run_stopped_by_a_signal_mid_sync_ends_in_order_and_sends_once(
        sim: SimProcess, tmp_path: Path, sig: signal.Signals) -> None:
    """Tried: SIGTERM / SIGHUP (what systemd and a sign-out send) to `lifeboat run --headless` in the middle
    of its first sync of 300 messages, with a message just queued. It must exit 0 (not die by the signal:
    today SIGHUP killed it with no orderly stop), leave the cache intact (cipher_integrity_check and
    quick_check clean), keep the outbox item (queued or sent, never lost), and after a restart the message
    has gone out exactly once."""
    home = Home(tmp_path, sim)
    proc = home.start("--headless")
    assert proc.stdout is not None
    line = json.loads(wait("the running line", proc.stdout.readline))
    assert line["running"]
    message_id = home.send("Servicing: stopped mid-work")
    wait("sync in progress", lambda: sim.requests() > 20)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert home.check() == []
    [item] = [i for i in home.outbox() if i["message_id"] == message_id]
    assert item["state"] in ("queued", "sent"), item
    again = home.start("--headless")
    try:
        wait("the message to be sent", lambda: any(i["message_id"] == message_id and i["state"] == "sent"
                                                   for i in home.outbox()))
    finally:
        again.send_signal(signal.SIGTERM)
        again.communicate(timeout=120)
    assert again.returncode == 0
    assert home.delivered(message_id) == 1


XVFB = shutil.which("Xvfb") is not None


@pytest.mark.skipif(not XVFB, reason="needs Xvfb (debian-packages.txt)")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_gui_app_stopped_by_a_signal_ends_its_window_child(sim: SimProcess, tmp_path: Path,
                                                          sig: signal.Signals) -> None:
    """Tried: SIGTERM / SIGHUP to the GUI app (`lifeboat run`, tray and window child, under Xvfb) while it
    syncs: the app exits 0, its window child process is gone (no orphan keeps the cache open), and the
    cache is intact."""
    from tests.e2e import window_kit as kit

    home = Home(tmp_path, sim)
    with kit.xvfb("1280x800x24") as display:
        proc = home.start(env={**home.env, "DISPLAY": display})
        try:
            child = wait("the window child", lambda: children(proc.pid), limit=300)[0]
            wait("sync in progress", lambda: sim.requests() > 20)
            proc.send_signal(sig)
            _, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, err
        wait("the window child to end", lambda: not alive(child), limit=30)
    assert home.check() == []
