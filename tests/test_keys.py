"""Cache keys: LIFEBOAT_DB_KEY for headless runs, the OS keystore otherwise (a real Secret Service
under dbus-run-session + gnome-keyring-daemon), and a clear KeyMissing when neither works."""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import keyring
import keyring.backends.fail
import pytest

from desktop import keys
from sync.errors import KeyMissing

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_keystore(monkeypatch: pytest.MonkeyPatch):
    """This process sees keyring's 'fail' backend: what a headless machine without a keystore has."""
    previous = keyring.get_keyring()
    keyring.set_keyring(keyring.backends.fail.Keyring())
    monkeypatch.delenv(keys.ENV, raising=False)
    yield
    keyring.set_keyring(previous)


def test_env_key_is_used_with_a_warning(no_keystore, monkeypatch: pytest.MonkeyPatch, caplog):
    """LIFEBOAT_DB_KEY (64 hex) is the key, even without any keystore, and the log warns about it
    without printing the key."""
    value = secrets.token_hex(32)
    monkeypatch.setenv(keys.ENV, value.upper())
    with caplog.at_level(logging.WARNING, logger="desktop.keys"):
        assert keys.db_key("ann@example.org") == bytes.fromhex(value)
    assert "LIFEBOAT_DB_KEY" in caplog.text and value not in caplog.text.lower()


@pytest.mark.parametrize("value", ["abc", "zz" * 32, "00" * 31, "00" * 33])
def test_bad_env_key_is_refused(no_keystore, monkeypatch: pytest.MonkeyPatch, value: str):
    """A LIFEBOAT_DB_KEY that is not 64 hex characters is refused with a message saying how to make one."""
    monkeypatch.setenv(keys.ENV, value)
    with pytest.raises(KeyMissing) as info:
        keys.db_key("ann@example.org")
    assert "64 hex characters" in str(info.value) and "token_hex(32)" in str(info.value)


def test_no_keystore_and_no_variable_says_what_to_do(no_keystore):
    """Without a keystore and without LIFEBOAT_DB_KEY: KeyMissing naming both ways out."""
    with pytest.raises(KeyMissing) as info:
        keys.db_key("ann@example.org")
    text = str(info.value)
    assert "no usable OS keystore" in text and "LIFEBOAT_DB_KEY" in text and "Secret Service" in text
    with pytest.raises(KeyMissing):
        keys.set_secret("backup-smtp-password", "x")
    status = keys.keystore_status()
    assert status["ok"] is False and "no usable OS keystore" in status["problem"]


SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    import keyring
    from desktop import keys
    from sync.store import Store, cache_path
    out = {"backend": keys.backend_name()}
    a1 = keys.db_key("ann@example.org")
    out["stable"] = keys.db_key("ann@example.org") == a1
    out["length"] = len(a1)
    out["distinct"] = keys.db_key("bob@example.org") != a1
    out["in_keystore"] = keyring.get_password("Lifeboat", "db-key:ann@example.org") == a1.hex()
    keys.set_secret("backup-smtp-password", "s3cret pass")
    out["secret"] = keys.secret("backup-smtp-password")
    keys.delete_secret("backup-smtp-password")
    out["deleted"] = keys.secret("backup-smtp-password") is None
    out["status"] = keys.keystore_status()
    home = Path(sys.argv[1])
    with Store.open(cache_path(home, "ann@example.org"), a1) as s:
        s.set_setting("hello", "world")
    print(json.dumps(out))
    """
)


def secret_service(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run argv inside a private D-Bus session with an unlocked gnome-keyring Secret Service."""
    home = tmp_path / "user"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in (keys.ENV, "DBUS_SESSION_BUS_ADDRESS")}
    env.update(HOME=str(home), XDG_DATA_HOME=str(home / "data"), XDG_RUNTIME_DIR=str(tmp_path))
    inner = (
        'printf lifeboat-test | gnome-keyring-daemon --unlock --components=secrets >/dev/null && exec "$@"'
    )
    return subprocess.run(
        ["dbus-run-session", "--", "sh", "-c", inner, "sh", *argv],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


needs_secret_service = pytest.mark.skipif(
    not (shutil.which("gnome-keyring-daemon") and shutil.which("dbus-run-session")),
    reason="needs Debian gnome-keyring and dbus (see debian-packages.txt)",
)


@needs_secret_service
def test_real_secret_service_keeps_the_key(tmp_path: Path):
    """Against a real Secret Service: the first call creates a 32-byte key and stores it, later calls
    return the same key, accounts get different keys, other secrets round-trip and delete, and the
    key opens a real cache."""
    script = tmp_path / "probe.py"
    script.write_text(SCRIPT)
    done = secret_service(tmp_path, sys.executable, str(script), str(tmp_path / "home"))
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert "SecretService" in out["backend"] or "chainer" in out["backend"]
    assert out["stable"] and out["length"] == 32 and out["distinct"] and out["in_keystore"]
    assert out["secret"] == "s3cret pass" and out["deleted"]
    assert out["status"]["ok"] is True


@needs_secret_service
def test_cli_uses_the_keystore_across_processes(tmp_path: Path):
    """Two `lifeboat` processes in one desktop session: the import creates the key in the keystore,
    the search reads the same key back (no LIFEBOAT_DB_KEY anywhere) and finds the message."""
    mail = tmp_path / "m.eml"
    mail.write_bytes(b"From: a@x.org\r\nTo: b@x.org\r\nSubject: keystore kiwi\r\n\r\nbody\r\n")
    home = tmp_path / "home"
    lifeboat = [sys.executable, "-m", "desktop.cli", "--home", str(home)]
    script = tmp_path / "both.sh"
    script.write_text(
        f'"{lifeboat[0]}" -m desktop.cli --home "{home}" import-eml "{mail}" && '
        f'"{lifeboat[0]}" -m desktop.cli --home "{home}" search kiwi --json\n'
    )
    done = secret_service(tmp_path, "sh", str(script))
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout[done.stdout.index("{") :])
    assert [r["subject"] for r in found["results"]] == ["keystore kiwi"]
