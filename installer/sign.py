"""Authenticode signing of the payload and the MSI with osslsigncode (Debian `osslsigncode`).

`sign_payload` signs every PE file (by content: MZ + PE header, whatever the extension) that carries no
signature yet; files already signed by their publisher (the PSF's python313.dll, Microsoft's WebView2
loader) keep their own signature. `sign_file` then signs the MSI after its last table patch. SHA-256,
and an RFC 3161 timestamp when a TSA URL is given, so signatures stay valid after the certificate expires.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sync.errors import LifeboatError

TOOL = "osslsigncode"
PE_SECURITY_DIRECTORY = 4  # IMAGE_DIRECTORY_ENTRY_SECURITY: where the Authenticode signature sits


class SignError(LifeboatError):
    pass


@dataclass(frozen=True)
class Signer:
    cert: Path  # PEM (or DER/SPC) certificate chain of the code-signing certificate
    key: Path  # its private key (PEM or DER)
    timestamp_url: str | None = None  # an RFC 3161 time-stamping authority
    key_pass_file: Path | None = None  # a file holding the key's passphrase, if it has one
    description: str = "Lifeboat"
    url: str = "https://github.com/lifeboat-mail/lifeboat"

    @classmethod
    def from_options(cls, cert: Path | None, key: Path | None, timestamp_url: str | None,
                     key_pass_file: Path | None = None) -> Signer | None:
        """From command-line options, else LIFEBOAT_SIGN_CERT / _KEY / _TIMESTAMP_URL / _KEY_PASS_FILE."""
        env = os.environ
        cert = cert or (Path(env["LIFEBOAT_SIGN_CERT"]) if env.get("LIFEBOAT_SIGN_CERT") else None)
        key = key or (Path(env["LIFEBOAT_SIGN_KEY"]) if env.get("LIFEBOAT_SIGN_KEY") else None)
        timestamp_url = timestamp_url or env.get("LIFEBOAT_SIGN_TIMESTAMP_URL") or None
        if key_pass_file is None and env.get("LIFEBOAT_SIGN_KEY_PASS_FILE"):
            key_pass_file = Path(env["LIFEBOAT_SIGN_KEY_PASS_FILE"])
        if cert is None and key is None:
            return None
        if cert is None or key is None:
            raise SignError("signing needs both a certificate and its key",
                            fix="pass --sign-cert and --sign-key (or LIFEBOAT_SIGN_CERT, LIFEBOAT_SIGN_KEY)")
        for path in (cert, key, *([key_pass_file] if key_pass_file else [])):
            if not path.is_file():
                raise SignError(f"signing: {path} is not a readable file", fix="give the path of the file")
        if shutil.which(TOOL) is None:
            raise SignError(f"{TOOL} not found", fix="apt-get install osslsigncode")
        return cls(cert, key, timestamp_url, key_pass_file)


def is_pe(path: Path) -> bool:
    with path.open("rb") as fh:
        head = fh.read(0x40)
        if len(head) < 0x40 or head[:2] != b"MZ":
            return False
        fh.seek(int.from_bytes(head[0x3C:0x40], "little"))
        return fh.read(4) == b"PE\0\0"


def is_signed(path: Path) -> bool:
    """Whether a PE file carries an Authenticode signature (a non-empty security data directory)."""
    data = path.read_bytes()
    pe = int.from_bytes(data[0x3C:0x40], "little")
    optional = pe + 24
    magic = int.from_bytes(data[optional:optional + 2], "little")
    directories = optional + (112 if magic == 0x20B else 96)  # PE32+ or PE32
    entry = directories + 8 * PE_SECURITY_DIRECTORY
    size = int.from_bytes(data[entry + 4:entry + 8], "little")
    return len(data) >= entry + 8 and size > 0


def sign_file(path: Path, signer: Signer) -> None:
    """Sign one PE or MSI file in place (osslsigncode writes a new file, which then replaces it)."""
    out = path.with_name(path.name + ".signed")
    cmd = [TOOL, "sign", "-certs", str(signer.cert), "-key", str(signer.key), "-h", "sha256",
           "-n", signer.description, "-i", signer.url]
    if signer.key_pass_file:
        cmd += ["-readpass", str(signer.key_pass_file)]
    if signer.timestamp_url:
        cmd += ["-ts", signer.timestamp_url]
    proc = subprocess.run([*cmd, "-in", str(path), "-out", str(out)], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0 or not out.exists():
        out.unlink(missing_ok=True)
        raise SignError(f"signing {path.name} failed: {(proc.stderr or proc.stdout).strip()[-1500:]}",
                        fix="check the certificate, the key and the timestamp server's URL")
    out.replace(path)


def sign_payload(payload: Path, signer: Signer) -> list[Path]:
    """Sign every unsigned PE file under `payload`; returns the files it signed."""
    signed = []
    for path in sorted(p for p in payload.rglob("*") if p.is_file()):
        if is_pe(path) and not is_signed(path):
            sign_file(path, signer)
            signed.append(path)
    return signed
