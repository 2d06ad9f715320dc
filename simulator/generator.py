"""A seeded, realistic mailbox generator: threads, replies, attachments, HTML and plain mail, many charsets.

Main function: `populate(mailbox, n, seed=..., user=...)`. Invariants: the same seed and anchor give the
same messages (bytes and ids); about a tenth of the messages are real third-party MIME drawn unchanged
from `../shared/assets/mime-public` when that folder exists (skipped otherwise).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import random
import struct
import zlib
from email.header import Header
from email.mime.application import MIMEApplication
from email.mime.base import MIMEBase
from email.mime.image import MIMEImage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, formataddr
from pathlib import Path

from simulator.mailbox import Mailbox

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "assets" / "mime-public"

PEOPLE = [
    ("Megan Bowen", "megan.bowen@contoso.test"),
    ("Alex Wilber", "alex.wilber@contoso.test"),
    ("Lee Gu", "lee.gu@contoso.test"),
    ("Patti Fernandez", "patti.fernandez@contoso.test"),
    ("Jürgen Müller", "juergen.mueller@fabrikam.test"),
    ("Анна Смирнова", "anna.smirnova@example.ru"),
    ("山田 太郎", "taro.yamada@example.jp"),
    ("王 芳", "fang.wang@example.cn"),
    ("김 민준", "minjun.kim@example.kr"),
    ("Zofia Wójcik", "zofia.wojcik@example.pl"),
    ("Isabelle Côté", "isabelle.cote@example.fr"),
    ("Newsletter", "news@tailspintoys.test"),
]

# (charset, subject, body) in a language that the charset can encode
TEXTS = [
    (
        "utf-8",
        "Quarterly review ✅",
        "Hi all,\n\nThe quarterly review is done ✅. Slides attached.\n🚀 Next: planning.",
    ),
    ("us-ascii", "Budget for next year", "Hello,\n\nPlease send me your budget numbers by Friday.\n\nThanks"),
    ("iso-8859-1", "Grüße aus München", "Hallo,\n\nanbei die Unterlagen für das Café-Treffen. Schöne Grüße!"),
    (
        "windows-1252",
        "Réunion de l'équipe",
        "Bonjour,\n\nLa réunion est déplacée à jeudi – merci « d'avance ».",
    ),
    ("koi8-r", "Встреча перенесена", "Привет!\n\nВстреча перенесена на пятницу. Документы во вложении."),
    ("windows-1251", "Отчёт за квартал", "Добрый день,\n\nотчёт за квартал готов. Спасибо."),
    ("iso-2022-jp", "会議の資料", "お疲れ様です。\n\n会議の資料を添付します。よろしくお願いします。"),
    ("shift_jis", "出張の件", "こんにちは。\n\n来週の出張の件、予定を確認してください。"),
    ("gb2312", "季度报告", "你好，\n\n请查收附件中的季度报告。谢谢。"),
    ("euc-kr", "회의 일정 변경", "안녕하세요,\n\n회의 일정이 변경되었습니다. 확인 부탁드립니다."),
    ("iso-8859-2", "Raport miesięczny", "Dzień dobry,\n\nprzesyłam raport miesięczny. Pozdrawiam, Zofia."),
]

TOPICS = [
    "Project Falcon kickoff",
    "Invoice 2024-117",
    "Team offsite",
    "Server maintenance window",
    "Contract renewal",
    "Lunch on Thursday?",
    "Design review notes",
    "Hiring plan",
    "Travel booking",
    "Customer escalation",
    "Release 4.2 checklist",
    "Security training reminder",
]


def _png(seed: int) -> bytes:
    """A valid 4x4 PNG whose colour depends on the seed."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    r, g, b = (seed * 67) % 256, (seed * 131) % 256, (seed * 199) % 256
    raw = b"".join(b"\x00" + bytes([r, g, b]) * 4 for _ in range(4))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def _pdf(title: str) -> bytes:
    return (
        b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Count 0/Kids[]>>"
        b"endobj\n% " + title.encode("ascii", "replace") + b"\ntrailer<</Root 1 0 R>>\n%%EOF\n"
    )


def _html(text: str, cid: str | None) -> str:
    paras = "".join(f"<p>{line}</p>" for line in text.split("\n") if line)
    img = f'<p><img src="cid:{cid}" alt="chart" width="4" height="4"></p>' if cid else ""
    return f'<html><head><meta charset="utf-8"></head><body>{paras}{img}</body></html>'


