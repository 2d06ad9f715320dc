"""The failover state machine, pure: `step(state, event, policy) -> (state, effects)`.

Main types: Policy (thresholds, overridable by machine policy), State (mode + counters + the
`offline`/`sign_in_needed`/`network_blocked` conditions), past-tense events, imperative effects.
Invariants: one failed probe never enters CONTINUITY; a provider failure (a failed probe round, or a
failed mail request reported as passive evidence with a reference checked) counts only while an
unrelated reference answers, and only a good probe round ends a run of failures; 429, sign-in failures
and a blocked network (a certificate the system does not trust, a proxy refusing) never change the
mode; the send route is BACKUP exactly in CONTINUITY. `entry_probability` computes, over these very
steps, how likely random mail failures at a given rate are to enter CONTINUITY.
"""

from __future__ import annotations

import dataclasses
import heapq
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sync.errors import CacheCorrupt, ConfigError
from sync.model import Mode, Route

FORCE_CHOICES = ("auto", "continuity", "normal")


@dataclass(frozen=True)
class Policy:
    probe_interval: float = 15.0  # seconds between provider probes
    suspect_probe_interval: float = 5.0  # while deciding (SUSPECT)
    failures_to_enter: int = 3  # CONTINUITY needs this many counted failures...
    failover_after: float = 30.0  # ...spread over at least this many seconds
    successes_to_leave: int = 3  # RECOVERING needs this many successes...
    recover_after: float = 30.0  # ...spread over at least this many seconds
    forced: str = "auto"  # machine policy: "auto" | "continuity" | "normal"
    # Provider probe requests sent at once in one round; the round fails only if every one fails.
    # Two make random (flaky) failures far less likely to look like an outage (see entry_probability)
    # at no cost in detection time. Not a setting: a property of the probe.
    probe_requests: int = 2

    def __post_init__(self) -> None:
        if self.probe_interval <= 0 or self.suspect_probe_interval <= 0:
            raise ConfigError("failover: probe intervals must be positive numbers of seconds")
        if self.failures_to_enter < 2:
            raise ConfigError(
                f"failover: failures_to_enter must be at least 2 (got {self.failures_to_enter}): "
                "a single failed probe must never switch to continuity mode"
            )
        if self.successes_to_leave < 1:
            raise ConfigError(
                f"failover: successes_to_leave must be at least 1 (got {self.successes_to_leave})"
            )
        if self.probe_requests < 1:
            raise ConfigError(f"failover: probe_requests must be at least 1 (got {self.probe_requests})")
        if self.failover_after < 0 or self.recover_after < 0:
            raise ConfigError("failover: failover_after and recover_after must not be negative")
        if self.forced not in FORCE_CHOICES:
            raise ConfigError(
                f"failover: force_mode must be one of {', '.join(FORCE_CHOICES)}, not {self.forced!r}"
            )

    @classmethod
    def from_config(cls, cfg: Any) -> Policy:
        """From any object with desktop.config.Config's attribute names (duck-typed)."""
        return cls(
            probe_interval=float(cfg.probe_interval_seconds),
            suspect_probe_interval=float(cfg.suspect_probe_interval_seconds),
            failures_to_enter=int(cfg.failures_to_enter),
            failover_after=float(cfg.failover_after_seconds),
            successes_to_leave=int(cfg.successes_to_leave),
            recover_after=float(cfg.recover_after_seconds),
            forced=str(cfg.force_mode),
        )


