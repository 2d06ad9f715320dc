"""The `lifeboat` command line: argparse subcommands, one small function each, listed in COMMANDS.

`main(argv) -> int` is the console script. Every sync.errors.LifeboatError becomes one line
"lifeboat: <message>" on stderr and exit status 1, never a traceback; a bad argument (not text, out of
range) is refused by the parser with exit status 2. `--json` outputs are stable (documented in the
README). Logs go to <home>/logs/lifeboat.log (rotating, 0600 in a 0700 folder): identifiers and counts,
never bodies, keys, subjects, addresses, queries or file paths.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.metadata
import json
import logging
import logging.handlers
import os
import shutil
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from desktop import config as config_mod
from desktop import keys
from sync import store as store_mod
from sync.errors import ConfigError, DiskFull, LifeboatError, MessageBad
from sync.private_files import opener, private_dir, private_file
from sync.store import Store

log = logging.getLogger("lifeboat.cli")
IMPORT_FOLDER = "Imported"
IMPORT_BATCH = 100  # messages per transaction during import-eml
MIN_FREE_BYTES = 500 * 1024 * 1024  # doctor warns below this much free disk

# ------------------------------------------------------------------------------------------ plumbing


def version() -> str:
    try:
        return importlib.metadata.version("lifeboat")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def load_config(args: argparse.Namespace) -> config_mod.Config:
    """The configuration for this run (--config/--home on top of the usual layers); starts logging."""
    overrides = {"data_dir": str(args.home)} if args.home else None
    cfg = config_mod.load(Path(args.config) if args.config else None, overrides=overrides)
    setup_logging(cfg.home)
    return cfg


_handler: logging.Handler | None = None


class PrivateLog(logging.handlers.RotatingFileHandler):
    """A rotating log whose files are created 0600 (the rotated ones keep that mode when renamed)."""

    def _open(self) -> Any:
        return open(self.baseFilename, self.mode, encoding=self.encoding, errors=self.errors, opener=opener)


def setup_logging(home: Path) -> None:
    """Log to <home>/logs/lifeboat.log, rotating at 1 MB with 5 old files kept; home and logs are
    made 0700 and the log files 0600 whatever the umask (sync.private_files)."""
    global _handler
    level = log_level()
    logs = private_dir(private_dir(home) / "logs")
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
        _handler.close()
    for old in logs.glob("lifeboat.log*"):
        private_file(old)  # written loose by an older version
    _handler = PrivateLog(logs / "lifeboat.log", maxBytes=1_000_000, backupCount=5, encoding="utf-8")
    _handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(_handler)
    root.setLevel(logging.WARNING)  # libraries (msal, urllib3...) log URLs and accounts below that
    for name in OUR_LOGGERS:
        logging.getLogger(name).setLevel(level)


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
OUR_LOGGERS = ("sync", "desktop", "ui", "lifeboat")  # Lifeboat's own, which log ids and counts only


def log_level() -> int:
    """LIFEBOAT_LOG_LEVEL (DEBUG, INFO, WARNING or ERROR; default INFO): how much goes to the log."""
    name = os.environ.get("LIFEBOAT_LOG_LEVEL", "INFO").strip().upper() or "INFO"
    if name not in LOG_LEVELS:
        raise ConfigError(f"LIFEBOAT_LOG_LEVEL = {name[:20]!r} is not a log level",
                          fix=f"use one of {', '.join(LOG_LEVELS)}, or unset it")
    return int(getattr(logging, name))


def account(cfg: config_mod.Config) -> str:
    return cfg.username or "default"


def open_cache(cfg: config_mod.Config) -> Store:
    """The account's cache, opened with its key from the keystore (or LIFEBOAT_DB_KEY)."""
    name = account(cfg)
    return Store.open(store_mod.cache_path(cfg.home, name), keys.db_key(name))


def emit_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, ensure_ascii=False, sort_keys=True)
    sys.stdout.write("\n")


# ------------------------------------------------------------------------------------------ import-eml


def eml_files(paths: list[Path]) -> Iterator[tuple[Path, str | None]]:
    """(file, problem) for each file named or found (recursively, *.eml) in a folder named."""
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() == ".eml")
            if not found:
                yield path, "no .eml files in this folder"
            for p in found:
                yield p, None
        elif path.is_file():
            yield path, None
        else:
            yield path, "no such file or folder"


