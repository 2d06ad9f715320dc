"""The enterprise network must never look like an outage (issue 12, item 1).

Real parts: the simulator over real HTTPS with its own CA, the real msal sign-in and GraphSource, a real
CONNECT proxy on loopback (tests/connect_proxy.py), a real SMTP relay (aiosmtpd) as the reference, the
failover Monitor over a real encrypted cache, and the real CLI through its entry point in a subprocess.

"Only the system store trusts it" without touching this machine's store: the client runs in a process
whose OpenSSL default store (what truststore uses on Linux) is SSL_CERT_FILE = the system's roots plus
the simulator's CA, with REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE unset and no ca_file: certifi's list (what
requests used before) does not hold that CA, as a TLS-inspection root pushed by Group Policy is in the
Windows store but not in certifi.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from desktop.config import Config
from simulator.server import Simulator
from sync import engine
from sync.errors import NetworkBlocked, Unreachable
from sync.failover import Policy
from sync.health import Monitor, mode_json
from sync.model import Mode
from sync.sources.graph import GraphSource
from sync.store import Store, cache_path
from tests.connect_proxy import ConnectProxy
from tests.continuity_kit import relay_route, sign_in, sim_config, store_key
from tests.mailservers import FaultySmtp
from tests.pac_server import PacServer, pac_for

SYSTEM_ROOTS = Path("/etc/ssl/certs/ca-certificates.crt")
REPO = Path(__file__).resolve().parents[1]


class StepClock:
    def __init__(self) -> None:
        self.t = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.t


OWN_MAIL = (b"From: Zoe <zoe@example.com>\r\nTo: adele.vance@contoso.test\r\nSubject: the proxy plan\r\n"
            b"Message-ID: <proxy-plan@example.com>\r\n\r\nbody\r\n")


@pytest.fixture
def sim(env: None, tmp_path: Path) -> Iterator[Simulator]:
    s = Simulator(tmp_path / "sim", messages=3, seed=12).start()
    s.set_transport(sent_delay=0)
    # a message of our own, received now: the generated mail's dates depend on whether the third-party
    # corpus is there, and in a clone without ../shared all three fell outside the 30-day cache window
    s.add_message("inbox", OWN_MAIL)
    try:
        yield s
    finally:
        s.stop()


def _run_monitor(store: Store, source: GraphSource, relay: FaultySmtp, rounds: int = 14) -> Monitor:
    """`rounds` probe rounds 5 s apart (70 s: more than twice the 30 s a real outage needs to enter
    continuity with the default policy), the relay answering as the reference."""
    clock = StepClock()
    monitor = Monitor(store, source, [relay_route(relay)], Policy(), clock=clock, reference_timeout=5)
    monitor.start()
    for _ in range(rounds):
        monitor.tick()
        clock.t += timedelta(seconds=5)
    return monitor


def _cli(home: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "desktop.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def _child_env(home: Path, **extra: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items()
           if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY",
                        "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy")}
    out.update(LIFEBOAT_HOME=str(home), PYTHONPATH=str(REPO), **extra)
    return out


def _write_config(cfg: Config, home: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    lines = ["[account]"]
    for key in ("client_id", "username", "authority_url", "graph_url", "ca_file", "proxy", "proxy_pac_url"):
        value = getattr(cfg, key)
        if value:
            lines.append(f"{key} = {json.dumps(value)}")
    (home / "config.toml").write_text("\n".join(lines) + "\n")


# ---- TLS inspection: a root only the operating system's store trusts -----------------------------


@pytest.mark.skipif(not SYSTEM_ROOTS.is_file(), reason="needs Debian's ca-certificates bundle")
def test_a_root_only_the_system_store_trusts_signs_in_and_syncs_where_certifi_alone_refuses(
        sim: Simulator, tmp_path: Path) -> None:
    """Tried: TLS inspection whose root is in the system's store only (not certifi, no ca_file): the
    real CLI signs in (msal), syncs (Graph) and `doctor` finds both paths trusted. Before issue 12 (certifi
    only) every one of these failed with a certificate error, as plain requests still does here."""
    bundle = tmp_path / "system-store.pem"
    bundle.write_bytes(SYSTEM_ROOTS.read_bytes() + b"\n" + sim.ca_path.read_bytes())
    empty_dir = tmp_path / "no-certs"
    empty_dir.mkdir()
    home = tmp_path / "home"
    cfg = dataclasses.replace(sim_config(sim, home), ca_file="")
    _write_config(cfg, home)
    env = _child_env(home, SSL_CERT_FILE=str(bundle), SSL_CERT_DIR=str(empty_dir))

    certifi_only = subprocess.run(
        [sys.executable, "-c", "import requests, sys\ntry:\n    requests.get(sys.argv[1], timeout=10)\n"
         "except requests.exceptions.SSLError:\n    print('certificate refused')\n", sim.graph_url + "/me"],
        env=env, capture_output=True, text=True, timeout=60)
    assert certifi_only.stdout.strip() == "certificate refused"  # the old way: certifi's list alone

    login = _cli(home, "login", "--device-code", env=env)
    assert login.returncode == 0, login.stderr
    synced = _cli(home, "sync", "--once", "--json", env=env)
    assert synced.returncode == 0, synced.stderr
    assert sum(f["upserted"] for f in json.loads(synced.stdout)["folders"].values()) >= 1
    doctor = json.loads(_cli(home, "doctor", "--json", env=env).stdout)
    network = {c["name"]: c for c in doctor["checks"] if c["name"].startswith("network")}
    assert {c["status"] for c in network.values()} == {"ok"}, network

    # the same machine without the root in its store: doctor says what is wrong and what to set
    env_without = _child_env(home, SSL_CERT_FILE=str(SYSTEM_ROOTS), SSL_CERT_DIR=str(empty_dir))
    done = _cli(home, "doctor", "--json", env=env_without)
    doctor = json.loads(done.stdout)
    graph = next(c for c in doctor["checks"] if c["name"] == "network graph")
    assert done.returncode == 1 and graph["status"] == "fail"
    assert "not trusted" in graph["detail"] and "ca_file" in graph["detail"]


def test_an_untrusted_certificate_raises_the_condition_and_never_fails_over(
        sim: Simulator, tmp_path: Path, relay: FaultySmtp, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tried: TLS inspection whose root this machine does not trust (the simulator's CA outside the
    store, no ca_file) for 70 s with the relay answering: NORMAL throughout, the condition raised with
    "certificate not trusted" (before: every round counted as a failure, continuity after 30 s)."""
    cfg = sim_config(sim, tmp_path / "home")
    auth = sign_in(cfg)  # signed in earlier; the token is cached
    monkeypatch.setenv("SSL_CERT_FILE", str(SYSTEM_ROOTS))
    source = GraphSource(cfg.graph_url, auth, probe_timeout=(2.0, 3.0))
    with pytest.raises(NetworkBlocked, match="not trusted"):
        source.probe()
    with Store.open(cache_path(tmp_path / "home", "t"), store_key()) as store:
        monitor = _run_monitor(store, source, relay)
        state = monitor.state
        assert state.mode is Mode.NORMAL and state.failures == 0
        assert state.network_blocked and state.network_reason == "certificate not trusted"
        assert not state.offline
    source.close()


