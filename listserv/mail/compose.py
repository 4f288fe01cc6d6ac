"""Mail of our own: composed from cleaned values and serialised with CRLF.

`compose` builds replies and notices; no header value reaches the message
without `clean_header_value`. `to_bytes` serialises any message (ours or a
post being re-sent) and turns the email package's failures into a
MessageError. Reads and writes nothing on disk.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import quopri
from email.message import EmailMessage, Message
from email.utils import format_datetime, make_msgid

from listserv.errors import MessageError
from listserv.mail.headers import clean_header_value


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


def sent_bytes(line: str) -> int:
    """Bytes a line of text takes in a quoted-printable body, CRLF line ends
    included: what a byte budget (lowband parts) must count, not UTF-8."""
    return len(quopri.encodestring(line.encode("utf-8"))) + line.count("\n")


def split_text(text: str, room: int, cost=sent_bytes) -> list[str]:
    """`text` cut between lines into pieces of at most `room`, each line
    counted by `cost` (what it takes as sent, unless told)."""
    pieces, current, size = [], [], 0
    for line in text.splitlines(keepends=True):
        length = cost(line)
        if current and size + length > room:
            pieces.append("".join(current))
            current, size = [], 0
        current.append(line)
        size += length
    pieces.append("".join(current))
    return pieces
