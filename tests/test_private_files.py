"""A curious local user, through the real CLI in its own process under a umask of 022: everything `lifeboat`
creates in its data folder must be 0700 (folders) or 0600 (files), and its log, at DEBUG, must hold no
subject, address, search query or file path from a realistic flow: sign-in, sync with the simulator,
import-eml, search, show, send to the outbox, the headless app sending it, and commands that fail.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import stat
import subprocess
import time
from pathlib import Path

from sync.store import Store, cache_path
from tests.syncsim import PY, REPO, SimProcess, clean_env, write_config

USER = "adele.vance@contoso.test"  # the simulator's mailbox (tests/syncsim.write_config)
SUBJECT = "Quarterly capybara merger"
RECIPIENT = "Zelda Quux <zelda.quux@fabrikam.example>"
IMPORTED_SUBJECT = "Wombat appraisal"
IMPORTED_SENDER = "hiram.wombat@wombat.example"
QUERY = "appraisal"
SIMULATOR = {"messages": 20, "seed": 3}  # the conftest `sim` fixture's mailbox


def lifeboat(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([PY, "-m", "desktop.cli", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600, umask=0o022)
    assert "Traceback" not in proc.stderr, proc.stderr
    if check:
        assert proc.returncode == 0, f"lifeboat {' '.join(args)}: {proc.stdout}\n{proc.stderr}"
    return proc


def loose(root: Path) -> list[str]:
    """Everything under `root` (itself included) that another user could read, write or enter."""
    found = []
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode & 0o077:
            found.append(f"{oct(mode)} {path.relative_to(root.parent)}")
    return found


def test_a_realistic_flow_leaves_only_private_files_and_no_user_content_in_the_log(
        sim: SimProcess, tmp_path: Path) -> None:
    """Tried: under umask 022, `login`, `sync --once`, `import-eml` of a file in a folder with a telling
    name, `search`, `show`, a failing search, a refused and a good `send`, `run --headless` until the
    outbox item is sent, `status`, `doctor`, all with LIFEBOAT_LOG_LEVEL=DEBUG. Then: the data folder,
    cache, logs and every file in them are 0700/0600; no log line holds the subjects, addresses, query or
    paths used, nor any synced message's subject or sender."""
    home = tmp_path / "Lifeboat Data"
    key = secrets.token_hex(32)
    config = write_config(tmp_path / "c.toml", sim)
    env = clean_env({"LIFEBOAT_HOME": str(home), "LIFEBOAT_CONFIG": str(config),
                     "LIFEBOAT_DB_KEY": key, "LIFEBOAT_INSECURE_TOKEN_CACHE": "1",
                     "LIFEBOAT_POLICY": str(tmp_path / "no-policy.toml"), "LIFEBOAT_LOG_LEVEL": "DEBUG"})
    secret_folder = tmp_path / "Private Wombat Letters"
    secret_folder.mkdir()
    eml = secret_folder / "wombat-appraisal.eml"
    eml.write_bytes(f"From: Hiram Wombat <{IMPORTED_SENDER}>\r\nTo: {USER}\r\nSubject: {IMPORTED_SUBJECT}\r\n"
                    "Date: Sat, 28 Nov 2026 12:00:00 +0000\r\nMessage-ID: <wombat-1@wombat.example>\r\n\r\n"
                    "The appraisal is attached in spirit.\r\n".encode())

    lifeboat(env, "login", "--device-code")
    lifeboat(env, "sync", "--once", "--quiet")
    lifeboat(env, "import-eml", str(eml))
    found = json.loads(lifeboat(env, "search", QUERY, "--json").stdout)
    assert found["count"] == 1
    lifeboat(env, "show", str(found["results"][0]["id"]))
    assert lifeboat(env, "search", "( * )", check=False).returncode == 1
    assert lifeboat(env, "send", "--to", "zelda.quux-at-fabrikam", "--body", "x", check=False).returncode == 1
    lifeboat(env, "send", "--to", RECIPIENT, "--subject", SUBJECT, "--body", "Numbers attached.")
    app = subprocess.Popen([PY, "-m", "desktop.cli", "run", "--headless"], cwd=REPO, env=env, umask=0o022,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        state = ""
        deadline = time.monotonic() + 300  # a safety net for a hang, not a performance limit
        while state != "sent" and time.monotonic() < deadline and app.poll() is None:
            time.sleep(0.5)
            state = json.loads(lifeboat(env, "outbox", "--json").stdout)["items"][0]["state"]
        assert state == "sent"
    finally:
        app.send_signal(signal.SIGTERM)
        _, err = app.communicate(timeout=120)
    assert app.returncode == 0 and "Traceback" not in err, err
    lifeboat(env, "status")
    lifeboat(env, "doctor")

    assert {"cache", "logs", "lifeboat.lock", "msal_cache.bin"} <= {p.name for p in home.iterdir()}

    with Store.open(cache_path(home, USER), bytes.fromhex(key)) as store:
        synced = [store.message(r["id"]) for r in store.message_places()]
    mailbox = {m[k] for m in synced if m for k in ("subject", "sender_email") if m[k] and len(m[k]) >= 8}
    assert len(mailbox) >= 10  # the simulator's mail was synced, so its words could have leaked
    log = "\n".join(p.read_text(encoding="utf-8") for p in (home / "logs").glob("lifeboat.log*"))
    secrets_ = [SUBJECT, "capybara", "zelda", "fabrikam", IMPORTED_SUBJECT, "wombat", QUERY, USER,
                str(tmp_path), "Lifeboat Data", *mailbox]
    leaked = [s for s in secrets_ if s.lower() in log.lower()]
    assert (loose(home), leaked) == ([], []), "readable by others, and user content in the log"
    assert "DEBUG sync.sources.graph" in log and "1 sent" in log  # the flow was logged, at DEBUG


def test_private_helpers_tighten_what_an_older_version_left_loose(tmp_path: Path) -> None:
    """Tried: a data folder and a database with its -wal and -shm made 0755/0644 (as before this fix, under
    umask 022), and
    a new nested folder: tightened to 0700/0600; a symlink is left alone (not ours to chmod)."""
    from sync.private_files import private_database, private_dir, private_file

    old = tmp_path / "home"
    old.mkdir(mode=0o755)
    os.chmod(old, 0o755)
    for name in ("cache.db", "cache.db-wal", "cache.db-shm"):
        (old / name).write_bytes(b"")
        os.chmod(old / name, 0o644)
    private_dir(old)
    private_database(old / "cache.db")
    assert stat.S_IMODE(old.stat().st_mode) == 0o700
    assert [stat.S_IMODE((old / n).stat().st_mode) for n in ("cache.db", "cache.db-wal", "cache.db-shm")] == [
        0o600] * 3
    nested = private_dir(tmp_path / "a" / "b" / "c")
    made = (nested.parent.parent, nested.parent, nested)
    assert [stat.S_IMODE(p.stat().st_mode) for p in made] == [0o700] * 3
    target = tmp_path / "shared.txt"
    target.write_text("x")
    os.chmod(target, 0o644)
    (tmp_path / "link").symlink_to(target)
    private_file(tmp_path / "link")
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