# ---- proxies ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "reason"), [("407", "proxy authentication required (407)"),
                                               ("403", "proxy refused (403)")])
def test_a_proxy_that_refuses_raises_the_condition_and_never_fails_over(
        sim: Simulator, tmp_path: Path, relay: FaultySmtp, mode: str, reason: str) -> None:
    """Tried: a proxy answering CONNECT with 407 (NTLM/Negotiate wanted) or 403, for 70 s, while the
    relay's greeting answers: Lifeboat stays NORMAL, raises `network_blocked` with the reason,
    `status --json` shows it and `doctor` says what is wrong. Then the proxy lets Lifeboat through:
    Graph syncs through the tunnel and the condition clears."""
    home = tmp_path / "home"
    cfg = sim_config(sim, home)
    auth = sign_in(cfg)
    with ConnectProxy(mode) as proxy, Store.open(cache_path(home, cfg.username), store_key()) as store:
        cfg = dataclasses.replace(cfg, proxy=proxy.url)
        source = GraphSource(cfg.graph_url, auth, ca_file=cfg.ca_file, proxy=cfg.proxy,
                             probe_timeout=(2.0, 3.0))
        monitor = _run_monitor(store, source, relay)
        state = monitor.state
        assert state.mode is Mode.NORMAL and state.failures == 0, state
        assert state.network_blocked and state.network_reason == reason
        assert any(c.startswith("CONNECT 127.0.0.1:") for c in proxy.connects)
        status = mode_json(store, datetime.now(UTC))
        assert status["network_blocked"] is True and status["network_reason"] == reason
        # a sync through it fails as NetworkBlocked (deferred like no answer, never counted)
        with pytest.raises(NetworkBlocked):
            engine.sync_once(store, source, folders=["*"], cache_days=30, cache_max_mb=100)
        assert monitor.report(NetworkBlocked("sync", reason=reason)) == []

        _write_config(cfg, home)
        env = _child_env(home, LIFEBOAT_INSECURE_TOKEN_CACHE="1",
                         LIFEBOAT_DB_KEY=os.environ["LIFEBOAT_DB_KEY"])
        done = _cli(home, "doctor", "--json", env=env)
        graph = next(c for c in json.loads(done.stdout)["checks"] if c["name"] == "network graph")
        assert done.returncode == 1 and graph["status"] == "fail" and f"({mode})" in graph["detail"]
        assert ("authentication" in graph["detail"]) == (mode == "407")

        proxy.mode = "tunnel"
        report = engine.sync_once(store, source, folders=["*"], cache_days=30, cache_max_mb=100)
        assert report.ok and sum(r.upserted for r in report.folders.values()) >= 1
        monitor.tick()
        assert not monitor.state.network_blocked and monitor.mode is Mode.NORMAL
        source.close()


