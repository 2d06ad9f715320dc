"""desktop.auth: msal sign-in against the simulator's OIDC authority, offline start, keystore errors.

The real keystore path is covered end to end in test_sync_cli.py (gnome-keyring on a private bus);
here in-process tests use the explicitly test-only plaintext cache (LIFEBOAT_INSECURE_TOKEN_CACHE=1).
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from desktop.auth import MsalAuth, authority_kwargs, scopes_for
from desktop.config import Config
from sync.errors import ConfigError
from tests.syncsim import PY, REPO, SimProcess, clean_env


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimProcess]:
    s = SimProcess(tmp_path_factory.mktemp("sim"), messages=5, seed=2)
    yield s
    s.stop()


@pytest.fixture
def cfg(sim: SimProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    monkeypatch.setenv("LIFEBOAT_INSECURE_TOKEN_CACHE", "1")
    return Config(client_id="lifeboat-tests", authority_url=sim.authority, graph_url=sim.graph_url,
                  ca_file=sim.ca_path, data_dir=str(tmp_path / "home"))


def test_authority_and_scopes_follow_the_configured_cloud() -> None:
    """Entra hosts go to msal as authorities; other hosts as OIDC (no instance discovery); http and
    a missing client id are refused with an actionable ConfigError; scopes follow the Graph host."""
    assert authority_kwargs("https://login.microsoftonline.com/contoso") == {
        "authority": "https://login.microsoftonline.com/contoso"}
    assert authority_kwargs("https://127.0.0.1:9/t/v2.0/") == {"oidc_authority": "https://127.0.0.1:9/t/v2.0"}
    assert authority_kwargs("https://127.0.0.1:9/t")["instance_discovery"] is False
    with pytest.raises(ConfigError, match="https"):
        authority_kwargs("http://127.0.0.1:9/t")
    assert scopes_for("https://graph.microsoft.us/v1.0")[0] == "https://graph.microsoft.us/Mail.ReadWrite"
    with pytest.raises(ConfigError, match="client_id"):
        MsalAuth(Config(client_id=""))


def test_device_code_sign_in_silent_token_and_no_token_in_logs(
    cfg: Config, caplog: pytest.LogCaptureFixture
) -> None:
    """Device code flow with the real msal; token() then comes from the cache; at DEBUG level nothing
    logged carries the token; the plaintext test cache is announced with a warning."""
    caplog.set_level(logging.DEBUG)
    auth = MsalAuth(cfg)
    assert auth.state() == "sign_in_needed"
    shown: list[str] = []
    assert auth.login_device_code(shown.append) == "adele.vance@contoso.test"
    assert "enter the code" in shown[0]
    token = auth.token()
    assert token.count(".") == 2 and auth.state() == "signed_in"
    assert auth.account() == "adele.vance@contoso.test"
    assert MsalAuth(cfg).token() == token  # a new instance finds it in the persisted cache
    assert token not in caplog.text and token[:40] not in caplog.text
    assert "UNENCRYPTED" in caplog.text


BROWSER = """
import os, sys, time
if os.fork():  # the "browser" returns at once, as a real one does, and signs in in the background
    sys.exit(0)
import requests
time.sleep(0.3)
url = sys.argv[1]
ca = os.environ["LIFEBOAT_TEST_CA"]
location = requests.get(url, allow_redirects=False, verify=ca, timeout=30).headers["Location"]
# msal asks for response_mode=form_post: post the answer to its localhost listener like the form would
base, _, query = location.partition("?")
requests.post(base, data=query, headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=30)
"""


def test_interactive_sign_in_through_the_system_browser(
    cfg: Config, sim: SimProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """login_interactive() opens the system browser (here a stand-in set through $BROWSER that
    follows the simulator's sign-in page and posts the answer back) and msal's local listener
    receives the code: signed in, with a token."""
    script = tmp_path / "browser.py"
    script.write_text(BROWSER)
    monkeypatch.setenv("BROWSER", f"{PY} {script} %s")
    monkeypatch.setenv("LIFEBOAT_TEST_CA", cfg.ca_file)
    auth = MsalAuth(cfg)
    assert auth.login_interactive() == "adele.vance@contoso.test"
    assert auth.state() == "signed_in"


def test_starts_offline_from_the_persisted_http_cache(cfg: Config, sim: SimProcess) -> None:
    """After one online sign-in, a fresh MsalAuth constructs and reports signed_in with the provider
    refusing connections (msal's discovery answers come from the persisted http_cache). Without that
    cache it reports offline, never a traceback."""
    MsalAuth(cfg).login_device_code(lambda _t: None)
    sim.outage("refuse")
    try:
        assert MsalAuth(cfg).state() == "signed_in"
        (Path(cfg.data_dir) / "msal_http_cache.bin").unlink()
        offline = MsalAuth(cfg)
        assert offline.state() == "offline" and "cannot be reached" in offline.last_error
    finally:
        sim.outage("normal")


def test_wrong_or_missing_ca_is_a_clear_error(cfg: Config, tmp_path: Path) -> None:
    """Trusting only the public CAs (not the simulator's): state offline, and the reason names the
    certificate check. A ca_file that does not exist is a ConfigError naming the setting."""
    import dataclasses

    import certifi

    auth = MsalAuth(dataclasses.replace(cfg, ca_file=certifi.where(), data_dir=str(tmp_path / "h2")))
    assert auth.state() == "offline" and "certificate" in auth.last_error
    with pytest.raises(ConfigError, match="ca_file"):
        MsalAuth(dataclasses.replace(cfg, ca_file=str(tmp_path / "missing.pem")))


def test_no_keystore_is_a_clear_error() -> None:
    """No Secret Service on the session bus (and no test override): KeyMissing names the keystore
    and says how to get one; no token file is written in plaintext."""
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from desktop.auth import token_persistence\n"
        "from sync.errors import KeyMissing\n"
        "try:\n"
        "    token_persistence(Path(sys.argv[1]))\n"
        "except KeyMissing as e:\n"
        "    print('KEYMISSING', e)\n"
    )
    target = Path(os.environ.get("TMPDIR", "/tmp")) / f"lifeboat-nokeystore-{os.getpid()}" / "msal_cache.bin"
    env = clean_env({"DBUS_SESSION_BUS_ADDRESS": "unix:path=/nonexistent/bus"})
    env.pop("LIFEBOAT_INSECURE_TOKEN_CACHE", None)
    out = subprocess.run([PY, "-c", code, str(target)], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=120)
    assert "KEYMISSING" in out.stdout, out.stderr
    assert "keystore" in out.stdout and "gnome-keyring" in out.stdout
    assert not target.exists() or target.stat().st_size == 0
