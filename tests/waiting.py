"""The tests' one bounded wait for a condition on real state (a process, a server, a store)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait(what: str, done: Callable[[], Any], limit: float = 180.0, every: float = 0.05) -> Any:
    """done()'s first truthy value, re-checked every `every` seconds; AssertionError naming `what`
    after `limit` seconds. The limit is a safety net against hangs, never a performance target."""
    deadline = time.monotonic() + limit
    while not (got := done()):
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what} ({limit:g} s)")
        time.sleep(every)
    return got
