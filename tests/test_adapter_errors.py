"""The adapters' contract: they raise nothing but sync.errors, and the tree in errors.py is the only one.

GraphSource and GraphRoute are driven against the simulator over real HTTPS (in this process, signed in
through the real msal code) in every outage mode, at two scopes, and through Graph's error answers;
SmtpRoute against aiosmtpd relays with every fault tests/mailservers.py can inject, a relay that never
speaks, none at all, and an untrusted certificate. Every exception must be a LifeboatError, and a send
is MaybeSent only when the request that hands the message over may have arrived.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

import sync.sources.graph as graph_mod
from simulator.server import FAILURES, Simulator
from sync import errors, mime
from sync.errors import LifeboatError, MaybeSent, Unreachable
from sync.governor import Governor
from sync.routes.graph import GraphRoute
from sync.routes.smtp import SmtpRoute
from sync.sources.graph import GraphSource
from tests.continuity_kit import sign_in, sim_config
from tests.mailservers import QUIET_AIOSMTPD, FaultySmtp, HangingServer, free_port, make_tls

pytestmark = [pytest.mark.timeout(600), pytest.mark.filterwarnings(QUIET_AIOSMTPD)]  # timeout: a safety net
ROOT = Path(__file__).resolve().parents[1]
SENDER = "Adele <adele.vance@contoso.test>"
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


# ---- the tree ---------------------------------------------------------------------------------


def test_the_tree_in_errors_docstring_draws_every_class() -> None:
    """Tried: every LifeboatError class of sync.errors against the drawing in its docstring: each is drawn,
    under the parent it really has (the line of its parent is the nearest less indented one above)."""
    doc = errors.__doc__ or ""
    drawn: dict[str, int] = {}
    parents: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for line in doc.splitlines():
        words = line.replace("│", " ").replace("├──", "   ").replace("└──", "   ").split()
        if not words or not words[0].isidentifier() or not (words[0][0].isupper()):
            continue
        depth = len(line) - len(line.lstrip(" │├└─"))
        if words[0] in dir(errors) and (depth > 0 or words[0] == "LifeboatError"):
            while stack and stack[-1][0] >= depth:
                stack.pop()
            if stack:
                parents[words[0]] = stack[-1][1]
            stack.append((depth, words[0]))
            drawn[words[0]] = depth
    classes = {name for name, c in vars(errors).items()
               if inspect.isclass(c) and issubclass(c, LifeboatError)}
    assert classes == set(drawn), f"drawn but not defined, or defined but not drawn: {classes ^ set(drawn)}"
    for name, parent in parents.items():
        assert getattr(errors, name).__bases__ == (getattr(errors, parent),), name


def test_no_exception_class_is_defined_outside_errors_py() -> None:
    """Tried: every class in sync/, ui/ and desktop/ whose bases name an exception (Exception,
    BaseException, *Error, or a class of sync.errors): only sync/errors.py may define one."""
    tree_names = {n for n, c in vars(errors).items() if inspect.isclass(c) and issubclass(c, BaseException)}
    found = []
    for package in ("sync", "ui", "desktop"):
        for path in (ROOT / package).rglob("*.py"):
            if path == ROOT / "sync" / "errors.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ClassDef):
                    bases = {ast.unparse(b).split(".")[-1] for b in node.bases}
                    if bases & (tree_names | {"Exception", "BaseException"}) or any(
                            b.endswith(("Error", "Exception")) for b in bases):
                        found.append(f"{path.relative_to(ROOT)}: {node.name}")
    assert found == []


# ---- Graph: every outage, every public call ----------------------------------------------------


@dataclasses.dataclass
class Tenant:
    sim: Simulator
    auth: Any
    cfg: Any
    inbox: str
    sent: str
    message: str


INBOX_MAIL = (b"From: Zoe <zoe@example.com>\r\nTo: adele.vance@contoso.test\r\nSubject: contract\r\n"
              b"Message-ID: <contract@example.com>\r\nDate: Sat, 28 Nov 2026 09:00:00 +0000\r\n\r\nbody\r\n")


@pytest.fixture(scope="module")
def tenant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tenant]:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("REQUESTS_CA_BUNDLE", raising=False)
        mp.delenv("CURL_CA_BUNDLE", raising=False)
        mp.setenv("LIFEBOAT_INSECURE_TOKEN_CACHE", "1")  # tokens for a throwaway simulator
        sim = Simulator(tmp_path_factory.mktemp("sim"), messages=5, seed=3).start()
        sim.set_transport(sent_delay=0)
        try:
            cfg = sim_config(sim, tmp_path_factory.mktemp("home"))
            auth = sign_in(cfg)
            inbox, sent = sim.folder_id("inbox"), sim.folder_id("sentitems")
            # a message of our own in the inbox: the generated mailbox's spread over folders depends on
            # whether the third-party corpus is there (a clone without ../shared has other mail)
            message = sim.add_message("inbox", INBOX_MAIL)
            yield Tenant(sim, auth, cfg, inbox, sent, message)
        finally:
            sim.stop()


def make_source(t: Tenant, session: requests.Session | None = None,
                timeout: tuple[float, float] = (5.0, 10.0)) -> GraphSource:
    """A governor that gives up after 2 tries; the timeouts given (short ones where a hang is tried)."""
    src = GraphSource(t.cfg.graph_url, t.auth, ca_file=t.cfg.ca_file, timeout=timeout,
                      probe_timeout=timeout, session=session,
                      governor=Governor(base_delay=0.01, max_delay=0.02, max_attempts=2, max_retry_after=0.3,
                                        max_throttled_attempts=3))
    src.request_budget = 64 * 1024  # a 200 KB message takes the large-message way (draft, upload, send)
    return src


def small() -> bytes:
    return mime.build(sender=SENDER, to=["bob@relay.test"], subject="small", text="hi\n").raw


def large() -> bytes:
    files = [("big.bin", "application/octet-stream", bytes(range(256)) * 800)]
    return mime.build(sender=SENDER, to=["bob@relay.test"], subject="large", text="see file\n",
                      attachments=files).raw


def calls(t: Tenant, src: GraphSource) -> dict[str, Callable[[], object]]:
    """Every public call of GraphSource, and the route's send of a small and of a large message."""
    route = GraphRoute(src)
    copy = mime.build(sender=SENDER, to=["bob@relay.test"], subject="copy", text="hi\n")
    return {
        "probe": src.probe,
        "folders": src.folders,
        "changes": lambda: src.changes(t.inbox, None, None),
        "window_page": lambda: src.window_page(t.inbox, None, None),
        "fetch_mime": lambda: src.fetch_mime([t.message]),
        "fetch_one": lambda: src.fetch_one(t.message),
        "list_messages": lambda: src.list_messages(t.inbox),
        "find_by_message_id": lambda: src.find_by_message_id("<nobody@contoso.test>"),
        "save_copy": lambda: src.save_copy(t.sent, copy.raw, NOW, copy.message_id),
        "discard_copy": lambda: src.discard_copy("AAMkADnotthereAAA="),
        "send": lambda: route.send(small(), SENDER, ["bob@relay.test"]),
        "send_large": lambda: route.send(large(), SENDER, ["bob@relay.test"]),
    }


