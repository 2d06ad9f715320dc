"""Benchmark: sync.mime.parse() over the public MIME corpus and build() of typical outgoing mail.

Parses every message in ../shared/assets/mime-public (3 rounds; 1 with --short) and builds 500
messages (100 with --short); prints JSON with messages per second, mean/p95/max milliseconds per
message, and the slowest file. No pass/fail: it reports figures for the README.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere
from sync import mime
from tests.corpus import ASSETS  # LIFEBOAT_ASSETS, else ../shared/assets

CORPUS = ASSETS / "mime-public"


def bench_parse(rounds: int) -> dict[str, object]:
    raws = [(p.name, p.read_bytes()) for p in sorted(CORPUS.glob("*.eml"))]
    times: list[float] = []
    slowest = ("", 0.0)
    started = time.perf_counter()
    for _ in range(rounds):
        for name, raw in raws:
            t0 = time.perf_counter()
            mime.parse(raw)
            dt = time.perf_counter() - t0
            times.append(dt)
            if dt > slowest[1]:
                slowest = (name, dt)
    total = time.perf_counter() - started
    size = sum(len(r) for _, r in raws) * rounds
    return {
        "messages": len(times),
        "corpus_files": len(raws),
        "seconds": round(total, 3),
        "messages_per_second": round(len(times) / total, 1) if total else None,
        "mb_per_second": round(size / total / 1e6, 2) if total else None,
        "ms_mean": round(statistics.fmean(times) * 1000, 2) if times else None,
        "ms_p95": round(sorted(times)[int(len(times) * 0.95)] * 1000, 2) if times else None,
        "ms_max": round(slowest[1] * 1000, 2),
        "slowest_file": slowest[0],
    }


def bench_build(count: int) -> dict[str, object]:
    attachment = ("report.pdf", "application/pdf", b"%PDF-1.4 " + bytes(range(256)) * 400)  # ~100 kB
    started = time.perf_counter()
    for n in range(count):
        mime.build(
            sender="Ann Example <ann@example.com>",
            to=["Bob <bob@example.com>"],
            cc=["carol@example.com"],
            bcc=["audit@example.com"],
            subject=f"Quarterly figures – draft {n}",
            text="A typical short business mail body.\n" * 40,
            html="<p>A typical short business mail body.</p>" * 40,
            attachments=[attachment] if n % 2 else [],
        )
    total = time.perf_counter() - started
    return {"messages": count, "seconds": round(total, 3), "messages_per_second": round(count / total, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--short", action="store_true", help="one parse round, 100 builds (for CI)")
    args = ap.parse_args()
    if not CORPUS.is_dir():
        print(json.dumps({"benchmark": "mime", "error": f"corpus not found at {CORPUS}"}))
        return
    result = {
        "benchmark": "mime",
        "short": args.short,
        "parse": bench_parse(1 if args.short else 3),
        "build": bench_build(100 if args.short else 500),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
