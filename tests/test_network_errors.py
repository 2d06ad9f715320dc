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
