"""The headless workers: sync, health and outbox loops in threads running sync.continuity's ticks.

Main types: `Loop` (a thread that ticks, then waits for its delay, a wake-up or stop) and `build`
(wires config -> store, source, routes and references into a `sync.continuity.Continuity`, which owns
the ticks, their order per mode and the commands). `run_headless(config)` is `lifeboat run --headless`
(it honours a paused sync like the app: the pause is a persisted setting the sync tick reads; it stops
in order on SIGTERM/SIGHUP and Windows session end, desktop.servicing; it writes the Event Log,
desktop.eventlog).
Invariants: one running instance per cache (a lock file); SENDING items left by a crash become
UNCERTAIN before the outbox loop starts.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from desktop import keys
from desktop.config import Config
from sync.continuity import Continuity
from sync.errors import ConfigError
from sync.health import Probe
from sync.model import Route
from sync.ports import Clock, Notifier, SendRoute
from sync.private_files import private_dir, private_file
from sync.sources.references import DnsReference, HttpReference
from sync.store import Store, cache_path

log = logging.getLogger(__name__)

RETRY_AFTER_ERROR = 5.0  # seconds before a loop whose tick crashed tries again


def backup_password_name(cfg: Config) -> str:
    """The keystore entry that holds the backup relay's password."""
    return f"backup-smtp-password:{cfg.backup_smtp_username}@{cfg.backup_smtp_host}"


def backup_route(cfg: Config) -> SendRoute | None:
    """The SMTP backup route from the config (None when no relay is configured); the password comes
    from the OS keystore only."""
    if not cfg.backup_smtp_host:
        return None
    from sync.routes.smtp import SmtpRoute

    password = None
    if cfg.backup_smtp_username:
        password = keys.secret(backup_password_name(cfg))
        if password is None:
            raise ConfigError(
                f"no password for the backup relay user {cfg.backup_smtp_username} in the keystore",
                fix="save it with `lifeboat backup-password`",
            )
    return SmtpRoute(
        cfg.backup_smtp_host, cfg.backup_smtp_port, cfg.backup_smtp_security,
        username=cfg.backup_smtp_username or None, password=password, ca_file=cfg.backup_ca_file or None,
        envelope_sender=cfg.backup_sender or None, timeout=20,
    )


def references(cfg: Config, backup: SendRoute | None) -> list[Probe]:
    """Reference probes that do not depend on Microsoft: the relay's greeting, DNS, a URL."""
    out: list[Probe] = []
    if backup is not None:
        out.append(backup)
    if cfg.reference_dns_name:
        out.append(DnsReference(cfg.reference_dns_name))
    if cfg.reference_url:
        out.append(HttpReference(cfg.reference_url, ca_file=cfg.ca_file or None, proxy=cfg.proxy or None,
                                 pac_url=cfg.proxy_pac_url or None))
    return out


