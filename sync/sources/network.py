"""The enterprise network: whom Lifeboat trusts and which proxy it goes through, for every connection.

Trust is the operating system's certificate store (`truststore`: Windows CryptoAPI, macOS Security
framework, OpenSSL's default store on Linux, where SSL_CERT_FILE/SSL_CERT_DIR configure it), plus an
optional `ca_file` added to it, never certifi's list alone: an organisation that inspects TLS pushes its
root into the system store, and that must be enough.

Proxies, first that applies (`choose_route`, pure): the `proxy` setting (a static proxy); else the
`proxy_pac_url` setting (a PAC file, sync/sources/pac.py); else, on Windows, the PAC file of the user's
Internet Options (AutoConfigURL, or its Group Policy value); else the system's static proxy (requests'
trust_env: HTTPS_PROXY/NO_PROXY, and on Windows and macOS the static proxy of the system settings through
urllib's getproxies). `Session.proxies_for(url)` is the one place that says which proxy a URL goes
through. Not supported: WPAD (discovering a PAC file through DNS/DHCP: a known attack path, never done),
SOCKS proxies, proxy authentication other than user:password in a proxy URL (no NTLM, Kerberos or
Negotiate) (docs/operations.md, "Enterprise networks").

`blocked(exc)` is the one place that tells "the network between us and Microsoft refuses" (a certificate
the system does not trust, a proxy that answers CONNECT with 407 or 403, a PAC-chosen one too) from an
outage: it returns a NetworkBlocked, which the failover never counts as a provider failure.
"""
from __future__ import annotations

import os
import re
import ssl
import sys
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import requests
import truststore
from requests.adapters import HTTPAdapter

from sync.errors import ConfigError, NetworkBlocked, Unreachable
from sync.sources import pac as pac_mod

CA_FIX = ("put your organisation's root certificate into the system's certificate store (Group Policy or "
          "Intune do this for TLS inspection), or point the ca_file setting at it")
PROXY_AUTH_FIX = ("the proxy asks Lifeboat to authenticate (407), which Lifeboat does not do (NTLM, Kerberos "
                  "or Negotiate): ask IT to let Lifeboat reach login.microsoftonline.com and "
                  "graph.microsoft.com without proxy authentication, or set the proxy setting to "
                  "http://user:password@host:port for a proxy that takes Basic authentication")
PROXY_REFUSED_FIX = ("the proxy refuses the connection: ask IT to allow login.microsoftonline.com and "
                     "graph.microsoft.com through it, or set the proxy setting to the proxy to use")
_TUNNEL = re.compile(r"Tunnel connection failed: (\d{3})")


def check_ca_file(ca_file: str | None) -> None:
    if ca_file and not os.path.isfile(ca_file):
        raise ConfigError(f"ca_file {ca_file!r} does not exist",
                          fix="point ca_file at the PEM file of the CA to trust in addition to the "
                              "system's certificate store (e.g. the simulator's ca.pem)")


def check_proxy(proxy: str | None) -> None:
    if not proxy:
        return
    parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"proxy {proxy!r} is not a proxy URL",
                          fix="set proxy to http://host:port (or leave it empty to use the system's proxy)")


def tls_context(ca_file: str | None = None) -> ssl.SSLContext:
    """A client context that verifies against the system's store (plus `ca_file`), hostname checked."""
    check_ca_file(ca_file)
    ctx = truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca_file:
        ctx.load_verify_locations(cafile=ca_file)
    return ctx


class SystemTrustAdapter(HTTPAdapter):
    """requests' adapter over a truststore context: with verify=True no certifi bundle is loaded; a
    string `verify` (REQUESTS_CA_BUNDLE, a per-request bundle) is added to the system's store."""

    def __init__(self, ca_file: str | None = None, **kwargs: Any) -> None:
        self.ssl_context = tls_context(ca_file)
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self.ssl_context
        super().init_poolmanager(*args, **kwargs)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        proxy_kwargs["ssl_context"] = self.ssl_context
        return super().proxy_manager_for(proxy, **proxy_kwargs)

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        super().cert_verify(conn, url, verify, cert)
        if verify is True:  # the context's trust (system store + ca_file), not certifi's bundle
            conn.ca_certs = None
            conn.ca_cert_dir = None


