"""Shared pieces for the continuity tests: the simulator signed in through the real msal code, a real
aiosmtpd relay as the backup route, a store, and a FakeClock (a time source, not a mock of a server).

The fixtures built from these pieces (`env`, `provider`, `relay`, `store`) live in tests/conftest.py.
"""

from __future__ import annotations

import dataclasses
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

from desktop.auth import MsalAuth
from desktop.config import Config
from simulator.server import Simulator
from sync import mime
from sync.engine import queue as queue_out
from sync.model import OutboxItem
from sync.routes.graph import GraphRoute
from sync.routes.smtp import SmtpRoute
from sync.sources.graph import GraphSource
from sync.store import Store
from tests.mailservers import FaultySmtp

START = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


class FakeClock:
    """sync.ports.Clock driven by the test: the failover policy's seconds pass without waiting."""

    def __init__(self, start: datetime = START) -> None:
        self.t = start

    def now(self) -> datetime:
        return self.t

    def advance(self, seconds: float) -> datetime:
        self.t += timedelta(seconds=seconds)
        return self.t


def sim_config(sim: Simulator, home: Path, **overrides: object) -> Config:
    return dataclasses.replace(
        Config(), client_id="lifeboat-tests", username=sim.user.upn, authority_url=sim.authority,
        graph_url=sim.graph_url, ca_file=str(sim.ca_path), data_dir=str(home), **overrides,
    )


def sign_in(cfg: Config) -> MsalAuth:
    """The real sign-in code (msal device code flow; the simulator approves it at once)."""
    auth = MsalAuth(cfg)
    auth.login_device_code(lambda text: None)
    return auth


@dataclasses.dataclass
class Provider:
    sim: Simulator
    cfg: Config
    auth: MsalAuth
    source: GraphSource
    route: GraphRoute


def relay_route(relay: FaultySmtp) -> SmtpRoute:
    return SmtpRoute("127.0.0.1", relay.port, "none", timeout=10)


def store_key() -> bytes:
    """The key the `store` fixture used (the env fixture's LIFEBOAT_DB_KEY), to reopen the same cache."""
    return bytes.fromhex(os.environ["LIFEBOAT_DB_KEY"])


def queue(store: Store, subject: str = "Hello", *, now: datetime = START, **kw: object) -> OutboxItem:
    fields: dict[str, object] = {"sender": "Adele <adele.vance@contoso.test>", "to": ["bob@relay.test"],
                                 "subject": subject, "text": f"{subject}\n", **kw}
    return queue_out(store, mime.build(**fields), now)  # type: ignore[arg-type]


def sent_copies(p: Provider, message_id: str) -> list[dict[str, object]]:
    """Sent Items entries with this Message-ID, read back through Graph ($filter), with isDraft."""
    resp = requests.get(
        f"{p.cfg.graph_url}/me/mailFolders/sentitems/messages",
        params={"$filter": f"internetMessageId eq '{message_id}'", "$select": "id,isDraft,internetMessageId"},
        headers={"Authorization": f"Bearer {p.auth.token()}"}, verify=p.cfg.ca_file, timeout=30,
    )
    resp.raise_for_status()
    return list(resp.json()["value"])
