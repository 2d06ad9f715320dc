"""Benchmark of the encrypted cache; prints one JSON object.

Import throughput of a synthetic mailbox into the encrypted cache and of the same rows into plain
SQLite (same schema, FTS5 included) as a ratio (goal >= 0.6); FTS query latency p50/p95 over a large
cache (goal p95 < 20 ms); cache size on disk against the raw MIME bytes (goal <= 0.8).
Usage: python bench/store.py [--short] [--seed N]. --short (CI) uses smaller counts.
"""

# ruff: noqa: E501  -- the synthetic Exchange Online header templates read best one header per line

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sync.model import Address, AttachmentInfo, Summary
from sync.store import Store

SYLLABLES = [
    "ka",
    "ri",
    "to",
    "me",
    "sa",
    "lo",
    "un",
    "de",
    "fi",
    "an",
    "po",
    "ter",
    "vi",
    "mo",
    "ra",
    "ne",
    "li",
    "ba",
    "cu",
    "so",
    "el",
    "pa",
    "gen",
    "tor",
    "ex",
    "mar",
    "fel",
    "in",
    "qua",
    "dor",
    "ste",
    "lin",
    "com",
    "pro",
    "ver",
    "tal",
    "nis",
    "gor",
    "han",
    "wel",
    "bri",
    "cha",
    "mun",
    "zo",
    "pe",
    "ty",
    "ol",
    "ar",
    "is",
    "us",
]
FIRST = [
    "Ann",
    "Bob",
    "Carl",
    "Dana",
    "Eve",
    "Frank",
    "Gina",
    "Hugo",
    "Iris",
    "Jon",
    "Kim",
    "Lea",
    "Max",
    "Nina",
    "Omar",
    "Pia",
    "Raul",
    "Sara",
    "Tom",
    "Uma",
]
LAST = [
    "Smith",
    "Jones",
    "Brown",
    "Meyer",
    "Rossi",
    "Dubois",
    "Novak",
    "Silva",
    "Kim",
    "Chen",
    "Okafor",
    "Larsen",
    "Berg",
    "Costa",
    "Haas",
]


@dataclass
class Generated:
    """What sync.mime would hand the store for one message, built directly (parsing is measured apart)."""

    summary: Summary
    text: str


