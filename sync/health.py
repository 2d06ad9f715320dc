"""Probes and the failover monitor: observations -> failover.step -> persist -> effects for the shell.

Main type: `Monitor`. Its state lives in the cache (Store.save_mode with the State JSON, plus the
event log), written in the same transaction as it is read, so a restart mid-outage resumes in
CONTINUITY and a `lifeboat failover ...` from another process is never overwritten. Reference probes
(the backup relay's greeting, DNS, a configured URL) never touch Microsoft; they tell "this machine
is offline" from "the provider is down". Probes run outside any transaction; all times come from the Clock.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime
from typing import Protocol

from sync import failover
from sync.errors import (
    AccessDenied,
    AuthRequired,
    CacheCorrupt,
    ConfigError,
    LifeboatError,
    NetworkBlocked,
    Throttled,
    Unreachable,
)
from sync.failover import Effect, Event, Notify, Policy, ProbeResult, ProviderStatus, State
from sync.model import Mode, Route
from sync.ports import Clock, Notifier
from sync.store import Store

log = logging.getLogger(__name__)


class Probe(Protocol):
    """Anything that answers or raises (SendRoute, MailSource and the references below all fit)."""

    def probe(self) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def provider_status(source: Probe) -> tuple[ProviderStatus, str]:
    """Probe the provider once and say how it answered (never raises for network or sign-in trouble).
    A NetworkBlocked (TLS inspection not trusted, a proxy refusing) is BLOCKED, never FAILED."""
    try:
        source.probe()
    except NetworkBlocked as exc:
        return ProviderStatus.BLOCKED, exc.reason
    except Throttled as exc:
        return ProviderStatus.THROTTLED, str(exc)
    except AuthRequired as exc:
        return ProviderStatus.AUTH_FAILED, str(exc)
    except AccessDenied as exc:  # a 403 that is not sign-in: the provider answered, so it is up
        log.warning("the provider refuses the probe (not an outage, not sign-in): %s", type(exc).__name__)
        return ProviderStatus.OK, str(exc)
    except LifeboatError as exc:  # Unreachable, Offline, and anything else the adapter raised
        return ProviderStatus.FAILED, str(exc)
    return ProviderStatus.OK, ""


def probe_round(source: Probe, requests: int = 1) -> tuple[ProviderStatus, str]:
    """`requests` provider probes sent at once; their combined status (failover.round_status: FAILED
    only if every one failed) and the reasons of those that did not answer OK."""
    if requests <= 1:
        return provider_status(source)
    with ThreadPoolExecutor(max_workers=requests, thread_name_prefix="provider-probe") as pool:
        results = list(pool.map(lambda _: provider_status(source), range(requests)))
    status = failover.round_status([s for s, _ in results])
    reasons = sorted({r for s, r in results if r and s is status})
    return status, "; ".join(reasons)


def any_reference_ok(references: Sequence[Probe], timeout: float = 10.0) -> tuple[bool | None, str]:
    """(True, which) as soon as one reference answers, (False, why) if none does, (None, "") if there
    are none. They run in parallel, so the wait is the slowest probe's own timeout at most."""
    if not references:
        return None, ""
    pool = ThreadPoolExecutor(max_workers=len(references), thread_name_prefix="reference-probe")
    try:
        pending: dict[Future[None], Probe] = {pool.submit(r.probe): r for r in references}
        problems: list[str] = []
        while pending:
            done, _ = wait(pending, timeout=timeout, return_when=FIRST_COMPLETED)
            if not done:
                problems.extend(f"{pending[f]!r}: no answer in {timeout:g} s" for f in pending)
                break
            for f in done:
                ref = pending.pop(f)
                exc = f.exception()
                if exc is None:
                    return True, repr(ref)
                problems.append(str(exc) if isinstance(exc, LifeboatError) else f"{ref!r}: {exc!r}")
        return False, "; ".join(problems)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def load_state(store: Store, now: datetime) -> tuple[State, str]:
    """The persisted failover state (initial if none); a damaged record is reset, and says so."""
    raw = store.mode_state()
    if not raw:
        return State.initial(now), ""
    try:
        return State.from_json(json.loads(raw)), ""
    except (ValueError, CacheCorrupt) as exc:
        return State.initial(now), f"the saved failover state was damaged and was reset: {exc}"