def test_a_proxy_that_cannot_reach_microsoft_is_still_an_outage(
        sim: Simulator, tmp_path: Path, relay: FaultySmtp) -> None:
    """Tried: the proxy answers CONNECT with 502 (it cannot reach Microsoft: what an outage looks like
    through a proxy) while the relay answers: that is NOT blocked, it counts, and continuity comes as
    for any outage. The condition must not hide a real outage."""
    cfg = sim_config(sim, tmp_path / "home")
    auth = sign_in(cfg)
    with ConnectProxy("502") as proxy, Store.open(cache_path(tmp_path / "home", "t"), store_key()) as store:
        source = GraphSource(cfg.graph_url, auth, ca_file=cfg.ca_file, proxy=proxy.url,
                             probe_timeout=(2.0, 3.0))
        with pytest.raises(Unreachable) as caught:
            source.probe()
        assert not isinstance(caught.value, NetworkBlocked)
        monitor = _run_monitor(store, source, relay)
        assert monitor.mode is Mode.CONTINUITY and not monitor.state.network_blocked
        source.close()


def test_sign_in_through_a_proxy_asking_for_authentication_is_blocked_not_offline(
        sim: Simulator, tmp_path: Path) -> None:
    """Tried: msal's own requests (discovery, token) through a 407 proxy: the sign-in state is
    "network_blocked" with the proxy's reason, not "offline" (before: Offline, counted as an outage)."""
    from desktop.auth import NETWORK_BLOCKED, MsalAuth

    cfg = sim_config(sim, tmp_path / "home")
    with ConnectProxy("407") as proxy:
        auth = MsalAuth(dataclasses.replace(cfg, proxy=proxy.url))
        with pytest.raises(NetworkBlocked, match="407"):
            auth.login_device_code(lambda text: None)
        assert auth.state() == NETWORK_BLOCKED and "407" in auth.last_error
        proxy.mode = "tunnel"
        assert MsalAuth(dataclasses.replace(cfg, proxy=proxy.url)).login_device_code(lambda t: None)
        assert any("CONNECT" in c for c in proxy.connects)


