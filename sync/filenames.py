"""Attachment file names, one rule for the whole project (pure: no I/O).

`safe_filename(name)` makes the one name that is shown, saved and opened: no path, no control, bidi or
invisible character, nothing Windows would change on disk (reserved characters and device names,
trailing dots and spaces), at most MAX_CHARS characters and MAX_BYTES UTF-8 bytes. The order matters:
clean, truncate, then strip, so what a decision sees is exactly the name written to disk.
`opens_safely(name)` decides "Open" by an allow list of document, image and text types (everything else
is saved, never handed to the system). `zone_identifier()` is the Mark of the Web written beside a file
on Windows.
"""

from __future__ import annotations

import re
import unicodedata

MAX_CHARS = 150
MAX_BYTES = 240  # UTF-8 bytes: under the 255-byte name limit of every common file system
MAX_SUFFIX = 16  # a longer "extension" is not kept whole when the name is truncated

# Types the system opens in a viewer that runs no code of the file's (Office's macro-free formats, PDF,
# images, plain text). Anything else (programs, scripts, shortcuts, installers, HTML, SVG, macro-enabled
# or legacy Office formats, disk images, ...) is saved where the user chooses, never opened.
OPENS_SAFELY = frozenset({
    ".pdf", ".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff",
    ".txt", ".docx", ".xlsx", ".pptx", ".odt", ".ods", ".odp",
})

# Characters that are not drawn but change what is drawn: bidi controls (U+202E shows "exe.pdf" as
# "fdp.exe"), zero-width ones, fillers that look like nothing. Category Cf covers U+200B-200F,
# U+202A-202E, U+2060-2064, U+2066-2069, U+061C, U+FEFF, tag characters; the rest are letters that
# render blank.
_BLANK_LETTERS = frozenset("\u115f\u1160\u17b4\u17b5\u180e\u2800\u3164\uffa0")
_WINDOWS_RESERVED = re.compile(r'[<>:"/\\|?*]')
_DEVICES = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"{p}{n}" for p in ("COM", "LPT") for n in [*"123456789", "\u00b9", "\u00b2", "\u00b3"]}
)


def _clean_char(ch: str) -> str:
    """One character as it may appear in a name: '' (dropped), '_' (replaced), ' ' or itself."""
    cat = unicodedata.category(ch)
    if cat in ("Cf", "Cc") or ch in _BLANK_LETTERS:
        return ""
    if cat in ("Cs", "Zl", "Zp") or _WINDOWS_RESERVED.match(ch):
        return "_"
    if cat == "Zs":
        return " "
    return ch


def _truncate(name: str, chars: int, limit_bytes: int) -> str:
    """At most `chars` characters and `limit_bytes` UTF-8 bytes, keeping a short extension whole."""
    stem, dot, suffix = name.rpartition(".")
    keep = dot + suffix if stem and len(suffix) < MAX_SUFFIX and " " not in suffix else ""
    head = name[: len(name) - len(keep)]
    while head and (len(head) + len(keep) > chars or len((head + keep).encode()) > limit_bytes):
        head = head[: min(len(head) - 1, chars - len(keep))]
    return head + keep


def safe_filename(name: str, default: str = "attachment") -> str:
    """The name to show, save and open `name` as (idempotent); `default` when nothing usable is left."""
    name = unicodedata.normalize("NFC", name.encode("utf-16", "surrogatepass").decode("utf-16", "replace"))
    name = re.sub(r" {2,}", " ", "".join(_clean_char(ch) for ch in name))
    name = name.lstrip(" .")  # no hidden (dot) files, nothing that looks like a relative path
    if name.split(".", 1)[0].rstrip(" ").upper() in _DEVICES:
        name = "_" + name  # CON.txt, NUL, COM1.pdf are devices on Windows, not files
    name = _truncate(name, MAX_CHARS, MAX_BYTES).rstrip(" .")  # Windows drops trailing dots and spaces
    return name or default


def suffix(name: str) -> str:
    """The lower-case extension Windows and the desktop would choose a program by ('' if none)."""
    stem, dot, ext = safe_filename(name).rpartition(".")
    return "." + ext.lower() if stem and dot else ""


def opens_safely(name: str) -> bool:
    """Whether "Open" may hand the file to the system's viewer: only allow-listed types, decided on the
    final (safe) name."""
    return suffix(name) in OPENS_SAFELY


def zone_identifier() -> str:
    """The Mark of the Web (the `Zone.Identifier` stream's text): zone 3, the Internet. Windows then
    opens Office files in Protected View and asks before running anything."""
    return "[ZoneTransfer]\r\nZoneId=3\r\n"
