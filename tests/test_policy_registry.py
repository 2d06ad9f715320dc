"""Machine policy: the one policy table, the registry merge (HKLM over HKCU) and the TOML policy file.

The winreg reader itself runs under wine in tests/test_msi.py (the installed `lifeboat doctor`).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import fields
from pathlib import Path

import pytest

from desktop import cli, config, policy_registry
from desktop.policy_registry import POLICIES
from sync.errors import ConfigError

ISSUE_PROPERTIES = {
    "TENANTID": "tenant", "CLIENTID": "client_id", "AUTHORITYURL": "authority_url", "GRAPHURL": "graph_url",
    "EWSURL": "ews_url", "CAFILE": "ca_file", "PROXY": "proxy",
    "PROXYPACURL": "proxy_pac_url",  # issue 12: proxy auto-configuration by policy
    "BACKUPSMTPHOST": "backup_smtp_host", "BACKUPSMTPPORT": "backup_smtp_port",
    "BACKUPSMTPSECURITY": "backup_smtp_security", "BACKUPSENDER": "backup_sender", "CACHEDAYS": "cache_days",
    "CACHEMAXMB": "cache_max_mb", "FAILOVERAFTER": "failover_after_seconds",
    "RECOVERAFTER": "recover_after_seconds", "REFERENCEURL": "reference_url", "FORCEMODE": "force_mode",
    "ALLOWDEVICECODE": "allow_device_code",  # issue 12: device code sign-in can be turned off
}


def test_table_covers_every_issue_property_once() -> None:
    """Tried: the table against the issues' public properties (issue 12 added CAFILE, PROXY and
    ALLOWDEVICECODE) and the Config dataclass."""
    assert {p.prop: p.field for p in POLICIES} == ISSUE_PROPERTIES
    assert len({p.name.lower() for p in POLICIES}) == len(POLICIES)
    config_fields = {f.name for f in fields(config.Config)}
    for p in POLICIES:
        assert p.field in config_fields
        default = config.Config.__dataclass_fields__[p.field].default
        if p.kind == "dword":
            low, high = config.LIMITS[p.field]
            assert isinstance(default, int | float) and low <= default <= high
        elif p.kind == "enum":
            assert p.field in config.CHOICES
        else:
            assert isinstance(default, str)
        assert p.explain and p.title


def test_merge_lets_hklm_win_and_ignores_empty_and_unknown_values() -> None:
    """Tried: both hives set, names in other case, empty strings, unknown value names."""
    hklm = {"TenantId": "contoso.com", "cachedays": 14, "EwsUrl": "  ", "Stray": "x"}
    hkcu = {"TENANTID": "fabrikam.com", "CacheMaxMB": 512, "ForceMode": "continuity", "BackupSender": ""}
    assert policy_registry.merge(hklm, hkcu) == {
        "tenant": "contoso.com", "cache_days": 14, "cache_max_mb": 512, "force_mode": "continuity",
    }
    assert policy_registry.merge({}, {}) == {}


def test_registry_reader_refuses_to_run_off_windows() -> None:
    """Tried: calling the winreg reader on Linux: a clear OSError, not an ImportError."""
    with pytest.raises(OSError, match="Windows only"):
        policy_registry.read()


def test_where_names_the_registry_value() -> None:
    """Tried: the location shown in error messages for a registry policy value."""
    assert policy_registry.where("cache_days") == r"policy HKLM\SOFTWARE\Policies\Lifeboat\CacheDays"


def test_policy_file_beats_user_file_and_shows_its_source(tmp_path: Path) -> None:
    """Tried: the same keys in the user TOML and the policy TOML; policy wins, provenance says so."""
    user = tmp_path / "config.toml"
    user.write_text(
        '[account]\ntenant = "user-tenant"\nusername = "ann@contoso.com"\n[sync]\ncache_days = 7\n'
    )
    policy = tmp_path / "policy.toml"
    policy.write_text('[account]\ntenant = "contoso.com"\n[failover]\nforce_mode = "continuity"\n')
    cfg = config.load(user, policy)
    eff = cfg.effective()
    assert eff["tenant"] == {"value": "contoso.com", "source": "policy"}
    assert eff["force_mode"] == {"value": "continuity", "source": "policy"}
    assert eff["cache_days"] == {"value": 7, "source": "user"}
    assert eff["username"] == {"value": "ann@contoso.com", "source": "user"}
    assert eff["graph_url"]["source"] == "default"


def test_bad_policy_file_value_names_the_file(tmp_path: Path) -> None:
    """Tried: a policy TOML with a non-number and a value outside the allowed choices."""
    policy = tmp_path / "policy.toml"
    policy.write_text('[sync]\ncache_days = "lots"\n')
    with pytest.raises(ConfigError, match=r"policy\.toml: cache_days = 'lots' is not valid: it must be a"
                                          " whole number from 1 to 3650"):
        config.load(tmp_path / "none.toml", policy)
    policy.write_text('[failover]\nforce_mode = "panic"\n')
    with pytest.raises(ConfigError, match="force_mode = 'panic' is not valid: it must be one of auto, "
                                          "continuity, normal"):
        config.load(tmp_path / "none.toml", policy)


def test_registry_values_coerce_like_the_policy_file() -> None:
    """Tried: what winreg hands back (DWORD ints, REG_SZ strings) through config's coercion."""
    hklm = {"FailoverAfterSeconds": 90, "BackupSmtpPort": 2525, "ForceMode": "normal"}
    raw = policy_registry.merge(hklm, {})
    coerced = {k: config._coerce(k, v, policy_registry.where(k)) for k, v in raw.items()}
    assert coerced == {"failover_after_seconds": 90.0, "backup_smtp_port": 2525, "force_mode": "normal"}
    message = r"Lifeboat\\BackupSmtpSecurity: backup_smtp_security = 'ssl' is not valid: it must be one of"
    with pytest.raises(ConfigError, match=message):
        config._coerce("backup_smtp_security", "ssl", policy_registry.where("backup_smtp_security"))


