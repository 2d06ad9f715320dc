"""SmtpRoute against real servers: aiosmtpd (TLS, AUTH, injected faults) and a private Postfix relay."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import pytest

from sync import errors, outbox
from sync.compose import strip_bcc
from sync.routes.smtp import SmtpRoute
from tests.mailservers import (
    POSTFIX_DOMAIN,
    QUIET_AIOSMTPD,
    FaultySmtp,
    HangingServer,
    free_port,
    make_tls,
    postfix_relay,
    tls_files,
)

__all__ = ["postfix_relay", "tls_files"]  # fixtures used by this module

pytestmark = [pytest.mark.timeout(120), pytest.mark.filterwarnings(QUIET_AIOSMTPD)]  # timeout: hang net only


def mime(subject: str = "Hello", *, bcc: bool = False, body: str = "hello there\n",
         to: str = "bob@relay.test") -> tuple[bytes, str]:
    msg = EmailMessage()
    mid = make_msgid(domain="lifeboat.test")
    msg["From"] = "Ann <ann@example.test>"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = mid
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg.set_content(body)
    raw = msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
    if bcc:  # a folded Bcc header, as a careless MIME builder might leave it
        raw = raw.replace(b"Subject:", b"Bcc: secret@relay.test,\r\n other-secret@relay.test\r\nSubject:", 1)
    return raw, mid


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


# ---- plain aiosmtpd ---------------------------------------------------------------------------


def test_delivers_without_bcc_header_and_with_all_recipients():
    """A message whose raw MIME still carries a Bcc header: the server gets every envelope recipient,
    the policy's envelope sender, and never the Bcc header."""
    raw, mid = mime(bcc=True)
    with FaultySmtp() as server:
        route = SmtpRoute("127.0.0.1", server.port, "none", envelope_sender="continuity@example.test")
        rcpts = ["bob@relay.test", "secret@relay.test", "other-secret@relay.test"]
        route.send(raw, "ann@example.test", rcpts)
        route.close()
    [got] = server.received
    assert got.mail_from == "continuity@example.test"
    assert got.rcpt_tos == ["bob@relay.test", "secret@relay.test", "other-secret@relay.test"]
    assert b"bcc" not in got.data.lower().split(b"\r\n\r\n")[0] and b"secret@" not in got.data
    assert got.message()["Message-ID"] == mid
    assert strip_bcc(b"To: a\r\nBcc: x,\r\n y\r\nSubject: s\r\n\r\nBcc: body stays\r\n") == (
        b"To: a\r\nSubject: s\r\n\r\nBcc: body stays\r\n"
    )


def test_bare_line_feeds_become_crlf():
    """MIME written with bare LF line ends (Python's default) and a body line starting with a dot: the
    relay receives CRLF lines and the dot line intact."""
    raw, mid = mime(body="first line\n.dot line\nlast\n")
    raw = raw.replace(b"\r\n", b"\n")
    with FaultySmtp() as server:
        route = SmtpRoute("127.0.0.1", server.port, "none")
        route.send(raw, "ann@example.test", ["bob@relay.test"])
        route.close()
    [got] = server.received
    assert b"\n" not in got.data.replace(b"\r\n", b"")
    assert got.message()["Message-ID"] == mid
    assert got.message().get_content().replace("\r\n", "\n") == "first line\n.dot line\nlast\n"


def test_burst_reuses_one_connection_then_closes_after_idle():
    """Ten sends in a row use one SMTP session; after the idle time the next send opens a new one,
    and close_if_idle closes it without a send."""
    clock = FakeClock()
    with FaultySmtp() as server:
        route = SmtpRoute("127.0.0.1", server.port, "none", idle_close=30, clock=clock)
        for n in range(10):
            route.send(mime(f"burst {n}")[0], "ann@example.test", ["bob@relay.test"])
        assert (len(server.received), server.handler.connections) == (10, 1)
        clock.t += 31
        route.send(mime("after idle")[0], "ann@example.test", ["bob@relay.test"])
        assert server.handler.connections == 2
        clock.t += 31
        route.close_if_idle()
        assert route._conn is None
        route.close()


def test_reconnects_when_the_server_closed_the_connection():
    """The relay times out the idle session (421 + close); the next send reconnects and delivers once."""
    with FaultySmtp(idle_timeout=0.3) as server:
        route = SmtpRoute("127.0.0.1", server.port, "none")
        route.send(mime("one")[0], "ann@example.test", ["bob@relay.test"])
        time.sleep(1.0)  # let the server's idle timer close the session (not a test time limit)
        route.send(mime("two")[0], "ann@example.test", ["bob@relay.test"])
        route.close()
    assert [r.message()["Subject"] for r in server.received] == ["one", "two"]
    assert server.handler.connections == 2


