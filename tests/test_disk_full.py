"""Issue 11 item 10: a full disk under the data folder, on a real tmpfs (not a simulated error).

The scenarios run in a private mount namespace (tests/disk_full_ns.py, under `unshare -m`): there the
data folder is a tmpfs of a few MB that the import or the sync fills, so SQLite meets the kernel's ENOSPC
exactly as on a laptop whose disk is full. `import` drives the real CLI; `continuity` drives the running
engine's ticks (sync.continuity.Continuity) with the real Graph source and routes against the simulator,
a real SMTP relay, and the headless notifier.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(600)  # safety net against hangs only


def _can_mount_tmpfs(where: Path) -> str:
    """'' when a tmpfs can be mounted in a private mount namespace here, else what is missing."""
    if not shutil.which("unshare") or not shutil.which("mount"):
        return "needs unshare and mount (util-linux)"
    if os.geteuid() != 0:
        return "needs root (or CAP_SYS_ADMIN) to create a mount namespace and mount a tmpfs in it"
    where.mkdir(parents=True, exist_ok=True)
    probe = subprocess.run(["unshare", "-m", "mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot mount a tmpfs in a private mount namespace here: {probe.stderr.strip()}"
    return ""


def _scenario(name: str, work: Path) -> dict[str, Any]:
    missing = _can_mount_tmpfs(work / "probe")
    if missing:
        pytest.skip(missing)
    out = subprocess.run(["unshare", "-m", sys.executable, str(ROOT / "tests" / "disk_full_ns.py"), name,
                          str(work)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-4000:]
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _scenario("import", tmp_path_factory.mktemp("diskfull-import"))


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _scenario("continuity", tmp_path_factory.mktemp("diskfull-continuity"))


def _json(run: dict[str, Any]) -> Any:
    assert run["rc"] == 0, run["stderr"]
    return json.loads(run["stdout"])


def _stored(imported: dict[str, Any]) -> int:
    """How many messages the failed import says it stored ("... stopped after storing N of 400 ...")."""
    return int(imported["import"]["stderr"].split("stopped after storing ")[1].split(" of ")[0])


# ---- lifeboat import-eml ------------------------------------------------------------------------------


def test_import_on_a_full_disk_says_where_how_much_room_and_how_many_were_stored(imported: dict[str, Any]):
    """Tried: `lifeboat import-eml` of 400 messages (about 10 KB of text each) into a cache on a 4 MB tmpfs.
    It must stop with exit 1 and one line naming the cache's folder, the free space and how many of the
    400 were stored, never "unexpected error" or a traceback (nor logging's own traceback when the log
    file cannot grow either); the usual summary says the same count."""
    run = imported["import"]
    assert run["rc"] == 1
    assert "Traceback" not in run["stderr"] and "unexpected error" not in run["stderr"]
    assert "Logging error" not in run["stderr"]
    [line] = run["stderr"].splitlines()
    assert imported["free_after"] == 0  # the disk really filled
    assert line.startswith(f"lifeboat: cannot write the cache in {imported['home']}/cache: the disk is full "
                           "(0 bytes free); import-eml stopped after storing "), line
    stored = _stored(imported)
    assert 0 < stored < 400 and f"storing {stored} of 400 messages" in line
    assert f"{400 - stored} were not stored" in line
    assert "run the same import again" in line  # the fix: what to do, and that nothing is lost
    assert f"{stored} stored" in run["stdout"]


def test_what_was_stored_before_the_disk_filled_is_intact_and_searchable(imported: dict[str, Any]):
    """Tried: after the failed import, on the still-full disk: `status` counts exactly the messages the
    import said it stored, the first message is found by `search`, the one never stored is not, and
    `doctor` finds the cache passing cipher_integrity_check and quick_check."""
    stored = _stored(imported)
    assert _json(imported["status"])["messages"] == stored
    assert _json(imported["search_first"])["count"] == 1
    assert _json(imported["search_last"])["count"] == 0
    doctor = _json(imported["doctor"])
    [cache] = [c for c in doctor["checks"] if c["name"] == "cache"]
    assert cache["status"] == "ok" and "passes cipher_integrity_check and quick_check" in cache["detail"]


def test_the_same_import_after_space_came_back_stores_the_rest_once(imported: dict[str, Any]):
    """Tried: the fix the message gives: grow the disk, run the same import again. Every message is then
    stored exactly once: the ones stored before are recognised as already there."""
    stored = _stored(imported)
    again = imported["again"]
    assert again["rc"] == 0, again["stderr"]
    assert f"{stored} already there" in again["stdout"] and "400 stored" in again["stdout"]
    assert _json(imported["status_again"])["messages"] == 400
    assert _json(imported["search_last_again"])["count"] == 1


def test_a_disk_filled_while_lifeboat_was_not_running_is_not_called_damage(imported: dict[str, Any]):
    """Tried: a cache whose disk another program filled to the last byte while Lifeboat was closed (SQLite
    cannot even create its -wal/-shm files, and answers "disk I/O error"). The error must say the disk is
    full, not that the cache is damaged with the advice to move it aside or delete it (which would throw
    away the imported mail and the outbox), and must leave the file as it was; the log file, which cannot
    take a line either, must not add logging's own traceback to the one-line error."""
    assert imported["created"]["rc"] == 0, imported["created"]["stderr"]
    assert imported["prefilled_free"] == 0
    run = imported["prefilled"]
    assert run["rc"] == 1 and "Traceback" not in run["stderr"] and "Logging error" not in run["stderr"]
    assert "the disk is full (0 bytes free)" in run["stderr"]
    assert "damaged" not in run["stderr"] and "delete it" not in run["stderr"]
    assert "storing 0 of 400 messages" in run["stderr"]
    assert imported["prefilled_unchanged"]


