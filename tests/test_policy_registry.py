"""Machine policy: the one policy table, the registry merge (HKLM over HKCU) and the TOML policy file.

The winreg reader itself runs under wine in tests/test_msi.py (the installed `lifeboat doctor`).
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from desktop import config, policy_registry
from desktop.policy_registry import POLICIES
from sync.errors import ConfigError

ISSUE_PROPERTIES = {
    "TENANTID": "tenant", "CLIENTID": "client_id", "AUTHORITYURL": "authority_url", "GRAPHURL": "graph_url",
    "EWSURL": "ews_url", "BACKUPSMTPHOST": "backup_smtp_host", "BACKUPSMTPPORT": "backup_smtp_port",
    "BACKUPSMTPSECURITY": "backup_smtp_security", "BACKUPSENDER": "backup_sender", "CACHEDAYS": "cache_days",
    "CACHEMAXMB": "cache_max_mb", "FAILOVERAFTER": "failover_after_seconds",
    "RECOVERAFTER": "recover_after_seconds", "REFERENCEURL": "reference_url", "FORCEMODE": "force_mode",
}


def test_table_covers_every_issue_property_once() -> None:
    """Tried: the table against the issue's 15 public properties and the Config dataclass."""
    assert {p.prop: p.field for p in POLICIES} == ISSUE_PROPERTIES
    assert len({p.name.lower() for p in POLICIES}) == len(POLICIES)
    config_fields = {f.name for f in fields(config.Config)}
    for p in POLICIES:
        assert p.field in config_fields
        default = config.Config.__dataclass_fields__[p.field].default
        if p.kind == "dword":
            assert isinstance(default, int | float) and p.minimum <= default <= p.maximum
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
    with pytest.raises(ConfigError, match=r"policy\.toml: cache_days = 'lots' is not valid: it must be a whole"):
        config.load(tmp_path / "none.toml", policy)
    policy.write_text('[failover]\nforce_mode = "panic"\n')
    with pytest.raises(ConfigError, match="force_mode = 'panic' is not valid: it must be one of auto, continuity, "
                                          "normal"):
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
