"""Distribution: turning an accepted post into the copies members receive.

Rendering is pure: `render_post(raw, forum, ...)` returns the bytes of the
copy for `email` members (list headers of RFC 2369/2919/8058, `[slug]`
subject prefix once, `Precedence: list`, loop header, HTML sanitised with
bleach per the forum's content policy), and `render_lowband` the plain-text
parts for `lowband` members under their byte budget. `distribute_post`
stores the copies once and queues them to members in one transaction, so a
crash either queues the whole post or nothing; queuing twice reaches no one
twice. Writes `bodies`, `deliveries` (through queue.py) and the post's
status. Digest members are served by the digests, not here.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import logging
import quopri
import re
import textwrap
from collections.abc import Callable
from datetime import datetime, timezone
from email.header import Header
from email.message import Message
from email.utils import formataddr, getaddresses

import bleach

from listserv.archive.keep import wants_no_archive
from listserv.archive.links import archived_at, list_archive
from listserv.delivery import dmarc, queue
from listserv.delivery.notify import forum_addresses
from listserv.errors import MessageError
from listserv.mail.compose import sent_bytes, split_text, to_bytes
from listserv.mail.headers import clean_header_value, decode_header_text
from listserv.mail.message import LOOP_HEADER, OUR_HEADERS, raw_header
from listserv.mail.text import (DANGEROUS_BLOCKS, decode_payload, html_to_text, is_clean_text_part, text_body)

log = logging.getLogger(__name__)

ALLOWED_TAGS = {"a", "abbr", "b", "blockquote", "br", "code", "div", "em", "h1", "h2", "h3",
                "h4", "hr", "i", "li", "ol", "p", "pre", "span", "strong", "table", "tbody",
                "td", "th", "thead", "tr", "u", "ul"}
ALLOWED_ATTRIBUTES = {"a": ["href", "title"], "td": ["colspan", "rowspan"],
                      "th": ["colspan", "rowspan"]}
STRIPPED_HEADERS = OUR_HEADERS + ("Sender", "Disposition-Notification-To",
                                  "Return-Receipt-To", "X-Confirm-Reading-To", "Bcc")


def list_id(forum: dict, domain: str) -> str:
    return f"{forum['slug']}.{domain}"


def sanitise_html(html: str) -> str:
    """Keep harmless formatting; drop scripts, handlers, frames, remote images."""
    html = DANGEROUS_BLOCKS.sub("", html)
    return bleach.clean(html, tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES,
                        protocols={"http", "https", "mailto"}, strip=True,
                        strip_comments=True)


def prefixed_subject(subject: str, slug: str) -> str:
    """'[slug] Subject' with the tag once, in front, whatever replies did to it."""
    tag = f"[{slug}]"
    rest = re.sub(re.escape(tag), "", subject, flags=re.IGNORECASE)
    rest = re.sub(r"\s+", " ", rest).strip()
    rest = re.sub(r"^((re|aw|sv|fwd?|tr|rv|enc)\s*:\s*)+", lambda m: "Re: " if m.group(0)
                  .lower().startswith(("re", "aw", "sv", "rv")) else m.group(0), rest,
                  flags=re.IGNORECASE)
    return f"{tag} {rest}".strip() if rest else tag


def list_headers(forum: dict, domain: str, personal: bool,
                 web_url: str = "") -> list[tuple[str, str]]:
    """The RFC 2369/2919 headers for a forum (List-Unsubscribe only when not
    personal: personal copies get theirs per recipient at sending time)."""
    addresses = forum_addresses(forum["slug"], domain)
    title = clean_header_value(forum["title"], 200).replace('"', "'")
    headers = [("List-Id", f'"{title}" <{list_id(forum, domain)}>' if title.isascii()
                else str(Header(f"{title}", "utf-8")) + f" <{list_id(forum, domain)}>"),
               ("List-Help", f"<mailto:{addresses['request']}?subject=help>"),
               ("List-Subscribe", f"<mailto:{addresses['join']}>"),
               ("List-Owner", f"<mailto:{addresses['owner']}>")]
    if forum["policy"] == "announce":
        headers.append(("List-Post", "NO"))
    else:
        headers.append(("List-Post", f"<mailto:{addresses['post']}>"))
    if not personal:
        headers.append(("List-Unsubscribe", f"<mailto:{addresses['leave']}>"))
    archive = list_archive(forum, web_url, domain)
    if archive:
        headers.append(("List-Archive", clean_header_value(archive)))
    headers += [("Precedence", "list"), (LOOP_HEADER, addresses["post"])]
    return headers


def render_post(raw: bytes, forum: dict, domain: str, personal: bool = False,
                message_id: str = "", web_url: str = "", post_id: int = 0,
                mitigation: str = "none", now: datetime | None = None) -> bytes:
    """The copy for `email` members; MessageError when it cannot be made safely.
    With `post_id` it carries the Archived-At of the post's archive page.
    `mitigation` is the DMARC one (dmarc.py: 'munge', 'wrap' or 'none'); `now`
    dates a post that came without a Date."""
    try:
        message = email.message_from_bytes(raw, policy=email.policy.compat32)
        if mitigation == "wrap":  # the post as it came, its own signature intact
            message = dmarc.wrap(message, forum, domain)
        for name in STRIPPED_HEADERS:
            del message[name]
        if message_id and not message.get("Message-ID"):
            message["Message-ID"] = f"<{message_id}>"
        if not message.get("Date"):
            message["Date"] = email.utils.format_datetime(now or datetime.now(timezone.utc))
        if not message.get("MIME-Version"):
            message["MIME-Version"] = "1.0"
        subject = prefixed_subject(decode_header_text(raw_header(message, "Subject")),
                                   forum["slug"])
        del message["Subject"]
        message["Subject"] = subject if subject.isascii() else Header(subject, "utf-8")
        _reencode_8bit_headers(message)
        if mitigation == "munge":
            dmarc.munge(message, forum, domain)
        for name, value in list_headers(forum, domain, personal, web_url):
            message[name] = value
        at = archived_at(forum, web_url, post_id) if post_id else ""
        if at and not wants_no_archive(message):
            message["Archived-At"] = at
        if mitigation != "wrap":
            _normalise_parts(message, forum.get("content", "html"))
    except MessageError:
        raise
    except Exception as error:  # the email package raising on hostile structure
        raise MessageError(f"the post cannot be prepared for distribution: "
                           f"{type(error).__name__}: {error}"[:300]) from None
    return to_bytes(message)


ADDRESS_HEADERS = ("from", "to", "cc", "reply-to", "sender", "resent-from", "resent-to")


def _reencode_8bit_headers(message: Message) -> None:
    """Headers that arrived with raw 8-bit bytes go out RFC 2047-encoded;
    in address headers only the display names are encoded."""
    dirty = {key for key, value in message.raw_items()
             if isinstance(value, str) and not value.isascii()}
    for key in dirty:
        values = [v for k, v in message.raw_items() if k == key]
        del message[key]
        for value in values:
            text = decode_header_text(value)
            if key.lower() in ADDRESS_HEADERS:
                pairs = getaddresses([text])
                message[key] = ", ".join(_mailbox(name, addr) for name, addr in pairs if addr)
            else:
                message[key] = Header(text, "utf-8")


def _mailbox(name: str, address: str) -> str:
    """A mailbox for an address header: the name RFC 2047-encoded; an address
    that is itself UTF-8 (RFC 6532) stays as it is, and the copy then goes out
    with SMTPUTF8 (no encoding can carry it to a server without)."""
    if address.isascii():
        return formataddr((name, address), charset="utf-8")
    shown = formataddr((name, "x@x"), charset="utf-8").rpartition(" <")[0] if name else ""
    return f"{shown} <{address}>" if shown else f"<{address}>"


def _normalise_parts(message: Message, content: str) -> None:
    """HTML parts are sanitised (or, for content 'text', turned into text);
    text parts that are not clean 7-bit text in a known charset are decoded
    and sent as UTF-8; attachments are left as they are."""
    for part in message.walk():
        if part.is_multipart() or part.get_content_maintype() != "text":
            continue
        if part.get_content_disposition() == "attachment":
            continue
        if part.get_content_type() == "text/html":
            html = decode_payload(part)
            if content == "text":
                _set_text(part, html_to_text(html), "plain")
            else:
                _set_text(part, sanitise_html(html), "html")
        elif not is_clean_text_part(part):
            _set_text(part, decode_payload(part), part.get_content_subtype())


def _set_text(part: Message, text: str, subtype: str) -> None:
    for name in ("Content-Transfer-Encoding", "Content-Type"):
        del part[name]
    part["Content-Type"] = f'text/{subtype}; charset="utf-8"'
    part["Content-Transfer-Encoding"] = "quoted-printable"
    part.set_payload(quopri.encodestring(text.encode("utf-8")).decode("ascii"))


def render_lowband(raw: bytes, forum: dict, domain: str, budget: int,
                   sender_name: str = "",
                   overhead: Callable[[str], int] = lambda head: 1200) -> list[str]:
    """Plain text wrapped at 72 columns, no attachments, in parts of at most
    `budget` bytes each. Returns the text of each part ("From: ...\nSubject:
    ...\n\n" and the part's text). `overhead(head)` is what a part's message
    takes besides its text (its headers, its signatures); the text is counted
    as it is sent (quoted-printable), so each part as sent is within `budget`."""
    try:
        message = email.message_from_bytes(raw, policy=email.policy.compat32)
        subject = prefixed_subject(decode_header_text(message.get("Subject", "")),
                                   forum["slug"])
        author = decode_header_text(message.get("From", ""))
        text = text_body(message)
        dropped = [_describe(part) for part in message.walk()
                   if not part.is_multipart() and part.get_content_disposition() == "attachment"]
    except Exception as error:
        raise MessageError(f"the post cannot be rendered as plain text: "
                           f"{type(error).__name__}") from None
    lines = []
    for paragraph in text.replace("\r\n", "\n").split("\n"):
        lines.extend(textwrap.wrap(paragraph, 72, break_long_words=True,
                                   break_on_hyphens=False) or [""])
    if dropped:
        lines += ["", "[Attachments not sent on this low-bandwidth copy:]"]
        lines += [f"  - {d}" for d in dropped]
    body = "\n".join(lines).strip() + "\n"
    header = f"From: {author}\nSubject: {subject}\n\n"
    # lines are at most 72 characters, so none alone outgrows the room
    room = max(budget - overhead(header) - sent_bytes(PART_LINE.format(99, 99)), 500)
    chunks = split_text(body, room)
    if len(chunks) == 1:
        return [header + chunks[0]]
    return [f"{header}{PART_LINE.format(n, len(chunks))}{chunk}"
            for n, chunk in enumerate(chunks, 1)]


PART_LINE = "[part {} of {}]\n\n"


def _describe(part: Message) -> str:
    name = decode_header_text(part.get_filename() or "unnamed")
    size = len(part.get_payload(decode=True) or b"")
    return f"{name} ({part.get_content_type()}, {size} bytes)"


def lowband_message(text: str, forum: dict, domain: str, message_id: str, part: int,
                    parts: int, web_url: str = "", sender: str = "",
                    now: datetime | None = None) -> bytes:
    """A lowband part as a small plain-text message with the list headers;
    `sender` replaces the author's From (DMARC mitigation: dmarc.py)."""
    head, _, body = text.partition("\n\n")
    fields = dict(line.split(": ", 1) for line in head.splitlines() if ": " in line)
    message = email.message.EmailMessage(policy=email.policy.SMTP)
    message["From"] = sender or fields.get("From", forum_addresses(forum["slug"], domain)["post"])
    if sender and fields.get("From"):
        message["Reply-To"] = fields["From"]
        message["Author"] = fields["From"]
    message["Date"] = email.utils.format_datetime(now or datetime.now(timezone.utc))
    subject = fields.get("Subject", f"[{forum['slug']}]")
    message["Subject"] = subject if parts == 1 else f"{subject} ({part}/{parts})"
    message["Message-ID"] = f"<lowband{part}.{message_id}>" if message_id \
        else email.utils.make_msgid(domain=domain)
    if message_id:
        message["In-Reply-To" if part > 1 else "References"] = f"<{message_id}>"
    for name, value in list_headers(forum, domain, personal=False, web_url=web_url):
        message[name] = value
    message.set_content(body, charset="utf-8", cte="quoted-printable")
    return to_bytes(message)


def distribute_post(db, post: dict, forum: dict, raw: bytes, *, domain: str, budget: int,
                    personal: bool, now: datetime, batch: int = 1, web_url: str = "",
                    mitigation: str = "none", signature_room: int = 0) -> int:
    """Store the copies and queue them to every `each` member, in rows of up to
    `batch` members of one domain (1 for personal copies); returns the
    recipients queued. `mitigation`: DMARC's (dmarc.py), for every copy;
    `signature_room`: the bytes the site's DKIM signatures add to a copy, which
    lowband parts leave free under `budget`."""
    batch = 1 if personal else batch
    sender = forum_addresses(forum["slug"], domain)["bounces"]
    ref = f"post:{post['id']}"
    copy = render_post(raw, forum, domain, personal, post["header_id"], web_url, post["id"],
                       mitigation, now)
    body_id = queue.store_body(db, ref, copy, now, forum["id"], personal)
    queued = queue.enqueue_members(db, ref, body_id, sender, now, forum_id=forum["id"],
                                   mode="each", profile="email", batch=batch)
    has_lowband = db.execute("SELECT 1 FROM members WHERE forum_id = ? AND mode = 'each' "
                             "AND profile = 'lowband' LIMIT 1", [forum["id"]]).fetchone()
    if has_lowband:
        author = ""
        if mitigation != "none":
            author = dmarc.munged_from(email.message_from_bytes(
                raw, policy=email.policy.compat32), forum, domain)

        def overhead(head: str) -> int:  # the longest part's message with no text, signed
            empty = lowband_message(head, forum, domain, post["header_id"], 99, 99, web_url,
                                    author, now)
            return len(empty) + signature_room

        parts = render_lowband(raw, forum, domain, budget, overhead=overhead)
        for number, text in enumerate(parts, 1):
            part_ref = f"{ref}:lowband:{number}"
            data = lowband_message(text, forum, domain, post["header_id"], number, len(parts),
                                   web_url, author, now)
            part_id = queue.store_body(db, part_ref, data, now, forum["id"])
            queued += queue.enqueue_members(db, part_ref, part_id, sender, now,
                                            forum_id=forum["id"], mode="each",
                                            profile="lowband", batch=batch)
    db.execute("UPDATE posts SET status = 'distributed', distributed_at = ? WHERE id = ?",
               [now.isoformat(), post["id"]])
    db.execute("UPDATE members SET posts = posts + 1 WHERE forum_id = ? AND address = ?",
               [forum["id"], post["sender"]])
    log.info("distributed post %s (%s) on %s to %d recipients", post["id"], post["header_id"],
             forum["slug"], queued)
    return queued
