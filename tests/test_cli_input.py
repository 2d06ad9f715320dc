"""Bad input to the real CLI (`desktop.cli.main`, the console script's entry point): settings of the wrong
type or out of range in config.toml or the machine policy file, a config file that is not UTF-8, and
arguments that are not text or out of range. Each gets one clear line naming the file and key (exit 1, a
ConfigError with its fix) or the argument (exit 2, a usage error): never a traceback, never "unexpected
error", never a silent empty answer. And the address the README promises: a quoted name with a comma."""

from __future__ import annotations

import email
import email.policy
import json
import os
from pathlib import Path

import pytest

from desktop import config as config_mod
from sync.store import Store, cache_path
from tests.cli_kit import make_home, run

USER = "ann@contoso.example"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return make_home(tmp_path, monkeypatch, USER)


BAD_SETTINGS = [
    (b'[sync]\ncache_days = "\xff\xfe"\n', "line 2 is not UTF-8 text (byte 0xff)"),
    (b"[sync]\ncache_days = -5\n", "cache_days = -5 is not valid: it must be a whole number from 1 to 3650"),
    (b"[sync]\ncache_days = true\n", "cache_days = true is not valid"),
    (b"[sync]\ncache_days = 3.9\n", "cache_days = 3.9 is not valid"),
    (b'[sync]\ncache_days = "lots"\n', "cache_days = 'lots' is not valid"),
    (b"[sync]\nsync_interval_seconds = nan\n", "sync_interval_seconds = nan is not valid: it must be a"),
    (b"[sync]\nsync_interval_seconds = inf\n", "sync_interval_seconds = inf is not valid"),
    (b"[sync]\nsync_interval_seconds = 0\n", "sync_interval_seconds = 0 is not valid"),
    (b"[backup]\nbackup_smtp_port = 70000\n",
     "backup_smtp_port = 70000 is not valid: it must be a whole number from 1 to 65535"),
    (b"[sync]\nfolders = [1]\n", "folders = [1] is not valid: it must be a list of folder names"),
    (b"[sync]\nfolders = []\n", "folders = [] is not valid"),
    (b"[account]\ntenant = 5\n", "tenant = 5 is not valid: it must be a string"),
    (b'[backup]\nbackup_smtp_host = "relay.example\\nBcc: x"\n',
     "backup_smtp_host = 'relay.example\\nBcc: x'"),
    (b"[failover]\nfailures_to_enter = 1\n", "failures_to_enter = 1 is not valid"),
    (b'[backup]\nbackup_smtp_security = "ssl"\n', "it must be one of starttls, tls, none"),
    (b"[sync]\ncache_days = 30\ncache_days = 31\n", "not valid TOML"),
]


@pytest.mark.parametrize(("content", "problem"), BAD_SETTINGS, ids=[p for _, p in BAD_SETTINGS])
def test_bad_setting_in_the_user_config_names_the_file_and_key(
        home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, problem: str) -> None:
    """Tried: each bad value above in config.toml, through `lifeboat status`: one line, exit 1, the file,
    the key and what it must be; the file is left as it was."""
    path = tmp_path / "config.toml"
    path.write_bytes(content)
    code, out, err = run(capsys, "status")
    assert code == 1 and out == ""
    assert err.startswith(f"lifeboat: {path}: ") and problem in err and err.count("\n") == 1, err
    assert "(" in err and err.rstrip().endswith(")")  # the fix
    assert path.read_bytes() == content


@pytest.mark.parametrize(("content", "problem"), BAD_SETTINGS[:6], ids=[p for _, p in BAD_SETTINGS[:6]])
def test_bad_setting_in_the_machine_policy_names_the_policy_file(
        home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        content: bytes, problem: str) -> None:
    """Tried: the same bad values in the machine policy file: the message names the policy file."""
    policy = tmp_path / "machine-policy.toml"
    policy.write_bytes(content)
    monkeypatch.setattr(config_mod, "MACHINE_POLICY", policy)
    code, _, err = run(capsys, "doctor", "--json")
    assert code == 1 and err.startswith(f"lifeboat: {policy}: ") and problem in err, err