@dataclass(frozen=True)
class Route:
    """How Lifeboat picks its proxy: "proxy" (static, `value` is its URL), "pac" (`value` is the PAC
    file's URL) or "system" (the system's static proxy settings, or none)."""

    kind: Literal["proxy", "pac", "system"]
    value: str = ""
    source: str = "the system's proxy settings"

    def describe(self) -> str:
        if self.kind == "proxy":
            return f"the proxy {urlsplit(self.value).netloc or self.value} ({self.source})"
        if self.kind == "pac":
            return f"the PAC file at {urlsplit(self.value).netloc} ({self.source})"
        return self.source


def proxy_url(proxy: str) -> str:
    return proxy if "://" in proxy else f"http://{proxy}"


def choose_route(proxy: str | None, pac_url: str | None, system_pac: str | None) -> Route:
    """The precedence (pure): the proxy setting > proxy_pac_url > the PAC URL of the system (Windows
    Internet Options; only an http(s) URL: a local file path there is ignored) > the system's static proxy."""
    if proxy:
        check_proxy(proxy)
        return Route("proxy", proxy_url(proxy), "the proxy setting")
    if pac_url:
        pac_mod.check_pac_url(pac_url)
        return Route("pac", pac_url, "the proxy_pac_url setting")
    if system_pac and urlsplit(system_pac).scheme in ("http", "https") and urlsplit(system_pac).hostname:
        return Route("pac", system_pac, "the automatic configuration script of Internet Options")
    return Route("system")


def system_pac_url() -> str | None:
    """The PAC URL of the user's Internet Options (AutoConfigURL: HKCU then HKLM, their Group Policy values
    first; pypac reads it), on Windows only; None elsewhere or when none is set."""
    if sys.platform != "win32":
        return None
    from pypac.os_settings import autoconfig_url_from_registry

    try:
        return autoconfig_url_from_registry() or None
    except OSError:
        return None


def route_for(proxy: str | None, pac_url: str | None) -> Route:
    """The route for these settings on this machine (the registry is read only when both are empty)."""
    return choose_route(proxy, pac_url, None if proxy or pac_url else system_pac_url())


class Session(requests.Session):
    """requests.Session whose proxy per request is `proxies_for(url)`; with a PAC route, a proxy that
    refuses or does not answer (ProxyError, ConnectTimeout) is skipped for the PAC's next choice, as
    pypac's PACSession does, and when none is left the last failure stands (so `blocked()` sees a
    407/403 from a PAC-chosen proxy as it does from a static one)."""

    def __init__(self, route: Route) -> None:
        super().__init__()
        self.route = route
        self.pac: pac_mod.Pac | None = None
        if route.kind == "pac":
            self.pac = pac_mod.Pac(route.value, lambda url: pac_mod.fetch(self, url))
        elif route.kind == "proxy":
            self.proxies = {"https": route.value, "http": route.value}

    def proxies_for(self, url: str) -> dict[str, str | None] | None:
        """The proxies for one request to `url`: None leaves it to the session's (a static proxy) or the
        system's, as when a PAC file cannot be fetched (what Windows does: its static proxy, else direct);
        a None value is DIRECT."""
        if self.pac is None:
            return None
        chosen = self.pac.proxy(url)
        if not self.pac.loaded:
            return None
        return {"http": chosen, "https": chosen, "all": chosen}

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        if self.pac is None or kwargs.get("proxies") is not None:
            return super().request(method, url, *args, **kwargs)
        kwargs.pop("proxies", None)
        proxies = self.proxies_for(url)
        while True:
            try:
                return super().request(method, url, *args, proxies=proxies, **kwargs)  # type: ignore[misc,arg-type]
            except (requests.exceptions.ProxyError, requests.exceptions.ConnectTimeout):
                used = (proxies or {}).get("https")
                following = self.pac.next_after(used, url) if used else False
                if following is False:
                    raise
                proxies = {"http": following, "https": following, "all": following}  # type: ignore[dict-item]


def session(ca_file: str | None = None, proxy: str | None = None, *, pac_url: str | None = None,
            pool_maxsize: int = 10, retries: int = 0) -> Session:
    """A Session that trusts the system's store (+ ca_file) and goes through the route `route_for` picks:
    `proxy`, else the PAC file at `pac_url`, else the system's PAC file (Windows), else its static proxy."""
    out = Session(route_for(proxy, pac_url))
    adapter = SystemTrustAdapter(ca_file, pool_connections=2, pool_maxsize=pool_maxsize, max_retries=retries)
    out.mount("https://", adapter)
    out.mount("http://", adapter)
    return out