class LogNotifier:
    """Notifications without a tray: the log, and optionally JSON lines on a stream."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream

    def notify(self, title: str, body: str) -> None:
        log.info("notify: %s", title)
        if self.stream is not None:
            print(json.dumps({"notify": title, "body": body}), file=self.stream, flush=True)


class Loop(threading.Thread):
    """Calls tick() until stop is set; after each tick waits its returned delay, or until woken."""

    def __init__(self, name: str, tick: Callable[[], float], stop: threading.Event,
                 wake: threading.Event | None = None) -> None:
        super().__init__(name=f"lifeboat-{name}", daemon=True)
        self.tick, self.stop, self.wake = tick, stop, wake or threading.Event()
        self.ticks = 0

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                delay = self.tick()
            except Exception:  # a bug or a broken cache: log it, keep the other loops alive, retry
                log.exception("%s tick failed", self.name)
                delay = RETRY_AFTER_ERROR
            self.ticks += 1
            if delay > 0:
                self.wake.wait(delay)
            self.wake.clear()
            if self.stop.is_set():
                break


def start_loops(c: Continuity, stop: threading.Event) -> list[Loop]:
    loops = [
        Loop("health", c.health_tick, stop, c.monitor.wake),
        Loop("outbox", c.outbox_tick, stop, c.outbox_wake),
        Loop("sync", c.sync_tick, stop, c.sync_wake),
    ]
    for loop in loops:
        loop.start()
    return loops


def stop_loops(loops: list[Loop], stop: threading.Event, timeout: float = 60.0) -> None:
    stop.set()
    for loop in loops:
        loop.wake.set()
    for loop in loops:
        loop.join(timeout)


@contextlib.contextmanager
def single_instance(home: Path) -> Iterator[None]:
    """Refuse a second `run` on the same cache (two outboxes could send the same message twice)."""
    private_dir(home)
    path = private_file(home / "lifeboat.lock")
    fh = path.open("a+")
    try:
        if sys.platform == "win32":  # pragma: no cover - Windows only
            import msvcrt

            try:
                msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
            except OSError as exc:
                raise ConfigError(f"Lifeboat is already running for {home}") from exc
        else:
            import fcntl

            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                raise ConfigError(f"Lifeboat is already running for {home} (lock {path})",
                                  fix="stop the other instance first") from exc
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        yield
    finally:
        fh.close()


def default_tokens(cfg: Config) -> Any:
    """The sign-in for this configuration: msal (desktop.auth), with WAM on Windows."""
    from desktop.auth import MsalAuth

    return MsalAuth(cfg)


def build(cfg: Config, store: Store, *, clock: Clock | None = None, notifier: Notifier | None = None,
          tokens: Any = None) -> Continuity:
    """Wire the real adapters from the configuration (Graph + msal sign-in, SMTP backup)."""
    from sync.routes.graph import GraphRoute
    from sync.sources.graph import GraphSource

    if tokens is None:
        tokens = default_tokens(cfg)
    source = GraphSource(cfg.graph_url, tokens, ca_file=cfg.ca_file or None, proxy=cfg.proxy or None,
                         pac_url=cfg.proxy_pac_url or None)
    routes: dict[Route, SendRoute] = {Route.PRIMARY: GraphRoute(source)}
    backup = backup_route(cfg)
    if backup is not None:
        routes[Route.BACKUP] = backup
    else:
        log.warning("no backup relay is configured (backup_smtp_host): mail waits during an outage")
    refs = references(cfg, backup)
    if not refs:
        log.warning("no reference probe is configured (backup relay, reference_dns_name, reference_url): "
                    "Lifeboat cannot tell an outage from being offline, so it will not fail over by itself")
    return Continuity(cfg, store, source, routes, refs, clock=clock, notifier=notifier)


def snapshot(c: Continuity) -> Any:
    """What the Event Log follows (desktop.eventlog.Snapshot) from the persisted mode and the workers."""
    from desktop.eventlog import Snapshot

    return Snapshot.of(c.monitor.refresh(), relay_failing=c.relay_failing, needs_user=len(c.needs_user))


def observe(watch: Any, c: Continuity) -> None:
    """One look for the Event Log; a failed look (a busy or damaged cache) must not end the app."""
    try:
        watch.observe(snapshot(c))
    except Exception as exc:
        log.warning("eventlog: could not look at the state (%s)", type(exc).__name__)


def run_headless(cfg: Config, *, stop: threading.Event | None = None, out: IO[str] | None = None,
                 tokens: Any = None, session_api: Any = None, event_log: Any = None) -> int:
    """`lifeboat run --headless`: the three loops until SIGINT/SIGTERM/SIGHUP, a Windows session end or
    Restart Manager (desktop.servicing), or `stop` is set. The stop is orderly: the loops finish their
    tick, the routes and the store are closed, then the Event Log says why (desktop.eventlog)."""
    from desktop import eventlog, servicing

    shutdown = servicing.Shutdown(stop)
    shutdown.install_signals()  # first: a SIGTERM during start-up also ends in order
    session = None
    watch = eventlog.Watch(event_log if event_log is not None else eventlog.EventLog.for_platform())
    account = cfg.username or "default"
    try:
        with single_instance(cfg.home), \
                Store.open(cache_path(cfg.home, account), keys.db_key(account)) as store:
            c = build(cfg, store, notifier=LogNotifier(out), tokens=tokens)
            c.start()
            loops = start_loops(c, shutdown.stop)
            session = servicing.watch_session(shutdown, session_api)
            if out is not None:
                state = c.monitor.state
                print(json.dumps({"running": True, "mode": state.mode.value, "since": state.since.isoformat(),
                                  "pid": os.getpid()}), file=out, flush=True)
            try:
                observe(watch, c)
                while not shutdown.stop.wait(0.5):
                    observe(watch, c)
            finally:
                stop_loops(loops, shutdown.stop)
                for route in c.routes.values():
                    close = getattr(route, "close", None)
                    if close is not None:
                        close()
        watch.stopped(shutdown.reason or "stopped")
    finally:
        shutdown.stop.set()
        shutdown.finished()
        if session is not None:
            session.close()
        shutdown.restore_signals()
    return 0
