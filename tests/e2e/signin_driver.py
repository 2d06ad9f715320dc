"""Runs the real app (`lifeboat run`: tray, workers, window) signed out, for tests/e2e/test_app_sign_in.py.

`python signin_driver.py OUT_DIR SETTINGS_JSON`: desktop.app.run_app with the app's own sign-in (MsalAuth
built by the app, against the simulator); its test-only `on_started` hook plays the user: "Sign in" from the
tray menu, then (after the simulator revoked every token) "Sign in" from the window's banner. The system
browser is the $BROWSER stand-in the test sets. What it saw goes to OUT_DIR/result.json; then it quits.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from desktop.app import run_app  # noqa: E402
from desktop.config import Config  # noqa: E402
from sync.commands import SIGN_IN_SETTING  # noqa: E402
from tests.e2e.driver_kit import WAIT, record, wait  # noqa: E402

OUT = Path(sys.argv[1])
SETTINGS = json.loads(sys.argv[2])
RESULT: dict[str, Any] = {"ok": False, "steps": []}


def step(name: str, /, **fields: Any) -> None:
    record(OUT, RESULT, name, **fields)



def finished(attempt: Any, before: Any = None) -> Any:
    """The recorded sign-in attempt once it is over (and is not the one seen before)."""
    return attempt if attempt and attempt != before and attempt["state"] != "running" else None


def drive(app: Any) -> None:
    store = app.continuity.store
    try:
        wait("the tray to show sign-in needed", lambda: app.tray.state == "sign_in_needed")
        visible = [i.text for i in app.tray._icon.menu.items if i.visible]
        step("signed-out", tray_menu=visible, setting=store.get_setting(SIGN_IN_SETTING))
        item = next(i for i in app.tray._icon.menu.items if i.visible and i.text == "Sign in")
        item(app.tray._icon)  # what GTK does when the user picks the menu item
        attempt = wait("the tray's sign-in to finish", lambda: finished(store.get_setting(SIGN_IN_SETTING)))
        wait("the tray to leave sign-in needed", lambda: app.tray.state != "sign_in_needed")
        step("tray-signed-in", attempt=attempt, tray_state=app.tray.state,
             tray_menu=[i.text for i in app.tray._icon.menu.items if i.visible])

        import urllib.request
        req = urllib.request.Request(SETTINGS["admin_url"] + "/tokens", data=b'{"revoke": true}',
                                     method="POST", headers={"Content-Type": "application/json"})
        urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=60).read()
        wait("the tray to show sign-in needed again", lambda: app.tray.state == "sign_in_needed")

        win = app.window
        win.show()
        assert win.wait_ready(WAIT), "the window never became ready"
        js = win.evaluate_js
        wait("the banner's Sign in button", lambda: js("!document.getElementById('btn-signin').hidden"))
        banner = js("document.getElementById('banner-text').textContent")
        before = store.get_setting(SIGN_IN_SETTING)
        js("document.getElementById('btn-signin').click(); true")
        attempt = wait("the window's sign-in to finish",
                       lambda: finished(store.get_setting(SIGN_IN_SETTING), before))
        step("window-attempt", attempt=attempt)
        wait("the banner to leave sign-in needed",
             lambda: js("document.getElementById('banner').dataset.mode") != "sign_in_needed")
        step("window-signed-in", banner_before=banner, attempt=attempt,
             button_hidden=js("document.getElementById('btn-signin').hidden"),
             banner_after=js("document.getElementById('banner-text').textContent"))
        RESULT["ok"] = True
    except BaseException as exc:
        RESULT["error"] = "".join(traceback.format_exception(exc))
        try:
            RESULT["state"] = {"mode": str(app.continuity.monitor.refresh()), "tray": app.tray.state,
                               "banner": app.window.evaluate_js(
                                   "document.getElementById('banner-text').textContent", 10)}
        except Exception as more:
            RESULT["state"] = repr(more)
    finally:
        step("end")
        app.quit()


def main() -> int:
    cfg = Config(client_id="lifeboat-tests", username="adele.vance@contoso.test",
                 authority_url=SETTINGS["authority"], graph_url=SETTINGS["graph_url"],
                 ca_file=SETTINGS["ca_path"], data_dir=str(OUT / "home"), probe_interval_seconds=0.5,
                 suspect_probe_interval_seconds=0.5, sync_interval_seconds=3600.0)
    import os
    import threading

    def started(app: Any) -> None:
        threading.Thread(target=drive, args=(app,), name="driver", daemon=True).start()

    return run_app(cfg, key=os.urandom(32), show_window=False, on_started=started)


if __name__ == "__main__":
    sys.exit(main())