def cmd_import_eml(args: argparse.Namespace) -> int:
    """Store .eml files in batches of IMPORT_BATCH (one transaction each). A full disk stops it with a
    DiskFull that says how many were stored (those stay, searchable); running it again skips them."""
    cfg = load_config(args)
    stored = raw_only = again = unreadable = 0
    failed: list[tuple[Path, str]] = []
    files = list(eml_files(args.paths))
    stopped: DiskFull | None = None
    batch: list[tuple[Path, bytes]] = []
    try:
        with open_cache(cfg) as store:
            folder = store.local_folder(IMPORT_FOLDER)

            def flush() -> None:
                nonlocal stored, raw_only, again
                seen = unparsed = 0
                with store.transaction():
                    for _path, raw in batch:
                        provider_id = "eml:" + hashlib.sha256(raw).hexdigest()[:40]
                        if store.message_by_provider_id(provider_id) is not None:
                            seen += 1  # the same bytes are stored already: nothing to do
                            continue
                        message = store.message(store.put_message(folder, provider_id, raw))
                        unparsed += bool(message and not message["parse_ok"])
                stored, again, raw_only = stored + len(batch), again + seen, raw_only + unparsed
                log.info("import-eml: committed %d messages (%d in all)", len(batch), stored)
                batch.clear()

            for path, problem in files:
                found = problem is None
                if problem is None:
                    try:
                        raw = path.read_bytes()
                    except OSError as exc:
                        problem = exc.strerror or type(exc).__name__
                    else:
                        if not raw.strip():
                            problem = "the file is empty"
                if problem is not None:
                    failed.append((path, problem))
                    unreadable += found
                    continue
                batch.append((path, raw))
                if len(batch) >= IMPORT_BATCH:
                    flush()
            if batch:
                flush()
            if stored > again:
                try:
                    store.compact()  # merge the search index and return free pages after a bulk import
                except DiskFull:
                    log.warning("import-eml: the search index was not merged: the disk is full")
    except DiskFull as exc:  # the batch in hand was rolled back; the batches before it are committed
        stopped = exc
    print(f'Imported into the local folder "{IMPORT_FOLDER}": {stored} stored', end="")
    details = []
    if raw_only:
        details.append(f"{raw_only} kept raw only: could not be parsed, shown as raw text")
    if again:
        details.append(f"{again} already there")
    print(f" ({'; '.join(details)})" if details else "", end="")
    print(f", {len(failed)} failed" + (":" if failed else "."))
    for path, problem in failed:
        print(f"  {path}: {problem}")
    if stopped is not None:
        wanted = sum(problem is None for _path, problem in files)
        free = store_mod.size_text(stopped.free_bytes)
        raise DiskFull(
            f"cannot write the cache in {stopped.folder}: the disk is full ({free} free); import-eml "
            f"stopped after storing {stored} of {wanted} messages"
            + (" (those stay and are searchable)" if stored else "")
            + f", {wanted - stored - unreadable} were not stored",
            folder=stopped.folder, free_bytes=stopped.free_bytes,
            fix="free some space on that disk, then run the same import again: the messages already stored "
                "are recognised and skipped")
    return 1 if failed else 0


# ------------------------------------------------------------------------------------------ search, show


def listing(row: dict[str, Any]) -> dict[str, Any]:
    """The stable JSON shape of one message in a list (search results)."""
    keys_ = (
        "id",
        "folder_id",
        "date",
        "sender",
        "subject",
        "message_id",
        "is_read",
        "has_attachments",
        "size",
    )
    return {k: row.get(k) for k in keys_}


