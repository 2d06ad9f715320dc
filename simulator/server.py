"""The simulator's servers: HTTPS provider port (OIDC + Graph) and a plain-HTTP admin port (/_sim/...).

Main type: `Simulator` (start/stop, URLs, and methods mirroring the admin API). Invariants: outages
act only on the provider port, so the admin port always answers; "refuse"/"stop" of scope "all" close
the listening socket (connects get ECONNREFUSED) and re-open it on the same port when switched back,
while a narrower scope (graph, login, mail: see `path_kind`) acts per request on the shared port; TLS
is done in each connection's own thread so a stalled client never blocks the accept loop; logs carry no
tokens or bodies. `Simulator.serve_provider` handles one provider request apart from any socket (the
HTTPS handler delivers its answer; tests/inprocess.py calls it without one, after start(listen=False)).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import email.utils
import html
import json
import logging
import random
import socket
import ssl
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from simulator.attachments import SizeError
from simulator.authority import DISCOVERY_CACHE_CONTROL, Authority, TokenInvalid, User
from simulator.ca import LocalCA
from simulator.graph import (
    BATCH_VALUE_MODES,
    DELTA_FILTER_CAP,
    SENT_COPY,
    GraphApi,
    Response,
    error_response,
    json_response,
    throttled_response,
)
from simulator.mailbox import Mailbox, NotFound

log = logging.getLogger("lifeboat.simulator")

OUTAGES = ("normal", "refuse", "stop", "hang", "503", "slow", "truncate", "drop", "flaky")
FAILURES = tuple(m for m in OUTAGES if m not in ("normal", "flaky"))  # what one flaky request may get
LISTENER_DOWN = ("refuse", "stop")
IN_PROCESS_URL = "https://simulator.invalid"  # the provider's URL when it listens on no port (RFC 2606)
SCOPES = ("all", "graph", "login", "mail")
FLAKY_FRACTION = 1 / 3
SNAPSHOT = "mailbox.json"
GRANTS = "refresh-tokens.json"
DEVICE_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Sign in (simulator)</title></head>
<body><h1>Lifeboat simulator: device sign-in</h1><p>{message}</p><form method="post">
<label>Code <input name="user_code" autofocus></label> <button>Approve</button></form></body></html>"""


class Limits:
    """Graph's per-mailbox limits (switchable): concurrency, a sliding request window, forced 429s."""

    def __init__(self) -> None:
        self.on = False
        self.concurrent = 4
        self.window_requests = 10_000
        self.window_seconds = 600.0
        self.retry_after = 2.128
        self.inner_delay = 0.02  # seconds a wave of a $batch's requests runs, holding its slots (limits on)
        self._lock = threading.Lock()
        self._inflight = 0
        self._stamps: deque[float] = deque()
        self._forced = 0

    def configure(self, on: bool, **kw: Any) -> None:
        with self._lock:
            self.on = on
            if kw.get("inner_delay") is not None:
                if float(kw["inner_delay"]) < 0:
                    raise ValueError("inner_delay must not be negative")
                self.inner_delay = float(kw["inner_delay"])
            for k in ("concurrent", "window_requests", "window_seconds", "retry_after"):
                if kw.get(k) is not None:
                    value = float(kw[k]) if k in ("window_seconds", "retry_after") else int(kw[k])
                    if value <= 0:
                        raise ValueError(f"{k} must be positive")
                    setattr(self, k, value)
            self._stamps.clear()

    def force(self, count: int, retry_after: float | None = None) -> None:
        with self._lock:
            self._forced = max(0, int(count))
            if retry_after is not None:
                self.retry_after = float(retry_after)

    def admit(self) -> float | None:
        """Count one request against the window; return Retry-After seconds if it must be refused."""
        with self._lock:
            if self._forced > 0:
                self._forced -= 1
                return self.retry_after
            if not self.on:
                return None
            now = time.monotonic()
            while self._stamps and now - self._stamps[0] >= self.window_seconds:
                self._stamps.popleft()
            if len(self._stamps) >= self.window_requests:
                return max(0.001, round(self.window_seconds - (now - self._stamps[0]), 3))
            self._stamps.append(now)
            return None

    def enter(self) -> bool:
        with self._lock:
            self._inflight += 1
            return not (self.on and self._inflight > self.concurrent)

    def leave(self) -> None:
        with self._lock:
            self._inflight -= 1

    def acquire(self, n: int) -> int:
        """Take up to n of the mailbox's concurrent-request slots for requests inside a $batch; return
        how many were free (all n when limits are off). Give them back with release()."""
        with self._lock:
            granted = n if not self.on else max(0, min(n, self.concurrent - self._inflight))
            self._inflight += granted
            return granted

    def release(self, n: int) -> None:
        with self._lock:
            self._inflight -= n


def path_kind(path: str) -> str:
    """Which service answers this provider path: "login" (Entra ID sign-in), "directory" (the user
    resource `/me`, `/users/{id}`: Entra ID's directory through Graph) or "mail" (everything else under
    /v1.0, served by Exchange Online: mailFolders, messages, sendMail, and `$batch`, whose inner requests
    are all mail here)."""
    route = urlsplit(path).path
    if route.startswith("/api/v2.0/"):  # the pre-authenticated upload URLs of Outlook upload sessions
        return "mail"
    if route != "/v1.0" and not route.startswith("/v1.0/"):
        return "login"
    segs = [s.lower() for s in route[len("/v1.0"):].split("/") if s]
    if not segs or (segs[0] == "me" and len(segs) == 1) or (segs[0] == "users" and len(segs) <= 2):
        return "directory"
    return "mail"