# ---- faults ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("setup", "exc", "words", "kind"), [
    (lambda h: setattr(h, "mail_reply", "451 4.3.2 system busy, try later"), errors.SendDeferred,
     "451 4.3.2 system busy", "temporary"),
    (lambda h: setattr(h, "mail_reply", "553 5.7.1 sender not allowed"), errors.SendRejected,
     "553 5.7.1 sender not allowed", "permanent"),
    (lambda h: h.rcpt_replies.update({"nobody@relay.test": "550 5.1.1 user unknown"}), errors.SendRejected,
     "nobody@relay.test: 550 5.1.1 user unknown", "permanent"),
    (lambda h: h.rcpt_replies.update({"nobody@relay.test": "452 4.2.2 mailbox full"}), errors.SendDeferred,
     "452 4.2.2 mailbox full", "temporary"),
    (lambda h: setattr(h, "data_reply", "554 5.7.1 message looks like spam"), errors.SendRejected,
     "554 5.7.1 message looks like spam", "permanent"),
    (lambda h: setattr(h, "data_reply", "421 4.3.0 shutting down"), errors.SendDeferred,
     "421 4.3.0 shutting down", "temporary"),
    (lambda h: setattr(h, "drop_after_data", True), errors.SendDeferred,
     "dropped the connection", "temporary"),
    (lambda h: setattr(h, "hang_in_data", 5.0), errors.SendDeferred,
     "did not answer within 1 s", "temporary"),
], ids=["451-mail", "553-mail", "550-rcpt", "452-rcpt", "554-data", "421-data", "drop-after-data", "hang"])
def test_faults_translate_with_the_server_words(setup, exc, words, kind):
    """Each injected fault raises the right sync.errors class carrying the server's words; the outbox
    classifies it (5xx permanent, the rest temporary); nothing partial is delivered; and the route still
    delivers the next message once the fault is gone."""
    with FaultySmtp() as server:
        route = SmtpRoute("127.0.0.1", server.port, "none", timeout=1)
        setup(server.handler)
        with pytest.raises(exc) as info:
            route.send(mime()[0], "ann@example.test", ["bob@relay.test", "nobody@relay.test"])
        assert words in str(info.value)
        assert outbox.classify(info.value) == kind
        assert server.received == []
        h = server.handler
        h.mail_reply, h.data_reply, h.drop_after_data, h.hang_in_data = None, None, False, 0.0
        h.rcpt_replies.clear()
        route.send(mime("after")[0], "ann@example.test", ["bob@relay.test"])
        route.close()
    assert [r.message()["Subject"] for r in server.received] == ["after"]


def test_hanging_and_absent_servers():
    """A relay that accepts but never greets, and a port where nothing listens: send defers with a
    clear message, probe raises Unreachable."""
    with HangingServer() as hang:
        route = SmtpRoute("127.0.0.1", hang.port, "starttls", timeout=1)
        with pytest.raises(errors.SendDeferred, match="did not answer within 1 s"):
            route.send(mime()[0], "ann@example.test", ["bob@relay.test"])
        with pytest.raises(errors.Unreachable):
            route.probe()
    route = SmtpRoute("127.0.0.1", free_port(), "starttls", timeout=1)
    with pytest.raises(errors.SendDeferred, match="cannot be reached"):
        route.send(mime()[0], "ann@example.test", ["bob@relay.test"])
    with pytest.raises(errors.Unreachable, match="cannot be reached"):
        route.probe()


# ---- TLS and AUTH ---------------------------------------------------------------------------


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_tls_with_custom_ca_and_auth(tls_files, security):
    """STARTTLS and implicit TLS verified against the test CA, with AUTH: good password delivers and the
    probe passes; a wrong password raises AuthRequired naming the keystore; without the CA the
    certificate is refused (never sent unverified)."""
    with FaultySmtp(security, tls_files, users={"ann": "s3cret"}) as server:
        good = SmtpRoute("localhost", server.port, security, "ann", "s3cret", ca_file=str(tls_files.ca))
        good.probe()
        good.send(mime("secure")[0], "ann@example.test", ["bob@relay.test"])
        good.close()
        assert [r.message()["Subject"] for r in server.received] == ["secure"]
        assert "s3cret" not in repr(good)
        bad = SmtpRoute("localhost", server.port, security, "ann", "wrong", ca_file=str(tls_files.ca))
        with pytest.raises(errors.AuthRequired, match="keystore") as info:
            bad.send(mime()[0], "ann@example.test", ["bob@relay.test"])
        assert outbox.classify(info.value) == "temporary"
        untrusted = SmtpRoute("localhost", server.port, security, "ann", "s3cret")
        with pytest.raises(errors.SendDeferred, match="certificate") as cert_info:
            untrusted.send(mime()[0], "ann@example.test", ["bob@relay.test"])
        assert "backup_ca_file" in str(cert_info.value)
        with pytest.raises(errors.Unreachable, match="certificate"):
            untrusted.probe()
    assert len(server.received) == 1


