"""Runs the real `lifeboat demo` (desktop.demo.main, window + tray + workers) for tests/e2e/test_app.py.

`python app_driver.py OUT_DIR`: the demo runs exactly as `lifeboat demo` does; its test-only
`on_started` hook starts a driver thread that plays the newcomer through the page (evaluate_js on the
window process: clicks the demo panel, fills the compose form), launches `lifeboat demo` and
`lifeboat run` a second time, records what it saw in OUT_DIR/result.json with screenshots, then quits.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from desktop import demo  # noqa: E402
from tests.e2e.driver_kit import WAIT, record, wait  # noqa: E402

OUT = Path(sys.argv[1])
RESULT: dict[str, Any] = {"ok": False, "steps": []}


def step(name: str, /, **fields: Any) -> None:
    record(OUT, RESULT, name, t=round(time.monotonic() - T0, 2), **fields)



def shot(name: str) -> None:
    from PIL import ImageGrab

    time.sleep(1.0)  # let the page paint what was just clicked (not a limit: nothing waits on it)
    screen = ImageGrab.grab(xdisplay=os.environ["DISPLAY"])  # no window manager: crop to the window
    box = screen.convert("L").point(lambda v: 255 if v > 8 else 0).getbbox()
    (screen.crop(box) if box else screen).save(OUT / f"{name}.png")


def second_launch(*args: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "LIFEBOAT_DB_KEY"}  # a launch knows no key
    proc = subprocess.run([sys.executable, "-m", "desktop.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env=env)
    return {"args": list(args), "rc": proc.returncode, "out": (proc.stdout + proc.stderr)[-600:]}


def drive(app: Any) -> None:
    win = app.window
    js = win.evaluate_js
    try:
        assert win.wait_ready(WAIT), "the window never became ready"
        step("ready", window_pid=win.pid, tray=app.tray.backend if app.tray else None,
             demo_panel=js("!document.getElementById('demo').hidden"),
             demo_api=js("typeof window.pywebview.api.demo_outage"),
             banner=js("document.getElementById('banner').dataset.mode"))
        wait("the demo panel", lambda: js("!document.getElementById('demo').hidden"))
        shot("normal")

        js("document.getElementById('demo-mode').value = 'refuse';"
           "document.getElementById('demo-cut').click(); true")
        step("cut")
        wait("the banner to read continuity",
             lambda: js("document.getElementById('banner').dataset.mode") == "continuity")
        wait("the tray to show continuity", lambda: app.tray is None or app.tray.state == "continuity")
        step("continuity", banner_text=js("document.getElementById('banner-text').textContent"),
             tray_state=app.tray.state if app.tray else None,
             demo_text=js("document.getElementById('demo-text').textContent"))
        shot("continuity")

        js("""document.getElementById('btn-new').click();
              document.getElementById('c-to').value = 'bob@partner.test';
              document.getElementById('c-subject').value = 'Sent from the demo window';
              document.getElementById('c-text').value = 'The provider is down, but this still goes out.';
              document.getElementById('c-send').click(); true""")
        store = app.continuity.store
        item = wait("the message to leave through the backup relay", lambda: next(
            (i for i in store.outbox_list() if i.subject == "Sent from the demo window"
             and str(i.state) == "sent"), None))
        js("document.getElementById('nav-outbox').click(); true")
        row = wait("the outbox row", lambda: js(
            "(() => { const r = document.querySelector('#outbox-rows tr[data-state=\"sent\"]');"
            " return r ? r.textContent : ''; })()"))
        step("sent", route=str(item.route), outbox_row=row)
        shot("outbox")

        js("document.getElementById('demo-restore').click(); true")
        step("restore")
        wait("the banner to read normal",
             lambda: js("document.getElementById('banner').dataset.mode") == "normal")
        wait("the tray to show normal", lambda: app.tray is None or app.tray.state == "normal")
        summary = app.continuity.last_reconcile.summary if app.continuity.last_reconcile else ""
        sent_items = [i.message_id for i in app.continuity.source.list_messages("sentitems")]
        step("normal", reconcile=summary, copies=sent_items.count(item.message_id),
             tray_state=app.tray.state if app.tray else None)
        # the banner's own buttons go through the command queue to the workers
        js("document.getElementById('btn-force').click(); true")  # "Switch to continuity"
        wait("the forced continuity",
             lambda: js("document.getElementById('banner').dataset.mode") == "continuity")
        forced = app.continuity.monitor.state.reason
        js("document.getElementById('btn-force').click(); true")  # "Back to normal"
        wait("normal again", lambda: js("document.getElementById('banner').dataset.mode") == "normal")
        js("window.pywebview.api.pause(true); true")
        wait("sync paused", lambda: app.continuity.store.get_setting("sync_paused", False))
        paused_text = wait("the banner to say so", lambda: (lambda t: t if "sync paused" in t else "")(
            js("document.getElementById('banner-text').textContent")))
        step("commands", forced_reason=forced, paused_banner=paused_text,
             forced_after_back=app.continuity.monitor.refresh().forced,
             tray_paused=app.tray.paused if app.tray else None)
        js("window.pywebview.api.pause(false); true")
        wait("sync resumed", lambda: not app.continuity.store.get_setting("sync_paused", False))
        js("document.getElementById('btn-timeline').click(); true")
        time.sleep(1)
        shot("timeline")

        win.close()  # the user closes the window: the app, its tray and its workers stay
        time.sleep(2)
        step("closed", window_running=win.running, stopping=app.stopping.is_set(),
             loops_alive=sorted(t.name for t in threading.enumerate() if t.name.startswith("lifeboat-")),
             tray_alive=any(t.name == "tray" and t.is_alive() for t in threading.enumerate()))
        again = second_launch("demo")  # a second `lifeboat demo`: rings the doorbell, the window opens
        step("second-demo", **again)
        ready = win.wait_ready(WAIT)
        step("reopened", window_running=win.running, ready=ready)
        run_again = second_launch("--home", str(app.cfg.home), "run")  # `lifeboat run` on the same home
        step("second-run", **run_again)
        RESULT["ok"] = True
    except Exception as exc:
        RESULT["error"] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
        with contextlib.suppress(Exception):
            shot("failure")
    finally:
        step("quit")
        app.quit()


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)

    def on_started(app: Any) -> None:
        threading.Thread(target=drive, args=(app,), name="driver", daemon=True).start()

    rc = demo.main(["--messages", "30"], on_started=on_started)
    step("exit", rc=rc)
    return rc


T0 = time.monotonic()
if __name__ == "__main__":
    sys.exit(main())
