"""Shared pieces of the window tests: an Xvfb display, a real store file, a request counter, the child run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests import corpus

ROOT = Path(__file__).resolve().parents[2]
ASSETS = corpus.ASSETS
ARTIFACTS = ROOT / "tests" / "artifacts"
# What a whole-app test (tray, notifications, window) needs, and its marks: e2e, a safety-net timeout,
# and a skip naming what is missing.
WHOLE_APP_NEEDS = ("Xvfb", "dbus-daemon", "dunst", "trayer")
WHOLE_APP_MARKS = [
    pytest.mark.e2e,
    pytest.mark.timeout(900),  # a safety net against hangs only
    pytest.mark.skipif(any(shutil.which(n) is None for n in WHOLE_APP_NEEDS),
                       reason="needs Xvfb, dbus-daemon, dunst and trayer (debian-packages.txt)"),
]
CHILD = Path(__file__).resolve().parent / "window_child.py"
PYTHON = sys.executable
GIF = bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b")


@contextmanager
def xvfb(size: str = "1280x800x24") -> Iterator[str]:
    """A private X display (Xvfb picks a free number and tells us through -displayfd)."""
    read, write = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write), "-screen", "0", size, "-nolisten", "tcp", "-noreset"],
        pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    os.close(write)
    try:
        with os.fdopen(read) as fh:
            number = fh.readline().strip()
        if not number:
            raise RuntimeError("Xvfb did not start (is the xvfb package installed?)")
        yield f":{number}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


class Counter:
    """A local HTTP server that counts every request (any path): the 'remote host' of the tests."""

    def __init__(self) -> None:
        hits: list[str] = []
        self.hits = hits

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/__count":
                    body = json.dumps(len(hits)).encode()
                else:
                    hits.append(self.path)
                    body = GIF
                self.send_response(200)
                ctype = "application/json" if self.path == "/__count" else "image/gif"
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def html_message(n: int, subject: str, html: str, *, sender: str = "Sender <sender@example.com>") -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "Me <me@example.org>"
    msg["Subject"] = subject
    msg["Message-ID"] = f"<vector-{n}@tests.example>"
    msg["Date"] = format_datetime(datetime(2026, 1, 1, tzinfo=UTC))
    msg.set_content("see the HTML part")
    msg.add_alternative(html, subtype="html")
    return msg.as_bytes()


def run_child(cfg: dict[str, Any], display: str, key_hex: str, name: str) -> dict[str, Any]:
    """Run the window in a child process with `cfg`; returns what its driver recorded."""
    out = ARTIFACTS / name
    out.mkdir(parents=True, exist_ok=True)
    cfg = {**cfg, "out": str(out)}
    cfg_path = out / "config.json"
    cfg_path.write_text(json.dumps(cfg))
    env = {k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")}
    env.update(DISPLAY=display, LIFEBOAT_DB_KEY=key_hex, QTWEBENGINE_DISABLE_SANDBOX="1",
               no_proxy="*", NO_PROXY="*")
    for proxy in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        env.pop(proxy, None)
    proc = subprocess.run([PYTHON, str(CHILD), str(cfg_path)], env=env, capture_output=True, text=True,
                          timeout=900, cwd=ROOT)
    (out / "child.log").write_text(proc.stdout + "\n" + proc.stderr)
    result_path = out / "result.json"
    if not result_path.exists():
        raise AssertionError(
            f"the window process wrote no result (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(result_path.read_text())
    assert result.get("ok"), result.get("error")
    return result
