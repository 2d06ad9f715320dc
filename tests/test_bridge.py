"""The js_api bridge over a real SQLCipher store filled with generated MIME (tests/samples.py), and with
real third-party MIME when the corpus is present (tests/corpus.py)."""

from __future__ import annotations

import email
import os
import queue
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sync import mime
from sync.commands import Force, Pause, SignIn, SyncNow, WakeOutbox
from sync.errors import MessageBad
from sync.model import Folder
from sync.store import Store
from tests import corpus
from tests.samples import sample
from ui.bridge import Bridge

ME = "Me Myself <me@example.org>"


@pytest.fixture
def store(tmp_path):
    s = Store.open(tmp_path / "cache.db", os.urandom(32))
    s.upsert_folders([Folder("inbox", "Inbox", well_known="inbox"), Folder("sent", "Sent Items")])
    yield s
    s.close()


def put(store: Store, name: str, folder: str = "inbox") -> int:
    """Store one generated sample (tests/samples.py) under provider id "p-<name>"."""
    return store.put_message(folder, "p-" + name, sample(name))


@pytest.fixture
def bridge(store, tmp_path):
    opened: list[str] = []
    b = Bridge(store, queue.Queue(), me=ME, open_url=opened.append, open_path=opened.append,
               opened=tmp_path / "home" / "opened")
    b._opened = opened  # type: ignore[attr-defined]
    return b


