"""Runs the real Lifeboat window (pywebview + Qt) in its own process for tests/e2e/test_window*.py.

`python window_child.py CONFIG.json`: a driver thread acts like a user through evaluate_js and writes
what it saw to CONFIG["out"]/result.json, with every JS dialog, console message, request and bridge
call of the page and its frames, so tests can prove that no mail script ran and nothing was fetched.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
import traceback
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from desktop import window as win  # noqa: E402
from sync.commands import to_json  # noqa: E402
from sync.store import Store  # noqa: E402
from ui.bridge import Bridge  # noqa: E402

SEEN: dict[str, list[Any]] = {"alerts": [], "console": [], "requests": []}


APP_ORIGIN: list[str] = []  # the loopback origin pywebview serves ui/static from


def on_request(request: Any) -> None:
    """pywebview's request interceptor sees every request of the page and its frames that leaves CSP."""
    url = str(getattr(request, "url", ""))
    if not APP_ORIGIN and url.endswith("/index.html"):
        APP_ORIGIN.append(url.rsplit("/", 1)[0] + "/")
    if APP_ORIGIN and url.startswith(APP_ORIGIN[0]):
        return
    if not url.startswith(("file:", "data:", "qrc:", "about:")):
        SEEN["requests"].append(url[:200])


def hook_qt() -> None:
    """Record dialogs and console messages of every frame (the sandboxed mail iframes included)."""
    from webview.platforms import qt

    page = qt.BrowserView.WebPage

    def alert(self, url, msg):  # type: ignore[no-untyped-def]
        SEEN["alerts"].append(["alert", url.toString(), msg])

    def confirm(self, url, msg):  # type: ignore[no-untyped-def]
        SEEN["alerts"].append(["confirm", url.toString(), msg])
        return False

    def prompt(self, url, msg, default, result=None):  # type: ignore[no-untyped-def]
        SEEN["alerts"].append(["prompt", url.toString(), msg])
        return False

    def console(self, level, msg, line, source):  # type: ignore[no-untyped-def]
        SEEN["console"].append([str(level).rsplit(".", 1)[-1], msg[:300], source[:100]])

    page.javaScriptAlert = alert
    page.javaScriptConfirm = confirm
    page.javaScriptPrompt = prompt
    page.javaScriptConsoleMessage = console


def watch_dialogs(stop: threading.Event) -> None:
    """Qt 6 shows alert/confirm/prompt as a QMessageBox/QInputDialog without asking the page's hooks:
    record and dismiss any such dialog (it would also block the page) from this watcher thread."""
    from qtpy.QtCore import QMetaObject, Qt
    from qtpy.QtWidgets import QApplication, QDialog, QMessageBox

    seen: set[int] = set()
    while not stop.wait(0.1):
        app = QApplication.instance()
        if app is None:
            continue
        for w in app.topLevelWidgets():
            if isinstance(w, QDialog) and w.isVisible() and id(w) not in seen:
                seen.add(id(w))
                text = w.text() if isinstance(w, QMessageBox) else w.windowTitle()
                SEEN["alerts"].append(["dialog", type(w).__name__, text])
                QMetaObject.invokeMethod(w, "reject", Qt.ConnectionType.QueuedConnection)


