"""HTML replies as plain text, with the quoted original marked as quoted.

Some mail clients send a reply as HTML only (Outlook, Gmail with plain text
turned off, Apple Mail, phones). The reply reader (replies.py) reads lines,
so this turns such a body into text the way a text client would have
written it: each line of a `<blockquote>` (and of the quote containers
Gmail, Yahoo and Thunderbird mark with a class) starts with "> ", a rule
(`<hr>`, Outlook's line above its header block) becomes a line of
underscores, a signature block (`gmail_signature`, `moz-signature`) starts
with "-- ", and scripts, styles and the head are dropped. Built on the
standard library's tolerant HTMLParser; pure, reads and writes nothing. It
does not render layout (tables become lines) and never produces Markdown:
"1." and "-" at the start of a line stay as written.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

MAX_DEPTH = 200  # open elements tracked; deeper hostile nesting is read as text
RULE = "_" * 32

_BLOCKS = {"p", "div", "li", "ul", "ol", "tr", "table", "h1", "h2", "h3", "h4", "h5", "h6",
           "pre", "address", "section", "article", "header", "footer", "dl", "dt", "dd",
           "center", "form", "blockquote"}
_SKIPPED = {"script", "style", "head", "title", "template", "noscript", "xml"}
_VOID = {"br", "hr", "img", "meta", "link", "input", "col", "area", "base", "wbr", "source"}
_QUOTE_CLASSES = re.compile(r"yahoo_quoted", re.IGNORECASE)  # the others use <blockquote>
_SIGNATURE_CLASSES = re.compile(r"\b(gmail_signature|moz-signature)\b", re.IGNORECASE)


class _Text(HTMLParser):
    """Collects (quote depth, text) lines while parsing."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.lines: list[tuple[int, str]] = []
        self.line = ""
        self.line_depth = 0
        self.stack: list[tuple[str, bool, bool]] = []  # (tag, quotes, skips)
        self.pre = 0

    @property
    def depth(self) -> int:
        return sum(1 for _, quotes, _ in self.stack if quotes)

    @property
    def skipping(self) -> bool:
        return any(skips for _, _, skips in self.stack)

    def newline(self) -> None:
        self.lines.append((self.line_depth, self.line.rstrip()))
        self.line, self.line_depth = "", self.depth

    def soft_break(self) -> None:
        """End the line unless it is empty (blocks do not stack blank lines)."""
        if self.line.strip():
            self.newline()
        else:
            self.line, self.line_depth = "", self.depth

    def handle_starttag(self, tag, attrs):
        tag = tag.lower()
        values = dict(attrs)
        if tag == "br":
            self.newline()
            return
        if tag == "hr":
            self.soft_break()
            self.line = RULE
            self.newline()
            return
        if tag in _VOID:
            return
        classes = f"{values.get('class') or ''} {values.get('id') or ''}"
        quotes = tag == "blockquote" or bool(_QUOTE_CLASSES.search(classes)) \
            or (values.get("type") or "").lower() == "cite"
        if tag in _BLOCKS or quotes:
            self.soft_break()
        if _SIGNATURE_CLASSES.search(classes):
            self.soft_break()
            self.line = "-- "
            self.newline()
        if len(self.stack) < MAX_DEPTH:
            self.stack.append((tag, quotes, tag in _SKIPPED))
        if tag == "pre":
            self.pre += 1
        self.line_depth = self.depth if not self.line.strip() else self.line_depth

    def handle_endtag(self, tag):
        tag = tag.lower()
        if tag in _VOID:
            return
        if not any(open_tag == tag for open_tag, _, _ in self.stack):
            return
        while self.stack:
            open_tag, quotes, _ = self.stack.pop()
            if open_tag == "pre":
                self.pre = max(0, self.pre - 1)
            if open_tag == tag:
                break
        if tag in _BLOCKS or tag == "blockquote":
            self.soft_break()

    def handle_data(self, data):
        if self.skipping:
            return
        if self.pre:
            parts = data.split("\n")
            for index, part in enumerate(parts):
                if index:
                    self.newline()
                self.line += part
            return
        text = re.sub(r"[ \t\r\n\f]+", " ", data)
        if not self.line.strip():
            text = text.lstrip()
            self.line_depth = self.depth
        self.line += text


def html_reply_text(html: str) -> str:
    """The text of an HTML reply, quoted parts marked with "> " (see the docstring)."""
    parser = _Text()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # HTMLParser is tolerant; anything left is read as far as it went
        pass
    parser.newline()
    out: list[str] = []
    for depth, text in parser.lines:
        text = text.replace("\u00a0", " ").rstrip()
        line = ("> " * depth + text).rstrip() if depth else text
        if not line.strip(" >") and out and not out[-1].strip(" >"):
            continue  # one blank line at most
        out.append(line)
    return "\n".join(out).strip("\n") + "\n"
