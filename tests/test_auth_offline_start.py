"""Issue 9 item 7: starting offline days after the last sign-in, against login.microsoftonline.com's path.

The scenario runs in a private network + mount namespace (tests/offline_start_netns.py): there
login.microsoftonline.com is the simulator on 127.0.0.1:443 (hosts file bind-mounted, certificate from
the simulator's CA), so msal does what it does for the real Entra ID host, and nothing can reach the
internet (loopback only, no route). Time is moved by shifting the times msal stored in its saved
http_cache and token cache (what msal compares with time.time()), not by waiting.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if os.geteuid() != 0 or not all(shutil.which(t) for t in ("unshare", "ip", "mount")):
        pytest.skip("needs root with unshare, ip and mount (a private network and mount namespace)")
    if subprocess.run(["unshare", "-n", "-m", "true"]).returncode != 0:
        pytest.skip("cannot create a network + mount namespace here")
    work = tmp_path_factory.mktemp("netns")
    script = ROOT / "tests" / "offline_start_netns.py"
    out = subprocess.run(["unshare", "-n", "-m", sys.executable, str(script), str(work)], cwd=ROOT,
                         capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, out.stderr[-4000:]
    data: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return data


def test_the_namespace_is_private(result: dict[str, Any]) -> None:
    """Tried: inside the namespace, login.microsoftonline.com resolves to 127.0.0.1, the only link is
    loopback and there is no route: nothing of the scenario can reach the real internet."""
    ns = result["namespace"]
    assert ns == {"resolves_to": "127.0.0.1", "routes": "", "links": ["lo"]}


def test_msal_takes_the_entra_path_and_caches_both_discoveries(result: dict[str, Any]) -> None:
    """Tried: `lifeboat status` before sign-in, `login --device-code`, `sync --once` with authority
    https://login.microsoftonline.com/{tenant} (instance discovery on, as deployed): msal fetched tenant
    discovery and instance discovery from the simulator, and the saved http_cache holds both."""
    app = result["app"]
    assert app["status_before"] == "sign_in_needed"
    assert app["login"] == "signed in as adele.vance@contoso.test"
    assert "/common/discovery/instance" in app["login_requests"]
    assert any(p.endswith("/v2.0/.well-known/openid-configuration") for p in app["login_requests"])
    cached = app["cached_discovery"]
    tenant = [k for k in cached if k.endswith("/v2.0/.well-known/openid-configuration")]
    assert len(cached) == 2 and "GET https://login.microsoftonline.com/common/discovery/instance" in cached
    assert len(tenant) == 1 and tenant[0].startswith("GET https://login.microsoftonline.com/")
    assert app["kept_seconds"] == [86400]  # msal keeps each discovery answer exactly 24 hours


def test_three_days_later_offline_msal_cannot_start_but_the_app_does(result: dict[str, Any]) -> None:
    """Tried: the saved discovery answers and access token aged by 3 days, then the simulator refusing
    every connection while the backup relay answers. msal cannot be built (Offline, saying the kept
    answers are over 24 hours old) -- and yet `status` reports sign-in "offline" without a traceback,
    `search` and `show` read the cache, and a message sent with `lifeboat send` is delivered by
    `lifeboat run --headless` through the backup relay in continuity mode (outbox: sent, route backup)."""
    app = result["app"]
    assert app["aged_access_tokens"] == 1
    assert app["aged_all_expired"]
    assert app["msal_offline"]["app"] == "Offline"
    assert "over 24 hours old" in app["msal_offline"]["why"]
    assert app["status_offline"]["sign_in"] == "offline" and app["status_offline"]["messages"] == 7
    assert app["search_subjects"] == ["Lighthouse keeper rota"]
    assert app["show"] == {"subject": "Lighthouse keeper rota", "text": "You have the night shift."}
    assert app["run_exit"] == 0 and not app["run_traceback"]
    assert app["relay_received"] == [app["queued_message_id"]]
    assert app["outbox"] == [{"state": "sent", "route": "backup"}]
    assert app["mode_after"] == "continuity"


def test_refreshing_discovery_while_online_lets_a_later_offline_start_build_msal(
    result: dict[str, Any],
) -> None:
    """Tried: signed in at T, a token taken online at T+7h, started with Microsoft unreachable at T+27h
    (token and discovery answers aged accordingly). Without the re-fetch (discovery_refresh=None, the
    code before issue 9) nothing was fetched at T+7h and msal cannot be built at T+27h (Offline, no
    account shown). With it, msal re-fetched tenant discovery at T+7h, is built offline at T+27h from
    those 20-hour-old answers and shows the account; sign-in is "offline" (the token needs the authority)."""
    old, new = result["refresh"]["old"], result["refresh"]["new"]
    assert old == {"refetched_at_7h": [], "offline_app": "Offline", "account": None, "state": "offline"}
    assert len(new["refetched_at_7h"]) == 1
    assert new["refetched_at_7h"][0].endswith("/v2.0/.well-known/openid-configuration")
    assert new["offline_app"] == "built" and new["account"] == "adele.vance@contoso.test"
    assert new["state"] == "offline"
