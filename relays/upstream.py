"""Upstream: local allies' reports and forum replies, from a relay to the hub.

At a relay, mail to `whatsnew@RELAY` (an initiative report) or to
`reply+FORUM@RELAY` (a reply for a hub forum) is passed up once, signed,
as an 'upstream' federation message carrying the author and the message as
it arrived. Automatic mail, bounces and unreadable mail are not passed up;
mail that already went through this relay or the hub (their node in its
`X-Listserv-Trace`) is not passed up again, so nodes cannot loop.
At the hub, `inject` puts the author's message back into the hub's own
intake, as if the author had written to `whatsnew@HUB` or `FORUM@HUB`
(mail_from and From are the author), with `X-Listserv-Relay` and the trace
on top: from there the hub's normal flow (review, moderation, What's New)
takes it. The relay says whether the author is one of its readers and the
message's language (declared, the reader's, or detected); the hub adds it
as Content-Language when the message has none and, through
`relay_member_rule`, treats a reader's reply to a forum whose digest the
relay carries as a member's post (members by relay), and names the relay
in any hold. Writes `relay_upstream` at a relay and `messages` and
`relay_injected` at the hub.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from datetime import datetime
from email.utils import format_datetime

from listserv.delivery.notify import send_template
from listserv.intake.policy import Decision
from listserv.mail.addresses import AddressError, check
from listserv.mail.headers import clean_header_value
from listserv.mail.message import Parsed
from listserv.mail.text import text_body
from relays import node
from relays.federation import TRACE_HEADER, header_trace, queue_envelope, read_secrets
from relays.language import declared, detect

log = logging.getLogger(__name__)

MAX_UPSTREAM = 2 * 1024 * 1024  # bytes of one message passed up (fits any hub's intake)
KINDS = ("initiative", "reply")
_SLUG = re.compile(r"^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$")


def pass_up(db, site, row: dict, parsed: Parsed | None, now: datetime, kind: str,
            forum: str = "") -> bool:
    """Send an ally's message to the hub once; False when it is not passed up."""
    settings = site.settings
    what = f"{kind}" + (f" for {forum}" if forum else "")
    if parsed is None or not parsed.answerable:
        log.info("message %s (%s) is automatic, a bounce or unreadable; not passed up",
                 row["id"], what)
        return False
    trace = header_trace(parsed)
    ours = {settings.node_id.lower(), node.hub_node(settings)}
    if ours & set(trace):
        log.warning("message %s (%s) already went through %s; not passed up again (loop)",
                    row["id"], what, ", ".join(sorted(ours & set(trace))))
        return False
    if forum and not _SLUG.match(forum):
        log.info("message %s: '%s' is not a forum name; not passed up", row["id"], forum)
        return False
    author = parsed.sender[1]
    if len(row["raw"]) > MAX_UPSTREAM:
        send_template(db, site, "relay-upstream-refused.txt", to=author,
                      language=settings.site.default_language, ref=f"reply:{row['id']}",
                      now=now, in_reply_to=parsed.message_id,
                      size=len(row["raw"]), limit=MAX_UPSTREAM, subject=parsed.subject[:200])
        return False
    if db.execute("SELECT 1 FROM relay_upstream WHERE message_id = ? AND kind = ? AND "
                  "forum = ?", [row["id"], kind, forum]).fetchone():
        return False
    reader = db.execute("SELECT language FROM relay_recipients WHERE profile = 'lowband' AND "
                        "address = ?", [author]).fetchone()
    language = declared(parsed.message) or (reader[0] if reader else "") or \
        (detect(text_body(parsed.message, limit=20_000), settings.site.languages) or "")
    body = {"kind": kind, "forum": forum, "reader": reader is not None, "language": language,
            "author": {"address": author, "name": clean_header_value(parsed.sender[0], 200)},
            "message_id": parsed.message_id, "received_at": row["received_at"],
            "raw": base64.b64encode(bytes(row["raw"])).decode("ascii")}
    envelope = queue_envelope(
        db, site, kind="upstream", to_node=node.hub_node(settings),
        to_address=settings.relay.hub, body=body,
        secret=read_secrets(node.secret_path(site))[0],
        ref=f"relay-upstream:{row['id']}:{kind}:{forum}",
        subject=f"{what} from {author}",
        text=f"An ally's {what}, passed up by the relay {settings.node_id}.\n"
             f"From: {author}\nSubject: {parsed.subject[:200]}\n", now=now,
        trace=[n for n in trace if n])
    db["relay_upstream"].insert({"message_id": row["id"], "kind": kind, "forum": forum,
                                 "author": author, "envelope": envelope["id"],
                                 "sent_at": now.isoformat()})
    log.info("message %s (%s from %s) passed up to the hub", row["id"], what, author)
    return True


