"""Bounces: recording permanent delivery failures, and reading the reports
that come back to FORUM-bounces@D.

`record_bounce` writes one `bounces` row and counts it on the member of the
forum the message was for (`members.bounces`). The delivery engine calls it
on a 5xx reply; intake calls `handle_bounce_message` for mail that arrives
at FORUM-bounces@D or FORUM-bounces+VERP@D. Reports are read with
flufl.bounce, whose detectors know the formats of many real mail servers,
plus our VERP address (`verp_sender` makes it, `read_verp` reads it).
Writes `bounces`, `members.bounces` and the status of the delivery that
bounced. Never answers a bounce and never passes it on to a forum: the
caller drops the message after this. Only an address we sent to or a
member can bounce, so reports about anyone else change nothing.
"""

from __future__ import annotations

import email
import email.policy
import logging
import re
from datetime import datetime, timezone

from flufl.bounce import all_failures

from listserv.delivery.queue import split_off
from listserv.mail.addresses import domain_of, is_address, normalise

log = logging.getLogger(__name__)

_DIAGNOSTIC = re.compile(r"\b([245]\d\d)\b")


def verp_sender(sender: str, recipient: str, domain: str) -> str:
    """FORUM-bounces@D -> FORUM-bounces+local=example.org@D for `recipient`; any
    sender not at our domain `domain` (or already carrying a detail) is kept."""
    local, _, sender_domain = sender.rpartition("@")
    if sender_domain.lower() != domain.lower() or not local or "+" in local:
        return sender
    rlocal, _, rdomain = recipient.rpartition("@")
    return f"{local}+{rlocal}={rdomain}@{sender_domain}"


def read_verp(detail: str) -> str | None:
    """The recipient a VERP detail ("local=example.org") stands for, or None."""
    local, sep, domain = (detail or "").rpartition("=")
    if not sep:
        return None
    address = normalise(f"{local}@{domain}")
    return address if is_address(address) else None


def _stamp(now) -> str:
    if isinstance(now, datetime):
        return now.isoformat()
    return datetime.fromtimestamp(float(now), timezone.utc).isoformat()


