"""Mail HTML made safe to show: nh3 (ammonia) cleaning, cid: images inlined, remote images blocked.

`render(...)` returns a `Rendered`: `srcdoc`, a whole document for an `<iframe sandbox="">` with its own
strict CSP (nothing runs or loads but data: images, plus remote ones if the user chose). Links never
navigate: `<a>` loses its href and shows its real target; `links` lists what the bridge may open. Pure.
"""

from __future__ import annotations

import base64
import html as htmllib
import re
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

SENTINEL = "https://lb-link.invalid/"
# Only a real attribute can contain a literal double quote after nh3's serializer (values escape it).
_SENTINEL_HREF = re.compile(r'href="https://lb-link\.invalid/(\d+)"')
_STYLE_BLOCK = re.compile(r"(<style[^>]*>)(.*?)(</style>)", re.IGNORECASE | re.DOTALL)
_URL_IN_TEXT = re.compile(r"""\b(?:https?://|mailto:)[^\s<>"']+""", re.IGNORECASE)


@dataclass(frozen=True)
class Rendered:
    srcdoc: str  # a whole HTML document for <iframe sandbox="" srcdoc=...>
    links: tuple[str, ...]  # link targets in order of appearance (http, https, mailto only)
    blocked_images: int  # remote images left out (0 when show_remote)
    inline_images: int  # cid: images resolved to data: URIs
    used_cids: frozenset[str] = frozenset()  # Content-IDs shown in the body (not worth listing again)


def csp(show_remote: bool) -> str:
    """The iframe's own policy: nothing runs or loads but data: images (and remote ones if chosen)."""
    img = "data: http: https:" if show_remote else "data:"
    return (
        f"default-src 'none'; img-src {img}; style-src 'unsafe-inline'; "
        "form-action 'none'; base-uri 'none'; frame-src 'none'"
    )


def data_uri(content_type: str, data: bytes) -> str:
    return f"data:{content_type};base64,{base64.b64encode(data).decode('ascii')}"


def _defuse_style(match: re.Match[str]) -> str:
    """CSS text never needs a raw '<': escape it, so no parser can ever read markup out of a style block."""
    return match.group(1) + match.group(2).replace("<", "\\3c ") + match.group(3)


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
    """Clean `html` (or escape `plain` when there is no HTML) into a sandboxable document."""
    counts = {"blocked": 0, "inline": 0}
    links: list[str] = []
    used: set[str] = set()

    def attribute_filter(tag: str, attr: str, value: str) -> str | None:
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
            links.append(value.strip())
            return f"{SENTINEL}{len(links)}"
        if attr == "style" and ("url(" in low or "expression(" in low or "image-set(" in low):
            # CSS images: the CSP blocks them anyway; drop them so "show images" counts stay honest.
            if show_remote:
                return value
            counts["blocked"] += 1
            return None
        return value

    def link_marker(match: re.Match[str]) -> str:
        n = int(match.group(1))
        return f'title="{htmllib.escape(links[n - 1])}" data-link="{n}" class="lb-link"'

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
        body = _STYLE_BLOCK.sub(_defuse_style, _SENTINEL_HREF.sub(link_marker, clean))
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
    return Rendered(doc, tuple(links), counts["blocked"], counts["inline"], frozenset(used))
