"""sync.mime against real third-party material: the mime-public corpus, TNEF blobs, S/MIME samples.

The assets live outside the repo and are found through tests/corpus.py (LIFEBOAT_ASSETS, else
../shared/assets); they are read in place, never copied. Without them every test here skips with
corpus.REASON; the guard that they are really there when found is tests/test_corpus.py.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from datetime import UTC
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest

from sync import mime
from sync.model import Summary
from tests import corpus

ASSETS = corpus.ASSETS
CORPUS = corpus.files("mime-public")
TNEF = corpus.files("tnef-raw", "*.tnef")
KEYS = ASSETS / "smime-test-keys"

pytestmark = corpus.needs_corpus


@functools.cache
def _parsed(path: Path) -> mime.Parsed:
    """parse() of one corpus file, computed once per test session (the corpus is read-only)."""
    return mime.parse(path.read_bytes())


def _stdlib_header(raw: bytes, name: str) -> object | None:
    """What Python's email (policy=default) returns for a header, or None when it fails or is lossy."""
    try:
        value = BytesParser(policy=policy.default).parsebytes(raw)[name]
    except Exception:
        return None
    if value is None:
        return None
    text = str(value)
    if "\ufffd" in text or any("\udc80" <= ch <= "\udcff" for ch in text):
        return None  # stdlib could not decode it: not a success to compare against
    return value


@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
def test_every_public_message_yields_a_summary(path: Path) -> None:
    """Tried: parse() on each corpus message; it must return a Summary, keep the raw bytes, hand
    back every listed attachment with its stated size, and explain itself when it falls back to raw."""
    raw = path.read_bytes()
    parsed = _parsed(path)
    s = parsed.summary
    assert isinstance(s, Summary)
    assert parsed.raw == raw
    assert s.size == len(raw)
    assert isinstance(parsed.text, str) and len(parsed.text) <= mime.TEXT_CAP
    assert s.date is None or s.date.tzinfo is UTC
    assert s.message_id is None or (s.message_id.startswith("<") and s.message_id.endswith(">"))
    for i, info in enumerate(s.attachments):
        assert info.index == i
        data = parsed.attachment(i)
        assert data is not None and len(data) == info.size, info
        if info.inline and info.content_id:
            found = parsed.inline(info.content_id)
            assert found is not None and found[1] == data
    assert parsed.attachment(len(s.attachments)) is None
    if not s.parse_ok:
        assert s.problems, "a raw fallback must say why"
        assert parsed.plain is not None  # shown as raw text


def test_nearly_all_public_messages_parse_with_headers() -> None:
    """Tried: the whole corpus; raw fallback is for messages without any header (not for defects)."""
    not_ok = [p.name for p in CORPUS if not _parsed(p).summary.parse_ok]
    assert len(not_ok) <= 3, not_ok


def test_subjects_match_stdlib_where_stdlib_succeeds() -> None:
    """Tried: every corpus message whose Subject Python's email (policy=default) decodes without loss;
    our decoded subject must be the same string (modulo outer whitespace)."""
    compared = 0
    for path in CORPUS:
        raw = path.read_bytes()
        expected = _stdlib_header(raw, "subject")
        if expected is None:
            continue
        compared += 1
        assert _parsed(path).summary.subject == str(expected).strip(), path.name
    assert compared >= 150


def test_dates_and_senders_match_stdlib_where_stdlib_succeeds() -> None:
    """Tried: corpus messages where the stdlib gives an aware Date and a From with one address; ours
    must be the same instant (in UTC) and the same address."""
    dates = senders = 0
    for path in CORPUS:
        raw = path.read_bytes()
        s = _parsed(path).summary
        date = _stdlib_header(raw, "date")
        when = getattr(date, "datetime", None)
        if when is not None and when.tzinfo is not None:
            dates += 1
            assert s.date == when, path.name
        sender = _stdlib_header(raw, "from")
        addresses: list[Any] = list(getattr(sender, "addresses", ()))
        if len(addresses) == 1 and addresses[0].addr_spec and "@" in addresses[0].addr_spec:
            senders += 1
            assert s.sender is not None and s.sender.email == addresses[0].addr_spec, path.name
    assert dates >= 150 and senders >= 150


def test_eight_bit_headers_use_the_body_charset() -> None:
    """Tried: real Korean/Russian/Chinese mail with raw 8-bit Subject bytes (stdlib shows U+FFFD);
    we decode them with the body's declared charset."""
    expected = {
        "mailcore2-summary__1798-korean.eml": "주말특가",
        "mailcore2-summary__4850-russian.eml": "Рассылка",
        "spamassassin__nice_cjk_gb2312.1.eml": "全新原装进口",
    }
    for name, fragment in expected.items():
        subject = mime.parse((ASSETS / "mime-public" / name).read_bytes()).summary.subject
        assert fragment in subject, (name, subject)


def _wrap_tnef(blob: bytes) -> bytes:
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["From"] = "Outlook <outlook@example.com>"
    msg["To"] = "me@example.com"
    msg["Subject"] = "TNEF"
    msg.set_content("see attached")
    msg.add_attachment(blob, maintype="application", subtype="ms-tnef", filename="winmail.dat")
    return msg.as_bytes()


