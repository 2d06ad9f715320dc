"""The `lifeboat` command line against a real encrypted cache: import-eml, search, show, status,
doctor, the pass-through commands, and errors as one line on stderr (never a traceback)."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import types
from pathlib import Path

import keyring
import keyring.backends.fail
import pytest

from desktop import cli
from tests import corpus
from tests.cli_kit import make_home, run
from tests.samples import SAMPLES


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh data folder, a key in LIFEBOAT_DB_KEY, and no user config or policy from the machine."""
    return make_home(tmp_path, monkeypatch, None)


def write(path: Path, subject: str, body: str) -> Path:
    path.write_bytes(
        f"From: Ann <ann@example.org>\r\nTo: bob@example.org\r\nSubject: {subject}\r\n"
        f"Date: Sat, 28 Nov 2026 12:00:00 +0000\r\nMessage-ID: <{secrets.token_hex(6)}@x>\r\n"
        f"\r\n{body}\r\n".encode()
    )
    return path


def _import_twice(capsys, mail: Path) -> None:
    count = len([p for p in mail.rglob("*") if p.suffix.lower() == ".eml"])
    assert count
    code, out, _ = run(capsys, "import-eml", str(mail))
    assert code == 0 and f"{count} stored" in out and "0 failed" in out
    code, out, _ = run(capsys, "import-eml", str(mail))
    assert code == 0 and f"{count} already there" in out
    code, out, _ = run(capsys, "status", "--json")
    assert json.loads(out)["messages"] == count


@corpus.needs_corpus
def test_import_a_real_corpus_then_again(home: Path, capsys):
    """Tried: import every public sample (malformed ones included): exit 0 and a summary; a second run
    finds them all already there and stores nothing twice."""
    _import_twice(capsys, corpus.path("mime-public"))


def test_import_generated_mail_then_again(home: Path, tmp_path: Path, capsys):
    """Tried: the same over a folder (with a subfolder) of generated messages (attachments, HTML, cid
    images) and one with no headers at all: all stored, then all already there."""
    (tmp_path / "mail" / "sub").mkdir(parents=True)
    for n, (name, make) in enumerate(SAMPLES.items()):
        (tmp_path / "mail" / ("sub" if n % 2 else "") / f"{name}.eml").write_bytes(make())
    (tmp_path / "mail" / "bare.EML").write_bytes(b"just a line, no headers\r\n")
    _import_twice(capsys, tmp_path / "mail")


def test_import_reports_what_it_could_not_store(home: Path, tmp_path: Path, capsys):
    """A missing path, an empty file and an empty folder are listed as failed (exit 1); the good
    files given alongside are still stored."""
    good = write(tmp_path / "good.eml", "good one", "fine")
    empty = tmp_path / "empty.eml"
    empty.write_bytes(b"")
    (tmp_path / "nothing").mkdir()
    code, out, _ = run(
        capsys, "import-eml", str(good), str(empty), str(tmp_path / "missing"), str(tmp_path / "nothing")
    )
    assert code == 1
    assert "1 stored" in out and "3 failed" in out
    assert (
        "empty.eml: the file is empty" in out and "no such file or folder" in out and "no .eml files" in out
    )
    code, out, _ = run(capsys, "search", "good", "--json")
    assert json.loads(out)["count"] == 1


def test_search_show_and_their_json(home: Path, tmp_path: Path, capsys):
    """search --json has a stable shape and honours --limit; show prints the message, --json adds the
    text, --raw gives the exact bytes back."""
    for i in range(3):
        write(tmp_path / f"{i}.eml", f"capybara meeting {i}", f"the capybara agenda number {i}")
    assert run(capsys, "import-eml", str(tmp_path))[0] == 0
    code, out, _ = run(capsys, "search", "capybara", "--json", "--limit", "2")
    result = json.loads(out)
    assert code == 0 and result["query"] == "capybara" and result["count"] == 2
    assert set(result["results"][0]) == {
        "id", "folder_id", "date", "sender", "subject", "message_id", "is_read", "has_attachments", "size",
    }  # fmt: skip
    first = result["results"][0]["id"]
    code, out, _ = run(capsys, "search", "agenda")
    assert code == 0 and out.count("capybara meeting") == 3
    code, out, _ = run(capsys, "show", str(first))
    assert code == 0 and "Subject: capybara meeting" in out and "capybara agenda" in out
    code, out, _ = run(capsys, "show", str(first), "--json")
    shown = json.loads(out)
    assert shown["id"] == first and "capybara agenda" in shown["text"] and shown["folder"] == "Imported"
    assert cli.main(["show", str(first), "--raw"]) == 0
    raw = capsys.readouterr().out
    number = shown["subject"].split()[-1]
    assert raw.encode() == (tmp_path / f"{number}.eml").read_bytes()


