"""The app's edges without a window: `lifeboat run` with no display, `lifeboat autostart`, and the demo
panel's bridge against a real simulator's admin API (and its absence outside demo mode)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from simulator.server import Simulator
from sync.errors import ConfigError
from tests.syncsim import PY, REPO, clean_env
from ui.bridge import Bridge
from ui.demo import DemoBridge

pytestmark = pytest.mark.timeout(300)  # a safety net against hangs only


def lifeboat(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "desktop.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env=env)


def test_run_without_a_display_says_what_to_do(tmp_path: Path) -> None:
    """Tried: `lifeboat run` (the GUI app) with DISPLAY and WAYLAND_DISPLAY unset: exit 1, one line that
    names the problem and points to --headless; no cache, lock or doorbell is left behind. The same for
    `lifeboat demo` (pointing to demo --headless), before any simulator or relay starts."""
    env = clean_env({"HOME": str(tmp_path)})
    for name in ("DISPLAY", "WAYLAND_DISPLAY"):
        env.pop(name, None)
    done = lifeboat("--home", str(tmp_path / "home"), "run", env=env)
    assert done.returncode == 1, done.stderr
    assert "no display" in done.stderr and "--headless" in done.stderr
    assert "Traceback" not in done.stderr
    leftovers = {p.name for p in (tmp_path / "home").iterdir()} - {"logs"}
    assert leftovers == set()
    demo = lifeboat("demo", env={**env, "TMPDIR": str(tmp_path)})
    assert demo.returncode == 1 and "no display" in demo.stderr and "demo --headless" in demo.stderr
    assert not any(tmp_path.glob("lifeboat-demo-*"))  # nothing was started or left behind


def test_autostart_on_writes_the_xdg_entry_and_off_removes_it(tmp_path: Path) -> None:
    """Tried: `lifeboat autostart on` then `off` with XDG_CONFIG_HOME in a temp folder: the entry runs
    this installation's `run --minimized` (opens in the tray at login), and `off` deletes it."""
    env = clean_env({"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg")})
    entry = tmp_path / "cfg" / "autostart" / "lifeboat.desktop"
    on = lifeboat("--home", str(tmp_path / "home"), "autostart", "on", env=env)
    assert on.returncode == 0, on.stderr
    text = entry.read_text()
    assert "[Desktop Entry]" in text
    exec_line = next(line for line in text.splitlines() if line.startswith("Exec="))
    assert exec_line.endswith("run --minimized") and "desktop.cli" in exec_line
    off = lifeboat("--home", str(tmp_path / "home"), "autostart", "off", env=env)
    assert off.returncode == 0 and not entry.exists()
    bad = lifeboat("autostart", "maybe", env=env)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


@pytest.fixture
def sim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    s = Simulator(tmp_path / "sim", messages=3, seed=5).start()
    yield s
    s.stop()


def test_demo_bridge_cuts_and_restores_the_simulator_only(sim: Simulator) -> None:
    """Tried: the demo panel's two calls against a real simulator's admin port: cut (an Exchange-only
    outage: mail requests reset, scope mail), a made-up outage (refused with a clear error, nothing
    changed), restore. A non-local
    or non-admin URL is refused at construction, and the ordinary Bridge has no demo methods at all."""
    bridge = DemoBridge(None, me="me@example.org", admin_url=sim.admin_url)
    assert bridge.demo_state()["outage"] == "normal"
    assert bridge.demo_outage("refuse") == {"outage": "refuse"}
    assert sim.outage == "refuse" and bridge.demo_state()["outage"] == "refuse"
    assert sim.outage_scope == "mail"  # mail down, sign-in and /me up
    refused = bridge.demo_outage("everything")
    assert "outage must be normal or one of" in refused["error"] and sim.outage == "refuse"
    assert bridge.demo_outage(["refuse"])["kind"] == "BadArgument"
    assert bridge.demo_outage("normal") == {"outage": "normal"} and sim.outage == "normal"
    for url in ("https://graph.microsoft.com/_sim", "http://10.1.2.3/_sim", f"{sim.graph_url}"):
        with pytest.raises(ConfigError):
            DemoBridge(None, admin_url=url)
    plain = Bridge(None, me="me@example.org")
    assert not any(name.startswith("demo") for name in dir(plain))


def test_demo_bridge_says_when_the_simulator_is_gone(tmp_path: Path) -> None:
    """Tried: the panel's cut after the simulator stopped: an Unreachable error the page shows, no crash."""
    s = Simulator(tmp_path / "sim", messages=0, seed=1).start()
    bridge = DemoBridge(None, admin_url=s.admin_url)
    s.stop()
    out = bridge.demo_outage("refuse")
    assert out["kind"] == "Unreachable" and "does not answer" in out["error"]
