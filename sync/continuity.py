"""Continuity logic in the core: what each user command means, and the three ticks with their order.

Main types: `handle(command, monitor, store) -> Outcome` for the frozen commands of sync.commands
(`WakeOutbox`, `SyncNow`, `Force(mode)`, `Pause(paused)`): one meaning per command, whoever sends it
(CLI, tray, window, a headless run); and `Continuity`, the shell that owns the ticks (`health_tick`,
`sync_tick`, `outbox_tick`) the desktop's threads run.
Invariants: "normal" (`lifeboat failover off`, "Back to normal" in the window and the tray) leaves
continuity now (reconciling the outage mail) and hands the decision back to the probes, so a later
outage still fails over by itself; pause is a persisted setting every sync tick honours; the outbox
tick reconciles (RECOVERING), then settles uncertain items (NORMAL, RECOVERING), then sends on the
mode's route. A full disk (DiskFull from any tick) pauses sync, says so once (a notification, and the
`sync.disk_full` setting the banner and `status --json` read) and no tick raises; the outbox goes on
(each of its writes is small and is tried on every tick); the sync tick looks at the free space every
DISK_PROBE seconds and resumes by itself once RESUME_FREE bytes are free.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sync import engine, failover
from sync.commands import Command, Force, Pause, SignIn, SyncNow, WakeOutbox
from sync.errors import AuthRequired, DiskFull, LifeboatError, Throttled, Unreachable
from sync.health import Monitor, Probe, SystemClock
from sync.model import Mode, Route
from sync.ports import Clock, MailSource, Notifier, SendRoute
from sync.store import Store, free_bytes, size_text

log = logging.getLogger(__name__)

OUTBOX_INTERVAL = 1.0  # seconds between outbox ticks when idle (new mail may be queued by the CLI)
PAUSED_SETTING = "sync_paused"  # the persisted pause switch (a setting, so every process sees it)
DISK_SETTING = "sync.disk_full"  # {since, folder, free_bytes, resume_bytes} while sync waits for disk space
RESUME_FREE = 64 * 1024 * 1024  # bytes free on the cache's disk before a sync paused for a full disk resumes
DISK_PROBE = 15.0  # seconds between looks at the free space while sync is paused for a full disk
DISK_RETRY = 5.0  # seconds before an outbox or health tick that hit the full disk tries again

# ---- one meaning per command --------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What a command did: the failover effects, whether it was refused (machine policy), and which
    workers should run now (a process without workers, the CLI, ignores the wakes: the running app
    re-reads the persisted mode on its next outbox tick)."""

    effects: tuple[failover.Effect, ...] = ()
    refused: bool = False
    wake_outbox: bool = False
    wake_sync: bool = False


def is_paused(store: Store) -> bool:
    return bool(store.get_setting(PAUSED_SETTING, False))


def handle(command: Command, monitor: Monitor, store: Store) -> Outcome:
    """Apply one command to the persisted state (the same call in every process)."""
    if isinstance(command, WakeOutbox):
        return Outcome(wake_outbox=True)
    if isinstance(command, SyncNow):
        return Outcome(wake_sync=True)
    if isinstance(command, Pause):
        store.set_setting(PAUSED_SETTING, command.paused)
        return Outcome(wake_sync=not command.paused)
    if isinstance(command, SignIn):  # the desktop runs the sign-in (desktop.signin); nothing to persist here
        return Outcome()
    assert isinstance(command, Force)
    effects = monitor.force(command.mode)
    refused = monitor.state.forced_by == "admin"
    if command.mode == "normal" and not refused:
        # back to normal: leaving continuity happened above (RECOVERING, reconcile); the probes decide again
        effects += monitor.force("auto")
    return Outcome(tuple(effects), refused=refused, wake_outbox=True)  # the route may have changed


# ---- the shell: three ticks ------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """What the ticks read from the configuration (duck-typed from desktop.config.Config)."""

    sync_interval: float = 60.0
    folders: tuple[str, ...] = ("*",)
    cache_days: int = 30
    cache_max_mb: int = 2048

    @classmethod
    def from_config(cls, cfg: Any) -> Settings:
        return cls(float(cfg.sync_interval_seconds), tuple(cfg.folders), int(cfg.cache_days),
                   int(cfg.cache_max_mb))


@dataclass
class Wakes:
    """The events that cut a worker's wait short (threads wait on them in desktop.worker.Loop)."""

    sync: threading.Event = field(default_factory=threading.Event)
    outbox: threading.Event = field(default_factory=threading.Event)


