"""Configuration: defaults, then the user's TOML file, then policy (machine policy always wins).

`load()` returns a frozen `Config` and remembers where each value came from ("default", "user",
"env", "extra-policy", "policy"), so `lifeboat doctor --json` can show it. Machine policy comes from
the registry on Windows (HKLM, then HKCU, under SOFTWARE\\Policies\\Lifeboat) and from the policy
TOML file at MACHINE_POLICY elsewhere: always read, whatever the environment says. LIFEBOAT_POLICY
may name an extra policy file: it adds settings the machine policy leaves unset, never changes or
removes one it sets, and cannot set force_mode (the user controls the environment, so it is not the
organisation's word). SETTINGS is the one schema: each setting's type and range, checked for every
layer with a message naming the file and key. Secrets never live here: they are in the OS keystore
(desktop/keys.py).
"""

from __future__ import annotations

import dataclasses
import math
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
    # a CA (PEM) trusted in addition to the system's certificate store, for Graph, sign-in and the
    # reference URL (TLS inspection whose root is not in the store; the simulator's ca.pem)
    ca_file: str = ""
    # the HTTP proxy for Graph, sign-in and the reference URL (http://host:port); empty: proxy_pac_url,
    # else the PAC file of Windows' Internet Options, else the system's static proxy (HTTPS_PROXY/NO_PROXY,
    # the Windows or macOS static proxy). WPAD discovery is never done (sync/sources/network.py).
    proxy: str = ""
    # the URL of a PAC file (proxy auto-configuration) that picks the proxy per URL, when proxy is empty
    proxy_pac_url: str = ""
    allow_device_code: str = "yes"  # "no": sign-in with a code on another device is refused (policy)
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
    "account": ("tenant", "client_id", "username", "authority_url", "graph_url", "ews_url", "ca_file",
                "proxy", "proxy_pac_url", "allow_device_code"),
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
    "allow_device_code": ("yes", "no"),
}
# The range of every number setting (inclusive). The ADMX template and the registry table use them too.
LIMITS: dict[str, tuple[float, float]] = {
    "cache_days": (1, 3650),
    "cache_max_mb": (16, 1048576),
    "sync_interval_seconds": (0.1, 86400),
    "backup_smtp_port": (1, 65535),
    "probe_interval_seconds": (0.1, 86400),
    "suspect_probe_interval_seconds": (0.1, 86400),
    "failures_to_enter": (2, 1000),
    "failover_after_seconds": (1, 86400),
    "successes_to_leave": (1, 1000),
    "recover_after_seconds": (1, 86400),
}
# Settings only machine policy may set: a user's value would be reported as the organisation's.
POLICY_ONLY = ("force_mode",)
MACHINE_POLICY = (
    Path("/Library/Application Support/Lifeboat/policy.toml") if sys.platform == "darwin"
    else Path("/etc/lifeboat/policy.toml")
)  # fixed: only root can write it; tests change it in-process (monkeypatch), never the environment


@dataclass(frozen=True)
class Setting:
    """One row of the schema: a Config field, its type, and its range or choices."""

    name: str
    kind: type  # str, int, float or tuple (a list of strings)
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.kind is tuple:
            return 'a list of folder names, e.g. ["*"] or ["Inbox", "Sent Items"]'
        if self.kind is str:
            return "a string"
        noun = "a whole number" if self.kind is int else "a number"
        return f"{noun} from {_num(self.minimum)} to {_num(self.maximum)}"


def _num(value: float | None) -> str:
    return str(int(value)) if value is not None and float(value).is_integer() else str(value)


def _schema() -> dict[str, Setting]:
    out = {}
    for f in fields(Config):
        if f.name == "sources":
            continue
        default = f.default
        kind = tuple if isinstance(default, tuple) else type(default)
        low, high = LIMITS.get(f.name, (None, None))
        out[f.name] = Setting(f.name, kind, low, high, CHOICES.get(f.name, ()))
    return out


SETTINGS: dict[str, Setting] = _schema()


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


def extra_policy_path() -> Path | None:
    """LIFEBOAT_POLICY: an extra policy file under the machine policy (None when the variable is unset)."""
    env = os.environ.get("LIFEBOAT_POLICY")
    return Path(env) if env else None


def _bad(where: str, name: str, value: Any, setting: Setting) -> ConfigError:
    shown = str(value).lower() if isinstance(value, bool) else repr(value)  # as TOML writes true/false
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return ConfigError(f"{where}: {name} = {shown} is not valid: it must be {setting.describe()}",
                       fix=f"correct or remove {name} in {where}")