# ---- machine policy cannot be switched off, and says truthfully where a setting came from (the real CLI)


@pytest.fixture
def cli_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data folder and key for `desktop.cli.main`; the machine policy file at tmp/machine.toml (the fixed
    place, moved in this process only: the environment cannot move it)."""
    monkeypatch.setenv("LIFEBOAT_DB_KEY", secrets.token_hex(32))
    monkeypatch.setenv("LIFEBOAT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LIFEBOAT_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.delenv("LIFEBOAT_POLICY", raising=False)
    monkeypatch.setattr(config, "MACHINE_POLICY", tmp_path / "machine.toml", raising=False)
    user = '[account]\nusername = "ann@contoso.example"\n[sync]\ncache_days = 7\n'
    (tmp_path / "config.toml").write_text(user)
    return tmp_path / "home"


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def test_lifeboat_policy_cannot_switch_the_machine_policy_off(
        cli_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Tried: LIFEBOAT_POLICY=/nonexistent (and =an empty file) with a machine policy in place: `lifeboat
    doctor --json` still shows every machine setting, as policy, and `failover auto` is still refused."""
    (tmp_path / "machine.toml").write_text('[sync]\ncache_days = 14\n[failover]\nforce_mode = "continuity"\n')
    (tmp_path / "empty.toml").write_text("")
    for extra in ("/nonexistent/policy.toml", str(tmp_path / "empty.toml")):
        monkeypatch.setenv("LIFEBOAT_POLICY", extra)
        code, out, _ = _cli(capsys, "doctor", "--json")
        settings = json.loads(out)["settings"]
        assert settings["cache_days"] == {"value": 14, "source": "policy"}
        assert settings["force_mode"] == {"value": "continuity", "source": "policy"}
        code, _, err = _cli(capsys, "failover", "auto")
        assert code == 1 and "your organisation" in err


