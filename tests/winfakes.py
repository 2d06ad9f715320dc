"""Fakes of the Windows API behind desktop.win32 (nothing of Windows runs here): they record every call
and deliver messages the way Windows does (a sent message waits for the window procedure's answer)."""

from __future__ import annotations

import queue
from collections.abc import Callable, Sequence
from typing import Any

HWND = 0x5EA1
DEFAULT = -7  # what the fake DefWindowProc answers, so a test can tell it was called


class FakeSessionApi:
    """desktop.win32.SessionApi: one hidden window whose messages are pumped on the caller's thread."""

    def __init__(self, restart_result: int = 0) -> None:
        self.on_message: Callable[[int, int, int, int], int] | None = None
        self.classes: list[str] = []
        self.restarts: list[tuple[str, int]] = []
        self.blocked: list[str] = []
        self.defaults: list[int] = []
        self.destroyed = False
        self.restart_result = restart_result
        self._queue: queue.Queue[tuple[int, int, int, queue.Queue[int] | None]] = queue.Queue()

    def create_window(self, class_name: str, on_message: Callable[[int, int, int, int], int]) -> int:
        self.classes.append(class_name)
        self.on_message = on_message
        return HWND

    def pump(self) -> None:
        while not self.destroyed:
            msg, wparam, lparam, reply = self._queue.get()
            assert self.on_message is not None
            result = self.on_message(HWND, msg, wparam, lparam)
            if reply is not None:
                reply.put(result)

    def send(self, msg: int, wparam: int = 0, lparam: int = 0, timeout: float = 120) -> int:
        """SendMessage from another thread (what Windows and Restart Manager do): wait for the answer."""
        reply: queue.Queue[int] = queue.Queue()
        self._queue.put((msg, wparam, lparam, reply))
        return reply.get(timeout=timeout)

    def default(self, hwnd: int, msg: int, wparam: int, lparam: int) -> int:
        self.defaults.append(msg)
        return DEFAULT

    def post(self, hwnd: int, msg: int) -> None:
        self._queue.put((msg, 0, 0, None))

    def destroy(self, hwnd: int) -> None:
        self.destroyed = True

    def block_shutdown(self, hwnd: int, reason: str) -> None:
        self.blocked.append(reason)

    def register_restart(self, command_line: str, flags: int) -> int:
        self.restarts.append((command_line, flags))
        return self.restart_result


class FakeEventLogApi:
    """desktop.win32's ReportEventW adapter: records (type, id, strings) per report."""

    def __init__(self, *, refuse_open: bool = False, refuse_report: bool = False) -> None:
        self.refuse_open, self.refuse_report = refuse_open, refuse_report
        self.opened: list[str] = []
        self.reports: list[tuple[int, int, int, list[str]]] = []
        self.closed: list[int] = []

    def open(self, source: str) -> int:
        if self.refuse_open:
            raise OSError(1722, "the event source is not registered")  # what WinError would carry
        self.opened.append(source)
        return 42

    def report(self, handle: int, event_type: int, event_id: int, strings: Sequence[str]) -> None:
        if self.refuse_report:
            raise OSError(5, "access denied")
        self.reports.append((handle, event_type, event_id, list(strings)))

    def close(self, handle: int) -> None:
        self.closed.append(handle)

    @property
    def ids(self) -> list[int]:
        return [r[2] for r in self.reports]

    def texts(self) -> str:
        return "\n".join(s for r in self.reports for s in r[3])


def as_any(x: object) -> Any:
    return x
