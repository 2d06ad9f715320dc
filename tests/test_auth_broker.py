"""desktop.auth on Windows: the WAM broker's arguments, the silent Windows-account sign-in, the fallback to
the system browser, and device code refused by policy.

WAM (pymsalruntime) exists on Windows only, so here the platform is injected ("win32") and the broker is
the one thing faked: `FakeWam` is the real msal PublicClientApplication (talking to the simulator's
authority) whose broker calls, the part msal hands to pymsalruntime on Windows, are emulated: the OS
account "signs in without UI" through the simulator's auto-approved device flow, or the broker raises /
answers an error as pymsalruntime does. Everything else (token cache, browser flow, policy) is real.
"""

from __future__ import annotations

import webbrowser
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import msal
import pytest

from desktop import auth as auth_mod
from desktop import cli
from desktop import config as config_mod
from desktop.auth import MsalAuth
from desktop.config import Config
from sync.errors import AuthRequired, ConfigError
from tests.syncsim import PY, SimProcess
from tests.test_auth import BROWSER


class RedirectUriError(ValueError):
    """What msal.broker raises when the app registration lacks the broker's redirect URI (AADSTS50011)."""


class FakeWam(msal.PublicClientApplication):  # type: ignore[misc]
    """The real msal application; only what WAM would do on Windows is emulated (see the module doc)."""

    built: ClassVar[list[bool]] = []  # enable_broker_on_windows of each application built
    calls: ClassVar[list[tuple[Any, Any]]] = []  # (parent_window_handle, prompt) of each broker call
    behaviour: ClassVar[str] = "os_account"  # os_account | no_account | raise | error | cancel

    def __init__(self, *args: Any, enable_broker_on_windows: Any = None, **kwargs: Any) -> None:
        FakeWam.built.append(bool(enable_broker_on_windows))
        self.wam = bool(enable_broker_on_windows)
        super().__init__(*args, enable_broker_on_windows=enable_broker_on_windows, **kwargs)

    def acquire_token_interactive(self, scopes: Any, prompt: Any = None, parent_window_handle: Any = None,
                                  **kwargs: Any) -> Any:
        if not self.wam:  # the browser flow: real msal, real localhost listener
            return super().acquire_token_interactive(scopes, prompt=prompt,
                                                     parent_window_handle=parent_window_handle, **kwargs)
        if parent_window_handle is None:  # what msal itself refuses when the broker is on
            raise ValueError("parent_window_handle is required when you opted into using broker")
        FakeWam.calls.append((parent_window_handle, prompt))
        if FakeWam.behaviour == "raise":
            raise RedirectUriError("MsalRuntime needs the current app to register these redirect_uri")
        if FakeWam.behaviour == "error":
            return {"error": "broker_error", "error_description": "Status: ApiContractViolation",
                    "_broker_status": "Response_Status.Status_ApiContractViolation"}
        if FakeWam.behaviour == "cancel":
            return {"error": "broker_error", "error_description": "User canceled",
                    "_broker_status": "Response_Status.Status_UserCanceled"}
        if FakeWam.behaviour == "no_account" and prompt == "none":
            return {"error": "broker_error", "_broker_status": "Response_Status.Status_InteractionRequired"}
        return self.acquire_token_by_device_flow(self.initiate_device_flow(scopes))  # the OS account


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimProcess]:
    s = SimProcess(tmp_path_factory.mktemp("sim"), messages=1, seed=3)
    yield s
    s.stop()


