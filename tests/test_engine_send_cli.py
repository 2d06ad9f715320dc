"""The continuity CLI in-process (desktop.cli.main): send, outbox, failover, status --json's mode, and the
bad inputs each must refuse with one clear line. A real encrypted cache under a temp LIFEBOAT_HOME."""

from __future__ import annotations

import email
import email.policy
import json
from pathlib import Path

import pytest

from desktop import config as config_mod
from desktop.worker import single_instance
from sync.errors import ConfigError
from sync.model import OutboxItem, OutboxState
from tests.cli_kit import make_home, outbox, run

USER = "adele.vance@contoso.test"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(config_mod, "MACHINE_POLICY", tmp_path / "policy.toml")  # the fixed place, in-process
    return make_home(tmp_path, monkeypatch, USER)


def stored(home: Path) -> list[OutboxItem]:
    return outbox(home, USER)


def test_send_queues_with_bcc_in_envelope_only_and_attachments(home: Path, tmp_path: Path, capsys) -> None:
    """Tried: `lifeboat send` with two --to (one with a comma list), --cc, --bcc, --body-file and --attach,
    then `outbox --json`: one QUEUED item whose MIME has no Bcc header, whose envelope has everyone, with
    the file attached and the body from the file."""
    body, att = tmp_path / "body.txt", tmp_path / "plan.csv"
    body.write_text("Hello from the file\n", encoding="utf-8")
    att.write_bytes(b"a,b\n1,2\n")
    code, out, err = run(capsys, "send", "--to", "bob@relay.test", "--to", "Carol <carol@relay.test>, "
                         "dan@relay.test", "--cc", "erin@relay.test", "--bcc", "hidden@relay.test",
                         "--subject", "Plan", "--body-file", str(body), "--attach", str(att), "--json")
    assert code == 0, err
    queued = json.loads(out)
    code, out, _ = run(capsys, "outbox", "--json")
    listing = json.loads(out)
    assert listing["count"] == 1 and listing["items"][0]["message_id"] == queued["message_id"]
    assert listing["items"][0]["state"] == "queued"
    [item] = stored(home)
    assert sorted(item.recipients) == ["bob@relay.test", "carol@relay.test", "dan@relay.test",
                                       "erin@relay.test", "hidden@relay.test"]
    msg = email.message_from_bytes(item.raw, policy=email.policy.default)
    assert msg["Bcc"] is None and b"hidden@relay.test" not in item.raw
    assert msg["From"] == USER and msg["Message-ID"] == item.message_id
    assert "Hello from the file" in msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert [a.get_filename() for a in msg.iter_attachments()] == ["plan.csv"]  # type: ignore[attr-defined]


def test_send_eml_stamps_identity_once_and_strips_bcc(home: Path, tmp_path: Path, capsys) -> None:
    """Tried: `send --eml` of a file without Message-ID and Date but with a Bcc header: the queued MIME gets
    exactly one Message-ID and Date, loses the Bcc header, and the Bcc stays an envelope recipient."""
    eml = tmp_path / "m.eml"
    eml.write_bytes(b"From: Adele <adele.vance@contoso.test>\r\nTo: bob@relay.test\r\n"
                    b"Bcc: hidden@relay.test\r\nSubject: From a file\r\n\r\nbody\r\n")
    code, out, err = run(capsys, "send", "--eml", str(eml))
    assert code == 0, err
    [item] = stored(home)
    assert item.raw.count(b"Message-ID:") == 1 and item.raw.count(b"Date:") == 1
    assert b"Bcc" not in item.raw and set(item.recipients) == {"bob@relay.test", "hidden@relay.test"}
    assert item.message_id in out


@pytest.mark.parametrize("content,words", [
    (b"", "empty"),
    (b"To: bob@relay.test\r\nSubject: x\r\n\r\nbody\r\n", "no From"),
    (b"From: adele.vance@contoso.test\r\nSubject: x\r\n\r\nbody\r\n", "no recipients"),
])
def test_send_eml_refuses_unusable_files(home: Path, tmp_path: Path, capsys, content: bytes,
                                         words: str) -> None:
    """Tried: an empty .eml, one without From, one without recipients: exit 1, one line naming the problem,
    nothing queued."""
    eml = tmp_path / "bad.eml"
    eml.write_bytes(content)
    code, _, err = run(capsys, "send", "--eml", str(eml))
    assert code == 1 and words in err and "Traceback" not in err
    assert stored(home) == []


