"""The throttle governor, with an injected clock and sleep (no real waiting, no wall-clock limits)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

import pytest

from sync.errors import AuthRequired, Retryable, Throttled, Unreachable
from sync.governor import Governor


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 3))
        self.now += seconds


def scripted(answers: list[object]) -> Callable[[int], object]:
    """An attempt(n) that raises or returns answers[n - 1]: the provider's answers in order."""
    def attempt(n: int) -> object:
        a = answers[n - 1]
        if isinstance(a, Exception):
            raise a
        return a

    return attempt


def governor(t: FakeTime, **kw: object) -> Governor:
    return Governor(sleep=t.sleep, clock=t.clock, jitter=lambda: 1.0, **kw)  # type: ignore[arg-type]


def test_retry_after_is_honoured_fractionally_then_success() -> None:
    """Two 429s with Retry-After 2.128 s: the governor waits exactly that long each time, then returns."""
    t = FakeTime()
    g = governor(t)
    answers = [Throttled("429", retry_after=2.128), Throttled("429", retry_after=2.128), "ok"]

    assert g.run(scripted(answers)) == "ok"
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


def test_a_503_with_retry_after_waits_what_the_server_said() -> None:
    """tried: two 503s carrying Retry-After 1.5, then success: the governor waits 1.5 s each time
    (shared, like a 429's pause) instead of its own backoff (base 10 s here, so a mix-up shows)."""
    t = FakeTime()
    g = governor(t, base_delay=10.0)
    answers = [Retryable("503", retry_after=1.5), Retryable("503", retry_after=1.5), "ok"]

    assert g.run(scripted(answers)) == "ok"
    assert t.slept == [1.5, 1.5] and g.retried == 2


def test_a_batch_takes_every_slot() -> None:
    """tried: a caller holding one slot while a batch (slots=4) wants to start: the batch waits until
    the slot is free, and while it runs no single request can start (one batch in flight per mailbox,
    nothing beside it)."""
    g = Governor(max_in_flight=4)
    order: list[str] = []
    single_in = threading.Event()
    release_single = threading.Event()
    batch_in = threading.Event()
    release_batch = threading.Event()

    def single(n: int) -> None:
        order.append("single")
        single_in.set()
        release_single.wait(10)

    def batch(n: int) -> None:
        order.append("batch")
        batch_in.set()
        release_batch.wait(10)

    t1 = threading.Thread(target=g.run, args=(single,))
    t1.start()
    assert single_in.wait(10)
    t2 = threading.Thread(target=lambda: g.run(batch, slots=4))
    t2.start()
    assert not batch_in.wait(0.2)  # safety-net wait: the batch must not start beside the single request
    release_single.set()
    t1.join(10)
    assert batch_in.wait(10)
    late = threading.Event()
    t3 = threading.Thread(target=lambda: g.run(lambda n: late.set()))
    t3.start()
    assert not late.wait(0.2)  # no request runs beside the batch
    release_batch.set()
    t2.join(10)
    t3.join(10)
    assert late.is_set() and order == ["single", "batch"]