@dataclass(frozen=True)
class State:
    mode: Mode
    since: datetime  # when the mode last changed
    reason: str = ""
    failures: int = 0  # counted provider failures in the current run
    first_failure_at: datetime | None = None
    successes: int = 0  # provider successes in the current run (while in CONTINUITY)
    first_success_at: datetime | None = None
    offline: bool = False
    sign_in_needed: bool = False
    # our side's network refuses (TLS inspection not trusted, a proxy's 407/403): never an outage
    network_blocked: bool = False
    network_reason: str = ""  # its short reason ("certificate not trusted", "proxy refused (403)")
    forced: str = "auto"  # "auto" | "continuity" | "normal"
    forced_by: str = ""  # "" | "user" | "admin"

    @classmethod
    def initial(cls, at: datetime) -> State:
        return cls(mode=Mode.NORMAL, since=at, reason="started")

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["mode"] = self.mode.value
        for key in ("since", "first_failure_at", "first_success_at"):
            value = getattr(self, key)
            out[key] = value.isoformat() if value else None
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> State:
        """Rebuild a persisted state; a damaged record raises CacheCorrupt naming the bad field."""

        def when(key: str, required: bool = False) -> datetime | None:
            raw = data.get(key)
            if raw is None and not required:
                return None
            try:
                value = datetime.fromisoformat(str(raw))
            except ValueError as exc:
                raise CacheCorrupt(f"failover state: {key} = {raw!r} is not an ISO time") from exc
            if value.tzinfo is None:
                raise CacheCorrupt(f"failover state: {key} = {raw!r} has no time zone")
            return value

        try:
            mode = Mode(data["mode"])
            forced = str(data.get("forced", "auto"))
            if forced not in FORCE_CHOICES:
                raise ValueError(f"forced = {forced!r}")
            since = when("since", required=True)
            assert since is not None
            return cls(
                mode=mode,
                since=since,
                reason=str(data.get("reason", "")),
                failures=int(data.get("failures", 0)),
                first_failure_at=when("first_failure_at"),
                successes=int(data.get("successes", 0)),
                first_success_at=when("first_success_at"),
                offline=bool(data.get("offline", False)),
                sign_in_needed=bool(data.get("sign_in_needed", False)),
                network_blocked=bool(data.get("network_blocked", False)),
                network_reason=str(data.get("network_reason", "")),
                forced=forced,
                forced_by=str(data.get("forced_by", "")),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise CacheCorrupt(f"failover state is damaged ({exc}); it will be reset to normal mode") from exc


# ---- events (past tense) ------------------------------------------------------------------


class ProviderStatus(StrEnum):
    OK = "ok"
    FAILED = "failed"  # no answer, timeout, refused, 5xx
    THROTTLED = "throttled"  # 429: not an outage
    AUTH_FAILED = "auth_failed"  # the provider answered but rejected our sign-in
    BLOCKED = "blocked"  # our side's network refused (TLS inspection, a proxy): not an outage


@dataclass(frozen=True)
class ProbeResult:
    """One round of probes: the provider's answer and whether an unrelated reference answered."""

    at: datetime
    provider: ProviderStatus
    reference_ok: bool | None = None  # None: no reference was probed
    reason: str = ""
    blocked: str = ""  # with BLOCKED: the short reason ("certificate not trusted", "proxy refused (407)")


@dataclass(frozen=True)
class Started:
    """The app started (or resumed a persisted state): re-apply policy and restart pending work."""

    at: datetime


@dataclass(frozen=True)
class ReconcileDone:
    at: datetime
    summary: str


@dataclass(frozen=True)
class UserForced:
    at: datetime
    mode: str  # "continuity" | "normal" | "auto" (hand control back to the probes)


def round_status(statuses: list[ProviderStatus]) -> ProviderStatus:
    """One probe round of several requests sent at once: OK if any answered OK; else the provider did
    answer if any was throttled or refused our sign-in (not an outage); BLOCKED if our network refused
    one (never an outage either); FAILED only if all failed."""
    for status in (ProviderStatus.OK, ProviderStatus.THROTTLED, ProviderStatus.AUTH_FAILED,
                   ProviderStatus.BLOCKED):
        if status in statuses:
            return status
    return ProviderStatus.FAILED


@dataclass(frozen=True)
class SendFailed:
    """Passive evidence: a primary-route send could not reach the provider (an outage reason: no
    answer, timeout, reset, 5xx). With `reference_ok` set (the references were probed right after), it
    counts exactly like a failed probe round; with None it only moves NORMAL to SUSPECT."""

    at: datetime
    reason: str = ""
    reference_ok: bool | None = None


@dataclass(frozen=True)
class SyncFailed:
    """Passive evidence: a sync (or reconcile) request could not reach the provider; as SendFailed."""

    at: datetime
    reason: str = ""
    reference_ok: bool | None = None


Event = ProbeResult | Started | ReconcileDone | UserForced | SendFailed | SyncFailed

# ---- effects (imperative) -----------------------------------------------------------------


@dataclass(frozen=True)
class Notify:
    title: str
    body: str

    def __str__(self) -> str:
        return f"notify: {self.title}: {self.body}"


@dataclass(frozen=True)
class StartReconcile:
    def __str__(self) -> str:
        return "start reconcile: copy outage-sent mail to Sent Items"


@dataclass(frozen=True)
class SetProbeInterval:
    seconds: float

    def __str__(self) -> str:
        return f"probe every {self.seconds:g} s"


@dataclass(frozen=True)
class LogEvent:
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


Effect = Notify | StartReconcile | SetProbeInterval | LogEvent


# ---- the machine --------------------------------------------------------------------------


def route_for(mode: Mode) -> Route:
    """The send route is derived from the mode: BACKUP exactly in CONTINUITY."""
    return Route.BACKUP if mode is Mode.CONTINUITY else Route.PRIMARY


def next_probe_delay(state: State, policy: Policy) -> float:
    return policy.suspect_probe_interval if state.mode is Mode.SUSPECT else policy.probe_interval


def _reset(state: State) -> State:
    return dataclasses.replace(
        state, failures=0, first_failure_at=None, successes=0, first_success_at=None
    )


def _move(state: State, mode: Mode, at: datetime, reason: str) -> State:
    return dataclasses.replace(_reset(state), mode=mode, since=at, reason=reason)


def step(state: State, event: Event, policy: Policy) -> tuple[State, list[Effect]]:
    """Apply one event; returns the new state and what the shell must do, in order."""
    effects: list[Effect] = []
    new = _apply_admin(state, policy, event.at, effects)
    if isinstance(event, ProbeResult):
        new = _on_probe(new, event, policy, effects)
    elif isinstance(event, UserForced):
        new = _on_user_forced(new, event, effects)
    elif isinstance(event, ReconcileDone):
        if new.mode is Mode.RECOVERING:
            new = _move(new, Mode.NORMAL, event.at, "reconcile done")
            effects.append(Notify("Mail is back to normal", event.summary))
        else:
            effects.append(LogEvent("ignored", f"reconcile finished while in {new.mode.value}"))
    elif isinstance(event, SendFailed | SyncFailed):
        what = "send" if isinstance(event, SendFailed) else "sync"
        effects.append(LogEvent(f"{what}_failed", event.reason or "the provider did not answer"))
        if event.reference_ok is not None:  # counted the same way as a failed probe round
            new = _on_failure(new, event.at, event.reference_ok, f"{what} failed: {event.reason}",
                              policy, effects)
        elif new.mode is Mode.NORMAL and new.forced == "auto":
            new = _move(new, Mode.SUSPECT, event.at, f"{what} failed: {event.reason}")
    elif isinstance(event, Started):
        effects.append(LogEvent("started", f"resuming in {new.mode.value}"))
        if new.mode is Mode.RECOVERING:
            effects.append(StartReconcile())
    if new.mode is not state.mode:
        effects.insert(0, LogEvent("mode", f"{state.mode.value} -> {new.mode.value}: {new.reason}"))
    if isinstance(event, Started) or next_probe_delay(new, policy) != next_probe_delay(state, policy):
        effects.append(SetProbeInterval(next_probe_delay(new, policy)))
    return new, effects


def _force(state: State, mode: str, by: str, at: datetime, effects: list[Effect]) -> State:
    who = "your organisation" if by == "admin" else "you"
    if mode == "auto":
        effects.append(Notify("Automatic failover is on", "Lifeboat watches the provider again."))
        return dataclasses.replace(_reset(state), forced="auto", forced_by="")
    new = dataclasses.replace(_reset(state), forced=mode, forced_by=by)
    if mode == "continuity" and state.mode is not Mode.CONTINUITY:
        new = _move(new, Mode.CONTINUITY, at, f"continuity forced by {who}")
        effects.append(Notify(
            "Continuity mode (forced)",
            f"Continuity mode was switched on by {who}: new mail goes out through the backup route.",
        ))
    elif mode == "normal" and state.mode is Mode.CONTINUITY:
        new = _move(new, Mode.RECOVERING, at, f"normal mode forced by {who}")
        effects.append(Notify("Leaving continuity mode", f"Switched back by {who}; copying outage mail."))
        effects.append(StartReconcile())
    elif mode == "normal" and state.mode is Mode.SUSPECT:
        new = _move(new, Mode.NORMAL, at, f"normal mode forced by {who}")
    return new


def _apply_admin(state: State, policy: Policy, at: datetime, effects: list[Effect]) -> State:
    """Machine policy wins over everything: apply or release an admin-forced mode."""
    if policy.forced != "auto":
        if (state.forced, state.forced_by) != (policy.forced, "admin"):
            effects.append(LogEvent("admin_forced", policy.forced))
            return _force(state, policy.forced, "admin", at, effects)
    elif state.forced_by == "admin":
        effects.append(LogEvent("admin_forced", "released: automatic"))
        return _force(state, "auto", "admin", at, effects)
    return state


def _on_user_forced(state: State, event: UserForced, effects: list[Effect]) -> State:
    if event.mode not in FORCE_CHOICES:
        raise ValueError(f"cannot force mode {event.mode!r}: choose one of {', '.join(FORCE_CHOICES)}")
    if state.forced_by == "admin":
        effects.append(LogEvent("user_forced", f"refused {event.mode}: set by machine policy"))
        effects.append(Notify(
            "Set by your organisation",
            f"The mode is fixed to {state.forced} by your organisation's policy; ask IT to change it.",
        ))
        return state
    effects.append(LogEvent("user_forced", event.mode))
    return _force(state, event.mode, "user", event.at, effects)


def _on_probe(state: State, ev: ProbeResult, policy: Policy, effects: list[Effect]) -> State:
    new = state
    if ev.provider is ProviderStatus.BLOCKED:  # neither counts nor ends a run of failures
        why = ev.blocked or "the network refused"
        if not new.network_blocked or new.network_reason != why:
            effects.append(Notify(
                "The network blocks Microsoft 365",
                f"{why}: this is not an outage, so Lifeboat stays in {new.mode.value} mode. "
                "Run `lifeboat doctor` or ask IT.",
            ))
            effects.append(LogEvent("network_blocked", ev.reason or why))
        return dataclasses.replace(new, offline=False, network_blocked=True, network_reason=why)
    new = dataclasses.replace(new, network_blocked=False, network_reason="") if ev.provider in (
        ProviderStatus.OK, ProviderStatus.THROTTLED, ProviderStatus.AUTH_FAILED) else new
    if ev.provider is ProviderStatus.THROTTLED:
        return dataclasses.replace(new, offline=False)
    if ev.provider is ProviderStatus.AUTH_FAILED:
        if not new.sign_in_needed:
            effects.append(Notify("Sign-in needed", "The provider rejected the saved sign-in: choose "
                                                    "Sign in in the tray menu or the window."))
            effects.append(LogEvent("sign_in_needed", ev.reason or "the provider rejected our token"))
        return dataclasses.replace(new, offline=False, sign_in_needed=True)
    if ev.provider is ProviderStatus.OK:
        if new.offline or new.sign_in_needed or state.network_blocked:
            effects.append(LogEvent("conditions", "provider answered: online and signed in"))
        new = dataclasses.replace(new, offline=False, sign_in_needed=False)
        if new.forced != "auto":
            return new
        if new.mode is Mode.SUSPECT:
            return _move(new, Mode.NORMAL, ev.at, "provider answered again")
        if new.mode is Mode.CONTINUITY:
            first = new.first_success_at or ev.at
            new = dataclasses.replace(
                new, successes=new.successes + 1, first_success_at=first, failures=0, first_failure_at=None
            )
            elapsed = (ev.at - first).total_seconds()
            if new.successes >= policy.successes_to_leave and elapsed >= policy.recover_after:
                effects.append(Notify(
                    "Microsoft 365 is back", "Copying the mail sent during the outage to Sent Items."
                ))
                effects.append(StartReconcile())
                return _move(new, Mode.RECOVERING, ev.at, f"provider answered {new.successes} times")
            return new
        return _reset(new)  # NORMAL or RECOVERING: a success ends any failure run
    return _on_failure(new, ev.at, ev.reference_ok, f"provider failed: {ev.reason}", policy, effects)


def _on_failure(state: State, at: datetime, reference_ok: bool | None, reason: str, policy: Policy,
                effects: list[Effect]) -> State:
    """A failed probe round or a failed mail request: it counts only while an unrelated reference
    answers; N counted failures spanning T seconds with no good probe round between enter CONTINUITY."""
    new = state
    if reference_ok is False:
        if not new.offline:
            effects.append(Notify(
                "This computer is offline",
                "Neither Microsoft 365 nor the reference answers, so this is not a provider outage.",
            ))
            effects.append(LogEvent("offline", reason or "no network"))
        return dataclasses.replace(new, offline=True)
    if reference_ok is None:
        effects.append(LogEvent("uncounted", f"provider failed but no reference was probed: {reason}"))
        return new
    new = dataclasses.replace(new, offline=False)
    if new.forced != "auto":
        return new
    if new.mode is Mode.CONTINUITY:  # a failure breaks a recovery run
        return dataclasses.replace(new, successes=0, first_success_at=None)
    if new.mode is Mode.NORMAL:
        new = _move(new, Mode.SUSPECT, at, reason)
    first = new.first_failure_at or at
    new = dataclasses.replace(new, failures=new.failures + 1, first_failure_at=first)
    elapsed = (at - first).total_seconds()
    if new.failures >= policy.failures_to_enter and elapsed >= policy.failover_after:
        effects.append(Notify(
            "Continuity mode",
            f"Microsoft 365 mail has not answered for {elapsed:.0f} s. Your saved mail stays readable and "
            "new mail goes out through the backup route.",
        ))
        return _move(new, Mode.CONTINUITY, at, f"{new.failures} failed mail checks over {elapsed:.0f} s")
    return new


# ---- analysis -----------------------------------------------------------------------------


def entry_probability(policy: Policy, fail_fraction: float, seconds: float) -> float:
    """The exact probability that mail requests failing independently at random with `fail_fraction`
    (a flaky provider, the references up) enter CONTINUITY within `seconds`, starting NORMAL and probing
    at the policy's own pace, computed over `step` itself (probe rounds only, no passive evidence).
    A round fails with fail_fraction ** probe_requests."""
    q = min(1.0, max(0.0, fail_fraction)) ** policy.probe_requests
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    entered = 0.0
    by_time: dict[float, dict[State, float]] = {0.0: {State.initial(t0): 1.0}}
    times = [0.0]
    while times:
        t = heapq.heappop(times)
        states = by_time.pop(t)
        if t > seconds:
            continue
        for state, prob in states.items():
            for status, chance in ((ProviderStatus.FAILED, q), (ProviderStatus.OK, 1.0 - q)):
                if chance <= 0.0:
                    continue
                new, _ = step(state, ProbeResult(t0 + timedelta(seconds=t), status, True), policy)
                if new.mode is Mode.CONTINUITY:
                    entered += prob * chance
                    continue
                nxt = t + next_probe_delay(new, policy)
                if nxt not in by_time:
                    by_time[nxt] = {}
                    heapq.heappush(times, nxt)
                key = dataclasses.replace(new, since=t0, reason="")  # never steer a step: merge paths
                by_time[nxt][key] = by_time[nxt].get(key, 0.0) + prob * chance
    return entered
