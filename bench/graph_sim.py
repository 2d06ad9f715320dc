"""Benchmark: the Microsoft 365 simulator as a sync target (generation, sign-in, delta, $value, $batch).

Starts a simulator with N messages (2,000; 300 with --short), signs in with msal's device flow, pages the
whole Inbox with messages/delta (maxpagesize 100), fetches MIME with $value and through $batch (20 per
batch); prints JSON with rates. No pass/fail: it tells how fast a test or demo can sync against it.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import msal
import requests

from simulator.server import Simulator


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--short", action="store_true", help="small mailbox for CI")
    ap.add_argument("--messages", type=int, default=None)
    args = ap.parse_args()
    n = args.messages or (300 if args.short else 2000)
    os.environ.pop("REQUESTS_CA_BUNDLE", None)
    os.environ.pop("CURL_CA_BUNDLE", None)
    out: dict[str, object] = {"bench": "simulator", "messages": n}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        sim = Simulator(tmp, messages=n, seed=1).start()
        out["start_s"] = round(time.perf_counter() - t0, 3)
        try:
            t0 = time.perf_counter()
            app = msal.PublicClientApplication(
                "bench", authority=sim.authority, instance_discovery=False, verify=str(sim.ca_path)
            )
            token = app.acquire_token_by_device_flow(app.initiate_device_flow(scopes=["Mail.Read"]))[
                "access_token"
            ]
            out["sign_in_s"] = round(time.perf_counter() - t0, 3)
            s = requests.Session()
            s.verify = str(sim.ca_path)
            s.headers.update(
                {"Authorization": f"Bearer {token}", "Prefer": 'IdType="ImmutableId", odata.maxpagesize=100'}
            )
            folder = sim.folder_id("inbox")
            url: str | None = f"{sim.graph_url}/me/mailFolders/{folder}/messages/delta"
            ids: list[str] = []
            pages = 0
            t0 = time.perf_counter()
            while url:
                page = s.get(url, timeout=60).json()
                pages += 1
                ids += [v["id"] for v in page["value"]]
                url = page.get("@odata.nextLink")
            dt = time.perf_counter() - t0
            out.update(delta_items=len(ids), delta_pages=pages, delta_items_per_s=round(len(ids) / dt, 1))
            sample = ids[:200]
            t0 = time.perf_counter()
            size = sum(
                len(s.get(f"{sim.graph_url}/me/messages/{i}/$value", timeout=60).content) for i in sample
            )
            dt = time.perf_counter() - t0
            out.update(value_per_s=round(len(sample) / dt, 1), value_mb_per_s=round(size / dt / 1e6, 2))
            t0 = time.perf_counter()
            got = 0
            for k in range(0, len(sample), 20):
                reqs = [
                    {"id": str(j), "method": "GET", "url": f"/me/messages/{i}/$value"}
                    for j, i in enumerate(sample[k : k + 20])
                ]
                got += len(
                    s.post(f"{sim.graph_url}/$batch", json={"requests": reqs}, timeout=60).json()["responses"]
                )
            out["batch_value_per_s"] = round(got / (time.perf_counter() - t0), 1)
        finally:
            sim.stop()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