def outcomes(t: Tenant, src: GraphSource) -> dict[str, BaseException | None]:
    """What each call raised (None: it returned); fetch_mime's per-item exceptions count as raised."""
    out: dict[str, BaseException | None] = {}
    for name, call in calls(t, src).items():
        try:
            result = call()
        except Exception as exc:  # what the contract is about: anything at all is recorded
            out[name] = exc
            continue
        out[name] = next((v for v in result.values() if isinstance(v, BaseException)), None) if (
            name == "fetch_mime" and isinstance(result, dict)) else None
    return out


OUTAGES = [(mode, scope) for mode in ("refuse", "stop", "hang", "503", "slow", "truncate", "drop")
           for scope in ("all", "mail")] + [("flaky", kind) for kind in FAILURES]


@pytest.mark.parametrize(("mode", "scope"), OUTAGES, ids=[f"{m}-{s}" for m, s in OUTAGES])
def test_graph_adapters_raise_only_lifeboat_errors_in_every_outage(tenant: Tenant, mode: str, scope: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Tried: each outage mode of the simulator (scope all: the listener itself; scope mail: per request
    on Exchange's paths; flaky: half the requests fail each way) while every GraphSource call and the
    route's sends run. Every failure is a LifeboatError. Where no connection could be made (refuse/stop
    of scope all) or Graph answered (503), a send is not MaybeSent; where the request was read and no
    answer came (scope mail refuse/stop/hang, slow), the small send is MaybeSent; the large send's first
    requests fail before its /send, so it is never MaybeSent."""
    # no answer costs the read timeout (and, for a hang of the whole listener, the TLS handshake the
    # connect timeout): short there, generous elsewhere so a loaded machine never times out an answer
    waits = mode in ("hang", "slow") or scope in ("hang", "slow")
    timeout = (0.5 if scope == "all" else 5.0, 0.5) if waits else (5.0, 10.0)
    monkeypatch.setattr(graph_mod, "SEND_TIMEOUT", timeout)
    src = make_source(tenant, timeout=timeout)
    if mode == "flaky":
        tenant.sim.set_outage("flaky", scope="all", fraction=0.5, kind=scope, seed=5)
    else:
        tenant.sim.set_outage(mode, scope=scope, delay=1.5)
    try:
        got = outcomes(tenant, src)
    finally:
        tenant.sim.set_outage("normal")
        src.close()
    strays = {k: f"{type(v).__module__}.{type(v).__name__}: {v}" for k, v in got.items()
              if v is not None and not isinstance(v, LifeboatError)}
    assert strays == {}
    if mode in ("refuse", "stop", "hang", "503", "slow"):
        assert isinstance(got["probe"], Unreachable) and isinstance(got["changes"], Unreachable)
    if (mode in ("refuse", "stop") and scope == "all") or mode == "503":
        assert isinstance(got["send"], Unreachable) and not isinstance(got["send"], MaybeSent)
    if (mode in ("refuse", "stop", "hang") and scope == "mail") or mode == "slow":
        assert isinstance(got["send"], MaybeSent)
    if mode in ("refuse", "stop", "hang", "503", "slow"):
        assert got["send_large"] is not None and not isinstance(got["send_large"], MaybeSent)


def test_graph_adapters_raise_only_lifeboat_errors_for_error_answers(tenant: Tenant) -> None:
    """Tried: Graph's error answers: 404 (unknown folder and message), 403 (a denied folder, a From we may
    not send as), 410 (expired delta cursor), 413 (a request over a tiny size limit), 429 until the
    governor gives up. Each is the LifeboatError it means."""
    sim = tenant.sim
    src = make_source(tenant)
    cursor = src.changes(tenant.inbox, None, None).cursor
    expected: list[tuple[Callable[[], object], type[LifeboatError]]] = [
        (lambda: src.changes("AAMkADnofolderAAA=", None, None), errors.FolderBad),
        (lambda: src.fetch_one("AAMkADnomessageAAA="), errors.MessageBad),
    ]
    for call, kind in expected:
        with pytest.raises(kind):
            call()
    sim.expire_delta_tokens(410)
    with pytest.raises(errors.CursorExpired):
        src.changes(tenant.inbox, cursor, None)
    archive = sim.set_folder_access("archive", True)
    try:
        with pytest.raises(errors.AccessDenied):
            src.changes(archive, None, None)
    finally:
        sim.set_folder_access("archive", False)
    other = mime.build(sender="Mallory <ceo@contoso.test>", to=["bob@relay.test"], subject="x", text="x").raw
    with pytest.raises(errors.SendRejected, match="ErrorSendAsDenied"):
        GraphRoute(src).send(other, "ceo@contoso.test", ["bob@relay.test"])
    saved = sim.api.sizes.as_json()
    sim.set_sizes(max_request=2048)
    try:
        with pytest.raises(errors.SendRejected):  # 413 on sendMail, then on the draft: refused unread
            GraphRoute(src).send(large(), SENDER, ["bob@relay.test"])
    finally:
        sim.set_sizes(**{k: saved[k] for k in ("max_request",)})
    sim.throttle_next(20, retry_after=0.2)
    with pytest.raises(errors.Throttled):
        src.probe()
    sim.throttle_next(0)


def test_a_revoked_sign_in_is_auth_required(tenant: Tenant, tmp_path: Path) -> None:
    """Tried: Graph's 401 with every refresh token revoked (a tenant of its own: the revocation covers
    the tokens of the next second too): the probe, renewing once, ends in AuthRequired."""
    sim = Simulator(tmp_path / "sim", messages=1, seed=4).start()  # tenant fixture: the environment
    try:
        cfg = sim_config(sim, tmp_path / "home")
        src = GraphSource(cfg.graph_url, sign_in(cfg), ca_file=cfg.ca_file)
        src.probe()
        sim.revoke_tokens()
        with pytest.raises(errors.AuthRequired):
            src.probe()
        src.close()
    finally:
        sim.stop()


class HandOver(requests.Session):
    """A session that switches the simulator's outage on (scope mail, `mode`) just before one request:
    the test's way to lose exactly that request's answer (the tenant still reads the request)."""

    def __init__(self, sim: Simulator, mode: str, when: Callable[[str, str], bool]) -> None:
        super().__init__()
        self.sim, self.mode, self.when = sim, mode, when

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        if self.when(str(method), str(url)):
            self.sim.set_outage(self.mode, scope="mail")
        return super().request(method, url, *args, **kwargs)


@pytest.mark.parametrize(("step", "maybe"), [("/send", True), ("/createUploadSession", False),
                                             ("/api/v2.0/", False), ("/me/messages", False)])
def test_a_large_send_is_maybe_sent_only_when_its_final_send_lost_its_answer(
        tenant: Tenant, step: str, maybe: bool) -> None:
    """Tried: a large message (draft, upload session, send) whose one step gets no answer (the tenant reads
    the request, then closes the connection): only a lost answer to the draft's /send is MaybeSent; a lost
    answer to the draft's creation, its upload session or a chunk's PUT is a plain Unreachable (nothing
    went out: the draft is deleted, or found and deleted by the next attempt)."""
    def when(method: str, url: str) -> bool:
        return method in ("POST", "PUT") and (url.endswith(step) if step != "/api/v2.0/" else step in url)

    src = make_source(tenant, HandOver(tenant.sim, "stop", when))
    session_min = tenant.sim.api.sizes.session_min
    tenant.sim.set_sizes(session_min=1024)  # the 200 KB file goes through an upload session and its PUT
    try:
        with pytest.raises(LifeboatError) as caught:
            GraphRoute(src).send(large(), SENDER, ["bob@relay.test"])
    finally:
        tenant.sim.set_outage("normal")
        tenant.sim.set_sizes(session_min=session_min)
        src.close()
    assert isinstance(caught.value, MaybeSent) is maybe
    assert isinstance(caught.value, MaybeSent | Unreachable)


# ---- SMTP: every fault --------------------------------------------------------------------------


FAULTS: list[tuple[str, Callable[[Any], None]]] = [
    ("451-mail", lambda h: setattr(h, "mail_reply", "451 4.3.2 try later")),
    ("553-mail", lambda h: setattr(h, "mail_reply", "553 5.7.1 not allowed")),
    ("421-mail", lambda h: setattr(h, "mail_reply", "421 4.3.0 closing")),
    ("550-rcpt", lambda h: h.rcpt_replies.update({"bob@relay.test": "550 5.1.1 unknown"})),
    ("452-rcpt", lambda h: h.rcpt_replies.update({"bob@relay.test": "452 4.2.2 full"})),
    ("554-data", lambda h: setattr(h, "data_reply", "554 5.7.1 spam")),
    ("421-data", lambda h: setattr(h, "data_reply", "421 4.3.0 shutting down")),
    ("drop-after-data", lambda h: setattr(h, "drop_after_data", True)),
    ("hang-in-data", lambda h: setattr(h, "hang_in_data", 3.0)),
]


def smtp_outcomes(route: SmtpRoute) -> list[BaseException | None]:
    got: list[BaseException | None] = []
    for call in (lambda: route.send(small(), "adele.vance@contoso.test", ["bob@relay.test"]), route.probe):
        try:
            call()
            got.append(None)
        except Exception as exc:  # what the contract is about: anything at all is recorded
            got.append(exc)
    route.close()
    return got


@pytest.mark.parametrize("fault", [f for _, f in FAULTS], ids=[n for n, _ in FAULTS])
def test_smtp_route_raises_only_lifeboat_errors_for_every_relay_fault(fault: Callable[[Any], None]) -> None:
    """Tried: each fault the aiosmtpd relay can inject, through send and probe: a send fails with a
    LifeboatError, never another exception (the probe, which sends no mail, passes or is Unreachable)."""
    with FaultySmtp() as relay:
        fault(relay.handler)
        sent, probed = smtp_outcomes(SmtpRoute("127.0.0.1", relay.port, "none", timeout=1))
    assert isinstance(sent, LifeboatError), repr(sent)
    assert probed is None or isinstance(probed, Unreachable), repr(probed)


def test_smtp_route_raises_only_lifeboat_errors_when_the_relay_is_absent_silent_untrusted_or_refuses_login(
        tmp_path: Path) -> None:
    """Tried: no server on the port, a server that accepts and never speaks, STARTTLS with a certificate
    from a CA we were not told to trust, implicit TLS with a wrong password, and STARTTLS required but not
    offered: send and probe both fail, each with a LifeboatError."""
    tls = make_tls(tmp_path / "tls")
    got: list[BaseException | None] = []
    got += smtp_outcomes(SmtpRoute("127.0.0.1", free_port(), "none", timeout=1))
    with HangingServer() as silent:
        got += smtp_outcomes(SmtpRoute("127.0.0.1", silent.port, "none", timeout=1))
    with FaultySmtp("starttls", tls) as untrusted:
        got += smtp_outcomes(SmtpRoute("127.0.0.1", untrusted.port, "starttls", timeout=5))
    with FaultySmtp() as plain:
        got += smtp_outcomes(SmtpRoute("127.0.0.1", plain.port, "starttls", timeout=5))
    with FaultySmtp("tls", tls, users={"adele": "right"}) as locked:  # the probe does not log in
        got += smtp_outcomes(SmtpRoute("127.0.0.1", locked.port, "tls", username="adele", password="wrong",
                                       ca_file=str(tls.ca), timeout=5))[:1]
    assert len(got) == 9 and all(isinstance(e, LifeboatError) for e in got), [repr(e) for e in got]