# ---- proxy auto-configuration (PAC) ----------------------------------------------------------------


def _sim_host(sim: Simulator) -> str:
    return sim.graph_url.split("://", 1)[1].split("/", 1)[0]


def test_a_pac_file_sends_sign_in_and_sync_through_the_proxy_it_names(
        sim: Simulator, tmp_path: Path) -> None:
    """Tried: no proxy setting, only proxy_pac_url (a PAC file served on loopback that names a CONNECT
    proxy for Microsoft's host and DIRECT for the rest): the real CLI signs in and syncs through that
    proxy (it saw the CONNECTs), the PAC file is fetched (not once per request), and `doctor` says the
    path it took. Before: proxy_pac_url did not exist and every request went direct."""
    home = tmp_path / "home"
    with ConnectProxy("tunnel") as proxy, PacServer(pac_for(_sim_host(sim), proxy.port)) as pac:
        cfg = dataclasses.replace(sim_config(sim, home), proxy_pac_url=pac.url)
        _write_config(cfg, home)
        env = _child_env(home, LIFEBOAT_INSECURE_TOKEN_CACHE="1",
                         LIFEBOAT_DB_KEY=os.environ["LIFEBOAT_DB_KEY"])
        login = _cli(home, "login", "--device-code", env=env)
        assert login.returncode == 0, login.stderr
        assert any(c == f"CONNECT {_sim_host(sim)}" for c in proxy.connects), proxy.connects
        tunnels = len(proxy.connects)
        synced = _cli(home, "sync", "--once", "--json", env=env)
        assert synced.returncode == 0, synced.stderr
        assert sum(f["upserted"] for f in json.loads(synced.stdout)["folders"].values()) >= 1
        assert len(proxy.connects) > tunnels
        doctor = json.loads(_cli(home, "doctor", "--json", env=env).stdout)
        graph = next(c for c in doctor["checks"] if c["name"] == "network graph")
        assert graph["status"] == "ok", graph
        assert f"through the proxy 127.0.0.1:{proxy.port}, as the PAC file at 127.0.0.1" in graph["detail"]
        assert "proxy_pac_url" in graph["detail"]
        assert 1 <= pac.fetches <= 12  # once per process and session, never per request
        assert doctor["settings"]["proxy_pac_url"] == {"value": pac.url, "source": "user"}


def test_a_pac_chosen_proxy_that_refuses_raises_the_condition_and_never_fails_over(
        sim: Simulator, tmp_path: Path, relay: FaultySmtp) -> None:
    """Tried: the PAC file names a proxy that answers CONNECT with 407 (NTLM/Negotiate wanted) for 70 s
    while the relay answers: NORMAL throughout, `network_blocked` with the 407 reason in status --json, as
    for a static proxy (before: proxy_pac_url did not exist)."""
    home = tmp_path / "home"
    cfg = sim_config(sim, home)
    auth = sign_in(cfg)
    with ConnectProxy("407") as proxy, PacServer(pac_for(_sim_host(sim), proxy.port)) as pac, \
            Store.open(cache_path(home, cfg.username), store_key()) as store:
        source = GraphSource(cfg.graph_url, auth, ca_file=cfg.ca_file, pac_url=pac.url,
                             probe_timeout=(2.0, 3.0))
        with pytest.raises(NetworkBlocked, match="407"):
            source.probe()
        monitor = _run_monitor(store, source, relay)
        state = monitor.state
        assert state.mode is Mode.NORMAL and state.failures == 0, state
        assert state.network_blocked and state.network_reason == "proxy authentication required (407)"
        status = mode_json(store, datetime.now(UTC))
        assert status["network_blocked"] is True and status["mode"] == "normal"
        assert any(c.startswith("CONNECT 127.0.0.1:") for c in proxy.connects)
        source.close()


