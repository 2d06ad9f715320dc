"""Window benchmark (JSON): launch to usable over 50,000 cached messages, message open time, memory.

A real encrypted cache (summary rows + the real MIME of ../shared/assets/mime-public); the real window
as the app runs it (desktop.window.WindowProcess, Xvfb if no DISPLAY); this process plays the app.
Goals: launch < 2 s, open p95 < 100 ms, app RSS with the window closed < 150 MB. --short: 20,000/40.
"render" (also in --short; alone with --render-only): ui.safehtml.render in this process over every HTML
body of the corpus (p95) and over hostile bodies (nesting, tag floods, size: the worst); goal: none over 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.corpus import ASSETS  # noqa: E402 (LIFEBOAT_ASSETS, else ../shared/assets)


def build_cache(db: Path, key: bytes, total: int) -> list[int]:
    from sync.model import Folder, RemoteItem
    from sync.store import Store

    store = Store.open(db, key)
    store.upsert_folders([Folder("inbox", "Inbox", well_known="inbox")])
    real = sorted((ASSETS / "mime-public").glob("*.eml"))
    ids = []
    with store.transaction():
        for path in real:
            ids.append(store.put_message("inbox", "p-" + path.name, path.read_bytes()))
    base = datetime(2026, 11, 28, tzinfo=UTC)
    with store.transaction():
        for n in range(total - len(real)):
            item = RemoteItem(provider_id=f"s{n}", folder_id="inbox", received_at=base - timedelta(minutes=n),
                              message_id=f"<s{n}@bench.example>", subject=f"Status report {n}",
                              sender=f"Person {n % 977} <p{n % 977}@example.com>", is_read=n % 3 != 0)
            store.put_message("inbox", item.provider_id, None, item)
    store.close()
    return ids


def hostile_bodies() -> dict[str, str]:
    """Bodies built to make cleaning slow: html5ever is quadratic in nesting depth (issue 11, item 3)."""
    from ui import safehtml

    at_bound = int((2 * safehtml.MAX_NESTING_WORK) ** 0.5)  # the deepest nesting still cleaned
    deep = 1000
    flat = (safehtml.MAX_NESTING_WORK - deep * deep // 2) // deep
    return {
        "div_200kb": "<div>" * 40_000,
        "div_2mb": "<div>" * 400_000,
        "pre_200kb": "<pre>" * 40_000,
        "ul_li_200kb": "<ul><li>" * 25_000,
        "div_unknown_200kb": "<div><x>" * 25_000,
        "closed_div_200kb": "<div>" * 18_000 + "x" + "</div>" * 18_000,
        "nesting_at_bound": "<pre>" * at_bound,
        "deep_then_flat_at_bound": "<pre>" * deep + "<pre></pre>" * flat,
        "tags_at_bound": "<p>x" * (safehtml.MAX_TAGS - 1),
        "size_at_bound": "<p>" + "x" * (safehtml.MAX_HTML_CHARS - 10),
        "size_over_bound": "<div>" * (safehtml.MAX_HTML_CHARS // 5 + 1),
        "unclosed_lt_flood": "<" * 2_000_000,
        "style_flood": "<style>" * 200_000,
    }


def render_times() -> dict:
    """ui.safehtml.render over the corpus's HTML bodies and over hostile ones, in milliseconds."""
    from sync import mime
    from ui import safehtml

    bodies = []
    for path in sorted((ASSETS / "mime-public").glob("*.eml")):
        parsed = mime.parse(path.read_bytes())
        if parsed.html:
            bodies.append((parsed.html, parsed.plain))
    pages = sorted((ASSETS / "html-bodies").rglob("*.html"))
    bodies += [(p.read_text(errors="replace"), None) for p in pages]
    corpus_ms = []
    for html, plain in bodies:
        t = time.perf_counter()
        safehtml.render(html, plain)
        corpus_ms.append((time.perf_counter() - t) * 1000)
    corpus_ms.sort()
    hostile = {}
    for name, html in hostile_bodies().items():
        t = time.perf_counter()
        r = safehtml.render(html, None)
        hostile[name] = {"ms": round((time.perf_counter() - t) * 1000, 1), "as_text": r.note is not None}
    worst = max(hostile, key=lambda k: hostile[k]["ms"])
    return {
        "corpus": {"n": len(corpus_ms), "p50_ms": round(statistics.median(corpus_ms), 2),
                   "p95_ms": round(corpus_ms[min(len(corpus_ms) - 1, round(0.95 * (len(corpus_ms) - 1)))], 2),
                   "max_ms": round(corpus_ms[-1], 2)},
        "hostile": hostile,
        "hostile_worst": {"case": worst, "ms": hostile[worst]["ms"]},
        "goal_max_ms": 1000,
    }


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            kids = []
        out += [int(k) for k in kids]
        todo += [int(k) for k in kids]
    return out