def cmd_search(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    with open_cache(cfg) as store:
        rows = store.search(args.query, limit=args.limit)
    if args.json:
        emit_json({"query": args.query, "count": len(rows), "results": [listing(r) for r in rows]})
        return 0
    for r in rows:
        print(f"{r['id']:>7}  {(r['date'] or '')[:16]:16}  {r['sender'][:30]:30}  {r['subject']}")
    print(f"{len(rows)} message(s)", file=sys.stderr)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    with open_cache(cfg) as store:
        message = store.message(args.id)
        if message is None:
            raise MessageBad(
                f"there is no message {args.id} in the cache", fix="find ids with `lifeboat search`"
            )
        raw = store.raw(args.id)
        parsed = store.parsed(args.id)
    if args.raw:
        if raw is None:
            raise MessageBad(f"message {args.id} has no MIME in the cache yet (only its summary)")
        sys.stdout.buffer.write(raw)
        sys.stdout.flush()
        return 0
    text = "" if parsed is None else (parsed.plain if parsed.plain is not None else parsed.text)
    if args.json:
        emit_json({**message, "text": text})
        return 0
    for label, name in (
        ("From", "sender"),
        ("To", "to_addrs"),
        ("Cc", "cc_addrs"),
        ("Date", "date"),
        ("Subject", "subject"),
        ("Folder", "folder"),
    ):
        if message.get(name):
            print(f"{label}: {message[name]}")
    for a in message["attachments"]:
        print(f"Attachment: {a['filename']} ({a['content_type']}, {a['size']} bytes)")
    print()
    print(text if parsed is not None else "(only the summary is cached; the message body is not here yet)")
    return 0


# ------------------------------------------------------------------------------------------ status, doctor


def cmd_status(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    with open_cache(cfg) as store:
        status = {"account": account(cfg), **store.status()}
        if args.json:
            status.update(sync_status(cfg, store))
            status["failover"] = failover_status(store)
        else:
            mode = failover_status(store, events=0)
            status["mode"] = f"{mode['mode']} since {mode['since']} ({mode['reason']})"
    if args.json:
        emit_json(status)
        return 0
    for name, value in status.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        print(f"{name:20} {value}")
    return 0


def failover_status(store: Store, events: int = 10) -> dict[str, Any]:
    """The mode part of `status --json`: mode, since, reason, conditions, route, recent events."""
    from sync.health import mode_json

    return mode_json(store, _utcnow(), events=events)


def nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def doctor_checks(cfg: config_mod.Config) -> list[dict[str, Any]]:
    """Each check: {name, status: ok|warn|fail, detail}."""
    checks: list[dict[str, Any]] = []

    def add(name: str, status: str, detail: str) -> None:
        checks.append({"name": name, "status": status, "detail": detail})

    ks = keys.keystore_status()
    if ks["ok"]:
        add("keystore", "ok", f"{ks['backend']} works")
    elif ks["env_key"]:
        add("keystore", "warn", f"{ks.get('problem')}; using {keys.ENV} instead")
    else:
        add("keystore", "fail", str(ks.get("problem")))
    add("sqlcipher", "ok" if store_mod.environment_ok() else "fail", "SQLCipher with FTS5")
    path = store_mod.cache_path(cfg.home, account(cfg))
    if not path.exists():
        add("cache", "ok", f"{path} does not exist yet (it is created on the first sync)")
    else:
        try:
            with open_cache(cfg) as store:
                problems = store.check()
                size = store.size_bytes()
            if problems:
                add("cache", "fail", f"{path}: " + "; ".join(problems[:5]))
            else:
                add("cache", "ok", f"{path} ({size} bytes) passes cipher_integrity_check and quick_check")
        except LifeboatError as exc:
            add("cache", "fail", str(exc))
    free = shutil.disk_usage(nearest_existing(cfg.home)).free
    add(
        "disk",
        "ok" if free >= MIN_FREE_BYTES else "warn",
        f"{free // (1024 * 1024)} MB free under {cfg.home}",
    )
    return checks


def provider_checks(cfg: config_mod.Config) -> list[dict[str, Any]]:
    """The checks that talk to the network: the authority (OIDC discovery), the sign-in, Graph (`/me`
    with the token), the mailbox (Exchange Online's inbox) and the backup relay (greeting, TLS, NOOP).
    Each says exactly what is wrong; a check that cannot run says why it was skipped."""
    checks: list[dict[str, Any]] = []

    def add(name: str, status: str, detail: str) -> None:
        checks.append({"name": name, "status": status, "detail": detail})

    if not cfg.client_id:
        add("authority", "warn", "no client_id configured, so the authority, sign-in and Graph are not "
                                 "checked (see \"Use it with your tenant\" in the README)")
    else:  # can this network reach Microsoft as Lifeboat does (trust, proxy)? then sign-in and Graph
        checks.extend(network_checks(cfg))
        _sign_in_checks(cfg, add)
    if not cfg.backup_smtp_host:
        add("relay", "warn", "no backup relay configured (backup_smtp_host): mail waits in the outbox "
                             "during an outage")
    else:
        from desktop.worker import backup_route

        try:
            route = backup_route(cfg)
            assert route is not None
            route.probe()
            add("relay", "ok", f"{cfg.backup_smtp_host}:{cfg.backup_smtp_port} greets, "
                               f"{cfg.backup_smtp_security} and NOOP work")
        except LifeboatError as exc:
            add("relay", "fail", f"{cfg.backup_smtp_host}:{cfg.backup_smtp_port}: {exc}")
    return checks


def _sign_in_checks(cfg: config_mod.Config, add: Callable[[str, str, str], None]) -> None:
    from desktop.auth import MsalAuth, check_authority
    from sync.sources.graph import GraphSource

    try:
        add("authority", "ok", check_authority(cfg))
    except LifeboatError as exc:
        add("authority", "fail", str(exc))
        add("graph", "warn", "not checked: the authority must answer first")
        return
    try:
        auth = MsalAuth(cfg)
        state = auth.state()
    except LifeboatError as exc:
        add("sign-in", "fail", str(exc))
        return
    if state != "signed_in":
        why = auth.last_error or state
        add("sign-in", "fail", f"not signed in ({why}): run `lifeboat login` (or Sign in in the tray)")
        add("graph", "warn", "not checked: Graph needs a sign-in")
        return
    add("sign-in", "ok", f"signed in as {auth.account() or 'the configured user'}")
    source = GraphSource(cfg.graph_url, auth, ca_file=cfg.ca_file or None, proxy=cfg.proxy or None,
                         pac_url=cfg.proxy_pac_url or None)
    stage = "graph"
    try:
        add("graph", "ok", f"GET /me answered with the token ({source.me() or 'a user'})")
        stage = "mailbox"
        source.probe()
        add("mailbox", "ok", "Exchange Online answered (the inbox folder)")
    except LifeboatError as exc:
        add(stage, "fail", f"GET /me: {exc}" if stage == "graph"
            else f"the directory answers but the mailbox does not: {exc}")
    finally:
        source.close()
def network_checks(cfg: config_mod.Config) -> list[dict[str, Any]]:
    """The path to the sign-in authority and to Graph through Lifeboat's own trust (the system's store
    plus ca_file) and proxy: "fail" when the network blocks it (TLS inspection not trusted, a proxy's
    407/403) with the fix naming the setting, "warn" when nothing answers (offline or an outage)."""
    from sync.errors import NetworkBlocked, Unreachable
    from sync.sources import network

    out: list[dict[str, Any]] = []
    try:
        proxy = network.route_for(cfg.proxy or None, cfg.proxy_pac_url or None).describe()
    except LifeboatError:
        proxy = "the proxy settings"
    targets = (("sign-in", cfg.authority.rstrip("/") + "/v2.0/.well-known/openid-configuration"),
               ("graph", cfg.graph_url))
    for name, url in targets:
        try:
            reached = network.reach(url, name, cfg.ca_file or None, cfg.proxy or None,
                                    pac_url=cfg.proxy_pac_url or None)
        except NetworkBlocked as exc:
            out.append({"name": f"network {name}", "status": "fail", "detail": f"{exc} (through {proxy})"})
        except Unreachable as exc:
            out.append({"name": f"network {name}", "status": "warn",
                        "detail": f"{exc} (offline, or the service is down; through {proxy})"})
        except LifeboatError as exc:  # a bad ca_file, proxy or proxy_pac_url setting
            out.append({"name": f"network {name}", "status": "fail", "detail": str(exc)})
        else:  # a PAC file that could not be used is a warning: Lifeboat went the system's way instead
            out.append({"name": f"network {name}", "status": "warn" if reached.pac_error else "ok",
                        "detail": f"answered {reached.status} {reached.path()}, certificate trusted"})
    return out


def cmd_doctor(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    checks = doctor_checks(cfg) + ([] if args.local else provider_checks(cfg))
    ok = all(c["status"] != "fail" for c in checks)
    if args.json:
        emit_json({"ok": ok, "checks": checks, "version": version(), "home": str(cfg.home),
                   "settings": cfg.effective()})
    else:
        for c in checks:
            print(f"{c['status']:5} {c['name']:10} {c['detail']}")
        for name, s in cfg.effective().items():
            print(f"{s['source']:7} {name} = {s['value']!r}")
    return 0 if ok else 1


# ------------------------------------------------------------------------------------------ login, sync


def cmd_login(args: argparse.Namespace) -> int:
    from desktop.auth import MsalAuth

    auth = MsalAuth(load_config(args))
    if args.device_code:
        user = auth.login_device_code(lambda text: print(text, flush=True))
    else:
        user = auth.login_interactive()
    print(f"signed in as {user}")
    return 0


def _sync_bar(enabled: bool) -> tuple[Any, Any]:
    """A rich progress bar (on stderr) and its update callback, or (nullcontext, None)."""
    import contextlib

    if not enabled:
        return contextlib.nullcontext(), None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), console=Console(stderr=True))
    tasks: dict[str, Any] = {}

    def update(phase: str, done: int, total: int | None) -> None:
        key = "messages" if phase == "messages" else "summaries"
        if key not in tasks:
            tasks[key] = bar.add_task(key, total=total)
        bar.update(tasks[key], completed=done, total=total, description=phase[:28])

    return bar, update


def cmd_sync(args: argparse.Namespace) -> int:
    """Sync the mailbox into the cache: once (--once) or every sync_interval_seconds until Ctrl-C.

    --once also re-lists the folder tree; the loop re-lists it every 15 minutes (engine.FOLDER_REFRESH).
    """
    import time

    from desktop.auth import MsalAuth
    from sync.engine import sync_once
    from sync.errors import AuthRequired, Throttled, Unreachable
    from sync.sources.graph import GraphSource

    cfg = load_config(args)
    auth = MsalAuth(cfg)
    source = GraphSource(cfg.graph_url, auth, ca_file=cfg.ca_file or None, proxy=cfg.proxy or None,
                         pac_url=cfg.proxy_pac_url or None)
    with open_cache(cfg) as store:
        while True:
            first = store.get_setting("sync.last_success_at") is None
            bar, update = _sync_bar(first and not args.json and not args.quiet)
            try:
                with bar:
                    report = sync_once(store, source, folders=cfg.folders, cache_days=cfg.cache_days,
                                       cache_max_mb=cfg.cache_max_mb, progress=update, refresh=args.once)
            except (Unreachable, Throttled, AuthRequired) as exc:
                if args.once:
                    raise
                print(f"lifeboat: sync: {exc}", file=sys.stderr, flush=True)
            else:
                if args.json:
                    emit_json(report.to_json())
                elif not args.quiet:
                    f = report.folders.values()
                    print(f"synced {len(report.folders)} folders: {sum(r.upserted for r in f)} updated, "
                          f"{sum(r.removed for r in f)} removed, {report.mime_fetched} messages fetched",
                          flush=True)
                for error in report.errors:
                    print(f"lifeboat: sync: {error}", file=sys.stderr, flush=True)
                if args.once:
                    return 0 if report.ok else 1
            time.sleep(cfg.sync_interval_seconds)


def _sync_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--once", action="store_true", help="one sync, then exit (default: keep syncing)")
    p.add_argument("--json", action="store_true", help="print each sync's report as JSON")
    p.add_argument("--quiet", action="store_true", help="print only errors")


def _login_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device-code", action="store_true",
                   help="sign in with a code on another device (no browser on this one)")