# ---- the running app -------------------------------------------------------------------------------------


def test_a_full_disk_pauses_sync_without_a_failing_loop_and_the_outbox_still_sends(running: dict[str, Any]):
    """Tried: the sync tick of the running engine fetches 120 messages of ~10 KB into a cache whose disk
    has 700 KB left. The tick must not raise (the loop would log a traceback and retry every 5 s); sync is
    paused with the folder and the free space, said once through the Notifier port, shown in the window's
    banner (the view model's status) and in `lifeboat status --json`; the next ticks wait without a
    second notification; the health tick does not raise either.
    Then, with 0 bytes free, the user queues a message: it is accepted, and the outbox tick sends it
    through the primary route (the simulator's Graph receives it, SENT is committed); in continuity mode a
    second one goes through the backup relay, and back to normal it is reconciled."""
    assert running["sync1"]["raised"] is None and running["sync1"]["delay"] <= 15
    assert running["free_after_sync1"] == 0  # the disk really filled
    paused = running["setting"]
    assert paused is not None and paused["folder"].endswith("/home/cache") and paused["free_bytes"] == 0
    assert running["banner"]["disk_full"] == paused
    assert _json(running["status_cli"])["sync_disk_full"] == paused
    [note] = [json.loads(n) for n in running["notes_after_pause"]]
    assert note["notify"] == "Lifeboat: the disk is full" and "Sync is paused" in note["body"]
    assert "0 bytes free" in note["body"] and "/home/" not in note["body"]  # no file paths in notices
    assert running["sync2"]["raised"] is None and running["health"]["raised"] is None
    assert running["notes_after_sync2"] == 1

    assert "error" not in running["queued"], running["queued"]
    assert running["outbox1"]["raised"] is None
    assert running["sent_primary"] == {running["queued"]["message_id"]: "primary"}
    assert running["provider_sent"] == [running["queued"]["message_id"]]
    assert running["mode"] == "continuity" and "error" not in running["queued2"], running["queued2"]
    assert running["outbox2"]["raised"] is None and running["relay_received"] == 1
    assert running["sync_in_continuity"]["raised"] is None
    assert running["mode_after"] == "normal"
    assert running["free_before_resume"] == 0  # all of that happened on the full disk


def test_sync_resumes_by_itself_when_space_comes_back(running: dict[str, Any]):
    """Tried: the filler file is deleted. The next sync tick sees the room, clears the pause (banner and
    status), says so, and completes the sync: every message with its body, searchable, the cache passing
    its integrity checks, the outbox's two messages sent."""
    assert running["free_after_delete"] > 2 * 1024 * 1024
    assert running["sync3"]["raised"] is None
    assert running["setting_after"] is None
    assert running["banner_after"] is None
    notes = [json.loads(n)["notify"] for n in running["notes"]]
    assert notes.count("Lifeboat: the disk is full") == 1 and notes[-1] == "Lifeboat: sync resumed"
    assert running["cached_with_mime"] == running["cached"] == running["remote_inbox"]
    assert running["search_last"] == 1 and running["check"] == []


def test_a_token_renewal_on_the_full_disk_keeps_the_sign_in(running: dict[str, Any]):
    """Tried: access tokens that live 60 s, so every request renews one and the authority rotates the
    refresh token (revoking the old one) while the disk has 0 bytes free. msal-extensions' file lock
    (`open(path, "xb")`, then a write) then fails and, unhelped, leaves an empty lock file that blocks every
    later save, and msal's half-applied answer loses the new refresh token: the next renewal is refused
    (invalid_grant) and the user must sign in again. Here the sign-in must hold while the disk is full
    (the primary send above needed it), hold after space came back, leave no lock file behind, and be
    saved by then: a restart (a new MsalAuth reading only the token cache file) is still signed in."""
    assert running["sent_primary"]  # a token was renewed on the full disk for that send
    assert running["lockfile_while_full"] is False and running["lockfile_after"] is False
    assert running["sign_in_after"] == ["signed_in", ""]
    assert running["sign_in_restarted"] == ["signed_in", ""]
