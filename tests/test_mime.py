"""sync.mime on torture cases built here, and outgoing mail: build(), reply_fields(), forward_fields()."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta, timezone
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync import mime
from sync.errors import MessageBad
from sync.model import Address

CRLF = b"\r\n"


def msg(*headers: str, body: bytes = b"body\r\n", raw_headers: bytes = b"") -> bytes:
    head = CRLF.join(h.encode() for h in headers)
    return head + CRLF + raw_headers + CRLF + body


# ------------------------------------------------------------------------------------------ torture


def test_encoded_words_in_many_charsets() -> None:
    """Tried: RFC 2047 B and Q words in UTF-8, ISO-8859-1, KOI8-R, ISO-2022-JP, GB2312 and
    ks_c_5601-1987 (an alias Python spells differently), split across adjacent words."""
    cases = {
        "=?utf-8?B?" + base64.b64encode("Grüße 🎉".encode()).decode() + "?=": "Grüße 🎉",
        "=?iso-8859-1?Q?caf=E9_cr=E8me?=": "café crème",
        "=?koi8-r?B?" + base64.b64encode("привет".encode("koi8-r")).decode() + "?=": "привет",
        "=?iso-2022-jp?B?" + base64.b64encode("日本語".encode("iso-2022-jp")).decode() + "?=": "日本語",
        "=?gb2312?B?" + base64.b64encode("中文".encode("gb2312")).decode() + "?=": "中文",
        "=?ks_c_5601-1987?B?" + base64.b64encode("한국어".encode("cp949")).decode() + "?=": "한국어",
        "=?utf-8?Q?a?= =?utf-8?Q?b?=": "ab",
    }
    for encoded, expected in cases.items():
        parsed = mime.parse(msg("From: a@example.com", f"Subject: {encoded}"))
        assert parsed.summary.subject == expected, encoded


def test_unknown_charset_falls_back() -> None:
    """Tried: an encoded word and a body in a charset Python does not know; both decode (UTF-8
    fallback), and the body's fallback is noted as a problem."""
    raw = msg(
        "From: a@example.com",
        "Subject: =?x-no-such-charset?Q?caf=C3=A9?=",
        "Content-Type: text/plain; charset=x-no-such-charset",
        body="naïve body".encode() + CRLF,
    )
    parsed = mime.parse(raw)
    assert parsed.summary.subject == "café"
    assert parsed.plain is not None and "naïve body" in parsed.plain
    assert any("x-no-such-charset" in p for p in parsed.summary.problems)


def test_wrong_declared_charset_falls_back() -> None:
    """Tried: a body declared UTF-8 that is really Windows-1252; it decodes and says so."""
    raw = msg(
        "From: a@example.com",
        "Subject: x",
        "Content-Type: text/plain; charset=utf-8",
        body="Grüße".encode("cp1252") + CRLF,
    )
    parsed = mime.parse(raw)
    assert parsed.plain is not None and "Grüße" in parsed.plain
    assert any("utf-8" in p for p in parsed.summary.problems)


@pytest.mark.parametrize("encoding", ["utf-8", "cp1252"])
def test_raw_eight_bit_headers(encoding: str) -> None:
    """Tried: Subject and From display name as raw 8-bit bytes (UTF-8, then Windows-1252)."""
    raw = (
        "Subject: Grüße aus Köln".encode(encoding)
        + CRLF
        + "From: Jörg Müller <jm@example.de>".encode(encoding)
        + CRLF
        + b"To: you@example.com"
        + CRLF
        + CRLF
        + b"hi"
        + CRLF
    )
    s = mime.parse(raw).summary
    assert s.subject == "Grüße aus Köln"
    assert s.sender == Address("Jörg Müller", "jm@example.de")
    assert any("8-bit" in p for p in s.problems)


def test_eight_bit_bytes_inside_an_encoded_word() -> None:
    """Tried: a raw Latin-1 byte inside a Q encoded word (seen in the wild); the word's charset wins."""
    raw = b"From: a@example.com\r\nSubject: =?iso-8859-1?Q?Fr\xf6sche?=\r\n\r\nx\r\n"
    assert mime.parse(raw).summary.subject == "Frösche"


def test_nul_bytes() -> None:
    """Tried: NUL bytes in a header and in the body; they are dropped for display and noted."""
    raw = b"From: a@example.com\r\nSubject: a\x00b\r\n\r\nbo\x00dy\r\n"
    parsed = mime.parse(raw)
    assert parsed.summary.subject == "ab"
    assert parsed.plain is not None and "body" in parsed.plain
    assert parsed.raw == raw
    assert any("NUL" in p for p in parsed.summary.problems)


