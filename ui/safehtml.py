"""Mail HTML made safe to show: nh3 (ammonia) cleaning, cid: images inlined, remote images blocked.

`render(...)` returns a `Rendered`: `srcdoc`, a whole document for an `<iframe sandbox="">` with its own
strict CSP (nothing runs or loads but data: images, plus remote ones if the user chose). Links never
navigate: `<a>` loses its href and shows its real target; `links` lists what the bridge may open, taken
from the cleaned output only (through per-render random markers no mail can forge). HTML beyond
`too_costly(...)`'s bounds (size, tags, nesting work: html5ever is quadratic in depth) is not cleaned
at all: the text part, else text taken from the HTML, is shown with a `note` saying why. Pure.
"""

from __future__ import annotations

import base64
import html as htmllib
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass

import nh3

# What to do with a cid: reference: return (content_type, bytes) or None when unknown.
InlineLookup = Callable[[str], "tuple[str, bytes] | None"]

MAX_INLINE_BYTES = 8 * 1024 * 1024  # a bigger inline image is left out (the attachment list has it)
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp", "image/svg+xml")
LINK_SCHEMES = ("http", "https", "mailto")

TAGS = set(nh3.ALLOWED_TAGS) | {"font", "style", "tfoot", "big", "address"}
TAGS -= {"area", "map"}
ATTRIBUTES: dict[str, set[str]] = {k: set(v) for k, v in nh3.ALLOWED_ATTRIBUTES.items()}
ATTRIBUTES["*"] = {"style", "align", "valign", "dir", "lang", "width", "height", "bgcolor"}  # no title:
# the title of a link is ours (its real target), and a mail must not be able to put one first
ATTRIBUTES["font"] = {"color", "face", "size"}
ATTRIBUTES["table"] = ATTRIBUTES.get("table", set()) | {"border", "cellpadding", "cellspacing"}
ATTRIBUTES["td"] = ATTRIBUTES.get("td", set()) | {"nowrap"}
for _tag in ("blockquote", "q", "ins", "del"):  # URLs a browser would never fetch, but no need to keep
    ATTRIBUTES[_tag].discard("cite")

# What nh3 may be given: beyond these the text is shown instead (each bound keeps one render far under
# 1 s; bench/ui.py's "render" section measures it). Real mail is far below them (the corpus: at most
# 50 KB of HTML, 600 tags, a nesting work of 5,000).
MAX_HTML_CHARS = 10_000_000  # nh3 cleans ordinary HTML at ~50 MB/s
MAX_TAGS = 150_000  # bounds the nesting scan below (a Python loop, ~0.5 us a tag)
MAX_NESTING_WORK = 10_000_000  # html5ever scans the open elements for each tag: ~25 ms at this bound
# Elements that close an open one of the same name instead of nesting, and elements that never hold any.
_SIBLINGS = frozenset({"p", "li", "dt", "dd", "option", "tr", "td", "th", "a"})
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
                   "source", "track", "wbr", "keygen", "frame", "basefont", "bgsound"})
_TAG = re.compile(r"<(/?)([A-Za-z][^\s/>]*)")
_RAW_OPEN = re.compile(r"<(style|script)", re.IGNORECASE)
_MARKUP = re.compile(r"<[^<>]*>")  # [^<>]: linear even on a flood of unclosed '<'
_SPACES = re.compile(r"[ \t\r\f\v\xa0]+")
_BLANK_LINES = re.compile(r"\n\s*\n\s*")
_CSS_ESCAPE = re.compile(r"\\(?:([0-9a-fA-F]{1,6})(?:\r\n|[ \t\n\r\f])?|(\r\n|[\n\r\f])|(.))", re.DOTALL)
_CSS_IMPORT = re.compile(r"@import\b[^;{}]*;?", re.IGNORECASE)
# What makes CSS fetch (or, in old engines, run) something: a style attribute holding one is left out.
_CSS_FETCHES = ("url(", "image(", "image-set(", "cross-fade(", "element(", "expression(", "@import",
                "behavior", "-moz-binding")
_URL_IN_TEXT = re.compile(r"""\b(?:https?://|mailto:)[^\s<>"']+""", re.IGNORECASE)


@dataclass(frozen=True)
class Rendered:
    srcdoc: str  # a whole HTML document for <iframe sandbox="" srcdoc=...>
    links: tuple[str, ...]  # link targets in order of appearance (http, https, mailto only)
    blocked_images: int  # remote images left out (0 when show_remote)
    inline_images: int  # cid: images resolved to data: URIs
    used_cids: frozenset[str] = frozenset()  # Content-IDs shown in the body (not worth listing again)
    note: str | None = None  # why the HTML was not shown (its text is shown instead), for the user


