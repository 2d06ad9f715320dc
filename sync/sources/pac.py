"""Proxy auto-configuration (PAC): fetch the organisation's PAC file and ask it which proxy serves a URL.

The PAC file comes from a fixed URL (the `proxy_pac_url` setting or policy, or on Windows the
AutoConfigURL of the user's Internet Options, read by pypac); it is fetched directly (never through a
proxy, as Windows does), with the same trust as every other connection, a bounded timeout and size, and
run by pypac (dukpy's JavaScript engine). WPAD (discovering a PAC file through DNS or DHCP) is never
done: anyone who can answer `wpad.<domain>` on a network could route Lifeboat through their proxy.

`Pac.proxies(url)` is the answer for one URL, as requests' `proxies`: the first proxy of
"PROXY a; PROXY b; DIRECT" that has not failed, None for DIRECT. Only the URL's scheme, host and port
are given to the script (as Chrome does for https): paths and queries carry message ids and searches.

A PAC file that cannot be fetched or run is not an outage and not a stop: Lifeboat goes the way Windows
does then (the system's static proxy if one is set, else DIRECT: a laptop outside the office cannot reach
its internal PAC host and must go direct), logs why once, says it in `lifeboat doctor` (`error`), and
tries the file again after RETRY_SECONDS. A good file is fetched again after REFRESH_SECONDS (a refresh
that fails keeps the file that worked). A script that fails for one URL sends that URL DIRECT.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import requests
from pypac.parser import MalformedPacError, PACFile, _inject_function_into_js
from pypac.parser_functions import function_injections
from pypac.parser_functions_ex import function_injections as ipv6_functions
from pypac.resolver import ProxyResolver

from sync.errors import ConfigError

log = logging.getLogger(__name__)

FETCH_TIMEOUT = (5.0, 10.0)  # connect, read: a PAC host that does not answer is given up quickly
MAX_BYTES = 1 << 20  # a PAC file is a few kB; a larger answer is not one
RETRY_SECONDS = 60.0
REFRESH_SECONDS = 1800.0


def check_pac_url(pac_url: str | None) -> None:
    if not pac_url:
        return
    parts = urlsplit(pac_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"proxy_pac_url {pac_url!r} is not an http(s) URL",
                          fix="set proxy_pac_url to the http:// or https:// URL of the PAC file (the "
                              "'automatic configuration script' of Internet Options), or leave it empty")


def origin(url: str) -> str:
    """scheme://host[:port]/: all of a URL a PAC script is shown."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/"


def fetch(session: requests.Session, pac_url: str) -> str:
    """The PAC file's text, fetched DIRECT through `session`'s adapters (its trust), bounded in time
    and size. ConfigError saying what went wrong (no answer, an HTTP error, too big)."""
    host = urlsplit(pac_url).netloc
    try:
        with session.get(pac_url, timeout=FETCH_TIMEOUT, stream=True, allow_redirects=True,
                         proxies={"http": None, "https": None, "all": None}) as resp:  # type: ignore[dict-item]
            if resp.status_code != 200:
                raise ConfigError(f"the PAC file at {host} answered {resp.status_code}",
                                  fix="check proxy_pac_url (or the automatic configuration script of "
                                      "Internet Options)")
            body = b""
            for chunk in resp.iter_content(65536):
                body += chunk
                if len(body) > MAX_BYTES:
                    raise ConfigError(f"the PAC file at {host} is larger than {MAX_BYTES} bytes",
                                      fix="check proxy_pac_url: it must name a PAC file")
            return body.decode(resp.encoding or "utf-8", errors="replace")
    except requests.RequestException as exc:
        raise ConfigError(f"the PAC file at {host} could not be fetched ({type(exc).__name__})",
                          fix="check proxy_pac_url and that the PAC host can be reached from here "
                              "(outside the office it usually cannot: Lifeboat then uses the system's proxy "
                              "settings, else goes direct)") from exc


# dukpy's interpreter gives every script Node's `process.env` (the whole environment) and `require`
# (which reads .js files from disk through call_python("dukpy.load_module")): a PAC file, possibly
# fetched over plain http, could read both and leak them through dnsResolve() or a proxy name.
_SCRUB = "delete globalThis.process; globalThis.require = undefined; globalThis.module = undefined; void 0;"
_HOST_FUNCTIONS = ("dukpy.load_module", "dukpy.normalize_module")