def test_user_errors_are_one_line(home: Path, tmp_path: Path, capsys):
    """Tried: a query with nothing to search for, an unknown id, and --json with --raw: a clear message,
    no traceback. An unclosed quote is not an error: it is searched as a phrase (the query language)."""
    run(capsys, "import-eml", str(write(tmp_path / "a.eml", "x", "y")))
    code, _, err = run(capsys, "search", "( * )")
    assert code == 1 and err.startswith("lifeboat: there is nothing to search for") and "phrase" in err
    code, out, err = run(capsys, "search", '"unbalanced', "--json")
    assert code == 0 and json.loads(out)["count"] == 0, err
    code, _, err = run(capsys, "show", "424242")
    assert code == 1 and "there is no message 424242" in err
    with pytest.raises(SystemExit) as info:
        cli.main(["show", "1", "--json", "--raw"])
    assert info.value.code == 2


def test_status_and_doctor(home: Path, tmp_path: Path, capsys):
    """status --json reports size, counts and dates; doctor passes on a healthy cache and fails (exit 1)
    with the reason when the key no longer opens it."""
    run(capsys, "import-eml", str(write(tmp_path / "a.eml", "hello", "there")))
    code, out, _ = run(capsys, "status", "--json")
    status = json.loads(out)
    assert code == 0 and status["messages"] == 1 and status["size_bytes"] > 0 and status["folders"] == 1
    assert status["oldest"].startswith("2026-11-28T12:00") and status["account"] == "default"
    assert set(status["outbox"]) == {"queued", "sending", "sent", "failed", "uncertain"}
    code, out, _ = run(capsys, "doctor", "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"] is True
    assert {c["name"]: c["status"] for c in report["checks"]}["cache"] == "ok"
    code, out, _ = run(capsys, "doctor")
    assert code == 0 and "cipher_integrity_check" in out
    import os

    os.environ["LIFEBOAT_DB_KEY"] = secrets.token_hex(32)  # monkeypatch restores it
    code, out, _ = run(capsys, "doctor", "--json")
    report = json.loads(out)
    cache = next(c for c in report["checks"] if c["name"] == "cache")
    assert code == 1 and cache["status"] == "fail" and "cannot decrypt" in cache["detail"]
    code, _, err = run(capsys, "status")
    assert code == 1 and err.startswith("lifeboat: cannot decrypt") and "move the file aside" in err


def test_missing_key_is_a_clear_error(home: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    """No keystore and no LIFEBOAT_DB_KEY: exit 1 with what to do."""
    monkeypatch.delenv("LIFEBOAT_DB_KEY")
    previous = keyring.get_keyring()
    keyring.set_keyring(keyring.backends.fail.Keyring())
    try:
        code, _, err = run(capsys, "status")
    finally:
        keyring.set_keyring(previous)
    assert code == 1 and "no usable OS keystore" in err and "LIFEBOAT_DB_KEY" in err


def test_bad_config_is_a_clear_error(home: Path, tmp_path: Path, capsys):
    """A broken config file named with --config is reported in one line."""
    bad = tmp_path / "bad.toml"
    bad.write_text("[sync\n")
    code, _, err = run(capsys, "--config", str(bad), "status")
    assert code == 1 and err.startswith("lifeboat: ") and "not valid TOML" in err


def test_simulator_passes_through(home: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    """`simulator` hands every later argument to simulator.cli.main, options included, and says the
    package is not installed (exit 2, never the old "not built yet") while that module is missing."""
    seen: list[list[str]] = []
    fake = types.ModuleType("simulator.cli")
    fake.main = lambda argv: seen.append(argv) or 7  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "simulator.cli", fake)
    assert cli.main(["simulator", "--port", "8443", "serve", "--json"]) == 7
    assert seen == [["--port", "8443", "serve", "--json"]]
    monkeypatch.setitem(sys.modules, "simulator.cli", None)
    code, _, err = run(capsys, "simulator", "--help")
    assert code == 2 and "not installed" in err and "not built" not in err


def test_log_file_has_no_bodies_or_keys(home: Path, tmp_path: Path, capsys):
    """Logging goes to <home>/logs/lifeboat.log; it mentions the import but no body text or key."""
    marker = "Sekretbody" + secrets.token_hex(4)
    run(capsys, "import-eml", str(write(tmp_path / "a.eml", "subject", marker)))
    run(capsys, "search", "nothing")
    log = (home / "logs" / "lifeboat.log").read_text()
    import os

    assert "committed 1 messages" in log
    assert marker not in log and os.environ["LIFEBOAT_DB_KEY"] not in log


def test_console_script_runs(home: Path, capsys):
    """The installed `lifeboat` console script works in its own process (--version, status --json)."""
    script = Path(sys.executable).parent / "lifeboat"
    done = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("lifeboat ")
    done = subprocess.run([str(script), "status", "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["messages"] == 0
    done = subprocess.run([str(script), "frobnicate"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "invalid choice" in done.stderr
