"""What the whole-app drivers (tests/e2e/*_driver.py, run as scripts by their tests) share: the step
record written to OUT/result.json after each step, and a bounded wait for a condition."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests import waiting

WAIT = 240.0  # a safety net against hangs only, not a performance target


def record(out: Path, result: dict[str, Any], name: str, /, **fields: Any) -> None:
    """Append a step to result["steps"] and write the whole result (a crash keeps what came before)."""
    result["steps"].append({"step": name, **fields})
    (out / "result.json").write_text(json.dumps(result, indent=1, default=str))


def wait(what: str, fn: Callable[[], Any], limit: float = WAIT) -> Any:
    """tests.waiting.wait with the drivers' longer safety net."""
    return waiting.wait(what, fn, limit, every=0.2)
