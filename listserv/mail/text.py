"""The readable text of a message: its text part, or its HTML made plain.

Used wherever we read what a person wrote (commands, replies, reports,
digests). Decoding never raises: unknown charsets fall back to UTF-8 or
Latin-1 line by line, NUL characters are dropped, code blocks in HTML are
removed whole. Pure functions; reads and writes nothing.
"""

from __future__ import annotations

import html as html_module
import re
from email.message import Message

import bleach

# Elements whose content is code, not text: removed whole before any HTML cleaning.
DANGEROUS_BLOCKS = re.compile(r"<(script|style|iframe|object|embed|noscript|template)\b.*?"
                              r"</\1\s*>", re.IGNORECASE | re.DOTALL)


def text_body(message: Message, limit: int = 200_000) -> str:
    """The first text/plain part (or stripped HTML), decoded; '' when none."""
    html = ""
    try:
        for part in message.walk():
            if part.is_multipart() or part.get_content_disposition() == "attachment":
                continue
            kind = part.get_content_type()
            if kind not in ("text/plain", "text/html"):
                continue
            text = decode_payload(part)[:limit]
            if kind == "text/plain":
                return text
            html = html or text
    except Exception:
        return ""
    if html:
        return html_to_text(html)
    return ""


def html_to_text(html: str) -> str:
    """Readable text from HTML: code blocks dropped, tags stripped, entities kept."""
    html = DANGEROUS_BLOCKS.sub("", html)
    html = re.sub(r"<\s*(br|/p|/div|/li|/h\d|/tr)\s*/?>", "\n", html, flags=re.IGNORECASE)
    text = bleach.clean(html, tags=set(), strip=True, strip_comments=True)
    return html_module.unescape(text)


def decode_payload(part: Message) -> str:
    """A text part's payload as str: the declared charset, else line by line
    UTF-8 or Latin-1 (so one stray Latin-1 line does not spoil the rest).
    NUL characters are dropped."""
    data = part.get_payload(decode=True) or b""
    return decode_bytes(data, part.get_content_charset()).replace("\x00", "")


def decode_bytes(data: bytes, charset: str | None) -> str:
    try:
        return data.decode(charset or "utf-8")
    except (LookupError, UnicodeDecodeError):
        lines = []
        for line in data.splitlines(keepends=True):
            try:
                lines.append(line.decode("utf-8"))
            except UnicodeDecodeError:
                lines.append(line.decode("latin-1"))
        return "".join(lines)


def is_clean_text_part(part: Message) -> bool:
    """True when a text part can go out exactly as it came: 7-bit transport,
    valid in its declared charset (ASCII when none is declared), no NUL."""
    try:
        encoded = part.get_payload()
        if not isinstance(encoded, str) or not encoded.isascii():
            return False
        data = part.get_payload(decode=True) or b""
        charset = part.get_content_charset()
        if b"\x00" in data or (charset is None and not data.isascii()):
            return False
        data.decode(charset or "ascii")
    except Exception:  # unknown charset, undecodable bytes, odd payloads
        return False
    return True
