"""Notices about held posts: to the facilitators, and to the poster.

`notify_hold` sends the facilitators of a forum one mail per held post, in
the forum's language: who sent it, its subject, why it is held, its first
lines, the original attached as message/rfc822, and a reply address
`FORUM-confirm+TOKEN@D` whose single-use token carries their decision (a
forum without facilitators: the secretariat is told, and decides from the
command line). `notify_new_holds` is the moderation stage's part: every
hold gets its notice once, in the transaction that records it was sent.
`notify_rejection` and `notify_expired` tell the poster, in the poster's
language, but never an automatic, bulk or ambiguous sender (RFC 3834).
Writes `tokens`, `holds.noticed_at` and, through `notify`, the outbound
queue. Will not decide anything: decisions.py does.
"""

from __future__ import annotations

import email
import email.policy
import logging
from datetime import datetime, timedelta
from email.message import Message
from email.mime.application import MIMEApplication
from email.mime.message import MIMEMessage

from listserv.delivery.notify import send_template
from listserv.errors import ListservError, MessageError
from listserv.intake.subscriptions import confirm_address
from listserv.mail.headers import clean_header_value
from listserv.mail.message import parse
from listserv.mail.text import text_body
from listserv.mail.tokens import issue_token
from listserv.site import forums, members
from moderation.holds import get_hold

log = logging.getLogger(__name__)

PURPOSE = "decision"  # the tokens of facilitators' decisions
EXCERPT_LINES = 15


def recipients(site, forum: dict) -> tuple[list[str], bool]:
    """Who is told of a forum's held posts, and whether they may decide by reply."""
    if forum["facilitators"]:
        return list(forum["facilitators"]), True
    return list(site.settings.site.secretariat), False


def decision_token(db, site, forum: dict, target: dict, now: datetime) -> dict:
    """A fresh single-use token for deciding `target` ({"hold": id} or
    {"request": id}); returns the reply address and when it expires."""
    lifetime = site.settings.moderation.token_seconds
    token = issue_token(db, PURPOSE, forum_id=forum["id"], address="", data=target, now=now,
                        lifetime_seconds=lifetime)
    return {"address": confirm_address(forum, site.settings.domain, token),
            "expires": when(now + timedelta(seconds=lifetime))}


def when(moment: datetime | str | None) -> str:
    """A date as people read it in notices: '2026-11-23 09:00 UTC'."""
    if not moment:
        return ""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def stored_message(db, message_row_id: int) -> bytes | None:
    row = db.execute("SELECT raw FROM messages WHERE id = ?", [message_row_id]).fetchone()
    return bytes(row[0]) if row else None


def parse_stored(db, message_row_id: int):
    """The stored message read again as intake read it (with its envelope
    sender), or None when it cannot be read."""
    row = db.execute("SELECT raw, mail_from FROM messages WHERE id = ?",
                     [message_row_id]).fetchone()
    if row is None:
        return None
    try:
        return parse(bytes(row[0]), row[1])
    except MessageError:
        return None


def excerpt(raw: bytes | None) -> tuple[list[str], int, str]:
    """(first lines, how many more lines, the From header as sent) of a message."""
    if raw is None:
        return [], 0, ""
    try:
        parsed = parse(raw)
        lines = [clean_header_value(line, 200) for line in
                 text_body(parsed.message, limit=50_000).splitlines()]
        sent_from = parsed.header("From")
    except Exception:  # unreadable mail (MessageError and worse): show its first bytes
        lines = [clean_header_value(line, 200) for line in
                 raw[:3000].decode("utf-8", "replace").splitlines()]
        sent_from = ""
    while lines and not lines[-1]:
        lines.pop()
    shown = lines[:EXCERPT_LINES]
    return shown, len(lines) - len(shown), clean_header_value(sent_from, 200)


def original_parts(raw: bytes) -> list[list[Message]]:
    """Ways to attach the original, best first: as message/rfc822 when it can
    be read safely, else (and when that fails) as the file of its bytes."""
    ways: list[list[Message]] = []
    try:
        parse(raw)  # what intake refuses to read is not re-serialised here either
        part = MIMEMessage(email.message_from_bytes(raw, policy=email.policy.compat32))
        part.add_header("Content-Disposition", "attachment", filename="held-message.eml")
        ways.append([part])
    except Exception:  # MessageError, or too deep for the email package
        pass
    octets = MIMEApplication(raw, "octet-stream")
    octets.add_header("Content-Disposition", "attachment", filename="held-message.eml")
    ways.append([octets])
    return ways


