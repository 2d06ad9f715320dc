"""Mail the project generates itself (Python's email package), for tests that must run without the
third-party corpus (tests/corpus.py): each sample has one trait a test needs, named by its key."""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime

GIF = bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b")


def _head(subject: str, n: int, **extra: str) -> EmailMessage:
    m = EmailMessage()
    m["From"] = f"Sender {n} <sender{n}@example.net>"
    m["To"] = "Me Myself <me@example.org>"
    m["Cc"] = f"Colleague {n} <colleague{n}@example.net>"
    m["Subject"] = subject
    m["Date"] = format_datetime(datetime(2026, 10, n, 9, 30, tzinfo=UTC))
    m["Message-ID"] = f"<sample-{n}@example.net>"
    for k, v in extra.items():
        m[k.replace("_", "-")] = v
    return m


def plain() -> bytes:
    m = _head("Quarterly figures for review", 1)
    m.set_content("Hello,\n\nthe figures are attached to the next mail.\n")
    return m.as_bytes()


def remote_images() -> bytes:
    """HTML with remote images (a tracking pixel and a banner) and two links."""
    m = _head("Newsletter with pictures", 2)
    m.set_content("Newsletter (text part)\n")
    m.add_alternative(
        '<html><body><p>News</p><img src="http://tracker.example.net/p.gif" width="1">'
        '<img src="https://cdn.example.net/banner.png">'
        '<a href="https://news.example.net/read">read</a> <a href="https://news.example.net/unsubscribe">'
        "unsubscribe</a></body></html>", subtype="html")
    return m.as_bytes()


def other_links() -> bytes:
    """HTML with links of its own (another site), no images."""
    m = _head("Links elsewhere", 3)
    m.set_content("text\n")
    m.add_alternative('<p><a href="https://elsewhere.example.com/page">page</a></p>', subtype="html")
    return m.as_bytes()


def cid_image() -> bytes:
    """multipart/related: HTML showing an inline image by cid:."""
    m = _head("Logo inside", 4)
    m.set_content("see the logo\n")
    m.add_alternative('<p>Our logo: <img src="cid:logo@example.net"></p>', subtype="html")
    m.get_payload()[1].add_related(GIF, "image", "gif", cid="<logo@example.net>")
    return m.as_bytes()


def attachments() -> bytes:
    """A text body with two attachments (a PDF-ish blob and a CSV)."""
    m = _head("Contract renewal documents", 5)
    m.set_content("Please find the documents attached.\n")
    pdf = b"%PDF-1.4 sample\n" * 50
    m.add_attachment(pdf, maintype="application", subtype="pdf", filename="contract.pdf")
    m.add_attachment("a,b\n1,2\n", subtype="csv", filename="figures.csv")
    return m.as_bytes()


SAMPLES = {
    "plain": plain,
    "remote-images": remote_images,
    "other-links": other_links,
    "cid-image": cid_image,
    "attachments": attachments,
}


def sample(name: str) -> bytes:
    return SAMPLES[name]()
