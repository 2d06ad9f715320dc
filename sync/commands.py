"""The user's commands as data: frozen types that round-trip through JSON (sync.continuity applies them).

Main types: `WakeOutbox`, `SyncNow`, `Force(mode)`, `Pause(paused)`, `SignIn(window)`; `to_json` /
`from_json`: the window child writes each command as one JSON line on its pipe
(`{"command": "force", "mode": "normal"}`).
Pure and import-light (the window child imports it at start-up). What each command means is decided in
one place, `sync.continuity.handle`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

FORCE_MODES = ("continuity", "normal", "auto")
SIGN_IN_SETTING = "sign_in.attempt"  # the last Sign in from the tray or the window: {state, reason, user, at}


@dataclass(frozen=True)
class WakeOutbox:
    """Something was queued: run the outbox now."""

    name = "wake_outbox"


@dataclass(frozen=True)
class SyncNow:
    """Sync now instead of waiting for the interval."""

    name = "sync_now"


@dataclass(frozen=True)
class Force:
    """The user's mode choice: "continuity" (send through the backup route until told otherwise),
    "normal" (back to normal: leave continuity now, reconcile, then the probes decide) or "auto" (the
    probes decide; a continuity mode already entered ends when they see the provider back)."""

    mode: str
    name = "force"

    def __post_init__(self) -> None:
        if self.mode not in FORCE_MODES:
            raise ValueError(f"mode must be one of {', '.join(FORCE_MODES)}, not {self.mode!r}")


@dataclass(frozen=True)
class Pause:
    """Pause (True) or resume (False) the sync; sending, probing and reconciling go on."""

    paused: bool
    name = "pause"

    def __post_init__(self) -> None:
        if not isinstance(self.paused, bool):
            raise ValueError(f"paused must be true or false, not {self.paused!r}")


@dataclass(frozen=True)
class SignIn:
    """Sign in on this computer (the Windows account through WAM, else the system browser): asked from
    the tray or the window; `window` is the asking window's native handle (HWND), None for none."""

    window: int | None = None
    name = "sign_in"

    def __post_init__(self) -> None:
        if self.window is not None and (isinstance(self.window, bool) or not isinstance(self.window, int)
                                        or not 0 <= self.window < 2**64):
            raise ValueError(f"window must be a window handle (a whole number) or null, not {self.window!r}")


Command = WakeOutbox | SyncNow | Force | Pause | SignIn
COMMANDS: dict[str, type[Command]] = {c.name: c for c in (WakeOutbox, SyncNow, Force, Pause, SignIn)}


def to_json(command: Command) -> dict[str, Any]:
    """{"command": name, ...fields}: what the window child writes on its pipe."""
    out: dict[str, Any] = {"command": command.name}
    if isinstance(command, Force):
        out["mode"] = command.mode
    elif isinstance(command, Pause):
        out["paused"] = command.paused
    elif isinstance(command, SignIn):
        out["window"] = command.window
    return out


def from_json(obj: Any) -> Command:
    """The command `to_json` wrote; ValueError for anything else (unknown name, missing or extra field)."""
    if not isinstance(obj, dict) or not isinstance(obj.get("command"), str):
        raise ValueError(f"not a command: {obj!r}")
    kind = COMMANDS.get(obj["command"])
    if kind is None:
        raise ValueError(f"unknown command {obj['command']!r}")
    fields = {k: v for k, v in obj.items() if k != "command"}
    wanted = {"force": {"mode"}, "pause": {"paused"}, "sign_in": {"window"}}.get(kind.name, set())
    if set(fields) != wanted:
        raise ValueError(f"command {kind.name!r} takes {sorted(wanted) or 'no fields'}, not {sorted(fields)}")
    return kind(**fields)
