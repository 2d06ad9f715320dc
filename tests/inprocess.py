"""The simulator without sockets: a requests transport that calls its handler in this process.

`SimulatorAdapter` is a requests `BaseAdapter` whose `send` hands the request to
`Simulator.serve_provider` (what the HTTPS port does, minus TLS and HTTP parsing) and builds the
`requests.Response` from its answer. `InProcessSim` starts a `Simulator` in this process, by default
with no port at all (`start(listen=False)`: its URL, https://simulator.invalid, never resolves), and
offers what a test uses of `tests/syncsim.SimProcess` (admin, state, requests, outage), `session()` for
a GraphSource (`GraphSource(sim.graph_url, tokens, session=sim.session())`), and `tokens()`, a
TokenProvider signed in with msal's device flow over the same transport. With listen=True it serves
HTTPS as well, for modules that mix both kinds of test (`source(https=True)` there).

Use it where no network behaviour is under test (engine and plan tests). Connection-level outages have
no socket to act on here, so they are modelled, not measured: refuse, stop and drop raise requests'
ConnectionError, hang its ReadTimeout at once, truncate answers half the body. Tests of timeouts, drops,
TLS and the translation of requests' errors run over HTTPS (tests/test_adapter_errors.py, e2e).
"""

from __future__ import annotations

import http
import io
import json
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers

from simulator.graph import Response, error_response
from simulator.server import Simulator
from tests.syncsim import SimAdmin

CLIENT_ID = "lifeboat-tests"


def _body(body: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):  # form-encoded data (msal's token requests)
        return body.encode("utf-8")
    return b"".join(body)  # an iterable of chunks