def sync_status(cfg: config_mod.Config, store: Store) -> dict[str, Any]:
    """The sign-in state and per-folder sync state for `lifeboat status --json`."""
    from sync.engine import folder_status

    sign_in, detail = "not_configured", ""
    if cfg.client_id:
        try:
            from desktop.auth import MsalAuth

            auth = MsalAuth(cfg)
            sign_in, detail = auth.state(), auth.last_error
        except LifeboatError as exc:
            sign_in, detail = "unavailable", str(exc)
    return {"sign_in": sign_in, "sign_in_detail": detail,
            "last_sync": store.get_setting("sync.last_success_at"), "sync_folders": folder_status(store),
            "sync_disk_full": store.get_setting("sync.disk_full")}


# ------------------------------------------------------------------------------------------ continuity
# run --headless, send, outbox, failover, backup-password (the continuity engine: desktop/worker.py)


def cmd_run(args: argparse.Namespace) -> int:
    """The app (tray, workers, window) until Quit; --headless: the workers alone, notifications as JSON."""
    if args.headless:
        from desktop.worker import run_headless

        return run_headless(load_config(args), out=sys.stdout)
    from desktop.app import run_app

    return run_app(load_config(args), show_window=not args.minimized)


def cmd_autostart(args: argparse.Namespace) -> int:
    """Start `lifeboat run --minimized` at login (an XDG autostart entry; opt-in) or stop doing so."""
    from desktop.tray import set_autostart

    if sys.platform == "win32":
        raise MessageBad("on Windows the installer's Run key starts Lifeboat at login",
                         fix="ask IT, or use the installer's option")
    exe = Path(sys.argv[0]).resolve()
    command = (f'"{exe}" run --minimized' if exe.name == "lifeboat"
               else f'"{sys.executable}" -m desktop.cli run --minimized')
    path = set_autostart(args.choice == "on", command=command)
    print(f"start at login: {args.choice} ({path})")
    return 0