def test_an_extra_policy_file_adds_but_never_overrides(
        cli_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Tried: an extra policy file (LIFEBOAT_POLICY) that sets what the machine policy sets (cache_days) and
    something it leaves unset (reference_url): the machine value stays; the new one is added, shown as
    extra-policy; both beat the user's file."""
    (tmp_path / "machine.toml").write_text("[sync]\ncache_days = 14\n")
    (tmp_path / "extra.toml").write_text('[sync]\ncache_days = 99\n[failover]\nreference_url = "https://i.example/"\n')
    monkeypatch.setenv("LIFEBOAT_POLICY", str(tmp_path / "extra.toml"))
    settings = json.loads(_cli(capsys, "doctor", "--json")[1])["settings"]
    assert settings["cache_days"] == {"value": 14, "source": "policy"}
    assert settings["reference_url"] == {"value": "https://i.example/", "source": "extra-policy"}
    assert settings["username"]["source"] == "user"


def test_force_mode_outside_machine_policy_is_never_reported_as_the_organisations(
        cli_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Tried: force_mode = "continuity" in the user's own config.toml, then in an extra policy file the user
    can point LIFEBOAT_POLICY at: refused, naming the file (today it is applied and reported as "forced by
    your organisation"). The user's own choice (`failover on`) is reported as theirs; the machine
    policy's as the organisation's."""
    user = tmp_path / "config.toml"
    user.write_text(user.read_text() + '[failover]\nforce_mode = "continuity"\n')
    code, _, err = _cli(capsys, "failover", "off")
    assert code == 1 and f"{user}: force_mode can only be set by your organisation's machine policy" in err
    user.write_text('[account]\nusername = "ann@contoso.example"\n')
    (tmp_path / "extra.toml").write_text('[failover]\nforce_mode = "continuity"\n')
    monkeypatch.setenv("LIFEBOAT_POLICY", str(tmp_path / "extra.toml"))
    code, _, err = _cli(capsys, "status")
    assert code == 1 and "extra.toml (LIFEBOAT_POLICY): force_mode can only be set" in err
    monkeypatch.delenv("LIFEBOAT_POLICY")
    assert _cli(capsys, "failover", "on")[0] == 0
    mode = json.loads(_cli(capsys, "status", "--json")[1])["failover"]
    assert (mode["forced"], mode["forced_by"]) == ("continuity", "user")
    assert mode["reason"] == "continuity forced by you"
    assert _cli(capsys, "failover", "auto")[0] == 0
    (tmp_path / "machine.toml").write_text('[failover]\nforce_mode = "continuity"\n')
    assert _cli(capsys, "failover", "auto")[0] == 1
    mode = json.loads(_cli(capsys, "status", "--json")[1])["failover"]
    assert (mode["forced"], mode["forced_by"]) == ("continuity", "admin")


class _FakeWinreg:
    """A stand-in for the winreg module (nothing real can run here): hive -> key path -> values."""

    HKEY_LOCAL_MACHINE, HKEY_CURRENT_USER, KEY_READ, KEY_WOW64_64KEY = 1, 2, 0x20019, 0x100

    def __init__(self, tree: dict[int, dict[str, dict[str, object]]]) -> None:
        self.tree = tree

    class _Key:
        def __init__(self, values: dict[str, object]) -> None:
            self.values = list(values.items())

        def __enter__(self) -> _FakeWinreg._Key:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

    def OpenKey(self, hive: int, path: str, _reserved: int, access: int) -> _Key:
        assert access & self.KEY_WOW64_64KEY, "a 32-bit view would miss the MSI's 64-bit values"
        if path not in self.tree.get(hive, {}):
            raise FileNotFoundError(path)
        return self._Key(self.tree[hive][path])

    def EnumValue(self, key: _Key, i: int) -> tuple[str, object, int]:
        if i >= len(key.values):
            raise OSError("no more data")
        name, value = key.values[i]
        return name, value, 1


def test_msi_values_come_from_the_product_key_below_group_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tried: values the MSI wrote under HKLM\\SOFTWARE\\Lifeboat\\Install (REG_SZ, a number among
    them) and Group Policy values for some of the same settings in HKLM and HKCU: Group Policy wins,
    the MSI's fill the rest, and an error names the key a value really came from."""
    import sys

    fake = _FakeWinreg({
        1: {policy_registry.INSTALL_KEY: {"TenantId": "msi.example", "CacheDays": "21",
                                          "ClientId": "msi-client", "BackupSmtpHost": "relay.msi.example",
                                          "StartAtLogin": "1"},
            policy_registry.KEY: {"TenantId": "gpo.example"}},
        2: {policy_registry.KEY: {"ClientId": "user-gpo-client"}},
    })
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setitem(sys.modules, "winreg", fake)
    monkeypatch.setattr(policy_registry, "_ORIGIN", {})  # read() records origins: none leak out
    assert policy_registry.read() == {"tenant": "gpo.example", "client_id": "user-gpo-client",
                                      "cache_days": "21", "backup_smtp_host": "relay.msi.example"}
    msi_value = r"installed setting HKLM\SOFTWARE\Lifeboat\Install\CacheDays"
    assert policy_registry.where("cache_days") == msi_value
    assert policy_registry.where("tenant") == r"policy HKLM\SOFTWARE\Policies\Lifeboat\TenantId"
    assert config._coerce("cache_days", "21", policy_registry.where("cache_days")) == 21
    fake.tree[1][policy_registry.INSTALL_KEY]["CacheDays"] = "lots"
    raw = policy_registry.read()
    with pytest.raises(ConfigError, match=r"Lifeboat\\Install\\CacheDays: cache_days = 'lots'"):
        config._coerce("cache_days", raw["cache_days"], policy_registry.where("cache_days"))
    assert policy_registry.INSTALL_KEY.lower().startswith("software\\lifeboat")  # never under Policies
