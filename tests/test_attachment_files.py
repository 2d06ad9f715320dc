"""Opened attachments (decrypted copies of cached mail) on disk: private, under the data folder, and gone
after the app, also after a crash. Through the bridge's real "Open" and the real desktop App."""

from __future__ import annotations

import os
import queue
import stat
import tempfile
import threading
from pathlib import Path

import pytest

from desktop.app import App
from desktop.config import Config
from sync import mime
from sync.errors import ConfigError
from sync.model import Folder
from sync.store import Store
from ui.attachment_files import OPENED, OpenedFolder
from ui.bridge import Bridge


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def loose_umask():
    old = os.umask(0o022)  # the usual umask: without care, folders 0755 and files 0644
    yield
    os.umask(old)


def test_open_writes_a_private_copy_under_the_data_folder(tmp_path, monkeypatch, loose_umask):
    """Tried: "Open" on a PDF attachment under a umask of 022, with the system temp folder watched: the
    copy is under the data folder's opened/ (0700), in its own 0700 subfolder, 0600 itself, and nothing
    is written to the system temp folder (where other users can see names, and nothing removes it)."""
    systmp = tmp_path / "systmp"
    systmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(systmp))
    home = tmp_path / "home"
    store = Store.open(tmp_path / "cache.db", os.urandom(32))
    try:
        store.upsert_folders([Folder("inbox", "Inbox", well_known="inbox")])
        out = mime.build(sender="a@example.com", to=["me@example.org"], subject="payslip", text="see",
                         attachments=[("payslip.pdf", "application/pdf", b"%PDF-1.4 salary")])
        mid = store.put_message("inbox", "p-1", out.raw)
        handed: list[str] = []
        bridge = Bridge(store, queue.Queue(), me="me@example.org", open_path=handed.append,
                        opened=home / OPENED)
        assert bridge.open_attachment(mid, 0) == {"opened": "payslip.pdf"}
    finally:
        store.close()
    [path] = map(Path, handed)
    assert path.parent.parent == home / OPENED and path.read_bytes() == b"%PDF-1.4 salary"
    assert (mode(home / OPENED), mode(path.parent), mode(path)) == (0o700, 0o700, 0o600)
    assert list(systmp.iterdir()) == []


def test_a_folder_that_is_not_private_is_refused(tmp_path):
    """Tried: opened/ replaced by a symlink to a folder others can read (planted or left over): refused
    with a clear error, nothing written through the link."""
    public = tmp_path / "public"
    public.mkdir(mode=0o755)
    (tmp_path / OPENED).symlink_to(public)
    with pytest.raises(ConfigError) as err:
        OpenedFolder(tmp_path / OPENED).write("a.pdf", b"x")
    assert "not a private folder" in str(err.value) and err.value.fix
    assert list(public.iterdir()) == []


def run_app(home: Path, during=None) -> None:
    """The real desktop App over `home` (no window, no display, a provider that refuses): started, then
    `during(app)`, then Quit, as the tray's Quit does. In a thread so it installs no signal handlers."""
    cfg = Config(data_dir=str(home), username="me@example.org", graph_url="http://127.0.0.1:9/v1.0",
                 authority_url="http://127.0.0.1:9/{tenant}")
    failed: list[BaseException] = []

    def started(app: App) -> None:
        if during is not None:
            during(app)
        app.quit()

    def target() -> None:
        try:
            App(cfg, key=b"k" * 32, tokens=object(), show_window=False, on_started=started).run()
        except BaseException as exc:  # handed to the test
            failed.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    assert not failed, failed


def test_a_crash_leaves_opened_copies_only_until_the_next_start(tmp_path, monkeypatch, loose_umask):
    """Tried: decrypted copies left in opened/ by a run that crashed (never cleaned up); the next start of
    the app deletes them before anything else; and copies opened while the app runs are gone after Quit."""
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    home = tmp_path / "home"
    folder = OpenedFolder(home / OPENED)
    left = [folder.write("payslip.pdf", b"%PDF secret"), folder.write("scan.png", b"\x89PNG")]
    seen: dict[str, list[Path]] = {}

    def during(app: App) -> None:
        seen["at start"] = [p for p in (home / OPENED).rglob("*") if p.is_file()]
        seen["opened"] = [app.opened.write("contract.docx", b"PK")]

    run_app(home, during)
    assert all(not p.exists() for p in left) and seen["at start"] == []
    assert seen["opened"][0].parent.parent == home / OPENED
    assert [p for p in (home / OPENED).rglob("*")] == []  # gone at exit too