def _utcnow() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def _addresses(values: list[str] | None) -> list[str]:
    """--to a@x --to "b@y, c@z" -> [a@x, b@y, c@z]; a quoted name keeps its commas and stays quoted:
    '"Doe, John" <john@corp.example>' is one recipient."""
    from email.utils import getaddresses, quote

    out = []
    for name, addr in getaddresses(values or []):
        if not addr or "@" not in addr:
            raise MessageBad(f"{name or addr or 'an empty value'!r} is not an e-mail address",
                             fix="use name@domain, or \"Name\" <name@domain>")
        out.append(f'"{quote(name)}" <{addr}>' if name else addr)
    return out


def cmd_send(args: argparse.Namespace) -> int:
    """Queue one message in the durable outbox (the running workers send it)."""
    import dataclasses

    from sync import compose, engine

    cfg = load_config(args)
    now = _utcnow()
    with open_cache(cfg) as store:
        if args.eml:
            draft = compose.Draft(eml=Path(args.eml).read_bytes())
        else:
            if not cfg.username:
                raise MessageBad("no sender: set username in the [account] section of the config")
            kind, original = "new", None
            for name in ("reply", "reply_all", "forward"):
                if getattr(args, name) is not None:
                    kind, number = name, getattr(args, name)
                    original = store.parsed(number)
                    if original is None:
                        raise MessageBad(f"message {number} is not in the cache (or has no body yet)",
                                         fix="find ids with `lifeboat search`")
            start = compose.prefill(kind, original, cfg.username)
            body = Path(args.body_file).read_text(encoding="utf-8") if args.body_file else (args.body or "")
            files = tuple((Path(f).name, _content_type(f), Path(f).read_bytes()) for f in args.attach or [])
            draft = dataclasses.replace(
                start, to=start.to + tuple(_addresses(args.to)), cc=start.cc + tuple(_addresses(args.cc)),
                bcc=tuple(_addresses(args.bcc)), subject=args.subject or start.subject,
                text=body + start.text, attachments=files,
            )
        item = engine.queue(store, draft, now)
    if args.json:
        emit_json({"id": item.id, "message_id": item.message_id, "state": item.state.value})
    else:
        print(f"queued {item.id} {item.message_id} to {', '.join(item.recipients)}")
    return 0


