"""Reading mail we did not write, safely: parsed, checked, and classified.

`parse` reads raw bytes with mail-parser (for its defect report) and keeps
Python's compat32 message for re-serialising; every call into the `email`
package that can raise on hostile input is guarded here and turned into a
MessageError whose text is the reason to hold. Header values are decoded and
cleaned in `headers.py`, readable text is taken in `text.py`, and the site's
own messages are built in `compose.py`. Reads and writes nothing on disk.
"""

from __future__ import annotations

import codecs
import email
import email.policy
import logging
import re
from dataclasses import dataclass, field
from email.errors import NonASCIILocalPartDefect
from email.message import Message

import mailparser

from listserv.errors import MessageError
from listserv.mail.addresses import first_address, normalise
from listserv.mail.headers import decode_header_text
from listserv.mail.lineends import line_end_problem, only_crlf

log = logging.getLogger(__name__)

MAX_DEPTH = 20
MAX_PARTS = 500
LOOP_HEADER = "X-Listserv-Loop"
# Defects that only say a message is slightly untidy; it still goes out.
MINOR_DEFECTS = frozenset({"MissingHeaderBodySeparatorDefect", "ObsoleteHeaderDefect",
                           "InvalidHeaderDefect", "NonPrintableDefect",
                           "CloseBoundaryNotFoundDefect", "CharsetDecodeDefect",
                           # address headers: From is checked on its own (sender_of)
                           "AddressHeaderDefect"})
OUR_HEADERS = ("List-Id", "List-Post", "List-Help", "List-Subscribe", "List-Unsubscribe",
               "List-Unsubscribe-Post", "List-Archive", "List-Owner", "Precedence",
               LOOP_HEADER, "Approved", "Approve", "Errors-To", "Return-Path",
               "X-Original-To", "Delivered-To", "DKIM-Signature")


@dataclass
class Parsed:
    """What the pipeline needs to know about one incoming message."""

    message: Message
    subject: str = ""
    sender: tuple[str, str] | None = None  # (name, address) from From, or None if ambiguous
    message_id: str = ""
    defects: list[str] = field(default_factory=list)
    auto: str = ""  # why this is an automatic reply (RFC 3834), else ""
    bulk: str = ""  # Precedence: bulk/junk/list: never answered automatically
    bounce: bool = False
    list_ids: tuple[str, ...] = ()
    loops: tuple[str, ...] = ()

    @property
    def serious_defects(self) -> list[str]:
        return [d for d in self.defects if d.split(":")[0] not in MINOR_DEFECTS]

    @property
    def answerable(self) -> bool:
        """May we send this sender an automatic reply (RFC 3834)? Never to a bounce
        or null sender, an auto-reply, bulk mail, or list traffic (a List-Id)."""
        return not (self.auto or self.bulk or self.bounce or self.list_ids) and \
            self.sender is not None

    def raw_header(self, name: str) -> str | None:
        return raw_header(self.message, name)

    def header(self, name: str) -> str:
        return decode_header_text(self.raw_header(name))


def raw_header(message: Message, name: str) -> str | None:
    """A header's value as it arrived (8-bit bytes kept as surrogates), or None.

    compat32's `get` turns raw 8-bit headers into Header objects whose text
    has lost the bytes; the raw items still have them."""
    wanted = name.lower()
    try:
        for key, value in message.raw_items():
            if key.lower() == wanted:
                return value if isinstance(value, str) else str(value)
    except Exception:
        return None
    return None


