"""Sign-in with msal: system browser (WAM broker on Windows when present) or device code.

`MsalAuth(config, home)` implements sync.ports.TokenProvider (`token()`) and reports `state()`:
"signed_in" | "sign_in_needed" | "offline", never a traceback. The token cache lives in
msal-extensions' encrypted persistence (DPAPI / Keychain / libsecret) at <home>/msal_cache.bin;
msal's http_cache is persisted beside it so the app constructs offline. Tokens are never logged.
"""

from __future__ import annotations

import logging
import os
import pickle
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from desktop.config import Config
from sync.errors import AuthRequired, ConfigError, KeyMissing, Offline, Unreachable

log = logging.getLogger(__name__)

INSECURE_ENV = "LIFEBOAT_INSECURE_TOKEN_CACHE"
MICROSOFT_HOSTS = ("login.microsoftonline.com", "login.microsoftonline.us", "login.chinacloudapi.cn",
                   "login.partner.microsoftonline.cn", "login.microsoft.com", "login.windows.net")
SCOPES = ("Mail.ReadWrite", "Mail.Send", "User.Read")
REFRESH_MARGIN = 300.0  # renew an access token this many seconds before it expires

SIGNED_IN, SIGN_IN_NEEDED, OFFLINE = "signed_in", "sign_in_needed", "offline"
KEYSTORE_FIX = (
    "run Lifeboat in a desktop session with a keystore (Windows Credential Manager, macOS Keychain, "
    "or a Secret Service such as gnome-keyring on Linux; headless: `dbus-run-session` plus "
    "`gnome-keyring-daemon --unlock --components=secrets`)"
)


def token_persistence(path: Path) -> Any:
    """The encrypted msal-extensions persistence for the token cache (KeyMissing if no keystore).

    LIFEBOAT_INSECURE_TOKEN_CACHE=1 (tests only) stores tokens in a PLAINTEXT file, loudly logged.
    """
    from msal_extensions import FilePersistence, build_encrypted_persistence

    path.parent.mkdir(parents=True, exist_ok=True)
    if os.environ.get(INSECURE_ENV) == "1":
        log.warning("%s=1: TOKENS ARE STORED UNENCRYPTED in %s (for tests only; never in real use)",
                    INSECURE_ENV, path)
        return FilePersistence(str(path))
    try:
        return build_encrypted_persistence(str(path))
    except (ImportError, ValueError, RuntimeError, OSError) as exc:
        raise KeyMissing(f"no keystore to keep the sign-in in ({type(exc).__name__}: {exc})"[:300],
                         fix=KEYSTORE_FIX) from exc


def scopes_for(graph_url: str) -> list[str]:
    """Graph scopes qualified by the Graph host of this cloud (graph.microsoft.us, the simulator...)."""
    parts = urlsplit(graph_url)
    return [f"{parts.scheme}://{parts.netloc}/{s}" for s in SCOPES]


def authority_kwargs(authority: str) -> dict[str, Any]:
    """msal arguments for an authority URL: Entra ID hosts as they are, other hosts as OIDC."""
    parts = urlsplit(authority)
    if parts.scheme != "https":
        raise ConfigError(f"authority_url must be an https:// URL, not {authority!r} (msal refuses http)")
    if parts.hostname in MICROSOFT_HOSTS:
        return {"authority": authority}
    if parts.path.rstrip("/").endswith("/v2.0"):
        return {"oidc_authority": authority.rstrip("/")}
    return {"authority": authority, "instance_discovery": False}


