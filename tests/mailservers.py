"""Real SMTP servers for tests: a throwaway CA, aiosmtpd servers that inject faults, and a Postfix relay.

`make_tls(dir)` writes a CA and a server certificate for 127.0.0.1/localhost. `FaultySmtp` is an
aiosmtpd server (plain, STARTTLS or implicit TLS, optional AUTH) whose replies a test can program
(4xx/5xx per stage, drop after DATA, hang). `HangingServer` accepts and never speaks. `PostfixRelay` runs
a private Postfix instance (own config, queue and Maildir under a temp dir) on a spare loopback port.
Import these from tests (`from mailservers import ...`); pytest fixtures are at the bottom.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email
import email.policy
import ipaddress
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# aiosmtpd warns when AUTH is required without STARTTLS (our implicit-TLS server is encrypted anyway):
# test modules add this to their pytestmark.
QUIET_AIOSMTPD = "ignore:Requiring AUTH while not requiring TLS:UserWarning"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- certificates ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # PEM of the throwaway CA (what a client must trust)
    cert: Path  # the server's certificate (SAN: localhost, 127.0.0.1)
    key: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx


def make_tls(directory: Path, names: tuple[str, ...] = ("localhost", "127.0.0.1")) -> TlsFiles:
    """A fresh CA and a server certificate signed by it, written as PEM files in directory."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Lifeboat test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for n in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ))
    files.key.chmod(0o600)
    return files


# ---- aiosmtpd with faults ---------------------------------------------------------------------


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    def message(self) -> EmailMessage:
        msg = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        return msg


@dataclass
class FaultHandler:
    """Records accepted messages; set the fields to make the next transactions fail."""

    received: list[Received] = field(default_factory=list)
    mail_reply: str | None = None  # e.g. "451 4.3.2 try later"
    rcpt_replies: dict[str, str] = field(default_factory=dict)  # address -> reply
    data_reply: str | None = None  # e.g. "554 5.7.1 spam"
    drop_after_data: bool = False  # close the connection instead of answering DATA
    hang_in_data: float = 0.0  # seconds to sit on DATA before answering
    peers: set[Any] = field(default_factory=set)  # client (host, port) of every TCP connection seen

    @property
    def connections(self) -> int:
        return len(self.peers)

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str, responses: Any):
        self.peers.add(session.peer)
        session.host_name = hostname
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.mail_reply:
            return self.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.rcpt_replies:
            return self.rcpt_replies[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.hang_in_data:
            await asyncio.sleep(self.hang_in_data)
        if self.drop_after_data:
            server.transport.abort()
            return "250 never seen"
        if self.data_reply:
            return self.data_reply
        raw = envelope.original_content or envelope.content
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(raw)))
        return "250 2.0.0 queued"


class FaultySmtp:
    """An aiosmtpd server on a spare loopback port. security: "none" | "starttls" | "tls"."""

    def __init__(self, security: str = "none", tls: TlsFiles | None = None,
                 users: dict[str, str] | None = None, idle_timeout: float = 300) -> None:
        self.handler = FaultHandler()
        self.port = free_port()
        self.security = security
        kwargs: dict[str, Any] = {"ready_timeout": 10, "data_size_limit": 50 * 1024 * 1024,
                                  "timeout": idle_timeout, "enable_SMTPUTF8": True}
        if security in ("starttls", "tls"):
            assert tls is not None, "TLS needs certificates (make_tls)"
            if security == "starttls":
                kwargs["tls_context"] = tls.server_context()
                kwargs["require_starttls"] = True
            else:
                kwargs["ssl_context"] = tls.server_context()
        if users is not None:
            def check(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
                ok = isinstance(data, LoginPassword) and users.get(data.login.decode()) == (
                    data.password.decode()
                )
                return AuthResult(success=ok, handled=False)

            kwargs["authenticator"] = check
            kwargs["auth_required"] = True
            # aiosmtpd cannot tell an implicit-TLS session is encrypted, so it only enforces this for STARTTLS
            kwargs["auth_require_tls"] = security == "starttls"
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port,
                                     server_hostname="localhost", **kwargs)

    def __enter__(self) -> FaultySmtp:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    @property
    def received(self) -> list[Received]:
        return self.handler.received


