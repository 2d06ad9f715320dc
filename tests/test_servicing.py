"""Servicing while running, the pure part and the session window against a fake of the Windows API
(tests/winfakes.py): what the app answers to WM_QUERYENDSESSION, WM_ENDSESSION (Restart Manager's
ENDSESSION_CLOSEAPP, sign-out, shutdown, a cancelled end) and WM_CLOSE, and what it registers for restart."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from desktop import servicing
from desktop.servicing import (
    ENDSESSION_CLOSEAPP,
    ENDSESSION_LOGOFF,
    RESTART_FLAGS,
    WM_CLOSE,
    WM_ENDSESSION,
    WM_QUERYENDSESSION,
    Action,
    SessionWatch,
    Shutdown,
    answer,
    restart_command_line,
)
from tests.winfakes import DEFAULT, FakeSessionApi


def test_session_messages_are_answered_as_microsoft_asks() -> None:
    """Tried: each session message. WM_QUERYENDSESSION (also from Restart Manager) answers TRUE and does
    not stop yet (another app may still refuse); WM_ENDSESSION with wParam FALSE (the end was cancelled)
    must not stop the app; with TRUE it stops, saying why; WM_CLOSE (Restart Manager for an app still
    running, or taskkill) stops the app instead of DefWindowProc destroying only the hidden window."""
    assert answer(WM_QUERYENDSESSION, 0, ENDSESSION_CLOSEAPP) == servicing.Answer(Action.NONE, 1)
    assert answer(WM_QUERYENDSESSION, 0, 0).result == 1
    assert answer(WM_ENDSESSION, 0, ENDSESSION_CLOSEAPP).action is Action.NONE
    rm = answer(WM_ENDSESSION, 1, ENDSESSION_CLOSEAPP)
    assert rm.action is Action.STOP and "Restart Manager" in rm.reason
    assert "signing out" in answer(WM_ENDSESSION, 1, ENDSESSION_LOGOFF).reason
    assert answer(WM_ENDSESSION, 1, 0).reason == "Windows is shutting down"
    assert answer(WM_CLOSE, 0, 0).action is Action.STOP
    assert answer(0x0001, 0, 0).action is Action.DEFAULT  # WM_CREATE and the rest: not ours


def test_restart_command_line_comes_back_in_the_tray_and_refuses_what_windows_would_cut() -> None:
    """Tried: the arguments Restart Manager restarts the app with. A path with spaces stays one argument;
    `run` gains --minimized (an upgrade must not pop the window up), --headless stays headless; a command
    that is not `run` (e.g. `send`) is not registered; a line of 1024 characters or more (Windows' limit)
    is refused rather than cut."""
    line = restart_command_line(["run", "--config", r"C:\Users\a b\lifeboat.toml"])
    assert line == r'run --config "C:\Users\a b\lifeboat.toml" --minimized'
    assert restart_command_line(["run", "--minimized"]) == "run --minimized"
    assert restart_command_line(["run", "--headless"]) == "run --headless"
    assert restart_command_line(["send", "--to", "x@y"]) is None
    assert restart_command_line(["x" * 1010, "run"]) is None


def _stopping_app(shutdown: Shutdown, work: threading.Event, done: list[str]) -> threading.Thread:
    """A stand-in for the app's main thread: waits for the stop, 'flushes', then says it finished."""

    def run() -> None:
        shutdown.stop.wait(60)
        work.wait(60)  # the flush takes as long as the test wants
        done.append("flushed")
        shutdown.finished()

    t = threading.Thread(target=run)
    t.start()
    return t


@pytest.mark.parametrize(("msg", "lparam"), [(WM_ENDSESSION, ENDSESSION_CLOSEAPP), (WM_CLOSE, 0)])
def test_restart_manager_gets_its_answer_only_after_the_app_has_flushed(msg: int, lparam: int) -> None:
    """Tried: Restart Manager's WM_ENDSESSION(TRUE, ENDSESSION_CLOSEAPP), and its WM_CLOSE, sent to the hidden
    window from another thread, as SendMessage does. After the answer Windows may end the process at
    once, so the answer must wait until the app has stopped and flushed; the shutdown reason is shown to
    Windows (ShutdownBlockReasonCreate); the restart was registered with flags 'no crash, no hang, no
    reboot'; WM_QUERYENDSESSION before it answers TRUE without stopping anything."""
    api = FakeSessionApi()
    shutdown = Shutdown()
    watch = SessionWatch(shutdown, api, wait=60).start([r"C:\Lifeboat\lifeboat.py", "run"])
    assert api.classes == [servicing.SESSION_CLASS]
    assert api.restarts == [(r"C:\Lifeboat\lifeboat.py run --minimized", RESTART_FLAGS)]
    assert RESTART_FLAGS == 1 | 2 | 8
    assert api.send(WM_QUERYENDSESSION, 0, ENDSESSION_CLOSEAPP) == 1
    assert not shutdown.stop.is_set()
    work, done = threading.Event(), []
    app = _stopping_app(shutdown, work, done)
    replies: list[int] = []
    sender = threading.Thread(target=lambda: replies.append(api.send(msg, 1, lparam)))
    sender.start()
    assert shutdown.stop.wait(30)
    sender.join(0.3)
    assert replies == [] and done == []  # no answer while the app is still flushing
    work.set()
    sender.join(60)
    app.join(60)
    assert done == ["flushed"] and replies == [0]
    assert api.blocked == ["Lifeboat is saving its state"]
    watch.close()
    assert api.destroyed


def test_a_cancelled_session_end_and_foreign_messages_leave_the_app_running() -> None:
    """Tried: WM_ENDSESSION with wParam FALSE (another app refused, the sign-out was cancelled), and an
    unrelated message: the app keeps running; the unrelated one goes to DefWindowProc."""
    api = FakeSessionApi(restart_result=-2147024809)  # E_INVALIDARG: logged, the app still runs
    shutdown = Shutdown()
    watch = SessionWatch(shutdown, api).start(["lifeboat.py", "run"])
    assert api.send(WM_ENDSESSION, 0, ENDSESSION_LOGOFF) == 0
    assert api.send(0x001A, 0, 0) == DEFAULT and api.defaults == [0x001A]  # WM_SETTINGCHANGE
    assert not shutdown.stop.is_set()
    watch.close()


def test_the_first_reason_to_stop_is_the_one_kept() -> None:
    """Tried: a signal after the session end already asked to stop: the reason stays the first one."""
    shutdown = Shutdown()
    shutdown.request("Restart Manager (an installer is updating Lifeboat)")
    shutdown.request("signal SIGTERM")
    assert shutdown.stop.is_set() and shutdown.reason.startswith("Restart Manager")


def test_off_windows_there_is_no_session_window() -> None:
    """Tried: watch_session on Linux without a fake: nothing starts (signals are the way there)."""
    assert servicing.watch_session(Shutdown()) is None


def test_the_app_id_is_set_only_from_the_installed_layout() -> None:
    """Tried: interpreters the app may run under. Only the MSI's launchers (`<INSTALLDIR>\\Lifeboat.exe`,
    whose Start-menu shortcut carries the AppUserModelID) set it: a python.org or venv interpreter must not
    (Windows may then show the raw ID or drop the toast); off Windows nothing is called."""
    from desktop import win32

    assert win32.installed(r"C:\Program Files\Lifeboat\Lifeboat.exe")
    assert win32.installed(r"C:\Program Files\Lifeboat\lifeboat-cli.exe")
    assert not win32.installed(r"C:\Users\a\AppData\Local\Programs\Python\Python313\pythonw.exe")
    assert not win32.installed(r"C:\src\lifeboat\.venv\Scripts\pythonw.exe")
    assert win32.set_app_id("Lifeboat.Desktop", r"C:\Program Files\Lifeboat\Lifeboat.exe") is False
    assert win32.session_api() is None and win32.event_log_api() is None


def test_the_window_child_starts_through_the_launcher_when_installed() -> None:
    """Tried: the command the window's process is started with. Under the MSI, sys.executable is the
    launcher (Lifeboat.exe), which takes Lifeboat's arguments and refuses Python's (`-m`): the child is
    started with the launcher's `--window-child`, which runs `desktop.window --child`; anywhere else
    with `python -m desktop.window --child`."""
    from desktop.window import child_command

    exe = r"C:\Program Files\Lifeboat\Lifeboat.exe"
    assert child_command(exe) == [exe, "--window-child"]
    assert child_command("/usr/bin/python3") == ["/usr/bin/python3", "-m", "desktop.window", "--child"]
    # the launcher's Python side, run as Lifeboat.exe runs it, with no settings on stdin: the window
    # child's own main reads them (and fails on nothing), never argparse's usage error
    repo = Path(__file__).resolve().parents[1]
    code = ("import sys; sys.path.insert(0, 'installer/payload');"
            " sys.argv = ['Lifeboat.exe', '--window-child'];"
            " import lifeboat_launcher; lifeboat_launcher.main()")
    done = subprocess.run([sys.executable, "-c", code], cwd=repo, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "_child_main" in done.stderr and "usage:" not in done.stderr, done.stderr
