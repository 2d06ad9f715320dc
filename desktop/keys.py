"""Secrets in the OS keystore (through `keyring`): the cache keys and other small secrets.

`db_key(account)` returns the random 32-byte raw key of one account's cache, creating and storing
it on first use. `LIFEBOAT_DB_KEY` (64 hex characters) overrides the keystore for headless runs and
tests, with a warning in the log. Keys and secrets are never logged and never written to files.
"""

from __future__ import annotations

import logging
import os
import secrets
from typing import Any

import keyring
import keyring.errors

from sync.errors import KeyMissing

SERVICE = "Lifeboat"
ENV = "LIFEBOAT_DB_KEY"
# Backends that would not protect a secret (or cannot hold one at all).
_REFUSED = ("keyring.backends.fail", "keyring.backends.null", "keyrings.alt.file")

log = logging.getLogger(__name__)


def _parse_hex(value: str, where: str) -> bytes:
    text = value.strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise KeyMissing(
            f"{where} must be 64 hex characters (a 32-byte key), got {len(text)} characters",
            fix=f"fix {where}; make a key with `python -c 'import secrets; print(secrets.token_hex(32))'`"
            if where == ENV
            else "remove that keystore entry: Lifeboat then makes a new key and rebuilds the cache",
        )
    return key


def backend_name() -> str:
    kr = keyring.get_keyring()
    return f"{type(kr).__module__}.{type(kr).__name__}"


def _backend() -> Any:
    kr = keyring.get_keyring()
    module = type(kr).__module__
    if any(module.startswith(bad) for bad in _REFUSED):
        raise KeyMissing(f"no usable OS keystore was found (keyring backend: {backend_name()})")
    return kr


def _call(action: str, fn: Any, *args: str) -> Any:
    kr = _backend()
    try:
        return getattr(kr, fn)(*args)
    except keyring.errors.PasswordDeleteError:
        return None
    except Exception as exc:  # keyring and D-Bus raise many types; none may leak a secret in its text
        raise KeyMissing(
            f"the OS keystore ({backend_name()}) failed to {action}: {type(exc).__name__}: {exc}"
        ) from exc


def secret(name: str) -> str | None:
    """A secret from the keystore (None when absent)."""
    value = _call(f"read {name!r}", "get_password", SERVICE, name)
    return None if value is None else str(value)


def set_secret(name: str, value: str) -> None:
    _call(f"store {name!r}", "set_password", SERVICE, name, value)


def delete_secret(name: str) -> None:
    _call(f"delete {name!r}", "delete_password", SERVICE, name)


def db_key(account: str) -> bytes:
    """The raw 32-byte key of `account`'s cache: LIFEBOAT_DB_KEY, else the keystore (created once).

    Raises KeyMissing, saying what to do, when there is neither a usable keystore nor the variable.
    """
    env = os.environ.get(ENV, "")
    if env.strip():
        key = _parse_hex(env, ENV)
        log.warning(
            "the cache key comes from %s, not from the OS keystore: use this only headless or in tests", ENV
        )
        return key
    name = f"db-key:{account or 'default'}"
    stored = secret(name)
    if stored:
        return _parse_hex(stored, f"the keystore entry {SERVICE}/{name}")
    key = secrets.token_bytes(32)
    set_secret(name, key.hex())
    if secret(name) != key.hex():
        raise KeyMissing(f"the OS keystore ({backend_name()}) did not keep the new cache key")
    log.info("created a new cache key in the OS keystore (%s)", backend_name())
    return key


def keystore_status() -> dict[str, Any]:
    """For `lifeboat doctor`: which backend, and whether a test secret round-trips through it."""
    out: dict[str, Any] = {
        "backend": backend_name(),
        "ok": False,
        "env_key": bool(os.environ.get(ENV, "").strip()),
    }
    probe = "doctor-probe"
    try:
        value = secrets.token_hex(8)
        set_secret(probe, value)
        out["ok"] = secret(probe) == value
        delete_secret(probe)
        if not out["ok"]:
            out["problem"] = "a test secret did not round-trip"
    except KeyMissing as exc:
        out["problem"] = str(exc)
    return out