class Monitor:
    """Turns probe rounds, passive evidence and user commands into failover steps, persisted."""

    def __init__(
        self,
        store: Store,
        source: Probe | None,
        references: Sequence[Probe],
        policy: Policy,
        clock: Clock | None = None,
        notifier: Notifier | None = None,
        reference_timeout: float = 10.0,
    ) -> None:
        self.store, self.source, self.references = store, source, list(references)
        self.policy, self.clock, self.notifier = policy, clock or SystemClock(), notifier
        self.reference_timeout = reference_timeout
        self.wake = threading.Event()  # set by passive evidence: probe now instead of waiting
        self.checkpoint: Callable[[str], None] = lambda name: None  # called after each saved change
        self._lock = threading.Lock()
        self._state: State | None = None

    # ---- reading ------------------------------------------------------------------------------

    @property
    def state(self) -> State:
        """The last state this monitor saw or wrote (loaded from the cache on first use)."""
        with self._lock:
            if self._state is None:
                self._state = load_state(self.store, self.clock.now())[0]
            return self._state

    @property
    def mode(self) -> Mode:
        return self.state.mode

    def route(self) -> Route:
        return failover.route_for(self.refresh().mode)

    def refresh(self) -> State:
        """Re-read the persisted state (another process, e.g. `lifeboat failover on`, may have changed it)."""
        state = load_state(self.store, self.clock.now())[0]
        with self._lock:
            self._state = state
        return state

    def delay(self) -> float:
        """Seconds until the next probe round (faster while SUSPECT)."""
        return failover.next_probe_delay(self.state, self.policy)

    # ---- events ---------------------------------------------------------------------------------

    def apply(self, event: Event) -> list[Effect]:
        """One failover step on the persisted state, saved with its log lines in one transaction;
        Notify effects go to the notifier; every effect is returned for the shell."""
        with self.store.transaction():
            old, damaged = load_state(self.store, event.at)
            new, effects = failover.step(old, event, self.policy)
            if damaged:
                self.store.log_event("state_reset", damaged, event.at)
            for effect in effects:
                if isinstance(effect, failover.LogEvent):
                    self.store.log_event(effect.kind, effect.detail, event.at)
                elif isinstance(effect, Notify):
                    self.store.log_event("notify", f"{effect.title}: {effect.body}", event.at)
            changed = new != old or bool(effects) or bool(damaged)
            if changed:
                self.store.save_mode(new.mode.value, new.since, new.reason, json.dumps(new.to_json()))
        with self._lock:
            self._state = new
        if changed:
            self.checkpoint("mode")
        if new.mode is not old.mode:
            log.info("failover: %s -> %s (%s)", old.mode.value, new.mode.value, new.reason)
        for effect in effects:
            if isinstance(effect, Notify) and self.notifier is not None:
                try:
                    self.notifier.notify(effect.title, effect.body)
                except Exception:  # a broken tray must not stop the monitor
                    log.exception("notification failed")
        return effects

    def start(self) -> list[Effect]:
        """Resume the persisted state (a restart mid-outage stays in CONTINUITY) and re-apply policy."""
        return self.apply(failover.Started(at=self.clock.now()))

    def observe(self) -> ProbeResult:
        """One probe round: `policy.probe_requests` provider probes at once (the round fails only if all
        fail), and the references only when it failed."""
        if self.source is None:
            raise ConfigError("this monitor has no provider to probe (it only records commands)")
        at = self.clock.now()  # when the requests went out: a hang then counts from its start
        status, reason = probe_round(self.source, self.policy.probe_requests)
        reference_ok: bool | None = None
        if status is ProviderStatus.FAILED:
            reference_ok, why = any_reference_ok(self.references, self.reference_timeout)
            if reference_ok is False:
                reason = f"{reason}; no reference answered either ({why})"
        blocked = reason.split("; ")[0] if status is ProviderStatus.BLOCKED else ""
        return ProbeResult(at=at, provider=status, reference_ok=reference_ok, reason=reason, blocked=blocked)

    def tick(self) -> list[Effect]:
        """Probe, step, persist: the health worker's tick."""
        self.wake.clear()
        return self.apply(self.observe())

    def report(self, exc: BaseException, what: str = "sync") -> list[Effect]:
        """Passive evidence from a failed mail request (sync, send, reconcile). Only "did not answer"
        counts (no answer, timeout, reset, 5xx: Unreachable; a 429 or a rejected sign-in is not an
        outage). The references are probed as for a failed probe round, and the failure then counts the
        same way (failover.step); a probe round is asked for at once, so a good one ends the run.
        A NetworkBlocked never counts: a probe round is asked for, which raises the condition."""
        if isinstance(exc, NetworkBlocked):
            self.wake.set()
            return []
        if not isinstance(exc, Unreachable):
            return []
        reference_ok, why = any_reference_ok(self.references, self.reference_timeout)
        reason = str(exc) if reference_ok is not False else f"{exc}; no reference answered either ({why})"
        kind = failover.SendFailed if what == "send" else failover.SyncFailed
        event: Event = kind(self.clock.now(), reason, reference_ok)
        effects = self.apply(event)
        self.wake.set()
        return effects

    def force(self, mode: str) -> list[Effect]:
        """The user's choice: "continuity", "normal" or "auto" (ConfigError-like ValueError otherwise)."""
        return self.apply(failover.UserForced(at=self.clock.now(), mode=mode))

    def reconcile_done(self, summary: str) -> list[Effect]:
        return self.apply(failover.ReconcileDone(at=self.clock.now(), summary=summary))


def mode_json(store: Store, now: datetime, events: int = 10) -> dict[str, object]:
    """The mode part of `lifeboat status --json`: mode, since, why, conditions, route, recent events."""
    state, damaged = load_state(store, now)
    return {
        "mode": state.mode.value,
        "since": state.since.isoformat(),
        "reason": damaged or state.reason,
        "offline": state.offline,
        "sign_in_needed": state.sign_in_needed,
        "network_blocked": state.network_blocked,
        "network_reason": state.network_reason,
        "forced": state.forced,
        "forced_by": state.forced_by,
        "route": failover.route_for(state.mode).value,
        "events": store.events(limit=events),
    }

