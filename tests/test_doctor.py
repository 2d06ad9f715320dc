"""`lifeboat doctor` against a tenant: the authority (OIDC discovery), the sign-in, Graph (`GET /me` with
the token), the mailbox and the backup relay, each broken on purpose, through the real CLI entry point
(desktop.cli.main) with the simulator's authority and Graph and a real aiosmtpd relay."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from desktop import cli
from desktop import config as config_mod
from desktop.auth import MsalAuth
from tests.mailservers import FaultySmtp, HangingServer, make_tls
from tests.syncsim import SimProcess


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimProcess]:
    s = SimProcess(tmp_path_factory.mktemp("sim"), messages=2, seed=4)
    yield s
    s.stop()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    monkeypatch.delenv("LIFEBOAT_POLICY", raising=False)
    monkeypatch.setenv("LIFEBOAT_INSECURE_TOKEN_CACHE", "1")
    monkeypatch.setenv("LIFEBOAT_DB_KEY", "ab" * 32)
    monkeypatch.setenv("NO_PROXY", "*")
    monkeypatch.setattr(config_mod, "MACHINE_POLICY", tmp_path / "no-policy.toml")
    return tmp_path


def write_config(path: Path, sim: SimProcess, **over: Any) -> Path:
    values = {"client_id": "lifeboat-tests", "authority_url": sim.authority, "graph_url": sim.graph_url,
              "ca_file": sim.ca_path, "username": "adele.vance@contoso.test", **over}
    account = {k: v for k, v in values.items() if k in config_mod.SECTIONS["account"]}
    backup = {k: v for k, v in values.items() if k in config_mod.SECTIONS["backup"]}
    text = "[account]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in account.items())
    if backup:
        text += "[backup]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in backup.items())
    path.write_text(text)
    return path


def doctor(capsys: pytest.CaptureFixture[str], config: Path, home: Path) -> tuple[int, dict[str, Any]]:
    code = cli.main(["--config", str(config), "--home", str(home), "doctor", "--json"])
    report = json.loads(capsys.readouterr().out)
    return code, {c["name"]: c for c in report["checks"]}


def sign_in(config: Path, home: Path) -> None:
    cfg = config_mod.load(config, overrides={"data_dir": str(home)})
    MsalAuth(cfg).login_device_code(lambda _text: None)  # the simulator approves at once


def test_doctor_passes_against_a_working_tenant_and_relay(sim: SimProcess, env: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Tried: everything working: each network check says ok with what answered; exit 0. Before the
    sign-in, doctor fails on the sign-in and says to run `lifeboat login`, and skips Graph."""
    with FaultySmtp("none") as relay:
        config = write_config(env / "config.toml", sim, backup_smtp_host="127.0.0.1",
                              backup_smtp_port=relay.port, backup_smtp_security="none")
        code, checks = doctor(capsys, config, env / "home")
        assert code == 1 and checks["authority"]["status"] == "ok"
        assert checks["sign-in"]["status"] == "fail" and "lifeboat login" in checks["sign-in"]["detail"]
        assert checks["graph"]["status"] == "warn" and "not checked" in checks["graph"]["detail"]
        sign_in(config, env / "home")
        code, checks = doctor(capsys, config, env / "home")
    assert code == 0, checks
    names = ("authority", "sign-in", "graph", "mailbox", "relay")
    assert {n: checks[n]["status"] for n in names} == dict.fromkeys(names, "ok")
    assert "OpenID configuration" in checks["authority"]["detail"]
    assert "adele.vance@contoso.test" in checks["graph"]["detail"]
    assert "greets" in checks["relay"]["detail"]


def test_doctor_says_what_is_wrong_with_each(sim: SimProcess, env: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Tried, one at a time: an authority whose TLS certificate is not trusted (another CA), an authority
    nobody listens on, Exchange Online down while sign-in and /me answer, a relay that refuses connections
    and one that never speaks. Each check fails naming the cause; the others stay ok."""
    home = env / "home"
    good = write_config(env / "good.toml", sim)
    sign_in(good, home)

    other_ca = make_tls(tmp_path / "other-ca")
    code, checks = doctor(capsys, write_config(env / "ca.toml", sim, ca_file=str(other_ca.ca)), home)
    assert code == 1 and checks["authority"]["status"] == "fail"
    detail = checks["authority"]["detail"]  # said as the network condition (sync.sources.network)
    assert "TLS certificate of" in detail and "is not trusted" in detail and "ca_file" in detail
    assert "ca_file" in checks["authority"]["detail"]

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nobody listens there
    dead = sim.authority.replace(sim.authority.split("/")[2], f"127.0.0.1:{port}")
    code, checks = doctor(capsys, write_config(env / "dead.toml", sim, authority_url=dead), home)
    assert code == 1 and "cannot be reached" in checks["authority"]["detail"]

    sim.outage("503", scope="mail")
    try:
        code, checks = doctor(capsys, good, home)
    finally:
        sim.outage("normal")
    assert code == 1 and checks["graph"]["status"] == "ok" and checks["mailbox"]["status"] == "fail"
    assert "the directory answers but the mailbox does not" in checks["mailbox"]["detail"]
    assert "503" in checks["mailbox"]["detail"]

    code, checks = doctor(capsys, write_config(env / "refused.toml", sim, backup_smtp_host="127.0.0.1",
                                               backup_smtp_port=port, backup_smtp_security="none"), home)
    assert code == 1 and checks["relay"]["status"] == "fail"
    assert f"127.0.0.1:{port}" in checks["relay"]["detail"]
    assert checks["mailbox"]["status"] == "ok"
    refused = checks["relay"]["detail"]
    with HangingServer() as hang:
        code, checks = doctor(capsys, write_config(env / "hang.toml", sim, backup_smtp_host="127.0.0.1",
                                                   backup_smtp_port=hang.port, backup_smtp_security="none"),
                              home)
    assert code == 1 and checks["relay"]["status"] == "fail" and checks["relay"]["detail"] != refused


def test_doctor_local_touches_no_network(sim: SimProcess, env: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Tried: `doctor --local` with a configured tenant and relay: only this computer's checks, no
    request reaches the simulator."""
    config = write_config(env / "config.toml", sim, backup_smtp_host="127.0.0.1", backup_smtp_port=1,
                          backup_smtp_security="none")
    before = sim.requests()
    code = cli.main(["--config", str(config), "--home", str(env / "home"), "doctor", "--json", "--local"])
    names = {c["name"] for c in json.loads(capsys.readouterr().out)["checks"]}
    assert code == 0 and names == {"keystore", "sqlcipher", "cache", "disk"}
    assert sim.requests() == before
