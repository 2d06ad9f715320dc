"""The assembled desktop app: `lifeboat demo` with its window, tray, workers and notifications, played
like a newcomer would, under Xvfb with a private D-Bus session, a real dunst and a real system tray."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from tests.e2e import window_kit as kit
from tests.syncsim import PY, REPO, clean_env
from tests.test_tray import Dunst

pytestmark = kit.WHOLE_APP_MARKS
DRIVER = Path(__file__).resolve().parent / "app_driver.py"
OUT = kit.ARTIFACTS / "app-demo"


def test_demo_app_cut_send_restore_and_single_instance(tmp_path) -> None:
    """Tried: the real `lifeboat demo` (desktop.demo.main in its own process, exactly as the command runs
    it) with a GTK tray docked in trayer and dunst on a private session bus. Through the page it picks
    "connections refused" and clicks "Cut the provider"; the banner must turn to continuity, the tray icon
    too, and dunst must receive the failover notification; a message sent from the compose form must
    leave through the backup relay and show as sent in the outbox; "Restore the provider" must bring
    the banner back to normal with the outage mail copied once into Sent Items. The banner's "Switch
    to continuity" / "Back to normal" and pause must reach the workers through the command queue. Then
    the window is closed (the app, tray and workers must stay), a second `lifeboat demo` and a
    `lifeboat run` on the same data folder must ring the doorbell (exit 0, reopening the window) instead
    of starting again, and Quit must end everything with exit status 0 and remove the demo's temp folder."""
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    with kit.xvfb("1400x900x24") as display:
        dunst = Dunst(display)
        panel = subprocess.Popen(["trayer", "--edge", "top", "--align", "right", "--widthtype", "pixel",
                                  "--width", "120", "--height", "32"], env={**os.environ, "DISPLAY": display},
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            env = clean_env({"DISPLAY": display, "DBUS_SESSION_BUS_ADDRESS": dunst.address,
                             "TMPDIR": str(tmp), "HOME": str(tmp_path),
                             "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
                             "PYSTRAY_BACKEND": "gtk", "QTWEBENGINE_DISABLE_SANDBOX": "1",
                             "no_proxy": "*", "NO_PROXY": "*"})
            for proxy in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
                env.pop(proxy, None)
            proc = subprocess.run([PY, str(DRIVER), str(OUT)], cwd=REPO, env=env, capture_output=True,
                                  text=True, timeout=800)
            (OUT / "app.log").write_text(proc.stdout + "\n" + proc.stderr)
            summaries = dunst.summaries()
        finally:
            panel.terminate()
            panel.wait(timeout=10)
            dunst.close()
    result = json.loads((OUT / "result.json").read_text())
    assert result["ok"], result.get("error")
    steps = {s["step"]: s for s in result["steps"]}

    ready = steps["ready"]
    assert ready["demo_panel"] is True and ready["demo_api"] == "function"
    assert ready["tray"].endswith("_gtk")
    assert steps["continuity"]["tray_state"] == "continuity"
    assert steps["continuity"]["banner_text"].startswith("Continuity mode")
    assert "backup route" in steps["continuity"]["banner_text"]
    assert steps["sent"]["route"] == "backup" and "backup" in steps["sent"]["outbox_row"]
    assert "Sent from the demo window" in proc.stdout  # the relay's line in the terminal guide
    assert steps["normal"]["copies"] == 1 and steps["normal"]["tray_state"] == "normal"
    assert "1" in steps["normal"]["reconcile"]

    commands = steps["commands"]  # the banner's switch and pause reached the workers
    assert commands["forced_reason"] == "continuity forced by you"
    assert commands["forced_after_back"] == "auto"  # "Back to normal" hands the decision back to the probes
    assert commands["tray_paused"] is True and "sync paused" in commands["paused_banner"]

    closed = steps["closed"]
    assert closed["window_running"] is False and closed["stopping"] is False and closed["tray_alive"]
    assert {"lifeboat-health", "lifeboat-outbox", "lifeboat-sync"} <= set(closed["loops_alive"])
    assert steps["second-demo"]["rc"] == 0 and "already running" in steps["second-demo"]["out"]
    assert steps["reopened"]["window_running"] and steps["reopened"]["ready"]
    assert steps["second-run"]["rc"] == 0 and "already running" in steps["second-run"]["out"]
    assert steps["exit"]["rc"] == 0 and proc.returncode == 0
    assert not (tmp / f"lifeboat-demo-{os.getuid()}").exists()

    # the notifications a real notification daemon received, once each, in the story's order
    story = ["Continuity mode", "Microsoft 365 is back", "Mail is back to normal", "Continuity mode (forced)"]
    by_hand = ["Leaving continuity mode", "Automatic failover is on", "Mail is back to normal"]  # any order
    seen = [s for s in summaries if s in story + by_hand]
    assert seen[:4] == story and sorted(seen[4:]) == sorted(by_hand), summaries
    for name in ("normal", "continuity", "outbox", "timeline"):
        assert (OUT / f"{name}.png").stat().st_size > 10_000
