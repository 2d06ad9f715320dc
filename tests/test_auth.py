"""desktop.auth: msal sign-in against the simulator's OIDC authority, offline start, keystore errors.

The real keystore path is covered end to end in test_sync_cli.py (gnome-keyring on a private bus);
here in-process tests use the explicitly test-only plaintext cache (LIFEBOAT_INSECURE_TOKEN_CACHE=1).
"""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from desktop.auth import DISCOVERY_REFRESH, MsalAuth, authority_kwargs, scopes_for
from desktop.config import Config
from sync.errors import ConfigError
from tests.syncsim import PY, REPO, SimProcess, clean_env


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimProcess]:
    s = SimProcess(tmp_path_factory.mktemp("sim"), messages=5, seed=2)
    yield s
    s.stop()


@pytest.fixture
def cfg(env: None, sim: SimProcess, tmp_path: Path) -> Config:
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
    """Trusting only the public CAs (not the simulator's): state network_blocked (issue 12: a certificate
    this machine does not trust is TLS inspection or a wrong root, never "offline", never an outage), and
    the reason names the certificate check and the setting. A ca_file that does not exist is a
    ConfigError naming the setting."""
    import dataclasses

    import certifi

    auth = MsalAuth(dataclasses.replace(cfg, ca_file=certifi.where(), data_dir=str(tmp_path / "h2")))
    assert auth.state() == "network_blocked" and "certificate" in auth.last_error
    assert "not trusted" in auth.last_error and "ca_file" in auth.last_error
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


def _stamps(path: Path) -> dict[str, list[int]]:
    """{key: [expires_at, created_at]} of the GET entries in msal's saved http_cache (msal's own index)."""
    data = pickle.loads(path.read_bytes())  # the file the code under test wrote
    return {k: list(v) for k, v in data["_index_"][1].items() if k.startswith("GET ")}


def _age(path: Path, seconds: int) -> None:
    """Move the saved discovery answers `seconds` into the past, as if msal had fetched them then."""
    from tests.offline_start_netns import age_http_cache

    age_http_cache(path, seconds)


def _discovery_gets(sim: SimProcess) -> int:
    recent = sim.admin("GET", "requests")["recent"]
    return sum(1 for method, path in recent if method == "GET" and path.endswith("openid-configuration"))


def test_discovery_is_refetched_while_online_after_the_refresh_interval(cfg: Config, sim: SimProcess) -> None:
    """Tried: after a sign-in, the saved discovery answers aged by 1 hour, then by 7 hours, and a token
    taken online each time (the access token itself still cached). At 1 h nothing is fetched and the
    expiry stays; at 7 h (past DISCOVERY_REFRESH, 6 h) msal's tenant discovery is fetched once more from
    the authority (in a thread beside token()) and the saved expiry moves forward to about now + 24 h.
    Then, with the authority refusing connections, a due re-fetch fails quietly: the token is still
    served, the kept answers stay as they were, and no second try follows within DISCOVERY_RETRY."""
    assert DISCOVERY_REFRESH == 6 * 3600
    MsalAuth(cfg).login_device_code(lambda _t: None)
    saved = Path(cfg.data_dir) / "msal_http_cache.bin"
    (key, (expires, _created)), = _stamps(saved).items()

    _age(saved, 3600)
    gets = _discovery_gets(sim)
    MsalAuth(cfg).token()
    assert _discovery_gets(sim) == gets and _stamps(saved)[key][0] == expires - 3600

    _age(saved, 6 * 3600)
    auth = MsalAuth(cfg)
    auth.token()
    assert auth.discovery_thread is not None
    auth.discovery_thread.join(300)  # the re-fetch runs beside token() (a safety net, not a limit)
    assert _discovery_gets(sim) == gets + 1
    new_expires, new_created = _stamps(saved)[key]
    assert new_expires >= expires and abs(new_created + 86400 - new_expires) == 0
    assert abs(new_created - time.time()) < 600 and auth.discovery_due() is False

    _age(saved, 7 * 3600)
    kept = _stamps(saved)
    sim.outage("refuse")
    try:
        late = MsalAuth(cfg)
        assert late.token() and late.discovery_thread is not None
        late.discovery_thread.join(300)
        assert late.discovery_due() is False  # tried once, failed: waits DISCOVERY_RETRY
        assert _stamps(saved) == kept
        assert late.refresh_discovery() is False and _stamps(saved) == kept
    finally:
        sim.outage("normal")


def test_a_503_from_the_authority_is_offline_not_a_traceback(cfg: Config, sim: SimProcess) -> None:
    """Tried: nothing saved yet and the sign-in authority answering 503 (the simulator's login-scope
    outage). msal raises its own MsalServiceError from discovery; MsalAuth reports state "offline" with a
    reason, and account() is None, instead of letting msal's exception escape."""
    sim.outage("503", scope="login")
    try:
        auth = MsalAuth(cfg)
        assert auth.state() == "offline" and "sign-in authority" in auth.last_error
        assert auth.account() is None
    finally:
        sim.outage("normal")


def test_simulator_instance_discovery_answers_like_entra(tmp_path: Path) -> None:
    """Tried: the simulator as login.microsoftonline.com would be asked by msal: instance discovery
    (api-version 1.1 for a well-known host, 1.0 for an unknown one) names the tenant discovery endpoint
    and the cloud aliases, with the real Cache-Control; an unknown host gets 400 invalid_instance
    (AADSTS50049); tenant discovery names the public host in every endpoint. The certificate covers the
    stand-in host name."""
    import ssl

    from simulator.server import Simulator

    sim = Simulator(tmp_path / "sim", messages=1, authority_host="login.microsoftonline.com")
    sim.start()
    try:
        assert sim.authority == f"https://login.microsoftonline.com:{sim.port}/{sim.user.tid}"
        status, out = sim.auth.instance_discovery({
            "api-version": "1.1",
            "authorization_endpoint": "https://login.microsoftonline.com/common/oauth2/authorize"})
        assert status == 200 and out["api-version"] == "1.1"
        assert out["tenant_discovery_endpoint"] == (
            f"https://login.microsoftonline.com:{sim.port}/common/v2.0/.well-known/openid-configuration")
        first = out["metadata"][0]
        assert first["preferred_network"] == "login.microsoftonline.com"
        assert first["preferred_cache"] == "login.windows.net"
        assert "sts.windows.net" in first["aliases"]
        status, out = sim.auth.instance_discovery({
            "api-version": "1.0", "authorization_endpoint": "https://evil.example/t/oauth2/v2.0/authorize"})
        assert status == 400 and out["error"] == "invalid_instance" and out["error_codes"] == [50049]
        resp = sim._login("GET", "/common/discovery/instance?api-version=1.1&authorization_endpoint="
                          "https%3A%2F%2Flogin.microsoftonline.com%2Fcommon%2Foauth2%2Fauthorize", b"")
        assert resp.status == 200 and resp.headers["Cache-Control"] == "max-age=86400, private"
        doc = sim.auth.discovery(sim.user.tid)
        assert doc["token_endpoint"].startswith(f"https://login.microsoftonline.com:{sim.port}/{sim.user.tid}/")
        assert doc["cloud_instance_name"] == "microsoftonline.com"
        pem = ssl.get_server_certificate(("127.0.0.1", sim.port))
        from cryptography import x509

        names = x509.load_pem_x509_certificate(pem.encode()).extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
        assert "login.microsoftonline.com" in names
    finally:
        sim.stop()