class Driver:
    def __init__(self, mw: win.MainWindow, bridge: Bridge, store: Store, cfg: dict[str, Any]) -> None:
        self.mw, self.bridge, self.store, self.cfg = mw, bridge, store, cfg
        self.out = Path(cfg["out"])
        self.result: dict[str, Any] = {"steps": [], "shots": []}

    def js(self, script: str) -> Any:
        return self.mw.evaluate_js(script)

    def wait(self, script: str, timeout: float = 30.0) -> Any:
        """Poll a JS expression until truthy (a safety net against hangs, not a performance limit)."""
        end = time.monotonic() + timeout
        while True:
            value = self.js(script)
            if value:
                return value
            if time.monotonic() > end:
                raise TimeoutError(f"waited {timeout} s for: {script}")
            time.sleep(0.05)

    def key(self, key: str, target: str = "document") -> None:
        event = f"new KeyboardEvent('keydown', {{key: {json.dumps(key)}, bubbles: true}})"
        self.js(f"{target}.dispatchEvent({event})")

    def shot(self, name: str) -> None:
        from PIL import ImageGrab

        time.sleep(0.4)  # let the compositor paint the last change
        path = self.out / f"{name}.png"
        ImageGrab.grab(xdisplay=os.environ["DISPLAY"]).save(path)
        self.result["shots"].append(str(path))

    def step(self, name: str, **data: Any) -> None:
        self.result["steps"].append({"name": name, **data})

    # ------------------------------------------------------------------ scenarios

    def main_scenario(self) -> None:
        t0 = time.monotonic()
        self.wait("window.lifeboatUI && window.lifeboatUI.ready")
        self.mw.window.move(0, 0)  # no window manager under Xvfb: put it where the screenshots look
        self.step("ready", seconds=time.monotonic() - t0,
                  rows=self.js("document.querySelectorAll('#list .row').length"),
                  total=self.js("window.lifeboatUI.total"),
                  info=self.js("document.getElementById('list-info').textContent"),
                  banner=self.js("document.getElementById('banner-text').textContent"),
                  folders=self.js("[...document.querySelectorAll('#folders li')].map(l => l.textContent)"))
        self.shot("main")
        # scroll deep into the list: rows far down must load by offset
        self.js("document.getElementById('list').scrollTop = 3.5 * 16 * 1000")
        self.wait("document.querySelector('#row-1000') && document.querySelector('#row-1000').dataset.id")
        self.step("scrolled", rows=self.js("document.querySelectorAll('#list .row').length"),
                  id1000=self.js("document.querySelector('#row-1000').dataset.id"))
        self.js("document.getElementById('list').scrollTop = 0")
        self.wait("document.querySelector('#row-0')")
        # conversations: "c" groups threads under their newest message
        self.key("c")
        self.wait("document.querySelector('#row-0 .tsize')")
        self.step("threads", first=self.js(
            "[0, 1, 2].map(i => [document.querySelector('#row-' + i + ' .subj').textContent,"
            " (document.querySelector('#row-' + i + ' .tsize') || {textContent: ''}).textContent])"))
        self.shot("threads")
        self.key("c")
        self.wait("!document.querySelector('#row-0 .tsize') && document.querySelector('#row-0')")
        # open the first message by clicking it
        self.js("document.querySelector('#row-0').click()")
        self.wait("window.lifeboatUI.open && window.lifeboatUI.loaded >= 1")
        self.step("opened", id=self.js("window.lifeboatUI.openId"),
                  subject=self.js("document.getElementById('r-subject').textContent"),
                  sandbox=self.js("document.getElementById('r-body').getAttribute('sandbox')"),
                  attachments=self.js("document.querySelectorAll('#r-attachments li').length"))
        self.shot("reading")
        # search as you type, one key at a time
        word = self.cfg["search_word"]
        for i in range(1, len(word) + 1):
            self.js(f"document.getElementById('search').value = {json.dumps(word[:i])};"
                    " document.getElementById('search').dispatchEvent(new Event('input'))")
            time.sleep(0.03)
        self.wait(f"window.lifeboatUI.view === 'search' && window.lifeboatUI.query === {json.dumps(word)}"
                  " && document.getElementById('list-info').textContent.includes('found')")
        self.step("search", ids=self.js("window.lifeboatUI.items.map(i => i.id)"),
                  info=self.js("document.getElementById('list-info').textContent"))
        self.shot("search")
        # open the first hit with the keyboard, then reply with "r"
        self.js("document.getElementById('list').focus()")
        self.key("j")
        self.wait("window.lifeboatUI.open && window.lifeboatUI.openId === window.lifeboatUI.items[0].id")
        self.wait("window.lifeboatUI.loaded >= 2")
        self.shot("reading-html")
        self.key("r")
        self.wait("document.getElementById('compose').open && document.getElementById('c-subject').value")
        self.js("document.getElementById('c-text').value = 'Answered from the end-to-end test.\\n' +"
                " document.getElementById('c-text').value")
        self.step("compose", to=self.js("document.getElementById('c-to').value"),
                  subject=self.js("document.getElementById('c-subject').value"),
                  quoted=self.js("document.getElementById('c-text').value.includes('> ')"))
        self.shot("compose")
        self.js("document.getElementById('c-send').click()")
        self.wait("!document.getElementById('compose').open")
        self.key("o")
        self.wait("document.querySelector('#outbox-rows tr[data-state]')")
        self.step("outbox", rows=self.js(
            "[...document.querySelectorAll('#outbox-rows tr[data-state]')]"
            ".map(r => [r.dataset.state, r.dataset.messageId, r.children[1].textContent])"))
        self.shot("outbox")
        self.key("t")
        self.wait("!document.getElementById('timeline-view').hidden")
        self.step("timeline", items=self.js("document.querySelectorAll('#timeline-rows li').length"))
        self.shot("timeline")
        self.key("i")
        self.wait("window.lifeboatUI.view === 'folder' && document.querySelector('#row-0')")
        self.js("document.getElementById('btn-theme').click()")
        self.js("document.querySelector('#row-0').click()")
        self.wait("document.documentElement.dataset.theme === 'dark' && window.lifeboatUI.loaded >= 3")
        self.step("dark", theme=self.js("document.documentElement.dataset.theme"),
                  bg=self.js("getComputedStyle(document.body).backgroundColor"))
        self.shot("dark")
        self.js("document.getElementById('btn-theme').click()")
        # 200% zoom of a 1280x800 window is a 640x400 CSS viewport: check nothing needs sideways scrolling
        self.mw.window.resize(640, 400)
        self.wait("window.innerWidth <= 700")
        time.sleep(0.3)
        self.step("zoom200", inner=self.js("window.innerWidth"),
                  overflow=self.js("document.documentElement.scrollWidth - window.innerWidth"),
                  banner_visible=self.js(
                      "document.getElementById('banner-text').getBoundingClientRect().width > 0"))
        self.shot("zoom200")
        self.mw.window.resize(1280, 800)
        # links: the real target is shown, and "Open in browser" hands exactly it to the system browser
        n = self.js("window.lifeboatUI.loaded")
        link_id = int(self.cfg["link_id"])
        self.js(f"window.lifeboatUI.openMessage({link_id})")
        self.wait(f"window.lifeboatUI.loaded > {n} && window.lifeboatUI.openId === {link_id}")
        shown = self.js("document.querySelector('#r-links-list code').textContent")
        self.js("document.getElementById('r-links').open = true")
        self.js("document.querySelector('#r-links-list button').click()")
        self.wait("document.getElementById('toast').textContent.startsWith('Opened')")
        # attachments: "Open" writes a private copy and hands it to the system's viewer
        n = self.js("window.lifeboatUI.loaded")
        self.js(f"window.lifeboatUI.openMessage({int(self.cfg['attachment_id'])})")
        self.wait(f"window.lifeboatUI.loaded > {n} && document.querySelector('#r-attachments button')")
        self.js("document.querySelector('#r-attachments button').click()")
        end = time.monotonic() + 30
        while len(self.cfg["_opened"]) < 2 and time.monotonic() < end:
            time.sleep(0.05)
        self.step("links", shown=shown, opened=list(self.cfg["_opened"]))
        self.step("aria", unlabeled=self.js(
            "[...document.querySelectorAll('button, input, textarea, [role=option], [role=treeitem]')]"
            ".filter(e => !(e.getAttribute('aria-label') || e.textContent.trim()"
            " || (e.labels && e.labels.length)"
            " || e.title)).map(e => e.id || e.outerHTML.slice(0, 60))"))

    def api_scenario(self) -> None:
        """The page's script calls names that are not the API through pywebview's own call path (what any
        script in the main page could do); a control call of `status` through the same path answers."""
        self.wait("window.lifeboatUI && window.lifeboatUI.ready")
        self.step("api", names=self.js("Object.keys(window.pywebview.api).sort()"))
        self.js("window.__answers = {}; window.pywebview._returnValuesCallbacks.status = {ctl: (r) =>"
                " { window.__answers.status = r; }}; window.pywebview._jsApiCallback('status', [], 'ctl')")
        control = self.wait("window.__answers.status")
        for n, (name, args) in enumerate(self.cfg["attempts"]):
            self.js(f"window.pywebview._returnValuesCallbacks[{json.dumps(name)}] = {{}};"
                    f" window.pywebview._returnValuesCallbacks[{json.dumps(name)}]['a{n}'] ="
                    f" (r) => {{ window.__answers[{json.dumps(name)}] = r; }};"
                    f" window.pywebview._jsApiCallback({json.dumps(name)}, {json.dumps(args)}, 'a{n}')")
        time.sleep(3.0)  # the calls run in threads: give any of them time to act before looking
        self.step("attempts", control=control, answers=self.js("window.__answers"),
                  picked=sorted(self.bridge._picked), status=self.bridge.status().get("mode"))

    def render_scenario(self) -> None:
        """Open every listed message in the reading pane; then (control) show images of one message."""
        self.wait("window.lifeboatUI && window.lifeboatUI.ready")
        self.js("setTimeout(() => alert('hook-check'), 0)")  # control: a dialog from the page is recorded
        end = time.monotonic() + 30
        while not SEEN["alerts"] and time.monotonic() < end:
            time.sleep(0.05)
        ids = self.cfg["ids"]
        for n, mid in enumerate(ids, start=1):
            self.js(f"window.lifeboatUI.openMessage({int(mid)})")
            self.wait(f"window.lifeboatUI.loaded >= {n}")
        time.sleep(2.0)  # give any request or timer a chance to fire before counting
        self.step("rendered", count=len(ids), loaded=self.js("window.lifeboatUI.loaded"),
                  errors=self.js("window.lifeboatUI.errors"),
                  hits_before_control=_get_json(self.cfg["counter_url"]),
                  calls=dict(self.bridge._calls), alerts=list(SEEN["alerts"]),
                  requests=list(SEEN["requests"]))
        self.shot("xss-last")
        control = self.cfg.get("control_id")
        if control:
            self.js(f"window.lifeboatUI.openMessage({int(control)})")
            self.wait(f"window.lifeboatUI.loaded >= {len(ids) + 1}")
            self.js("document.getElementById('btn-images').click()")
            self.wait(f"window.lifeboatUI.loaded >= {len(ids) + 2}")
            time.sleep(1.5)
            self.step("control", hits=_get_json(self.cfg["counter_url"]), requests=list(SEEN["requests"]))
            self.shot("show-images")

    def read_down_scenario(self) -> None:
        """Read the list from the top with "j", one message after the other (each open prefetches the next);
        record what the reading pane shows for each."""
        self.wait("window.lifeboatUI && window.lifeboatUI.ready")
        self.js("document.getElementById('list').focus()")
        for n in range(1, int(self.cfg["count"]) + 1):
            self.key("j")
            self.wait(f"window.lifeboatUI.loaded >= {n}", timeout=120)
            self.step("read", id=self.js("window.lifeboatUI.openId"),
                      subject=self.js("document.getElementById('r-subject').textContent"),
                      notes=self.js("document.getElementById('r-notes').textContent"),
                      srcdoc=self.js("document.getElementById('r-body').srcdoc"))
        self.shot("read-down")
        self.step("calls", calls=dict(self.bridge._calls), errors=self.js("window.lifeboatUI.errors"))

    def run(self) -> None:
        try:
            getattr(self, self.cfg["scenario"] + "_scenario")()
            self.result["ok"] = True
        except Exception:
            self.result["ok"] = False
            self.result["error"] = traceback.format_exc()
        finally:
            self.result["alerts"] = SEEN["alerts"]
            self.result["console"] = SEEN["console"][-400:]
            self.result["calls"] = dict(self.bridge._calls)
            self.result["commands"] = [to_json(c) for c in self.bridge._commands.queue]
            self.result["opened_urls"] = list(self.cfg.get("_opened", []))
            (self.out / "result.json").write_text(json.dumps(self.result, indent=1, default=str))
            self.mw.quit()


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def main() -> None:
    cfg = json.loads(Path(sys.argv[1]).read_text())
    Path(cfg["out"]).mkdir(parents=True, exist_ok=True)
    store = Store.open(Path(cfg["db"]), bytes.fromhex(os.environ["LIFEBOAT_DB_KEY"]))
    opened: list[str] = []
    cfg["_opened"] = opened
    bridge = Bridge(store, queue.Queue(), me=cfg["me"], open_url=opened.append, open_path=opened.append,
                    opened=Path(cfg["out"]) / "opened")
    mw = win.open_window(bridge, title="Lifeboat (test)", width=1280, height=800)
    hook_qt()
    mw.window.events.request_sent += on_request
    driver = Driver(mw, bridge, store, cfg)
    stop = threading.Event()
    threading.Thread(target=watch_dialogs, args=(stop,), daemon=True).start()
    mw.run(driver.run)
    stop.set()
    store.close()


if __name__ == "__main__":
    main()
