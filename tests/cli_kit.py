"""The CLI in-process, as the CLI tests drive it: a fresh data folder and `lifeboat ...` through `cli.main`.

`make_home` gives a data folder, a cache key in LIFEBOAT_DB_KEY and a user config naming the account (or
none); the machine policy is already a test path (tests/conftest.py). `run` calls `cli.main` with the
arguments and returns (exit code, stdout, stderr), failing on a traceback or an "unexpected error".
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from desktop import cli
from sync.model import OutboxItem
from sync.store import Store, cache_path


def make_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, username: str | None) -> Path:
    """A fresh data folder, a key in LIFEBOAT_DB_KEY, a user config naming `username` (none for None),
    no extra policy file and Lifeboat's default log level."""
    config = tmp_path / "config.toml"
    if username is not None:
        config.write_text(f'[account]\nusername = "{username}"\n', encoding="utf-8")
    monkeypatch.setenv("LIFEBOAT_DB_KEY", secrets.token_hex(32))
    monkeypatch.setenv("LIFEBOAT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LIFEBOAT_CONFIG", str(config))
    monkeypatch.delenv("LIFEBOAT_POLICY", raising=False)
    monkeypatch.delenv("LIFEBOAT_LOG_LEVEL", raising=False)
    return tmp_path / "home"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """`lifeboat ARGV` in this process: (exit code, stdout, stderr); a usage exit (argparse) is a code."""
    try:
        code = cli.main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "unexpected error" not in err, err
    return code, out, err


def open_cache(home: Path, username: str) -> Store:
    return Store.open(cache_path(home, username), bytes.fromhex(os.environ["LIFEBOAT_DB_KEY"]))


def outbox(home: Path, username: str) -> list[OutboxItem]:
    """The account's outbox items, oldest first."""
    with open_cache(home, username) as store:
        return store.outbox_list()
