"""Bounces: recording permanent delivery failures, and reading the reports
that come back to FORUM-bounces+TOKEN@D.

Once bounces act (bounce_actions.py disables and removes members), a forged
bounce could push members out, so only real reports count:

- Each copy whose bounce must be attributed goes out with its own envelope
  sender `FORUM-bounces+TOKEN@D` (`verp_sender`): TOKEN is the id of its
  delivery row, which names exactly one recipient, and an HMAC over the
  forum and that id with the site secret. `read_bounce_token` checks a
  local part without the database (the SMTP edge can refuse a bad one at
  RCPT with `bounce_token_valid`).
- `handle_bounce_message` counts a mail to such an address only when it is a
  delivery report of a permanent failure (an RFC 3464 report with a failed
  recipient, or a format flufl.bounce recognises) and its token verifies;
  it counts for the recipient of that delivery only, never for an address
  named in the report's body. Auto-replies, chatter, "still trying"
  warnings and reports to the bare FORUM-bounces@D never change a member.
- `record_bounce` writes one `bounces` row and scores the member: one
  point a day at most, starting again after `stale_after`. The delivery
  engine calls it on a 5xx reply at hand-over (which names its recipient).

Writes `bounces`, the members' bounce columns and the status of the delivery
that bounced. Never answers a bounce and never passes it on to a forum.
"""

from __future__ import annotations

import email
import email.policy
import logging
import re
from datetime import datetime, timedelta, timezone

from flufl.bounce import all_failures

from listserv.mail.addresses import domain_of, is_address, normalise
from listserv.mail.tokens import read_bounce_token

log = logging.getLogger(__name__)

_DIAGNOSTIC = re.compile(r"\b([245]\d\d)\b")
STALE_SECONDS = 7 * 86400


def _stamp(now) -> str:
    if isinstance(now, datetime):
        return now.isoformat()
    return datetime.fromtimestamp(float(now), timezone.utc).isoformat()


def record_bounce(db, delivery_id: int | None, recipient: str, code: int | None,
                  detail: str, now, forum_id: int | None = None,
                  stale_seconds: int = STALE_SECONDS) -> int:
    """Record one permanent failure and score it on the member; returns the row id.

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
        score(db, forum_id, recipient, _moment(now), stale_seconds)
    log.info("bounce from %s (forum %s): %s %s", recipient, forum_id, code or "",
             (detail or "")[:120])
    return bounce_id


def score(db, forum_id: int, address: str, now: datetime, stale_seconds: int) -> int | None:
    """One more point on the member's bounce score, unless they already had one
    today; a score last raised longer than `stale_seconds` ago starts again.
    Returns the score (None when `address` is no member)."""
    row = db.execute("SELECT id, bounce_score, last_bounce_at FROM members "
                     "WHERE forum_id = ? AND address = ?", [forum_id, address]).fetchone()
    if row is None:
        return None
    member_id, points, last = row
    last = datetime.fromisoformat(last) if last else None
    if last is not None and last.astimezone(timezone.utc).date() == \
            now.astimezone(timezone.utc).date():
        return points  # at most once a day
    if last is None or now - last > timedelta(seconds=stale_seconds):
        points = 0
    db.execute("UPDATE members SET bounce_score = ?, last_bounce_at = ? WHERE id = ?",
               [points + 1, now.isoformat(), member_id])
    return points + 1


def _moment(now) -> datetime:
    if isinstance(now, datetime):
        return now if now.tzinfo else now.replace(tzinfo=timezone.utc)
    return datetime.fromtimestamp(float(now), timezone.utc)


def is_failure_report(message) -> tuple[bool, dict[str, tuple[int | None, str]]]:
    """Whether `message` reports a permanent delivery failure, and the RFC 3464
    details per recipient. An auto-reply, a "still trying" warning or chatter
    is not one."""
    reports = _dsn_reports(message)
    if any(failed for failed, _code, _text in reports.values()):
        return True, {a: (code, text) for a, (_f, code, text) in reports.items()}
    try:
        _temporary, permanent = all_failures(message)
    except Exception as error:  # a detector choked on odd input
        log.info("bounce detectors failed (%s)", type(error).__name__)
        permanent = frozenset()
    return bool(permanent), {a: (code, text) for a, (_f, code, text) in reports.items()}


def handle_bounce_message(db, site, raw: bytes, rcpt_detail: str, now,
                          slug: str | None = None) -> list[str]:
    """Count a report that came to FORUM-bounces+TOKEN@D against the recipient of
    the delivery TOKEN names, when it is a real failure report and TOKEN is
    ours; returns the address counted ([] otherwise: nothing changes).

    `rcpt_detail` is what followed "+" in the address it came to ("" if
    nothing), `slug` the forum of that address."""
    if not slug:
        log.info("bounce to the site's own bounce address; not counted (no forum)")
        return []
    found = read_bounce_token(site.secret, f"{slug}-bounces+{rcpt_detail}")
    if found is None:
        log.info("bounce to %s-bounces%s: no valid token; not counted", slug,
                 f"+{rcpt_detail[:40]}" if rcpt_detail else "")
        return []
    try:
        message = email.message_from_bytes(raw, policy=email.policy.compat32)
        real, reports = is_failure_report(message)
    except Exception as error:  # unreadable: nothing to learn from it
        log.info("bounce report unreadable (%s); not counted", type(error).__name__)
        return []
    if not real:
        log.info("mail to a bounce address of %s is no failure report (an auto-reply "
                 "or a warning); not counted", slug)
        return []
    delivery_id = found[1]
    row = db.execute("SELECT d.recipient, b.forum_id, f.slug FROM delivery_recipients d "
                     "JOIN bodies b ON b.id = d.body_id JOIN forums f ON f.id = b.forum_id "
                     "WHERE d.id = ?", [delivery_id]).fetchone()
    if row is None or row[2] != slug:
        log.info("bounce for delivery %s of %s: no such delivery any more; not counted",
                 delivery_id, slug)
        return []
    address, forum_id = row[0], row[1]
    code, detail = reports.get(address, (None, "reported by a delivery status notification"))
    db.execute("UPDATE deliveries SET status = 'bounced', last_error = ? WHERE id = ?",
               [f"bounced later: {detail}"[:300], delivery_id])
    record_bounce(db, delivery_id, address, code, detail, now, forum_id=forum_id,
                  stale_seconds=site.settings.bounces.seconds("stale_after"))
    from listserv.delivery.bounce_actions import act_on_member
    act_on_member(db, site, forum_id, address, _moment(now))
    return [address]


def _dsn_reports(message) -> dict[str, tuple[bool, int | None, str]]:
    """Per recipient of an RFC 3464 report: (whether it failed for good, SMTP
    code, diagnostic), best effort."""
    reports: dict[str, tuple[bool, int | None, str]] = {}
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
                action = str(block.get("Action") or "").strip().lower()
                failed = action == "failed" or (not action and status.startswith("5"))
                reports[address] = (failed, code,
                                    text or "reported by a delivery status notification")
    except Exception:  # a damaged report still names its recipients through flufl
        pass
    return reports
