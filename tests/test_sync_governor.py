"""The throttle governor, with an injected clock and sleep (no real waiting, no wall-clock limits)."""

from __future__ import annotations

import contextlib
import threading

import pytest

from sync.errors import AuthRequired, Throttled, Unreachable
from sync.governor import Governor
from sync.sources.graph import Retryable


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 3))
        self.now += seconds


def governor(t: FakeTime, **kw: object) -> Governor:
    return Governor(sleep=t.sleep, clock=t.clock, jitter=lambda: 1.0, **kw)  # type: ignore[arg-type]


def test_retry_after_is_honoured_fractionally_then_success() -> None:
    """Two 429s with Retry-After 2.128 s: the governor waits exactly that long each time, then returns."""
    t = FakeTime()
    g = governor(t)
    answers = [Throttled("429", retry_after=2.128), Throttled("429", retry_after=2.128), "ok"]

    def attempt(n: int) -> str:
        a = answers[n - 1]
        if isinstance(a, Exception):
            raise a
        return a

    assert g.run(attempt) == "ok"
    assert t.slept == [2.128, 2.128] and g.throttled == 2


def test_throttling_gives_up_after_its_waiting_budget() -> None:
    """A provider that throttles forever: Throttled propagates once max_retry_after seconds are spent."""
    t = FakeTime()
    g = governor(t, max_retry_after=10.0)

    def attempt(n: int) -> str:
        raise Throttled("429", retry_after=3.0)

    with pytest.raises(Throttled):
        g.run(attempt)
    assert sum(t.slept) <= 10.0 and g.throttled == 4


def test_5xx_backoff_is_exponential_bounded_and_only_when_retryable() -> None:
    """Retryable (5xx/drop) failures back off 0.5, 1, 2 s then propagate; a plain Unreachable (a
    timeout) and AuthRequired are not retried; retry=False (sendMail) never retries a 5xx."""
    t = FakeTime()
    g = governor(t, max_attempts=4)
    calls = []

    def flaky(n: int) -> str:
        calls.append(n)
        raise Retryable("503")

    with pytest.raises(Unreachable):
        g.run(flaky)
    assert calls == [1, 2, 3, 4] and t.slept == [0.5, 1.0, 2.0]
    for exc in (Unreachable("timeout"), AuthRequired("401")):
        calls.clear()

        def once(n: int, exc: Exception = exc) -> str:
            calls.append(n)
            raise exc

        with pytest.raises(type(exc)):
            g.run(once)
        assert calls == [1]
    calls.clear()
    with pytest.raises(Unreachable):
        g.run(flaky, retry=False)
    assert calls == [1]


def test_at_most_four_in_flight() -> None:
    """Eight threads call at once; never more than max_in_flight attempts run concurrently."""
    g = Governor(max_in_flight=4)
    running, peak = 0, 0
    lock = threading.Lock()
    gate = threading.Barrier(4, timeout=30)

    def attempt(n: int) -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        with contextlib.suppress(threading.BrokenBarrierError):
            gate.wait()  # four meet here: proves four can run together
        with lock:
            running -= 1

    threads = [threading.Thread(target=g.run, args=(attempt,)) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert peak == 4


def test_bad_arguments_are_refused() -> None:
    """A governor with no slot or no attempt would deadlock or never call: refused at construction."""
    with pytest.raises(ValueError):
        Governor(max_in_flight=0)
