"""`lifeboat simulator`: run the local Microsoft 365 tenant until Ctrl-C.

Main function: `main(argv) -> int`. Prints the provider, Graph, authority and admin URLs and the CA
path at start; exit code 0 on Ctrl-C, 2 on bad arguments or a port already in use.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from simulator.server import Simulator


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lifeboat simulator",
        description="A local Microsoft 365 tenant "
        "(OIDC sign-in, Graph mail subset, outage switches) for the demo and tests.",
    )
    p.add_argument("--port", type=int, default=8443, help="HTTPS port of the provider (0 = any free port)")
    p.add_argument("--admin-port", type=int, default=0, help="plain-HTTP port of the admin API (0 = any)")
    p.add_argument("--messages", type=int, default=200, help="messages to generate on first start")
    p.add_argument("--seed", type=int, default=1, help="seed of the mailbox generator")
    p.add_argument("--auto-approve", action="store_true", help="approve device-code sign-ins at once")
    p.add_argument(
        "--data",
        type=Path,
        default=Path("sim-data"),
        help="folder for ca.pem, keys and the mailbox snapshot (created if missing)",
    )
    p.add_argument("--fresh", action="store_true", help="ignore a saved mailbox snapshot and generate anew")
    p.add_argument("--token-lifetime", type=float, default=3600.0, help="access token lifetime in seconds")
    p.add_argument(
        "--authority-host",
        default="",
        help="stand in for this sign-in host (e.g. login.microsoftonline.com, mapped to 127.0.0.1 in a "
        "private network namespace): discovery and tokens name it, the certificate covers it",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.messages < 0:
        print("lifeboat simulator: --messages must not be negative", file=sys.stderr)
        return 2
    sim = Simulator(
        args.data,
        port=args.port,
        admin_port=args.admin_port,
        messages=args.messages,
        seed=args.seed,
        auto_approve=args.auto_approve,
        token_lifetime=args.token_lifetime,
        fresh=args.fresh,
        authority_host=args.authority_host,
    )
    try:
        sim.start()
    except OSError as e:
        print(f"lifeboat simulator: cannot listen ({e}); choose another --port/--admin-port", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"lifeboat simulator: {e}", file=sys.stderr)
        return 2
    for k, v in sim.urls().items():
        print(f"{k:15} {v}")
    print(
        f"{'mailbox':15} {sum(len(v) for v in sim.state().values())} messages; "
        f"device codes {'auto-approved' if args.auto_approve else 'need POST /_sim/devicecode/approve'}"
    )
    done = threading.Event()
    # both signals only set the event, and before the "Ctrl-C" line: a signal sent as soon as a caller
    # reads that line always ends here with exit 0, however late this thread is scheduled
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    print("Ctrl-C to stop.", flush=True)
    while not done.wait(0.5):
        pass
    sim.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
