"""How long the health and outbox threads wait for the cache while the sync thread writes.

The sync thread stores messages in transactions of CHUNK messages (as the MIME phase does); a reader
thread meanwhile asks `load_mode()` and `outbox_list()` every few milliseconds, through
- "shared": the same `Store` (the app's choice: one writer connection behind the store's lock, and
  a small pool of read-only connections that never wait for it);
- "one_connection": the same `Store` with no read pool (READERS = 0: every read waits for the
  writer's lock, as before issue 10);
- "own": a second `Store` on the same file (what the window child process and the CLI do).
Prints one JSON object: reader latency p50/p95/max (ms) and the writer's messages per second per mode.
Usage: python bench/store_threads.py [--short]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from email.message import EmailMessage
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sync import store as store_module
from sync.model import Folder
from sync.store import Store

CHUNK = 20


def message(i: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Ann <ann@example.org>"
    msg["To"] = "Bob <bob@example.org>"
    msg["Subject"] = f"message {i}"
    msg["Message-ID"] = f"<{i}@bench.test>"
    msg.set_content(f"body {i} " + "lorem ipsum dolor sit amet " * 400)
    return msg.as_bytes()


def run(mode: str, count: int, home: Path) -> dict[str, object]:
    key = os.urandom(32)
    path = home / f"{mode}.db"
    raws = [message(i) for i in range(count)]
    with Store.open(path, key) as store:
        store.upsert_folders([Folder("inbox", "Inbox")])
        reader_store = Store.open(path, key) if mode == "own" else store
        done = threading.Event()
        waits: list[float] = []

        def reader() -> None:
            while not done.is_set():
                start = time.perf_counter()
                reader_store.load_mode()
                reader_store.outbox_list()
                waits.append((time.perf_counter() - start) * 1000)
                time.sleep(0.005)

        thread = threading.Thread(target=reader)
        thread.start()
        start = time.perf_counter()
        for n in range(0, count, CHUNK):
            with store.transaction():
                for i in range(n, min(n + CHUNK, count)):
                    store.put_message("inbox", f"p{i}", raws[i])
        seconds = time.perf_counter() - start
        done.set()
        thread.join()
        if reader_store is not store:
            reader_store.close()
    waits.sort()
    return {"reads": len(waits), "p50_ms": round(statistics.median(waits), 2),
            "p95_ms": round(waits[int(len(waits) * 0.95)], 2), "max_ms": round(waits[-1], 2),
            "writer_msg_per_s": round(count / seconds, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--short", action="store_true", help="small counts for CI")
    args = ap.parse_args()
    count = 400 if args.short else 3000
    with tempfile.TemporaryDirectory() as tmp:
        out: dict[str, object] = {"messages": count, "chunk": CHUNK}
        for mode in ("shared", "one_connection", "own"):
            readers = store_module.READERS
            store_module.READERS = 0 if mode == "one_connection" else readers
            try:
                out[mode] = run(mode, count, Path(tmp))
            finally:
                store_module.READERS = readers
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