def nesting_work(html: str) -> int:
    """An upper estimate of html5ever's tree-building work: the sum, over start tags, of the elements
    open at that point (it scans them for each tag). One linear pass; never less than the real depth."""
    stack: list[str] = []
    open_count: dict[str, int] = {}
    work = 0
    for match in _TAG.finditer(html):
        name = match.group(2).lower()
        if match.group(1):  # an end tag closes its element and all opened inside it
            if open_count.get(name):
                while stack:
                    top = stack.pop()
                    open_count[top] -= 1
                    if top == name:
                        break
            continue
        if name in _SIBLINGS and stack and stack[-1] == name:
            open_count[stack.pop()] -= 1
        work += len(stack)
        if name not in _VOID:
            stack.append(name)
            open_count[name] = open_count.get(name, 0) + 1
    return work


def too_costly(html: str) -> str | None:
    """Why this HTML is not to be cleaned (too big, too many tags, nested too deep), or None. Pure, cheap:
    the checks go from the cheapest (length) to the linear scan, which only runs on bounded input."""
    if len(html) > MAX_HTML_CHARS:
        return f"its HTML is too large to display safely ({len(html) / 1_000_000:.1f} million characters)"
    if html.count("<") > MAX_TAGS:
        return "its HTML has too many tags to display safely"
    if nesting_work(html) > MAX_NESTING_WORK:
        return "its HTML is nested too deeply to display safely"
    return None


def html_text(html: str) -> str:
    """The readable text of HTML without parsing it (the fallback for HTML too costly to clean): no
    style or script content, no tags, entities decoded. Linear in the input, whatever it holds."""
    parts: list[str] = []
    at = 0
    while opener := _RAW_OPEN.search(html, at):  # cut <style>/<script> blocks; an unclosed one ends it
        parts.append(html[at:opener.start()])
        closer = re.compile("</" + opener.group(1) + "[^<>]*>?", re.IGNORECASE).search(html, opener.end())
        if closer is None:
            break
        at = closer.end()
    else:
        parts.append(html[at:])
    text = _MARKUP.sub(" ", " ".join(parts))
    text = htmllib.unescape(text)
    return _BLANK_LINES.sub("\n\n", _SPACES.sub(" ", text)).strip()


def csp(show_remote: bool) -> str:
    """The iframe's own policy: nothing runs or loads but data: images (and remote ones if chosen)."""
    img = "data: http: https:" if show_remote else "data:"
    return (
        f"default-src 'none'; img-src {img}; style-src 'unsafe-inline'; "
        "form-action 'none'; base-uri 'none'; frame-src 'none'"
    )


def data_uri(content_type: str, data: bytes) -> str:
    return f"data:{content_type};base64,{base64.b64encode(data).decode('ascii')}"


def css_plain(css: str) -> str:
    """CSS as its tokenizer reads it, for checking only: comments out (an unclosed one runs to the end),
    escapes decoded (`u\\72 l(` is `url(`), lower case. Linear."""
    parts: list[str] = []
    at = 0
    while (start := css.find("/*", at)) >= 0:
        parts.append(css[at:start])
        end = css.find("*/", start + 2)
        at = len(css) if end < 0 else end + 2
    parts.append(css[at:])

    def char(match: re.Match[str]) -> str:
        if match.group(1):
            code = int(match.group(1), 16)
            return chr(code) if 0 < code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF else "\ufffd"
        return "" if match.group(2) else match.group(3)

    return _CSS_ESCAPE.sub(char, "".join(parts)).lower()


def _defuse_css(css: str) -> str:
    """A style block's text: no raw '<' (no parser can read markup out of it), no @import (the frame's
    CSP forbids it too). Literal @import rules (web fonts in newsletters) go alone; one spelled with
    escapes or comments, which no mail program writes, takes the whole block with it."""
    if "@import" in css_plain(css):
        css = _CSS_IMPORT.sub("", css)
        if "@import" in css_plain(css):
            return ""
    return css.replace("<", "\\3c ")


def _defuse_styles(clean: str) -> str:
    """Every style block of the cleaned body through `_defuse_css`. One pass (the serializer closes every
    <style>, so an opener without a closer ends the work)."""
    out: list[str] = []
    at = 0
    while (start := clean.find("<style", at)) >= 0:
        inner = clean.find(">", start)
        end = clean.find("</style>", inner) if inner >= 0 else -1
        if end < 0:
            break
        out += [clean[at:inner + 1], _defuse_css(clean[inner + 1:end])]
        at = end
    out.append(clean[at:])
    return "".join(out)