@pytest.fixture
def cfg(env: None, sim: SimProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setattr(FakeWam, "built", [])
    monkeypatch.setattr(FakeWam, "calls", [])
    monkeypatch.setattr(FakeWam, "behaviour", "os_account")
    return Config(client_id="lifeboat-tests", authority_url=sim.authority, graph_url=sim.graph_url,
                  ca_file=sim.ca_path, data_dir=str(tmp_path / "home"))


@pytest.fixture
def windows(monkeypatch: pytest.MonkeyPatch) -> None:
    """This is Windows with pymsalruntime installed (the Windows payload)."""
    monkeypatch.setattr(auth_mod, "broker_runtime_installed", lambda: True)


@pytest.fixture
def browser(tmp_path: Path, cfg: Config, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The system browser: a stand-in (through $BROWSER) that follows the simulator's sign-in page and
    posts the answer to msal's localhost listener; it leaves a marker file each time it is opened."""
    marker = tmp_path / "browser-opened"
    script = tmp_path / "browser.py"
    script.write_text(f"open({str(marker)!r}, 'a').write('x')\n" + BROWSER)
    monkeypatch.setenv("BROWSER", f"{PY} {script} %s")
    monkeypatch.setenv("LIFEBOAT_TEST_CA", cfg.ca_file)
    monkeypatch.setattr(webbrowser, "_tryorder", None)  # webbrowser reads $BROWSER once: read it again
    monkeypatch.setattr(webbrowser, "_browsers", {})
    return marker


def test_windows_signs_in_through_wam_with_the_window_handle_and_no_prompt(cfg: Config, windows: None,
                                                                           browser: Path) -> None:
    """Tried: a sign-in asked from the window on Windows. The app is built with enable_broker_on_windows,
    WAM gets the window's HWND and no prompt (so it can use the OS account without asking), and no
    browser opens. From the CLI it gets msal's CONSOLE_WINDOW_HANDLE. Elsewhere no broker is asked for."""
    auth = MsalAuth(cfg, platform="win32", pca=FakeWam)
    assert auth.broker
    assert auth.login_interactive(window=0x5A5A) == "adele.vance@contoso.test"
    assert FakeWam.built[0] is True and FakeWam.calls == [(0x5A5A, None)]
    assert auth.state() == "signed_in" and not browser.exists()
    auth.logout()
    assert MsalAuth(cfg, platform="win32", pca=FakeWam).login_interactive() == "adele.vance@contoso.test"
    assert FakeWam.calls[-1] == (msal.PublicClientApplication.CONSOLE_WINDOW_HANDLE, None)
    FakeWam.built.clear()
    linux = MsalAuth(cfg, platform="linux", pca=FakeWam)
    linux.app()
    assert not linux.broker and FakeWam.built == [False]


def test_signed_out_on_windows_the_os_account_signs_in_silently(cfg: Config, windows: None,
                                                                browser: Path) -> None:
    """Tried: a fresh start on an Entra-joined machine, nobody signed in to Lifeboat. token() asks WAM
    for the Windows account with prompt="none" (no UI) and is signed in, without any sign-in command;
    with no OS account WAM says so, the state is sign_in_needed, and WAM is not asked again at once."""
    auth = MsalAuth(cfg, platform="win32", pca=FakeWam)
    assert auth.state() == "signed_in" and not browser.exists()
    assert FakeWam.calls == [(msal.PublicClientApplication.CONSOLE_WINDOW_HANDLE, "none")]
    auth.logout()
    FakeWam.behaviour = "no_account"
    fresh = MsalAuth(cfg, platform="win32", pca=FakeWam)
    assert fresh.state() == "sign_in_needed" and fresh.state() == "sign_in_needed"
    assert len(FakeWam.calls) == 2  # one more silent try, not one per token() call


@pytest.mark.parametrize("behaviour", ["raise", "error"])
def test_a_failing_broker_falls_back_to_the_system_browser(cfg: Config, windows: None, browser: Path,
                                                           behaviour: str) -> None:
    """Tried: WAM raising (the registration lacks the broker redirect URI) or answering an error: the
    system browser signs in instead (its app built without the broker, over the same token cache), and
    the broker's failure is kept for the report."""
    FakeWam.behaviour = behaviour
    auth = MsalAuth(cfg, platform="win32", pca=FakeWam)
    assert auth.login_interactive(window=42) == "adele.vance@contoso.test"
    assert browser.exists() and FakeWam.built[-1] is False
    assert "WAM" in auth.broker_error or "broker_error" in auth.broker_error
    assert MsalAuth(cfg, platform="win32", pca=FakeWam).state() == "signed_in"


def test_cancelling_wam_opens_no_browser(cfg: Config, windows: None, browser: Path) -> None:
    """Tried: the user closes WAM's dialog: a clear "cancelled", and no browser pops up after it."""
    FakeWam.behaviour = "cancel"
    auth = MsalAuth(cfg, platform="win32", pca=FakeWam)
    with pytest.raises(AuthRequired, match="cancelled"):
        auth.login_interactive(window=7)
    assert not browser.exists()


def test_device_code_refused_by_policy(cfg: Config, sim: SimProcess, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """Tried: `lifeboat login --device-code` where machine policy sets allow_device_code = "no": exit 1
    with a message saying the organisation refuses it and how to sign in instead; no device code is
    started at the authority. A user's own config cannot turn it back on."""
    import dataclasses

    with pytest.raises(ConfigError, match="policy does not allow"):
        MsalAuth(dataclasses.replace(cfg, allow_device_code="no")).login_device_code(print)
    policy = tmp_path / "policy.toml"
    policy.write_text('[account]\nallow_device_code = "no"\n')
    user = tmp_path / "config.toml"
    user.write_text(f'[account]\nclient_id = "lifeboat-tests"\nauthority_url = "{sim.authority}"\n'
                    f'graph_url = "{sim.graph_url}"\nca_file = "{sim.ca_path}"\nallow_device_code = "yes"\n')
    monkeypatch.setattr(config_mod, "MACHINE_POLICY", policy)
    monkeypatch.delenv("LIFEBOAT_POLICY", raising=False)
    pending = sim.admin("GET", "/devicecode")
    code = cli.main(["--config", str(user), "--home", cfg.data_dir, "login", "--device-code"])
    err = capsys.readouterr().err
    assert code == 1 and "policy does not allow signing in with a code" in err and "lifeboat login" in err
    assert sim.admin("GET", "/devicecode") == pending


# msal's listener thread ends with SystemExit when no browser opened: Python's threading.excepthook is
# silent about it, pytest's reports it anyway
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_no_browser_or_an_abandoned_one_fails_with_a_reason_not_a_hang(
        cfg: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tried: Sign in from the tray where no browser can be opened ($BROWSER names a command that fails),
    then with a browser that opens but the user never finishes (closes the tab). msal would wait forever:
    the runner must record "failed" with the reason, notify it, and free the thread. Real msal, real
    SignInRunner over a real cache."""
    import os

    from desktop.signin import SignInRunner
    from sync.commands import SIGN_IN_SETTING
    from sync.store import Store

    monkeypatch.setattr(webbrowser, "_tryorder", None)
    monkeypatch.setattr(webbrowser, "_browsers", {})
    monkeypatch.setenv("BROWSER", "false %s")
    store = Store.open(tmp_path / "cache.db", os.urandom(32))
    said: list[tuple[str, str]] = []
    auth = MsalAuth(cfg)
    runner = SignInRunner(auth, store, notify=lambda t, b: said.append((t, b)))
    try:
        assert runner.start()
        assert runner.thread is not None
        runner.thread.join(120)
        attempt = store.get_setting(SIGN_IN_SETTING)
        assert attempt["state"] == "failed" and "could not open a browser" in attempt["reason"]
        assert "--device-code" in attempt["reason"] and said[-1][0] == "Lifeboat: sign-in failed"
        monkeypatch.setattr(webbrowser, "_tryorder", None)
        monkeypatch.setattr(webbrowser, "_browsers", {})
        monkeypatch.setenv("BROWSER", "true %s")  # opens "fine" and does nothing: the tab closed
        auth.browser_timeout = 1.0
        assert runner.start()
        runner.thread.join(120)
        attempt = store.get_setting(SIGN_IN_SETTING)
        assert attempt["state"] == "failed" and "not finished in the browser" in attempt["reason"]
        assert not runner.thread.is_alive()
    finally:
        store.close()
