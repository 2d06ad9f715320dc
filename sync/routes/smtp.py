"""The backup route: hand mail to the organisation's SMTP relay (SmtpRoute, a sync.ports.SendRoute).

STARTTLS or implicit TLS with certificates verified against the system's store (plus an optional CA;
never unverified; no proxy: SMTP goes direct), AUTH
only over TLS, one connection reused across a burst (reopened when the server dropped it, closed after
idle). Every library error becomes SendRejected (5xx, with the server's words) / SendDeferred (4xx,
timeouts, drops) / AuthRequired on send, and Unreachable on probe. No Bcc or Resent-Bcc header is ever
transmitted (sync.compose.strip_bcc, which also makes every line end CRLF).
"""

from __future__ import annotations

import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from sync import errors
from sync.compose import strip_bcc
from sync.sources import network

SECURITY = ("starttls", "tls", "none")


def _words(resp: bytes | str) -> str:
    text = resp.decode("utf-8", "replace") if isinstance(resp, bytes) else str(resp)
    return " ".join(text.split())


class SmtpRoute:
    name = "backup"

    def __init__(
        self,
        host: str,
        port: int,
        security: str = "starttls",
        username: str | None = None,
        password: str | None = None,
        ca_file: str | None = None,
        timeout: float = 30,
        local_hostname: str | None = None,
        envelope_sender: str | None = None,
        idle_close: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not host:
            raise errors.ConfigError("backup route: no SMTP host configured (set backup_smtp_host)")
        if security not in SECURITY:
            raise errors.ConfigError(
                f"backup route: security must be one of {', '.join(SECURITY)}, not {security!r}"
            )
        if security == "none" and password:
            raise errors.ConfigError(
                "backup route: refusing to send a password over an unencrypted connection; "
                "set backup_smtp_security to starttls or tls"
            )
        if ca_file and not Path(ca_file).is_file():
            raise errors.ConfigError(f"backup route: CA file {ca_file} does not exist (backup_ca_file)")
        self.host, self.port, self.security = host, int(port), security
        self.username, self._password = username or None, password
        self.timeout, self.local_hostname = timeout, local_hostname
        self.envelope_sender = envelope_sender or None
        self.idle_close, self._clock = idle_close, clock
        # verification always on, against the system's certificate store plus ca_file (truststore)
        self._ctx = network.tls_context(ca_file or None)
        self._conn: smtplib.SMTP | None = None
        self._last_used = 0.0
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never shows the password
        return f"SmtpRoute({self.host}:{self.port}, {self.security}, user={self.username!r})"

    @property
    def where(self) -> str:
        return f"backup relay {self.host}:{self.port}"

    # ---- connections ----------------------------------------------------------------------

    def _open(self, login: bool = True) -> smtplib.SMTP:
        """Connect, greet, secure and log in; raises the library's errors (callers translate)."""
        conn: smtplib.SMTP
        if self.security == "tls":
            conn = smtplib.SMTP_SSL(
                self.host, self.port, local_hostname=self.local_hostname, timeout=self.timeout,
                context=self._ctx,
            )
        else:
            conn = smtplib.SMTP(
                self.host, self.port, local_hostname=self.local_hostname, timeout=self.timeout
            )
        try:
            conn.ehlo()
            if self.security == "starttls":
                if not conn.has_extn("starttls"):
                    raise errors.SendDeferred(
                        f"{self.where} does not offer STARTTLS, and Lifeboat will not send mail in clear",
                        fix="check backup_smtp_port and backup_smtp_security (tls for port 465)",
                    )
                conn.starttls(context=self._ctx)
                conn.ehlo()
            if login and self.username:
                conn.login(self.username, self._password or "")
        except BaseException:
            conn.close()
            raise
        return conn

    def close(self) -> None:
        with self._lock:
            self._drop(polite=True)

    def close_if_idle(self) -> None:
        """Close the burst connection if it was idle for idle_close seconds (the outbox tick calls this)."""
        with self._lock:
            if self._conn is not None and self._clock() - self._last_used >= self.idle_close:
                self._drop(polite=True)

    def _drop(self, polite: bool) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if polite:
                conn.quit()
        except (smtplib.SMTPException, OSError):
            pass
        finally:
            conn.close()

    # ---- sending --------------------------------------------------------------------------

    def send(self, raw: bytes, sender: str, recipients: Sequence[str]) -> None:
        """Hand one message to the relay; returns once the relay accepted it (250 after DATA)."""
        if not recipients:
            raise errors.MessageBad("the message has no recipients")
        raw = strip_bcc(raw)  # no Bcc/Resent-Bcc header, CRLF line ends (smtplib leaves bytes alone)
        mail_from = self.envelope_sender or sender
        with self._lock:
            if self._conn is not None and self._clock() - self._last_used >= self.idle_close:
                self._drop(polite=True)
            try:
                for attempt in (1, 2):
                    reused = self._conn is not None
                    if self._transaction(raw, mail_from, recipients):
                        break
                    self._drop(polite=False)  # the message never started, so trying once more is safe
                    if not reused or attempt == 2:
                        raise errors.SendDeferred(f"{self.where} closed the connection at once")
            except errors.LifeboatError:
                raise
            except Exception as exc:
                self._drop(polite=False)
                raise self._translate(exc) from exc
            self._last_used = self._clock()

    def _transaction(self, raw: bytes, mail_from: str, recipients: Sequence[str]) -> bool:
        """One SMTP transaction; False if the connection turned out closed before MAIL FROM was taken
        (a stale reused one: nothing started), True once the relay accepted the message."""
        if self._conn is None:
            self._conn = self._open()
        conn = self._conn
        options = []
        if any(b > 127 for b in raw) and conn.has_extn("8bitmime"):
            options.append("BODY=8BITMIME")
        if not (mail_from + "".join(recipients)).isascii():
            if not conn.has_extn("smtputf8"):
                raise errors.SendRejected(
                    f"{self.where} does not accept non-ASCII addresses (no SMTPUTF8): {mail_from}, "
                    f"{', '.join(recipients)}"
                )
            options.append("SMTPUTF8")
        try:
            code, resp = conn.mail(mail_from, options)
        except (smtplib.SMTPServerDisconnected, ConnectionError):
            return False
        if code == 421:  # the server is closing this (reused) channel: like a drop before we started
            return False
        if code != 250:
            self._reset()
            raise self._refusal(code, resp, f"sender {mail_from}")
        refused = []
        for rcpt in recipients:
            code, resp = conn.rcpt(rcpt)
            if code not in (250, 251):
                refused.append((code, rcpt, _words(resp)))
        if refused:
            self._reset()
            worst = max(code for code, _, _ in refused)
            detail = "; ".join(f"{r}: {c} {w}" for c, r, w in refused)
            raise self._refusal(worst, detail, "recipients (nothing was sent to anyone)")
        code, resp = conn.data(raw)
        if code != 250:
            self._reset()
            raise self._refusal(code, resp, "the message")
        return True

    def _reset(self) -> None:
        try:
            if self._conn is not None:
                self._conn.rset()
        except (smtplib.SMTPException, OSError):
            self._drop(polite=False)

    def _refusal(self, code: int, resp: bytes | str, what: str) -> errors.LifeboatError:
        if code == 421:
            self._drop(polite=False)
        text = f"{self.where} refused {what}: {code} {_words(resp)}"
        if 500 <= code < 600:
            return errors.SendRejected(text)
        return errors.SendDeferred(text, fix="Lifeboat retries later")

    def _translate(self, exc: BaseException) -> errors.LifeboatError:
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            return errors.AuthRequired(
                f"{self.where} rejected the login for {self.username}: "
                f"{exc.smtp_code} {_words(exc.smtp_error)}",
                fix="check the backup relay's user name and the password saved in the keystore",
            )
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return errors.SendDeferred(
                f"{self.where}: {exc}", fix="the relay does not offer login: check backup_smtp_username"
            )
        if isinstance(exc, ssl.SSLCertVerificationError):
            return errors.SendDeferred(
                f"{self.where} has a certificate Lifeboat cannot trust: {exc.verify_message}",
                fix="set backup_ca_file to the CA that signed the relay's certificate",
            )
        if isinstance(exc, ssl.SSLError):
            return errors.SendDeferred(f"{self.where}: TLS failed: {exc}", fix="check backup_smtp_security")
        if isinstance(exc, smtplib.SMTPResponseException):
            return self._refusal(exc.smtp_code, exc.smtp_error, "the connection")
        if isinstance(exc, TimeoutError | socket.timeout) or isinstance(exc.__context__, TimeoutError):
            return errors.SendDeferred(f"{self.where} did not answer within {self.timeout:g} s")
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            return errors.SendDeferred(f"{self.where} dropped the connection: {exc or 'no reason'}")
        if isinstance(exc, OSError):
            return errors.SendDeferred(f"{self.where} cannot be reached: {exc.strerror or exc}")
        return errors.SendDeferred(f"{self.where}: unexpected {type(exc).__name__}: {exc}")

    # ---- probing --------------------------------------------------------------------------

    def probe(self) -> None:
        """A fresh connection: greeting, EHLO, TLS and NOOP (no login, no mail). It does not depend on
        Microsoft, so it doubles as the failover's reference probe. Raises Unreachable."""
        try:
            conn = self._open(login=False)
            try:
                code, resp = conn.noop()
                if code != 250:
                    raise errors.Unreachable(f"{self.where} answered NOOP with {code} {_words(resp)}")
                conn.quit()
            finally:
                conn.close()
        except errors.Unreachable:
            raise
        except Exception as exc:
            err = exc if isinstance(exc, errors.LifeboatError) else self._translate(exc)
            raise errors.Unreachable(str(err)) from exc