def test_bare_cr_line_ends() -> None:
    """Tried: a message whose lines end in bare CR (old Mac); headers and body still split right."""
    parsed = mime.parse(b"From: a@example.com\rSubject: bare cr\rTo: d@example.org\r\rline1\rline2\r")
    s = parsed.summary
    assert (s.subject, s.sender, s.to) == (
        "bare cr",
        Address("", "a@example.com"),
        (Address("", "d@example.org"),),
    )
    assert parsed.plain == "line1\nline2\n"


def test_missing_boundary_parameter_is_recovered() -> None:
    """Tried: multipart/mixed without a boundary parameter; the boundary is guessed from the body."""
    raw = msg(
        "From: a@example.com",
        "Subject: no boundary",
        "Content-Type: multipart/mixed",
        body=b"--xyz\r\nContent-Type: text/plain\r\n\r\nhello there\r\n--xyz\r\n"
        b"Content-Type: application/pdf\r\nContent-Disposition: attachment; filename=a.pdf\r\n\r\n"
        b"%PDF\r\n--xyz--\r\n",
    )
    parsed = mime.parse(raw)
    assert parsed.plain == "hello there"
    assert [a.filename for a in parsed.summary.attachments] == ["a.pdf"]
    assert any("boundary" in p for p in parsed.summary.problems)


def test_wrong_boundary_without_any_parts_shows_text() -> None:
    """Tried: a multipart whose declared boundary never occurs and whose body has no `--` line."""
    raw = msg(
        "From: a@example.com",
        "Subject: x",
        'Content-Type: multipart/mixed; boundary="nope"',
        body=b"just some words\r\n",
    )
    parsed = mime.parse(raw)
    assert parsed.summary.parse_ok
    assert parsed.plain is not None and "just some words" in parsed.plain
    assert parsed.summary.attachments == ()


def test_truncated_multipart() -> None:
    """Tried: a multipart cut off in the middle of a base64 attachment (no closing boundary)."""
    raw = msg(
        "From: a@example.com",
        "Subject: cut",
        'Content-Type: multipart/mixed; boundary="b"',
        body=b"--b\r\nContent-Type: text/plain\r\n\r\nbefore the cut\r\n--b\r\n"
        b"Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n"
        b"Content-Disposition: attachment; filename=x.png\r\n\r\niVBORw0KGgoAAAANSUhE",
    )
    parsed = mime.parse(raw)
    assert parsed.plain is not None and "before the cut" in parsed.plain
    assert [a.filename for a in parsed.summary.attachments] == ["x.png"]
    assert (parsed.attachment(0) or b"").startswith(b"\x89PNG")


def test_one_megabyte_header() -> None:
    """Tried: a 1 MB Subject, a 1 MB unknown header and a 700 kB To; later headers still count, the
    values are capped and the caps are noted."""
    raw = (
        b"From: a@example.com\r\nSubject: "
        + b"word " * 200_000
        + b"\r\n"
        + b"X-Big: "
        + b"a" * 1_000_000
        + b"\r\n"
        + b"To: "
        + b"x@example.com, " * 50_000
        + b"\r\n"
        + b"Message-ID: <after@example.com>\r\n\r\nbody\r\n"
    )
    parsed = mime.parse(raw)
    s = parsed.summary
    assert s.parse_ok and s.message_id == "<after@example.com>"
    assert s.subject.startswith("word word") and len(s.subject) <= mime.HEADER_CAP
    assert s.to and all(a.email == "x@example.com" for a in s.to)
    assert any("Subject" in p and "characters" in p for p in s.problems)
    assert parsed.plain == "body\n"


def test_rfc2231_filenames() -> None:
    """Tried: RFC 2231 filename* with a charset, and one split into continuations, and an RFC 2047
    encoded name= (what Outlook sends)."""
    raw = msg(
        "From: a@example.com",
        "Subject: files",
        'Content-Type: multipart/mixed; boundary="b"',
        body=b"--b\r\nContent-Type: text/plain\r\n\r\nsee files\r\n"
        b"--b\r\nContent-Type: application/pdf\r\n"
        b"Content-Disposition: attachment; filename*=UTF-8''%E2%82%AC%20rates.pdf\r\n\r\n%PDF-1\r\n"
        b"--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment;\r\n"
        b" filename*0*=iso-8859-1''Gr%FC%DFe%20;\r\n filename*1*=aus%20K%F6ln.pdf\r\n\r\n%PDF-2\r\n"
        b'--b\r\nContent-Type: text/csv; name="=?utf-8?Q?=C3=BCbersicht=2Ecsv?="\r\n'
        b"Content-Disposition: attachment\r\n\r\na,b\r\n--b--\r\n",
    )
    parsed = mime.parse(raw)
    assert [a.filename for a in parsed.summary.attachments] == [
        "€ rates.pdf",
        "Grüße aus Köln.pdf",
        "übersicht.csv",
    ]
    assert parsed.attachment(0) == b"%PDF-1"
    assert "a,b" in parsed.text  # text attachments are searchable