def hub_address(settings, kind: str, forum: str) -> str:
    """Where an upstream message enters the hub: its whatsnew@ or the forum's address."""
    if kind == "reply":
        return f"{forum}@{settings.domain}"
    section = getattr(settings, "whatsnew", None)
    address = str(getattr(section, "address", "") or "whatsnew")
    return address if "@" in address else f"{address}@{settings.domain}"


def inject(db, site, relay_id: str, envelope: dict, now: datetime) -> int | None:
    """Put an upstream message into the hub's intake; returns its message row id."""
    body = envelope["body"]
    kind, forum = body.get("kind"), str(body.get("forum") or "")
    try:
        author = check(str((body.get("author") or {}).get("address", "")))
        raw = base64.b64decode(str(body.get("raw", "")), validate=True)
    except (AddressError, binascii.Error, ValueError, AttributeError):
        log.warning("upstream message %s from %s has no usable author or message",
                    envelope["id"], relay_id)
        return None
    if kind not in KINDS or (kind == "reply" and not _SLUG.match(forum)) or not raw:
        log.warning("upstream message %s from %s: unknown kind %r or forum %r",
                    envelope["id"], relay_id, kind, forum)
        return None
    settings = site.settings
    target = hub_address(settings, kind, forum)
    trace = ", ".join(list(envelope["trace"]) + [settings.node_id])
    language = str(body.get("language") or "").lower()
    language = language if re.match(r"^[a-z]{2,3}$", language) else ""
    top = (f"Received: from {relay_id} by {settings.domain} (listserv federation "
           f"{envelope['id']}); {format_datetime(now)}\r\n"
           f"X-Listserv-Relay: {relay_id}\r\n{TRACE_HEADER}: {trace}\r\n")
    if language and not re.search(rb"(?im)^content-language:", raw.split(b"\r\n\r\n", 1)[0]):
        top += f"Content-Language: {language}\r\n"  # declared by the relay, or detected
    top = top.encode("ascii")
    message_id = db["messages"].insert({
        "received_at": now.isoformat(), "mail_from": author, "rcpt_tos": json.dumps([target]),
        "raw": top + raw, "size": len(top) + len(raw), "status": "received"}).last_pk
    db["relay_injected"].insert({"message_id": message_id, "relay_id": relay_id,
                                 "author": author, "language": language,
                                 "reader": 1 if body.get("reader") else 0}, alter=False,
                                replace=True)
    log.info("upstream %s from %s (relay %s) entered the hub as message %s to %s", kind,
             author, relay_id, message_id, target)
    return message_id


def relay_member_rule(db, site, forum: dict, parsed, row: dict, decision: Decision,
                      now: datetime) -> Decision:
    """On the hub, before the forum's own rules (Extensions.post): a reply a relay
    passed up for one of its readers, to a forum whose digest that relay
    carries, is a member's post (the hub trusts the relay's attribution: its
    readers are members by relay); any hold of such a reply says which relay it
    came through, so the facilitator knows where it comes from."""
    found = db.execute("SELECT i.relay_id, i.author, i.reader, r.digests FROM relay_injected i "
                       "LEFT JOIN relays r ON r.id = i.relay_id AND r.status = 'active' "
                       "WHERE i.message_id = ?", [row["id"]]).fetchone()
    if found is None:
        return decision
    relay_id, author, reader, digests = found
    author_is_sender = bool(parsed.sender) and parsed.sender[1] == author
    carried = digests is not None and forum["slug"] in json.loads(digests or "[]")
    if decision.action == "hold" and decision.rule == "non-member" and reader and carried \
            and author_is_sender:
        log.info("message %s on %s: %s is a reader of the relay %s, a member by relay",
                 row["id"], forum["slug"], author, relay_id)
        return Decision("distribute", f"a member by the relay {relay_id}")
    if decision.action == "hold":
        who = "one of its readers" if reader else "someone who is not one of its readers"
        return Decision("hold", f"{decision.reason} (it came through the relay {relay_id}, "
                                f"from {who})", decision.rule)
    return decision