def _cid(value: str) -> str:
    return value[4:].strip().strip("<>")


def render(
    html: str | None,
    plain: str | None = None,
    *,
    inline: InlineLookup | None = None,
    show_remote: bool = False,
    dark: bool = False,
) -> Rendered:
    """Clean `html` (or escape `plain` when there is no HTML) into a sandboxable document. HTML that
    `too_costly` refuses is not cleaned: `plain`, else the HTML's text, is shown with a `note`."""
    counts = {"blocked": 0, "inline": 0}
    links: list[str] = []
    used: set[str] = set()
    note = None
    if html and html.strip() and (why := too_costly(html)):
        note = f"Shown as plain text: {why}."
        plain = plain if plain and plain.strip() else html_text(html)
        html = None
    # Each href becomes this marker in nh3's output: the nonce is drawn after the mail was written, so no
    # text of the mail can contain it, and only hrefs that survive the cleaning are found and numbered.
    marker = f"https://lb-link.invalid/{secrets.token_hex(16)}/"
    hrefs: list[str] = []

    def attribute_filter(tag: str, attr: str, value: str) -> str | None:
        if tag not in TAGS:  # nh3 asks about elements it then removes (<base>, <link>, <area>): count none
            return None
        low = value.strip().lower()
        if tag == "img" and attr == "src":
            if low.startswith("cid:"):
                found = inline(_cid(value.strip())) if inline else None
                if not found:
                    return None
                ctype, data = found
                ctype = ctype.lower().split(";")[0].strip()
                if ctype not in IMAGE_TYPES or len(data) > MAX_INLINE_BYTES:
                    return None
                counts["inline"] += 1
                used.add(_cid(value.strip()))
                return data_uri(ctype, data)
            if low.startswith("data:"):
                return value.strip() if low.startswith(tuple(f"data:{t}" for t in IMAGE_TYPES)) else None
            if low.startswith(("http:", "https:", "//")):
                if show_remote and not low.startswith("//"):
                    return value.strip()
                counts["blocked"] += 1
                return None
            return None
        if attr == "href":
            if not low.startswith(tuple(s + ":" for s in LINK_SCHEMES)):
                return None
            hrefs.append(value.strip())
            return f"{marker}{len(hrefs) - 1}"
        if attr == "style" and any(f in css_plain(value) for f in _CSS_FETCHES):
            # CSS images: the CSP blocks them anyway; drop them so "show images" counts stay honest.
            if show_remote:
                return value
            counts["blocked"] += 1
            return None
        return value

    def link_marker(match: re.Match[str]) -> str:
        links.append(hrefs[int(match.group(1))])
        return f'title="{htmllib.escape(links[-1])}" data-link="{len(links)}" class="lb-link"'

    if html and html.strip():
        clean = nh3.clean(
            html,
            tags=TAGS,
            clean_content_tags={"script", "noscript", "title", "template", "textarea", "select", "xmp"},
            attributes=ATTRIBUTES,
            attribute_filter=attribute_filter,
            url_schemes={"http", "https", "mailto", "cid", "data"},
            link_rel="noopener noreferrer nofollow",
            strip_comments=True,
        )
        found = re.compile('href="' + re.escape(marker) + r'(\d+)"')
        body = _defuse_styles(found.sub(link_marker, clean))
    else:
        text = htmllib.escape(plain or "")

        def text_link(match: re.Match[str]) -> str:
            links.append(htmllib.unescape(match.group(0)))
            return f'<span class="lb-link" title="{match.group(0)}">{match.group(0)}</span>'

        body = f'<pre class="lb-plain">{_URL_IN_TEXT.sub(text_link, text)}</pre>'
    fg, bg = ("#e8e8e8", "#1e1e1e") if dark else ("#1a1a1a", "#ffffff")
    doc = (
        "<!doctype html><html><head><meta charset=\"utf-8\">"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{csp(show_remote)}\">"
        "<style>"
        f"html{{color-scheme:{'dark' if dark else 'light'};}}"
        f"body{{font:15px/1.45 system-ui,sans-serif;color:{fg};background:{bg};margin:12px;"
        "overflow-wrap:anywhere;}"
        "img{max-width:100%;height:auto;}"
        ".lb-plain{white-space:pre-wrap;font:14px/1.4 ui-monospace,monospace;}"
        "a.lb-link,.lb-link{color:#1565c0;text-decoration:underline;cursor:help;}"
        "a.lb-link::after{content:' [' attr(data-link) ']';font-size:75%;vertical-align:super;}"
        "</style></head><body>"
        f"{body}</body></html>"
    )
    return Rendered(doc, tuple(links), counts["blocked"], counts["inline"], frozenset(used), note)