def test_send_refuses_bad_addresses_and_missing_recipients(home: Path, capsys) -> None:
    """Tried: a malformed --to address, and no recipient at all: exit 1 with the reason, nothing queued."""
    code, _, err = run(capsys, "send", "--to", "not an address", "--subject", "x")
    assert code == 1 and "lifeboat:" in err
    code, _, err = run(capsys, "send", "--subject", "x", "--body", "y")
    assert code == 1 and "no recipients" in err
    code, _, err = run(capsys, "send", "--to", "bob@relay.test", "--subject", "x\r\nBcc: e@evil.test")
    assert code == 1 and "line break" in err  # tried too: a header injection through the subject
    assert stored(home) == []


def test_reply_to_a_cached_message_threads(home: Path, tmp_path: Path, capsys) -> None:
    """Tried: importing a message with import-eml, then `send --reply ID`: the queued reply answers its
    sender with In-Reply-To = its Message-ID and References ending with it, subject "Re: ..."."""
    original = tmp_path / "orig.eml"
    original.write_bytes(b"From: Bob <bob@relay.test>\r\nTo: adele.vance@contoso.test\r\n"
                         b"Subject: Lunch?\r\nMessage-ID: <lunch-1@relay.test>\r\n"
                         b"References: <root@relay.test>\r\nDate: Fri, 27 Nov 2026 10:00:00 +0000\r\n\r\n"
                         b"Shall we?\r\n")
    assert run(capsys, "import-eml", str(original))[0] == 0
    code, out, _ = run(capsys, "search", "Lunch", "--json")
    message_id = json.loads(out)["results"][0]["id"]
    code, _, err = run(capsys, "send", "--reply", str(message_id), "--body", "Yes!")
    assert code == 0, err
    [item] = stored(home)
    msg = email.message_from_bytes(item.raw, policy=email.policy.default)
    assert msg["In-Reply-To"] == "<lunch-1@relay.test>" and msg["Subject"] == "Re: Lunch?"
    assert str(msg["References"]).split() == ["<root@relay.test>", "<lunch-1@relay.test>"]
    assert item.recipients == ("bob@relay.test",)


def test_failover_commands_and_status_json(home: Path, capsys) -> None:
    """Tried: `failover on`, `off`, `auto` and reading `status --json` after each: the mode, since, reason and
    route change as expected and the events are logged; `off` means "back to normal" as in the window
    (leave continuity now, then the probes decide: forced is auto again); settling a QUEUED item is refused
    clearly."""
    assert run(capsys, "failover", "on")[0] == 0
    status = json.loads(run(capsys, "status", "--json")[1])["failover"]
    assert status["mode"] == "continuity" and status["route"] == "backup" and status["forced"] == "continuity"
    assert "forced by you" in status["reason"] and status["since"]
    assert run(capsys, "failover", "off")[0] == 0
    status = json.loads(run(capsys, "status", "--json")[1])["failover"]
    assert status["mode"] == "recovering" and status["route"] == "primary" and status["forced"] == "auto"
    assert run(capsys, "failover", "auto")[0] == 0
    events = json.loads(run(capsys, "status", "--json")[1])["failover"]["events"]
    forced = [e["detail"] for e in reversed(events) if e["kind"] == "user_forced"]
    assert forced == ["continuity", "normal", "auto", "auto"]  # off = normal, then auto
    run(capsys, "send", "--to", "bob@relay.test", "--subject", "x", "--body", "y")
    [item] = stored(home)
    code, _, err = run(capsys, "outbox", "--sent", str(item.id))
    assert code == 1 and "only an uncertain item" in err
    code, _, err = run(capsys, "outbox", "--resend", "999")
    assert code == 1 and "no outbox item 999" in err
    assert stored(home)[0].state is OutboxState.QUEUED


def test_machine_policy_wins_over_the_user(home: Path, tmp_path: Path, capsys) -> None:
    """Tried: a machine policy forcing continuity, then `failover off`: refused (exit 1) with the reason;
    the mode stays CONTINUITY."""
    (tmp_path / "policy.toml").write_text('[failover]\nforce_mode = "continuity"\n')
    code, _, err = run(capsys, "failover", "off")
    assert code == 1 and "your organisation" in err
    assert json.loads(run(capsys, "status", "--json")[1])["failover"]["mode"] == "continuity"


def test_only_one_instance(home: Path) -> None:
    """Tried: a second instance on the same home while the lock is held (ConfigError saying it is
    already running). (`run` without a display is tried in tests/e2e/test_app_cli.py.)"""
    with single_instance(home), pytest.raises(ConfigError, match="already running"), single_instance(home):
        pass