def _content_type(path: str) -> str:
    import mimetypes

    return mimetypes.guess_type(path)[0] or "application/octet-stream"


def outbox_json(item: Any) -> dict[str, Any]:
    """The stable JSON shape of one outbox item (no MIME, no body)."""
    def iso(value: Any) -> str | None:
        return value.isoformat() if value else None

    return {"id": item.id, "message_id": item.message_id, "state": item.state.value, "subject": item.subject,
            "recipients": list(item.recipients), "created_at": iso(item.created_at),
            "attempts": item.attempts,
            "next_attempt_at": iso(item.next_attempt_at), "last_error": item.last_error,
            "route": item.route.value if item.route else None, "sent_at": iso(item.sent_at),
            "reconciled_at": iso(item.reconciled_at),
            "attempt_route": item.attempt_route.value if item.attempt_route else None}


def cmd_outbox(args: argparse.Namespace) -> int:
    """List the outbox, or settle an item: --resend / --discard / --sent ID."""
    from sync import engine

    cfg = load_config(args)
    with open_cache(cfg) as store:
        for choice in ("resend", "discard", "sent"):
            item_id = getattr(args, choice)
            if item_id is not None:
                item = engine.user_settles(store, item_id, choice, _utcnow())
                print(f"outbox item {item.id} is now {item.state.value}")
                return 0
        items = store.outbox_list()
    if args.json:
        emit_json({"count": len(items), "items": [outbox_json(i) for i in items]})
        return 0
    for i in items:
        print(f"{i.id:>5}  {i.state.value:9}  {(i.route.value if i.route else ''):7}  {i.subject[:40]:40}  "
              f"{i.last_error or ''}")
    print(f"{len(items)} item(s)", file=sys.stderr)
    return 0


def cmd_failover(args: argparse.Namespace) -> int:
    """Force continuity (on), back to normal (off: leave continuity now, then the probes decide) or
    hand control back to the probes (auto): the window's and the tray's commands, through the same core."""
    from sync.commands import Force
    from sync.continuity import handle
    from sync.failover import Notify, Policy
    from sync.health import Monitor, mode_json

    cfg = load_config(args)
    wanted = {"on": "continuity", "off": "normal", "auto": "auto"}[args.choice]
    with open_cache(cfg) as store:
        outcome = handle(Force(wanted), Monitor(store, None, [], Policy.from_config(cfg)), store)
        status = mode_json(store, _utcnow(), events=0)
    refused = outcome.refused
    for effect in outcome.effects:
        if isinstance(effect, Notify):
            print(f"{effect.title}: {effect.body}", file=sys.stderr if refused else sys.stdout)
    print(f"mode: {status['mode']} (route {status['route']}; {status['reason'] or 'automatic'})")
    return 1 if refused else 0