def test_certificate_for_another_name_is_refused(tmp_path):
    """A certificate from the trusted CA but issued for another host name: refused, nothing sent."""
    other = make_tls(tmp_path, names=("mail.example.test",))
    with FaultySmtp("starttls", other) as server:
        route = SmtpRoute("127.0.0.1", server.port, "starttls", ca_file=str(other.ca))
        with pytest.raises(errors.SendDeferred, match="certificate"):
            route.send(mime()[0], "ann@example.test", ["bob@relay.test"])
        with pytest.raises(errors.Unreachable, match="mismatch"):
            route.probe()
    assert server.received == []


def test_starttls_required_but_not_offered():
    """A relay without STARTTLS: the route refuses to send in clear and says what to check."""
    with FaultySmtp("none") as server:
        route = SmtpRoute("127.0.0.1", server.port, "starttls")
        with pytest.raises(errors.SendDeferred, match="does not offer STARTTLS"):
            route.send(mime()[0], "ann@example.test", ["bob@relay.test"])
    assert server.received == []


def test_bad_configuration(tmp_path):
    """Unknown security, a password over plain SMTP, a missing CA file, no host: ConfigError."""
    with pytest.raises(errors.ConfigError, match="security"):
        SmtpRoute("relay", 25, "ssl")
    with pytest.raises(errors.ConfigError, match="unencrypted"):
        SmtpRoute("relay", 25, "none", "ann", "pw")
    with pytest.raises(errors.ConfigError, match="backup_ca_file"):
        SmtpRoute("relay", 587, "starttls", ca_file=str(tmp_path / "missing.pem"))
    with pytest.raises(errors.ConfigError, match="backup_smtp_host"):
        SmtpRoute("", 587)
    with pytest.raises(errors.MessageBad):
        SmtpRoute("relay", 587).send(b"x", "a@b", [])


# ---- Postfix, the real MTA --------------------------------------------------------------------


def test_postfix_delivers_over_starttls(postfix_relay, tls_files):
    """Through a real Postfix over verified STARTTLS: one copy per recipient in the Maildir, Message-ID
    intact, no Bcc header anywhere, a non-ASCII (SMTPUTF8) recipient accepted; the probe passes."""
    relay = postfix_relay
    route = SmtpRoute("localhost", relay.port, "starttls", ca_file=str(relay.tls.ca))
    route.probe()
    raw, mid = mime("via postfix", bcc=True, body="Grüße\n")
    before = len(relay.delivered())
    rcpts = [f"bob@{POSTFIX_DOMAIN}", f"secret@{POSTFIX_DOMAIN}", f"jörg@{POSTFIX_DOMAIN}"]
    route.send(raw, "ann@example.test", rcpts)
    route.close()
    got = [m for m in relay.wait_for(before + 3) if mid.encode() in m]
    assert len(got) == 3
    for m in got:
        head = m.split(b"\n\n")[0].lower()
        assert b"\nbcc:" not in head and not head.startswith(b"bcc:")
    delivered_to = sorted(line for m in got for line in m.splitlines() if line.startswith(b"Delivered-To:"))
    assert delivered_to == sorted(f"Delivered-To: {r}".encode() for r in rcpts)
    assert "TLS connection established" in relay.log()


def test_postfix_rejection_keeps_its_words(postfix_relay):
    """Postfix refuses a domain it does not serve with 5xx: SendRejected carrying Postfix's words, and
    nothing is delivered to the good recipient either."""
    relay = postfix_relay
    route = SmtpRoute("localhost", relay.port, "starttls", ca_file=str(relay.tls.ca))
    raw, mid = mime("rejected")
    with pytest.raises(errors.SendRejected, match=r"elsewhere\.test: 55\d .*Recipient address rejected"):
        route.send(raw, "ann@example.test", [f"bob@{POSTFIX_DOMAIN}", "x@elsewhere.test"])
    fine, fine_id = mime("fine")
    route.send(fine, "ann@example.test", [f"bob@{POSTFIX_DOMAIN}"])
    route.close()
    deadline = time.monotonic() + 60  # safety net: wait until the later message is in the Maildir
    while not any(fine_id.encode() in m for m in relay.delivered()) and time.monotonic() < deadline:
        time.sleep(0.05)
    delivered = relay.delivered()
    assert any(fine_id.encode() in m for m in delivered)
    assert not any(mid.encode() in m for m in delivered)