class Continuity:
    """Everything the three loops need, and their ticks. Each tick returns seconds until the next one."""

    def __init__(
        self,
        cfg: Any,
        store: Store,
        source: MailSource,
        routes: dict[Route, SendRoute],
        refs: list[Probe],
        *,
        clock: Clock | None = None,
        notifier: Notifier | None = None,
        reference_timeout: float = 10.0,
    ) -> None:
        self.settings = Settings.from_config(cfg)
        self.store, self.source, self.routes = store, source, routes
        self.clock = clock or SystemClock()
        self.notifier = notifier
        self.resume_free = RESUME_FREE
        self.disk: dict[str, Any] | None = None  # set while sync is paused for a full disk (DISK_SETTING)
        self._disk_saved = False
        self._disk_lock = threading.Lock()
        self.policy = failover.Policy.from_config(cfg)
        self.monitor = Monitor(store, source, refs, self.policy, self.clock, notifier, reference_timeout)
        self.wakes = Wakes()
        self.sync_wake, self.outbox_wake = self.wakes.sync, self.wakes.outbox
        self.last_reconcile: engine.ReconcileReport | None = None
        # for the Event Log (desktop.eventlog): whether the backup relay's last answer was a failure, and
        # the outbox items (Message-IDs, kept in memory only) that came to need the user in this run
        self.relay_failing = False
        self.needs_user: set[str] = set()
        self.checkpoint: engine.Checkpoint = engine.no_checkpoint  # crash tests raise from it

    def start(self) -> None:
        """Start-up: crash leftovers become UNCERTAIN, then the persisted mode is resumed (a full disk
        pauses sync instead of failing the start; a pause saved before a restart is kept)."""
        saved = self.store.get_setting(DISK_SETTING)
        if isinstance(saved, dict):
            self.disk, self._disk_saved = saved, True
        try:
            for item in engine.recover_outbox(self.store, self.clock.now()):
                log.warning("outbox item %d may or may not have gone out: uncertain", item.id)
            self.monitor.start()
        except DiskFull as exc:
            self.disk_full(exc, "start")

    def now(self) -> datetime:
        return self.clock.now()

    def handle(self, command: Command) -> Outcome:
        """A command from the window, the tray or the app: `handle`, then wake the workers it names."""
        log.info("command %s", command.name)
        outcome = handle(command, self.monitor, self.store)
        if outcome.wake_outbox:
            self.outbox_wake.set()
        if outcome.wake_sync:
            self.sync_wake.set()
        return outcome

    # ---- ticks ---------------------------------------------------------------------------------

    def health_tick(self) -> float:
        try:
            effects = self.monitor.tick()
        except DiskFull as exc:  # the probe ran; its step could not be saved: the next round tries again
            self.disk_full(exc, "health")
            return min(DISK_RETRY, self.monitor.delay())
        if any(isinstance(e, failover.StartReconcile) for e in effects):
            self.outbox_wake.set()
        if self.monitor.mode is not Mode.CONTINUITY and any(
            isinstance(e, failover.LogEvent) and e.kind == "mode" for e in effects
        ):
            self.outbox_wake.set()  # a mode change also changes the route
        return self.monitor.delay()

    def sync_tick(self) -> float:
        """Sync unless paused (by the user, or for a full disk until there is room again) or in continuity
        (the provider is down: the probes watch it)."""
        interval = self.settings.sync_interval
        if self.disk is not None and not self._room_again():
            return min(interval, DISK_PROBE)
        if is_paused(self.store):
            log.debug("sync: paused")
            return interval
        if self.monitor.refresh().mode is Mode.CONTINUITY:
            return interval
        try:
            report = engine.sync_once(self.store, self.source, folders=list(self.settings.folders),
                                      cache_days=self.settings.cache_days,
                                      cache_max_mb=self.settings.cache_max_mb, clock=self.clock.now)
            if report.errors:  # their text names folders and carries the provider's words: not logged
                log.warning("sync: %d folder(s) failed this round", len(report.errors))
        except Unreachable as exc:
            log.info("sync: %s", type(exc).__name__)
            self.monitor.report(exc, "sync")
        except (Throttled, AuthRequired) as exc:
            log.info("sync: %s", type(exc).__name__)
        except DiskFull as exc:  # what was committed stays; the failed transaction was rolled back
            self.disk_full(exc, "sync")
            return min(interval, DISK_PROBE)
        return interval

    def outbox_tick(self) -> float:
        """Reconcile when RECOVERING, settle uncertain items while the provider answers, then send. On a
        full disk: a step whose write does not fit is not taken (an item whose SENDING cannot be saved is
        not sent; one sent whose SENT cannot be saved stays SENDING, UNCERTAIN at the next start, and is
        looked up, never resent blindly), sync pauses, and the next tick tries again."""
        try:
            return self._outbox_tick()
        except DiskFull as exc:
            self.disk_full(exc, "outbox")
            return DISK_RETRY

    def _outbox_tick(self) -> float:
        state = self.monitor.refresh()
        now = self.clock.now()
        if state.mode is Mode.RECOVERING:
            self.reconcile(now)
            state = self.monitor.state
        if state.mode in (Mode.NORMAL, Mode.RECOVERING):
            try:
                settled = engine.settle_uncertain_once(self.store, self.source, now,
                                                       checkpoint=self.checkpoint)
                self.needs_user.update(settled.ask_user)
            except LifeboatError as exc:
                log.info("settle: %s", type(exc).__name__)
        report = engine.send_once(self.store, self.routes, state.mode, now, checkpoint=self.checkpoint)
        if report.sent or report.failed or report.deferred:
            log.info("%s", report)
        self.needs_user.update(report.failed)
        if report.route is Route.BACKUP and report.route in self.routes:
            if report.error is not None:
                self.relay_failing = True
            elif report.sent:
                self.relay_failing = False
        if report.error is not None and report.route is Route.PRIMARY:
            self.monitor.report(report.error, "send")
        if report.waiting and report.error is None and report.route in self.routes:
            return 0.0  # more is due: go on at once
        return OUTBOX_INTERVAL

    def reconcile(self, now: datetime) -> engine.ReconcileReport | None:
        try:
            report = engine.reconcile_once(self.store, self.source, now, checkpoint=self.checkpoint)
        except (Unreachable, AuthRequired, Throttled) as exc:
            log.info("reconcile: %s (will try again; the probes decide whether the outage is back)",
                     type(exc).__name__)
            self.monitor.report(exc, "sync")  # a failed mail request counts (only Unreachable does)
            return None
        self.last_reconcile = report
        if report.failed:  # they stay unreconciled, with the reason on the outbox item
            log.warning("reconcile: %d message(s) could not be copied (the reasons are on the outbox items)",
                        len(report.failed))
        self.monitor.reconcile_done(report.summary)
        self.sync_wake.set()  # then catch up the sync
        return report

    # ---- a full disk ---------------------------------------------------------------------------

    def disk_full(self, exc: DiskFull, where: str) -> None:
        """Pause sync for a full disk (once: a log line and a notification), and try to save the pause
        for the window's banner and `status --json` (it may not fit yet: tried again on each probe).
        Any worker thread may call it; the first one says it."""
        free = exc.free_bytes
        with self._disk_lock:
            first = self.disk is None
            if first:
                self.disk = {"since": self.clock.now().isoformat(), "folder": exc.folder, "free_bytes": free,
                             "resume_bytes": self.resume_free}
                self._disk_saved = False
            self._save_disk()
        if not first:
            log.debug("%s: the disk is still full", where)
            return
        log.warning("%s: the cache's disk is full (%s free): sync paused until %s are free; the outbox "
                    "goes on while its writes fit", where, size_text(free), size_text(self.resume_free))
        self._notify("Lifeboat: the disk is full",
                     f"Sync is paused: the disk holding Lifeboat's data has {size_text(free)} free. "
                     "Mail you send still goes out while there is room for it. Sync resumes by itself "
                     f"once {size_text(self.resume_free)} are free.")

    def _room_again(self) -> bool:
        """While paused for a full disk: True (and the pause is over) once `resume_free` bytes are free."""
        free = free_bytes(self.store.path.parent)
        with self._disk_lock:
            if self.disk is None:
                return True
            if free < self.resume_free:
                self._save_disk()
                return False
            try:
                self.store.set_setting(DISK_SETTING, None)
            except DiskFull:
                return False
            self.disk, self._disk_saved = None, False
        log.info("sync resumed: the cache's disk has room again (%s free)", size_text(free))
        self._notify("Lifeboat: sync resumed", f"There is room on the disk again ({size_text(free)} free).")
        return True

    def _save_disk(self) -> None:
        """Save the pause once (hold _disk_lock)."""
        if self.disk is None or self._disk_saved:
            return
        try:
            self.store.set_setting(DISK_SETTING, self.disk)
            self._disk_saved = True
        except DiskFull:
            pass  # not even this small row fits: the notification said it; the next probe tries again

    def _notify(self, title: str, body: str) -> None:
        if self.notifier is None:
            return
        try:
            self.notifier.notify(title, body)
        except Exception:  # a broken tray must not stop the workers
            log.exception("notification failed")