class SandboxedPacFile(PACFile):
    """pypac's PACFile (the same PAC functions, the same FindProxyForURL/FindProxyForURLEx calls), in an
    interpreter with no environment, no `require` and no file access, before the script runs."""

    def __init__(self, pac_js: str) -> None:
        from dukpy import JSInterpreter, JSRuntimeError

        self._entry_func = "FindProxyForURL"
        try:
            self._context = JSInterpreter()
            for name in _HOST_FUNCTIONS:
                self._context._funcs.pop(name, None)
            self._context.evaljs(_SCRUB)
            for name, func in itertools.chain(function_injections.items(), ipv6_functions.items()):
                _inject_function_into_js(self._context, name, func)
            self._context.evaljs(pac_js)
            self.find_proxy_for_url("/", "0.0.0.0")  # noqa: S104 (as pypac: a broken script shows now)
        except JSRuntimeError as e:
            raise MalformedPacError(original_exc=e) from e
        self.js = pac_js


def parse(text: str, host: str) -> PACFile:
    try:
        return SandboxedPacFile(text)
    except Exception as exc:  # MalformedPacError, or dukpy's own errors on a script that fails
        raise ConfigError(f"the PAC file at {host} is not a working PAC script ({type(exc).__name__})",
                          fix="check proxy_pac_url: the file must define FindProxyForURL(url, host)") from exc


class Pac:
    """One PAC URL, fetched on first use through `get` (a session's direct fetch), then resolved per
    origin (cached; pypac's ProxyResolver parses "PROXY a; SOCKS b; DIRECT"), with failover: a proxy that
    refused or did not answer is skipped for the next candidate, as pypac's PACSession does."""

    def __init__(self, pac_url: str, get: Callable[[str], str],
                 clock: Callable[[], float] = time.monotonic) -> None:
        check_pac_url(pac_url)
        self.url = pac_url
        self.error = ""  # why the PAC file is not used ("" when it is, or before the first use)
        self._get = get
        self._clock = clock
        self._lock = threading.Lock()
        self._resolver: ProxyResolver | None = None
        self._loaded_at: float | None = None
        self._cache: dict[str, list[str]] = {}
        self._banned: set[str] = set()

    @property
    def loaded(self) -> bool:
        return self._resolver is not None

    def _load(self) -> None:
        now = self._clock()
        wait = REFRESH_SECONDS if self._resolver is not None else RETRY_SECONDS
        if self._loaded_at is not None and now - self._loaded_at < wait:
            return
        self._loaded_at = now
        host = urlsplit(self.url).netloc
        try:
            pac = parse(self._get(self.url), host)
        except ConfigError as exc:
            if self._resolver is None:  # a refresh that fails keeps the file that worked
                if str(exc) != self.error:
                    log.warning("proxy auto-config not used (the system's proxy settings are, else "
                                "direct): %s", exc)
                self.error = str(exc)
            return
        self._resolver = ProxyResolver(pac)
        self._cache.clear()
        self._banned.clear()
        if self.error:
            log.info("proxy auto-config from %s is used again", host)
        self.error = ""

    def candidates(self, url: str) -> list[str]:
        """The PAC's answer for `url` as a list of proxy URLs and "DIRECT" (["DIRECT"] without a file)."""
        key = origin(url)
        with self._lock:
            self._load()
            if self._resolver is None:
                return ["DIRECT"]
            if key not in self._cache:
                try:
                    found = self._resolver.get_proxies(key)
                except Exception as exc:  # the script failed for this URL: as Windows does, go direct
                    log.warning("the PAC script failed for a URL (%s), going direct", type(exc).__name__)
                    found = []
                usable = [c for c in found if c == "DIRECT" or c.startswith(("http://", "https://"))]
                if len(usable) < len(found):  # SOCKS: requests needs PySocks, which is not shipped
                    log.warning("the PAC file names a SOCKS proxy, which Lifeboat does not use")
                self._cache[key] = usable or ["DIRECT"]
            return self._cache[key]

    def _live(self, found: list[str]) -> list[str]:
        return [c for c in found if c == "DIRECT" or c not in self._banned]

    def proxy(self, url: str) -> str | None:
        """The proxy URL for `url`, None for DIRECT: the first candidate that has not failed; when every
        one has failed, they are all tried again (as pypac's ProxyResolver does)."""
        found = self.candidates(url)
        with self._lock:
            live = self._live(found)
            if not live:
                self._banned -= set(found)
                live = found
        return None if live[0] == "DIRECT" else live[0]

    def next_after(self, proxy_url: str, url: str) -> str | bool | None:
        """After `proxy_url` refused or did not answer for `url`: it is skipped from now on, and the next
        candidate is returned (a proxy URL, or None for DIRECT); False when none is left (the failure
        stands, and every candidate will be tried again next time)."""
        found = self.candidates(url)
        if proxy_url not in found:
            return False
        with self._lock:
            self._banned.add(proxy_url)
            live = self._live(found)
            if not live:
                self._banned -= set(found)
                return False
        return None if live[0] == "DIRECT" else live[0]
