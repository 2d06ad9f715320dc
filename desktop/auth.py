"""Sign-in with msal: the Windows account through the WAM broker, the system browser, or device code.

`MsalAuth(config, home)` implements sync.ports.TokenProvider (`token()`) and reports `state()`:
"signed_in" | "sign_in_needed" | "offline" | "network_blocked", never a traceback. msal talks through
sync.sources.network's session (the system's certificate store; the proxy setting, else the PAC file,
else the system's).
The token cache lives in msal-extensions' encrypted persistence (DPAPI / Keychain / libsecret) at
<home>/msal_cache.bin;
msal's http_cache (the authority's discovery answers, which msal keeps 24 hours) is persisted beside it
so the app constructs offline, and re-fetched from the authority every DISCOVERY_REFRESH seconds while
sign-in works, so an offline start up to about a day after the app was last online still constructs.
Nothing else in Lifeboat needs msal: the cache, the window and the backup route work without it.
Tokens are never logged.

On Windows with pymsalruntime (in the Windows payload) the application is built with
`enable_broker_on_windows`: `login_interactive(window)` asks WAM with the window's handle (the console's
for the CLI) and no prompt, so on an Entra-joined machine the OS account signs in without a word; a
missing, broken or refusing broker falls back to the system browser (a user's "cancel" does not).
While signed out, token() lets WAM sign the OS account in silently (prompt="none") every
DEFAULT_ACCOUNT_RETRY seconds at most. Device code can be turned off by policy (allow_device_code).
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import pickle
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from desktop.config import Config
from sync.errors import (
    AuthRequired,
    ConfigError,
    KeyMissing,
    LifeboatError,
    NetworkBlocked,
    Offline,
    Unreachable,
)
from sync.private_files import private_dir
from sync.sources import network

log = logging.getLogger(__name__)

INSECURE_ENV = "LIFEBOAT_INSECURE_TOKEN_CACHE"
MICROSOFT_HOSTS = ("login.microsoftonline.com", "login.microsoftonline.us", "login.chinacloudapi.cn",
                   "login.partner.microsoftonline.cn", "login.microsoft.com", "login.windows.net")
SCOPES = ("Mail.ReadWrite", "Mail.Send", "User.Read")
MSAL_SCOPES = ("openid", "profile", "offline_access")  # msal adds these to every request
# The app registration (installer/tenant/register-app.*, docs/operations.md): Microsoft Graph's app id and
# the ids of the delegated permissions Lifeboat asks for (Microsoft Graph permissions reference).
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
GRAPH_PERMISSION_IDS = {
    "Mail.ReadWrite": "024d486e-b451-40bb-833d-3e66d98c5c73",
    "Mail.Send": "e383f46e-2787-4529-855e-0e479a3ffac0",
    "User.Read": "e1fe6dd8-ba31-4d61-89e7-88639da4683d",
    "openid": "37f7f235-527c-4136-accd-4a02d197296e",
    "profile": "14dad69e-099b-42c9-810b-d002981feec1",
    "offline_access": "7427e0e9-2fba-42fe-b0c0-848c9e6a8182",
}
BROWSER_REDIRECT_URI = "http://localhost"  # msal's system-browser flow listens on a loopback port


def broker_redirect_uri(client_id: str) -> str:
    """The redirect URI WAM (Windows' broker) signs in with: it must be registered for the app."""
    return f"ms-appx-web://Microsoft.AAD.BrokerPlugin/{client_id}"
REFRESH_MARGIN = 300.0  # renew an access token this many seconds before it expires
DISCOVERY_REFRESH = 6 * 3600.0  # re-fetch msal's discovery answers (kept 24 h by msal) this often
DISCOVERY_RETRY = 600.0  # after a failed re-fetch, wait this long before the next try
DEFAULT_ACCOUNT_RETRY = 600.0  # signed out with WAM: ask it for the OS account this often at most
BROWSER_TIMEOUT = 600.0  # seconds the user has to finish signing in in the browser (msal: forever)

SIGNED_IN, SIGN_IN_NEEDED, OFFLINE = "signed_in", "sign_in_needed", "offline"
CANCELLED = "the sign-in was cancelled"
NETWORK_BLOCKED = "network_blocked"  # TLS inspection not trusted, or a proxy refused: not offline
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

    private_dir(path.parent)
    if os.environ.get(INSECURE_ENV) == "1":
        log.warning("%s=1: TOKENS ARE STORED UNENCRYPTED in the data folder (for tests only; never in real "
                    "use)", INSECURE_ENV)
        return FilePersistence(str(path))
    try:
        return build_encrypted_persistence(str(path))
    except (ImportError, ValueError, RuntimeError, OSError) as exc:
        raise KeyMissing(f"no keystore to keep the sign-in in ({type(exc).__name__}: {exc})"[:300],
                         fix=KEYSTORE_FIX) from exc


# msal-extensions' persistences that truncate their file, then write it (the plaintext one, and DPAPI's on
# Windows): on a full disk that leaves an empty file, and the sign-in is gone. They are saved atomically.
TRUNCATING_PERSISTENCES = ("FilePersistence", "FilePersistenceWithDataProtection")


class AtomicSave:
    """An msal-extensions persistence whose save() writes a new file of the same kind beside the old one
    and renames it over it: a save that fails (a full disk) leaves the previous token cache whole."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def save(self, content: str) -> None:
        location = self._inner.get_location()
        tmp = f"{location}.new"
        try:
            type(self._inner)(tmp).save(content)
            os.replace(tmp, location)
        except BaseException:
            with suppress(OSError):
                os.unlink(tmp)
            raise

    def __getattr__(self, name: str) -> Any:  # load, time_last_modified, get_location, is_encrypted
        return getattr(self._inner, name)


def _drop_empty_lock(path: str) -> None:
    """msal-extensions' file lock is `open(path, "xb")` then a write of the pid: on a full disk the write
    fails and leaves an EMPTY lock file that blocks every later save (LockError after 5 s, forever). A
    lock file a live holder has written is never empty, so an empty one is removed."""
    with suppress(OSError):
        if os.path.getsize(path) == 0:
            os.remove(path)


def kept_token_cache(persistence: Any) -> Any:
    """msal-extensions' PersistedTokenCache over `persistence` (saved atomically when it truncates), made
    to keep a change it could not save (a full disk: the lock file or the save failed). msal applies one
    token answer as several changes (access token, account, id token, refresh token): one failing must
    not abort the rest, or a refresh token the authority just rotated is lost and the next refresh is
    refused (invalid_grant). The change stays in memory (the cache does not reload the older file over
    it) and is saved on the next look-up once there is room."""
    from msal import SerializableTokenCache
    from msal_extensions import PersistedTokenCache
    from msal_extensions.token_cache import CrossPlatLock

    if type(persistence).__name__ in TRUNCATING_PERSISTENCES:
        persistence = AtomicSave(persistence)

    class KeptTokenCache(PersistedTokenCache):  # type: ignore[misc]
        unsaved = False

        def modify(self, credential_type: Any, old_entry: Any, new_key_value_pairs: Any = None) -> None:
            try:
                super().modify(credential_type, old_entry, new_key_value_pairs=new_key_value_pairs)
                self.unsaved = False
            except Exception as exc:  # the lock or the save (OSError, a keyring's own errors, LockError)
                _drop_empty_lock(self._lock_location)
                SerializableTokenCache.modify(self, credential_type, old_entry, new_key_value_pairs)
                self._last_sync = time.time()  # memory is newer than the file: never reload it over this
                if not self.unsaved:
                    log.warning("the sign-in could not be saved (%s); it is kept in memory and saved when "
                                "there is room", type(exc).__name__)
                self.unsaved = True

        def search(self, credential_type: Any, **kwargs: Any) -> Any:
            if self.unsaved:
                self._save_kept()
            return super().search(credential_type, **kwargs)

        def _save_kept(self) -> None:
            try:
                with CrossPlatLock(self._lock_location):
                    self._persistence.save(self.serialize())
            except Exception:
                _drop_empty_lock(self._lock_location)
                return
            self._last_sync = time.time()
            self.unsaved = False
            log.info("the sign-in kept in memory is saved")

    return KeptTokenCache(persistence)


@contextmanager
def _translated(what: str) -> Iterator[None]:
    """msal's network and service errors as sync.errors: a certificate the system does not trust or a
    proxy that refuses is NetworkBlocked (sync.sources.network.blocked), another TLS failure Unreachable,
    no answer is Offline, a 5xx from a discovery endpoint (msal's MsalServiceError) is Unreachable, an
    authority msal refuses (ValueError, e.g. invalid_instance or a 4xx from tenant discovery) is a
    ConfigError."""
    from msal.exceptions import MsalServiceError

    try:
        yield
    except requests.RequestException as exc:
        refused = network.blocked(exc, f"sign-in ({what})", "the sign-in authority")
        if refused is not None:  # TLS inspection or a proxy on our side: never an outage, never offline
            raise refused from exc
        if isinstance(exc, requests.exceptions.SSLError):
            raise Unreachable("TLS with the sign-in authority failed") from exc
        raise Offline(f"the sign-in authority cannot be reached to {what} ({type(exc).__name__})",
                      fix="Lifeboat signs in again by itself once the authority answers") from exc
    except MsalServiceError as exc:
        raise Unreachable(f"the sign-in authority failed to {what}: {exc}"[:300]) from exc
    except ValueError as exc:  # msal: bad authority
        raise ConfigError(f"msal refused the authority: {exc}"[:300],
                          fix="check authority_url / tenant") from exc


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


def discovery_url(authority: str) -> str:
    """The OpenID Connect discovery document msal fetches first for this authority."""
    kwargs = authority_kwargs(authority)
    if "oidc_authority" in kwargs:
        return f"{kwargs['oidc_authority']}/.well-known/openid-configuration"
    return f"{authority.rstrip('/')}/v2.0/.well-known/openid-configuration"


def check_authority(config: Config, timeout: float = 10.0) -> str:
    """`lifeboat doctor`: fetch the authority's OpenID configuration as msal does before any sign-in, and
    say exactly what is wrong: TLS not trusted, no answer (DNS, refused, timeout), a tenant Entra does not
    know, an HTTP error, or an answer that is not an OIDC document. Returns what answered."""
    url = discovery_url(config.authority)
    host = urlsplit(url).hostname or url
    try:
        with network.session(config.ca_file or None, config.proxy or None,
                             pac_url=config.proxy_pac_url or None, pool_maxsize=1) as session:
            resp = session.get(url, timeout=timeout)
    except (requests.exceptions.ProxyError, requests.exceptions.SSLError) as exc:
        found = network.blocked(exc, "sign-in", host)  # TLS inspection not trusted, a proxy's 407/403
        if found is not None:
            raise found from exc
        raise Unreachable(f"the sign-in authority {host} or the proxy on the way failed "
                          f"({type(exc).__name__})", fix="check the network and the proxy setting") from exc
    except requests.exceptions.Timeout as exc:
        raise Unreachable(f"the sign-in authority {host} did not answer within {timeout:g} s",
                          fix="check the network, proxy and firewall for this host") from exc
    except requests.RequestException as exc:
        raise Offline(f"the sign-in authority {host} cannot be reached ({type(exc).__name__}: the name "
                      "does not resolve, or the connection is refused)",
                      fix="check the network, and the authority_url / tenant settings") from exc
    if resp.status_code != 200:
        text = resp.text[:2000]
        if "AADSTS90002" in text or "AADSTS900023" in text:
            raise ConfigError(f"the sign-in authority {host} does not know the tenant {config.tenant!r}",
                              fix="set tenant to your tenant ID (a GUID) or a verified domain")
        raise Unreachable(f"the sign-in authority {host} answered HTTP {resp.status_code} to its OpenID "
                          "configuration", fix="check the authority_url setting")
    try:
        doc = resp.json()
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or not doc.get("token_endpoint"):
        raise ConfigError(f"{url} is not an OpenID Connect configuration (no token_endpoint)",
                          fix="check the authority_url setting")
    return f"{host} answers its OpenID configuration (issuer {str(doc.get('issuer', ''))[:120]})"


def broker_runtime_installed() -> bool:
    """pymsalruntime (msal's WAM binding, shipped in the Windows payload) can be imported."""
    return importlib.util.find_spec("pymsalruntime") is not None


def broker_kwargs(platform: str) -> dict[str, Any]:
    """msal's broker opt-in for this platform: WAM on Windows when pymsalruntime is installed."""
    if platform == "win32" and broker_runtime_installed():
        return {"enable_broker_on_windows": True}
    return {}


def _broker_cancelled(result: dict[str, Any]) -> bool:
    """The user closed WAM's dialog (pymsalruntime's Status_UserCanceled): not a reason to open a browser."""
    return "usercancel" in str(result.get("_broker_status", "")).lower().replace("_", "")


def discovery_fetched_at(http_cache: dict[str, Any]) -> float | None:
    """When msal fetched the oldest discovery answer (a "GET ..." entry) in its http_cache, in epoch
    seconds; None when there is none or the layout is not msal's (then a re-fetch is due).

    msal (individual_cache.py, _ExpiringMapping) keeps `{"_index_": (heap, {key: [expires_at,
    created_at]}), key: response, ...}`; discovery GETs are cached for 24 h (throttled_http_client.py).
    This only reads that index, it never writes it."""
    try:
        _heap, stamps = http_cache["_index_"]
        created = [float(v[1]) for k, v in stamps.items() if str(k).startswith("GET ")]
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError):
        return None  # RuntimeError: msal was writing the dict in another thread (a re-fetch is harmless)
    return min(created) if created else None


class MsalAuth:
    """TokenProvider over an msal PublicClientApplication with a persisted, encrypted cache."""

    def __init__(self, config: Config, home: Path | None = None, *, timeout: float = 10.0,
                 discovery_refresh: float | None = DISCOVERY_REFRESH, platform: str = sys.platform,
                 pca: Any = None) -> None:
        """discovery_refresh: seconds between re-fetches of msal's discovery answers while signed in
        (None: never, as before issue 9; tests use it to show what goes wrong without).
        platform: sys.platform, which decides the broker (tests inject "win32"); pca: msal's
        PublicClientApplication class (tests give a subclass standing in for WAM, which Linux lacks)."""
        if not config.client_id:
            raise ConfigError("no client_id configured",
                              fix="set client_id in the [account] section of the config (or by policy)")
        network.check_ca_file(config.ca_file)
        network.check_proxy(config.proxy)
        network.pac_mod.check_pac_url(config.proxy_pac_url)
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
        self.discovery_refresh = discovery_refresh
        self._next_discovery_try = 0.0  # monotonic; no new re-fetch is started before this
        self.discovery_thread: threading.Thread | None = None  # the latest re-fetch (tests join it)
        self.platform = platform
        self._pca = pca
        self.browser_timeout = BROWSER_TIMEOUT
        self.broker = bool(broker_kwargs(platform))  # WAM: sign in with the Windows account
        self.broker_error = ""  # why the last WAM attempt failed (the browser was used instead)
        self._browser_app: Any = None  # without the broker: the fallback to the system browser
        self._next_default_account = 0.0  # monotonic; WAM's silent OS-account sign-in not before this

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
            private_dir(self.home)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                pickle.dump(dict(self._http_cache), fh)
            os.replace(tmp, self.http_cache_path)
        except OSError as exc:
            log.warning("could not save msal's http cache: %s", exc.strerror or type(exc).__name__)

    def _build(self, http_cache: dict[str, Any], *, broker: bool | None = None) -> Any:
        """A new msal application over the persisted token cache and this http_cache (which msal fills
        with the discovery answers it fetches, or reads them from while they are under 24 h old); with
        the WAM broker when this is Windows with pymsalruntime (broker=False: never, for the browser)."""
        import msal
        cache = kept_token_cache(token_persistence(self.cache_path))
        use_broker = self.broker if broker is None else broker
        opt_in = broker_kwargs(self.platform) if use_broker else {}
        pca = self._pca or msal.PublicClientApplication
        with _translated("fetch its discovery answers (the ones kept are missing or over 24 hours old)"):
            return pca(
                self.config.client_id,
                token_cache=cache,
                http_cache=http_cache,
                http_client=self._http_client(),
                **authority_kwargs(self.config.authority),
                **opt_in,
            )

    def _http_client(self) -> requests.Session:
        """msal's transport: the system's certificate store plus ca_file, the proxy setting else the PAC
        file else the system's (sync.sources.network), msal's own one retry, and our timeout on every
        request (msal applies `timeout` only to a session it builds itself)."""
        session = network.session(self.config.ca_file or None, self.config.proxy or None,
                                  pac_url=self.config.proxy_pac_url or None, retries=1)
        session.request = functools.partial(session.request, timeout=self.timeout)  # type: ignore[method-assign]
        return session

    def app(self) -> Any:
        """The msal application, built once (offline too, while the persisted discovery answers are
        under 24 hours old; after that msal needs the authority: Offline)."""
        if self._app is None:
            self._app = self._build(self._http_cache)
            self._save_http_cache()
        return self._app

    def discovery_due(self) -> bool:
        """True when the kept discovery answers are older than discovery_refresh (or missing)."""
        if self.discovery_refresh is None or time.monotonic() < self._next_discovery_try:
            return False
        fetched = discovery_fetched_at(self._http_cache)
        return fetched is None or time.time() - fetched >= self.discovery_refresh

    def refresh_discovery(self) -> bool:
        """Fetch msal's discovery answers afresh from the authority and keep them (persisted).

        A new msal application is built over an empty http_cache, so msal itself asks the authority
        (tenant discovery, and instance discovery where msal does it) and looks the account up as a
        start does; only when all of that succeeded does it replace the old application and cache.
        Nothing is invented: the kept answers are what the authority just said, with msal's own
        24 h expiry. On failure the old (still valid) answers stay and False is returned."""
        fresh: dict[str, Any] = {}
        try:
            app = self._build(fresh)
            with _translated("refresh the sign-in authority's discovery"):
                app.get_accounts()
        except LifeboatError as exc:
            self._next_discovery_try = time.monotonic() + DISCOVERY_RETRY
            log.info("msal discovery not refreshed (the kept answers stay): %s", type(exc).__name__)
            return False
        with self._lock:
            self._app, self._http_cache = app, fresh
            self._save_http_cache()
        log.info("msal discovery refreshed from the authority")
        return True

    def _refresh_discovery_in_background(self) -> None:
        """Start refresh_discovery() in a thread when due, so no token() caller waits for the authority
        (a hanging authority would otherwise hold every Graph request for msal's timeouts)."""
        if not self.discovery_due():
            return
        self._next_discovery_try = time.monotonic() + DISCOVERY_RETRY  # one attempt at a time
        self.discovery_thread = threading.Thread(target=self.refresh_discovery, daemon=True,
                                                 name="lifeboat-msal-discovery")
        self.discovery_thread.start()

    def _silent(self) -> dict[str, Any] | None:
        app = self.app()
        try:  # what msal fetched on the way (instance discovery for aliases) is kept for offline starts
            with _translated("look the account up"):
                accounts = app.get_accounts()
            if not accounts:
                return self._default_account(app)
            with _translated("renew the token"):  # expired token and no network: Offline (FACTS.md)
                result: dict[str, Any] | None = app.acquire_token_silent_with_error(
                    self.scopes, account=accounts[0], force_refresh=self._force_refresh)
        finally:
            self._save_http_cache()
        return result

    def _default_account(self, app: Any) -> dict[str, Any] | None:
        """Signed out, with WAM: the Windows account signed in without any UI (prompt="none": msal asks
        the broker to sign in silently with the OS's default account). None when WAM is off, was asked
        less than DEFAULT_ACCOUNT_RETRY seconds ago, or has no account to give."""
        if not self.broker or time.monotonic() < self._next_default_account:
            return None
        self._next_default_account = time.monotonic() + DEFAULT_ACCOUNT_RETRY
        try:
            result: dict[str, Any] = app.acquire_token_interactive(
                self.scopes, prompt="none", parent_window_handle=app.CONSOLE_WINDOW_HANDLE)
        except Exception as exc:  # pymsalruntime's own errors, msal's RedirectUriError (a ValueError)
            self.broker_error = f"{type(exc).__name__}: {exc}"[:300]
            log.info("the Windows account could not be signed in silently (%s)", type(exc).__name__)
            return None
        if "access_token" not in result:
            self.broker_error = str(result.get("error", "no answer"))
            return None
        log.info("signed in with the Windows account (WAM), without a prompt")
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
                token = self._remember(result)
                self._refresh_discovery_in_background()  # signed in: keep an offline start possible
                return token
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
        """"signed_in", "sign_in_needed", "offline" or "network_blocked"; never raises for network or
        sign-in trouble."""
        try:
            self.token()
            return SIGNED_IN
        except AuthRequired:
            return SIGN_IN_NEEDED
        except NetworkBlocked as exc:
            self.last_error = str(exc)
            return NETWORK_BLOCKED
        except Unreachable as exc:
            self.last_error = str(exc)
            return OFFLINE

    def account(self) -> str | None:
        try:
            app = self.app()
            with _translated("look the account up"):
                accounts = app.get_accounts()
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
        """Device code flow: show the code and URL via print_fn, wait for approval; returns the user.
        Refused (ConfigError) when policy sets allow_device_code = "no"."""
        if self.config.allow_device_code != "yes":
            raise ConfigError(
                "your organisation's policy does not allow signing in with a code on another device "
                "(allow_device_code = no)",
                fix="sign in on this computer: `lifeboat login`, or Sign in in the tray or the window")
        app = self.app()
        with _translated("sign in"):
            flow = app.initiate_device_flow(scopes=self.scopes)
            if "user_code" not in flow:
                raise AuthRequired(f"the authority refused to start a device code sign-in: "
                                   f"{flow.get('error', '')} {flow.get('error_description', '')}".strip())
            print_fn(str(flow["message"]))
            result = app.acquire_token_by_device_flow(flow)
        return self._finish(result, "device code")

    def login_interactive(self, window: int | None = None) -> str:
        """Sign in on this computer: with WAM first (Windows with pymsalruntime; `window` is the HWND
        of the window that asks, None for the console), which signs the Windows account in without a
        prompt where it can; then, when the broker is missing, broken or refuses, the system browser.
        Returns the user; AuthRequired (with the reason) when neither worked."""
        if self.broker:
            try:
                return self._login_broker(window)
            except Unreachable:
                raise  # the authority cannot be reached: a browser would not reach it either
            except AuthRequired as exc:
                if str(exc).startswith(CANCELLED):
                    raise
                self.broker_error = str(exc)
                log.warning("the Windows sign-in (WAM) failed; using the system browser instead")
            try:
                return self._login_browser()
            except AuthRequired as exc:
                why = f"{exc.args[0]}; before that, {self.broker_error}"[:600]
                raise AuthRequired(why, fix=exc.fix) from exc
        return self._login_browser()

    def _login_broker(self, window: int | None) -> str:
        app = self.app()
        handle = app.CONSOLE_WINDOW_HANDLE if window is None else int(window)
        try:
            # no prompt: msal asks WAM to sign in silently with the OS account first, then shows its UI
            result = app.acquire_token_interactive(self.scopes, parent_window_handle=handle)
        except LifeboatError:
            raise
        except requests.RequestException as exc:
            raise Offline(f"the sign-in authority cannot be reached ({type(exc).__name__})") from exc
        except Exception as exc:  # pymsalruntime's errors; msal's RedirectUriError (a ValueError)
            raise AuthRequired(f"the Windows sign-in (WAM) failed ({type(exc).__name__}: {exc})"[:400],
                               fix="check the broker redirect URI of the app registration "
                                   "(docs/operations.md)") from exc
        if result and "access_token" not in result and _broker_cancelled(result):
            raise AuthRequired(CANCELLED, fix="choose Sign in again")
        return self._finish(result, "Windows (WAM)")

    def _login_browser(self) -> str:
        app = self.app()
        if self.broker:  # msal would send the request to WAM again: the same cache, without the broker
            if self._browser_app is None:
                self._browser_app = self._build(self._http_cache, broker=False)
            app = self._browser_app
        no_browser: list[str] = []

        def browser_missing(_uri: str) -> None:  # msal: the browser did not open; it would wait forever
            no_browser.append("yes")
            # ends msal's listener thread (where this runs) at once; a thread's SystemExit is silent
            raise SystemExit("no browser")

        fix = ("use `lifeboat login --device-code`" if self.config.allow_device_code == "yes"
               else "sign in from a desktop session with a web browser")
        try:
            with _translated("sign in"):
                result = app.acquire_token_interactive(self.scopes, prompt="select_account",
                                                       timeout=self.browser_timeout,
                                                       auth_uri_callback=browser_missing)
        except LifeboatError:
            raise
        except Exception as exc:  # no browser here (webbrowser.Error, OSError...), or no answer in time
            if no_browser or "timeout" not in type(exc).__name__.lower():
                raise AuthRequired(f"could not open a browser for sign-in ({type(exc).__name__})",
                                   fix=fix) from exc
            raise AuthRequired(f"the sign-in was not finished in the browser within "
                               f"{self.browser_timeout / 60:g} minutes", fix="choose Sign in again") from exc
        return self._finish(result, "browser")

    def logout(self) -> None:
        app = self.app()
        for account in app.get_accounts():
            app.remove_account(account)
        with self._lock:
            self._token = None
