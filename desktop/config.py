"""Configuration: defaults, then the user's TOML file, then machine policy (which always wins).

`load()` returns a frozen `Config` and remembers where each value came from ("default", "user",
"policy", "env"), so `lifeboat doctor --json` can show it. Policy comes from the registry on
Windows (HKLM, then HKCU, under SOFTWARE\\Policies\\Lifeboat) and from a policy TOML file elsewhere.
Secrets never live here: they are in the OS keystore (desktop/keys.py).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import platformdirs

from sync.errors import ConfigError

APP = "Lifeboat"


@dataclass(frozen=True)
class Config:
    # [account]
    tenant: str = "common"
    client_id: str = ""
    username: str = ""  # the mailbox address (also the default backup sender)
    authority_url: str = "https://login.microsoftonline.com/{tenant}"
    graph_url: str = "https://graph.microsoft.com/v1.0"
    ews_url: str = ""
    ca_file: str = ""  # an extra CA bundle to trust for the provider (the simulator's ca.pem)
    # [sync]
    # "*": Inbox, Sent Items, Drafts, Archive and the user's folders (not Deleted Items, Junk, Outbox)
    folders: tuple[str, ...] = ("*",)
    cache_days: int = 30
    cache_max_mb: int = 2048
    sync_interval_seconds: float = 60.0
    # [backup]
    backup_smtp_host: str = ""
    backup_smtp_port: int = 587
    backup_smtp_security: str = "starttls"  # "starttls" | "tls" | "none"
    backup_smtp_username: str = ""
    backup_sender: str = ""  # envelope sender on the backup route; empty: the username
    backup_ca_file: str = ""
    # [failover]
    probe_interval_seconds: float = 15.0
    suspect_probe_interval_seconds: float = 5.0
    failures_to_enter: int = 3
    failover_after_seconds: float = 30.0
    successes_to_leave: int = 3
    recover_after_seconds: float = 30.0
    reference_url: str = ""
    reference_dns_name: str = ""  # a name whose DNS lookup is a reference probe ("" = none)
    force_mode: str = "auto"  # "auto" | "continuity" | "normal"
    # [paths]
    data_dir: str = ""  # empty: platformdirs' user data dir, or LIFEBOAT_HOME
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def effective(self) -> dict[str, dict[str, Any]]:
        """Every setting with its value and where it came from."""
        out: dict[str, dict[str, Any]] = {}
        for f in fields(self):
            if f.name == "sources":
                continue
            value = getattr(self, f.name)
            out[f.name] = {
                "value": list(value) if isinstance(value, tuple) else value,
                "source": self.sources.get(f.name, "default"),
            }
        return out

    @property
    def authority(self) -> str:
        return self.authority_url.replace("{tenant}", self.tenant)

    @property
    def home(self) -> Path:
        return Path(self.data_dir) if self.data_dir else default_home()


SECTIONS = {
    "account": ("tenant", "client_id", "username", "authority_url", "graph_url", "ews_url", "ca_file"),
    "sync": ("folders", "cache_days", "cache_max_mb", "sync_interval_seconds"),
    "backup": (
        "backup_smtp_host", "backup_smtp_port", "backup_smtp_security", "backup_smtp_username",
        "backup_sender", "backup_ca_file",
    ),
    "failover": (
        "probe_interval_seconds", "suspect_probe_interval_seconds", "failures_to_enter",
        "failover_after_seconds", "successes_to_leave", "recover_after_seconds", "reference_url",
        "reference_dns_name",
        "force_mode",
    ),
    "paths": ("data_dir",),
}
CHOICES = {
    "backup_smtp_security": ("starttls", "tls", "none"),
    "force_mode": ("auto", "continuity", "normal"),
}


def default_home() -> Path:
    env = os.environ.get("LIFEBOAT_HOME")
    return Path(env) if env else Path(platformdirs.user_data_dir(APP, appauthor=False))


def default_config_path() -> Path:
    env = os.environ.get("LIFEBOAT_CONFIG")
    if env:
        return Path(env)
    if os.environ.get("LIFEBOAT_HOME"):
        return Path(os.environ["LIFEBOAT_HOME"]) / "config.toml"
    return Path(platformdirs.user_config_dir(APP, appauthor=False)) / "config.toml"


def default_policy_path() -> Path:
    env = os.environ.get("LIFEBOAT_POLICY")
    if env:
        return Path(env)
    if sys.platform == "darwin":
        return Path("/Library/Application Support/Lifeboat/policy.toml")
    return Path("/etc/lifeboat/policy.toml")


def _coerce(name: str, value: Any, where: str) -> Any:
    default = Config.__dataclass_fields__[name].default
    try:
        if isinstance(default, bool):
            out: Any = bool(value)
        elif isinstance(default, int):
            out = int(value)
        elif isinstance(default, float):
            out = float(value)
        elif isinstance(default, tuple):
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            out = tuple(str(v) for v in value)
        else:
            out = str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {name} = {value!r} is not a valid {type(default).__name__}") from exc
    if name in CHOICES and out not in CHOICES[name]:
        raise ConfigError(f"{where}: {name} must be one of {', '.join(CHOICES[name])}, not {out!r}")
    return out


def _flatten(doc: Mapping[str, Any], where: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for section, table in doc.items():
        if section not in SECTIONS or not isinstance(table, Mapping):
            raise ConfigError(f"{where}: unknown section [{section}] (known: {', '.join(SECTIONS)})")
        for key, value in table.items():
            if key not in SECTIONS[section]:
                raise ConfigError(f"{where}: unknown key {key!r} in [{section}]")
            flat[key] = _coerce(key, value, where)
    return flat


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return _flatten(tomllib.load(fh), str(path))
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc


def read_policy(policy_path: Path | None = None) -> dict[str, Any]:
    """Machine policy: the registry on Windows, a TOML file elsewhere (same keys as the user file)."""
    if sys.platform == "win32":
        from desktop import policy_registry

        return {k: _coerce(k, v, policy_registry.where(k)) for k, v in policy_registry.read().items()}
    return read_toml(policy_path or default_policy_path())


def load(
    config_path: Path | None = None,
    policy_path: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Defaults < user file < overrides (from the command line or the demo) < machine policy."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    layers = [
        ("user", read_toml(config_path or default_config_path())),
        ("env", {k: _coerce(k, v, "override") for k, v in (overrides or {}).items()}),
        ("policy", read_policy(policy_path)),
    ]
    for source, layer in layers:
        for key, value in layer.items():
            values[key] = value
            sources[key] = source
    if not values.get("data_dir") and os.environ.get("LIFEBOAT_HOME"):
        values["data_dir"] = os.environ["LIFEBOAT_HOME"]
        sources["data_dir"] = "env"
    return dataclasses.replace(Config(), **values, sources=sources)
