"""Hidden recipients on the backup route: `lifeboat send --eml` of files whose Bcc hides behind a bare CR
or sits in a Resent-Bcc, queued through the real CLI and sent by engine.send_once over SmtpRoute to real
servers (aiosmtpd, and a private Postfix when root and Postfix are there). The hidden address must be in
the envelope and nowhere in the headers the relay received or delivered."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from desktop import cli
from sync import engine
from sync.model import Mode, OutboxState, Route
from sync.routes.smtp import SmtpRoute
from sync.store import Store
from tests.cli_kit import make_home, open_cache
from tests.mailservers import POSTFIX_DOMAIN, QUIET_AIOSMTPD, FaultySmtp, postfix_relay

__all__ = ["postfix_relay"]  # a fixture used by this module

pytestmark = [pytest.mark.timeout(120), pytest.mark.filterwarnings(QUIET_AIOSMTPD)]  # hang net only

USER = "adele.vance@contoso.test"
POSTFIX_TRACE = {"return-path", "x-original-to", "delivered-to", "received"}  # per-delivery trace lines
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
BARE_CR = (b"From: Adele <adele.vance@contoso.test>\r\nTo: bob@relay.test\r\nSubject: quarterly\r"
           b"Bcc: hidden@relay.test\r\nX-After: kept\r\n\r\nbody\r\n")
RESENT = (b"From: Adele <adele.vance@contoso.test>\r\nTo: bob@relay.test\r\nSubject: quarterly\r\n"
          b"Resent-From: adele.vance@contoso.test\r\nResent-To: carol@relay.test\r\n"
          b"Resent-Bcc: hidden@relay.test,\r\n other-hidden@relay.test\r\n\r\nbody\r\n")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return make_home(tmp_path, monkeypatch, USER)


def open_store(home: Path) -> Store:
    return open_cache(home, USER)


def send_eml(capsys: pytest.CaptureFixture[str], tmp_path: Path, raw: bytes) -> tuple[int, str]:
    path = tmp_path / "m.eml"
    path.write_bytes(raw)
    code = cli.main(["send", "--eml", str(path)])
    return code, capsys.readouterr().err


def header_section(data: bytes) -> bytes:
    """The headers as any reader may split them: up to the first blank line, CR, LF or CRLF alike."""
    data = re.sub(rb"\r\n|\r|\n", b"\n", data)
    return data.split(b"\n\n")[0].lower()


def deliver(home: Path, route: SmtpRoute) -> None:
    with open_store(home) as store:
        report = engine.send_once(store, {Route.BACKUP: route}, Mode.CONTINUITY, NOW)
        assert len(report.sent) == 1, report
        [item] = store.outbox_list()
        assert item.state is OutboxState.SENT
    route.close()


@pytest.mark.parametrize("raw,hidden,shown", [
    (BARE_CR, ["hidden@relay.test"], ["bob@relay.test"]),
    (RESENT, ["hidden@relay.test", "other-hidden@relay.test"], ["bob@relay.test", "carol@relay.test"]),
])
def test_send_eml_hidden_recipients_reach_the_envelope_only(home: Path, tmp_path: Path, capsys, raw: bytes,
                                                            hidden: list[str], shown: list[str]) -> None:
    """Tried: `send --eml` of a file with a bare CR before `Bcc:`, and of one with a folded `Resent-Bcc:`,
    then the backup route to aiosmtpd: every hidden address is an envelope recipient, and no header the
    relay received names it or is a Bcc/Resent-Bcc, however its lines are split; the other headers stay."""
    code, err = send_eml(capsys, tmp_path, raw)
    assert code == 0, err
    with FaultySmtp() as relay:
        deliver(home, SmtpRoute("127.0.0.1", relay.port, "none", timeout=10))
    [got] = relay.received
    assert sorted(got.rcpt_tos) == sorted(shown + hidden)
    head = header_section(got.data)
    assert b"bcc" not in head and not [h for h in hidden if h.encode() in head]
    assert b"\r" not in got.data.replace(b"\r\n", b"")  # no bare CR left for a later reader to split on
    msg = email.message_from_bytes(got.data, policy=email.policy.default)
    assert msg["Subject"] == "quarterly" and msg["To"] == "bob@relay.test"
    assert raw != BARE_CR or msg["X-After"] == "kept"


def test_send_eml_through_postfix_delivers_no_hidden_header(home: Path, tmp_path: Path, capsys,
                                                            postfix_relay) -> None:
    """Tried: the bare-CR Bcc and the Resent-Bcc files through a real Postfix (its cleanup parses the
    headers as a mail server does): every hidden recipient gets a copy, and no delivered copy's headers
    name a hidden recipient."""
    relay = postfix_relay
    before = len(relay.delivered())
    for raw in (BARE_CR, RESENT):
        code, err = send_eml(capsys, tmp_path, raw.replace(b"relay.test", POSTFIX_DOMAIN.encode()))
        assert code == 0, err
    with open_store(home) as store:
        report = engine.send_once(store, {Route.BACKUP: SmtpRoute("localhost", relay.port, "starttls",
                                                                  ca_file=str(relay.tls.ca))},
                                  Mode.CONTINUITY, NOW)
        assert len(report.sent) == 2, report
    got = relay.wait_for(before + 6)[before:]
    delivered_to = sorted(line.split(b": ")[1] for m in got for line in m.splitlines()
                          if line.startswith(b"Delivered-To:"))
    assert delivered_to == sorted(f"{u}@{POSTFIX_DOMAIN}".encode() for u in
                                  ("bob", "hidden", "bob", "carol", "hidden", "other-hidden"))
    for m in got:  # the message's own headers, without the trace Postfix adds for each delivery
        msg = email.message_from_bytes(m, policy=email.policy.compat32)
        own = [(k.lower(), v) for k, v in msg.items() if k.lower() not in POSTFIX_TRACE]
        assert own and not [k for k, v in own if "bcc" in k or "hidden@" in v.lower()], own


def test_route_never_sends_a_bcc_behind_a_bare_cr() -> None:
    """Tried: raw MIME handed straight to SmtpRoute (as an outbox row written by an older version would
    be) with a bare CR before `Bcc:` and a `Resent-Bcc:`: the relay gets CRLF lines and neither header."""
    raw = (b"From: a@contoso.test\r\nTo: bob@relay.test\r\nSubject: s\rBcc: hidden@relay.test\r\n"
           b"Resent-Bcc: other-hidden@relay.test\r\nMessage-ID: <1@contoso.test>\r\n\r\nbody\r\n")
    with FaultySmtp() as relay:
        route = SmtpRoute("127.0.0.1", relay.port, "none", timeout=10)
        route.send(raw, "a@contoso.test", ["bob@relay.test", "hidden@relay.test", "other-hidden@relay.test"])
        route.close()
    [got] = relay.received
    head = header_section(got.data)
    assert b"bcc" not in head and b"hidden@" not in head
    assert len(got.rcpt_tos) == 3


@pytest.mark.parametrize("raw,words", [
    (b"From: a@contoso.test\r\nTo: bob@relay.test\r\nSubject: s\r\rBcc: hidden@relay.test\r\n\r\nbody\r\n",
     "bare carriage return"),
    (b"From: a@contoso.test\r\nTo: bob@relay.test\r\n\rBcc: hidden@relay.test\r\n\r\nbody\r\n",
     "bare carriage return"),
    (b"From: a@contoso.test\r\nTo: bob@relay.test\r\nBcc : hidden@relay.test\r\n\r\nbody\r\n",
     "not a header"),
    (b"From: a@contoso.test\r\nTo: bob@relay.test\r\nthis line is no header\r\nBcc: hidden@relay.test\r\n"
     b"\r\nbody\r\n", "not a header"),
])
def test_send_eml_refuses_headers_a_reader_could_split_otherwise(home: Path, tmp_path: Path, capsys,
                                                                 raw: bytes, words: str) -> None:
    """Tried: files whose header section ends at a bare CR (the Bcc line would become body text shown to
    everyone) or holds a line that is no header (`Bcc :`, free text), each hiding a Bcc after it: exit 1
    with the reason, nothing queued."""
    code, err = send_eml(capsys, tmp_path, raw)
    assert code == 1 and words in err and "Traceback" not in err
    with open_store(home) as store:
        assert store.outbox_list() == []
