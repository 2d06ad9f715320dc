"""Faithfulness: the simulator's Graph responses validate against the Graph v1.0 CSDL (mail subset) and
have the shapes of Microsoft's published examples (the corpus's graph/ folder, found by tests/corpus.py).

The CSDL check is strict: every property we emit must be declared on the type (or its base types), with
the declared JSON type, enum member, or nullability. Every message of a generated mailbox (which includes
real third-party MIME from the corpus) is checked, so odd MIME cannot produce an off-schema message.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import requests

from simulator import shape
from simulator.server import Simulator
from tests import corpus

ASSETS = corpus.ASSETS / "graph"
EDM = "{http://docs.oasis-open.org/odata/ns/edm}"

pytestmark = corpus.needs_corpus


class Csdl:
    """Types of the CSDL subset: entity/complex types with properties, and enums."""

    def __init__(self, path: Path) -> None:
        root = ET.parse(path).getroot()
        self.types: dict[str, dict[str, Any]] = {}
        self.enums: dict[str, set[str]] = {}
        for node in root.iter():
            name = node.get("Name")
            if node.tag == f"{EDM}EnumType":
                self.enums[name] = {m.get("Name") for m in node}
            elif node.tag in (f"{EDM}EntityType", f"{EDM}ComplexType"):
                props = {
                    p.get("Name"): (p.get("Type"), p.get("Nullable") != "false")
                    for p in node
                    if p.tag == f"{EDM}Property"
                }
                base = (node.get("BaseType") or "").removeprefix("graph.") or None
                self.types[name] = {"props": props, "base": base}

    def props(self, type_name: str) -> dict[str, tuple[str, bool]]:
        out: dict[str, tuple[str, bool]] = {}
        t: str | None = type_name
        while t:
            out = {**self.types[t]["props"], **out}
            t = self.types[t]["base"]
        return out

    def check(self, value: Any, type_name: str, where: str = "$") -> list[str]:
        """Problems found validating `value` as `type_name` (empty when valid)."""
        if type_name.startswith("Collection("):
            if not isinstance(value, list):
                return [f"{where}: expected a list for {type_name}"]
            inner = type_name[len("Collection(") : -1]
            return [p for i, v in enumerate(value) for p in self.check(v, inner, f"{where}[{i}]")]
        t = type_name.removeprefix("graph.")
        if t == "Edm.String":
            return [] if isinstance(value, str) else [f"{where}: expected a string, got {value!r}"]
        if t == "Edm.Boolean":
            return [] if isinstance(value, bool) else [f"{where}: expected a boolean, got {value!r}"]
        if t in ("Edm.Int32", "Edm.Int64"):
            ok = isinstance(value, int) and not isinstance(value, bool)
            return [] if ok else [f"{where}: expected an integer, got {value!r}"]
        if t == "Edm.DateTimeOffset":
            try:
                parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
                assert parsed.tzinfo is not None
                return []
            except (ValueError, AssertionError):
                return [f"{where}: expected an ISO 8601 time with offset, got {value!r}"]
        if t == "Edm.Binary":
            try:
                base64.b64decode(value, validate=True)
                return []
            except (ValueError, TypeError):
                return [f"{where}: expected base64, got {str(value)[:40]!r}"]
        if t in self.enums:
            return [] if value in self.enums[t] else [f"{where}: {value!r} is not a member of {t}"]
        if t not in self.types:
            return [f"{where}: type {t} is not in the CSDL subset"]
        if not isinstance(value, dict):
            return [f"{where}: expected an object for {t}"]
        declared = value.get("@odata.type", "").removeprefix("#microsoft.graph.")
        if declared and declared != t:
            if declared not in self.types:
                return [f"{where}: unknown @odata.type {declared}"]
            t = declared
        props = self.props(t)
        problems = []
        for k, v in value.items():
            if k.startswith("@"):
                continue
            if k not in props:
                problems.append(f"{where}.{k}: not a property of {t}")
                continue
            ptype, nullable = props[k]
            if v is None:
                if not nullable:
                    problems.append(f"{where}.{k}: must not be null")
                continue
            problems += self.check(v, ptype, f"{where}.{k}")
        return problems


@pytest.fixture(scope="module")
def csdl() -> Csdl:
    return Csdl(ASSETS / "schema" / "graph-v1.0-mail-subset.csdl.xml")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Any:
    mp = pytest.MonkeyPatch()
    mp.delenv("REQUESTS_CA_BUNDLE", raising=False)
    mp.delenv("CURL_CA_BUNDLE", raising=False)
    sim = Simulator(tmp_path_factory.mktemp("schema"), messages=150, seed=5).start()
    import msal

    app = msal.PublicClientApplication(
        "schema-test", authority=sim.authority, instance_discovery=False, verify=str(sim.ca_path)
    )
    token = app.acquire_token_by_device_flow(app.initiate_device_flow(scopes=["Mail.ReadWrite"]))[
        "access_token"
    ]
    s = requests.Session()
    s.verify = str(sim.ca_path)
    s.headers.update(
        {"Authorization": f"Bearer {token}", "Prefer": 'IdType="ImmutableId", odata.maxpagesize=25'}
    )
    yield sim, s
    sim.stop()
    mp.undo()


def example(name: str) -> Any:
    for folder in ("docs-examples", "docs-examples-2021"):
        p = ASSETS / folder / name
        if p.exists():
            return json.loads(p.read_text(encoding="utf-8"))
    raise FileNotFoundError(name)


def test_every_generated_message_validates(live: Any, csdl: Csdl) -> None:
    """message_json of every message (generated and real corpus MIME) is a valid graph.message, also
    with internetMessageHeaders selected."""
    sim, _ = live
    problems = []
    assert len(sim.mailbox.items) == 150
    for item in sim.mailbox.items.values():
        problems += csdl.check(shape.message_json(sim.mailbox, item), "message", item.id[:12])
        problems += csdl.check(
            shape.message_json(sim.mailbox, item, ["subject", "internetMessageHeaders"]),
            "message",
            item.id[:12],
        )
    assert not problems, problems[:20]


def test_http_responses_of_the_paths_lifeboat_uses_validate(live: Any, csdl: Csdl) -> None:
    """GET message, folders, childFolders, folder delta, message delta pages, attachments, create, $batch."""
    sim, s = live
    g = sim.graph_url
    problems: list[str] = []
    folders = s.get(f"{g}/me/mailFolders?$top=50").json()["value"]
    problems += csdl.check(folders, "Collection(graph.mailFolder)", "mailFolders")
    problems += csdl.check(
        s.get(f"{g}/me/mailFolders/inbox/childFolders").json()["value"],
        "Collection(graph.mailFolder)",
        "child",
    )
    problems += csdl.check(
        s.get(f"{g}/me/mailFolders/delta").json()["value"], "Collection(graph.mailFolder)", "fd"
    )
    url = f"{g}/me/mailFolders/inbox/messages/delta"
    while url:
        page = s.get(url).json()
        problems += csdl.check(page["value"], "Collection(graph.message)", "delta")
        url = page.get("@odata.nextLink")
    with_att = [i for i in sim.mailbox.items.values() if shape.attachments(i)]
    assert with_att
    for item in with_att[:10]:
        problems += csdl.check(s.get(f"{g}/me/messages/{item.id}").json(), "message", "get")
        atts = s.get(f"{g}/me/messages/{item.id}/attachments").json()["value"]
        problems += csdl.check(atts, "Collection(graph.attachment)", "attachments")
        one = s.get(f"{g}/me/messages/{item.id}/attachments/{atts[0]['id']}").json()
        problems += csdl.check(one, "attachment", "attachment")
    created = s.post(
        f"{g}/me/mailFolders/sentitems/messages",
        json={
            "subject": "x",
            "toRecipients": [{"emailAddress": {"address": "a@example.test"}}],
            "singleValueExtendedProperties": [{"id": "Integer 0x0E07", "value": "1"}],
        },
    ).json()
    problems += csdl.check(created, "message", "created")
    batch = s.post(
        f"{g}/$batch",
        json={
            "requests": [
                {"id": "1", "method": "GET", "url": f"/me/messages/{with_att[0].id}"},
                {"id": "2", "method": "GET", "url": "/me/mailFolders/inbox"},
            ]
        },
    ).json()["responses"]
    by = {r["id"]: r for r in batch}
    problems += csdl.check(by["1"]["body"], "message", "batch1")
    problems += csdl.check(by["2"]["body"], "mailFolder", "batch2")
    assert not problems, problems[:20]


def test_shapes_match_microsofts_examples(live: Any) -> None:
    """Key sets of message, mailFolder, attachment, delta pages, @removed, $batch, 429 and errors match
    the published examples."""
    sim, s = live
    g = sim.graph_url
    item = next(i for i in sim.mailbox.items.values() if shape.attachments(i))
    ours = s.get(f"{g}/me/messages/{item.id}").json()
    ex = example("message-get__response1.json")
    assert set(ex) - {"@odata.context"} <= set(ours)
    for k in ("body", "flag"):
        assert set(ex[k]) == set(ours[k])
    assert set(ex["sender"]["emailAddress"]) == set(ours["sender"]["emailAddress"])

    ex_folder = example("user-list-mailfolders__response1.json")["value"][0]
    assert set(ex_folder) == set(s.get(f"{g}/me/mailFolders").json()["value"][0])

    ex_att = example("attachment-get__response1.json")
    atts = s.get(f"{g}/me/messages/{item.id}/attachments").json()["value"]
    file_att = next(a for a in atts if a["@odata.type"] == "#microsoft.graph.fileAttachment")
    assert set(ex_att) - {"@odata.context"} == set(file_att)

    # delta pages: a nextLink page, a deltaLink page, and a round with @removed
    inbox = sim.folder_id("inbox")
    sel = "?$select=subject,isRead,sender"
    first = s.get(
        f"{g}/me/mailFolders/{inbox}/messages/delta{sel}", headers={"Prefer": "odata.maxpagesize=2"}
    ).json()
    ex1 = example("delta-messages-ex1-page1-nextLink.json")
    assert set(first) == set(ex1)
    assert set(first["value"][0]) == set(ex1["value"][0])
    assert "/messages/delta?$skiptoken=" in first["@odata.nextLink"]
    page = first
    while "@odata.nextLink" in page:
        page = s.get(page["@odata.nextLink"], headers={"Prefer": "odata.maxpagesize=50"}).json()
    ex3 = example("delta-messages-ex1-page3-deltaLink.json")
    assert set(page) == set(ex3) and "/messages/delta?$deltatoken=" in page["@odata.deltaLink"]
    victim = next(iter(sim.state()[inbox]))
    sim.delete(victim)
    round2 = s.get(page["@odata.deltaLink"]).json()
    ex_removed = example("delta-messages-ex1-round2-removed-and-updated.json")["value"][0]
    removed = [v for v in round2["value"] if "@removed" in v]
    assert [r["id"] for r in removed] == [victim]
    assert set(removed[0]) == set(ex_removed) and removed[0]["@removed"]["reason"] in ("deleted", "changed")

    ex_batch = example("batch-response-mixed-status.json")["responses"][0]
    ours_batch = s.post(
        f"{g}/$batch", json={"requests": [{"id": "1", "method": "GET", "url": "/me/mailFolders"}]}
    )
    assert set(ours_batch.json()["responses"][0]) == set(ex_batch)

    sim.throttle_next(1, 2.128)
    r = s.get(f"{g}/me")
    http_429 = (ASSETS / "docs-examples-2021" / "throttling__429-response.http").read_text()
    body_429 = json.loads(http_429[http_429.index("{") :])
    assert r.status_code == 429 and r.headers["Retry-After"] == "2.128"
    assert r.json()["error"]["code"] == body_429["error"]["code"]
    assert set(r.json()["error"]) == {"code", "message", "innerError"}
    err = s.get(f"{g}/me/messages/AAMkADnothing").json()
    ex_err = example("errors__example-error-response.json")
    assert set(err["error"]) == set(ex_err["error"])
    # the docs example spells requestId; live Graph (and its 429 sample) spell request-id
    assert {"date", "request-id"} <= set(err["error"]["innerError"])
    assert "date" in ex_err["error"]["innerError"] and "request-id" in body_429["error"]["innerError"]


def test_every_corpus_message_gives_a_valid_message(csdl: Csdl, tmp_path: Path) -> None:
    """All public third-party MIME (malformed, nested, odd charsets) stored as-is yields a schema-valid
    message without raising, and $value would return the exact bytes."""
    from simulator.mailbox import Mailbox

    files = corpus.files("mime-public")
    assert len(files) > 200
    mb = Mailbox(1)
    problems = []
    for f in files:
        raw = f.read_bytes()
        item = mb.add("inbox", raw)
        problems += csdl.check(shape.message_json(mb, item), "message", f.name)
        for part in shape.attachments(item):
            problems += csdl.check(shape.attachment_json(item, part), "attachment", f.name)
        assert mb.item(item.id).mime == raw
    assert not problems, problems[:20]