@pytest.mark.parametrize("path", TNEF, ids=[p.name for p in TNEF])
def test_tnef_contents_are_listed(path: Path) -> None:
    """Tried: each MimeKit TNEF blob sent as winmail.dat; the files inside must be listed under the
    names MimeKit expects (MimeKit lists the HTML body as "body.html"; we show it as the HTML body)."""
    expected = (path.parent / path.name.replace(".tnef", ".expected-attachments.list")).read_text()
    names = [line.strip() for line in expected.splitlines() if line.strip()]
    parsed = mime.parse(_wrap_tnef(path.read_bytes()))
    listed = [a.filename for a in parsed.summary.attachments]
    assert listed == [n for n in names if n != "body.html"]
    if "body.html" in names:
        assert parsed.html is not None and "<html" in parsed.html.lower()
    assert parsed.summary.has_attachments
    for info in parsed.summary.attachments:
        assert len(parsed.attachment(info.index) or b"") == info.size > 0


def test_tnef_in_a_real_message() -> None:
    """Tried: MimeKit's real Outlook message with a winmail.dat (Ukrainian, koi8-r body)."""
    parsed = mime.parse((ASSETS / "mime-public" / "mimekit__tnef_ukr.eml").read_bytes())
    assert parsed.summary.parse_ok
    assert "шостий" in parsed.text
    assert not any(a.filename == "winmail.dat" for a in parsed.summary.attachments)


def test_not_tnef_named_winmail_is_kept_as_is() -> None:
    """Tried: a PNG mislabelled as winmail.dat (zbateson m4006); it stays one attachment, with a note."""
    parsed = mime.parse((ASSETS / "mime-public" / "zbateson__m4006.txt.eml").read_bytes())
    assert [a.filename for a in parsed.summary.attachments] == ["winmail.dat"]
    assert (parsed.attachment(0) or b"").startswith(b"\x89PNG")
    assert any("TNEF" in p for p in parsed.summary.problems)


def test_smime_detached_signature_sample() -> None:
    """Tried: Thunderbird's S/MIME signed message; flagged signed, the signature blob not listed as a
    user attachment, the signed JPEG listed."""
    parsed = mime.parse((ASSETS / "mime-public" / "mimekit__smime_thunderbird-signed.txt.eml").read_bytes())
    s = parsed.summary
    assert s.is_signed and not s.is_encrypted
    assert [a.filename for a in s.attachments] == ["signed.jpg"]
    assert "signed by Thunderbird" in parsed.text


def test_smime_opaque_signed_sample_shows_its_content() -> None:
    """Tried: Outlook's opaque signed-data (smime.p7m, signed-data); the content inside is shown."""
    raw = (ASSETS / "mime-public" / "simplejavamail__SMIME_signed_and_clear_text_.eml").read_bytes()
    parsed = mime.parse(raw)
    s = parsed.summary
    assert s.is_signed and not s.is_encrypted
    assert parsed.html is not None and "Gasparini" in parsed.text
    assert [a.filename for a in s.attachments] == ["3 crucial benefits of Cloud computing.docx"]
    assert (parsed.attachment(0) or b"").startswith(b"PK")  # a real .docx (zip)


def test_smime_encrypted_sample_keeps_the_blob_intact() -> None:
    """Tried: an S/MIME enveloped message; flagged encrypted, the p7m offered as an attachment, and
    its bytes are exact: the public test key decrypts them to a message parse() can read."""
    raw = (ASSETS / "mime-public" / "simplejavamail__S_MIME_test_message_signed_encrypted.eml").read_bytes()
    parsed = mime.parse(raw)
    s = parsed.summary
    assert s.is_encrypted
    assert [a.filename for a in s.attachments] == ["smime.p7m"]
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to decrypt the BER-encoded sample (cryptography reads DER only)")
    inner = subprocess.run(
        [
            "openssl",
            "cms",
            "-decrypt",
            "-inform",
            "DER",
            "-inkey",
            str(KEYS / "smime_test_user.key"),
            "-passin",
            "pass:letmein",
        ],
        input=parsed.attachment(0),
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    opened = mime.parse(inner)
    assert opened.summary.is_signed
    assert opened.text.strip()


def test_damaged_corpus_messages_never_raise() -> None:
    """Tried: every corpus message cut short at a random point, and again with random bytes
    overwritten or a nasty fragment spliced in (fixed seed, so failures reproduce); parse()
    must not fall back to its last-resort handler and every listed attachment must be fetchable."""
    import random

    rng = random.Random(7)
    fragments = [
        b"\r",
        b"\n--",
        b"=?utf-8?B?",
        b"\x00",
        b"Content-Type: multipart/mixed\r\n",
        b';;;"',
        b"\xff\xfe",
    ]
    for path in CORPUS:
        raw = path.read_bytes()
        damaged = [raw[: rng.randrange(len(raw) + 1)]]
        flipped = bytearray(raw)
        for _ in range(10):
            flipped[rng.randrange(len(flipped))] = rng.randrange(256)
        at = rng.randrange(len(raw) + 1)
        damaged += [bytes(flipped), raw[:at] + rng.choice(fragments) + raw[at:]]
        for data in damaged:
            parsed = mime._Parser(data).run()  # the inner parser: no last-resort net under it
            for info in parsed.summary.attachments:
                assert parsed.attachment(info.index) is not None, path.name