def _chain(exc: BaseException) -> list[BaseException]:
    """exc, its args that are exceptions (urllib3 wraps that way), and its causes, depth-first."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo and len(seen) < 20:
        cur = todo.pop()
        if cur in seen:
            continue
        seen.append(cur)
        todo.extend(a for a in getattr(cur, "args", ()) if isinstance(a, BaseException))
        for nxt in (getattr(cur, "reason", None), cur.__cause__, cur.__context__):
            if isinstance(nxt, BaseException):
                todo.append(nxt)
    return seen


def proxy_answer(exc: BaseException) -> int | None:
    """The status a proxy answered a CONNECT with (http.client: "Tunnel connection failed: 407 ..."),
    None when no proxy answered (not a proxy error, or the proxy could not be reached at all)."""
    for cur in _chain(exc):
        found = _TUNNEL.search(str(cur))
        if found:
            return int(found.group(1))
    return None


def untrusted(exc: BaseException) -> str | None:
    """The verification message when a certificate was not trusted, else None (other TLS failures,
    such as a reset during the handshake, are not a trust question)."""
    for cur in _chain(exc):
        if isinstance(cur, ssl.SSLCertVerificationError):
            return str(cur.verify_message or cur.reason or "certificate verify failed")
        if "CERTIFICATE_VERIFY_FAILED" in str(cur):
            return "certificate verify failed"
    return None


def blocked(exc: BaseException, what: str, host: str) -> NetworkBlocked | None:
    """A NetworkBlocked when the network on our side refused (untrusted certificate, a proxy answering
    CONNECT with 4xx), else None. A proxy's 5xx (502/503/504: it could not reach Microsoft) is not
    blocked: that is what an outage looks like through a proxy, and it stays Unreachable."""
    status = proxy_answer(exc)
    if status == 407:
        return NetworkBlocked(f"{what}: the proxy asks for authentication (407) to reach {host}",
                              reason="proxy authentication required (407)", fix=PROXY_AUTH_FIX)
    if status is not None and 400 <= status < 500:
        return NetworkBlocked(f"{what}: the proxy refused to connect to {host} ({status})",
                              reason=f"proxy refused ({status})", fix=PROXY_REFUSED_FIX)
    message = untrusted(exc)
    if message is not None:
        return NetworkBlocked(f"{what}: the TLS certificate of {host} is not trusted ({message})",
                              reason="certificate not trusted", fix=CA_FIX)
    return None


@dataclass(frozen=True)
class Reached:
    """What `reach` found: the HTTP status, the route, the proxy the URL went through (None: direct or
    the system's static proxy) and, with a PAC route, why the PAC file was not used ("" when it was)."""

    status: int
    route: Route
    proxy: str | None = None
    pac_error: str = ""

    def path(self) -> str:
        """The path in words, for `lifeboat doctor`."""
        if self.route.kind != "pac":
            return f"through {self.route.describe()}"
        if self.pac_error:
            return (f"through the system's proxy settings: {self.route.describe()} is not used "
                    f"({self.pac_error})")
        way = f"the proxy {urlsplit(self.proxy).netloc}" if self.proxy else "DIRECT"
        return f"through {way}, as {self.route.describe()} says"


def reach(url: str, what: str, ca_file: str | None = None, proxy: str | None = None,
          timeout: float = 5.0, *, pac_url: str | None = None) -> Reached:
    """One GET without credentials through the trust and proxy Lifeboat uses (for `lifeboat doctor`):
    the HTTP status of any answer (a 401 from Graph proves the path works) and the path it took;
    NetworkBlocked when our side's network refuses, Unreachable when nothing answers."""
    with session(ca_file, proxy, pac_url=pac_url, pool_maxsize=1) as s:
        try:
            with s.get(url, timeout=timeout, allow_redirects=False) as resp:
                chosen = s.proxies_for(url)
                return Reached(resp.status_code, s.route, (chosen or {}).get("https"),
                               s.pac.error if s.pac else "")
        except requests.RequestException as exc:
            host = urlsplit(url).netloc
            raise blocked(exc, what, host) or Unreachable(
                f"{what}: {host} cannot be reached ({type(exc).__name__})") from exc