def cmd_backup_password(args: argparse.Namespace) -> int:
    """Save the backup relay's password in the OS keystore (read from the terminal, or stdin)."""
    import getpass

    from desktop.worker import backup_password_name

    cfg = load_config(args)
    if not cfg.backup_smtp_host or not cfg.backup_smtp_username:
        raise MessageBad("set backup_smtp_host and backup_smtp_username in the [backup] section first")
    password = getpass.getpass("backup relay password: ") if sys.stdin.isatty() else sys.stdin.readline()
    password = password.rstrip("\r\n")
    if not password:
        raise MessageBad("no password given")
    keys.set_secret(backup_password_name(cfg), password)
    print(f"saved in the OS keystore ({keys.backend_name()})")
    return 0


def _run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--headless", action="store_true",
                   help="no window: just the sync, health and outbox workers")
    p.add_argument("--minimized", action="store_true",
                   help="start in the tray without opening the window (start at login uses it)")


def _autostart_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("choice", choices=("on", "off"), help="on: start Lifeboat at login (Linux: XDG autostart)")


def _send_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--to", action="append", type=text_arg, metavar="ADDR",
                   help='recipient (repeat, or use commas; "Doe, John" <john@x> keeps its comma)')
    p.add_argument("--cc", action="append", type=text_arg, metavar="ADDR")
    p.add_argument("--bcc", action="append", type=text_arg, metavar="ADDR",
                   help="never shown in the sent headers")
    p.add_argument("--subject", type=text_arg, metavar="TEXT")
    body = p.add_mutually_exclusive_group()
    body.add_argument("--body", type=text_arg, metavar="TEXT")
    body.add_argument("--body-file", metavar="FILE", help="UTF-8 text file with the body")
    p.add_argument("--attach", action="append", metavar="FILE", help="attach a file (repeat for more)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--eml", metavar="FILE", help="queue this .eml as it is (recipients from its headers)")
    what.add_argument("--reply", type=id_arg, metavar="ID", help="reply to cached message ID")
    what.add_argument("--reply-all", type=id_arg, metavar="ID", help="reply to all of cached message ID")
    what.add_argument("--forward", type=id_arg, metavar="ID",
                      help="forward cached message ID with attachments")
    p.add_argument("--json", action="store_true", help="print the queued item as JSON")


def _outbox_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output")
    act = p.add_mutually_exclusive_group()
    act.add_argument("--resend", type=id_arg, metavar="ID", help="send an uncertain or failed item again")
    act.add_argument("--discard", type=id_arg, metavar="ID", help="give an uncertain item up (FAILED)")
    act.add_argument("--sent", type=id_arg, metavar="ID", help="an uncertain item did go out: mark it sent")


def _failover_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("choice", choices=("on", "off", "auto"),
                   help="on: continuity mode now; off: back to normal; auto: let the probes decide")


# ------------------------------------------------------------------------------------------ not ours


def cmd_simulator(args: argparse.Namespace) -> int:
    try:
        simulator_cli = importlib.import_module("simulator.cli")
    except ModuleNotFoundError as exc:
        if exc.name not in ("simulator.cli", "simulator"):
            raise
        print("lifeboat: simulator: the simulator package is not installed here "
              "(it ships in the source tree: run `./dev setup` from a clone)", file=sys.stderr)
        return 2
    return int(simulator_cli.main(list(args.rest)))


def cmd_demo(args: argparse.Namespace) -> int:
    try:
        demo = importlib.import_module("desktop.demo")
    except ModuleNotFoundError as exc:
        # the Windows install ships neither the demo nor the simulator and its relay (installer/build.py)
        if exc.name not in ("desktop.demo", "simulator", "aiosmtpd"):
            raise
        print("lifeboat: demo: the demo is not installed here "
              "(it ships in the source tree: run `./dev demo` from a clone)", file=sys.stderr)
        return 2
    return int(demo.main(list(args.rest)))


# ------------------------------------------------------------------------------------------ the table


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    run: Callable[[argparse.Namespace], int]
    options: Callable[[argparse.ArgumentParser], None] = field(default=lambda p: None)
    passthrough: bool = False  # hand every argument after the name to `run` as args.rest


# Argument types: each refuses what it cannot use with a message (argparse: exit status 2, no traceback).
MAX_LIMIT = 10_000  # search results at most
MAX_ID = 2**63 - 1  # SQLite's largest integer


