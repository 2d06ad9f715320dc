"""A throwaway code-signing PKI for the MSI tests, made with the openssl command: a root CA, a
code-signing certificate and a time-stamping authority certificate under it, and a tiny local RFC 3161
time-stamping server (`openssl ts -reply` behind http.server) for `osslsigncode sign -ts`.

Nothing here is trusted by the machine: only `osslsigncode verify -CAfile <ca.pem>` trusts it.
"""

from __future__ import annotations

import http.server
import re
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

EXTENSIONS = """[codesign]
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=codeSigning
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
[tsa]
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=critical,timeStamping
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
"""
TS_CONFIG = """[tsa]
default_tsa = tsa1
[tsa1]
serial = {serial}
crypto_device = builtin
signer_digest = sha256
default_policy = 1.3.6.1.4.1.55555.1
other_policies = 1.3.6.1.4.1.55555.2
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""
SIGNER_CN = "Lifeboat Test Code Signing"


@dataclass(frozen=True)
class TestPki:
    ca: Path
    cert: Path
    key: Path
    tsa_cert: Path
    tsa_key: Path
    ts_config: Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_pki(folder: Path) -> TestPki:
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = folder / "ca.pem", folder / "ca.key"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca),
             "-days", "2", "-subj", "/CN=Lifeboat Test Root CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    ext = folder / "ext.cnf"
    ext.write_text(EXTENSIONS)
    for name, cn in (("codesign", SIGNER_CN), ("tsa", "Lifeboat Test Time Stamping")):
        csr = folder / f"{name}.csr"
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(folder / f"{name}.key"),
                 "-out", str(csr), "-subj", f"/O=Lifeboat Test/CN={cn}")
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
                 "-days", "2", "-extfile", str(ext), "-extensions", name, "-out", str(folder / f"{name}.pem"))
    (folder / "tsaserial").write_text("01\n")
    ts_config = folder / "ts.cnf"
    ts_config.write_text(TS_CONFIG.format(serial=folder / "tsaserial"))
    return TestPki(ca, folder / "codesign.pem", folder / "codesign.key", folder / "tsa.pem",
                   folder / "tsa.key", ts_config)


@contextmanager
def timestamp_server(pki: TestPki) -> Iterator[str]:
    """An RFC 3161 TSA on 127.0.0.1 for the duration; yields its URL."""
    lock = threading.Lock()  # openssl ts keeps its serial number in one file

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            query = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with tempfile.TemporaryDirectory() as tmp, lock:
                (Path(tmp) / "q").write_bytes(query)
                proc = subprocess.run(
                    ["openssl", "ts", "-reply", "-config", str(pki.ts_config), "-queryfile", f"{tmp}/q",
                     "-signer", str(pki.tsa_cert), "-inkey", str(pki.tsa_key), "-chain", str(pki.ca),
                     "-out", f"{tmp}/r"], capture_output=True, check=False)
                reply = (Path(tmp) / "r").read_bytes() if proc.returncode == 0 else b""
            if not reply:
                self.send_error(500)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/timestamp-reply")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def verify(path: Path, pki: TestPki) -> subprocess.CompletedProcess[str]:
    """`osslsigncode verify` against the test CA only (and the test TSA for the timestamp)."""
    return subprocess.run(["osslsigncode", "verify", "-in", str(path), "-CAfile", str(pki.ca),
                           "-TSA-CAfile", str(pki.ca)], capture_output=True, text=True, check=False)


def signer_subjects(output: str) -> list[str]:
    """The subject of each signature's signer (not of its timestamp's), primary signature first."""
    return re.findall(r"Signer's certificate:\s*-+\s*Signer #0:\s*Subject: (.*)", output)


def digest_intact(output: str) -> bool:
    """The file's bytes still match what its (other publisher's) signature covers."""
    cur = re.search(r"Current message digest\s*:\s*(\w+)", output)
    calc = re.search(r"Calculated message digest\s*:\s*(\w+)", output)
    return bool(cur and calc and cur.group(1) == calc.group(1))
