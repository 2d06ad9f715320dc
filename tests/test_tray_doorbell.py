"""Single instance: a second launch rings the first one's doorbell (a real local socket between processes)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from desktop.doorbell import Doorbell

ROOT = Path(__file__).resolve().parents[1]


def test_second_launch_rings_the_first(tmp_path):
    """Tried: the app listens; another process rings; the app's on_ring runs and the caller hears 'ok'."""
    rung = threading.Event()
    bell = Doorbell(tmp_path)
    bell.listen(rung.set)
    try:
        code = ("import sys; from pathlib import Path; from desktop.doorbell import Doorbell; "
                f"sys.exit(0 if Doorbell(Path({str(tmp_path)!r})).ring() else 3)")
        proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=60)
        assert proc.returncode == 0
        assert rung.wait(10)
        assert oct((tmp_path / "doorbell.key").stat().st_mode & 0o777) == "0o600"
        assert oct((tmp_path / "doorbell.sock").stat().st_mode & 0o777) in ("0o600", "0o700")
    finally:
        bell.close()


def test_no_running_app_means_no_answer(tmp_path):
    """Tried: ring with nobody listening (no key file, then a stale key and socket); False, no exception."""
    assert Doorbell(tmp_path).ring() is False
    (tmp_path / "doorbell.key").write_bytes(os.urandom(32))
    assert Doorbell(tmp_path).ring() is False


def test_wrong_key_is_refused(tmp_path):
    """Tried: a caller with the wrong key; the app's on_ring never runs and the caller gets False."""
    rung = threading.Event()
    bell = Doorbell(tmp_path)
    bell.listen(rung.set)
    try:
        real = (tmp_path / "doorbell.key").read_bytes()
        (tmp_path / "doorbell.key").write_bytes(bytes(32))
        assert Doorbell(tmp_path).ring(timeout=2) is False
        (tmp_path / "doorbell.key").write_bytes(real)
        assert not rung.is_set()
        assert Doorbell(tmp_path).ring() is True and rung.wait(10)
    finally:
        bell.close()
