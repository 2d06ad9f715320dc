"""The throttle governor: one per mailbox, it paces every request a source sends to the provider.

`Governor.run(attempt)` holds one of `max_in_flight` slots (Graph allows 4 concurrent requests per
app and mailbox), waits out any shared `Retry-After` pause, and calls attempt(n) for n = 1, 2, ...
A `$batch` runs with `slots=max_in_flight` (Outlook runs 4 of its requests at once, and they count
toward the mailbox's 4), so one batch is in flight per mailbox and nothing else meanwhile.

Retries of Graph requests happen here and nowhere else (requests' own are off; GraphSource's per-item
retries inside a $batch take this object's bounds and pauses; GraphSource._send only renews a rejected
token once), and they are what they are on purpose:
- bounded: Throttled (429) after its Retry-After until `max_retry_after` seconds of waiting or
  `max_throttled_attempts`; Retryable (5xx, a dropped connection, a cut answer) `max_attempts` times,
  after the server's Retry-After when a 503/504 carried one, else a jittered exponential backoff;
  nothing is retried for a request that is not idempotent (retry=False: sendMail, a draft's /send, a
  create) except a 429, which the provider did not act on.
- visible: `throttled` and `retried` count them (sync status, benchmarks); a pause is shared by every
  caller, never hidden in one.
- policy-driven: the bounds are this object's settings (the defaults follow Graph's documented limits;
  a caller passes others), one per mailbox; anything else, and the last failure, propagates as the
  sync.errors exception it is. Patience beyond these bounds (the next sync round, the outbox's backoff,
  failover) belongs to policy (sync/failover.py, sync/outbox.py), not here.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from sync.errors import Retryable, Throttled

T = TypeVar("T")


class Governor:
    def __init__(
        self,
        max_in_flight: int = 4,
        *,
        max_attempts: int = 4,
        base_delay: float = 0.5,
        max_delay: float = 30.0,
        max_retry_after: float = 120.0,
        max_throttled_attempts: int = 30,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if max_in_flight < 1 or max_attempts < 1:
            raise ValueError("max_in_flight and max_attempts must be at least 1")
        self.max_in_flight = max_in_flight
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_retry_after = max_retry_after
        self.max_throttled_attempts = max_throttled_attempts
        self._lock = threading.Lock()
        self._free = threading.Condition(self._lock)
        self._in_use = 0
        self._paused_until = 0.0
        self._sleep = sleep
        self._clock = clock
        self._jitter = jitter
        self._streak = 0  # recent 429s not yet balanced by successes (lengthens the pause)
        self.throttled = 0  # 429s seen (for status and benchmarks)
        self.retried = 0  # retries after 5xx or dropped connections

    def backoff(self, attempt: int) -> float:
        """Full-jitter exponential backoff for the given (1-based) failed attempt."""
        ceiling = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return ceiling * (0.5 + 0.5 * self._jitter())

    def pause(self, seconds: float) -> None:
        """Make every caller wait `seconds` from now before its next request (a shared Retry-After)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + min(seconds, self.max_retry_after))

    def throttle_pause(self, retry_after: float) -> None:
        """A 429: everyone waits Retry-After (exactly: longer pauses measured slower, bench/sync_speed.py)."""
        with self._lock:
            self._streak += 1
        self.pause(retry_after)

    def note_success(self) -> None:
        with self._lock:
            self._streak = max(0, self._streak - 1)

    def _take(self, n: int) -> None:
        """Wait until n slots are free at once, then hold them (a batch takes all of them)."""
        n = min(n, self.max_in_flight)
        with self._free:
            while self._in_use + n > self.max_in_flight:
                self._free.wait()
            self._in_use += n

    def _give(self, n: int) -> None:
        with self._free:
            self._in_use -= min(n, self.max_in_flight)
            self._free.notify_all()

    def _wait_pause(self) -> None:
        while True:
            with self._lock:
                left = self._paused_until - self._clock()
            if left <= 0:
                return
            self._sleep(left)

    def run(self, attempt: Callable[[int], T], *, retry: bool = True, slots: int = 1) -> T:
        """Call attempt(n) for n = 1, 2, ... under `slots` slots until it returns or the budget is spent.

        With retry=False (requests that are not idempotent, like sendMail) only a 429 is retried:
        the provider did not act on a throttled request.
        """
        n = 0
        throttled_wait = 0.0
        while True:
            n += 1
            self._wait_pause()
            delay = 0.0
            self._take(slots)
            try:
                try:
                    result = attempt(n)
                    self.note_success()
                    return result
                except Throttled as exc:
                    self.throttled += 1
                    throttled_wait += exc.retry_after
                    if throttled_wait > self.max_retry_after or n >= self.max_throttled_attempts:
                        raise
                    self.throttle_pause(exc.retry_after)
                except Retryable as exc:
                    if not retry or n >= self.max_attempts:
                        raise
                    self.retried += 1
                    if exc.retry_after is not None:  # a 503/504's Retry-After: everyone waits
                        self.pause(exc.retry_after)
                    else:
                        delay = self.backoff(n)
            finally:
                self._give(slots)
            if delay:
                self._sleep(delay)  # outside the slot: others may go on meanwhile