class Mailbox:
    """A deterministic synthetic mailbox: Zipf-distributed words, threads, HTML parts, attachments."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        words: set[str] = set()
        while len(words) < 30_000:
            words.add("".join(self.rng.choices(SYLLABLES, k=self.rng.randint(2, 4))))
        self.words = sorted(words)
        self.rng.shuffle(self.words)
        weights = [1 / (i + 1) ** 1.05 for i in range(len(self.words))]
        total, self.cum = 0.0, []
        for w in weights:
            total += w
            self.cum.append(total)
        domains = [f"{self.rng.choice(self.words)}.example" for _ in range(60)]
        self.people = [
            Address(f"{f} {last}", f"{f.lower()}.{last.lower()}{i}@{self.rng.choice(domains)}")
            for i, (f, last) in enumerate(
                (self.rng.choice(FIRST), self.rng.choice(LAST)) for _ in range(2000)
            )
        ]
        self.start = datetime(2026, 1, 1, tzinfo=UTC)

    def text(self, n: int) -> str:
        words = self.rng.choices(self.words, cum_weights=self.cum, k=n)
        lines, line = [], []
        for i, w in enumerate(words):
            line.append(w)
            if len(line) >= 12 or i == n - 1:
                lines.append(" ".join(line) + ("." if self.rng.random() < 0.3 else ""))
                line = []
        return "\n".join(lines)

    def transport_headers(self, sender: Address, date: datetime) -> str:
        """What Exchange Online adds to every message: Received hops, DKIM/ARC signatures (base64,
        barely compressible), authentication results and X-MS-Exchange-* headers."""
        rng, stamp = self.rng, date.strftime("%a, %d %b %Y %H:%M:%S +0000")
        domain = sender.email.split("@")[1]

        def b64(n: int) -> str:
            return base64.b64encode(rng.randbytes(n)).decode()

        def host() -> str:
            return f"{rng.choice(['AM', 'DB', 'VI', 'PR', 'HE'])}{rng.randint(0, 9)}PR0{rng.randint(1, 9)}MB{rng.randint(1000, 9999)}.eurprd0{rng.randint(1, 9)}.prod.outlook.com"

        hops = "".join(
            f"Received: from {host()} (2603:10a6:20b:{rng.getrandbits(16):x}::{rng.randint(10, 99)}) by {host()}"
            f"\r\n with Microsoft SMTP Server (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id "
            f"15.20.{rng.randint(1000, 9999)}.{rng.randint(10, 99)}; {stamp}\r\n"
            for _ in range(rng.randint(2, 5))
        )
        return (
            hops
            + f"ARC-Seal: i=1; a=rsa-sha256; s=arcselector9901; d=microsoft.com; cv=none;\r\n b={b64(256)}\r\n"
            + "ARC-Message-Signature: i=1; a=rsa-sha256; c=relaxed/relaxed; d=microsoft.com;\r\n"
            f" s=arcselector9901; h=From:Date:Subject:Message-ID:Content-Type:MIME-Version;\r\n"
            f" bh={b64(32)};\r\n b={b64(256)}\r\n"
            + f"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d={domain}; s=selector1;\r\n"
            f" h=From:Date:Subject:Message-ID:Content-Type:MIME-Version; bh={b64(32)};\r\n b={b64(256)}\r\n"
            + f"Authentication-Results: spf=pass (sender IP is 40.107.{rng.randint(0, 255)}.{rng.randint(0, 255)})"
            f" smtp.mailfrom={domain}; dkim=pass (signature was verified) header.d={domain};dmarc=pass action=none"
            f" header.from={domain};compauth=pass reason=100\r\n"
            + f"Thread-Topic: {rng.choice(self.words)}\r\nThread-Index: {b64(22)}\r\n"
            + f"X-MS-Exchange-Organization-Network-Message-Id: {rng.getrandbits(128):032x}\r\n"
            + "X-MS-Exchange-Organization-AuthSource: "
            + host()
            + "\r\n"
            + "X-MS-Exchange-Organization-AuthAs: Anonymous\r\n"
            + f"X-MS-Office365-Filtering-Correlation-Id: {rng.getrandbits(128):032x}\r\n"
            + "X-Microsoft-Antispam: BCL:0;ARA:13230040|1800799024|366016|376014;\r\n"
            + f"X-Forefront-Antispam-Report: CIP:255.255.255.255;CTRY:;LANG:en;SCL:1;SRV:;IPV:NLI;SFV:NSPM;H:{host()};"
            "PTR:;CAT:NONE;SFS:(13230040)(1800799024)(366016)(376014);DIR:INB;\r\n"
            + f"X-MS-Exchange-CrossTenant-OriginalArrivalTime: {stamp}\r\n"
            + f"X-MS-Exchange-CrossTenant-Id: {rng.getrandbits(128):032x}\r\n"
            + "X-MS-Exchange-Transport-CrossTenantHeadersStamped: "
            + host()
            + "\r\n"
        )

    def message(self, i: int) -> tuple[bytes, Generated]:
        rng = self.rng
        sender = rng.choice(self.people)
        to = tuple(rng.sample(self.people, rng.randint(1, 3)))
        cc = tuple(rng.sample(self.people, rng.randint(0, 2)))
        subject = ("Re: " if rng.random() < 0.4 else "") + " ".join(
            rng.choices(self.words[:3000], k=rng.randint(3, 8))
        ).capitalize()
        date = self.start + timedelta(seconds=i * 97 + rng.randint(0, 90))
        body = self.text(min(int(rng.lognormvariate(4.8, 0.8)), 2500))
        mid = f"<{i}.{rng.getrandbits(48):x}@{sender.email.split('@')[1]}>"
        headers = (
            self.transport_headers(sender, date)
            + f"From: {sender}\r\nTo: {', '.join(map(str, to))}\r\n"
            + (f"Cc: {', '.join(map(str, cc))}\r\n" if cc else "")
            + f"Subject: {subject}\r\nDate: {date.strftime('%a, %d %b %Y %H:%M:%S +0000')}\r\n"
            f"Message-ID: {mid}\r\nMIME-Version: 1.0\r\n"
        )
        plain = body.replace("\n", "\r\n")
        parts = [f"Content-Type: text/plain; charset=utf-8\r\n\r\n{plain}\r\n"]
        if rng.random() < 0.6:  # most mail carries an HTML twin of the text
            paragraphs = "".join(
                f'<p style="margin:0;font-family:Calibri">{p}</p>\r\n' for p in body.split("\n")
            )
            parts = [
                'Content-Type: multipart/alternative; boundary="alt"\r\n\r\n--alt\r\n'
                + parts[0]
                + "--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
                + f"<html><head><style>p {{color:#222}}</style></head><body>{paragraphs}</body></html>\r\n--alt--\r\n"
            ]
        attachments: list[AttachmentInfo] = []
        roll = rng.random()
        if roll < 0.08:  # some attachments: CSV exports (compressible) and PDFs/images (not)
            if roll < 0.05:
                name, ctype = f"export-{i}.csv", "text/csv"
                data = "\n".join(
                    ",".join(str(rng.randint(0, 99999)) for _ in range(8))
                    for _ in range(rng.randint(50, 400))
                ).encode()
            else:
                name, ctype = f"scan-{i}.pdf", "application/pdf"
                data = rng.randbytes(rng.randint(4_000, 40_000))
            attachments.append(AttachmentInfo(0, name, ctype, len(data)))
            parts.append(
                f'Content-Type: {ctype}; name="{name}"\r\nContent-Disposition: attachment; filename="{name}"\r\n'
                f"Content-Transfer-Encoding: base64\r\n\r\n{base64.encodebytes(data).decode()}"
            )
        if len(parts) == 1:
            raw = (headers + parts[0]).encode()
        else:
            raw = (
                headers
                + 'Content-Type: multipart/mixed; boundary="mix"\r\n\r\n'
                + "".join(f"--mix\r\n{p}" for p in parts)
                + "--mix--\r\n"
            ).encode()
        summary = Summary(
            subject=subject, sender=sender, to=to, cc=cc, date=date, message_id=mid, size=len(raw),
            has_attachments=bool(attachments), attachments=tuple(attachments),
        )  # fmt: skip
        return raw, Generated(summary, body)


def insert(store: Store, box_messages: list[tuple[bytes, Generated]], start: int, batch: int = 500) -> float:
    """Seconds to store the messages (in transactions of `batch`, as a sync round would)."""
    t = time.perf_counter()
    for b in range(0, len(box_messages), batch):
        with store.transaction():
            for j, (raw, parsed) in enumerate(box_messages[b : b + batch], start=start + b):
                store._put_parsed("inbox", f"id{j}", raw, parsed, None)  # type: ignore[arg-type]
    return time.perf_counter() - t


def real_corpus(path: Path) -> dict[str, object]:
    """Cache size against raw size for the public third-party MIME samples (parsed by sync.mime)."""
    from tests.corpus import ASSETS  # LIFEBOAT_ASSETS, else ../shared/assets

    assets = ASSETS / "mime-public"
    files = sorted(assets.rglob("*.eml")) if assets.is_dir() else []
    if not files:
        return {"skipped": f"no samples under {assets}"}
    raw_bytes = 0
    with Store.open(path, os.urandom(32)) as s:
        with s.transaction():
            for i, f in enumerate(files):
                raw = f.read_bytes()
                raw_bytes += len(raw)
                s.put_message("inbox", f"real{i}", raw)
        size = s.compact()
    return {
        "messages": len(files),
        "raw_mime_bytes": raw_bytes,
        "cache_bytes": size,
        "ratio": round(size / raw_bytes, 3),
    }


def search_latency(store: Store, queries: list[str]) -> dict[str, object]:
    for q in queries[:20]:  # warm the page cache
        store.search(q)
    times, cpu, hits = [], [], []
    for q in queries:
        t, c = time.perf_counter(), time.process_time()
        hits.append(len(store.search(q, limit=50)))
        times.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)
    return {
        "messages": store.status()["messages"],
        "queries": len(times),
        "p50_ms": round(statistics.median(times), 2),
        "p95_ms": round(percentile(times, 95), 2),
        "max_ms": round(max(times), 2),
        "cpu_p50_ms": round(statistics.median(cpu), 2),  # CPU time: less disturbed by a busy machine
        "cpu_p95_ms": round(percentile(cpu, 95), 2),
        "mean_hits": round(statistics.mean(hits), 1),
        "goal_p95_ms": 20,
        "ok": percentile(times, 95) < 20,
    }


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--short", action="store_true", help="small counts for CI")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    n_import, n_search, n_e2e = (2_000, 10_000, 200) if args.short else (20_000, 100_000, 1_000)
    began = time.perf_counter()
    box = Mailbox(args.seed)
    out: dict[str, object] = {"short": args.short}
    with tempfile.TemporaryDirectory(prefix="lifeboat-bench-") as tmp:
        first = [box.message(i) for i in range(n_import)]
        raw_bytes = sum(len(r) for r, _ in first)

        for name, opener in (("warm-plain", Store._open_unencrypted), ("warm-enc", None)):  # warm-up, untimed
            warm = opener(Path(tmp) / name) if opener else Store.open(Path(tmp) / name, os.urandom(32))
            insert(warm, first[:500], 0)
            warm.close()
        plain = Store._open_unencrypted(Path(tmp) / "plain.db")
        plain_s = insert(plain, first, 0)
        plain.close()
        enc = Store.open(Path(tmp) / "enc.db", os.urandom(32))
        enc_s = insert(enc, first, 0)
        enc.checkpoint()
        size = enc.size_bytes()
        compacted = enc.compact()
        out["import"] = {
            "messages": n_import,
            "encrypted_msgs_per_s": round(n_import / enc_s),
            "plain_msgs_per_s": round(n_import / plain_s),
            "ratio": round(plain_s / enc_s, 3),
            "goal_ratio": 0.6,
            "ok": plain_s / enc_s >= 0.6,
        }
        out["size"] = {
            "messages": n_import,
            "raw_mime_bytes": raw_bytes,
            "cache_bytes": size,
            "ratio": round(size / raw_bytes, 3),
            "cache_bytes_after_compact": compacted,
            "ratio_after_compact": round(compacted / raw_bytes, 3),
            "goal_ratio": 0.8,
            "ok": size / raw_bytes <= 0.8,
        }
        out["size_real_corpus"] = real_corpus(Path(tmp) / "real.db")
        del first

        # end to end (MIME parsing by sync.mime included), into the same encrypted cache
        sample = [box.message(n_search + i)[0] for i in range(n_e2e)]
        t = time.perf_counter()
        with enc.transaction():
            for i, raw in enumerate(sample):
                enc.put_message("inbox", f"e2e{i}", raw)
        out["end_to_end"] = {"messages": n_e2e, "msgs_per_s": round(n_e2e / (time.perf_counter() - t))}

        # grow to the search size, then query
        done = n_import
        while done < n_search:
            chunk = [box.message(i) for i in range(done, min(done + 5_000, n_search))]
            insert(enc, chunk, done)
            done += len(chunk)
        enc.checkpoint()
        rng = random.Random(args.seed + 1)
        common, mid, rare = box.words[:50], box.words[200:3000], box.words[5000:30000]
        person = box.people
        queries: list[str] = []
        for _ in range(40):
            queries += [
                rng.choice(common),
                rng.choice(mid),
                rng.choice(rare),
                f"{rng.choice(mid)} {rng.choice(mid)}",
                f'"{rng.choice(common)} {rng.choice(common)}"',
                f"{rng.choice(mid)[:4]}*",
                f"sender:{rng.choice(person).email.split('.')[0]}",
                f"{rng.choice(rare)} OR {rng.choice(rare)}",
                f"subject:{rng.choice(mid)}",
            ]
        out["search"] = search_latency(enc, queries)
        t = time.perf_counter()
        enc.compact()  # what the app does after an initial sync or an import: one merged index
        out["search_after_compact"] = {
            **search_latency(enc, queries),
            "compact_s": round(time.perf_counter() - t, 1),
        }
        lists = []
        for offset in [0, 50, 500, 5000] * 10:
            t = time.perf_counter()
            enc.list_messages("inbox", offset=offset, limit=50)
            lists.append((time.perf_counter() - t) * 1000)
        out["list_page"] = {
            "p50_ms": round(statistics.median(lists), 2),
            "p95_ms": round(percentile(lists, 95), 2),
        }
        out["size_at_search_scale"] = {"cache_bytes": enc.size_bytes()}
        out["sqlcipher"] = enc.cipher_version()
        enc.close()
    out["elapsed_s"] = round(time.perf_counter() - began, 1)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