def record_bounce(db, delivery_id: int | None, recipient: str, code: int | None,
                  detail: str, now, forum_id: int | None = None) -> int:
    """Record one permanent failure and count it on the member; returns the row id.

    The forum is `forum_id`, else the one the delivery's message was for."""
    recipient = normalise(recipient)
    if forum_id is None and delivery_id is not None:
        row = db.execute("SELECT b.forum_id FROM deliveries d JOIN bodies b "
                         "ON b.id = d.body_id WHERE d.id = ?", [delivery_id]).fetchone()
        forum_id = row[0] if row else None
    bounce_id = db.execute(
        "INSERT INTO bounces (at, recipient, delivery_id, forum_id, code, detail) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [_stamp(now), recipient, delivery_id, forum_id, code, (detail or "")[:500]]).lastrowid
    if forum_id is not None:
        db.execute("UPDATE members SET bounces = bounces + 1 WHERE forum_id = ? AND address = ?",
                   [forum_id, recipient])
    log.info("bounce from %s (forum %s): %s %s", recipient, forum_id, code or "",
             (detail or "")[:120])
    return bounce_id


def handle_bounce_message(db, site, raw: bytes, rcpt_detail: str, now,
                          slug: str | None = None) -> list[str]:
    """Read a report that came to FORUM-bounces[+VERP]@D and record each
    permanent failure it names of an address we sent to or of a member;
    returns the addresses recorded.

    `rcpt_detail` is what followed "+" in the address it came to ("" if
    nothing), `slug` the forum of that address when known. A report of only
    temporary failures (a "still trying" warning) records nothing."""
    try:
        message = email.message_from_bytes(raw, policy=email.policy.compat32)
    except Exception as error:  # unreadable: nothing to learn from it
        log.info("bounce report unreadable (%s); dropped", type(error).__name__)
        return []
    try:
        temporary, permanent = all_failures(message)
    except Exception as error:  # a detector choked on odd input
        log.info("bounce detectors failed (%s); using the VERP address only",
                 type(error).__name__)
        temporary, permanent = frozenset(), frozenset()
    found = {normalise(_text(a)) for a in permanent}
    verp = read_verp(rcpt_detail)
    if verp and (permanent or not temporary):
        found.add(verp)
    if not found:
        return []
    reports = _dsn_reports(message)
    forum_id = None
    if slug:
        row = db.execute("SELECT id FROM forums WHERE slug = ?", [slug]).fetchone()
        forum_id = row[0] if row else None
    recorded = []
    for address in sorted(found):
        delivery = _last_sent(db, address, forum_id)
        forum = forum_id if forum_id is not None else (
            delivery[1] if delivery else _only_forum(db, address))
        if delivery is None and not _is_member(db, address, forum):
            log.info("bounce names %s, who is no member and was sent nothing; ignored", address)
            continue
        code, detail = reports.get(address, (None, "reported by a bounce message"))
        if delivery is not None:  # a batch's other recipients stay sent
            delivery = (split_off(db, delivery[0], address) or delivery[0], delivery[1])
            db.execute("UPDATE deliveries SET status = 'bounced', last_error = ? WHERE id = ?",
                       [f"bounced later: {detail}"[:300], delivery[0]])
        record_bounce(db, delivery[0] if delivery else None, address, code, detail, now,
                      forum_id=forum)
        recorded.append(address)
    return recorded


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _last_sent(db, address: str, forum_id: int | None) -> tuple[int, int | None] | None:
    """The latest delivery 'sent' to `address` (on `forum_id` when given), alone
    or in a batch."""
    sql = ("SELECT d.id, b.forum_id FROM delivery_recipients d JOIN bodies b "
           "ON b.id = d.body_id WHERE d.recipient = ? AND d.status = 'sent'")
    params: list = [address]
    if forum_id is not None:
        sql += " AND b.forum_id = ?"
        params.append(forum_id)
    row = db.execute(sql + " ORDER BY d.id DESC LIMIT 1", params).fetchone()
    return (row[0], row[1]) if row else None


def _only_forum(db, address: str) -> int | None:
    """The forum `address` is a member of, when there is exactly one."""
    rows = db.execute("SELECT forum_id FROM members WHERE address = ? LIMIT 2",
                      [address]).fetchall()
    return rows[0][0] if len(rows) == 1 else None


def _is_member(db, address: str, forum_id: int | None) -> bool:
    if forum_id is None:
        sql, params = "SELECT 1 FROM members WHERE address = ?", [address]
    else:
        sql, params = "SELECT 1 FROM members WHERE address = ? AND forum_id = ?", \
            [address, forum_id]
    return db.execute(sql, params).fetchone() is not None


def _dsn_reports(message) -> dict[str, tuple[int | None, str]]:
    """Per recipient of an RFC 3464 report: (SMTP code, diagnostic), best effort."""
    reports: dict[str, tuple[int | None, str]] = {}
    try:
        for part in message.walk():
            if part.get_content_type() != "message/delivery-status":
                continue
            blocks = part.get_payload()
            for block in blocks[1:] if isinstance(blocks, list) else []:
                recipient = str(block.get("Final-Recipient") or
                                block.get("Original-Recipient") or "")
                address = normalise(recipient.split(";", 1)[-1])
                if domain_of(address) == "" or not is_address(address):
                    continue
                status = " ".join(str(block.get("Status") or "").split())
                diagnostic = " ".join(str(block.get("Diagnostic-Code") or "").split())
                diagnostic = diagnostic.split(";", 1)[-1].strip()
                match = _DIAGNOSTIC.search(diagnostic)
                code = int(match.group(1)) if match else None
                text = diagnostic or (f"status {status}" if status else "")
                reports[address] = (code, text or "reported by a delivery status notification")
    except Exception:  # a damaged report still names its recipients through flufl
        pass
    return reports
