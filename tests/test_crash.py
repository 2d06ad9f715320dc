"""Crash at every durable step: the real shell (sync.continuity.Continuity ticks) plays a story against the
simulator and an aiosmtpd relay; a checkpoint raises at step k (for every k), the "process" restarts (new
store connection, start-up recovery), and the story goes on. Afterwards every Message-ID was delivered
exactly once (relay or Graph), every outage-sent one is in Sent Items exactly once as a sent item, and
nothing queued was lost. Policy times are scaled down and pass on a FakeClock.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from sync import engine, mime
from sync.continuity import Continuity
from sync.errors import MessageBad
from sync.model import Mode, OutboxState, Route
from sync.store import Store, cache_path
from tests.continuity_kit import FakeClock, Provider, relay_route, sent_copies, store_key
from tests.mailservers import FaultySmtp, Received

pytestmark = pytest.mark.timeout(900)  # safety net against hangs only

FAST = {"probe_interval_seconds": 5.0, "suspect_probe_interval_seconds": 2.0, "failures_to_enter": 2,
        "failover_after_seconds": 10.0, "successes_to_leave": 2, "recover_after_seconds": 10.0}


class Crash(BaseException):
    """The process dies here (BaseException: no `except Exception` in the shell can swallow it)."""


@dataclass
class CrashAt:
    k: int | None  # crash at the k-th checkpoint after arming (None: never)
    armed: bool = False
    calls: list[str] = field(default_factory=list)

    def __call__(self, name: str) -> None:
        if not self.armed:
            return
        self.calls.append(name)
        if len(self.calls) == self.k:
            raise Crash(f"crash at step {self.k} ({name})")


@dataclass(frozen=True)
class Story:
    name: str
    down: Callable[[float], bool]  # seconds since the start -> is the provider refusing connections?
    mail: tuple[float, ...]  # when (seconds) each message is queued
    arm_at: float = 0.0  # crashes count only from this time on
    length: float = 120.0


STORIES = {
    "send in continuity": Story("continuity", lambda t: 10 <= t < 70, (40.0, 45.0, 50.0), arm_at=35,
                                length=70),
    "recover and reconcile": Story("recover", lambda t: 0 <= t < 60, (30.0, 32.0, 34.0), arm_at=55,
                                   length=60),
    "flapping provider": Story("flapping", lambda t: int(t // 30) % 2 == 1,
                               (5.0, 45.0, 70.0, 100.0), arm_at=0, length=130),
}
MID = re.compile(rb"(?im)^message-id:[ \t]*(<[^>\r\n]+>)")


def relayed(relay: FaultySmtp, mid: str) -> list[Received]:
    """What the relay received with this Message-ID (read from the raw header, no full parse)."""
    return [r for r in relay.received if (m := MID.search(r.data)) and m.group(1).decode() == mid]


@functools.cache
def message(tag: str, i: int) -> mime.Outgoing:
    extra: dict = {"bcc": ["hidden@relay.test"]} if i == 1 else {}
    if i == 2:
        extra["attachments"] = [("notes.txt", "text/plain", b"attached notes\n")]
    return mime.build(sender="adele.vance@contoso.test", to=["bob@relay.test"], subject=f"{tag} #{i}",
                      text=f"message {i}\n", message_id=f"<{tag}-{i}@contoso.test>", **extra)


class World:
    """One run of a story: the shell over a cache that survives crashes, and the servers."""

    def __init__(self, p: Provider, relay: FaultySmtp, tag: str, crash: CrashAt) -> None:
        self.p, self.relay, self.tag, self.crash = p, relay, tag, crash
        self.backup = relay_route(relay)
        self.path = cache_path(p.cfg.home, tag)
        self.cfg = dataclasses.replace(p.cfg, **FAST)  # type: ignore[arg-type]
        self.clock = FakeClock()
        self.restarts = 0
        self.store: Store | None = None
        self.c = self.boot()

    def boot(self) -> Continuity:
        """Process start: open the cache, turn SENDING leftovers into UNCERTAIN, resume the mode; then the
        user settles what only they can (a backup attempt: they ask whether the recipient got it)."""
        self.store = Store.open(self.path, store_key())
        c = Continuity(self.cfg, self.store, self.p.source,
                       {Route.PRIMARY: self.p.route, Route.BACKUP: self.backup}, [self.backup],
                       clock=self.clock)
        c.checkpoint = c.monitor.checkpoint = self.crash
        c.start()
        self.user_decides()
        return c

    def user_decides(self) -> None:
        """What only the user can settle: a backup attempt, or a primary one with no copy anywhere in the
        mailbox (absence proves nothing). They ask the recipient whether it arrived (here: the relay's or
        the tenant's log) and mark it sent or resend it."""
        assert self.store is not None
        for item in self.store.outbox_list([OutboxState.UNCERTAIN]):
            if item.attempt_route is Route.BACKUP:
                got = bool(relayed(self.relay, item.message_id))
            elif item.ask_user:
                got = any(s["message_id"] == item.message_id for s in self.p.sim.sent_items())
            else:
                continue
            engine.user_settles(self.store, item.id, "sent" if got else "resend", self.clock.now())

    def restart(self) -> None:
        assert self.store is not None
        self.store.close()
        self.restarts += 1
        self.c = self.boot()

    def settled(self) -> bool:
        assert self.store is not None
        items = self.store.outbox_list()
        return self.c.monitor.mode is Mode.NORMAL and all(
            i.state is OutboxState.SENT and (i.route is Route.PRIMARY or i.reconciled_at) for i in items)

    def play(self, story: Story) -> None:
        start = self.clock.now()
        while True:
            t = (self.clock.now() - start).total_seconds()
            assert t < story.length + 600, f"the story never settled: {self.store.outbox_list()}"  # type: ignore[union-attr]
            if t >= story.length and self.settled():
                return
            self.crash.armed = t >= story.arm_at
            try:
                self.p.sim.set_outage("refuse" if story.down(t) else "normal")
                for i, at in enumerate(story.mail):
                    if at <= t:
                        self.queue(i)
                self.c.health_tick()
                while self.c.outbox_tick() == 0.0:
                    pass
                self.user_decides()
            except Crash:
                self.restart()
                continue
            self.clock.advance(self.c.monitor.delay())

    def queue(self, i: int) -> None:
        out = message(self.tag, i)
        assert self.store is not None
        if self.store.outbox_by_message_id(out.message_id) is None:
            try:
                engine.queue(self.store, out, self.clock.now())
            except MessageBad:  # pragma: no cover - only if the lookup above raced
                raise
            self.crash("queued")


def check(world: World, story: Story) -> dict[str, str]:
    """The invariants; returns {Message-ID: route} for the record."""
    p, relay = world.p, world.relay
    assert world.store is not None
    items = world.store.outbox_list()
    assert len(items) == len(story.mail), "a queued message was lost"
    routes = {}
    for i in range(len(story.mail)):
        mid = message(world.tag, i).message_id
        by_relay = relayed(relay, mid)
        by_graph = [s for s in p.sim.sent_items() if s["message_id"] == mid]
        assert len(by_relay) + len(by_graph) == 1, f"{mid}: relay {len(by_relay)}, Graph {len(by_graph)}"
        copies = sent_copies(p, mid)
        assert len(copies) == 1 and copies[0]["isDraft"] is False, f"{mid}: Sent Items {copies}"
        if by_relay:
            assert by_relay[0].message()["Bcc"] is None
        routes[mid] = "backup" if by_relay else "primary"
    return routes


@pytest.mark.parametrize("scenario", list(STORIES))
def test_crash_at_every_step(scenario: str, provider: Provider, relay: FaultySmtp) -> None:
    """Tried: the story without crashes (to count its durable steps), then once per step k with a crash
    at step k and a restart. Each run must deliver every message exactly once, put each outage-sent one in
    Sent Items exactly once as a sent (non-draft) item, and lose nothing."""
    story = STORIES[scenario]
    clean = CrashAt(None)
    world = World(provider, relay, f"{story.name}-clean", clean)
    world.play(story)
    routes = check(world, story)
    assert "backup" in routes.values(), "the story must send something through the backup route"
    if story.name == "flapping":
        assert "primary" in routes.values()
    steps = len(clean.calls)
    assert steps >= 5, clean.calls
    for k in range(1, steps + 1):
        crash = CrashAt(k)
        world = World(provider, relay, f"{story.name}-{k}", crash)
        world.play(story)
        check(world, story)
        assert world.restarts == 1, f"step {k} ({clean.calls[k - 1]}) did not crash once"
