"""The few Windows API calls the app makes, through ctypes (no pywin32): nothing here decides anything.

`session_api()`: a hidden top-level window, its message loop, RegisterApplicationRestart and
ShutdownBlockReasonCreate (desktop.servicing decides what each message means). `event_log_api()`:
RegisterEventSourceW / ReportEventW / DeregisterEventSource (desktop.eventlog decides what to write).
`set_app_id(aumid)`: SetCurrentProcessExplicitAppUserModelID, so the tray's notifications (shown as
toasts) and the window's taskbar button carry Lifeboat's name, not Python's. Each returns None off Windows.
Tested here only through fakes of these objects (see docs/operations.md: what could not be tested).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any


def session_api() -> Any:
    if sys.platform == "win32":
        return _SessionApi()
    return None


def event_log_api() -> Any:
    if sys.platform == "win32":
        return _EventLogApi()
    return None


def installed(executable: str) -> bool:
    r"""Whether this process is the MSI's launcher (`<INSTALLDIR>\Lifeboat.exe` or `lifeboat-cli.exe`,
    which run the embedded Python: sys.executable is the launcher): only its Start-menu shortcut carries
    the AppUserModelID (installer/wix.py MsiShortcutProperty; without one, Windows may drop toasts)."""
    from pathlib import PureWindowsPath

    return PureWindowsPath(executable).name.lower() in ("lifeboat.exe", "lifeboat-cli.exe")


def set_app_id(aumid: str, executable: str | None = None) -> bool:
    """This process's explicit AppUserModelID (set before any window or tray icon exists); only when
    running from the MSI's layout (see `installed`)."""
    if sys.platform != "win32" or not installed(executable or sys.executable):
        return False
    import ctypes

    shell32 = ctypes.WinDLL("shell32")
    shell32.SetCurrentProcessExplicitAppUserModelID.argtypes = [ctypes.c_wchar_p]
    shell32.SetCurrentProcessExplicitAppUserModelID.restype = ctypes.c_long
    return bool(shell32.SetCurrentProcessExplicitAppUserModelID(aumid) == 0)


