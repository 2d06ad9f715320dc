"""The simulator's local certificate authority: a CA made once per data dir, and a server cert for 127.0.0.1.

Main type: `LocalCA`. Invariants: the CA key never leaves `data_dir` (mode 0600); `ca.pem` is what a
client must trust; the server certificate is signed by that CA and names 127.0.0.1 and localhost (and
any extra host names asked for, e.g. login.microsoftonline.com for a test in its own network namespace).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass
class LocalCA:
    """A CA in `data_dir` (created on first use) that issues the simulator's TLS certificate."""

    data_dir: Path

    @property
    def ca_path(self) -> Path:
        return self.data_dir / "ca.pem"

    @property
    def _ca_key_path(self) -> Path:
        return self.data_dir / "ca-key.pem"

    def ensure(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """Load the CA from `data_dir`, or create and write it the first time."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.ca_path.exists() and self._ca_key_path.exists():
            cert = x509.load_pem_x509_certificate(self.ca_path.read_bytes())
            key = serialization.load_pem_private_key(self._ca_key_path.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError(
                    f"{self._ca_key_path} is not an EC key; delete ca.pem and ca-key.pem to remake"
                )
            return cert, key
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Lifeboat simulator local CA")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        _write_private(self._ca_key_path, _pem_key(key))
        self.ca_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cert, key

    def server_context(self, names: tuple[str, ...] = ()) -> ssl.SSLContext:
        """An SSL server context with a fresh certificate for 127.0.0.1/localhost (and `names`) signed by
        the CA."""
        ca_cert, ca_key = self.ensure()
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                        x509.DNSName("localhost"),
                        *(x509.DNSName(n) for n in names if n != "localhost"),
                    ]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        cert_path = self.data_dir / "server.pem"
        key_path = self.data_dir / "server-key.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_private(key_path, _pem_key(key))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(cert_path, key_path)
        return ctx
