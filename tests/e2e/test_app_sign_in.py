"""Sign in from the tray and from the window: the real app (`lifeboat run`) signed out, under Xvfb with a
real GTK tray docked in trayer, dunst on a private D-Bus session, the window's real page, and real msal
against the simulator's authority (the system browser is a $BROWSER stand-in that follows the sign-in
page, as tests/test_auth.py does)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.e2e import window_kit as kit
from tests.syncsim import PY, REPO, SimProcess, clean_env
from tests.test_auth import BROWSER
from tests.test_tray import Dunst

pytestmark = kit.WHOLE_APP_MARKS
DRIVER = Path(__file__).resolve().parent / "signin_driver.py"


def test_sign_in_from_the_tray_and_from_the_window(tmp_path: Path) -> None:
    """Tried: a signed-out user (no account in the token cache, then every token revoked by the
    authority). The tray must turn to sign-in needed and offer "Sign in" in its menu; picking it must sign
    in through the browser off the tray's thread, record signed_in, notify, and the tray must leave
    sign-in needed. After the revocation the window's banner must offer a Sign in button; clicking it must
    do the same through the window's page API, and the banner must go back to normal."""
    sim = SimProcess(tmp_path / "sim", messages=3, seed=5)
    out = tmp_path / "out"
    out.mkdir()
    browser = tmp_path / "browser.py"
    browser.write_text(BROWSER)
    try:
        with kit.xvfb("1280x800x24") as display:
            dunst = Dunst(display)
            panel = subprocess.Popen(["trayer", "--edge", "top", "--align", "right", "--widthtype", "pixel",
                                      "--width", "120", "--height", "32"],
                                     env={**os.environ, "DISPLAY": display},
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                env = clean_env({"DISPLAY": display, "DBUS_SESSION_BUS_ADDRESS": dunst.address,
                                 "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
                                 "PYSTRAY_BACKEND": "gtk", "QTWEBENGINE_DISABLE_SANDBOX": "1",
                                 "LIFEBOAT_INSECURE_TOKEN_CACHE": "1", "LIFEBOAT_TEST_CA": sim.ca_path,
                                 "BROWSER": f"{PY} {browser} %s", "no_proxy": "*", "NO_PROXY": "*"})
                for proxy in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy",
                              "ALL_PROXY"):
                    env.pop(proxy, None)
                settings = {k: getattr(sim, k) for k in ("authority", "graph_url", "ca_path", "admin_url")}
                proc = subprocess.run([PY, str(DRIVER), str(out), json.dumps(settings)], cwd=REPO, env=env,
                                      capture_output=True, text=True, timeout=800)
                summaries = dunst.summaries()
            finally:
                panel.terminate()
                panel.wait(timeout=10)
                dunst.close()
    finally:
        sim.stop()
    result = json.loads((out / "result.json").read_text())
    assert result["ok"], (result.get("error"), result.get("state"), result["steps"][-3:], proc.stderr[-3000:])
    assert proc.returncode == 0, proc.stderr[-3000:]
    steps = {s["step"]: s for s in result["steps"]}
    assert "Sign in" in steps["signed-out"]["tray_menu"]
    tray = steps["tray-signed-in"]
    assert tray["attempt"]["state"] == "signed_in" and tray["attempt"]["user"] == "adele.vance@contoso.test"
    assert tray["tray_state"] != "sign_in_needed" and "Sign in" not in tray["tray_menu"]
    window = steps["window-signed-in"]
    assert "choose Sign in" in window["banner_before"]
    assert window["attempt"]["state"] == "signed_in" and window["button_hidden"] is True
    assert "Sign-in needed" not in window["banner_after"]
    assert any(s.startswith("Lifeboat: signed in") for s in summaries), summaries
    assert summaries.count("Sign-in needed") == 2, summaries  # the failover engine's word, each time