def parse(raw: bytes, mail_from: str = "") -> Parsed:
    """Read an incoming message; MessageError (the reason to hold) when unsafe."""
    problem = line_end_problem(raw)
    if problem:
        raise MessageError(problem)
    head = _header_block(raw)
    _check_header_block(head)
    if not only_crlf(raw):  # intake normalises line ends; this came some other way
        raise MessageError("bare CR or LF line ends in the message (RFC 5321 2.3.8 allows "
                           "only CRLF): a broken client or an SMTP smuggling attempt")
    if b"\x00" in raw:
        raise MessageError("a NUL byte in the message body (RFC 5322 forbids it; many "
                           "mail programs cut the text there)")
    try:
        message = email.message_from_bytes(raw, policy=email.policy.compat32)
    except Exception as error:  # RecursionError on absurd nesting, among others
        raise MessageError(f"the message cannot be parsed: {type(error).__name__}") from None
    _check_structure(message)
    defects: list[str] = []
    try:
        report = mailparser.parse_from_bytes(raw)
        defects = sorted(set(report.defects_categories))
    except Exception as error:  # mail-parser gave up: the structure is suspect
        defects = [f"UnparseableDefect: {type(error).__name__}"]
    parsed = Parsed(message=message, defects=defects)
    parsed.subject = parsed.header("Subject")
    parsed.sender = sender_of(parsed.raw_header("From"))
    parsed.message_id = _message_id(parsed.header("Message-ID"))
    parsed.auto = _automatic(parsed)
    precedence = parsed.header("Precedence").lower()
    parsed.bulk = f"Precedence: {precedence}" if precedence in ("bulk", "junk", "list") else ""
    parsed.bounce = _is_bounce(parsed, mail_from)
    parsed.list_ids = tuple(_all(message, "List-Id"))
    parsed.loops = tuple(_all(message, LOOP_HEADER))
    return parsed


def sender_of(raw_from: str | None) -> tuple[str, str] | None:
    """(display name, address) from a raw From value: the address is read
    before any RFC 2047 decoding (so an encoded line break in the name cannot
    pass for syntax), then the name is decoded. None when ambiguous."""
    if raw_from is None:
        return None
    text = raw_from
    if any("\udc80" <= ch <= "\udcff" for ch in text):
        data = text.encode("utf-8", "surrogateescape")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("latin-1")
    # An encoded-word is one atom (RFC 2047 §5): hide each behind a placeholder
    # so that a ':' or '@' inside it cannot pass for address syntax.
    words: list[str] = []

    def hide(match: re.Match) -> str:
        words.append(match.group(0))
        return f"ENCODEDWORD{len(words) - 1}X"

    masked = _ENCODED_WORD.sub(hide, " ".join(text.split()))
    try:
        found = first_address(masked)
    except Exception:
        return None
    if found is None or "ENCODEDWORD" in found[1].upper():
        return None
    if not _parses_cleanly(masked):
        return None
    name, address = found
    name = re.sub(r"ENCODEDWORD(\d+)X", lambda m: words[int(m.group(1))], name)
    return decode_header_text(name), address


def _parses_cleanly(value: str) -> bool:
    """A second opinion from the `email` package's strict header parser: any
    defect it sees in From (an unbalanced bracket, stray text) is ambiguity,
    and so is group syntax, even a group of one ("Team: ana@example.org;").
    A UTF-8 local part (`José <josé@exemple.fr>`) is RFC 6532 mail, not a defect."""
    try:
        header = email.policy.default.header_factory("From", value)
    except Exception:
        return False
    defects = [d for d in header.defects if not isinstance(d, NonASCIILocalPartDefect)]
    return not defects and len(header.addresses) == 1 and \
        all(group.display_name is None for group in header.groups)


_ENCODED_WORD = re.compile(r"=\?[^?\s]{1,40}\?[bBqQ]\?[^?\s]*\?=")


HEADER_FIELD_LIMIT = 64 * 1024
HEADER_COUNT_LIMIT = 1000
KNOWN_ENCODINGS = ("7bit", "8bit", "binary", "quoted-printable", "base64")


def _header_block(raw: bytes) -> bytes:
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        end = raw.find(b"\n\n")
    return raw if end < 0 else raw[:end]