def measure(db: Path, key: bytes, ids: list[int]) -> dict:
    """This process plays the app (store open, command queue); the window runs as desktop.window does."""
    from desktop.window import WindowProcess
    from sync.store import Store

    store = Store.open(db, key)
    commands: queue.Queue = queue.Queue()
    wp = WindowProcess(db, key, commands, me="me@example.org", title="Lifeboat (bench)")
    base_rss = rss_mb(os.getpid())
    t0 = time.time()
    wp.show()
    if not wp.wait_ready(timeout=300):
        raise RuntimeError("the window never became usable")
    result: dict = {"launch_to_usable_s": wp.ready_at - t0 if wp.ready_at else None}
    # where the launch went (the page's performance marks, on this process's clock)
    marks = json.loads(wp.evaluate_js(
        "JSON.stringify({origin: performance.timeOrigin, nav: performance.getEntriesByType('navigation')[0]"
        ".toJSON(), marks: performance.getEntriesByType('mark').map((m) => [m.name, m.startTime])})"))
    at = marks["origin"] / 1000 - t0
    result["launch_breakdown_s"] = {
        "page_requested": round(at, 2),
        "page_loaded": round(at + marks["nav"]["loadEventEnd"] / 1000, 2),
        **{name.removeprefix("lifeboat-"): round(at + ms / 1000, 2) for name, ms in marks["marks"]},
    }
    result["rows_total"] = wp.evaluate_js("window.lifeboatUI.total")
    times: list[float] = []
    calls: list[float] = []
    for n, mid in enumerate(ids, start=1):
        wp.evaluate_js(f"window.lifeboatUI.openMessage({int(mid)})")
        end = time.monotonic() + 60
        while not wp.evaluate_js(f"window.lifeboatUI.loaded >= {n}") and time.monotonic() < end:
            time.sleep(0.005)
        times.append(float(wp.evaluate_js("window.lifeboatUI.openMs")))
        calls.append(float(wp.evaluate_js("window.lifeboatUI.callMs")))
    result["open_ms"] = times
    result["call_ms"] = calls
    # reading the list upwards from its oldest rows (where the real MIME sorts) with the keyboard: End (which
    # loads that page), then k; each open can find its body prefetched while the one before was read
    press = "document.dispatchEvent(new KeyboardEvent('keydown', {key: '%s'}))"
    wp.evaluate_js(press % "End")
    time.sleep(1.0)
    steps, step_calls = [], []
    for _ in range(min(len(ids), 40)):
        before = wp.evaluate_js("window.lifeboatUI.loaded")
        wp.evaluate_js(press % "k")
        end = time.monotonic() + 60
        while not wp.evaluate_js(f"window.lifeboatUI.loaded > {before}") and time.monotonic() < end:
            time.sleep(0.005)
        steps.append(float(wp.evaluate_js("window.lifeboatUI.openMs")))
        step_calls.append(float(wp.evaluate_js("window.lifeboatUI.callMs")))
        time.sleep(0.2)  # a reader looks at the message before the next key (the prefetch runs meanwhile)
    result["next_ms"], result["next_call_ms"] = steps, step_calls
    pid = wp.pid
    window_rss = rss_mb(pid) + sum(rss_mb(p) for p in descendants(pid)) if pid else 0.0
    result["rss_window_open_mb"] = rss_mb(os.getpid()) + window_rss
    wp.close()
    time.sleep(1.0)
    result["rss_window_closed_mb"] = rss_mb(os.getpid())
    result["rss_before_window_mb"] = base_rss
    store.close()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--short", action="store_true", help="fewer message opens (for CI)")
    ap.add_argument("--messages", type=int, default=50_000)
    ap.add_argument("--render-only", action="store_true", help="only the render section (no window)")
    args = ap.parse_args()
    render = render_times()
    if args.render_only:
        print(json.dumps({"benchmark": "ui", "render": render, "short": args.short}))
        return
    total = min(args.messages, 20_000) if args.short else args.messages
    tmp = Path(tempfile.mkdtemp(prefix="lifeboat-bench-ui-"))
    xvfb = None
    try:
        key = os.urandom(32)
        t = time.perf_counter()
        ids = build_cache(tmp / "cache.db", key, total)
        build_s = time.perf_counter() - t
        opens = ids[:40] if args.short else ids
        env = {k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")}
        env["QTWEBENGINE_DISABLE_SANDBOX"] = "1"
        if not env.get("DISPLAY"):
            if shutil.which("Xvfb") is None:
                print(json.dumps({"error": "no DISPLAY and no Xvfb: install xvfb (debian-packages.txt)"}))
                sys.exit(1)
            read, write = os.pipe()
            xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x800x24",
                                     "-nolisten", "tcp"], pass_fds=(write,), stderr=subprocess.DEVNULL)
            os.close(write)
            with os.fdopen(read) as fh:
                env["DISPLAY"] = ":" + fh.readline().strip()
        os.environ.update(env)
        res = measure(tmp / "cache.db", key, opens)
        opens_ms = sorted(res["open_ms"])
        calls_ms = sorted(res["call_ms"])
        nexts, next_calls = sorted(res["next_ms"]), sorted(res["next_call_ms"])

        def p95(xs: list[float]) -> float:
            return xs[min(len(xs) - 1, round(0.95 * (len(xs) - 1)))]

        report = {
            "benchmark": "ui",
            "messages_cached": res["rows_total"],
            "cache_build_s": round(build_s, 1),
            "launch_to_usable_s": round(res["launch_to_usable_s"], 2),
            "launch_breakdown_s": res["launch_breakdown_s"],
            "open_message_ms": {"n": len(opens_ms), "p50": round(statistics.median(opens_ms), 1),
                                "p95": round(p95(opens_ms), 1), "max": round(opens_ms[-1], 1),
                                "bridge_call_p50": round(statistics.median(calls_ms), 1),
                                "bridge_call_p95": round(p95(calls_ms), 1)},
            "open_next_in_list_ms": {"n": len(nexts), "p50": round(statistics.median(nexts), 1),
                                     "p95": round(p95(nexts), 1),
                                     "bridge_call_p50": round(statistics.median(next_calls), 1),
                                     "bridge_call_p95": round(p95(next_calls), 1)},
            "load_average_1min": round(os.getloadavg()[0], 2),
            "rss_window_closed_mb": round(res["rss_window_closed_mb"], 1),
            "rss_before_window_mb": round(res["rss_before_window_mb"], 1),
            "rss_window_open_mb": round(res["rss_window_open_mb"], 1),
            "render": render,
            "goals": {"launch_to_usable_s": 2.0, "open_message_p95_ms": 100, "rss_window_closed_mb": 150,
                      "render_max_ms": 1000},
            "short": args.short,
        }
        print(json.dumps(report))
    finally:
        if xvfb is not None:
            xvfb.terminate()
            xvfb.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