class HangingServer:
    """Accepts TCP connections and never says a word (a relay that hangs)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = int(self.sock.getsockname()[1])
        self.held: list[socket.socket] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                conn, _ = self.sock.accept()
                self.held.append(conn)

    def __enter__(self) -> HangingServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.thread.join(5)
        for c in self.held:
            c.close()
        self.sock.close()


# ---- Postfix --------------------------------------------------------------------------------

POSTFIX_DOMAIN = "relay.test"  # every address @relay.test lands in one Maildir


class PostfixRelay:
    """A private Postfix instance: loopback-only smtpd on a spare port, delivering @relay.test to a Maildir.

    Needs Debian's postfix and root (Postfix's master runs as root and drops to the postfix user).
    Its config, queue and mail live in a temp directory; the system's Postfix is not touched."""

    def __init__(self, tls: TlsFiles | None = None) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="lifeboat-postfix-"))
        self.root.chmod(0o755)  # the postfix user must traverse it
        self.conf, self.maildir = self.root / "conf", self.root / "mail" / POSTFIX_DOMAIN
        self.tls = tls

    @staticmethod
    def unavailable() -> str | None:
        if not shutil.which("postfix") or not shutil.which("postconf"):
            return "Postfix is not installed (./dev setup installs it from debian-packages.txt)"
        if os.geteuid() != 0:
            return "Postfix's master must start as root"
        return None

    def _postconf(self, *args: str) -> None:
        subprocess.run(["postconf", "-c", str(self.conf), *args], check=True, capture_output=True)

    def start(self) -> PostfixRelay:
        r = self.root
        for d in ("conf", "queue", "data", "mail"):
            (r / d).mkdir()
        shutil.chown(r / "data", "postfix")
        shutil.chown(r / "mail", "nobody", "nogroup")
        shutil.copy("/etc/postfix/master.cf", self.conf / "master.cf")
        settings = {
            "compatibility_level": "3.6",
            "queue_directory": f"{r}/queue",
            "data_directory": f"{r}/data",
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": "relay.lifeboat.test",
            "mydestination": "",
            "inet_interfaces": "loopback-only",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "alias_maps": "",
            "alias_database": "",
            "relayhost": "",
            "default_transport": "error",
            "relay_transport": "error",
            "smtpd_relay_restrictions": "permit_mynetworks reject",
            "virtual_mailbox_domains": POSTFIX_DOMAIN,
            "virtual_mailbox_base": f"{r}/mail",
            "virtual_mailbox_maps": f"static:{POSTFIX_DOMAIN}/",
            "virtual_uid_maps": "static:65534",
            "virtual_gid_maps": "static:65534",
            "maillog_file_prefixes": str(r),
            "maillog_file": f"{r}/maillog",
            "smtputf8_enable": "yes",
            "message_size_limit": str(50 * 1024 * 1024),
            "virtual_mailbox_limit": "0",
            "smtpd_tls_security_level": "may" if self.tls else "none",
            "smtpd_tls_loglevel": "1",
        }
        if self.tls:
            settings |= {"smtpd_tls_cert_file": str(self.tls.cert), "smtpd_tls_key_file": str(self.tls.key)}
        (self.conf / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
        self._postconf("-M#", "smtp/inet")
        self._postconf("-M", f"127.0.0.1:{self.port}/inet = 127.0.0.1:{self.port} inet n - n - - smtpd")
        self._postconf("-M", "postlog/unix-dgram = postlog unix-dgram n - n - 1 postlogd")
        self._postconf("-F", "*/*/chroot = n")
        done = subprocess.run(["postfix", "-c", str(self.conf), "start"], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"postfix did not start: {done.stderr or done.stdout}\n{self.log()}")
        deadline = time.monotonic() + 30  # safety net only
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 1) as s:
                if s.recv(100).startswith(b"220"):
                    return self
            time.sleep(0.1)
        raise RuntimeError(f"postfix smtpd on port {self.port} never greeted\n{self.log()}")

    def stop(self) -> None:
        subprocess.run(["postfix", "-c", str(self.conf), "stop"], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        p = self.root / "maillog"
        return p.read_text(errors="replace") if p.exists() else ""

    def delivered(self) -> list[bytes]:
        new = self.maildir / "new"
        return [p.read_bytes() for p in sorted(new.iterdir())] if new.exists() else []

    def wait_for(self, count: int, timeout: float = 60) -> list[bytes]:
        """The first `count` delivered messages (waits for the queue manager; timeout is a safety net)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.delivered()
            if len(got) >= count:
                return got
            time.sleep(0.05)
        raise AssertionError(
            f"only {len(self.delivered())} of {count} messages delivered\n{self.log()[-3000:]}"
        )


# ---- pytest fixtures (import them into a test module to use them) ----------------------------


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def postfix_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostfixRelay]:
    """A running private Postfix (STARTTLS offered with the session's throwaway cert); skipped when
    Postfix or root is missing, with the reason."""
    why = PostfixRelay.unavailable()
    if why:
        pytest.skip(why)
    tls = make_tls(tmp_path_factory.mktemp("postfix-tls"))
    relay = PostfixRelay(tls)
    try:
        yield relay.start()
    finally:
        relay.stop()