def test_html_only_message_and_search_text() -> None:
    """Tried: an HTML-only body with script, style and entities; html is kept as is (the UI
    sanitizes), text is reduced: no tags, no script/style content, entities decoded."""
    body = (
        b"<html><head><style>p{color:red}</style><script>alert('x')</script></head>"
        b"<body><p>Caf&eacute; &amp; cr&egrave;me</p><div>second<br>line</div></body></html>"
    )
    raw = msg("From: a@example.com", "Subject: html", "Content-Type: text/html; charset=utf-8", body=body)
    parsed = mime.parse(raw)
    assert parsed.html is not None and "<script>" in parsed.html
    assert parsed.plain is None
    assert "Café & crème" in parsed.text and "second\nline" in parsed.text
    assert "alert" not in parsed.text and "color" not in parsed.text
    assert "html" not in parsed.text  # the subject is not part of the body text


def test_alternative_and_inline_cid_image() -> None:
    """Tried: multipart/related with an alternative (plain + HTML) and a cid: image; the image is an
    inline part (not counted as an attachment) reachable through inline()."""
    m = EmailMessage()
    m["From"] = "a@example.com"
    m["Subject"] = "pic"
    m.set_content("plain version")
    m.add_alternative('<p>html version <img src="cid:img1@x"></p>', subtype="html")
    html_part: Any = m.get_payload()[1]  # type: ignore[index]
    html_part.add_related(b"\x89PNGdata", maintype="image", subtype="png", cid="<img1@x>")
    parsed = mime.parse(m.as_bytes())
    s = parsed.summary
    assert parsed.plain is not None and "plain version" in parsed.plain
    assert parsed.html is not None and "html version" in parsed.html
    assert not s.has_attachments
    assert [(a.content_type, a.inline, a.content_id) for a in s.attachments] == [
        ("image/png", True, "<img1@x>")
    ]
    assert parsed.inline("cid:img1@x") == ("image/png", b"\x89PNGdata")
    assert parsed.inline("<img1@x>") == ("image/png", b"\x89PNGdata")
    assert parsed.inline("nope") is None


def test_attached_message() -> None:
    """Tried: a message/rfc822 attachment; listed as "<subject>.eml", its bytes parse back, and its
    text is part of the outer message's search text."""
    inner = EmailMessage()
    inner["From"] = "b@example.com"
    inner["Subject"] = "Inner one"
    inner.set_content("inner body")
    outer = EmailMessage()
    outer["From"] = "a@example.com"
    outer["Subject"] = "Outer"
    outer.set_content("see attached")
    outer.add_attachment(inner)
    parsed = mime.parse(outer.as_bytes())
    assert [a.filename for a in parsed.summary.attachments] == ["Inner one.eml"]
    assert "inner body" in parsed.text  # an attached message's text is searchable
    again = mime.parse(parsed.attachment(0) or b"")
    assert again.summary.subject == "Inner one" and again.plain is not None and "inner body" in again.plain


def test_calendar_invite() -> None:
    """Tried: an invitation (alternative: text + text/calendar METHOD:REQUEST); has_calendar is set
    and the .ics is offered as an attachment."""
    ics = "\r\n".join(
        [
            "BEGIN:VCALENDAR",
            "METHOD:REQUEST",
            "BEGIN:VEVENT",
            "SUMMARY:Planning",
            "END:VEVENT",
            "END:VCALENDAR",
            "",
        ]
    )
    m = EmailMessage()
    m["From"] = "a@example.com"
    m["Subject"] = "Invitation: Planning"
    m.set_content("You are invited")
    m.add_alternative(ics, subtype="calendar", params={"method": "REQUEST"})
    parsed = mime.parse(m.as_bytes())
    assert parsed.summary.has_calendar
    assert parsed.summary.attachments[0].content_type == "text/calendar"
    assert b"SUMMARY:Planning" in (parsed.attachment(0) or b"")