if sys.platform == "win32":  # pragma: no cover - Windows only
    import ctypes
    from ctypes import wintypes

    LRESULT = ctypes.c_ssize_t
    WNDPROC = ctypes.WINFUNCTYPE(LRESULT, wintypes.HWND, wintypes.UINT, wintypes.WPARAM, wintypes.LPARAM)

    class WNDCLASSEXW(ctypes.Structure):
        _fields_ = [
            ("cbSize", wintypes.UINT), ("style", wintypes.UINT), ("lpfnWndProc", WNDPROC),
            ("cbClsExtra", ctypes.c_int), ("cbWndExtra", ctypes.c_int), ("hInstance", wintypes.HINSTANCE),
            ("hIcon", wintypes.HICON), ("hCursor", wintypes.HANDLE), ("hbrBackground", wintypes.HBRUSH),
            ("lpszMenuName", wintypes.LPCWSTR), ("lpszClassName", wintypes.LPCWSTR),
            ("hIconSm", wintypes.HICON),
        ]

    class _SessionApi:
        def __init__(self) -> None:
            u = self.user32 = ctypes.WinDLL("user32", use_last_error=True)
            k = self.kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
            u.RegisterClassExW.argtypes = [ctypes.POINTER(WNDCLASSEXW)]
            u.RegisterClassExW.restype = wintypes.ATOM
            u.CreateWindowExW.argtypes = [wintypes.DWORD, wintypes.LPCWSTR, wintypes.LPCWSTR, wintypes.DWORD,
                                          ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                          wintypes.HWND, wintypes.HMENU, wintypes.HINSTANCE, wintypes.LPVOID]
            u.CreateWindowExW.restype = wintypes.HWND
            u.DefWindowProcW.argtypes = [wintypes.HWND, wintypes.UINT, wintypes.WPARAM, wintypes.LPARAM]
            u.DefWindowProcW.restype = LRESULT
            u.GetMessageW.argtypes = [ctypes.POINTER(wintypes.MSG), wintypes.HWND, wintypes.UINT,
                                      wintypes.UINT]
            u.GetMessageW.restype = wintypes.BOOL
            u.TranslateMessage.argtypes = [ctypes.POINTER(wintypes.MSG)]
            u.DispatchMessageW.argtypes = [ctypes.POINTER(wintypes.MSG)]
            u.DispatchMessageW.restype = LRESULT
            u.PostMessageW.argtypes = [wintypes.HWND, wintypes.UINT, wintypes.WPARAM, wintypes.LPARAM]
            u.PostMessageW.restype = wintypes.BOOL
            u.DestroyWindow.argtypes = [wintypes.HWND]
            u.DestroyWindow.restype = wintypes.BOOL
            u.PostQuitMessage.argtypes = [ctypes.c_int]
            u.ShutdownBlockReasonCreate.argtypes = [wintypes.HWND, wintypes.LPCWSTR]
            u.ShutdownBlockReasonCreate.restype = wintypes.BOOL
            k.GetModuleHandleW.argtypes = [wintypes.LPCWSTR]
            k.GetModuleHandleW.restype = wintypes.HMODULE
            k.RegisterApplicationRestart.argtypes = [wintypes.LPCWSTR, wintypes.DWORD]
            k.RegisterApplicationRestart.restype = ctypes.c_long
            self._proc: Any = None  # the callback must outlive the window

        def create_window(self, class_name: str, on_message: Callable[[int, int, int, int], int]) -> int:
            def proc(hwnd: int, msg: int, wparam: int, lparam: int) -> int:
                return on_message(hwnd or 0, msg, wparam or 0, lparam or 0)

            self._proc = WNDPROC(proc)
            instance = self.kernel32.GetModuleHandleW(None)
            wc = WNDCLASSEXW(cbSize=ctypes.sizeof(WNDCLASSEXW), lpfnWndProc=self._proc, hInstance=instance,
                             lpszClassName=class_name)
            if not self.user32.RegisterClassExW(ctypes.byref(wc)):
                raise ctypes.WinError(ctypes.get_last_error())
            # a top-level window that is never shown (WS_OVERLAPPED, not HWND_MESSAGE: message-only
            # windows get no WM_QUERYENDSESSION)
            hwnd = self.user32.CreateWindowExW(0, class_name, "Lifeboat", 0, 0, 0, 0, 0, None, None,
                                               instance, None)
            if not hwnd:
                raise ctypes.WinError(ctypes.get_last_error())
            return int(hwnd)

        def pump(self) -> None:
            msg = wintypes.MSG()
            while self.user32.GetMessageW(ctypes.byref(msg), None, 0, 0) > 0:
                self.user32.TranslateMessage(ctypes.byref(msg))
                self.user32.DispatchMessageW(ctypes.byref(msg))

        def default(self, hwnd: int, msg: int, wparam: int, lparam: int) -> int:
            return int(self.user32.DefWindowProcW(hwnd, msg, wparam, lparam))

        def post(self, hwnd: int, msg: int) -> None:
            self.user32.PostMessageW(hwnd, msg, 0, 0)

        def destroy(self, hwnd: int) -> None:
            self.user32.DestroyWindow(hwnd)
            self.user32.PostQuitMessage(0)

        def block_shutdown(self, hwnd: int, reason: str) -> None:
            self.user32.ShutdownBlockReasonCreate(hwnd, reason)

        def register_restart(self, command_line: str, flags: int) -> int:
            return int(self.kernel32.RegisterApplicationRestart(command_line, flags))

    class _EventLogApi:
        def __init__(self) -> None:
            a = self.advapi32 = ctypes.WinDLL("advapi32", use_last_error=True)
            a.RegisterEventSourceW.argtypes = [wintypes.LPCWSTR, wintypes.LPCWSTR]
            a.RegisterEventSourceW.restype = wintypes.HANDLE
            a.ReportEventW.argtypes = [wintypes.HANDLE, wintypes.WORD, wintypes.WORD, wintypes.DWORD,
                                       wintypes.LPVOID, wintypes.WORD, wintypes.DWORD,
                                       ctypes.POINTER(wintypes.LPCWSTR), wintypes.LPVOID]
            a.ReportEventW.restype = wintypes.BOOL
            a.DeregisterEventSource.argtypes = [wintypes.HANDLE]
            a.DeregisterEventSource.restype = wintypes.BOOL

        def open(self, source: str) -> int:
            handle = self.advapi32.RegisterEventSourceW(None, source)
            if not handle:
                raise ctypes.WinError(ctypes.get_last_error())
            return int(handle)

        def report(self, handle: int, event_type: int, event_id: int, strings: Sequence[str]) -> None:
            array = (wintypes.LPCWSTR * len(strings))(*strings)
            if not self.advapi32.ReportEventW(handle, event_type, 0, event_id, None, len(strings), 0, array,
                                              None):
                raise ctypes.WinError(ctypes.get_last_error())

        def close(self, handle: int) -> None:
            self.advapi32.DeregisterEventSource(handle)