class MsalAuth:
    """TokenProvider over an msal PublicClientApplication with a persisted, encrypted cache."""

    def __init__(self, config: Config, home: Path | None = None, *, timeout: float = 10.0) -> None:
        if not config.client_id:
            raise ConfigError("no client_id configured",
                              fix="set client_id in the [account] section of the config (or by policy)")
        if config.ca_file and not Path(config.ca_file).is_file():
            raise ConfigError(f"ca_file {config.ca_file!r} does not exist",
                              fix="point ca_file at the PEM bundle to trust (e.g. the simulator's ca.pem)")
        self.config = config
        self.home = home or config.home
        self.timeout = timeout
        self.scopes = scopes_for(config.graph_url)
        self.cache_path = self.home / "msal_cache.bin"
        self.http_cache_path = self.home / "msal_http_cache.bin"
        self.last_error = ""
        self._lock = threading.Lock()
        self._app: Any = None
        self._http_cache: dict[str, Any] = self._load_http_cache()
        self._token: tuple[str, float] | None = None  # (access token, monotonic expiry), memory only
        self._force_refresh = False

    # -- msal plumbing -------------------------------------------------------------------------

    def _load_http_cache(self) -> dict[str, Any]:
        try:
            with self.http_cache_path.open("rb") as fh:
                data = pickle.load(fh)  # noqa: S301 - our own file in the user's data folder (msal's recipe)
            return data if isinstance(data, dict) else {}
        except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError, TypeError):
            return {}

    def _save_http_cache(self) -> None:
        tmp = self.http_cache_path.with_suffix(".tmp")
        try:
            self.home.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                pickle.dump(dict(self._http_cache), fh)
            os.replace(tmp, self.http_cache_path)
        except OSError as exc:
            log.warning("could not save msal's http cache: %s", exc)

    def app(self) -> Any:
        """The msal application, built once (offline too, thanks to the persisted http_cache)."""
        if self._app is not None:
            return self._app
        import msal
        from msal_extensions import PersistedTokenCache

        cache = PersistedTokenCache(token_persistence(self.cache_path))
        broker = {}
        if os.name == "nt":
            try:
                import pymsalruntime  # noqa: F401  (msal[broker]: WAM)

                broker = {"enable_broker_on_windows": True}
            except ImportError:
                pass
        try:
            self._app = msal.PublicClientApplication(
                self.config.client_id,
                token_cache=cache,
                http_cache=self._http_cache,
                verify=self.config.ca_file or True,
                timeout=self.timeout,
                **authority_kwargs(self.config.authority),
                **broker,
            )
        except requests.exceptions.SSLError as exc:
            raise Unreachable("the sign-in authority's TLS certificate could not be verified",
                              fix="check the ca_file setting") from exc
        except requests.RequestException as exc:
            raise Offline("the sign-in authority cannot be reached and nothing is cached yet",
                          fix="connect to the network once so Lifeboat can learn the authority") from exc
        except ValueError as exc:  # msal: bad authority
            raise ConfigError(f"msal refused the authority {self.config.authority!r}: {exc}") from exc
        self._save_http_cache()
        return self._app

    def _silent(self) -> dict[str, Any] | None:
        app = self.app()
        accounts = app.get_accounts()
        if not accounts:
            return None
        try:
            result = app.acquire_token_silent_with_error(self.scopes, account=accounts[0],
                                                         force_refresh=self._force_refresh)
        except requests.RequestException as exc:  # expired token and no network (FACTS.md)
            raise Offline("the sign-in authority cannot be reached to renew the token") from exc
        finally:
            self._save_http_cache()
        return result

    def _remember(self, result: dict[str, Any]) -> str:
        token = str(result["access_token"])
        lifetime = float(result.get("expires_in") or 300)
        self._token = (token, time.monotonic() + max(0.0, lifetime - REFRESH_MARGIN))
        self._force_refresh = False
        return token

    # -- TokenProvider and state -----------------------------------------------------------------

    def token(self) -> str:
        with self._lock:
            if self._token and time.monotonic() < self._token[1] and not self._force_refresh:
                return self._token[0]
            result = self._silent()
            if result and "access_token" in result:
                self.last_error = ""
                return self._remember(result)
            self._token = None
            why = (result or {}).get("error", "") if result else "not signed in"
            self.last_error = str(why)
            raise AuthRequired(f"no valid sign-in for {self.config.username or 'this mailbox'} ({why})")

    def invalidate(self) -> None:
        """The provider rejected our token: refresh it on the next token() call."""
        with self._lock:
            self._token = None
            self._force_refresh = True

    def state(self) -> str:
        """"signed_in", "sign_in_needed" or "offline"; never raises for network or sign-in trouble."""
        try:
            self.token()
            return SIGNED_IN
        except AuthRequired:
            return SIGN_IN_NEEDED
        except Unreachable as exc:
            self.last_error = str(exc)
            return OFFLINE

    def account(self) -> str | None:
        try:
            accounts = self.app().get_accounts()
        except Unreachable:
            return None
        return str(accounts[0].get("username")) if accounts else None

    # -- interactive sign-in ---------------------------------------------------------------------

    def _finish(self, result: dict[str, Any] | None, how: str) -> str:
        self._save_http_cache()
        if not result or "access_token" not in result:
            error = (result or {}).get("error", "no answer")
            desc = str((result or {}).get("error_description", "")).splitlines()[0:1]
            raise AuthRequired(f"{how} sign-in failed: {error}{': ' + desc[0] if desc else ''}",
                               fix="try `lifeboat login` again")
        with self._lock:
            self._remember(result)
        claims = result.get("id_token_claims") or {}
        return str(claims.get("preferred_username") or claims.get("name") or "signed in")

    def login_device_code(self, print_fn: Callable[[str], None] = print) -> str:
        """Device code flow: show the code and URL via print_fn, wait for approval; returns the user."""
        app = self.app()
        try:
            flow = app.initiate_device_flow(scopes=self.scopes)
            if "user_code" not in flow:
                raise AuthRequired(f"the authority refused to start a device code sign-in: "
                                   f"{flow.get('error', '')} {flow.get('error_description', '')}".strip())
            print_fn(str(flow["message"]))
            result = app.acquire_token_by_device_flow(flow)
        except requests.RequestException as exc:
            raise Offline("the sign-in authority cannot be reached") from exc
        return self._finish(result, "device code")

    def login_interactive(self) -> str:
        """System browser sign-in (the WAM broker on Windows when msal[broker] is installed)."""
        app = self.app()
        try:
            kwargs: dict[str, Any] = {"prompt": "select_account"}
            if os.name == "nt":
                kwargs["parent_window_handle"] = app.CONSOLE_WINDOW_HANDLE
            result = app.acquire_token_interactive(self.scopes, **kwargs)
        except requests.RequestException as exc:
            raise Offline("the sign-in authority cannot be reached") from exc
        except Exception as exc:  # no browser here (webbrowser.Error, OSError...)
            raise AuthRequired(f"could not open a browser for sign-in ({type(exc).__name__})",
                               fix="use `lifeboat login --device-code`") from exc
        return self._finish(result, "browser")

    def logout(self) -> None:
        app = self.app()
        for account in app.get_accounts():
            app.remove_account(account)
        with self._lock:
            self._token = None
