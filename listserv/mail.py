"""Reading mail we did not write, and writing mail of our own, safely.

`parse` reads raw bytes with mail-parser (for its defect report) and keeps
Python's compat32 message for re-serialising; every call into the `email`
package that can raise on hostile input is guarded here and turned into a
MessageError whose text is the reason to hold. `compose` builds the site's
own messages (replies, notices) from strings we sanitise: no value that came
from outside ever reaches a header with a CR or LF in it.
Reads and writes nothing on disk.
"""

from __future__ import annotations

import email
import email.policy
import html as html_module
import logging
import re
from dataclasses import dataclass, field
from email.header import Header, decode_header, make_header
from email.message import EmailMessage, Message
from email.utils import format_datetime, make_msgid

import bleach
import mailparser

from listserv.addresses import first_address, normalise
from listserv.errors import MessageError

log = logging.getLogger(__name__)

MAX_DEPTH = 20
MAX_PARTS = 500
LOOP_HEADER = "X-Listserv-Loop"
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_BLANKS = re.compile(r"[\r\n\t]+")
# Elements whose content is code, not text: removed whole before any HTML cleaning.
DANGEROUS_BLOCKS = re.compile(r"<(script|style|iframe|object|embed|noscript|template)\b.*?"
                              r"</\1\s*>", re.IGNORECASE | re.DOTALL)
# Defects that only say a message is slightly untidy; it still goes out.
MINOR_DEFECTS = frozenset({"MissingHeaderBodySeparatorDefect", "ObsoleteHeaderDefect",
                           "InvalidHeaderDefect", "NonPrintableDefect"})
OUR_HEADERS = ("List-Id", "List-Post", "List-Help", "List-Subscribe", "List-Unsubscribe",
               "List-Unsubscribe-Post", "List-Archive", "List-Owner", "Precedence",
               LOOP_HEADER, "Approved", "Approve", "Errors-To", "Return-Path",
               "X-Original-To", "Delivered-To", "DKIM-Signature")


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


@dataclass
class Parsed:
    """What the pipeline needs to know about one incoming message."""

    message: Message
    subject: str = ""
    sender: tuple[str, str] | None = None  # (name, address) from From, or None if ambiguous
    message_id: str = ""
    defects: list[str] = field(default_factory=list)
    auto: str = ""  # why this is automatic mail (auto-reply, bulk), else ""
    bounce: bool = False
    list_ids: tuple[str, ...] = ()
    loops: tuple[str, ...] = ()

    @property
    def serious_defects(self) -> list[str]:
        return [d for d in self.defects if d.split(":")[0] not in MINOR_DEFECTS]

    def header(self, name: str) -> str:
        try:
            return decode_header_text(self.message.get(name))
        except Exception:
            return ""


def parse(raw: bytes, mail_from: str = "") -> Parsed:
    """Read an incoming message; MessageError (the reason to hold) when unsafe."""
    if b"\x00" in raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]:
        raise MessageError("a NUL byte in the message headers")
    try:
        message = email.message_from_bytes(raw, policy=email.policy.compat32)
    except Exception as error:
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
    try:
        parsed.sender = first_address(parsed.header("From"))
    except Exception:
        parsed.sender = None
    parsed.message_id = _message_id(parsed.header("Message-ID"))
    parsed.auto = _automatic(parsed, mail_from)
    parsed.bounce = _is_bounce(parsed, mail_from)
    parsed.list_ids = tuple(_all(message, "List-Id"))
    parsed.loops = tuple(_all(message, LOOP_HEADER))
    return parsed


def _all(message: Message, name: str) -> list[str]:
    try:
        return [decode_header_text(v).lower() for v in message.get_all(name, [])]
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
        except Exception as error:
            raise MessageError(f"a MIME part cannot be read: {type(error).__name__}") from None


def _automatic(parsed: Parsed, mail_from: str) -> str:
    auto = parsed.header("Auto-Submitted").lower()
    if auto and auto != "no":
        return f"Auto-Submitted: {auto}"
    precedence = parsed.header("Precedence").lower()
    if precedence in ("bulk", "junk", "list", "auto_reply"):
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
    """A text part's payload as str: declared charset, else UTF-8, else Latin-1."""
    data = part.get_payload(decode=True) or b""
    charset = part.get_content_charset() or "utf-8"
    try:
        return data.decode(charset)
    except (LookupError, UnicodeDecodeError):
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode("latin-1")


def compose(*, sender: str, to: str, subject: str, text: str, domain: str,
            headers: dict[str, str] | None = None, html: str | None = None,
            attachments: list[Message] | None = None, in_reply_to: str = "",
            now=None) -> EmailMessage:
    """A message of our own; every header value is cleaned of CR/LF first."""
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = clean_header_value(sender)
    message["To"] = clean_header_value(to)
    message["Subject"] = clean_header_value(subject, 400)
    message["Message-ID"] = make_msgid(domain=domain)
    if now is not None:
        message["Date"] = format_datetime(now)
    else:
        message["Date"] = email.utils.formatdate(localtime=False, usegmt=True)
    if in_reply_to:
        message["In-Reply-To"] = f"<{clean_header_value(in_reply_to, 250)}>"
        message["References"] = f"<{clean_header_value(in_reply_to, 250)}>"
    for name, value in (headers or {}).items():
        message[name] = clean_header_value(value)
    message.set_content(text, charset="utf-8", cte="quoted-printable")
    if html is not None:
        message.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    for attached in attachments or []:
        if message.get_content_maintype() != "multipart":
            message.make_mixed()
        message.attach(attached)
    return message


def to_bytes(message: Message) -> bytes:
    """Serialise with CRLF line ends; MessageError when the email package cannot."""
    try:
        if isinstance(message, EmailMessage):
            return message.as_bytes(policy=email.policy.SMTP)
        return message.as_bytes(policy=email.policy.compat32.clone(linesep="\r\n"))
    except Exception as error:
        raise MessageError(f"the message cannot be re-serialised: "
                           f"{type(error).__name__}: {error}"[:300]) from None