def _smime_material() -> tuple[object, object]:
    """An RSA key and a self-signed e-mail certificate made here (no corpus needed)."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.EMAIL_ADDRESS, "smime@example.com")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30)).sign(key, hashes.SHA256()))
    return key, cert


def test_smime_signed_and_encrypted_made_here() -> None:
    """Tried: real S/MIME made with cryptography and a key made here: a detached signature
    (multipart/signed) and an enveloped message (application/pkcs7-mime); shown as such."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

    key, cert = _smime_material()
    content = b"Content-Type: text/plain\r\n\r\nsigned words\r\n"
    signed = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(content)
        .add_signer(cert, key, hashes.SHA256())  # type: ignore[arg-type]
        .sign(Encoding.SMIME, [pkcs7.PKCS7Options.DetachedSignature])
    )
    parsed = mime.parse(b"From: a@example.com\r\nSubject: signed\r\n" + signed)
    assert parsed.summary.is_signed and not parsed.summary.is_encrypted
    assert parsed.plain is not None and "signed words" in parsed.plain
    assert parsed.summary.attachments == ()  # the .p7s is not a user attachment

    enveloped = pkcs7.PKCS7EnvelopeBuilder().set_data(content).add_recipient(cert).encrypt(Encoding.SMIME, [])  # type: ignore[arg-type]
    parsed = mime.parse(b"From: a@example.com\r\nSubject: secret\r\n" + enveloped)
    assert parsed.summary.is_encrypted
    assert "signed words" not in parsed.text
    assert [a.content_type for a in parsed.summary.attachments] == ["application/pkcs7-mime"]
    inner = pkcs7.pkcs7_decrypt_der(parsed.attachment(0) or b"", cert, key, [])  # type: ignore[arg-type]
    assert b"signed words" in inner


def test_pgp_mime_and_inline() -> None:
    """Tried: PGP/MIME encrypted (RFC 3156), PGP/MIME signed, and inline armored PGP text."""
    armor = b"-----BEGIN PGP MESSAGE-----\r\n\r\nhQEMA0xyz\r\n=abcd\r\n-----END PGP MESSAGE-----\r\n"
    encrypted = msg(
        "From: a@example.com",
        "Subject: pgp",
        'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"; boundary="b"',
        body=b"--b\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n"
        b'--b\r\nContent-Type: application/octet-stream; name="encrypted.asc"\r\n\r\n' + armor + b"--b--\r\n",
    )
    s = mime.parse(encrypted).summary
    assert s.is_encrypted and not s.is_signed
    signed = msg(
        "From: a@example.com",
        "Subject: pgp signed",
        'Content-Type: multipart/signed; protocol="application/pgp-signature"; boundary="b"',
        body=b"--b\r\nContent-Type: text/plain\r\n\r\nclear words\r\n"
        b"--b\r\nContent-Type: application/pgp-signature\r\n\r\n"
        b"-----BEGIN PGP SIGNATURE-----\r\n\r\niQEz\r\n-----END PGP SIGNATURE-----\r\n--b--\r\n",
    )
    parsed = mime.parse(signed)
    assert parsed.summary.is_signed and parsed.summary.attachments == ()
    assert parsed.plain is not None and "clear words" in parsed.plain
    inline = mime.parse(msg("From: a@example.com", "Subject: inline", body=armor))
    assert inline.summary.is_encrypted and "hQEMA0xyz" not in inline.text
    clearsigned = mime.parse(
        msg(
            "From: a@example.com",
            "Subject: cs",
            body=(
                b"-----BEGIN PGP SIGNED MESSAGE-----\r\nHash: SHA256\r\n\r\nhello world\r\n"
                b"-----BEGIN PGP SIGNATURE-----\r\n\r\niQEz\r\n-----END PGP SIGNATURE-----\r\n"
            ),
        )
    )
    assert (
        clearsigned.summary.is_signed and "hello world" in clearsigned.text and "iQEz" not in clearsigned.text
    )


def test_dates() -> None:
    """Tried: a zoned Date (converted to UTC), -0000 (unknown zone: taken as UTC), garbage (None,
    noted), and none at all (None)."""

    def date_of(value: str | None) -> mime.Parsed:
        headers = ["From: a@example.com", "Subject: d"] + ([f"Date: {value}"] if value else [])
        return mime.parse(msg(*headers))

    assert date_of("Tue, 1 Jul 2025 10:00:00 +0200").summary.date == datetime(2025, 7, 1, 8, tzinfo=UTC)
    assert date_of("Tue, 1 Jul 2025 10:00:00 -0000").summary.date == datetime(2025, 7, 1, 10, tzinfo=UTC)
    bad = date_of("the day after tomorrow")
    assert bad.summary.date is None and any("Date" in p for p in bad.summary.problems)
    assert date_of(None).summary.date is None


