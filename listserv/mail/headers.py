"""Header values in and out: decoding what others wrote, cleaning what we write.

`decode_header_text` turns an RFC 2047 (or raw 8-bit) header into one clean
line; `clean_header_value` folds CR, LF, tabs and control characters so that
no value from outside can start a header of its own. Pure functions; reads
and writes nothing.
"""

from __future__ import annotations

import re
from email.header import Header, decode_header

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_BLANKS = re.compile(r"[\r\n\t]+")


def clean_header_value(value: object, limit: int = 998) -> str:
    """One safe line: CR, LF, tabs and control characters folded to spaces."""
    text = str(value) if value is not None else ""
    text = _BLANKS.sub(" ", text)
    text = _CONTROL.sub("", text)
    return text.strip()[:limit]


def decode_header_text(raw: object) -> str:
    """Decode an RFC 2047 header to one clean line; unknown charsets are read as
    UTF-8 with replacement, undeclared 8-bit bytes as UTF-8 else Latin-1."""
    if raw is None:
        return ""
    if isinstance(raw, Header):
        raw = str(raw)
    text = str(raw)
    if any("\udc80" <= ch <= "\udcff" for ch in text):  # surrogate-escaped 8-bit bytes
        data = text.encode("utf-8", "surrogateescape")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("latin-1")
    try:
        parts = decode_header(text)
        pieces = []
        for chunk, charset in parts:
            if isinstance(chunk, str):
                pieces.append(chunk)
                continue
            try:
                pieces.append(chunk.decode(charset or "ascii"))
            except (LookupError, UnicodeDecodeError):
                pieces.append(chunk.decode("utf-8", "replace"))
        joined = ""
        for index, piece in enumerate(pieces):  # decode_header drops spaces between words
            if index and parts[index - 1][1] is None and not joined.endswith(" ") \
                    and parts[index][1] is not None:
                joined += " "
            joined += piece
        text = joined
    except Exception:  # email.errors.HeaderParseError and friends: keep the raw text
        pass
    return clean_header_value(text)
