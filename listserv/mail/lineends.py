"""Line ends of incoming mail: what ordinary tools send, made ordinary.

RFC 5321 wants CRLF, but `sendmail`-style tools and `smtplib.sendmail(...,
msg.as_bytes())` send every line ending in a bare LF. Like Postfix
(`smtpd_forbid_bare_newline = normalize`) and Exim, we read a bare LF as a
line end: `normalise_line_ends` rewrites such a message to CRLF, and removes
the dot the client added in front of each such line (dot-stuffing, RFC 5321
4.5.2: aiosmtpd only removes it from lines that end in CRLF).

What is never rewritten, because readers differ on it, is returned as it
came with `line_end_problem` naming the reason, and the pipeline holds it:
a bare CR in the header block, a header block that mixes CRLF and bare LF
(a line-break trick that could smuggle header fields), and a line of a
single dot next to a bare line end (an SMTP smuggling attempt: an
end-of-data marker some servers would honour). Pure functions on bytes.
"""

from __future__ import annotations

import re

_BARE_CR = re.compile(rb"\r(?!\n)")
_BARE_LF = re.compile(rb"(?<!\r)\n")
# A line of one dot next to a line end that is not CRLF, or the trace of one
# whose dot aiosmtpd already removed (CRLF directly followed by a bare CR or LF).
_SMUGGLED_DOT = re.compile(rb"(?:\r\n|\r|\n)\.(?:\r(?!\n)|(?<!\r)\n)"
                           rb"|(?:\r(?!\n)|(?<!\r)\n)\.\r\n"
                           rb"|\r\n(?:\r(?!\n)|\n)")
_LINE = re.compile(rb"\r\n|\r|\n")


def only_crlf(raw: bytes) -> bool:
    """True when every CR and LF is part of a CRLF (the usual case; no copies made)."""
    pairs = raw.count(b"\r\n")
    return raw.count(b"\r") == pairs and raw.count(b"\n") == pairs


def header_end(raw: bytes) -> int:
    """Where the header block ends: the first empty line, whatever its line end
    (len(raw) when there is no body)."""
    match = re.search(rb"(?:\r\n|\n|\r(?!\n))(?:\r\n|\n)", raw)
    if raw.startswith((b"\r\n", b"\n")):
        return 0
    return match.start() if match else len(raw)


def line_end_problem(raw: bytes) -> str:
    """Why these line ends cannot be read one way only, or '' when they can."""
    if only_crlf(raw):
        return ""
    head = raw[:header_end(raw)]
    if _BARE_CR.search(head):
        return ("a bare CR inside the headers (a line-break trick that could smuggle "
                "extra header fields)")
    if b"\r\n" in head and _BARE_LF.search(head):
        return ("mixed CRLF and bare LF line ends inside the headers (a line-break trick "
                "that could smuggle extra header fields)")
    if _SMUGGLED_DOT.search(raw):
        return ("a line of a single dot next to a bare CR or LF (an SMTP smuggling "
                "attempt: some servers would end the message there)")
    return ""


def normalise_line_ends(raw: bytes) -> bytes:
    """The message with every line ending in CRLF, or `raw` unchanged when it
    has no bare line ends or has a `line_end_problem` (then it is held)."""
    if only_crlf(raw) or line_end_problem(raw):
        return raw
    if raw.endswith(b"\n\r\n") and b"\r\n" not in raw[:-2]:
        raw = raw[:-2]  # the CRLF smtplib adds after an LF-only message
    out = bytearray()
    position = 0
    after_bare = False  # the line begins after a bare line end: still dot-stuffed
    for match in _LINE.finditer(raw):
        line = raw[position:match.start()]
        if after_bare and line.startswith(b"."):
            line = line[1:]
        out += line + b"\r\n"
        after_bare = match.group() != b"\r\n"
        position = match.end()
    tail = raw[position:]
    if after_bare and tail.startswith(b"."):
        tail = tail[1:]
    out += tail
    return bytes(out)