class SaveDialog:
    """Stands in for the window's native save dialog (it cannot be driven here): the user picks `folder`
    and keeps the suggested name. Everything after the dialog is the bridge's real code."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.asked: list[str] = []

    def create_file_dialog(self, kind: object, save_filename: str = "", **_: object) -> str:
        self.asked.append(save_filename)
        return str(self.folder / save_filename)


def attach(store: Store, name: str, data: bytes = b"MZ payload", ctype: str = "application/x-msdownload",
           ) -> int:
    """Store a message with one attachment called `name` (built by sync.mime, parsed back by the store)."""
    out = mime.build(sender="a@example.com", to=["me@example.org"], subject="x", text="y",
                     attachments=[(name, ctype, data)])
    return store.put_message("inbox", "p-" + name.encode("unicode_escape").decode()[:200], out.raw)


def test_folders_and_paged_list(store, bridge):
    """Tried: three generated messages in Inbox; the folder count, then pages by offset/limit, newest
    first."""
    for name in ("plain", "attachments", "other-links"):
        put(store, name)
    folders = {f["id"]: f for f in bridge.folders()}
    assert folders["inbox"]["count"] == 3 and folders["sent"]["count"] == 0
    page1 = bridge.messages("inbox", 0, 2)
    page2 = bridge.messages("inbox", 2, 2)
    assert page1["total"] == 3 and len(page1["items"]) == 2 and len(page2["items"]) == 1
    dates = [i["date"] for i in page1["items"] + page2["items"] if i["date"]]
    assert dates == sorted(dates, reverse=True)


@pytest.mark.parametrize(
    ("call", "args"),
    [
        ("messages", ("nope", 0, 10)),
        ("messages", ("inbox", -1, 10)),
        ("messages", ("inbox", 0, 100000)),
        ("messages", ("inbox", "0", 10)),
        ("message", (0,)),
        ("message", ("1",)),
        ("message", (999,)),
        ("message", (1, "yes")),
        ("search", (None,)),
        ("search", ("x" * 600,)),
        ("force", ("chaos",)),
        ("pause", ("yes",)),
        ("draft", ("bogus", 1)),
        ("send", ("not a dict",)),
        ("open_link", (1, "javascript:alert(1)")),
        ("timeline", (True,)),
    ],
)
def test_bad_arguments_come_back_as_clear_errors(store, bridge, call, args):
    """Tried: wrong types, ranges, unknown ids and values; each is an {"error", "fix"} JSON, not a crash."""
    put(store, "plain")
    out = getattr(bridge, call)(*args)
    assert isinstance(out, dict) and out["error"] and "kind" in out


def test_message_body_is_sanitized_and_images_blocked(store, bridge):
    """Tried: an HTML mail with remote images; strict CSP in srcdoc, no remote src, images counted."""
    mid = put(store, "remote-images")
    m = bridge.message(mid)
    assert "default-src 'none'" in m["srcdoc"] and "img-src data:;" in m["srcdoc"]
    assert m["blocked_images"] > 0
    assert 'src="http' not in m["srcdoc"].lower()
    shown = bridge.message(mid, True)
    assert shown["blocked_images"] == 0 and 'src="http' in shown["srcdoc"].lower()
    assert "img-src data: http: https:" in shown["srcdoc"]


def test_cid_images_become_data_uris(store, bridge):
    """Tried: a multipart/related message whose HTML shows a cid: image; it arrives as a data: URI."""
    mid = put(store, "cid-image")
    m = bridge.message(mid)
    assert "cid:" not in m["srcdoc"]
    assert "data:image/" in m["srcdoc"]


def test_open_link_only_for_links_of_that_message(store, bridge):
    """Tried: open a link the message has, one it does not have, and one from another message."""
    mid = put(store, "remote-images")
    other = put(store, "other-links")
    links = bridge.message(mid)["links"]
    assert links
    assert bridge.open_link(mid, links[0]) == {"opened": links[0]}
    assert bridge._opened == [links[0]]
    assert "error" in bridge.open_link(mid, "https://evil.example/phish")
    foreign = [u for u in bridge.message(other)["links"] if u not in links]
    assert foreign  # the other sample's links are its own: the refusal below is really tried
    assert "error" in bridge.open_link(mid, foreign[0])
    assert bridge._opened == [links[0]]


def test_attachments_open_and_save(store, bridge, tmp_path):
    """Tried: a message with two attachments; open writes a private temp copy, save writes the bytes."""
    mid = put(store, "attachments")
    atts = bridge.message(mid)["attachments"]
    assert atts
    first = next(a for a in atts if a["filename"].endswith((".pdf", ".png", ".txt", ".jpg")))
    out = bridge._save_attachment_to(mid, first["index"], str(tmp_path))
    saved = Path(out["saved"])
    assert saved.parent == tmp_path and saved.stat().st_size > 0
    assert saved.read_bytes() == store.parsed(mid).attachment(first["index"])
    assert bridge.open_attachment(mid, first["index"])["opened"]
    assert Path(bridge._opened[-1]).read_bytes() == saved.read_bytes()
    with pytest.raises(MessageBad):
        bridge._save_attachment_to(mid, 99, str(tmp_path))
    assert "error" in bridge.save_attachment(mid, 99)
    assert "no window" in bridge.save_attachment(mid, first["index"])["error"]


def test_search_as_you_type(store, bridge):
    """Tried: partial words (prefix match) and FTS syntax characters that must not raise."""
    mid = put(store, "attachments")
    subject = bridge.message(mid)["subject"]
    word = next(w for w in subject.split() if len(w) > 4 and w.isalpha())
    found = bridge.search(word[:3])
    assert mid in [i["id"] for i in found["items"]]
    for nasty in ('"', "AND (", "*", "NEAR(", "a:b", "'); DROP TABLE messages;--"):
        out = bridge.search(nasty)
        assert "items" in out or "error" in out
    assert bridge.folders()[0]["count"] >= 1


def test_reply_goes_to_outbox_with_threading_headers(store, bridge):
    """Tried: draft a reply-all and send it; queued row has In-Reply-To/References, engine woken."""
    mid = put(store, "attachments")
    original = store.message(mid)
    d = bridge.draft("reply_all", mid)
    assert d["subject"].lower().startswith("re:")
    d["to"] = d["to"] or "someone@example.com"
    d["text"] = "Thanks!\n" + d["text"]
    out = bridge.send(d)
    assert out["queued"] and out["message_id"].startswith("<")
    item = store.outbox_get(out["queued"])
    assert item.state == "queued"
    msg = email.message_from_bytes(item.raw)
    assert msg["In-Reply-To"] == original["message_id"]
    assert original["message_id"] in msg["References"]
    assert bridge._commands.get_nowait() == WakeOutbox()
    listed = bridge.outbox()
    assert listed[0]["id"] == item.id and listed[0]["state"] == "queued"
    assert bridge.status()["outbox"]["queued"] == 1


def test_forward_keeps_attachments(store, bridge):
    """Tried: forward a message with attachments; the queued MIME carries the same attachment bytes."""
    mid = put(store, "attachments")
    d = bridge.draft("forward", mid)
    assert d["attachments"]
    d["to"] = "friend@example.com"
    out = bridge.send(d)
    raw = store.outbox_get(out["queued"]).raw
    names = [p.get_filename() for p in email.message_from_bytes(raw).walk() if p.get_filename()]
    assert [a["filename"] for a in d["attachments"]] == names


def test_send_rejects_bad_addresses_and_loses_nothing(store, bridge):
    """Tried: send to a malformed address; a clear MessageBad error and no outbox row."""
    out = bridge.send({"kind": "new", "to": "not-an-address", "subject": "x", "text": "y"})
    assert out["kind"] == "MessageBad" and "not" in out["error"]
    assert bridge.outbox() == []
    assert bridge._commands.empty()


def test_status_and_timeline(store, bridge):
    """Tried: persist continuity with the offline condition and log events; banner and timeline show them."""
    since = datetime(2026, 11, 28, 9, 30, tzinfo=UTC)
    store.save_mode("continuity", since, "provider down", '{"offline": false, "sign_in_needed": false}')
    store.log_event("mode", "normal -> continuity: provider down", since)
    st = bridge.status()
    assert st["mode"] == "continuity" and st["route"] == "backup"
    assert st["since"].startswith("2026-11-28T09:30")
    store.save_mode("normal", since, "ok", '{"offline": true}')
    st = bridge.status()
    assert st["shown"] == "offline" and st["route"] == "primary"
    assert bridge.timeline(10)[0]["detail"].startswith("normal -> continuity")


def test_commands_are_enqueued(bridge):
    """Tried: sync now, force continuity/normal, pause; each becomes one sync.commands value, nothing else;
    a mode the window does not offer ("auto") is refused."""
    bridge.sync_now()
    bridge.force("continuity")
    bridge.force("normal")
    bridge.pause(True)
    got = [bridge._commands.get_nowait() for _ in range(4)]
    assert got == [SyncNow(), Force("continuity"), Force("normal"), Pause(True)]
    assert bridge.force("auto")["kind"] == "BadArgument" and bridge._commands.empty()


class WinFormsWindow:
    """pywebview's window on Windows as far as the bridge looks: `native` is the WinForms form, whose
    `Handle` is a .NET IntPtr (the window's HWND). Only Windows has it, so it stands in here."""

    class _IntPtr:
        def __init__(self, value: int) -> None:
            self.value = value

        def ToInt64(self) -> int:
            return self.value

    def __init__(self, hwnd: int) -> None:
        self.native = type("Form", (), {"Handle": self._IntPtr(hwnd)})()


def test_sign_in_from_the_window_hands_its_handle_to_the_app(bridge):
    """Tried: Sign in from the page with no window, with a Qt window (no HWND) and with a WinForms window:
    one SignIn command each, carrying the HWND only when there is one (WAM parents its dialog to it); the
    page cannot pass a handle of its own (the method takes no argument)."""
    assert bridge.sign_in() == {"queued": "sign_in"}
    bridge._attach_window(type("QtWindow", (), {"native": object()})())
    bridge.sign_in()
    bridge._attach_window(WinFormsWindow(0x2A0B3C))
    bridge.sign_in()
    got = [bridge._commands.get_nowait() for _ in range(3)]
    assert got == [SignIn(None), SignIn(None), SignIn(0x2A0B3C)]
    with pytest.raises(TypeError):
        bridge.sign_in(1234)


RUNNABLE = [".exe", ".desktop", ".msc", ".xll", ".scf", ".inf", ".wsc", ".sct", ".application",
            ".appinstaller", ".msix", ".website", ".search-ms", ".diagcab", ".rdp", ".theme", ".jnlp",
            ".html", ".svg", ".docm"]


@pytest.mark.parametrize("ext", RUNNABLE)
def test_runnable_attachments_are_saved_not_opened(store, bridge, tmp_path, ext):
    """Tried: "Open" on each runnable type of the issue's list (and the classics, HTML, SVG, a macro
    document): nothing is handed to the system; the user is asked where to save it, the bytes land there,
    and the answer says it was saved, not opened, and why."""
    dialog = SaveDialog(tmp_path)
    bridge._attach_window(dialog)
    mid = attach(store, f"invoice{ext}")
    [att] = bridge.message(mid)["attachments"]
    res = bridge.open_attachment(mid, att["index"])
    assert bridge._opened == [] and res["opened"] is None, res
    assert res["saved"] == str(tmp_path / f"invoice{ext}")
    assert Path(res["saved"]).read_bytes() == b"MZ payload"
    assert "saves it instead of opening it" in res["why"] and dialog.asked == [f"invoice{ext}"]
    assert not (tmp_path / "home" / "opened").exists()  # no decrypted copy was made to open


def test_a_long_exe_pdf_is_decided_on_the_name_written(store, bridge):
    """Tried: the issue's long '....exe.pdf' (153 characters): the old order (strip, then truncate to 150)
    wrote 'AAA….exe.' (the check saw no extension, Windows drops the dot and runs an .exe). The name handed
    to the system is the one the check saw: nothing Windows would drop, and it opens as the .pdf it is."""
    mid = attach(store, "A" * 145 + ".exe.pdf", b"%PDF-1.4", "application/pdf")
    [att] = bridge.message(mid)["attachments"]
    assert bridge.open_attachment(mid, att["index"])["opened"]
    [handed] = bridge._opened
    name = Path(handed).name
    assert name == name.rstrip(". ") and name.endswith(".pdf") and len(name) <= 150
    assert name == att["filename"] and Path(handed).read_bytes() == b"%PDF-1.4"


def test_a_long_name_cut_to_exe_is_not_opened(store, bridge, tmp_path):
    """Tried: 'AAA….exe' followed by dots and spaces, cut by the length limit inside them: what is left
    ends in .exe, so it is saved (never opened), under exactly that name."""
    bridge._attach_window(SaveDialog(tmp_path))
    mid = attach(store, "A" * 140 + ".exe" + ". " * 20)
    [att] = bridge.message(mid)["attachments"]
    res = bridge.open_attachment(mid, att["index"])
    assert bridge._opened == [] and res["saved"].endswith(".exe")


BIDI = "\u202e\u202a\u202b\u202c\u202d\u200e\u200f\u2066\u2067\u2068\u2069\u061c\u200b\ufeff"


def test_bidi_controls_are_not_shown_opened_or_saved(store, bridge, tmp_path, monkeypatch):
    """Tried: 'invoice<U+202E>fdp.exe' (drawn 'invoiceexe.pdf') and a name with every other bidi/invisible
    control, parsed now and (as a cache filled by the previous version holds them) stored unfiltered: the
    names the page shows, the save dialog suggests and the disk gets have none of them."""
    bridge._attach_window(dialog := SaveDialog(tmp_path))
    mid = attach(store, "invoice\u202efdp.exe")
    with monkeypatch.context() as m:  # what the previous version stored: the name as sent
        m.setattr(mime, "safe_filename", lambda name, default="": name)
        old = attach(store, f"report{BIDI}.pdf{BIDI}", b"%PDF", "application/pdf")
    assert any(c in store.message(old)["attachments"][0]["filename"] for c in BIDI)  # really stored so
    shown = [a["filename"] for i in (mid, old) for a in bridge.message(i)["attachments"]]
    assert shown == ["invoicefdp.exe", "report.pdf"]
    res = bridge.open_attachment(mid, 0)
    assert res["opened"] is None and Path(res["saved"]).name == "invoicefdp.exe"
    assert bridge.open_attachment(old, 0)["opened"] == "report.pdf"
    assert Path(bridge._opened[-1]).name == "report.pdf" and dialog.asked == ["invoicefdp.exe"]
    assert Path(bridge.save_attachment(old, 0)["saved"]) == tmp_path / "report.pdf"  # "Save…" too
    assert dialog.asked == ["invoicefdp.exe", "report.pdf"]


def test_send_attaches_only_files_picked_in_the_dialog(store, bridge, tmp_path):
    """Tried: the page asks to attach a path the user never picked (a key file); refused, nothing queued."""
    secret = tmp_path / "id_rsa"
    secret.write_text("PRIVATE")
    draft = {"kind": "new", "to": "x@example.com", "subject": "s", "text": "t", "files": [str(secret)]}
    out = bridge.send(draft)
    assert "not chosen in the file dialog" in out["error"]
    assert bridge.outbox() == []
    bridge._picked.add(str(secret))  # what pick_files() records after the native dialog
    assert bridge.send(draft)["queued"]


def test_conversations_grouped_in_the_virtual_list(store, bridge):
    """Tried: a 3-message thread (Re:/RE: prefixes) around an unrelated message; threaded pages group it
    under its newest message with the thread size, ordered by each thread's newest message."""
    base = datetime(2026, 5, 1, tzinfo=UTC)
    for n, (subject, hours) in enumerate([("Plan", 0), ("Other", 1), ("Re: Plan", 2), ("RE: Re: Plan", 3)]):
        out = mime.build(sender=f"p{n}@example.com", to=["me@example.org"], subject=subject, text="x",
                         date=base + timedelta(hours=hours))
        store.put_message("inbox", f"t{n}", out.raw)
    flat = bridge.messages("inbox", 0, 10)
    assert [i["subject"] for i in flat["items"]] == ["RE: Re: Plan", "Re: Plan", "Other", "Plan"]
    page = bridge.messages("inbox", 0, 10, True)
    got = [(i["subject"], i["depth"], i["thread_size"]) for i in page["items"]]
    assert got == [("RE: Re: Plan", 0, 3), ("Re: Plan", 1, 0), ("Plan", 1, 0), ("Other", 0, 1)]
    assert page["total"] == 4
    assert [i["subject"] for i in bridge.messages("inbox", 2, 2, True)["items"]] == ["Plan", "Other"]
    assert "error" in bridge.messages("inbox", 0, 10, "yes")


def test_start_brings_status_folders_and_the_inbox_first_page(store, bridge):
    """Tried: the page's one start-up call over three generated messages; the same status, folders and first
    inbox page as the separate calls give, and a bad page size comes back as a clear error."""
    for name in ("plain", "attachments", "other-links"):
        put(store, name)
    init = bridge.start(2)
    assert init["status"] == bridge.status()
    assert init["folders"] == bridge.folders()
    assert init["first"]["folder"] == "inbox" and init["first"]["total"] == 3
    assert init["first"]["items"] == bridge.messages("inbox", 0, 2)["items"]
    assert "error" in bridge.start(0) and "error" in bridge.start("200")


def test_reopening_reuses_the_rendered_body_and_a_replaced_mime_is_not_stale(store, bridge, monkeypatch):
    """Tried: open a message twice (parsed once), with images shown (rendered anew), after its MIME was
    replaced (the new body, not the cached one), and open_link against the cached render's links."""
    mid = put(store, "remote-images")
    parses: list[int] = []
    real = store.parsed
    monkeypatch.setattr(store, "parsed", lambda i: parses.append(i) or real(i))
    first = bridge.message(mid)
    assert bridge.message(mid) == first and parses == [mid]
    shown = bridge.message(mid, True)
    assert shown["srcdoc"] != first["srcdoc"] and shown["blocked_images"] == 0 and len(parses) == 2
    assert bridge.open_link(mid, first["links"][0]) == {"opened": first["links"][0]} and len(parses) == 2
    other = sample("plain")
    assert store.put_message("inbox", "p-remote-images", other) == mid
    replaced = bridge.message(mid)
    assert replaced["srcdoc"] != first["srcdoc"] and len(parses) == 3
    assert bridge.message(mid)["srcdoc"] == replaced["srcdoc"] and len(parses) == 3  # cached again


def test_prefetch_renders_ahead_and_returns_no_content(store, bridge, monkeypatch):
    """Tried: prefetch an HTML message (no content comes back), then open it (not parsed again); a
    missing id and a bad theme flag come back as clear errors."""
    mid = put(store, "remote-images")
    parses: list[int] = []
    real = store.parsed
    monkeypatch.setattr(store, "parsed", lambda i: parses.append(i) or real(i))
    assert bridge.prefetch(mid, True) == {"cached": mid}
    assert bridge.message(mid, False, True)["srcdoc"] and parses == [mid]
    assert bridge.message(mid, False, False)["srcdoc"] and parses == [mid, mid]  # other theme: rendered anew
    assert bridge.prefetch(mid + 99)["kind"] == "MessageBad"
    assert bridge.prefetch(mid, "yes")["kind"] == "BadArgument"


def test_send_refuses_line_breaks_in_headers(store, bridge):
    """Tried: a subject and an address carrying CR/LF (a header injection) from the window: MessageBad from
    the one door (compose + engine.queue), nothing queued, the outbox worker not woken."""
    for draft in ({"kind": "new", "to": "a@example.com", "subject": "x\r\nBcc: e@evil.test", "text": "y"},
                  {"kind": "new", "to": "a@example.com\nBcc: e@evil.test", "subject": "x", "text": "y"}):
        out = bridge.send(draft)
        assert out["kind"] == "MessageBad", out
    assert bridge.outbox() == [] and bridge._commands.empty()


@corpus.needs_corpus
def test_real_third_party_mail_through_the_bridge(store, bridge):
    """Tried: the real corpus messages the generated samples stand in for (a spam mail with remote images,
    a cid: image, a message with attachments); blocked images, data: URIs, attachments listed."""
    mime_dir = corpus.path("mime-public")

    def real(name: str) -> int:
        return store.put_message("inbox", "real-" + name, (mime_dir / name).read_bytes())

    spam = bridge.message(real("spamscope__mail_test_8.eml"))
    assert spam["blocked_images"] > 0 and 'src="http' not in spam["srcdoc"].lower() and spam["links"]
    cid = bridge.message(real("dovecot-thirdparty__019.eml"))
    assert "cid:" not in cid["srcdoc"] and "data:image/" in cid["srcdoc"]
    assert bridge.message(real("hunnysoft__m1005.txt.eml"))["attachments"]