def _build(
    rng: random.Random,
    idx: int,
    *,
    sender: tuple[str, str],
    to: list[tuple[str, str]],
    subject: str,
    text: str,
    charset: str,
    when: dt.datetime,
    msgid: str,
    parent: tuple[str, str] | None,
) -> bytes:
    kind = rng.random()
    cid = None
    body: MIMEText | MIMEMultipart
    if kind < 0.35:
        body = MIMEText(text, "plain", charset)
    else:
        alt = MIMEMultipart("alternative", boundary=f"=_sim_{rng.getrandbits(64):016x}")
        alt.attach(MIMEText(text, "plain", charset))
        if rng.random() < 0.2:
            cid = f"img{idx}@sim.lifeboat.test"
            related = MIMEMultipart("related", boundary=f"=_sim_{rng.getrandbits(64):016x}")
            related.attach(MIMEText(_html(text, cid), "html", "utf-8"))
            image = MIMEImage(_png(idx), "png")
            image.add_header("Content-ID", f"<{cid}>")
            image.add_header("Content-Disposition", "inline", filename="chart.png")
            related.attach(image)
            alt.attach(related)
        else:
            alt.attach(MIMEText(_html(text, None), "html", "utf-8"))
        body = alt
    msg: MIMEText | MIMEMultipart = body
    if rng.random() < 0.25:
        mixed = MIMEMultipart("mixed", boundary=f"=_sim_{rng.getrandbits(64):016x}")
        mixed.attach(body)
        choice = rng.randrange(3)
        part: MIMEBase
        if choice == 0:
            part = MIMEApplication(_pdf(subject), "pdf")
            part.add_header("Content-Disposition", "attachment", filename=f"report-{idx}.pdf")
        elif choice == 1:
            part = MIMEImage(_png(idx + 7), "png")
            part.add_header("Content-Disposition", "attachment", filename=f"photo-{idx}.png")
        else:
            part = MIMEText(f"id,amount\n{idx},{rng.randint(10, 9999)}\n", "csv", "utf-8")
            part.add_header(
                "Content-Disposition", "attachment", filename=("utf-8", "", f"übersicht-{idx}.csv")
            )
        mixed.attach(part)
        msg = mixed
    msg["From"] = formataddr(sender, charset="utf-8")
    msg["To"] = ", ".join(formataddr(p, charset="utf-8") for p in to)
    msg["Subject"] = Header(subject, charset).encode()
    msg["Date"] = format_datetime(when)
    msg["Message-ID"] = msgid
    if parent:
        msg["In-Reply-To"] = parent[0]
        msg["References"] = parent[1]
    msg["MIME-Version"] = "1.0"
    return msg.as_bytes()


def populate(
    mb: Mailbox,
    n: int,
    *,
    seed: int = 1,
    user: tuple[str, str] = ("Adele Vance", "adele@contoso.test"),
    anchor: dt.datetime | None = None,
    corpus: Path | None = CORPUS,
) -> None:
    """Fill `mb` with `n` messages (plus Inbox/Projects and Inbox/Newsletters folders)."""
    if n < 0:
        raise ValueError("the number of messages must not be negative")
    rng = random.Random(seed)
    anchor = anchor or dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    for name in ("Projects", "Newsletters"):
        with contextlib.suppress(ValueError):
            mb.add_folder(name, "inbox")
    real = sorted(corpus.glob("*.eml")) if corpus is not None and corpus.is_dir() else []
    made = 0
    while made < n:
        when = anchor - dt.timedelta(minutes=rng.randint(30, 60 * 24 * 60))
        if real and rng.random() < 0.1:
            raw = rng.choice(real).read_bytes()
            mb.add(
                rng.choice(["inbox", "archive", "inbox/newsletters"]),
                raw,
                received=when,
                is_read=rng.random() < 0.7,
            )
            made += 1
            continue
        charset, subj, text = (
            rng.choice(TEXTS)
            if rng.random() < 0.5
            else (
                "utf-8",
                rng.choice(TOPICS),
                (f"Hi,\n\nA note about {rng.choice(TOPICS).lower()}. Let me know what you think.\n\nBest"),
            )
        )
        length = min(n - made, rng.choice([1, 1, 1, 2, 3, 4, 5]))
        people = [p for p in PEOPLE if p[1] != user[1]]
        other = rng.choice(people)
        thread_refs: list[str] = []
        folder_choice = rng.random()
        base_folder = (
            "inbox"
            if folder_choice < 0.6
            else "inbox/projects"
            if folder_choice < 0.75
            else ("archive" if folder_choice < 0.9 else "inbox/newsletters")
        )
        for k in range(length):
            ours = k % 2 == 1 if rng.random() < 0.7 else rng.random() < 0.3
            sender, to = (user, [other]) if ours else (other, [user])
            msgid = f"<{rng.getrandbits(64):016x}.{made}@{sender[1].split('@')[1]}>"
            subject = ("Re: " * min(k, 1)) + subj
            body = (
                text
                if k == 0
                else f"Thanks, noted.\n\nOn an earlier date, {other[1]} wrote:\n> "
                + text.replace("\n", "\n> ")
            )
            parent = (thread_refs[-1], " ".join(thread_refs)) if thread_refs else None
            raw = _build(
                rng,
                made,
                sender=sender,
                to=to,
                subject=subject,
                text=body,
                charset=charset,
                when=when,
                msgid=msgid,
                parent=parent,
            )
            folder = "sentitems" if ours else base_folder
            if ours and rng.random() < 0.05:
                mb.add("drafts", raw, received=when, is_read=True, is_draft=True)
            else:
                mb.add(
                    folder,
                    raw,
                    received=when + dt.timedelta(seconds=rng.randint(1, 90)),
                    is_read=ours or rng.random() < 0.75,
                    sent=when,
                )
            thread_refs.append(msgid)
            when += dt.timedelta(minutes=rng.randint(5, 600))
            if when > anchor:
                when = anchor - dt.timedelta(minutes=rng.randint(1, 30))
            made += 1
