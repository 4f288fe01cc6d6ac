"""Values a person types that end up in a mail header: one line, or refused.

A forum's title reaches List-Id and every subject; a member's name and
region reach notices and exports; an archive address reaches List-Archive.
`one_line` refuses a CR, LF or other control character in such a value with
a clear error instead of folding it away, so what the secretariat typed is
exactly what goes out. Pure; reads and writes nothing.
"""

from __future__ import annotations

import re

from listserv.errors import ListservError

_BREAKS = re.compile(r"[\r\n\x0b\x0c\x85\u2028\u2029]")
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")


def one_line(value: object, what: str, limit: int) -> str:
    """`value` with runs of spaces and tabs made one space; ListservError when it
    holds a line break or a control character, or is longer than `limit`."""
    text = "" if value is None else str(value)
    if _BREAKS.search(text):
        raise ListservError(f"{what} must be on one line: it contains a line break "
                            f"(CR or LF), which would end up inside a mail header")
    if _CONTROL.search(text):
        raise ListservError(f"{what} contains a control character; use plain text")
    text = " ".join(text.split())
    if len(text) > limit:
        raise ListservError(f"{what} is longer than {limit} characters")
    return text