def in_scope(scope: str, kind: str) -> bool:
    """Does an outage of this scope hit a request of this kind (see path_kind)?"""
    return scope == "all" or (scope == "graph" and kind != "login") or scope == kind


def _abort(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), like a crashed server."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class _ProviderServer(ThreadingMixIn, HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, addr: tuple[str, int], sim: Simulator) -> None:
        self.sim = sim
        super().__init__(addr, _ProviderHandler)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        sim = self.sim
        raw: socket.socket = request
        try:
            if sim._wait_out_hang():
                _abort(raw)
                return
            raw.settimeout(30)
            tls = sim._tls.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            _abort(raw)
            return
        sim._track(tls, True)
        try:
            self.finish_request(tls, client_address)
        except Exception:  # noqa: S110 (client went away; nothing to report)
            pass
        finally:
            sim._track(tls, False)
            with contextlib.suppress(OSError):
                tls.close()

    def shutdown_request(self, request: Any) -> None:  # the thread closes its own socket
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-IIS/10.0"
    sys_version = ""
    timeout = 120

    def setup(self) -> None:
        super().setup()
        with contextlib.suppress(OSError):  # headers and body go out in separate writes: avoid Nagle stalls
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.command, self.path.split("?", 1)[0])

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _send(self, resp: Response, *, cut: str | None = None) -> None:
        body = resp.body
        length = len(body)
        if cut == "truncate":
            body = body[: len(body) // 2]
            length = len(body)
        self.send_response(resp.status)
        for k, v in resp.headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if cut == "drop":
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            _abort(self.connection)
            self.close_connection = True
            return
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = lambda self: self._serve()

    def _serve(self) -> None:
        raise NotImplementedError


class _ProviderHandler(_Handler):
    server: _ProviderServer

    def _serve(self) -> None:
        try:
            self._serve_provider()
        except (OSError, ssl.SSLError):
            raise
        except Exception as e:  # a bug in the simulator: answer 500 instead of dropping the connection
            log.exception("simulator error on %s %s", self.command, self.path.split("?", 1)[0])
            self._send(error_response(500, "generalException", f"Simulator error: {type(e).__name__}: {e}"))

    def _serve_provider(self) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        body = self._body()
        self.server.sim.serve_provider(self.command, self.path, headers, body, self._deliver)

    def _deliver(self, resp: Response | None, how: str) -> None:
        """Serve_provider's answer over this connection: the response (cut short for truncate/drop), or
        refuse (reset), stop (an orderly close without answering), hang (hold until the outage ends, then
        reset)."""
        if resp is not None:
            self._send(resp, cut=how or None)
            return
        if how == "stop":
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
        else:
            if how == "hang":
                self.server.sim._hold()
            _abort(self.connection)
        self.close_connection = True


class _AdminHandler(_Handler):
    def _serve(self) -> None:
        sim: Simulator = self.server.sim  # type: ignore[attr-defined]
        self._send(sim.admin(self.command, self.path, self._body()))


class Simulator:
    """A local Microsoft 365 tenant: `start()`, point clients at `.authority` and `.graph_url`, `stop()`."""

    def __init__(
        self,
        data_dir: str | Path,
        port: int = 0,
        admin_port: int = 0,
        messages: int = 50,
        seed: int = 1,
        auto_approve: bool = True,
        token_lifetime: float = 3600.0,
        fresh: bool = False,
        authority_host: str = "",
    ) -> None:
        self.data_dir = Path(data_dir)
        self.authority_host = authority_host  # e.g. "login.microsoftonline.com" (resolved to 127.0.0.1)
        self.port, self.admin_port = port, admin_port
        self.messages, self.seed, self.fresh = messages, seed, fresh
        self.outage = "normal"
        self.outage_scope = "all"
        self.slow_delay = 2.0
        self.flaky_fraction = FLAKY_FRACTION
        self.flaky_kind = "503"
        self.flaky_counts = {"failed": 0, "passed": 0}
        self._flaky_rng = random.Random(seed)
        self._flaky_lock = threading.Lock()
        self.limits = Limits()
        self.requests_count = 0
        self.throttled_count = 0  # 429s answered to whole requests (inner ones: api.inner_throttled)
        self.retry_after_503: float | None = None  # Retry-After on the 503 outage answers (None: none)
        self.request_log: deque[tuple[str, str]] = deque(maxlen=5000)
        self._count_lock = threading.Lock()
        self._stop = threading.Event()
        self._normal = threading.Event()
        self._normal.set()
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self._provider: _ProviderServer | None = None
        self._admin_srv: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self.listening = True  # False after start(listen=False): served in-process only, no ports
        ns = uuid.UUID(int=seed & ((1 << 128) - 1))
        self.user = User(
            oid=str(uuid.uuid5(ns, "user")),
            tid=str(uuid.uuid5(ns, "tenant")),
            name="Adele Vance",
            upn="adele.vance@contoso.test",
        )
        self._auto_approve, self._token_lifetime = auto_approve, token_lifetime
        self.mailbox: Mailbox
        self.auth: Authority
        self.api: GraphApi

    # --- URLs -----------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The provider's base URL; IN_PROCESS_URL when it has no port (start(listen=False))."""
        return f"https://127.0.0.1:{self.port}" if self.listening else IN_PROCESS_URL

    @property
    def graph_url(self) -> str:
        return f"{self.url}/v1.0"

    @property
    def login_url(self) -> str:
        """Where the authority says it lives: the provider URL, or https://<authority_host>[:port] when
        the simulator stands in for a named host (a test maps that name to 127.0.0.1)."""
        if not self.authority_host:
            return self.url
        return f"https://{self.authority_host}" + ("" if self.port == 443 else f":{self.port}")

    @property
    def authority(self) -> str:
        """For msal: `authority=` this with `instance_discovery=False` (or use `.oidc_authority`); with
        authority_host="login.microsoftonline.com", `authority=` this as it is (instance discovery on)."""
        return f"{self.login_url}/{self.user.tid}"

    @property
    def oidc_authority(self) -> str:
        return f"{self.authority}/v2.0"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}/_sim"

    @property
    def ca_path(self) -> Path:
        return self.data_dir / "ca.pem"

    # --- lifecycle --------------------------------------------------------------------------------
    def start(self, *, listen: bool = True) -> Simulator:
        """Load or generate the mailbox and serve it. listen=False opens no port at all: requests reach
        `serve_provider` through an in-process transport (tests/inprocess.py), `admin` replaces the
        admin port, and `url` is IN_PROCESS_URL (a name that never resolves, so nothing leaks out)."""
        from simulator.generator import populate

        self.listening = listen

        self.data_dir.mkdir(parents=True, exist_ok=True)
        ca = LocalCA(self.data_dir)
        self._tls = ca.server_context((self.authority_host,) if self.authority_host else ())
        snap = self.data_dir / SNAPSHOT
        if snap.exists() and not self.fresh:
            self.mailbox = Mailbox.load(snap, self.seed)
        else:
            self.mailbox = Mailbox(self.seed)
            populate(self.mailbox, self.messages, seed=self.seed, user=(self.user.name, self.user.upn))
        if listen:
            self._provider = _ProviderServer(("127.0.0.1", self.port), self)
            self.port = self._provider.server_address[1]
            self._admin_srv = ThreadingHTTPServer(("127.0.0.1", self.admin_port), _AdminHandler)
            self._admin_srv.daemon_threads = True
            self._admin_srv.sim = self  # type: ignore[attr-defined]
            self.admin_port = self._admin_srv.server_address[1]
        self.auth = Authority(
            self.data_dir,
            self.login_url,
            self.user,
            auto_approve=self._auto_approve,
            token_lifetime=self._token_lifetime,
        )
        grants = self.data_dir / GRANTS
        if grants.exists() and not self.fresh:
            self.auth.load_grants(grants)
        self.api = GraphApi(
            self.mailbox,
            base_url=self.url,
            user_upn=self.user.upn,
            user_name=self.user.name,
            user_oid=self.user.oid,
            gate=self.limits.admit,
        )
        self.api.slots = self.limits
        if self._provider is not None and self._admin_srv is not None:
            self._serve(self._provider)
            self._serve(self._admin_srv)
        return self

    def _serve(self, srv: HTTPServer) -> None:
        t = threading.Thread(
            target=srv.serve_forever,
            kwargs={"poll_interval": 0.1},
            daemon=True,
            name=f"sim-{srv.server_address[1]}",
        )
        t.start()
        self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        self._normal.set()
        self._close_listener(drop_connections=True)
        if self._admin_srv is not None:
            self._admin_srv.shutdown()
            self._admin_srv.server_close()
            self._admin_srv = None
        self.api.run_transport(flush=True)  # the transport finishes what it took before the tenant stops
        self.snapshot()

    def snapshot(self) -> Path:
        """Save the mailbox (and the refresh tokens) into the data dir; a restart there resumes them."""
        path = self.data_dir / SNAPSHOT
        self.mailbox.save(path)
        self.auth.save_grants(self.data_dir / GRANTS)
        return path

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- outages ----------------------------------------------------------------------------------
    def set_outage(self, mode: str, *, delay: float | None = None, scope: str = "all",
                   fraction: float | None = None, kind: str | None = None, seed: int | None = None) -> None:
        """normal | refuse | stop | hang | 503 | slow | truncate | drop | flaky, for one scope:
        all | graph (directory and mail) | login (sign-in) | mail (Exchange Online: `/me` and sign-in
        still answer). Only scope "all" closes the listener for refuse/stop and holds new connections
        for hang; a narrower scope acts per request (refuse: reset after reading the request, stop:
        close without answering, hang: hold the request until the outage ends). "flaky" fails
        `fraction` (default 1/3) of the scope's requests at random (RNG seeded by `seed`, else the
        simulator's seed) the `kind` way (default "503"; any other outage mode); the rest answer."""
        if mode not in OUTAGES:
            raise ValueError(f"unknown outage mode {mode!r}; choose one of {', '.join(OUTAGES)}")
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
        if delay is not None:
            if delay < 0:
                raise ValueError("delay must not be negative")
            self.slow_delay = float(delay)
        if fraction is not None and not 0.0 <= float(fraction) <= 1.0:
            raise ValueError("fraction must be between 0 and 1")
        if kind is not None and kind not in FAILURES:
            raise ValueError(f"a flaky request fails as one of {', '.join(FAILURES)}, not {kind!r}")
        with self._flaky_lock:
            if mode == "flaky":
                self.flaky_fraction = FLAKY_FRACTION if fraction is None else float(fraction)
                self.flaky_kind = kind or "503"
                self._flaky_rng = random.Random(self.seed if seed is None else int(seed))
                self.flaky_counts = {"failed": 0, "passed": 0}
            self.outage_scope = scope
            self.outage = mode
        if mode == "hang" or (mode == "flaky" and self.flaky_kind == "hang"):
            self._normal.clear()
        else:
            self._normal.set()
        if mode in LISTENER_DOWN and scope == "all":
            self._close_listener(drop_connections=mode == "stop")
        elif self._provider is None and self.listening and not self._stop.is_set():
            self._provider = _ProviderServer(("127.0.0.1", self.port), self)
            self._serve(self._provider)

    def _mode_for(self, kind: str) -> str:
        """The outage this one request meets ("normal" if none); a flaky outage draws it here."""
        with self._flaky_lock:
            mode, scope = self.outage, self.outage_scope
            if mode == "normal" or not in_scope(scope, kind):
                return "normal"
            if mode != "flaky":
                return mode
            hit = self._flaky_rng.random() < self.flaky_fraction
            self.flaky_counts["failed" if hit else "passed"] += 1
            return self.flaky_kind if hit else "normal"

    def outage_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mode": self.outage, "scope": self.outage_scope, "delay": self.slow_delay}
        if self.outage == "flaky":
            out |= {"fraction": self.flaky_fraction, "kind": self.flaky_kind, **self.flaky_counts}
        return out

    def _close_listener(self, *, drop_connections: bool) -> None:
        srv, self._provider = self._provider, None
        if srv is not None:
            srv.shutdown()
            srv.server_close()
        if drop_connections:
            with self._conns_lock:
                conns = list(self._conns)
            for c in conns:
                with contextlib.suppress(OSError):
                    c.shutdown(socket.SHUT_RDWR)

    def _wait_out_hang(self) -> bool:
        """Before TLS: block while a hang outage of scope "all" holds (True: then drop the connection)."""
        if self.outage != "hang" or self.outage_scope != "all":
            return False
        self._hold()
        return True

    def _hold(self) -> None:
        """Block until the hang ends (the outage is switched) or the simulator stops."""
        while not self._normal.wait(0.2):
            if self._stop.is_set():
                break

    def _track(self, sock: socket.socket, add: bool) -> None:
        with self._conns_lock:
            (self._conns.add if add else self._conns.discard)(sock)

    def _count(self, method: str, path: str) -> None:
        with self._count_lock:
            self.requests_count += 1
            self.request_log.append((method, path.split("?", 1)[0]))

    def _count_throttled(self) -> None:
        with self._count_lock:
            self.throttled_count += 1

    def throttled(self) -> dict[str, int]:
        """429s answered so far: to whole requests, and inside $batch by cause (concurrency, window)."""
        with self.api._lock:
            inner = dict(self.api.inner_throttled)
        return {"outer": self.throttled_count, "inner_concurrency": inner["concurrency"],
                "inner_window": inner["window"]}

    def unavailable_headers(self) -> dict[str, str]:
        if self.retry_after_503 is None:
            return {}
        return {"Retry-After": f"{self.retry_after_503:g}"}

    def set_unavailable_retry_after(self, seconds: float | None) -> None:
        """Whether 503 outage answers carry Retry-After (seconds), or none (None; the default)."""
        if seconds is not None and float(seconds) < 0:
            raise ValueError("retry_after must not be negative")
        self.retry_after_503 = None if seconds is None else float(seconds)

    def set_delta(self, cap: int | None = DELTA_FILTER_CAP, seed: int | None = None) -> None:
        """The cap on a filtered first delta round (Graph: 5,000; None lists everything) and the seed of
        its order when no $orderby is given."""
        if cap is not None and int(cap) < 1:
            raise ValueError("cap must be at least 1 (or null for no cap)")
        self.api.delta_cap = None if cap is None else int(cap)
        if seed is not None:
            self.api.delta_seed = int(seed)

    def set_batch_values(self, mode: str) -> None:
        """How a text/* body (a message's $value) comes back inside $batch: "base64" or "text"."""
        if mode not in BATCH_VALUE_MODES:
            raise ValueError(f"values must be one of {', '.join(BATCH_VALUE_MODES)}")
        self.api.batch_values = mode

    def bulk_add(self, folder: str, count: int, days: float = 30.0, seed: int = 1, size: int = 0) -> str:
        """Create `folder` under the root if it does not exist, then add `count` small messages received
        over the last `days` days (each padded to about `size` bytes when given); returns the folder id."""
        import datetime as dt
        import random

        try:
            fid = self.mailbox.folder(folder).id
        except NotFound:
            fid = self.mailbox.add_folder(folder, None).id
        rng = random.Random(seed)
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        pad = "x" * 75 + "\r\n"
        for n in range(int(count)):
            when = now - dt.timedelta(seconds=rng.randint(60, max(61, int(days * 86400) - 3600)))
            body = f"bulk message {n}\r\n" + pad * max(0, size // len(pad))
            raw = (f"From: Zoe <zoe@example.com>\r\nTo: {self.user.upn}\r\nSubject: bulk {n}\r\n"
                   f"Message-ID: <bulk.{seed}.{n}@example.com>\r\n"
                   f"Date: {email.utils.format_datetime(when)}\r\n\r\n{body}").encode()
            self.mailbox.add(fid, raw, received=when, is_read=rng.random() < 0.5)
        return fid

    # --- throttling and tokens --------------------------------------------------------------------
    def set_limits(self, on: bool, **kw: Any) -> None:
        """Graph's limits on/off; optional concurrent, window_requests, window_seconds, retry_after."""
        self.limits.configure(on, **kw)

    def set_sizes(self, **kw: Any) -> dict[str, Any]:
        """Graph's size rules (simulator.attachments.Sizes fields); returns them all."""
        self.api.sizes.configure(**kw)
        return self.api.sizes.as_json()

    def throttle_next(self, count: int, retry_after: float = 2.128) -> None:
        """Answer the next `count` Graph requests with 429 and this Retry-After (seconds, fractional ok)."""
        self.limits.force(count, retry_after)

    def expire_delta_tokens(self, status: int = 410) -> None:
        """Every delta/skip token handed out so far fails: 410 Gone, or 400 with syncStateNotFound."""
        if status not in (400, 404, 410):
            raise ValueError("status must be 410 (Gone) or 400/404 (syncStateNotFound)")
        self.api.expired_status = status
        self.mailbox.expire_cursors()

    def set_token_lifetime(self, seconds: float) -> None:
        if seconds <= 0:
            raise ValueError("token lifetime must be positive")
        self.auth.token_lifetime = float(seconds)

    def revoke_tokens(self) -> None:
        self.auth.revoke_all()

    def approve_device_code(self, user_code: str | None = None) -> int:
        return self.auth.approve(user_code)

    # --- mailbox ----------------------------------------------------------------------------------
    def add_message(self, folder: str, raw_mime: bytes, *, is_read: bool = False) -> str:
        return self.mailbox.add(folder, raw_mime, is_read=is_read).id

    def add_folder(self, name: str, parent: str | None = None) -> str:
        return self.mailbox.add_folder(name, parent).id

    def move(self, provider_id: str, folder: str) -> None:
        self.mailbox.move(provider_id, folder)

    def delete(self, provider_id: str) -> None:
        self.mailbox.delete(provider_id)

    def change(self, provider_id: str, **fields: Any) -> None:
        self.mailbox.change(provider_id, **fields)

    def state(self) -> dict[str, dict[str, str]]:
        self.api.run_transport()
        return self.mailbox.state()

    def folder_id(self, ref: str) -> str:
        return self.mailbox.folder(ref).id

    def folders(self) -> list[dict[str, Any]]:
        return self.mailbox.folder_list()

    def sent_items(self) -> list[dict[str, Any]]:
        """What the tenant's transport sent (sendMail and draft send), oldest first, MIME in base64."""
        self.api.run_transport()
        with self.api._lock:
            return [dict(x) for x in self.api.outgoing]

    # --- the transport, Send As, folder access --------------------------------------------------------
    def set_transport(self, sent_delay: float | None = None, sent_copy: str | None = None) -> None:
        """sendMail/draft send wait in Drafts `sent_delay` seconds (default 3) before the transport
        delivers them and moves them to Sent Items ("keep") or deletes them ("drop": a delete-after-send
        rule). 0 delivers at once."""
        if sent_delay is not None:
            if float(sent_delay) < 0:
                raise ValueError("sent_delay must not be negative")
            self.api.sent_delay = float(sent_delay)
        if sent_copy is not None:
            if sent_copy not in SENT_COPY:
                raise ValueError(f"sent_copy must be one of {', '.join(SENT_COPY)}")
            self.api.sent_copy = sent_copy
        self.api.run_transport()

    def run_transport(self, flush: bool = True) -> int:
        """Let the transport take what is due now (flush: everything submitted); returns how many."""
        return self.api.run_transport(flush=flush)

    def transport(self) -> dict[str, Any]:
        return {"sent_delay": self.api.sent_delay, "sent_copy": self.api.sent_copy,
                "pending": self.api.pending()}

    def set_send_as(self, addresses: list[str]) -> None:
        """Addresses the user may send as besides their own; any other From gets 403 ErrorSendAsDenied."""
        self.api.send_as = {str(a).strip().lower() for a in addresses if str(a).strip()}

    def set_folder_access(self, folder: str, denied: bool) -> str:
        """Deny (or allow again) one folder: its paths and its messages answer 403 ErrorAccessDenied."""
        fid = self.mailbox.folder(folder).id
        (self.api.denied.add if denied else self.api.denied.discard)(fid)
        return fid

    # --- request handling (called by the handlers) -----------------------------------------------------
    def serve_provider(self, method: str, path: str, headers: dict[str, str], body: bytes,
                       deliver: Callable[[Response | None, str], None]) -> None:
        """All the provider port does with one request except the socket: count it, meet the outage
        (its scope, a flaky draw), hold a request slot under Graph's limits while it runs and its answer
        goes out, then answer as the authority or as Graph. `deliver(response, how)` sends the answer:
        how is "" (as it is), "truncate" or "drop" (half the body; drop then resets the connection), or
        with no response "refuse", "stop" or "hang" (the connection ends without one). Header names are
        lower-case. The HTTPS handler and an in-process transport (tests/inprocess.py) both call this."""
        kind = path_kind(path)  # /api/v2.0/...: Outlook upload-session URLs are mail (Exchange)
        self._count(method, path)
        mode = self._mode_for(kind)
        if mode in ("refuse", "stop", "hang"):  # refuse: the listener is closed (scope all) or a reset
            deliver(None, mode)
            return
        if mode == "503":
            deliver(error_response(503, "serviceNotAvailable",
                                   "The service is temporarily unavailable (simulated outage).",
                                   self.unavailable_headers()), "")
            return
        cut = mode if mode in ("truncate", "drop") else ""
        if kind == "login":
            if mode == "slow":
                self._stop.wait(self.slow_delay)
            deliver(self._login(method, path, body), cut)
            return
        # a $batch itself takes no slot: the requests inside it do, while they run (GraphApi._batch)
        slot = not urlsplit(path).path.rstrip("/").endswith("/$batch")
        if slot and not self.limits.enter():
            self.limits.leave()
            self._count_throttled()
            deliver(throttled_response(max(0.5, self.limits.retry_after / 2)), cut)
            return
        try:
            if mode == "slow":  # a slow server holds its request slot, as a real one does
                self._stop.wait(self.slow_delay)
            deliver(self._graph(method, path, headers, body), cut)
        finally:
            if slot:
                self.limits.leave()

    def _graph(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Response:
        if path.startswith("/api/v2.0/"):
            return self._upload(method, path, headers, body)
        auth = headers.get("authorization", "")
        bearer = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        try:
            self.auth.check(bearer)
        except TokenInvalid as e:
            return error_response(
                401,
                "InvalidAuthenticationToken",
                str(e),
                {
                    "WWW-Authenticate": 'Bearer realm="", authorization_uri="'
                    + self.authority
                    + '/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"'
                },
            )
        retry = self.limits.admit()
        if retry is not None:
            self._count_throttled()
            return throttled_response(retry)
        return self.api.handle(method, path[len("/v1.0") :], headers, body)

    def _upload(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Response:
        """A PUT/DELETE on an upload session's URL: authorized by its authtoken, never by a bearer token."""
        parts = urlsplit(path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        retry = self.limits.admit()
        if retry is not None:
            return throttled_response(retry)
        try:
            status, out, hdrs = self.api.uploads.put(method, unquote(parts.path), query, headers, body)
        except SizeError as e:
            return error_response(e.status, e.code, e.message, e.headers)
        except NotFound as e:
            return error_response(404, "ErrorItemNotFound", str(e))
        if out is None:
            return Response(status, b"", hdrs)
        return json_response(status, out, hdrs)

    def _login(self, method: str, path: str, body: bytes) -> Response:
        parts = urlsplit(path)
        segs = [s for s in parts.path.split("/") if s]
        if not segs:
            return json_response(200, {"simulator": "lifeboat", "authority": self.authority})
        if segs == ["devicelogin"]:  # the verification_uri of the device flow: a form that approves a code
            message = "Enter the code your app shows."
            if method == "POST":
                code = {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}.get(
                    "user_code", ""
                )
                ok = self.auth.approve(code.strip().upper()) if code.strip() else 0
                message = "Approved: you can close this page." if ok else "Unknown or already used code."
            page = DEVICE_PAGE.format(message=html.escape(message)).encode()
            return Response(200, page, {"Content-Type": "text/html; charset=utf-8"})
        tenant, rest = segs[0], "/".join(segs[1:])
        if tenant not in (self.user.tid, "common", "organizations", "consumers"):
            return json_response(
                400,
                {
                    "error": "invalid_tenant",
                    "error_description": f"AADSTS90002: Tenant '{tenant}' not found.",
                },
            )
        form = {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        cache = {"Cache-Control": DISCOVERY_CACHE_CONTROL}
        if rest == "v2.0/.well-known/openid-configuration" and method == "GET":
            return json_response(200, self.auth.discovery(tenant), cache)
        if tenant == "common" and rest == "discovery/instance" and method == "GET":
            status, out = self.auth.instance_discovery({k: v[-1] for k, v in parse_qs(parts.query).items()})
            return json_response(status, out, cache if status == 200 else None)
        if rest == "discovery/v2.0/keys" and method == "GET":
            return json_response(200, self.auth.jwks())
        if rest == "oauth2/v2.0/devicecode" and method == "POST":
            out = self.auth.start_device_flow(form.get("client_id", ""), form.get("scope", ""))
            return json_response(400 if "error" in out else 200, out)
        if rest == "oauth2/v2.0/token" and method == "POST":
            status, out = self.auth.token(form)
            return json_response(status, out, {"Cache-Control": "no-store"})
        if rest == "oauth2/v2.0/authorize" and method == "GET":
            q = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            redirect = q.get("redirect_uri")
            if not redirect:
                return json_response(
                    400,
                    {
                        "error": "invalid_request",
                        "error_description": "AADSTS900144: redirect_uri is required.",
                    },
                )
            if q.get("code_challenge") and q.get("code_challenge_method", "plain") != "S256":
                return json_response(
                    400,
                    {
                        "error": "invalid_request",
                        "error_description": "AADSTS501491: use code_challenge_method=S256.",
                    },
                )
            code = self.auth.authorize(
                q.get("client_id", ""), q.get("scope", ""), q.get("nonce"), q.get("code_challenge")
            )
            params = {"code": code, **({"state": q["state"]} if "state" in q else {})}
            return Response(302, b"", {"Location": f"{redirect}?{urlencode(params)}"})
        return json_response(404, {"error": "not_found", "error_description": f"No endpoint {parts.path}."})

    # The admin API (plain HTTP on admin_port; JSON in and out; errors are {"error": "..."} with 400/404):
    #   GET  /_sim/state      {"folders": [{id, displayName, parentFolderId, wellKnownName, path}],
    #                          "state": {folder_id: {provider_id: sha256}}, "epoch", "outage",
    #                          "outage_detail" (as GET /_sim/outage), "limits", "requests", "transport"}
    #   GET  /_sim/sent       [{message_id, subject, to, sent, sha256, mime (base64)}]   what the tenant sent
    #   GET  /_sim/requests   {"count": N, "recent": [[method, path], ...], "throttled": {"outer": N,
    #                          "inner_concurrency": N, "inner_window": N}} (429s so far);  GET /_sim/urls
    #   POST /_sim/messages   {"folder": "inbox"|id|"Inbox/Projects", "mime_b64": ... | "mime": text,
    #                          "isRead"} -> {"id"}
    #   PATCH /_sim/messages/{id} {"isRead", "flag", "categories", "mime_b64"};  DELETE /_sim/messages/{id}
    #   POST /_sim/messages/{id}/move {"folder": ...};  POST /_sim/folders {"name", "parent"}
    #   POST /_sim/outage     {"mode": normal|refuse|stop|hang|503|slow|truncate|drop|flaky, "delay": s,
    #                          "scope": all|graph|login|mail, "fraction": 0.33, "kind": 503|refuse|...,
    #                          "seed": N}  scope mail: Exchange Online down (mailFolders, messages,
    #                          sendMail, $batch), `/me` and sign-in up; refuse/stop/hang then act per
    #                          request (reset / close / hold). flaky: `fraction` of the scope's requests
    #                          fail the `kind` way (default 503), at random from `seed`.
    #                          -> {"outage": mode, "scope", "delay", and for flaky "fraction", "kind",
    #                          "failed", "passed"};  GET /_sim/outage -> the same
    #   POST /_sim/limits     {"on": bool, "concurrent", "window_requests", "window_seconds", "retry_after"}
    #   POST /_sim/limits     {"on": bool, "concurrent", "window_requests", "window_seconds", "retry_after",
    #                          "inner_delay": s}  (inside $batch: waves of 4, each request needs a free
    #                          slot of `concurrent` while its wave runs `inner_delay` seconds, else 429)
    #   POST /_sim/delta      {"cap": 5000|N|null, "seed": N}  a filtered first delta round lists at most
    #                          `cap` messages, shuffled by `seed` unless $orderby=receivedDateTime desc
    #   POST /_sim/batch      {"values": "base64"|"text"}  how a message's $value comes back in $batch
    #   POST /_sim/unavailable {"retry_after": s|null}  Retry-After on the 503 outage answers
    #   POST /_sim/bulk       {"folder", "count", "days": 30, "seed", "size": bytes} -> {"id"}  adds
    #                          `count` messages received over the last `days` days (folder made if new)
    #   POST /_sim/throttle   {"count": N, "retry_after": 2.128}      the next N Graph requests get 429
    #   GET|POST /_sim/sizes  {"max_request", "request_status": 413|400, "attachment_post_max",
    #                          "session_min", "session_max", "chunk_max", "chunk_multiple", "session_seconds",
    #                          "upload_bytes", "upload_window", "upload_to_non_draft", "mime_on_folder_path",
    #                          "mime_keeps_message_id"} -> all of them   Graph's size and upload rules
    #                          (simulator/attachments.py Sizes; docs/graph-notes.md section 3)
    #   POST /_sim/delta/expire {"status": 410|400}                    all delta/skip tokens so far expire
    #   GET  /_sim/devicecode -> {"pending": [user codes]};  POST /_sim/devicecode/approve {"user_code"?}
    #   POST /_sim/tokens     {"lifetime": s, "revoke": bool};  POST /_sim/snapshot -> {"path"}
    #   GET|POST /_sim/transport {"sent_delay": s, "sent_copy": "keep"|"drop", "flush": bool}
    #                         -> {"sent_delay", "sent_copy", "pending", "flushed"}: sendMail and draft send
    #                          wait in Drafts (isDraft true) sent_delay seconds (default 3), then the
    #                          transport delivers them (GET /_sim/sent) and moves them to Sent Items, or
    #                          deletes them ("drop": a delete-after-send rule); flush takes all now
    #   POST /_sim/send_as    {"addresses": [...]}   Froms allowed besides the user's own (else 403
    #                          ErrorSendAsDenied on sendMail and draft send)
    #   POST /_sim/folders/{id|name}/access {"denied": bool}   the folder's paths and messages answer
    #                          403 ErrorAccessDenied; /me/messages leaves its messages out
    def admin(self, method: str, path: str, body: bytes) -> Response:
        """One admin API request (a `/_sim/...` path, a JSON body) and its JSON answer, as the admin port
        serves it; callable in-process (tests/inprocess.py) when the simulator does not listen."""
        try:
            data = json.loads(body) if body else {}
            if not isinstance(data, dict):
                raise ValueError("the admin API takes a JSON object")
            status, out = self._admin(method, urlsplit(path), data)
        except NotFound as e:
            status, out = 404, {"error": str(e)}
        except (ValueError, TypeError, KeyError, binascii.Error) as e:
            status, out = 400, {"error": f"{type(e).__name__}: {e}"}
        except OSError as e:  # e.g. the provider port was taken while it was closed for an outage
            status, out = 500, {"error": f"{type(e).__name__}: {e}"}
        return Response(status, json.dumps(out).encode(), {"Content-Type": "application/json"})

    def _admin(self, method: str, url: Any, data: dict[str, Any]) -> tuple[int, Any]:
        segs = [s for s in url.path.split("/") if s]
        if segs[:1] != ["_sim"]:
            return 404, {"error": "the admin API lives under /_sim/"}
        segs = segs[1:]
        self.api.run_transport()
        if segs == ["transport"] and method in ("GET", "POST"):
            flushed = 0
            if method == "POST":
                self.set_transport(data.get("sent_delay"), data.get("sent_copy"))
                if data.get("flush"):
                    flushed = self.run_transport(flush=True)
            return 200, {**self.transport(), "flushed": flushed}
        if method == "POST" and segs == ["send_as"]:
            self.set_send_as(list(data.get("addresses", [])))
            return 200, {"send_as": sorted(self.api.send_as)}
        if method == "POST" and len(segs) == 3 and segs[0] == "folders" and segs[2] == "access":
            fid = self.set_folder_access(segs[1], bool(data.get("denied", True)))
            return 200, {"folder": fid, "denied": fid in self.api.denied}
        if method == "GET" and segs == ["state"]:
            return 200, {
                "folders": self.folders(),
                "state": self.state(),
                "epoch": self.mailbox.epoch,
                "outage": self.outage,
                "outage_detail": self.outage_json(),
                "limits": self.limits.on,
                "requests": self.requests_count,
                "transport": self.transport(),
            }
        if method == "GET" and segs == ["sent"]:
            return 200, self.sent_items()
        if method == "GET" and segs == ["requests"]:
            return 200, {"count": self.requests_count, "recent": list(self.request_log)[-200:],
                         "throttled": self.throttled()}
        if method == "GET" and segs == ["urls"]:
            return 200, self.urls()
        if method == "POST" and segs == ["messages"]:
            raw = (
                base64.b64decode(data["mime_b64"], validate=True)
                if "mime_b64" in data
                else str(data["mime"]).encode()
            )
            return 201, {
                "id": self.add_message(
                    str(data.get("folder", "inbox")), raw, is_read=bool(data.get("isRead", False))
                )
            }
        if len(segs) == 2 and segs[0] == "messages":
            if method == "DELETE":
                self.delete(segs[1])
                return 200, {"deleted": segs[1]}
            if method == "PATCH":
                fields: dict[str, Any] = {}
                if "isRead" in data:
                    fields["is_read"] = bool(data["isRead"])
                if "flag" in data:
                    fields["flag"] = str(data["flag"])
                if "categories" in data:
                    fields["categories"] = [str(c) for c in data["categories"]]
                if "mime_b64" in data:
                    fields["mime"] = base64.b64decode(data["mime_b64"], validate=True)
                if not fields:
                    raise ValueError("nothing to change: give isRead, flag, categories or mime_b64")
                self.change(segs[1], **fields)
                return 200, {"changed": segs[1]}
        if method == "POST" and len(segs) == 3 and segs[0] == "messages" and segs[2] == "move":
            self.move(segs[1], str(data["folder"]))
            return 200, {"moved": segs[1]}
        if method == "POST" and segs == ["folders"]:
            return 201, {"id": self.add_folder(str(data["name"]), data.get("parent"))}
        if method == "POST" and segs == ["outage"]:
            self.set_outage(
                str(data.get("mode", "normal")), delay=data.get("delay"), scope=str(data.get("scope", "all")),
                fraction=None if data.get("fraction") is None else float(data["fraction"]),
                kind=None if data.get("kind") is None else str(data["kind"]),
                seed=None if data.get("seed") is None else int(data["seed"]),
            )
            return 200, {"outage": self.outage, **self.outage_json()}
        if method == "GET" and segs == ["outage"]:
            return 200, {"outage": self.outage, **self.outage_json()}
        if method == "POST" and segs == ["limits"]:
            self.set_limits(
                bool(data.get("on", True)),
                **{
                    k: data.get(k)
                    for k in ("concurrent", "window_requests", "window_seconds", "retry_after", "inner_delay")
                },
            )
            return 200, {"limits": self.limits.on}
        if segs == ["sizes"] and method in ("GET", "POST"):
            return 200, self.set_sizes(**data) if method == "POST" else self.api.sizes.as_json()
        if method == "POST" and segs == ["delta"]:
            self.set_delta(data.get("cap", DELTA_FILTER_CAP), data.get("seed"))
            return 200, {"cap": self.api.delta_cap, "seed": self.api.delta_seed}
        if method == "POST" and segs == ["batch"]:
            self.set_batch_values(str(data.get("values", "base64")))
            return 200, {"values": self.api.batch_values}
        if method == "POST" and segs == ["unavailable"]:
            self.set_unavailable_retry_after(data.get("retry_after"))
            return 200, {"retry_after": self.retry_after_503}
        if method == "POST" and segs == ["bulk"]:
            fid = self.bulk_add(str(data["folder"]), int(data["count"]), float(data.get("days", 30)),
                                int(data.get("seed", 1)), int(data.get("size", 0)))
            return 201, {"id": fid}
        if method == "POST" and segs == ["throttle"]:
            self.throttle_next(int(data.get("count", 1)), float(data.get("retry_after", 2.128)))
            return 200, {"throttle": int(data.get("count", 1))}
        if method == "POST" and segs == ["delta", "expire"]:
            self.expire_delta_tokens(int(data.get("status", 410)))
            return 200, {"epoch": self.mailbox.epoch}
        if method == "POST" and segs == ["devicecode", "approve"]:
            return 200, {"approved": self.approve_device_code(data.get("user_code"))}
        if method == "GET" and segs == ["devicecode"]:
            return 200, {"pending": self.auth.pending_user_codes()}
        if method == "POST" and segs == ["tokens"]:
            if "lifetime" in data:
                self.set_token_lifetime(float(data["lifetime"]))
            if data.get("revoke"):
                self.revoke_tokens()
            return 200, {"lifetime": self.auth.token_lifetime}
        if method == "POST" and segs == ["snapshot"]:
            return 200, {"path": str(self.snapshot())}
        return 404, {"error": f"no admin endpoint {method} /_sim/{'/'.join(segs)}"}

    def urls(self) -> dict[str, str]:
        return {
            "url": self.url,
            "graph_url": self.graph_url,
            "authority": self.authority,
            "oidc_authority": self.oidc_authority,
            "admin_url": self.admin_url,
            "ca_path": str(self.ca_path),
        }