def test_threading_headers() -> None:
    """Tried: Message-ID, In-Reply-To and a folded References with duplicates and junk between ids."""
    s = mime.parse(
        msg(
            "From: a@example.com",
            "Subject: t",
            "Message-ID:  <m3@example.com> ",
            "In-Reply-To: <m2@example.com> (reply)",
            "References: <m1@example.com>\r\n  junk <m2@example.com> <m1@example.com>",
        )
    ).summary
    assert s.message_id == "<m3@example.com>"
    assert s.in_reply_to == "<m2@example.com>"
    assert s.references == ("<m1@example.com>", "<m2@example.com>")


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\r\n\r\n",
        b"just a line of text with no headers\r\n",
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 64,
    ],
    ids=["empty", "blank", "no-headers", "outlook-msg"],
)
def test_unparseable_is_kept_raw(raw: bytes) -> None:
    """Tried: empty input, only blank lines, text without headers, an Outlook .msg (OLE) file;
    parse_ok is False, the raw bytes are kept and shown as text, a problem says why."""
    parsed = mime.parse(raw)
    assert not parsed.summary.parse_ok
    assert parsed.raw == raw and parsed.summary.size == len(raw)
    assert parsed.plain is not None
    assert parsed.summary.problems


def test_deep_nesting() -> None:
    """Tried: 200 nested multiparts (a parser-bomb shape); no crash, deep levels skipped and noted."""
    body = b""
    for i in range(200):
        body += f'--b{i}\r\nContent-Type: multipart/mixed; boundary="b{i + 1}"\r\n\r\n'.encode()
    body += b"--b200\r\nContent-Type: text/plain\r\n\r\ndeep\r\n--b200--\r\n"
    parsed = mime.parse(
        msg("From: a@example.com", "Subject: deep", 'Content-Type: multipart/mixed; boundary="b0"', body=body)
    )
    assert parsed.summary.parse_ok
    assert any("nesting" in p for p in parsed.summary.problems)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000))
def test_never_raises_on_random_bytes(raw: bytes) -> None:
    """Tried: arbitrary bytes (hypothesis); parse() returns a Parsed without its last line of defence
    (parse() itself catches everything, so "never raises" alone could not fail: the parser must cope)."""
    parsed = mime.parse(raw)
    assert parsed.raw == raw and parsed.summary.size == len(raw)
    assert not _rescued(parsed), parsed.summary.problems


def _rescued(parsed: mime.Parsed) -> bool:
    """True when parse()'s catch-all had to turn an exception of the parser into a raw view."""
    return any(p.startswith("could not parse the message (") for p in parsed.summary.problems)


_SEED = msg(
    "From: =?utf-8?Q?J=C3=B6rg?= <j@example.com>",
    "To: a@example.com, b@example.com",
    "Subject: =?utf-8?B?w7w=?=",
    "Date: Tue, 1 Jul 2025 10:00:00 +0200",
    'Content-Type: multipart/mixed; boundary="b"',
    body=b"--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>hi</p>\r\n--b\r\n"
    b"Content-Type: application/ms-tnef\r\nContent-Transfer-Encoding: base64\r\n\r\neJ8+IgAA\r\n"
    b"--b\r\nContent-Type: application/pdf; name*=utf-8''%C3%A4.pdf\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--b--\r\n",
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(_SEED) - 1), st.binary(min_size=0, max_size=8)), max_size=6))
def test_never_raises_on_mutated_messages(edits: list[tuple[int, bytes]]) -> None:
    """Tried: a rich message with random byte splices (hypothesis); parse() never raises and every
    listed attachment can be fetched."""
    raw = bytearray(_SEED)
    for pos, chunk in edits:
        raw[pos : pos + len(chunk)] = chunk
    parsed = mime.parse(bytes(raw))
    assert not _rescued(parsed), parsed.summary.problems
    for info in parsed.summary.attachments:
        assert parsed.attachment(info.index) is not None