def _coerce(name: str, value: Any, where: str) -> Any:
    """`value` for setting `name` from `where` (a file or registry value) as its type; ConfigError
    naming both when it is of the wrong type or out of range. Registry REG_SZ numbers may be strings."""
    setting = SETTINGS[name]
    out: Any
    if setting.kind in (int, float):
        number = value
        if isinstance(value, str):
            try:
                number = int(value.strip()) if setting.kind is int else float(value.strip())
            except ValueError:
                raise _bad(where, name, value, setting) from None
        if isinstance(number, bool) or not isinstance(number, int | float) or not math.isfinite(number):
            raise _bad(where, name, value, setting)
        if setting.kind is int and not float(number).is_integer():
            raise _bad(where, name, value, setting)
        out = int(number) if setting.kind is int else float(number)
        low, high = setting.minimum, setting.maximum
        if (low is not None and out < low) or (high is not None and out > high):
            raise _bad(where, name, value, setting)
        return out
    if setting.kind is tuple:
        items = [v.strip() for v in value.split(",")] if isinstance(value, str) else value
        if (not isinstance(items, list | tuple) or not items
                or not all(isinstance(v, str) and v.strip() and _printable(v) for v in items)):
            raise _bad(where, name, value, setting)
        return tuple(v.strip() for v in items)
    if not isinstance(value, str) or not _printable(value):
        raise _bad(where, name, value, setting)
    out = value.strip()
    if setting.choices and out not in setting.choices:
        raise _bad(where, name, value, setting)
    return out


def _printable(text: str) -> bool:
    """No control characters (a line break or NUL in a host name or a path is never meant)."""
    return not any(ord(c) < 0x20 or ord(c) == 0x7F for c in text)


def _flatten(doc: Mapping[str, Any], where: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for section, table in doc.items():
        if section not in SECTIONS or not isinstance(table, Mapping):
            raise ConfigError(f"{where}: unknown section [{section}] (known: {', '.join(SECTIONS)})",
                              fix=f"remove it from {where}")
        for key, value in table.items():
            if key not in SECTIONS[section]:
                raise ConfigError(f"{where}: unknown key {key!r} in [{section}]",
                                  fix=f"known keys there: {', '.join(SECTIONS[section])}")
            flat[key] = _coerce(key, value, where)
    return flat


def read_toml(path: Path) -> dict[str, Any]:
    """The settings in a TOML file ({} when it does not exist); ConfigError naming the file otherwise."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})",
                          fix="make it a readable file, or remove it") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}: line {line} is not UTF-8 text (byte 0x{data[exc.start]:02x})",
                          fix="save the file as UTF-8") from None
    try:
        return _flatten(tomllib.loads(text), str(path))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}", fix="correct the line shown") from None


def read_policy(policy_path: Path | None = None) -> dict[str, Any]:
    """Machine policy: the registry on Windows, the TOML file at MACHINE_POLICY elsewhere (same keys as
    the user file). `policy_path` replaces MACHINE_POLICY for callers in this process only (tests)."""
    if sys.platform == "win32":
        from desktop import policy_registry

        return {k: _coerce(k, v, policy_registry.where(k)) for k, v in policy_registry.read().items()}
    return read_toml(policy_path or MACHINE_POLICY)


def _refuse_policy_only(layer: Mapping[str, Any], where: str) -> None:
    for name in POLICY_ONLY:
        if name in layer:
            raise ConfigError(
                f"{where}: {name} can only be set by your organisation's machine policy",
                fix=f"remove {name} from {where}; to choose a mode yourself, use "
                    "`lifeboat failover on|off|auto`",
            )


def load(
    config_path: Path | None = None,
    policy_path: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Defaults < user file < overrides (from the command line or the demo) < extra policy file
    (LIFEBOAT_POLICY) < machine policy. Settings in POLICY_ONLY come from machine policy alone."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    user_path = config_path or default_config_path()
    user = read_toml(user_path)
    _refuse_policy_only(user, str(user_path))
    env = {k: _coerce(k, v, "override") for k, v in (overrides or {}).items()}
    _refuse_policy_only(env, "override")
    extra_path = extra_policy_path()
    extra = read_toml(extra_path) if extra_path is not None else {}
    if extra_path is not None:
        _refuse_policy_only(extra, f"{extra_path} (LIFEBOAT_POLICY)")
    layers = [("user", user), ("env", env), ("extra-policy", extra), ("policy", read_policy(policy_path))]
    for source, layer in layers:
        for key, value in layer.items():
            values[key] = value
            sources[key] = source
    if not values.get("data_dir") and os.environ.get("LIFEBOAT_HOME"):
        values["data_dir"] = os.environ["LIFEBOAT_HOME"]
        sources["data_dir"] = "env"
    return dataclasses.replace(Config(), **values, sources=sources)
