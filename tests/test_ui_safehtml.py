"""ui.safehtml without a browser: every vector of the corpus's xss/ folder (tests/corpus.py) comes out
inert (the window test then proves the same in the real engine)."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest

from tests import corpus
from ui import safehtml


def all_vectors() -> list[str]:
    XSS = corpus.path("xss")  # skips the calling test without the corpus
    out = [e["payload"] for e in json.loads((XSS / "DOMPurify__expect.json").read_text())]
    out += [e["input"] for e in json.loads((XSS / "html5lib-python__sanitizer-tests1.json").read_text())]
    for path in sorted((XSS / "payloadsallthethings").iterdir()):
        text = path.read_text(encoding="utf-8", errors="replace")
        out += [text] if path.suffix == ".svg" else [ln for ln in text.splitlines() if ln.strip()]
    out.append((XSS / "cure53-HTTPLeaks__leak.html").read_text())
    return out


BAD_TAGS = {"script", "iframe", "object", "embed", "frame", "frameset", "form", "input", "button", "meta",
            "link", "base", "svg", "math", "video", "audio", "source", "track", "applet", "noscript",
            "template", "portal", "textarea", "select", "option"}
BAD_ATTRS = {"href", "srcset", "action", "formaction", "background", "poster", "xlink:href", "data", "ping"}


class Audit(HTMLParser):
    """What a browser's tokenizer would see in the sanitized body: tags, attributes, style text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self.in_style = False

    def handle_starttag(self, tag, attrs):
        if tag in BAD_TAGS:
            self.problems.append(f"<{tag}>")
        self.in_style = tag == "style"
        for name, value in attrs:
            if name.startswith("on") or name in BAD_ATTRS:
                self.problems.append(f"<{tag} {name}=>")
            if name == "src" and not (value or "").startswith("data:image/"):
                self.problems.append(f"<{tag} src={value!r}>")

    def handle_endtag(self, tag):
        self.in_style = False

    def handle_data(self, data):
        if self.in_style and "<" in data:
            self.problems.append(f"markup in <style>: {data[:60]!r}")


def body_of(srcdoc: str) -> str:
    return srcdoc.split("<body>", 1)[1]


def test_every_vector_comes_out_inert():
    """Tried: ~1,300 vectors; no active element, no event handler, no href, no src but data: images."""
    control = Audit()
    control.feed('<img src=x onerror=alert(1)><a href="https://e.example">x</a><style><b></style>')
    assert len(control.problems) == 4  # the audit itself can fail
    vectors = all_vectors()
    assert len(vectors) > 1000
    for v in vectors:
        audit = Audit()
        audit.feed(body_of(safehtml.render(v).srcdoc))
        audit.close()
        assert audit.problems == [], f"{v[:120]!r}"


def test_csp_of_the_frame():
    """Tried: the policy with and without remote images; scripts and everything else stay forbidden."""
    assert safehtml.csp(False).startswith("default-src 'none'; img-src data:;")
    assert "img-src data: http: https:" in safehtml.csp(True)
    for show in (False, True):
        assert "script" not in safehtml.csp(show)


def test_links_show_their_real_target_and_do_not_navigate():
    """Tried: a link whose text lies about its target, a javascript: link, a title that tries to spoof."""
    r = safehtml.render('<a title="https://bank.example" href="https://evil.example/x?a=1&amp;b=2">'
                        "https://bank.example</a><a href=\"javascript:alert(1)\">j</a>")
    assert r.links == ("https://evil.example/x?a=1&b=2",)
    body = body_of(r.srcdoc)
    assert 'title="https://evil.example/x?a=1&amp;b=2"' in body and "bank.example\"" not in body
    assert "href" not in body


def test_remote_and_cid_images():
    """Tried: a remote image, a tracking pixel in CSS, a cid: image known and unknown, an SVG data: image."""
    html = ('<img src="https://t.example/p.gif"><div style="background:url(https://t.example/b)">x</div>'
            '<img src="cid:logo@x"><img src="cid:missing@x"><img src="data:image/svg+xml;base64,PHN2Zz4=">')
    r = safehtml.render(html, inline=lambda cid: ("image/png", b"\x89PNG") if cid == "logo@x" else None)
    body = body_of(r.srcdoc)
    assert r.blocked_images == 2 and r.inline_images == 1 and r.used_cids == frozenset({"logo@x"})
    assert "https://t.example" not in body and "data:image/png;base64,iVBORw==" in body
    shown = safehtml.render(html, show_remote=True)
    assert shown.blocked_images == 0 and 'src="https://t.example/p.gif"' in body_of(shown.srcdoc)


@pytest.mark.parametrize("plain", ["plain <b>not bold</b> & https://example.com/a?b=1", ""])
def test_plain_text_is_escaped(plain):
    """Tried: a text body with markup and a URL; shown as text, the URL listed as a link."""
    r = safehtml.render(None, plain)
    assert "<b>" not in body_of(r.srcdoc)
    assert r.links == (("https://example.com/a?b=1",) if plain else ())