def text_arg(value: str) -> str:
    """Text the user typed: refused when it is not valid text in the locale's encoding (Python hands
    such bytes over as lone surrogates, which nothing downstream can store, search or send)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError(
            "is not valid text in this terminal's encoding (set a UTF-8 locale, e.g. LANG=C.UTF-8)"
        ) from None
    return value


def _whole(value: str, low: int, high: int, what: str) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value[:40]!r} is not a whole number") from None
    if not low <= number <= high:
        raise argparse.ArgumentTypeError(f"{what} must be from {low} to {high}, not {value[:40]}")
    return number


def limit_arg(value: str) -> int:
    return _whole(value, 1, MAX_LIMIT, "the number of results")


def id_arg(value: str) -> int:
    return _whole(value, 1, MAX_ID, "an id")


def _import_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help=".eml files or folders of them")


def _search_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("query", type=text_arg, help='FTS5 query: words, "a phrase", OR, NOT, prefix*')
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--limit", type=limit_arg, default=50, metavar="N",
                   help=f"at most N results, 1 to {MAX_LIMIT} (default 50)")


def _show_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("id", type=id_arg, help="a message id from `lifeboat search`")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--json", action="store_true", help="summary, attachments and text as JSON")
    mode.add_argument("--raw", action="store_true", help="the raw MIME bytes")


def _json_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _doctor_options(p: argparse.ArgumentParser) -> None:
    _json_option(p)
    p.add_argument("--local", action="store_true",
                   help="only this computer's checks (keystore, cache, disk): nothing over the network")


COMMANDS: list[Command] = [
    Command(
        "import-eml", 'import .eml files into the local folder "Imported"', cmd_import_eml, _import_options
    ),
    Command("search", "full-text search of the cache", cmd_search, _search_options),
    Command("show", "show one message", cmd_show, _show_options),
    Command("status", "cache size, counts, oldest and newest message", cmd_status, _json_option),
    Command("doctor", "check the keystore, the cache, free disk, the authority, Graph and the relay",
            cmd_doctor, _doctor_options),
    Command("login", "sign in (system browser, or --device-code)", cmd_login, _login_options),
    Command("sync", "sync the mailbox into the encrypted cache", cmd_sync, _sync_options),
    Command("simulator", "run the local Microsoft 365 simulator", cmd_simulator, passthrough=True),
    Command("demo", "run the demo against the simulator", cmd_demo, passthrough=True),
    Command("run", "run the app: tray, workers (sync, health, outbox), window; --headless: no GUI",
            cmd_run, _run_options),
    Command("autostart", "start Lifeboat at login (on) or not (off)", cmd_autostart, _autostart_options),
    Command("send", "queue a message in the outbox (sent by the running workers)", cmd_send, _send_options),
    Command("outbox", "list the outbox, or settle an uncertain item", cmd_outbox, _outbox_options),
    Command("failover", "force continuity mode on, off, or back to auto", cmd_failover, _failover_options),
    Command("backup-password", "save the backup relay's password in the OS keystore", cmd_backup_password),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lifeboat", description="Email continuity for Microsoft 365 and Exchange."
    )
    parser.add_argument(
        "--config", metavar="PATH", help="user config file (default: LIFEBOAT_CONFIG or the usual place)"
    )
    parser.add_argument(
        "--home", metavar="DIR", help="data folder (default: LIFEBOAT_HOME or the usual place)"
    )
    parser.add_argument("--version", action="version", version=f"lifeboat {version()}")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        sub = subs.add_parser(
            command.name, help=command.help, description=command.help, add_help=not command.passthrough
        )
        command.options(sub)
        sub.set_defaults(run=command.run, passthrough=command.passthrough)
    return parser


def _log_failure(command: str, exc: BaseException, where: bool = False) -> None:
    """Log a failed command by its error's class (and, for a bug, the code lines it went through), not
    its message: messages carry file paths, queries and addresses. Nothing before logging is set up."""
    if _handler is None:
        return
    stack = "".join(traceback.format_tb(exc.__traceback__)) if where else ""
    level = logging.ERROR if where else logging.WARNING
    log.log(level, "%s failed: %s%s", command, type(exc).__name__, "\n" + stack if stack else "")


def main(argv: list[str] | None = None) -> int:
    # a log line that cannot be written (a full disk) is dropped, not printed as logging's traceback
    logging.raiseExceptions = False
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.passthrough:
        args.rest = argv[argv.index(args.command) + 1 :]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.run(args))
    except LifeboatError as exc:
        _log_failure(args.command, exc)
        print(f"lifeboat: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lifeboat: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:
        _log_failure(args.command, exc)
        print(f"lifeboat: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug: where it happened goes to the log, the user gets one line
        _log_failure(args.command, exc, where=True)
        print(
            f"lifeboat: unexpected error ({type(exc).__name__}: {exc}); details are in the log",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