def test_a_config_path_that_is_a_folder_is_a_config_error(home: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Tried: LIFEBOAT_CONFIG naming a folder: a ConfigError naming it, not an OSError's errno line."""
    monkeypatch.setenv("LIFEBOAT_CONFIG", str(tmp_path))
    code, _, err = run(capsys, "status")
    assert code == 1 and err.startswith(f"lifeboat: {tmp_path}: cannot be read"), err


NOT_UTF8 = os.fsdecode(b"caf\xe9 r\xe9union")  # what Python makes of such bytes in argv (surrogateescape)


@pytest.mark.parametrize(("argv", "problem"), [
    (["search", NOT_UTF8], "argument query: is not valid text in this terminal's encoding"),
    (["search", "x", "--limit", "99999999999999999999"], "argument --limit: the number of results must be "
                                                          "from 1 to 10000, not 99999999999999999999"),
    (["search", "x", "--limit", "-1"], "argument --limit: the number of results must be from 1 to 10000"),
    (["search", "x", "--limit", "0"], "argument --limit: the number of results must be from 1 to 10000"),
    (["search", "x", "--limit", "ten"], "argument --limit: 'ten' is not a whole number"),
    (["show", "99999999999999999999"], "argument id: an id must be from 1 to 9223372036854775807"),
    (["show", "-4"], "argument id: an id must be from 1"),
    (["outbox", "--resend", "-3"], "argument --resend: an id must be from 1"),
    (["send", "--to", NOT_UTF8 + "@x.example", "--body", "b"], "argument --to: is not valid text"),
    (["send", "--to", "bob@x.example", "--subject", NOT_UTF8], "argument --subject: is not valid text"),
    (["send", "--reply", "99999999999999999999"], "argument --reply: an id must be from 1"),
], ids=lambda v: v if isinstance(v, str) else " ".join(v)[:40].encode("utf-8", "replace").decode())
def test_bad_argument_is_a_usage_error(home: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                                       problem: str) -> None:
    """Tried: a search query that is not UTF-8, --limit huge, negative, zero or a word, ids beyond SQLite's
    integers or below 1, addresses and subjects that are not text: exit 2 and the argument named."""
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == "" and problem in err, err


def test_limit_bounds_still_work(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Tried: --limit 1 and --limit 10000 (the bounds): accepted, an empty cache answers 0 results."""
    for limit in ("1", "10000"):
        code, out, err = run(capsys, "search", "capybara", "--limit", limit, "--json")
        assert code == 0 and json.loads(out)["count"] == 0, err


def test_bad_log_level_is_a_config_error(home: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Tried: LIFEBOAT_LOG_LEVEL=loud: one line naming the variable and the levels it takes."""
    monkeypatch.setenv("LIFEBOAT_LOG_LEVEL", "loud")
    code, _, err = run(capsys, "status")
    assert code == 1 and "LIFEBOAT_LOG_LEVEL = 'LOUD' is not a log level" in err and "DEBUG, INFO" in err


def test_quoted_display_name_with_a_comma_is_one_recipient(home: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Tried: `send --to '"Doe, John" <john@corp.example>'` (the README: quoted commas are kept): queued
    with one recipient, and the sent To header shows the name "Doe, John" for that address. Unquoted, the
    comma splits it and "Doe" is refused as not an address (exit 1), nothing queued."""
    code, _, err = run(capsys, "send", "--to", '"Doe, John" <john@corp.example>', "--subject", "Plan",
                         "--body", "Hello", "--json")
    assert code == 0, err
    with Store.open(cache_path(home, USER), bytes.fromhex(os.environ["LIFEBOAT_DB_KEY"])) as store:
        [item] = store.outbox_list()
    assert item.recipients == ("john@corp.example",) or list(item.recipients) == ["john@corp.example"]
    msg = email.message_from_bytes(item.raw, policy=email.policy.default)
    [to] = msg["To"].addresses
    assert (to.display_name, to.addr_spec) == ("Doe, John", "john@corp.example")
    code, _, err = run(capsys, "send", "--to", "Doe, John <john@corp.example>", "--body", "Hello")
    assert code == 1 and "'Doe' is not an e-mail address" in err
    with Store.open(cache_path(home, USER), bytes.fromhex(os.environ["LIFEBOAT_DB_KEY"])) as store:
        assert len(store.outbox_list()) == 1