class SimulatorAdapter(BaseAdapter):
    """requests transport to one in-process Simulator: no socket, no TLS, no HTTP parsing."""

    def __init__(self, sim: Simulator) -> None:
        super().__init__()
        self.sim = sim
        self.requests = 0

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None,
             verify: bool | str = True, cert: Any = None, proxies: Mapping[str, str] | None = None
             ) -> requests.Response:
        self.requests += 1
        url = request.url or ""
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        headers = {k.lower(): v for k, v in request.headers.items()}
        answers: list[tuple[Response | None, str]] = []
        try:
            self.sim.serve_provider(request.method or "GET", target, headers, _body(request.body),
                                    lambda resp, how: answers.append((resp, how)))
        except Exception as exc:  # a simulator bug: a 500, as the HTTPS handler answers it
            if answers:
                raise
            answers.append((error_response(500, "generalException", f"Simulator error: {exc!r}"), ""))
        resp, how = answers[0]
        if resp is None or how == "drop":
            if how == "hang":
                raise requests.ReadTimeout(f"in-process simulator: {how} outage (no answer)", request=request)
            raise requests.ConnectionError(f"in-process simulator: {how} outage (connection ended)",
                                           request=request)
        body = resp.body[: len(resp.body) // 2] if how == "truncate" else resp.body
        return self._response(request, resp, body)

    def _response(self, request: requests.PreparedRequest, resp: Response, body: bytes) -> requests.Response:
        out = requests.Response()
        out.status_code = resp.status
        out.headers = CaseInsensitiveDict({**resp.headers, "Content-Length": str(len(body))})
        out.encoding = get_encoding_from_headers(out.headers)
        out.raw = io.BytesIO(body)
        try:
            out.reason = http.HTTPStatus(resp.status).phrase
        except ValueError:
            out.reason = ""
        out.url = request.url or ""
        out.request = request
        out.connection = self
        return out

    def close(self) -> None:
        pass  # nothing held: no connection pool


class InProcessTokens:
    """TokenProvider: msal's device-code sign-in and silent renewal, over the in-process transport; the
    token is kept until a minute before it expires or until invalidate()."""

    def __init__(self, sim: InProcessSim) -> None:
        import msal

        self._scopes = [f"{sim.url}/Mail.ReadWrite", f"{sim.url}/Mail.Send"]
        self._app = msal.PublicClientApplication(CLIENT_ID, oidc_authority=sim.oidc_authority,
                                                 http_client=sim.session())
        flow = self._app.initiate_device_flow(self._scopes)
        result = self._app.acquire_token_by_device_flow(flow)  # approved at once (auto_approve)
        assert "access_token" in result, result.get("error_description")
        self._keep(result)
        self._force = False

    def _keep(self, result: dict[str, Any]) -> str:
        self._token = str(result["access_token"])
        self._until = time.monotonic() + float(result.get("expires_in") or 0) - 60
        return self._token

    def token(self) -> str:
        if not self._force and time.monotonic() < self._until:
            return self._token
        [account] = self._app.get_accounts()
        result = self._app.acquire_token_silent_with_error(self._scopes, account=account,
                                                           force_refresh=self._force)
        self._force = False
        assert result and "access_token" in result, result
        return self._keep(result)

    def invalidate(self) -> None:
        self._force = True


class InProcessSim(SimAdmin):
    """A Simulator served in this process with no port, driven like tests/syncsim.SimProcess."""

    def __init__(self, data: Path, messages: int = 50, seed: int = 7, token_lifetime: float = 3600.0,
                 listen: bool = False) -> None:
        self.sim = Simulator(data, messages=messages, seed=seed, token_lifetime=token_lifetime,
                             fresh=True).start(listen=listen)
        self.adapters: list[SimulatorAdapter] = []
        self._tokens: InProcessTokens | None = None

    @property
    def url(self) -> str:
        return self.sim.url

    @property
    def graph_url(self) -> str:
        return self.sim.graph_url

    @property
    def oidc_authority(self) -> str:
        return self.sim.oidc_authority

    @property
    def ca_path(self) -> str | None:
        """The CA of the HTTPS port (listen=True); None without one (the in-process transport has no TLS)."""
        return str(self.sim.ca_path) if self.sim.listening else None

    def session(self) -> requests.Session:
        """A requests.Session whose requests to this simulator go through a SimulatorAdapter (any other
        URL gets requests' default adapters, which cannot resolve simulator.invalid)."""
        adapter = SimulatorAdapter(self.sim)
        self.adapters.append(adapter)
        s = requests.Session()
        s.mount(self.url + "/", adapter)
        return s

    def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """As SimProcess.admin: the admin API's JSON answer; AssertionError on an error status."""
        data = json.dumps(body).encode() if body is not None else b""
        resp = self.sim.admin(method, f"/_sim/{path.lstrip('/')}", data)
        if resp.status >= 400:
            raise AssertionError(f"simulator admin {method} {path}: {resp.status} {resp.body[:300]!r}")
        return json.loads(resp.body)

    def tokens(self) -> InProcessTokens:
        """One signed-in TokenProvider per simulator (its tokens are valid over HTTPS too)."""
        if self._tokens is None:
            self._tokens = InProcessTokens(self)
        return self._tokens

    def source(self, *, https: bool = False, **kw: Any) -> Any:
        """A GraphSource signed in to this simulator, over the in-process transport or (https=True,
        listen=True only) over real HTTPS with the simulator's CA; kw go to GraphSource."""
        from sync.sources.graph import GraphSource

        if https:
            assert self.sim.listening, "this simulator serves no HTTPS port (InProcessSim(listen=True))"
            return GraphSource(self.graph_url, self.tokens(), ca_file=self.ca_path, **kw)
        return GraphSource(self.graph_url, self.tokens(), session=self.session(), **kw)

    def stop(self) -> None:
        self.sim.stop()


def inprocess_fixture(messages: int, seed: int, *, listen: bool = False) -> Any:
    """A test module's module-scoped `sim` (an InProcessSim of this size and seed; its `tokens()` and
    `source()` sign in to it): `sim = inprocess_fixture(messages=60, seed=11)`."""

    @pytest.fixture(scope="module")
    def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessSim]:
        s = InProcessSim(tmp_path_factory.mktemp("sim"), messages=messages, seed=seed, listen=listen)
        yield s
        s.stop()

    return sim