def send_with_original(db, site, name: str, raw: bytes | None, **kwargs) -> None:
    """send_template with the original attached as well as it can be."""
    for attachments in (original_parts(raw) if raw else [[]]):
        try:
            with db.atomic():
                send_template(db, site, name, attachments=attachments, **kwargs)
            return
        except (MessageError, RecursionError, ValueError, TypeError) as error:
            log.info("the original cannot be attached that way (%s); trying another", error)
    send_template(db, site, name, **kwargs)  # without it: the notice matters more


def notify_hold(db, site, hold_id: int, now: datetime) -> int:
    """Tell the forum's facilitators of a held post; returns how many were told."""
    hold = get_hold(db, hold_id)
    forum = forums.get(db, hold["slug"])
    to, can_reply = recipients(site, forum)
    if not to:
        log.warning("hold %s on %s: no facilitator and no [site] secretariat to tell",
                    hold_id, forum["slug"])
        return 0
    raw = stored_message(db, hold["message_id"])
    lines, more, sent_from = excerpt(raw)
    member = members.find(db, forum["id"], hold["sender"]) if hold["sender"] else None
    decide = decision_token(db, site, forum, {"hold": hold_id}, now) if can_reply else None
    for address in to:
        send_with_original(
            db, site, "moderation-held.txt", raw, to=address, language=forum["language"],
            ref=f"held:{hold_id}", now=now, forum=forum,
            reply_to=decide["address"] if decide else "",
            hold={"id": hold_id, "reason": hold["reason"], "since": when(hold["created_at"])},
            sender=hold["sender"] or "", sent_from=sent_from or hold["sender"] or "",
            member=bool(member), subject=clean_header_value(hold["subject"], 200),
            lines=lines, more=more, decide=decide)
    log.info("hold %s on %s: notice sent to %s", hold_id, forum["slug"], ", ".join(to))
    return len(to)


def notify_new_holds(db, site, now: datetime, limit: int = 50) -> int:
    """Send the notice of each hold that has none yet; returns how many holds."""
    rows = db.execute("SELECT id FROM holds WHERE noticed_at IS NULL AND status = 'held' "
                      "ORDER BY id LIMIT ?", [limit]).fetchall()
    for (hold_id,) in rows:
        try:
            with db.atomic():
                notify_hold(db, site, hold_id, now)
        except ListservError as error:  # e.g. a broken site template: the hold stays listed
            log.error("hold %s: the facilitators' notice cannot be sent: %s", hold_id, error)
        db.execute("UPDATE holds SET noticed_at = ? WHERE id = ?", [now.isoformat(), hold_id])
    return len(rows)


def poster(db, site, hold: dict) -> tuple[str, str] | None:
    """(address, language) of a held post's sender when we may write to them:
    never an automatic or bulk sender (RFC 3834), an ambiguous From, or our own."""
    parsed = parse_stored(db, hold["message_id"])
    if parsed is None or not parsed.answerable or parsed.sender is None:
        log.info("hold %s: the poster is not told (automatic, bulk, unreadable or no "
                 "single From)", hold["id"])
        return None
    address = parsed.sender[1]
    if address.endswith("@" + site.settings.domain.lower()):
        return None
    member = members.find(db, hold["forum_id"], address)
    forum_language = db.execute("SELECT language FROM forums WHERE id = ?",
                                [hold["forum_id"]]).fetchone()[0]
    return address, member["language"] if member else forum_language


def notify_rejection(db, site, hold: dict, reason: str, now: datetime) -> bool:
    """Tell the poster their post was rejected, with the reason; False when
    they may not be written to."""
    told = poster(db, site, hold)
    if told is None:
        return False
    forum = forums.get(db, hold["slug"])
    send_template(db, site, "notice-rejected.txt", to=told[0], language=told[1],
                  ref=f"rejected:{hold['id']}", now=now, forum=forum,
                  in_reply_to=hold["header_id"] or "",
                  subject=clean_header_value(hold["subject"], 200), reason=reason,
                  hold={"id": hold["id"], "reason": hold["reason"]})
    return True


def notify_expired(db, site, hold: dict, days: int, now: datetime) -> bool:
    """Tell the poster that nobody decided in time and the post was not sent."""
    told = poster(db, site, hold)
    if told is None:
        return False
    forum = forums.get(db, hold["slug"])
    try:
        send_template(db, site, "moderation-expired.txt", to=told[0], language=told[1],
                      ref=f"expired:{hold['id']}", now=now, forum=forum,
                      in_reply_to=hold["header_id"] or "",
                      subject=clean_header_value(hold["subject"], 200), days=days)
    except ListservError as error:  # a broken site template must not stop the expiry
        log.error("hold %s: the expiry notice cannot be sent: %s", hold["id"], error)
        return False
    return True