def test_a_pac_failover_skips_a_dead_proxy_for_the_next_one(sim: Simulator, tmp_path: Path) -> None:
    """Tried: "PROXY <a port nobody listens on>; PROXY <the CONNECT proxy>": the first refuses the
    connection, the request goes through the second, and the dead one is not tried again."""
    import socket

    with socket.socket() as dead:
        dead.bind(("127.0.0.1", 0))
        dead_port = dead.getsockname()[1]
    cfg = sim_config(sim, tmp_path / "home")
    auth = sign_in(cfg)
    with ConnectProxy("tunnel") as proxy:
        script = pac_for(_sim_host(sim), proxy.port).replace(
            f"PROXY 127.0.0.1:{proxy.port}", f"PROXY 127.0.0.1:{dead_port}; PROXY 127.0.0.1:{proxy.port}")
        with PacServer(script) as pac:
            source = GraphSource(cfg.graph_url, auth, ca_file=cfg.ca_file, pac_url=pac.url)
            source.probe()
            source.probe()
            assert len(proxy.connects) >= 1
            assert source._session.pac.proxy(cfg.graph_url) == proxy.url  # type: ignore[attr-defined]
            source.close()


@pytest.mark.parametrize(("status", "script", "said"), [
    (None, "", "could not be fetched"),  # nothing listens at the PAC URL (a laptop outside the office)
    (404, "", "answered 404"),
    (200, "this is { not a PAC", "not a working PAC script"),
])
def test_a_pac_file_that_cannot_be_used_is_said_plainly_and_lifeboat_goes_direct(
        sim: Simulator, tmp_path: Path, status: int | None, script: str, said: str) -> None:
    """Tried: a PAC URL nothing answers at, a PAC URL answering 404, a file that is not a PAC script: the
    real CLI's `doctor` warns with what is wrong and names the PAC host, and sign-in, Graph and the
    sync still work DIRECT (as Windows does when its PAC file is missing), never an outage or a crash."""
    home = tmp_path / "home"
    env = _child_env(home, LIFEBOAT_INSECURE_TOKEN_CACHE="1", LIFEBOAT_DB_KEY=os.environ["LIFEBOAT_DB_KEY"])
    if status is None:
        import socket

        with socket.socket() as dead:
            dead.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{dead.getsockname()[1]}/proxy.pac"
        server = None
    else:
        server = PacServer(script, status=status).__enter__()
        url = server.url
    try:
        cfg = dataclasses.replace(sim_config(sim, home), proxy_pac_url=url)
        _write_config(cfg, home)
        login = _cli(home, "login", "--device-code", env=env)
        assert login.returncode == 0, login.stderr
        doctor = json.loads(_cli(home, "doctor", "--json", env=env).stdout)
        network_checks = [c for c in doctor["checks"] if c["name"].startswith("network")]
        assert network_checks and all(c["status"] == "warn" for c in network_checks), network_checks
        for check in network_checks:
            assert said in check["detail"] and "127.0.0.1" in check["detail"], check
            assert "through the system's proxy settings" in check["detail"]
        assert next(c for c in doctor["checks"] if c["name"] == "graph")["status"] == "ok"
        synced = _cli(home, "sync", "--once", "--json", env=env)
        assert synced.returncode == 0, synced.stderr
    finally:
        if server is not None:
            server.stop()


def test_a_pac_answer_too_large_is_not_run(sim: Simulator) -> None:
    """Tried: the PAC URL answers 2 MB (not a PAC file: a misconfigured URL, or a hostile answer): it is
    cut at 1 MB and never run; Graph is reached the system's way, and the reason names the PAC host."""
    from sync.sources import network

    with PacServer("//" + "x" * (2 << 20)) as pac:
        reached = network.reach(sim.graph_url, "graph", str(sim.ca_path), pac_url=pac.url)
    assert reached.status == 401 and reached.proxy is None
    assert "larger than" in reached.pac_error and "127.0.0.1" in reached.pac_error
    assert "is not used" in reached.path()
