"""The digests' own mail: rendering a template and queuing the message.

`render_for(site, name, language, **context)` renders a mail template from
the site's checked templates; `bulk_message` builds a publication's copy
quickly (it may be megabytes); `send(...)` composes a message of ours (safe
headers, RFC 3834 `Auto-Submitted`) from the addresses this package answers
for (whatsnew@, templates@) and queues it once under `ref`, returning its
Message-ID so that replies to it can be recognised. Writes through
`listserv.delivery.queue`; reads templates. Decides nothing about who gets what.
"""

from __future__ import annotations

import quopri
import re
import secrets
from datetime import datetime
from email.header import Header
from email.message import Message
from email.utils import formataddr

from listserv.delivery.autoreplies import may_reply
from listserv.delivery.dkim import signature_room
from listserv.delivery.notify import site_context
from listserv.delivery.queue import queue_message
from listserv.mail.compose import compose, sent_bytes, split_text
from listserv.mail.headers import clean_header_value
from listserv.mail.templates import render, render_mail

MIN_PIECE = 500  # bytes of text a lowband part carries, however small the budget


def bulk_message(headers: list[tuple[str, str]], text: str, html: str | None = None) -> bytes:
    """A publication's copy as bytes: plain text (and an HTML alternative),
    quoted-printable encoded in C and written directly, so an issue of
    megabytes takes milliseconds. Header values are cleaned of CR/LF;
    non-ASCII ones are RFC 2047 encoded."""
    head = []
    for name, value in headers:
        value = clean_header_value(value)
        if not value.isascii():
            value = Header(value, "utf-8", header_name=name).encode(linesep="\r\n")
        head.append(f"{name}: {value}\r\n")
    head.append("MIME-Version: 1.0\r\n")
    if html is None:
        return "".join(head).encode("ascii") + _part(text, "plain")
    boundary = f"==bulletin-{secrets.token_hex(12)}"
    head.append(f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n')
    mark = f"--{boundary}\r\n".encode("ascii")
    return b"".join([("".join(head)).encode("ascii"), mark, _part(text, "plain"), b"\r\n",
                     mark, _part(html, "html"), f"\r\n--{boundary}--\r\n".encode("ascii")])


def _part(body: str, subtype: str) -> bytes:
    encoded = quopri.encodestring(body.encode("utf-8")).replace(b"\n", b"\r\n")
    return (f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
            f"Content-Transfer-Encoding: quoted-printable\r\n\r\n").encode("ascii") + encoded


def wrap(text: str, width: int = 68) -> list[str]:
    """`text` as lines of at most `width` characters, broken between words (a
    longer word stays whole); a regular expression, far quicker than textwrap."""
    return re.findall(rf"\S.{{0,{width - 1}}}(?=\s|$)|\S+", " ".join(text.split()))


def narrow(text: str, width: int = 72) -> str:
    """Every line of `text` at most `width` wide (longer ones wrapped, keeping
    their indentation): the low-bandwidth promise."""
    lines = []
    for line in text.split("\n"):
        if len(line) <= width:
            lines.append(line)
            continue
        indent = line[:len(line) - len(line.lstrip())][:width // 2]
        lines += [indent + piece for piece in wrap(line, width - len(indent))]
    return "\n".join(lines)


def lowband_pieces(site, text: str, headers: list[tuple[str, str]]) -> list[str]:
    """`text` cut between lines into the texts of a lowband copy's parts, so that
    each part, sent with `headers` (the longest part's: its Subject numbered
    '(99/99)'), a '[99/99]' line on top and the site's DKIM signatures, is at
    most [delivery] lowband_budget bytes (but never less than MIN_PIECE of text)."""
    settings = site.settings
    overhead = len(bulk_message(headers, "[99/99]\n\n"))
    room = settings.delivery.lowband_budget - overhead - signature_room(settings)
    return split_text(text, max(room, MIN_PIECE), sent_bytes)


def site_address(site, name: str) -> str:
    """One of this package's addresses: 'whatsnew', 'whatsnew-request',
    'templates'... with the configured names."""
    settings = site.settings
    base = {"whatsnew": settings.whatsnew.address,
            "templates": settings.templates.address}
    head, _, rest = name.partition("-")
    return f"{base.get(head, head)}{'-' + rest if rest else ''}@{settings.domain}"


def bulletin_addresses(site) -> dict[str, str]:
    """The bulletin's addresses, for templates and headers."""
    return {key: site_address(site, name) for key, name in (
        ("report", "whatsnew"), ("request", "whatsnew-request"), ("join", "whatsnew-join"),
        ("leave", "whatsnew-leave"), ("owner", "whatsnew-owner"))}


def context_for(site, **context) -> dict:
    return {**site_context(site), "bulletin": bulletin_addresses(site), **context}


def render_for(site, name: str, language: str, /, **context) -> tuple[str, str]:
    """(subject, body) of mail template `name` in `language`."""
    return render_mail(site.active_templates, name, language, **context_for(site, **context))


def render_text(site, name: str, language: str, /, **context) -> str:
    """A template that is not a mail (labels, HTML) rendered in `language`."""
    return render(site.active_templates, name, language, **context_for(site, **context))


def send(db, site, *, to: list[str] | str, subject: str, text: str, ref: str, now: datetime,
         sender: str, html: str | None = None, reply_to: str = "", in_reply_to: str = "",
         headers: dict[str, str] | None = None, attachments: list[Message] | None = None,
         auto: bool = True) -> str:
    """Queue one message of ours to `to` under `ref`; returns its Message-ID
    ('' when automatic mail to every recipient was over its hourly limit)."""
    settings = site.settings
    recipients = [to] if isinstance(to, str) else list(to)
    if auto:  # automatic mail counts against [site] max_replies_per_hour
        recipients = [r for r in recipients if may_reply(db, site, r, ref, now)]
        if not recipients:
            return ""
    extra = {"Auto-Submitted": "auto-replied" if in_reply_to else "auto-generated",
             "X-Auto-Response-Suppress": "All"} if auto else {}
    extra.update(headers or {})
    if reply_to:
        extra["Reply-To"] = reply_to
    named = formataddr((" ".join(settings.site.name.split()), sender))
    message = compose(sender=named, to=recipients[0] if len(recipients) == 1 else sender,
                      subject=subject, text=text, html=html, domain=settings.domain,
                      headers=extra, in_reply_to=in_reply_to, attachments=attachments,
                      now=now)
    queue_message(db, ref, message, recipients, f"listserv-bounces@{settings.domain}", now)
    return message["Message-ID"].strip("<>")
