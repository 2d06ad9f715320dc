"""sync.filenames: the one rule for attachment names, tried with names built to fool a check or Windows."""

from __future__ import annotations

import unicodedata

import pytest

from sync.filenames import (
    MAX_BYTES,
    MAX_CHARS,
    OPENS_SAFELY,
    opens_safely,
    safe_filename,
    suffix,
    zone_identifier,
)

# Runnable or otherwise dangerous types: the list (types the old block list missed) and the classics.
RUNNABLE = [
    ".msc", ".xll", ".scf", ".inf", ".wsc", ".sct", ".application", ".appinstaller", ".msix", ".website",
    ".search-ms", ".diagcab", ".rdp", ".theme", ".jnlp",
    ".exe", ".com", ".bat", ".cmd", ".scr", ".pif", ".msi", ".ps1", ".vbs", ".js", ".jse", ".wsf", ".hta",
    ".lnk", ".url", ".reg", ".cpl", ".jar", ".sh", ".desktop", ".appimage", ".py", ".dll", ".iso", ".img",
    ".vhdx", ".docm", ".xlsm", ".pptm", ".chm", ".library-ms", ".settingcontent-ms", ".appref-ms",
    ".html", ".htm", ".svg", ".xht", ".mht", ".doc", ".xls", ".ppt", ".rtf", ".csv", ".eml", ".zip", "",
]
# Characters that are drawn as nothing but reorder or hide what is drawn.
INVISIBLE = ["\u202e", "\u202d", "\u202a", "\u202b", "\u202c", "\u200e", "\u200f", "\u2066", "\u2067",
             "\u2068", "\u2069", "\u061c", "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad",
             "\u180e", "\u3164", "\U000e0041"]


def windows_name(name: str) -> str:
    """What Windows creates for `name`: trailing dots and spaces dropped."""
    return name.rstrip(". ")


@pytest.mark.parametrize("pad", range(135, 160))
@pytest.mark.parametrize("tail", [".pdf", ". .pdf", "...pdf", ". . .", " ", "." * 30, ".pdf.", ". pdf"])
def test_a_long_name_is_truncated_before_it_is_stripped(pad, tail):
    """Tried: 'AAA…A.exe' + a tail that truncation can cut down to '.exe.' or '.exe ' (the old order,
    strip then truncate, handed Windows a name it turns into .exe while the check saw '.' or ''); the
    result is a fixed point with nothing Windows would drop, and the decision is the one Windows would
    make on the very same name."""
    name = "A" * pad + ".exe" + tail
    safe = safe_filename(name)
    assert safe == safe_filename(safe) and safe == windows_name(safe)
    assert len(safe) <= MAX_CHARS and len(safe.encode()) <= MAX_BYTES
    stem, _, ext = windows_name(safe).rpartition(".")
    assert opens_safely(safe) == (bool(stem) and "." + ext.lower() in OPENS_SAFELY)
    if safe.lower().endswith(".exe"):
        assert not opens_safely(safe)


def test_truncation_keeps_the_real_extension():
    """Tried: the issue's '....exe.pdf' at 153 characters: it keeps '.pdf' (what Windows opens it as)."""
    safe = safe_filename("A" * 145 + ".exe.pdf")
    assert safe.endswith(".pdf") and len(safe) == MAX_CHARS and opens_safely(safe)


@pytest.mark.parametrize("ext", RUNNABLE)
def test_only_allow_listed_types_open(ext):
    """Tried: every runnable type (and HTML, SVG, legacy/macro Office, archives, no extension), in
    lower and upper case and behind a trailing dot or space: none may be opened."""
    names = [f"invoice{ext}", f"INVOICE{ext.upper()}", f"invoice{ext}.", f"invoice{ext} ",
             f"invoice{ext}\u200b"]
    for name in names + ([f"invoice.pdf{ext}"] if ext else []):
        assert not opens_safely(name), name


@pytest.mark.parametrize("ext", sorted(OPENS_SAFELY))
def test_documents_images_and_text_open(ext):
    """Tried (control): the allowed types, also in upper case; they do open."""
    assert opens_safely(f"report{ext}") and opens_safely(f"REPORT{ext.upper()}")


@pytest.mark.parametrize("ch", INVISIBLE)
def test_bidi_and_invisible_characters_are_removed(ch):
    """Tried: 'invoice<ch>fdp.exe' (with U+202E it is drawn as 'invoiceexe.pdf'), and the character in
    front of the extension; none is left, and the name keeps its real extension."""
    for name in (f"invoice{ch}fdp.exe", f"photo{ch}.exe", f"{ch}report.pdf{ch}"):
        safe = safe_filename(name)
        assert not any(unicodedata.category(c) == "Cf" or c in INVISIBLE for c in safe), repr(safe)
    assert suffix(f"invoice{ch}fdp.exe") == ".exe"


def test_paths_controls_and_windows_reserved_names():
    """Tried: separators, '..', control characters, Windows' reserved characters and device names, a
    leading dot (a hidden file), runs of spaces, line separators, a lone surrogate, nothing at all."""
    assert safe_filename("../../etc/pa\x07sswd.pdf") == "_.._etc_passwd.pdf"
    assert safe_filename("C:\\Windows\\evil.txt") == "C__Windows_evil.txt"
    assert safe_filename('a<b>c:d"e|f?g*h.txt') == "a_b_c_d_e_f_g_h.txt"
    for device in ("CON.txt", "con", "NUL.pdf", "com1.png", "LPT9", "aux .txt", "COM\u00b9.txt"):
        assert safe_filename(device).startswith("_"), device
    assert safe_filename("CONTRACT.pdf") == "CONTRACT.pdf"
    assert safe_filename(".bashrc") == "bashrc" and safe_filename(" . .desktop") == "desktop"
    assert safe_filename("a\u2028b   \u00a0c.txt") == "a_b c.txt"
    assert safe_filename("x\udc80y.txt") == "x\ufffdy.txt"
    assert safe_filename("") == "attachment" and safe_filename(". . .", default="") == ""


def test_length_is_bounded_in_characters_and_bytes():
    """Tried: 300 two-byte and 300 four-byte characters (a Linux name may be 255 bytes)."""
    for ch in ("\u00e9", "\U0001f600"):
        safe = safe_filename(ch * 300 + ".pdf")
        assert safe.endswith(".pdf") and len(safe) <= MAX_CHARS and len(safe.encode()) <= MAX_BYTES
        assert safe_filename(safe) == safe


def test_zone_identifier_marks_the_internet_zone():
    """Tried: the stream's exact text (what Windows and Office read as 'downloaded from the Internet')."""
    assert zone_identifier() == "[ZoneTransfer]\r\nZoneId=3\r\n"