def _check_header_block(head: bytes) -> None:
    """Hold what the `email` package would silently misread in the headers."""
    if b"\x00" in head:
        raise MessageError("a NUL byte in the message headers")
    if re.search(rb"\r(?!\n)|(?<!\r)\n", head):
        raise MessageError("a bare CR or LF inside the headers (a line-break trick that "
                           "could smuggle extra header fields)")
    lines = head.split(b"\r\n")
    fields = sum(1 for line in lines if line[:1] not in (b" ", b"\t"))
    if fields > HEADER_COUNT_LIMIT:
        raise MessageError(f"{fields} header fields (more than {HEADER_COUNT_LIMIT})")
    size = 0
    for line in lines:
        size = size + len(line) if line[:1] in (b" ", b"\t") else len(line)
        if size > HEADER_FIELD_LIMIT:
            raise MessageError(f"a header field longer than {HEADER_FIELD_LIMIT // 1024} KB")


def _all(message: Message, name: str) -> list[str]:
    wanted = name.lower()
    try:
        return [decode_header_text(v).lower() for k, v in message.raw_items()
                if k.lower() == wanted]
    except Exception:
        return []


def _message_id(value: str) -> str:
    match = re.search(r"<([^<>\s]{1,250})>", value)
    return match.group(1) if match else ""


def _check_structure(message: Message) -> None:
    """Refuse messages too deep or too wide to handle safely, without recursion."""
    stack = [(message, 0)]
    parts = 0
    while stack:
        part, depth = stack.pop()
        parts += 1
        if depth > MAX_DEPTH:
            raise MessageError(f"MIME parts nested more than {MAX_DEPTH} levels deep")
        if parts > MAX_PARTS:
            raise MessageError(f"more than {MAX_PARTS} MIME parts")
        try:
            if part.is_multipart():
                payload = part.get_payload()
                if isinstance(payload, list):
                    stack.extend((child, depth + 1) for child in payload)
                continue
            encoding = str(part.get("Content-Transfer-Encoding", "7bit")).strip().lower()
            if encoding not in KNOWN_ENCODINGS:
                raise MessageError(f"unknown Content-Transfer-Encoding '{encoding[:40]}': "
                                   f"the part cannot be decoded")
            if part.get_content_maintype() == "text":
                _check_charset(part)
            if encoding == "base64":
                part.get_payload(decode=True)  # records base64 defects on the part
                bad = [type(d).__name__ for d in part.defects if "Base64" in type(d).__name__]
                if bad:
                    raise MessageError(f"a base64 part that does not decode ({bad[0]})")
            if encoding in ("base64", "quoted-printable") and \
                    part.get_content_maintype() == "text" and \
                    b"\x00" in (part.get_payload(decode=True) or b""):
                raise MessageError(f"a NUL byte in a {encoding} {part.get_content_type()} "
                                   f"part once decoded (text never holds one; many mail "
                                   f"programs cut the text there)")
        except MessageError:
            raise
        except Exception as error:
            raise MessageError(f"a MIME part cannot be read: {type(error).__name__}") from None


def _check_charset(part: Message) -> None:
    charset = part.get_content_charset()
    if not charset:
        return
    try:
        codecs.lookup(charset)
    except LookupError:
        data = part.get_payload(decode=True) or b""
        if not data.isascii():
            raise MessageError(f"text in the unknown charset '{charset[:40]}' cannot be "
                               f"decoded faithfully") from None


def _automatic(parsed: Parsed) -> str:
    auto = parsed.header("Auto-Submitted").lower()
    if auto and auto != "no":
        return f"Auto-Submitted: {auto}"
    precedence = parsed.header("Precedence").lower()
    if precedence == "auto_reply":
        return f"Precedence: {precedence}"
    for name in ("X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress"):
        value = parsed.header(name).lower()
        if value and (name != "X-Auto-Response-Suppress" or "oof" in value or "all" in value):
            return f"{name}: {value}"
    return ""


def _is_bounce(parsed: Parsed, mail_from: str) -> bool:
    envelope = normalise(mail_from or "")
    if envelope in ("", "<>") or envelope.split("@")[0] in ("mailer-daemon", "postmaster"):
        return True
    try:
        content_type = parsed.message.get_content_type()
        report = parsed.message.get_param("report-type", "") or ""
    except Exception:
        return False
    return content_type == "multipart/report" and str(report).lower() == "delivery-status"