def test_the_catch_all_is_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tried: a parser that raises; parse() still returns the raw view, and _rescued() (what the two
    property tests above assert against) sees it, so they can fail."""
    def boom(self: object) -> mime.Parsed:
        raise RuntimeError("bug")

    monkeypatch.setattr(mime._Parser, "run", boom)
    parsed = mime.parse(b"Subject: x\r\n\r\nbody")
    assert _rescued(parsed) and not parsed.summary.parse_ok and parsed.raw == b"Subject: x\r\n\r\nbody"


# ------------------------------------------------------------------------------------------ build


def _headers(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0]


def test_build_hides_bcc_and_lists_all_recipients() -> None:
    """Tried: To, Cc and Bcc; the raw MIME has no Bcc header and no trace of the Bcc address, while
    recipients holds all three bare addresses (repeats dropped)."""
    out = mime.build(
        sender="Me <me@example.com>",
        to=["Ann <ann@example.com>"],
        cc=["cc@example.com", "ann@example.com"],
        bcc=["Secret Person <secret@example.org>"],
        subject="hello",
        text="body",
    )
    assert b"bcc" not in out.raw.lower()
    assert b"secret" not in out.raw.lower()
    assert out.recipients == ("ann@example.com", "cc@example.com", "secret@example.org")
    assert out.sender == "me@example.com"


def test_build_round_trips_through_parse() -> None:
    """Tried: a message with non-ASCII subject and names, HTML, two attachments and threading
    headers; parse() gives back every field, and the header block is pure ASCII with CRLF."""
    when = datetime(2026, 3, 1, 12, 30, tzinfo=timezone(timedelta(hours=1)))
    files = [
        ("Übersicht €.pdf", "application/pdf", b"%PDF-1.4 \x00\xff" * 100),
        ("notes.txt", "text/plain", b"n\r\n"),
    ]
    out = mime.build(
        sender="Jörg Müller <jm@example.de>",
        to=['"Doe, John" <john@example.com>'],
        cc=["Zoë <zoe@example.com>"],
        subject="Grüße – 日本語" + " long" * 30,
        text="Hallo Welt\nzweite Zeile",
        html="<p>Hallo <b>Welt</b></p>",
        attachments=files,
        in_reply_to="<parent@example.com>",
        references=["<root@example.com>", "<parent@example.com>"],
        message_id="<fixed-id@example.de>",
        date=when,
    )
    assert out.message_id == "<fixed-id@example.de>" and out.date is when
    head = _headers(out.raw)
    assert all(b < 128 for b in head), "headers must be 7-bit (RFC 2047 encoded)"
    assert re.search(rb"[^\r]\n", out.raw) is None, "every line ends in CRLF"
    assert max(len(line) for line in out.raw.split(b"\r\n")) <= 998
    p = mime.parse(out.raw)
    s = p.summary
    assert s.subject == out.subject
    assert s.sender == Address("Jörg Müller", "jm@example.de")
    assert s.to == (Address("Doe, John", "john@example.com"),) and s.cc == (
        Address("Zoë", "zoe@example.com"),
    )
    assert s.message_id == "<fixed-id@example.de>" and s.date == when
    assert s.in_reply_to == "<parent@example.com>" and s.references == (
        "<root@example.com>",
        "<parent@example.com>",
    )
    assert p.plain is not None and p.plain.strip() == "Hallo Welt\nzweite Zeile"
    assert p.html is not None and "<b>Welt</b>" in p.html
    assert [(a.filename, a.content_type) for a in s.attachments] == [(n, t) for n, t, _ in files]
    assert [p.attachment(a.index) for a in s.attachments] == [d for _, _, d in files]
    stdlib = BytesParser(policy=policy.default).parsebytes(out.raw)
    assert str(stdlib["subject"]) == out.subject


def test_build_stamps_identity_once() -> None:
    """Tried: no message_id/date given; a fresh <uuid@sender-domain> and an aware UTC now are
    stamped, appear in the raw MIME, and a second build gets a different id."""
    before = datetime.now(UTC)
    out = mime.build(sender="me@example.com", to=["a@example.com"], subject="s", text="t")
    assert re.fullmatch(r"<[0-9a-f]{32}@example\.com>", out.message_id)
    assert out.date.tzinfo is not None and before - timedelta(seconds=1) <= out.date
    assert f"Message-ID: {out.message_id}".encode() in out.raw
    assert mime.parse(out.raw).summary.date == out.date.replace(microsecond=0)
    assert (
        mime.build(sender="me@example.com", to=["a@example.com"], subject="s", text="t").message_id
        != out.message_id
    )


def test_make_message_id() -> None:
    """Tried: a normal domain, then domains that would make a broken id."""
    assert re.fullmatch(r"<[0-9a-f]{32}@mail\.example\.com>", mime.make_message_id("mail.example.com"))
    for bad in ["", "a b", "x@y", "<x>"]:
        with pytest.raises(MessageBad):
            mime.make_message_id(bad)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"to": ["not an address"]},
        {"to": ["a@example.com, b@example.com"]},
        {"to": "a@example.com"},
        {"to": []},
        {"sender": "nobody"},
        {"subject": "line\r\nBcc: evil@example.com"},
        {"date": datetime(2026, 1, 1)},
        {"message_id": "no-brackets@example.com"},
        {"in_reply_to": "<a b>"},
        {"attachments": [("x.bin", "nonsense", b"1")]},
    ],
    ids=[
        "garbage-to",
        "two-in-one",
        "str-not-list",
        "no-recipients",
        "bad-sender",
        "header-injection",
        "naive-date",
        "bad-message-id",
        "bad-in-reply-to",
        "bad-content-type",
    ],
)
def test_build_rejects_bad_input(kwargs: dict[str, object]) -> None:
    """Tried: each kind of bad input; build() raises MessageBad with a message naming the problem."""
    args: dict[str, object] = {
        "sender": "me@example.com",
        "to": ["a@example.com"],
        "subject": "s",
        "text": "t",
    }
    args.update(kwargs)
    with pytest.raises(MessageBad) as info:
        mime.build(**args)  # type: ignore[arg-type]
    assert str(info.value)


# ------------------------------------------------------------------------------------------ reply/forward


def _original() -> mime.Parsed:
    out = mime.build(
        sender="Ann <ann@example.com>",
        to=["Me <me@example.com>", "Bob <bob@example.com>"],
        cc=['"Carol, C." <carol@example.com>', "ann@example.com"],
        subject="Plan",
        text="line one\n\nline three",
        attachments=[("plan.pdf", "application/pdf", b"%PDF")],
        references=["<root@example.com>"],
        message_id="<orig@example.com>",
        date=datetime(2026, 2, 3, 4, 5, tzinfo=UTC),
    )
    return mime.parse(out.raw)


def test_reply_fields() -> None:
    """Tried: reply and reply-all to a parsed message; recipients exclude me and repeats, the subject
    gets one "Re:", threading headers chain, the body is quoted; the fields feed build() as is."""
    original = _original()
    reply = mime.reply_fields(original, reply_all=False, me="me@example.com")
    assert reply["to"] == ["Ann <ann@example.com>"] and reply["cc"] == []
    assert reply["subject"] == "Re: Plan"
    assert reply["in_reply_to"] == "<orig@example.com>"
    assert reply["references"] == ["<root@example.com>", "<orig@example.com>"]
    assert "> line one\n>\n> line three" in reply["text"] and "Ann <ann@example.com> wrote" in reply["text"]
    everyone = mime.reply_fields(original, reply_all=True, me="Me <ME@example.com>")
    assert everyone["to"] == ["Ann <ann@example.com>"]
    assert everyone["cc"] == ["Bob <bob@example.com>", '"Carol, C." <carol@example.com>']
    out = mime.build(sender="me@example.com", **everyone)
    s = mime.parse(out.raw).summary
    assert s.in_reply_to == "<orig@example.com>" and s.subject == "Re: Plan"
    assert [a.email for a in s.cc] == ["bob@example.com", "carol@example.com"]
    again = mime.reply_fields(mime.parse(out.raw), reply_all=False, me="ann@example.com")
    assert again["subject"] == "Re: Plan"  # not "Re: Re: Plan"
    assert again["references"][-1] == out.message_id


def test_reply_honours_reply_to_and_own_messages() -> None:
    """Tried: a list message with Reply-To (answer goes there), and replying to my own sent message
    (answer goes to its recipients, not to me)."""
    listmsg = mime.parse(
        msg(
            "From: Ann <ann@example.com>",
            "Reply-To: list@example.com",
            "To: list@example.com",
            "Subject: x",
            "Message-ID: <l@example.com>",
        )
    )
    assert mime.reply_fields(listmsg, reply_all=False, me="me@example.com")["to"] == ["list@example.com"]
    mine = mime.parse(msg("From: me@example.com", "To: Bob <bob@example.com>", "Subject: mine"))
    assert mime.reply_fields(mine, reply_all=False, me="me@example.com")["to"] == ["Bob <bob@example.com>"]


def test_forward_fields() -> None:
    """Tried: forwarding a message with an attachment; subject gets "Fw:", the original headers and
    body are quoted, the attachment bytes are carried, and build() accepts the fields."""
    fwd = mime.forward_fields(_original())
    assert fwd["subject"] == "Fw: Plan"
    assert "From: Ann <ann@example.com>" in fwd["text"] and "line three" in fwd["text"]
    assert fwd["attachments"] == [("plan.pdf", "application/pdf", b"%PDF")]
    out = mime.build(sender="me@example.com", to=["x@example.com"], **fwd)
    assert mime.parse(out.raw).attachment(0) == b"%PDF"


def test_attachment_names_cannot_escape_a_folder() -> None:
    """Tried: an attachment named with a path and control characters; the name keeps no separators
    or control characters (a UI saving it cannot write outside the chosen folder)."""
    raw = msg(
        "From: a@example.com",
        "Subject: x",
        'Content-Type: multipart/mixed; boundary="b"',
        body=b"--b\r\nContent-Type: application/pdf\r\n"
        b'Content-Disposition: attachment; filename="../../etc/pa\x07sswd.pdf"\r\n\r\nx\r\n--b--\r\n',
    )
    (info,) = mime.parse(raw).summary.attachments
    assert info.filename == "_.._etc_passwd.pdf"  # sync.filenames: no leading dots (no hidden file)


_HOSTILE = ["=?utf-8?q?", "=?utf-8?b?", "?=", "=0D=0A", "Cc: spy@evil.example", "QQ==", "Reply-To:", " ",
            "  ", '"', "\\", "<", ">", ",", ";", ":", "@", "(", ")", "_", "é", "日", "😀", "\x00", "\x7f",
            "\t", "a" * 80]
_hostile_text = st.lists(st.sampled_from(_HOSTILE), max_size=10).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(subject=_hostile_text, name=_hostile_text, filename=_hostile_text)
def test_build_writes_exactly_the_given_text_or_refuses(subject: str, name: str, filename: str) -> None:
    """Tried (hypothesis): subjects, display names and file names made of encoded-word pieces, `=0D=0A`,
    header-like text, quotes, backslashes, controls and non-ASCII (CVE-2024-6923 and its cousins). build()
    either refuses with MessageBad, or writes MIME whose headers are only the ones it writes and whose
    subject, recipient and file name read back as given (a name needing encoding has its spaces
    collapsed, a file name its outer spaces stripped, as readers do)."""
    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
    try:
        out = mime.build(sender="a@contoso.test", to=[f'"{quoted}" <b@relay.test>'], subject=subject,
                         text="x", attachments=[(filename, "text/plain", b"x")])
    except MessageBad:
        return
    msg = BytesParser(policy=policy.default).parsebytes(out.raw)
    assert {k.lower() for k in msg} == {"from", "to", "subject", "date", "message-id", "mime-version",
                                        "content-type"}
    assert len(msg.keys()) == 7 and str(msg["Subject"]) == subject
    assert msg.get_body(("plain",)).get_content().rstrip() == "x"  # type: ignore[union-attr]
    [to] = msg["To"].addresses
    assert to.addr_spec == "b@relay.test" and out.recipients == ("b@relay.test",)
    assert to.display_name in (name, " ".join(name.split()))
    [part] = list(msg.iter_attachments())
    assert part.get_filename() == (filename.strip() or "attachment")
    assert {k.lower() for k in part} <= {"content-type", "content-transfer-encoding", "content-disposition",
                                         "mime-version"}


def test_parameters_cut_short_keep_the_rest_of_the_message() -> None:
    """Tried: Content-Type and Content-Disposition values whose last parameter is cut short (`charset*`,
    `x*`, `filename*` with no `=`): Python's parser raises IndexError on them while it parses (found by
    hypothesis splicing bytes). The message still parses, keeps its multipart boundary, its text and its
    attachment with the name from the parameters that were whole."""
    raw = (b"From: a@example.com\r\nTo: b@example.com\r\nSubject: cut\r\nMIME-Version: 1.0\r\n"
           b'Content-Type: multipart/mixed; boundary="b"; charset*\r\n\r\n'
           b"--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
           b"--b\r\nContent-Type: application/pdf; name*=utf-8''%C3%A4.pdf; x*\r\n"
           b"Content-Disposition: attachment; filename*\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           b"JVBERi0=\r\n--b--\r\n")
    with pytest.raises(IndexError):  # the stdlib's own parser, as Lifeboat used it before
        BytesParser(policy=policy.default).parsebytes(raw)
    parsed = mime.parse(raw)
    assert not _rescued(parsed) and parsed.text.strip() == "hello"
    [info] = parsed.summary.attachments
    assert (info.filename, info.content_type) == ("ä.pdf", "application/pdf")
    assert parsed.attachment(info.index) == b"%PDF-"
