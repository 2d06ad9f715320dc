"""Reference probes: adapters to services that do not depend on Microsoft.

A reference that answers proves this machine's network works, so a provider that does not answer is
down (not "this laptop is offline"). Each probe has its own timeout and raises only `Unreachable`
(NetworkBlocked included).
The backup relay's SMTP greeting (`sync.routes.smtp.SmtpRoute.probe`) is the third kind.
"""

from __future__ import annotations

import dns.exception
import dns.resolver
import requests

from sync.errors import Unreachable
from sync.sources import network


class DnsReference:
    """Resolves one name through the system's DNS servers (not /etc/hosts), or the given one, within
    `timeout` seconds. Any answer from a server counts, even "no such name": the network works."""

    def __init__(self, name: str, timeout: float = 3.0, nameserver: str | None = None, port: int = 53
                 ) -> None:
        self.name, self.timeout, self.nameserver, self.port = name, timeout, nameserver, port

    def __repr__(self) -> str:
        return f"DNS lookup of {self.name}"

    def probe(self) -> None:
        resolver = dns.resolver.Resolver(configure=self.nameserver is None)
        if self.nameserver is not None:
            resolver.nameservers, resolver.port = [self.nameserver], self.port
        try:
            resolver.resolve(self.name, "A", lifetime=self.timeout, search=False)
        except dns.resolver.NXDOMAIN:
            return  # a DNS server answered (that the name does not exist is still an answer)
        except (dns.exception.DNSException, OSError) as exc:
            raise Unreachable(f"DNS lookup of {self.name} failed: {type(exc).__name__}") from exc


class HttpReference:
    """GET a URL that does not depend on Microsoft; any HTTP answer (even 404) proves the network works."""

    def __init__(self, url: str, timeout: float = 5.0, ca_file: str | None = None,
                 proxy: str | None = None, pac_url: str | None = None) -> None:
        """Through the same trust (the system's store plus ca_file) and proxy (or PAC file) as Graph
        (network.session)."""
        self.url, self.timeout = url, timeout
        self._session = network.session(ca_file, proxy, pac_url=pac_url, pool_maxsize=2)

    def __repr__(self) -> str:
        return f"GET {self.url}"

    def probe(self) -> None:
        try:
            self._session.get(self.url, timeout=self.timeout, allow_redirects=False).close()
        except requests.RequestException as exc:
            raise network.blocked(exc, "reference", self.url) or Unreachable(
                f"GET {self.url} failed: {type(exc).__name__}") from exc
